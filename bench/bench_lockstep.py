"""Benchmark: lockstep with a board, as `flatsat demo` runs it, and where a step's time goes.

    .venv/bin/python bench/bench_lockstep.py [--orbits 3] [--repeats 3] [--baseline CHECKOUT]

1. Whole process: ``flatsat demo --orbits N`` (the emulator and the reference board over ZeroMQ on loopback, lockstep
   stepped by the board), timed from start to exit, medians of ``--repeats``. With ``--baseline CHECKOUT`` (another
   checkout of flatsat with its own ``.venv``, e.g. a git worktree of an older commit) the same command runs there
   too, alternating, and the ratio is printed.
2. The split: the emulator in this process and the reference board as its own process for the same sim time
   (with ``--telemetry per-turn``, as the demo runs it, and with every topic at 1 Hz, as before);
   the emulator's CPU time (this process), the board's (from /proc), and the rest of the wall time (the wire:
   waiting for the other side's message). In lockstep the two take turns, so the three add up to the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.runtime import Emulator

TICK_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def demo_wall(checkout: Path, orbits: float) -> float:
    python = checkout / ".venv" / "bin" / "python"
    t0 = time.perf_counter()
    out = subprocess.run([str(python), "-m", "emulator", "demo", "--orbits", str(orbits), "--plot",
                          str(Path("/tmp") / f"bench-demo-{os.getpid()}.png")], cwd=checkout, capture_output=True,
                         text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"flatsat demo in {checkout} exited {out.returncode}:\n{out.stderr[-2000:]}")
    return wall


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


async def split(sim_s: float, telemetry: str = "per-turn") -> dict[str, float]:
    cfg = load_config("suncatcher-proto", {"sim.mode": "lockstep", "sim.lockstep_source": "board", "sim.seed": 1,
                                           "links.board": "zmq+tcp://127.0.0.1:0",
                                           "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None) as emu:
        board = await asyncio.create_subprocess_exec(sys.executable, "-m", "firmware_stubs.reference", "--url",
                                                     emu.board_url, "--telemetry", telemetry, cwd=ROOT)
        try:
            await emu.run(60)  # the board's start-up (interpreter, imports, hello) stays out of the figures
            board0, emu0, wall0 = cpu_s(board.pid), time.process_time(), time.perf_counter()
            turns0 = emu.stats.commands["board"]
            published0 = emu.board_link.stats.tx
            await emu.run(sim_s)
            wall = time.perf_counter() - wall0
            emu_cpu = time.process_time() - emu0
            board_cpu = cpu_s(board.pid) - board0
            requests = emu.stats.commands["board"] - turns0
            sent = emu.board_link.stats.tx - published0
        finally:
            board.terminate()
            await board.wait()
    steps = sim_s / emu.step_ns * NS_PER_S
    return {"sim_s": sim_s, "wall_s": wall, "emulator_cpu_s": emu_cpu, "board_cpu_s": board_cpu,
            "wire_s": max(0.0, wall - emu_cpu - board_cpu), "steps": steps, "requests": requests, "sent": sent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orbits", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another flatsat checkout with its own .venv to compare with")
    ap.add_argument("--split-s", type=float, default=6 * 3600.0, help="sim seconds of the split run")
    ap.add_argument("--split-telemetry", nargs="+", default=["per-turn", "all"], choices=["per-turn", "all"],
                    help="the reference board's --telemetry in the split runs (default: both; the demo's is per-turn)")
    args = ap.parse_args()
    ours, base = [], []
    for rep in range(args.repeats):
        ours.append(demo_wall(ROOT, args.orbits))
        line = f"  run {rep + 1}: flatsat demo {ours[-1]:.2f} s"
        if args.baseline:
            base.append(demo_wall(args.baseline, args.orbits))
            line += f", baseline {base[-1]:.2f} s"
        print(line, flush=True)
    med = statistics.median(ours)
    print(f"flatsat demo --orbits {args.orbits:g} (whole process, lockstep with the reference board): median "
          f"{med:.2f} s")
    if base:
        bmed = statistics.median(base)
        print(f"baseline {args.baseline}: median {bmed:.2f} s; speed-up {bmed / med:.2f}x")
    for telemetry in args.split_telemetry:
        s = asyncio.run(split(args.split_s, telemetry))
        per = 1e6 / s["steps"]
        print(f"\nsplit, reference board --telemetry {telemetry}, over {s['sim_s'] / 3600:g} h of sim time "
              f"({s['steps']:.0f} steps, {s['requests']} board requests, {s['sent']} board-plane messages sent), "
              f"{s['sim_s'] / s['wall_s']:,.0f}x real time:")
        for key, label in (("emulator_cpu_s", "emulator (physics, telemetry, requests)"),
                           ("board_cpu_s", "board (decoding telemetry, its controller, requests)"),
                           ("wire_s", "wire and waiting (the rest of the wall time)")):
            print(f"  {label:<55} {s[key]:7.2f} s  {s[key] * per:8.1f} us/step  {100 * s[key] / s['wall_s']:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: lockstep with a board, as `flatsat demo` runs it, and where a step's time goes.

    .venv/bin/python bench/bench_lockstep.py [--orbits 3] [--repeats 3] [--baseline CHECKOUT]

1. Whole process: ``flatsat demo --orbits N`` (the emulator and the reference board over ZeroMQ on loopback, lockstep
   stepped by the board), timed from start to exit, medians of ``--repeats``, with bytecode cached as a user's
   install has it (``user_env``). With ``--baseline CHECKOUT`` (another checkout of flatsat with its own
   ``.venv``, e.g. a git worktree of an older commit) the same command runs there too, alternating, and the ratio
   is printed.
2. The split of a turn (10 s of sim time, the reference board's period): the emulator in this process and the
   reference board as its own process for the same sim time (with ``--telemetry per-turn``, as the demo runs it,
   and with every topic at 1 Hz): the emulator's main thread split into physics (the model's step, timed) and
   the runtime's lockstep path (request decode and reply, the step request, telemetry samples, clock, event
   loop), the board's main thread (from /proc), and the wire: the rest of the wall time (ZeroMQ's I/O threads,
   loopback, wake-ups). In lockstep the two sides take turns, so the four add up to about the wall time. Round
   trips per turn: requests the board sent after waiting for the emulator, per turn.
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
from firmware_stubs.reference import ReferenceController

TICK_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def user_env() -> dict[str, str]:
    """The environment a user's ``flatsat demo`` runs in: this one, but modules' bytecode cached as Python does by
    default (with PYTHONDONTWRITEBYTECODE set, as in some CI images, every module of an editable checkout is
    compiled again at each start of each of the two processes, which no user's install pays). The first, untimed
    run of each checkout writes the caches."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def demo_wall(checkout: Path, orbits: float) -> float:
    python = checkout / ".venv" / "bin" / "python"
    t0 = time.perf_counter()
    out = subprocess.run([str(python), "-m", "emulator", "demo", "--orbits", str(orbits), "--plot",
                          str(Path("/tmp") / f"bench-demo-{os.getpid()}.png")], cwd=checkout, capture_output=True,
                         text=True, check=False, env=user_env())
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"flatsat demo in {checkout} exited {out.returncode}:\n{out.stderr[-2000:]}")
    return wall


def cpu_s(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path, encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


#: the reference board as the demo runs it, printing its round trips (requests sent after a wait) when stopped
BOARD = """
import sys
from firmware_stubs.base import run_board, run_until_signalled
from firmware_stubs.reference import ReferenceController
controller = ReferenceController()
controller.telemetry = sys.argv[2]
run_until_signalled(run_board(controller, sys.argv[1]))
print("round_trips", getattr(controller.log, "round_trips", -1), flush=True)
"""


class PhysicsTimer:
    """CPU time (this thread's) spent in the model's step / step_many (the physics), wrapped around the model in
    place."""

    def __init__(self, model: object) -> None:
        self.s = 0.0
        self.depth = 0  # step_many calls step: time the outer call only
        for name in ("step", "step_many"):
            inner = getattr(model, name)

            def timed(*args: object, _inner=inner) -> object:  # type: ignore[no-untyped-def]
                if self.depth:
                    return _inner(*args)
                self.depth += 1
                t0 = time.thread_time()
                try:
                    return _inner(*args)
                finally:
                    self.s += time.thread_time() - t0
                    self.depth -= 1

            setattr(model, name, timed)


async def split(sim_s: float, telemetry: str = "per-turn") -> dict[str, float]:
    cfg = load_config("suncatcher-proto", {"sim.mode": "lockstep", "sim.lockstep_source": "board", "sim.seed": 1,
                                           "links.board": "zmq+tcp://127.0.0.1:0",
                                           "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None) as emu:
        board = await asyncio.create_subprocess_exec(sys.executable, "-c", BOARD, emu.board_url, telemetry, cwd=ROOT,
                                                     stdout=asyncio.subprocess.PIPE)
        try:
            await emu.run(60)  # the board's start-up (interpreter, imports, hello) stays out of the figures
            physics = PhysicsTimer(emu.model)
            board0, board_main0 = cpu_s(board.pid), cpu_s(board.pid, board.pid)
            emu0, emu_main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            turns0, requests0 = emu.clock.now_ns(), emu.stats.commands["board"]
            published0 = emu.board_link.stats.tx
            await emu.run(sim_s)
            wall = time.perf_counter() - wall0
            emu_cpu, emu_main = time.process_time() - emu0, time.thread_time() - emu_main0
            board_cpu, board_main = cpu_s(board.pid) - board0, cpu_s(board.pid, board.pid) - board_main0
            requests = emu.stats.commands["board"] - requests0
            sent = emu.board_link.stats.tx - published0
            turns_total = emu.clock.now_ns() // round(ReferenceController.period_s * NS_PER_S)
            turns = (emu.clock.now_ns() - turns0) // round(ReferenceController.period_s * NS_PER_S)
        finally:
            board.terminate()
            out, _ = await board.communicate()
    round_trips = next((int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("round_trips")),
                       -1)
    steps = sim_s / emu.step_ns * NS_PER_S
    return {"sim_s": sim_s, "wall_s": wall, "steps": steps, "turns": turns, "requests": requests, "sent": sent,
            "physics_s": physics.s, "runtime_s": emu_main - physics.s, "emulator_io_s": emu_cpu - emu_main,
            "board_main_s": board_main, "board_io_s": board_cpu - board_main,
            "wire_s": max(0.0, wall - emu_main - board_main),
            # the board's whole run (its start included: hello, rail on): a few round trips more than its turns'
            "round_trips_per_turn": round_trips / max(1, turns_total)}


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
    for checkout in (ROOT, args.baseline) if args.baseline else (ROOT,):
        demo_wall(checkout, 0.1)  # untimed: writes the bytecode caches (user_env), as a user's first run does
    for rep in range(args.repeats):
        ours.append(demo_wall(ROOT, args.orbits))
        line = f"  run {rep + 1}: flatsat demo {ours[-1]:.2f} s"
        if args.baseline:
            base.append(demo_wall(args.baseline, args.orbits))
            line += f", baseline {base[-1]:.2f} s"
        print(line, flush=True)
    med = statistics.median(ours) if ours else float("nan")
    if ours:
        print(f"flatsat demo --orbits {args.orbits:g} (whole process, lockstep with the reference board): median "
              f"{med:.2f} s")
    if base:
        bmed = statistics.median(base)
        print(f"baseline {args.baseline}: median {bmed:.2f} s; speed-up {bmed / med:.2f}x")
    for telemetry in args.split_telemetry:
        s = asyncio.run(split(args.split_s, telemetry))
        per = 1e6 / s["turns"]
        print(f"\nsplit, reference board --telemetry {telemetry}, over {s['sim_s'] / 3600:g} h of sim time "
              f"({s['steps']:.0f} steps, {s['turns']} turns, {s['requests'] / s['turns']:.2f} board requests and "
              f"{s['round_trips_per_turn']:.2f} round trips per turn, {s['sent'] / s['turns']:.1f} board-plane "
              f"messages per turn), {s['sim_s'] / s['wall_s']:,.0f}x real time, {per * s['wall_s']:.0f} us per turn:")
        for key, label in (("physics_s", "emulator: physics (model step)"),
                           ("runtime_s", "emulator: runtime (requests, telemetry, clock, loop)"),
                           ("board_main_s", "board (telemetry, its controller, requests, loop)"),
                           ("wire_s", "wire (wall minus the two main threads: wake-ups, I/O)")):
            print(f"  {label:<56} {s[key]:7.2f} s  {s[key] * per:8.1f} us/turn  {100 * s[key] / s['wall_s']:5.1f} %")
        print(f"  (ZeroMQ I/O threads, beside the main threads: emulator {s['emulator_io_s'] * per:.0f} us/turn, "
              f"board {s['board_io_s'] * per:.0f} us/turn of CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

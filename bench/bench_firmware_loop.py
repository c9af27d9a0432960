"""Wall time per simulated hour of a standard scenario with three boards: the firmware image in QEMU, the same C core
as a host program, and the Python reference board.

    .venv/bin/python bench/bench_firmware_loop.py [--scenario latchup] [--repeats 2] [--hours H]

All three run the scenario the same way: lockstep driven by the board, a 20 s control period and three queued jobs
(the reference controller's; the host program is told so), board telemetry at one sample per turn. They differ in
what carries the line, as each is used: the Python reference talks ZeroMQ on loopback; the host program a pty the
runner opens (``--fd {fd}``), paced at 921600 baud; QEMU (``lm3s6965evb``, ``-serial {pty}``) the same paced pty
through the runner's relay. Runs alternate (QEMU, host, reference, QEMU, ...) and medians are compared; the QEMU
row also gives the CPU time QEMU itself used. The images are built first (``make -C firmware_stubs/c all
lm3s6965``: needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hil.runner import run_scenario
from hil.scenario import load_scenario

PERIOD_S = 20.0
QUEUE = 3
INSTALL = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


def build(out: Path) -> tuple[Path, Path]:
    subprocess.run(["make", "-s", "-C", str(ROOT / "firmware_stubs" / "c"), f"BUILD={out}", "all", "lm3s6965"],
                   check=True, stdout=subprocess.DEVNULL)
    return out / "flatsat_board_posix", out / "lm3s6965" / "flatsat_board.elf"


async def one_run(scenario_path: Path, hours: float | None, board: str, record_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the board process and its children) per simulated hour of one run."""
    import dataclasses

    scenario = load_scenario(scenario_path)
    rate_hz = 1.0 / PERIOD_S
    overrides = {**scenario.overrides, "telemetry.rates_hz": {"eps.telemetry": rate_hz, "accel.status": rate_hz,
                                                              "adcs.sun": rate_hz, "thermal.telemetry": 0.0,
                                                              "sim.clock": 0.0}}
    head = scenario.head if hours is None else scenario.head.model_copy(update={"duration": hours * 3600.0})
    scenario = dataclasses.replace(scenario, head=head, overrides=overrides, requirements=[],
                                   timeline=[(i, a) for i, a in scenario.timeline if a.at <= head.duration])
    before = os.times()
    t0 = time.perf_counter()
    result = await run_scenario(scenario, board_cmd=board, record_dir=record_dir)
    wall = time.perf_counter() - t0
    after = os.times()
    if result.error is not None:
        raise SystemExit(f"run failed ({board}): {result.error}")
    sim_h = scenario.duration_s / 3600.0
    board_cpu = after.children_user + after.children_system - before.children_user - before.children_system
    return wall / sim_h, board_cpu / sim_h


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="latchup", help="a configs/scenarios name (default latchup)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hours", type=float, default=None, help="run only this much sim time (default: all)")
    args = parser.parse_args()
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        print(f"{', '.join(missing)} not found: {INSTALL}", file=sys.stderr)
        return 2
    path = ROOT / "configs" / "scenarios" / f"{args.scenario}.toml"
    with tempfile.TemporaryDirectory(prefix="flatsat-bench-") as tmp:
        host, elf = build(Path(tmp) / "build")
        boards = {
            "QEMU lm3s6965evb (image)": f"qemu-system-arm -M lm3s6965evb -nographic -kernel {elf} -serial {{pty}}",
            "host C stub (pty)": f"{host} --fd {{fd}} --baud 921600 --period {PERIOD_S:g} --queue {QUEUE}",
            "Python reference (zmq)": f"{sys.executable} -m firmware_stubs.reference --period {PERIOD_S:g}",
        }
        walls: dict[str, list[float]] = {k: [] for k in boards}
        cpus: dict[str, list[float]] = {k: [] for k in boards}
        for rep in range(args.repeats):
            for name, cmd in boards.items():
                wall, cpu = asyncio.run(one_run(path, args.hours, cmd, Path(tmp) / f"{rep}-{len(walls[name])}"))
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"  run {rep + 1}: {name}: {wall:.1f} s per sim hour (board CPU {cpu:.1f} s)", flush=True)
    print(f"\n{args.scenario}: seconds per simulated hour, median of {args.repeats}, load {os.getloadavg()[0]:.1f}")
    med = {k: statistics.median(v) for k, v in walls.items()}
    qemu, host_name, ref = boards
    for name in boards:
        print(f"  {name:28s} wall {med[name]:6.1f} s ({3600.0 / med[name]:5.0f}x real time), "
              f"board CPU {statistics.median(cpus[name]):5.1f} s")
    print(f"  QEMU / host C stub       {med[qemu] / med[host_name]:.2f}")
    print(f"  QEMU / Python reference  {med[qemu] / med[ref]:.2f}")
    print(f"  host C stub / reference  {med[host_name] / med[ref]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

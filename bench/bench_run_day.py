"""Benchmark: `flatsat run` for one simulated day as a whole process, beside a Basilisk script as a whole process.

    .venv/bin/python bench/bench_run_day.py [CONFIG ...] [--repeats 5] [--duration 1d] [--flatsat PATH]

Time flatsat as users install it: ``python -m venv /tmp/plain && /tmp/plain/bin/pip install .`` then
``--flatsat /tmp/plain/bin/flatsat`` (an editable install in an environment with PYTHONDONTWRITEBYTECODE set
compiles every flatsat module again at each start, ~0.1-0.2 s that no installed copy pays).

What a user types, timed from start to exit (interpreter start-up, imports, config, orbit set-up, sockets
bound, the run, the summary skipped): ``flatsat run --config CONFIG --mode afap --duration 1d --seed 1 --quiet``
(no board connected; the planes listen on ephemeral loopback ports). Beside it, ``python bench/basilisk_ref.py``
as its own process: Basilisk's orbit + eclipse + solar panel + battery + constant load, the same altitude,
inclination, panel and battery, logging the battery every 10 s. The two alternate; medians of ``--repeats``;
the ratio is Basilisk's wall time over flatsat's (> 1: flatsat is faster). Needs ``bsk`` (pip install bsk, the
``basilisk`` extra).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SINGLE = ["suncatcher-proto", "cubesat-6u-jetson", "cubesat-6u-jetson-external", "starcloud-like"]


def flatsat_cmd(script: str | None = None) -> list[str]:
    """The console script a user runs: ``--flatsat PATH`` (e.g. from a venv made with a plain ``pip install .``,
    whose modules pip compiled at install) or the one beside this interpreter."""
    script = script or shutil.which("flatsat", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "emulator"]


def timed(argv: list[str]) -> tuple[float, str, float]:
    """Wall seconds, stdout and CPU seconds (user + system) of one process: on a shared machine the CPU time is
    the steadier figure (the wall time also counts the time spent waiting for a core)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    return wall, out.stdout, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def basilisk_args(config: str, duration_s: float) -> list[str]:
    """Basilisk's inputs from the flatsat config: orbit (mean altitude, inclination), panel, battery, load."""
    from bench_satellite_day import load, orbit_of, run_flatsat

    cfg, sim = load(config)
    pc = cfg.power
    area = sum(a.area_m2 for a in pc.arrays)
    eff = sum(a.area_m2 * a.efficiency for a in pc.arrays) / area
    b = pc.battery
    cap_wh = b.cells_series * b.cells_parallel * b.cell_capacity_ah * 3.6
    probe = run_flatsat(cfg, sim, 3600.0, 1.0)  # an hour for the mean load the bus drew and the orbit
    alt, inc = orbit_of(probe["sat"])
    return [str(v) for v in (alt, inc, area, eff, cap_wh, probe["mean_bus_load_w"], 1.0, duration_s, 10.0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=SINGLE)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", default="1d")
    ap.add_argument("--flatsat", help="the flatsat console script to time (default: the one beside this python); "
                                      "time an install made with a plain `pip install .`, as users have it")
    args = ap.parse_args()
    from basilisk_ref import basilisk_available

    from emulator.clock import parse_duration_s

    duration_s = parse_duration_s(args.duration)
    have_bsk, why = basilisk_available()
    if not have_bsk:
        print(f"Basilisk skipped: {why} (pip install bsk)")
    print(f"one {args.duration} run per process, 1 s steps, afap, {args.repeats} alternating runs each")
    rows = []
    for config in args.configs:
        fs_cmd = [*flatsat_cmd(args.flatsat), "run", "--config", config, "--mode", "afap", "--duration", args.duration,
                  "--seed", "1", "--quiet", "--board-url", "zmq+tcp://127.0.0.1:0",
                  "--control-url", "zmq+tcp://127.0.0.1:0"]
        bk_cmd = [sys.executable, str(ROOT / "bench" / "basilisk_ref.py"), *basilisk_args(config, duration_s)] \
            if have_bsk else None
        fs_walls, bk_walls, fs_cpus, bk_cpus = [], [], [], []
        for rep in range(args.repeats):
            wall, _, cpu = timed(fs_cmd)
            fs_walls.append(wall)
            fs_cpus.append(cpu)
            line = f"  {config} run {rep + 1}: flatsat {wall:.2f} s (CPU {cpu:.2f} s)"
            if bk_cmd:
                wall, out, cpu = timed(bk_cmd)
                bk_walls.append(wall)
                bk_cpus.append(cpu)
                line += (f", Basilisk {wall:.2f} s (CPU {cpu:.2f} s; its ExecuteSimulation "
                         f"{json.loads(out)['wall_s']:.2f} s)")
            print(line, flush=True)
        med = statistics.median
        nan = float("nan")
        rows.append((config, med(fs_walls), med(bk_walls) if bk_walls else nan, med(fs_cpus),
                     med(bk_cpus) if bk_cpus else nan))
    print("\n| config | flatsat run (whole process) | Basilisk script (whole process) | Basilisk / flatsat "
          "| CPU: flatsat, Basilisk, ratio |")
    print("| --- | --- | --- | --- | --- |")
    for config, fs_med, bk_med, fs_cpu, bk_cpu in rows:
        print(f"| {config} | {fs_med:.2f} s | {bk_med:.2f} s | {bk_med / fs_med:.2f}x "
              f"| {fs_cpu:.2f} s, {bk_cpu:.2f} s, {bk_cpu / fs_cpu:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

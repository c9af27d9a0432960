"""Benchmark: an N-satellite cluster stepped vectorised (ClusterModel) against N independent Satellite.step calls.

    .venv/bin/python bench/bench_cluster.py [--duration-s 86400] [--scale-s 1800] [--baseline-steps 60000]

1. Headline: the shipped 81-member cluster (configs/suncatcher-cluster.toml: Suncatcher's formation, the centre
   member bound to a full accelerator board, the others on the built-in policy) for a simulated day at 1 s steps,
   as fast as possible (``ClusterModel.step`` in a loop, nothing waits). Goal: >= 1000x real time.
2. Scaling: N = 1, 81 and ~810 members (formation disc radius 0, 5, 16.1), each beside N independent
   ``Satellite.step`` calls (the baseline: the same member design, one Python object per satellite, each with its
   own environment chunks) in the same run; sim-s per wall-s, us per satellite-step and the ratio.
3. Through the runtime: the 81-member cluster in an ``Emulator`` in afap mode for an hour of sim time (the bound
   member's telemetry at 1 Hz, truth at the config's rate, no links).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.config import load_config
from emulator.models.cluster import CHUNK_MEMBER_SAMPLES, ClusterModel, disc_lattice
from emulator.models.environment import Environment
from emulator.models.satellite import Satellite
from emulator.runtime import Emulator

NS = 1_000_000_000
CONFIG = ROOT / "configs" / "suncatcher-cluster.toml"


def radius_for(n: int) -> float:
    """Smallest disc radius whose lattice has at least n points."""
    r2 = 0
    while len(disc_lattice(math.sqrt(r2))) < n:
        r2 += 1
    return math.sqrt(r2)


def run_cluster(radius: float, sim_s: int, bind: list[int] | None = None) -> dict[str, float]:
    lc = load_config(CONFIG, overrides={"cluster.formation.disc_radius": radius, "cluster.members": [],
                                        "cluster.bind.members": bind or []})
    n = len(disc_lattice(radius))
    m = ClusterModel.from_config(lc, chunk_steps=min(sim_s, max(60, min(3600, CHUNK_MEMBER_SAMPLES // n))))
    step = m.step
    t0 = time.perf_counter()
    for k in range(sim_s):
        step(k * NS, NS)
    wall = time.perf_counter() - t0
    return {"n": m.n, "wall_s": wall, "sim_s": sim_s, "rate": sim_s / wall, "us_per_sat_step": wall / (sim_s * m.n) * 1e6,
            "soc_mean": float(m.power.soc.mean()), "units": float(m.accel.units_done.sum())}


def run_baseline(n: int, sim_s: int) -> dict[str, float]:
    lc = load_config(CONFIG)
    sat_cfg = lc.model.satellite
    epoch = lc.run.sim.epoch_utc
    env = Environment(sat_cfg.orbit, sat_cfg.environment, epoch)  # shared object; every satellite makes its own chunks
    chunk = min(sim_s, 3600)  # chunks no longer than the run (as the cluster's): no environment computed in vain
    sats = [Satellite(sat_cfg, epoch_utc=epoch, seed=k, environment=env, chunk_steps=chunk) for k in range(n)]
    steps = [s.step for s in sats]
    t0 = time.perf_counter()
    for k in range(sim_s):
        t = k * NS
        for step in steps:
            step(t, NS)
    wall = time.perf_counter() - t0
    return {"n": n, "wall_s": wall, "sim_s": sim_s, "rate": sim_s / wall, "us_per_sat_step": wall / (sim_s * n) * 1e6}


#: a board-plane subscriber in its own process, reading everything (as a bound board's telemetry reader does)
_SUBSCRIBER = """
import sys, zmq
from emulator.transports import parse_transport_url
from emulator.transports.zmq import endpoints
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.connect(endpoints(parse_transport_url(sys.argv[1]))[0])
n = 0
while s.poll(5000):
    s.recv()
    n += 1
print(n)
"""


async def run_runtime(sim_s: int) -> dict[str, float]:
    """The cluster in the runtime, afap, with a subscriber on the board plane reading every message (the bound
    member's telemetry at 1 Hz), beside the same model's physics alone for the same sim time."""
    lc = load_config(CONFIG)
    m = ClusterModel.from_config(lc)
    t0, c0 = time.perf_counter(), time.thread_time()
    for k in range(sim_s):
        m.step(k * NS, NS)
    physics_wall, physics_cpu = time.perf_counter() - t0, time.thread_time() - c0
    m = ClusterModel.from_config(lc)
    async with Emulator(m, lc.run, board_url="zmq+tcp://127.0.0.1:0", control_url=None, record_path=None) as emu:
        sub = await asyncio.create_subprocess_exec(sys.executable, "-c", _SUBSCRIBER, emu.board_url, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE)
        while not emu.board_link.wants("sim.clock"):  # the subscription reached the emulator
            await asyncio.sleep(0.05)
        t0, c0 = time.perf_counter(), time.thread_time()
        await emu.run_for(sim_s)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        out, _ = await asyncio.wait_for(sub.communicate(), 60)
    received = int(out.strip() or 0)
    return {"n": m.n, "wall_s": wall, "rate": sim_s / wall, "published": emu.stats.published, "received": received,
            "physics_rate": sim_s / physics_wall, "cpu_ratio": physics_cpu / cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=int, default=86400, help="headline run, sim seconds (81 members)")
    ap.add_argument("--scale-s", type=int, default=1800, help="sim seconds of each cluster scaling run")
    ap.add_argument("--baseline-steps", type=int, default=60000,
                    help="satellite-steps of each baseline run (its sim time is this / N, at least 60 s)")
    ap.add_argument("--runtime-s", type=int, default=3600, help="sim seconds through the Emulator (0: skip)")
    ap.add_argument("--runtime-only", action="store_true", help="only the run through the Emulator")
    args = ap.parse_args()
    if not args.runtime_only:
        run_physics(args)
    if args.runtime_s > 0:
        r = asyncio.run(run_runtime(args.runtime_s))
        print(f"\nthrough the runtime (Emulator afap, {r['n']} members, a subscriber reading the bound member's "
              f"telemetry at 1 Hz, {r['received']} messages): {args.runtime_s} s in {r['wall_s']:.1f} s = "
              f"{r['rate']:,.0f} sim-s/wall-s vs {r['physics_rate']:,.0f} for its physics alone in the same run "
              f"(ratio {r['rate'] / r['physics_rate']:.2f}; by the event loop's thread's CPU time, steadier on a "
              f"shared machine: {r['cpu_ratio']:.2f}), {r['published']} messages")
    return 0


def run_physics(args: argparse.Namespace) -> None:
    head = run_cluster(5.0, args.duration_s, bind=[40])
    print(f"headline: {head['n']} members (centre bound to a full board), {args.duration_s} s at 1 s steps, afap: "
          f"{head['wall_s']:.1f} s wall = {head['rate']:,.0f} sim-s/wall-s ({head['us_per_sat_step']:.2f} us per "
          f"satellite-step); goal >= 1000x: {'met' if head['rate'] >= 1000 else 'NOT met'}")

    print(f"\nscaling ({args.scale_s} s of sim time per cluster run; baseline = N independent Satellite.step calls):")
    print(f"{'N':>5} | {'cluster sim-s/wall-s':>20} | {'us/sat-step':>11} | {'baseline sim-s/wall-s':>21} | "
          f"{'us/sat-step':>11} | {'speed-up':>8}")
    for target in (1, 81, 810):
        radius = radius_for(target)
        c = run_cluster(radius, args.scale_s)
        n = c["n"]
        b = run_baseline(n, max(60, args.baseline_steps // n))
        print(f"{n:>5} | {c['rate']:>20,.0f} | {c['us_per_sat_step']:>11.2f} | {b['rate']:>21,.0f} | "
              f"{b['us_per_sat_step']:>11.2f} | {b['us_per_sat_step'] / c['us_per_sat_step']:>7.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: an N-satellite cluster stepped vectorised (ClusterModel) against N independent Satellite.step calls.

    .venv/bin/python bench/bench_cluster.py [--duration-s 86400] [--scale-s 1800] [--baseline-steps 60000]

1. Headline: the shipped 81-member cluster (configs/suncatcher-cluster.toml: Suncatcher's formation, the centre
   member bound to a full accelerator board, the others on the built-in policy) for a simulated day at 1 s steps,
   as fast as possible (``ClusterModel.step`` in a loop, nothing waits). Goal: >= 1000x real time.
2. Scaling: N = 1, 81 and ~810 members (formation disc radius 0, 5, 16.1), each beside N independent
   ``Satellite.step`` calls (the baseline: the same member design, one Python object per satellite, each with its
   own environment chunks) in the same run; sim-s per wall-s, us per satellite-step and the ratio.
3. Through the runtime: the 81-member cluster in an ``Emulator`` in afap mode for an hour of sim time (the bound
   member's telemetry at 1 Hz to a subscriber in another process, no control plane, no recorder), in segments
   alternating with the same span of its physics alone (a second ``ClusterModel``); the median of the segments'
   ratios. Goal: >= 0.8x.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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


async def run_runtime(sim_s: int, segment_s: int) -> dict[str, Any]:
    """The cluster in the runtime, afap, with a subscriber on the board plane reading every message (the bound
    member's telemetry at 1 Hz), beside the same model's physics alone over the same sim time: ``sim_s`` in
    segments of ``segment_s``, each run alone (``ClusterModel.step`` in a loop, a second model) and then through the
    runtime, alternating, so that both see the same machine (a shared machine's load comes and goes in seconds).
    Per pair: physics-alone wall / runtime wall (and the same by the event loop's thread's CPU time); the median of
    the pairs is the figure."""
    lc = load_config(CONFIG)
    alone = ClusterModel.from_config(lc)
    step = alone.step
    m = ClusterModel.from_config(lc)
    # per segment: physics wall, runtime wall, physics CPU, runtime CPU (s), steps
    pairs: list[tuple[float, float, float, float, int]] = []
    async with Emulator(m, lc.run, board_url="zmq+tcp://127.0.0.1:0", control_url=None, record_path=None) as emu:
        sub = await asyncio.create_subprocess_exec(sys.executable, "-c", _SUBSCRIBER, emu.board_url, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE)
        while not emu.board_link.wants("sim.clock"):  # the subscription reached the emulator
            await asyncio.sleep(0.05)
        t_s = 0
        while t_s < sim_s:
            n = min(segment_s, sim_s - t_s)
            t0, c0 = time.perf_counter(), time.thread_time()
            for k in range(t_s, t_s + n):
                step(k * NS, NS)
            t1, c1 = time.perf_counter(), time.thread_time()
            await emu.run_for(n)
            t2, c2 = time.perf_counter(), time.thread_time()
            pairs.append((t1 - t0, t2 - t1, c1 - c0, c2 - c1, n))
            t_s += n
        out, _ = await asyncio.wait_for(sub.communicate(), 60)
    physics_wall, wall = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return {"n": m.n, "wall_s": wall, "rate": sim_s / wall, "physics_rate": sim_s / physics_wall,
            "published": emu.stats.published, "received": int(out.strip() or 0), "pairs": len(pairs),
            "ratio": statistics.median(p[0] / p[1] for p in pairs),
            "cpu_ratio": statistics.median(p[2] / p[3] for p in pairs),
            "ratio_range": (min(p[0] / p[1] for p in pairs), max(p[0] / p[1] for p in pairs)),
            "physics_us": statistics.median(p[0] / p[4] for p in pairs) * 1e6,
            "beyond_us": statistics.median((p[1] - p[0]) / p[4] for p in pairs) * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=int, default=86400, help="headline run, sim seconds (81 members)")
    ap.add_argument("--scale-s", type=int, default=1800, help="sim seconds of each cluster scaling run")
    ap.add_argument("--baseline-steps", type=int, default=60000,
                    help="satellite-steps of each baseline run (its sim time is this / N, at least 60 s)")
    ap.add_argument("--runtime-s", type=int, default=3600, help="sim seconds through the Emulator (0: skip)")
    ap.add_argument("--segment-s", type=int, default=300,
                    help="sim seconds of each segment of the runtime run (physics alone and runtime alternate)")
    ap.add_argument("--runtime-only", action="store_true", help="only the run through the Emulator")
    args = ap.parse_args()
    if not args.runtime_only:
        run_physics(args)
    if args.runtime_s > 0:
        r = asyncio.run(run_runtime(args.runtime_s, args.segment_s))
        lo, hi = r["ratio_range"]
        print(f"\nthrough the runtime (Emulator afap, {r['n']} members, a subscriber reading the bound member's "
              f"telemetry at 1 Hz, {r['received']} messages): {args.runtime_s} s in {r['wall_s']:.1f} s = "
              f"{r['rate']:,.0f} sim-s/wall-s vs {r['physics_rate']:,.0f} for its physics alone, in {r['pairs']} "
              f"alternating segments of {args.segment_s} s: ratio {r['ratio']:.2f} (median of the segments, "
              f"{lo:.2f}..{hi:.2f}; by the event loop's thread's CPU time, steadier on a shared machine: "
              f"{r['cpu_ratio']:.2f}); the runtime's cost beyond the physics {r['beyond_us']:.0f} us per step of "
              f"{r['physics_us']:.0f} us; goal >= 0.8: {'met' if r['ratio'] >= 0.8 else 'NOT met'}")
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

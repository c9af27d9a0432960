"""Benchmark: one simulated day at 1 s of the environment (position, Sun, shadow, fluxes, radiation).

Compares, in the same run: ``Environment.chunk()`` over 86,400 samples, the same computed point by point with
``Environment.sample()`` (timed on every 10th second and scaled to the day), and Basilisk (orbit + eclipse +
solar panel + battery + sink, 86,400 steps of 1 s) when ``bsk`` is importable. Run:
``.venv/bin/python bench/bench_environment.py``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from basilisk_ref import basilisk_available, basilisk_day

from emulator.models.environment import Environment, EnvironmentConfig
from emulator.models.orbit import OrbitConfig

DAY_S = 86_400
NS = 1_000_000_000
REPEATS = 3
SAMPLE_STRIDE = 10  # sample() on every 10th second (8,640 calls), scaled x10


def main() -> int:
    epoch = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
    env = Environment(OrbitConfig(alt_km=650.0, ltan_h="18:00"), EnvironmentConfig(), epoch)
    env.chunk(0, NS, 100)  # warm-up
    chunk_s = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        c = env.chunk(0, NS, DAY_S)
        chunk_s.append(time.perf_counter() - t0)
    best_chunk = min(chunk_s)
    n_pts = DAY_S // SAMPLE_STRIDE
    t0 = time.perf_counter()
    for k in range(n_pts):
        env.sample(k * SAMPLE_STRIDE * NS)
    sample_day_s = (time.perf_counter() - t0) * SAMPLE_STRIDE
    print(f"environment, 650 km dawn-dusk SSO, {DAY_S} samples at 1 s ({len(c)} in the chunk)")
    print(f"  chunk():  {best_chunk * 1e3:8.1f} ms/day   (best of {REPEATS}; "
          f"{DAY_S / best_chunk:,.0f} sim-s per wall-s)")
    print(f"  sample(): {sample_day_s:8.1f} s/day    ({n_pts} calls x {SAMPLE_STRIDE}; "
          f"{sample_day_s / DAY_S * 1e6:.0f} us per call)")
    print(f"  chunk() is {sample_day_s / best_chunk:,.0f}x faster than sample() point by point")
    ok, why = basilisk_available()
    if not ok:
        print(f"  Basilisk: skipped ({why})")
        return 0
    ref = basilisk_day(alt_km=650.0, inc_deg=97.99, panel_area_m2=1.0, panel_efficiency=0.3,
                       battery_capacity_wh=100.0, load_w=150.0, step_s=1.0, duration_s=float(DAY_S))
    print(f"  Basilisk (orbit + eclipse + panel + battery + sink, 1 s steps): {ref['wall_s']:.2f} s/day "
          f"({ref['sim_s'] / ref['wall_s']:,.0f} sim-s per wall-s)")
    print(f"  chunk() / Basilisk wall time: {best_chunk / ref['wall_s']:.3f} "
          f"(chunk() is {ref['wall_s'] / best_chunk:.1f}x faster for the environment part)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

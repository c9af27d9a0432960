"""Benchmark: cost of the accelerator board + radiation step per simulated second, and its share of a satellite step.

Run: ``.venv/bin/python bench/bench_accelerator.py``. Cases, 1 s steps:

* idle board in orbit (150 rad/yr, nothing happens: the lean path),
* busy board (a job queue running, leakage and dynamic power every step),
* a beam-like 1e5x radiation campaign (events every few steps: SEUs, SDCs, hangs reset, latch-ups power-cycled),
* the whole Satellite (configs/suncatcher-proto.toml) with the real board, and beside it the same Satellite with a
  null board (no accelerator, no radiation): the baseline. The ratio printed is accelerator cost / satellite step
  without it. If emulator.models.satellite cannot be built, the absolute figures are printed with the reason.

Median of 5 repeats; wall-clock figures vary by machine, the ratio less so.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emulator.errors import EmulatorError
from emulator.models.accelerator import AcceleratorBoard, AcceleratorConfig, BoardState, JobSubmit, ResetCmd
from emulator.models.base import Interface
from emulator.models.radiation import RadiationConfig

NS = 1_000_000_000
ORBIT_RAD_S = 150.0 / (365.25 * 86400)   # physics-sources.md §1: ~150 rad(Si)/yr behind ~10 mm Al
REPEATS = 5
#: a beam-like campaign: 1e5 x the orbit rates gives ~0.25 single events per 1 s step on 4 chips
CAMPAIGN_SCALE = 1e5


def _board(scale: float = 1.0) -> AcceleratorBoard:
    return AcceleratorBoard(AcceleratorConfig(), RadiationConfig(scale=scale), np.random.default_rng(1))


def bench_board(case: str, steps: int) -> float:
    """Median wall microseconds per 1 s step of the board alone."""
    times = []
    for _ in range(REPEATS):
        b = _board(CAMPAIGN_SCALE if case == "campaign" else 1.0)
        t = 0
        for _ in range(25):  # boot
            b.step(t, 1.0, supply_v=12.0, die_temp_degc=45.0, dose_rate_rad_s=ORBIT_RAD_S, rad_flux_factor=1.0)
            t += NS
        if case in ("busy", "campaign"):
            b.cmd_job_submit(JobSubmit(kind="training", size=10_000_000))
        step = b.step
        t0 = time.perf_counter()
        if case == "campaign":
            for _ in range(steps):
                st = b.state
                if st is BoardState.HUNG:
                    b.cmd_reset(ResetCmd())
                elif st is BoardState.IDLE:
                    b.cmd_job_submit(JobSubmit(kind="inference", size=100_000))
                step(t, 1.0, supply_v=0.0 if st is BoardState.LATCHED_UP else 12.0, die_temp_degc=45.0,
                     dose_rate_rad_s=ORBIT_RAD_S, rad_flux_factor=1.0)
                b.drain_events()
                t += NS
        else:
            for _ in range(steps):
                step(t, 1.0, supply_v=12.0, die_temp_degc=45.0, dose_rate_rad_s=ORBIT_RAD_S, rad_flux_factor=1.0)
                t += NS
        times.append((time.perf_counter() - t0) / steps * 1e6)
        if case == "campaign":
            events = sum(v["total"] for v in b.truth()["radiation"]["counts"].values())
            bench_board.events_per_step = events / steps  # type: ignore[attr-defined]
    return statistics.median(times)


class NullBoard:
    """No accelerator and no radiation: the baseline satellite."""

    load_w = 0.0
    heat_w = 0.0

    def step(self, t_ns: int, dt_s: float, **_: Any) -> None:
        return None

    def interface(self) -> Interface:
        return Interface()

    def truth(self) -> dict[str, Any]:
        return {}

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        return []


def bench_satellite(steps: int) -> tuple[float, float]:
    """Median wall microseconds per 1 s satellite step: (with the board, with the null board)."""
    from emulator.config import load_config
    from emulator.models.satellite import Satellite

    cfg = load_config(REPO / "configs" / "suncatcher-proto.toml")
    epoch = cfg.run.sim.epoch_utc
    with_b, without = [], []
    for _ in range(REPEATS):
        for acc, out in ((None, with_b), (NullBoard(), without)):
            sat = Satellite(cfg.satellite, epoch_utc=epoch, seed=1, accelerator=acc, chunk_steps=steps)
            sat.step(0, NS)  # the environment chunk is computed here, outside the timing
            t = NS
            t0 = time.perf_counter()
            for _ in range(steps):
                sat.step(t, NS)
                t += NS
            out.append((time.perf_counter() - t0) / steps * 1e6)
            sat.drain_events()
    return statistics.median(with_b), statistics.median(without)


def main() -> int:
    idle = bench_board("idle", 100_000)
    busy = bench_board("busy", 100_000)
    camp = bench_board("campaign", 20_000)
    eps = getattr(bench_board, "events_per_step", 0.0)
    print("accelerator + radiation step, 1 s steps (median of 5)")
    print(f"  idle, orbit dose        {idle:7.2f} us/step  ({1e6 / idle:,.0f} sim-s per wall-s)")
    print(f"  busy, orbit dose        {busy:7.2f} us/step  ({1e6 / busy:,.0f} sim-s per wall-s)")
    print(f"  1e5x campaign           {camp:7.2f} us/step  ({eps:.3f} radiation events per step)")
    try:
        sat_with, sat_without = bench_satellite(3000)
    except (ImportError, AttributeError, TypeError, ValueError, OSError, EmulatorError) as exc:
        # the satellite belongs to another module; report why the ratio is missing
        print(f"satellite ratio unavailable: emulator.models.satellite could not run ({type(exc).__name__}: {exc})")
        return 0
    share = sat_with - sat_without
    print("satellite step (configs/suncatcher-proto.toml), 1 s steps")
    print(f"  without accelerator     {sat_without:7.2f} us/step  (baseline)")
    print(f"  with accelerator        {sat_with:7.2f} us/step")
    print(f"  accelerator share       {share:7.2f} us/step")
    print(f"ratio accelerator (busy, alone) / satellite step without it: {busy / sat_without:.3f}")
    print(f"ratio satellite with / without accelerator:                  {sat_with / sat_without:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

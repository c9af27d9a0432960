"""Benchmark: one satellite, a simulated day at 1 s steps: flatsat Satellite.step against Basilisk in the same run.

    .venv/bin/python bench/bench_satellite_day.py [config-name-or-path] [--duration-s 86400] [--step-s 1]

flatsat runs the whole satellite (environment chunks, power bus, thermal network, sensors, accelerator board);
Basilisk (bench/basilisk_ref.py: orbit + eclipse + one panel + battery + constant load, C++ modules behind
Python) runs with the same orbit, panel area and efficiency, battery capacity and the mean load flatsat drew.
The two alternate ``--repeats`` times (default 5; the machine may be shared, so single runs are noisy); prints
every run, the median sim-s per wall-s of both, the ratio of the medians, and both end states of charge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from emulator.models.satellite import Satellite, SatelliteConfig

NS = 1_000_000_000


def load(name: str) -> tuple[SatelliteConfig, dict]:
    path = Path(name)
    if not path.exists():
        path = ROOT / "configs" / f"{name}.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    sim = raw.pop("sim", {})
    raw.pop("links", None)
    for extra in ("telemetry", "record", "bench"):
        raw.pop(extra, None)
    return SatelliteConfig.model_validate(raw), sim


def run_flatsat(cfg: SatelliteConfig, sim: dict, duration_s: float, step_s: float, sensors: bool = False) -> dict:
    """Step a day and sample the state every step, as Basilisk's recorder does: state of charge, bus voltage,
    battery current, array power and every node temperature (``sensors``: also read every sensor the board
    sees, i.e. the EPS, thermal and sun telemetry payloads, once per step)."""
    epoch = dt.datetime.fromisoformat(str(sim.get("epoch_utc", "2026-06-21T00:00:00Z")))
    sat = Satellite(cfg, epoch_utc=epoch, seed=int(sim.get("seed", 1)), step_s=step_s)
    dt_ns = round(step_s * NS)
    n = round(duration_s / step_s)
    step = sat.step
    pw = sat.power
    th = sat.thermal
    samples: list[tuple] = []
    record = samples.append
    read_eps, read_thermal, read_sun = sat.read_eps, sat.read_thermal, sat.read_sun
    t0 = time.perf_counter()
    if sensors:
        for k in range(n):
            step(k * dt_ns, dt_ns)
            record((pw.soc, pw.bus_v, pw.battery_a, pw.array_total_w, th.T))  # th.T: a new array every step
            # the payloads go where telemetry goes (encoded and sent); kept here, 86,400 dicts would bring the
            # cyclic garbage collector into the timing
            read_eps()
            read_thermal()
            read_sun()
    else:
        for k in range(n):
            step(k * dt_ns, dt_ns)
            record((pw.soc, pw.bus_v, pw.battery_a, pw.array_total_w, th.T))
    wall = time.perf_counter() - t0
    assert len(samples) == n and samples[-1][0] == pw.soc
    led = pw.ledger
    return {"wall_s": wall, "sim_s": n * step_s, "final_soc": pw.soc, "min_soc": min(x[0] for x in samples),
            "mean_bus_load_w": (led.load_j + led.converter_loss_j) / (n * step_s), "sat": sat}


def orbit_of(sat: Satellite) -> tuple[float, float]:
    """Mean altitude and inclination of the flatsat orbit (from the environment's own samples)."""
    c = sat.env.chunk(0, 10 * NS, 600)
    alt = float(np.mean(c.alt_km))
    r = np.asarray(c.r_eci_km)
    h = np.cross(r[0], r[1])
    inc = float(np.degrees(np.arccos(h[2] / np.linalg.norm(h))))
    return alt, inc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="suncatcher-proto")
    ap.add_argument("--duration-s", type=float, default=86400.0)
    ap.add_argument("--step-s", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs of each, alternating (medians are reported)")
    ap.add_argument("--no-sensors", action="store_true", help="skip the run that also reads every sensor each step")
    args = ap.parse_args()
    cfg, sim = load(args.config)
    pc = cfg.power
    area = sum(a.area_m2 for a in pc.arrays)
    eff = sum(a.area_m2 * a.efficiency for a in pc.arrays) / area
    b = pc.battery
    cap_wh = b.cells_series * b.cells_parallel * b.cell_capacity_ah * 3.6  # 3.6 V nominal per cell
    steps = args.duration_s / args.step_s
    print(f"config {cfg.name!r}: {args.duration_s:g} s at {args.step_s:g} s steps, {args.repeats} runs of each")

    try:
        import Basilisk  # noqa: F401
        from basilisk_ref import basilisk_day
    except ImportError as exc:
        basilisk_day = None
        print(f"Basilisk skipped: {exc} (pip install bsk, and bench/basilisk_ref.py from the orbit helper)")
    fs_rates: list[float] = []
    fss_rates: list[float] = []
    bk_rates: list[float] = []
    fs = fss = bk = None
    alt = inc = 0.0
    for rep in range(max(1, args.repeats)):
        fs = run_flatsat(cfg, sim, args.duration_s, args.step_s)
        fs_rates.append(fs["sim_s"] / fs["wall_s"])
        line = f"  run {rep + 1}: flatsat {fs_rates[-1]:,.0f} sim-s/wall-s ({fs['wall_s'] / steps * 1e6:.1f} us/step)"
        if not args.no_sensors:
            fss = run_flatsat(cfg, sim, args.duration_s, args.step_s, sensors=True)
            fss_rates.append(fss["sim_s"] / fss["wall_s"])
            line += f", with sensors read {fss_rates[-1]:,.0f} ({fss['wall_s'] / steps * 1e6:.1f} us/step)"
        if basilisk_day is not None:
            if rep == 0:
                alt, inc = orbit_of(fs["sat"])
            bk = basilisk_day(alt_km=alt, inc_deg=inc, panel_area_m2=area, panel_efficiency=eff,
                              battery_capacity_wh=cap_wh, load_w=fs["mean_bus_load_w"], step_s=args.step_s,
                              duration_s=args.duration_s)
            bk_rates.append(bk["sim_s"] / bk["wall_s"])
            line += f", Basilisk {bk_rates[-1]:,.0f} ({bk['wall_s'] / steps * 1e6:.1f} us/step)"
        print(line, flush=True)
    assert fs is not None
    fs_rate = statistics.median(fs_rates)
    print(f"flatsat  full satellite, state sampled every step: median {fs_rate:,.0f} sim-s/wall-s "
          f"({1e6 * args.step_s / fs_rate:.1f} us/step; best {max(fs_rates):,.0f}), end SoC {fs['final_soc']:.3f} "
          f"(min {fs['min_soc']:.3f}), mean bus load {fs['mean_bus_load_w']:.1f} W")
    if fss is not None:
        fss_rate = statistics.median(fss_rates)
        print(f"flatsat  same, and every sensor read every step (EPS, thermal, sun telemetry payloads): median "
              f"{fss_rate:,.0f} sim-s/wall-s ({1e6 * args.step_s / fss_rate:.1f} us/step)")
    if bk is None:
        return 0
    bk_rate = statistics.median(bk_rates)
    print(f"Basilisk orbit+eclipse+panel+battery, battery recorded every step: median {bk_rate:,.0f} sim-s/wall-s "
          f"({1e6 * args.step_s / bk_rate:.1f} us/step; best {max(bk_rates):,.0f}), end SoC "
          f"{bk['final_soc']:.3f} (min {bk['min_soc']:.3f}; alt {alt:.0f} km, inc {inc:.1f} deg, panel {area:.2f} m2, "
          f"battery {cap_wh:.0f} Wh)")
    print(f"ratio flatsat / Basilisk (medians): {fs_rate / bk_rate:.2f}x"
          + (f"; with every sensor read every step: {fss_rate / bk_rate:.2f}x" if fss is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

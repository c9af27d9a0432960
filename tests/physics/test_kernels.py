"""The physics kernels written once for floats (ops.SCALAR, the single satellite) and arrays (ops.ARRAY, the fleet):
called element by element with floats and once with arrays of the same values, they give the same bits."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.models.accelerator import (
    AcceleratorConfig,
    board_power_w,
    busy_utilisation,
    dose_step,
    dvfs_tables,
    leakage_k_per_degc,
    operating_point,
    thermal_shutdown,
    throttle_level,
)
from emulator.models.power_kernels import ARRAY, SCALAR
from emulator.models.satellite import loss_heat_w
from emulator.models.thermal import heater_demand_w, thermostat_on

CFG = AcceleratorConfig()
temps = st.floats(-40.0, 120.0, allow_nan=False)


def bits(scalar: list[float], array: np.ndarray) -> None:
    """The scalar results, one per element, are the array result exactly (same IEEE operations in the same order)."""
    assert len(scalar) == len(array)
    for i, (a, b) in enumerate(zip(scalar, array.tolist(), strict=True)):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"element {i}: {a!r} != {b!r}"
        assert type(a) is type(b) or {type(a), type(b)} <= {int, float, bool}, (type(a), type(b))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(temps, st.integers(0, 2)), min_size=1, max_size=20))
def test_throttle_and_shutdown(cases: list[tuple[float, int]]) -> None:
    t = np.array([c[0] for c in cases])
    cur = np.array([c[1] for c in cases])
    bits([throttle_level(a, b, CFG, SCALAR) for a, b in cases], throttle_level(t, cur, CFG, ARRAY))
    bits([thermal_shutdown(a, CFG) for a, _ in cases], thermal_shutdown(t, CFG))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(CFG.dvfs) - 1), st.integers(0, 2)), min_size=1, max_size=20))
def test_operating_point(cases: list[tuple[int, int]]) -> None:
    tables = dvfs_tables(CFG)
    arrays = [np.array(x) for x in tables]
    sw_cap = [lv.name for lv in CFG.dvfs].index(CFG.sw_slowdown_level)
    lv = np.array([c[0] for c in cases])
    th = np.array([c[1] for c in cases])
    out = operating_point(lv, th, sw_cap, CFG.hw_throttle_duty, *arrays, ARRAY)
    for j in range(3):
        bits([operating_point(a, b, sw_cap, CFG.hw_throttle_duty, *tables, SCALAR)[j] for a, b in cases], out[j])
    # the software slowdown caps the clock, the hardware one halves it on top
    top = len(CFG.dvfs) - 1
    f = [operating_point(top, k, sw_cap, CFG.hw_throttle_duty, *tables, SCALAR)[0] for k in range(3)]
    assert f[0] == tables[0][top] and f[1] == tables[0][sw_cap] and f[2] == tables[0][sw_cap] * CFG.hw_throttle_duty


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(temps, st.floats(0, 1), st.floats(0, 1e6), st.floats(0, 1e-2), st.floats(0.5, 50),
                          st.floats(0.01, 100)), min_size=1, max_size=20),
       st.booleans(), st.booleans())
def test_power_dose_and_utilisation(cases: list[tuple[float, ...]], flux_weight: bool, scale_dose: bool) -> None:
    cols = [np.array(c) for c in zip(*cases, strict=True)]
    t, u, dose, rate, flux, scale = cols
    leak_k = leakage_k_per_degc(CFG)
    _, dyn_w, leak_w = dvfs_tables(CFG)
    bits([board_power_w(CFG, leak_w[-1], leak_k, c[0], 1e-4, c[2], c[1], dyn_w[-1], SCALAR.exp) for c in cases],
         board_power_w(CFG, leak_w[-1], leak_k, t, 1e-4, dose, u, dyn_w[-1], ARRAY.exp))
    for j in range(2):
        bits([dose_step(c[3], 1.0, c[4], c[5], flux_weight, scale_dose, SCALAR)[j] for c in cases],
             dose_step(rate, 1.0, flux, scale, flux_weight, scale_dose, ARRAY)[j])
    bits([busy_utilisation(c[1], CFG.idle_utilisation) for c in cases], busy_utilisation(u, CFG.idle_utilisation))
    # the leakage doubles every leakage_doubling_degc
    p0 = board_power_w(CFG, 10.0, leak_k, CFG.leakage_ref_degc, 0.0, 0.0, 0.0, 0.0, SCALAR.exp)
    p1 = board_power_w(CFG, 10.0, leak_k, CFG.leakage_ref_degc + CFG.leakage_doubling_degc, 0.0, 0.0, 0.0, 0.0,
                       SCALAR.exp)
    assert math.isclose(p1 - CFG.board_base_w, 2.0 * (p0 - CFG.board_base_w), rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(250.0, 320.0), st.booleans(), st.integers(0, 2), st.floats(0, 50)), min_size=1,
                max_size=20))
def test_thermostat_and_heater_demand(cases: list[tuple[float, bool, int, float]]) -> None:
    lo, hi = 278.15, 283.15
    t = np.array([c[0] for c in cases])
    on = np.array([c[1] for c in cases])
    mode = np.array([c[2] for c in cases])
    new = thermostat_on(t, on, mode == 0, mode == 1, lo, hi, ARRAY)
    scalar = [thermostat_on(a, b, m == 0, m == 1, lo, hi, SCALAR) for a, b, m, _ in cases]
    bits(scalar, new)
    for (temp, was, m, _), now in zip(cases, scalar, strict=True):  # the thermostat's meaning, not only agreement
        assert now == (m == 1 if m else (True if temp < lo else False if temp > hi else was))
    power = np.array([c[3] for c in cases])
    bits([heater_demand_w(a, p, SCALAR) for a, (*_, p) in zip(scalar, cases, strict=True)],
         heater_demand_w(new, power, ARRAY))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-30, 30), st.floats(0.001, 1), st.floats(0, 2000), st.floats(0.5, 1)),
                min_size=1, max_size=20))
def test_loss_heat(cases: list[tuple[float, float, float, float]]) -> None:
    cols = [np.array(c) for c in zip(*cases, strict=True)]
    out = loss_heat_w(*cols)
    for j in range(2):
        bits([loss_heat_w(*c)[j] for c in cases], out[j])


def test_the_inlined_single_steps_are_the_methods_as_written() -> None:
    """AcceleratorBoard.advance and Satellite.step run with the kernels written in (power_kernels.inline_kernels);
    ``__wrapped__`` is the method as written, calling them. Both give the same bits through an orbit with jobs,
    heat, a brown-out, radiation and the TID threshold."""
    import datetime as dt
    import tomllib
    from pathlib import Path

    from emulator.models.accelerator import AcceleratorBoard, JobSubmit
    from emulator.models.radiation import RadiationConfig
    from emulator.models.satellite import Satellite, SatelliteConfig

    rad = RadiationConfig(tid_degraded_krad=0.001, scale_dose=True)
    boards = [AcceleratorBoard(CFG, rad, np.random.default_rng(7)) for _ in range(2)]
    steps = [boards[0].advance, lambda *a: type(boards[1]).advance.__wrapped__(boards[1], *a)]
    throttled = False
    for k in range(400):
        temp = 40.0 + 50.0 * math.sin(k / 40.0) ** 2  # through both slowdowns, below the shutdown
        supply = 3.0 if 150 <= k < 153 else 12.0
        for b, step in zip(boards, steps, strict=True):
            if b.state.value in ("idle", "busy", "throttled") and not b.queue:
                b.cmd_job_submit(JobSubmit(kind="inference", size=2000))
            step(k * 10**9, 1.0, supply, temp, 1e-2, 3.0)
        a, b = boards
        throttled = throttled or a.throttle == 2
        assert (a.state, a.load_w, a.utilisation, a.rad.dose_rad, a.exposure_rad, a.throttle) == (
            b.state, b.load_w, b.utilisation, b.rad.dose_rad, b.exposure_rad, b.throttle), k
    assert throttled and boards[0].rad.degraded and boards[0].jobs_done > 0 and boards[0].power_offs >= 1

    root = Path(__file__).resolve().parents[2]
    raw = tomllib.loads((root / "configs" / "suncatcher-proto.toml").read_text(encoding="utf-8"))
    for key in ("sim", "links", "telemetry", "record", "bench"):
        raw.pop(key, None)
    cfg = SatelliteConfig.model_validate(raw)
    epoch = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
    sats = [Satellite(cfg, epoch_utc=epoch, seed=3) for _ in range(2)]
    for k in range(3000):
        sats[0].step(k * 10**9, 10**9)
        Satellite.step.__wrapped__(sats[1], k * 10**9, 10**9)
    assert sats[0].thermal.T.tolist() == sats[1].thermal.T.tolist()
    assert sats[0].power.soc == sats[1].power.soc

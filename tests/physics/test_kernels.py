"""The physics kernels written once for floats (ops.SCALAR, the single satellite) and arrays (ops.ARRAY, the fleet):
called element by element with floats and once with arrays of the same values, they give the same bits."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.models.accelerator import (
    LEGAL,
    S_BOOTING,
    S_BUSY,
    S_FAILED,
    S_HUNG,
    S_LATCHED,
    S_OFF,
    STATE_FLOAT,
    STATE_NAMES,
    STATES,
    AcceleratorBoard,
    AcceleratorConfig,
    BoardState,
    board_power_w,
    boot_done_state,
    busy_utilisation,
    can_reset,
    dose_step,
    dvfs_tables,
    latch_damaged,
    leakage_k_per_degc,
    operating_point,
    see_outcome,
    shuts_down,
    supply_state,
    thermal_shutdown,
    throttle_level,
    throttled_state,
    work_state,
)
from emulator.models.cluster import AcceleratorArrays
from emulator.models.power_kernels import ARRAY, SCALAR
from emulator.models.radiation import RadiationConfig
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


# -- the accelerator's state machine, once -------------------------------------------------------------------------
def test_state_machine_kernels_agree_for_one_board_and_a_fleet_and_stay_legal() -> None:
    """Every combination of state, supply, slowdown, work and latch: the same state with floats and with arrays, and
    every change one the transition table allows (both boards refuse anything else)."""
    rows = [(s, g, th, w, tl) for s in range(len(STATES)) for g in (False, True) for th in (0, 1, 2)
            for w in (False, True) for tl in (False, True)]
    s, g, th, w, tl = (np.array(c) for c in zip(*rows, strict=True))
    for fn, args, cols in ((supply_state, lambda r: (r[0], r[1]), (s, g)),
                           (throttled_state, lambda r: (r[0], r[2], r[3]), (s, th, w)),
                           (work_state, lambda r: (r[0], r[3]), (s, w))):
        one = [int(fn(*args(r), SCALAR)) for r in rows]
        bits(one, np.asarray(fn(*cols, ARRAY)))
        assert one == [STATE_FLOAT[fn.__name__](*args(r)) for r in rows]  # the single board's compiled form
        for r, to in zip(rows, one, strict=True):
            assert to == r[0] or LEGAL[r[0], to], (fn.__name__, STATES[r[0]], STATES[to])
    bits([bool(shuts_down(a, b)) for a, b, _, _, _ in rows], shuts_down(s, g))
    assert [STATES[a] for a in range(len(STATES)) if shuts_down(a, True)] == [
        BoardState.BOOTING, BoardState.IDLE, BoardState.BUSY, BoardState.THROTTLED, BoardState.HUNG]
    bits([int(boot_done_state(t, SCALAR)) for t in th.tolist()], boot_done_state(th, ARRAY))
    assert [STATE_FLOAT["boot_done_state"](t) for t in (0, 1, 2)] == [boot_done_state(t, SCALAR) for t in (0, 1, 2)]
    assert [STATE_FLOAT["shuts_down"](a, b) for a, b, _, _, _ in rows] == [bool(shuts_down(a, b)) for a, b, _, _, _
                                                                           in rows]
    assert all(LEGAL[S_BOOTING, boot_done_state(t, SCALAR)] for t in (0, 1, 2))
    bits([bool(can_reset(a, b, c)) for a, c, _, _, b in rows], can_reset(s, tl, g))
    assert [STATES[a] for a in range(len(STATES)) if can_reset(a, False, True)] == [
        BoardState.BOOTING, BoardState.IDLE, BoardState.BUSY, BoardState.THROTTLED, BoardState.HUNG]
    bits([bool(latch_damaged(a, 10, 3, 7)) for a in (False, True)], latch_damaged(np.array([False, True]), 10,
                                                                                  np.array([3, 3]), 7))


def test_see_outcomes_are_legal_and_hurt_where_the_boards_count_them() -> None:
    for st_ in range(len(STATES)):
        for kind in ("seu", "mbu", "sdc", "sefi", "sel"):
            for running in (False, True):
                for reboot in (False, True):
                    out = see_outcome(kind, st_, running, reboot)
                    if st_ in (S_OFF, S_FAILED):
                        assert out is None
                        continue
                    assert out is not None
                    assert out.state is None or out.state == st_ or LEGAL[st_, out.state], (kind, STATES[st_], out)
                    assert out.hurts == (out.effect not in ("corrected", "masked"))
                    assert not out.loses_work or running
    assert see_outcome("sefi", S_HUNG, False, True).effect == "masked"
    assert see_outcome("sel", S_LATCHED, True, False).effect == "masked"
    assert see_outcome("sel", S_BUSY, True, False) == ("latchup", S_LATCHED, True)


def test_a_boot_under_the_hardware_slowdown_is_one_state_change_on_both_boards() -> None:
    """A board that finishes booting while its hardware slowdown is on goes straight to throttled: the single board
    emits one accel.state for it, the fleet's board counts one change (it counted booting -> idle -> throttled, two,
    before the boot transition was shared)."""
    cfg = AcceleratorConfig(boot_s=3.0)
    rad = RadiationConfig(rad_per_seu=None, rad_per_mbu=None, rad_per_sdc=None, rad_per_sefi=None, rad_per_sel=None)
    single = AcceleratorBoard(cfg, rad, np.random.default_rng(1))
    lv = [x.name for x in cfg.dvfs].index(cfg.default_level)
    fleet = AcceleratorArrays(cfg, rad, 1, [np.random.default_rng(2)], level=np.array([lv]),
                              initial_dose_krad=np.zeros(1), scale=np.ones(1))
    hot = cfg.hw_slowdown_degc + 1.0
    for k in range(6):
        single.step(k * 10**9, 1.0, supply_v=12.0, die_temp_degc=hot, dose_rate_rad_s=0.0, rad_flux_factor=1.0)
        fleet.step(k * 10**9, 1.0, np.full(1, 12.0), np.full(1, hot), np.zeros(1), np.ones(1), np.zeros(1),
                   np.ones(1, bool))
    changes = [(p["previous"], p["state"]) for t, p in single.drain_events() if t == "accel.state"]
    assert changes == [("off", "booting"), ("booting", "throttled")]
    assert STATE_NAMES[int(fleet.state[0])] == "throttled"
    assert int(fleet.state_changes[0]) == len(changes)

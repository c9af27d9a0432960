"""The power kernels: one source, three forms that must agree exactly.

Each kernel of ``emulator.models.power_kernels`` is called three ways on the same values: compiled for floats
(``FLOAT``, what the single satellite runs), as written with the float operations (``SCALAR``), and on numpy arrays
(``ARRAY``, what the fleet runs), every element against the float result. The float compilation rewrites the source
(``where`` into a conditional, ``&`` into ``and``, ...), so this is what proves the rewrite changes no equation.
"""

from __future__ import annotations

import inspect
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.models import power_kernels as pk
from emulator.models.power import DEFAULT_OCV_TABLE, STEP_KERNELS, PowerConfig, PowerSystem

DATA = Path(__file__).resolve().parents[1] / "physics" / "data"

SOC = [p[0] for p in DEFAULT_OCV_TABLE]
VOLTS = [p[1] for p in DEFAULT_OCV_TABLE]
CUM = pk.cumulative_ocv(SOC, VOLTS)

finite = st.floats(-1e4, 1e4, allow_nan=False)
positive = st.floats(1e-4, 1e3)
modes = st.integers(pk.OFF, pk.FULL)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def three_ways(name: str, rows: list[tuple[Any, ...]], consts: tuple[Any, ...] = (),
               array_consts: tuple[Any, ...] | None = None) -> None:
    """``rows``: argument tuples (the leading ones per element); ``consts``: trailing arguments shared by all
    (``array_consts``: as the array form takes them, e.g. tables as arrays)."""
    kernel = getattr(pk, name)
    compiled = getattr(pk.FLOAT, name)
    takes_ops = "ops" in inspect.signature(kernel).parameters
    floats = [compiled(*row, *consts) for row in rows]
    for row, out in zip(rows, floats, strict=True):
        assert _same(out, kernel(*row, *consts, *([pk.SCALAR] if takes_ops else []))), (name, row)
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    arr = kernel(*cols, *(consts if array_consts is None else array_consts), *([pk.ARRAY] if takes_ops else []))
    for j, out in enumerate(floats):
        got = tuple(np.asarray(a)[j].item() for a in arr) if isinstance(out, tuple) else np.asarray(arr)[j].item()
        assert _same(out, got), (name, rows[j], out, got)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, st.floats(0.5, 20), positive, st.floats(5.0, 20), st.floats(0, 10),
                          st.floats(0, 40), st.booleans()), min_size=1, max_size=8))
def test_battery_current(rows: list[tuple[Any, ...]]) -> None:
    three_ways("battery_current", rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.5, 1.5)), min_size=1, max_size=8))
def test_cell_energy(rows: list[tuple[float]]) -> None:
    three_ways("cell_energy_per_c", rows, (SOC, VOLTS, CUM), (np.array(SOC), np.array(VOLTS), np.array(CUM)))
    # the integral of the table itself: at a breakpoint, the cumulative trapezoids
    assert pk.FLOAT.cell_energy_per_c(SOC[3], SOC, VOLTS, CUM) == pytest.approx(CUM[3], rel=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(positive, st.floats(-2000, 2000), st.floats(-60, 90)), min_size=1, max_size=8))
def test_pack_resistance(rows: list[tuple[float, ...]]) -> None:
    three_ways("pack_resistance", [(r, b, t, 1.5) for r, b, t in rows])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 1500), positive, st.floats(-0.02, 0), st.floats(-80, 150),
                          st.floats(-10, 40)), min_size=1, max_size=8))
def test_array_power(rows: list[tuple[float, ...]]) -> None:
    three_ways("array_power", rows)


THRESHOLDS = st.tuples(st.floats(5.0, 6.2), st.floats(6.2, 6.6), st.floats(6.4, 6.6), st.floats(7.0, 7.3),
                       st.floats(7.3, 7.6), st.floats(8.0, 8.3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(modes, st.floats(4.0, 9.0), THRESHOLDS, st.floats(-5, 5)), min_size=1, max_size=8))
def test_mode_machine(rows: list[tuple[Any, ...]]) -> None:
    three_ways("next_mode", [(m, v, *th, hold) for m, v, th, hold in rows])
    three_ways("mode_band", [(m, *th, hold > 0.0) for m, _, th, hold in rows])
    three_ways("initial_mode", [(v, th[0], th[2], th[3], th[5]) for _, v, th, _ in rows])
    for m, v, th, hold in rows:
        # the band is what the step relies on to skip the machine: inside it, the machine changes nothing
        lo, hi = pk.FLOAT.mode_band(m, *th, hold > 0.0)
        if lo <= v < hi:
            assert pk.FLOAT.next_mode(m, v, *th, hold) == m


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), modes, st.integers(1, 3), st.booleans(),
                          st.floats(1, 12), st.one_of(st.just(-math.inf), st.floats(0, 2)), st.floats(0, 20)),
                min_size=1, max_size=8))
def test_rails(rows: list[tuple[Any, ...]]) -> None:
    three_ways("rail_conducts", [r[:4] for r in rows])
    three_ways("rail_voltage", [r[4:] for r in rows])


def test_rail_voltage_browns_out_below_the_headroom() -> None:
    v = pk.FLOAT.rail_voltage
    assert v(True, 5.0, 0.4, 7.4) == 5.0            # headroom: the set point
    assert v(True, 5.0, 0.4, 5.2) == pytest.approx(4.8)  # browned out: bus - dropout
    assert v(True, 5.0, 0.4, 0.2) == 0.0            # never negative
    assert v(True, 5.0, -math.inf, 0.2) == 5.0      # an ideal converter holds its set point
    assert v(False, 0.0, -math.inf, 7.4) == 7.4     # unregulated: the bus


def test_overcurrent_shed_removes_rails_in_order_until_the_discharge_fits() -> None:
    # 40 W net discharge on a 7 V, 0.2 Ohm pack with a 3 A limit: shed the 30 W rail (after the idle one), then fits
    loads, i, n = pk.overcurrent_shed(0.0, 40.0, 7.0, 0.2, 3.0, [0.0, 30.0, 5.0, 5.0])
    assert n == 2 and loads == 10.0
    assert i == pk.discharge_current(-10.0, 7.0, 0.2, 3.0) and -3.0 <= i < 0.0
    # nothing fits: every rail goes and the current is what is left (0 W: 0 A)
    assert pk.overcurrent_shed(0.0, 50.0, 7.0, 0.2, 0.01, [20.0, 30.0]) == (0.0, 0.0, 2)
    assert pk.shed_mode(pk.NORMAL) == pk.SAFE and pk.shed_mode(pk.CRITICAL) == pk.OFF


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(-50, 50), st.floats(1, 1e5)), min_size=1, max_size=8))
def test_mid_step_soc_and_ledger(rows: list[tuple[float, ...]]) -> None:
    three_ways("mid_step_soc", rows, (10.0,), (10.0,))
    ledger = [(1.0, 2.0, 3.0, 4.0, abs(i), abs(i) * 0.9, soc, soc * 1.1) for soc, i, _ in rows]
    three_ways("ledger_step", ledger, (0.5,), (0.5,))


def test_the_inlined_step_is_the_step_as_written() -> None:
    """PowerSystem.step has the float kernels written into it (pk.inline_kernels); stepping with it and with the
    method as written (one call per kernel) gives the same state, bit for bit, through trips, sheds and faults."""
    raw = tomllib.loads((DATA / "regression-cubesat-6u-jetson.toml").read_text(encoding="utf-8"))["power"]
    raw["battery"].update(cell_capacity_ah=0.3, initial_soc=0.95, cells_parallel=1)
    cfg = PowerConfig.model_validate(raw)
    inlined, called = PowerSystem(cfg), PowerSystem(cfg)
    as_written = PowerSystem.step.__wrapped__
    assert PowerSystem.step is not as_written
    rails = [r.name for r in cfg.rails]
    for k in range(3000):
        sun = [1361.0 * max(0.0, math.sin(k / 300.0))] * len(cfg.arrays)
        loads = [0.0] * len(rails)
        loads[rails.index("payload")] = 22.0 if (k // 200) % 3 == 0 else 3.0
        if k == 500:
            for p in (inlined, called):
                p.short_rail("comms_5v", 5.0)
        if k == 700:
            for p in (inlined, called):
                p.clear_short("comms_5v")
                p.reset_rail("comms_5v")
        args = (1.0 if k % 50 else 15.0, sun, [30.0] * len(cfg.arrays), 20.0 * math.sin(k / 500.0), loads)
        inlined.step(*args)
        as_written(called, *args)
        assert inlined.truth() == called.truth(), k
        assert inlined.events == called.events, k
    reasons = {p.get("reason") for t, p in inlined.events if t == "eps.mode.changed"}
    assert "battery over-current" in reasons
    assert max(r.trips for r in inlined.rails) >= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1), st.floats(-100, 20), st.floats(6, 8.4), positive,
                          st.floats(1, 1e5), st.floats(0, 50), st.floats(0, 80)), min_size=1, max_size=8))
def test_pack_step_ends(rows: list[tuple[Any, ...]]) -> None:
    three_ways("battery_step_end", rows, (10.0,), (10.0,))
    three_ways("open_pack_step", [(a, s * 10, a * 1.05, 4.15, int(c)) for c, s, _, _, _, _, _, a in rows])


def test_compiled_kernels_are_cached_on_their_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pk.cached_code: the first start builds and writes the cache; the next loads the same code without building;
    a changed source, a corrupt cache file or an unwritable cache directory build again (and still work)."""
    monkeypatch.setattr("sys.pycache_prefix", None)
    src = tmp_path / "kernels_src.py"
    src.write_text("x = 1\n", encoding="utf-8")
    builds: list[int] = []

    def build() -> tuple[Any, list[str]]:
        builds.append(1)
        return compile(src.read_text(encoding="utf-8"), str(src), "exec"), ["exp"]

    def run() -> dict[str, Any]:
        code, names = pk.cached_code("t", [str(src)], build)
        assert names == ["exp"]
        env: dict[str, Any] = {}
        exec(code, env)  # noqa: S102 (the test's own source)
        return env

    assert run()["x"] == 1 and len(builds) == 1
    cache = next((tmp_path / "__pycache__").glob("t.*.kernels"))
    assert run()["x"] == 1 and len(builds) == 1  # loaded, not built
    src.write_text("x = 2\n", encoding="utf-8")
    assert run()["x"] == 2 and len(builds) == 2  # stale: built again
    assert run()["x"] == 2 and len(builds) == 2
    cache.write_bytes(b"\x00garbage")
    assert run()["x"] == 2 and len(builds) == 3  # corrupt: built again, and rewritten
    assert run()["x"] == 2 and len(builds) == 3
    monkeypatch.setattr("sys.pycache_prefix", str(src))  # a "directory" under a file: cannot be created
    assert run()["x"] == 2 and len(builds) == 4


def test_the_cached_steps_are_the_compiled_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that loads the compiled steps from the cache gets the very code a fresh compile gives."""
    from emulator.models.satellite import Satellite

    monkeypatch.setattr(pk, "cached_code", lambda name, sources, build: build())  # compile, no cache
    fresh = pk.inline_kernels(PowerSystem.step.__wrapped__, STEP_KERNELS)
    assert fresh.__code__.co_code == PowerSystem.step.__code__.co_code
    assert fresh.__code__.co_consts == PowerSystem.step.__code__.co_consts
    assert Satellite.step.__wrapped__ is not Satellite.step
    for name in pk.FloatKernels.KERNELS:
        assert getattr(pk.FLOAT, name).__doc__ == getattr(pk, name).__doc__


BOUNDS, SEG_S0, SEG_V0, SEG_SLOPE = pk.ocv_segments(SOC, VOLTS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-0.5, 1.5), st.sampled_from([*SOC, -0.0, math.nextafter(1.0, 0.0)])),
                min_size=1, max_size=12))
def test_ocv_lookup_is_numpy_interp(socs: list[float]) -> None:
    """The OCV table lookup (one segment search, one line on the segment) gives numpy.interp's bits, floats and
    arrays alike: the fleet's values before the lookup became a kernel."""
    three_ways("ocv_segment", [(s,) for s in socs], (BOUNDS,), (np.array(BOUNDS),))
    segs = [pk.FLOAT.ocv_segment(s, BOUNDS) for s in socs]
    three_ways("cell_ocv", [(s, SEG_S0[j], SEG_V0[j], SEG_SLOPE[j]) for s, j in zip(socs, segs, strict=True)])
    got = [pk.FLOAT.cell_ocv(s, SEG_S0[j], SEG_V0[j], SEG_SLOPE[j]) for s, j in zip(socs, segs, strict=True)]
    assert got == np.interp(socs, SOC, VOLTS).tolist()
    assert math.isnan(pk.cell_ocv(math.nan, *(np.array(t)[pk.ocv_segment(math.nan, np.array(BOUNDS), pk.ARRAY)]
                                               for t in (SEG_S0, SEG_V0, SEG_SLOPE))))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.2, 1.2), st.floats(-0.2, 1.2)), min_size=1, max_size=8))
def test_breakpoint_crossing_and_mean_ocv(rows: list[tuple[float, float]]) -> None:
    """A step crosses a breakpoint exactly when numpy's search puts its ends in different segments (the fleet's test
    before it became a kernel); the mean OCV across one is the integral's difference quotient."""
    segs = [(a, b, pk.FLOAT.ocv_segment(a, BOUNDS), pk.FLOAT.ocv_segment(b, BOUNDS)) for a, b in rows]
    three_ways("crosses_breakpoint", segs)
    for a, b, ja, jb in segs:
        old = (bool(np.searchsorted(SOC, a, side="right") != np.searchsorted(SOC, b, side="right"))
               and 0.0 <= b <= 1.0 and a <= 1.0)
        assert pk.FLOAT.crosses_breakpoint(a, b, ja, jb) == old
    means = [(pk.FLOAT.cell_energy_per_c(a, SOC, VOLTS, CUM), pk.FLOAT.cell_energy_per_c(b, SOC, VOLTS, CUM), a, b)
             for a, b in rows if a != b]
    if means:
        three_ways("mean_ocv_between", means)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 100), st.floats(0, 500),
                          st.floats(0, 1)), min_size=1, max_size=8))
def test_battery_ledger_and_brown_out(rows: list[tuple[float, ...]]) -> None:
    three_ways("battery_ledger_step", [r[:4] for r in rows], (0.5,), (0.5,))
    three_ways("brown_out", [(p, p * 1.1, f, p * 0.1, b) for _, _, p, _, b in rows for f in (b, 1.0)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 4), min_size=1, max_size=10), min_size=1, max_size=6))
def test_pack_makeup_of_one_pack_and_of_a_fleet(packs: list[list[int]]) -> None:
    """One pack (its live groups, shorted ones gone) and the same packs as fleet members (shorted groups -1) make
    the same connected groups, weakest group, charge, sum of 1/np and limits, bit for bit."""
    width = max(len(p) for p in packs)
    grid = np.array([p + [-1] * (width - len(p)) for p in packs]).T  # (groups, members)
    q = np.array([7200.0 + 10 * k for k in range(len(packs))])
    fleet = pk.pack_makeup(grid, q, 0.5, 2.0, 4.15, pk.ARRAY)
    for k, p in enumerate(packs):
        one = pk.pack_makeup([n for n in p if n >= 0], float(q[k]), 0.5, 2.0, 4.15, pk.SCALAR)
        assert one == tuple(np.asarray(a)[k].item() for a in fleet), (p, one)
    assert fleet[1].dtype == np.int64 and fleet[0].dtype == np.int64


def test_shed_shunt_is_the_surplus_beyond_loads_and_charge() -> None:
    assert pk.shed_shunt(10.0, 4.0, 7.0, 0.5, 0.1) == 10.0 - 4.0 - (7.0 + 0.05) * 0.5
    assert pk.shed_shunt(3.0, 4.0, 7.0, -0.2, 0.1) == max(0.0, 3.0 - 4.0 + (7.0 - 0.02) * 0.2)
    assert pk.shed_shunt(1.0, 4.0, 7.0, 0.0, 0.1) == 0.0

"""Series thinning keeps what a person must see."""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.plotting import summary_rows
from emulator.series import EnvelopeSampler, FleetReader, Series, flatten, tree_row

NS = 1_000_000_000


def test_thinning_keeps_a_one_step_spike_and_the_final_value() -> None:
    series = Series()
    trees = [{"p": {"w": 50.0 + (713.0 if t == 1801 else 0.0)}, "soc": 0.9 - t * 1e-5} for t in range(7201)]
    sampler = EnvelopeSampler(series, 60 * NS, ["p.w"], trees[0])
    for t, tree in enumerate(trees):
        sampler.observe(t * NS, tree)
    sampler.flush(7200 * NS, trees[-1])
    w = series.get("p.w")
    assert w.max() == 763.0 and w.min() == 50.0
    assert len(series) < 7201 / 30  # thinned: about one row a minute, plus the spike's window
    spike_t = series.time()[w.argmax()]
    assert 1800 - 60 <= spike_t <= 1800 + 60
    assert series.time()[-1] == 7200 and series.get("soc")[-1] == trees[-1]["soc"]
    assert list(series.time()) == sorted(series.time())


def test_thinning_a_flat_signal_adds_no_rows() -> None:
    series = Series()
    sampler = EnvelopeSampler(series, 10 * NS, ["x"], {"x": 1.0})
    for t in range(101):
        sampler.observe(t * NS, {"x": 1.0})
    assert len(series) == 11


def test_rows_of_keys_hold_only_the_keys_asked_for() -> None:
    series = Series()
    tree = {"p": {"w": 5.0, "v": 7.0}, "soc": 0.5}
    sampler = EnvelopeSampler(series, 10 * NS, ["p.w"], tree, rows="keys")
    sampler.observe(0, tree)
    sampler.flush(10 * NS, tree)
    assert series.keys() == ["p.w"] and list(series.get("p.w")) == [5.0, 5.0]


def test_a_fleet_is_read_as_mean_and_extremes_of_the_wanted_lists_only() -> None:
    reader = FleetReader(3, ["power.soc", "thermal.*"], ["power", "thermal"])
    tree = {"power": {"soc": [0.2, 0.5, 0.8], "bus_v": [1.0, 2.0, 3.0], "mode": ["a", "b", "c"]},
            "thermal": {"temps_degc": {"battery": [1.0, 2.0, 6.0]}}, "accelerator": {"soc": [9.0, 9.0, 9.0]}}
    got = reader.read(tree)
    assert got == pytest.approx({"power.soc": 0.5, "power.soc.fleet_min": 0.2, "power.soc.fleet_max": 0.8,
                                 "thermal.temps_degc.battery": 3.0, "thermal.temps_degc.battery.fleet_min": 1.0,
                                 "thermal.temps_degc.battery.fleet_max": 6.0})


def test_a_fleet_summary_takes_min_and_max_over_the_members() -> None:
    series = Series()
    reader = FleetReader(2, ["power.soc"], ["power"])
    trees = [{"power": {"soc": [0.9, 0.7]}}, {"power": {"soc": [0.8, 0.2]}}, {"power": {"soc": [0.95, 0.85]}}]
    sampler = EnvelopeSampler(series, NS, [], trees[0], reader=reader)
    for t, tree in enumerate(trees):
        sampler.observe(t * NS, tree)
    (row,) = summary_rows(series)
    assert row[0] == "power.soc"
    assert [float(x) for x in row[1:]] == pytest.approx([0.2, 0.7333, 0.95, 0.9], abs=1e-4)


@settings(max_examples=100)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.floats(allow_nan=False), max_size=4),
                min_size=1, max_size=12))
def test_rows_with_changing_keys_are_columns_padded_with_nan(rows: list[dict[str, float]]) -> None:
    """Keys that appear late are NaN before, keys a row lacks are NaN in it: whatever order the keys come in,
    including rows with exactly the columns' keys (the path a run's rows take)."""
    series = Series()
    for k, row in enumerate(rows):
        series.append(k * 1_000_000_000, row)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    assert series.keys() == keys
    for key in keys:
        expected = [row.get(key, math.nan) for row in rows]
        np.testing.assert_array_equal(series.get(key), expected)
    assert series.t_s == [float(k) for k in range(len(rows))]


def _flatten_reference(tree: Any, prefix: str = "", out: dict[str, float] | None = None) -> dict[str, float]:
    """flatten as first written (isinstance checks only): what the faster form must give, key order included."""
    if out is None:
        out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            _flatten_reference(value, name + ".", out)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            for i, v in enumerate(value):
                out[f"{name}.{i}"] = float(v)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                _flatten_reference(v, f"{name}.{i}.", out)
    return out


class _Level(enum.IntEnum):
    LOW = 1


_LEAVES = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=2),
                    st.just(np.float64(2.5)), st.just(_Level.LOW), st.just(np.int64(3)))
_KEYS = st.one_of(st.sampled_from(["a", "b", "x.y", "0"]), st.integers(0, 3))
_TREES = st.recursive(_LEAVES, lambda sub: st.one_of(
    st.lists(sub, max_size=3), st.tuples(sub, sub), st.dictionaries(_KEYS, sub, max_size=4),
    st.dictionaries(_KEYS, sub, max_size=3).map(types.MappingProxyType)), max_leaves=25)


@settings(max_examples=300)
@given(st.dictionaries(_KEYS, _TREES, max_size=5))
def test_flatten_gives_what_isinstance_checks_give(tree: dict[Any, Any]) -> None:
    """Numbers of any kind (numpy, IntEnum, bool), maps of any kind, lists and tuples, text and None, int keys:
    the same keys in the same order with the same values."""
    got, want = flatten(tree), _flatten_reference(tree)
    assert list(got) == list(want)
    assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in want)


# -- rows kept as trees: flattened when read, as append() of the flattened tree would have put them -----------------
@settings(max_examples=80)
@given(st.lists(st.tuples(st.dictionaries(_KEYS, _TREES, max_size=4), st.booleans(),
                          st.dictionaries(st.sampled_from(["a", "b", "z"]), st.floats(allow_nan=False), max_size=2)),
                min_size=1, max_size=6), st.integers(0, 6))
def test_rows_kept_as_trees_read_as_their_flattened_rows(rows: list[tuple[dict[Any, Any], bool, dict[str, float]]],
                                                         read_at: int) -> None:
    """Trees of any content (numpy numbers, enums, mapping proxies, int keys: flattened at once; plain ones packed)
    with values replaced, mixed with rows appended flat, and the series read half-way: the same columns."""
    lazy, eager = Series(), Series()
    for k, (tree, as_tree, replace) in enumerate(rows):
        if k == read_at:
            assert lazy.keys() == eager.keys()
        if as_tree:
            lazy.append_tree(k * NS, tree_row(tree), replace or None)
        else:
            lazy.append(k * NS, {**flatten(tree), **replace})
        eager.append(k * NS, {**flatten(tree), **replace})
    assert len(lazy) == len(eager) and lazy.t_s == eager.t_s
    columns = eager.keys()
    assert lazy.keys() == columns
    for key in columns:
        np.testing.assert_array_equal(lazy.get(key), eager.get(key))


def test_a_tree_row_is_a_copy_of_the_tree_when_appended() -> None:
    """A model may go on changing a list its truth shares: the row holds the values it had."""
    cells = [1.0, 2.0]
    tree = {"cells": cells, "soc": 0.5}
    series = Series()
    series.append_tree(0, tree_row(tree))
    cells[0] = 9.0
    tree["soc"] = 0.1
    series.append_tree(NS, tree_row(tree), {"soc": 0.2})
    assert list(series.get("cells.0")) == [1.0, 9.0] and list(series.get("soc")) == [0.5, 0.2]
    assert isinstance(tree_row(tree), bytes) and tree_row({"x": np.float64(1.0)}) == {"x": 1.0}

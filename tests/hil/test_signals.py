"""The runner's per-step reading (hil.signals) gives what reading the emulator's whole truth tree gave: the same
values for every key, the same plot series, and the same verdicts for whole scenario runs."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hil.runner
from emulator.clock import VirtualWall
from emulator.series import EnvelopeSampler, Series, SignalReader, flatten
from hil.runner import ScenarioResult, run_scenario
from hil.scenario import scenario_from_dict
from hil.signals import StepReader, StepSampler

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
#: plot rows of the compared runs: few, so most of the series is the windows' min and max rows
MAX_SAMPLES = 150


class FullTreeReader:
    """The reading StepReader replaces: the emulator's whole truth tree at every step, each key looked up in it."""

    def __init__(self, source: Any, keys: list[str]) -> None:
        self.source = source
        self.keys = sorted(set(keys))
        self.reader = SignalReader(self.keys, source.truth())
        self.model_only = False

    def read(self) -> dict[str, float]:
        return self.reader.read(self.source.truth())


class Trees:
    """A truth source that gives the tree of the current step (its model's truth: the tree's ``satellite`` part)."""

    def __init__(self, trees: list[dict[str, Any]]) -> None:
        self.trees = trees
        self.i = 0
        self.model: Any = ModelOf(self)

    def now(self) -> dict[str, Any]:
        return self.trees[min(self.i, len(self.trees) - 1)]

    def truth(self) -> dict[str, Any]:
        return self.now()

    def advance(self) -> None:
        self.i += 1


class ModelOf:
    """The ``satellite`` part of a :class:`Trees` source, as Emulator.model offers it."""

    def __init__(self, trees: Trees) -> None:
        self.trees = trees

    def truth(self) -> Any:
        return self.trees.now()["satellite"]


def source_of(trees: list[dict[str, Any]]) -> Trees:
    return Trees(trees)


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


# -- values: any tree, any keys ---------------------------------------------------------------------------------
NAMES = st.sampled_from(["a", "b", "a.b", "0", "1", "t_ns", "x.y.z"])
LEAVES = st.one_of(st.integers(-10, 10), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=2))
TREES = st.recursive(LEAVES, lambda sub: st.one_of(st.lists(sub, max_size=3), st.dictionaries(NAMES, sub, max_size=4)),
                     max_leaves=20)
TOP = st.fixed_dictionaries({"satellite": TREES}, optional={"t_ns": st.integers(0, 10), "clock": TREES})


@settings(max_examples=50)  # small trees: 50 cover the shapes (gone, shorter, replaced)
@given(first=TOP, later=st.lists(TOP, max_size=4), extra=st.lists(st.from_regex(r"[a-z01.]{1,9}", fullmatch=True),
                                                                    max_size=3))
def test_a_step_read_equals_a_lookup_in_the_whole_tree(first: dict, later: list[dict], extra: list[str]) -> None:
    """Keys resolved on the first tree, read from later ones whose shape may differ (keys gone, lists shorter,
    a number where a map was): every value as SignalReader gives it from the whole tree."""
    keys = [*flatten(first), *extra]
    src = source_of([first, first, *later])
    step = StepReader(src, keys)
    reference = SignalReader(step.keys, first)
    for tree in [first, *later]:
        src.advance()
        assert same(step.read(), reference.read(tree)), (keys, tree)


def test_keys_in_the_models_truth_are_read_from_the_model_alone() -> None:
    tree = {"t_ns": 5, "clock": {"steps": 3}, "satellite": {"power": {"bus_v": 7.9, "ok": True},
                                                         "temps": {"a": 1, "b": 2.5}, "list": [1, 2]}}
    src = source_of([tree])
    asked: list[str] = []
    src.truth = lambda: (asked.append("whole"), tree)[1]  # type: ignore[method-assign]
    step = StepReader(src, ["satellite.power.bus_v", "satellite.power.ok", "satellite.temps.b", "satellite.list.1",
                            "satellite.nothing"])
    assert step.model_only
    asked.clear()
    assert step.read() == {"satellite.power.bus_v": 7.9, "satellite.power.ok": 1.0, "satellite.temps.b": 2.5,
                           "satellite.list.1": 2.0, "satellite.nothing": pytest.approx(math.nan, nan_ok=True)}
    assert asked == []  # no whole tree built for a step
    # a key outside the model's truth: the whole tree
    assert not StepReader(src, ["satellite.power.bus_v", "clock.steps"]).model_only
    # a model whose truth is not the tree's satellite part (checked once, value for value): the whole tree
    other = source_of([tree])
    other.model = ModelOf(source_of([{"satellite": {"power": {"bus_v": 8.0, "ok": True}}}]))
    assert not StepReader(other, ["satellite.power.bus_v"]).model_only


# -- the plot series: StepSampler fed by the step read == EnvelopeSampler fed the whole tree ------------------------
@settings(max_examples=50)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5) | st.just(math.nan), st.booleans()), min_size=1,
                max_size=60), st.integers(1, 7))
def test_the_sampler_fed_step_values_keeps_the_same_rows(steps: list[tuple[float, float, bool]], every: int) -> None:
    trees = [{"satellite": {"v": v, "w": w, "flag": f, "text": "x"}, "t_ns": k} for k, (v, w, f) in enumerate(steps)]
    keys = ["satellite.v", "satellite.w", "satellite.flag"]
    old, new = Series(), Series()
    old_sampler = EnvelopeSampler(old, every * S, keys, trees[0])
    new_sampler = StepSampler(new, every * S, keys, trees[0])
    src = source_of(trees)
    step = StepReader(src, list(new_sampler.reader.paths))
    for k, tree in enumerate(trees):
        src.i = k
        old_sampler.observe(k * S, tree)
        if new_sampler.observe_values(k * S, step.read()):
            new_sampler.flush(k * S, tree)
        assert same(new_sampler.last, old_sampler.last)
    old_sampler.flush(len(trees) * S, trees[-1])
    new_sampler.flush(len(trees) * S, trees[-1])
    columns = old.keys()
    assert old.t_s == new.t_s and columns == new.keys()
    for key in columns:
        np.testing.assert_array_equal(old.get(key), new.get(key))


# -- whole runs: the same verdicts and series as with the whole tree read at every step --------------------------------
def satellite_scenario(extra: list[dict[str, Any]] | None = None) -> Any:
    """15 min of the prototype without a board: faults on the timeline, every kind of signal requirement (some
    fail, so first-violation times, values and step counts are compared too)."""
    reqs = [
        {"kind": "always", "signal": "satellite.power.bus_v", "op": ">", "value": 29.6},
        {"kind": "always", "signal": "satellite.accelerator.die_temp_degc", "op": "<", "value": 30, "after": "3m"},
        {"kind": "always", "signal": "satellite.power.rails.payload.on", "op": "==", "value": 1},
        {"kind": "min", "signal": "satellite.power.soc", "op": ">=", "value": 0.6},
        {"kind": "max", "signal": "satellite.thermal.temps_degc.battery", "op": "<=", "value": 45},
        {"kind": "final", "signal": "satellite.accelerator.units_done", "op": ">=", "value": 1},
        *(extra or []),
    ]
    timeline = [{"at": "5m", "do": "fault", "name": "radiation.sel", "label": "latch-up"},
                {"at": "8m", "do": "fault", "name": "eps.rail.short", "params": {"rail": "payload", "extra_a": 65.0},
                 "duration": "2m"}]
    return scenario_from_dict({"scenario": {"name": "reading", "duration": "15m", "seed": 5,
                                            "config": str(ROOT / "configs" / "suncatcher-proto.toml"),
                                            "epoch_utc": "2026-06-21T00:00:00Z"},
                               "timeline": timeline, "requirement": reqs}, source=str(ROOT / "reading.toml"))


def outcome(res: ScenarioResult) -> tuple[Any, ...]:
    assert res.error is None, res.error
    cols = {k: v for k, v in res.series.to_columns().items() if not k.startswith("clock.wall")}
    return [asdict(v) for v in res.verdicts], res.series.t_s, {k: np.asarray(v) for k, v in cols.items()}


@pytest.mark.parametrize("extra", [[], [{"kind": "max", "signal": "clock.steps", "op": "<=", "value": 10**6}]],
                         ids=["model-only", "whole-tree"])
async def test_a_run_gives_the_verdicts_and_series_of_the_whole_tree_reading(
        extra: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    sc = satellite_scenario(extra)
    readers: list[Any] = []

    class Spy(StepReader):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            readers.append(self)

    monkeypatch.setattr(hil.runner, "StepReader", Spy)
    new = await run_scenario(sc, wall=VirtualWall(), max_samples=MAX_SAMPLES)
    assert [r.model_only for r in readers] == [not extra]
    monkeypatch.setattr(hil.runner, "StepReader", FullTreeReader)
    old = await run_scenario(sc, wall=VirtualWall(), max_samples=MAX_SAMPLES)
    new_verdicts, new_t, new_cols = outcome(new)
    old_verdicts, old_t, old_cols = outcome(old)
    assert new_verdicts == old_verdicts
    assert {v["passed"] for v in new_verdicts} == {True, False}  # both kinds of verdict compared
    assert new_t == old_t and new_cols.keys() == old_cols.keys()
    for key, col in new_cols.items():
        np.testing.assert_array_equal(col, old_cols[key], err_msg=key)


async def test_a_wide_truth_gets_fewer_windows_that_keep_its_extremes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose truth has more keys than MAX_SERIES_VALUES / max_samples (the 81-member cluster) gets fewer,
    longer windows, so its series stays within the bound; each window still keeps its minimum and maximum, so a
    requirement signal's extremes are those of a run with every window. Here a budget of 20 windows of the
    prototype's keys stands in for a wide truth."""
    sc = satellite_scenario()
    full = await run_scenario(sc, wall=VirtualWall(), max_samples=MAX_SAMPLES)
    columns = len(full.series.keys())
    monkeypatch.setattr(hil.runner, "MAX_SERIES_VALUES", 20 * columns)
    narrow = await run_scenario(sc, wall=VirtualWall(), max_samples=MAX_SAMPLES)
    assert outcome(narrow)[0] == outcome(full)[0]  # the same verdicts
    assert len(full.series) > 2 * MAX_SAMPLES // 3
    # a row a window, and its min and max rows (a few more windows end at the timeline's actions and the end)
    assert len(narrow.series) <= 3 * (20 + 3) < len(full.series) // 3
    for key in ("satellite.power.bus_v", "satellite.power.soc", "satellite.thermal.temps_degc.battery"):
        a, b = full.series.get(key), narrow.series.get(key)
        assert np.nanmin(b) == np.nanmin(a) and np.nanmax(b) == np.nanmax(a), key

"""Requirement checkers against hand-made step and message sequences (no emulator)."""

from __future__ import annotations

import math
import operator

from hypothesis import given
from hypothesis import strategies as st

from emulator.protocol.envelope import Message
from hil.requirements import SignalReader, make_checkers
from hil.scenario import scenario_from_dict

S = 1_000_000_000
SIG = "satellite.power.bus_v"


def checkers(*reqs: dict) -> list:
    sc = scenario_from_dict({"scenario": {"name": "t", "duration": "1d"}, "requirement": list(reqs)})
    return make_checkers(sc.requirements)


def feed(checker, values: list[float], signal: str = SIG) -> None:
    for k, v in enumerate(values):
        checker.on_step(k * S, {signal: v})


def test_always_reports_the_first_violation_time_value_and_limit() -> None:
    (c,) = checkers({"kind": "always", "signal": SIG, "op": ">=", "value": 6.0, "why": "OBC brown-out"})
    feed(c, [7.0, 6.5, 6.0, 5.9, 5.5, 6.2])
    v = c.finish(6 * S, {})
    assert not v.passed and v.t_s == 3.0 and v.value == 5.9 and v.limit == 6.0 and v.why == "OBC brown-out"
    assert "violated first at t=0:00:03 (3 s): value 5.9, limit 6" in v.reason
    assert "2 of 6 steps" in v.reason and "worst 5.5 at t=0:00:04" in v.reason
    assert v.label == "always satellite.power.bus_v >= 6"


def test_always_ignores_steps_before_after_and_treats_a_missing_signal_as_a_violation() -> None:
    (c,) = checkers({"kind": "always", "signal": SIG, "op": ">=", "value": 6.0, "after": 3})
    feed(c, [0.0, 0.0, 0.0, 7.0, 7.0])
    assert c.finish(5 * S, {}).passed
    (c,) = checkers({"kind": "always", "signal": SIG, "op": "<", "value": 9.0})
    feed(c, [1.0, math.nan])
    v = c.finish(2 * S, {})
    assert not v.passed and v.t_s == 1.0 and "missing (NaN)" in v.reason


@given(st.lists(st.floats(-100, 100), min_size=1, max_size=50), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
       st.floats(-100, 100))
def test_always_passes_exactly_when_every_value_holds(values: list[float], op: str, limit: float) -> None:
    (c,) = checkers({"kind": "always", "signal": SIG, "op": op, "value": limit})
    feed(c, values)
    fn = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
          "!=": operator.ne}[op]
    v = c.finish(len(values) * S, {})
    assert v.passed == all(fn(x, limit) for x in values)
    if not v.passed:
        first = next(k for k, x in enumerate(values) if not fn(x, limit))
        assert v.t_s == first and v.value == values[first]


def test_final_uses_the_value_at_the_end() -> None:
    ok, bad = checkers({"kind": "final", "signal": SIG, "op": ">", "value": 7.0},
                       {"kind": "final", "signal": SIG, "op": "<", "value": 7.0})
    assert ok.finish(60 * S, {SIG: 7.5}).passed
    v = bad.finish(60 * S, {SIG: 7.5})
    assert not v.passed and v.value == 7.5 and v.t_s == 60.0 and "required < 7" in v.reason


def test_max_and_min_report_the_extreme_and_when() -> None:
    hi, lo = checkers({"kind": "max", "signal": "t", "op": "<=", "value": 95},
                      {"kind": "min", "signal": "t", "op": ">=", "value": -20})
    for c in (hi, lo):
        feed(c, [20.0, 96.5, 80.0, -25.0, 10.0], signal="t")
    v = hi.finish(5 * S, {})
    assert not v.passed and v.value == 96.5 and v.t_s == 1.0 and "max of t was 96.5 at t=0:00:01" in v.reason
    v = lo.finish(5 * S, {})
    assert not v.passed and v.value == -25.0 and v.t_s == 3.0


def job(topic: str, job_id: int, **extra) -> Message:
    return Message(topic, {"job_id": job_id, **extra})


def test_response_matches_by_field_and_reports_the_first_missed_trigger() -> None:
    (c,) = checkers({"kind": "response", "trigger": {"topic": "accel.job.submit"},
                     "response": {"topic": "accel.job.done", "where": {"ok": True}}, "match": "job_id",
                     "within": "60s"})
    c.on_message(0, "in", job("accel.job.submit", 1))
    c.on_message(10 * S, "in", job("accel.job.submit", 2))
    c.on_message(20 * S, "out", job("accel.job.done", 2, ok=True))  # answers job 2 only
    c.on_message(30 * S, "out", job("accel.job.done", 1, ok=False))  # wrong 'where': not an answer
    for t in range(0, 200, 10):
        c.on_step(t * S, {})
    c.on_message(200 * S, "in", job("accel.job.submit", 3))  # window runs past the end: not a failure
    v = c.finish(220 * S, {})
    assert not v.passed and v.t_s == 60.0 and v.limit == 60.0
    assert "accel.job.submit at t=0:00:00 (0 s) (job_id=1) got no accel.job.done(ok=True) within 60 s" in v.reason
    assert "1 of 3 trigger(s) missed" in v.reason and "1 still open at the end" in v.reason


def test_a_trigger_without_the_match_field_fails_the_requirement_naming_it() -> None:
    """The reference board submits jobs without an id (the emulator gives one in its reply): matching on it passed
    with nothing answered, or failed with a Python object as the missing id."""
    (c,) = checkers({"kind": "response", "trigger": {"topic": "accel.job.submit"},
                     "response": {"topic": "accel.job.done"}, "match": "id", "within": "10m"})
    c.on_message(20 * S, "in", Message("accel.job.submit", {"kind": "inference", "size": 1000}))
    c.on_message(30 * S, "out", Message("accel.job.done", {"id": 1}))
    v = c.finish(60 * S, {})
    assert not v.passed and v.t_s == 20.0
    assert v.reason.startswith("accel.job.submit at t=0:00:20 (20 s) has no field 'id' to match its accel.job.done "
                               "by (1 of 1 trigger(s) lack it)")
    assert "object" not in v.reason


def test_response_in_time_passes_and_a_late_one_fails() -> None:
    (c,) = checkers({"kind": "response", "trigger": {"topic": "a"}, "response": {"topic": "b"}, "within": 5})
    c.on_message(0, "out", Message("a", {}))
    c.on_message(5 * S, "out", Message("b", {}))  # exactly at the deadline: in time
    c.on_message(10 * S, "out", Message("a", {}))
    c.on_step(16 * S, {})
    c.on_message(16 * S, "out", Message("b", {}))  # too late
    v = c.finish(20 * S, {})
    assert not v.passed and v.t_s == 15.0 and "1 of 2 trigger(s) missed" in v.reason


def test_count_filters_with_where_including_bools_exactly() -> None:
    c, none = checkers({"kind": "count", "topic": "lamp.toggled", "where": {"on": True}, "op": ">=", "value": 2},
                       {"kind": "count", "topic": "lamp.toggled", "where": {"on": 1}, "op": ">=", "value": 1})
    for on in (True, False, True, False):
        msg = Message("lamp.toggled", {"on": on})
        c.on_message(0, "out", msg)
        none.on_message(0, "out", msg)
    assert c.finish(S, {}).passed and c.count == 2
    v = none.finish(S, {})  # 1 is not true: a bool filter matches bools only
    assert not v.passed and "counted 0" in v.reason and v.t_s is None


def test_signal_reader_reads_nested_truth_by_flattened_key() -> None:
    tree = {"satellite": {"power": {"bus_v": 7.5, "cells": [3.7, 3.6]}, "rails": [{"on": True}],
                          "odd.key": {"x": 1}}}
    keys = ["satellite.power.bus_v", "satellite.power.cells.1", "satellite.rails.0.on", "satellite.odd.key.x",
            "satellite.nope"]
    reader = SignalReader(keys, tree)
    assert reader.read(tree) == {"satellite.power.bus_v": 7.5, "satellite.power.cells.1": 3.6,
                                 "satellite.rails.0.on": 1.0, "satellite.odd.key.x": 1.0,
                                 "satellite.nope": reader.read(tree)["satellite.nope"]}
    assert math.isnan(reader.read(tree)["satellite.nope"])
    assert math.isnan(reader.read({"satellite": {}})["satellite.power.bus_v"])


def test_a_response_whose_trigger_never_fires_fails_unless_allowed() -> None:
    spec = {"kind": "response", "trigger": {"topic": "a", "where": {"x": 1}}, "response": {"topic": "b"},
            "within": 5}
    strict, lenient = checkers(spec, {**spec, "allow_no_trigger": True})
    for c in (strict, lenient):
        c.on_message(0, "out", Message("a", {"x": 2}))  # not the trigger: where differs
        c.on_step(10 * S, {})
    v = strict.finish(10 * S, {})
    assert not v.passed and "no a(x=1) in the whole run, so nothing was tested" in v.reason
    assert "allow_no_trigger = true" in v.reason
    assert lenient.finish(10 * S, {}).passed

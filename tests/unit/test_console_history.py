"""The console's history: bounded min/max bins at several resolutions, decimated queries, eclipses, the track."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.console.history import EclipseLog, History, TrackPoint
from emulator.console.state import ConsoleState, flat_numbers, track_runs
from emulator.protocol.envelope import Message
from emulator.series import flatten

NS = 1_000_000_000


def test_fast_telemetry_costs_fixed_memory_and_a_query_stays_within_its_points() -> None:
    h = History(levels=((1.0, 120), (10.0, 120)))
    rng = np.random.default_rng(1)
    hz = 250
    t = np.arange(0, 240 * NS, NS // hz)  # 4 min of fast telemetry
    v = rng.normal(0.0, 1.0, t.size)
    spike = 150 * hz + 31
    v[spike] = 50.0  # a one-sample spike must survive every decimation
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        h.add(ti, {"x": vi})
    assert h.levels[0].count == 120 and h.levels[1].count == 23  # rings are full or filling, never larger
    for window_s, points in ((60, 1200), (120, 40), (100, 10)):
        (s,) = h.query(["x"], 240 * NS - window_s * NS, 240 * NS, max_points=points)
        assert 0 < len(s.y) <= points and s.bin_s >= 1.0
        expect = 50.0 if t[spike] >= (240 - window_s) * NS else v[-window_s * hz:].max()
        assert np.nanmax(s.y) == pytest.approx(expect, rel=1e-6)
    # beyond the finest ring's reach, the coarser one answers with its bin width
    (s,) = h.query(["x"], 0, 240 * NS, max_points=2000)
    assert s.bin_s == 10.0 and np.nanmin(s.y) == pytest.approx(v.min(), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=300),
       st.integers(4, 400))
def test_the_envelope_holds_the_true_extremes_of_the_window(samples: list[tuple[int, float]], points: int) -> None:
    samples.sort()
    h = History(levels=((1.0, 10_000),))
    for t_s, v in samples:
        h.add(t_s * NS, {"v": v})
    (s,) = h.query(["v"], 0, 6000 * NS, max_points=points)
    vals = [v for _, v in samples]
    assert len(s.y) <= max(2, points)
    assert np.nanmin(s.y) == pytest.approx(min(vals), rel=1e-6, abs=1e-6)
    assert np.nanmax(s.y) == pytest.approx(max(vals), rel=1e-6, abs=1e-6)
    assert np.all(np.diff(s.t_ns) >= 0)


def test_fields_appear_later_and_time_going_back_starts_over() -> None:
    h = History(levels=((1.0, 100),))
    h.add(0, {"a": 1.0})
    h.add(NS, {"a": 2.0, "b": 3.0})
    a, b = h.query(["a", "b"], 0, 2 * NS)
    assert a.y.tolist() == [1.0, 2.0] and b.y.tolist() == [3.0] and b.t_ns.tolist() == [NS + NS // 2]
    h.add(10 * NS, {"a": 9.0})
    h.add(0, {"a": 0.5})  # a new run on the same link
    (a,) = h.query(["a"], 0, 20 * NS)
    assert a.y.tolist() == [0.5]


def test_the_number_of_fields_is_bounded_and_the_excess_counted() -> None:
    h = History(levels=((1.0, 10),), max_fields=3)
    h.add(0, {f"f{i}": float(i) for i in range(5)})
    assert len(h.columns) == 3 and h.fields_dropped == 2


def test_eclipses_are_logged_and_found_around_an_instant() -> None:
    log = EclipseLog()
    for t in range(0, 10_000, 10):
        log.add(t * NS, 2000 <= t < 3000 or 7000 <= t < 8000)
    assert list(log.closed) == [(2000 * NS, 3000 * NS), (7000 * NS, 8000 * NS)]
    assert log.between(2500 * NS, 6000 * NS) == [(2000 * NS, 3000 * NS)]
    assert log.at(2500 * NS) == ((2000 * NS, 3000 * NS), (7000 * NS, 8000 * NS))
    assert log.at(5000 * NS) == (None, (7000 * NS, 8000 * NS))


def test_track_runs_split_at_eclipse_edges_and_the_antimeridian() -> None:
    pts = [TrackPoint(i, 0.0, lon, f, saa) for i, (lon, f, saa) in enumerate(
        [(170.0, 1.0, False), (179.0, 1.0, False), (-179.0, 1.0, False), (-170.0, 0.0, True), (-160.0, 0.0, False)])]
    runs = track_runs(pts)
    assert runs["sunlit"]["lon"] == [170.0, 179.0, None, -179.0, -170.0, None]
    assert runs["eclipse"]["lon"] == [-170.0, -160.0]
    assert runs["saa"]["lon"] == [-170.0]


def test_flat_numbers_names_fields_as_the_exports_do() -> None:
    tree = {"power": {"bus_v": 7.9, "rails": {"a": {"on": True}}, "cells": [8, 7]}, "mode": "safe",
            "list": [{"name": "x", "i": 1}], "empty": []}
    assert flat_numbers(tree, "s.", {}) == {f"s.{k}": v for k, v in flatten(tree).items()}


def test_state_keeps_faults_events_and_the_epoch_from_the_stream() -> None:
    st = ConsoleState()
    st.ingest(Message("sim.clock", {"t_ns": 5 * NS, "utc": "2026-06-21T00:00:05Z", "mode": "afap"}, t_ns=5 * NS))
    st.ingest(Message("fault.changed", {"fault_id": 3, "name": "x", "params": {}, "active": True, "t_ns": 5 * NS},
                      t_ns=5 * NS))
    st.ingest(Message("eps.rail.tripped", {"rail": "payload", "current_a": 9.0, "trips": 1, "latched": False},
                      t_ns=6 * NS))
    view = st.view()
    assert view["utc"] == "2026-06-21T00:00:06Z" and [f["fault_id"] for f in view["faults"]] == [3]
    assert view["events"][0]["topic"] == "eps.rail.tripped" and "rail=payload" in view["events"][0]["text"]
    st.ingest(Message("fault.changed", {"fault_id": 3, "active": False}, t_ns=7 * NS))
    assert st.view()["faults"] == [] and st.event_counts == {"fault.changed": 2, "eps.rail.tripped": 1}


def test_a_polled_truth_ahead_of_a_backlogged_stream_neither_resets_nor_is_overwritten() -> None:
    st = ConsoleState()
    truth = {"power": {"soc": 0.5}, "environment": {"sunlit_frac": 1.0, "lat_deg": 0.0, "lon_deg": 0.0}}
    for t in range(0, 100, 10):
        st.ingest(Message("truth.sample", truth, t_ns=t * NS))
    # the console reads a backlog: truth.get answers with now, the stream still delivers the past
    st.apply_truth_get({"t_ns": 1000 * NS, "satellite": {**truth, "power": {"soc": 0.9}},
                        "clock": {"t_ns": 1000 * NS, "utc": "2026-06-21T00:16:40Z", "mode": "afap"}, "faults": []})
    st.ingest(Message("truth.sample", {**truth, "power": {"soc": 0.4}}, t_ns=100 * NS))
    assert st.view()["battery"]["soc"] == 0.9 and st.t_ns == 1000 * NS
    (soc,) = st.history.query(["satellite.power.soc"], 0, 1000 * NS)
    assert len(soc.y) == 11 and soc.y[-1] == pytest.approx(0.4)  # nothing lost, the poll not plotted (float32 bins)
    # a stream that really goes back in time is a new run
    st.ingest(Message("truth.sample", truth, t_ns=0))
    assert st.history.samples == 1 and st.t_ns == 0

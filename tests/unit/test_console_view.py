"""What the console's panels say (ConsoleState.view and a recording's view), from the messages a run sends."""

from __future__ import annotations

import math
from typing import Any

from emulator.console.state import ConsoleState
from emulator.protocol.envelope import Message

NS = 1_000_000_000


def test_a_listening_board_plane_is_no_board() -> None:
    state = ConsoleState()
    assert state.view()["boards"] is None  # not asked yet: not known, never "none"
    state.stats = {"boards": {}}
    assert state.view()["boards"] == []  # the page says "no board connected", not "board link up"
    state.stats = {"boards": {"jetson-1": {"lag_s": 0.0}}}
    assert state.view()["boards"] == ["jetson-1"]
    assert state.view(boards={"b", "a"})["boards"] == ["a", "b"]  # a recording: the hellos up to the cursor


async def test_a_recording_knows_the_boards_that_said_hello_by_the_cursor(tmp_path: Any) -> None:
    from emulator.console.sources import RecordingSource
    from emulator.protocol.codec import encode_message
    from emulator.recorder import Recorder

    rec = Recorder(tmp_path / "run.rec", meta={"epoch_utc": "2026-06-21T00:00:00Z"})
    for t_s in (0, 50, 100):
        rec.write("control", "out", encode_message(Message("sim.clock", {"t_ns": t_s * NS}, t_ns=t_s * NS)))
        if t_s == 50:
            rec.write("board", "in", encode_message(Message("board.hello", {}, t_ns=t_s * NS, src="jetson-1")))
    rec.close()
    source = RecordingSource(tmp_path / "run.rec", ConsoleState())
    source.load()
    await source.start()
    try:
        source.seek(10 * NS)
        assert source.view()["boards"] == []
        source.seek(60 * NS)
        assert source.view()["boards"] == ["jetson-1"]
    finally:
        await source.aclose()


def truth_at(t_s: float, period_s: float) -> dict[str, Any]:
    """A satellite's truth on a circular orbit of ``period_s``, ascending node at t = 100 s."""
    phase = 2 * math.pi * (t_s - 100.0) / period_s
    return {"environment": {"sunlit_frac": 1.0, "lat_deg": 82.0 * math.sin(phase), "lon_deg": 0.0}}


def test_without_a_prediction_the_period_is_measured_on_the_track() -> None:
    state, period_s = ConsoleState(), 5871.9
    for t_s in range(0, 5000, 10):
        state.ingest(Message("truth.sample", truth_at(t_s, period_s), t_ns=t_s * NS))
    assert state.view()["orbit"]["period_s"] is None  # one ascending node so far: not known, not made up
    for t_s in range(5000, 3 * 5872, 10):
        state.ingest(Message("truth.sample", truth_at(t_s, period_s), t_ns=t_s * NS))
    assert abs(state.view()["orbit"]["period_s"] - period_s) < 0.5
    state.prediction = {"period_s": 5800.0}  # a live run's orbit.predict says it
    assert state.view()["orbit"]["period_s"] == 5800.0


def test_a_heater_on_its_thermostat_with_its_rail_off_is_shown_unpowered() -> None:
    from emulator.console.state import DEFAULT_HEATER_RAIL
    from emulator.models.thermal import HeaterConfig

    assert DEFAULT_HEATER_RAIL == HeaterConfig.model_fields["rail"].default  # the model's default rail
    state = ConsoleState()
    heaters = {"battery_heater": {"mode": "on", "on": True}, "payload_heater": {"mode": "auto", "on": False}}
    for t_s, rail_on in ((0, True), (10, False)):
        truth = {"power": {"rails": {"heaters": {"on": rail_on}, "payload": {"on": True}}},
                 "thermal": {"temps_degc": {}, "heaters": heaters}}
        state.ingest(Message("truth.sample", truth, t_ns=t_s * NS))
        shown = {h["name"]: (h["on"], h["rail"], h["powered"]) for h in state.view()["thermal"]["heaters"]}
        assert shown == {"battery_heater": (True, "heaters", rail_on), "payload_heater": (False, "heaters", rail_on)}
    # a heater whose truth names its rail is on that one
    heaters["payload_heater"] = {"mode": "on", "on": True, "rail": "payload"}
    state.ingest(Message("truth.sample", {"power": {"rails": {"heaters": {"on": False}, "payload": {"on": True}}},
                                          "thermal": {"heaters": heaters}}, t_ns=20 * NS))
    assert [h["powered"] for h in state.view()["thermal"]["heaters"]] == [False, True]


def test_the_solar_arrays_are_shown_by_name() -> None:
    state = ConsoleState()
    assert state.view()["bus"]["arrays"] == []
    power = {"array_w": 95.0, "arrays_w": {"wings": 80.0, "body": 15.0}, "array_alive": {"wings": 0.85, "body": 1.0}}
    state.ingest(Message("truth.sample", {"power": power}, t_ns=0))
    assert state.view()["bus"]["arrays"] == [{"name": "wings", "power_w": 80.0, "alive": 0.85},
                                             {"name": "body", "power_w": 15.0, "alive": 1.0}]

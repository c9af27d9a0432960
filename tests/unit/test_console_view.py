"""What the console's panels say (ConsoleState.view and a recording's view), from the messages a run sends."""

from __future__ import annotations

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

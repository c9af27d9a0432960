"""`flatsat monitor URL` shows the live telemetry of a running emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emulator.config import load_config
from emulator.monitor import monitor as _monitor
from emulator.runtime import Emulator

ROOT = Path(__file__).resolve().parents[2]
WALL_GUARD_S = 30.0


async def test_monitor_prints_a_table_of_the_latest_telemetry(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml",
                      {"sim.mode": "scaled", "sim.speed": 50.0, "links.board": None,
                       "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg) as emu:
        run = asyncio.create_task(emu.run_for(3600))
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                assert await _monitor(emu.control_url, None, once=True, fmt="table") == 0
        finally:
            run.cancel()
    out = capsys.readouterr().out
    assert "flatsat monitor" in out
    # the control plane sees everything the board sees, plus link health; ground truth only with --truth
    for text in ("sim.clock", "eps.telemetry", "bus_v", "accel.status", "die_temp_degc", "sim.links"):
        assert text in out
    assert "truth.sample" not in out


async def test_monitor_prints_lines_or_json_when_not_a_terminal_with_rails_by_name() -> None:
    import io
    import json

    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml",
                      {"sim.mode": "scaled", "sim.speed": 50.0, "links.board": None,
                       "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg) as emu:
        run = asyncio.create_task(emu.run_for(3600))
        try:
            lines, js = io.StringIO(), io.StringIO()
            async with asyncio.timeout(WALL_GUARD_S):
                assert await _monitor(emu.control_url, 1.5, False, topics=["eps.*"], out=lines) == 0
                assert await _monitor(emu.control_url, None, True, fmt="json", topics=["eps.telemetry"],
                                      out=js) == 0
        finally:
            run.cancel()
    text = lines.getvalue()  # a StringIO is not a terminal: lines, one per message
    assert text.count("eps.telemetry") >= 1 and "accel.status" not in text
    assert "rails.payload.current_a=" in text and "rails.0." not in text and "mode=" in text
    obj = json.loads(js.getvalue().splitlines()[-1])
    assert obj["topic"] == "eps.telemetry" and "rails.payload.on" in obj["fields"]


def test_by_name_keys_named_lists() -> None:
    from emulator.monitor import fields

    got = fields({"rails": [{"name": "payload", "on": True, "current_a": 1.5}], "mode": "normal"})
    assert got == {"mode": "normal", "rails.payload.current_a": 1.5, "rails.payload.on": True}


async def test_monitor_ends_quietly_when_the_run_ends(capsys: pytest.CaptureFixture[str]) -> None:
    """The emulator it watches stops (its run ended): the monitor says so and exits 0, not a set-up error."""
    import io

    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml",
                      {"sim.mode": "scaled", "sim.speed": 50.0, "links.board": None,
                       "links.control": "zmq+tcp://127.0.0.1:0"})
    lines = io.StringIO()
    emu = Emulator.from_config(cfg)
    await emu.start()
    try:
        run = asyncio.create_task(emu.run_for(3600))
        watch = asyncio.create_task(_monitor(emu.control_url, None, False, topics=["sim.clock"], out=lines))
        async with asyncio.timeout(WALL_GUARD_S):
            while "sim.clock" not in lines.getvalue():
                await asyncio.sleep(0.05)
        run.cancel()
    finally:
        await emu.aclose()
    async with asyncio.timeout(WALL_GUARD_S):
        assert await watch == 0
    err = capsys.readouterr().err
    assert "went away (its run ended, or it was stopped); done" in err


async def test_monitor_says_what_it_was_asked_for_and_never_comes(capsys: pytest.CaptureFixture[str]) -> None:
    """A pattern no topic matches (a typo) and --truth on the board plane (which carries no ground truth) are said
    on stderr; --once with nothing to show is an error (exit 2), not an empty success."""
    import io

    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml",
                      {"sim.mode": "scaled", "sim.speed": 50.0, "links.board": "zmq+tcp://127.0.0.1:0",
                       "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg) as emu:
        run = asyncio.create_task(emu.run_for(3600))
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                assert await _monitor(emu.control_url, None, True, topics=["epss.*"], out=io.StringIO()) == 2
                err = capsys.readouterr().err
                assert f"no topic at {emu.control_url} matches 'epss.*'" in err and "eps.telemetry" in err
                assert await _monitor(emu.control_url, None, True, fmt="table", topics=["epss.*"],
                                      out=io.StringIO()) == 2
                assert f"no topic at {emu.control_url} matches 'epss.*'" in capsys.readouterr().err
                lines = io.StringIO()
                assert await _monitor(emu.board_url, 2.0, False, True, topics=["sim.clock"], out=lines) == 0
                assert "sends no truth.sample (ground truth comes on the control plane only" in capsys.readouterr().err
                assert "sim.clock" in lines.getvalue()
        finally:
            run.cancel()

"""`flatsat monitor URL` shows the live telemetry of a running emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emulator.cli import _monitor
from emulator.config import load_config
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
                assert await _monitor(emu.control_url, None, once=True) == 0
        finally:
            run.cancel()
    out = capsys.readouterr().out
    assert "flatsat monitor" in out
    # the control plane sees everything the board sees, plus link health; ground truth only with --truth
    for text in ("sim.clock", "eps.telemetry", "bus_v", "accel.status", "die_temp_degc", "sim.links"):
        assert text in out
    assert "truth.sample" not in out

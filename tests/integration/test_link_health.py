"""Link health on the control plane: board lag measured by the emulator, round trips reported by the board."""

from __future__ import annotations

import asyncio

from toy_model import Lamp

from emulator.clock import NS_PER_S, VirtualWall
from emulator.config import RunConfig, SimConfig
from emulator.protocol.envelope import Message
from emulator.runtime import Emulator
from emulator.transports import connect
from firmware_stubs.base import BoardClient

WALL_GUARD_S = 10.0


async def test_board_lag_and_reported_round_trips_reach_the_control_plane() -> None:
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0)), wall=VirtualWall(), board_url="loop://health",
                   control_url=None)
    async with emu, await connect("loop://health") as link:
        board = BoardClient(link, "lamp-board")
        await board.start()
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                await emu.run_for(100)
                # the board acts on a view of sim time 30 s old: the emulator measures it from the envelope
                await link.send(Message("ping", {}, seq=99, t_ns=70 * NS_PER_S, src="lamp-board"))
                for _ in range(3):
                    await board.request("ping")
                await board.request("board.link", board.link_report())
        finally:
            await board.aclose()
        sample = emu.links_sample()
    assert sample["board"]["is_up"] is True and sample["board"]["bad_frames"] == 0
    board_entry = sample["boards"]["lamp-board"]  # what the board measured sits beside the lag of its requests
    reported = board_entry["reported"]
    assert reported["requests"] == 3 and reported["rtt_max_ms"] >= reported["rtt_p50_ms"] >= 0
    # the last request carried the board's newest sim time (t = 100 s from telemetry): no lag left
    assert board_entry["lag_s"] == 0.0
    assert "sim.links" in emu.catalogue and emu.stats_snapshot()["board_links"]["lamp-board"]["lag_s"] == 0.0


async def test_a_stale_request_shows_as_lag() -> None:
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0)), wall=VirtualWall(), board_url="loop://lag",
                   control_url=None)
    async with emu, await connect("loop://lag") as link:
        await emu.run_for(100)
        async with asyncio.timeout(WALL_GUARD_S):
            await link.send(Message("ping", {}, seq=1, t_ns=70 * NS_PER_S, src="slow-board"))
            while True:
                msg = await link.recv()
                if msg.topic == "reply":
                    break
    assert emu.links_sample()["boards"]["slow-board"]["lag_s"] == 30.0

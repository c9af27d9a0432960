"""A request the emulator cannot answer normally is still answered, and the plane keeps serving.

Found by a user at the console: a fault injected for 1e30 s was accepted, its expiry (1e39 ns) could not be
encoded in any later reply that listed it, the exception ended the control plane's serve loop, and from then on
no request was answered (telemetry still flowed, nothing was logged)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from toy_model import Lamp, LampSet

from emulator.clock import VirtualWall
from emulator.config import RunConfig, SimConfig
from emulator.models.base import Command, Interface, command_spec
from emulator.protocol.envelope import Message
from emulator.protocol.system_schemas import LONGEST_SPAN_S
from emulator.runtime import Emulator
from emulator.transports import connect

WALL_GUARD_S = 10.0


class BuggyLamp(Lamp):
    """A lamp with a command whose reply holds an int msgpack cannot encode (a model bug)."""

    def interface(self) -> Interface:
        iface = super().interface()
        iface.extend(Interface(commands=[Command(command_spec("lamp.huge", LampSet, "A buggy reply."),
                                                 lambda p: {"energy_nj": 10**30})]))
        return iface


async def _request(link: Any, topic: str, payload: dict[str, Any], seq: int) -> dict[str, Any]:
    await link.send(Message(topic, payload, seq=seq))
    async with asyncio.timeout(WALL_GUARD_S):
        while True:
            msg = await link.recv()
            if msg.topic == "reply" and msg.payload["id"] == seq:
                return msg.payload


async def test_a_reply_that_cannot_be_encoded_is_answered_as_an_internal_error_and_serving_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    emu = Emulator(BuggyLamp(), RunConfig(sim=SimConfig(step_s=1.0, mode="realtime")), wall=VirtualWall(),
                   board_url="loop://serve-huge", control_url=None, record_path=None)
    async with emu, await connect("loop://serve-huge") as link:
        run = asyncio.create_task(emu.run_for(30))
        with caplog.at_level(logging.ERROR, logger="emulator.runtime"):
            bad = await _request(link, "lamp.huge", {"on": True}, 1)
        assert bad["ok"] is False and bad["re"] == "lamp.huge"
        assert bad["error"]["code"] == "internal" and "could not be encoded" in bad["error"]["message"]
        assert any("could not be encoded" in r.getMessage() for r in caplog.records)  # said, not silent
        good = await _request(link, "lamp.set", {"on": True}, 2)  # the plane still serves
        assert good["ok"] is True and good["data"] == {"on": True}
        assert emu.stats.refused["board"].get("internal") == 1
        await run


@pytest.mark.parametrize(("topic", "payload", "field"), [
    ("fault.inject", {"name": "radiation.scale", "params": {"factor": 2.0}, "duration_s": 1e30},
     "payload.duration_s"),
    ("clock.run_until", {"t_s": 1e30}, "payload.t_s"),
    ("clock.step", {"duration_s": 1e30}, "payload.duration_s"),
])
async def test_a_span_of_sim_time_beyond_ten_years_is_refused_by_name(topic: str, payload: dict[str, Any],
                                                                     field: str) -> None:
    from emulator.config import load_config
    from emulator.protocol.catalogue import Plane

    cfg = load_config("suncatcher-proto", {"sim.mode": "lockstep"})
    async with Emulator.from_config(cfg, board_url=None, control_url=None, record_path=None) as emu:
        reply = emu.handle_request(Message(topic, payload), Plane.CONTROL).payload
        assert reply["ok"] is False and reply["error"]["field"] == field
        assert str(LONGEST_SPAN_S) in reply["error"]["message"]
        assert emu.handle_request(Message("truth.get", {}), Plane.CONTROL).payload["ok"]  # nothing half-done

"""The console's live source against a scripted control plane: what the page is told when the emulator stops
answering, goes away, or was never there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emulator.clock import WallSource
from emulator.console.sources import UNANSWERED_S, LiveSource
from emulator.console.state import ConsoleState
from emulator.protocol.envelope import Message
from emulator.transports.base import LinkStats

NS = 1_000_000_000
WALL_GUARD_S = 10.0


class HandWall(WallSource):
    """Wall time moved by the test; a sleeper wakes when the test has moved it past its deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0

    def now_ns(self) -> int:
        return self.now

    async def sleep_until(self, wall_ns: int) -> None:
        while self.now < wall_ns:
            await asyncio.sleep(0.005)


class ScriptedLink:
    """A control plane that answers only while ``answering`` (its telemetry flows regardless)."""

    def __init__(self) -> None:
        self.stats = LinkStats()
        self.answering = True
        self.sent: list[Message] = []
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()

    async def send(self, msg: Message) -> None:
        self.sent.append(msg)
        if self.answering:
            data: dict[str, Any] = {"t_ns": 0, "clock": {"mode": "scaled", "speed": 10.0, "paused": False}}
            self.inbox.put_nowait(Message("reply", {"id": msg.seq, "ok": True, "data": data}))

    async def recv(self) -> Message:
        return await self.inbox.get()

    async def aclose(self) -> None:
        pass


async def until(what: str, check: Any) -> None:
    async with asyncio.timeout(WALL_GUARD_S):
        while not check():
            await asyncio.sleep(0.005)


async def test_requests_left_unanswered_are_reported_while_telemetry_still_flows() -> None:
    link, wall = ScriptedLink(), HandWall()

    async def connect(url: str) -> ScriptedLink:
        return link

    source = LiveSource("zmq+tcp://127.0.0.1:18901", ConsoleState(), wall=wall, connect=connect)
    await source.start()
    try:
        await until("the first polls answered", lambda: any(m.topic == "truth.get" for m in link.sent))
        assert source.view()["requests"] == {"unanswered_s": None}
        link.answering = False
        wall.now += round(2.5 * NS)  # the next poll goes out and is not answered
        sent = len(link.sent)
        await until("the next poll", lambda: len(link.sent) > sent)
        link.inbox.put_nowait(Message("sim.clock", {"t_ns": 5 * NS, "mode": "scaled"}, t_ns=5 * NS))
        await until("the telemetry read", lambda: source.state.t_ns == 5 * NS)
        wall.now += round((UNANSWERED_S - 1) * NS)
        assert source.view()["requests"]["unanswered_s"] is None  # a slow answer is not yet a problem
        wall.now += round(20 * NS)
        waited = source.view()["requests"]["unanswered_s"]
        assert waited == pytest.approx(UNANSWERED_S + 19, abs=1)
        assert source.connected  # telemetry arrived; requests did not
        link.answering = True
        link.inbox.put_nowait(Message("reply", {"id": link.sent[-1].seq, "ok": True, "data": {}}))
        await until("the answer", lambda: source.view()["requests"]["unanswered_s"] is None)
    finally:
        await source.aclose()


async def test_an_emulator_that_went_away_is_said_in_plain_words_and_nothing_is_made_up() -> None:
    from emulator.console.sources import GONE
    from emulator.errors import TransportError

    class GoneLink(ScriptedLink):
        async def recv(self) -> Message:
            await asyncio.sleep(0.01)
            self.stats.is_up = False  # as a real link says while its peer is gone
            raise TransportError("zmq: the server went away (the link stays open and reconnects; recv() again)")

    link = GoneLink()

    async def connect(url: str) -> ScriptedLink:
        return link

    source = LiveSource("zmq+tcp://127.0.0.1:18902", ConsoleState(), wall=HandWall(), connect=connect)
    await source.start()
    try:
        await until("the link lost", lambda: source.error is not None)
        assert not source.connected
        meta = source.meta()
        assert meta["error"] == GONE and "recv()" not in meta["error"]
        view = source.view()  # nothing heard: unknown, not zero or "quiet"
        assert view["radiation"]["unhandled"] is None and view["radiation"]["in_saa"] is None
        assert view["clock"] == {} and view["battery"]["soc"] is None
    finally:
        await source.aclose()

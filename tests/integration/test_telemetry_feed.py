"""telemetry.feed: a peer's own decimated feed of the control plane (what `flatsat console` asks for).

The feed's rate is per wall second: these tests run the emulator on a virtual wall clock, so what each feed
carries is exact, not a timing measurement.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import NS_PER_S, VirtualWall
from emulator.config import load_config
from emulator.errors import CommandError, InvalidTransportURL
from emulator.protocol.envelope import Message
from emulator.runtime import Emulator
from emulator.transports import connect, parse_transport_url
from emulator.transports.base import MAX_FEEDS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "suncatcher-proto.toml"
TELEMETRY = ("eps.telemetry", "thermal.telemetry", "adcs.sun", "accel.status", "sim.clock", "truth.sample")

QUIET_S = 0.6


def emulator(mode: str = "afap") -> Emulator:
    cfg = load_config(CONFIG, {"sim.mode": mode, "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"})
    return Emulator.from_config(cfg, record_path=None, wall=VirtualWall())


class Peer:
    """A control-plane client that keeps what arrives, by topic."""

    def __init__(self, link: Any) -> None:
        self.link = link
        self.seq = 0
        self.got: list[Message] = []
        self.replies: dict[int, dict[str, Any]] = {}

    async def ask(self, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        self.seq += 1
        seq = self.seq
        await self.link.send(Message(topic, payload or {}, seq=seq, src="test"))
        async with asyncio.timeout(10):
            while seq not in self.replies:
                await self.take()
        return self.replies.pop(seq)

    async def take(self) -> None:
        msg = await self.link.recv()
        if msg.topic == "reply":
            self.replies[msg.payload["id"]] = msg.payload
        else:
            self.got.append(msg)

    async def drain(self) -> Counter[str]:
        """Everything queued now, counted by topic (and cleared): taken until the line has been quiet for
        ``QUIET_S`` of wall time (on a loaded machine 0.2 s of quiet came before the last message)."""
        while True:
            try:
                async with asyncio.timeout(QUIET_S):
                    await self.take()
            except TimeoutError:
                break
        counts = Counter(m.topic for m in self.got)
        self.got.clear()
        return counts


def unsubscribed(url: str) -> str:
    """The control plane's URL for a client whose SUB takes nothing: all it gets is its feed."""
    return str(parse_transport_url(url).replace(subscribe=False))


async def peer_of(emu: Emulator, url: str | None = None) -> AsyncIterator[Peer]:
    async with await connect(url or unsubscribed(emu.control_url)) as link:
        yield Peer(link)


async def test_a_feed_carries_each_topic_at_most_max_hz_of_wall_time_and_builds_no_more() -> None:
    async with emulator() as emu:
        async for peer in peer_of(emu):
            reply = await peer.ask("telemetry.feed", {"max_hz": 10.0})
            assert reply["ok"] and reply["data"] == {"feeding": True, "max_hz": 10.0, "topics": None,
                                                      "lease_s": 10.0, "feeds": 1}
            emu.catalogue.get("telemetry.feed").reply.model_validate(reply["data"])  # the declared shape
            published = emu.stats.published
            await emu.run_for(3600.0)  # an hour of sim time in no wall time at all: one sample of each
            got = await peer.drain()
            assert all(got[t] == 1 for t in TELEMETRY), got
            # the emulator built them for the feed alone: not the 3600 samples of each a subscriber would cost
            assert emu.stats.published - published < 3 * len(TELEMETRY)
            for _ in range(5):  # 0.1 s of wall time between runs: one more sample of each
                emu.clock.wall.advance(NS_PER_S // 10)
                await emu.run_for(60.0)
            got = await peer.drain()
            assert all(got[t] == 5 for t in TELEMETRY), got
            stats = (await peer.ask("stats.get"))["data"]["control_link"]["feeds"]
            assert stats[0]["max_hz"] == 10.0 and stats[0]["sent"] >= 6 * len(TELEMETRY)


async def test_beside_a_subscriber_a_feed_gets_the_newest_sample_and_counts_every_other_as_skipped() -> None:
    """Every step's sample is built (someone receives them all); the feed is offered each one and, when the link
    pumps (as the clock yields, at most every FEED_PUMP_NS of wall time; at the end of a run), takes the newest if
    its interval allows: sent + skipped is every sample published after it started, and what it sends is the
    newest one."""
    class TickingWall(VirtualWall):
        """10 ns of wall time per reading: the clock's batches grow (to YIELD_STEPS, so a feed is offered many
        samples between two yields), the feed's 0.1 s does not pass."""

        def now_ns(self) -> int:
            self.advance(10)
            return super().now_ns()

    cfg = load_config(CONFIG, {"sim.mode": "afap", "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None, wall=TickingWall()) as emu:
        eps_t_ns: list[int] = []
        emu.add_message_observer(lambda t, plane, way, msg: eps_t_ns.append(msg.t_ns)
                                 if way == "out" and msg.topic == "eps.telemetry" else None)
        async for peer in peer_of(emu):
            assert (await peer.ask("telemetry.feed", {"max_hz": 10.0, "topics": ["eps.telemetry"]}))["ok"]
            await peer.drain()
            published = len(eps_t_ns)
            await emu.run_for(600.0)  # no wall time passes: one sample goes (the newest at the first yield)
            emu.clock.wall.advance(NS_PER_S // 10)
            await emu.run_for(1.0)  # a feed interval later: the newest, this step's
            async with asyncio.timeout(10):
                while len(peer.got) < 2:
                    await peer.take()
            sent = [m.t_ns for m in peer.got if m.topic == "eps.telemetry"]
            assert sent[-1] == eps_t_ns[-1] == emu.clock.now_ns()
            assert len(sent) == 2 and sent[0] in eps_t_ns[published:]
            feed = (await peer.ask("stats.get"))["data"]["control_link"]["feeds"][0]
            assert feed["sent"] == 2
            assert feed["sent"] + feed["skipped"] == len(eps_t_ns) - published


async def test_events_always_and_the_newest_sample_when_the_clock_stops() -> None:
    async with emulator("lockstep") as emu:
        run = asyncio.create_task(emu.run(None))
        async for peer in peer_of(emu):
            await peer.ask("telemetry.feed", {"max_hz": 1.0, "topics": ["eps.telemetry", "fault.changed",
                                                                          "sim.waiting"]})
            await peer.drain()
            reply = await peer.ask("fault.inject", {"name": "eps.rail.short", "params": {"rail": "payload",
                                                                                         "extra_a": 0.5}})
            fid = reply["data"]["fault_id"]
            await peer.ask("fault.clear", {"fault_id": fid})
            assert (await peer.ask("clock.step", {"duration_s": 600.0}))["ok"]
            async with asyncio.timeout(10):
                while not any(m.topic == "sim.waiting" and m.t_ns == 600 * NS_PER_S for m in peer.got):
                    await peer.take()
            got = list(peer.got)
            assert [m.payload["active"] for m in got if m.topic == "fault.changed"] == [True, False]
            eps = [m for m in got if m.topic == "eps.telemetry"]
            # no wall time passed: the feed held the samples back, then sent the newest as the clock stopped,
            # before sim.waiting (what came before it is the state at its t_ns)
            assert eps[-1].t_ns == 600 * NS_PER_S
            assert got.index(eps[-1]) < next(i for i, m in enumerate(got) if m.topic == "sim.waiting")
            assert {m.topic for m in got} <= {"eps.telemetry", "fault.changed", "sim.waiting"}
        emu.request_stop("test done")
        await run


async def test_bad_requests_are_refused_naming_the_field() -> None:
    async with emulator() as emu:
        async for peer in peer_of(emu):
            for payload, field in (({"max_hz": 0}, "payload.max_hz"), ({"max_hz": 5000.0}, "payload.max_hz"),
                                   ({"lease_s": 0.1}, "payload.lease_s"), ({"topics": []}, "payload.topics"),
                                   ({"topics": ["eps.telemetry", "eps.telemtry"]}, "payload.topics.1"),
                                   ({"topics": ["eps.rail.set"]}, "payload.topics.0"), ({"hz": 1}, "payload.hz")):
                reply = await peer.ask("telemetry.feed", payload)
                assert reply["ok"] is False and reply["error"]["field"] == field, (payload, reply)
            reply = await peer.ask("telemetry.feed", {"topics": ["eps.telemtry"]})
            assert "did you mean 'eps.telemetry'" in reply["error"]["message"]
            assert "eps.telemetry" in reply["error"]["valid"]
            assert not emu.control_link.feeds
        with pytest.raises(CommandError, match="sends to the peer that asked"):
            emu.control("telemetry.feed", {})
    with pytest.raises(InvalidTransportURL, match="subscribe"):
        parse_transport_url("zmq+tcp://127.0.0.1:5560?subscribe=maybe")


async def test_a_feed_ends_on_stop_when_its_lease_runs_out_and_feeds_are_bounded() -> None:
    async with emulator() as emu:
        async for peer in peer_of(emu):
            assert (await peer.ask("telemetry.feed", {"lease_s": 2.0}))["ok"]
            stopped = (await peer.ask("telemetry.feed", {"stop": True}))["data"]
            assert stopped == {"feeding": False, "ended": True, "feeds": 0}
            emu.catalogue.get("telemetry.feed").reply.model_validate(stopped)
            assert (await peer.ask("telemetry.feed", {"lease_s": 2.0}))["ok"]
            emu.clock.wall.advance(3 * NS_PER_S)  # no renewal within the lease
            await emu.run_for(10.0)
            assert not emu.control_link.feeds and emu.control_link.stats.drops["feed_expired"] == 1
            # at most MAX_FEEDS peers have one: the next is told why
            links = [await connect(unsubscribed(emu.control_url)) for _ in range(MAX_FEEDS)]
            try:
                for link in links:
                    other = Peer(link)
                    assert (await other.ask("telemetry.feed", {}))["ok"]
                reply = await peer.ask("telemetry.feed", {})
                assert reply["ok"] is False and f"{MAX_FEEDS} peers have a feed" in reply["error"]["message"]
            finally:
                for link in links:
                    await link.aclose()


async def test_over_zeromq_a_client_that_does_not_subscribe_gets_its_feed_beside_its_replies() -> None:
    async with emulator("lockstep") as emu:
        run = asyncio.create_task(emu.run(None))
        async for plain in peer_of(emu, emu.control_url):
            async for fed in peer_of(emu):
                await fed.ask("telemetry.feed", {"max_hz": 5.0})
                for k in range(3):  # requests keep being answered while the feed uses the same socket
                    assert (await fed.ask("clock.step", {"duration_s": 30.0}))["ok"]
                    while emu.clock.now_ns() < (k + 1) * 30 * NS_PER_S:  # the steps ran, in this wall second
                        await asyncio.sleep(0)
                    emu.clock.wall.advance(NS_PER_S)
                assert (await fed.ask("truth.get"))["ok"]
                got = await fed.drain()
                everything = await plain.drain()
                # per clock.step (one wall second each): at most one sample at 5 Hz, and the newest at the stop
                assert 1 <= got["eps.telemetry"] <= 2 * 3 < everything["eps.telemetry"], (got, everything)
                assert got["sim.waiting"] == everything["sim.waiting"] >= 1  # every event
        emu.request_stop("test done")
        await run

"""The runtime's outbox: in afap and lockstep what the loop publishes between two yields is sent together as it
yields (bounded by OUTBOX_MESSAGES, in publishing order); a paced clock sends every message in its own step."""

from __future__ import annotations

import asyncio

import pytest
from toy_model import Lamp

from emulator import runtime
from emulator.clock import NS_PER_S, QUIET_YIELD_NS, YIELD_NS, VirtualWall
from emulator.config import RunConfig, SimConfig
from emulator.protocol.codec import decode_message
from emulator.protocol.envelope import Message
from emulator.runtime import Emulator
from emulator.transports import connect

WALL_GUARD_S = 10.0


class _BusyWall(VirtualWall):
    """Every look at the wall clock finds 1 us more gone: the afap clock sizes its batches (steps per yield) as it
    would on a real machine."""

    def now_ns(self) -> int:
        self._now_ns += 1_000
        return self._now_ns


def _wall() -> VirtualWall:
    return _BusyWall()


def _watch_sends(emu: Emulator) -> list[tuple[int, int, int]]:
    """(seq, t_ns of the envelope, sim time when sent) of every message the board link sends."""
    sent: list[tuple[int, int, int]] = []
    link = emu.board_link
    send = link._publish_bytes

    def publish(data: bytes, event: bool) -> None:
        msg = decode_message(data)
        sent.append((msg.seq, msg.t_ns, emu.clock.now_ns()))
        send(data, event)

    link._publish_bytes = publish
    return sent


async def _drain(link, last_seq: int) -> list[int]:
    """The seqs the client receives, up to ``last_seq``."""
    seqs = [-1]
    async with asyncio.timeout(WALL_GUARD_S):
        while seqs[-1] != last_seq:
            seqs.append((await link.recv()).seq)
    return seqs[1:]


async def test_afap_sends_a_batch_of_steps_together_in_order_and_everything_arrives() -> None:
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0, mode="afap")), wall=_wall(),
                   board_url="loop://outbox-afap", control_url=None, record_path=None)
    async with emu, await connect("loop://outbox-afap") as link:
        await emu.run_for(1)  # the client is seen
        sent = _watch_sends(emu)
        await emu.run_for(300)
        assert not emu._outbox  # the end of a run sends what is left
        seqs = [s for s, _, _ in sent]
        assert seqs == sorted(seqs) and len(seqs) >= 300
        # published at many different sim times, sent at far fewer (the clock's yields)
        published_at = {t for _, t, _ in sent}
        sent_at = {now for _, _, now in sent}
        assert len(published_at) >= 300 and len(sent_at) < len(published_at) / 4
        received = await _drain(link, seqs[-1])
        assert received[-len(seqs):] == seqs


async def test_the_outbox_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "OUTBOX_MESSAGES", 3)
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0, mode="afap")), wall=_wall(),
                   board_url="loop://outbox-bound", control_url=None, record_path=None)
    sizes: list[int] = []
    async with emu, await connect("loop://outbox-bound") as link:
        await emu.run_for(1)
        send_outbox = emu._send_outbox

        def counted() -> None:
            sizes.append(len(emu._outbox))
            send_outbox()

        emu._send_outbox = counted
        sent = _watch_sends(emu)
        await emu.run_for(200)
        assert max(sizes) == 3  # full: sent at once, nothing dropped
        assert len(sent) >= 200 and emu.board_link.stats.drops == {}
        assert (await _drain(link, sent[-1][0]))[-len(sent):] == [s for s, _, _ in sent]


async def test_a_paced_clock_sends_each_step_as_it_is_published() -> None:
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0, mode="realtime")), wall=VirtualWall(),
                   board_url="loop://outbox-paced", control_url=None, record_path=None)
    async with emu, await connect("loop://outbox-paced") as link:
        await emu.run_for(1)
        sent = _watch_sends(emu)
        await emu.run_for(20)
        assert len(sent) >= 20
        assert all(t == now for _, t, now in sent)  # sent in the step it was published, not at the next yield
        assert emu.clock.now_ns() == 21 * NS_PER_S
        assert (await _drain(link, sent[-1][0]))[-len(sent):] == [s for s, _, _ in sent]


async def test_a_run_nobody_talks_to_yields_less_often_until_a_request_comes() -> None:
    """Subscribers only (or nobody): the clock yields every QUIET_YIELD_NS, so batches are longer. A request brings
    back YIELD_NS at once (it is answered within ~1 ms from then on), until none has come for QUIET_AFTER_NS."""
    wall = _BusyWall()
    emu = Emulator(Lamp(), RunConfig(sim=SimConfig(step_s=1.0, mode="afap")), wall=wall,
                   board_url="loop://outbox-quiet", control_url=None, record_path=None)
    async with emu, await connect("loop://outbox-quiet") as link:
        await emu.run_for(100)
        assert emu.clock.yield_ns == QUIET_YIELD_NS
        await link.send(Message("lamp.set", {"on": True}, seq=1))
        async with asyncio.timeout(WALL_GUARD_S):
            while (msg := await link.recv()).topic != "reply":
                pass
        assert msg.payload["ok"] and emu.clock.yield_ns == YIELD_NS
        await emu.run_for(100)  # ~a millisecond of (busy) wall time later: still talking
        assert emu.clock.yield_ns == YIELD_NS
        wall.advance(runtime.QUIET_AFTER_NS)
        await emu.run_for(100)
        assert emu.clock.yield_ns == QUIET_YIELD_NS

"""What every board stub shares: a board-side client (request/reply by id, latest telemetry, sim time)
and the control loop that calls a controller every control period, in lockstep or free-running.

A stub is a peer on the wire exactly like real firmware: it imports only ``emulator.protocol``,
``emulator.transports``, ``emulator.clock`` helpers and ``emulator.errors``, never the models.

The client survives a bad line (docs/protocol.md, "Lost messages"): a request whose reply does not come within
``RetryPolicy.timeout_s`` is followed by a ``ping``; replies come in request order, so a ping answered first
proves the request or its reply lost. A request that is safe to repeat (:data:`REPEATABLE_TOPICS`) is then sent
again with the same ``seq``; one that is not raises :class:`RequestLostError` and the controller learns the
outcome from telemetry. In a lockstep run the board keeps time moving: a lost ``board.step`` is re-sent only
if the clock shows it did not run, and a lost ``sim.waiting`` is found by asking the clock where it is. Link
errors are logged and counted; a link that closes is opened again. Only the board's own end, a refused
protocol version or a signal ends :func:`run_board`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import logging
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.errors import (
    CommandError,
    ConfigError,
    EmulatorError,
    InvalidTransportURL,
    TransportBrokenError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from emulator.launch import parent_pid, watch_process
from emulator.protocol.envelope import PROTOCOL_VERSION, Message

log = logging.getLogger("flatsat.board")

NS_PER_S = 1_000_000_000
#: boards report their link figures (board.link) every this many control turns
LINK_REPORT_TICKS = 6
#: events kept for the controller between two turns; older ones are dropped (and counted) beyond it
MAX_EVENTS = 1024
#: wall-clock round trips kept for the board.link percentiles
MAX_RTTS = 4096
#: requests a board may have posted (sent, reply not yet taken: BoardClient.post) at once
MAX_POSTED = 64

#: Requests whose second copy does what the first did (the same state, the same reply): after a proven loss the
#: board sends them again with the same ``seq``. ``accel.reset`` restarts a boot that the first copy started,
#: which in lockstep (sim time stands still while the board acts) is the same boot. The rest (``accel.job.submit``,
#: ``accel.job.verdict``, ``accel.job.cancel``, ``board.step`` and anything unknown) are not repeated, unless the
#: emulator answers a repeated ``seq`` from its reply cache (``duplicate_window`` in the board.hello reply).
REPEATABLE_TOPICS = frozenset({
    "ping", "board.hello", "board.link", "eps.rail.set", "eps.rail.reset", "eps.shed.set", "thermal.heater.set",
    "accel.dvfs.set", "accel.reset", "accel.report",
})


def repeatable(topic: str) -> bool:
    """True for a topic in :data:`REPEATABLE_TOPICS`, also behind a cluster member prefix (``sat.3.eps.rail.set``)."""
    return topic in REPEATABLE_TOPICS or any(topic.endswith("." + t) for t in REPEATABLE_TOPICS)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a board waits and how often it tries again (wall-clock seconds: while the board waits for a reply
    in a lockstep run, the emulator waits for the board, so sim time cannot measure it).

    A time-out costs one ``ping``, never a wrong repeat: a late reply still counts, and only a ping answered
    before it proves a loss. So ``timeout_s`` can be short; ``resync_after_s`` is how long a lockstep board waits
    for ``sim.waiting`` after its step before asking the clock (a slow step then only costs a ping).
    """

    timeout_s: float = 1.0
    #: each silent round (not even the ping answered) waits this much longer than the last, up to max_wait_s
    backoff: float = 2.0
    max_wait_s: float = 8.0
    #: a repeatable request is sent at most this many times; any request gives up after this many silent rounds
    attempts: int = 5
    resync_after_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_wait_s", "resync_after_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 s, got {getattr(self, name)}", field=name)
        if self.backoff < 1:
            raise ConfigError(f"backoff must be >= 1, got {self.backoff}", field="backoff")
        if self.attempts < 1:
            raise ConfigError(f"attempts must be >= 1, got {self.attempts}", field="attempts")

    def longer(self, wait_s: float) -> float:
        return min(self.max_wait_s, wait_s * self.backoff)


@dataclass
class LinkCounters:
    """What the line cost the board (the stub's summary line; ``board.link`` carries them too)."""

    #: waits for a reply that ran out (each followed by a ping)
    timeouts: int = 0
    #: requests sent again, same seq, after their loss was proven (or after a send failed)
    retries: int = 0
    #: requests given up: RequestLostError raised to the controller
    lost: int = 0
    #: lockstep turns taken without their sim.waiting (lost): the clock, asked, was waiting
    resyncs: int = 0
    #: board.step whose reply was lost but whose effect the clock showed (not sent again)
    unacked_steps: int = 0
    #: errors of the link itself (send failed, peer gone, unexpected errors), logged and survived
    link_errors: int = 0
    #: links opened again after one closed
    reconnects: int = 0
    #: board.hello said again to an emulator whose clock went back (it restarted)
    rehellos: int = 0
    #: events dropped because the controller had not taken them (MAX_EVENTS)
    events_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.as_dict().items())


class RequestLostError(TransportTimeoutError):
    """No reply, and none will come: the request or its reply was lost, or the emulator does not answer.

    Whether the request took effect is unknown; the next telemetry tells. ``topic`` names the request.
    """

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message, field="topic")
        self.topic = topic


@dataclass
class BoardLog:
    """What the board did and why (reported in the stub's summary; tests read it)."""

    actions: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: the link's counters when the board stopped (LinkCounters.as_dict)
    link: dict[str, int] = field(default_factory=dict)
    #: the medium's own counters then (LinkStats: bad_frames, decode_errors, ... of the last link opened)
    line: dict[str, Any] = field(default_factory=dict)
    #: requests sent after waiting for the emulator (BoardClient.round_trips) when the board stopped
    round_trips: int = 0

    def link_summary(self) -> str:
        """``"0 timeouts, 0 retries, ...; line: 0 bad frames, 0 decode errors"`` for the stub's summary line."""
        if not self.link:
            return "never opened"
        text = LinkCounters(**self.link).summary()
        if self.line:
            text += f"; line: {self.line.get('bad_frames', 0)} bad frames, {self.line.get('decode_errors', 0)} " \
                    "decode errors"
        return text

    def add(self, t_ns: int, text: str) -> None:
        self.actions.append((t_ns, text))
        log.info("t=%.0fs %s", t_ns / NS_PER_S, text)


@dataclass
class _Posted:
    """A posted request: queued (``sent`` None) until the board next sends or waits, then sent (unless ``sent`` is
    False), its reply taken by BoardClient.settle."""

    msg: Message
    fut: asyncio.Future[Message]
    start: float
    sent: bool | None
    check: bool
    repeat: bool | None


class BoardClient:
    """The board's view of the emulator: latest telemetry by topic, events, requests with replies, lockstep turns.

    ``reconnect`` (an async factory of a new link) lets the client open the link again when it closes; without
    it a closed link ends the client (``closed`` is set and requests raise).
    """

    def __init__(self, link: Any, name: str, *, policy: RetryPolicy | None = None,
                 reconnect: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.link = link
        self.name = name
        self.policy = policy or RetryPolicy()
        self.counters = LinkCounters()
        self.latest: dict[str, dict[str, Any]] = {}
        self.t_ns = 0
        self.hello: dict[str, Any] = {}
        self._hello_payload: dict[str, Any] | None = None
        #: the emulator answers a repeated (src, seq) from a cache: every request may be repeated
        self.repeat_all = False
        self._seq = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        #: posted requests whose replies are not taken yet (post; at most MAX_POSTED), oldest first
        self._posted: deque[_Posted] = deque()
        #: posted requests not handed to the link yet: they leave together with the next send or before a wait
        self._unsent: deque[_Posted] = deque()
        #: refusals and losses of posted requests taken but not yet returned by settle()
        self.refusals: list[CommandError | RequestLostError] = []
        #: wall-clock round trips of requests, seconds (the board's own clock, not the emulator's)
        self.rtts_s: deque[float] = deque(maxlen=MAX_RTTS)
        self._rtts_sorted: list[float] = []  # the same, in order (board.link's percentiles without a sort)
        self.requests = 0
        #: requests sent after the board waited for the emulator (a reply or a turn): a lockstep turn's round
        #: trips (requests posted together, and a turn's posted requests with its step, count once)
        self.round_trips = 0
        self._waited = True
        #: sim time of the emulator at the last reply minus the newest telemetry the board had then
        self.lag_s = 0.0
        self._events: deque[Message] = deque(maxlen=MAX_EVENTS)
        # lockstep: the newest sim.waiting heard, the turn taken last, where the clock may run to, its step
        self._waiting_t = -1
        self._turn_waiter: asyncio.Future[None] | None = None
        self.turn_ns = -1
        self.limit_ns = 0
        self.step_ns = 0
        self._last_step_s: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnect = reconnect
        self._closing = False
        self.closed = asyncio.Event()
        self._progress = asyncio.Event()
        self.error: BaseException | None = None

    # -- the link ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"board-{self.name}-reader")

    async def aclose(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.link.aclose()
        self._fail_pending(TransportClosedError(f"board {self.name}: closed"))
        for posted in self._posted:  # replies nobody will take now: their failure is the close itself
            if posted.fut.done() and not posted.fut.cancelled():
                posted.fut.exception()
        self._posted.clear()
        self._unsent.clear()

    async def _read(self) -> None:
        pause_s = self.policy.timeout_s
        while True:
            try:
                msg = await self.link.recv()
            except asyncio.CancelledError:
                raise
            except TransportClosedError as exc:
                if self._closing or self._reconnect is None:
                    self._end(exc)
                    return
                await self._reopen(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken link (or a bug in a medium) must not end the board
                self.counters.link_errors += 1
                log.warning("link to the emulator: %s; waiting for it to come back", exc)
                if not isinstance(exc, TransportBrokenError):
                    await asyncio.sleep(pause_s)  # the board's backoff: an error that repeats must not spin
                    pause_s = self.policy.longer(pause_s)
                if await self._wait_up():
                    continue
                if self._reconnect is None:
                    self._end(exc)
                    return
                await self._reopen(exc)
                continue
            pause_s = self.policy.timeout_s
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if msg.t_ns > self.t_ns:
            self.t_ns = msg.t_ns
            self._progress.set()
        if msg.topic == "reply":
            fut = self._pending.pop(msg.payload.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif msg.topic == "sim.waiting":
            t = msg.payload.get("t_ns", msg.t_ns)
            if isinstance(t, int) and t > self._waiting_t:
                self._waiting_t = t
                self._wake_turn()
        else:
            self.latest[msg.topic] = msg.payload
            if "." in msg.topic and not msg.topic.endswith(("telemetry", ".status", "sim.clock", ".sun")):
                if len(self._events) == self._events.maxlen:
                    self.counters.events_dropped += 1
                self._events.append(msg)

    async def _wait_up(self) -> bool:
        """Wait (bounded) for a link that went down to come back by itself (zmq reconnects, serial reopens)."""
        try:
            async with asyncio.timeout(self.policy.max_wait_s):
                await self.link.wait_until_up()
            return True
        except (TimeoutError, TransportError):
            return False

    async def _reopen(self, why: BaseException) -> None:
        """Open a new link (the old one closed or stays down), trying again with backoff until one opens."""
        assert self._reconnect is not None
        with contextlib.suppress(Exception):  # the old link is already broken; closing it only frees it
            await self.link.aclose()
        wait_s = self.policy.timeout_s
        while True:
            try:
                self.link = await self._reconnect()
            except InvalidTransportURL:
                raise
            except EmulatorError as exc:
                self.counters.link_errors += 1
                log.warning("reopening the link to the emulator (%s) failed: %s; again in %g s", why, exc, wait_s)
                await asyncio.sleep(wait_s)  # the board's own backoff between attempts
                wait_s = self.policy.longer(wait_s)
                continue
            self.counters.reconnects += 1
            log.warning("link to the emulator reopened (%s)", why)
            return

    def _end(self, exc: BaseException) -> None:
        self.error = exc
        self._fail_pending(exc if isinstance(exc, Exception) else TransportError(str(exc)))
        self.closed.set()
        self._wake_turn()

    def _wake_turn(self) -> None:
        """Wake :meth:`next_turn` to look again (a newer sim.waiting, a hello, the end of the link)."""
        waiter = self._turn_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_pending(self, exc: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def _pause(self, wait_s: float) -> None:
        """The board's backoff between tries: ``wait_s`` of wall time, or less if the link ends for good."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), wait_s)

    def _check_alive(self) -> None:
        if self.closed.is_set():
            raise TransportError(f"link to the emulator lost: {self.error}")

    async def _send(self, msg: Message) -> bool:
        """Hand ``msg`` to the link, after the posted requests still queued; False (logged, counted) when the link
        refuses it (down, reopening)."""
        if self._unsent:
            await self._send_posted()
        return await self._send_now(msg)

    async def _send_posted(self) -> None:
        """Send the queued posted requests, in order (back to back: the link wakes its medium once for them)."""
        while self._unsent:
            p = self._unsent.popleft()
            p.start = time.monotonic()
            p.sent = await self._send_now(p.msg)

    async def _send_now(self, msg: Message) -> bool:
        self._check_alive()
        if self._waited:
            self._waited = False
            self.round_trips += 1
        try:
            await self.link.send(msg)
        except TransportClosedError:
            if self._closing:
                raise
            self.counters.link_errors += 1
            return False
        except TransportError as exc:
            self.counters.link_errors += 1
            log.info("%s (seq %d) not sent: %s", msg.topic, msg.seq, exc)
            return False
        return True

    # -- requests ----------------------------------------------------------------------------------------------
    def _register(self, topic: str, payload: dict[str, Any]) -> tuple[Message, asyncio.Future[Message]]:
        self._seq += 1
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[self._seq] = fut
        return Message(topic, payload, seq=self._seq, t_ns=self.t_ns, src=self.name), fut

    async def _wait_reply(self, fut: asyncio.Future[Message], wait_s: float) -> Message | None:
        """The reply, or None after ``wait_s``; ``fut`` itself is left alone (a late reply still lands in it)."""
        if not fut.done():
            self._waited = True
            # asyncio.wait: no task and no shield per request (wait_for would add both), the same outcome
            await asyncio.wait((fut,), timeout=wait_s)
            if not fut.done():
                return None
        return fut.result()

    async def _probe(self, fut: asyncio.Future[Message], wait_s: float) -> Message | None:
        """After a time-out: send a ping and wait for it or for the late reply. Replies come in request order, so
        the ping's reply arriving first proves the request (or its reply) lost; it is returned (it carries the
        clock). None: the late reply came (``fut`` is done), or nothing answered within ``wait_s``."""
        ping, pfut = self._register("ping", {})
        try:
            if not await self._send(ping):
                await self._wait_reply(fut, wait_s)
                return None
            self._waited = True
            await asyncio.wait({fut, pfut}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pending.pop(ping.seq, None)
        if fut.done() or not pfut.done() or pfut.exception() is not None:
            return None
        return pfut.result()

    def _lost(self, msg: Message, why: str) -> RequestLostError:
        self.counters.lost += 1
        text = f"{msg.topic} (seq {msg.seq}): {why}"
        log.warning("request lost: %s", text)
        return RequestLostError(text, topic=msg.topic)

    async def request(self, topic: str, payload: dict[str, Any] | None = None, *, check: bool = True,
                      repeat: bool | None = None) -> dict[str, Any]:
        """Send a request and wait for its reply; raise CommandError if refused (``check``).

        ``repeat``: may the request be sent again after a proven loss (default: :func:`repeatable`, or any
        request when the emulator caches replies). Raises :class:`RequestLostError` when no reply will come.
        """
        msg, fut, start, sent = await self._register_and_send(topic, payload)
        return await self._finish(msg, fut, start, sent, check, repeat)

    async def _register_and_send(self, topic: str, payload: dict[str, Any] | None
                                 ) -> tuple[Message, asyncio.Future[Message], float, bool]:
        msg, fut = self._register(topic, payload or {})
        start = time.monotonic()
        try:
            sent = await self._send(msg)
        except BaseException:
            self._pending.pop(msg.seq, None)
            raise
        return msg, fut, start, sent

    async def post(self, topic: str, payload: dict[str, Any] | None = None, *, check: bool = True,
                   repeat: bool | None = None) -> None:
        """Send a request and take its reply later (pipelining): for a request whose reply the controller does not
        read. It is queued and leaves with the board's next request (or ``board.step``), or before the board next
        waits, so a turn's posted requests and its step go out back to back; the emulator answers one board's
        requests in order, and they cost one round trip instead of one each.

        The replies are taken (with the time-outs and repeats of :meth:`request`) by :meth:`settle`, which
        :meth:`step` calls after sending the step; a refusal (``check``) or a loss is returned by :meth:`settle`
        (:func:`run_board` logs them as it logs a refused or lost request that cut a turn short; the turn itself
        goes on). At most :data:`MAX_POSTED` requests wait for their replies: one more first takes the oldest.
        On a bad line a posted request that is sent again after a proven loss reaches the emulator after the
        step sent behind it, so it acts at the next turn's sim time.
        """
        while len(self._posted) >= MAX_POSTED:
            await self._settle_oldest()
        self._check_alive()
        msg, fut = self._register(topic, payload or {})
        posted = _Posted(msg, fut, time.monotonic(), None, check, repeat)
        self._posted.append(posted)
        self._unsent.append(posted)

    async def _settle_oldest(self) -> None:
        if self._unsent:
            await self._send_posted()
        p = self._posted.popleft()
        try:
            await self._finish(p.msg, p.fut, p.start, bool(p.sent), p.check, p.repeat)
        except (CommandError, RequestLostError) as exc:
            self.refusals.append(exc)

    async def settle(self) -> list[CommandError | RequestLostError]:
        """Take the replies of every posted request, in order; return (and forget) the refusals and losses
        among them and among those taken before (a board with nothing posted returns [] at once)."""
        while self._posted:
            await self._settle_oldest()
        out, self.refusals = self.refusals, []
        return out

    async def _finish(self, msg: Message, fut: asyncio.Future[Message], start: float, sent: bool, check: bool,
                      repeat: bool | None) -> dict[str, Any]:
        """Wait for the reply of ``msg`` (sent already if ``sent``): time-outs, pings and repeats as the module
        docstring says."""
        topic = msg.topic
        if repeat is None:
            repeat = self.repeat_all or repeatable(topic)
        policy = self.policy
        try:
            sends, rounds, wait_s = 1, 0, policy.timeout_s
            while True:
                if not sent:
                    # it never left the board: sending it again is safe whatever it is
                    if rounds >= policy.attempts:
                        raise self._lost(msg, f"the link would not take it ({rounds} tries)")
                    await self._pause(wait_s)
                    rounds += 1
                    wait_s = policy.longer(wait_s)
                    sent = await self._send(msg)
                    self.counters.retries += sent
                    continue
                reply = await self._wait_reply(fut, wait_s)
                if reply is not None:
                    break
                self.counters.timeouts += 1
                probe = await self._probe(fut, wait_s)
                if fut.done():
                    reply = fut.result()
                    break
                rounds += 1
                if probe is None:
                    if rounds >= policy.attempts:
                        raise self._lost(msg, f"the emulator does not answer ({rounds} rounds, not even a ping)")
                    wait_s = policy.longer(wait_s)
                    if repeat and sends < policy.attempts:  # harmless, and on a very noisy line it is what helps
                        self.counters.retries += 1
                        sends += 1
                        sent = await self._send(msg)
                    continue
                if not repeat:
                    raise self._lost(msg, "no reply (lost on the line); not sent again, as a second copy could act "
                                          "twice: the next telemetry tells whether it took effect")
                if sends >= policy.attempts:
                    raise self._lost(msg, f"no reply to {sends} copies")
                log.info("%s (seq %d): no reply, sending it again", topic, msg.seq)
                self.counters.retries += 1
                sends += 1
                wait_s = policy.timeout_s
                sent = await self._send(msg)
        finally:
            self._pending.pop(msg.seq, None)
        return self._answer(msg, reply, start, check)

    def _answer(self, msg: Message, reply: Message, start: float, check: bool) -> dict[str, Any]:
        rtt_s = time.monotonic() - start
        if len(self.rtts_s) == MAX_RTTS:
            del self._rtts_sorted[bisect.bisect_left(self._rtts_sorted, self.rtts_s[0])]
        self.rtts_s.append(rtt_s)
        bisect.insort(self._rtts_sorted, rtt_s)
        self.requests += 1
        self.lag_s = max(0.0, (reply.t_ns - self.t_ns) / NS_PER_S)
        body = reply.payload
        if check and not body.get("ok"):
            err = body.get("error") or {}
            raise CommandError(f"{msg.topic}: {err.get('message', 'refused')}", field=err.get("field"),
                               valid=err.get("valid"))
        return body.get("data") or body

    def link_report(self) -> dict[str, Any]:
        """Round-trip percentiles, lag and the link counters, as ``board.link`` carries them."""
        rtts = self._rtts_sorted or [0.0]
        pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1e3
        c = self.counters
        return {"rtt_p50_ms": pick(0.5), "rtt_p99_ms": pick(0.99), "rtt_max_ms": rtts[-1] * 1e3,
                "requests": self.requests, "lag_s": self.lag_s, "timeouts": c.timeouts, "retries": c.retries,
                "lost": c.lost, "resyncs": c.resyncs, "link_errors": c.link_errors, "reconnects": c.reconnects}

    def events(self) -> list[Message]:
        out = list(self._events)
        self._events.clear()
        return out

    # -- hello -------------------------------------------------------------------------------------------------
    async def say_hello(self, payload: dict[str, Any], *, again: bool = False) -> dict[str, Any]:
        """``board.hello`` until answered (a board may start before its emulator); learns the clock from it.

        Raises:
            ConfigError: the emulator speaks another protocol version.
        """
        self._hello_payload = dict(payload)
        wait_s = self.policy.timeout_s
        while True:
            try:
                hello = await self.request("board.hello", payload)
                break
            except RequestLostError:
                log.warning("no answer to board.hello yet; trying again in %g s", wait_s)
                await self._pause(wait_s)
                self._check_alive()
                wait_s = self.policy.longer(wait_s)
        if hello.get("protocol_version") != PROTOCOL_VERSION:
            raise ConfigError(f"the emulator speaks protocol {hello.get('protocol_version')}, this board "
                              f"speaks {PROTOCOL_VERSION}", field="protocol_version", valid=[PROTOCOL_VERSION])
        self.hello = hello
        self.repeat_all = int(hello.get("duplicate_window") or 0) > 0
        t = int(hello.get("t_ns", 0))
        if again:  # a new emulator: its clock, not the old one's
            self.t_ns = t
        self.step_ns = round(float(hello.get("step_s", 0.0)) * NS_PER_S)
        self.turn_ns = -1
        self.limit_ns = t
        # a board that joins while a lockstep clock waits has missed that sim.waiting: its first turn is now
        if hello.get("waiting"):
            self._waiting_t = t
        elif again:  # what was heard came from the emulator before its restart
            self._waiting_t = -1
        self._wake_turn()
        return hello

    @property
    def lockstep(self) -> bool:
        """The run is lockstep and this board steps it."""
        return self.hello.get("mode") == "lockstep" and self.hello.get("lockstep_source") == "board"

    # -- lockstep ----------------------------------------------------------------------------------------------
    async def _clock(self) -> tuple[int, bool | None] | None:
        """(sim time now, whether the clock waits if the emulator says) from a ping; None if nothing answers."""
        try:
            data = await self.request("ping")
        except RequestLostError:
            return None
        waiting = data.get("waiting")
        return int(data.get("t_ns", 0)), None if waiting is None else bool(waiting)

    async def next_turn(self) -> int:
        """Lockstep: wait for the next turn (a ``sim.waiting`` later than the last turn) and return its sim time.

        When none comes within ``resync_after_s`` (wall) it may have been lost: the board asks the clock, and a
        clock waiting later than the last turn is this board's turn (``resyncs``). A clock that went back means
        the emulator restarted: the board says hello again.
        """
        wait_s = self.policy.resync_after_s
        while True:
            self._check_alive()
            if self._unsent:  # what was posted leaves before the board waits
                await self._send_posted()
            if self._waiting_t > self.turn_ns:
                self.turn_ns = self._waiting_t
                return self.turn_ns
            self._waited = True
            # one future the reader resolves (a sim.waiting, a hello, the link's end): no task per turn
            self._turn_waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait((waiter,), timeout=wait_s)
            finally:
                self._turn_waiter = None
            if self._waiting_t > self.turn_ns or self.closed.is_set():
                continue
            clock = await self._clock()
            wait_s = self.policy.longer(wait_s)
            if clock is None or self._waiting_t > self.turn_ns:
                continue
            now, waiting = clock
            if now < self.turn_ns and self._hello_payload is not None:
                await self._greet_again(now, self.turn_ns)
                continue
            if waiting is None:  # the emulator's own rule: waiting when one more step would pass the limit
                waiting = now + self.step_ns > self.limit_ns
            if waiting and now > self.turn_ns:
                self.counters.resyncs += 1
                log.warning("no sim.waiting came, but the clock waits at t=%.0f s: taking the turn", now / NS_PER_S)
                self.turn_ns = now
                return now
            if waiting and now == self.turn_ns and self._last_step_s is not None:
                # only an emulator that says `waiting` tells this apart: the last step did not run after all
                log.warning("the clock still waits at the last turn (t=%.0f s): stepping again", now / NS_PER_S)
                await self.step(self._last_step_s)

    async def _greet_again(self, now: int, last: int) -> None:
        assert self._hello_payload is not None
        log.warning("the emulator's clock went back (t=%.0f s, the board was at %.0f s): it restarted; saying hello "
                    "again", now / NS_PER_S, last / NS_PER_S)
        self.counters.rehellos += 1
        await self.say_hello(self._hello_payload, again=True)

    async def step(self, duration_s: float) -> None:
        """Lockstep: ``board.step`` from the current turn, until the emulator has it. Never gives up (without the
        step, sim time stands still); a lost reply is checked against the clock so the step is never run twice
        when the clock shows it ran (``unacked_steps``)."""
        turn = self.turn_ns
        self._last_step_s = duration_s
        expected = max(self.limit_ns, turn) + round(duration_s * NS_PER_S)
        msg, fut = self._register("board.step", {"duration_s": duration_s})
        policy = self.policy
        start = time.monotonic()
        try:
            sent = await self._send(msg)
            while self._posted:  # the turn's posted requests went out before the step: their replies come first
                await self._settle_oldest()
            wait_s = policy.timeout_s
            while True:
                if not sent:
                    await self._pause(wait_s)
                    wait_s = policy.longer(wait_s)
                    sent = await self._send(msg)
                    self.counters.retries += sent
                    continue
                reply = await self._wait_reply(fut, wait_s)
                if reply is not None:
                    break
                self.counters.timeouts += 1
                probe = await self._probe(fut, wait_s)
                if fut.done():
                    reply = fut.result()
                    break
                if probe is None:
                    wait_s = policy.longer(wait_s)
                    continue
                data = probe.payload.get("data") or {}
                limit = data.get("limit_ns")
                ran = limit >= expected if isinstance(limit, int) else int(data.get("t_ns", 0)) > turn
                if ran:
                    self.counters.unacked_steps += 1
                    self.limit_ns = limit if isinstance(limit, int) else expected
                    log.info("board.step (seq %d): reply lost, but the clock moved: it ran", msg.seq)
                    return
                log.info("board.step (seq %d): lost, sending it again", msg.seq)
                self.counters.retries += 1
                wait_s = policy.timeout_s
                sent = await self._send(msg)
        finally:
            self._pending.pop(msg.seq, None)
        data = self._answer(msg, reply, start, check=True)
        self.limit_ns = int(data.get("limit_ns", expected))

    # -- free-running ------------------------------------------------------------------------------------------
    async def wait_sim_time(self, t_ns: int) -> None:
        """Free-running mode: wait until messages show sim time >= t_ns (lost telemetry only delays it).

        When no message moves sim time on for ``resync_after_s`` (wall; then longer), the board asks the clock: a
        clock earlier than the board's means the emulator restarted, and the board says hello again and returns
        at once (its next turn is due on the new clock).
        """
        wait_s = self.policy.resync_after_s
        while self.t_ns < t_ns:
            self._check_alive()
            if self._unsent:  # what was posted leaves before the board waits
                await self._send_posted()
            self._progress.clear()
            progress = asyncio.ensure_future(self._progress.wait())
            closed = asyncio.ensure_future(self.closed.wait())
            try:
                done, _ = await asyncio.wait({progress, closed}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (progress, closed):
                    fut.cancel()
            if done:
                wait_s = self.policy.resync_after_s
                continue
            wait_s = self.policy.longer(wait_s)  # a paused clock: ask less and less often
            clock = await self._clock()
            if clock is not None and clock[0] < self.t_ns and self._hello_payload is not None:
                await self._greet_again(clock[0], self.t_ns)
                return


class Controller(ABC):
    """Base controller: override :meth:`on_tick` (and optionally :meth:`on_start`)."""

    name = "controller"
    version = "0.1.0"
    period_s = 10.0

    def __init__(self) -> None:
        self.log = BoardLog()

    #: the board telemetry each turn decides from (``--telemetry per-turn`` asks for one sample of each per turn)
    turn_topics: tuple[str, ...] = ()
    #: ``--telemetry``: "all" (every topic at the run's rates) or "per-turn"
    telemetry = "all"

    def telemetry_rates_hz(self, run_rates_hz: dict[str, float]) -> dict[str, float]:
        """The most board telemetry this controller needs (``board.hello`` ``telemetry_rates_hz``: topic -> Hz,
        0: none), given the run's board-plane rates (the first hello reply's ``rates_hz``). ``telemetry =
        "per-turn"``: one sample per turn of its ``turn_topics`` (taken at the turn's sim time in lockstep, as fresh
        as at 1 Hz) and none of the rest; "all" (the default), or a run with none of its turn topics: {} (every
        topic at the run's rates)."""
        if self.telemetry != "per-turn" or not any(t in run_rates_hz for t in self.turn_topics):
            return {}
        per_turn = 1.0 / self.period_s
        return {t: per_turn if t in self.turn_topics else 0.0 for t in run_rates_hz}

    async def on_start(self, board: BoardClient) -> None:
        return None

    @abstractmethod
    async def on_tick(self, board: BoardClient) -> None:
        """One control turn: read ``board.latest`` and events, send commands."""


async def open_link(url: str, connect: Callable[[str], Awaitable[Any]], policy: RetryPolicy) -> Any:
    """Connect, trying again with backoff while the emulator is not there yet (a board may start first).

    Raises:
        InvalidTransportURL: the URL itself is wrong (trying again would not help).
    """
    wait_s = policy.timeout_s
    while True:
        try:
            return await connect(url)
        except InvalidTransportURL:
            raise
        except EmulatorError as exc:
            log.warning("cannot reach the emulator at %s yet: %s; trying again in %g s", url, exc, wait_s)
            await asyncio.sleep(wait_s)  # the board's backoff while nothing listens
            wait_s = policy.longer(wait_s)


async def _turn(controller: Controller, board: BoardClient, what: Callable[[], Awaitable[None]]) -> bool:
    """Run one controller call; a refused command or a lost request is logged and counted, not fatal.
    True if it ran to its end."""
    try:
        await what()
        return True
    except CommandError as exc:
        controller.log.errors.append(str(exc))
        log.warning("command refused: %s", exc)
    except RequestLostError as exc:
        log.info("turn at t=%.0f s cut short: %s", board.t_ns / NS_PER_S, exc)
    return False


def _log_refusals(controller: Controller, board: BoardClient, errors: list[CommandError | RequestLostError]) -> None:
    """Posted requests refused or lost: logged and counted as :func:`_turn` does for a request it waited for."""
    for exc in errors:
        if isinstance(exc, RequestLostError):
            log.info("posted request at t=%.0f s lost: %s", board.t_ns / NS_PER_S, exc)
        else:
            controller.log.errors.append(str(exc))
            log.warning("command refused: %s", exc)


async def run_board(controller: Controller, url: str, *, max_ticks: int | None = None,
                    stop: Callable[[], bool] | None = None,
                    connect: Callable[[str], Awaitable[Any]] | None = None,
                    capabilities: list[str] | None = None, policy: RetryPolicy | None = None) -> BoardLog:
    """Connect to the emulator at ``url`` and run ``controller`` until ``max_ticks`` turns or ``stop()``.

    ``capabilities`` go in ``board.hello`` (default ``["lockstep"]``). Link trouble never ends the run (see the
    module docstring); the link's counters are left in the returned log's ``link``.

    Raises:
        ConfigError: the emulator speaks another protocol version.
        InvalidTransportURL: ``url`` is not a transport URL.
    """
    if connect is None:
        from emulator.transports import connect as _connect

        connect = _connect
    policy = policy or RetryPolicy()
    link = await open_link(url, connect, policy)
    board = BoardClient(link, controller.name, policy=policy, reconnect=lambda: connect(url))
    await board.start()
    try:
        hello: dict[str, Any] = {"name": controller.name, "version": controller.version,
                                 "capabilities": capabilities if capabilities is not None else ["lockstep"]}
        reply = await board.say_hello(hello)
        rates = controller.telemetry_rates_hz(dict(reply.get("rates_hz") or {}))
        if rates:  # hello again, saying what it needs of the telemetry this run sends
            try:
                await board.say_hello({**hello, "telemetry_rates_hz": rates})
            except CommandError as exc:  # an emulator from before the field
                if not (exc.field or "").startswith("payload.telemetry_rates_hz"):
                    raise
                log.warning("the emulator refused telemetry_rates_hz (%s): its telemetry at the run's rates", exc)
                await board.say_hello(hello)
        lockstep = board.lockstep
        while True:  # the controller's start (switching its rail on...) must happen; a lost request repeats it
            try:
                await controller.on_start(board)
                break
            except RequestLostError as exc:
                log.warning("start cut short (%s): starting again", exc)
        ticks = 0
        next_tick = board.t_ns
        while max_ticks is None or ticks < max_ticks:
            if stop is not None and stop():
                break
            if lockstep:
                await board.next_turn()
            else:
                await board.wait_sim_time(next_tick)
                next_tick = board.t_ns + round(controller.period_s * NS_PER_S)
            await _turn(controller, board, lambda: controller.on_tick(board))
            ticks += 1
            if ticks % LINK_REPORT_TICKS == 0:
                # wall-clock figures: recordings keep board.link in their side file; in lockstep it goes before the
                # step, while the clock waits, so the recorded stream around it is the same in every run
                await board.post("board.link", board.link_report())
            if lockstep:  # sent behind the turn's posted requests, then their replies and the step's are taken
                await board.step(controller.period_s)
            _log_refusals(controller, board, await board.settle())
    except TransportError as exc:
        if not board.closed.is_set():
            raise
        log.warning("emulator link ended: %s", exc)
    finally:
        controller.log.link = board.counters.as_dict()
        controller.log.round_trips = board.round_trips
        with contextlib.suppress(AttributeError):  # a test double without stats
            controller.log.line = board.link.stats.as_dict()
        await board.aclose()
    return controller.log


def add_link_arguments(parser: argparse.ArgumentParser) -> None:
    """``--timeout`` and ``--resync-after``: the RetryPolicy of a stub's command line."""
    d = RetryPolicy()
    parser.add_argument("--timeout", type=float, default=d.timeout_s, metavar="S",
                        help=f"wall seconds to wait for a reply before checking the link with a ping (default "
                             f"{d.timeout_s:g}; a late reply still counts, so short is safe)")
    parser.add_argument("--resync-after", type=float, default=d.resync_after_s, metavar="S",
                        help=f"lockstep: wall seconds without sim.waiting after a step before asking the clock "
                             f"(default {d.resync_after_s:g})")


def policy_from(args: argparse.Namespace) -> RetryPolicy:
    return RetryPolicy(timeout_s=args.timeout, resync_after_s=args.resync_after)


def run_until_signalled(main: Awaitable[Any]) -> Any:
    """``asyncio.run(main)``, where SIGTERM (the HIL runner's stop) and SIGINT end it like its own end: the
    coroutine is cancelled, its cleanup runs, and None is returned instead of raising. A board started by flatsat
    (``flatsat demo``/``test``: :data:`emulator.launch.PARENT_PID_ENV` set) ends the same way when that flatsat
    process ends, so a killed flatsat leaves no board retrying behind it."""

    async def runner() -> Any:
        task = asyncio.ensure_future(main)
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows' proactor loop
                loop.add_signal_handler(sig, signalled.set)
        unwatch: Callable[[], None] = lambda: None
        if (flatsat_pid := parent_pid()) is not None:

            def flatsat_gone() -> None:
                log.warning("flatsat (pid %d), which started this board, has ended: stopping", flatsat_pid)
                signalled.set()

            unwatch = watch_process(flatsat_pid, flatsat_gone)
        stop = asyncio.ensure_future(signalled.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            unwatch()
        # Cancelled again until it ends: on Python < 3.12 a wait_for that finishes in the same loop turn as the
        # cancel swallows it, and a board that then sees its link gone would go on reconnecting until SIGKILL.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.cancelled():
            return None
        return task.result()

    return asyncio.run(runner())


def main(controller_cls: type[Controller], argv: list[str] | None = None) -> int:
    """``python -m firmware_stubs.<name> --url URL``."""
    parser = argparse.ArgumentParser(prog=f"python -m firmware_stubs.{controller_cls.name}",
                                     description=controller_cls.__doc__)
    parser.add_argument("--url", required=True,
                        help="board-plane URL of the emulator, e.g. zmq+tcp://127.0.0.1:5550, "
                             "serial:///dev/ttyUSB0?baud=921600, or serial+fd://{fd} under the HIL runner")
    parser.add_argument("--period", type=float, default=controller_cls.period_s,
                        help=f"control period in sim seconds (default {controller_cls.period_s:g})")
    if controller_cls.turn_topics:
        parser.add_argument("--telemetry", choices=["all", "per-turn"], default="all",
                            help="board telemetry to ask for at board.hello: all of it at the run's rates (default), "
                                 f"or one sample per turn of what each turn reads ({', '.join(controller_cls.turn_topics)}) "
                                 "and none of the rest (a lockstep run then carries a tenth of the messages)")
    add_link_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every action")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"[{controller_cls.name}] %(message)s", stream=sys.stderr)
    controller = controller_cls()
    controller.period_s = args.period
    controller.telemetry = getattr(args, "telemetry", "all")
    try:
        run_until_signalled(run_board(controller, args.url, policy=policy_from(args)))
    except EmulatorError as exc:
        print(f"{controller_cls.name}: {exc}", file=sys.stderr)
        return 2
    result = controller.log
    print(f"{controller_cls.name}: {len(result.actions)} actions, {len(result.errors)} refused commands; link: "
          f"{result.link_summary()}", file=sys.stderr, flush=True)
    return 0

"""The two link roles every medium implements: :class:`ServerLink` (emulator side) and :class:`ClientLink`.

A server link publishes telemetry and events to every connected client and answers requests, each
reply addressed to the client that sent the request (``peer``). A client link sends requests and
receives telemetry, events and replies interleaved, in arrival order per source.

Closed vs broken (trio's rule): after :meth:`aclose` every call raises :class:`TransportClosedError`;
when the peer, cable or process goes away calls raise :class:`TransportBrokenError` (or, for media
that reconnect on their own, ``stats.is_up`` says so; each medium documents which).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from emulator.errors import CodecError, RateLimitedError, TransportBrokenError, TransportClosedError
from emulator.protocol.codec import MAX_REQUEST_CONTAINERS, decode_message, encode_message
from emulator.protocol.envelope import Message
from emulator.transports.url import TransportURL

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Incoming:
    """What :meth:`ServerLink.recv` yields: a decoded request or the reason its bytes were refused."""

    peer: bytes  #: opaque id of the sender (ROUTER identity, per-client loop id, b"serial")
    message: Message | None  #: the decoded envelope, or None when the bytes were bad
    error: CodecError | None = None  #: why the bytes were refused; the runtime replies with it


#: Why a link dropped something: the keys of :attr:`LinkStats.drops` (docs/transports.md has the table).
RX_REASONS = ("bad_crc", "bad_cobs", "too_short", "oversize", "decode_error", "rate_limited", "unauthorized",
              "inbox_full")
TX_REASONS = ("queue_full", "superseded", "device_gone", "peer_gone", "all_full", "feed_full", "feed_peer_gone")
SUBSCRIPTION_REASONS = ("subscription_refused", "subscription_flood", "feed_expired")
DROP_REASONS = RX_REASONS + TX_REASONS + SUBSCRIPTION_REASONS
_TX = frozenset(TX_REASONS)
_FRAMING = frozenset(("bad_crc", "bad_cobs", "too_short", "oversize"))


@dataclass
class LinkStats:
    """Counters of one link (message counts, not bytes).

    ``drops`` counts every message or frame a link did not deliver, by reason (:data:`DROP_REASONS`);
    ``dropped_tx``, ``bad_frames`` and ``decode_errors`` are sums over the outgoing, framing and decoding
    reasons, kept for quick reading.
    """

    tx: int = 0  #: messages handed to the medium
    rx: int = 0  #: messages received and decoded
    dropped_tx: int = 0  #: messages dropped instead of sent (slow peer, link budget, device gone)
    bad_frames: int = 0  #: byte-stream frames dropped by COBS/CRC checks (serial)
    decode_errors: int = 0  #: received messages whose envelope did not decode
    reconnects: int = 0  #: times the link came back after going down
    is_up: bool = True  #: False while the peer (zmq client) or the device (serial) is gone
    drops: dict[str, int] = field(default_factory=dict)  #: reason -> count

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` drops for ``reason`` (one of :data:`DROP_REASONS`)."""
        if n <= 0:
            return
        self.drops[reason] = self.drops.get(reason, 0) + n
        if reason in _TX:
            self.dropped_tx += n
        elif reason == "decode_error":
            self.decode_errors += n
        elif reason in _FRAMING:
            self.bad_frames += n

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drops"] = dict(sorted(self.drops.items()))
        return out


class RateLimiter:
    """A token bucket per peer: ``rate_hz`` requests per second on average, bursts of ``burst``.

    Over the limit a request is dropped before it is decoded (cheap), and counted; the first one of
    each second is answered with a ``rate_limited`` error so the peer learns why (``admit`` returns
    ``"refuse"``), the rest are dropped silently (``"drop"``). The table of peers is bounded: the least
    recently seen peer makes room for a new one (it starts again with a full bucket).
    """

    MAX_PEERS = 1024

    def __init__(self, rate_hz: float, burst: int, now: Callable[[], float]) -> None:
        self.rate_hz = rate_hz
        self.burst = float(max(1, burst))
        self._now = now
        #: peer -> [tokens, last refill (s), last refusal answered (s)]
        self._peers: OrderedDict[bytes, list[float]] = OrderedDict()

    def admit(self, peer: bytes) -> str:
        """``"ok"``, ``"refuse"`` (over the limit; answer this one) or ``"drop"`` (over the limit)."""
        if self.rate_hz <= 0:
            return "ok"
        now = self._now()
        state = self._peers.get(peer)
        if state is None:
            if len(self._peers) >= self.MAX_PEERS:
                self._peers.popitem(last=False)
            state = self._peers[peer] = [self.burst, now, -1.0]
        else:
            self._peers.move_to_end(peer)
            state[0] = min(self.burst, state[0] + (now - state[1]) * self.rate_hz)
            state[1] = now
        if state[0] >= 1.0:
            state[0] -= 1.0
            return "ok"
        if now - state[2] >= 1.0:
            state[2] = now
            return "refuse"
        return "drop"


T = TypeVar("T")

_OPEN_LINKS: weakref.WeakSet[ServerLink | ClientLink] = weakref.WeakSet()


def open_links() -> list[ServerLink | ClientLink]:
    """Links created and not yet closed in this process (leak checks in tests)."""
    return [link for link in _OPEN_LINKS if not link.closed]


class _Link:
    """What both roles share: url, stats, closed state, context manager."""

    url: TransportURL
    stats: LinkStats
    #: Bytes per second the medium carries, for link-budget checks (None: not the limit).
    budget_bytes_s: float | None = None

    def __init__(self, url: TransportURL) -> None:
        self.url = url
        self.stats = LinkStats()
        self._closed = False
        self._up_changed: asyncio.Event | None = None
        _OPEN_LINKS.add(self)  # type: ignore[arg-type]

    def _set_up(self, up: bool) -> None:
        """Record that the peer/device came back (True) or went away (False); wakes wait_until_up()."""
        self.stats.is_up = up
        if self._up_changed is not None:
            self._up_changed.set()

    async def wait_until_up(self, up: bool = True) -> None:
        """Wait until ``stats.is_up == up`` (wrap in ``asyncio.timeout()`` for a wall-clock bound).

        Raises:
            TransportClosedError: the link is (or gets) closed first.
        """
        while self.stats.is_up != up:
            self._check_open()
            if self._up_changed is None:
                self._up_changed = asyncio.Event()
            self._up_changed.clear()
            await self._up_changed.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError(f"link {self.url.label} is closed")

    def _closed_error(self) -> TransportClosedError:
        return TransportClosedError(f"link {self.url.label} is closed")

    async def aclose(self) -> None:
        """Close the link and release its resources. Idempotent; never raises for an already-closed link."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._aclose()
        finally:
            self._set_up(False)

    @abstractmethod
    async def _aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("up" if self.stats.is_up else "down")
        return f"<{type(self).__name__} {self.url} {state}>"


#: per-peer feeds one server link keeps at once (``telemetry.feed``); a further peer is refused until one ends
MAX_FEEDS = 16
#: the feeds look at the telemetry offered to them at most this often (wall): a 1 kHz topic costs a 10 Hz feed
#: one look per topic per pump, not one per message; a feed faster than 100 Hz is pumped every half interval.
#: Events go at once (after what was offered before them).
FEED_PUMP_NS = 5_000_000


@dataclass(eq=False)
class Feed:
    """One peer's feed: the plane's telemetry at most once per ``interval_ns`` (wall) per topic, every event,
    sent to that peer alone (ZeroMQ: on the ROUTER, beside its replies) until ``until_ns`` (wall)."""

    peer: bytes
    interval_ns: int
    topics: frozenset[str] | None  #: None: every topic the plane publishes
    until_ns: int
    next_ns: dict[str, int] = field(default_factory=dict)  #: per telemetry topic: earliest next send
    pending: dict[str, bytes] = field(default_factory=dict)  #: per telemetry topic: the newest not sent
    sent: int = 0
    skipped: int = 0  #: telemetry decimated away
    dropped: int = 0  #: the peer's queue was full

    def takes(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics

    def due(self, topic: str, now_ns: int) -> bool:
        """A sample of ``topic`` at ``now_ns`` fits the feed's rate: one per interval on a grid, taken up to a
        tenth of an interval early (so a topic that arrives exactly at the rate, with jitter, is not halved)."""
        nxt = self.next_ns.get(topic)
        return nxt is None or now_ns >= nxt - self.interval_ns // 10

    def took(self, topic: str, now_ns: int) -> None:
        nxt = self.next_ns.get(topic)
        if nxt is not None and now_ns - nxt < self.interval_ns:
            self.next_ns[topic] = nxt + self.interval_ns  # on the grid: the average rate stays max_hz
        else:
            self.next_ns[topic] = now_ns + self.interval_ns  # first, or after a gap: no burst to catch up

    def as_dict(self) -> dict[str, Any]:
        return {"max_hz": NS_PER_S / self.interval_ns, "topics": None if self.topics is None else sorted(self.topics),
                "sent": self.sent, "skipped": self.skipped, "dropped": self.dropped}


class ServerLink(_Link, ABC):
    """The emulator side of the board plane or of the control plane.

    Requests are taken from the medium as raw bytes and decoded one at a time, when :meth:`recv` hands
    them out, within a budget of maps and arrays (:data:`~emulator.protocol.codec.MAX_REQUEST_CONTAINERS`):
    what waits in a queue is never more than its bytes. Each peer is rate limited (``peer_rate_hz``,
    ``peer_burst`` URL options) before its bytes are decoded.
    """

    #: requests dropped in a row (over the rate limit) after which recv() stops taking any for DROP_PAUSE_S:
    #: a flood then costs the emulator a bounded share of a core (at most ~8,000 drops a second at ~7 us each)
    #: whatever the attacker sends; meanwhile libzmq holds the rest (then TCP pushes back) or the serial line
    #: does. Other peers' requests wait at most one pause, and only while a flood is on.
    DROPS_PER_PAUSE = 16
    DROP_PAUSE_S = 0.002
    #: what a client checks to know it talks to this server (CurveZMQ: the public key and its fingerprint)
    server_key: str | None = None

    def __init__(self, url: TransportURL) -> None:
        super().__init__(url)
        self.limiter = RateLimiter(url.get("peer_rate_hz"), url.get("peer_burst"),
                                   asyncio.get_running_loop().time)
        #: per-peer feeds (``telemetry.feed``), by peer; at most :data:`MAX_FEEDS`
        self.feeds: dict[bytes, Feed] = {}
        #: changes whenever a feed starts, ends or changes its topics (part of :attr:`audience`)
        self.feed_version = 0
        self._feed_wants: dict[str, bool] = {}
        self._feed_list: tuple[Feed, ...] = ()
        #: telemetry offered to the feeds since the last pump: topic -> (its newest encoded envelope, offers)
        self._feed_offered: dict[str, tuple[bytes, int]] = {}
        self._feed_pumped_ns = 0  # wall time of the last pump
        self._feed_pump_ns = FEED_PUMP_NS

    #: the medium can send to one peer without waiting (what per-peer feeds need)
    supports_feeds = False

    # -- per-peer feeds -------------------------------------------------------------------------------------------
    def set_feed(self, peer: bytes, max_hz: float, topics: Iterable[str] | None, until_ns: int) -> Feed:
        """Start or renew ``peer``'s feed (the caller checked the values and :data:`MAX_FEEDS`)."""
        chosen = None if topics is None else frozenset(topics)
        old = self.feeds.get(peer)
        interval_ns = max(1, round(NS_PER_S / max_hz))
        if old is not None and old.topics == chosen and old.interval_ns == interval_ns:
            old.until_ns = until_ns  # a renewal: the decimation goes on where it was
            return old
        feed = self.feeds[peer] = Feed(peer, interval_ns, chosen, until_ns)
        self._feeds_changed()
        return feed

    def end_feed(self, peer: bytes) -> bool:
        if self.feeds.pop(peer, None) is None:
            return False
        self._feeds_changed()
        return True

    def _feeds_changed(self) -> None:
        self.feed_version += 1
        self._feed_wants.clear()
        self._feed_list = tuple(self.feeds.values())
        if not self._feed_list:
            self._feed_offered.clear()  # nobody left to pump them to
        self._feed_pump_ns = min([FEED_PUMP_NS, *(f.interval_ns // 2 for f in self._feed_list)])

    def feed_wants(self, topic: str) -> bool:
        """Some feed takes ``topic`` (cached until the feeds change)."""
        hit = self._feed_wants.get(topic)
        if hit is None:
            hit = self._feed_wants[topic] = any(f.takes(topic) for f in self.feeds.values())
        return hit

    def feed_due(self, topic: str, now_ns: int) -> bool:
        """Some feed would send a telemetry sample of ``topic`` at wall time ``now_ns`` (so it is worth building).
        Not while a sample of it waits for :meth:`feed_pump`: that one goes first."""
        if topic in self._feed_offered:
            return False
        for feed in self.feeds.values():
            if feed.takes(topic) and feed.due(topic, now_ns) and now_ns <= feed.until_ns:
                return True
        return False

    def feed_offer(self, topic: str, data: bytes) -> None:
        """Telemetry for the feeds, looked at by the next :meth:`feed_pump` (the runtime pumps as its clock
        yields, at most every :data:`FEED_PUMP_NS`): of the samples of a topic offered in between only the
        newest can be sent, the others count as skipped. One dict update per message instead of a pass over
        the feeds (a 1 kHz topic, a 10 Hz feed)."""
        offered = self._feed_offered
        prev = offered.pop(topic, None)  # re-inserted: the pump sends in the order of the newest samples
        offered[topic] = (data, 1 if prev is None else prev[1] + 1)

    def feed_pump(self, now_ns: int, *, force: bool = False) -> None:
        """Give the feeds what :meth:`feed_offer` left since the last pump (wall time ``now_ns``): at most every
        :data:`FEED_PUMP_NS` (or half the fastest feed's interval) unless ``force``."""
        if not self._feed_offered or (not force and now_ns - self._feed_pumped_ns < self._feed_pump_ns):
            return
        self._feed_pumped_ns = now_ns
        offered, self._feed_offered = self._feed_offered, {}
        for topic, (data, offers) in offered.items():
            self._feed_one(topic, data, False, now_ns, offers - 1)

    def feed_bytes(self, topic: str, data: bytes, *, event: bool, now_ns: int) -> None:
        """Send one encoded envelope to every feed that takes it now: an event always, telemetry at most once
        per feed interval (wall time ``now_ns``), after what :meth:`feed_offer` left. A full peer loses this
        one (counted); a feed whose lease ran out or whose peer is gone ends."""
        if self._feed_offered:
            self.feed_pump(now_ns, force=True)
        self._feed_one(topic, data, event, now_ns, 0)

    def _feed_one(self, topic: str, data: bytes, event: bool, now_ns: int, replaced: int) -> None:
        """``data`` to every feed that takes it now; ``replaced``: newer telemetry samples of ``topic`` that
        superseded it before a pump (skipped by every feed that takes the topic)."""
        for feed in self._feed_list:
            if now_ns > feed.until_ns:
                self.stats.drop("feed_expired")
                self.end_feed(feed.peer)
                continue
            if feed.topics is not None and topic not in feed.topics:
                continue
            if not event:
                feed.skipped += replaced
                nxt = feed.next_ns.get(topic)
                if nxt is not None and now_ns < nxt - feed.interval_ns // 10:  # Feed.due, inline
                    feed.skipped += 1
                    feed.pending[topic] = data
                    continue
                feed.took(topic, now_ns)
                feed.pending.pop(topic, None)
            self._feed_send(feed, data)

    def feed_flush(self, now_ns: int) -> None:
        """Send every feed the newest telemetry it skipped (the clock stopped: nothing newer comes)."""
        self.feed_pump(now_ns, force=True)
        for feed in list(self.feeds.values()):
            pending, feed.pending = feed.pending, {}
            for topic, data in pending.items():
                feed.skipped -= 1
                feed.took(topic, now_ns)
                if not self._feed_send(feed, data):
                    break

    def _feed_send(self, feed: Feed, data: bytes) -> bool:
        verdict = self._send_nowait(feed.peer, data)
        if verdict == "ok":
            feed.sent += 1
            self.stats.tx += 1
        elif verdict == "full":
            feed.dropped += 1
            self.stats.drop("feed_full")
        else:
            self.stats.drop("feed_peer_gone")
            self.end_feed(feed.peer)
            return False
        return True

    def _send_nowait(self, peer: bytes, data: bytes) -> str:
        """Send ``data`` to one peer now: ``"ok"``, ``"full"`` (its queue is full) or ``"gone"``."""
        return "gone"

    #: changes whenever what the peers want may have changed (subscriptions, clients coming and going)
    audience: int = 0

    def wants(self, topic: str) -> bool:
        """True if a peer would receive ``topic`` now (media without subscriptions: always)."""
        return True

    def flush(self) -> None:
        """After a batch of :meth:`publish_bytes` (the runtime calls it once per step): lets the medium catch
        up with its peers (ZeroMQ: processes their commands, so freed queues and new subscribers are seen)."""

    def set_topics(self, topics: Iterable[str]) -> None:
        """The topics this link may publish (media with subscriptions refuse the ones that select none)."""

    def publish_bytes(self, data: bytes, *, event: bool = False) -> None:
        """Send one encoded envelope to every connected client that wants it; never blocks. Call :meth:`flush`
        after a batch of them (once per step).

        What cannot be sent now is dropped and counted in ``stats.drops``. ``event=True`` marks a message
        that is not periodic telemetry (an event, ``sim.waiting``): a medium that keeps its own send queue
        (serial) never drops one of those for budget, only while the device is gone.

        Raises:
            TransportClosedError: the link is closed.
        """
        self._check_open()
        self._publish_bytes(data, event)

    def publish_many(self, datas: list[bytes]) -> None:
        """:meth:`publish_bytes` of each of ``datas`` in order (periodic telemetry, not events): what a batch of
        steps publishes, in one call.

        Raises:
            TransportClosedError: the link is closed.
        """
        self._check_open()
        for data in datas:
            self._publish_bytes(data, False)

    async def publish(self, msg: Message, *, event: bool = False) -> None:
        """Encode ``msg`` and :meth:`publish_bytes` it.

        Raises:
            TransportClosedError: the link is closed.
            CodecError: the payload cannot be encoded (a caller bug).
        """
        self._check_open()
        self._publish_bytes(encode_message(msg), event)
        self.flush()

    async def recv(self) -> Incoming:
        """The next request from any client (waits while there is none, or while the device is gone).

        Raises:
            TransportClosedError: the link is (or gets) closed.
        """
        self._check_open()
        dropped = 0
        while True:
            peer, data, error = await self._recv_raw()
            verdict = self.limiter.admit(peer)
            if verdict != "ok":
                self.stats.drop("rate_limited")
                if verdict == "refuse":
                    return Incoming(peer, None, RateLimitedError(
                        f"too many requests from this peer: the limit is {self.limiter.rate_hz:g} per second "
                        f"(bursts of {self.limiter.burst:g}); requests over it are dropped", field="rate"))
                dropped += 1
                if dropped % self.DROPS_PER_PAUSE == 0:
                    await asyncio.sleep(self.DROP_PAUSE_S)
                continue
            if error is not None:
                return Incoming(peer, None, error)
            try:
                msg = decode_message(data, max_containers=MAX_REQUEST_CONTAINERS)  # type: ignore[arg-type]
            except CodecError as exc:
                self.stats.drop("decode_error")
                return Incoming(peer, None, exc)
            self.stats.rx += 1
            return Incoming(peer, msg, None)

    #: the medium sends a reply without waiting (:meth:`reply_bytes`): the runtime may then queue a batch of replies
    #: and send them together (ZeroMQ: one wake-up of its I/O thread per batch instead of per reply)
    defers_replies = False

    def reply_bytes(self, peer: bytes, data: bytes) -> None:
        """Send an encoded reply to one client now, never waiting (media with :attr:`defers_replies`); call
        :meth:`replies_sent` after a batch of them.

        Raises:
            TransportClosedError: the link is closed.
            TransportBrokenError: the peer is known to be gone.
        """
        raise NotImplementedError(f"{type(self).__name__} sends replies with send_to")

    def replies_sent(self) -> None:
        """After a batch of :meth:`reply_bytes`: let the medium notice new requests again."""

    async def send_to(self, peer: bytes, msg: Message) -> None:
        """Send a reply to one client.

        Raises:
            TransportClosedError: the link is closed.
            TransportBrokenError: the peer is known to be gone (per medium; see docs/transports.md).
        """
        self._check_open()
        await self._send_to(peer, msg)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Incoming:
        try:
            return await self.recv()
        except TransportClosedError:
            raise StopAsyncIteration from None

    @abstractmethod
    def _publish_bytes(self, data: bytes, event: bool) -> None: ...

    @abstractmethod
    async def _recv_raw(self) -> tuple[bytes, bytes | None, CodecError | None]:
        """The next request as (peer, envelope bytes, None), or (peer, None, why its bytes were refused)."""

    @abstractmethod
    async def _send_to(self, peer: bytes, msg: Message) -> None: ...


class ClientLink(_Link, ABC):
    """The board or harness side."""

    async def send(self, msg: Message) -> None:
        """Send a request to the server.

        Raises:
            TransportClosedError: the link is closed.
            TransportBrokenError: the server is known to be gone (per medium).
            CodecError: the payload cannot be encoded.
        """
        self._check_open()
        await self._send(msg)

    async def recv(self) -> Message:
        """The next telemetry, event or reply, in arrival order per source.

        Raises:
            TransportClosedError: the link is (or gets) closed.
            TransportBrokenError: the server went away (per medium; see docs/transports.md).
        """
        self._check_open()
        return await self._recv()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except TransportClosedError:
            raise StopAsyncIteration from None

    @abstractmethod
    async def _send(self, msg: Message) -> None: ...

    @abstractmethod
    async def _recv(self) -> Message: ...


class Mailbox(Generic[T]):
    """An unbounded FIFO for one consumer task, with close and break signals (no sentinels in the data).

    ``get`` returns queued items first; once empty it raises the error set by :meth:`fail`.
    """

    def __init__(self) -> None:
        self.items: deque[T] = deque()
        self._event = asyncio.Event()
        self._error: BaseException | None = None

    def put(self, item: T) -> None:
        self.items.append(item)
        self._event.set()

    def fail(self, error: BaseException, *, discard: bool = False) -> None:
        if discard:
            self.items.clear()
        self._error = error
        self._event.set()

    def clear_error(self) -> None:
        self._error = None

    def __len__(self) -> int:
        return len(self.items)

    async def get(self) -> T:
        while not self.items:
            if self._error is not None:
                raise self._error
            self._event.clear()
            await self._event.wait()
        return self.items.popleft()


@contextlib.contextmanager
def broken_on(url: TransportURL, what: str, *exc_types: type[BaseException]) -> Iterator[None]:
    """Turn backend exceptions (zmq.ZMQError, OSError, SerialException) into TransportBrokenError."""
    try:
        yield
    except exc_types as exc:
        raise TransportBrokenError(f"{what} on {url.label} failed: {exc}") from exc


class TransportFactory(ABC):
    """What a registry entry points at: a class with ``listen`` and ``connect``."""

    #: pip package that provides the backend, named in TransportUnavailableError
    REQUIRES: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    async def listen(cls, url: TransportURL) -> ServerLink: ...

    @classmethod
    @abstractmethod
    async def connect(cls, url: TransportURL) -> ClientLink: ...

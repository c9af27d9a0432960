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
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

from emulator.errors import CodecError, TransportBrokenError, TransportClosedError
from emulator.protocol.envelope import Message
from emulator.transports.url import TransportURL


@dataclass(frozen=True, slots=True)
class Incoming:
    """What :meth:`ServerLink.recv` yields: a decoded request or the reason its bytes were refused."""

    peer: bytes  #: opaque id of the sender (ROUTER identity, per-client loop id, b"serial")
    message: Message | None  #: the decoded envelope, or None when the bytes were bad
    error: CodecError | None = None  #: why the bytes were refused; the runtime replies with it


@dataclass
class LinkStats:
    """Counters of one link (message counts, not bytes)."""

    tx: int = 0  #: messages handed to the medium
    rx: int = 0  #: messages received and decoded
    dropped_tx: int = 0  #: messages dropped instead of sent (slow peer, link budget, device gone)
    bad_frames: int = 0  #: byte-stream frames dropped by COBS/CRC checks (serial)
    decode_errors: int = 0  #: received messages whose envelope did not decode
    reconnects: int = 0  #: times the link came back after going down
    is_up: bool = True  #: False while the peer (zmq client) or the device (serial) is gone

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class ServerLink(_Link, ABC):
    """The emulator side of the board plane or of the control plane."""

    async def publish(self, msg: Message, *, event: bool = False) -> None:
        """Send telemetry or an event to every connected client.

        Never blocks on a slow or dead peer: what cannot be sent now is dropped and counted in
        ``stats.dropped_tx``. ``event=True`` marks a message that is not periodic telemetry (an event,
        ``sim.waiting``): a medium that keeps its own send queue (serial) never drops one of those for
        budget, only while the device is gone; the others treat both alike.

        Raises:
            TransportClosedError: the link is closed.
            CodecError: the payload cannot be encoded (a caller bug).
        """
        self._check_open()
        if event:
            await self._publish_event(msg)
        else:
            await self._publish(msg)

    async def recv(self) -> Incoming:
        """The next request from any client (waits while there is none, or while the device is gone).

        Raises:
            TransportClosedError: the link is (or gets) closed.
        """
        self._check_open()
        return await self._recv()

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
    async def _publish(self, msg: Message) -> None: ...

    async def _publish_event(self, msg: Message) -> None:
        """An event: sent as telemetry unless the medium tells them apart (serial does)."""
        await self._publish(msg)

    @abstractmethod
    async def _recv(self) -> Incoming: ...

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

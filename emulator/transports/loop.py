"""In-process links: ``loop://<channel>``, the virtual medium that runs the same tests as hardware.

Grammar and options::

    loop://<channel>          channel name (no "/"); "loop://" is channel "default"

    | option | type    | default | meaning                                                   |
    |--------|---------|---------|-----------------------------------------------------------|
    | hwm    | int >=1 | 1000    | telemetry messages queued per client before publish drops |
    | name   | str     |         | label in logs                                             |

:func:`listen` registers the channel in a module registry (a second listener on the same channel
raises :class:`TransportUnavailableError`); any number of :func:`connect` calls pair with it, each
with its own peer id. Every message goes through ``encode_message``/``decode_message`` so loop tests
exercise the codec. Peer gone: when the server closes, each client's ``recv`` returns what was
already queued and then raises :class:`TransportBrokenError`, and ``send`` raises it at once;
``send_to`` a client that has closed raises :class:`TransportBrokenError`.
"""

from __future__ import annotations

import itertools

from emulator.errors import CodecError, TransportBrokenError, TransportUnavailableError
from emulator.protocol.codec import decode_message, encode_message
from emulator.protocol.envelope import Message
from emulator.transports.base import ClientLink, Mailbox, ServerLink, TransportFactory
from emulator.transports.url import TransportURL

_CHANNELS: dict[str, LoopServerLink] = {}
#: requests waiting for the server, and replies waiting for a client, beyond which they are dropped (counted)
QUEUE_MAX = 4096
_PEER_IDS = itertools.count(1)


def loop_channels() -> list[str]:
    """Channels currently listened on (tests check this is empty after each test: no leaks)."""
    return sorted(_CHANNELS)


class LoopServerLink(ServerLink):
    def __init__(self, url: TransportURL) -> None:
        super().__init__(url)
        self.hwm: int = url.get("hwm")
        self.clients: dict[bytes, LoopClientLink] = {}
        self._audience_changes = 0
        self._inbox: Mailbox[tuple[bytes, bytes]] = Mailbox()

    def wants(self, topic: str) -> bool:
        return bool(self.clients)

    @property
    def audience(self) -> int:  # type: ignore[override]
        return self._audience_changes + self.feed_version

    supports_feeds = True

    def _send_nowait(self, peer: bytes, data: bytes) -> str:
        client = self.clients.get(peer)
        if client is None:
            return "gone"
        if client._telemetry_queued >= self.hwm:
            return "full"
        client._deliver(data, telemetry=True)
        return "ok"

    def audience_changed(self) -> None:
        self._audience_changes += 1

    def _publish_bytes(self, data: bytes, event: bool) -> None:
        self.stats.tx += 1
        for client in list(self.clients.values()):
            if client._telemetry_queued >= self.hwm:
                self.stats.drop("queue_full")
            else:
                client._deliver(data, telemetry=True)

    async def _recv_raw(self) -> tuple[bytes, bytes | None, CodecError | None]:
        peer, data = await self._inbox.get()
        return peer, data, None

    async def _send_to(self, peer: bytes, msg: Message) -> None:
        data = encode_message(msg)
        client = self.clients.get(peer)
        if client is None:
            self.stats.drop("peer_gone")
            raise TransportBrokenError(f"peer {peer!r} is not connected to {self.url.label}")
        if len(client._inbox) >= QUEUE_MAX:  # a client that never reads
            self.stats.drop("queue_full")
            return
        self.stats.tx += 1
        client._deliver(data, telemetry=False)

    def _deliver_request(self, peer: bytes, data: bytes) -> None:
        if len(self._inbox) >= QUEUE_MAX:
            self.stats.drop("inbox_full")
            return
        self._inbox.put((peer, data))

    async def _aclose(self) -> None:
        if _CHANNELS.get(self.url.location) is self:
            del _CHANNELS[self.url.location]
        self._inbox.fail(self._closed_error(), discard=True)
        for client in list(self.clients.values()):
            client._server_gone()
        self.clients.clear()


class LoopClientLink(ClientLink):
    def __init__(self, url: TransportURL, server: LoopServerLink) -> None:
        super().__init__(url)
        self.peer = f"loop-{next(_PEER_IDS)}".encode()
        self._server: LoopServerLink | None = server
        self._inbox: Mailbox[tuple[bytes, bool]] = Mailbox()
        self._telemetry_queued = 0

    def _deliver(self, data: bytes, *, telemetry: bool) -> None:
        if telemetry:
            self._telemetry_queued += 1
        self._inbox.put((data, telemetry))

    def _server_gone(self) -> None:
        self._server = None
        self._set_up(False)
        self._inbox.fail(TransportBrokenError(f"the server of {self.url.label} closed"))

    async def _send(self, msg: Message) -> None:
        data = encode_message(msg)
        await self._send_bytes(data)

    async def _send_bytes(self, data: bytes) -> None:
        """Hand raw bytes to the server (tests use it to send bad envelopes)."""
        self._check_open()
        if self._server is None:
            raise TransportBrokenError(f"the server of {self.url.label} closed")
        self.stats.tx += 1
        self._server._deliver_request(self.peer, data)

    async def _recv(self) -> Message:
        while True:
            data, telemetry = await self._inbox.get()
            if telemetry:
                self._telemetry_queued -= 1
            try:
                msg = decode_message(data)
            except CodecError:
                self.stats.drop("decode_error")
                continue
            self.stats.rx += 1
            return msg

    async def _aclose(self) -> None:
        if self._server is not None:
            self._server.clients.pop(self.peer, None)
            self._server.audience_changed()
            self._server = None
        self._inbox.fail(self._closed_error(), discard=True)


class LoopTransport(TransportFactory):
    """Registry entry for ``loop://``."""

    REQUIRES = ""

    @classmethod
    async def listen(cls, url: TransportURL) -> LoopServerLink:
        if url.location in _CHANNELS:
            raise TransportUnavailableError(
                f"loop channel {url.location!r} already has a listener ({_CHANNELS[url.location].url}); "
                f"close it first or pick another name", field="location")
        link = LoopServerLink(url)
        _CHANNELS[url.location] = link
        return link

    @classmethod
    async def connect(cls, url: TransportURL) -> LoopClientLink:
        server = _CHANNELS.get(url.location)
        if server is None:
            raise TransportUnavailableError(
                f"nothing listens on loop channel {url.location!r}; listening: "
                f"{', '.join(loop_channels()) or 'none'}", field="location", valid=loop_channels())
        client = LoopClientLink(url, server)
        server.clients[client.peer] = client
        server.audience_changed()
        return client

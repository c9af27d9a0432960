"""ZeroMQ links: ``zmq+tcp://``, ``zmq+ipc://``, ``zmq+inproc://`` (server XPUB + ROUTER, client SUB + DEALER).

Grammar and options::

    zmq+tcp://<host>:<port>[?cmd_port=<port>]   telemetry on <port>, requests on cmd_port (default port+1);
                                                port 0: both ephemeral; the resolved URL carries both
    zmq+ipc://<path>                            telemetry on <path>.pub, requests on <path>.cmd
    zmq+inproc://<name>                         telemetry on <name>.pub, requests on <name>.cmd (same Context)

    | option            | type            | default | meaning                                              |
    |-------------------|-----------------|---------|------------------------------------------------------|
    | hwm               | int >= 1        | 1000    | SNDHWM/RCVHWM of every socket (messages)             |
    | cmd_port          | int 0..65535    | port+1  | tcp only: port of the ROUTER                         |
    | linger_ms         | int >= 0        | 0       | LINGER at close                                      |
    | connect_timeout_s | number >= 0     | 5       | connect() waits this long for the server (0: no wait)|
    | drop              | peer, all       | peer    | slow subscriber: drop for it only, or for all+count  |
    | curve_secret      | z85 or file     |         | this end's CurveZMQ secret key (server: required     |
    |                   |                 |         | to bind a non-loopback address)                      |
    | curve_public      | z85 or file     |         | this end's public key (checked against the secret)   |
    | curve_server      | z85 or file     |         | client: the server's public key; enables CURVE       |
    | name              | str             |         | label in logs                                        |

Sockets. The server binds an XPUB for telemetry and events (``publish`` fans out to every SUB) and a
ROUTER for requests (``recv`` yields the sender's identity as ``peer``; ``send_to`` routes the reply
back to it). The client connects a SUB (subscribed to everything) and a DEALER and merges both in
``recv``. The XPUB sends a welcome message (:data:`WELCOME`, never a valid msgpack envelope) to every
new subscriber: ``connect`` waits for it, so a client that got back from ``connect`` receives every
later ``publish`` (no slow-joiner loss), and a welcome after a disconnection marks the reconnection.

Never blocking: every send uses NOBLOCK. With ``drop=peer`` (default) libzmq drops telemetry for a
subscriber at its high-water mark and nobody else notices (libzmq does not report it, so it is not
counted); with ``drop=all`` (XPUB_NODROP) a full subscriber makes ``publish`` drop the message for
everyone, counted in ``stats.dropped_tx``. A reply to a peer whose queue is full is dropped and
counted; a reply to a peer the ROUTER does not know (ROUTER_MANDATORY) raises TransportBrokenError.

Peer gone (client side): a socket monitor on the DEALER reports EVENT_DISCONNECTED; ``recv`` then
raises :class:`TransportBrokenError` once and sets ``stats.is_up = False``. The link stays open and
ZeroMQ keeps reconnecting: when a server is back at the address, its welcome sets ``is_up = True``
and counts ``stats.reconnects``; keep calling ``recv``. inproc has no connection events, so inproc
clients never see the server go away. A board that dies and restarts simply connects again; the
server needs no restart.

Security: a server may bind only loopback addresses unless ``curve_secret`` is given (ipc and inproc
are local by nature). Without a ZAP handler CURVE encrypts and authenticates the server, but any
client that knows the server's public key may connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
import zmq.utils.z85
from zmq.utils.monitor import parse_monitor_message

from emulator.errors import (
    CodecError,
    InvalidTransportURL,
    TransportBrokenError,
    TransportUnavailableError,
)
from emulator.protocol.codec import decode_message, encode_message
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, Message
from emulator.transports.base import ClientLink, Incoming, ServerLink, TransportFactory
from emulator.transports.url import TransportURL, is_loopback_host, split_host_port

log = logging.getLogger("flatsat.transports.zmq")

#: Sent by the server's XPUB to each new subscriber. 0xC1 is the one byte msgpack never uses,
#: so the welcome can never be mistaken for an envelope.
WELCOME = b"\xc1flatsat-welcome"

#: Messages taken from one socket per wake-up before giving the others a turn.
_DRAIN_BATCH = 256

#: Requests bigger than this make libzmq drop the connection of the sender (protects memory);
#: between MAX_MESSAGE_BYTES and this, the codec refuses them with a proper error reply.
_MAX_WIRE_BYTES = 4 * MAX_MESSAGE_BYTES


def shared_context() -> zmq.asyncio.Context:
    """The process-wide asyncio Context (inproc endpoints only meet inside one Context)."""
    return zmq.asyncio.Context.instance()


def _load_key(url: TransportURL, option: str, *, secret: bool) -> bytes:
    """A CurveZMQ key from a z85 string or a certificate file (zmq.auth.create_certificates)."""
    value: str = url.options[option]
    if len(value) == 40 and not Path(value).exists():
        try:
            zmq.utils.z85.decode(value)
        except (ValueError, KeyError, IndexError):
            pass
        else:
            return value.encode("ascii")
    path = Path(value)
    if not path.is_file():
        raise InvalidTransportURL(
            f"option {option} is neither a 40-character z85 key nor a readable key file: {value!r}",
            field=option)
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InvalidTransportURL(f"option {option}: cannot read key file {value!r}: {exc}", field=option) from None
    if secret:
        if secret_key is None:
            raise InvalidTransportURL(f"option {option}: {value!r} holds no secret key (use the .key_secret file)",
                                      field=option)
        return secret_key
    return public


class _Endpoints:
    """The two ZeroMQ endpoints one flatsat URL stands for."""

    def __init__(self, url: TransportURL, *, server: bool) -> None:
        self.url = url
        self.ipv6 = False
        carrier, loc = url.carrier, url.location
        if carrier == "tcp":
            host, port = split_host_port(loc, str(url))
            self.host = host
            self.ipv6 = ":" in host
            zhost = f"[{host}]" if self.ipv6 else host
            cmd_port: int | None = url.get("cmd_port")
            if server:
                if port == 0:
                    if cmd_port not in (None, 0):
                        raise InvalidTransportURL(
                            f"{url}: with port 0 (ephemeral) the request port is ephemeral too; drop cmd_port "
                            "or give both ports", field="cmd_port")
                    self.pub = self.cmd = f"tcp://{zhost}:*"
                else:
                    if cmd_port is None:
                        cmd_port = port + 1
                    self.pub = f"tcp://{zhost}:{port}"
                    self.cmd = f"tcp://{zhost}:{'*' if cmd_port == 0 else cmd_port}"
            else:
                if port == 0 or cmd_port == 0:
                    raise InvalidTransportURL(
                        f"{url}: connect needs real ports; use the resolved URL of the listener "
                        "(server.url), e.g. zmq+tcp://127.0.0.1:41234?cmd_port=41235", field="port")
                if cmd_port is None:
                    cmd_port = port + 1
                self.pub = f"tcp://{zhost}:{port}"
                self.cmd = f"tcp://{zhost}:{cmd_port}"
            if cmd_port is not None and cmd_port > 65535:
                raise InvalidTransportURL(f"{url}: the request port would be {cmd_port} (port + 1); give cmd_port",
                                          field="cmd_port")
        else:
            self.host = ""
            self.pub = f"{carrier}://{loc}.pub"
            self.cmd = f"{carrier}://{loc}.cmd"

    def resolved(self, pub_endpoint: str, cmd_endpoint: str) -> TransportURL:
        if self.url.carrier != "tcp":
            return self.url
        pub_port = int(pub_endpoint.rsplit(":", 1)[1])
        cmd_port = int(cmd_endpoint.rsplit(":", 1)[1])
        host = f"[{self.host}]" if self.ipv6 else self.host
        return self.url.replace(location=f"{host}:{pub_port}", cmd_port=cmd_port)


def _configure(sock: zmq.Socket[Any], url: TransportURL, ipv6: bool) -> None:
    hwm = url.get("hwm")
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, url.get("linger_ms"))
    if ipv6:
        sock.setsockopt(zmq.IPV6, 1)


def _close_quietly(*socks: zmq.Socket[Any] | None) -> None:
    for sock in socks:
        if sock is not None and not sock.closed:
            with contextlib.suppress(zmq.ZMQError):
                sock.close()


class ZmqServerLink(ServerLink):
    """Emulator side: XPUB for telemetry/events, ROUTER for requests."""

    def __init__(self, url: TransportURL, xpub: zmq.asyncio.Socket, router: zmq.asyncio.Socket) -> None:
        super().__init__(url)
        self._xpub = xpub
        self._router = router
        # Synchronous views of the same sockets: NOBLOCK sends/receives without a Future each.
        self._xpub_sync = zmq.Socket.shadow(xpub.underlying)
        self._router_sync = zmq.Socket.shadow(router.underlying)
        self._inbox: deque[Incoming] = deque()
        # Reading the XPUB makes libzmq process new subscribers (and send their welcome) promptly
        # even while nothing is being published.
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch_subscribers(), name=f"flatsat-zmq-xpub {url.label}")

    async def _watch_subscribers(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            while True:
                await self._xpub.recv()

    async def _publish(self, msg: Message) -> None:
        data = encode_message(msg)
        try:
            self._xpub_sync.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.stats.dropped_tx += 1
            return
        except zmq.ZMQError as exc:
            raise TransportBrokenError(f"publish on {self.url.label} failed: {exc}") from exc
        finally:
            # A synchronous send may consume the edge-triggered FD signal; asking for EVENTS through the
            # asyncio socket re-arms its watchers (what zmq.asyncio's own send does).
            self._xpub.get(zmq.EVENTS)
        self.stats.tx += 1

    def _take(self, frames: list[bytes]) -> None:
        peer = frames[0]
        if len(frames) != 2:
            self.stats.decode_errors += 1
            self._inbox.append(Incoming(peer, None, CodecError(
                f"a request is one ZeroMQ frame holding one msgpack envelope; got {len(frames) - 1} frames",
                field="frames")))
            return
        try:
            msg = decode_message(frames[1])
        except CodecError as exc:
            self.stats.decode_errors += 1
            self._inbox.append(Incoming(peer, None, exc))
            return
        self.stats.rx += 1
        self._inbox.append(Incoming(peer, msg, None))

    def _drain(self) -> None:
        sock = self._router_sync
        for _ in range(_DRAIN_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._take(frames)

    async def _recv(self) -> Incoming:
        while True:
            if self._inbox:
                return self._inbox.popleft()
            try:
                self._drain()
            except zmq.ZMQError as exc:
                self._check_open()
                raise TransportBrokenError(f"recv on {self.url.label} failed: {exc}") from exc
            if self._inbox:
                continue
            # Idle: one awaited receive (lowest latency for a lone request); bursts are drained above.
            frames = await _await_zmq(self, self._router.recv_multipart())
            self._take(frames)

    async def _send_to(self, peer: bytes, msg: Message) -> None:
        data = encode_message(msg)
        try:
            self._router_sync.send_multipart([peer, data], zmq.NOBLOCK)
        except zmq.Again:
            self.stats.dropped_tx += 1
            log.warning("%s: reply to %r dropped: its queue is full (hwm %d)", self.url.label, peer,
                        self.url.get("hwm"))
            return
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                raise TransportBrokenError(f"peer {peer!r} is not connected to {self.url.label}") from exc
            raise TransportBrokenError(f"reply on {self.url.label} failed: {exc}") from exc
        finally:
            self._router.get(zmq.EVENTS)
        self.stats.tx += 1

    async def _aclose(self) -> None:
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        self._inbox.clear()
        _close_quietly(self._xpub, self._router)


class ZmqClientLink(ClientLink):
    """Board / harness side: SUB (everything) + DEALER, merged; a monitor watches the connection."""

    def __init__(self, url: TransportURL, sub: zmq.asyncio.Socket, dealer: zmq.asyncio.Socket,
                 monitor: zmq.asyncio.Socket | None) -> None:
        super().__init__(url)
        self._sub, self._dealer, self._monitor = sub, dealer, monitor
        self._sub_sync = zmq.Socket.shadow(sub.underlying)
        self._dealer_sync = zmq.Socket.shadow(dealer.underlying)
        self._monitor_sync = zmq.Socket.shadow(monitor.underlying) if monitor is not None else None
        self._poller = zmq.asyncio.Poller()
        for sock in (sub, dealer, monitor):
            if sock is not None:
                self._poller.register(sock, zmq.POLLIN)
        self._inbox: deque[Message] = deque()
        self._welcomed = False
        self._broken_pending = False
        self.stats.is_up = False  # until the server's welcome arrives

    def _on_welcome(self) -> None:
        if self.stats.is_up:
            return
        self._set_up(True)
        if self._welcomed:
            self.stats.reconnects += 1
            log.info("%s: server is back", self.url.label)
        self._welcomed = True

    def _drain(self) -> None:
        if self._monitor_sync is not None:
            # Connection events first: a disconnection followed by a new welcome must end "up".
            for _ in range(_DRAIN_BATCH):
                try:
                    event = parse_monitor_message(self._monitor_sync.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if event["event"] == zmq.EVENT_DISCONNECTED and self.stats.is_up:
                    self._set_up(False)
                    self._broken_pending = True
        for sock in (self._sub_sync, self._dealer_sync):
            for _ in range(_DRAIN_BATCH):
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if sock.rcvmore:  # not one of ours: a multi-frame message; skip all of it
                    while sock.rcvmore:
                        sock.recv()
                    self.stats.decode_errors += 1
                    continue
                if data == WELCOME:
                    self._on_welcome()
                    continue
                try:
                    msg = decode_message(data)
                except CodecError:
                    self.stats.decode_errors += 1
                    continue
                self.stats.rx += 1
                self._inbox.append(msg)

    async def _recv(self) -> Message:
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self._broken_pending:
                self._broken_pending = False
                raise TransportBrokenError(
                    f"the server of {self.url.label} went away (the link stays open and reconnects; "
                    "recv() again to wait for it)")
            self._drain_checked()
            if self._inbox or self._broken_pending:
                continue
            await _await_zmq(self, self._poller.poll())

    def _drain_checked(self) -> None:
        try:
            self._drain()
        except zmq.ZMQError as exc:
            self._check_open()
            raise TransportBrokenError(f"recv on {self.url.label} failed: {exc}") from exc

    async def wait_until_up(self, up: bool = True) -> None:
        """Wait until ``stats.is_up == up``; the connection state arrives with the data, so this reads too
        (messages read meanwhile wait in order for :meth:`recv`)."""
        while self.stats.is_up != up:
            self._check_open()
            self._drain_checked()
            if self.stats.is_up == up:
                return
            await _await_zmq(self, self._poller.poll())

    async def _wait_welcome(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._drain_checked()
                    if self.stats.is_up:
                        return
                    await _await_zmq(self, self._poller.poll())
        except TimeoutError:
            raise TransportUnavailableError(
                f"no flatsat server answered at {self.url} within {timeout_s:g} s (connect_timeout_s); is the "
                "emulator running and is this its resolved URL?", field="url") from None

    async def _send(self, msg: Message) -> None:
        await self._send_bytes([encode_message(msg)])

    async def _send_bytes(self, frames: list[bytes]) -> None:
        self._check_open()
        try:
            self._dealer_sync.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            # the request queue towards the server is full (hwm): the server is gone or stuck
            raise TransportBrokenError(
                f"request queue of {self.url.label} is full ({self.url.get('hwm')} messages): the server "
                "is not reading") from None
        except zmq.ZMQError as exc:
            raise TransportBrokenError(f"send on {self.url.label} failed: {exc}") from exc
        finally:
            self._dealer.get(zmq.EVENTS)
        self.stats.tx += 1

    async def _aclose(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._dealer.disable_monitor()
        _close_quietly(self._monitor, self._sub, self._dealer)
        self._inbox.clear()


async def _await_zmq(link: ZmqServerLink | ZmqClientLink, fut: Awaitable[Any]) -> Any:
    """Await a zmq.asyncio future; closing the link (which cancels it) becomes TransportClosedError."""
    try:
        result = await fut
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if link.closed and (task is None or task.cancelling() == 0):
            raise link._closed_error() from None
        raise
    except zmq.ZMQError as exc:
        link._check_open()
        raise TransportBrokenError(f"poll on {link.url.label} failed: {exc}") from exc
    link._check_open()
    return result


def _bind(sock: zmq.Socket[Any], endpoint: str, url: TransportURL) -> str:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        hint = ""
        if exc.errno == zmq.EADDRINUSE:
            hint = " (address in use: another emulator? use port 0 for an ephemeral port)"
        elif exc.errno == getattr(zmq, "ENAMETOOLONG", -1) or "too long" in str(exc).lower():
            hint = " (ipc paths are limited to ~107 bytes)"
        raise TransportUnavailableError(f"cannot bind {endpoint} for {url}: {exc}{hint}", field="location") from exc
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


class ZmqTransport(TransportFactory):
    """Registry entry for ``zmq+tcp``, ``zmq+ipc``, ``zmq+inproc``."""

    REQUIRES = "pyzmq"

    @classmethod
    async def listen(cls, url: TransportURL, context: zmq.asyncio.Context | None = None) -> ZmqServerLink:
        ends = _Endpoints(url, server=True)
        curve_secret = _load_key(url, "curve_secret", secret=True) if "curve_secret" in url.options else None
        if url.carrier == "tcp" and not is_loopback_host(ends.host) and curve_secret is None:
            raise InvalidTransportURL(
                f"{url} listens on {ends.host!r}, which is not a loopback address: anyone on the network could "
                "inject commands or faults. Listen on 127.0.0.1, or give CurveZMQ keys: "
                "?curve_secret=<z85 or key file> (zmq.auth.create_certificates)", field="location")
        curve_public = None
        if curve_secret is not None:
            derived = zmq.curve_public(curve_secret)
            if "curve_public" in url.options:
                curve_public = _load_key(url, "curve_public", secret=False)
                if curve_public != derived:
                    raise InvalidTransportURL(f"{url}: curve_public does not belong to curve_secret",
                                              field="curve_public")
            curve_public = derived
        elif "curve_public" in url.options or "curve_server" in url.options:
            raise InvalidTransportURL(f"{url}: a server needs curve_secret (curve_public alone is not enough; "
                                      "curve_server is for clients)", field="curve_secret")
        ctx = context or shared_context()
        xpub = router = None
        try:
            xpub = ctx.socket(zmq.XPUB)
            router = ctx.socket(zmq.ROUTER)
            for sock in (xpub, router):
                _configure(sock, url, ends.ipv6)
                if curve_secret is not None:
                    sock.curve_secretkey = curve_secret
                    sock.curve_publickey = curve_public
                    sock.curve_server = True
            xpub.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
            if url.get("drop") == "all":
                xpub.setsockopt(zmq.XPUB_NODROP, 1)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.MAXMSGSIZE, _MAX_WIRE_BYTES)
            pub_ep = _bind(xpub, ends.pub, url)
            cmd_ep = _bind(router, ends.cmd, url)
        except BaseException:
            _close_quietly(xpub, router)
            raise
        return ZmqServerLink(ends.resolved(pub_ep, cmd_ep), xpub, router)

    @classmethod
    async def connect(cls, url: TransportURL, context: zmq.asyncio.Context | None = None) -> ZmqClientLink:
        ends = _Endpoints(url, server=False)
        if ("curve_secret" in url.options or "curve_public" in url.options) and "curve_server" not in url.options:
            raise InvalidTransportURL(f"{url}: a client using CURVE needs the server's public key: "
                                      "curve_server=<z85 or key file>", field="curve_server")
        curve = None
        if "curve_server" in url.options:
            server_key = _load_key(url, "curve_server", secret=False)
            if "curve_secret" in url.options:
                secret = _load_key(url, "curve_secret", secret=True)
                public = zmq.curve_public(secret)
            else:
                public, secret = zmq.curve_keypair()  # an anonymous client: any key pair will do
            curve = (server_key, public, secret)
        ctx = context or shared_context()
        sub = dealer = monitor = None
        try:
            sub = ctx.socket(zmq.SUB)
            dealer = ctx.socket(zmq.DEALER)
            for sock in (sub, dealer):
                _configure(sock, url, ends.ipv6)
                if curve is not None:
                    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            if url.carrier != "inproc":  # inproc emits no connection events
                monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            sub.connect(ends.pub)
            dealer.connect(ends.cmd)
        except zmq.ZMQError as exc:
            _close_quietly(monitor, sub, dealer)
            raise TransportUnavailableError(f"cannot connect to {url}: {exc}", field="location") from exc
        except BaseException:
            _close_quietly(monitor, sub, dealer)
            raise
        link = ZmqClientLink(url, sub, dealer, monitor)
        timeout_s = url.get("connect_timeout_s")
        if timeout_s > 0:
            try:
                await link._wait_welcome(timeout_s)
            except BaseException:
                await link.aclose()
                raise
        return link

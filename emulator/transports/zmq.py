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
new subscriber: ``connect`` waits for it, so a client that got back from ``connect`` is connected, and a
welcome after a disconnection marks the reconnection. Its subscription reaches the server a moment later
(PUB/SUB): on a busy machine a ``publish`` in that moment can miss the new client (measured: 2-6 of 300
connect-then-publish cycles with both cores busy); the runtime publishes a topic only once a subscription to it
has arrived, and periodic telemetry comes again at its next sample.

Never blocking: every send uses NOBLOCK. With ``drop=peer`` (default) libzmq drops telemetry for a
subscriber at its high-water mark and nobody else notices (libzmq does not report it, so it is not
counted); with ``drop=all`` (XPUB_NODROP) a full subscriber makes ``publish`` drop the message for
everyone, counted in ``stats.dropped_tx``. A reply to a peer whose queue is full is dropped and
counted; a reply to a peer the ROUTER does not know (ROUTER_MANDATORY) raises TransportBrokenError.

Peer gone (client side): a socket monitor on the DEALER reports EVENT_DISCONNECTED; ``recv`` then
raises :class:`TransportBrokenError` once and sets ``stats.is_up = False``. Requests go only over a live
connection (ZMQ_IMMEDIATE): while the server is away ``send`` raises TransportBrokenError at once (until its
welcome is back, whatever else accepted a connection at its port meanwhile), and what was queued when it went
dies with the connection, so a server started again at the address (another run) never receives the old run's
requests. The link stays open and
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
import functools
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.backend
import zmq.utils.z85
from zmq.utils.monitor import parse_monitor_message

from emulator.errors import (
    CodecError,
    InvalidTransportURL,
    TransportBrokenError,
    TransportUnavailableError,
)
from emulator.protocol.codec import decode_message, encode_message, topic_prefix
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, Message
from emulator.transports.base import ClientLink, ServerLink, TransportFactory
from emulator.transports.url import TransportURL, is_loopback_host, split_host_port

log = logging.getLogger("flatsat.transports.zmq")

#: Sent by the server's XPUB to each new subscriber. 0xC1 is the one byte msgpack never uses,
#: so the welcome can never be mistaken for an envelope.
WELCOME = b"\xc1flatsat-welcome"

#: Messages taken from one socket per wake-up before giving the others a turn (client side).
_DRAIN_BATCH = 256

#: Requests bigger than this make libzmq drop the connection of the sender (protects memory);
#: between MAX_MESSAGE_BYTES and this, the codec refuses them with a proper error reply.
MAX_WIRE_BYTES = MAX_MESSAGE_BYTES + 4096
#: Longest message a subscriber may send: a topic prefix is ~140 bytes at most, but libzmq applies the
#: limit to the handshake too (a CURVE INITIATE is ~300 bytes); a longer one drops the connection.
MAX_SUBSCRIPTION_BYTES = 1024
#: Distinct subscription prefixes alive at once before the XPUB is rebuilt (flatsat has ~40 topics);
#: with the length bound, libzmq's subscription trie stays under ~30 MB.
MAX_SUBSCRIPTIONS = 256
#: Requests waiting (as bytes) between libzmq and the runtime; beyond either bound libzmq holds them.
INBOX_MESSAGES = 64
INBOX_BYTES = 4 * MAX_MESSAGE_BYTES
#: requests taken from libzmq per drain (when the inbox is empty)
DRAIN_MESSAGES = 16
#: ROUTER receive high-water mark per peer (messages queued inside libzmq for one peer)
ROUTER_RCVHWM = 64


_io_threads_tuned = False


def shared_context() -> zmq.asyncio.Context:
    """The process-wide asyncio Context (inproc endpoints only meet inside one Context), its I/O threads in the
    batch scheduling class (:func:`batch_io_threads`)."""
    global _io_threads_tuned
    ctx = zmq.asyncio.Context.instance()
    if not _io_threads_tuned:
        _io_threads_tuned = True
        batch_io_threads(ctx)
    return ctx


def batch_io_threads(ctx: zmq.Context[Any]) -> int:
    """Put ``ctx``'s threads (and any other libzmq threads of this process) in Linux's SCHED_BATCH class; returns
    how many (0 where there is no such class).

    Every send wakes libzmq's I/O thread, and a thread woken from sleep preempts the one running on its CPU: on
    a machine whose CPUs are all busy (parallel campaigns, a CI runner) a fast-forward run's own sends took the
    simulation's CPU away thousands of times (main-thread involuntary context switches in a one-hour 81-member
    run at load 3-5: 4,300-7,200, and 30-1,400 in the batch class; on an idle machine ~10 either way,
    docs/transports.md). A SCHED_BATCH thread does not preempt on wake-up; it still runs at once on an idle CPU
    and gets its fair share otherwise. Done from here rather than with libzmq's own ZMQ_THREAD_SCHED_POLICY, which
    aborts the process where the kernel refuses the change; here a refusal is ignored.
    """
    if not hasattr(os, "SCHED_BATCH") or not os.path.isdir("/proc/self/task"):
        return 0
    before = set(os.listdir("/proc/self/task"))
    # a Context starts its threads (an I/O thread, the reaper) with its first socket; they name themselves a moment
    # later, so the new ones are told by their ids, an older Context's by their names
    ctx.socket(zmq.PUB).close(linger=0)
    moved = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            if tid in before and not Path(f"/proc/self/task/{tid}/comm").read_text().startswith("ZMQbg/"):
                continue
            os.sched_setscheduler(int(tid), os.SCHED_BATCH, os.sched_param(0))
            moved += 1
        except (OSError, ValueError):  # the thread ended, or the kernel refused: keep the default class
            continue
    return moved


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
    from zmq.auth import load_certificate  # CurveZMQ only: a link without keys never imports it

    try:
        public, secret_key = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InvalidTransportURL(f"option {option}: cannot read key file {value!r}: {exc}", field=option) from None
    if secret:
        if secret_key is None:
            raise InvalidTransportURL(f"option {option}: {value!r} holds no secret key (use the .key_secret file)",
                                      field=option)
        return secret_key
    return public


def endpoints(url: TransportURL) -> tuple[str, str]:
    """The (telemetry, request) endpoints a client connects to for a resolved flatsat zmq URL, e.g.
    ``("tcp://127.0.0.1:5550", "tcp://127.0.0.1:5551")``: for raw pyzmq peers (tests, tools)."""
    ends = _Endpoints(url, server=False)
    return ends.pub, ends.cmd


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


class _Subscriptions:
    """What the XPUB's subscribers asked for: the distinct prefixes that have at least one subscriber.

    libzmq passes a subscription up the first time any subscriber makes it and an unsubscription when the
    last one drops it (or disconnects), so this set is exact. A topic is wanted when some live prefix is a
    prefix of its envelopes (``b""``: everything) or the other way round.
    """

    def __init__(self) -> None:
        self.prefixes: set[bytes] = set()
        self._wants: dict[str, bool] = {}
        self.version = 0
        self.known_topics: frozenset[str] = frozenset()

    def useful(self, prefix: bytes) -> bool:
        """A prefix that selects the welcome or some known topic (others are refused and counted)."""
        if WELCOME.startswith(prefix) or prefix.startswith(WELCOME):
            return True
        if not self.known_topics:
            return True  # nobody told the link its topics: take everything at face value
        return any(_overlaps(prefix, topic_prefix(t)) for t in self.known_topics)

    def change(self, prefix: bytes, add: bool) -> None:
        if add:
            self.prefixes.add(prefix)
        else:
            self.prefixes.discard(prefix)
        self._wants.clear()
        self.version += 1

    def clear(self) -> None:
        self.prefixes.clear()
        self._wants.clear()
        self.version += 1

    def wants(self, topic: str) -> bool:
        hit = self._wants.get(topic)
        if hit is None:
            head = topic_prefix(topic)
            hit = self._wants[topic] = any(_overlaps(p, head) for p in self.prefixes)
        return hit


def _overlaps(prefix: bytes, head: bytes) -> bool:
    return head.startswith(prefix) or prefix.startswith(head)


class _CurveGuard:
    """Client keys allowed on one server link's sockets, checked by the Context's ZAP handler."""

    def __init__(self, allowed: frozenset[bytes] | None, stats: Any, label: str) -> None:
        self.allowed = allowed  #: z85 public keys; None: any client that knows the server key
        self.stats = stats
        self.label = label
        self._logged = 0.0

    def callback(self, domain: str, key: bytes) -> bool:
        if self.allowed is None or key in self.allowed:
            return True
        if self.stats is not None:
            self.stats.drop("unauthorized")  # from the authenticator's thread: one dict update, under the GIL
        now = time.monotonic()
        if now - self._logged >= 1.0:  # one line a second, whatever a scanner does
            self._logged = now
            log.warning("%s: refused a CURVE client whose key is not on the allow-list (curve_clients): %s",
                        self.label, key.decode("ascii", "replace"))
        return False


#: where libzmq asks a Context's authenticator about each handshake (ZAP, RFC 27); one binder per Context
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def _authenticator(ctx: zmq.asyncio.Context) -> Any:
    """pyzmq's thread authenticator for ``ctx``, started, releasing the ZAP endpoint as it stops.

    Closing a socket releases its inproc endpoint later, from libzmq's reaper thread: a CURVE link opened just
    after the last one closed could not bind the endpoint again ("Address already in use", 17 times in 200
    listen/close cycles here). Unbinding first releases it at once.
    """
    from zmq.auth.base import Authenticator
    from zmq.auth.thread import ThreadAuthenticator

    class ReleasingEndpoint(Authenticator):
        def stop(self) -> None:  # runs after the authenticator's thread has ended (ThreadAuthenticator.stop)
            if self.zap_socket is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self.zap_socket.unbind(ZAP_ENDPOINT)
            super().stop()

    class Releasing(ThreadAuthenticator, ReleasingEndpoint):
        def __init__(self, context: zmq.asyncio.Context) -> None:
            super().__init__(context, log=logging.getLogger("flatsat.transports.zap"))
            # pyzmq names the pipe to its thread by id(self), which a new authenticator reuses as soon as the old
            # one is freed, while the old pipe's endpoint may not be released yet: a name never used twice
            self.pipe_endpoint = f"inproc://flatsat-zap-pipe-{next(_zap_pipes)}"

    auth = Releasing(ctx)
    try:
        auth.start()
    except BaseException:
        # a half-started authenticator would block the interpreter's exit (its __del__ sends to a thread that never
        # ran): close what it opened
        for name in ("pipe", "zap_socket"):
            sock = getattr(auth, name, None)
            if sock is not None:
                sock.close(linger=0)
                setattr(auth, name, None)
        raise
    return auth


_zap_pipes = itertools.count(1)


class _ZapRegistry:
    """One pyzmq ZAP authenticator per Context, shared by every CURVE server link of that Context."""

    def __init__(self) -> None:
        self._auth: dict[int, tuple[Any, dict[str, _CurveGuard]]] = {}
        self._next = 0

    def add(self, ctx: zmq.asyncio.Context, guard: _CurveGuard) -> str:
        # pyzmq's thread authenticator: ZAP requests are answered even while the event loop is busy
        # (a handshake never waits for a simulation step), and the answer is one set lookup.
        entry = self._auth.get(id(ctx))
        if entry is None:
            auth = _authenticator(ctx)
            entry = self._auth[id(ctx)] = (auth, {})
        self._next += 1
        domain = f"flatsat-{self._next}"
        entry[1][domain] = guard
        entry[0].configure_curve_callback(domain, credentials_provider=guard)
        return domain

    def guard(self, ctx: zmq.asyncio.Context, domain: str) -> _CurveGuard:
        return self._auth[id(ctx)][1][domain]

    def remove(self, ctx: zmq.asyncio.Context, domain: str) -> None:
        entry = self._auth.get(id(ctx))
        if entry is None:
            return
        auth, guards = entry
        guards.pop(domain, None)
        auth.credentials_providers.pop(domain, None)
        if not guards:
            auth.stop()
            del self._auth[id(ctx)]


_ZAP = _ZapRegistry()


def _load_client_keys(url: TransportURL) -> frozenset[bytes] | None:
    """The allow-list of ``curve_clients``: '*', a directory or file of public certificates, or z85 keys."""
    value: str = url.options["curve_clients"]
    if value == "*":
        return None
    keys: set[bytes] = set()
    for item in value.split(","):
        item = item.strip()
        if len(item) == 40 and not Path(item).exists():
            try:
                zmq.utils.z85.decode(item)
            except (ValueError, KeyError, IndexError):
                pass
            else:
                keys.add(item.encode("ascii"))
                continue
        path = Path(item)
        files = sorted(path.glob("*.key")) if path.is_dir() else [path] if path.is_file() else []
        if not files:
            raise InvalidTransportURL(
                f"option curve_clients: {item!r} is neither a 40-character z85 public key nor a directory or "
                "file of public certificates (zmq.auth.create_certificates writes NAME.key)", field="curve_clients")
        from zmq.auth import load_certificate

        for file in files:
            try:
                public, _ = load_certificate(file)
            except (OSError, ValueError) as exc:
                raise InvalidTransportURL(f"option curve_clients: cannot read {str(file)!r}: {exc}",
                                          field="curve_clients") from None
            keys.add(public)
    if not keys:
        raise InvalidTransportURL("option curve_clients lists no key", field="curve_clients")
    return frozenset(keys)


def key_fingerprint(public_z85: bytes) -> str:
    """A short, comparable name for a CurveZMQ public key: SHA-256 of its 32 bytes, first 16 hex digits."""
    import hashlib

    return hashlib.sha256(zmq.utils.z85.decode(public_z85)).hexdigest()[:16]


#: getsockopt and recv without pyzmq's Python layer (option lookup, routing_id/group/copy handling)
_sock_get = zmq.backend.Socket.get
_sock_recv = zmq.backend.Socket.recv
#: plain ints: ``int & zmq.POLLIN`` goes through the IntFlag's ``__rand__`` and builds an enum member (~3 us)
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_sock_send = zmq.backend.Socket.send


def _send_routed(sock: zmq.Socket[Any], peer: bytes, data: bytes) -> None:
    """``send_multipart([peer, data], NOBLOCK)`` on a ROUTER without pyzmq's Python layer (the first frame fails
    alone: zmq.Again or EHOSTUNREACH, nothing sent)."""
    _sock_send(sock, peer, _NOBLOCK_MORE, True, False)
    _sock_send(sock, data, _NOBLOCK, True, False)


def _recv_frames(sock: zmq.Socket[Any]) -> list[bytes]:
    """``recv_multipart(NOBLOCK)`` without pyzmq's Python layer (a message's frames arrive together)."""
    frames = []
    while True:
        frame = _sock_recv(sock, _NOBLOCK, False, False)
        frames.append(frame.bytes)
        if not frame.more:
            return frames


class _Readable:
    """Wakes one waiting coroutine when one of some ZeroMQ sockets has something to read: a reader on each socket's
    FD, and no zmq.asyncio future, poller or exception per wait (zmq.asyncio's machinery cost a board about a third
    of its turn).

    A ZeroMQ socket's FD is edge-triggered: it signals that the socket has commands to process, not that a message
    waits, and any call on the socket may take that signal. So a wait starts only right after every socket was
    asked for EVENTS (the owner drains them; asking takes the signals and says what waits), and a send on one of
    them while a wait is on is followed by one more look at EVENTS (:meth:`sent`, once per loop turn). When an FD
    fires, EVENTS of every socket is asked too: that takes the signals (the FDs are watched level-triggered and
    stay registered from one wait to the next), and a signal that brought no message wakes nobody.
    """

    def __init__(self, socks: Iterable[zmq.Socket[Any]]) -> None:
        self.socks = list(socks)
        self.fds = [sock.FD for sock in self.socks]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._look_due = False  # a look at EVENTS is scheduled (sent)

    def _readable(self) -> bool:
        """Ask every socket for EVENTS (taking their FDs' signals): does one have a message?"""
        readable = False
        try:
            for sock in self.socks:
                if _sock_get(sock, _EVENTS) & _POLLIN:
                    readable = True
        except zmq.ZMQError:  # closed under us: let the owner find out
            self._unwatch()
            return True
        return readable

    def _fire(self) -> None:
        readable = self._readable()
        waiter = self._waiter
        if readable and waiter is not None and not waiter.done():
            waiter.set_result(None)
        # nobody waits: the owner drains before its next wait

    def _unwatch(self) -> None:
        if self._loop is not None:
            if not self._loop.is_closed():
                for fd in self.fds:
                    self._loop.remove_reader(fd)
            self._loop = None

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until a socket has a message (or ``timeout_s``); call it right after draining every socket."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._unwatch()
            for fd in self.fds:
                loop.add_reader(fd, self._fire)
            self._loop = loop
        waiter = self._waiter = loop.create_future()
        try:
            if timeout_s is None:
                await waiter
            else:
                await asyncio.wait((waiter,), timeout=timeout_s)
        finally:
            self._waiter = None

    def sent(self) -> None:
        """One of the sockets was sent on: the send may have taken its FD's signal; a wait that is on looks at
        EVENTS once this loop turn."""
        if self._waiter is not None and not self._look_due and self._loop is not None:
            self._look_due = True
            self._loop.call_soon(self._look)

    def _look(self) -> None:
        self._look_due = False
        if self._waiter is not None and self._loop is not None:
            self._fire()

    def close(self) -> None:
        """Stop watching (before the sockets close); a wait that is on is cancelled."""
        self._unwatch()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.cancel()


class ZmqServerLink(ServerLink):
    """Emulator side: XPUB for telemetry/events, ROUTER for requests.

    Bounded whatever peers send: a request is at most :data:`MAX_WIRE_BYTES` (libzmq drops the connection
    of a peer that sends more), a subscription at most :data:`MAX_SUBSCRIPTION_BYTES`; at most
    :data:`MAX_SUBSCRIPTIONS` distinct prefixes live at once (beyond that the XPUB is rebuilt: every
    subscriber reconnects, counted as ``subscription_flood``); requests wait as bytes (at most
    :data:`INBOX_MESSAGES` / :data:`INBOX_BYTES`; libzmq then pushes back on the peer) and are decoded
    one at a time.
    """

    def __init__(self, url: TransportURL, xpub: zmq.asyncio.Socket, router: zmq.asyncio.Socket,
                 make_xpub: Callable[[], zmq.asyncio.Socket], curve: tuple[zmq.asyncio.Context, str] | None) -> None:
        super().__init__(url)
        self._router = router
        self._router_sync = zmq.Socket.shadow(router.underlying)
        self._router_readable = _Readable([self._router_sync])  # requests wake recv (no zmq.asyncio future)
        self._make_xpub = make_xpub
        self._curve = curve
        self.curve_public: bytes | None = None  #: the server's public key (z85) when CURVE is on
        self.subscriptions = _Subscriptions()
        self._sent_since_flush = False  # a synchronous send since the last flush (which then re-arms the watchers)
        self._use_xpub(xpub)
        self._inbox: deque[tuple[bytes, list[bytes]]] = deque()
        self._inbox_bytes = 0
        # Reading the XPUB makes libzmq process new subscribers (and send their welcome) promptly
        # even while nothing is being published; it also brings the subscriptions.
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch_subscribers(), name=f"flatsat-zmq-xpub {url.label}")

    def _use_xpub(self, xpub: zmq.asyncio.Socket) -> None:
        self._xpub = xpub
        # Synchronous view of the same socket: a NOBLOCK send without a Future.
        self._xpub_sync = zmq.Socket.shadow(xpub.underlying)
        # ... and its send without pyzmq's Python layer (routing_id/group/copy-threshold handling that a bytes
        # telemetry frame never needs): half the cost of a send (~0.5 vs 1.2 us)
        self._xpub_send = functools.partial(zmq.backend.Socket.send, self._xpub_sync)

    def set_topics(self, topics: Iterable[str]) -> None:
        """The topics this link may publish: a subscription that selects none of them is refused."""
        self.subscriptions.known_topics = frozenset(topics)

    def wants(self, topic: str) -> bool:
        return self.subscriptions.wants(topic)

    @property
    def audience(self) -> int:  # type: ignore[override]
        return self.subscriptions.version + self.feed_version

    supports_feeds = True

    def _send_nowait(self, peer: bytes, data: bytes) -> str:
        # a feed rides the ROUTER beside the peer's replies (ROUTER_MANDATORY: a peer that left is reported)
        self._sent_since_flush = True
        try:
            _send_routed(self._router_sync, peer, data)
        except zmq.Again:
            return "full"
        except zmq.ZMQError:
            return "gone"
        finally:
            self._router_readable.sent()
        return "ok"

    async def _watch_subscribers(self) -> None:
        subs = self.subscriptions
        while True:
            try:
                data = await self._xpub.recv()
            except zmq.ZMQError:
                if self._closed:
                    return
                await asyncio.sleep(0.05)  # the socket is being rebuilt
                continue
            if not data or data[0] not in (0, 1):
                self.stats.drop("subscription_refused")  # not a subscription: XPUB passes it up, we ignore it
                continue
            prefix, add = bytes(data[1:]), data[0] == 1
            if add and not subs.useful(prefix):
                self.stats.drop("subscription_refused")
                log.debug("%s: subscription %r selects no topic", self.url.label, prefix[:40])
            subs.change(prefix, add)
            if len(subs.prefixes) > MAX_SUBSCRIPTIONS:
                await self._rebuild_xpub()

    async def _rebuild_xpub(self) -> None:
        """libzmq keeps every subscription until its peer leaves: drop them all by rebuilding the socket."""
        self.stats.drop("subscription_flood")
        log.error("%s: more than %d distinct subscriptions: rebuilding the telemetry socket (every subscriber "
                  "reconnects; counted as subscription_flood)", self.url.label, MAX_SUBSCRIPTIONS)
        endpoint = self._xpub.getsockopt_string(zmq.LAST_ENDPOINT)
        _close_quietly(self._xpub)
        self.subscriptions.clear()
        fresh = self._make_xpub()
        for _ in range(100):  # the I/O thread releases the address shortly after close
            try:
                fresh.bind(endpoint)
                break
            except zmq.ZMQError:
                await asyncio.sleep(0.02)
        else:
            log.error("%s: could not bind %s again; telemetry stops", self.url.label, endpoint)
        self._use_xpub(fresh)

    def _publish_bytes(self, data: bytes, event: bool) -> None:
        self._sent_since_flush = True
        try:
            self._xpub_send(data, zmq.NOBLOCK, True)
        except zmq.Again:
            self.stats.drop("all_full")
            return
        except zmq.ZMQError as exc:
            if self._xpub.closed:  # being rebuilt after a subscription flood
                self.stats.drop("subscription_flood")
                return
            raise TransportBrokenError(f"publish on {self.url.label} failed: {exc}") from exc
        self.stats.tx += 1

    def publish_many(self, datas: list[bytes]) -> None:
        self._check_open()
        self._sent_since_flush = True
        send, noblock = self._xpub_send, zmq.NOBLOCK
        sent = 0
        try:
            for data in datas:
                send(data, noblock, True)
                sent += 1
        except zmq.ZMQError:  # (full, or being rebuilt): that one and the rest one at a time, counted as they go
            self.stats.tx += sent
            for data in datas[sent:]:
                self._publish_bytes(data, False)
            return
        self.stats.tx += sent

    def flush(self) -> None:
        # Synchronous sends may consume the edge-triggered FD signal; asking for EVENTS through the asyncio
        # socket re-arms its watchers (what zmq.asyncio's own send does), so new subscribers are still seen.
        # Once per batch, not per message, and only after a send (nothing else here touches the sockets
        # synchronously): libzmq answers it by polling its mailbox, a system call (~15 us on a VM).
        if not self._sent_since_flush:
            return
        self._sent_since_flush = False
        with contextlib.suppress(zmq.ZMQError):
            self._xpub.get(zmq.EVENTS)

    def _drain(self) -> None:
        sock = self._router_sync
        # a few at a time (each recv costs a few us): taking the whole inbox at once held the loop ~0.3 ms
        for _ in range(DRAIN_MESSAGES):
            if len(self._inbox) >= INBOX_MESSAGES or self._inbox_bytes >= INBOX_BYTES:
                return
            # EVENTS first: a receive that finds nothing raises zmq.Again, which costs twice as much
            if not _sock_get(sock, _EVENTS) & _POLLIN:
                return
            try:
                frames = _recv_frames(sock)
            except zmq.Again:
                return
            self._inbox.append((frames[0], frames[1:]))
            self._inbox_bytes += sum(len(f) for f in frames)

    async def _recv_raw(self) -> tuple[bytes, bytes | None, CodecError | None]:
        while not self._inbox:
            try:
                self._drain()
            except zmq.ZMQError as exc:
                self._check_open()
                raise TransportBrokenError(f"recv on {self.url.label} failed: {exc}") from exc
            if self._inbox:
                break
            # idle: the drain above asked EVENTS, so the FD signals the next request
            await _await_zmq(self, self._router_readable.wait())
        peer, body = self._inbox.popleft()
        self._inbox_bytes -= sum(len(f) for f in body) + len(peer)
        if len(body) != 1:
            self.stats.drop("decode_error")
            return peer, None, CodecError(
                f"a request is one ZeroMQ frame holding one msgpack envelope; got {len(body)} frames",
                field="frames")
        return peer, body[0], None

    defers_replies = True

    def reply_bytes(self, peer: bytes, data: bytes) -> None:
        self._check_open()
        self._reply(peer, data)

    def replies_sent(self) -> None:
        # the sends may have taken the edge-triggered FD's signal: a waiting recv looks at EVENTS (or a request that
        # came meanwhile waits unnoticed); once per loop turn
        self._router_readable.sent()

    async def _send_to(self, peer: bytes, msg: Message) -> None:
        try:
            self._reply(peer, encode_message(msg))
        finally:
            self.replies_sent()

    def _reply(self, peer: bytes, data: bytes) -> None:
        try:
            _send_routed(self._router_sync, peer, data)
        except zmq.Again:
            self.stats.drop("queue_full")
            log.debug("%s: reply to %r dropped: its queue is full (hwm %d)", self.url.label, peer,
                      self.url.get("hwm"))
            return
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.stats.drop("peer_gone")
                raise TransportBrokenError(f"peer {peer!r} is not connected to {self.url.label}") from exc
            raise TransportBrokenError(f"reply on {self.url.label} failed: {exc}") from exc
        self.stats.tx += 1

    async def _aclose(self) -> None:
        self._router_readable.close()
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        self._inbox.clear()
        _close_quietly(self._xpub, self._router)
        if self._curve is not None:
            _ZAP.remove(*self._curve)


class ZmqClientLink(ClientLink):
    """Board / harness side: SUB (everything) + DEALER, merged; a monitor watches the connection."""

    def __init__(self, url: TransportURL, sub: zmq.asyncio.Socket, dealer: zmq.asyncio.Socket,
                 monitor: zmq.asyncio.Socket | None) -> None:
        super().__init__(url)
        self._sub, self._dealer, self._monitor = sub, dealer, monitor
        # synchronous views: this link never uses zmq.asyncio's futures (_Readable wakes it)
        self._sub_sync = zmq.Socket.shadow(sub.underlying)
        self._dealer_sync = zmq.Socket.shadow(dealer.underlying)
        self._monitor_sync = zmq.Socket.shadow(monitor.underlying) if monitor is not None else None
        self._readable = _Readable(s for s in (self._monitor_sync, self._sub_sync, self._dealer_sync)
                                   if s is not None)
        self._inbox: deque[Message] = deque()
        self._welcomed = False
        self._broken_pending = False
        self.stats.is_up = False  # until the server's welcome arrives
        #: set by connect() when CURVE is on: (server key as given, this client's public key), both z85
        self.curve_keys: tuple[bytes, bytes] | None = None
        self._handshake_refused: int | None = None  # ZAP status of a refused CURVE handshake
        self._handshake_failed = False
        # up = the server's welcome (on the SUB) and the DEALER's connection complete (its handshake done): requests
        # are sent only then (ZMQ_IMMEDIATE), so none waits in a queue for a server that comes back later as
        # another run; inproc connects at once
        self._welcome_seen = False
        self._dealer_ready = monitor is None

    def _on_welcome(self) -> None:
        self._welcome_seen = True
        self._maybe_up()

    def _maybe_up(self) -> None:
        if self.stats.is_up or not (self._welcome_seen and self._dealer_ready):
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
                if not _sock_get(self._monitor_sync, _EVENTS) & _POLLIN:
                    break
                try:
                    event = parse_monitor_message(self._monitor_sync.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                kind = event["event"]
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._dealer_ready = True
                    self._maybe_up()
                elif kind == zmq.EVENT_DISCONNECTED:
                    self._dealer_ready = self._welcome_seen = False
                    if self.stats.is_up:
                        self._set_up(False)
                        self._broken_pending = True
                elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._handshake_refused = int(event["value"])
                elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                    self._handshake_failed = True
        for sock in (self._sub_sync, self._dealer_sync):
            # EVENTS first: a receive that finds nothing raises zmq.Again, which costs twice as much
            for _ in range(_DRAIN_BATCH):
                if not _sock_get(sock, _EVENTS) & _POLLIN:
                    break
                try:
                    frame = _sock_recv(sock, _NOBLOCK, False, False)
                except zmq.Again:
                    break
                if frame.more:  # not one of ours: a multi-frame message; skip all of it
                    while sock.rcvmore:
                        sock.recv()
                    self.stats.drop("decode_error")
                    continue
                data = frame.bytes
                if data == WELCOME:
                    self._on_welcome()
                    continue
                try:
                    msg = decode_message(data)
                except CodecError:
                    self.stats.drop("decode_error")
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
            await _await_zmq(self, self._readable.wait())

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
            await _await_zmq(self, self._readable.wait())

    async def _wait_welcome(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._drain_checked()
                    if self.stats.is_up:
                        return
                    if self._handshake_refused is not None and self.curve_keys is not None:
                        raise TransportUnavailableError(
                            f"the flatsat server at {self.url.label} refused this client's CURVE key (ZAP status "
                            f"{self._handshake_refused}): it is not on the server's allow-list (curve_clients). "
                            f"This client's public key: {self.curve_keys[1].decode()} (fingerprint "
                            f"{key_fingerprint(self.curve_keys[1])}); ask for it to be added", field="curve_secret")
                    await _await_zmq(self, self._readable.wait(0.25))
        except TimeoutError:
            hint = "is the emulator running and is this its resolved URL?"
            if self.curve_keys is not None:
                hint = (f"with CURVE this is also what a wrong server key looks like: this client expects the "
                        f"server key with fingerprint {key_fingerprint(self.curve_keys[0])}; compare it with the "
                        "fingerprint the emulator prints at start (flatsat run), and check curve_server"
                        + (" (the handshake failed)" if self._handshake_failed else ""))
            raise TransportUnavailableError(
                f"no flatsat server answered at {self.url} within {timeout_s:g} s (connect_timeout_s); {hint}",
                field="url") from None

    async def _send(self, msg: Message) -> None:
        await self._send_bytes([encode_message(msg)])

    def _not_connected(self) -> TransportBrokenError:
        return TransportBrokenError(
            f"the server of {self.url.label} is not connected (it went away, or is coming back): a request is sent "
            "only over a live connection, never kept for whichever server comes next")

    async def _send_bytes(self, frames: list[bytes]) -> None:
        self._check_open()
        if not self.stats.is_up and self._monitor_sync is not None:
            # known down (the server went away): up again only with its welcome and a complete request connection,
            # whatever ZeroMQ connected meanwhile (another process that took the port, or this DEALER's own
            # reconnection meeting itself: TCP can connect a local port to itself)
            self._drain_checked()
            if not self.stats.is_up:
                raise self._not_connected()
        try:
            if len(frames) == 1:
                _sock_send(self._dealer_sync, frames[0], _NOBLOCK, True, False)
            else:
                self._dealer_sync.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            if not self._dealer_ready:
                raise self._not_connected() from None
            # the request queue towards the server is full (hwm): the server is gone or stuck
            raise TransportBrokenError(
                f"request queue of {self.url.label} is full ({self.url.get('hwm')} messages): the server "
                "is not reading") from None
        except zmq.ZMQError as exc:
            raise TransportBrokenError(f"send on {self.url.label} failed: {exc}") from exc
        finally:
            self._readable.sent()
        self.stats.tx += 1

    async def _aclose(self) -> None:
        self._readable.close()
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
            hint = busy_port_hint(url)
        elif exc.errno == getattr(zmq, "ENAMETOOLONG", -1) or "too long" in str(exc).lower():
            hint = " (ipc paths are limited to ~107 bytes)"
        raise TransportUnavailableError(f"cannot bind {endpoint} for {url}: {exc}{hint}", field="location") from exc
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


def busy_port_hint(url: TransportURL) -> str:
    """The exact fix for a zmq+tcp port in use: a free pair of ports to use instead, or port 0."""
    if url.carrier != "tcp":
        return " (address in use: another emulator? give another path)"
    import socket

    host, port = split_host_port(url.location, str(url))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def free(p: int) -> bool:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, p))
            except OSError:
                return False
            return True

    start = max(1024, port - port % 10 + 10)
    for candidate in range(start, min(start + 400, 65534), 10):
        if free(candidate) and free(candidate + 1):
            base = url.replace(location=f"{'[' + host + ']' if ':' in host else host}:{candidate}", cmd_port=None)
            return (f" (address in use: another emulator, or another program, has it). A zmq+tcp URL takes two "
                    f"ports, the URL's (telemetry) and cmd_port (requests, default port+1): use free ones, e.g. "
                    f"{base} (requests on {candidate + 1}), or port 0 for ephemeral ports "
                    "(flatsat run prints the URL to give the board)")
    return " (address in use: another emulator? use port 0 for ephemeral ports)"


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
                "?curve_secret=<z85 or key file>&curve_clients=<directory of client public keys> "
                "(zmq.auth.create_certificates)", field="location")
        curve_public = None
        allowed: frozenset[bytes] | None = None
        if curve_secret is not None:
            derived = zmq.curve_public(curve_secret)
            if "curve_public" in url.options:
                curve_public = _load_key(url, "curve_public", secret=False)
                if curve_public != derived:
                    raise InvalidTransportURL(f"{url}: curve_public does not belong to curve_secret",
                                              field="curve_public")
            curve_public = derived
            if "curve_clients" not in url.options:
                raise InvalidTransportURL(
                    f"{url}: a CURVE server needs the keys of the clients it lets in: curve_clients=<directory of "
                    "public certificates, a file, or z85 keys separated by commas>, or curve_clients=* to let "
                    "in any client that knows the server's public key", field="curve_clients")
            allowed = _load_client_keys(url)
        elif any(k in url.options for k in ("curve_public", "curve_server", "curve_clients")):
            raise InvalidTransportURL(f"{url}: a server needs curve_secret (curve_public or curve_clients alone are "
                                      "not enough; curve_server is for clients)", field="curve_secret")
        ctx = context or shared_context()
        xpub = router = None
        curve = None

        def secure(sock: zmq.asyncio.Socket) -> None:
            _configure(sock, url, ends.ipv6)
            if curve_secret is not None and curve is not None:
                sock.zap_domain = curve[1].encode()
                sock.curve_secretkey = curve_secret
                sock.curve_publickey = curve_public
                sock.curve_server = True

        def make_xpub() -> zmq.asyncio.Socket:
            sock = ctx.socket(zmq.XPUB)
            secure(sock)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
            sock.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
            if url.get("drop") == "all":
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            return sock

        try:
            if curve_secret is not None:
                curve = (ctx, _ZAP.add(ctx, _CurveGuard(allowed, None, url.label)))
            xpub = make_xpub()
            router = ctx.socket(zmq.ROUTER)
            secure(router)
            router.setsockopt(zmq.RCVHWM, min(url.get("hwm"), ROUTER_RCVHWM))
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE_BYTES)
            pub_ep = _bind(xpub, ends.pub, url)
            cmd_ep = _bind(router, ends.cmd, url)
        except BaseException:
            _close_quietly(xpub, router)
            if curve is not None:
                _ZAP.remove(*curve)
            raise
        link = ZmqServerLink(ends.resolved(pub_ep, cmd_ep), xpub, router, make_xpub, curve)
        if curve is not None:
            guard = _ZAP.guard(*curve)
            guard.stats, guard.label = link.stats, link.url.label
            link.curve_public = curve_public
            link.server_key = f"CURVE public key {curve_public.decode()} (fingerprint {key_fingerprint(curve_public)})"
        return link

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
            topics = [t.strip() for t in url.options.get("topics", "").split(",") if t.strip()]
            if not url.get("subscribe"):  # only the welcome: connection state, no telemetry (telemetry.feed)
                sub.setsockopt(zmq.SUBSCRIBE, WELCOME)
            elif topics:
                sub.setsockopt(zmq.SUBSCRIBE, WELCOME)
                for topic in dict.fromkeys([*topics, "sim.waiting"]):  # lockstep boards need sim.waiting
                    sub.setsockopt(zmq.SUBSCRIBE, topic_prefix(topic))
            else:
                sub.setsockopt(zmq.SUBSCRIBE, b"")
            if url.carrier != "inproc":  # inproc emits no connection events
                # requests only over a completed connection: queued ones die with it (a server killed and started
                # again is another run, and must not get the old run's commands)
                dealer.setsockopt(zmq.IMMEDIATE, 1)
                monitor = dealer.get_monitor_socket(
                    zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            sub.connect(ends.pub)
            dealer.connect(ends.cmd)
        except zmq.ZMQError as exc:
            _close_quietly(monitor, sub, dealer)
            raise TransportUnavailableError(f"cannot connect to {url}: {exc}", field="location") from exc
        except BaseException:
            _close_quietly(monitor, sub, dealer)
            raise
        link = ZmqClientLink(url, sub, dealer, monitor)
        if curve is not None:
            link.curve_keys = (curve[0], curve[1])
        timeout_s = url.get("connect_timeout_s")
        if timeout_s > 0:
            try:
                await link._wait_welcome(timeout_s)
            except BaseException:
                await link.aclose()
                raise
        return link

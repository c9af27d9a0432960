"""One conformance suite, run against every medium: loop://, zmq+inproc/tcp/ipc, serial over a pty null modem.

Each test states behaviour every ServerLink/ClientLink pair must show (docs/transports.md); where a
medium cannot show it (a UART has no connection state, inproc has no connection events) the
``Medium`` says so and the test checks the documented alternative instead. ``asyncio.timeout`` is
only a wall-clock safety net; nothing here waits a fixed time to synchronise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from emulator.errors import CodecError, TransportBrokenError, TransportClosedError
from emulator.protocol import Message, encode_frame
from emulator.transports import ClientLink, ServerLink, connect, listen, parse_transport_url
from emulator.transports.zmq import _Endpoints, shared_context

#: Wall-clock safety net for any single wait (seconds); a healthy run takes milliseconds.
SAFETY_S = 5.0
#: Payload size for the large-message test.
LARGE_BYTES = 256 * 1024
#: Messages per ordering test.
N_ORDER = 100
#: Bytes that are not a msgpack envelope (0xC1 is never used by msgpack).
BAD_ENVELOPE = b"\xc1not msgpack"


@dataclass
class Medium:
    name: str
    server_url: str
    client_url: str | None = None  # None: the server's resolved URL
    detects_server_gone: bool = True
    null_modem: object | None = None

    async def listen(self) -> ServerLink:
        return await listen(self.server_url)

    async def connect(self, server: ServerLink) -> ClientLink:
        return await connect(self.client_url or server.url)

    async def inject_bad_envelope(self, server: ServerLink, client: ClientLink) -> bytes | None:
        """Make bytes that are not an envelope reach ``server`` from a client; return the expected peer id."""
        kind = server.url.kind
        if kind == "loop":
            await client._send_bytes(BAD_ENVELOPE)  # type: ignore[attr-defined]
            return client.peer  # type: ignore[attr-defined,no-any-return]
        if kind == "zmq":
            return None  # needs a raw DEALER: see test_zmq_raw_garbage_gets_a_reply
        modem = self.null_modem
        modem.inject(modem.a, encode_frame(BAD_ENVELOPE))  # type: ignore[attr-defined]
        return b"serial"


MEDIA = ["loop", "zmq+inproc", "zmq+tcp", "zmq+ipc", "serial-pty"]


@pytest.fixture(params=MEDIA)
def medium(request: pytest.FixtureRequest, short_tmp: Path, make_null_modem: Any) -> Medium:
    name = request.param
    test_id = f"{request.node.name}-{os.getpid()}".replace("[", "-").replace("]", "").replace("+", "-")
    if name == "loop":
        return Medium(name, f"loop://{test_id}")
    if name == "zmq+inproc":
        return Medium(name, f"zmq+inproc://{test_id}", detects_server_gone=False)
    if name == "zmq+tcp":
        return Medium(name, "zmq+tcp://127.0.0.1:0")
    if name == "zmq+ipc":
        return Medium(name, f"zmq+ipc://{short_tmp}/link")
    return Medium(name, "", detects_server_gone=False, null_modem=lambda: make_null_modem(short_tmp))


@pytest.fixture
async def pair(medium: Medium) -> AsyncIterator[tuple[ServerLink, ClientLink]]:
    modem = None
    if medium.name == "serial-pty":
        # the pty relay needs the running loop, so it is made here rather than in `medium`
        modem = medium.null_modem()  # type: ignore[operator]
        opts = "baud=921600&hwm=256&reopen_s=0.05"
        medium.server_url = f"serial://{modem.a.link}?{opts}"
        medium.client_url = f"serial://{modem.b.link}?{opts}"
        medium.null_modem = modem
    try:
        server = await medium.listen()
        try:
            client = await medium.connect(server)
            async with asyncio.timeout(SAFETY_S):  # its subscription reaches the server just after it is up
                while not server.wants("eps.telemetry"):
                    await asyncio.sleep(0.005)
        except BaseException:
            await server.aclose()
            raise
        yield server, client
        await client.aclose()
        await server.aclose()
    finally:
        if modem is not None:
            modem.close()


def request(seq: int, **payload: object) -> Message:
    return Message("test.request", dict(payload), seq=seq, t_ns=seq * 1000, src="board")


async def test_resolved_url_round_trips(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    for link in (server, client):
        assert parse_transport_url(str(link.url)) == link.url
    if server.url.carrier == "tcp":  # port 0 was resolved to real ports, both carried by the URL
        assert not str(server.url).startswith("zmq+tcp://127.0.0.1:0?")
        assert server.url.options["cmd_port"] > 0


async def test_requests_arrive_in_order_and_replies_reach_the_sender(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    for seq in range(1, N_ORDER + 1):
        await client.send(request(seq, k=seq))
    async with asyncio.timeout(SAFETY_S):
        incoming = [await server.recv() for _ in range(N_ORDER)]
    assert [i.message.seq for i in incoming if i.message] == list(range(1, N_ORDER + 1))
    assert all(i.error is None for i in incoming)
    assert incoming[0].message == request(1, k=1)
    for inc in incoming:
        assert inc.message is not None
        await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="emulator"))
    async with asyncio.timeout(SAFETY_S):
        replies = [await client.recv() for _ in range(N_ORDER)]
    assert [r.payload["id"] for r in replies] == list(range(1, N_ORDER + 1))
    assert server.stats.rx == N_ORDER and client.stats.tx == N_ORDER
    assert client.stats.rx == N_ORDER and server.stats.tx == N_ORDER


async def test_published_messages_arrive_in_order(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    for seq in range(1, N_ORDER + 1):
        # every fifth one an event: events and telemetry share one order
        msg = Message("eps.telemetry", {"bus_v": 7.4, "n": seq}, seq=seq, t_ns=seq)
        await server.publish(msg, event=seq % 5 == 0)
    async with asyncio.timeout(SAFETY_S):
        got = [await client.recv() for _ in range(N_ORDER)]
    assert [m.seq for m in got] == list(range(1, N_ORDER + 1))
    assert got[-1].payload == {"bus_v": 7.4, "n": N_ORDER}
    assert server.stats.dropped_tx == 0


async def test_publish_reaches_every_client(medium: Medium, pair: tuple[ServerLink, ClientLink]) -> None:
    if medium.name == "serial-pty":
        pytest.skip("a serial line has exactly one client")
    server, client = pair
    async with await medium.connect(server) as second:
        # PUB/SUB: a new client's subscription reaches the server a moment after its connection is up (on a busy
        # machine a publish in that moment misses it): probes until the new client gets one, then the real one
        probe = 100
        async with asyncio.timeout(SAFETY_S):
            while True:
                probe += 1
                await server.publish(Message("eps.telemetry", {"n": 0}, seq=probe))
                try:
                    async with asyncio.timeout(0.2):
                        while (await second.recv()).seq != probe:
                            pass
                    break
                except TimeoutError:
                    continue
        await server.publish(Message("eps.telemetry", {"n": 1}, seq=1))
        async with asyncio.timeout(SAFETY_S):
            while (await client.recv()).seq != 1:  # the probes first
                pass
            assert (await second.recv()).seq == 1


async def test_large_messages_pass_both_ways(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    blob = os.urandom(LARGE_BYTES)
    await client.send(request(1, blob=blob))
    async with asyncio.timeout(SAFETY_S):
        inc = await server.recv()
    assert inc.message is not None and inc.message.payload["blob"] == blob
    await server.send_to(inc.peer, Message("reply", {"id": 1, "blob": blob[::-1]}))
    await server.publish(Message("big.telemetry", {"blob": blob}))
    async with asyncio.timeout(SAFETY_S):
        got = {m.topic: m for m in [await client.recv(), await client.recv()]}
    assert got["reply"].payload["blob"] == blob[::-1]
    assert got["big.telemetry"].payload["blob"] == blob


async def test_close_is_idempotent_and_calls_after_close_raise(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    await client.aclose()
    await client.aclose()
    await server.aclose()
    await server.aclose()
    assert server.closed and client.closed
    assert not server.stats.is_up and not client.stats.is_up
    msg = request(1)
    with pytest.raises(TransportClosedError):
        await server.publish(msg)
    with pytest.raises(TransportClosedError):
        await server.send_to(b"x", msg)
    with pytest.raises(TransportClosedError):
        await server.recv()
    with pytest.raises(TransportClosedError):
        await client.send(msg)
    with pytest.raises(TransportClosedError):
        await client.recv()
    assert [m async for m in client] == []  # iteration ends at close
    assert [m async for m in server] == []


async def test_close_wakes_a_pending_recv(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    waiting_server = asyncio.create_task(server.recv())
    waiting_client = asyncio.create_task(client.recv())
    await asyncio.sleep(0)  # let both start waiting (a scheduling point, not a timed wait)
    await client.aclose()
    await server.aclose()
    async with asyncio.timeout(SAFETY_S):
        for task in (waiting_server, waiting_client):
            with pytest.raises(TransportClosedError):
                await task


async def test_a_cancelled_recv_loses_nothing(pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    task = asyncio.create_task(server.recv())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.send(request(7))
    async with asyncio.timeout(SAFETY_S):
        inc = await server.recv()
    assert inc.message is not None and inc.message.seq == 7


async def test_server_gone_is_detected_by_the_client(medium: Medium, pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    if not medium.detects_server_gone:
        pytest.skip(f"{medium.name}: documented as not detecting a vanished server "
                    "(serial: see test_serial unplug tests; inproc: no connection events)")
    await server.publish(Message("last.words", {}, seq=1))
    await server.aclose()
    async with asyncio.timeout(SAFETY_S):
        got = []
        with pytest.raises(TransportBrokenError):
            while True:
                got.append(await client.recv())
    assert [m.topic for m in got] in ([], ["last.words"])
    assert not client.stats.is_up
    assert not client.closed


async def test_a_new_client_is_served_after_the_old_one_left(medium: Medium,
                                                             pair: tuple[ServerLink, ClientLink]) -> None:
    server, first = pair
    await first.send(request(1))
    async with asyncio.timeout(SAFETY_S):
        inc = await server.recv()
    await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="e"))  # type: ignore[union-attr]
    async with asyncio.timeout(SAFETY_S):
        assert (await first.recv()).payload["id"] == 1
    await first.aclose()
    async with await medium.connect(server) as second:
        await second.send(request(2))
        async with asyncio.timeout(SAFETY_S):
            inc = await server.recv()
        assert inc.message is not None and inc.message.seq == 2
        await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="e"))
        await server.publish(Message("eps.telemetry", {"n": 3}, seq=3))
        async with asyncio.timeout(SAFETY_S):
            got = [await second.recv(), await second.recv()]
        assert sorted(m.topic for m in got) == ["eps.telemetry", "reply"]


async def test_a_bad_envelope_becomes_an_incoming_error(medium: Medium, pair: tuple[ServerLink, ClientLink]) -> None:
    server, client = pair
    peer = await medium.inject_bad_envelope(server, client)
    if peer is None:
        pytest.skip("zmq: tested with a raw DEALER in test_zmq_raw_garbage_gets_a_reply")
    async with asyncio.timeout(SAFETY_S):
        inc = await server.recv()
    assert inc.message is None and isinstance(inc.error, CodecError)
    assert inc.peer == peer
    assert inc.error.field == "bytes"
    assert server.stats.decode_errors == 1
    # the link still works, and the error can be answered
    await server.send_to(inc.peer, Message("reply", {"id": 0, "ok": False, "error": inc.error.to_wire()}))
    await client.send(request(5))
    async with asyncio.timeout(SAFETY_S):
        reply = await client.recv()
        good = await server.recv()
    assert reply.payload["error"]["code"] == "codec"
    assert good.message is not None and good.message.seq == 5


@pytest.mark.parametrize("carrier", ["inproc", "tcp", "ipc"])
async def test_zmq_raw_garbage_gets_a_reply(carrier: str, short_tmp: Path) -> None:
    url = {"inproc": "zmq+inproc://garbage", "tcp": "zmq+tcp://127.0.0.1:0", "ipc": f"zmq+ipc://{short_tmp}/g"}[carrier]
    async with await listen(url) as server:
        raw = shared_context().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.setsockopt(zmq.IDENTITY, b"raw-dealer")
        try:
            raw.connect(_Endpoints(server.url, server=False).cmd)
            await raw.send(BAD_ENVELOPE)
            await raw.send_multipart([b"two", b"frames"])
            async with asyncio.timeout(SAFETY_S):
                bad = await server.recv()
                two = await server.recv()
            assert bad.peer == b"raw-dealer" and bad.message is None and isinstance(bad.error, CodecError)
            assert two.message is None and two.error is not None and two.error.field == "frames"
            assert server.stats.decode_errors == 2
            await server.send_to(bad.peer, Message("reply", {"ok": False, "error": bad.error.to_wire()}))
            async with asyncio.timeout(SAFETY_S):
                answer = await raw.recv()
            assert b"codec" in answer
        finally:
            raw.close()


async def test_serial_loop_echoes_through_the_whole_stack() -> None:
    """serial+loop:// is single-ended: what the link sends comes back to its own recv (pyserial loop://)."""
    async with await connect("serial+loop://?hwm=64") as link:
        for seq in range(1, 6):
            await link.send(request(seq, blob=bytes(range(256)) * 8))
        async with asyncio.timeout(SAFETY_S):
            got = [await link.recv() for _ in range(5)]
        assert [m.seq for m in got] == [1, 2, 3, 4, 5]
        assert got[0].payload["blob"] == bytes(range(256)) * 8
        assert link.stats.bad_frames == 0 and link.stats.rx == 5

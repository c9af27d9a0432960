"""ZeroMQ specifics: endpoints from one URL, loopback-only unless CURVE, slow subscribers, restarts on both sides."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import zmq

from emulator.errors import (
    InvalidTransportURL,
    TransportBrokenError,
    TransportClosedError,
    TransportUnavailableError,
)
from emulator.protocol import Message, encode_message
from emulator.transports import connect, listen, parse_transport_url
from emulator.transports.zmq import _Endpoints, endpoints

SAFETY_S = 5.0  #: wall-clock safety net for one wait
SUBPROCESS_SAFETY_S = 30.0  #: a fresh interpreter importing pyzmq and msgpack on a loaded CI machine
ROOT = Path(__file__).resolve().parents[2]


def ends(url: str, server: bool = True) -> tuple[str, str]:
    e = _Endpoints(parse_transport_url(url), server=server)
    return e.pub, e.cmd


def test_one_url_names_two_endpoints() -> None:
    assert ends("zmq+tcp://127.0.0.1:5550") == ("tcp://127.0.0.1:5550", "tcp://127.0.0.1:5551")
    assert ends("zmq+tcp://127.0.0.1:5550?cmd_port=6000") == ("tcp://127.0.0.1:5550", "tcp://127.0.0.1:6000")
    assert ends("zmq+tcp://127.0.0.1:0") == ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    assert ends("zmq+tcp://[::1]:5550", server=False) == ("tcp://[::1]:5550", "tcp://[::1]:5551")
    assert ends("zmq+ipc:///run/flatsat/board") == ("ipc:///run/flatsat/board.pub", "ipc:///run/flatsat/board.cmd")
    assert ends("zmq+inproc://board") == ("inproc://board.pub", "inproc://board.cmd")


def test_connect_needs_real_ports() -> None:
    with pytest.raises(InvalidTransportURL, match="resolved URL"):
        ends("zmq+tcp://127.0.0.1:0", server=False)
    with pytest.raises(InvalidTransportURL, match="cmd_port"):
        ends("zmq+tcp://127.0.0.1:65535")


async def test_port_zero_resolves_both_ports_into_the_url() -> None:
    async with await listen("zmq+tcp://127.0.0.1:0?name=board") as server:
        host_port = server.url.location
        port = int(host_port.rsplit(":", 1)[1])
        assert port > 0 and server.url.options["cmd_port"] > 0
        assert str(server.url) == f"zmq+tcp://127.0.0.1:{port}?cmd_port={server.url.options['cmd_port']}&name=board"
        with pytest.raises(TransportUnavailableError, match="address in use"):
            await listen(server.url)


def q(key: bytes) -> str:
    return quote(key.decode(), safe="")


async def test_non_loopback_listen_requires_curve_keys_and_an_allow_list() -> None:
    with pytest.raises(InvalidTransportURL, match="not a loopback address") as err:
        await listen("zmq+tcp://0.0.0.0:0")
    assert "curve_secret" in str(err.value) and "curve_clients" in str(err.value)
    _public, secret = zmq.curve_keypair()
    with pytest.raises(InvalidTransportURL, match="curve_clients=") as err:
        await listen(f"zmq+tcp://0.0.0.0:0?curve_secret={q(secret)}")
    assert err.value.field == "curve_clients" and "curve_clients=*" in str(err.value)
    client_public, _ = zmq.curve_keypair()
    async with await listen(f"zmq+tcp://0.0.0.0:0?curve_secret={q(secret)}&curve_clients={q(client_public)}") \
            as server:
        assert server.url.location.startswith("0.0.0.0:")


async def test_curve_lets_in_listed_clients_only_and_counts_the_rest() -> None:
    public, secret = zmq.curve_keypair()
    good_public, good_secret = zmq.curve_keypair()
    bad_public, bad_secret = zmq.curve_keypair()
    url = f"zmq+tcp://127.0.0.1:0?curve_secret={q(secret)}&curve_clients={q(good_public)}"
    async with await listen(url) as server:
        base = parse_transport_url(str(server.url)).replace(curve_secret=None, curve_clients=None,
                                                            curve_server=public.decode())
        async with await connect(base.replace(curve_secret=good_secret.decode())) as client:
            await client.send(Message("ping", {}, seq=3))
            async with asyncio.timeout(SAFETY_S):
                inc = await server.recv()
            assert inc.message is not None and inc.message.seq == 3
        with pytest.raises(TransportUnavailableError, match="allow-list") as err:
            await connect(base.replace(curve_secret=bad_secret.decode(), connect_timeout_s=3))
        assert bad_public.decode() in str(err.value)  # the operator is told which key to add
        assert server.stats.drops.get("unauthorized", 0) >= 1
        with pytest.raises(TransportUnavailableError, match="allow-list"):  # an anonymous key pair: unlisted too
            await connect(base.replace(connect_timeout_s=3))


async def test_a_wrong_server_key_is_named_with_its_fingerprint() -> None:
    from emulator.transports.zmq import key_fingerprint

    public, secret = zmq.curve_keypair()
    async with await listen(f"zmq+tcp://127.0.0.1:0?curve_secret={q(secret)}&curve_clients=*") as server:
        assert server.curve_public == public
        assert server.server_key is not None and key_fingerprint(public) in server.server_key  # flatsat run prints it
        base = parse_transport_url(str(server.url)).replace(curve_secret=None, curve_clients=None)
        async with await connect(base.replace(curve_server=public.decode())) as client:  # '*': any client key
            assert client.stats.is_up
        wrong, _ = zmq.curve_keypair()
        with pytest.raises(TransportUnavailableError, match="wrong server key") as err:
            await connect(base.replace(curve_server=wrong.decode(), connect_timeout_s=0.3))
    assert key_fingerprint(wrong) in str(err.value) and key_fingerprint(public) != key_fingerprint(wrong)


async def test_curve_keys_can_come_from_certificate_files(short_tmp: Path) -> None:
    import zmq.auth

    for sub in ("server", "client", "clients"):
        (short_tmp / sub).mkdir()
    public_file, secret_file = zmq.auth.create_certificates(short_tmp / "server", "server")
    clients = short_tmp / "clients"
    _, client_secret_file = zmq.auth.create_certificates(short_tmp / "client", "board")
    zmq.auth.create_certificates(clients, "other")
    (clients / "board.key").write_bytes((short_tmp / "client" / "board.key").read_bytes())
    async with await listen(f"zmq+tcp://127.0.0.1:0?curve_secret={secret_file}&curve_public={public_file}"
                            f"&curve_clients={clients}") as server:
        client_url = parse_transport_url(str(server.url)).replace(
            curve_public=None, curve_clients=None, curve_secret=str(client_secret_file), curve_server=str(public_file))
        async with await connect(client_url) as client:
            assert client.stats.is_up
    with pytest.raises(InvalidTransportURL, match="neither a 40-character z85 key nor a readable key file"):
        await listen("zmq+tcp://127.0.0.1:0?curve_secret=/nonexistent/key")
    with pytest.raises(InvalidTransportURL, match="curve_clients"):
        await listen(f"zmq+tcp://127.0.0.1:0?curve_secret={secret_file}&curve_clients={short_tmp / 'nothing'}")


async def test_connect_to_nothing_times_out_with_a_clear_error() -> None:
    import socket

    # a port held by a plain socket that never speaks ZeroMQ: nothing else on the machine can take it meanwhile
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        dead_url = f"zmq+tcp://127.0.0.1:{port}?cmd_port={port}&connect_timeout_s=0.2"
        with pytest.raises(TransportUnavailableError, match="no flatsat server answered"):
            await connect(dead_url)


async def test_stuck_subscriber_is_muted_and_the_others_get_everything() -> None:
    async with await listen("zmq+inproc://slow-peer?hwm=5&drop=peer") as server, \
            await connect(server.url) as stuck, await connect(server.url) as fast:  # stuck never reads
        async with asyncio.timeout(SAFETY_S):
            got = []
            for seq in range(1, 101):
                await server.publish(Message("eps.telemetry", {"n": seq}, seq=seq))
                got.append((await fast.recv()).seq)
        assert got == list(range(1, 101))
        assert server.stats.dropped_tx == 0  # libzmq drops for the stuck peer only and does not report it
        assert stuck.stats.rx == 0


async def test_drop_all_counts_what_a_full_subscriber_costs() -> None:
    async with await listen("zmq+inproc://slow-all?hwm=5&drop=all") as server, \
            await connect(server.url) as client:
        for seq in range(1, 101):  # nobody reads meanwhile: the publisher must not block
            await server.publish(Message("eps.telemetry", {"n": seq}, seq=seq))
        # the inproc pipe holds SNDHWM + RCVHWM = 10 messages; every publish after that is dropped and counted
        assert server.stats.tx + server.stats.dropped_tx == 100
        assert server.stats.dropped_tx >= 80
        async with asyncio.timeout(SAFETY_S):
            got = [(await client.recv()).seq for _ in range(server.stats.tx)]
        assert got == list(range(1, server.stats.tx + 1))


async def test_publish_many_counts_like_one_at_a_time_when_a_subscriber_is_full() -> None:
    """A batch's telemetry in one call (publish_many): what fits goes, in order, and the rest is counted."""
    async with await listen("zmq+inproc://slow-many?hwm=5&drop=all") as server, \
            await connect(server.url) as client:
        server.publish_many([encode_message(Message("eps.telemetry", {"n": seq}, seq=seq)) for seq in range(1, 101)])
        assert server.stats.tx + server.stats.dropped_tx == 100
        assert server.stats.dropped_tx >= 80
        async with asyncio.timeout(SAFETY_S):
            got = [(await client.recv()).seq for _ in range(server.stats.tx)]
        assert got == list(range(1, server.stats.tx + 1))
    with pytest.raises(TransportClosedError):
        server.publish_many([b"x"])


async def test_reply_to_an_unknown_peer_is_broken() -> None:
    async with await listen("zmq+inproc://unknown-peer") as server:
        with pytest.raises(TransportBrokenError, match="not connected"):
            await server.send_to(b"nobody", Message("reply", {}))


async def test_client_survives_an_emulator_restart_at_the_same_address() -> None:
    first = await listen("zmq+tcp://127.0.0.1:0")
    url = first.url
    client = await connect(url)
    try:
        assert client.stats.is_up
        await first.aclose()
        async with asyncio.timeout(SAFETY_S):
            with pytest.raises(TransportBrokenError, match="went away"):
                await client.recv()
        assert not client.stats.is_up
        async with await listen(url) as second:
            async with asyncio.timeout(SAFETY_S):
                await client.wait_until_up()
            assert client.stats.reconnects == 1
            async with asyncio.timeout(SAFETY_S):  # up is the connection; its subscription reaches the XPUB after
                while not second.wants("eps.telemetry"):
                    await asyncio.sleep(0.005)
            await second.publish(Message("eps.telemetry", {"n": 1}, seq=1))
            await client.send(Message("ping", {}, seq=9))
            async with asyncio.timeout(SAFETY_S):
                assert (await client.recv()).topic == "eps.telemetry"
                inc = await second.recv()
            assert inc.message is not None and inc.message.seq == 9
    finally:
        await client.aclose()


BOARD_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, sys.argv[2])
from emulator.protocol import Message, encode_message
from emulator.transports import connect

async def main():
    async with await connect(sys.argv[1]) as link:
        await link.send(Message("board.hello", {"pid": os.getpid()}, seq=1, src="board"))
        async with asyncio.timeout(20):
            while (msg := await link.recv()).topic != "reply":
                pass
        print(msg.payload["id"], msg.payload["n"])

asyncio.run(main())
"""


async def test_a_board_process_that_restarts_is_served_without_restarting_the_emulator() -> None:
    async with await listen("zmq+tcp://127.0.0.1:0") as server:
        peers = []

        async def serve() -> None:
            async for inc in server:
                assert inc.message is not None
                peers.append(inc.peer)
                await server.send_to(inc.peer, Message("reply", {"id": inc.message.seq, "n": len(peers)}))

        serving = asyncio.create_task(serve(), name="test-serve")
        try:
            for n in (1, 2):  # the same board, started twice
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", BOARD_SCRIPT, str(server.url), str(ROOT),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                async with asyncio.timeout(SUBPROCESS_SAFETY_S):
                    out, err = await proc.communicate()
                assert proc.returncode == 0, err.decode()
                assert out.decode().split() == ["1", str(n)]
        finally:
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
        assert len(peers) == 2 and peers[0] != peers[1]


@pytest.mark.skipif(not hasattr(__import__("os"), "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_io_threads_do_not_preempt_the_simulation() -> None:
    """libzmq's threads of a fresh Context are moved to SCHED_BATCH (no wake-up preemption of the loop's thread);
    the thread that called keeps its class."""
    import os

    from emulator.transports.zmq import batch_io_threads

    def io_threads() -> dict[int, int]:
        found = {}
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                if Path(f"/proc/self/task/{tid}/comm").read_text().startswith("ZMQbg/IO/"):
                    found[int(tid)] = os.sched_getscheduler(int(tid))
        return found

    before = io_threads()
    ctx = zmq.Context()
    try:
        assert batch_io_threads(ctx) >= 1
        new: dict[int, int] = {}
        for _ in range(1000):  # libzmq's threads name themselves a moment after they start
            new = {tid: cls for tid, cls in io_threads().items() if tid not in before}
            if len(new) >= 2:  # the I/O thread and the reaper
                break
            time.sleep(0.001)
        assert new and set(new.values()) == {os.SCHED_BATCH}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        ctx.term()


async def test_a_curve_link_opened_right_after_another_closed_gets_the_zap_endpoint() -> None:
    """The ZAP endpoint is released as a Context's last CURVE link closes, not a moment later, and the next
    authenticator's pipe has a name of its own (before, about one listen in twelve right after a close failed with
    "Address already in use", and a half-started authenticator then hung the interpreter's exit)."""
    _public, secret = zmq.curve_keypair()
    url = f"zmq+tcp://127.0.0.1:0?curve_secret={q(secret)}&curve_clients=*"
    for _ in range(300):
        server = await listen(url)
        await server.aclose()


async def test_a_request_is_not_sent_to_whatever_took_the_servers_port() -> None:
    """The server went away and something else completed a connection at its request port before its welcome came
    back (another program's ZeroMQ socket; or, rarely, the client's own reconnection: TCP can connect a local port
    to itself): the link is not up, so a send still fails and nothing goes out."""
    first = await listen("zmq+tcp://127.0.0.1:0")
    _, request_end = endpoints(parse_transport_url(str(first.url)))
    client = await connect(first.url)
    squatter = zmq.Context.instance().socket(zmq.ROUTER)
    monitor = squatter.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        await first.aclose()
        async with asyncio.timeout(SAFETY_S):
            with pytest.raises(TransportBrokenError, match="went away"):
                await client.recv()
        squatter.bind(request_end)
        assert monitor.poll(SAFETY_S * 1000), "the client's DEALER never reconnected to the port"
        with pytest.raises(TransportBrokenError, match="not connected"):
            await client.send(Message("clock.pause", {}, seq=1))
        assert not squatter.poll(300), "a request reached the socket that took the port"
    finally:
        await client.aclose()
        squatter.disable_monitor()
        monitor.close(linger=0)
        squatter.close(linger=0)


async def test_a_request_is_never_kept_for_the_next_server_at_the_address() -> None:
    """A user's console: the emulator was killed, the page's Pause timed out, and an emulator started again at the
    same URL began paused (ZeroMQ had kept the request for the reconnection). Requests now go only over a live
    connection: while the server is away a send fails at once, and the next server gets only what is sent to
    it."""
    first = await listen("zmq+tcp://127.0.0.1:0")
    url = first.url
    client = await connect(url)
    try:
        await first.aclose()
        async with asyncio.timeout(SAFETY_S):
            with pytest.raises(TransportBrokenError, match="went away"):
                await client.recv()
        with pytest.raises(TransportBrokenError, match="not connected"):
            await client.send(Message("clock.pause", {}, seq=1))
        async with await listen(url) as second:
            async with asyncio.timeout(SAFETY_S):
                await client.wait_until_up()
            await client.send(Message("ping", {}, seq=2))  # up: the request connection is complete too
            async with asyncio.timeout(SAFETY_S):
                inc = await second.recv()
            assert inc.message is not None and (inc.message.topic, inc.message.seq) == ("ping", 2)
            with pytest.raises(TimeoutError):  # and nothing else: the old pause is gone
                async with asyncio.timeout(0.3):
                    await second.recv()
    finally:
        await client.aclose()

"""Serial specifics: unplug and replug, line noise, the link budget, pyserial handlers (socket://)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from emulator.errors import TransportBrokenError, TransportUnavailableError
from emulator.protocol import Message, encode_frame, encode_message
from emulator.transports import connect, listen, parse_transport_url
from emulator.transports.serial import bits_per_char

SAFETY_S = 5.0  #: wall-clock safety net for one wait
OPTS = "baud=921600&reopen_s=0.02"


def test_budget_follows_the_character_format() -> None:
    assert bits_per_char(parse_transport_url("serial:///dev/x")) == 10  # 8N1
    assert bits_per_char(parse_transport_url("serial:///dev/x?parity=E&stopbits=2")) == 12  # 8E2
    assert bits_per_char(parse_transport_url("serial:///dev/x?bytesize=7&stopbits=1.5")) == 9.5


async def test_budget_is_exposed_for_the_runtime(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}?baud=921600") as server:
        assert server.budget_bytes_s == 92160.0  # 921600 bit/s / 10 bit per byte (8N1)


async def test_server_unplug_and_replug_recovers_without_raising_into_publish(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}") as server, \
            await connect(f"serial://{null_modem.b.link}?{OPTS}") as client:
        pending = asyncio.create_task(server.recv())
        null_modem.unplug(null_modem.a)
        async with asyncio.timeout(SAFETY_S):
            await server.wait_until_up(False)
        await server.publish(Message("eps.telemetry", {}))  # dropped and counted, never raised
        assert server.stats.dropped_tx == 1
        with pytest.raises(TransportBrokenError, match="device is gone"):
            await server.send_to(b"serial", Message("reply", {}))
        assert not pending.done()  # recv just waits
        null_modem.plug(null_modem.a)
        async with asyncio.timeout(SAFETY_S):
            await server.wait_until_up(True)
        assert server.stats.reconnects == 1
        await client.send(Message("ping", {}, seq=4))
        async with asyncio.timeout(SAFETY_S):
            inc = await pending
        assert inc.message is not None and inc.message.seq == 4
        await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="e"))
        async with asyncio.timeout(SAFETY_S):
            assert (await client.recv()).payload["id"] == 4


async def test_client_unplug_and_replug_recovers(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}") as server, \
            await connect(f"serial://{null_modem.b.link}?{OPTS}") as client:
        null_modem.unplug(null_modem.b)
        async with asyncio.timeout(SAFETY_S):
            await client.wait_until_up(False)
        with pytest.raises(TransportBrokenError):
            await client.send(Message("ping", {}, seq=1))
        null_modem.plug(null_modem.b)
        async with asyncio.timeout(SAFETY_S):
            await client.wait_until_up(True)
        await client.send(Message("ping", {}, seq=2))
        async with asyncio.timeout(SAFETY_S):
            inc = await server.recv()
        assert inc.message is not None and inc.message.seq == 2
        assert server.stats.is_up and server.stats.reconnects == 0


async def test_line_noise_is_counted_and_never_delivered(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}") as server:
        good = encode_frame(encode_message(Message("ping", {"x": 1}, seq=1)))
        corrupted = bytearray(good)
        corrupted[len(corrupted) // 2] ^= 0x40  # one flipped bit: the CRC catches it
        noise = b"\x13\x37\xff\x00"  # a stretch of garbage ending at a delimiter
        null_modem.inject(null_modem.a, noise + bytes(corrupted) + good)
        async with asyncio.timeout(SAFETY_S):
            inc = await server.recv()
        assert inc.message is not None and inc.message.seq == 1  # the first good frame after the damage
        assert server.stats.bad_frames == 2
        assert server.stats.decode_errors == 0 and server.stats.rx == 1


async def test_a_run_of_garbage_pauses_reading_and_the_next_good_frame_still_arrives(null_modem: Any) -> None:
    """16 bad frames in a row and nothing good: the link stops reading for a few ms (a peer flooding garbage
    waits on the kernel's buffer instead of taking the clock's CPU); nothing is lost, every bad frame counted."""
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}") as server:
        good = encode_frame(encode_message(Message("ping", {"x": 1}, seq=7)))
        null_modem.inject(null_modem.a, b"\x13\x37\xff\x00" * 40 + good)
        async with asyncio.timeout(SAFETY_S):
            inc = await server.recv()
        assert inc.message is not None and inc.message.seq == 7
        assert server.stats.bad_frames == 40 and server.stats.rx == 1
        assert server.port.garbage_pauses >= 1


async def test_over_budget_telemetry_is_dropped_but_replies_never(null_modem: Any) -> None:
    # 9600 baud paced: ~960 B/s, so the frames below queue up behind the line rate
    opts = "baud=9600&pace=1&hwm=2"
    async with await listen(f"serial://{null_modem.a.link}?{opts}") as server, \
            await connect(f"serial://{null_modem.b.link}?{opts}") as client:
        for seq in range(1, 11):
            await server.publish(Message("eps.telemetry", {"n": seq}, seq=seq))
        for seq in range(1, 6):
            await server.send_to(b"serial", Message("reply", {"id": seq}, seq=100 + seq))
        # only hwm=2 telemetry frames may wait: the oldest make room for the newest (frame 1 may already be on
        # the line, then it is not in the queue and seven of 2..10 were dropped)
        async with asyncio.timeout(SAFETY_S):
            first = await client.recv()
            on_line = first.topic == "eps.telemetry"
            got = [first] + [await client.recv() for _ in range(6 + on_line)]
        assert server.stats.dropped_tx == 8 - on_line
        # replies go before queued telemetry, in order; the two newest telemetry frames follow
        assert [(m.topic, m.seq) for m in got] == [("eps.telemetry", 1)] * on_line + [
            ("reply", 101), ("reply", 102), ("reply", 103), ("reply", 104), ("reply", 105), ("eps.telemetry", 9),
            ("eps.telemetry", 10)]


async def test_events_queue_with_telemetry_in_order_and_are_never_dropped_for_budget(null_modem: Any) -> None:
    """Regression: events went through the telemetry queue's hwm, so a lockstep step that published more telemetry
    than hwm at once lost the sim.waiting behind it, and a serial board learnt that the clock waited only by pinging
    after its request time-out (5 s per turn for the C stub)."""
    opts = "baud=9600&pace=1&hwm=2"
    async with await listen(f"serial://{null_modem.a.link}?{opts}") as server, \
            await connect(f"serial://{null_modem.b.link}?{opts}") as client:
        await server.publish(Message("accel.power", {"on": True}, seq=1), event=True)
        for seq in (2, 3, 4):
            await server.publish(Message("eps.telemetry", {"n": seq}, seq=seq))
        await server.publish(Message("accel.power", {"on": False}, seq=5), event=True)
        await server.publish(Message("eps.telemetry", {"n": 6}, seq=6))
        await server.publish(Message("sim.waiting", {"t_ns": 0}, seq=7), event=True)
        # events do not count against hwm=2 and are never dropped; beyond two queued telemetry frames the
        # oldest give way (the first event may be on the line already, or not: it is sent either way)
        assert server.stats.dropped_tx == 2
        async with asyncio.timeout(SAFETY_S):
            got = [await client.recv() for _ in range(5)]
        assert [(m.topic, m.seq) for m in got] == [("accel.power", 1), ("eps.telemetry", 4), ("accel.power", 5),
                                                  ("eps.telemetry", 6), ("sim.waiting", 7)]
        # the queue drained: telemetry fits again
        await server.publish(Message("eps.telemetry", {"n": 8}, seq=8))
        async with asyncio.timeout(SAFETY_S):
            assert (await client.recv()).seq == 8
        assert server.stats.dropped_tx == 2


async def test_a_missing_device_is_unavailable_and_lists_the_ports() -> None:
    with pytest.raises(TransportUnavailableError, match="serial ports on this machine"):
        await listen("serial:///dev/ttyNOPE0?baud=115200")


async def test_a_locked_device_cannot_be_opened_twice(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}"):
        with pytest.raises(TransportUnavailableError):
            await listen(f"serial://{null_modem.a.link}")


async def test_a_serial_line_has_one_peer(null_modem: Any) -> None:
    async with await listen(f"serial://{null_modem.a.link}") as server:
        with pytest.raises(TransportBrokenError, match="one peer"):
            await server.send_to(b"someone-else", Message("reply", {}))


async def test_serial_over_a_tcp_bridge_and_its_disconnection() -> None:
    """serial+socket:// (ser2net-style bridge): an echoing bridge, then the bridge hangs up."""
    writers: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)

    bridge = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = bridge.sockets[0].getsockname()[1]
    try:
        async with await connect(f"serial+socket://127.0.0.1:{port}?reopen_s=0.02") as link:
            await link.send(Message("ping", {"blob": b"\x00" * 1000}, seq=1))
            async with asyncio.timeout(SAFETY_S):
                echoed = await link.recv()
            assert echoed.seq == 1 and echoed.payload["blob"] == b"\x00" * 1000
            writers[0].close()  # the bridge drops the connection: EOF, the link goes down and reconnects
            async with asyncio.timeout(SAFETY_S):
                await link.wait_until_up(False)
                await link.wait_until_up(True)
            assert link.stats.reconnects == 1
    finally:
        bridge.close()
        for writer in writers:
            writer.close()
        await bridge.wait_closed()

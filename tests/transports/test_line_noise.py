"""A serial link at a bit error rate of 1e-4: it keeps working, bad frames are counted, none is delivered corrupted."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any

import numpy as np
import pytest

from emulator.protocol import Message
from emulator.transports import connect, listen

BER = 1e-4
N_FRAMES = 2000
SAFETY_S = 30.0  #: wall-clock guard only
OPTS = "baud=921600"


def bit_flipper(ber: float, seed: int) -> Any:
    rng = np.random.default_rng(seed)

    def noise(data: bytes) -> bytes:
        n_bits = 8 * len(data)
        flips = rng.binomial(n_bits, ber)
        if not flips:
            return data
        out = bytearray(data)
        for bit in rng.choice(n_bits, size=flips, replace=False):
            out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)

    return noise


def payload(seq: int) -> dict[str, Any]:
    body = f"frame {seq} " + "x" * 60
    return {"body": body, "crc": zlib.crc32(body.encode())}


def intact(msg: Message) -> bool:
    return msg.payload.get("crc") == zlib.crc32(msg.payload.get("body", "").encode())


async def pump(send: Any, recv: Any, stats: Any) -> tuple[int, int]:
    """Send N frames then 'end' until one arrives; return (intact deliveries, corrupted deliveries)."""
    for seq in range(1, N_FRAMES + 1):
        await send(Message("test.frame", payload(seq), seq=seq))
    good = bad = 0
    async with asyncio.timeout(SAFETY_S):
        ender = asyncio.create_task(_send_end(send))
        try:
            while True:
                msg = await recv()
                if msg.topic == "test.end":
                    break
                if intact(msg):
                    good += 1
                else:
                    bad += 1
        finally:
            ender.cancel()
    return good, bad


async def _send_end(send: Any) -> None:
    seq = 10**6
    while True:  # each 'end' frame itself may be hit by noise: repeat until one gets through
        seq += 1
        await send(Message("test.end", {}, seq=seq))
        await asyncio.sleep(0.05)


async def test_both_directions_survive_a_ber_of_1e_4(null_modem: Any) -> None:
    null_modem.noise = bit_flipper(BER, seed=7)
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}") as server, \
            await connect(f"serial://{null_modem.b.link}?{OPTS}") as client:

        async def server_recv() -> Message:
            while True:
                inc = await server.recv()
                if inc.message is not None:
                    return inc.message

        # board -> emulator
        good, corrupted = await pump(client.send, server_recv, server.stats)
        assert corrupted == 0, "a corrupted frame was delivered"
        frame_bits = 8 * 120  # ~110-byte frames: P(hit) ~ 9 % at BER 1e-4
        assert server.stats.bad_frames > 0
        assert good >= 0.8 * N_FRAMES and good + server.stats.bad_frames >= 0.95 * N_FRAMES
        expected_bad = N_FRAMES * (1 - (1 - BER) ** frame_bits)
        assert 0.4 * expected_bad < server.stats.bad_frames < 2.5 * expected_bad
        assert server.stats.decode_errors == 0

        # emulator -> board (replies are never dropped for the link budget, so every frame goes on the wire)
        async def server_send(msg: Message) -> None:
            await server.send_to(b"serial", msg)

        good, corrupted = await pump(server_send, client.recv, client.stats)
        assert corrupted == 0
        assert good >= 0.8 * N_FRAMES and client.stats.bad_frames > 0


# -- injected noise: the ber= option ----------------------------------------------------------------------------
def test_injected_bit_errors_do_not_depend_on_how_the_stream_is_cut() -> None:
    from emulator.transports.noise import BitErrors

    rng = np.random.default_rng(3)
    stream = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    whole = BitErrors(1e-3, "s").apply(stream)
    cut = BitErrors(1e-3, "s")
    pieces, pos = [], 0
    for size in rng.integers(1, 700, 2000):
        pieces.append(cut.apply(stream[pos:pos + size]))
        pos += size
    pieces.append(cut.apply(stream[pos:]))
    assert b"".join(pieces) == whole
    flipped = sum((a ^ b).bit_count() for a, b in zip(stream, whole, strict=True))
    assert flipped == cut.flipped
    # 1.6 M bits at 1e-3: 1600 expected, sd 40
    assert 1400 < flipped < 1800
    assert BitErrors(1e-3, "other").apply(stream) != whole
    assert BitErrors(0.0, "s").apply(stream) is stream


async def test_the_ber_option_damages_both_directions_of_a_clean_line(null_modem: Any) -> None:
    """``ber=`` on one end's URL makes the line noisy both ways: that end's sent frames and received bytes."""
    async with await listen(f"serial://{null_modem.a.link}?{OPTS}&ber={BER}&ber_seed=5") as server, \
            await connect(f"serial://{null_modem.b.link}?{OPTS}") as client:

        async def server_recv() -> Message:
            while True:
                inc = await server.recv()
                if inc.message is not None:
                    return inc.message

        async def server_send(msg: Message) -> None:
            await server.send_to(b"serial", msg)

        good, corrupted = await pump(client.send, server_recv, server.stats)
        assert corrupted == 0 and server.stats.bad_frames > 0.02 * N_FRAMES and good >= 0.8 * N_FRAMES
        good, corrupted = await pump(server_send, client.recv, client.stats)
        assert corrupted == 0 and client.stats.bad_frames > 0.02 * N_FRAMES and good >= 0.8 * N_FRAMES
        assert server.port.noise_tx is not None and server.port.noise_tx.flipped > 0
        assert client.port.noise_tx is None  # the clean end injects nothing


async def test_an_inherited_descriptor_is_a_serial_link() -> None:
    """``serial+fd://N``: a pty master handed over by a parent (the HIL runner's ``{fd}``), used as it is."""
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async with await listen(f"serial://{os.ttyname(slave)}?baud=921600") as server, \
                await connect(f"serial+fd://{master}?baud=921600") as client:
            await client.send(Message("ping", {}, seq=7))
            async with asyncio.timeout(SAFETY_S):
                inc = await server.recv()
            assert inc.message is not None and inc.message.seq == 7
            await server.send_to(inc.peer, inc.message.reply(ok=True, t_ns=0, src="e"))
            async with asyncio.timeout(SAFETY_S):
                assert (await client.recv()).payload["id"] == 7
        # the link owned the descriptor: closing it closed the master
        with pytest.raises(OSError):
            os.fstat(master)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def test_a_descriptor_that_is_not_open_is_unavailable() -> None:
    from emulator.errors import TransportUnavailableError

    with pytest.raises(TransportUnavailableError, match="serial\\+fd://999"):
        await connect("serial+fd://999")

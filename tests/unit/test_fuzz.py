"""Fuzzing the wire core: >100,000 hostile inputs through decode_message and FrameDecoder.feed.

A seeded generator loop rather than hypothesis: 100k hypothesis examples would take minutes, and
a fixed seed makes every run the same run (a failure prints the input to reproduce it).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgpack
import pytest

from emulator.errors import CodecError, FramingError
from emulator.protocol import Message, decode_message, encode_message
from emulator.protocol.framing import FrameDecoder, decode_frame, encode_frame

SEED = 0x5A7E11  #: fixed: the same inputs every run
N_DECODE_INPUTS = 120_000  #: inputs through decode_message
N_STREAM_UNITS = 100_000  #: frames / garbage / corrupted frames in the framing stream
SMALL_FRAME_LIMIT = 256  #: a second decoder with a small limit exercises the oversized path
#: CRC-16 passes a damaged frame by chance with probability ~2**-16; allow 8x that plus slack
COLLISION_RATE_BOUND = 8 / 65536
COLLISION_SLACK = 3
ENVELOPE_KEYS = ["v", "topic", "seq", "t_ns", "src", "payload"]
#: msgpack type bytes that change how what follows is read (nil, never-used, headers with long
#: lengths, fixint/fixmap/fixarray/fixstr edges)
MSGPACK_TYPE_BYTES = [0xC0, 0xC1, 0xC4, 0xC6, 0xC7, 0xCA, 0xCF, 0xD3, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE,
                      0xDF, 0xFF, 0x00, 0x7F, 0x80, 0x90, 0xA0]


# -- generators ---------------------------------------------------------------------------------------------

def random_value(r: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value, sometimes of a type or range the envelope refuses."""
    kind = r.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return r.random() < 0.5
    if kind == 2:
        return r.randrange(-(1 << 63), 1 << 64)
    if kind == 3:
        return r.choice([0, 1, -1, 127, 128, 255, 256, 65535, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
                         -(1 << 63)])
    if kind == 4:
        return r.choice([0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1e300, r.random()])
    if kind == 5:
        return "".join(r.choice("ab.\u00e9\u4e2d_") for _ in range(r.choice([0, 1, 5, 40, 130])))
    if kind == 6:
        return r.randbytes(r.choice([0, 1, 3, 64]))
    if kind == 7:
        return r.choice(ENVELOPE_KEYS)
    if kind in (8, 9):
        return [random_value(r, depth + 1) for _ in range(r.randrange(4))]
    keys = ENVELOPE_KEYS if r.random() < 0.5 else ["x", "rail", "on", "bus_v"]
    return {r.choice(keys): random_value(r, depth + 1) for _ in range(r.randrange(5))}


def random_envelope(r: random.Random) -> dict[str, Any]:
    """A map shaped like an envelope, with some fields missing, extra or wrong."""
    env: dict[str, Any] = {"v": 1, "topic": "eps.telemetry", "seq": r.randrange(1 << 20),
                           "t_ns": r.randrange(1 << 50), "src": "emulator",
                           "payload": {"bus_v": 7.4, "on": True, "raw": b"\x00\x01", "list": [1, 2.5, None]}}
    for _ in range(r.randrange(3)):
        op = r.randrange(3)
        if op == 0 and env:
            del env[r.choice(list(env))]
        elif op == 1:
            env[r.choice([*ENVELOPE_KEYS, "extra"])] = random_value(r)
        else:
            env[r.choice(ENVELOPE_KEYS)] = random_value(r, depth=2)
    return env


def valid_pool(r: random.Random, n: int) -> list[bytes]:
    pool = []
    for i in range(n):
        payload = {f"k{j}": random_value(r, depth=2) for j in range(r.randrange(6))}
        msg = Message(f"topic.{i}", payload, seq=i, t_ns=r.randrange(1 << 62), src="board")
        pool.append(encode_message(msg))
    return pool


def mutate(r: random.Random, data: bytes) -> bytes:
    """Bit flips, truncation, insertion, deletion or overwrite with msgpack type bytes."""
    buf = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(5)
        if op == 0 and buf:
            buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
        elif op == 1 and buf:
            del buf[r.randrange(len(buf)):]
        elif op == 2:
            pos = r.randrange(len(buf) + 1)
            buf[pos:pos] = r.randbytes(r.randint(1, 8))
        elif op == 3 and buf:
            pos = r.randrange(len(buf))
            del buf[pos:pos + r.randint(1, 8)]
        elif buf:
            buf[r.randrange(len(buf))] = r.choice(MSGPACK_TYPE_BYTES)
    return bytes(buf)


def hostile_input(r: random.Random, i: int, pool: list[bytes]) -> bytes:
    kind = i % 10
    if kind < 4:  # random bytes, mostly short, sometimes long
        return r.randbytes(r.choice([0, 1, 2, 5, 17, 64, 300]) if kind else r.randrange(2000))
    if kind < 8:  # a valid envelope, mutated
        return mutate(r, r.choice(pool))
    return msgpack.packb(random_value(r) if kind == 8 else random_envelope(r), use_bin_type=True)


# -- decode_message ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_decode_message_raises_only_codec_error() -> None:
    r = random.Random(SEED)
    pool = valid_pool(r, 300)
    outcomes: Counter[str] = Counter()
    escaped: list[str] = []
    for i in range(N_DECODE_INPUTS):
        data = hostile_input(r, i, pool)
        try:
            msg = decode_message(data)
        except CodecError as exc:
            if exc.field is None:  # (an unknown envelope key may be "", and is then named "")
                escaped.append(f"CodecError without field for {data.hex()}")
            outcomes[f"refused:{exc.field}"] += 1
        except Exception as exc:  # noqa: BLE001 - the property under test: nothing else may escape
            escaped.append(f"{type(exc).__name__}: {exc} for input {data.hex()}")
        else:
            assert isinstance(msg, Message)
            outcomes["decoded"] += 1
    assert not escaped, f"{len(escaped)} inputs escaped as non-CodecError; first: {escaped[0][:500]}"
    assert sum(outcomes.values()) == N_DECODE_INPUTS
    # the inputs reach every check, not just the msgpack parser
    for key in ("decoded", "refused:bytes", "refused:envelope", "refused:v", "refused:topic", "refused:seq",
                "refused:t_ns", "refused:src", "refused:payload"):
        assert outcomes[key] > 0, f"fuzz never produced {key}: {outcomes}"


# -- FrameDecoder ------------------------------------------------------------------------------------

def build_stream(r: random.Random, pool: list[bytes]) -> tuple[bytes, set[bytes], set[bytes], int, int]:
    """The stream (ending in a delimiter), the messages sent intact, the messages of every frame (intact
    or damaged), the number of damaged units, and the number of intact frames that follow a delimiter
    (a receiver must deliver those)."""
    parts: list[bytes] = []
    good: set[bytes] = set()
    sent: set[bytes] = set()
    damaged = separated = 0
    for i in range(N_STREAM_UNITS):
        kind = r.randrange(10)
        if kind < 4:  # an intact frame: an envelope, random bytes, or a long message for the oversized path
            msg = r.choice(pool) if kind < 2 else r.randbytes(r.choice([1, 2, 40, SMALL_FRAME_LIMIT + 50]))
            good.add(msg)
            separated += not parts or parts[-1].endswith(b"\x00")
            parts.append(encode_frame(msg))
            continue
        damaged += 1
        if kind < 7:  # a frame with errors (may lose or gain delimiters)
            msg = r.choice(pool) if i % 2 else r.randbytes(r.randint(1, 80))
            sent.add(msg)
            frame = mutate(r, encode_frame(msg))
        elif kind == 7:  # a truncated frame
            frame = encode_frame(r.choice(pool))
            frame = frame[:r.randrange(1, len(frame) - 1)]
        elif kind == 8:  # line noise, zeros included
            frame = r.randbytes(r.choice([1, 3, 30, 700]))
        else:  # a random msgpack object, framed then damaged
            msg = msgpack.packb(random_value(r), use_bin_type=True)
            sent.add(msg)
            frame = mutate(r, encode_frame(msg))
        parts.append(frame)
        if r.random() < 0.8:  # a delimiter usually follows (else the next frame is lost with it)
            parts.append(b"\x00" * r.randint(1, 2))
    parts.append(b"\x00")
    sent |= good
    return b"".join(parts), good, sent, damaged, separated


def strict_decode(chunk: bytes, limit: int) -> bytes | None:
    if len(chunk) > limit:
        return None
    try:
        return decode_frame(chunk)
    except FramingError:
        return None


@pytest.mark.slow
def test_frame_decoder_never_raises_and_counts_add_up() -> None:
    r = random.Random(SEED + 1)
    pool = valid_pool(r, 300)
    stream, good, sent, damaged, separated = build_stream(r, pool)
    chunks = [c for c in stream[:-1].split(b"\x00") if c]  # the frames the receiver sees
    decoders = [FrameDecoder(), FrameDecoder(max_frame_bytes=SMALL_FRAME_LIMIT)]
    delivered: list[list[bytes]] = [[], []]
    pos = 0
    while pos < len(stream):  # random chunking, from single bytes to 8 KiB reads
        n = r.choice([1, 2, 7, 64, 255, 1024, 8192])
        for decoder, received in zip(decoders, delivered, strict=True):
            received.extend(decoder.feed(stream[pos:pos + n]))  # feed must never raise
        pos += n

    for decoder, out in zip(decoders, delivered, strict=True):
        st = decoder.stats
        assert st.frames + st.bad_frames == len(chunks)  # one count per delimited, non-empty frame
        assert st.frames == len(out)
        assert decoder.buffered == 0
        # delivered exactly what the strict per-frame decoder accepts: stream logic loses nothing
        assert out == [m for c in chunks if (m := strict_decode(c, decoder.max_frame_bytes)) is not None]
        # a damage that spared a frame's own bytes (say, bytes inserted after its delimiter) leaves it
        # deliverable; anything else delivered is a damaged frame that passed the CRC by chance
        wrong = [m for m in out if m not in sent]
        assert len(wrong) <= COLLISION_RATE_BOUND * damaged + COLLISION_SLACK, (len(wrong), damaged)
    small = decoders[1].stats
    assert small.oversized > 0 and small.bad_cobs > 0 and small.bad_crc > 0 and small.too_short > 0

    # every intact frame that followed a delimiter arrived (resynchronisation after each damaged unit)
    assert sum(m in good for m in delivered[0]) >= separated > N_STREAM_UNITS // 4

    # everything a link delivers goes on to decode_message: only CodecError may come out
    for data in delivered[0]:
        try:
            decode_message(data)
        except CodecError:
            pass


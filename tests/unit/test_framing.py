"""COBS + CRC-16 framing: any chunking round-trips; damage is dropped and counted; resync; bounded memory.

The decoder is checked against an independent reference written here from the specifications
(COBS: Cheshire & Baker, IEEE/ACM Trans. Networking 7(2), 1999; CRC-16/GENIBUS: poly 0x1021,
init 0xFFFF, no reflection, final XOR 0xFFFF, check value 0xD64E for "123456789", per Greg Cook's
CRC RevEng catalogue, https://reveng.sourceforge.io/crc-catalogue/16.htm).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from emulator.errors import FramingError
from emulator.protocol import MAX_MESSAGE_BYTES, Message, decode_message, encode_message
from emulator.protocol.framing import FrameDecoder, crc16, decode_frame, encode_frame, frame_overhead

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
CRC16_GENIBUS_CHECK = 0xD64E  #: CRC RevEng catalogue check value of CRC-16/GENIBUS
CRC16_GENIBUS_RESIDUE = 0x1D0F  #: its residue: the register after M || CRC(M), before the final XOR

# -- an independent reference -------------------------------------------------------------------------


def ref_crc16_register(data: bytes) -> int:
    """The CRC register after ``data`` (poly 0x1021, init 0xFFFF, MSB first), bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def ref_crc16(data: bytes) -> int:
    """CRC-16/GENIBUS."""
    return ref_crc16_register(data) ^ 0xFFFF


def ref_cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out += b"\xff" + block
                block.clear()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def ref_cobs_decode(data: bytes) -> bytes | None:
    """Decoded body, or None if ``data`` is not a valid COBS encoding."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        block = data[i + 1:i + code]
        if code == 0 or len(block) != code - 1 or 0 in block:
            return None
        out += block
        i += code
        if code < 0xFF and i < len(data):  # a group shorter than 254 bytes ended at a zero
            out.append(0)
    return bytes(out)


def ref_unframe(chunk: bytes) -> bytes | None:
    """The message a delimited chunk carries, or None if it must be dropped."""
    body = ref_cobs_decode(chunk)
    if body is None or len(body) < 3:
        return None
    message, crc = body[:-2], int.from_bytes(body[-2:], "big")
    return message if ref_crc16(message) == crc else None


def ref_decode_stream(stream: bytes) -> tuple[list[bytes], int]:
    """(messages delivered, frames dropped) for a stream that ends with a delimiter."""
    assert stream.endswith(b"\x00")
    chunks = [c for c in stream[:-1].split(b"\x00") if c]
    delivered = [m for m in map(ref_unframe, chunks) if m is not None]
    return delivered, len(chunks) - len(delivered)


def code_positions(frame: bytes) -> set[int]:
    """Indices of the COBS code bytes of a frame (the others carry body bytes verbatim)."""
    positions, i = set(), 0
    while i < len(frame) - 1:
        positions.add(i)
        i += frame[i]
    return positions


def feed_chunks(decoder: FrameDecoder, stream: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    edges = [0, *sorted(set(cuts)), len(stream)]
    for a, b in itertools.pairwise(edges):
        out += decoder.feed(stream[a:b])
    return out


message_bytes = st.binary(min_size=1, max_size=300)
small_messages = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4)


# -- the reference is right ------------------------------------------------------------------------------

def test_crc_has_the_catalogue_check_value_and_residue() -> None:
    assert ref_crc16(b"123456789") == CRC16_GENIBUS_CHECK
    assert crc16(b"123456789") == CRC16_GENIBUS_CHECK
    msg = b"any message"
    assert ref_crc16_register(msg + crc16(msg).to_bytes(2, "big")) == CRC16_GENIBUS_RESIDUE


@given(st.binary(max_size=200))
def test_crc_matches_the_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == ref_crc16(data)


@pytest.mark.parametrize(
    ("body", "encoded"),
    [  # the examples of the COBS paper / Wikipedia's "Consistent Overhead Byte Stuffing"
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
        (bytes(range(255)), b"\x01\xff" + bytes(range(1, 255)) + b"\x01"),
    ],
)
def test_reference_cobs_matches_published_examples(body: bytes, encoded: bytes) -> None:
    assert ref_cobs_encode(body) == encoded
    assert ref_cobs_decode(encoded) == body


# -- layout and round trips ------------------------------------------------------------------------------

@given(message_bytes)
def test_frame_layout_is_cobs_of_message_and_crc_then_delimiter(message: bytes) -> None:
    frame = encode_frame(message)
    assert frame == ref_cobs_encode(message + ref_crc16(message).to_bytes(2, "big")) + b"\x00"
    assert frame.count(0) == 1 and frame.endswith(b"\x00")
    assert decode_frame(frame[:-1]) == message


@given(st.lists(message_bytes, max_size=8))
def test_stream_round_trip(msgs: list[bytes]) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(map(encode_frame, msgs))) == msgs
    assert decoder.stats.frames == len(msgs)
    assert decoder.stats.bad_frames == 0
    assert decoder.buffered == 0


@given(small_messages)
def test_split_at_every_point_gives_the_same_messages(msgs: list[bytes]) -> None:
    stream = b"".join(map(encode_frame, msgs))
    for i in range(len(stream) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(stream[:i]) + decoder.feed(stream[i:]) == msgs, f"split at {i}"
        assert decoder.stats.bad_frames == 0


@given(st.lists(message_bytes, min_size=1, max_size=6), st.data())
def test_random_chunking_gives_the_same_messages(msgs: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(map(encode_frame, msgs))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    decoder = FrameDecoder()
    assert feed_chunks(decoder, stream, cuts) == msgs
    assert decoder.stats.bad_frames == 0


def test_byte_at_a_time() -> None:
    msgs = [bytes(range(1, 256)) * 3, b"\x00" * 10, b"x"]
    stream = b"".join(map(encode_frame, msgs))
    decoder = FrameDecoder()
    assert feed_chunks(decoder, stream, list(range(len(stream)))) == msgs


def test_idle_delimiters_are_not_errors() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00" + encode_frame(b"hi") + b"\x00\x00") == [b"hi"]
    assert decoder.stats.bad_frames == 0


def test_envelope_through_a_frame() -> None:
    msg = Message("eps.telemetry", {"bus_v": 7.41, "load_a": 1.25, "sun": True}, seq=3, t_ns=5_000_000_000,
                  src="emulator")
    (data,) = FrameDecoder().feed(encode_frame(encode_message(msg)))
    assert decode_message(data) == msg


# -- corruption ------------------------------------------------------------------------------------------

@given(message_bytes, st.data())
def test_single_byte_error_in_a_body_byte_is_always_caught(message: bytes, data: st.DataObject) -> None:
    # A COBS data byte maps to exactly one body byte, so a one-byte error there is an error
    # burst of <= 8 bits in the body, which CRC-16 detects every time.
    frame = encode_frame(message)
    positions = sorted(set(range(len(frame) - 1)) - code_positions(frame))
    assume(positions)
    pos = data.draw(st.sampled_from(positions))
    new = data.draw(st.integers(1, 255).filter(lambda b: b != frame[pos]))
    bad = bytearray(frame)
    bad[pos] = new
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + encode_frame(b"next")) == [b"next"]
    assert decoder.stats.bad_crc == 1
    assert decoder.stats.bad_frames == 1


@given(message_bytes, st.data())
def test_single_bit_flip_in_a_body_byte_is_always_caught(message: bytes, data: st.DataObject) -> None:
    frame = encode_frame(message)
    positions = sorted(set(range(len(frame) - 1)) - code_positions(frame))
    assume(positions)
    pos = data.draw(st.sampled_from(positions))
    bad = bytearray(frame)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    assume(bad[pos] != 0)  # a flip to 0x00 makes a delimiter: that is a split, tested below
    decoder = FrameDecoder()
    assert decoder.feed(bytes(bad) + encode_frame(b"next")) == [b"next"]
    assert decoder.stats.bad_frames == 1


@given(st.lists(message_bytes, min_size=1, max_size=4), st.data())
def test_any_corruption_matches_the_reference_and_never_raises(msgs: list[bytes],
                                                                data: st.DataObject) -> None:
    # Corrupting a COBS code byte reshapes the body; CRC-16 then lets a wrong frame through with
    # probability ~2**-16 (a collision). So the decoder must do exactly what the reference does:
    # drop (and count) every frame whose CRC fails, deliver the rest, never raise.
    stream = bytearray(b"".join(map(encode_frame, msgs)))
    n_errors = data.draw(st.integers(1, 6))
    for _ in range(n_errors):
        pos = data.draw(st.integers(0, len(stream) - 2))  # never the final delimiter
        stream[pos] = data.draw(st.integers(0, 255))
    stream += encode_frame(b"after")
    expected, dropped = ref_decode_stream(bytes(stream))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    decoder = FrameDecoder()
    assert feed_chunks(decoder, bytes(stream), cuts) == expected
    assert decoder.stats.bad_frames == dropped
    assert expected[-1] == b"after"  # resynchronised


@given(message_bytes, st.integers(1, 64))
def test_zeros_appended_to_a_body_are_caught(message: bytes, n_zeros: int) -> None:
    # A delimiter hit into 0x01 and followed by 0x00 (or a 0x01 0x00 tail of line noise) appends
    # zero bytes to the body. With a CRC whose check of M || CRC(M) is 0 and has no final XOR
    # (CRC-16/CCITT-FALSE) that passes every time; the final XOR of CRC-16/GENIBUS catches it.
    frame = encode_frame(message)
    damaged = frame[:-1] + b"\x01" * n_zeros + b"\x00"
    decoder = FrameDecoder()
    assert decoder.feed(damaged + encode_frame(b"next")) == [b"next"]
    assert decoder.stats.bad_crc == 1


def test_flip_to_zero_splits_a_frame_and_both_halves_are_dropped() -> None:
    frame = encode_frame(b"\x01\x02\x03\x04\x05\x06")
    bad = frame[:3] + b"\x00" + frame[4:]
    assert ref_decode_stream(bad + encode_frame(b"ok")) == ([b"ok"], 2)
    decoder = FrameDecoder()
    assert decoder.feed(bad + encode_frame(b"ok")) == [b"ok"]
    assert decoder.stats.bad_frames == 2


@given(message_bytes, st.data())
def test_truncated_frame_is_dropped_and_counted(message: bytes, data: st.DataObject) -> None:
    frame = encode_frame(message)
    cut = data.draw(st.integers(1, len(frame) - 2))
    truncated = frame[:cut] + b"\x00"  # the line glitched, then the next delimiter arrived
    # a prefix whose own last two bytes happen to be its CRC is a valid frame (p ~ 2**-16)
    assume(ref_unframe(truncated[:-1]) is None)
    decoder = FrameDecoder()
    assert decoder.feed(truncated + encode_frame(b"next")) == [b"next"]
    assert decoder.stats.bad_frames == 1
    assert decoder.stats.frames == 1


@pytest.mark.parametrize(("chunk", "counter"), [(b"\x05\x01", "bad_cobs"), (b"\x01\x01", "too_short"),
                                                 (b"\x04abc", "bad_crc")])
def test_drops_are_counted_by_reason(chunk: bytes, counter: str) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(chunk + b"\x00") == []
    assert getattr(decoder.stats, counter) == 1
    assert decoder.stats.bad_frames == 1


def test_empty_message_is_not_a_frame() -> None:
    # a frame carries a whole envelope, never nothing: the decoder drops an empty one as too short
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"")) == []
    assert decoder.stats.too_short == 1


@pytest.mark.parametrize(
    ("chunk", "field"),
    [(b"\x05\x01", "cobs"), (b"\x01\x01", "length"), (b"\x04abc", "crc"), (b"", "length")],
)
def test_strict_decode_names_what_is_wrong(chunk: bytes, field: str) -> None:
    with pytest.raises(FramingError) as info:
        decode_frame(chunk)
    assert info.value.field == field


# -- resynchronisation -------------------------------------------------------------------------------

@given(st.binary(max_size=200), st.lists(message_bytes, min_size=1, max_size=4))
def test_resync_after_garbage_at_the_next_delimiter(garbage: bytes, msgs: list[bytes]) -> None:
    # the garbage ends at a delimiter (a sender starting up sends one first): every later frame arrives
    stream = garbage + b"\x00" + b"".join(map(encode_frame, msgs))
    expected, dropped = ref_decode_stream(stream)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == expected
    assert expected[-len(msgs):] == msgs
    assert decoder.stats.bad_frames == dropped


def test_garbage_without_a_delimiter_costs_exactly_the_next_frame() -> None:
    msgs = [b"first", b"second", b"third"]
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01\x02\x03\xff" + b"".join(map(encode_frame, msgs))) == msgs[1:]
    assert decoder.stats.bad_frames == 1


# -- size bounds ------------------------------------------------------------------------------------------

def test_oversized_frame_is_dropped_once_with_bounded_memory() -> None:
    limit, step = 64, 7
    big = encode_frame(bytes(range(1, 200)))
    decoder = FrameDecoder(max_frame_bytes=limit)
    out: list[bytes] = []
    for i in range(0, len(big), step):
        out += decoder.feed(big[i:i + step])
        assert decoder.buffered <= limit + step
    out += decoder.feed(encode_frame(b"small"))
    assert out == [b"small"]
    assert decoder.stats.oversized == 1
    assert decoder.stats.bad_frames == 1


def test_oversized_frame_in_one_chunk_is_dropped() -> None:
    decoder = FrameDecoder(max_frame_bytes=64)
    assert decoder.feed(encode_frame(b"\x01" * 100) + encode_frame(b"small")) == [b"small"]
    assert decoder.stats.oversized == 1


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    message = b"\x07" * 40
    frame = encode_frame(message)
    decoder = FrameDecoder(max_frame_bytes=len(frame) - 1)  # the limit excludes the delimiter
    assert decoder.feed(frame) == [message]
    decoder = FrameDecoder(max_frame_bytes=len(frame) - 2)
    assert decoder.feed(frame) == []
    assert decoder.stats.oversized == 1


def test_endless_garbage_is_counted_once_and_memory_stays_bounded() -> None:
    decoder = FrameDecoder()
    chunk = b"\x5a" * 65536
    for _ in range(40):  # 2.5 MiB without a delimiter, over twice the default frame limit
        assert decoder.feed(chunk) == []
        assert decoder.buffered <= decoder.max_frame_bytes + len(chunk)
    assert decoder.stats.oversized == 1
    assert decoder.feed(b"\x00" + encode_frame(b"alive")) == [b"alive"]
    assert decoder.stats.bad_frames == 1


def test_default_limit_fits_the_largest_message() -> None:
    worst = MAX_MESSAGE_BYTES + frame_overhead(MAX_MESSAGE_BYTES) - 1  # minus the delimiter
    assert FrameDecoder().max_frame_bytes >= worst


@given(st.binary(min_size=1, max_size=3000))
def test_frame_overhead_is_an_upper_bound(message: bytes) -> None:
    assert len(encode_frame(message)) - len(message) <= frame_overhead(len(message))


@pytest.mark.parametrize("n", [1, 2, 251, 252, 253, 254, 505, 506, 507, 1000, 4096])
def test_frame_overhead_is_tight_for_zero_free_messages(n: int) -> None:
    assert len(encode_frame(b"\x01" * n)) - n == frame_overhead(n)


# -- the documented example ---------------------------------------------------------------------------------

def _hex_after(block: str, header: str) -> str:
    """The hex bytes on the indented lines that follow the line starting with ``header``."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out += line.split()
    assert all(re.fullmatch(r"[0-9a-f]{2}", tok) for tok in out), out
    return "".join(out)


def test_protocol_doc_example_frame_is_what_the_code_sends() -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- example-frame:begin -->(.*?)<!-- example-frame:end -->", text, flags=re.DOTALL)
    assert block, "docs/protocol.md lacks the example frame block"
    msg = Message("ping", {}, seq=1, t_ns=1_500_000_000, src="board")
    data = encode_message(msg)
    frame = encode_frame(data)
    assert _hex_after(block.group(1), f"msgpack ({len(data)} bytes)") == data.hex()
    assert f"CRC-16/GENIBUS: 0x{crc16(data):04X}" in block.group(1)
    assert _hex_after(block.group(1), f"frame ({len(frame)} bytes on the wire)") == frame.hex()

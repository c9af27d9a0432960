"""COBS + CRC-16 framing for byte streams (serial links), sans-IO.

::

    message bytes M (one msgpack envelope)
    body  = M || CRC-16/GENIBUS(M) big-endian   (poly 0x1021, init 0xFFFF, final XOR 0xFFFF)
    frame = COBS(body) || 0x00

The final XOR matters: without it (CRC-16/CCITT-FALSE) the CRC of ``M || CRC(M)`` is 0 and stays
0 over any zero bytes, so a body with zeros appended (a delimiter hit into 0x01, a 0x01 0x00
tail of line noise) passes the check every time and delivers a wrong message. With it, that
damage is caught like any other.

COBS removes every 0x00 from the body, so 0x00 only ever marks the end of a frame: after a
corrupted, truncated or garbage stretch the decoder drops what it has and resynchronises at
the next delimiter. :class:`FrameDecoder` counts every frame it drops, by reason.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from cobs import cobs

from emulator.errors import FramingError
from emulator.protocol.envelope import MAX_MESSAGE_BYTES

DELIMITER = b"\x00"
CRC_INIT = 0xFFFF
CRC_XOROUT = 0xFFFF


def crc16(message: bytes | bytearray | memoryview) -> int:
    """CRC-16/GENIBUS (check value 0xD64E for b"123456789")."""
    return binascii.crc_hqx(message, CRC_INIT) ^ CRC_XOROUT


def frame_overhead(n: int) -> int:
    """Worst-case bytes on the wire for an n-byte message: CRC (2) + COBS (ceil((n+2)/254)) + delimiter (1)."""
    return 2 + (n + 2 + 253) // 254 + 1


def encode_frame(message: bytes) -> bytes:
    body = message + crc16(message).to_bytes(2, "big")
    return cobs.encode(body) + DELIMITER


def decode_frame(frame: bytes) -> bytes:
    """Strict decode of one frame without its delimiter; raises :class:`FramingError`."""
    try:
        body = cobs.decode(frame)
    except cobs.DecodeError as exc:
        raise FramingError(f"bad COBS encoding: {exc}", field="cobs") from None
    if len(body) < 3:
        raise FramingError(f"frame too short ({len(body)} bytes after COBS)", field="length")
    message, crc = body[:-2], int.from_bytes(body[-2:], "big")
    if crc16(message) != crc:
        raise FramingError("CRC-16 mismatch", field="crc")
    return message


@dataclass
class FramingStats:
    frames: int = 0  #: good frames delivered
    bad_cobs: int = 0
    bad_crc: int = 0
    too_short: int = 0
    oversized: int = 0  #: frames longer than the limit (dropped unread up to the next delimiter)

    @property
    def bad_frames(self) -> int:
        return self.bad_cobs + self.bad_crc + self.too_short + self.oversized


class FrameDecoder:
    """Feed bytes as they arrive; get whole, checked messages back. Never raises on bad input."""

    def __init__(self, max_frame_bytes: int = MAX_MESSAGE_BYTES + 8 + MAX_MESSAGE_BYTES // 254) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.stats = FramingStats()
        self._buf = bytearray()
        self._discarding = False  # inside an oversized frame: skip to the next delimiter

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        out: list[bytes] = []
        self._buf += data
        start = 0
        while True:
            end = self._buf.find(0, start)
            if end < 0:
                break
            chunk = bytes(self._buf[start:end])
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if not chunk:  # back-to-back delimiters: idle line / resync filler, not an error
                continue
            msg = self._decode(chunk)
            if msg is not None:
                out.append(msg)
        del self._buf[:start]
        if self._discarding:
            # no delimiter yet: all of it belongs to the oversized frame, already counted once
            self._buf.clear()
        elif len(self._buf) > self.max_frame_bytes:
            self.stats.oversized += 1
            self._buf.clear()
            self._discarding = True
        return out

    def _decode(self, chunk: bytes) -> bytes | None:
        if len(chunk) > self.max_frame_bytes:
            self.stats.oversized += 1
            return None
        try:
            body = cobs.decode(chunk)
        except cobs.DecodeError:
            self.stats.bad_cobs += 1
            return None
        if len(body) < 3:
            self.stats.too_short += 1
            return None
        message = body[:-2]
        if crc16(message) != int.from_bytes(body[-2:], "big"):
            self.stats.bad_crc += 1
            return None
        self.stats.frames += 1
        return message

    @property
    def buffered(self) -> int:
        return len(self._buf)

"""Injected line noise: random bit errors in a byte stream, for testing how both ends cope with a bad line.

The serial options ``ber=<rate>&ber_seed=<n>`` put one :class:`BitErrors` on what an end sends and another on
what it receives, so a single URL makes a line noisy in both directions (docs/transports.md).
"""

from __future__ import annotations

import math
import random


class BitErrors:
    """Flips each bit of a byte stream independently with probability ``ber``.

    The gaps between flipped bits are drawn from the geometric distribution (one draw per error, not per bit),
    and they count bits of the stream, not of a chunk: the same seed damages the same bit positions however the
    stream is cut into writes or reads.
    """

    def __init__(self, ber: float, seed: int | str) -> None:
        if not 0.0 <= ber <= 0.5:
            raise ValueError(f"ber must be within 0..0.5, got {ber}")
        self.ber = ber
        self._rng = random.Random(seed)
        self._log_good = math.log1p(-ber) if ber > 0 else 0.0
        self._pos = 0  #: bits of the stream seen so far
        self._next = self._gap() if ber > 0 else -1  #: stream bit index of the next flip
        self.flipped = 0  #: bits flipped so far

    def _gap(self) -> int:
        """Good bits before the next error: floor(ln U / ln(1 - ber)), U uniform in (0, 1]."""
        return int(math.log(1.0 - self._rng.random()) / self._log_good)

    def apply(self, data: bytes) -> bytes:
        """``data`` with this stretch of the stream's errors applied (the same object when none falls in it)."""
        if self.ber <= 0 or not data:
            return data
        end = self._pos + 8 * len(data)
        if self._next >= end:
            self._pos = end
            return data
        out = bytearray(data)
        while self._next < end:
            bit = self._next - self._pos
            out[bit // 8] ^= 1 << (bit % 8)
            self.flipped += 1
            self._next += 1 + self._gap()
        self._pos = end
        return bytes(out)


__all__ = ["BitErrors"]

"""Payloads of a fixed shape written to msgpack by one ``struct`` call (the telemetry publishing path).

A sensor reading's payload has the same keys every time, and the values that change from one sample to the next
are floats, which msgpack always writes as nine bytes (``0xcb`` and the IEEE double). So once the payload's shape
is known, its bytes are constant pieces with fixed-width holes: :class:`PayloadTemplate` learns the pieces from
ormsgpack itself (it encodes the payload once with marker floats and finds them in the bytes), then fills the holes
with one :meth:`struct.Struct.pack`. Building the payload dict and walking it, most of a reading's cost, is
skipped; the bytes are ormsgpack's, byte for byte (``tests/unit/test_templates.py`` checks it on generated
payloads, and each variant is checked against ormsgpack when it is learnt).

Readings a sensor bank took in one vectorised call come as one float array: :meth:`PayloadTemplate.pack_rows`
writes such rows together with numpy (the variant's bytes copied into every row, the floats big-endian into their
holes), the same bytes as one :meth:`~PayloadTemplate.pack` per row.

:func:`uint_cells` and :func:`write_rows` write whole messages the same way where only ints of one msgpack width
and fixed-width bytes differ from row to row (the runtime's ``sim.clock`` envelopes of a batch).

What else the payload holds (a mode's name, flags, counters) is its *variant*: the caller gives it as ``key``
(compared with ``==``: bools must stay bools), and each distinct key is learnt once (~50 us; at most
``max_variants`` are kept, then they are learnt afresh).

Only floats are holes: ints, strings and None change width with their value, and checking each one's type and
width in Python costs more than building the dict (measured: a status payload with eleven such values took 5.2 us
as a template, 3.1 us as a dict and ormsgpack).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ormsgpack

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class PackedPayload:
    """A payload already encoded (the msgpack map's bytes), with the dict it stands for on demand."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return ormsgpack.unpackb(self.data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedPayload):
            return self.data == other.data
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"PackedPayload({self.to_dict()!r})"


class PayloadTemplate:
    """Encodes payloads of one shape: ``build(key, values)`` makes the payload dict of variant ``key`` with the
    ``n_floats`` floats ``values`` in the order they appear in it (dict insertion order, depth first); :meth:`pack`
    writes its bytes without building it. ``build`` is called only to learn a variant, and by callers for the
    payloads :meth:`pack` leaves to them.

    The values must be floats (``type(x) is float``): an int would be written as a double, where ormsgpack writes
    an int. The caller guarantees it (a sensor bank's readings are floats by construction).
    """

    def __init__(self, name: str, build: Callable[[Any, Sequence[float]], dict[str, Any]], n_floats: int, *,
                 max_variants: int = 64) -> None:
        self.name = name
        self.build = build
        self.n_floats = n_floats
        self.max_variants = max_variants
        self._variants: dict[Any, tuple[struct.Struct, list[Any]] | None] = {}
        self.compiled = 0  #: variants learnt so far
        self.refused = 0  #: payloads left to the caller (variants whose bytes could not be learnt)

    def pack(self, key: Any, values: Sequence[float]) -> bytes | None:
        """The payload's msgpack bytes, or None: the caller encodes ``build(key, values)`` itself."""
        variant = self._variant(key, values)
        if variant is None:
            self.refused += 1
            return None
        st, args, _, _ = variant
        args = args[:]
        args[1::2] = values
        return st.pack(*args)

    def pack_rows(self, keys: Sequence[Any], values: np.ndarray) -> list[bytes | None]:
        """:meth:`pack` of each row: ``keys[j]`` with the floats ``values[j]`` (an array of one row per key, of
        float64). The rows of a run of equal keys are written together by numpy: the variant's bytes copied into
        every row, the floats written big-endian into their holes (msgpack's float 64: the same bytes as
        :meth:`pack`)."""
        import numpy as np  # (here: the runtime imports this module where no model, so no numpy, is loaded)

        out: list[bytes | None] = []
        m = len(keys)
        j = 0
        while j < m:
            key = keys[j]
            end = j + 1
            while end < m and (keys[end] is key or keys[end] == key):
                end += 1
            variant = self._variant(key, values[j].tolist())
            if variant is None:
                self.refused += end - j
                out += [None] * (end - j)
            else:
                _, _, row, holes = variant
                size = len(row)
                rows = np.empty((end - j, size), dtype=np.uint8)
                rows[:] = row
                rows[:, holes] = values[j:end].astype(">f8").view(np.uint8)
                data = rows.tobytes()
                out += [data[i:i + size] for i in range(0, len(data), size)]
            j = end
        return out

    def _variant(self, key: Any, values: Sequence[float]) -> tuple[struct.Struct, list[Any], np.ndarray,
                                                                   np.ndarray] | None:
        """Variant ``key``'s layout, learnt now if it is new (``values``: a payload's floats to check it with)."""
        variant = self._variants.get(key, False)
        if variant is False:
            if len(self._variants) >= self.max_variants:  # (a rail tripping again and again: a variant a trip)
                self._variants.clear()
            self.compiled += 1
            try:
                variant = self._compile(key, values)
            except Exception as exc:  # noqa: BLE001 - whatever learning trips on, the dict path encodes the payload
                log.warning("payload template %s: variant %r not learnt (%s: %s); encoded as a dict", self.name, key,
                            type(exc).__name__, exc)
                variant = None
            self._variants[key] = variant
        return variant

    def _compile(self, key: Any, values: Sequence[float]) -> tuple[struct.Struct, list[Any], np.ndarray,
                                                                   np.ndarray] | None:
        """A variant's constant pieces, learnt from ormsgpack with marker floats (twice, with two sets of markers:
        a marker that also occurred in a constant piece would misplace a hole), then checked against ormsgpack's
        bytes of ``build(key, values)``."""
        if len(values) != self.n_floats:
            raise ValueError(f"{len(values)} values, the template has {self.n_floats}")
        layouts = []
        for attempt in (0, 1):
            markers = [-1.0e300 * (1.0 + (2 * i + attempt) / 4096.0) for i in range(self.n_floats)]  # no reading
            layouts.append(_locate(ormsgpack.packb(self.build(key, markers)), markers))
        if layouts[0] is None or layouts[0] != layouts[1]:
            log.warning("payload template %s: the floats of variant %r are not where build() puts them in order; "
                        "encoded as a dict", self.name, key)
            return None
        fmt, pieces = layouts[0]
        st = struct.Struct(fmt)
        args: list[Any] = [None] * (2 * len(pieces) - 1)
        args[0::2] = pieces
        filled = args[:]
        filled[1::2] = values
        if st.pack(*filled) != ormsgpack.packb(self.build(key, values)):
            log.warning("payload template %s: variant %r does not give ormsgpack's bytes; encoded as a dict",
                        self.name, key)
            return None
        # for pack_rows: the bytes with zeros in the holes, and the holes' byte positions in order
        import numpy as np

        row = np.frombuffer(b"".join(p + b"\0" * 8 for p in pieces[:-1]) + pieces[-1], dtype=np.uint8)
        starts = np.cumsum([len(p) + 8 for p in pieces[:-1]]) - 8
        holes = (starts[:, None] + np.arange(8)).ravel()
        return st, args, row, holes


def _locate(data: bytes, markers: list[float]) -> tuple[str, list[bytes]] | None:
    """The struct format and constant pieces of ``data`` around the floats ``markers``, found in order (each piece
    ends with the float's type byte, 0xcb)."""
    fmt, pieces, start = [">"], [], 0
    for m in markers:
        i = data.find(b"\xcb" + struct.pack(">d", m), start)
        if i < 0:
            return None
        pieces.append(data[start:i + 1])
        fmt.append(f"{i + 1 - start}sd")
        start = i + 9
    pieces.append(data[start:])
    fmt.append(f"{len(data) - start}s")
    return "".join(fmt), pieces


#: msgpack's encodings of a non-negative int: (largest value, type byte, big-endian width); positive fixint first
_UINT_WIDTHS = ((0x7F, b"", 1), (0xFF, b"\xcc", 1), (0xFFFF, b"\xcd", 2), (0xFFFF_FFFF, b"\xce", 4),
                ((1 << 64) - 1, b"\xcf", 8))


def uint_cells(values: Sequence[int]) -> np.ndarray | None:
    """msgpack's bytes of each of ``values`` (ints, ascending) as the rows of one uint8 array, when they all take the
    same width (the type byte and the big-endian value; a positive fixint is its own byte); None when the first and
    the last differ in width, or a value is negative or beyond 64 bits (the caller encodes those one at a time)."""
    import numpy as np

    lo, hi = values[0], values[-1]
    if lo < 0:
        return None
    floor = -1
    for top, tag, width in _UINT_WIDTHS:
        if hi <= top:
            if lo <= floor:
                return None
            cells = np.empty((len(values), len(tag) + width), dtype=np.uint8)
            if tag:
                cells[:, 0] = tag[0]
            cells[:, len(tag):] = np.array(values, dtype=np.uint64).astype(f">u{width}").view(np.uint8).reshape(
                len(values), width)
            return cells
        floor = top
    return None


def write_rows(m: int, parts: Sequence[bytes | np.ndarray]) -> list[bytes]:
    """``m`` byte strings of equal length, each the concatenation of ``parts``: bytes are the same in every row, a
    uint8 array gives each row its own cells (row j: ``part[j]``). One numpy fill for the lot, one slice a row."""
    import numpy as np

    widths = [len(p) if type(p) is bytes else p.shape[1] for p in parts]
    size = sum(widths)
    rows = np.empty((m, size), dtype=np.uint8)
    at = 0
    for part, width in zip(parts, widths, strict=True):
        rows[:, at:at + width] = np.frombuffer(part, dtype=np.uint8) if type(part) is bytes else part
        at += width
    data = rows.tobytes()
    return [data[i:i + size] for i in range(0, m * size, size)] if size else [b""] * m

"""Payload templates: the bytes ormsgpack writes for the dict, written without the dict (any floats, any variant),
and the envelope around an encoded payload the same as :func:`encode_envelope`'s."""

from __future__ import annotations

import logging
import math
import struct
from typing import Any

import ormsgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.protocol.codec import decode_message, encode_envelope, encode_envelope_packed
from emulator.protocol.templates import PackedPayload, PayloadTemplate, uint_cells, write_rows

RAILS = ("obc_3v3", "comms_5v", "payload")


def eps_like(key: tuple[Any, ...], v: list[float]) -> dict[str, Any]:
    """The shape of an EPS reading: floats at the top and inside a list of maps, a variant of str, bools, ints."""
    mode, *flags = key
    return {"bus_v": v[0], "battery_v": v[1], "mode": mode,
            "rails": [{"name": n, "on": on, "trips": trips, "current_a": cur, "voltage_v": vol}
                      for n, (on, trips), cur, vol in zip(RAILS, flags, v[2::2], v[3::2], strict=True)]}


N_FLOATS = 2 + 2 * len(RAILS)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, math.nan, -math.inf, 1e300])
variants = st.tuples(st.text(max_size=40),
                     *[st.tuples(st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1)) for _ in RAILS])


@given(key=variants, values=st.lists(floats, min_size=N_FLOATS, max_size=N_FLOATS))
def test_pack_writes_ormsgpack_bytes(key: tuple[Any, ...], values: list[float]) -> None:
    template = PayloadTemplate("eps-like", eps_like, N_FLOATS)
    data = template.pack(key, values)
    assert data == ormsgpack.packb(eps_like(key, values))
    again = [v + 1.0 for v in values]  # the same variant, other values: the learnt layout, not a fresh one
    assert template.pack(key, again) == ormsgpack.packb(eps_like(key, again))
    assert template.compiled == 1 and template.refused == 0


@given(values=st.lists(st.lists(floats, min_size=N_FLOATS, max_size=N_FLOATS), min_size=1, max_size=20),
       keys=st.lists(variants, min_size=1, max_size=5))
def test_variants_are_learnt_once_each(values: list[list[float]], keys: list[tuple[Any, ...]]) -> None:
    template = PayloadTemplate("eps-like", eps_like, N_FLOATS)
    for i, v in enumerate(values):
        key = keys[i % len(keys)]
        assert template.pack(key, v) == ormsgpack.packb(eps_like(key, v))
    assert template.compiled == len(set(keys[:len(values)]))


@given(rows=st.lists(st.tuples(st.integers(0, 2), st.lists(floats, min_size=N_FLOATS, max_size=N_FLOATS)),
                     min_size=1, max_size=30),
       keys=st.lists(variants, min_size=3, max_size=3))
def test_rows_packed_together_are_each_rows_bytes(rows: list[tuple[int, list[float]]],
                                                  keys: list[tuple[Any, ...]]) -> None:
    """pack_rows writes the bytes pack gives each row (equal keys in runs, as a batch's readings come), NaNs and
    infinities included."""
    import numpy as np

    together = PayloadTemplate("eps-like", eps_like, N_FLOATS)
    one_by_one = PayloadTemplate("eps-like", eps_like, N_FLOATS)
    row_keys = [tuple(keys[k]) for k, _ in rows]  # equal keys, not the same objects
    values = np.array([v for _, v in rows], dtype=float)
    assert together.pack_rows(row_keys, values) == [one_by_one.pack(k, v) for k, (_, v) in zip(row_keys, rows,
                                                                                                strict=True)]
    assert together.compiled == one_by_one.compiled


def test_rows_of_a_refused_variant_are_left_to_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    def swapped(key: str, v: list[float]) -> dict[str, Any]:  # floats out of order: not learnt
        return {"b": v[1], "a": v[0]} if key == "bad" else {"a": v[0], "b": v[1]}

    template = PayloadTemplate("swapped", swapped, 2)
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with caplog.at_level(logging.WARNING):
        out = template.pack_rows(["good", "bad", "bad"], values)
    assert out[0] == ormsgpack.packb({"a": 1.0, "b": 2.0})
    assert out[1:] == [None, None]
    assert template.refused == 2 and "swapped" in caplog.text


def test_at_most_max_variants_kept() -> None:
    template = PayloadTemplate("eps-like", eps_like, N_FLOATS, max_variants=4)
    v = [1.5] * N_FLOATS
    for trips in range(10):  # a rail tripping again and again: a variant each time
        key = ("full", (True, trips), (True, 0), (False, 0))
        assert template.pack(key, v) == ormsgpack.packb(eps_like(key, v))
    assert len(template._variants) <= 4
    assert template.compiled == 10


def test_values_out_of_order_are_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A build() that does not place the values in their order: the caller is told (None) and it is logged."""
    template = PayloadTemplate("swapped", lambda key, v: {"b": v[1], "a": v[0]}, 2)
    with caplog.at_level(logging.WARNING, logger="emulator.protocol.templates"):
        assert template.pack("k", [1.0, 2.0]) is None
        assert template.pack("k", [3.0, 4.0]) is None
    assert template.refused == 2 and template.compiled == 1
    assert "swapped" in caplog.text and "encoded as a dict" in caplog.text


def test_wrong_count_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    template = PayloadTemplate("two", lambda key, v: {"a": v[0], "b": v[1]}, 2)
    with caplog.at_level(logging.WARNING, logger="emulator.protocol.templates"):
        assert template.pack("k", [1.0]) is None
    assert "1 values, the template has 2" in caplog.text


def test_a_marker_in_a_constant_is_not_mistaken_for_a_hole() -> None:
    """A variant whose constant bytes hold what looks like a marker float: learnt right or not used, never wrong."""
    marker = struct.pack(">d", -1.0e300)  # the first marker of the first attempt
    template = PayloadTemplate("sneaky", lambda key, v: {"k": key, "x": v[0]}, 1)
    key = b"\xcb" + marker
    data = template.pack(key, [2.5])
    assert data is None or data == ormsgpack.packb({"k": key, "x": 2.5})


@given(payload=st.dictionaries(st.text(max_size=10), st.floats(allow_nan=False) | st.integers(0, 1000), max_size=5),
       topic=st.text(min_size=1, max_size=128), seq=st.integers(0, (1 << 63) - 1),
       t_ns=st.integers(0, (1 << 63) - 1), src=st.text(max_size=40))
def test_envelope_around_packed_payload_is_encode_envelope(payload: dict[str, Any], topic: str, seq: int, t_ns: int,
                                                           src: str) -> None:
    data = encode_envelope_packed(topic, ormsgpack.packb(payload), seq, t_ns, src)
    assert data == encode_envelope(topic, payload, seq, t_ns, src)
    assert decode_message(data).payload == payload


def test_packed_payload_stands_for_its_dict() -> None:
    payload = {"sun_w_m2": 1361.0, "eclipse": False}
    packed = PackedPayload(ormsgpack.packb(payload))
    assert packed.to_dict() == payload
    assert packed == PackedPayload(ormsgpack.packb(payload)) and packed != PackedPayload(b"\x80")
    assert "1361.0" in repr(packed)


@given(st.integers(0, (1 << 64) - 1), st.integers(0, 1 << 40), st.integers(1, 40))
def test_uint_cells_are_msgpack_ints_of_one_width_or_none(first: int, span: int, n: int) -> None:
    """Each row of uint_cells is ormsgpack's encoding of its int, when the first and last take the same width (the
    caller encodes the others one at a time)."""
    last = min(first + span, (1 << 64) - 1)
    values = sorted({first, last, *(first + (last - first) * k // n for k in range(n))})
    cells = uint_cells(values)
    encoded = [ormsgpack.packb(v) for v in values]
    if len(encoded[0]) != len(encoded[-1]) or encoded[0][:1] != encoded[-1][:1] and max(values) > 0x7F:
        assert cells is None
    else:
        assert cells is not None
        assert [bytes(row) for row in cells] == encoded


def test_uint_cells_refuse_negative_ints() -> None:
    assert uint_cells([-1, 5]) is None


@given(st.lists(st.one_of(st.binary(max_size=12), st.integers(1, 6)), min_size=1, max_size=8), st.integers(1, 9),
       st.randoms())
def test_write_rows_concatenates_constant_and_per_row_parts(spec: list[Any], m: int, rnd: Any) -> None:
    """Every row is its parts joined: a bytes part the same in each, an array part row j's own cells."""
    import numpy as np

    parts = [p if isinstance(p, bytes) else np.array([[rnd.randrange(256) for _ in range(p)] for _ in range(m)],
                                                     dtype=np.uint8) for p in spec]
    rows = write_rows(m, parts)
    assert rows == [b"".join(p if isinstance(p, bytes) else bytes(p[j]) for p in parts) for j in range(m)]

"""Envelope and msgpack codec: round-trips of arbitrary messages, and precise refusals naming the field."""

from __future__ import annotations

import enum
import math
import re
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import emulator.errors as errors_module
from emulator.errors import CodecError, EmulatorError
from emulator.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Message,
    codec,
    decode_message,
    encode_message,
)
from emulator.protocol.codec import MAX_PAYLOAD_DEPTH, MAX_REQUEST_CONTAINERS, encode_envelope
from emulator.protocol.system import Reply

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
TOPIC_MAX_CHARS = 128  #: longest topic / src the envelope accepts
#: a refusal message is read by people and echoed on the wire: it must stay short whatever the input
ERROR_MESSAGE_MAX_CHARS = 400
DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

class _Mode(enum.StrEnum):
    SAFE = "safe"


class _Level(enum.IntEnum):
    HIGH = 3


class _Float(float):
    pass


# -- strategies ------------------------------------------------------------------------------------

#: every msgpack primitive a payload may hold (floats include inf, -inf, nan and -0.0)
primitives = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    primitives,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
payloads = st.dictionaries(st.text(max_size=16), values, max_size=8)
names = st.text(min_size=1, max_size=TOPIC_MAX_CHARS)
messages = st.builds(
    Message,
    topic=names,
    payload=payloads,
    seq=st.integers(0, INT64_MAX),
    t_ns=st.integers(0, INT64_MAX),
    src=st.text(max_size=TOPIC_MAX_CHARS),
)


def valid_envelope(**changes: Any) -> dict[str, Any]:
    """A valid envelope as a plain map, with some fields replaced."""
    env: dict[str, Any] = {"v": PROTOCOL_VERSION, "topic": "eps.rail.set", "seq": 7, "t_ns": 123_000_000_000,
                           "src": "board", "payload": {"rail": "payload", "on": True}}
    env.update(changes)
    return env


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def has_nan(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isnan(obj)
    if isinstance(obj, dict):
        return any(has_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return any(has_nan(v) for v in obj)
    return False


# -- round trips -------------------------------------------------------------------------------------

@given(messages)
def test_round_trip_of_arbitrary_messages(msg: Message) -> None:
    data = encode_message(msg)
    back = decode_message(data)
    # nan != nan, so equality of the bytes is the test that holds for every payload
    assert encode_message(back) == data
    for name in ("topic", "seq", "t_ns", "src", "v"):
        assert getattr(back, name) == getattr(msg, name)
    if not has_nan(msg.payload):
        assert back == msg


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_travel_bit_exact(x: float) -> None:
    back = decode_message(encode_message(Message("t", {"x": x}))).payload["x"]
    assert type(back) is float
    assert msgpack.packb(back) == msgpack.packb(x)  # covers nan and the sign of -0.0
    if not math.isnan(x):
        assert back == x


#: what a payload may hold beyond the wire's primitives: tuples, uint64, str/int enum members
wide_primitives = primitives | st.integers(INT64_MAX, (1 << 64) - 1) | st.sampled_from([_Mode.SAFE, _Level.HIGH])
wide_values = st.recursive(
    wide_primitives,
    lambda inner: (st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
                   | st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25,
)


@given(st.dictionaries(st.text(max_size=16), wide_values, max_size=8), st.integers(0, INT64_MAX))
def test_encoder_writes_msgpacks_bytes(payload: dict[str, Any], seq: int) -> None:
    """The fast encoder (ormsgpack) writes exactly what msgpack writes, so recordings and peers see no change."""
    env = {"topic": "eps.telemetry", "v": PROTOCOL_VERSION, "seq": seq, "t_ns": 5, "src": "emulator",
           "payload": payload}
    assert encode_envelope("eps.telemetry", payload, seq, 5, "emulator") == pack(env)


@pytest.mark.parametrize("odd", [np.float64(1.5), np.int32(-3), np.bool_(True), _Float(2.5), {1: 2}, 1 << 64,
                                 -(1 << 63) - 1, bytearray(b"x"), memoryview(b"y")],
                         ids=["np.float64", "np.int32", "np.bool_", "float subclass", "int key", "2**64",
                              "below int64", "bytearray", "memoryview"])
def test_encoder_falls_back_to_msgpack_for_what_ormsgpack_refuses(odd: Any) -> None:
    """Values ormsgpack refuses are packed by msgpack (same bytes) or refused by it with a CodecError."""
    try:
        want: bytes | None = msgpack.Packer(use_bin_type=True).pack(
            {"topic": "t", "v": PROTOCOL_VERSION, "seq": 0, "t_ns": 0, "src": "", "payload": {"x": odd}})
    except (TypeError, ValueError, OverflowError):
        want = None
    if want is None:
        with pytest.raises(CodecError, match="cannot encode 't'") as err:
            encode_envelope("t", {"x": odd}, 0, 0, "")
        assert err.value.field == "payload"
    else:
        assert encode_envelope("t", {"x": odd}, 0, 0, "") == want


def test_deep_payload_beyond_ormsgpacks_depth_is_packed_by_msgpack() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(300):
        inner.append([])
        inner = inner[0]
    assert encode_envelope("t", {"d": deep}, 0, 0, "") == pack(
        {"topic": "t", "v": PROTOCOL_VERSION, "seq": 0, "t_ns": 0, "src": "", "payload": {"d": deep}})


def _outcome(data: bytes, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", decode_message(data, **kw)
    except CodecError as exc:
        return "error", (exc.field, str(exc))


def _both_paths(data: bytes, **kw: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """decode_message's outcome with the fast decoder, and with msgpack alone."""
    fast = _outcome(data, **kw)
    saved = codec.FAST_DECODE_MAX_BYTES
    codec.FAST_DECODE_MAX_BYTES = -1
    try:
        slow = _outcome(data, **kw)
    finally:
        codec.FAST_DECODE_MAX_BYTES = saved
    return fast, slow


def _same(fast: tuple[str, Any], slow: tuple[str, Any]) -> bool:
    if fast[0] != slow[0]:
        return False
    if fast[0] == "error":
        return fast == slow
    return encode_message(fast[1]) == encode_message(slow[1])  # nan-safe equality


@given(messages, st.binary(max_size=8), st.integers(0, 64), st.booleans())
def test_fast_decoder_agrees_with_msgpack(msg: Message, tail: bytes, cut: int, containers: bool) -> None:
    """For encoded messages, truncated ones and ones with bytes appended, the fast decoder and msgpack alone give
    the same message or the same error (field and words)."""
    data = encode_message(msg)
    kw: dict[str, Any] = {"max_containers": MAX_REQUEST_CONTAINERS} if containers else {}
    for variant in (data, data + tail, data[: max(0, len(data) - cut)]):
        fast, slow = _both_paths(variant, **kw)
        assert _same(fast, slow), (variant, fast, slow)


@given(st.binary(max_size=300))
def test_fast_decoder_agrees_with_msgpack_on_any_bytes(data: bytes) -> None:
    fast, slow = _both_paths(data)
    assert _same(fast, slow)


@pytest.mark.parametrize("data", [
    pack(valid_envelope()) + b"\x00",  # trailing byte: msgpack's ExtraData
    pack(valid_envelope(payload={"x": 1.5})).replace(b"\xcb\x3f\xf8" + b"\x00" * 6, b"\xca\x3f\xc0\x00\x00"),  # float32
    pack(valid_envelope(payload={b"k": 1})),  # a bin map key
    pack(valid_envelope(payload={"t": msgpack.ExtType(1, b"x")})),  # an ext
    pack(valid_envelope(seq=5)).replace(b"\xa3seq\x05", b"\xa3seq\xd3" + (5).to_bytes(8, "big")),  # int64 for 5
], ids=["trailing byte", "float32", "bin key", "ext", "wide int"])
def test_what_ormsgpack_would_read_otherwise_goes_to_msgpack(data: bytes) -> None:
    assert data != pack(valid_envelope()) and codec.canonical_decode(data) is None
    fast, slow = _both_paths(data)
    assert _same(fast, slow), (fast, slow)


@pytest.mark.parametrize("value", [INT64_MIN, -1, 0, 127, 128, 2**32, INT64_MAX])
def test_int64_extremes_round_trip(value: int) -> None:
    assert decode_message(encode_message(Message("t", {"n": value}))).payload["n"] == value


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_any_bytes_like(kind: type) -> None:
    msg = Message("eps.rail.set", {"rail": "payload", "on": True}, seq=3, t_ns=9, src="board")
    assert decode_message(kind(encode_message(msg))) == msg


def test_bytes_travel_as_bin_and_str_as_str() -> None:
    data = encode_message(Message("t", {"raw": b"\x00\xff", "text": "h\u00e9"}))
    payload = decode_message(data).payload
    assert payload == {"raw": b"\x00\xff", "text": "h\u00e9"}
    assert type(payload["raw"]) is bytes and type(payload["text"]) is str


def test_version_is_the_protocol_version() -> None:
    assert Message("t").v == PROTOCOL_VERSION
    assert msgpack.unpackb(encode_message(Message("t")))["v"] == PROTOCOL_VERSION


# -- refusals: each names the field ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"v": PROTOCOL_VERSION + 1}, "v"),
        ({"v": 0}, "v"),
        ({"v": "1"}, "v"),
        ({"v": True}, "v"),
        ({"v": 1.0}, "v"),
        ({"seq": -1}, "seq"),
        ({"seq": 1 << 63}, "seq"),  # uint64 beyond int64
        ({"seq": True}, "seq"),
        ({"seq": None}, "seq"),
        ({"t_ns": 1.5}, "t_ns"),
        ({"t_ns": 1e9}, "t_ns"),
        ({"t_ns": "0"}, "t_ns"),
        ({"t_ns": -5}, "t_ns"),
        ({"topic": ""}, "topic"),
        ({"topic": "x" * (TOPIC_MAX_CHARS + 1)}, "topic"),
        ({"topic": b"eps.rail.set"}, "topic"),
        ({"topic": 5}, "topic"),
        ({"src": "x" * (TOPIC_MAX_CHARS + 1)}, "src"),
        ({"src": None}, "src"),
        ({"payload": []}, "payload"),
        ({"payload": None}, "payload"),
        ({"payload": "rail=payload"}, "payload"),
        ({"payload": b"\x80"}, "payload"),
    ],
)
def test_bad_envelope_field_is_refused_naming_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_message(pack(valid_envelope(**changes)))
    assert info.value.field == field
    assert info.value.code == "codec"
    assert len(info.value.message) <= ERROR_MESSAGE_MAX_CHARS


def test_unknown_version_lists_the_supported_one() -> None:
    with pytest.raises(CodecError) as info:
        decode_message(pack(valid_envelope(v=PROTOCOL_VERSION + 1)))
    assert info.value.valid == [PROTOCOL_VERSION]
    assert str(PROTOCOL_VERSION + 1) in info.value.message


def test_limits_are_inclusive() -> None:
    msg = decode_message(pack(valid_envelope(topic="t" * TOPIC_MAX_CHARS, src="s" * TOPIC_MAX_CHARS,
                                             seq=INT64_MAX, t_ns=INT64_MAX)))
    assert (len(msg.topic), msg.seq, msg.t_ns) == (TOPIC_MAX_CHARS, INT64_MAX, INT64_MAX)
    assert decode_message(pack(valid_envelope(src="", seq=0, t_ns=0))).src == ""


@pytest.mark.parametrize("key", ["v", "topic", "seq", "t_ns", "src", "payload"])
def test_missing_envelope_field_is_named(key: str) -> None:
    env = valid_envelope()
    del env[key]
    with pytest.raises(CodecError) as info:
        decode_message(pack(env))
    assert info.value.field == key
    assert key in info.value.message


def test_extra_envelope_field_is_named_with_the_valid_ones() -> None:
    with pytest.raises(CodecError) as info:
        decode_message(pack(valid_envelope(prio=1)))
    assert info.value.field == "prio"
    assert sorted(info.value.valid or []) == sorted(["v", "topic", "seq", "t_ns", "src", "payload"])


@pytest.mark.parametrize("obj", [[1, 2], "hello", 5, None, b"\x01"])
def test_envelope_that_is_not_a_map_is_refused(obj: Any) -> None:
    with pytest.raises(CodecError) as info:
        decode_message(pack(obj))
    assert info.value.field == "envelope"


def test_message_over_the_size_limit_is_refused() -> None:
    over = encode_message(Message("t", {"blob": b"\x01" * MAX_MESSAGE_BYTES}))
    assert len(over) > MAX_MESSAGE_BYTES
    with pytest.raises(CodecError) as info:
        decode_message(over)
    assert info.value.field == "size"
    assert str(MAX_MESSAGE_BYTES) in info.value.message


def test_message_of_exactly_the_size_limit_is_accepted() -> None:
    base = len(encode_message(Message("t", {"blob": b""})))
    # bin32 header is 5 bytes, bin8 is 2: grow the blob until the encoding is exactly the limit
    blob_len = MAX_MESSAGE_BYTES - base - 3
    data = encode_message(Message("t", {"blob": b"\x01" * blob_len}))
    assert len(data) == MAX_MESSAGE_BYTES
    assert len(decode_message(data).payload["blob"]) == blob_len
    with pytest.raises(CodecError) as info:
        decode_message(data, max_bytes=MAX_MESSAGE_BYTES - 1)
    assert info.value.field == "size"


def test_payload_nesting_is_bounded() -> None:
    def nested(depth: int) -> dict[str, Any]:
        node: Any = 0
        for i in range(depth - 1):  # the payload map itself is level 1
            node = {"a": node} if i % 2 else [node]
        return {"x": node}

    assert decode_message(encode_message(Message("t", nested(MAX_PAYLOAD_DEPTH))))
    with pytest.raises(CodecError) as info:
        decode_message(encode_message(Message("t", nested(MAX_PAYLOAD_DEPTH + 1))))
    assert info.value.field == "payload"


@pytest.mark.parametrize("depth", [900, 1000, 1023, 5000])
def test_deeply_nested_envelope_fields_give_codec_error(depth: int) -> None:
    # a ~1000-deep array in seq used to escape as RecursionError (repr of the value in the message)
    nested = b"\x91" * depth + b"\x00"
    head = pack({"v": 1, "topic": "t", "t_ns": 0, "src": "", "payload": {}})
    data = bytes([head[0] + 1]) + head[1:] + pack("seq") + nested  # one more key in the fixmap
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.field in ("seq", "bytes")
    payload_deep = pack({"v": 1, "topic": "t", "seq": 0, "t_ns": 0, "src": ""})
    data = bytes([payload_deep[0] + 1]) + payload_deep[1:] + pack("payload") + b"\x81\xa1x" + nested
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.field in ("payload", "bytes")


def test_huge_bad_value_is_not_echoed_in_full() -> None:
    with pytest.raises(CodecError) as info:
        decode_message(pack(valid_envelope(seq="9" * 500_000)))
    assert info.value.field == "seq"
    assert len(info.value.message) <= ERROR_MESSAGE_MAX_CHARS


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        pack(valid_envelope()) + b"\x00",  # trailing bytes
        pack(valid_envelope())[:-1],  # truncated
        b"\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
        b"\xdd\x7f\xff\xff\xff",  # array32 claiming 2**31 items
        b"\xdf\x7f\xff\xff\xff",  # map32 claiming 2**31 pairs
        pack(msgpack.ExtType(5, b"abc")),  # ext types are not part of the protocol
        pack({1: 2}),  # non-str map key
        pack(valid_envelope(payload={3: "x"})),
        pack(valid_envelope(payload={"when": msgpack.Timestamp(1, 0)})),
    ],
)
def test_malformed_bytes_give_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.field in ("bytes", "envelope", "payload")


def test_every_prefix_of_a_message_is_refused() -> None:
    data = encode_message(Message("eps.rail.set", {"rail": "payload", "on": True, "x": [1.5, b"\x00"]},
                                  seq=1, t_ns=2, src="b"))
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode_message(data[:n])


@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_codec_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except CodecError as exc:
        assert exc.field
    else:
        assert isinstance(msg, Message)


@given(st.dictionaries(st.sampled_from(["v", "topic", "seq", "t_ns", "src", "payload", "x"]), values))
def test_random_maps_never_raise_anything_but_codec_error(env: dict[str, Any]) -> None:
    try:
        decode_message(pack(env))
    except CodecError as exc:
        assert exc.field


# -- encoding ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [{"x": object()}, {"x": {1, 2}}, {"x": 1 << 64}, {"x": "\ud800"}])
def test_unencodable_payload_gives_codec_error(payload: dict[str, Any]) -> None:
    with pytest.raises(CodecError) as info:
        encode_message(Message("t", payload))
    assert info.value.field == "payload"


def test_encoding_is_deterministic() -> None:
    msg = Message("eps.telemetry", {"bus_v": 7.4, "rails": {"payload": True}}, seq=5, t_ns=10, src="emulator")
    assert encode_message(msg) == encode_message(Message(**{k: getattr(msg, k) for k in msg.__slots__}))


# -- replies and errors on the wire ---------------------------------------------------------------------

def test_reply_quotes_the_request_and_round_trips() -> None:
    req = Message("eps.rail.set", {"rail": "nope", "on": True}, seq=41, t_ns=5, src="board")
    err = CodecError("eps.rail.set: payload.rail: unknown rail", field="payload.rail",
                     valid=["payload", "heater"])
    rep = req.reply(ok=False, t_ns=6, src="emulator", seq=9, error=err.to_wire())
    assert rep.topic == "reply"
    assert rep.payload == {"id": 41, "re": "eps.rail.set", "ok": False,
                           "error": {"code": "codec", "message": err.message, "field": "payload.rail",
                                     "valid": ["payload", "heater"]}}
    back = decode_message(encode_message(rep))
    assert back == rep
    Reply.model_validate(back.payload)  # the documented reply schema accepts it
    ok = req.reply(ok=True, t_ns=6, src="emulator", data={"rail": "payload"})
    assert ok.payload == {"id": 41, "re": "eps.rail.set", "ok": True, "data": {"rail": "payload"}}
    assert "error" not in ok.payload


def test_error_without_field_omits_field_and_valid() -> None:
    assert EmulatorError("boom").to_wire() == {"code": "error", "message": "boom"}


def test_repr_names_topic_seq_time_and_payload() -> None:
    text = repr(Message("eps.rail.set", {"on": True}, seq=3, t_ns=17, src="board"))
    assert text == "Message(topic='eps.rail.set', seq=3, t_ns=17, src='board', payload={'on': True})"


def _error_codes() -> set[str]:
    return {cls.code for cls in vars(errors_module).values()
            if isinstance(cls, type) and issubclass(cls, EmulatorError)}


def test_error_codes_are_unique() -> None:
    classes = [cls for cls in vars(errors_module).values()
               if isinstance(cls, type) and issubclass(cls, EmulatorError)]
    assert len({cls.code for cls in classes}) == len(classes)


def test_protocol_doc_lists_every_error_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    missing = _error_codes() - listed
    assert not missing, f"docs/protocol.md lacks error codes {sorted(missing)}"

"""msgpack encoding of :class:`Message` envelopes (sans-IO).

::

    +--------------------------- msgpack map -----------------------------+
    | "topic": str  "v": int  "seq": int  "t_ns": int  "src": str          |
    | "payload": map (msgpack primitives: nil bool int float str bin       |
    |            array map)                                                |
    +----------------------------------------------------------------------+

:func:`decode_message` is strict and total: for any input bytes it returns a
:class:`Message` or raises :class:`CodecError` naming the field; nothing else escapes it.
Payload validation against the topic catalogue is a separate step
(:meth:`Catalogue.validate`) so telemetry subscribers can skip it.
"""

from __future__ import annotations

import contextlib
import reprlib
import threading
from typing import Any

import msgpack
import ormsgpack

from emulator.errors import CodecError
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message

_ENVELOPE_KEYS = ("v", "topic", "seq", "t_ns", "src", "payload")
_ENVELOPE_KEY_SET = frozenset(_ENVELOPE_KEYS)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
#: Deepest nesting of maps/arrays accepted in a payload (the payload map itself is level 1).
#: msgpack itself nests ~1000 deep, deeper than Python's repr and pydantic can follow, so a
#: hostile payload could otherwise crash whoever logs or validates the message.
MAX_PAYLOAD_DEPTH = 32
#: Most maps + arrays a request may hold. A 1 MiB message of empty arrays is a million Python lists
#: (~60 MB): requests are small (the largest command has a few dozen containers), so the server
#: stops decoding past this many and refuses the request.
MAX_REQUEST_CONTAINERS = 1024


def encode_message(msg: Message) -> bytes:
    """Encode one envelope. Raises :class:`CodecError` if the payload is not msgpack-able."""
    return encode_envelope(msg.topic, msg.payload, msg.seq, msg.t_ns, msg.src, msg.v)


#: one msgpack Packer per thread, reused (building one per message costs a fifth of encoding a telemetry payload;
#: a Packer is not thread-safe, and it empties itself after an error)
_packers = threading.local()


def encode_envelope(topic: str, payload: dict[str, Any], seq: int, t_ns: int, src: str,
                    v: int = PROTOCOL_VERSION) -> bytes:
    """:func:`encode_message` without a :class:`Message` (the emulator's publishing path).

    ormsgpack packs the plain types (str keys, str, int, float, bool, None, bytes, list, tuple, dict) 2-3x faster
    than msgpack and writes the same bytes (tests/unit/test_codec.py checks it on generated payloads); what it
    refuses (numpy scalars, float subclasses, non-str keys, ints beyond 64 bits, deep nesting) goes to msgpack, so
    the bytes and the errors are msgpack's in every case.
    """
    envelope = {"topic": topic, "v": v, "seq": seq, "t_ns": t_ns, "src": src, "payload": payload}
    try:
        return ormsgpack.packb(envelope)
    except TypeError:
        pass
    try:
        packer = _packers.p
    except AttributeError:
        packer = _packers.p = msgpack.Packer(use_bin_type=True)
    try:
        return packer.pack(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {topic!r}: {exc}", field="payload") from None


#: per (topic, version) and per src: the envelope's bytes before ``seq`` and between ``t_ns`` and the payload
_ENVELOPE_HEADS: dict[tuple[str, int], bytes] = {}
_ENVELOPE_SRCS: dict[str, bytes] = {}
_ENVELOPE_CACHE_MAX = 4096


def envelope_parts(topic: str, src: str, v: int = PROTOCOL_VERSION) -> tuple[bytes, bytes]:
    """The constant bytes of ``topic``'s envelopes from ``src``: before ``seq``'s value, and from after ``t_ns``'s
    value to the payload's first byte (every envelope is these, ``seq``, ``"t_ns"``, ``t_ns`` and the payload)."""
    head = _ENVELOPE_HEADS.get((topic, v))
    if head is None:
        if len(_ENVELOPE_HEADS) >= _ENVELOPE_CACHE_MAX:
            _ENVELOPE_HEADS.clear()
        head = _ENVELOPE_HEADS[topic, v] = b"\x86" + ormsgpack.packb({"topic": topic, "v": v})[1:] + b"\xa3seq"
    mid = _ENVELOPE_SRCS.get(src)
    if mid is None:
        if len(_ENVELOPE_SRCS) >= _ENVELOPE_CACHE_MAX:
            _ENVELOPE_SRCS.clear()
        mid = _ENVELOPE_SRCS[src] = b"\xa3src" + ormsgpack.packb(src) + b"\xa7payload"
    return head, mid


#: what separates an envelope's ``seq`` value from its ``t_ns`` value
T_NS_KEY = b"\xa4t_ns"


def encode_envelope_packed(topic: str, payload: bytes, seq: int, t_ns: int, src: str,
                           v: int = PROTOCOL_VERSION) -> bytes:
    """:func:`encode_envelope` of a payload already encoded (``payload``: the msgpack map's bytes, say from a
    :class:`~emulator.protocol.templates.PayloadTemplate`): the same bytes, the envelope's keys written once per
    topic."""
    head, mid = _ENVELOPE_HEADS.get((topic, v)), _ENVELOPE_SRCS.get(src)
    if head is None or mid is None:  # (looked up here: a call less per message)
        head, mid = envelope_parts(topic, src, v)
    return b"".join((head, ormsgpack.packb(seq), T_NS_KEY, ormsgpack.packb(t_ns), mid, payload))


class _TooManyContainers(Exception):
    pass


def _container_budget(limit: int) -> Any:
    left = [limit]

    def count(obj: Any) -> Any:
        left[0] -= 1
        if left[0] < 0:
            raise _TooManyContainers
        return obj

    return count


#: Messages up to this size may take the fast decoder (:func:`canonical_decode`): so few bytes cannot hold an
#: array (65,536) or a map (4,096) as long as msgpack's limits below, nor more containers than bytes.
FAST_DECODE_MAX_BYTES = 4096


def canonical_decode(data: bytes | bytearray | memoryview) -> Any:
    """ormsgpack's decode (about twice msgpack's speed), kept only if ormsgpack encodes the result back to these
    very bytes: then they are one canonical msgpack object, with no trailing bytes and nothing msgpack would read
    otherwise (what the emulator and the Python boards send). None: msgpack decides, and words the error."""
    with contextlib.suppress(Exception):  # whatever ormsgpack refuses, msgpack decides
        obj = ormsgpack.unpackb(data)
        if ormsgpack.packb(obj) == data:
            return obj
    return None


def decode_message(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES,
                   max_containers: int | None = None) -> Message:
    """Decode and check one envelope (shape, types, version, size).

    ``max_containers`` bounds the maps and arrays decoded (the envelope map included): decoding stops as
    soon as the budget is spent, so a hostile message cannot turn 1 MiB of bytes into gigabytes of objects.
    """
    size = len(data)
    if size > max_bytes:
        raise CodecError(f"message of {size} bytes exceeds the limit of {max_bytes} bytes",
                         field="size")
    if size <= FAST_DECODE_MAX_BYTES and (max_containers is None or size <= max_containers):
        obj = canonical_decode(data)
        if obj is not None:
            return envelope_from_obj(obj)
    hooks: dict[str, Any] = {}
    if max_containers is not None:
        hooks["list_hook"] = hooks["object_hook"] = _container_budget(max_containers)
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_str_len=max_bytes, max_bin_len=max_bytes,
            max_array_len=65536, max_map_len=4096, max_ext_len=0, **hooks,
        )
    except _TooManyContainers:
        raise CodecError(f"message holds more than {max_containers} maps and arrays (the limit for a request)",
                         field="payload") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types (ValueError, ExtraData, UnpackValueError, ...)
        raise CodecError(f"not a msgpack message: {type(exc).__name__}: {exc}"[:300], field="bytes") from None
    return envelope_from_obj(obj)


def topic_prefix(topic: str) -> bytes:
    """The first bytes of every encoded envelope of ``topic`` (the map header, the key, the topic string).

    :func:`encode_message` writes ``topic`` first, so a ZeroMQ subscription to these bytes receives that
    topic and no other.
    """
    return msgpack.packb({"topic": topic, "v": 0, "seq": 0, "t_ns": 0, "src": "", "payload": {}})[
        : 7 + len(msgpack.packb(topic))]


def envelope_from_obj(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise CodecError(f"envelope must be a map, got {type(obj).__name__}", field="envelope")
    if obj.keys() != _ENVELOPE_KEY_SET:  # (the usual envelope: one comparison)
        extra = set(obj) - _ENVELOPE_KEY_SET
        if extra:
            raise CodecError(f"unknown envelope field(s) {sorted(map(str, extra))}", field=min(map(str, extra)),
                             valid=list(_ENVELOPE_KEYS))
        for key in _ENVELOPE_KEYS:
            if key not in obj:
                raise CodecError(f"envelope field {key!r} is missing", field=key)
    v = obj["v"]
    if type(v) is not int:
        raise CodecError(f"envelope field 'v' must be an int, got {type(v).__name__}", field="v")
    if v != PROTOCOL_VERSION:
        raise CodecError(f"unsupported protocol version {v}; this emulator speaks version {PROTOCOL_VERSION}",
                         field="v", valid=[PROTOCOL_VERSION])
    topic = obj["topic"]
    if type(topic) is not str or not topic or len(topic) > 128:
        raise CodecError("envelope field 'topic' must be a non-empty str of at most 128 characters",
                         field="topic")
    for key in ("seq", "t_ns"):
        val = obj[key]
        if type(val) is not int or not 0 <= val <= _INT64_MAX:
            # reprlib: the value may be a huge or deeply nested object (plain repr can raise RecursionError)
            raise CodecError(f"envelope field {key!r} must be an int in 0..2**63-1, got {reprlib.repr(val)}",
                             field=key)
    src = obj["src"]
    if type(src) is not str or len(src) > 128:
        raise CodecError("envelope field 'src' must be a str of at most 128 characters", field="src")
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise CodecError(f"envelope field 'payload' must be a map, got {type(payload).__name__}", field="payload")
    if _depth_exceeds(payload, MAX_PAYLOAD_DEPTH):
        raise CodecError(f"payload nests maps/arrays deeper than {MAX_PAYLOAD_DEPTH} levels", field="payload")
    return Message(topic=topic, payload=payload, seq=obj["seq"], t_ns=obj["t_ns"], src=src, v=v)


def _depth_exceeds(obj: dict[Any, Any], limit: int) -> bool:
    """True if maps/arrays nest deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False

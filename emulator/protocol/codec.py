"""msgpack encoding of :class:`Message` envelopes (sans-IO).

::

    +--------------------------- msgpack map -----------------------------+
    | "v": int  "topic": str  "seq": int  "t_ns": int  "src": str          |
    | "payload": map (msgpack primitives: nil bool int float str bin       |
    |            array map)                                                |
    +----------------------------------------------------------------------+

:func:`decode_message` is strict and total: for any input bytes it returns a
:class:`Message` or raises :class:`CodecError` naming the field; nothing else escapes it.
Payload validation against the topic catalogue is a separate step
(:meth:`Catalogue.validate`) so telemetry subscribers can skip it.
"""

from __future__ import annotations

import reprlib
from typing import Any

import msgpack

from emulator.errors import CodecError
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message

_ENVELOPE_KEYS = ("v", "topic", "seq", "t_ns", "src", "payload")
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
#: Deepest nesting of maps/arrays accepted in a payload (the payload map itself is level 1).
#: msgpack itself nests ~1000 deep, deeper than Python's repr and pydantic can follow, so a
#: hostile payload could otherwise crash whoever logs or validates the message.
MAX_PAYLOAD_DEPTH = 32


def encode_message(msg: Message) -> bytes:
    """Encode one envelope. Raises :class:`CodecError` if the payload is not msgpack-able."""
    try:
        return msgpack.packb(
            {"v": msg.v, "topic": msg.topic, "seq": msg.seq, "t_ns": msg.t_ns, "src": msg.src,
             "payload": msg.payload},
            use_bin_type=True,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {msg.topic!r}: {exc}", field="payload") from None


def decode_message(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and check one envelope (shape, types, version, size)."""
    if len(data) > max_bytes:
        raise CodecError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes",
                         field="size")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_str_len=max_bytes, max_bin_len=max_bytes,
            max_array_len=65536, max_map_len=4096, max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types (ValueError, ExtraData, UnpackValueError, ...)
        raise CodecError(f"not a msgpack message: {type(exc).__name__}: {exc}"[:300], field="bytes") from None
    return envelope_from_obj(obj)


def envelope_from_obj(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise CodecError(f"envelope must be a map, got {type(obj).__name__}", field="envelope")
    extra = set(obj) - set(_ENVELOPE_KEYS)
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

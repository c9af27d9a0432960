"""The wire: envelope, codec, COBS framing, topic catalogue and schema version.

The names below are loaded on first use (PEP 562): a board that needs only the envelope and the codec
(``emulator.protocol.envelope``, ``emulator.protocol.codec``) does not import the catalogue and its schemas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.protocol.catalogue import Catalogue, Kind, Payload, Plane, TopicSpec, field
    from emulator.protocol.codec import decode_message, encode_envelope, encode_message
    from emulator.protocol.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message
    from emulator.protocol.framing import FrameDecoder, decode_frame, encode_frame, frame_overhead

_WHERE = {
    **dict.fromkeys(("Catalogue", "Kind", "Payload", "Plane", "TopicSpec", "field"), "catalogue"),
    **dict.fromkeys(("decode_message", "encode_envelope", "encode_message"), "codec"),
    **dict.fromkeys(("MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "Message"), "envelope"),
    **dict.fromkeys(("FrameDecoder", "decode_frame", "encode_frame", "frame_overhead"), "framing"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Catalogue",
    "FrameDecoder",
    "Kind",
    "Message",
    "Payload",
    "Plane",
    "TopicSpec",
    "decode_frame",
    "decode_message",
    "encode_envelope",
    "encode_frame",
    "encode_message",
    "field",
    "frame_overhead",
]

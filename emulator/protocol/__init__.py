"""The wire: envelope, codec, COBS framing, topic catalogue and schema version."""

from __future__ import annotations

from emulator.protocol.catalogue import Catalogue, Kind, Payload, Plane, TopicSpec, field
from emulator.protocol.codec import decode_message, encode_envelope, encode_message
from emulator.protocol.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message
from emulator.protocol.framing import FrameDecoder, decode_frame, encode_frame, frame_overhead

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

"""The message envelope every plane and every medium carries.

On the wire an envelope is one msgpack map (see :mod:`emulator.protocol.codec`)::

    {"v": 1, "topic": "eps.telemetry", "seq": 42, "t_ns": 123000000000,
     "src": "emulator", "payload": {...}}

``seq`` is per-sender and increasing; on a request it is the request id that the reply
quotes back in ``payload.id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Envelope schema version. Bump on any incompatible change to the envelope or a topic.
PROTOCOL_VERSION = 1

#: Largest encoded envelope accepted, in bytes (a generous bound on the biggest
#: telemetry or job payload; a bigger one is refused so a bad length cannot exhaust memory).
MAX_MESSAGE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Message:
    """One envelope. ``payload`` holds msgpack primitives only (no objects, no pickles)."""

    topic: str
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    t_ns: int = 0
    src: str = ""
    v: int = PROTOCOL_VERSION

    def reply(self, *, ok: bool, t_ns: int, src: str, seq: int = 0, data: dict[str, Any] | None = None,
              error: dict[str, Any] | None = None) -> Message:
        """The ``reply`` envelope answering this request."""
        payload: dict[str, Any] = {"id": self.seq, "re": self.topic, "ok": ok}
        if data is not None:
            payload["data"] = data
        if error is not None:
            payload["error"] = error
        return Message(topic="reply", payload=payload, seq=seq, t_ns=t_ns, src=src)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, seq={self.seq}, t_ns={self.t_ns}, src={self.src!r}, "
                f"payload={self.payload!r})")

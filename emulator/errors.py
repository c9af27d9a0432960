"""Every error flatsat raises on purpose.

::

    EmulatorError
     +-- ConfigError                      (also ValueError)  bad config key, type or value
     +-- TransportError
     |    +-- InvalidTransportURL         (also ValueError)  bad grammar / unknown kind / unknown option
     |    +-- TransportUnavailableError                      known kind, missing dependency or device
     |    +-- TransportClosedError                           *we* closed it
     |    +-- TransportBrokenError                           peer/cable/process went away
     |    +-- TransportTimeoutError       (also TimeoutError) wall-clock I/O deadline
     +-- ProtocolError
     |    +-- FramingError                                   strict decode helpers only; links count+drop
     |    +-- CodecError                                     bad envelope, unknown topic, bad field
     |    +-- RateLimitedError                               a peer over its request rate limit
     +-- CommandError                                        a valid message the model refuses
     +-- ModelError                                          physics misuse (bad state or input)
     +-- InstrumentError                                     a bench instrument refused a command or the start
     |    +-- InstrumentLostError                            its connection broke (or it stopped answering)
     +-- SimTimeoutError                  (also TimeoutError) sim-time deadline

Errors that concern one field carry ``field`` (a dotted path such as ``payload.rail``) and,
where a finite set is valid, ``valid``; :meth:`EmulatorError.to_wire` turns them into the
``error`` object of a reply so a board sees the same precise message a Python user sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal


class EmulatorError(Exception):
    """Base class. ``code`` is a short machine-readable name used on the wire."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        valid: Iterable[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.valid = list(valid) if valid is not None else None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.valid is not None:
            out["valid"] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in self.valid]
        return out


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration: where (a dotted key path), what, what would be valid, and which
    override (a dotted key given on the command line, a scenario or a campaign) it comes from, if any. ``kind``
    says what is wrong: the ``key`` itself (unknown, unreachable) or the ``value`` given for it."""

    path: str
    message: str
    valid: list[Any] | None = None
    override: str | None = None
    kind: Literal["key", "value"] = "value"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(EmulatorError, ValueError):
    """A configuration that cannot run. ``problems`` lists each thing wrong, located (no need to parse text)."""

    code = "config"

    def __init__(self, message: str, *, field: str | None = None, valid: Iterable[Any] | None = None,
                 problems: Iterable[ConfigProblem] | None = None) -> None:
        super().__init__(message, field=field, valid=valid)
        self.problems: list[ConfigProblem] = list(problems) if problems is not None else \
            [ConfigProblem(field or "", message, self.valid)]


class TransportError(EmulatorError):
    code = "transport"


class InvalidTransportURL(TransportError, ValueError):
    code = "invalid_url"


class TransportUnavailableError(TransportError):
    code = "transport_unavailable"


class TransportClosedError(TransportError):
    code = "transport_closed"


class TransportBrokenError(TransportError):
    code = "transport_broken"


class TransportTimeoutError(TransportError, TimeoutError):
    code = "transport_timeout"


class ProtocolError(EmulatorError):
    code = "protocol"


class FramingError(ProtocolError):
    code = "framing"


class CodecError(ProtocolError):
    code = "codec"


class RateLimitedError(ProtocolError):
    """A peer sent more requests than its rate limit allows; the rest were dropped unread."""

    code = "rate_limited"


class CommandError(EmulatorError):
    """A well-formed command the emulator refuses (unknown rail, board off, clock not in table)."""

    code = "command"


class ModelError(EmulatorError):
    code = "model"


class InstrumentError(EmulatorError):
    """A bench instrument (a supply) refused to start, reported an error, or answered nonsense. ``command`` is the
    SCPI line that caused it, where one did."""

    code = "instrument"

    def __init__(self, message: str, *, command: str | None = None, field: str | None = None,
                 valid: Iterable[Any] | None = None) -> None:
        super().__init__(message, field=field, valid=valid)
        self.command = command


class InstrumentLostError(InstrumentError):
    code = "instrument_lost"


class SimTimeoutError(EmulatorError, TimeoutError):
    code = "sim_timeout"


def suggest(name: str, valid: Iterable[str]) -> str:
    """A ' (did you mean ...?)' hint for a misspelt name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""One channel of a bench supply over VISA: synchronous, one caller at a time (a worker thread of the bench loop,
or the guard process).

Every line goes through :meth:`Supply.write` / :meth:`Supply.query`: volts and amps are clamped to the hard limits
before a template is formatted (nothing can ask for more), every line is kept in :attr:`Supply.transcript` and
logged at debug level (in a dry run at info level, and nothing is sent), and after every setting the error queue is
read: an instrument error raises :class:`~emulator.errors.InstrumentError` naming the line that caused it.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from typing import Any

from emulator.clock import NS_PER_S, WallSource
from emulator.errors import InstrumentError, InstrumentLostError
from emulator.instruments.config import SupplyConfig
from emulator.instruments.dialects import idn_matches

log = logging.getLogger("flatsat.supply")

#: lines kept per supply (a ring: the newest)
TRANSCRIPT_MAX = 2000
#: errors read from the queue after one line at most (a queue that never empties is itself an error)
ERRORS_MAX = 20
INSTALL_HINT = "pip install 'flatsat[bench]'  (pyvisa + pyvisa-py, pure Python, no vendor VISA library needed)"
_ERR_CODE = re.compile(r"^\s*([+-]?\d+)")


def parse_error(reply: str) -> tuple[int, str]:
    """``+0,"No error"`` / ``-113,"Undefined header"`` / ``0  No Error`` -> (code, text)."""
    m = _ERR_CODE.match(reply)
    if not m:
        return -1, reply.strip()
    return int(m.group(1)), reply.strip()


def parse_float(line: str, reply: str) -> float:
    try:
        value = float(reply.strip().rstrip("VAW"))
    except ValueError:
        raise InstrumentError(f"{line!r} answered {reply.strip()!r}, not a number", command=line) from None
    if not math.isfinite(value):
        raise InstrumentError(f"{line!r} answered {reply.strip()!r}", command=line)
    return value


def parse_bool(reply: str) -> bool:
    return reply.strip().upper() in ("1", "ON")


class Supply:
    """One supply channel. Not thread-safe: one caller at a time."""

    def __init__(self, cfg: SupplyConfig, wall: WallSource | None = None) -> None:
        self.cfg = cfg
        self.dialect = cfg.dialect()
        self.wall = wall or WallSource()
        self.name = cfg.name
        self.transcript: deque[tuple[int, str, str]] = deque(maxlen=TRANSCRIPT_MAX)
        self.idn = ""
        #: settings found at start, restored at exit (None: unknown, left as flatsat set it)
        self.saved: dict[str, Any] = {}
        self.clamps = 0
        self.errors: deque[str] = deque(maxlen=50)
        self._res: Any = None
        self._rm: Any = None
        self._gap_ns = round(cfg.gap_s * NS_PER_S)
        self._last_line_ns = 0

    # -- connection ------------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.cfg.dry_run or self._res is not None

    def open(self) -> None:
        if self.cfg.dry_run:
            log.info("%s: dry run: %s is not opened; every line below is logged, not sent", self.name,
                     self.cfg.resource)
            return
        try:
            import pyvisa
        except ImportError as exc:
            raise InstrumentError(f"supply {self.name!r}: pyvisa is not installed ({exc}); {INSTALL_HINT}") from None
        kwargs: dict[str, Any] = {"timeout": round(self.cfg.timeout_s * 1000),
                                  "read_termination": self.cfg.read_termination,
                                  "write_termination": self.cfg.write_termination}
        if self.cfg.baud_rate is not None:
            kwargs["baud_rate"] = self.cfg.baud_rate
        try:
            self._rm = pyvisa.ResourceManager(self.cfg.backend)
            self._res = self._rm.open_resource(self.cfg.resource, **kwargs)
            if self.cfg.resource.upper().endswith("::SOCKET"):
                self._no_delay()
        except Exception as exc:  # noqa: BLE001 (pyvisa raises ValueError, OSError, VisaIOError... for one thing)
            self.close()
            if isinstance(exc, (ImportError, ModuleNotFoundError)) or "backend" in str(exc).lower():
                raise InstrumentError(f"supply {self.name!r}: VISA backend {self.cfg.backend!r} unavailable: {exc}; "
                                      f"{INSTALL_HINT}") from None
            raise InstrumentLostError(f"supply {self.name!r}: cannot open {self.cfg.resource}: "
                                      f"{type(exc).__name__}: {exc}") from None

    def _no_delay(self) -> None:
        """TCP_NODELAY on a raw SCPI socket: else a write that gets no reply, followed by another write, waits for the
        peer's delayed ACK (~40 ms on Linux) under Nagle's algorithm, and "output off, *OPC?" would take 40 ms.
        pyvisa-py 0.8 registers VI_ATTR_TCPIP_NODELAY but its setter raises, so the option is set on the session's
        socket; if neither works the run goes on with a warning (slower sets, same safety)."""
        import socket

        from pyvisa import constants

        try:
            self._res.set_visa_attribute(constants.ResourceAttribute.tcpip_nodelay, constants.VisaBoolean.true)
            return
        except Exception as exc:  # noqa: BLE001 (pyvisa-py raises its own UnknownAttribute here)
            first = exc
        try:
            sock = self._rm.visalib.sessions[self._res.session].interface
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception as exc:  # noqa: BLE001 (another backend: no such attributes)
            log.warning("%s: could not set TCP_NODELAY (%s; %s): back-to-back lines may wait ~40 ms", self.name,
                        first, exc)

    def close(self) -> None:
        """Close this channel's session. The ResourceManager stays open: pyvisa hands every caller the same one
        per backend, and closing it would close every other supply's session too."""
        res = self._res
        self._res = self._rm = None
        if res is not None:
            try:
                res.close()
            except Exception as exc:  # noqa: BLE001 (closing a broken session must not raise)
                log.debug("%s: close: %s", self.name, exc)

    # -- lines -----------------------------------------------------------------------------------------------
    def _pace(self) -> None:
        if self._gap_ns and self._last_line_ns:
            self.wall.block_until(self._last_line_ns + self._gap_ns)

    def write(self, line: str) -> None:
        self.transcript.append((self.wall.now_ns(), ">", line))
        if self.cfg.dry_run:
            log.info("%s (dry run) > %s", self.name, line)
            return
        log.debug("%s > %s", self.name, line)
        self._pace()
        try:
            self._res.write(line)
        except Exception as exc:  # noqa: BLE001 (any I/O failure: the connection is not to be trusted)
            raise self._lost(line, exc) from None
        finally:
            self._last_line_ns = self.wall.now_ns()

    def query(self, line: str) -> str | None:
        """The reply (stripped), or None in a dry run."""
        self.transcript.append((self.wall.now_ns(), ">", line))
        if self.cfg.dry_run:
            log.info("%s (dry run) > %s", self.name, line)
            return None
        self._pace()
        try:
            reply = str(self._res.query(line)).strip()
        except Exception as exc:  # noqa: BLE001 (timeouts, closed sockets, ...: the connection is not to be trusted)
            raise self._lost(line, exc) from None
        finally:
            self._last_line_ns = self.wall.now_ns()
        self.transcript.append((self.wall.now_ns(), "<", reply))
        log.debug("%s < %s", self.name, reply)
        return reply

    def _lost(self, line: str, exc: BaseException) -> InstrumentLostError:
        self.close()
        return InstrumentLostError(f"supply {self.name!r} ({self.cfg.resource}): {line!r} failed: "
                                   f"{type(exc).__name__}: {exc}", command=line)

    def fmt(self, template: str, volts: float = 0.0, amps: float = 0.0) -> str:
        return template.format(ch=self.cfg.channel, volts=volts, amps=amps)

    def _select(self) -> None:
        if self.dialect.select:
            self.write(self.fmt(self.dialect.select))

    def set_line(self, line: str, *, check: bool = True) -> None:
        """Write one setting, then read the error queue (unless ``check`` is False)."""
        self.write(line)
        if check:
            self.check_errors(line)

    def drain_errors(self) -> list[str]:
        """Read the error queue until it is empty: its entries."""
        q = self.dialect.error_query
        if q is None or self.cfg.dry_run:
            return []
        found = []
        for _ in range(ERRORS_MAX):
            reply = self.query(q) or ""
            code, text = parse_error(reply)
            if code == 0:
                break
            found.append(text)
        else:
            found.append(f"... the error queue did not empty after {ERRORS_MAX} reads")
        return found

    def check_errors(self, after: str) -> None:
        """Read the error queue; InstrumentError naming ``after`` (the line just sent) if it held anything."""
        found = self.drain_errors()
        if found:
            msg = f"supply {self.name!r}: {after!r} -> {'; '.join(found)}"
            self.errors.append(msg)
            raise InstrumentError(msg, command=after)

    # -- clamps: nothing exceeds the hard limits ----------------------------------------------------------------
    def clamp_v(self, volts: float, *, warn: bool = True) -> float:
        v = volts if math.isfinite(volts) else 0.0
        out = min(max(v, 0.0), self.cfg.max_v)
        if out != volts and warn:
            self.clamps += 1
            if volts > self.cfg.max_v:
                log.warning("%s: %.3f V asked, clamped to max_v %.3f V", self.name, volts, self.cfg.max_v)
        return out

    def clamp_a(self, amps: float, *, warn: bool = True) -> float:
        a = amps if math.isfinite(amps) else 0.0
        out = min(max(a, 0.0), self.cfg.max_a)
        if out != amps and warn:
            self.clamps += 1
            if amps > self.cfg.max_a:
                log.warning("%s: %.3f A asked, clamped to max_a %.3f A", self.name, amps, self.cfg.max_a)
        return out

    # -- the operations the bench loop and the guard use ------------------------------------------------------
    def identify(self) -> str:
        """``*IDN?``; InstrumentError (a refusal to start) unless it matches the driver."""
        reply = self.query("*IDN?")
        if reply is None:
            log.info("%s: dry run: identity not checked (the %s driver expects /%s/)", self.name, self.cfg.driver,
                     self.dialect.idn)
            return ""
        self.idn = reply
        if not idn_matches(self.dialect, reply):
            raise InstrumentError(
                f"supply {self.name!r}: {self.cfg.resource} says it is {reply!r}, which is not a {self.dialect.title} "
                f"(driver {self.cfg.driver!r} expects /{self.dialect.idn}/): refusing to start. Check the resource "
                "string and the driver", command="*IDN?", field="bench.supply.driver")
        return reply

    def start(self) -> bool:
        """Open, check the identity, clear errors, remember the settings, switch the output off, arm the OVP.
        Returns whether the output was on when flatsat found it."""
        self.open()
        try:
            self.identify()
            d = self.dialect
            if d.clear:
                self.write(d.clear)
            for old in self.drain_errors():
                log.warning("%s: error left in the queue from before flatsat (cleared): %s", self.name, old)
        except InstrumentError:
            self.close()
            raise
        self.saved = self.read_settings()
        was_on = bool(self.saved.get("output"))
        self.output_off()
        if was_on:
            log.warning("%s: the output was ON when flatsat started; switched off before taking over", self.name)
        if self.cfg.ovp and self.dialect.set_ovp:
            self._select()
            for t in self.dialect.set_ovp:
                self.set_line(self.fmt(t, volts=self.clamp_v(self.cfg.max_v)))
        elif self.cfg.ovp:
            log.warning("%s: %s has no over-voltage protection command; max_v %.3f V is enforced by flatsat only",
                        self.name, self.dialect.title, self.cfg.max_v)
        return was_on

    def read_settings(self) -> dict[str, Any]:
        """The channel's set points, OVP level and output state, as far as the dialect can query them (queries
        only: nothing changes)."""
        d = self.dialect
        found: dict[str, Any] = {}
        for key, q, parse in (("voltage_v", d.query_voltage, None), ("current_a", d.query_current, None),
                              ("ovp_v", d.query_ovp, None), ("output", d.query_output, parse_bool)):
            if q is None:
                continue
            self._select()
            line = self.fmt(q)
            reply = self.query(line)
            if reply is None:
                continue
            found[key] = parse(reply) if parse else parse_float(line, reply)
        return found

    def switch_on(self, volts: float, amps: float) -> tuple[float, float]:
        """Set the voltage and the current limit, then the output on; returns what was sent (clamped)."""
        v, a = self.clamp_v(volts), self.clamp_a(amps)
        d = self.dialect
        self._select()
        self.set_line(self.fmt(d.set_current, amps=a))
        self.set_line(self.fmt(d.set_voltage, volts=v))
        for t in d.output_on:
            self.set_line(self.fmt(t))
        return v, a

    def set_voltage(self, volts: float) -> float:
        v = self.clamp_v(volts)
        self._select()
        self.set_line(self.fmt(self.dialect.set_voltage, volts=v))
        return v

    def set_current(self, amps: float) -> float:
        a = self.clamp_a(amps)
        self._select()
        self.set_line(self.fmt(self.dialect.set_current, amps=a))
        return a

    def output_off(self, *, check: bool = True) -> None:
        """Output off, then the acknowledging query (the instrument has done it when it answers), then errors."""
        d = self.dialect
        self._select()
        for t in d.output_off:
            self.write(self.fmt(t))
        if d.ack_query:
            self.query(d.ack_query)
        if check:
            self.check_errors(self.fmt(d.output_off[-1]))

    def measure(self) -> tuple[float, float] | None:
        """Measured (volts, amps) at the output; None in a dry run."""
        d = self.dialect
        self._select()
        lv, la = self.fmt(d.measure_voltage), self.fmt(d.measure_current)
        rv = self.query(lv)
        ra = self.query(la)
        if rv is None or ra is None:
            return None
        return parse_float(lv, rv), parse_float(la, ra)

    def restore(self) -> None:
        """Output off, then the set points and OVP found at start (what is unknown stays as flatsat left it)."""
        self.output_off(check=False)
        d, s = self.dialect, self.saved
        problems = []
        for key, template, kw in (("current_a", d.set_current, "amps"), ("voltage_v", d.set_voltage, "volts")):
            if key in s:
                self._select()
                # restored within the hard limits too (the output is off; nothing exceeds them, ever)
                value = self.clamp_v(s[key], warn=False) if kw == "volts" else self.clamp_a(s[key], warn=False)
                line = self.fmt(template, **{kw: value})
                try:
                    self.set_line(line)
                except InstrumentError as exc:
                    if isinstance(exc, InstrumentLostError):
                        raise
                    problems.append(str(exc))
        if "ovp_v" in s and self.cfg.ovp and d.set_ovp:
            self._select()
            for t in d.set_ovp:
                try:
                    self.set_line(self.fmt(t, volts=self.clamp_v(s["ovp_v"], warn=False)))
                except InstrumentError as exc:
                    if isinstance(exc, InstrumentLostError):
                        raise
                    problems.append(str(exc))
        if problems:
            log.warning("%s: output is off, but restoring the settings found at start failed: %s", self.name,
                        "; ".join(problems))
        self.check_errors("(restoring the settings found at start)")

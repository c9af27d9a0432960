"""Requirement checkers: evaluated while a scenario runs, each ending in a :class:`Verdict`.

A checker sees the run through two calls: :meth:`Checker.on_step` after every physics step
(sim time and the values of the signals it asked for) and :meth:`Checker.on_message` for every
message on either plane (what the emulator published, every request a board or the harness
sent, every reply). :meth:`Checker.finish` gives the verdict: pass or fail, and where and why
(the first violation's sim time, the value and the limit).
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.protocol.envelope import Message
from emulator.series import SignalReader  # noqa: F401 (re-exported: hil.requirements.SignalReader)
from hil.scenario import (
    AlwaysRequirement,
    CountRequirement,
    ExtremumRequirement,
    FinalRequirement,
    MessageFilter,
    ResponseRequirement,
)

NS_PER_S = 1_000_000_000

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


def fmt_t(t_s: float) -> str:
    """Sim time as 'h:mm:ss (N s)' for reports."""
    whole = int(t_s)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d} ({t_s:g} s)"


def fmt_v(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "missing (NaN)"
    return f"{value:.6g}"


@dataclass
class Verdict:
    """The outcome of one requirement."""

    label: str
    kind: str
    passed: bool
    #: one line: why it passed or failed (where, value, limit)
    reason: str
    why: str = ""
    #: sim time of the first violation (or of the decisive value), seconds
    t_s: float | None = None
    value: float | None = None
    limit: float | None = None
    #: the requirement written out (e.g. "always satellite.power.bus_v >= 6")
    text: str = ""
    #: the signal it reads, if any (plots draw it)
    signal: str | None = None
    index: int = 0


@dataclass
class Checker(ABC):
    """Base class; see the module docstring."""

    index: int
    label: str
    why: str
    text: str
    #: signals needed at every step (flattened truth keys)
    signals: tuple[str, ...] = ()
    #: topics this checker wants to see
    topics: frozenset[str] = field(default_factory=frozenset)

    def on_step(self, t_ns: int, values: Mapping[str, float]) -> None:
        return None

    def on_message(self, t_ns: int, direction: str, msg: Message) -> None:
        return None

    @abstractmethod
    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        """The verdict at the end of the run."""

    def _verdict(self, passed: bool, reason: str, **kw: Any) -> Verdict:
        return Verdict(label=self.label, kind=self.kind, passed=passed, reason=reason, why=self.why, text=self.text,
                       index=self.index, **kw)

    kind = "?"


def _holds(op: str, value: float, limit: float) -> bool:
    return not math.isnan(value) and OPERATORS[op](value, limit)


class AlwaysChecker(Checker):
    kind = "always"

    def __init__(self, index: int, req: AlwaysRequirement) -> None:
        after = f" (from t={req.after:g} s)" if req.after else ""
        text = f"always {req.signal} {req.op} {req.value:g}{after}"
        super().__init__(index, req.label or text, req.why, text, signals=(req.signal,))
        self.req = req
        self.after_ns = round(req.after * NS_PER_S)
        self.checked = 0
        self.violations = 0
        self.first: tuple[float, float] | None = None
        self.worst: tuple[float, float] | None = None
        self.lo = math.inf
        self.hi = -math.inf
        self._last: tuple[int, bool] | None = None  # (t_ns, violated) of the last check

    def on_step(self, t_ns: int, values: Mapping[str, float]) -> None:
        if t_ns < self.after_ns:
            return
        v = values.get(self.req.signal, math.nan)
        # the runner checks again at the same sim time after a timeline action changed the state:
        # that is the same step, counted once (and once in violation)
        again = self._last is not None and self._last[0] == t_ns
        if again and self._last is not None and self._last[1]:
            return
        if not again:
            self.checked += 1
        self._last = (t_ns, False)
        if not math.isnan(v):
            self.lo, self.hi = min(self.lo, v), max(self.hi, v)
        if _holds(self.req.op, v, self.req.value):
            return
        self.violations += 1
        self._last = (t_ns, True)
        t_s = t_ns / NS_PER_S
        if self.first is None:
            self.first = (t_s, v)
        if self.worst is None or abs(_nan0(v) - self.req.value) > abs(_nan0(self.worst[1]) - self.req.value):
            self.worst = (t_s, v)

    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        r = self.req
        if self.first is None:
            rng = f"; range {fmt_v(self.lo)} .. {fmt_v(self.hi)}" if self.lo <= self.hi else ""
            return self._verdict(True, f"held at all {self.checked} steps checked{rng}", signal=r.signal,
                                 limit=r.value)
        t_s, v = self.first
        worst = ""
        if self.worst is not None and self.worst != self.first:
            worst = f"; worst {fmt_v(self.worst[1])} at t={fmt_t(self.worst[0])}"
        return self._verdict(False, f"{r.signal} {r.op} {r.value:g} violated first at t={fmt_t(t_s)}: value "
                                    f"{fmt_v(v)}, limit {r.value:g}; {self.violations} of {self.checked} steps in "
                                    f"violation{worst}", t_s=t_s, value=v, limit=r.value, signal=r.signal)


def _nan0(v: float) -> float:
    return math.inf if math.isnan(v) else v


class FinalChecker(Checker):
    kind = "final"

    def __init__(self, index: int, req: FinalRequirement) -> None:
        text = f"at the end {req.signal} {req.op} {req.value:g}"
        super().__init__(index, req.label or text, req.why, text, signals=(req.signal,))
        self.req = req

    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        r = self.req
        v = values.get(r.signal, math.nan)
        t_s = t_ns / NS_PER_S
        if _holds(r.op, v, r.value):
            return self._verdict(True, f"{r.signal} = {fmt_v(v)} at the end (t={fmt_t(t_s)})", value=v,
                                 limit=r.value, signal=r.signal)
        return self._verdict(False, f"{r.signal} = {fmt_v(v)} at the end (t={fmt_t(t_s)}), required "
                                    f"{r.op} {r.value:g}", t_s=t_s, value=v, limit=r.value, signal=r.signal)


class ExtremumChecker(Checker):
    def __init__(self, index: int, req: ExtremumRequirement) -> None:
        text = f"{req.kind} of {req.signal} over the run {req.op} {req.value:g}"
        super().__init__(index, req.label or text, req.why, text, signals=(req.signal,))
        self.req = req
        self.kind = req.kind
        self.best: tuple[float, float] | None = None  # (t_s, value)
        self.missing_at: float | None = None

    def on_step(self, t_ns: int, values: Mapping[str, float]) -> None:
        v = values.get(self.req.signal, math.nan)
        if math.isnan(v):
            if self.missing_at is None:
                self.missing_at = t_ns / NS_PER_S
            return
        if self.best is None or (v > self.best[1] if self.kind == "max" else v < self.best[1]):
            self.best = (t_ns / NS_PER_S, v)

    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        r = self.req
        if self.best is None:
            return self._verdict(False, f"{r.signal} never had a value", signal=r.signal, limit=r.value)
        t_s, v = self.best
        if _holds(r.op, v, r.value):
            return self._verdict(True, f"{r.kind} {fmt_v(v)} at t={fmt_t(t_s)}", value=v, limit=r.value,
                                 signal=r.signal)
        return self._verdict(False, f"{r.kind} of {r.signal} was {fmt_v(v)} at t={fmt_t(t_s)}, required "
                                    f"{r.op} {r.value:g}", t_s=t_s, value=v, limit=r.value, signal=r.signal)


_MISSING = object()


def payload_get(payload: Mapping[str, Any], path: str) -> Any:
    """A dotted path into a payload ('data.ok'); a missing key gives a sentinel that equals nothing."""
    node: Any = payload
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def matches(msg: Message, flt: MessageFilter) -> bool:
    if msg.topic != flt.topic:
        return False
    return all(_equal(payload_get(msg.payload, k), v) for k, v in flt.where.items())


def _equal(got: Any, want: Any) -> bool:
    if got is _MISSING:
        return False
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    return bool(got == want)


def _where_text(flt: MessageFilter) -> str:
    if not flt.where:
        return flt.topic
    return f"{flt.topic}(" + ", ".join(f"{k}={v!r}" for k, v in flt.where.items()) + ")"


class ResponseChecker(Checker):
    kind = "response"

    def __init__(self, index: int, req: ResponseRequirement) -> None:
        m = f" with equal {req.match}" if req.match else ""
        text = f"every {_where_text(req.trigger)} answered by {_where_text(req.response)}{m} within {req.within:g} s"
        super().__init__(index, req.label or text, req.why, text,
                         topics=frozenset({req.trigger.topic, req.response.topic}))
        self.req = req
        self.within_ns = round(req.within * NS_PER_S)
        #: open triggers: (t_ns, match value)
        self.open: list[tuple[int, Any]] = []
        self.triggers = 0
        self.answered = 0
        self.slowest_ns = 0
        self.missed: list[tuple[int, Any]] = []
        #: triggers without the ``match`` field (a board that leaves it out): the requirement cannot be checked
        self.unmatchable: list[int] = []

    def on_message(self, t_ns: int, direction: str, msg: Message) -> None:
        r = self.req
        if self.open and matches(msg, r.response):
            key = payload_get(msg.payload, r.match) if r.match else None
            still = []
            for t0, k in self.open:
                if (r.match is None or _equal(key, k)) and t_ns - t0 <= self.within_ns:
                    self.answered += 1
                    self.slowest_ns = max(self.slowest_ns, t_ns - t0)
                else:
                    still.append((t0, k))
            self.open = still
        if matches(msg, r.trigger):
            self.triggers += 1
            key = payload_get(msg.payload, r.match) if r.match else None
            if key is _MISSING:
                self.unmatchable.append(t_ns)
            else:
                self.open.append((t_ns, key))

    def on_step(self, t_ns: int, values: Mapping[str, float]) -> None:
        if self.open and t_ns - self.open[0][0] > self.within_ns:
            still = []
            for t0, k in self.open:
                (self.missed if t_ns - t0 > self.within_ns else still).append((t0, k))
            self.open = still

    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        self.on_step(t_ns, values)
        r = self.req
        late_open = f"; {len(self.open)} still open at the end (window runs past the run)" if self.open else ""
        if self.triggers == 0 and not r.allow_no_trigger:
            return self._verdict(False, f"no {_where_text(r.trigger)} in the whole run, so nothing was tested: "
                                        "check the trigger's topic and where values, or set allow_no_trigger = "
                                        "true if a run without a trigger may pass")
        if self.unmatchable:
            t0 = self.unmatchable[0]
            return self._verdict(False, f"{r.trigger.topic} at t={fmt_t(t0 / NS_PER_S)} has no field {r.match!r} to "
                                        f"match its {r.response.topic} by ({len(self.unmatchable)} of "
                                        f"{self.triggers} trigger(s) lack it): the sender leaves it out; match a "
                                        "field every trigger carries, or leave match out", t_s=t0 / NS_PER_S)
        if not self.missed:
            slow = f", slowest {self.slowest_ns / NS_PER_S:g} s" if self.answered else ""
            return self._verdict(True, f"{self.triggers} trigger(s), {self.answered} answered in time{slow}"
                                       f"{late_open}")
        t0, key = self.missed[0]
        which = f" ({r.match}={key!r})" if r.match else ""
        t_s = (t0 + self.within_ns) / NS_PER_S
        return self._verdict(False, f"{r.trigger.topic} at t={fmt_t(t0 / NS_PER_S)}{which} got no "
                                    f"{_where_text(r.response)} within {r.within:g} s; {len(self.missed)} of "
                                    f"{self.triggers} trigger(s) missed{late_open}", t_s=t_s,
                             limit=r.within)


class CountChecker(Checker):
    kind = "count"

    def __init__(self, index: int, req: CountRequirement) -> None:
        self.flt = MessageFilter(topic=req.topic, where=req.where)
        text = f"count of {_where_text(self.flt)} {req.op} {req.value}"
        super().__init__(index, req.label or text, req.why, text, topics=frozenset({req.topic}))
        self.req = req
        self.count = 0
        self.last_t_ns: int | None = None

    def on_message(self, t_ns: int, direction: str, msg: Message) -> None:
        if matches(msg, self.flt):
            self.count += 1
            self.last_t_ns = t_ns

    def finish(self, t_ns: int, values: Mapping[str, float]) -> Verdict:
        r = self.req
        if OPERATORS[r.op](self.count, r.value):
            return self._verdict(True, f"counted {self.count}", value=self.count, limit=r.value)
        return self._verdict(False, f"counted {self.count} {_where_text(self.flt)} by the end "
                                    f"(t={fmt_t(t_ns / NS_PER_S)}), required {r.op} {r.value}",
                             value=self.count, limit=r.value)


def make_checkers(requirements: list[tuple[int, Any]]) -> list[Checker]:
    """One checker per requirement of a :class:`~hil.scenario.Scenario` (its ``requirements`` list)."""
    out: list[Checker] = []
    for i, req in requirements:
        if isinstance(req, AlwaysRequirement):
            out.append(AlwaysChecker(i, req))
        elif isinstance(req, FinalRequirement):
            out.append(FinalChecker(i, req))
        elif isinstance(req, ExtremumRequirement):
            out.append(ExtremumChecker(i, req))
        elif isinstance(req, ResponseRequirement):
            out.append(ResponseChecker(i, req))
        elif isinstance(req, CountRequirement):
            out.append(CountChecker(i, req))
        else:  # pragma: no cover (the scenario schema admits nothing else)
            raise TypeError(f"unknown requirement {req!r}")
    return out

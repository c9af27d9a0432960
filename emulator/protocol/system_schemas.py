"""The schemas of the runtime's own topics (:mod:`emulator.protocol.system`): time, replies, board hello, ground
truth, faults, statistics, and the ``data`` of their replies.

Imported on first use (:class:`emulator.protocol.catalogue.SchemaRef`): :func:`emulator.protocol.system.system_topics`
names them by reference, so a run that never validates one of these messages or renders the docs never defines them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict

from emulator.protocol.catalogue import Payload, field

_field = field


class Empty(Payload):
    pass


class Opaque(Payload):
    """A map whose shape belongs to the models (ground truth, reply data)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, defer_build=True)


class ErrorInfo(Payload):
    code: str = field(doc="error class, e.g. `codec`, `command`, `config`")
    message: str = field(doc="what is wrong and what would be valid")
    valid: list[Any] | None = field(doc="valid values, where a finite set is valid", default=None)
    field: str | None = _field(doc="dotted path of the offending field, e.g. `payload.rail`", default=None)


class Reply(Payload):
    id: int = field(doc="`seq` of the request this answers (0 if the request could not be decoded)", ge=0)
    re: str = field(doc="topic of the request (`?` if it could not be decoded)")
    ok: bool = field(doc="true: done; false: refused, nothing changed")
    data: dict[str, Any] | None = field(doc="result, shape per command", default=None)
    error: ErrorInfo | None = field(doc="why it was refused", default=None)


class SimClockTelemetry(Payload):
    t_ns: int = field("ns", "sim time since the scenario epoch", ge=0)
    utc: str = field(doc="sim time as ISO 8601 UTC")
    mode: Literal["realtime", "scaled", "afap", "lockstep"] = field(doc="clock mode")
    speed: float = field(doc="wall-clock multiplier (realtime/scaled)", gt=0)
    paused: bool = field(doc="true while paused")
    lag_s: float = field("s", "how late the last paced step was released", ge=0)
    max_lag_s: float = field("s", "largest lag so far", ge=0)
    overruns: int = field(doc="paced steps released more than one step late", ge=0)
    steps: int = field(doc="physics steps so far", ge=0)


class SimWaiting(Payload):
    t_ns: int = field("ns", "sim time at which a lockstep clock is waiting for `step`", ge=0)


class BoardHello(Payload):
    name: str = field(doc="board name, e.g. `jetson-orin-1`", min_length=1, max_length=64)
    version: str = field(doc="board software version", default="", max_length=64)
    capabilities: list[str] = field(doc="optional features the board implements", default_factory=list,
                                    max_length=64)
    telemetry_rates_hz: dict[str, float] = field(
        "Hz", "the most board-plane telemetry this board needs, topic -> rate (e.g. one sample per control turn: "
        "0.1 Hz for 10 s turns; 0: none); the board plane sends each topic at the fastest rate any board that "
        "said hello needs (a board that names no rate for it: the run's), never faster than the run's rate; "
        "topics the run does not send are left off", default_factory=dict, max_length=64)


class BoardLink(Payload):
    rtt_p50_ms: float = field("ms", "median request round trip the board measured", ge=0)
    rtt_p99_ms: float = field("ms", "99th percentile round trip", ge=0)
    rtt_max_ms: float = field("ms", "largest round trip", ge=0)
    requests: int = field(doc="requests the figures cover", ge=0)
    lag_s: float = field("s", "how far behind the emulator's sim time the board's newest telemetry was", ge=0)
    timeouts: int = field(doc="waits for a reply that ran out (each checked with a ping)", default=0, ge=0)
    retries: int = field(doc="requests sent again (same seq) after a proven loss", default=0, ge=0)
    lost: int = field(doc="requests given up (no reply will come; not repeated)", default=0, ge=0)
    resyncs: int = field(doc="lockstep turns taken after a lost `sim.waiting` (the clock, asked, was waiting)",
                         default=0, ge=0)
    link_errors: int = field(doc="errors of the board's link (send failed, peer gone), survived", default=0, ge=0)
    reconnects: int = field(doc="times the board opened its link again", default=0, ge=0)


class BoardStep(Payload):
    duration_s: float = field("s", "let sim time advance this much (lockstep with lockstep_source = board)",
                              gt=0, le=86400)


#: the longest span of sim time a command can name, ten years (sim times are ns in 64 bits: 292 years)
LONGEST_SPAN_S = 10 * 365 * 86400


class ClockStep(Payload):
    duration_s: float = field("s", "advance this much sim time, then wait / pause again", gt=0, le=LONGEST_SPAN_S)


class ClockRunUntil(Payload):
    t_s: float = field("s", "sim time since the epoch to run to, then pause", gt=0, le=LONGEST_SPAN_S)


class ClockSpeed(Payload):
    speed: float = field(doc="wall-clock multiplier; 1 is real time", ge=1e-3, le=1e6)


class ClockMode(Payload):
    mode: Literal["realtime", "scaled", "afap", "lockstep"] = field(doc="new clock mode")
    speed: float | None = field(doc="multiplier for `scaled`", default=None, ge=1e-3, le=1e6)


class FaultInject(Payload):
    name: str = field(doc="fault name from `fault.list`")
    params: dict[str, Any] = field(doc="fault parameters (schema per fault, see `fault.list`)",
                                   default_factory=dict)
    duration_s: float | None = field("s", "clear automatically after this long; omit for until cleared",
                                     default=None, gt=0, le=LONGEST_SPAN_S)


class FaultClear(Payload):
    fault_id: int = field(doc="id returned by `fault.inject`", ge=1)


class BoardCommand(Payload):
    topic: str = field(doc="a board-plane command topic, e.g. `eps.rail.set` (not the board's own session "
                           "topics `board.hello`, `board.step`, `board.link`, `ping`)")
    payload: dict[str, Any] = field(doc="its payload, exactly as the board would send it", default_factory=dict)


class TelemetryFeed(Payload):
    max_hz: float = field("Hz", "each telemetry topic at most this many times a wall second (events: every one)",
                          default=20.0, gt=0, le=1000)
    topics: list[str] | None = field(doc="telemetry and event topics to feed; omit for every one the control "
                                         "plane publishes", default=None, min_length=1, max_length=64)
    lease_s: float = field("s", "the feed ends this long (wall) after the last telemetry.feed that renewed it",
                           default=10.0, ge=1, le=3600)
    stop: bool = field(doc="end this peer's feed now (the other fields are ignored)", default=False)


class SimStop(Payload):
    reason: str = field(doc="why (logged and recorded)", default="stop requested", max_length=200)


# -- reply data (the ``data`` map of an ``ok`` reply), per command -----------------------------------------------
ModeName = Literal["realtime", "scaled", "afap", "lockstep"]


class PingReply(Payload):
    t_ns: int = field("ns", "sim time when the ping was handled", ge=0)


class HelloReply(Payload):
    protocol_version: int = field(doc="the protocol version the emulator speaks (`v`); stop if it is not yours",
                                  ge=1)
    epoch_utc: str = field(doc="UTC instant of sim time 0, ISO 8601 with a `Z`, e.g. `2026-06-21T00:00:00Z`")
    t_ns: int = field("ns", "sim time now", ge=0)
    step_s: float = field("s", "physics step: sim time advances in these steps", gt=0)
    mode: ModeName = field(doc="clock mode of the run")
    lockstep_source: Literal["control", "board"] = field(
        doc="who steps a lockstep clock: `board` (you, with `board.step`) or `control` (the harness)")
    waiting: bool = field(doc="a lockstep clock waits for `board.step` right now: take your first turn at once")
    topics: list[str] = field(doc="the board-plane topics of this satellite")
    rates_hz: dict[str, float] = field(doc="board telemetry topic -> the rate it is published at, after any "
                                          "decimation for the link's budget")
    decimation: float = field(doc="factor by which every board telemetry rate was slowed to fit a serial "
                                  "link's budget (`telemetry.on_budget = \"decimate\"`); 1: none", ge=1)
    duplicate_window: int = field(doc="a repeated (`src`, `seq`) among your last this many requests is answered "
                                      "from a cache, not run again: any request may be repeated with its `seq`",
                                  default=0, ge=0)


class LimitReply(Payload):
    limit_ns: int = field("ns", "sim time the clock may now advance to (it waits there)", ge=0)


class ClockStatusReply(Payload):
    t_ns: int = field("ns", "sim time now", ge=0)
    utc: str = field(doc="sim time as ISO 8601 UTC with a `Z`")
    mode: ModeName = field(doc="clock mode")
    speed: float = field(doc="wall-clock multiplier (realtime/scaled)", gt=0)
    paused: bool = field(doc="true while paused")
    limit_ns: int = field("ns", "lockstep / stepping limit; -1: none")
    steps: int = field(doc="physics steps so far", ge=0)
    lag_s: float = field("s", "how late the last paced step was released", ge=0)
    max_lag_s: float = field("s", "largest lag so far", ge=0)
    overruns: int = field(doc="paced steps released more than one step late", ge=0)
    wall_elapsed_s: float = field("s", "wall time spent stepping (waits and pauses excluded)", ge=0)
    realtime_factor: float = field(doc="sim seconds per wall second of stepping so far", ge=0)


class ActiveFaultInfo(Payload):
    fault_id: int = field(doc="id from `fault.inject`", ge=1)
    name: str = field(doc="fault name")
    params: dict[str, Any] = field(doc="the parameters it was injected with")
    t_ns: int = field("ns", "when it was injected", ge=0)
    until_ns: int = field("ns", "when it clears by itself; -1: until cleared")


class TruthReply(Payload):
    t_ns: int = field("ns", "sim time", ge=0)
    clock: ClockStatusReply = field(doc="as `clock.status`")
    satellite: dict[str, Any] = field(doc="ground truth of every model (shape per satellite; the same as "
                                          "`truth.sample`)")
    faults: list[ActiveFaultInfo] = field(doc="the active faults")


class FaultInfo(Payload):
    name: str = field(doc="fault name for `fault.inject`")
    doc: str = field(doc="what it does")
    params: dict[str, Any] = field(doc="JSON Schema of its `params`")
    clearable: bool = field(doc="`fault.clear` (and `duration_s`) can undo it")


class FaultListReply(Payload):
    faults: list[FaultInfo] = field(doc="every fault this satellite accepts")


class FaultIdReply(Payload):
    fault_id: int = field(doc="id of the fault, for `fault.clear`", ge=1)


class StatsReply(Opaque):
    """Link, clock, command and per-board statistics, for people and dashboards; its keys may grow."""


class TelemetryFeedReply(Payload):
    feeding: bool = field(doc="this peer has a feed now")
    max_hz: float | None = field("Hz", "the feed's rate per telemetry topic", default=None)
    topics: list[str] | None = field(doc="the topics fed (null: every one)", default=None)
    lease_s: float | None = field("s", "renew within this long", default=None)
    ended: bool | None = field(doc="`stop`: a feed was running and has ended", default=None)
    feeds: int = field(doc="feeds this plane sends now (every peer's)", ge=0)


class StopReply(Payload):
    stopping: bool = field(doc="always true: the run stops after this step")


class BoardCommandReply(Payload):
    topic: str = field(doc="the board command that ran")
    data: dict[str, Any] = field(doc="its own reply `data`, as the board would get it (shape per board command)")

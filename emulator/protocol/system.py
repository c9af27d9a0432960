"""Topics owned by the runtime itself: time, replies, board hello, ground truth, faults, statistics.

Their payload classes are in :mod:`emulator.protocol.system_schemas`, imported the first time one is used (a message
validated, the docs rendered); ``from emulator.protocol.system import Reply`` still works.
"""

from __future__ import annotations

from typing import Any

from emulator.protocol.catalogue import Kind, Plane, TopicSpec, schemas_from

_SCHEMAS = "emulator.protocol.system_schemas"
#: the payload classes of the runtime's topics and replies, by name
SCHEMA_NAMES = frozenset((
    "Empty", "Opaque", "ErrorInfo", "Reply", "SimClockTelemetry", "SimWaiting", "BoardHello", "BoardLink",
    "BoardStep", "ClockStep", "ClockRunUntil", "ClockSpeed", "ClockMode", "FaultInject", "FaultClear",
    "BoardCommand", "TelemetryFeed", "SimStop", "PingReply", "HelloReply", "LimitReply", "ClockStatusReply",
    "ActiveFaultInfo", "TruthReply", "FaultInfo", "FaultListReply", "FaultIdReply", "StatsReply",
    "TelemetryFeedReply", "StopReply", "BoardCommandReply"))


_schema, __getattr__ = schemas_from(__name__, _SCHEMAS, SCHEMA_NAMES)


def system_topics() -> list[TopicSpec]:
    ref = _schema  # the payload classes are imported when first used (a message validated, the docs rendered)
    b, c = Plane.BOARD, Plane.CONTROL
    cmd, tel, ev, rep = Kind.COMMAND, Kind.TELEMETRY, Kind.EVENT, Kind.REPLY
    # the schema of each command's reply data
    replies = {
        "board.hello": "HelloReply", "board.step": "LimitReply", "ping": "PingReply", "board.link": "Empty",
        "clock.pause": "ClockStatusReply", "clock.resume": "ClockStatusReply", "clock.step": "LimitReply",
        "clock.run_until": "ClockStatusReply", "clock.set_speed": "ClockStatusReply",
        "clock.set_mode": "ClockStatusReply", "clock.status": "ClockStatusReply", "truth.get": "TruthReply",
        "fault.list": "FaultListReply", "fault.inject": "FaultIdReply", "fault.clear": "FaultIdReply",
        "stats.get": "StatsReply", "sim.stop": "StopReply", "board.command": "BoardCommandReply",
        "telemetry.feed": "TelemetryFeedReply"}

    def spec(topic: str, *args: Any, **kwargs: Any) -> TopicSpec:
        reply = replies.get(topic)
        return TopicSpec(topic, *args, **kwargs, reply=None if reply is None else ref(reply))

    specs = [
        spec("reply", rep, b, ref("Reply"), "Answer to every request, on the plane it came from."),
        spec("sim.clock", tel, b, ref("SimClockTelemetry"), "Sim time, mode and pacing health.", rate_hz=1.0),
        spec("sim.waiting", ev, b, ref("SimWaiting"),
             "A lockstep clock reached its limit and waits for `clock.step` / `board.step`. Everything "
             "published before it is the state at `t_ns`."),
        spec("board.hello", cmd, b, ref("BoardHello"),
             "A board announces itself; the reply carries the epoch, step, mode and protocol version."),
        spec("board.step", cmd, b, ref("BoardStep"),
             "Lockstep driven by the board: allow sim time to advance (only if the run allows it)."),
        spec("ping", cmd, b, ref("Empty"), "Liveness check; the reply carries the sim time."),
        spec("board.link", cmd, b, ref("BoardLink"),
             "The board reports how its link performs (round trips, lag); shown on the control plane.",
             wall_time=True),
        spec("sim.links", tel, c, ref("Opaque"),
             "Link health: per link up/down, reconnects, messages sent and received, drops by reason "
             "(`drops`), requests refused by reason (`refused`); per board (the 32 most recent) the lag of "
             "its requests behind sim time and its reported round trips; per bench supply (`supplies`) its "
             "state and set / readback / rail-cut-to-output-off times. Depends on the wall clock: "
             "recordings keep it in the side file.", rate_hz=1.0, wall_time=True),
        spec("clock.pause", cmd, c, ref("Empty"), "Pause sim time."),
        spec("clock.resume", cmd, c, ref("Empty"), "Resume a paused clock (not lockstep)."),
        spec("clock.step", cmd, c, ref("ClockStep"), "Advance a lockstep or paused clock by a duration."),
        spec("clock.run_until", cmd, c, ref("ClockRunUntil"), "Run to a sim time, then pause (or wait, in lockstep)."),
        spec("clock.set_speed", cmd, c, ref("ClockSpeed"), "Change the wall-clock multiplier at runtime."),
        spec("clock.set_mode", cmd, c, ref("ClockMode"), "Switch clock mode at runtime."),
        spec("clock.status", cmd, c, ref("Empty"), "Clock state and pacing statistics, incl. wall-clock speed."),
        spec("truth.get", cmd, c, ref("Empty"), "Ground truth of every model, the clock and the active faults."),
        spec("truth.sample", tel, c, ref("Opaque"), "Ground truth stream (shape per satellite).", rate_hz=1.0),
        spec("fault.list", cmd, c, ref("Empty"), "The faults this satellite accepts, with parameter schemas."),
        spec("fault.inject", cmd, c, ref("FaultInject"), "Inject a fault now, optionally for a duration."),
        spec("fault.clear", cmd, c, ref("FaultClear"), "Clear an injected fault."),
        spec("fault.changed", ev, c, ref("Opaque"), "A fault was injected or cleared (id, name, params, t_ns; injected: until_ns, -1 until cleared)."),
        spec("stats.get", cmd, c, ref("Empty"), "Link, clock and command statistics."),
        spec("sim.stop", cmd, c, ref("SimStop"), "Stop the run cleanly (the recording is closed)."),
        spec("board.command", cmd, c, ref("BoardCommand"),
             "Run a board-plane command as the board would send it (an operator at the bench, e.g. "
             "`flatsat console`): same validation and handler; the reply's data is `{topic, data}` with "
             "the board command's own reply data. Refusals name fields under `payload.payload`."),
        spec("telemetry.feed", cmd, c, ref("TelemetryFeed"),
             "Send the asking peer its own feed of the control plane's telemetry (each topic at most `max_hz` "
             "times a wall second: a console asks no more than it shows) and every event, beside its "
             "replies; renew it within `lease_s` (section 1.2). Topics only feeds take are not even built "
             "between their samples."),
    ]
    return specs

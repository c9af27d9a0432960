"""Emulator: binds the clock, the spacecraft model, the links and the recorder into one asyncio run.

::

    async with Emulator(model, run_config) as emu:      # links listening, serve tasks running
        await emu.run_for(5820)                          # step physics, publish, answer commands
        await emu.wait_for(lambda: ..., within_s=600)   # sim-time wait; SimTimeoutError on timeout

The runtime knows nothing of the satellite's shape: it collects the model's
:class:`~emulator.models.base.Interface` (telemetry, commands, faults, events), registers
those topics beside its own (:mod:`emulator.protocol.system`) and routes everything by
topic. Every request gets a reply with its id, ``ok`` or a precise error; a bad request
never stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import ormsgpack

from emulator.bounded import LruDict
from emulator.clock import NS_PER_S, QUIET_YIELD_NS, YIELD_NS, ClockMode, SimClock, WallSource
from emulator.config import RunConfig
from emulator.errors import (
    CodecError,
    CommandError,
    ConfigError,
    EmulatorError,
    RateLimitedError,
    SimTimeoutError,
    TransportError,
    suggest,
)
from emulator.models.base import Fault, Interface, SpacecraftModel, Telemetry
from emulator.protocol.catalogue import Catalogue, Kind, Payload, Plane, TopicSpec
from emulator.protocol.codec import (
    T_NS_KEY,
    encode_envelope,
    encode_envelope_packed,
    encode_message,
    envelope_parts,
)
from emulator.protocol.envelope import PROTOCOL_VERSION, Message
from emulator.protocol.system import system_topics
from emulator.protocol.templates import PackedPayload, uint_cells, write_rows
from emulator.transports.base import MAX_FEEDS

if TYPE_CHECKING:  # imported where used: a run without a recording or a serial link needs neither
    from emulator.recorder import Recorder

log = logging.getLogger("flatsat.runtime")

#: called with (t_ns, plane, direction, message) for every message on either plane
MessageObserver = Callable[[int, str, str, Message], None]

SRC = "emulator"
#: clocks that run steps in batches between yields to the event loop (no wall deadline per step)
_BATCHED_MODES = (ClockMode.AFAP, ClockMode.LOCKSTEP)
_NEVER = 1 << 63
#: board-plane topics about the board's own session: not for ``board.command``
BOARD_SESSION_TOPICS = frozenset({"board.hello", "board.step", "board.link", "ping"})
#: telemetry the runtime samples itself (not the model): a batch samples them as it publishes them
_RUNTIME_TOPICS = frozenset({"sim.clock", "sim.links"})
#: an outbox entry's ``peer`` when its data is a run of telemetry messages for its link (a batch's, in order)
_RUN: Any = object()


@dataclass
class _Scheduled:
    telemetry: Telemetry
    period_ns: int
    due_ns: int
    planes: tuple[Plane, ...]
    wanted: bool = True  #: someone receives it (recomputed when subscriptions change)
    feed_only: bool = False  #: only per-peer feeds (telemetry.feed) take it: sampled when one of them is due
    unfed: bool = False  #: a feed-only sample was due and not built (the feeds get one when the clock stops)
    #: (the links subscribed to it, the links with feeds), what :meth:`Emulator._publish` takes (recomputed when
    #: subscriptions change, as ``wanted``)
    targets: tuple[tuple[Any, ...], tuple[Any, ...]] = ((), ())

    def __post_init__(self) -> None:
        self.topic = self.telemetry.spec.topic
        self.sample = self.telemetry.sample


@dataclass
class ActiveFault:
    fault_id: int
    name: str
    params: dict[str, Any]
    t_ns: int
    until_ns: int | None
    fault: Fault = field(repr=False)
    model: Any = field(repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {"fault_id": self.fault_id, "name": self.name, "params": self.params, "t_ns": self.t_ns,
                "until_ns": -1 if self.until_ns is None else self.until_ns}


#: boards remembered by name (hello) and by envelope src (lag, board.link); older ones are evicted
MAX_BOARDS = 32
#: a serve loop lets the event loop run the clock and the other plane after this many requests in a row, or
#: sooner once they took SERVE_BUDGET_NS of wall time (a request costs ~40-60 us): a paced step waits for at
#: most one batch
SERVE_BATCH = 8
SERVE_BUDGET_NS = 200_000
#: faults active at once (each holds a table entry until cleared or expired)
MAX_ACTIVE_FAULTS = 256
#: a board's repeated request (same src and seq among its last this many) is answered from a cache, not run again
#: (board.hello reply ``duplicate_window``): a board that lost a reply may repeat any request, board.step included
DUPLICATE_WINDOW = 64
#: what the loop publishes between two yields to the event loop in afap and lockstep (at most clock.yield_ns of wall
#: time: ~1 ms while requests come, ~4 ms once none has come for QUIET_AFTER_NS) is sent together as it yields:
#: ZeroMQ's I/O thread then wakes and writes to the socket once per batch, not once per message (on loopback TCP
#: ~10 us of CPU per message, more than building it). A full outbox is sent at once; a paced clock (realtime,
#: scaled) sends every message as it is published
OUTBOX_MESSAGES = 1024
#: in afap the outbox is kept across yields for up to this much wall time (a cluster's step is ~1 ms, one step per
#: yield: five messages a batch would still wake ZeroMQ's I/O thread every step); a reply to a request is sent
#: after what was published before it, and a clock that stops sends at once
OUTBOX_NS = 2_000_000
#: while a batched clock runs, the links are re-armed after sending (ServerLink.flush; for ZeroMQ a system call,
#: ~15 us) at most this often in wall time: a new subscriber is seen up to this much later; a clock that stops or
#: a paced one re-arms at once
REARM_NS = 5_000_000
#: closing waits until this long after the last reply was handed to a socket (s), so that it leaves
REPLY_GRACE_S = 0.05
#: at most this many steps in a batch that samples telemetry between its steps (the clock yields sooner anyway)
SAMPLED_STEPS = 256
#: a batched clock yields every clock.YIELD_NS while requests come, and every clock.QUIET_YIELD_NS once none has come
#: for this long (wall time): a peer that talks is answered within ~1 ms, a run watched only by subscribers (or
#: by nobody) takes longer batches, and so does one whose peers only poll now and then (the console: every 2 s)
QUIET_AFTER_NS = 100_000_000


def _next_due(due_ns: int, period_ns: int, now_ns: int) -> int:
    """A topic sampled at ``now_ns`` (due at ``due_ns``) is next due a period later; after a pause or a slow step,
    a period from now (no burst of catch-up samples)."""
    due_ns += period_ns
    return due_ns if due_ns > now_ns else now_ns + period_ns


def _recorded_plane(planes: tuple[Plane, ...]) -> str:
    """The plane a message published on ``planes`` is recorded under (the board's, if it goes there)."""
    return "board" if Plane.BOARD in planes else "control"


def refusal_reason(err: EmulatorError, decoded: bool) -> str:
    """Why a request was refused, as counted in ``stats.get`` / ``sim.links`` ``refused``."""
    if isinstance(err, RateLimitedError):
        return "rate_limited"
    if isinstance(err, CodecError):
        if not decoded:
            return "undecodable"
        return "unknown_topic" if err.field == "topic" else "invalid_field"
    if isinstance(err, CommandError):
        return "refused_by_model"
    return "internal"


def _copy_board(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in entry.items()}


@dataclass
class RuntimeStats:
    commands: dict[str, int] = field(default_factory=lambda: {"board": 0, "control": 0})
    rejected: dict[str, int] = field(default_factory=lambda: {"board": 0, "control": 0})
    #: per plane, refusals by reason (:func:`refusal_reason`)
    refused: dict[str, dict[str, int]] = field(default_factory=lambda: {"board": {}, "control": {}})
    published: int = 0
    boards_seen: LruDict[str, str] = field(default_factory=lambda: LruDict(MAX_BOARDS))  # name -> version
    #: per board (envelope src): lag of its last request behind sim time, and what it reported on board.link
    board_links: LruDict[str, dict[str, float]] = field(default_factory=lambda: LruDict(MAX_BOARDS))
    #: board requests answered from the duplicate cache (a repeat of one already run)
    duplicates: int = 0

    def refuse(self, plane: str, reason: str) -> None:
        self.rejected[plane] += 1
        table = self.refused[plane]
        table[reason] = table.get(reason, 0) + 1


def utc_text(t: Any) -> str:
    """The one UTC time format on the wire: ISO 8601 with a ``Z`` (``2026-06-21T00:00:00Z``)."""
    return t.isoformat().replace("+00:00", "Z")


async def _listen_plane(listen: Callable[[str], Any], url: str, plane: str) -> Any:
    """Listen on a plane's URL; a failure names the plane and the setting that chose the URL."""
    try:
        return await listen(url)
    except TransportError as exc:
        exc.message = f"{plane} plane (links.{plane}, --{plane}-url): {exc.message}"
        exc.args = (exc.message,)
        exc.field = f"links.{plane}"
        raise


class Emulator:
    """One emulated spacecraft on the wire. Use ``async with``."""

    def __init__(self, model: SpacecraftModel, run: RunConfig | None = None, *,
                 wall: WallSource | None = None, board_url: str | None = "", control_url: str | None = "",
                 record_path: str | None = "", meta: dict[str, Any] | None = None) -> None:
        self.run_config = run or RunConfig()
        sim = self.run_config.sim
        self.model = model
        self.clock = SimClock(sim.mode, speed=sim.speed, epoch_utc=sim.epoch_utc, wall=wall)
        self.clock.before_yield = self._before_yield
        self.step_ns = round(sim.step_s * NS_PER_S)
        self.stats = RuntimeStats()
        #: URLs: "" means "from config", None means "no link"
        self._board_url = self.run_config.links.board if board_url == "" else board_url
        self._control_url = self.run_config.links.control if control_url == "" else control_url
        self._record_path = self.run_config.record.path if record_path == "" else record_path
        self._meta = meta or {}
        self.board_link: Any = None
        self.control_link: Any = None
        self.recorder: Recorder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.stop_reason = ""
        #: set when a lockstep run gave up waiting for a step (sim.lockstep_timeout_s): why
        self.stalled: str | None = None
        #: factor by which board telemetry rates were slowed to fit a serial link (1: not slowed)
        self.decimation = 1.0
        self._observers: list[Callable[[int], None]] = []
        #: observers called at the first step end at or after the time they name (add_observer(due_ns=...))
        self._timed_observers: list[tuple[Callable[[int], None], Callable[[], int]]] = []
        self._seq = 0
        self._faults: dict[int, ActiveFault] = {}
        self._fault_heap: list[tuple[int, int]] = []
        self._next_fault_id = 1
        self._waiting_published_at: int | None = None
        self._request_src = ""
        self._request_peer: tuple[Any, bytes] | None = None
        self._fault_list: list[dict[str, Any]] | None = None
        self._message_observers: list[MessageObserver] = []
        self._unflushed = False
        #: (link, encoded envelope, event, peer) published (peer None) or a reply to a peer, or (link, envelopes,
        #: False, _RUN) a batch's telemetry for a link, not yet sent (OUTBOX_MESSAGES, counting a run's messages:
        #: _outbox_run_messages), sent in order
        self._outbox: list[tuple[Any, Any, bool, Any]] = []
        self._outbox_run_messages = 0
        self._clock_column_ok = True  # sim.clock's columns match their samples' encoding (_clock_envelopes)
        self._replied_at = -math.inf  # time.monotonic() of the last replies sent (aclose lets them leave)
        self._replies_due = False  # a call_soon sends the outbox's replies (DEFERRED_REPLIES)
        self._defer_sends = False
        self._rearmed_ns = 0  # wall time of the last re-arm (REARM_NS)
        self._outbox_sent_ns = 0  # wall time the outbox was last sent as the clock yielded (OUTBOX_NS)
        self._request_wall_ns: int | None = None  # wall time of the last request on any plane (QUIET_AFTER_NS)
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._events: list[tuple[str, dict[str, Any]]] = []
        #: bench supplies playing rails ([bench.supply]; emulator.instruments.bench.SupplyBench), started by start()
        self.supplies: Any = None
        self._clock_guards: list[Callable[[str, float], None]] = []

        self.interface = model.interface()
        self.catalogue = Catalogue(system_topics())
        self._board_cmds: dict[str, Callable[[Any], dict[str, Any] | None]] = {}
        self._control_cmds: dict[str, Callable[[Any], dict[str, Any] | None]] = {}
        self._faults_by_name: dict[str, tuple[Fault, Any]] = {}
        self._register(self.interface)
        self._install_system_commands()
        self._schedule: list[_Scheduled] = []
        self._next_due_ns = 0
        #: the next due of a topic a batch cannot sample between its steps (feed-only topics; every topic when
        #: the model cannot sample batches): where a batch that samples must end
        self._next_unbatched_ns = 0
        self._batch_sampling = bool(getattr(model, "batch_sampling", False))
        self._vector_topics = model.sampled_topics() if self._batch_sampling else frozenset()
        self._initial_published = False
        #: per board (peer, src): its last replies by request seq (the duplicate cache), bounded both ways
        self._replies: LruDict[tuple[bytes, str], LruDict[int, Message]] = LruDict(MAX_BOARDS)
        self._audience_seen: tuple[Any, ...] | None = None
        #: board.hello telemetry_rates_hz: per board (bounded), and the board plane's own schedule items once a
        #: board asked for its own rates (topic -> item; the run's period of each)
        self._board_rates: LruDict[str, dict[str, float]] = LruDict(MAX_BOARDS)
        self._board_items: dict[str, _Scheduled] = {}
        self._board_run_period: dict[str, int] = {}
        self._build_schedule()

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> Emulator:
        """Build the model a run spec (:class:`~emulator.config.Config`) describes, of its kind (a satellite, a
        cluster: :mod:`emulator.model_kinds`), and wrap it."""
        meta = {"config": Path(config.source).name, "satellite": config.name}
        if config.kind != "satellite":
            meta["model"] = config.kind
        kwargs.setdefault("meta", meta)
        return cls(config.build_model(), config.run, **kwargs)

    # -- setup -------------------------------------------------------------------------------
    def _register(self, iface: Interface) -> None:
        for tel in iface.telemetry:
            self.catalogue.register(tel.spec)
        for cmd in iface.commands:
            self.catalogue.register(cmd.spec)
            table = self._board_cmds if cmd.spec.plane == Plane.BOARD else self._control_cmds
            table[cmd.spec.topic] = cmd.handle
        for ev in iface.events:
            self.catalogue.register(ev)
        for fault in iface.faults:
            if fault.name in self._faults_by_name:
                raise ConfigError(f"fault {fault.name!r} registered twice", field="faults")
            self._faults_by_name[fault.name] = (fault, None)

    def _build_schedule(self) -> None:
        rates = dict(self.run_config.telemetry.rates_hz)
        known = [t.spec.topic for t in self.interface.telemetry] + ["sim.clock", "truth.sample", "sim.links"]
        for topic in rates:
            if topic not in known:
                raise ConfigError(f"telemetry.rates_hz: unknown topic {topic!r}{suggest(topic, known)}",
                                  field=f"telemetry.rates_hz.{topic}", valid=known)
        items = list(self.interface.telemetry)
        items.append(Telemetry(self.catalogue.get("sim.clock"), self._clock_sample))
        truth_rate = self.run_config.telemetry.truth_rate_hz
        items.append(Telemetry(self.catalogue.get("truth.sample"), self.model.truth))
        items.append(Telemetry(self.catalogue.get("sim.links"), self.links_sample))
        rates.setdefault("truth.sample", truth_rate)
        max_rate = NS_PER_S / self.step_ns
        for tel in items:
            rate = rates.get(tel.spec.topic, tel.spec.rate_hz or 0.0)
            if rate <= 0:
                continue
            if rate > max_rate * (1 + 1e-9):
                log.warning("%s at %.3g Hz is faster than the physics step allows (%.3g Hz); capped",
                            tel.spec.topic, rate, max_rate)
                rate = max_rate
            planes = (Plane.BOARD, Plane.CONTROL) if tel.spec.plane == Plane.BOARD else (Plane.CONTROL,)
            self._schedule.append(_Scheduled(tel, round(NS_PER_S / rate), 0, planes))

    def _install_system_commands(self) -> None:
        b, c = self._board_cmds, self._control_cmds
        b["board.hello"] = self._cmd_hello
        b["board.step"] = self._cmd_board_step
        b["ping"] = lambda p: {"t_ns": self.clock.now_ns()}
        b["board.link"] = self._cmd_board_link
        c["clock.pause"] = lambda p: (self.clock.pause(), self.clock.status())[1]
        c["clock.resume"] = lambda p: (self.clock.resume(), self.clock.status())[1]
        c["clock.step"] = lambda p: {"limit_ns": self.clock.step(round(p.duration_s * NS_PER_S))}
        c["clock.run_until"] = lambda p: (self.clock.run_until(round(p.t_s * NS_PER_S)), self.clock.status())[1]
        c["clock.set_speed"] = lambda p: (self._check_clock(None, p.speed), self.clock.set_speed(p.speed),
                                          self.clock.status())[2]
        c["clock.set_mode"] = lambda p: (self._check_clock(p.mode, p.speed), self.clock.set_mode(p.mode, p.speed),
                                         self.clock.status())[2]
        c["clock.status"] = lambda p: self.clock.status()
        c["truth.get"] = lambda p: self.truth()
        c["fault.list"] = lambda p: {"faults": self.fault_list()}
        c["fault.inject"] = lambda p: {"fault_id": self.inject_fault(p.name, p.params, p.duration_s)}
        c["fault.clear"] = lambda p: (self.clear_fault(p.fault_id), {"fault_id": p.fault_id})[1]
        c["stats.get"] = lambda p: self.stats_snapshot()
        c["sim.stop"] = lambda p: (self.request_stop(p.reason), {"stopping": True})[1]
        c["board.command"] = self._cmd_board_command
        c["telemetry.feed"] = self._cmd_telemetry_feed

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self.run_config.bench.supply:
            # first: a supply that refuses (identity, limits, mode) stops the start before anything listens
            from emulator.instruments.bench import SupplyBench

            self.supplies = SupplyBench(self, self.run_config.bench.supply)
            try:
                await self.supplies.start()
            except BaseException:
                self.supplies = None
                await self.aclose()
                raise
        if self._record_path:
            from emulator.recorder import Recorder

            max_mb = self.run_config.record.max_mb
            self.recorder = Recorder(self._record_path, meta={
                "seed": self.run_config.sim.seed, "epoch_utc": utc_text(self.clock.utc(0)),
                "step_s": self.run_config.sim.step_s, **self._meta},
                max_bytes=None if max_mb is None else round(max_mb * 1e6), now_ns=self.clock.now_ns)
        try:
            if self._board_url or self._control_url:
                from emulator.transports import listen
            if self._board_url:
                self.board_link = await _listen_plane(listen, self._board_url, "board")
                self.board_link.set_topics(s.topic for s in self.catalogue.topics(plane=Plane.BOARD)
                                           if s.kind in (Kind.TELEMETRY, Kind.EVENT))
                self._check_budget(self.board_link)
            if self._control_url:
                self.control_link = await _listen_plane(listen, self._control_url, "control")
                self.control_link.set_topics(s.topic for s in self.catalogue
                                             if s.kind in (Kind.TELEMETRY, Kind.EVENT))
                if self.clock.mode in (ClockMode.REALTIME, ClockMode.SCALED):
                    # a paced run builds the fault schemas now, before its first tick, not when a console first
                    # asks (fault.list), which would hold that tick back by the 10-70 ms pydantic takes; a
                    # fast-forward run keeps the start-up short instead
                    self.fault_list()
            # the t = 0 telemetry before any request is served: a board that connects fast and one that connects
            # late leave the same recording
            await self._publish_initial()
            if self.board_link is not None:
                self._tasks.append(asyncio.create_task(self._serve(self.board_link, Plane.BOARD),
                                                       name="flatsat-serve-board"))
            if self.control_link is not None:
                self._tasks.append(asyncio.create_task(self._serve(self.control_link, Plane.CONTROL),
                                                       name="flatsat-serve-control"))
        except BaseException:
            await self.aclose()
            raise

    async def _publish_initial(self) -> None:
        """The t = 0 telemetry, once: as the emulator starts, or as it first runs if it was never started."""
        clock = self.clock
        if not self._initial_published and clock.now_ns() == 0 and clock.stats.steps == 0:
            self._initial_published = True
            await self._publish_due(0, force=True)
            self.announce_waiting()  # a lockstep clock waits from the start
            self._links_flush()

    def announce_waiting(self) -> None:
        """A lockstep clock that cannot advance says ``sim.waiting`` now (once per sim time), not when the loop next
        looks: a board's requests then land after it, run to run (the start of a run, a board started again while
        the clock waits)."""
        clock = self.clock
        t = clock.now_ns()
        if clock.mode == ClockMode.LOCKSTEP and not clock.may_advance(self.step_ns) and self._waiting_published_at != t:
            self._waiting_published_at = t
            self._publish("sim.waiting", {"t_ns": t}, (Plane.BOARD, Plane.CONTROL), event=True)
            self._links_flush()

    async def aclose(self) -> None:
        self._stop.set()
        self.clock.notify()  # a loop waiting for its turn looks at the stop
        if self.supplies is not None:  # outputs off before anything else
            supplies, self.supplies = self.supplies, None
            await supplies.aclose()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for task in list(self._hook_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        if self._outbox:  # replies and telemetry queued for the next yield (a sim.stop's own reply among them)
            with contextlib.suppress(Exception):
                self._send_outbox()
        # a reply just handed to a socket is written by its I/O thread a moment later; closing at once (LINGER 0)
        # dropped it: the client of a sim.stop saw the server go away instead of the reply
        grace_s = REPLY_GRACE_S - (time.monotonic() - self._replied_at)
        if grace_s > 0:
            await asyncio.sleep(grace_s)
        for link in (self.board_link, self.control_link):
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.aclose()
        if self.recorder is not None:
            self.recorder.close()

    def request_stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            log.info("stopping: %s", reason)
        self._stop.set()
        self.clock.notify()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def wait_stopped(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` (wall) for the run to stop; True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout_s)
        return self._stop.is_set()

    @property
    def board_url(self) -> str | None:
        return str(self.board_link.url) if self.board_link is not None else None

    @property
    def control_url(self) -> str | None:
        return str(self.control_link.url) if self.control_link is not None else None

    def add_clock_guard(self, check: Callable[[str, float], None]) -> Callable[[], None]:
        """``check(mode, speed)`` runs before a control-plane clock change and may refuse it (raise CommandError);
        returns a function that removes it. Bench supplies use it: they need real time."""
        self._clock_guards.append(check)
        return lambda: self._clock_guards.remove(check)

    def _check_clock(self, mode: str | None, speed: float | None) -> None:
        clock = self.clock
        new_mode = str(mode) if mode is not None else (
            "scaled" if speed is not None and speed != 1.0 else str(clock.mode))
        new_speed = 1.0 if new_mode == "realtime" else (speed if speed is not None else clock.speed)
        for check in list(self._clock_guards):
            check(new_mode, new_speed)

    def add_observer(self, callback: Callable[[int], None], *,
                     due_ns: Callable[[], int] | None = None) -> Callable[[], None]:
        """Call ``callback(t_ns)`` after every physics step; returns a function that removes it.

        With ``due_ns`` (the sim time the callback next wants to look at), it is called after the first step that
        ends at or after ``due_ns()`` instead (and maybe after others): it sees the same step ends it would pick
        out of every one, and the steps before it run in one batch (a summary sampler that looks every few steps
        no longer costs a loop turn per step).
        """
        if due_ns is None:
            self._observers.append(callback)
            return lambda: self._observers.remove(callback)
        entry = (callback, due_ns)
        self._timed_observers.append(entry)
        return lambda: self._timed_observers.remove(entry)

    def add_message_observer(self, callback: MessageObserver) -> Callable[[], None]:
        """Call ``callback(t_ns, plane, direction, message)`` for every message on either plane: published
        (``"out"``), requests (``"in"``, as decoded, the in-process :meth:`control` ones too) and their replies
        (``"out"``). While one is registered every telemetry topic is sampled, subscribed or not. Returns a
        function that removes it."""
        self._message_observers.append(callback)
        return lambda: self._message_observers.remove(callback)

    @property
    def observe_everything(self) -> bool:
        """An in-process observer wants every message (a test harness)."""
        return bool(self._message_observers)

    # -- running -----------------------------------------------------------------------------
    async def run(self, duration_s: float | None = None) -> None:
        """Run until ``duration_s`` of sim time has passed (config ``sim.duration_s`` if None) or stop."""
        if duration_s is None:
            duration_s = self.run_config.sim.duration_s
        until = None if duration_s is None else self.clock.now_ns() + round(duration_s * NS_PER_S)
        await self._loop(until, extend_lockstep=False)

    async def run_for(self, duration_s: float) -> None:
        """Advance ``duration_s`` of sim time (in lockstep driven by the control side, this is the step)."""
        until = self.clock.now_ns() + round(duration_s * NS_PER_S)
        await self._loop(until, extend_lockstep=True)

    async def wait_for(self, predicate: Callable[[], bool], *, within_s: float, what: str = "condition") -> int:
        """Step until ``predicate()`` is true; raise :class:`SimTimeoutError` after ``within_s`` of sim time."""
        if predicate():
            return self.clock.now_ns()
        deadline = self.clock.now_ns() + round(within_s * NS_PER_S)
        hit: list[int] = []

        def check(t_ns: int) -> None:
            if not hit and predicate():
                hit.append(t_ns)

        remove = self.add_observer(check)
        try:
            await self._loop(deadline, extend_lockstep=True, until_pred=lambda: bool(hit))
        finally:
            remove()
        if not hit:
            raise SimTimeoutError(f"{what} not met within {within_s:g} s of sim time "
                                  f"(now {self.clock.now_ns() / NS_PER_S:.3f} s)")
        return hit[0]

    async def _loop(self, until_ns: int | None, *, extend_lockstep: bool,
                    until_pred: Callable[[], bool] | None = None) -> None:
        clock, step_ns, model = self.clock, self.step_ns, self.model
        if (extend_lockstep and until_ns is not None and clock.mode == ClockMode.LOCKSTEP
                and self.run_config.sim.lockstep_source == "control" and until_ns > (clock.limit_ns or 0)):
            clock.run_until(until_ns)
        await self._publish_initial()
        try:
            await self._loop_steps(clock, step_ns, model, until_ns, until_pred)
        finally:
            self._pump_feeds(force=True)
            self._flush_if_unflushed()

    async def _loop_steps(self, clock: SimClock, step_ns: int, model: SpacecraftModel, until_ns: int | None,
                          until_pred: Callable[[], bool] | None) -> None:
        while not self._stop.is_set():
            t = clock.now_ns()
            if (until_ns is not None and t >= until_ns) or (until_pred is not None and until_pred()):
                break
            # steps up to the next thing the runtime must do between two steps (telemetry due, a fault's end,
            # the end of the run) run in one go; per-step observers and pending events mean one at a time
            sampling = False
            if self._observers or self._events:
                most = 1
            else:
                most = self._steps_to(t, until_ns, self._next_due_ns)
                # telemetry due within the batch: sampled between its steps, published after it, when the model
                # can (a batch then ends only where a topic it cannot sample is due, a fault ends, ...)
                if self._batch_sampling and clock.mode in _BATCHED_MODES:
                    most_sampled = min(self._steps_to(t, until_ns, self._next_unbatched_ns), SAMPLED_STEPS)
                    if most_sampled > most:
                        most, sampling = most_sampled, True
            n = clock.batch(step_ns, most)
            if n == 0:
                await self._wait_turn()
                continue
            if sampling and n > 1:
                n = self._step_sampled(t, n)
            elif n == 1:
                model.step(t, step_ns)
            else:
                n = model.step_many(t, step_ns, n)
            await clock.advance_many(n, step_ns)
            now = t + n * step_ns
            self._expire_faults(now)
            # batched clocks send at their next yield (OUTBOX_MESSAGES); a paced step's messages go out now
            self._defer_sends = clock.mode in _BATCHED_MODES
            try:
                await self._after_step(now)
            finally:
                self._defer_sends = False
                if self._outbox and clock.mode not in _BATCHED_MODES:
                    self._send_outbox()

    def _steps_to(self, t: int, until_ns: int | None, due_ns: int) -> int:
        """Steps from ``t`` until the first one that ends at or after ``due_ns`` (a telemetry due), the next fault
        end, timed observer's due or ``until_ns`` (what the loop checks after every step)."""
        edge = due_ns
        for _, observer_due_ns in self._timed_observers:
            edge = min(edge, observer_due_ns())
        if self._fault_heap:
            edge = min(edge, self._fault_heap[0][0])
        if until_ns is not None:
            edge = min(edge, until_ns)
        if edge <= t:
            return 1
        return -(-(edge - t) // self.step_ns)

    def _feed_newest(self) -> None:
        """The clock stops (paused, at a lockstep limit, at the end of a step): a feed, which samples at most
        ``max_hz``, gets the newest of every topic now rather than when the clock next moves."""
        links = [link for link in (self.board_link, self.control_link) if link is not None and link.feeds]
        if not links:
            return
        for item in self._schedule:
            if item.unfed and item.wanted:
                item.unfed = False
                self._publish(item.topic, item.sample(), item.planes)
        now_wall = self.clock.wall.now_ns()
        for link in links:
            link.feed_flush(now_wall)
        self._links_flush()

    async def _wait_turn(self) -> None:
        self._feed_newest()
        t = self.clock.now_ns()
        if self.clock.mode == ClockMode.LOCKSTEP and self._waiting_published_at != t:
            self._waiting_published_at = t
            self._publish("sim.waiting", {"t_ns": t}, (Plane.BOARD, Plane.CONTROL), event=True)
            self._links_flush()
        self._flush_if_unflushed()
        if self.recorder is not None:
            self.recorder.flush()
        # awaited in this task (no task per wait, a lockstep run waits every turn); a stop notifies the clock
        if self.clock.mode == ClockMode.LOCKSTEP:
            await self._wait_lockstep()
        else:
            await self.clock.wait_turn(self.step_ns, until=self._stop.is_set)

    async def _wait_lockstep(self) -> None:
        """Wait for a lockstep turn; say what is awaited (and where) now and then, give up after the timeout."""
        sim = self.run_config.sim
        notice_s, timeout_s = sim.lockstep_notice_s, sim.lockstep_timeout_s
        waited_s, next_notice_s = 0.0, notice_s
        while True:
            until_s = next_notice_s if not timeout_s else min(next_notice_s, timeout_s)
            try:
                async with asyncio.timeout(until_s - waited_s):
                    await self.clock.wait_turn(self.step_ns, until=self._stop.is_set)
                return
            except TimeoutError:
                pass
            waited_s = until_s
            if timeout_s and waited_s >= timeout_s:
                self.stalled = (f"lockstep: gave up after {timeout_s:g} s (wall clock) waiting for "
                                f"{self.lockstep_awaits()} at sim t={self.clock.now_ns() / NS_PER_S:g} s; "
                                "raise sim.lockstep_timeout_s or --lockstep-timeout (0: wait for ever)")
                log.info("%s", self.stalled)
                self.request_stop(self.stalled)
                return
            if waited_s >= next_notice_s:
                next_notice_s += 6 * notice_s
                log.warning("lockstep: sim t=%g s, waiting %.0f s so far for %s", self.clock.now_ns() / NS_PER_S,
                            waited_s, self.lockstep_awaits())

    def lockstep_awaits(self) -> str:
        """What a waiting lockstep clock waits for, and from which URL (for people)."""
        if self.run_config.sim.lockstep_source == "board":
            where = self.board_url or "(no board link: links.board is none)"
            seen = ", ".join(sorted(self.stats.boards_seen))
            who = f"board {seen} said board.hello" if seen else "no board has said board.hello yet"
            return f"a board.step from the board at {where} ({who})"
        where = self.control_url or "the in-process control plane"
        text = f"a clock.step or clock.run_until on the control plane at {where}"
        if self.stats.boards_seen:
            text += (" (the board cannot step this run: sim.lockstep_source is 'control'; "
                     "set it to 'board' to let the board step)")
        return text

    async def _after_step(self, now: int) -> None:
        if self._events:
            events, self._events = self._events, []
            for topic, payload in events:
                await self._emit_event(topic, payload)
        for topic, payload in self.model.drain_events():
            await self._emit_event(topic, payload)
        await self._publish_due(now)
        # the links are flushed when the clock yields (clock.before_yield), not after every step: sends go out at
        # once, the flush only lets the medium see its peers (ZeroMQ: new subscribers), which happens at a yield
        for obs in list(self._observers):
            obs(now)
        for obs, due_ns in list(self._timed_observers):
            if now >= due_ns():
                obs(now)
        if self.recorder is not None:
            self.recorder.maybe_flush(self.clock.wall.now_ns())

    def _refresh_audience(self, now: int) -> bool:
        """Who wants what, again, if subscriptions changed since the last look (once per change)."""
        version = self._audience()
        if version == self._audience_seen:
            return False
        self._audience_seen = version
        for item in self._schedule:
            wanted = self._wanted(item.topic, item.planes)
            if wanted and not item.wanted and item.due_ns < now:  # back on its grid, from now on
                item.due_ns += -(-(now - item.due_ns) // item.period_ns) * item.period_ns
            item.wanted = wanted
            item.feed_only = wanted and not self._wanted(item.topic, item.planes, feeds=False)
            item.targets = self._targets(item.topic, item.planes)
        return True

    async def _publish_due(self, now: int, force: bool = False) -> None:
        changed = self._refresh_audience(now)
        if now < self._next_due_ns and not force and not changed:
            return
        # topics nobody wants are not sampled and do not set the next wake-up (the loop then runs long batches)
        next_due = next_unbatched = _NEVER
        messages = []
        batching = self._batch_sampling
        model, vector = self.model, self._vector_topics
        for item in self._schedule:
            if not item.wanted:
                continue
            due = item.due_ns
            if force or now >= due:
                due = _next_due(due, item.period_ns, now)
                item.due_ns = due
                if not item.feed_only or self._feed_due(item.topic, item.planes):
                    item.unfed = False
                    topic = item.topic
                    # a topic the model samples in batches: the same reading through the batch path (encoded)
                    value = (model.sampled(topic, [model.capture(topic)])[0] if topic in vector else item.sample())
                    messages.append((topic, value, item.planes, item.targets, now))
                else:
                    item.unfed = True
            next_due = min(next_due, due)
            if item.feed_only or not batching:
                next_unbatched = min(next_unbatched, due)
        self._next_due_ns = next_due
        self._next_unbatched_ns = next_unbatched
        if messages:  # (sampled first, then published: sim.links counts what was sent before this step)
            self._publish_all(messages)

    def _step_sampled(self, t: int, steps: int) -> int:
        """Take up to ``steps`` steps from ``t`` (a batch of a batched clock), sampling the telemetry due after
        each of its steps, and publish those samples in step order with their steps' times: the messages, samples
        and draws of one step at a time. A step that leaves events ends the batch unsampled, and so does a last
        step at which a fault ends: :meth:`_after_step` samples it, after the events. Returns the steps taken."""
        step_ns, model = self.step_ns, self.model
        self._refresh_audience(t + step_ns)  # as the first step's _publish_due would
        # which topics are due after which step (the loop's arithmetic of _publish_due, ahead of time)
        items = [item for item in self._schedule if item.wanted]
        common = self._common_grid(t, steps, items)
        if common is not None:
            return self._step_sampled_together(t, steps, items, *common)
        dues = [item.due_ns for item in items]
        plan: list[tuple[int, list[tuple[_Scheduled, int]]]] = []
        last = self._last_sampled(t, steps)
        for k in range(1, last + 1):
            now = t + k * step_ns
            due_here = None
            for j, item in enumerate(items):
                due = dues[j]
                if now >= due:
                    if item.feed_only:  # sampled as feeds allow, by _publish_due: the batch ends here
                        steps = k
                        break
                    due = _next_due(due, item.period_ns, now)
                    dues[j] = due
                    if due_here is None:
                        due_here = []
                        plan.append((k, due_here))
                    due_here.append((item, due))
            else:
                continue
            if due_here is not None:  # the step that ends the batch samples in _after_step
                plan.pop()
            break
        vector = self._vector_topics
        captured: list[list[Any]] = []

        def sample(k: int) -> None:
            # at step k: the truth of vectorised topics (read together below), the model's other topics' samples;
            # the runtime's own (clock, links) are sampled as they are published, after what precedes them
            captured.append([model.capture(item.topic) if item.topic in vector else
                             None if item.topic in _RUNTIME_TOPICS else item.sample()
                             for item, _ in plan[len(captured)][1]])

        done = model.step_sampled(t, step_ns, steps, [k for k, _ in plan], sample)
        # the vectorised topics' samples, each topic's rows read in one go, in step order
        rows: dict[str, list[Any]] = {}
        for (_, due_here), values in zip(plan, captured, strict=False):
            for (item, _), value in zip(due_here, values, strict=True):
                if item.topic in vector:
                    rows.setdefault(item.topic, []).append(value)
        read = {topic: iter(model.sampled(topic, topic_rows)) for topic, topic_rows in rows.items()}
        steps0 = self.clock.stats.steps
        messages = []
        for (k, due_here), values in zip(plan, captured, strict=False):
            now = t + k * step_ns
            for (item, due), value in zip(due_here, values, strict=True):
                item.due_ns = due
                item.unfed = False
                topic = item.topic
                if topic in vector:
                    value = next(read[topic])
                elif value is None:
                    value = self._clock_sample_at(now, steps0 + k) if topic == "sim.clock" else item.sample()
                messages.append((topic, value, item.planes, item.targets, now))
        self._publish_batch(messages)
        return done

    def _last_sampled(self, t: int, steps: int) -> int:
        """The last step of a batch of ``steps`` from ``t`` that the batch samples: the batch's last, unless a fault
        ends there (its clearing and event come first, in _expire_faults, and _after_step samples that step)."""
        return steps - 1 if self._fault_heap and self._fault_heap[0][0] <= t + steps * self.step_ns else steps

    def _common_grid(self, t: int, steps: int, items: list[_Scheduled]) -> tuple[int, int, int] | None:
        """When every topic of a batch is due at the same steps of it, one every ``stride`` from ``first`` on
        (topics on one rate, in phase: the usual case), those steps as (first, last, stride); else None (a topic
        only feeds take, different rates or phases: :meth:`_step_sampled` plans each step)."""
        step_ns = self.step_ns
        last = self._last_sampled(t, steps)
        grid = None
        for item in items:
            if item.feed_only:
                return None
            period, due = item.period_ns, item.due_ns
            if period % step_ns or (due - t) % step_ns:
                return None
            first = max(1, (due - t) // step_ns)
            # sampled at ``first``, next due a period on (not a period from an overdue time)
            if _next_due(due, period, t + first * step_ns) != t + first * step_ns + period:
                return None
            if grid is None:
                grid = (first, period // step_ns)
            elif grid != (first, period // step_ns):
                return None
        if grid is None or grid[0] > last:
            return None
        return grid[0], last, grid[1]

    def _step_sampled_together(self, t: int, steps: int, items: list[_Scheduled], first: int, last: int,
                               stride: int) -> int:
        """:meth:`_step_sampled` for topics all due together at steps ``first``, ``first + stride``, ... up to
        ``last``: the same samples, draws and messages in the same order, without planning each step."""
        step_ns, model = self.step_ns, self.model
        vector = self._vector_topics
        columns: list[list[Any]] = [[] for _ in items]
        # at each step sampled: the truth of vectorised topics (read together below), the model's other topics'
        # samples; the runtime's own (clock, links) are sampled as they are published
        samplers = [(col.append, model.capturer(item.topic) if item.topic in vector else item.sample)
                    for item, col in zip(items, columns, strict=True) if item.topic not in _RUNTIME_TOPICS]
        taken: list[int] = []  # the steps sampled (the model may end the batch sooner)
        take = taken.append

        def sample(k: int) -> None:
            take(k)
            for append, sample_now in samplers:
                append(sample_now())

        done = model.step_sampled(t, step_ns, steps, range(first, last + 1, stride), sample)
        if not taken:
            return done
        steps0 = self.clock.stats.steps
        times = [t + k * step_ns for k in taken]
        clock_steps = [steps0 + k for k in taken]
        lane = self._column_lane(items)
        for j, item in enumerate(items):
            topic = item.topic
            if topic in vector:
                columns[j] = model.sampled(topic, columns[j])
            elif topic == "sim.clock":  # (the column lane writes its envelopes without the samples)
                columns[j] = None if lane is not None else self._clock_samples_at(times, clock_steps)
            elif topic in _RUNTIME_TOPICS:
                columns[j] = [item.sample() for _ in taken]
            item.due_ns = times[-1] + item.period_ns
            item.unfed = False
        if lane is not None:
            self._publish_columns(items, columns, times, clock_steps, lane)
            return done
        heads = [(item.topic, item.planes, item.targets) for item in items]
        messages = [(topic, value, planes, targets, now)
                    for now, values in zip(times, zip(*columns, strict=True), strict=True)
                    for (topic, planes, targets), value in zip(heads, values, strict=True)]
        self._publish_batch(messages)
        return done

    def _column_lane(self, items: list[_Scheduled]) -> tuple[Any, ...] | None:
        """The links every topic of a batch sampled as columns goes to, when its messages may be written a column at
        a time (:meth:`_publish_columns`): no observer of every message, no feed takes them, and each topic goes to
        the same links. None: one message at a time (:meth:`_publish_all`)."""
        if self._message_observers:
            return None
        links = items[0].targets[0]
        for item in items:
            subscribed, feeders = item.targets
            if feeders or subscribed != links:
                return None
        return links

    def _publish_columns(self, items: list[_Scheduled], columns: list[list[Any] | None], times: list[int],
                         clock_steps: list[int], links: tuple[Any, ...]) -> None:
        """:meth:`_publish_batch` of a batch sampled as columns (``columns[j]``: ``items[j]``'s samples at ``times``;
        None: ``sim.clock``'s, written here) for ``links`` (:meth:`_column_lane`): the same messages, numbers and
        bytes in the same order, encoded a column at a time, recorded, and queued as one run for each link."""
        m, width = len(times), len(items)
        seq0 = self._seq
        encoded: list[list[bytes]] = []
        for j, (item, values) in enumerate(zip(items, columns, strict=True)):
            topic = item.topic
            seqs = range(seq0 + j + 1, seq0 + j + 1 + width * m, width)
            if values is None:
                col = self._clock_envelopes(times, clock_steps, seqs)
                if col is not None:
                    encoded.append(col)
                    continue
                values = self._clock_samples_at(times, clock_steps)
            encoded.append([encode_envelope_packed(topic, v.data, seq, t_ns, SRC) if type(v) is PackedPayload
                            else encode_envelope(topic, v, seq, t_ns, SRC)
                            for v, seq, t_ns in zip(values, seqs, times, strict=True)])
        datas = [data for row in zip(*encoded, strict=True) for data in row]
        self._seq = seq0 + width * m
        recorder = self.recorder
        if recorder is not None:
            heads = [(_recorded_plane(item.planes), self._wall_time(item.topic)) for item in items]
            for data, (plane_name, wall_time) in zip(datas, itertools.cycle(heads)):
                recorder.write(plane_name, "out", data, wall_time=wall_time)
        outbox = self._outbox
        for link in links:
            outbox.append((link, datas, False, _RUN))
            self._outbox_run_messages += m * width
        self.stats.published += m * width
        self._unflushed = True
        if len(outbox) + self._outbox_run_messages >= OUTBOX_MESSAGES:  # full: sent now
            self._send_outbox()

    def _clock_envelopes(self, times: list[int], steps: list[int], seqs: Sequence[int]) -> list[bytes] | None:
        """``sim.clock``'s envelopes after the ``steps[j]``-th steps, ending at ``times[j]`` (a batch's, one apart),
        numbered ``seqs[j]``, written as one column: the bytes of :func:`encode_envelope` of each
        :meth:`_clock_samples_at` sample, without building them (a batch's samples differ only in their times,
        texts, steps and numbers). None where the column does not keep one shape (a UTC text with a fraction of a
        second or across an hour, numbers across a msgpack width): the caller encodes the samples."""
        if not self._clock_column_ok:
            return None
        clock, m = self.clock, len(times)
        first, last = clock.utc_text(times[0]), clock.utc_text(times[-1])
        # whole seconds within one hour ("YYYY-MM-DDTHH:MM:SSZ"): each row's minutes and seconds from the first's
        if (len(first) != 20 or first[-1] != "Z" or first[:14] != last[:14] or len(last) != 20
                or (m > 1 and (times[1] - times[0]) % NS_PER_S)):
            return None
        seq_cells, t_cells, step_cells = uint_cells(seqs), uint_cells(times), uint_cells(steps)
        if seq_cells is None or t_cells is None or step_cells is None:
            return None
        import numpy as np  # (here: importing emulator.runtime loads no numpy)

        second = (np.array(times, dtype=np.int64) - times[0]) // NS_PER_S + (int(first[14:16]) * 60 + int(first[17:19]))
        minute, second = np.divmod(second, 60)
        mmss = np.empty((m, 5), dtype=np.uint8)
        mmss[:, 0], mmss[:, 1] = np.divmod(minute, 10)
        mmss[:, 3], mmss[:, 4] = np.divmod(second, 10)
        mmss += 48  # ASCII digits
        mmss[:, 2] = 58  # ":"
        # the samples at both ends: what lies between their time, text and steps is the batch's (written once, as
        # _clock_samples_at has it), and each end's encoding checks the column (a layout gone wrong is never
        # published)
        ends = self._clock_samples_at([times[0], times[-1]], [steps[0], steps[-1]])
        keys = list(ends[0])
        if keys[:2] != ["t_ns", "utc"] or keys[-1] != "steps" or len(keys) > 15:
            return None
        constant = b"".join(ormsgpack.packb(k) + ormsgpack.packb(ends[0][k]) for k in keys[2:-1])
        head, mid = envelope_parts("sim.clock", SRC)
        rows = write_rows(m, [head, seq_cells, T_NS_KEY, t_cells, mid + bytes([0x80 | len(keys)]) + T_NS_KEY,
                              t_cells, b"\xa3utc\xb4" + first[:14].encode(), mmss, b"Z" + constant + b"\xa5steps",
                              step_cells])
        if (rows[0] != encode_envelope("sim.clock", ends[0], seqs[0], times[0], SRC)
                or rows[-1] != encode_envelope("sim.clock", ends[1], seqs[-1], times[-1], SRC)):
            log.warning("sim.clock: a batch's messages written as a column differ from the samples' encoding; "
                        "encoding them one at a time from now on")
            self._clock_column_ok = False
            return None
        return rows

    def _publish_batch(self, messages: list[tuple[str, dict[str, Any] | PackedPayload, tuple[Plane, ...],
                                                  tuple[tuple[Any, ...], tuple[Any, ...]], int]]) -> None:
        """:meth:`_publish_all` of a batch's samples: sent with the batch's other messages as the clock yields (a
        batched clock's messages wait for it)."""
        self._defer_sends = True
        try:
            self._publish_all(messages)
        finally:
            self._defer_sends = False

    def _before_yield(self) -> None:
        """The clock yields to the event loop: send the outbox (afap: at most every OUTBOX_NS), re-arm the links
        now and then (REARM_NS); a paced clock sends and re-arms at every yield."""
        clock = self.clock
        self._pump_feeds()
        if clock.mode not in _BATCHED_MODES:
            self._flush_if_unflushed()
            return
        now = clock.wall.now_ns()
        if clock.yield_ns != QUIET_YIELD_NS and (self._request_wall_ns is None
                                                 or now - self._request_wall_ns >= QUIET_AFTER_NS):
            clock.set_yield_ns(QUIET_YIELD_NS)
        if self._outbox and (clock.mode != ClockMode.AFAP or now - self._outbox_sent_ns >= OUTBOX_NS):
            self._outbox_sent_ns = now
            self._send_outbox()
        if self._unflushed and not self._outbox and now - self._rearmed_ns >= REARM_NS:
            self._rearmed_ns = now
            self._links_flush()

    def _pump_feeds(self, *, force: bool = False) -> None:
        """The feeds get the telemetry offered to them since the last pump (ServerLink.feed_offer; at most every
        FEED_PUMP_NS unless ``force``): called as the clock yields (every paced step, every ~1 ms in afap)."""
        now_wall = None
        for link in (self.board_link, self.control_link):
            if link is not None and link.feeds:
                if now_wall is None:
                    now_wall = self.clock.wall.now_ns()
                link.feed_pump(now_wall, force=force)

    def _flush_if_unflushed(self) -> None:
        if self._unflushed:
            self._links_flush()

    def _links_flush(self) -> None:
        self._unflushed = False
        if self._outbox:
            self._send_outbox()
        for link in (self.board_link, self.control_link):
            if link is not None:
                link.flush()

    def _audience(self) -> tuple[Any, ...]:
        bl, cl = self.board_link, self.control_link
        return (self.recorder is not None, self.observe_everything, id(bl), bl.audience if bl is not None else 0,
                id(cl), cl.audience if cl is not None else 0)

    def _wanted(self, topic: str, planes: tuple[Plane, ...], *, feeds: bool = True) -> bool:
        """Someone receives ``topic``: the recorder, an observer of every message, a subscriber, or (``feeds``)
        a per-peer feed."""
        if self.recorder is not None or self.observe_everything:
            return True
        for plane in planes:
            link = self.board_link if plane == Plane.BOARD else self.control_link
            if link is not None and (link.wants(topic) or (feeds and link.feed_wants(topic))):
                return True
        return False

    def _feed_due(self, topic: str, planes: tuple[Plane, ...]) -> bool:
        """A feed would send a sample of ``topic`` now: a topic only feeds take is not built between their
        samples (a console asking 20 Hz of a 1 kHz topic costs 20 samples a second, not 1000)."""
        now_wall = self.clock.wall.now_ns()
        for plane in planes:
            link = self.board_link if plane == Plane.BOARD else self.control_link
            if link is not None and link.feeds and link.feed_due(topic, now_wall):
                return True
        return False

    async def _emit_event(self, topic: str, payload: dict[str, Any]) -> None:
        spec = self.catalogue.get(topic) if topic in self.catalogue else None
        planes = (Plane.BOARD, Plane.CONTROL) if spec is None or spec.plane == Plane.BOARD else (Plane.CONTROL,)
        if spec is None:
            log.warning("model emitted undeclared event %r", topic)
        self._publish(topic, payload, planes, event=True)
        if topic == "accel.power":
            self._run_power_hook(bool(payload.get("on")), str(payload.get("reason", "")))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _targets(self, topic: str, planes: tuple[Plane, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The links of ``planes`` subscribed to ``topic``, and those with feeds (valid until the audience
        changes)."""
        links = [self.board_link if plane == Plane.BOARD else self.control_link for plane in planes]
        return (tuple(ln for ln in links if ln is not None and ln.wants(topic)),
                tuple(ln for ln in links if ln is not None and ln.feeds))

    def _publish(self, topic: str, payload: dict[str, Any] | PackedPayload, planes: tuple[Plane, ...], *,
                 event: bool = False, targets: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None,
                 t_ns: int | None = None) -> None:
        """Stamp, record and publish a message (encoded once for every plane and the recorder; ``payload`` may come
        encoded already, from a model's :meth:`~SpacecraftModel.sampled`); ``event``: not
        periodic telemetry (no link drops it for budget); ``targets``: :meth:`_targets` of it, if known; ``t_ns``:
        the sim time now, if known."""
        self._publish_all([(topic, payload, planes, targets if targets is not None else self._targets(topic, planes),
                            self.clock.now_ns() if t_ns is None else t_ns)], event=event)

    def _publish_all(self, messages: list[tuple[str, dict[str, Any] | PackedPayload, tuple[Plane, ...],
                                               tuple[tuple[Any, ...], tuple[Any, ...]], int]], *,
                     event: bool = False) -> None:
        """:meth:`_publish` of each (topic, payload, planes, targets, t_ns) in order: a batch's telemetry in one
        call (sent as the clock yields, or now if the clock is paced)."""
        seq = self._seq
        outbox = self._outbox
        recorder, observers = self.recorder, self._message_observers
        for topic, payload, planes, (links, feeders), t_ns in messages:
            seq += 1
            if type(payload) is PackedPayload:
                data = encode_envelope_packed(topic, payload.data, seq, t_ns, SRC)
            else:
                data = encode_envelope(topic, payload, seq, t_ns, SRC)
            if recorder is not None or observers:
                self._seq = seq  # an observer may publish in turn (the next number, the outbox as it is then)
                plane_name = _recorded_plane(planes)
                if recorder is not None:
                    recorder.write(plane_name, "out", data, wall_time=self._wall_time(topic))
                if observers:
                    msg = Message(topic, payload.to_dict() if type(payload) is PackedPayload else payload,
                                  seq=seq, t_ns=t_ns, src=SRC)
                    for observer in observers:
                        observer(t_ns, plane_name, "out", msg)
                seq, outbox = self._seq, self._outbox
            for link in links:
                outbox.append((link, data, event, None))
            if len(outbox) + self._outbox_run_messages >= OUTBOX_MESSAGES:  # full: sent now (bounded whatever a batch holds)
                self._send_outbox()
                outbox = self._outbox
            for link in feeders:
                if event:
                    link.feed_bytes(topic, data, event=True, now_ns=self.clock.wall.now_ns())
                else:
                    link.feed_offer(topic, data)
        self._seq = seq
        self.stats.published += len(messages)
        self._unflushed = True
        if outbox and not self._defer_sends:
            self._send_outbox()

    def _send_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        self._outbox_run_messages = 0
        replied = []
        run: list[bytes] = []  # telemetry in a row for one link: sent in one call
        run_link = None
        for link, data, event, peer in outbox:
            if not event and (peer is None or peer is _RUN):
                if link is not run_link:
                    if run:
                        self._publish_run(run_link, run)
                        run = []
                    run_link = link
                if peer is None:
                    run.append(data)
                else:
                    run += data
                continue
            if run:
                self._publish_run(run_link, run)
                run, run_link = [], None
            if peer is not None:
                try:
                    link.reply_bytes(peer, data)
                except EmulatorError as exc:
                    log.debug("%s: reply to %r failed: %s", link.url.label, peer, exc)
                if link not in replied:
                    replied.append(link)
                continue
            try:
                link.publish_bytes(data, event=event)
            except EmulatorError as exc:  # a dead link never stops the simulation
                log.warning("publish on %s failed: %s", link.url.label, exc)
        if run:
            self._publish_run(run_link, run)
        for link in replied:
            link.replies_sent()
        if replied:
            self._replied_at = time.monotonic()

    @staticmethod
    def _publish_run(link: Any, datas: list[bytes]) -> None:
        try:
            link.publish_many(datas)
        except EmulatorError as exc:  # a dead link never stops the simulation
            log.warning("publish on %s failed: %s", link.url.label, exc)

    def _send_replies(self) -> None:
        """The serve loops queued replies (DEFERRED_REPLIES): send them with what was published before them."""
        self._replies_due = False
        if self._outbox:
            self._send_outbox()

    def _wall_time(self, topic: str) -> bool:
        spec = self.catalogue.get(topic) if topic in self.catalogue else None
        return spec is not None and spec.wall_time

    def _clock_sample(self) -> dict[str, Any]:
        st = self.clock.stats
        return {"t_ns": self.clock.now_ns(), "utc": self.clock.utc_text(), "mode": str(self.clock.mode),
                "speed": self.clock.speed, "paused": self.clock.paused, "lag_s": st.lag_ns / NS_PER_S,
                "max_lag_s": st.max_lag_ns / NS_PER_S, "overruns": st.overruns, "steps": st.steps}

    def _clock_sample_at(self, t_ns: int, steps: int) -> dict[str, Any]:
        """``sim.clock`` after the step of a batched clock's batch that ends at ``t_ns`` (the ``steps``-th):
        what :meth:`_clock_sample` gives there (a batched clock's advance sets no lag)."""
        return self._clock_samples_at([t_ns], [steps])[0]

    def _clock_samples_at(self, times_ns: list[int], steps: list[int]) -> list[dict[str, Any]]:
        """:meth:`_clock_sample_at` of each (time, steps) of one batch (what else the sample holds is the
        batch's)."""
        clock = self.clock
        st = clock.stats
        utc = clock.utc_text
        mode, speed, paused = str(clock.mode), clock.speed, clock.paused
        max_lag_s, overruns = st.max_lag_ns / NS_PER_S, st.overruns
        return [{"t_ns": t_ns, "utc": utc(t_ns), "mode": mode, "speed": speed, "paused": paused, "lag_s": 0.0,
                 "max_lag_s": max_lag_s, "overruns": overruns, "steps": n}
                for t_ns, n in zip(times_ns, steps, strict=True)]

    # -- requests ----------------------------------------------------------------------------
    async def _serve(self, link: Any, plane: Plane) -> None:
        name = str(plane)
        handled = 0
        wall = self.clock.wall
        batch_start_ns: int | None = None  # wall time of the batch's first request
        while True:
            try:
                incoming = await link.recv()
            except asyncio.CancelledError:
                raise
            except EmulatorError as exc:
                if self._stop.is_set():
                    return
                log.warning("%s link: %s", name, exc)
                await self._stop_or_sleep()
                continue
            self._request_wall_ns = now_ns = wall.now_ns()
            if batch_start_ns is None:
                batch_start_ns = now_ns
            if self.clock.yield_ns != YIELD_NS:  # someone talks: answer within ~1 ms again
                self.clock.set_yield_ns(YIELD_NS)
            try:
                if incoming.message is None:
                    err = incoming.error or CodecError("undecodable request", field="bytes")
                    if not isinstance(err, RateLimitedError):  # the link counted it already (drops: rate_limited)
                        self.stats.commands[name] += 1
                    self.stats.refuse(name, refusal_reason(err, decoded=False))
                    reply = Message("reply", {"id": 0, "re": "?", "ok": False, "error": err.to_wire()})
                else:
                    msg = incoming.message
                    if self.recorder is not None:
                        self.recorder.write(name, "in", encode_message(msg), wall_time=self._wall_time(msg.topic))
                    if plane == Plane.BOARD:
                        # the request's t_ns is the board's view of sim time: how far behind it runs
                        lag_ns = max(0, self.clock.now_ns() - msg.t_ns)
                        self.stats.board_links.touch(msg.src or "?", {})["lag_s"] = lag_ns / NS_PER_S
                        reply = self._board_request(incoming.peer, msg)
                    else:
                        self._request_peer = (link, incoming.peer)  # telemetry.feed sends to this peer
                        try:
                            reply = self.handle_request(msg, plane)
                        finally:
                            self._request_peer = None
                reply = Message(reply.topic, reply.payload, seq=self._next_seq(), t_ns=self.clock.now_ns(), src=SRC)
                data, reply = self._encode_reply(reply, name)
                if self.recorder is not None:
                    wall_time = incoming.message is not None and self._wall_time(incoming.message.topic)
                    self.recorder.write(name, "out", data, wall_time=wall_time)
                if link.defers_replies:
                    # queued behind what was published before it, sent with what the clock publishes next (a
                    # lockstep turn's replies, its telemetry and sim.waiting leave together) or at the next loop turn
                    self._outbox.append((link, data, False, incoming.peer))
                    if not self._replies_due:
                        self._replies_due = True
                        asyncio.get_running_loop().call_soon(self._send_replies)
                else:
                    try:
                        if self._outbox:  # what was published before this reply goes first
                            self._send_outbox()
                        await link.send_to(incoming.peer, reply)
                    except EmulatorError as exc:
                        log.debug("%s link: reply to %r failed: %s", name, incoming.peer, exc)
            except Exception:  # a bug in answering one request must not stop the plane: said loudly, serving goes on
                log.exception("%s plane: answering a request failed", name)
                self.stats.refuse(name, "internal")
            handled += 1
            if handled >= SERVE_BATCH or wall.now_ns() - batch_start_ns >= SERVE_BUDGET_NS:
                await asyncio.sleep(0)  # fairness: the clock and the other plane get their turn
                handled = 0
                batch_start_ns = None

    def _encode_reply(self, reply: Message, plane_name: str) -> tuple[bytes, Message]:
        """The reply's bytes; a reply that cannot be encoded (a handler's bug: a value msgpack cannot hold) becomes
        an internal error the client can read, so the request is answered and the plane keeps serving."""
        try:
            return encode_message(reply), reply
        except CodecError as exc:
            log.error("%s plane: the reply to %s could not be encoded: %s", plane_name, reply.payload.get("re"), exc)
            self.stats.refuse(plane_name, "internal")
            error = {"code": "internal", "message": f"the reply could not be encoded ({exc.message}): a flatsat bug, "
                                                    "please report it with the request"}
            reply = Message("reply", {"id": reply.payload.get("id", 0), "re": reply.payload.get("re", "?"),
                                      "ok": False, "error": error}, seq=reply.seq, t_ns=reply.t_ns, src=SRC)
            return encode_message(reply), reply

    def _board_request(self, peer: bytes, msg: Message) -> Message:
        """A board request, run once: a repeat of one of the board's last DUPLICATE_WINDOW requests (same peer,
        src, seq and topic) gets the first answer again. A board.hello starts the board's window afresh (a
        restarted board counts its seq from the start again) and is always run."""
        key = (peer, msg.src)
        if msg.topic == "board.hello":
            self._replies.pop(key, None)
            return self.handle_request(msg, Plane.BOARD)
        window = self._replies.get(key)
        if window is not None:
            cached = window.get(msg.seq)
            if cached is not None and cached.payload.get("re") == msg.topic:
                self.stats.duplicates += 1
                return cached
        reply = self.handle_request(msg, Plane.BOARD)
        if window is None:
            window = self._replies[key] = LruDict(DUPLICATE_WINDOW)
        window[msg.seq] = reply
        return reply

    async def _stop_or_sleep(self) -> None:
        # a broken link is retried by the transport; give it a moment without spinning
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), 0.2)

    def handle_request(self, msg: Message, plane: Plane) -> Message:
        """Validate and execute one request; always returns a ``reply`` (never raises)."""
        reply = self._handle(msg, plane)
        if self._message_observers:
            now = self.clock.now_ns()
            for observer in self._message_observers:
                observer(now, str(plane), "in", msg)
            for observer in self._message_observers:
                observer(now, str(plane), "out", reply)
        return reply

    def _handle(self, msg: Message, plane: Plane) -> Message:
        name = str(plane)
        self.stats.commands[name] += 1
        table = self._board_cmds if plane == Plane.BOARD else self._control_cmds
        self._request_src = msg.src
        try:
            model = self.catalogue.validate(msg.topic, msg.payload, plane=plane, kind=Kind.COMMAND)
            handler = table[msg.topic]
            data = handler(model)
        except EmulatorError as exc:
            self.stats.refuse(name, refusal_reason(exc, decoded=True))
            return msg.reply(ok=False, t_ns=self.clock.now_ns(), src=SRC, error=exc.to_wire())
        except Exception as exc:  # a model bug must not kill the run; it is reported, loudly
            log.exception("internal error handling %s", msg.topic)
            self.stats.refuse(name, "internal")
            return msg.reply(ok=False, t_ns=self.clock.now_ns(), src=SRC,
                             error={"code": "internal", "message": f"{type(exc).__name__}: {exc}"})
        return msg.reply(ok=True, t_ns=self.clock.now_ns(), src=SRC, data=data if data is not None else {})

    def control(self, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """In-process control plane: same validation and handlers as over the wire; raises on refusal."""
        reply = self.handle_request(Message(topic, payload or {}), Plane.CONTROL)
        if not reply.payload["ok"]:
            err = reply.payload["error"]
            raise CommandError(err["message"], field=err.get("field"), valid=err.get("valid"))
        return reply.payload.get("data", {})

    def _cmd_hello(self, p: Any) -> dict[str, Any]:
        self._set_board_rates(p.name, p.telemetry_rates_hz)
        self.stats.boards_seen[p.name] = p.version
        log.info("board %r (version %r) says hello", p.name, p.version)
        return {"protocol_version": PROTOCOL_VERSION, "epoch_utc": utc_text(self.clock.utc(0)),
                "t_ns": self.clock.now_ns(), "step_s": self.step_ns / NS_PER_S, "mode": str(self.clock.mode),
                "lockstep_source": self.run_config.sim.lockstep_source,
                # a board that joins while a lockstep clock waits has missed that sim.waiting (PUB/SUB
                # joins late): this tells it to take its first turn now
                "waiting": self.clock.mode == ClockMode.LOCKSTEP and not self.clock.may_advance(self.step_ns),
                "topics": sorted(s.topic for s in self.catalogue.topics(plane=Plane.BOARD)),
                "rates_hz": {item.telemetry.spec.topic: NS_PER_S / item.period_ns for item in self._schedule
                             if Plane.BOARD in item.planes and item.period_ns < _NEVER},
                "decimation": self.decimation, "duplicate_window": DUPLICATE_WINDOW}

    def _set_board_rates(self, board: str, rates_hz: dict[str, float]) -> None:
        """A board's ``telemetry_rates_hz`` (board.hello): each board-plane topic goes to the board plane at the
        fastest rate any board that said hello wants (the run's rate for a board that named no rate for it), on a
        grid from now; the control plane keeps the run's rates. A board may slow a topic, never speed it up."""
        valid = sorted(spec.topic for spec in self.catalogue.topics(plane=Plane.BOARD) if spec.kind == Kind.TELEMETRY)
        for topic, hz in rates_hz.items():
            if topic not in valid:
                raise CommandError(f"telemetry_rates_hz: {topic!r} is not board-plane telemetry{suggest(topic, valid)}",
                                   field=f"payload.telemetry_rates_hz.{topic}", valid=valid)
            if not 0 <= hz < math.inf:
                raise CommandError(f"telemetry_rates_hz.{topic}: {hz!r} Hz; a rate is 0 (none) or more",
                                   field=f"payload.telemetry_rates_hz.{topic}")
        self._board_rates[board] = dict(rates_hz)  # {}: the run's rates
        if not self._board_items and not rates_hz:
            return  # the usual board: the run's rates, nothing to change
        if not self._board_items:  # first board with rates: split every board-plane item into two
            for item in list(self._schedule):
                if Plane.BOARD in item.planes:
                    board_item = _Scheduled(item.telemetry, item.period_ns, item.due_ns, (Plane.BOARD,))
                    item.planes = tuple(pl for pl in item.planes if pl != Plane.BOARD)
                    self._schedule.append(board_item)
                    self._board_items[item.telemetry.spec.topic] = board_item
                    self._board_run_period[item.telemetry.spec.topic] = item.period_ns
        now = self.clock.now_ns()
        for topic, item in self._board_items.items():
            run_period = self._board_run_period[topic]
            run_hz = NS_PER_S / run_period  # what a board asks is at most this (never faster than the run)
            fastest = max(min(rates.get(topic, run_hz), run_hz) for rates in self._board_rates.values())
            period = round(NS_PER_S / fastest) if fastest > 0 else _NEVER
            if period != item.period_ns:
                item.period_ns = period
                item.due_ns = now + period if fastest > 0 else _NEVER
        self._schedule = [it for it in self._schedule if it.planes]  # a board-only topic's control half: none
        self._audience_seen = None  # who wants what, and the next wake-up, again
        self._next_due_ns = now

    def _cmd_board_link(self, p: Any) -> dict[str, Any]:
        # what the board measured goes beside the lag the serve loop keyed by the same src
        self.stats.board_links.touch(self._request_src or "?", {})["reported"] = p.model_dump()
        return {}

    def links_sample(self) -> dict[str, Any]:
        """Link health for ``sim.links``: bounded whatever the peers do (``MAX_BOARDS`` boards at most)."""
        out: dict[str, Any] = {}
        for name, link in (("board", self.board_link), ("control", self.control_link)):
            if link is None:
                continue
            st = link.stats
            out[name] = {"is_up": st.is_up, "reconnects": st.reconnects, "tx": st.tx, "rx": st.rx,
                         "bad_frames": st.bad_frames, "decode_errors": st.decode_errors,
                         "dropped_tx": st.dropped_tx, "drops": dict(sorted(st.drops.items())),
                         "refused": dict(sorted(self.stats.refused[name].items()))}
        out["boards"] = {k: _copy_board(v) for k, v in self.stats.board_links.items()}
        out["boards_evicted"] = self.stats.board_links.evicted
        if self.supplies is not None:
            out["supplies"] = self.supplies.links_sample()
        return out

    def _cmd_board_command(self, p: Any) -> dict[str, Any]:
        # the control plane speaks for the board: the command meets the board's own validation and handler,
        # so an operator's rail switch is exactly what the board's would be (no second path into the models)
        valid = sorted(t for t in self._board_cmds if t not in BOARD_SESSION_TOPICS)
        if p.topic not in valid:
            raise CommandError(f"{p.topic!r} is not a board command{suggest(p.topic, valid)}", field="payload.topic",
                               valid=valid)
        try:
            model = self.catalogue.validate(p.topic, p.payload, plane=Plane.BOARD, kind=Kind.COMMAND)
            data = self._board_cmds[p.topic](model)
        except EmulatorError as exc:
            nested = exc.field.replace("payload", "payload.payload", 1) if exc.field else "payload.payload"
            raise type(exc)(exc.message, field=nested, valid=exc.valid) from None
        return {"topic": p.topic, "data": data if data is not None else {}}

    def _cmd_telemetry_feed(self, p: Any) -> dict[str, Any]:
        """This peer's decimated feed of the control plane's telemetry and events (start, renew or end)."""
        if self._request_peer is None:
            raise CommandError("telemetry.feed sends to the peer that asked: send it over the control plane's "
                               "socket, not in-process", field="topic")
        link, peer = self._request_peer
        if not link.supports_feeds:
            raise CommandError(f"the control plane at {link.url} cannot send a feed to one peer; subscribe to its "
                               "telemetry instead", field="topic")
        if p.stop:
            return {"feeding": False, "ended": link.end_feed(peer), "feeds": len(link.feeds)}
        topics = None
        if p.topics is not None:
            valid = sorted(s.topic for s in self.catalogue if s.kind in (Kind.TELEMETRY, Kind.EVENT))
            for i, topic in enumerate(p.topics):
                if topic not in valid:
                    raise CommandError(f"unknown topic {topic!r}{suggest(topic, valid)}: a feed carries telemetry "
                                       "and event topics", field=f"payload.topics.{i}", valid=valid)
            topics = p.topics
        if peer not in link.feeds and len(link.feeds) >= MAX_FEEDS:
            raise CommandError(f"{MAX_FEEDS} peers have a feed already, the most this plane keeps; one must end "
                               "(telemetry.feed with stop, or let its lease run out) first", field="topic")
        link.set_feed(peer, p.max_hz, topics, self.clock.wall.now_ns() + round(p.lease_s * NS_PER_S))
        return {"feeding": True, "max_hz": p.max_hz, "topics": None if topics is None else sorted(set(topics)),
                "lease_s": p.lease_s, "feeds": len(link.feeds)}

    def _cmd_board_step(self, p: Any) -> dict[str, Any]:
        if self.clock.mode != ClockMode.LOCKSTEP or self.run_config.sim.lockstep_source != "board":
            raise CommandError("the board may only step a lockstep run with sim.lockstep_source = 'board' "
                               f"(this run: mode {self.clock.mode}, lockstep_source "
                               f"{self.run_config.sim.lockstep_source!r})", field="topic")
        return {"limit_ns": self.clock.step(round(p.duration_s * NS_PER_S))}

    # -- faults ------------------------------------------------------------------------------
    def fault_schemas(self) -> dict[str, tuple[type[Payload], bool]]:
        """Fault name -> (params schema, clearable)."""
        return {name: (f.params, f.clear is not None) for name, (f, _) in self._faults_by_name.items()}

    def fault_list(self) -> list[dict[str, Any]]:
        # the schemas never change and take pydantic ~10-70 ms to build: a console that connects (fault.list)
        # would otherwise stall the loop, and a realtime run's ticks, for that long
        if self._fault_list is None:
            self._fault_list = [{"name": name, "doc": f.doc, "params": f.params.model_json_schema(),
                                 "clearable": f.clear is not None}
                                for name, (f, _) in sorted(self._faults_by_name.items())]
        return copy.deepcopy(self._fault_list)

    def inject_fault(self, name: str, params: dict[str, Any], duration_s: float | None = None) -> int:
        entry = self._faults_by_name.get(name)
        if entry is None:
            valid = sorted(self._faults_by_name)
            raise CommandError(f"unknown fault {name!r}{suggest(name, valid)}", field="payload.name", valid=valid)
        fault = entry[0]
        if len(self._faults) >= MAX_ACTIVE_FAULTS:
            raise CommandError(f"{len(self._faults)} faults are active, the most this emulator holds; clear some "
                               "first (fault.clear)", field="payload.name")
        if duration_s is not None and fault.clear is None:
            raise CommandError(f"fault {name!r} is permanent and cannot have a duration",
                               field="payload.duration_s")
        cat = Catalogue([TopicSpec(f"fault:{name}", Kind.COMMAND, Plane.CONTROL, fault.params, fault.doc)])
        try:
            model = cat.validate(f"fault:{name}", params)
        except CodecError as exc:
            raise CommandError(exc.message.replace(f"fault:{name}: payload", f"fault {name!r}: params"),
                               field=(exc.field or "").replace("payload", "payload.params", 1),
                               valid=exc.valid) from None
        fault.inject(model)
        fid = self._next_fault_id
        self._next_fault_id += 1
        now = self.clock.now_ns()
        until = None if duration_s is None else now + round(duration_s * NS_PER_S)
        self._faults[fid] = ActiveFault(fid, name, dict(params), now, until, fault, model)
        if until is not None:
            heapq.heappush(self._fault_heap, (until, fid))
        self._queue_event("fault.changed", {"fault_id": fid, "name": name, "params": dict(params),
                                            "active": True, "t_ns": now, "until_ns": -1 if until is None else until})
        return fid

    def clear_fault(self, fault_id: int) -> None:
        active = self._faults.get(fault_id)
        if active is None:
            raise CommandError(f"no active fault with id {fault_id}", field="payload.fault_id",
                               valid=sorted(self._faults))
        if active.fault.clear is None:
            raise CommandError(f"fault {active.name!r} is permanent and cannot be cleared", field="payload.fault_id")
        active.fault.clear(active.model)
        del self._faults[fault_id]
        self._queue_event("fault.changed", {"fault_id": fault_id, "name": active.name, "params": active.params,
                                            "active": False, "t_ns": self.clock.now_ns()})

    def _expire_faults(self, now: int) -> None:
        while self._fault_heap and self._fault_heap[0][0] <= now:
            _, fid = heapq.heappop(self._fault_heap)
            if fid in self._faults:
                self.clear_fault(fid)

    def _queue_event(self, topic: str, payload: dict[str, Any]) -> None:
        # runtime events ride the same path as model events: published after the next step
        self._events.append((topic, payload))

    # -- observability -----------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        return {"t_ns": self.clock.now_ns(), "clock": self.clock.status(), "satellite": self.model.truth(),
                "faults": [f.to_wire() for f in self._faults.values()]}

    def stats_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clock": self.clock.status(), "commands": dict(self.stats.commands),
                               "rejected": dict(self.stats.rejected),
                               "refused": {k: dict(sorted(v.items())) for k, v in self.stats.refused.items()},
                               "published": self.stats.published,
                               "boards": dict(self.stats.boards_seen), "boards_evicted": self.stats.boards_seen.evicted,
                               "board_links": {k: _copy_board(v) for k, v in self.stats.board_links.items()},
                               "board_links_evicted": self.stats.board_links.evicted,
                               "duplicates": self.stats.duplicates}
        for name, link in (("board_link", self.board_link), ("control_link", self.control_link)):
            if link is not None:
                out[name] = link.stats.as_dict()
                out[name]["url"] = str(link.url)
                if link.feeds:
                    out[name]["feeds"] = [f.as_dict() for f in link.feeds.values()]
        if self.recorder is not None:
            out["recorded"] = self.recorder.records
        if self.supplies is not None:
            out["supplies"] = self.supplies.stats()
        return out

    # -- link budget and bench hooks ---------------------------------------------------------
    def _check_budget(self, link: Any) -> None:
        budget = getattr(link, "budget_bytes_s", None)
        if not budget:
            return
        from emulator.protocol.framing import frame_overhead

        demand = 0.0
        parts = []
        for item in self._schedule:
            if Plane.BOARD not in item.planes:
                continue
            sample = item.telemetry.sample()
            if type(sample) is PackedPayload:
                sample = sample.to_dict()
            size = len(encode_message(Message(item.telemetry.spec.topic, sample, seq=2**40, t_ns=2**60, src=SRC)))
            rate = NS_PER_S / item.period_ns
            bps = rate * (size + frame_overhead(size))
            demand += bps
            parts.append(f"{item.telemetry.spec.topic} {size} B x {rate:g} Hz")
        # leave room for replies and events
        usable = 0.8 * budget
        if demand <= usable:
            return
        if self.run_config.telemetry.on_budget == "refuse":
            raise ConfigError(
                f"board telemetry needs {demand:.0f} B/s but {link.url} carries {budget:.0f} B/s "
                f"({usable:.0f} B/s usable at 80 %): {'; '.join(parts)}. Lower telemetry.rates_hz, raise the baud "
                "rate, or set telemetry.on_budget = 'decimate'", field="telemetry.rates_hz")
        factor = demand / usable
        self.decimation = factor
        log.warning("board telemetry needs %.0f B/s, link carries %.0f B/s: decimating all rates by %.2f",
                    demand, usable, factor)
        for item in self._schedule:
            if Plane.BOARD in item.planes:
                item.period_ns = round(item.period_ns * factor)

    def _run_power_hook(self, on: bool, reason: str) -> None:
        cmd = self.run_config.bench.power_on_cmd if on else self.run_config.bench.power_off_cmd
        if not cmd:
            return

        import shlex

        async def run() -> None:
            try:
                proc = await asyncio.create_subprocess_exec(*shlex.split(cmd), stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
                _, err = await proc.communicate()
                if proc.returncode:
                    log.error("power hook %r exited %s: %s", cmd, proc.returncode, err.decode(errors="replace")[:500])
                else:
                    log.info("power hook %r ran (%s)", cmd, reason)
            except OSError as exc:
                log.error("power hook %r could not run: %s", cmd, exc)

        task = asyncio.create_task(run(), name="flatsat-power-hook")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

"""SimClock: the one authoritative sim time (int ns since the scenario epoch), its modes and pacing.

The only module that reads the wall clock or sleeps. Pacing is by absolute deadlines: step k
of a paced run is due at ``wall_anchor + (t_k - t_anchor) / speed``, so rounding and wake-up
delays never accumulate (no ``sleep(period)`` drift). When the emulator cannot keep up the
clock says so: lag (how late the last step was released), max lag and overruns (steps that
were released more than one step late) are counted and published as ``sim.clock``.

Modes:

========== ============================================================================
realtime   sim time follows the wall clock x1 (real boards on the bench)
scaled     x ``speed`` of the wall clock (fast-forward or slow motion)
afap       as fast as possible, no waiting
lockstep   time advances only when the control plane (or the board, if allowed) says step
========== ============================================================================

Whatever the mode, the run can pause, resume, step and run until a sim time.
Wall time is read through a :class:`WallSource`; tests inject :class:`VirtualWall`, which
jumps instead of sleeping, so pacing is tested without real sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from emulator.errors import CommandError

NS_PER_S = 1_000_000_000
#: afap: let the event loop run others (links, the board, the control plane) at least this often, in wall
#: time and in steps. A loop iteration costs about as much as a physics step, so yielding every step would
#: halve the speed of a run that nobody talks to; a request waits at most ~1 ms (while requests come: see
#: QUIET_YIELD_NS).
YIELD_NS = 1_000_000
YIELD_STEPS = 64
#: afap and lockstep while no request has come for a while (the runtime says when: :meth:`SimClock.set_yield_ns`):
#: longer batches between turns of the event loop, whose sends and sampling cost per batch (a run watched only by
#: subscribers: ~7-17 % less CPU a step than at YIELD_NS); the first request after a quiet spell waits at most this
QUIET_YIELD_NS = 4_000_000


class ClockMode(StrEnum):
    REALTIME = "realtime"
    SCALED = "scaled"
    AFAP = "afap"
    LOCKSTEP = "lockstep"


class _PreciseTimer:
    """A Linux timerfd watched by the event loop: a paced sleep wakes within tens of microseconds of its
    deadline while the thread sleeps in the kernel, instead of keeping a core busy near every deadline (a busy
    thread is what the scheduler preempts for any other process that wakes, e.g. a console beside it).

    The kernel arms a timerfd with no timer slack, unlike epoll's whole-millisecond timeouts. ``os.timerfd_*``
    is Python 3.13+; before that the same two libc calls go through ctypes. Where neither exists (not Linux),
    :meth:`create` returns None and the wall source spins as before.
    """

    def __init__(self, fd: int, arm: Callable[[int], None], loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.arm = arm
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    @classmethod
    def create(cls, loop: asyncio.AbstractEventLoop) -> _PreciseTimer | None:
        try:
            fd, arm = _timerfd()
            try:
                return cls(fd, arm, loop)
            except (NotImplementedError, OSError, ValueError):  # a loop that cannot watch fds (Windows proactor)
                os.close(fd)
                return None
        except (OSError, AttributeError, TypeError):
            return None

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except (BlockingIOError, InterruptedError):
            return
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def sleep_until(self, wall_ns: int) -> None:
        self.arm(wall_ns)
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.arm(0)  # disarm: a cancelled sleep must not fire into the next one

    def close(self) -> None:
        if self.fd < 0:
            return
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1


def _timerfd() -> tuple[int, Callable[[int], None]]:
    """Create a non-blocking CLOCK_MONOTONIC timerfd; return it and a function arming it at an absolute
    ``time.monotonic_ns()`` instant (0 disarms)."""
    if hasattr(os, "timerfd_create"):  # Python 3.13+
        fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)

        def arm(at_ns: int) -> None:
            os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME if at_ns else 0, initial=max(at_ns, 0))

        return fd, arm
    import ctypes  # Python 3.11/3.12 on Linux: the same calls through libc

    libc = ctypes.CDLL(None, use_errno=True)
    create, settime = libc.timerfd_create, libc.timerfd_settime  # AttributeError where libc lacks them

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    class Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

    tfd_nonblock, tfd_cloexec, tfd_timer_abstime = os.O_NONBLOCK, os.O_CLOEXEC, 1  # as <sys/timerfd.h> defines
    fd = create(time.CLOCK_MONOTONIC, tfd_nonblock | tfd_cloexec)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create failed")
    spec = Itimerspec()
    spec_ref = ctypes.byref(spec)

    def arm(at_ns: int) -> None:
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(at_ns, 0), NS_PER_S)
        if settime(fd, tfd_timer_abstime if at_ns else 0, spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    return fd, arm


class WallSource:
    """Monotonic wall time in ns, and sleeping until a wall instant (the real one)."""

    #: with the precise timer (Linux): wake this long short of a deadline and spin on the event loop for the
    #: rest, to absorb the thread's wake-up latency
    wake_early_ns = 100_000
    #: without it: sleep this long short of a deadline, then spin on the event loop: the default loop
    #: wakes 0.5-1.2 ms late (epoll rounds to whole ms), see docs/bench.md (pacing).
    spin_ns = 1_500_000
    #: False: always the epoll sleep + spin (what every platform can do)
    precise = True

    def __init__(self) -> None:
        self._timer: _PreciseTimer | None = None
        self._timer_tried_loop: asyncio.AbstractEventLoop | None = None

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def _precise_timer(self) -> _PreciseTimer | None:
        loop = asyncio.get_running_loop()
        if self._timer is not None and self._timer.loop is loop:
            return self._timer
        if self._timer_tried_loop is loop:
            return None  # this loop cannot have one
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        self._timer_tried_loop = loop
        self._timer = _PreciseTimer.create(loop)
        if self._timer is not None:
            weakref.finalize(self, self._timer.close)
        return self._timer

    async def sleep_until(self, wall_ns: int) -> None:
        remaining = wall_ns - time.monotonic_ns()
        timer = self._precise_timer() if self.precise and remaining > self.wake_early_ns else None
        if timer is not None and timer.waiter is None:  # one sleeper at a time; another waits the coarse way
            await timer.sleep_until(wall_ns - self.wake_early_ns)
        elif remaining > self.spin_ns:
            await asyncio.sleep((remaining - self.spin_ns) / NS_PER_S)
        while time.monotonic_ns() < wall_ns:
            await asyncio.sleep(0)

    async def yield_(self) -> None:
        await asyncio.sleep(0)

    def block_until(self, wall_ns: int) -> None:
        """Block the calling *worker thread* until a wall instant (instrument I/O pacing; never the event loop)."""
        remaining = wall_ns - time.monotonic_ns()
        if remaining > 0:
            time.sleep(remaining / NS_PER_S)


class VirtualWall(WallSource):
    """A wall clock for tests: sleeping jumps the time forward at once.

    ``work_ns_per_yield`` models how long each loop iteration costs, so tests can make the
    emulator "too slow" and watch lag and overruns being counted.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns
        self.work_ns = 0  #: added to the wall time at every sleep/yield (simulated processing cost)

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, ns: int) -> None:
        self._now_ns += ns

    async def sleep_until(self, wall_ns: int) -> None:
        self._now_ns = max(self._now_ns, wall_ns) + self.work_ns
        await asyncio.sleep(0)

    async def yield_(self) -> None:
        self._now_ns += self.work_ns
        await asyncio.sleep(0)

    def block_until(self, wall_ns: int) -> None:
        self._now_ns = max(self._now_ns, wall_ns)


@dataclass
class ClockStats:
    steps: int = 0
    lag_ns: int = 0  #: how late the last paced step was released (0 in afap/lockstep)
    max_lag_ns: int = 0
    overruns: int = 0  #: paced steps released more than one step late
    wall_elapsed_ns: int = 0  #: wall time spent running (pauses excluded)

    def to_wire(self) -> dict[str, float | int]:
        return {"steps": self.steps, "lag_s": self.lag_ns / NS_PER_S, "max_lag_s": self.max_lag_ns / NS_PER_S,
                "overruns": self.overruns, "wall_elapsed_s": self.wall_elapsed_ns / NS_PER_S}


class SimClock:
    """Sim time, advanced in steps by the runtime; pacing, pause/step/run-until, lag accounting."""

    def __init__(self, mode: ClockMode | str = ClockMode.AFAP, *, speed: float = 1.0,
                 epoch_utc: dt.datetime | None = None, wall: WallSource | None = None,
                 start_ns: int = 0) -> None:
        self.mode = ClockMode(mode)
        if self.mode == ClockMode.REALTIME:
            speed = 1.0
        _check_speed(speed)
        self.speed = float(speed)
        self.epoch_utc = epoch_utc or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        # utc_text's cache: the hour of the last text (its start in us of sim time, "YYYY-MM-DDTHH:", the offset)
        self._hour_epoch: dt.datetime | None = None
        self._hour_us = 0
        self._hour_text = ""
        self._tz_text = ""
        self.wall = wall or WallSource()
        self.stats = ClockStats()
        self._t_ns = start_ns
        self._paused = False
        #: lockstep / stepping budget: time may advance up to here (None: unlimited)
        self._limit_ns: int | None = start_ns if self.mode == ClockMode.LOCKSTEP else None
        self._pause_at_ns: int | None = None  # run_until target
        self._changed = asyncio.Event()
        self._anchor_wall_ns: int | None = None
        self._anchor_sim_ns = start_ns
        self._run_wall_start: int | None = None
        #: called just before the clock gives the event loop a turn (a yield, a paced sleep): what must be done
        #: before others run, not after every step (the runtime re-arms its links' watchers there)
        self.before_yield: Callable[[], None] | None = None
        self._since_yield = 0
        self._last_yield_ns = 0
        #: wall time between yields of a clock that does not wait (afap, lockstep): YIELD_NS or QUIET_YIELD_NS
        self.yield_ns = YIELD_NS
        #: steps that fit in yield_ns of wall time, as last measured (batches are sized by it)
        self._steps_per_yield = 1

    # -- reading ------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self._t_ns

    def utc(self, t_ns: int | None = None) -> dt.datetime:
        t = self._t_ns if t_ns is None else t_ns
        return self.epoch_utc + dt.timedelta(microseconds=t // 1000)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def limit_ns(self) -> int | None:
        return self._limit_ns

    def utc_text(self, t_ns: int | None = None) -> str:
        """:meth:`utc` as ISO 8601 text with a Z, as the wire carries it."""
        t = self._t_ns if t_ns is None else t_ns
        rel_us = t // 1000 - self._hour_us
        if 0 <= rel_us < 3_600_000_000 and self._hour_epoch is self.epoch_utc:
            # within the hour of the last text (``sim.clock`` asks every step): minutes and seconds by hand, as
            # isoformat writes them (the fraction only when not zero)
            s, us = divmod(rel_us, 1_000_000)
            m, s = divmod(s, 60)
            if us:
                return f"{self._hour_text}{m:02d}:{s:02d}.{us:06d}{self._tz_text}"
            return f"{self._hour_text}{m:02d}:{s:02d}{self._tz_text}"
        when = self.utc(t)
        text = when.isoformat().replace("+00:00", "Z")
        if isinstance(when.tzinfo, dt.timezone):  # a fixed offset (UTC): cache this hour
            self._hour_epoch = self.epoch_utc
            self._hour_us = t // 1000 - ((when.minute * 60 + when.second) * 1_000_000 + when.microsecond)
            self._hour_text = text[:14]  # YYYY-MM-DDTHH:
            self._tz_text = text[19 + (7 if when.microsecond else 0):]
        return text

    def status(self) -> dict[str, object]:
        return {"t_ns": self._t_ns, "utc": self.utc_text(), "mode": str(self.mode),
                "speed": self.speed, "paused": self._paused,
                "limit_ns": -1 if self._limit_ns is None else self._limit_ns, **self.stats.to_wire(),
                "realtime_factor": self.realtime_factor()}

    def realtime_factor(self) -> float:
        """Sim seconds per wall second achieved so far (pauses excluded)."""
        wall = self.stats.wall_elapsed_ns
        return self._t_ns / wall if wall > 0 else 0.0

    # -- control (from the control plane, or the runtime) -------------------------------------
    def pause(self) -> None:
        self._paused = True
        self._anchor_wall_ns = None
        self.notify()

    def resume(self) -> None:
        if self.mode == ClockMode.LOCKSTEP:
            raise CommandError("a lockstep clock does not run freely; use clock.step or clock.run_until",
                               field="mode", valid=["clock.step", "clock.run_until"])
        self._paused = False
        self._pause_at_ns = None
        self._anchor_wall_ns = None  # re-anchor so the pause is not counted as lag
        self.notify()

    def set_speed(self, speed: float) -> None:
        if self.mode not in (ClockMode.SCALED, ClockMode.REALTIME):
            raise CommandError(f"speed applies to realtime/scaled runs; this clock is {self.mode}",
                               field="mode", valid=["realtime", "scaled"])
        _check_speed(speed)
        self.speed = float(speed)
        if speed != 1.0:
            self.mode = ClockMode.SCALED
        self._anchor_wall_ns = None
        self.notify()

    def set_mode(self, mode: ClockMode | str, speed: float | None = None) -> None:
        self.mode = ClockMode(mode)
        if speed is not None:
            _check_speed(speed)
            self.speed = float(speed)
        if self.mode == ClockMode.REALTIME:
            self.speed = 1.0
        self._limit_ns = self._t_ns if self.mode == ClockMode.LOCKSTEP else None
        self._anchor_wall_ns = None
        self.notify()

    def step(self, duration_ns: int) -> int:
        """Allow time to advance by ``duration_ns`` more (lockstep or paused); returns the new limit."""
        if duration_ns <= 0:
            raise CommandError(f"step duration must be > 0 ns, got {duration_ns}", field="payload.duration_s")
        base = self._t_ns if self._limit_ns is None else max(self._limit_ns, self._t_ns)
        if self.mode == ClockMode.LOCKSTEP:
            self._limit_ns = base + duration_ns
        else:  # paused free-running clock: run that much, then pause again
            self._pause_at_ns = self._t_ns + duration_ns
            self._paused = False
            self._anchor_wall_ns = None
        self.notify()
        return self._limit_ns if self._limit_ns is not None else self._pause_at_ns  # type: ignore[return-value]

    def run_until(self, t_ns: int) -> None:
        if t_ns <= self._t_ns:
            raise CommandError(f"run_until target {t_ns} ns is not after the current sim time {self._t_ns} ns",
                               field="payload.t_s")
        if self.mode == ClockMode.LOCKSTEP:
            self._limit_ns = t_ns
        else:
            self._pause_at_ns = t_ns
            self._paused = False
            self._anchor_wall_ns = None
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits for a turn (the runtime calls it when it stops), so it looks again."""
        self._changed.set()

    # -- advancing (the runtime's loop) -------------------------------------------------------
    def may_advance(self, dt_ns: int) -> bool:
        if self._paused:
            return False
        if self._limit_ns is not None and self._t_ns + dt_ns > self._limit_ns:
            return False
        return not (self._pause_at_ns is not None and self._t_ns >= self._pause_at_ns)

    def set_yield_ns(self, yield_ns: int) -> None:
        """Yield to the event loop at least every ``yield_ns`` of wall time (afap, lockstep). Shorter than now: the
        batches shrink at once in proportion (the next request need not wait for a batch sized for the old one)."""
        if yield_ns < self.yield_ns:
            self._steps_per_yield = max(1, self._steps_per_yield * yield_ns // self.yield_ns)
        self.yield_ns = yield_ns

    def batch(self, dt_ns: int, most: int) -> int:
        """How many of the next ``most`` steps of ``dt_ns`` the runtime may take in one go, then release together
        with :meth:`advance_many` (0: none now, wait for a turn).

        Only a clock with no wall deadlines batches (afap, lockstep): within the lockstep limit and a
        ``run_until`` pause, and no more than fit before the next yield to the event loop (YIELD_STEPS, or
        :attr:`yield_ns` of wall time judged by the speed of the last batches). Realtime and scaled: one step at a
        time.
        """
        if not self.may_advance(dt_ns):
            return 0
        if self.mode in (ClockMode.REALTIME, ClockMode.SCALED):
            return 1
        n = min(most, self._steps_per_yield - self._since_yield)
        if self._limit_ns is not None:
            n = min(n, (self._limit_ns - self._t_ns) // dt_ns)
        if self._pause_at_ns is not None:  # steps until t >= pause_at, as may_advance allows them one by one
            n = min(n, -(-(self._pause_at_ns - self._t_ns) // dt_ns))
        return max(n, 1)

    async def advance_many(self, steps: int, dt_ns: int) -> None:
        """Release ``steps`` steps of ``dt_ns`` at once (afap and lockstep: no wall deadline); sized by
        :meth:`batch`. Yields to the event loop at least every YIELD_STEPS steps or :attr:`yield_ns` of wall time."""
        if self.mode in (ClockMode.REALTIME, ClockMode.SCALED):
            for _ in range(steps):
                await self.advance(dt_ns)
            return
        wall = self.wall
        now = wall.now_ns()
        if self._run_wall_start is None:
            self._run_wall_start = now
        self.stats.lag_ns = 0
        self._since_yield += steps
        elapsed = now - self._last_yield_ns
        if self._since_yield >= self._steps_per_yield or elapsed >= self.yield_ns:
            self._resize(elapsed)
            if self.before_yield is not None:
                self.before_yield()
            await wall.yield_()
            now = self._last_yield_ns = wall.now_ns()
            self._since_yield = 0
        self._t_ns += steps * dt_ns
        self.stats.steps += steps
        self.stats.wall_elapsed_ns += now - self._run_wall_start
        self._run_wall_start = now

    def _resize(self, elapsed_ns: int) -> None:
        # steps per yield_ns from the batch just run: grow at most 2x at a time, never above YIELD_STEPS
        if self._since_yield and 0 < elapsed_ns < 50 * self.yield_ns:
            fit = self._since_yield * self.yield_ns // elapsed_ns
            self._steps_per_yield = max(1, min(YIELD_STEPS, fit, 2 * self._steps_per_yield))

    async def wait_turn(self, dt_ns: int, until: Callable[[], bool] | None = None) -> None:
        """Wait until a step of ``dt_ns`` is allowed (not paused, within the lockstep limit), or until ``until()``
        is true (looked at whenever the clock is notified: the runtime's stop, which calls :meth:`notify`)."""
        while not self.may_advance(dt_ns):
            if until is not None and until():
                return
            if self._pause_at_ns is not None and self._t_ns >= self._pause_at_ns:
                self._pause_at_ns = None
                self._paused = True
                self._anchor_wall_ns = None
            self._changed.clear()
            if self.may_advance(dt_ns):
                break
            self._mark_idle()
            await self._changed.wait()
            # the wait yielded to the event loop: batches are sized by the stepping since, not by the wait (a
            # lockstep turn's wait for the board would shrink them to a step or two)
            self._last_yield_ns = self.wall.now_ns()
            self._since_yield = 0

    async def advance(self, dt_ns: int) -> None:
        """Release the step ``t -> t + dt_ns``: wait for its wall deadline when paced, then move time.

        Call :meth:`wait_turn` first (the runtime does, before computing the step's physics).
        """
        target = self._t_ns + dt_ns
        wall = self.wall
        if self._run_wall_start is None:
            self._run_wall_start = wall.now_ns()
        if self.mode in (ClockMode.REALTIME, ClockMode.SCALED):
            if self._anchor_wall_ns is None:
                self._anchor_wall_ns = wall.now_ns()
                self._anchor_sim_ns = self._t_ns
            deadline = self._anchor_wall_ns + int((target - self._anchor_sim_ns) / self.speed)
            if self.before_yield is not None:
                self.before_yield()
            if wall.now_ns() < deadline:
                await wall.sleep_until(deadline)
            lag = wall.now_ns() - deadline
            self.stats.lag_ns = max(lag, 0)
            self.stats.max_lag_ns = max(self.stats.max_lag_ns, self.stats.lag_ns)
            if lag > dt_ns / self.speed:
                self.stats.overruns += 1
            now = wall.now_ns()
        else:
            self.stats.lag_ns = 0
            now = wall.now_ns()
            self._since_yield += 1
            if self._since_yield >= YIELD_STEPS or now - self._last_yield_ns >= self.yield_ns:
                self._resize(now - self._last_yield_ns)
                if self.before_yield is not None:
                    self.before_yield()
                await wall.yield_()
                now = self._last_yield_ns = wall.now_ns()
                self._since_yield = 0
        self._t_ns = target
        self.stats.steps += 1
        self.stats.wall_elapsed_ns += now - self._run_wall_start
        self._run_wall_start = now

    def _mark_idle(self) -> None:
        # wall time spent waiting for permission (pause / lockstep) is not running time
        if self._run_wall_start is not None:
            now = self.wall.now_ns()
            self.stats.wall_elapsed_ns += now - self._run_wall_start
            self._run_wall_start = None


def _check_speed(speed: float) -> None:
    if not (isinstance(speed, (int, float)) and 1e-3 <= speed <= 1e6):
        raise CommandError(f"speed must be between 0.001 and 1e6, got {speed!r}", field="payload.speed")


def parse_duration_s(text: str | float) -> float:
    """'1d', '6h', '90m', '1h10m', '40m10s', '250ms', '3600' -> seconds. Raises ValueError naming the format."""
    import re

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().replace(" ", "")  # units as written: "10M" is not ten minutes
        factors = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "": 1.0}
        parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ms|d|h|m|s)?", s)
        rebuilt = "".join(num + unit for num, unit in parts)
        if not s or rebuilt != s or (len(parts) > 1 and any(unit == "" for _, unit in parts)):
            raise ValueError(f"bad duration {text!r}: use a number with an optional unit d, h, m, s or ms (lower "
                             "case), or a sum of them (e.g. '1d', '90m', '1h10m', '3600')")
        value = sum(float(num) * factors[unit] for num, unit in parts)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"duration must be a positive, finite time, got {text!r}")
    return value

"""The bench supply loop: what the runtime starts for ``[bench.supply]`` (:class:`SupplyBench`).

Per supply, both ways::

    model -> supply   after every physics step the loop looks at what its rail delivers
                      (Satellite.rail_delivery): a cut (switched off, tripped, latched, shed, cut off, or the board
                      must be power-cycled) switches the output off at once, for at least min_off_s; on again, the
                      voltage follows the rail (set point, brown-out, or the bus) within voltage_deadband_v, and the
                      current limit is the rail limiter's threshold plus limit_margin (never above max_a)
    supply -> model   readback_hz times a (wall) second: measured volts and amps; their product (the rail's volts
                      times the amps while the supply limits the current) becomes the rail's "supply" load
                      (Satellite.set_supply_load), so the battery, shedding, the limiter and the heat follow the board

The instrument I/O is blocking (pyvisa): it runs in one worker thread per supply, one call at a time, so the event
loop never waits on an instrument. Every set and readback is timed with the wall clock; the figures appear in
``stats.get`` and ``sim.links`` under ``supplies``.

Safety: outputs off (settings found at start restored) when the run ends for any reason the process survives
(end, sim.stop, Ctrl-C, SIGTERM, an exception); a guard process (:mod:`emulator.instruments.guard`) switches them off
if the process dies or its event loop stops for ``watchdog_s``; a lost connection is re-opened to switch the output
off, and stops the run; an instrument error stops the run after the output is off. Only real time drives a supply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from emulator.clock import NS_PER_S
from emulator.errors import CommandError, ConfigError, InstrumentError, InstrumentLostError
from emulator.instruments.config import (
    SupplyConfig,
    check_against_satellite,
    realtime_problem,
    supply_load_of,
)
from emulator.instruments.supply import Supply

log = logging.getLogger("flatsat.supply")
T = TypeVar("T")

#: while the supply limits the current (CC), the measured current is at least this share of the limit ...
CC_CURRENT_SHARE = 0.98
#: ... and the measured voltage this far below the set point (V)
CC_SAG_V = 0.05
#: how long aclose() waits for the output-off and restore sequence of one supply (s)
SHUTDOWN_S = 10.0
#: the guard process must say it is ready within this (s): it imports pyvisa and checks its spec
GUARD_READY_S = 20.0
#: the interpreter's thread switch interval while supplies run (s): see SupplyBench.start
SWITCH_INTERVAL_S = 0.0005


class Timing:
    """Wall-clock durations of one kind of operation: count, last, mean, max (ms)."""

    __slots__ = ("last_ns", "max_ns", "n", "total_ns")

    def __init__(self) -> None:
        self.n = 0
        self.last_ns = self.max_ns = self.total_ns = 0

    def add(self, ns: int) -> None:
        self.n += 1
        self.last_ns = ns
        self.total_ns += ns
        self.max_ns = max(self.max_ns, ns)

    def to_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "last_ms": self.last_ns / 1e6, "mean_ms": self.total_ns / self.n / 1e6 if self.n else 0.0,
                "max_ms": self.max_ns / 1e6}


class SupplyLoop:
    """One supply playing one rail of a running emulator."""

    def __init__(self, cfg: SupplyConfig, emu: Any, load: str) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.emu = emu
        self.model = emu.model
        self.wall = emu.clock.wall
        self.load = load
        self.supply = Supply(cfg, self.wall)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"flatsat-supply-{cfg.name}")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        rail_limit = self.model.rail_delivery(cfg.rail).current_limit_a
        self.limit_a = min(cfg.max_a, rail_limit * (1.0 + cfg.limit_margin))
        if rail_limit * (1.0 + cfg.limit_margin) > cfg.max_a:
            log.warning("%s: max_a %.3f A is below rail %r's limiter (%.3f A) plus the %.0f %% margin: a real "
                        "over-current is clamped by the supply at %.3f A before the model's limiter sees it",
                        self.name, cfg.max_a, cfg.rail, rail_limit, cfg.limit_margin * 100, self.limit_a)
        self.min_off_ns = round(cfg.min_off_s * NS_PER_S)
        self.period_ns = round(NS_PER_S / cfg.readback_hz)
        # what the instrument has (as far as flatsat commanded it)
        self.up = False
        self.output_on = False
        self.output_known = False   # False after a lost connection until the output is confirmed off
        self.v_set = 0.0
        self.a_set = 0.0
        self._off_since_ns = -(2**62)
        self._seen_cuts = 0
        self._target: Any = None             # RailDelivery as of the last released step
        self._change_ns: int | None = None   # wall time the model asked for something the instrument has not yet done
        self._cut_ns: int | None = None      # wall time a cut was seen (for cut-to-off)
        self._last_read_ns = 0
        # measurements and figures
        self.meas_v = self.meas_a = self.meas_w = 0.0
        self.cc = False
        self.cc_readbacks = 0
        self.set_timing = Timing()
        self.readback_timing = Timing()
        self.cut_to_off = Timing()
        self.lag_ns = 0
        self.max_lag_ns = 0
        self.reconnects = 0
        self.last_error = ""
        self.stopped_reason = ""

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        was_on = await self._call(self.supply.start)
        now = self.wall.now_ns()
        self.up = self.output_known = True
        self.output_on = False
        if was_on:
            self._off_since_ns = now
        self._target = self.model.rail_delivery(self.cfg.rail)
        self._seen_cuts = self._target.cuts
        self.model.set_supply_load(self.load, 0.0)
        idn = self.supply.idn or "(dry run)"
        log.info("%s: %s channel %d plays rail %r: %s; limit %.3f A, max %.3f V / %.3f A", self.name,
                 self.cfg.resource, self.cfg.channel, self.cfg.rail, idn, self.limit_a, self.cfg.max_v, self.cfg.max_a)
        self._change_ns = now
        self._task = asyncio.create_task(self._run(), name=f"flatsat-supply-{self.name}")

    async def shutdown(self) -> bool:
        """Stop the loop; output off and the settings found at start restored. True if the output is known off."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        ok = False
        try:
            if self.supply.is_open:
                await asyncio.wait_for(self._call(self.supply.restore), SHUTDOWN_S)
                ok = True
            else:
                ok = await self._reopen_and_off(self.cfg.reconnect_s)
        except (InstrumentError, TimeoutError) as exc:
            log.error("%s: switching the output off at exit failed: %s", self.name, exc)
            with contextlib.suppress(Exception):
                ok = await self._reopen_and_off(self.cfg.reconnect_s)
        if ok:
            self.output_on = False
            log.info("%s: output off, settings found at start restored", self.name)
        else:
            log.critical("%s: the output state of %s channel %d is UNKNOWN: check the supply", self.name,
                         self.cfg.resource, self.cfg.channel)
        await self._call(self.supply.close)
        self._executor.shutdown(wait=False)
        self.up = False
        return ok

    # -- model -> supply ---------------------------------------------------------------------------------------
    def on_step(self, t_ns: int) -> None:
        """After every physics step, when the step is released (an observer): what the rail delivers from now on;
        wake the loop if that is something new. The loop acts on this, never on the model's state between two
        releases (the physics of a paced step is computed before its wall-clock deadline)."""
        self._target = d = self.model.rail_delivery(self.cfg.rail)
        if d.cuts != self._seen_cuts or (self.output_on and not d.on):
            if self._cut_ns is None:
                self._cut_ns = self.wall.now_ns()
            self._mark_change()
        elif d.on and (not self.output_on or abs(min(d.voltage_v, self.cfg.max_v) - self.v_set)
                       > self.cfg.voltage_deadband_v):
            self._mark_change()

    def _mark_change(self) -> None:
        if self._change_ns is None:
            self._change_ns = self.wall.now_ns()
        self._wake.set()

    async def _apply(self) -> int | None:
        """Bring the instrument to what the rail delivers; the wall time to come back (min_off_s), or None."""
        d = self._target
        cut = d.cuts != self._seen_cuts
        self._seen_cuts = d.cuts
        if self.output_on and (cut or not d.on):
            t0 = self.wall.now_ns()
            await self._call(self.supply.output_off)
            t1 = self.wall.now_ns()
            self.output_on = False
            self._off_since_ns = t1
            self.set_timing.add(t1 - t0)
            if self._cut_ns is not None:
                self.cut_to_off.add(t1 - self._cut_ns)
            self.model.set_supply_load(self.load, 0.0)
            self.meas_w = 0.0
            self._done(t1)
            log.info("%s: output off (rail %r %s)", self.name, self.cfg.rail, "cut" if cut else "off")
        self._cut_ns = None
        if not d.on:
            self._done(self.wall.now_ns())
            return None
        if not self.output_on:
            back = self._off_since_ns + self.min_off_ns
            if self.wall.now_ns() < back:
                return back   # a power cycle lasts at least min_off_s
            t0 = self.wall.now_ns()
            self.v_set, self.a_set = await self._call(self.supply.switch_on, d.voltage_v, self.limit_a)
            t1 = self.wall.now_ns()
            self.output_on = True
            self.set_timing.add(t1 - t0)
            self._done(t1)
            log.info("%s: output on at %.3f V, limit %.3f A", self.name, self.v_set, self.a_set)
        elif abs(min(d.voltage_v, self.cfg.max_v) - self.v_set) > self.cfg.voltage_deadband_v:
            t0 = self.wall.now_ns()
            self.v_set = await self._call(self.supply.set_voltage, d.voltage_v)
            t1 = self.wall.now_ns()
            self.set_timing.add(t1 - t0)
            self._done(t1)
        else:
            self._done(self.wall.now_ns())
        return None

    def _done(self, t_ns: int) -> None:
        if self._change_ns is not None:
            self.lag_ns = max(0, t_ns - self._change_ns)
            self.max_lag_ns = max(self.max_lag_ns, self.lag_ns)
            self._change_ns = None

    # -- supply -> model ---------------------------------------------------------------------------------------
    async def _readback(self) -> None:
        t0 = self.wall.now_ns()
        got = await self._call(self.supply.measure)
        t1 = self.wall.now_ns()
        self._last_read_ns = t1
        if got is None:  # dry run: nothing measured, the model keeps the load's configured power
            return
        self.readback_timing.add(t1 - t0)
        v, a = got
        self.meas_v, self.meas_a = v, a
        if not self.output_on:
            self.cc = False
            self.meas_w = 0.0
            return
        # current-limited: the supply holds the amps and lets the volts sag; on the rail (at its voltage) the
        # board would draw those amps, so the model's limiter sees them
        self.cc = a >= CC_CURRENT_SHARE * self.a_set and v < self.v_set - CC_SAG_V
        self.cc_readbacks += self.cc
        p = (self.v_set if self.cc else v) * a
        self.meas_w = max(0.0, p)
        self.model.set_supply_load(self.load, self.meas_w)

    # -- the loop ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except InstrumentLostError as exc:
            self.up = False
            self.output_known = False
            self.last_error = str(exc)
            log.error("%s: connection lost: %s", self.name, exc)
            ok = await self._reopen_and_off(self.cfg.reconnect_s)
            state = "output switched off after reconnecting" if ok else "OUTPUT STATE UNKNOWN (the guard keeps trying)"
            self._stop(f"supply {self.name}: connection to {self.cfg.resource} lost ({state})")
        except InstrumentError as exc:
            self.last_error = str(exc)
            log.error("%s: %s", self.name, exc)
            await self._try_off()
            self._stop(f"supply {self.name}: instrument error: {exc}")
        except Exception as exc:
            log.exception("%s: supply loop failed", self.name)
            self.last_error = f"{type(exc).__name__}: {exc}"
            await self._try_off()
            self._stop(f"supply {self.name}: loop failed: {type(exc).__name__}: {exc}")

    async def _loop(self) -> None:
        next_read = self.wall.now_ns()
        back_at: int | None = None
        while True:
            now = self.wall.now_ns()
            due = next_read if back_at is None else min(next_read, back_at)
            if due > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), (due - now) / NS_PER_S)
            self._wake.clear()
            back_at = await self._apply()
            now = self.wall.now_ns()
            if now >= next_read:
                await self._readback()
                next_read += self.period_ns
                if next_read <= now:  # a slow instrument: no burst of catch-up readings
                    next_read = now + self.period_ns

    async def _try_off(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._call(self.supply.output_off, check=False), SHUTDOWN_S)
            self.output_on = False

    async def _reopen_and_off(self, within_s: float) -> bool:
        deadline = self.wall.now_ns() + round(within_s * NS_PER_S)
        delay_s = 0.1
        while True:
            try:
                await self._call(self._reopen_off)
                self.reconnects += 1
                self.up = self.output_known = True
                self.output_on = False
                log.warning("%s: reconnected to %s and switched the output off", self.name, self.cfg.resource)
                return True
            except InstrumentError as exc:
                self.last_error = str(exc)
            now = self.wall.now_ns()
            if now + delay_s * NS_PER_S > deadline:
                return False
            await self.wall.sleep_until(now + round(delay_s * NS_PER_S))
            delay_s = min(1.0, delay_s * 2)

    def _reopen_off(self) -> None:
        self.supply.close()
        self.supply.open()
        self.supply.output_off(check=False)

    def _stop(self, reason: str) -> None:
        self.stopped_reason = reason
        log.error("%s", reason)
        self.emu.request_stop(reason)

    # -- figures -------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {"resource": self.cfg.resource, "channel": self.cfg.channel, "rail": self.cfg.rail, "load": self.load,
                "driver": self.cfg.driver, "idn": self.supply.idn, "dry_run": self.cfg.dry_run, "is_up": self.up,
                "output_on": self.output_on, "set_v": self.v_set, "limit_a": self.a_set or self.limit_a,
                "meas_v": self.meas_v, "meas_a": self.meas_a, "meas_w": self.meas_w, "cc": self.cc,
                "cc_readbacks": self.cc_readbacks, "lag_s": self.lag_ns / NS_PER_S,
                "max_lag_s": self.max_lag_ns / NS_PER_S, "set": self.set_timing.to_dict(),
                "readback": self.readback_timing.to_dict(), "cut_to_off": self.cut_to_off.to_dict(),
                "clamps": self.supply.clamps, "errors": len(self.supply.errors), "last_error": self.last_error,
                "reconnects": self.reconnects}

    def links_sample(self) -> dict[str, Any]:
        return {"is_up": self.up, "output_on": self.output_on, "lag_s": self.lag_ns / NS_PER_S,
                "set_ms": self.set_timing.last_ns / 1e6, "readback_ms": self.readback_timing.last_ns / 1e6,
                "cut_to_off_ms": self.cut_to_off.last_ns / 1e6, "errors": len(self.supply.errors),
                "reconnects": self.reconnects}


class SupplyBench:
    """Every ``[bench.supply]`` of a run, their guard process, and their hooks into the emulator."""

    def __init__(self, emu: Any, supplies: list[SupplyConfig]) -> None:
        model = emu.model
        if not all(hasattr(model, a) for a in ("rail_delivery", "set_supply_load", "supply_loads")):
            raise ConfigError(f"bench.supply: this model ({type(model).__name__}) cannot be powered from a bench "
                              "supply (a single satellite can; a cluster cannot)", field="bench.supply")
        sat_cfg = getattr(model, "config", None)
        loads = list(getattr(getattr(sat_cfg, "power", None), "loads", []))
        try:
            if sat_cfg is not None and hasattr(sat_cfg, "power"):
                check_against_satellite(supplies, sat_cfg)
            names = [supply_load_of(s, loads) for s in supplies]
        except ValueError as exc:
            raise ConfigError(str(exc), field="bench.supply") from None
        self.emu = emu
        self.loops = [SupplyLoop(s, emu, name) for s, name in zip(supplies, names, strict=True)]
        self._guard: subprocess.Popen[bytes] | None = None
        self._guard_task: asyncio.Task[None] | None = None
        self._remove_observer: Callable[[], None] | None = None
        self._remove_clock_guard: Callable[[], None] | None = None
        self._switch_s: float | None = None

    def check_clock(self, mode: str, speed: float) -> None:
        why = realtime_problem(mode, speed)
        if why:
            raise CommandError(f"refused while bench supplies run: {why}", field="payload.mode")

    async def start(self) -> None:
        clock = self.emu.clock
        why = realtime_problem(str(clock.mode), clock.speed)
        if why:
            raise ConfigError(f"bench.supply: {why}", field="sim.mode", valid=["realtime", "scaled"])
        started: list[SupplyLoop] = []
        try:
            guarded = [lp.cfg for lp in self.loops if lp.cfg.guard and not lp.cfg.dry_run]
            if guarded:
                await self._start_guard(guarded)
            for lp in self.loops:
                await lp.start()
                started.append(lp)
        except BaseException:
            for lp in started:
                await lp.shutdown()
            for lp in self.loops:
                if lp not in started:
                    await asyncio.get_running_loop().run_in_executor(lp._executor, lp.supply.close)
                    lp._executor.shutdown(wait=False)
            await self._stop_guard(clean=True)
            raise
        self._remove_observer = self.emu.add_observer(self._on_step)
        self._remove_clock_guard = self.emu.add_clock_guard(self.check_clock)
        # the supplies' worker threads need the GIL at once when an instrument answers, also while the event loop
        # spins toward a step deadline (clock.WallSource): hand it over after 0.5 ms instead of Python's 5 ms
        self._switch_s = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_s, SWITCH_INTERVAL_S))

    def _on_step(self, t_ns: int) -> None:
        for lp in self.loops:
            lp.on_step(t_ns)

    async def aclose(self) -> None:
        if self._switch_s is not None:
            sys.setswitchinterval(self._switch_s)
            self._switch_s = None
        if self._remove_observer is not None:
            self._remove_observer()
            self._remove_observer = None
        if self._remove_clock_guard is not None:
            self._remove_clock_guard()
            self._remove_clock_guard = None
        results = await asyncio.gather(*(lp.shutdown() for lp in self.loops), return_exceptions=True)
        clean = all(r is True for r in results)
        await self._stop_guard(clean=clean)

    # -- the guard process ---------------------------------------------------------------------------------------
    async def _start_guard(self, guarded: list[SupplyConfig]) -> None:
        watchdog_s = min(s.watchdog_s for s in guarded)
        spec = {"watchdog_s": watchdog_s, "supplies": [s.model_dump(mode="json") for s in guarded]}
        # a plain Popen, not an asyncio subprocess: asyncio kills a child that still runs when its transport closes,
        # and the guard must outlive this process. Its own session: a Ctrl-C in the terminal reaches the emulator
        # (which switches off cleanly and says bye), not the guard.
        argv = [sys.executable, "-m", "emulator.instruments.guard"]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: ASYNC220 (fork+exec, once)
                                start_new_session=True)
        self._guard = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        proc.stdin.flush()
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), GUARD_READY_S)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self._stop_guard(clean=True)
            raise InstrumentError(f"bench.supply: the guard process did not start (it said {line!r}); see its "
                                  "message above")
        os.set_blocking(proc.stdin.fileno(), False)   # a heartbeat never blocks the event loop
        self._guard_task = asyncio.create_task(self._heartbeat(watchdog_s / 4), name="flatsat-supply-guard")
        log.info("supply guard running (pid %d): outputs go off if this process dies or stalls for %.1f s",
                 proc.pid, watchdog_s)

    def _guard_say(self, word: bytes) -> bool:
        proc = self._guard
        if proc is None or proc.stdin is None:
            return False
        try:
            os.write(proc.stdin.fileno(), word + b"\n")
        except BlockingIOError:
            return True   # the pipe is full of heartbeats the guard has not read: it is alive, or its timer trips
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    async def _heartbeat(self, period_s: float) -> None:
        proc = self._guard
        assert proc is not None
        wall = self.emu.clock.wall
        while True:
            if proc.poll() is not None:
                reason = f"the supply guard exited ({proc.returncode}): outputs were switched off by it"
                for lp in self.loops:
                    await lp._try_off()
                self.emu.request_stop(reason)
                return
            if not self._guard_say(b"h"):
                self.emu.request_stop("the supply guard is gone (its pipe is closed)")
                return
            await wall.sleep_until(wall.now_ns() + round(period_s * NS_PER_S))

    async def _stop_guard(self, *, clean: bool) -> None:
        if self._guard_task is not None:
            self._guard_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._guard_task
            self._guard_task = None
        proc = self._guard
        if proc is None:
            return
        if clean:
            self._guard_say(b"bye")
        self._guard = None
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        try:
            # unclean: the guard is switching the outputs off now; wait for its word (it logs to stderr)
            await asyncio.to_thread(proc.wait, 10.0 if clean else 60.0)
        except subprocess.TimeoutExpired:
            log.error("supply guard (pid %d) did not exit; it goes on by itself", proc.pid)

    # -- figures -------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {lp.name: lp.stats() for lp in self.loops}

    def links_sample(self) -> dict[str, Any]:
        return {lp.name: lp.links_sample() for lp in self.loops}


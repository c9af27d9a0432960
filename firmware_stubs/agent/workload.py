"""The board's real work under the agent's control: a built-in numpy inference loop, or a user command.

Both obey the same controls, which the agent maps from the emulator's events (docs/protocol-accelerator.md):

============================  ===================================================================================
control                       effect
============================  ===================================================================================
``start()``                   cold boot: start working (a new generation; nothing carried over)
``stop()``                    power off: stop everything, jobs in flight are lost
``hang()``                    SEFI: stop producing results (the worker freezes mid-job) until ``start()``
``set_duty(d)``               hardware throttle: compute at most ``d`` of the time (sleep ``1 - d``)
``corrupt_next(effect_id)``   SDC: flip one bit of the next result, and remember ``effect_id`` with that job
``lose_job(effect_id)``       MBU: fail the job in flight and resubmit it; ``effect_id`` is acknowledged once the
                              lost work is resubmitted (at once if nothing was in flight)
============================  ===================================================================================

:class:`NumpyWorkload` runs jobs in a worker thread. A job is ``batches`` float32 matrix products with a ReLU (the
inference load, run through BLAS like a real model's layers) followed by the job's *checked result*: the integer
product of the protocol's published job recipe (``firmware_stubs.jobcheck``) for the job's seed, which the agent's
checker recomputes. Utilisation is the busy fraction of wall time (time inside the products over elapsed time).

:class:`CommandWorkload` runs a user command as a subprocess in its own process group, over and over (each exit
with status 0 counts as one job done). Its utilisation is the CPU time of its process tree (``/proc/<pid>/stat``)
over wall time and ``cpus``; where ``/proc`` cannot be read it is assumed 1.0 while the command runs. Duty, hang
and power use SIGSTOP / SIGCONT / SIGTERM on the group. An SDC cannot be put into a foreign program's results, so
:meth:`CommandWorkload.corrupt_next` refuses (the agent logs it and the event stays unhandled in the truth).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_stubs.agent.sensors import MinWindow
from firmware_stubs.jobcheck import expected_result

log = logging.getLogger("flatsat.agent")

JOB_KIND = "inference"


def throttle_sleep_s(busy_s: float, duty: float) -> float:
    """Idle time after ``busy_s`` of work so that work is ``duty`` of the total: busy x (1 - duty) / duty."""
    if duty >= 1.0:
        return 0.0
    return busy_s * (1.0 - duty) / max(duty, 1e-3)


@dataclass
class FinishedJob:
    """A job's result as the application sees it (possibly corrupted), for the checker."""

    id: int
    seed: int
    kind: str
    result: np.ndarray
    effect_id: int | None = None


class Workload:
    """Common state: generation counter, duty, jobs, acknowledgements, busy time. Thread-safe."""

    kind = "workload"

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, min_window_s: float = 0.5) -> None:
        self._mono = monotonic
        self._cond = threading.Condition()
        self.state = "stopped"             # stopped | running | hung
        self.generation = 0
        self.duty = 1.0
        self.jobs_done = 0                 # since the last cold boot
        self.jobs_done_total = 0
        self.jobs_lost = 0
        self.boots = 0
        self._busy_s = 0.0
        self._meter = MinWindow(min_window_s)
        self._finished: list[FinishedJob] = []
        self._acked: list[int] = []
        self.heartbeat_s = monotonic()
        self.can_corrupt = False

    # -- controls --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self.generation += 1
            self.state = "running"
            self.jobs_done = 0
            self.boots += 1
            self.heartbeat_s = self._mono()
            self._meter.reset()
            self._on_start()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.generation += 1
            self.state = "stopped"
            self._on_stop()
            self._cond.notify_all()

    def hang(self) -> None:
        with self._cond:
            if self.state == "running":
                self.state = "hung"
                self._on_hang()
                self._cond.notify_all()

    def set_duty(self, duty: float) -> None:
        with self._cond:
            self.duty = min(1.0, max(0.0, duty))
            self._cond.notify_all()

    def corrupt_next(self, effect_id: int) -> bool:
        return False

    def lose_job(self, effect_id: int) -> None:
        with self._cond:
            self._acked.append(effect_id)

    def close(self) -> None:
        self.stop()

    # -- readings --------------------------------------------------------------------------------------------------
    def take_finished(self) -> list[FinishedJob]:
        with self._cond:
            out, self._finished = self._finished, []
        return out

    def take_acked(self) -> list[int]:
        with self._cond:
            out, self._acked = self._acked, []
        return out

    def utilisation(self) -> float:
        """Busy fraction of wall time over the last window of at least ``min_window_s``."""
        with self._cond:
            busy = self._busy_total()
        value = self._meter.update(busy, self._mono())
        return min(1.0, max(0.0, value or 0.0))

    def heartbeat_age_s(self) -> float:
        """Wall seconds since the work last made progress (a watchdog reads this)."""
        return self._mono() - self.heartbeat_s

    @property
    def expects_progress(self) -> bool:
        """True while the work should be making progress (running, not throttled to nothing)."""
        return self.state in ("running", "hung") and self.duty > 0.0

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _busy_total(self) -> float:
        return self._busy_s

    def _on_start(self) -> None:
        return None

    def _on_stop(self) -> None:
        return None

    def _on_hang(self) -> None:
        return None


class NumpyWorkload(Workload):
    """Inference-like float32 products in a worker thread, each job ending in a recomputable integer result."""

    kind = "numpy"

    def __init__(self, *, matrix_dim: int = 256, batches: int = 8, result_dim: int = 64, seed: int = 0,
                 monotonic: Callable[[], float] = time.monotonic, min_window_s: float = 0.5) -> None:
        super().__init__(monotonic, min_window_s)
        self.matrix_dim = matrix_dim
        self.batches = batches
        self.result_dim = result_dim
        self.can_corrupt = True
        self._rng = np.random.default_rng(seed)
        w = self._rng.standard_normal((matrix_dim, matrix_dim)).astype(np.float32)
        self._w = w / np.float32(np.sqrt(matrix_dim))
        self._next_id = 1
        self._sdc: list[int] = []
        self._mbu: list[int] = []
        self._resubmit: list[tuple[int, list[int]]] = []   # (seed, effect ids acknowledged when it restarts)
        self._in_flight: int | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="agent-workload", daemon=True)
        self._thread.start()

    def corrupt_next(self, effect_id: int) -> bool:
        with self._cond:
            self._sdc.append(effect_id)
        return True

    def lose_job(self, effect_id: int) -> None:
        with self._cond:
            if self.state == "running" and self._in_flight is not None:
                self._mbu.append(effect_id)       # the worker fails the job at its next batch
            else:
                self._acked.append(effect_id)     # nothing in flight: nothing to resubmit
            self._cond.notify_all()

    def _on_stop(self) -> None:
        # a power loss or reboot loses every job in flight and queued; an MBU on a job that was lost with them
        # needs no resubmission of its own (everything restarts from cold), so it is acknowledged now.
        # A pending SDC stays pending: it corrupts the next result produced after the restart.
        for _seed, acks in self._resubmit:
            self._acked.extend(acks)
        self._resubmit.clear()
        self._acked.extend(self._mbu)
        self._mbu.clear()

    def _on_start(self) -> None:
        self._on_stop()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self.generation += 1
            self.state = "stopped"
            self._cond.notify_all()
        self._thread.join(timeout=10)

    # -- the worker ------------------------------------------------------------------------------------------------
    def _wait_runnable(self, gen: int | None) -> int | None:
        """Block while stopped, hung or at duty 0; returns the generation to work in, None when closed.
        With ``gen`` given, returns None as soon as the generation changes (the job in flight is lost)."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if gen is not None and self.generation != gen:
                    return None
                if self.state == "running" and self.duty > 0.0:
                    return self.generation
                self._cond.wait()

    def _run(self) -> None:
        while True:
            gen = self._wait_runnable(None)
            if gen is None:
                return
            with self._cond:
                if self._resubmit:
                    seed, acks = self._resubmit.pop(0)
                    self._acked.extend(acks)      # the lost work is resubmitted: acknowledge its MBU
                else:
                    seed = self._next_id
                job_id = self._next_id
                self._next_id += 1
                self._in_flight = job_id
            done = self._job(gen, seed)
            with self._cond:
                self._in_flight = None
                if done is None:
                    continue
                if self.generation != gen:  # finished just as the power went: the result never leaves the chip
                    continue
                effect = None
                if self._sdc:
                    effect = self._sdc.pop(0)
                    flat = done.reshape(-1).view(np.uint32)
                    elem = int(self._rng.integers(flat.size))
                    flat[elem] ^= np.uint32(1 << int(self._rng.integers(32)))
                self._finished.append(FinishedJob(job_id, seed, JOB_KIND, done, effect))
                self.jobs_done += 1
                self.jobs_done_total += 1

    def _job(self, gen: int, seed: int) -> np.ndarray | None:
        x = np.random.default_rng(seed).standard_normal((self.matrix_dim, self.matrix_dim)).astype(np.float32)
        for _ in range(self.batches):
            if self._wait_runnable(gen) is None:
                with self._cond:
                    self.jobs_lost += 1
                return None
            with self._cond:
                if self._mbu:
                    lost, self._mbu = self._mbu, []
                    self._resubmit.append((seed, lost))
                    self.jobs_lost += 1
                    return None
                duty = self.duty
            t0 = self._mono()
            x = np.maximum(self._w @ x, np.float32(0.0))
            x *= np.float32(1.0) / max(np.float32(1e-30), np.float32(np.abs(x).max()))
            dt = self._mono() - t0
            with self._cond:
                self._busy_s += dt
                self.heartbeat_s = self._mono()
                if duty < 1.0:
                    # a hardware throttle: idle (1 - duty) / duty of the busy time, woken early by any control
                    self._cond.wait(throttle_sleep_s(dt, duty))
        result = expected_result(seed, JOB_KIND, self.result_dim)
        with self._cond:
            self.heartbeat_s = self._mono()
        return result


class CommandWorkload(Workload):
    """A user command, run again and again in its own process group, controlled with signals."""

    kind = "command"

    def __init__(self, command: str, *, cpus: int | None = None, proc_root: str = "/proc",
                 duty_period_s: float = 0.2, monotonic: Callable[[], float] = time.monotonic,
                 min_window_s: float = 0.5) -> None:
        super().__init__(monotonic, min_window_s)
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("--workload-cmd is empty")
        self.cpus = cpus or os.cpu_count() or 1
        self.proc = Path(proc_root)
        self.duty_period_s = duty_period_s
        self._p: subprocess.Popen[bytes] | None = None
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._cpu_base = 0.0          # CPU seconds of commands that already exited
        self._wall_busy = 0.0         # when /proc cannot be read: seconds the command ran unstopped
        self._proc_ok = (self.proc / "self" / "stat").exists()
        self.scan_period_s = 0.1
        self._scan_t: float | None = None
        self._last_live_s = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._supervise, name="agent-command", daemon=True)
        self._thread.start()

    # -- process control -------------------------------------------------------------------------------------------
    def _signal(self, sig: int) -> None:
        p = self._p
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)

    def _kill(self) -> None:
        p = self._p
        if p is None:
            return
        if p.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                p.wait()
            self.jobs_lost += 1
        self._cpu_base += self._last_live_s   # CPU time up to the last scan (a dead process has no /proc entry)
        self._last_live_s = 0.0
        self._p = None

    def _spawn(self) -> None:
        self._p = subprocess.Popen(self.argv, start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.heartbeat_s = self._mono()

    def _on_start(self) -> None:
        self._kill()
        self._spawn()

    def _on_stop(self) -> None:
        self._kill()

    def _on_hang(self) -> None:
        self._signal(signal.SIGSTOP)

    def lose_job(self, effect_id: int) -> None:
        with self._cond:
            if self.state == "running":
                self._kill()
                self._spawn()            # the lost work, resubmitted
            self._acked.append(effect_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self.generation += 1
            self.state = "stopped"
            self._kill()
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _supervise(self) -> None:
        """Restart the command when it exits, and apply the duty cycle with SIGSTOP / SIGCONT.

        Every signal is sent under the lock after checking the state, so a hang (SIGSTOP) is never undone."""
        stopped = False
        with self._cond:
            while not self._closed:
                p = self._p
                if self.state == "running" and p is not None and p.poll() is not None:
                    if p.returncode == 0:
                        self.jobs_done += 1
                        self.jobs_done_total += 1
                    else:
                        log.warning("workload command exited with status %s; restarting it", p.returncode)
                    self._cpu_base += self._last_live_s
                    self._last_live_s = 0.0
                    self._spawn()
                    stopped = False
                if self.state != "running":
                    self._cond.wait(self.duty_period_s)
                    continue
                duty = self.duty
                if stopped and duty > 0.0:
                    self._signal(signal.SIGCONT)
                    stopped = False
                on_s = duty * self.duty_period_s
                if on_s > 0.0:
                    self._cond.wait(on_s)
                    if self.state != "running":
                        continue                 # stop/hang already signalled the process
                    self._wall_busy += on_s
                    self.heartbeat_s = self._mono()
                if duty < 1.0:
                    self._signal(signal.SIGSTOP)
                    stopped = True
                    self._cond.wait(self.duty_period_s - on_s)

    # -- utilisation from /proc ----------------------------------------------------------------------------------
    def _tree_cpu_s(self, root_pid: int) -> float:
        """CPU seconds (user + system, and of reaped children) of ``root_pid`` and every live descendant."""
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for d in self.proc.iterdir():
            if not d.name.isdigit():
                continue
            try:
                raw = (d / "stat").read_text()
            except OSError:
                continue
            # the command name (field 2) may hold spaces and parentheses: split after the last ')'
            fields = raw[raw.rfind(")") + 2:].split()
            try:
                ppid = int(fields[1])
                ticks = sum(int(f) for f in fields[11:15])   # utime stime cutime cstime
            except (ValueError, IndexError):
                continue
            parents[int(d.name)] = ppid
            times[int(d.name)] = ticks / self._tick
        tree = {root_pid}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return sum(times.get(p, 0.0) for p in tree)

    def _busy_total(self) -> float:
        if not self._proc_ok:
            return self._wall_busy
        now = self._mono()
        if self._scan_t is None or now - self._scan_t >= self.scan_period_s:   # a /proc scan costs ~1 ms
            self._scan_t = now
            p = self._p
            if p is not None and p.poll() is None:
                self._last_live_s = self._tree_cpu_s(p.pid)
        return (self._cpu_base + self._last_live_s) / self.cpus

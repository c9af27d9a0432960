"""SIGINT and SIGTERM for every ``flatsat`` command: installed one way, one exit-code scheme.

Exit codes of every command: 0 done (``test``: every scenario passed), 1 a test failed, 2 a set-up
error (bad config, scenario or URL, a port in use, a lockstep run nobody stepped), 128 + the signal
number when interrupted (130 for SIGINT, 143 for SIGTERM), after printing where the run was.

The handler goes on the running asyncio loop (``loop.add_signal_handler``), not through Python's
``KeyboardInterrupt``: a background job of a non-interactive shell starts with SIGINT ignored, and
Python keeps it ignored, so only an explicit handler makes ``kill -INT`` stop such a job. The first
signal asks the command to stop cleanly (recordings closed, partial reports written); a second one
(at least REPEAT_S later: ``timeout -s INT`` signals the process and its group, so one timeout
delivers the signal twice at once) cancels the command's task, and the command exits with the same
code, saying it stopped at once (:func:`forced_exit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: exit code of a set-up error (bad input, a busy port, a lockstep run that nobody stepped)
EXIT_SETUP = 2

#: the same signal again within this many seconds of the first is the same request (one delivery, seen twice)
REPEAT_S = 0.5

#: the signal whose repeat cancelled a command's task (None: none did): :func:`forced_exit` reads it
_forced: int | None = None


class Interrupts:
    """Catch SIGINT / SIGTERM on the running loop; ``on_signal(reason)`` runs on the first one.

    ::

        intr = Interrupts()
        intr.install(emu.request_stop)      # inside the command's coroutine
        ...
        return intr.exit_code or 0
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first_at = 0.0
        self._installed: list[int] = []

    def install(self, on_signal: Callable[[str], object]) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._fire, sig, on_signal, task)
                self._installed.append(sig)

    def _fire(self, sig: int, on_signal: Callable[[str], object], task: asyncio.Task[object] | None) -> None:
        global _forced
        now = time.monotonic()
        if self.signum is None:
            self.signum = sig
            self._first_at = now
            on_signal(f"signal {signal.Signals(sig).name}")
        elif sig == self.signum and now - self._first_at < REPEAT_S:
            return  # the first one delivered again (to the process and to its group)
        elif task is not None and not task.done():
            _forced = self.signum
            task.cancel()  # a second signal: stop waiting for a clean end

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for sig in self._installed:
                loop.remove_signal_handler(sig)
        self._installed.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number once interrupted (130 for SIGINT), else None."""
        return None if self.signum is None else 128 + self.signum


def fmt_sim_t(t_s: float) -> str:
    """Sim time for people: '1:02:03' (h:mm:ss), with the seconds as given below a minute."""
    if t_s < 60:
        return f"{t_s:g} s"
    h, rem = divmod(int(t_s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


def interrupted_line(command: str, intr: Interrupts, t_s: float) -> str:
    return f"flatsat {command}: interrupted at sim t={fmt_sim_t(t_s)} ({intr.name})"


def forced_exit(command: str, exc: BaseException) -> int | None:
    """The exit code of a command whose task a second signal cancelled (``exc`` the CancelledError that ended
    it), after saying so; None if ``exc`` is anything else."""
    if _forced is None or not isinstance(exc, asyncio.CancelledError):
        return None
    print(f"flatsat {command}: interrupted again ({signal.Signals(_forced).name}): stopped at once, without "
          "finishing cleanly", file=sys.stderr)
    return 128 + _forced

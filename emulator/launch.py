"""How flatsat starts a board process, and how that board notices that its flatsat has ended.

A board process started by ``flatsat demo`` or ``flatsat test`` finds flatsat's process id in its environment
(:data:`PARENT_PID_ENV`). Boards survive losing the emulator on purpose (a bench board reconnects when the
emulator restarts), so without this a board whose flatsat was killed (SIGKILL, a CI job cancelled) would retry
for ever; with it, the board ends shortly after flatsat does. A board started by hand has no such variable and
is not affected. The Python boards (``firmware_stubs``) watch it in :func:`firmware_stubs.base.run_until_signalled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping

log = logging.getLogger("flatsat.launch")

#: the environment variable that names the flatsat process a board was started by
PARENT_PID_ENV = "FLATSAT_PARENT_PID"
#: where the kernel cannot signal a process's end (no pidfd), how often the board looks (seconds)
POLL_S = 1.0


def board_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a board process started by this process: ``base`` (default: this process's own) with
    :data:`PARENT_PID_ENV` set to this process's id."""
    env = dict(os.environ if base is None else base)
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def parent_pid(environ: Mapping[str, str] | None = None) -> int | None:
    """The flatsat process id named in ``environ`` (default: this process's), or None if there is none or it is
    not a process id (logged: a board is not stopped for a malformed variable)."""
    raw = (os.environ if environ is None else environ).get(PARENT_PID_ENV, "").strip()
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        pid = 0
    if pid <= 0:
        log.warning("%s=%r is not a process id: not watching for flatsat's end", PARENT_PID_ENV, raw)
        return None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def watch_process(pid: int, on_gone: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_gone()`` once, in the running event loop, when process ``pid`` ends (at once if it has already
    ended). Returns a function that stops watching.

    Linux (5.3 and later) signals the end through a pidfd the loop watches, at no cost until then; elsewhere the
    process is looked at every :data:`POLL_S`.
    """
    loop = asyncio.get_running_loop()
    done = False

    def fire() -> None:
        nonlocal done
        if not done:
            done = True
            on_gone()

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        loop.call_soon(fire)
        return lambda: None
    except (AttributeError, OSError):  # no pidfd_open here (not Linux, an old kernel, a sandbox): poll
        handle: asyncio.TimerHandle | None = None

        def look() -> None:
            nonlocal handle
            if _alive(pid):
                handle = loop.call_later(POLL_S, look)
            else:
                fire()

        handle = loop.call_later(0.0, look)

        def stop_polling() -> None:
            nonlocal done
            done = True
            if handle is not None:
                handle.cancel()

        return stop_polling

    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(fd)
            os.close(fd)

    def readable() -> None:
        close()
        fire()

    loop.add_reader(fd, readable)

    def stop_watching() -> None:
        nonlocal done
        done = True
        close()

    return stop_watching

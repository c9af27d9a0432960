"""The supply guard: a separate process that switches bench supply outputs off when the emulator cannot.

:class:`~emulator.instruments.bench.SupplyBench` starts it (``python -m emulator.instruments.guard``) in its own
session, writes one JSON line to its stdin (``{"watchdog_s": s, "supplies": [<bench.supply tables>]}``) and waits
for ``ready``. Then the emulator writes ``h`` every ``watchdog_s / 4`` and, after it has switched every output off
itself, ``bye``. The guard trips, i.e. opens each supply and switches its output off (retrying for up to
``TRIP_RETRY_S``), when:

- its stdin ends without ``bye``: the emulator died (a crash, SIGKILL, the OOM killer), and the kernel closed the pipe;
- no line came for ``watchdog_s``: the emulator's event loop is stuck;
- it gets SIGTERM or SIGHUP itself.

Exit status: 0 after ``bye``; 3 after a trip that switched every output off; 4 if one could not be reached; 2 on a
bad spec. It never switches anything on.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
from typing import Any

from pydantic import ValidationError

from emulator.clock import NS_PER_S, WallSource
from emulator.errors import InstrumentError
from emulator.instruments.config import SupplyConfig
from emulator.instruments.supply import Supply

log = logging.getLogger("flatsat.supply.guard")
#: keep trying to reach a supply this long after a trip (s)
TRIP_RETRY_S = 30.0


class _Tripped(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise _Tripped(f"signal {signal.Signals(signum).name}")


def trip(supplies: list[SupplyConfig], why: str, wall: WallSource) -> int:
    """Switch every output off; 3 if all went off, 4 otherwise."""
    log.critical("supply guard: %s: switching %d output(s) off", why, len(supplies))
    status = 3
    for cfg in supplies:
        deadline = wall.now_ns() + round(TRIP_RETRY_S * NS_PER_S)
        delay_ns = NS_PER_S // 10
        while True:
            s = Supply(cfg, wall)
            try:
                s.open()
                s.output_off(check=False)
                log.critical("supply guard: %s (%s channel %d): output OFF", cfg.name, cfg.resource, cfg.channel)
                break
            except InstrumentError as exc:
                if wall.now_ns() + delay_ns > deadline:
                    log.critical("supply guard: %s: could NOT switch the output off: %s; CHECK THE SUPPLY", cfg.name,
                                 exc)
                    status = 4
                    break
                wall.block_until(wall.now_ns() + delay_ns)
                delay_ns = min(NS_PER_S, delay_ns * 2)
            finally:
                s.close()
    return status


def _read_line(fd: int, buf: bytearray, timeout_s: float) -> bytes | None:
    """One line from ``fd`` within ``timeout_s``: the line, b"" at EOF, None on timeout."""
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return b""
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.strip() or b"h"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the emulator handles Ctrl-C and says bye
    wall = WallSource()
    fd = sys.stdin.fileno()
    buf = bytearray()
    first = _read_line(fd, buf, 30.0)
    try:
        spec = json.loads(first or b"")
        watchdog_s = float(spec["watchdog_s"])
        supplies = [SupplyConfig.model_validate(s) for s in spec["supplies"]]
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.error("supply guard: bad spec on stdin: %s", exc)
        return 2
    try:
        import pyvisa  # noqa: F401 (it must be able to act when it trips)
    except ImportError as exc:
        log.error("supply guard: cannot act without pyvisa (%s): pip install 'flatsat[bench]'", exc)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        while True:
            line = _read_line(fd, buf, watchdog_s)
            if line is None:
                return trip(supplies, f"no heartbeat from the emulator for {watchdog_s:g} s", wall)
            if line == b"":
                return trip(supplies, "the emulator is gone (its pipe closed without a goodbye)", wall)
            if line == b"bye":
                return 0
    except _Tripped as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return trip(supplies, str(exc), wall)


if __name__ == "__main__":
    sys.exit(main())

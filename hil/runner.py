"""The HIL scenario runner: emulator in-process, board as a process or a real board at a URL, timeline, verdicts.

::

    scenario = load_scenario("configs/scenarios/eclipse-brownout.toml")
    result = await run_scenario(scenario, board_cmd="python -m firmware_stubs.reference",
                                board_url=None, seed=7, record_dir="out/hil")
    result.passed, result.verdicts, result.recording

The run, step by step:

1. build the emulator (:class:`HilEmulator`, the runtime plus a message hook) and check every
   name in the scenario against it (signals, faults and their params, topics), all at once;
2. start it: the board plane listens on the board URL (an ephemeral loopback port for a board
   process); start the board process (``board_cmd --url URL``, or ``{url}`` in the command) or
   wait for a real board; in both cases wait (wall clock) for its ``board.hello``. A board command
   with ``{fd}`` talks serial instead: the runner opens a pty pair, the emulator takes the slave
   (``serial://<pty>?baud=921600&pace=1``, the real serial code path) and the board process
   inherits the master as descriptor ``{fd}`` (the C stub's ``--fd {fd}``, a Python stub's
   ``--url serial+fd://{fd}``); with ``{pty}`` the board gets a pty *path* to open (QEMU's
   ``-serial {pty}``): a second pty pair whose master the runner joins to the emulator's, byte for
   byte, like a cable between two UARTs; ``line_options`` adds serial options to the emulator's end of
   that line (``ber=1e-4``: a noisy line);
3. run the timeline: sim time advances segment by segment to each entry's time, where the
   entry is applied (faults, clears, control commands, board kill / restart); requirements
   are checked after every physics step and on every message of both planes;
4. stop: verdicts, the recording (closed cleanly even when the board died), a series of the
   ground truth for the report.

By default a run with a board is ``lockstep`` driven by the board (``sim.lockstep_source =
"board"``): the emulator waits for the board's ``board.step``, so the same scenario and seed give
a byte-identical recording. A board that dies or goes silent would leave the emulator waiting
for ever; the runner watches the process (and, for any board, how long the emulator has waited
for a step, on the wall clock) and stops the run with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from emulator.clock import NS_PER_S, WallSource
from emulator.config import RUN_TABLES, origins, split_run
from emulator.dotted import apply_overrides
from emulator.errors import CommandError, ConfigError, EmulatorError, TransportError
from emulator.launch import board_env
from emulator.models.base import SpacecraftModel
from emulator.plotting import PANELS
from emulator.protocol.catalogue import Plane
from emulator.protocol.envelope import Message
from emulator.runtime import Emulator, utc_text
from emulator.series import Series, flatten
from hil.requirements import Checker, SignalReader, Verdict, fmt_t, make_checkers
from hil.scenario import (
    BoardKillAction,
    BoardRestartAction,
    ClearAction,
    ControlAction,
    FaultAction,
    Problem,
    Scenario,
    ScenarioError,
    check_against,
)
from hil.signals import StepReader, StepSampler

log = logging.getLogger("flatsat.hil")

#: (scenario, seed) -> the spacecraft model; lets tests run scenarios on a toy model
ModelFactory = Callable[[Scenario, int], SpacecraftModel]
#: called with (t_ns, plane, direction, message) for every message on either plane
MessageHook = Callable[[int, str, str, Message], None]

#: truth.sample messages a recording holds by default: one a second for runs up to 30 min, sparser for longer runs
#: (the ground truth is most of a recording's size; requirements and reports read it in-process at every step)
RECORDED_TRUTH_SAMPLES = 1800


def auto_truth_rate_hz(duration_s: float) -> float:
    """The default truth.sample rate of a scenario run: 1 Hz, or RECORDED_TRUTH_SAMPLES over the run."""
    return min(1.0, RECORDED_TRUTH_SAMPLES / duration_s)


#: how often a run's plotted signals are looked at (then thinned to max_samples windows, keeping min and max)
FINE_SAMPLES = 20_000
#: the most values (windows x columns) a run's report series takes: a row holds every flattened truth key, ~190 for
#: a single satellite (which keeps max_samples windows) and ~3,900 for the 81-member cluster (which gets fewer,
#: longer windows: a row of it costs milliseconds, more than its physics step)
MAX_SERIES_VALUES = 1_000_000

#: sim keys the [scenario] table and the runner own; an [overrides] entry may not set them
OWNED_KEYS = ("sim.seed", "sim.step_s", "sim.mode", "sim.speed", "sim.duration_s", "sim.epoch_utc",
              "sim.lockstep_source", "links.board", "links.control", "record.path")


def override_labels(scenario: Scenario) -> dict[str, str]:
    """How each override was given, for config errors: the scenario's ``[overrides]`` by their key path."""
    return {k: f'overrides."{k}"' for k in scenario.overrides}


def scenario_config_error(scenario: Scenario, exc: ConfigError, config: str | Path | None) -> ScenarioError:
    """A config problem as the scenario's: blamed on its ``[overrides]`` entry (the problem keeps ``override``
    and ``kind``), or on its config file."""
    problems: list[Problem] = []
    for p in exc.problems:
        if p.override in scenario.overrides:
            text = p.message if p.path == p.override else f"{p.path}: {p.message}"
            problems.append(replace(p, path=f'overrides."{p.override}"', message=text))
        elif p.path in ("config", "extends"):
            problems.append(replace(p, path="scenario.config"))
        elif config is not None:
            problems.append(replace(p, path="scenario.config", message=f"{Path(config).name}: {p}"))
        else:
            problems.append(p)
    return ScenarioError(scenario.source, problems)


class HilEmulator(Emulator):
    """The runtime with what a test harness needs to watch: every message, board hellos and steps.

    Adds no behaviour: it watches through the runtime's public message observer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.message_hooks: list[MessageHook] = []
        #: set when a board says board.hello (clear it before waiting for a restarted board)
        self.hello = asyncio.Event()
        self.hellos: list[dict[str, Any]] = []
        #: wall time (WallSource ns) at which the emulator started waiting for a board.step; None: not waiting
        self.waiting_since_wall_ns: int | None = None
        #: the last messages of both planes, newest last (for failure reports)
        self.recent: deque[tuple[int, str, str, Message]] = deque(maxlen=50)
        self._hello_asked: dict[int, dict[str, Any]] = {}
        self.add_message_observer(self._emit)  # requirements read every message, subscribed or not

    def _emit(self, t_ns: int, plane: str, direction: str, msg: Message) -> None:
        self.recent.append((t_ns, plane, direction, msg))
        for hook in list(self.message_hooks):
            hook(t_ns, plane, direction, msg)
        topic = msg.topic
        if topic == "sim.waiting":
            self.waiting_since_wall_ns = self.clock.wall.now_ns()
        elif topic == "board.hello" and direction == "in":
            self._hello_asked = {msg.seq: dict(msg.payload)}
        elif topic == "reply" and msg.payload.get("ok"):
            asked = msg.payload.get("re")
            if asked == "board.hello" and msg.payload.get("id") in self._hello_asked:
                self.hellos.append(self._hello_asked.pop(msg.payload["id"]))
                del self.hellos[:-64]  # bounded: a board that says hello in a loop
                self.hello.set()
            elif asked == "board.step":
                self.waiting_since_wall_ns = None



#: placeholders of a board command that give it the line instead of ``--url URL``
LINE_KEYS = ("{url}", "{fd}", "{pty}")


def describe_exit(code: int | None) -> str:
    """'3', or '-9 (killed by SIGKILL)'."""
    if code is None:
        return "?"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


class BoardProcess:
    """A board stub run as a separate process (its own process group, so a kill takes its children too).

    The command gets ``--url URL`` appended, or ``{url}`` in it replaced; ``{fd}`` is replaced by
    ``pass_fd``, a descriptor the process inherits, and ``{pty}`` by ``pty_path``, a serial device to open
    (then no ``--url`` is appended). Its stdout and stderr go to ``log_path`` (a temporary file if None);
    :meth:`tail` reads the end back for error messages.
    """

    def __init__(self, cmd: str, log_path: Path | None = None,
                 on_unexpected_exit: Callable[[int], None] | None = None, pass_fd: int | None = None,
                 pty_path: str | None = None) -> None:
        self.cmd = cmd
        self.pass_fd = pass_fd
        self.pty_path = pty_path
        self.log_path = log_path
        self.on_unexpected_exit = on_unexpected_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._expected_exit = False
        self._log: IO[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None

    def argv(self, url: str) -> list[str]:
        try:
            parts = shlex.split(self.cmd)
        except ValueError as exc:
            raise ConfigError(f"board command {self.cmd!r}: {exc}", field="board") from None
        if not parts:
            raise ConfigError("board command is empty", field="board")
        if parts[0] in ("python", "python3"):
            # a simulated board is a Python program: run it with the interpreter (and virtualenv) flatsat runs in
            parts[0] = sys.executable
        fd = "{fd}" if self.pass_fd is None else str(self.pass_fd)
        pty = "{pty}" if self.pty_path is None else self.pty_path
        if any(key in p for p in parts for key in LINE_KEYS):
            return [p.replace("{url}", url).replace("{fd}", fd).replace("{pty}", pty) for p in parts]
        return [*parts, "--url", url]

    async def start(self, url: str) -> None:
        """Start (or start again) the process.

        Raises:
            ConfigError: the command cannot be parsed or its program cannot be run.
        """
        argv = self.argv(url)
        self._open_log(f"--- start {self.starts + 1}: {shlex.join(argv)}\n")
        self._expected_exit = False
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, pass_fds=() if self.pass_fd is None else (self.pass_fd,), env=board_env())
        except OSError as exc:
            raise ConfigError(f"cannot start board command {self.cmd!r}: {exc}", field="board") from None
        self.starts += 1
        self._watch = asyncio.create_task(self._watch_exit(self.proc), name="flatsat-hil-board-watch")

    def _open_log(self, line: str) -> None:
        if self._log is None:
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in aclose())
            else:
                self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in aclose())
        self._log.write(line.encode())
        self._log.flush()

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if not self._expected_exit and proc is self.proc and self.on_unexpected_exit is not None:
            self.on_unexpected_exit(code)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def kill(self) -> None:
        """SIGKILL now (a crash or a power cut, as the timeline's board_kill / board_restart)."""
        self._expected_exit = True
        self._signal(signal.SIGKILL)
        await self._reap()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (wall); idempotent."""
        self._expected_exit = True
        if self.running:
            self._signal(signal.SIGTERM)
            assert self.proc is not None
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout_s)
            except TimeoutError:
                self._signal(signal.SIGKILL)
        await self._reap()

    async def _reap(self) -> None:
        if self.proc is not None:
            await self.proc.wait()
        if self._watch is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    def tail(self, lines: int = 12) -> str:
        """The last lines the process wrote (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.flush()
        try:
            if self.log_path is not None:
                data = self.log_path.read_bytes()
            else:
                self._log.seek(0)
                data = self._log.read()
                self._log.seek(0, os.SEEK_END)
        except OSError:
            return ""
        text = data.decode(errors="replace").rstrip()
        return "\n".join(text.splitlines()[-lines:])

    async def aclose(self) -> None:
        await self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


#: line rate of the serial line the runner gives a board command with {fd} or {pty}: a fast MCU UART (the
#: LM3S6965 and STM32 UARTs and the common USB-UARTs all do it); pace=1 holds the pty to it (a pty alone moves
#: ~20 MB/s), so the board reads its telemetry at the pace a real line would give it
BOARD_LINE_BAUD = 921600


def _open_raw_pty(what: str) -> tuple[int, int]:
    import tty

    try:
        master, slave = os.openpty()
    except (AttributeError, OSError) as exc:
        raise ConfigError(f"a board command with {what} needs a pty pair (POSIX): {exc}", field="board") from None
    tty.setraw(slave)  # no echo or line editing before the emulator's pyserial configures the line
    return master, slave


class BoardPty:
    """A pty pair for a board command with ``{fd}``: the emulator opens the slave by its path (``url``), the board
    process inherits the master (``pass_fd``). Both stay open here until :meth:`close`, so a board killed and
    started again (board_restart) finds the same line, and the emulator's end never sees the line hang up in
    between."""

    BAUD = BOARD_LINE_BAUD

    def __init__(self, line_options: str | None = None) -> None:
        self.master, self.slave = _open_raw_pty("{fd}")
        self.path = os.ttyname(self.slave)
        self.pass_fd: int | None = self.master
        self.board_path: str | None = None
        self._finalizer = weakref.finalize(self, _close_fds, self.master, self.slave)
        try:
            self.url = self.line_url(self.path, line_options)
        except ConfigError:
            self.close()
            raise

    @classmethod
    def line_url(cls, path: str, line_options: str | None) -> str:
        """The emulator's URL of the line: ``serial://<path>?baud=921600&pace=1`` plus ``line_options``.

        Raises:
            ConfigError: ``line_options`` are not serial options (each problem named).
        """
        from emulator.transports import parse_transport_url

        url = f"serial://{path}?baud={cls.BAUD}&pace=1"
        if not line_options:
            return url
        try:
            given = parse_transport_url(f"serial://{path}?{line_options.lstrip('?&')}")
            return str(parse_transport_url(url).replace(**dict(given.options)))
        except ValueError as exc:  # InvalidTransportURL
            raise ConfigError(f"line options {line_options!r}: {exc}", field="line_options") from None

    def start(self) -> None:
        """Nothing to start: the board holds the master itself."""

    def board_starting(self) -> None:
        """Nothing to do: what the line held stays for the next board (as on a pty, which has no reset)."""

    def close(self) -> None:
        self._finalizer()


class BoardPtyPath:
    """The line for a board command with ``{pty}`` (an emulator such as QEMU opens a serial device by path).

    Two pty pairs: the emulator opens one slave by its path (``url``, the real serial code path), the board the
    other (``board_path``); the runner copies bytes between the two masters unchanged, both ways, like a cable
    between two UARTs. The runner keeps both slaves open until :meth:`close`, so a board killed and started again
    (board_restart) opens the same path and neither end sees the line hang up. Each direction buffers at most
    ``MAX_PENDING`` bytes; beyond that it stops reading its source, so the pty (and then the sender) waits,
    as on a line with flow control.

    What the emulator sends before the board's first byte (a board speaks first: its hello) is dropped and
    counted (``dropped_before_board``), as by a UART not yet powered or set up: QEMU takes received bytes into
    its model UART from its start, and the firmware's own set-up then loses one of them (enabling the PL011's
    FIFO empties it), which cut a frame at random. After the board's first byte the emulator's bytes go on from
    the next frame's start, so the board never gets the tail of a frame. The same holds again after each
    restart.
    """

    BAUD = BOARD_LINE_BAUD
    MAX_PENDING = 65536

    def __init__(self, line_options: str | None = None) -> None:
        self.emu_master, self.emu_slave = _open_raw_pty("{pty}")
        try:
            self.board_master, self.board_slave = _open_raw_pty("{pty}")
        except ConfigError:
            _close_fds(self.emu_master, self.emu_slave)
            raise
        self._finalizer = weakref.finalize(self, _close_fds, self.emu_master, self.emu_slave, self.board_master,
                                           self.board_slave)
        try:
            # the emulator's end of the line, as for {fd}: line_options (e.g. injected noise) apply there
            self.url = BoardPty.line_url(os.ttyname(self.emu_slave), line_options)
        except ConfigError:
            self._finalizer()
            raise
        self.board_path: str | None = os.ttyname(self.board_slave)
        self.pass_fd: int | None = None
        #: bytes carried each way: (emulator -> board, board -> emulator)
        self.carried = [0, 0]
        #: bytes from the emulator dropped because the board had not spoken yet (since its last start)
        self.dropped_before_board = 0
        self._board_spoke = False
        self._board_synced = False
        #: the emulator's stream is between frames (its last byte was a 0x00 delimiter)
        self._emu_at_frame_start = True
        self._pending = {self.emu_master: bytearray(), self.board_master: bytearray()}
        self._peer = {self.emu_master: self.board_master, self.board_master: self.emu_master}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading: set[int] = set()
        self._writing: set[int] = set()

    def start(self) -> None:
        """Start copying (in the running event loop)."""
        self._loop = asyncio.get_running_loop()
        for fd in self._peer:
            os.set_blocking(fd, False)
            self._read_on(fd)

    def board_starting(self) -> None:
        """A board (re)starts: drop what waited for the previous one, as a UART's FIFO is empty after a reset."""
        import termios

        self._board_spoke = self._board_synced = False
        self._pending[self.board_master].clear()
        with contextlib.suppress(OSError, termios.error):
            termios.tcflush(self.board_slave, termios.TCIOFLUSH)
        self._read_on(self.emu_master)

    def _read_on(self, fd: int) -> None:
        if self._loop is not None and fd not in self._reading:
            self._loop.add_reader(fd, self._on_readable, fd)
            self._reading.add(fd)

    def _read_off(self, fd: int) -> None:
        if self._loop is not None and fd in self._reading:
            self._loop.remove_reader(fd)
            self._reading.discard(fd)

    def _on_readable(self, src: int) -> None:
        dst = self._peer[src]
        try:
            data = os.read(src, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave open on this side (cannot happen while the runner holds both)
            self._read_off(src)
            return
        if not data:
            return
        if src == self.board_master:
            self._board_spoke = True
        else:
            data = self._from_emulator(data)
            if not data:
                return
        self.carried[0 if src == self.emu_master else 1] += len(data)
        self._pending[dst] += data
        self._drain(dst)
        if len(self._pending[dst]) >= self.MAX_PENDING:
            self._read_off(src)  # let the line push back until the far side reads

    def _from_emulator(self, data: bytes) -> bytes:
        """What of ``data`` goes on to the board: nothing before the board's first byte, and once it has spoken,
        from the next frame's start on (the byte after a 0x00 delimiter), so it never gets a frame's tail."""
        at_frame_start = self._emu_at_frame_start
        self._emu_at_frame_start = data[-1] == 0
        if self._board_synced:
            return data
        if self._board_spoke:
            end = -1 if at_frame_start else data.find(0)
            if at_frame_start or end >= 0:
                self._board_synced = True
                self.dropped_before_board += end + 1
                return data[end + 1:]
        self.dropped_before_board += len(data)
        return b""

    def _drain(self, dst: int) -> None:
        buf = self._pending[dst]
        while buf:
            try:
                n = os.write(dst, buf)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                buf.clear()
                break
            if n == 0:
                break
            del buf[:n]
        assert self._loop is not None
        if buf and dst not in self._writing:
            self._loop.add_writer(dst, self._drain, dst)
            self._writing.add(dst)
        elif not buf and dst in self._writing:
            self._loop.remove_writer(dst)
            self._writing.discard(dst)
        if len(buf) < self.MAX_PENDING // 2:
            self._read_on(self._peer[dst])

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for fd in list(self._reading):
                self._read_off(fd)
            for fd in list(self._writing):
                self._loop.remove_writer(fd)
            self._writing.clear()
        self._finalizer()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


async def wait_for_hello(emu: HilEmulator, *, timeout_s: float, board: BoardProcess | None,
                         where: str) -> None:
    """Wait (wall clock) until a board says ``board.hello``.

    Raises:
        EmulatorError: the board process exited first, or nothing spoke within ``timeout_s``.
    """
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(emu.hello.wait())}
    died = None
    if board is not None and board.proc is not None:
        died = asyncio.ensure_future(board.proc.wait())
        waits.add(died)
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in waits:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
    if emu.hello.is_set():
        return
    if died is not None and died in done:
        assert board is not None
        tail = board.tail()
        raise EmulatorError(f"board process exited with code {describe_exit(board.returncode)} before saying "
                            f"board.hello (command: {board.cmd})" + (f"; its last output:\n{tail}" if tail else ""),
                            field="board")
    hint = "is the board process starting up?" if board is not None else \
        "is the board running, and pointed at this URL?"
    tail = board.tail() if board is not None else ""
    raise EmulatorError(f"no board.hello from the board at {where} within {timeout_s:g} s (wall clock): {hint}"
                        + (f"; its last output:\n{tail}" if tail else ""), field="board")


async def step_watchdog(emu: HilEmulator, timeout_s: float, error: list[str] | None = None) -> None:
    """Stop a lockstep-by-board run whose board stopped stepping (hung, or a real board gone).

    Runs until the emulator stops; appends the reason to ``error`` (if given and empty).
    """
    limit_ns = round(timeout_s * NS_PER_S)
    while not await emu.wait_stopped(min(0.25, timeout_s / 4)):
        since = emu.waiting_since_wall_ns
        if since is not None and emu.clock.wall.now_ns() - since > limit_ns:
            reason = (f"board sent no board.step for {timeout_s:g} s (wall clock) while the emulator "
                      f"waited at t={fmt_t(emu.clock.now_ns() / NS_PER_S)}")
            if error is not None and not error:
                error.append(reason)
            emu.request_stop(reason)
            return


@dataclass
class ScenarioResult:
    """What a scenario run gives: verdicts, why it failed, where the recording is, the series for plots."""

    scenario: Scenario
    seed: int
    verdicts: list[Verdict]
    #: why the run itself failed (board died, board silent, bad timeline action); None if it ran to the end
    error: str | None
    t_end_s: float
    wall_s: float
    series: Series
    recording: Path | None
    board_log: Path | None
    #: (sim time s, text) of every timeline entry applied
    timeline_log: list[tuple[float, str]] = field(default_factory=list)
    #: the command that reproduces the run
    command: str = ""
    board: str = "none"
    mode: str = "afap"
    #: the last messages of both planes (t_ns, plane, direction, message)
    recent: list[tuple[int, str, str, Message]] = field(default_factory=list)
    #: sim time 0 as UTC (ISO 8601 with a Z)
    epoch_utc: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def marks(self) -> list[tuple[float, str]]:
        """(sim time s, label) of every failed requirement's first violation, for plots."""
        return [(v.t_s, v.label) for v in self.failures if v.t_s is not None]


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "scenario"


#: (program, module, folder) -> what is wrong, for board commands of the form ``PYTHON -m MODULE`` (checked once)
_MODULES: dict[tuple[str, str, str], str | None] = {}

#: run by the board command's own interpreter: exit 3 if it cannot find the module (its parent package imported)
_FIND_MODULE = ("import importlib.util as u, sys\ntry:\n    f = u.find_spec(sys.argv[1])\nexcept ImportError:\n"
                "    f = None\nsys.exit(0 if f else 3)")


def missing_module(argv: list[str]) -> str | None:
    """For a board command ``PYTHON -m MODULE ...``: what is wrong if that interpreter, started here as the board
    will be, cannot find MODULE (a typo in a module name failed every run of a campaign, one by one); None if it
    can, or the command is not of that form, or the program does not answer as Python does."""
    if len(argv) < 3 or argv[1] != "-m":
        return None
    prog, module = shutil.which(argv[0]) or argv[0], argv[2]
    key = (os.path.abspath(prog), module, os.getcwd())
    if key not in _MODULES:
        import subprocess

        if len(_MODULES) >= 64:  # (bounded: a long-lived process that tries many commands)
            _MODULES.clear()

        try:
            done = subprocess.run([prog, "-c", _FIND_MODULE, module], env=board_env(), capture_output=True,
                                  timeout=30, check=False)
            code = done.returncode
        except (OSError, subprocess.TimeoutExpired):
            code = None
        _MODULES[key] = (f"{prog} finds no module {module!r} (python -m {module} would fail: not installed in that "
                         "interpreter, or misspelt)" if code == 3 else None)
    return _MODULES[key]


class ScenarioRun:
    """One prepared scenario run: the emulator is built and every name checked; :meth:`run` runs it."""

    def __init__(self, scenario: Scenario, *, board_cmd: str | None = None, board_url: str | None = None,
                 seed: int | None = None, record_dir: str | Path | None = None,
                 model_factory: ModelFactory | None = None, wall: WallSource | None = None,
                 progress: bool = False, hello_timeout_s: float = 30.0, board_timeout_s: float = 30.0,
                 max_samples: int = 2000, command: str | None = None,
                 status: Callable[[str], None] | None = None, truth_rate_hz: float | None = None,
                 record_max_mb: float | None = None, line_options: str | None = None) -> None:
        if board_cmd and board_url:
            raise ConfigError("give a board command (--board CMD) or a board URL (--board-url URL), not both",
                              field="board")
        self.scenario = scenario
        self.truth_rate_hz = truth_rate_hz
        self.record_max_mb = record_max_mb
        self.board_cmd = board_cmd
        self.board_url_arg = board_url
        self.line_options = line_options
        self.seed = scenario.seed if seed is None else seed
        self.record_dir = Path(record_dir) if record_dir is not None else None
        self.progress = progress
        self.hello_timeout_s = hello_timeout_s
        self.board_timeout_s = board_timeout_s
        self.max_samples = max_samples
        self.status = status or (lambda text: log.info("%s", text))
        self.board_kind: str | None = "process" if board_cmd else "url" if board_url else None
        head = scenario.head
        self.mode = head.mode or ("lockstep" if self.board_kind else "afap")
        self.lockstep_by_board = self.mode == "lockstep" and self.board_kind is not None
        stem = safe_name(scenario.name)
        self.recording = self.record_dir / f"{stem}.rec" if self.record_dir is not None else None
        self.board_log = self.record_dir / f"{stem}.board.log" if self.record_dir and board_cmd else None
        self.command = command or self._default_command()
        self.pty: BoardPty | BoardPtyPath | None = None
        if board_cmd:
            argv = BoardProcess(board_cmd).argv("URL")
            if shutil.which(argv[0]) is None:
                raise ConfigError(f"board command {board_cmd!r}: program {argv[0]!r} not found (not a file, "
                                  "not on PATH)", field="board")
            missing = missing_module(argv)
            if missing:
                raise ConfigError(f"board command {board_cmd!r}: {missing}", field="board")
            uses_fd, uses_pty = (any(key in p for p in argv) for key in ("{fd}", "{pty}"))
            if uses_fd and uses_pty:
                raise ConfigError(f"board command {board_cmd!r}: give it the line as {{fd}} (a descriptor) or as "
                                  "{pty} (a device path), not both", field="board")
            if uses_fd:
                self.pty = BoardPty(line_options)
            elif uses_pty:
                self.pty = BoardPtyPath(line_options)
        if line_options and self.pty is None:
            raise ConfigError("line options apply to the pty line of a board command with '{fd}' or '{pty}'; this "
                              "run has none (give the options in --board-url for a real board's line)",
                              field="line_options")
        try:
            self.emu = self._build(model_factory, wall)
            if self.board_kind and not any(c.spec.plane == Plane.BOARD for c in self.emu.interface.commands):
                raise ScenarioError(scenario.source, [Problem(
                    "board", "the model takes no board-plane command (a cluster with no member in "
                    "cluster.bind.members): a board has nothing to drive; run without --board / --board-url, or "
                    "bind a member")])
            check_against(scenario, signals=flatten(self.emu.truth()).keys(),
                          fault_params=self.emu.fault_schemas(), catalogue=self.emu.catalogue,
                          board=self.board_kind, names=self.emu.model.names())  # type: ignore[arg-type]
        except BaseException:
            if self.pty is not None:  # a refused scenario keeps no pty open
                self.pty.close()
            raise
        self._observe: Callable[[int], None] = lambda t_ns: None

    def _default_command(self) -> str:
        parts = ["flatsat", "test", self.scenario.source]
        if self.board_cmd:
            parts += ["--board", self.board_cmd]
        if self.board_url_arg:
            parts += ["--board-url", self.board_url_arg]
        if self.line_options:
            parts += ["--line", self.line_options]
        return shlex.join([*parts, "--seed", str(self.seed)])

    def _forced(self) -> dict[str, Any]:
        head = self.scenario.head
        if self.board_url_arg:
            listen: str | None = self.board_url_arg
        elif self.pty is not None:
            listen = self.pty.url
        else:
            listen = "zmq+tcp://127.0.0.1:0" if self.board_cmd else None
        forced: dict[str, Any] = {
            "sim.seed": self.seed, "sim.step_s": head.step_s, "sim.mode": self.mode,
            "sim.duration_s": head.duration,
            "sim.lockstep_source": "board" if self.lockstep_by_board else "control",
            "links.board": listen, "links.control": None,
            "record.path": str(self.recording) if self.recording is not None else None}
        if head.speed is not None:
            forced["sim.speed"] = head.speed
        if head.epoch_utc is not None:
            forced["sim.epoch_utc"] = head.epoch_utc
        return forced

    def _recording_keys(self) -> dict[str, Any]:
        """The truth rate (given, the scenario's, or auto_truth_rate_hz) and the recording's size cap."""
        out: dict[str, Any] = {}
        if self.truth_rate_hz is not None:
            out["telemetry.truth_rate_hz"] = self.truth_rate_hz
        elif "telemetry.truth_rate_hz" not in self.scenario.overrides:
            out["telemetry.truth_rate_hz"] = auto_truth_rate_hz(self.scenario.duration_s)
        if self.record_max_mb is not None:
            out["record.max_mb"] = self.record_max_mb
        return out

    def _build(self, model_factory: ModelFactory | None, wall: WallSource | None) -> HilEmulator:
        sc = self.scenario
        owned = [k for k in sc.overrides if k in OWNED_KEYS]
        if owned:
            raise ScenarioError(sc.source, [Problem(f'overrides."{k}"', "set by the [scenario] table or the runner "
                                                                        "(seed, step_s, mode, speed, duration, "
                                                                        "epoch_utc, board); not an override",
                                                    override=k, kind="key") for k in owned])
        forced = self._forced()
        meta = {"scenario": sc.name, "scenario_file": Path(sc.source).name, "board": self.board_kind or "none"}
        kwargs: dict[str, Any] = {"wall": wall, "board_url": forced["links.board"], "control_url": None,
                                  "record_path": forced["record.path"], "meta": meta}
        if model_factory is not None:
            run_keys = {k: v for k, v in sc.overrides.items() if k.split(".")[0].split("[")[0] in RUN_TABLES}
            try:
                raw: dict[str, Any] = {}
                apply_overrides(raw, {**run_keys, **self._recording_keys(), **forced})
                run = split_run(raw, sc.source, origins(raw, run_keys, override_labels(sc)))
            except ConfigError as exc:
                raise scenario_config_error(sc, exc, None) from None
            return HilEmulator(model_factory(sc, self.seed), run, **kwargs)
        from emulator.config import load_config
        from emulator.shipped import DEFAULT_SATELLITE as DEFAULT_CONFIG

        path = sc.config_path or DEFAULT_CONFIG
        try:
            cfg = load_config(path, {**sc.overrides, **self._recording_keys(), **forced}, labels=override_labels(sc))
        except ConfigError as exc:
            raise scenario_config_error(sc, exc, path) from None
        meta["config"] = Path(path).name
        return HilEmulator.from_config(cfg, **kwargs)

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> ScenarioResult:
        """Run the scenario to the end (or until the board dies); always cleans up."""
        sc, emu = self.scenario, self.emu
        checkers = make_checkers(sc.requirements)
        step_signals = sorted({s for c in checkers for s in c.signals})
        reader = SignalReader(step_signals, emu.truth())
        by_topic: dict[str, list[Checker]] = {}
        for c in checkers:
            for topic in c.topics:
                by_topic.setdefault(topic, []).append(c)
        series = Series()
        duration_ns = round(sc.duration_s * NS_PER_S)
        first = emu.truth()
        columns = flatten(first)
        windows = max(1, min(self.max_samples, MAX_SERIES_VALUES // max(1, len(columns))))
        every_ns = max(emu.step_ns, duration_ns // windows)
        # the plots' signals are looked at FINE_SAMPLES times a run (every step when requirements read the truth
        # anyway) and thinned keeping each window's min and max, so a one-step spike shows in the report
        fine_ns = max(emu.step_ns, duration_ns // FINE_SAMPLES)
        plotted = Series()
        plotted.append(0, columns)
        sampler = StepSampler(series, every_ns, [*plotted.match(p for _, _, pats in PANELS for p in pats),
                                                 *step_signals], first)
        # one read a step of only the fields the requirements and the plots name (not the whole truth tree)
        step_reader = StepReader(emu, [*step_signals, *sampler.reader.paths])
        next_sample = [0]
        error: list[str] = []
        timeline_log: list[tuple[float, str]] = []
        board: BoardProcess | None = None
        started = [False]
        started_emu = False

        def on_message(t_ns: int, plane: str, direction: str, msg: Message) -> None:
            for c in by_topic.get(msg.topic, ()):
                c.on_message(t_ns, direction, msg)

        def observe(t_ns: int) -> None:
            look = bool(step_signals) or t_ns >= next_sample[0]
            values = step_reader.read() if look else {}
            for c in checkers:
                c.on_step(t_ns, values)
            if look:
                if sampler.observe_values(t_ns, values):
                    sampler.flush(t_ns, emu.truth(), values)  # a row: the whole tree (the signals as just read)
                if t_ns >= next_sample[0]:
                    next_sample[0] = t_ns + fine_ns

        def board_died(code: int) -> None:
            if not emu.hello.is_set():
                return  # still starting: wait_for_hello reports it, with the process's output
            t = fmt_t(emu.clock.now_ns() / NS_PER_S)
            reason = f"board process exited with code {describe_exit(code)} at t={t}"
            if not error:
                tail = board.tail() if board is not None else ""
                error.append(reason + (f"; its last output:\n{tail}" if tail else ""))
            emu.request_stop(reason)

        emu.message_hooks.append(on_message)
        wall0 = emu.clock.wall.now_ns()
        if self.board_cmd:
            board = BoardProcess(self.board_cmd, self.board_log, on_unexpected_exit=board_died,
                                 pass_fd=None if self.pty is None else self.pty.pass_fd,
                                 pty_path=None if self.pty is None else self.pty.board_path)
        watchdog: asyncio.Task[None] | None = None
        try:
            async with emu:
                started_emu = True
                if self.pty is not None:
                    self.pty.start()
                if board is not None:
                    self.status(f"{sc.name}: starting board: {shlex.join(board.argv(str(emu.board_url)))}")
                    await board.start(str(emu.board_url))
                    await wait_for_hello(emu, timeout_s=self.hello_timeout_s, board=board, where=str(emu.board_url))
                elif self.board_kind == "url":
                    self.status(f"{sc.name}: waiting for a board at {emu.board_url} "
                                f"({self.hello_timeout_s:g} s)")
                    await wait_for_hello(emu, timeout_s=self.hello_timeout_s, board=None, where=str(emu.board_url))
                if self.lockstep_by_board:
                    watchdog = asyncio.create_task(self._watchdog(error), name="flatsat-hil-watchdog")
                started[0] = True
                self._observe = observe
                observe(0)
                emu.add_observer(observe)
                from emulator.terminal import progress as _progress

                with _progress(emu, sc.duration_s, not self.progress):
                    await self._timeline(board, timeline_log, error)
        except EmulatorError as exc:
            if isinstance(exc, TransportError) and not started_emu:
                raise  # set-up, not a verdict: the emulator could not listen (a board URL whose port is in use)
            if not error:
                error.append(str(exc))
        finally:
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            if board is not None:
                await board.aclose()
            if self.pty is not None:
                self.pty.close()
            emu.message_hooks.remove(on_message)
        t_end = emu.clock.now_ns()
        verdicts: list[Verdict] = []
        if started[0]:
            tree = emu.truth()
            values = reader.read(tree)
            verdicts = [c.finish(t_end, values) for c in checkers]
            sampler.flush(t_end, tree)
        return ScenarioResult(
            scenario=sc, seed=self.seed, verdicts=verdicts, error=error[0] if error else None,
            t_end_s=t_end / NS_PER_S, wall_s=(emu.clock.wall.now_ns() - wall0) / NS_PER_S, series=series,
            recording=self.recording, board_log=self.board_log, timeline_log=timeline_log, command=self.command,
            board=self.board_cmd or self.board_url_arg or "none",
            mode=self.mode + (" (stepped by the board)" if self.lockstep_by_board else ""),
            recent=list(emu.recent), epoch_utc=utc_text(emu.clock.utc(0)))

    async def _watchdog(self, error: list[str]) -> None:
        await step_watchdog(self.emu, self.board_timeout_s, error)

    async def _timeline(self, board: BoardProcess | None, timeline_log: list[tuple[float, str]],
                        error: list[str]) -> None:
        emu, sc = self.emu, self.scenario
        end_ns = round(sc.duration_s * NS_PER_S)
        # (t_ns, order, file index, action); "start" entries bring a board back after board_restart
        events: list[tuple[int, int, int, Any]] = [(round(a.at * NS_PER_S), n, i, a)
                                                   for n, (i, a) in enumerate(sc.timeline)]
        heapq.heapify(events)
        order = len(events)
        fault_ids: dict[str, int] = {}
        board_down = False
        while not emu.stopped:
            now = emu.clock.now_ns()
            target = min(events[0][0], end_ns) if events else end_ns
            if target > now:
                if board_down and self.lockstep_by_board and target > max(emu.clock.limit_ns or 0, now):
                    emu.clock.run_until(target)  # nobody steps a dead board's lockstep clock: the runner does
                await emu.run_for((target - now) / NS_PER_S)
                continue
            if events and events[0][0] <= now:
                _, _, i, action = heapq.heappop(events)
                t_s = now / NS_PER_S
                try:
                    text = await self._apply(i, action, board, fault_ids)
                except EmulatorError as exc:
                    where = f"timeline[{i}]" if i >= 0 else "board restart"
                    msg = f"{where} at t={fmt_t(t_s)}: {exc}"
                    if not error:
                        error.append(msg)
                    emu.request_stop(msg)
                    return
                timeline_log.append((t_s, text))
                self.status(f"t={fmt_t(t_s)}: {text}")
                # the action changed the state at this very sim time: check it now, not a step later
                self._observe(now)
                if isinstance(action, (BoardKillAction, BoardRestartAction)):
                    board_down = True
                    emu.waiting_since_wall_ns = None
                if isinstance(action, BoardRestartAction):
                    heapq.heappush(events, (now + round(action.down * NS_PER_S), order, -1, "start"))
                    order += 1
                if action == "start":
                    board_down = False
                continue
            if now >= end_ns:
                return

    async def _apply(self, i: int, action: Any, board: BoardProcess | None, fault_ids: dict[str, int]) -> str:
        emu = self.emu
        if action == "start":
            assert board is not None
            emu.hello.clear()
            if self.pty is not None:
                self.pty.board_starting()
            emu.announce_waiting()  # before the board can say anything: the same order run to run
            await board.start(str(emu.board_url))
            await wait_for_hello(emu, timeout_s=self.hello_timeout_s, board=board, where=str(emu.board_url))
            return f"board started again (start {board.starts})"
        label = getattr(action, "label", None)
        if isinstance(action, FaultAction):
            fid = emu.inject_fault(action.name, action.params, action.duration)
            fault_ids[label or action.name] = fid
            dur = f" for {action.duration:g} s" if action.duration is not None else ""
            params = ", ".join(f"{k}={v!r}" for k, v in action.params.items())
            return f"fault {action.name}({params}){dur}" + (f" [{label}]" if label else "")
        if isinstance(action, ClearAction):
            ids = [fault_ids[label]] if label is not None else list(fault_ids.values())
            active = {f["fault_id"] for f in emu.truth()["faults"]}
            cleared = []
            for fid in ids:
                if fid in active:
                    emu.clear_fault(fid)
                    cleared.append(fid)
            what = f"fault [{label}]" if label else "all timeline faults"
            return f"clear {what}" + ("" if cleared else " (already cleared)")
        if isinstance(action, ControlAction):
            emu.control(action.topic, action.payload)
            return label or f"control {action.topic} {action.payload}"
        if isinstance(action, (BoardKillAction, BoardRestartAction)):
            assert board is not None
            await board.kill()
            if isinstance(action, BoardRestartAction):
                return label or f"board killed, restart after {action.down:g} s"
            return label or "board killed"
        raise CommandError(f"unknown timeline action {action!r}")  # pragma: no cover


async def run_scenario(scenario: Scenario, *, board_cmd: str | None = None, board_url: str | None = None,
                       seed: int | None = None, record_dir: str | Path | None = None,
                       model_factory: ModelFactory | None = None, **kwargs: Any) -> ScenarioResult:
    """Run one scenario (see the module docstring).

    Args:
        scenario: from :func:`hil.scenario.load_scenario`.
        board_cmd: command starting a board process (``--url URL`` is appended, or ``{url}`` replaced).
        board_url: a URL the emulator listens on for a real board (exclusive with ``board_cmd``).
        seed: overrides the scenario's seed.
        record_dir: directory for the recording (``<name>.rec``) and the board's log; None: no recording.
        model_factory: build the model from (scenario, seed) instead of the scenario's satellite config.
        **kwargs: ``wall``, ``progress``, ``hello_timeout_s``, ``board_timeout_s`` (wall seconds),
            ``max_samples`` (series windows; fewer for a truth of more than MAX_SERIES_VALUES / max_samples
            keys), ``command`` (the reproduce line), ``status`` (callback),
            ``line_options`` (serial options for the pty line of a ``{fd}`` or ``{pty}`` board, e.g.
            ``"ber=1e-4&ber_seed=7"``).

    Returns:
        The :class:`ScenarioResult` (a board that died or a refused action fail it; they do not raise).

    Raises:
        ScenarioError: a name in the scenario is not offered by the emulator (every problem listed).
        ConfigError: bad config, overrides or board command.
    """
    prepared = ScenarioRun(scenario, board_cmd=board_cmd, board_url=board_url, seed=seed, record_dir=record_dir,
                           model_factory=model_factory, **kwargs)
    return await prepared.run()


def run_scenario_sync(scenario: Scenario, **kwargs: Any) -> ScenarioResult:
    """:func:`run_scenario` from synchronous code (its own event loop)."""
    return asyncio.run(run_scenario(scenario, **kwargs))


def nan_to_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

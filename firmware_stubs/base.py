"""What every board stub shares: a board-side client (request/reply by id, latest telemetry, sim time)
and the control loop that calls a controller every control period, in lockstep or free-running.

A stub is a peer on the wire exactly like real firmware: it imports only ``emulator.protocol``,
``emulator.transports``, ``emulator.clock`` helpers and ``emulator.errors``, never the models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import CommandError, ConfigError, EmulatorError, TransportError
from emulator.protocol.envelope import PROTOCOL_VERSION, Message

log = logging.getLogger("flatsat.board")

NS_PER_S = 1_000_000_000
#: free-running boards report their link figures (board.link) every this many control turns
LINK_REPORT_TICKS = 6


@dataclass
class BoardLog:
    """What the board did and why (reported in the stub's summary; tests read it)."""

    actions: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, t_ns: int, text: str) -> None:
        self.actions.append((t_ns, text))
        log.info("t=%.0fs %s", t_ns / NS_PER_S, text)


class BoardClient:
    """The board's view of the emulator: latest telemetry by topic, events, requests with replies."""

    def __init__(self, link: Any, name: str) -> None:
        self.link = link
        self.name = name
        self.latest: dict[str, dict[str, Any]] = {}
        self.t_ns = 0
        self.hello: dict[str, Any] = {}
        self._seq = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        #: wall-clock round trips of requests, seconds (the board's own clock, not the emulator's)
        self.rtts_s: list[float] = []
        #: sim time of the emulator at the last reply minus the newest telemetry the board had then
        self.lag_s = 0.0
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._waiting: asyncio.Queue[int] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self._progress = asyncio.Event()
        self.error: BaseException | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"board-{self.name}-reader")

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.link.aclose()

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.link.recv()
                if msg.t_ns > self.t_ns:
                    self.t_ns = msg.t_ns
                    self._progress.set()
                if msg.topic == "reply":
                    fut = self._pending.pop(msg.payload.get("id", -1), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif msg.topic == "sim.waiting":
                    self._waiting.put_nowait(msg.payload.get("t_ns", msg.t_ns))
                else:
                    self.latest[msg.topic] = msg.payload
                    if "." in msg.topic and not msg.topic.endswith(("telemetry", ".status", "sim.clock", ".sun")):
                        self._events.put_nowait(msg)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - link broken: wake everyone waiting
            self.error = exc
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else TransportError(str(exc)))
            self._pending.clear()
            self.closed.set()

    async def request(self, topic: str, payload: dict[str, Any] | None = None, *, timeout_s: float = 10.0,
                      check: bool = True) -> dict[str, Any]:
        """Send a request and wait for its reply; raise CommandError if refused (``check``)."""
        self._seq += 1
        seq = self._seq
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        start = time.monotonic()
        await self.link.send(Message(topic, payload or {}, seq=seq, t_ns=self.t_ns, src=self.name))
        try:
            async with asyncio.timeout(timeout_s):  # wall-clock guard against a vanished emulator
                reply = await fut
        finally:
            self._pending.pop(seq, None)
        self.rtts_s.append(time.monotonic() - start)
        if len(self.rtts_s) > 4096:
            del self.rtts_s[:2048]
        self.lag_s = max(0.0, (reply.t_ns - self.t_ns) / NS_PER_S)
        body = reply.payload
        if check and not body.get("ok"):
            err = body.get("error") or {}
            raise CommandError(f"{topic}: {err.get('message', 'refused')}", field=err.get("field"),
                               valid=err.get("valid"))
        return body.get("data") or body

    def link_report(self) -> dict[str, Any]:
        """Round-trip percentiles and lag, as ``board.link`` carries them."""
        rtts = sorted(self.rtts_s) or [0.0]
        pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1e3
        return {"rtt_p50_ms": pick(0.5), "rtt_p99_ms": pick(0.99), "rtt_max_ms": rtts[-1] * 1e3,
                "requests": len(self.rtts_s), "lag_s": self.lag_s}

    def events(self) -> list[Message]:
        out = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    async def next_waiting(self, after_t_ns: int = -1) -> int:
        """Sim time of the next ``sim.waiting`` later than ``after_t_ns`` (stale ones are skipped)."""
        while True:
            t = await self._next_waiting()
            if t > after_t_ns:
                return t

    async def _next_waiting(self) -> int:
        getter = asyncio.ensure_future(self._waiting.get())
        closed = asyncio.ensure_future(self.closed.wait())
        done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (getter, closed):
            if not fut.done():
                fut.cancel()
        if getter in done:
            return getter.result()
        raise TransportError(f"link to the emulator lost: {self.error}")

    async def wait_sim_time(self, t_ns: int) -> None:
        """Free-running mode: wait until telemetry shows sim time >= t_ns."""
        while self.t_ns < t_ns:
            if self.closed.is_set():
                raise TransportError(f"link to the emulator lost: {self.error}")
            self._progress.clear()
            progress = asyncio.ensure_future(self._progress.wait())
            closed = asyncio.ensure_future(self.closed.wait())
            await asyncio.wait({progress, closed}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (progress, closed):
                fut.cancel()


class Controller(ABC):
    """Base controller: override :meth:`on_tick` (and optionally :meth:`on_start`)."""

    name = "controller"
    version = "0.1.0"
    period_s = 10.0

    def __init__(self) -> None:
        self.log = BoardLog()

    async def on_start(self, board: BoardClient) -> None:
        return None

    @abstractmethod
    async def on_tick(self, board: BoardClient) -> None:
        """One control turn: read ``board.latest`` and events, send commands."""


async def run_board(controller: Controller, url: str, *, max_ticks: int | None = None,
                    stop: Callable[[], bool] | None = None,
                    connect: Callable[[str], Awaitable[Any]] | None = None,
                    capabilities: list[str] | None = None) -> BoardLog:
    """Connect to the emulator at ``url`` and run ``controller`` until the link closes (or ``stop()``).

    ``capabilities`` go in ``board.hello`` (default ``["lockstep"]``). Raises ConfigError if the emulator
    speaks another protocol version.
    """
    if connect is None:
        from emulator.transports import connect as _connect

        connect = _connect
    link = await connect(url)
    board = BoardClient(link, controller.name)
    await board.start()
    try:
        board.hello = await board.request("board.hello", {
            "name": controller.name, "version": controller.version,
            "capabilities": capabilities if capabilities is not None else ["lockstep"]}, timeout_s=30.0)
        if board.hello.get("protocol_version") != PROTOCOL_VERSION:
            raise ConfigError(f"the emulator speaks protocol {board.hello.get('protocol_version')}, this board "
                              f"speaks {PROTOCOL_VERSION}", field="protocol_version", valid=[PROTOCOL_VERSION])
        lockstep = board.hello.get("mode") == "lockstep" and board.hello.get("lockstep_source") == "board"
        await controller.on_start(board)
        ticks = 0
        next_tick = board.t_ns
        last_turn = -1
        first_turn_now = lockstep and bool(board.hello.get("waiting"))
        while max_ticks is None or ticks < max_ticks:
            if stop is not None and stop():
                break
            if lockstep:
                if first_turn_now:
                    last_turn = int(board.hello.get("t_ns", 0))
                    first_turn_now = False
                else:
                    last_turn = await board.next_waiting(last_turn)
            else:
                await board.wait_sim_time(next_tick)
                next_tick = board.t_ns + round(controller.period_s * NS_PER_S)
            try:
                await controller.on_tick(board)
            except CommandError as exc:
                controller.log.errors.append(str(exc))
                log.warning("command refused: %s", exc)
            ticks += 1
            if lockstep:
                await board.request("board.step", {"duration_s": controller.period_s})
            elif ticks % LINK_REPORT_TICKS == 0:
                # wall-clock figures: only when free-running (a lockstep recording must stay deterministic)
                await board.request("board.link", board.link_report())
    except (TransportError, TimeoutError) as exc:
        log.info("emulator link ended: %s", exc)
    finally:
        await board.aclose()
    return controller.log


def main(controller_cls: type[Controller], argv: list[str] | None = None) -> int:
    """``python -m firmware_stubs.<name> --url URL``."""
    parser = argparse.ArgumentParser(prog=f"python -m firmware_stubs.{controller_cls.name}",
                                     description=controller_cls.__doc__)
    parser.add_argument("--url", required=True, help="board-plane URL of the emulator, e.g. zmq+tcp://127.0.0.1:5550")
    parser.add_argument("--period", type=float, default=controller_cls.period_s,
                        help=f"control period in sim seconds (default {controller_cls.period_s:g})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every action")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"[{controller_cls.name}] %(message)s", stream=sys.stderr)
    controller = controller_cls()
    controller.period_s = args.period
    try:
        result = asyncio.run(run_board(controller, args.url))
    except KeyboardInterrupt:
        return 130
    except EmulatorError as exc:
        print(f"{controller_cls.name}: {exc}", file=sys.stderr)
        return 2
    print(f"{controller_cls.name}: {len(result.actions)} actions, {len(result.errors)} refused commands",
          file=sys.stderr)
    return 0

"""Where the console's messages come from: a running emulator's control plane, or a recording.

:class:`LiveSource` is a control-plane client like ``flatsat monitor``. It asks the emulator for a feed of
its own (``telemetry.feed``: every telemetry topic at most :data:`FEED_HZ` times a wall second, every event),
so the emulator builds and sends no more than the page can show (1 kHz telemetry, a fast-forward); it sends
the page's commands as control-plane requests and matches the replies by id, and asks now and then for what
is not published (active faults, statistics, the orbit ahead). An emulator that cannot feed one peer (a
control plane without per-peer sends) is subscribed to instead, and the console decimates what it gets.
:class:`RecordingSource` reads a recording once (history, eclipses, track, events, and where every telemetry
message lies in the file), then serves the state at any instant of it for the time slider.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from emulator.clock import WallSource
from emulator.console.state import ConsoleState, fault_entry, is_telemetry
from emulator.errors import EmulatorError, TransportError
from emulator.protocol.envelope import Message

log = logging.getLogger("flatsat.console")

NS_PER_S = 1_000_000_000
SRC = "console"
#: wall seconds between polls of what the control plane does not publish (and renewals of the feed)
POLL_S = 2.0
#: what the console asks of each telemetry topic, per wall second: the panels refresh at 4 Hz and a plot
#: holds at most 1200 points over at least 5 minutes (4 a second); 10 leaves room for a fast-forward
FEED_HZ = 10.0
#: the feed's lease: several missed renewals before the emulator stops feeding a console that went away
FEED_LEASE_S = 10.0
#: a fast-forward moves the orbit ahead quickly: predict far enough ahead to ask at most this often (wall s)
PREDICT_EVERY_S = 20.0
#: most track samples one orbit.predict asks for (its cost in the emulator grows with them)
PREDICT_SAMPLES = 400
#: how far ahead orbit.predict looks, in orbits, and its track spacing
PREDICT_ORBITS = 2.0
PREDICT_STEP_S = 30.0
REQUEST_TIMEOUT_S = 10.0
#: a request waiting this long (wall s) for its answer: the page says the emulator is not answering (the polls
#: come every POLL_S and are answered in well under a millisecond, so a healthy emulator never gets near it)
UNANSWERED_S = 5.0
#: most messages of one telemetry topic a second (wall) that go into the plots' history; beyond it (1 kHz
#: telemetry, a fast-forward) every n-th is taken, still binned min/max. The panels always show the newest.
HISTORY_PER_TOPIC_HZ = 50.0
PLAYBACK_TICK_S = 0.1
#: messages read in a row before the reader lets other tasks run
YIELD_EVERY = 64
#: requests that change nothing (no fresh poll after them)
QUERIES = frozenset({"truth.get", "stats.get", "fault.list", "orbit.predict", "clock.status", "telemetry.feed"})
RECORDING_EVENTS_KEPT = 200_000


#: what the page says when the emulator went away (stopped, killed, or the network between)
GONE = "the emulator stopped or is unreachable; waiting for it to come back"


def _error(message: str, code: str = "console") -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class LiveSource:
    """A running emulator's control plane."""

    kind = "live"

    def __init__(self, url: str, state: ConsoleState, *, wall: WallSource | None = None,
                 connect: Callable[[str], Any] | None = None, feed_hz: float | None = FEED_HZ) -> None:
        self.url = url
        #: telemetry per topic per wall second asked of the emulator (None: subscribe to everything)
        self.feed_hz = feed_hz
        #: the emulator feeds this console (telemetry.feed accepted); False: subscribed, decimated here
        self.feeding = False
        self.feed_error: str | None = None
        self._speed: tuple[int, int] | None = None  # (sim ns, wall ns) at the last poll: the sim's speed
        self.state = state
        self.wall = wall or WallSource()
        self._connect = connect
        self.link: Any = None
        self.connected = False
        self.error: str | None = None
        self.predict_error: str | None = None
        #: why there are no predictions when that is expected (a quiet note on the page, not an error)
        self.predict_note: str | None = None
        self.fault_schemas: list[dict[str, Any]] = []
        self.meta_version = 0
        self._seq = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        #: wall ns when the oldest request still without an answer since the emulator last answered was sent
        self._unanswered_since_ns: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._wake_poll = asyncio.Event()
        #: per telemetry topic: wall ns of its history window start, messages taken in it, every n-th to take
        self._rate: dict[str, list[int]] = {}
        self.history_skipped = 0

    @property
    def label(self) -> str:
        return self.url

    def _take_for_history(self, topic: str) -> bool:
        """Every message while a topic arrives at most HISTORY_PER_TOPIC_HZ; beyond, every n-th (n adapts each
        wall second), so the plots' cost per second is bounded whatever the telemetry rate."""
        now = self.wall.now_ns()
        r = self._rate.get(topic)
        if r is None:
            r = self._rate[topic] = [now, 0, 1, 0]  # window start, seen, stride, counter
        r[1] += 1
        if now - r[0] >= NS_PER_S:
            rate = r[1] * NS_PER_S / (now - r[0])
            r[0], r[1] = now, 0
            r[2] = max(1, int(rate / HISTORY_PER_TOPIC_HZ))
        r[3] += 1
        if r[3] >= r[2]:
            r[3] = 0
            return True
        self.history_skipped += 1
        return False

    async def start(self) -> None:
        from emulator.transports import parse_transport_url

        parse_transport_url(self.url)  # a bad URL is an error now, not a retry loop
        self._tasks.append(asyncio.create_task(self._run(), name="console-live"))

    async def aclose(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.link is not None:
            with contextlib.suppress(Exception):
                await self.link.aclose()

    def _link_url(self) -> str:
        """The URL to connect: a ZeroMQ control plane with the SUB taking nothing (``subscribe=false``) while
        the emulator feeds this console; as given otherwise."""
        from emulator.transports import parse_transport_url

        parsed = parse_transport_url(self.url)
        if self.feed_hz is None or self.feed_error is not None or parsed.kind != "zmq":
            return self.url
        return str(parsed.replace(subscribe=False))

    async def _open(self) -> Any:
        url = self._link_url()
        if self._connect is not None:
            return await self._connect(url)
        from emulator.transports import connect

        return await connect(url)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.link = await self._open()
            except EmulatorError as exc:
                if self.error != str(exc):
                    log.warning("control plane %s: %s (retrying)", self.url, exc)
                self.error = str(exc)
                self.meta_version += 1
                await self._sleep(POLL_S)
                continue
            self.connected, self.error = True, None
            self.meta_version += 1
            reader = asyncio.create_task(self._read(), name="console-read")
            poller = asyncio.create_task(self._poll(), name="console-poll")
            try:
                await asyncio.wait({reader, poller}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, poller):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if poller.done() and not poller.cancelled() and poller.exception() is None and not self._stop.is_set():
                # the emulator refused the feed: subscribe to everything instead (the poller returned for it)
                with contextlib.suppress(Exception):
                    await self.link.aclose()
                self.link = None
                continue
            return

    async def _read(self) -> None:
        link = self.link
        count = 0
        while True:
            count += 1
            if count % YIELD_EVERY == 0:
                # recv() returns without suspending while messages wait (a fast-forward floods them): let the
                # page's commands and the feed run between batches
                await asyncio.sleep(0)
            try:
                msg = await link.recv()
            except TransportError as exc:  # the emulator went away; the link reconnects by itself
                log.info("control plane %s: %s", self.url, exc)
                # the console cannot tell a killed run from one that reached its end: the same plain words
                self.connected, self.error = False, GONE
                self.meta_version += 1
                self._fail_pending(str(exc))
                continue
            if not self.connected:
                self.connected, self.error = True, None
                self.meta_version += 1
                self._wake_poll.set()
            if msg.topic == "reply":
                self._unanswered_since_ns = None
                fut = self._pending.pop(msg.payload.get("id", -1), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            self.state.ingest(msg, history=self.feeding or not is_telemetry(msg.topic)
                              or self._take_for_history(msg.topic))
            if msg.topic == "fault.changed":
                self._wake_poll.set()  # fetch the expiry of a new fault

    def _fail_pending(self, why: str) -> None:
        self._unanswered_since_ns = None  # the link is down: the page says that instead
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransportError(why))
        self._pending.clear()

    async def request(self, topic: str, payload: dict[str, Any] | None = None,
                      timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Send a control-plane request; the reply's payload (``ok`` with ``data`` or ``error``), never raises."""
        if self.link is None:
            return _error(f"not connected to the emulator at {self.url}: {self.error or 'connecting'}")
        self._seq += 1
        seq = self._seq
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        if self._unanswered_since_ns is None:
            self._unanswered_since_ns = self.wall.now_ns()
        try:
            await self.link.send(Message(topic, payload or {}, seq=seq, t_ns=self.state.t_ns, src=SRC))
            log.debug("request %d %s sent", seq, topic)
            async with asyncio.timeout(timeout_s):
                reply = await fut
            log.debug("request %d %s answered", seq, topic)
        except TimeoutError:
            return _error(f"{topic}: no reply from the emulator at {self.url} within {timeout_s:g} s")
        except EmulatorError as exc:
            return _error(f"{topic}: {exc}")
        finally:
            self._pending.pop(seq, None)
        if topic not in QUERIES and reply.payload.get("ok"):
            self._wake_poll.set()  # show what the command changed even if the run is paused
        return dict(reply.payload)

    async def _renew_feed(self) -> bool:
        """Ask for (or renew) this console's feed; False if the emulator refused it (then: subscribe)."""
        if self.feed_hz is None or self.feed_error is not None:
            return True
        reply = await self.request("telemetry.feed", {"max_hz": self.feed_hz, "lease_s": FEED_LEASE_S})
        if reply.get("ok"):
            self.feeding = True
            return True
        err = reply.get("error") or {}
        if err.get("code") == "console":  # no reply (the emulator went away): the next poll asks again
            return True
        self.feeding = False
        if self._link_url() == self.url:  # subscribed already: the feed was only for the cost
            self.feed_error = err.get("message", "refused")
            return True
        self.feed_error = err.get("message", "refused")
        log.warning("the emulator does not feed this console (%s): subscribing to everything it publishes",
                    self.feed_error)
        self.meta_version += 1
        return False

    async def _poll(self) -> None:
        listed = False
        while True:
            if not self.connected and self.link is not None and getattr(self.link.stats, "is_up", False):
                # back after the emulator went away: a fed console hears nothing until it asks again
                self.connected, self.error = True, None
                self.meta_version += 1
            if self.connected:
                if not await self._renew_feed():
                    return
                if not listed:
                    reply = await self.request("fault.list")
                    if reply.get("ok"):
                        self.fault_schemas = reply["data"].get("faults", [])
                        self.state.fault_schemas = self.fault_schemas
                        listed = True
                        self.meta_version += 1
                reply = await self.request("truth.get")
                if reply.get("ok"):
                    self.state.apply_truth_get(reply["data"])
                reply = await self.request("stats.get")
                if reply.get("ok"):
                    self.state.stats = reply["data"]
                await self._maybe_predict()
            self._wake_poll.clear()
            await self._sleep(POLL_S, self._wake_poll)

    def _sim_speed(self) -> float:
        """Sim seconds per wall second since the last poll (0 until two polls have been seen)."""
        now_wall, now_sim = self.wall.now_ns(), self.state.t_ns
        last, self._speed = self._speed, (now_sim, now_wall)
        if last is None or now_wall <= last[1]:
            return 0.0
        return max(0.0, (now_sim - last[0]) / (now_wall - last[1]))

    async def _maybe_predict(self) -> None:
        speed = self._sim_speed()
        if self.predict_error is not None:
            return
        pred, now = self.state.prediction, self.state.t_ns
        if pred is not None:
            period_ns = round((pred.get("period_s") or 6000.0) * NS_PER_S)
            horizon_ns = round(pred.get("duration_s", PREDICT_ORBITS * period_ns / NS_PER_S) * NS_PER_S)
            if pred["t_ns"] <= now < pred["t_ns"] + horizon_ns - period_ns:  # one orbit ahead still known
                return
        period_s = (pred or {}).get("period_s") or 6000.0
        # a fast-forward would need a fresh prediction every poll (each costs the emulator a few ms of its
        # loop): look ahead as far as PREDICT_EVERY_S of wall time at this speed, in at most PREDICT_SAMPLES
        duration_s = max(PREDICT_ORBITS * period_s, period_s + speed * PREDICT_EVERY_S)
        step_s = max(PREDICT_STEP_S, duration_s / (PREDICT_SAMPLES - 1))
        reply = await self.request("orbit.predict", {"duration_s": duration_s, "step_s": step_s})
        if reply.get("ok"):
            reply["data"]["duration_s"] = duration_s
            self.state.prediction = reply["data"]
        else:  # e.g. a model without an orbit: say so once, keep the rest working
            err = reply.get("error") or {}
            if err.get("code") != "console" and self.state.cluster is not None:
                # a fleet has no orbit.predict: the map shows the member's track as it flies, which is no fault
                self.predict_note = ("eclipse predictions are not available for a fleet: the map shows the "
                                     "member's ground track so far, eclipses as they happen")
                self.predict_error = err.get("message", "refused")
                self.meta_version += 1
            elif err.get("code") != "console":
                self.predict_error = err.get("message", "refused")
                self.meta_version += 1

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        sleeper = asyncio.ensure_future(self.wall.sleep_until(self.wall.now_ns() + round(seconds * NS_PER_S)))
        waits = {sleeper, asyncio.ensure_future(self._stop.wait())}
        if wake is not None:
            waits.add(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()

    def meta(self) -> dict[str, Any]:
        return {"mode": "live", "source": self.url, "connected": self.connected, "error": self.error,
                "feed": {"max_hz": self.feed_hz if self.feeding else None, "error": self.feed_error},
                "fault_schemas": self.fault_schemas,
                "predict_error": None if self.predict_note else self.predict_error,
                "notes": [self.predict_note] if self.predict_note else []}

    def unanswered_s(self) -> float | None:
        """How long (wall s) the emulator has left the console's requests unanswered, once that is more than
        UNANSWERED_S; None while it answers (its telemetry may still flow: a stuck control plane)."""
        since = self._unanswered_since_ns
        if since is None or not self.connected:
            return None
        waited = (self.wall.now_ns() - since) / NS_PER_S
        return waited if waited >= UNANSWERED_S else None

    def view(self, member: int | None = None) -> dict[str, Any]:
        view = self.state.view(member=member)
        view["requests"] = {"unanswered_s": self.unanswered_s()}
        return view

    def map_data(self, member: int | None = None) -> dict[str, Any]:
        return self.state.map_data(member=member)

    def series(self, fields: list[str], window_s: float, member: int | None = None) -> dict[str, Any]:
        return self.state.series(fields, window_s, member=member)


class RecordingSource:
    """A recording, read once, shown at any instant (the cursor) and played back at a speed."""

    kind = "recording"

    def __init__(self, path: str | Path, state: ConsoleState, *, wall: WallSource | None = None) -> None:
        self.path = Path(path)
        self.state = state
        self.wall = wall or WallSource()
        self.meta_version = 0
        self._index: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._events: list[dict[str, Any]] = []
        self._event_t: list[int] = []
        self.events_dropped = 0
        self.commands = 0
        #: (sim ns, board) of every board.hello in the recording: the boards connected at the cursor
        self._hellos: list[tuple[int, str]] = []
        self.t0_ns = self.t1_ns = 0
        self.cursor_ns = 0
        self.speed = 60.0
        self.playing = False
        self.header: dict[str, Any] = {}
        self._paths = [self.path]
        self._topic_file: dict[str, int] = {}
        self._fhs: list[IO[bytes]] = []
        self._player: asyncio.Task[None] | None = None
        self.fault_schemas: list[dict[str, Any]] = []

    @property
    def label(self) -> str:
        return str(self.path)

    def load(self) -> None:
        """Read the whole file (raises ConfigError if it is not a recording)."""
        from emulator.recorder import read_header, read_recording, wall_path

        self.header = read_header(self.path)
        epoch = (self.header.get("meta") or {}).get("epoch_utc")
        if isinstance(epoch, str):
            self.state.set_epoch_utc(epoch)
        # wall-time topics (sim.links) live in a side file beside the recording: both, in sim-time order
        self._paths = [self.path]
        streams = [((0, r) for r in read_recording(self.path))]
        side = wall_path(self.path)
        if side.is_file():
            self._paths.append(side)
            streams.append((1, r) for r in read_recording(side))
        index: dict[str, tuple[list[int], list[int], list[int]]] = {}
        self._topic_file: dict[str, int] = {}
        first: int | None = None
        last = 0
        for file_no, rec in heapq.merge(*streams, key=lambda fr: fr[1].message.t_ns):
            msg = rec.message
            if rec.direction == "in":
                self.commands += 1
                if rec.plane == "board" and msg.topic == "board.hello":
                    self._hellos.append((msg.t_ns, msg.src))
                continue
            if msg.topic == "reply":
                continue
            first = msg.t_ns if first is None else first
            last = max(last, msg.t_ns)
            self.state.ingest(msg)
            if is_telemetry(msg.topic):
                self._topic_file[msg.topic] = file_no
                t, off, size = index.setdefault(msg.topic, ([], [], []))
                t.append(msg.t_ns)
                off.append(rec.offset)
                size.append(rec.size)
            elif msg.topic != "sim.waiting":
                if len(self._events) < RECORDING_EVENTS_KEPT:
                    self._events.append({"t_ns": msg.t_ns, "topic": msg.topic, "payload": msg.payload})
                    self._event_t.append(msg.t_ns)
                else:
                    self.events_dropped += 1
        self._index = {k: (np.asarray(t, np.int64), np.asarray(o, np.int64), np.asarray(s, np.int64))
                       for k, (t, o, s) in index.items()}
        self.t0_ns, self.t1_ns = first or 0, last
        self.cursor_ns = self.t1_ns
        # a recording shows its faults by what fault.changed said; the live list makes no sense here
        self.state.faults.clear()

    async def start(self) -> None:
        if not self._fhs:
            self._fhs = [await asyncio.to_thread(p.open, "rb") for p in self._paths]

    async def aclose(self) -> None:
        self.pause()
        for fh in self._fhs:
            fh.close()
        self._fhs = []

    # -- the cursor ---------------------------------------------------------------------------------------------
    def seek(self, t_ns: int) -> None:
        self.cursor_ns = min(max(int(t_ns), self.t0_ns), self.t1_ns)

    def play(self, speed: float | None = None) -> None:
        if speed is not None:
            self.speed = float(speed)
        if self.cursor_ns >= self.t1_ns:
            self.cursor_ns = self.t0_ns
        if self._player is None or self._player.done():
            self.playing = True
            self._player = asyncio.create_task(self._play(), name="console-playback")

    def pause(self) -> None:
        self.playing = False
        if self._player is not None:
            self._player.cancel()
            self._player = None

    async def _play(self) -> None:
        tick_ns = round(PLAYBACK_TICK_S * NS_PER_S)
        next_wall = self.wall.now_ns()
        while self.playing and self.cursor_ns < self.t1_ns:
            next_wall += tick_ns
            await self.wall.sleep_until(next_wall)
            self.seek(self.cursor_ns + round(tick_ns * self.speed))
        self.playing = False

    def latest_at(self, t_ns: int) -> dict[str, tuple[int, dict[str, Any]]]:
        from emulator.recorder import read_record_at

        out: dict[str, tuple[int, dict[str, Any]]] = {}
        if not self._fhs:
            return out
        for topic, (t, off, size) in self._index.items():
            i = int(np.searchsorted(t, t_ns, side="right")) - 1
            if i >= 0:
                fh = self._fhs[self._topic_file.get(topic, 0)]
                msg = read_record_at(fh, int(off[i]), int(size[i])).message
                out[topic] = (msg.t_ns, dict(msg.payload))
        return out

    def _events_until(self, t_ns: int) -> list[dict[str, Any]]:
        return self._events[:bisect.bisect_right(self._event_t, t_ns)]

    def faults_at(self, t_ns: int) -> list[dict[str, Any]]:
        active: dict[int, dict[str, Any]] = {}
        for e in self._events_until(t_ns):
            if e["topic"] == "fault.changed":
                p = e["payload"]
                if p.get("active"):
                    active[p["fault_id"]] = fault_entry(p, e["t_ns"])
                else:
                    active.pop(p.get("fault_id"), None)
        return list(active.values())

    async def request(self, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return _error(f"{topic}: this console plays a recording ({self.path.name}); nothing can be steered")

    def meta(self) -> dict[str, Any]:
        meta = self.header.get("meta") or {}
        return {"mode": "recording", "source": str(self.path), "connected": True, "error": None,
                "fault_schemas": [], "predict_error": None, "notes": [],
                "recording": {"t0_ns": self.t0_ns, "t1_ns": self.t1_ns, "epoch_utc": meta.get("epoch_utc"),
                              "x0": self.state.unix_ms(self.t0_ns), "x1": self.state.unix_ms(self.t1_ns),
                              "meta": meta, "commands": self.commands, "events_dropped": self.events_dropped}}

    def view(self, member: int | None = None) -> dict[str, Any]:
        t = self.cursor_ns
        boards = {src for hello_ns, src in self._hellos if hello_ns <= t}
        view = self.state.view(self.latest_at(t), t, self._events_until(t)[-200:], self.faults_at(t),
                               member=member, boards=boards)
        view["playback"] = {"cursor_ns": t, "playing": self.playing, "speed": self.speed,
                            "x": self.state.unix_ms(t)}
        return view

    def map_data(self, member: int | None = None) -> dict[str, Any]:
        return self.state.map_data(self.cursor_ns, ahead=True, member=member)

    def series(self, fields: list[str], window_s: float, member: int | None = None) -> dict[str, Any]:
        return self.state.series(fields, window_s, self.cursor_ns, member=member)

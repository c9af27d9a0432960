"""A board on a lossy link (firmware_stubs/base.py): time-outs, pings, repeats, lockstep resynchronisation, reopening.

The emulator here is a scripted double behind a fake link that loses chosen messages in either direction. It
serves requests one at a time, in order, like the runtime; its clock runs after a ``board.step`` is answered and
ends at a ``sim.waiting``. The tests run on looptime's virtual event-loop clock: the board's wall-clock time-outs
take no real time, and what happens is decided by which messages are lost, never by the machine's speed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from emulator.errors import (
    CommandError,
    InvalidTransportURL,
    TransportBrokenError,
    TransportClosedError,
    TransportError,
    TransportUnavailableError,
)
from emulator.protocol.envelope import PROTOCOL_VERSION, Message
from emulator.transports.base import LinkStats
from firmware_stubs.base import (
    BoardClient,
    Controller,
    RequestLostError,
    RetryPolicy,
    open_link,
    repeatable,
    run_board,
)

pytestmark = pytest.mark.looptime

NS = 1_000_000_000
STEP_S = 1.0
PERIOD_S = 10.0
POLICY = RetryPolicy(timeout_s=0.5, backoff=2.0, max_wait_s=8.0, attempts=5, resync_after_s=2.0)
#: a rule that loses a message: (message, how many of its topic went that way before it) -> lost?
Drop = Callable[[Message, int], bool]


def nth(topic: str, *which: int) -> Drop:
    """Lose the given occurrences (0-based) of ``topic`` (for replies: of replies to ``topic``)."""
    return lambda msg, k: topic_of(msg) == topic and k in which


def topic_of(msg: Message) -> str:
    return msg.payload.get("re", "?") if msg.topic == "reply" else msg.topic


class FakeEmulator:
    """Answers board requests in order; a lockstep clock the board steps; loses what ``drop_up``/``drop_down`` say.

    ``executed`` lists every request carried out: (topic, seq, sim time). ``delay_s`` holds a topic's reply back
    that long (a slow command: the requests behind it wait, as in the runtime's serve loop).
    """

    def __init__(self, *, t0_s: float = 0.0, duplicate_window: int = 0, ping_tells_waiting: bool = False,
                 mode: str = "lockstep") -> None:
        self.mode = mode
        self.t_ns = round(t0_s * NS)
        self.limit_ns = self.t_ns
        self.step_ns = round(STEP_S * NS)
        self.duplicate_window = duplicate_window
        self.ping_tells_waiting = ping_tells_waiting
        self.executed: list[tuple[str, int, int]] = []
        self.drop_up: Drop = lambda msg, k: False
        self.drop_down: Drop = lambda msg, k: False
        self.delay_s: dict[str, float] = {}
        self.silent = False
        self.jobs = 0
        self._cache: dict[int, tuple[str, Message]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.link: FakeLink | None = None
        self._serve = asyncio.create_task(self._serve_loop())

    def close(self) -> None:
        self._serve.cancel()

    def _lost(self, way: str, msg: Message) -> bool:
        key = (way, topic_of(msg))
        k = self._counts.get(key, 0)
        self._counts[key] = k + 1
        rule = self.drop_up if way == "up" else self.drop_down
        return rule(msg, k)

    # -- the board's side of the wire --------------------------------------------------------------------------
    def from_board(self, msg: Message) -> None:
        if self.silent or self._lost("up", msg):
            return
        self._inbox.put_nowait(msg)

    def to_board(self, msg: Message) -> None:
        msg = Message(msg.topic, msg.payload, t_ns=self.t_ns, src="emulator")
        if self.link is not None and not self._lost("down", msg):
            self.link.deliver(msg)

    # -- the emulator ------------------------------------------------------------------------------------------
    @property
    def waiting(self) -> bool:
        return self.t_ns + self.step_ns > self.limit_ns

    async def _serve_loop(self) -> None:
        while True:
            msg = await self._inbox.get()
            await asyncio.sleep(self.delay_s.get(msg.topic, 0.0))
            cached = self._cache.get(msg.seq) if self.duplicate_window else None
            if cached is not None and cached[0] == msg.topic and msg.topic != "board.hello":
                self.to_board(cached[1])
                continue
            reply = msg.reply(ok=True, t_ns=self.t_ns, src="emulator", data=self.handle(msg))
            self._cache[msg.seq] = (msg.topic, reply)
            self.to_board(reply)
            if msg.topic == "board.step":
                asyncio.get_running_loop().call_soon(self._run_clock)

    def handle(self, msg: Message) -> dict[str, Any]:
        self.executed.append((msg.topic, msg.seq, self.t_ns))
        if msg.topic == "board.hello":
            return {"protocol_version": PROTOCOL_VERSION, "t_ns": self.t_ns, "step_s": STEP_S, "mode": self.mode,
                    "lockstep_source": "board", "waiting": self.waiting, "duplicate_window": self.duplicate_window}
        if msg.topic == "ping":
            out: dict[str, Any] = {"t_ns": self.t_ns}
            if self.ping_tells_waiting:
                out |= {"waiting": self.waiting, "limit_ns": self.limit_ns}
            return out
        if msg.topic == "board.step":
            self.limit_ns = max(self.limit_ns, self.t_ns) + round(msg.payload["duration_s"] * NS)
            return {"limit_ns": self.limit_ns}
        if msg.topic == "accel.job.submit":
            self.jobs += 1
            return {"id": self.jobs}
        return {}

    def _run_clock(self) -> None:
        while not self.waiting:
            self.t_ns += self.step_ns
        self.to_board(Message("eps.telemetry", {"soc": 0.9}))
        self.to_board(Message("sim.waiting", {"t_ns": self.t_ns}))

    def steps(self) -> list[int]:
        """Sim time (s) of every board.step carried out."""
        return [t // NS for topic, _, t in self.executed if topic == "board.step"]


class FakeLink:
    """The board's end: what it sends goes to the emulator double; ``fail_recv`` makes recv raise once."""

    def __init__(self, emulator: FakeEmulator) -> None:
        self.emulator = emulator
        emulator.link = self
        self.stats = LinkStats()
        self.sent: list[Message] = []
        self.fail_recv: BaseException | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._wake = asyncio.Event()
        self.closed = False

    def deliver(self, msg: Message) -> None:
        self._inbox.put_nowait(msg)

    async def send(self, msg: Message) -> None:
        if self.closed:
            raise TransportClosedError("closed")
        self.sent.append(msg)
        self.emulator.from_board(msg)

    async def recv(self) -> Message:
        if self.closed:
            raise TransportClosedError("closed")
        if self.fail_recv is not None:
            exc, self.fail_recv = self.fail_recv, None
            raise exc
        return await self._inbox.get()

    async def wait_until_up(self, up: bool = True) -> None:
        return None

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
async def emu() -> Any:
    e = FakeEmulator()
    yield e
    e.close()


async def client(emulator: FakeEmulator, **kwargs: Any) -> BoardClient:
    board = BoardClient(FakeLink(emulator), "board", policy=POLICY, **kwargs)
    await board.start()
    return board


def sends(board: BoardClient, topic: str) -> list[int]:
    """seq of every copy of ``topic`` the board sent."""
    link: Any = board.link
    return [m.seq for m in link.sent if m.topic == topic]


# -- requests -------------------------------------------------------------------------------------------------
def test_which_requests_are_repeated() -> None:
    assert repeatable("eps.rail.set") and repeatable("sat.3.eps.rail.set") and repeatable("ping")
    assert not repeatable("accel.job.submit") and not repeatable("accel.job.verdict")
    assert not repeatable("board.step") and not repeatable("lamp.set")  # unknown: not repeated


async def test_a_lost_reply_to_a_repeatable_request_is_sent_again_with_the_same_seq(emu: FakeEmulator) -> None:
    emu.drop_down = nth("eps.rail.set", 0)
    board = await client(emu)
    try:
        await board.request("eps.rail.set", {"rail": "payload", "on": True})
    finally:
        await board.aclose()
    seqs = sends(board, "eps.rail.set")
    assert len(seqs) == 2 and seqs[0] == seqs[1]
    assert [t for t, _, _ in emu.executed] == ["eps.rail.set", "ping", "eps.rail.set"]
    c = board.counters
    assert (c.timeouts, c.retries, c.lost) == (1, 1, 0)


async def test_a_lost_request_is_sent_again_and_carried_out_once(emu: FakeEmulator) -> None:
    emu.drop_up = nth("eps.rail.set", 0)
    board = await client(emu)
    try:
        await board.request("eps.rail.set", {"rail": "payload", "on": True})
    finally:
        await board.aclose()
    assert [t for t, _, _ in emu.executed] == ["ping", "eps.rail.set"]
    assert board.counters.retries == 1


async def test_a_request_that_is_not_repeatable_is_never_sent_twice(emu: FakeEmulator) -> None:
    emu.drop_down = nth("accel.job.submit", 0)
    board = await client(emu)
    try:
        with pytest.raises(RequestLostError, match="not sent again") as exc:
            await board.request("accel.job.submit", {"kind": "inference", "size": 10, "seed": 1})
        assert exc.value.topic == "accel.job.submit" and isinstance(exc.value, TimeoutError)
        # the link is fine: the next request is answered at once
        assert (await board.request("accel.job.submit", {"kind": "inference", "size": 10, "seed": 2}))["id"] == 2
    finally:
        await board.aclose()
    assert len(sends(board, "accel.job.submit")) == 2 and emu.jobs == 2
    assert (board.counters.lost, board.counters.retries) == (1, 0)


async def test_a_late_reply_is_not_a_loss(emu: FakeEmulator) -> None:
    """The reply comes after the time-out but before the ping's: no repeat, the request's own reply is used."""
    emu.delay_s["accel.job.submit"] = 0.8
    board = await client(emu)
    try:
        data = await board.request("accel.job.submit", {"kind": "inference", "size": 10, "seed": 1})
    finally:
        await board.aclose()
    assert data == {"id": 1} and len(sends(board, "accel.job.submit")) == 1
    assert (board.counters.timeouts, board.counters.retries, board.counters.lost) == (1, 0, 0)


@pytest.mark.parametrize(("topic", "copies"), [("eps.rail.set", POLICY.attempts), ("accel.job.submit", 1)])
async def test_a_silent_emulator_costs_bounded_rounds_with_backoff(emu: FakeEmulator, topic: str, copies: int) -> None:
    """Nothing answers, not even the pings: each round waits longer; a repeatable request goes out again each round
    (on a very noisy line that is what gets it through), one that is not goes out once."""
    emu.silent = True
    board = await client(emu)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        with pytest.raises(RequestLostError, match="does not answer"):
            await board.request(topic, {})
    finally:
        await board.aclose()
    # each round waits for the reply, then for the ping: 2 x (0.5 + 1 + 2 + 4 + 8) s
    assert loop.time() - t0 == pytest.approx(31.0, abs=0.01)
    assert board.counters.timeouts == POLICY.attempts and board.counters.lost == 1
    assert len(sends(board, topic)) == copies and len(set(sends(board, topic))) == 1


async def test_a_refusal_is_an_answer_not_a_loss(emu: FakeEmulator) -> None:
    board = await client(emu)
    original = emu.handle

    def refuse(msg: Message) -> dict[str, Any]:
        if msg.topic == "eps.rail.set":
            raise CommandError("unknown rail 'x'", field="payload.rail")
        return original(msg)

    async def serve_refusing() -> None:  # the double answers refusals like the runtime: ok=False with the error
        while True:
            msg = await emu._inbox.get()
            try:
                reply = msg.reply(ok=True, t_ns=emu.t_ns, src="emulator", data=refuse(msg))
            except CommandError as exc:
                reply = msg.reply(ok=False, t_ns=emu.t_ns, src="emulator", error=exc.to_wire())
            emu.to_board(reply)

    emu._serve.cancel()
    emu._serve = asyncio.create_task(serve_refusing())
    try:
        with pytest.raises(CommandError, match="unknown rail") as exc:
            await board.request("eps.rail.set", {"rail": "x", "on": True})
        assert exc.value.field == "payload.rail"
    finally:
        await board.aclose()
    assert board.counters.timeouts == 0


async def test_an_emulator_that_caches_replies_lets_every_request_be_repeated() -> None:
    emu = FakeEmulator(duplicate_window=16)
    emu.drop_down = nth("accel.job.submit", 0)
    board = await client(emu)
    try:
        await board.say_hello({"name": "board"})
        assert board.repeat_all
        assert (await board.request("accel.job.submit", {"kind": "inference", "size": 10, "seed": 1}))["id"] == 1
    finally:
        await board.aclose()
        emu.close()
    assert len(sends(board, "accel.job.submit")) == 2 and emu.jobs == 1  # the repeat was answered from the cache
    assert board.counters.lost == 0 and board.counters.retries == 1


# -- lockstep -------------------------------------------------------------------------------------------------
#: virtual seconds a lockstep exchange may take before a test fails (a board that stalls fails at once: virtual
#: time runs on while nothing else can happen)
STALL_S = 600.0


async def take_turns(board: BoardClient, n: int) -> list[int]:
    turns = []
    async with asyncio.timeout(STALL_S):
        for _ in range(n):
            turns.append(await board.next_turn() // NS)
            await board.step(PERIOD_S)
    return turns


@pytest.mark.parametrize("ping_tells_waiting", [False, True], ids=["ping-t_ns", "ping-waiting"])
async def test_a_lost_step_reply_is_not_stepped_again(ping_tells_waiting: bool) -> None:
    emu = FakeEmulator(ping_tells_waiting=ping_tells_waiting)
    emu.drop_down = nth("board.step", 1)
    board = await client(emu)
    try:
        await board.say_hello({"name": "board"})
        turns = await take_turns(board, 4)
    finally:
        await board.aclose()
        emu.close()
    assert turns == [0, 10, 20, 30] and emu.steps() == [0, 10, 20, 30]
    assert board.counters.unacked_steps == 1 and board.counters.retries == 0


async def test_a_lost_step_is_sent_again(emu: FakeEmulator) -> None:
    emu.drop_up = nth("board.step", 1)
    board = await client(emu)
    try:
        await board.say_hello({"name": "board"})
        turns = await take_turns(board, 4)
    finally:
        await board.aclose()
    assert turns == [0, 10, 20, 30] and emu.steps() == [0, 10, 20, 30]
    step_seqs = sends(board, "board.step")
    assert len(step_seqs) == 5 and step_seqs[1] == step_seqs[2]
    assert board.counters.retries == 1


async def test_a_lost_sim_waiting_is_found_by_asking_the_clock(emu: FakeEmulator) -> None:
    emu.drop_down = nth("sim.waiting", 1, 2)
    board = await client(emu)
    loop = asyncio.get_running_loop()
    try:
        await board.say_hello({"name": "board"})
        t0 = loop.time()
        turns = await take_turns(board, 5)
        elapsed = loop.time() - t0
    finally:
        await board.aclose()
    assert turns == [0, 10, 20, 30, 40] and emu.steps() == [0, 10, 20, 30, 40]
    assert board.counters.resyncs == 2
    assert elapsed == pytest.approx(2 * POLICY.resync_after_s, abs=0.01)  # each lost one cost one quiet wait


async def test_a_clock_still_running_is_not_a_turn(emu: FakeEmulator) -> None:
    """No sim.waiting for a while because the step is slow: the ping finds the clock short of its limit, and the
    board waits on (longer) instead of taking a turn early."""
    board = await client(emu)
    try:
        await board.say_hello({"name": "board"})
        assert await board.next_turn() == 0
        emu._run_clock = lambda: None  # type: ignore[method-assign]  # the step is taken, the clock holds
        await board.step(PERIOD_S)
        emu.t_ns = 3 * NS  # ...three physics steps into it
        waiter = asyncio.create_task(board.next_turn())
        await asyncio.sleep(POLICY.resync_after_s + 1.0)
        assert not waiter.done()
        emu.t_ns = 10 * NS
        emu.to_board(Message("sim.waiting", {"t_ns": emu.t_ns}))
        assert await waiter == 10 * NS
    finally:
        await board.aclose()
    assert board.counters.resyncs == 0


async def test_a_restarted_emulator_is_greeted_again() -> None:
    first = FakeEmulator()
    first.drop_down = nth("sim.waiting", 1)  # the one after the second turn's step: t = 20 s
    board = await client(first)
    try:
        await board.say_hello({"name": "board", "version": "1"})
        assert await take_turns(board, 2) == [0, 10]
        # the emulator restarts behind the same link: a new clock at 0, waiting (a sim.waiting nobody heard)
        second = FakeEmulator()
        link: Any = board.link
        second.link, link.emulator = link, second
        assert await board.next_turn() == 0
        await board.step(PERIOD_S)
        assert await board.next_turn() == 10 * NS
    finally:
        await board.aclose()
        first.close()
        second.close()
    assert board.counters.rehellos == 1
    assert [t for t, _, _ in second.executed].count("board.hello") == 1


async def test_a_free_running_board_greets_a_restarted_emulator_again() -> None:
    first = FakeEmulator(mode="afap", t0_s=500.0)
    board = await client(first)
    try:
        await board.say_hello({"name": "board"})
        assert not board.lockstep and board.t_ns == 500 * NS
        # a paused clock: the board asks now and then (less and less often) and waits on
        waiter = asyncio.create_task(board.wait_sim_time(510 * NS))
        await asyncio.sleep(20.0)
        assert not waiter.done()
        assert [t for t, _, _ in first.executed].count("ping") == 3  # after 2, 6 and 14 s
        # the emulator restarts behind the same link at t = 3 s: its telemetry does not move the board's time on
        second = FakeEmulator(mode="afap", t0_s=3.0)
        link: Any = board.link
        second.link, link.emulator = link, second
        second.to_board(Message("eps.telemetry", {"soc": 0.5}))
        async with asyncio.timeout(STALL_S):
            await waiter
    finally:
        await board.aclose()
        first.close()
        second.close()
    assert board.t_ns == 3 * NS and board.counters.rehellos == 1
    assert [t for t, _, _ in second.executed] == ["ping", "board.hello"]


# -- the link itself ------------------------------------------------------------------------------------------
async def test_a_broken_link_is_waited_for_and_a_closed_one_reopened(emu: FakeEmulator) -> None:
    links: list[FakeLink] = []

    async def reopen() -> FakeLink:
        if len(links) < 2:  # the first two tries find nothing listening
            links.append(None)  # type: ignore[arg-type]
            raise TransportUnavailableError("nothing at the other end yet")
        link = FakeLink(emu)
        links.append(link)
        return link

    board = await client(emu, reconnect=reopen)
    try:
        first: Any = board.link
        first.fail_recv = TransportBrokenError("peer went away")
        first.deliver(Message("eps.telemetry", {"soc": 0.5}))  # wakes the reader into the failure
        await asyncio.sleep(0.1)
        await board.request("ping")
        assert board.counters.link_errors == 1 and board.counters.reconnects == 0
        first.closed = True
        first.deliver(Message("eps.telemetry", {"soc": 0.5}))
        await asyncio.sleep(POLICY.timeout_s * 3 + 0.1)  # two failed tries, with backoff, then a new link
        assert board.link is links[-1] and board.counters.reconnects == 1
        assert (await board.request("ping"))["t_ns"] == 0
    finally:
        await board.aclose()
    assert board.counters.link_errors == 3  # the broken recv and the two failed reopenings


async def test_without_a_way_to_reopen_a_closed_link_ends_the_client(emu: FakeEmulator) -> None:
    board = await client(emu)
    link: Any = board.link
    link.closed = True
    link.deliver(Message("eps.telemetry", {}))
    try:
        await asyncio.wait_for(board.closed.wait(), 1.0)
        with pytest.raises(TransportError, match="link to the emulator lost"):
            await board.request("ping")
    finally:
        await board.aclose()


async def test_connecting_waits_for_the_emulator_but_not_for_a_bad_url(emu: FakeEmulator) -> None:
    tries: list[str] = []

    async def connect(url: str) -> FakeLink:
        tries.append(url)
        if len(tries) < 3:
            raise TransportUnavailableError("no flatsat server answered")
        return FakeLink(emu)

    link = await open_link("zmq+tcp://127.0.0.1:5550", connect, POLICY)
    assert isinstance(link, FakeLink) and len(tries) == 3

    async def bad(url: str) -> FakeLink:
        raise InvalidTransportURL("bad URL")

    with pytest.raises(InvalidTransportURL):
        await open_link("zmq+tcp://x", bad, POLICY)


# -- the control loop -----------------------------------------------------------------------------------------
class Busy(Controller):
    """Every turn: the rail (repeatable) and one job (not repeatable), then the step."""

    name = "busy"
    period_s = PERIOD_S

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[int] = []
        self.started = 0

    async def on_start(self, board: BoardClient) -> None:
        self.started += 1
        await board.request("eps.rail.set", {"rail": "payload", "on": True})

    async def on_tick(self, board: BoardClient) -> None:
        self.turns.append(board.turn_ns // NS)
        await board.request("eps.rail.set", {"rail": "payload", "on": True})
        send = board.post if self.post else board.request
        await send("accel.job.submit", {"kind": "inference", "size": 10, "seed": len(self.turns)})

    post = False


@pytest.mark.parametrize("post", [False, True])
async def test_run_board_stays_in_step_through_random_losses_both_ways(emu: FakeEmulator, post: bool) -> None:
    rng = random.Random(7)
    emu.drop_up = lambda msg, k: rng.random() < 0.15
    emu.drop_down = lambda msg, k: rng.random() < 0.15
    controller = Busy()
    controller.post = post  # the job posted: it goes out with the step, its reply taken after it
    turns = 200

    async def connect(url: str) -> FakeLink:
        return FakeLink(emu)

    async with asyncio.timeout(STALL_S * turns):
        log = await run_board(controller, "fake://", max_ticks=turns, connect=connect, policy=POLICY)
    # every turn at its waiting point, each exactly once, and each stepped exactly once
    expected = [k * int(PERIOD_S) for k in range(turns)]
    assert controller.turns == expected
    assert emu.steps() == expected
    c = log.link
    assert c["timeouts"] > 20 and c["retries"] > 5 and c["lost"] > 5 and c["resyncs"] > 3, c
    assert c["unacked_steps"] > 3 and c["link_errors"] == 0, c
    # a job request is never carried out twice (not repeated); one lost on the way up is simply missing
    submits = [seq for topic, seq, _ in emu.executed if topic == "accel.job.submit"]
    assert len(set(submits)) == len(submits) == emu.jobs
    assert turns - c["lost"] <= emu.jobs < turns


async def test_a_lost_start_is_started_again(emu: FakeEmulator) -> None:
    """The controller's start (its rail on) must happen: when its request is given up, the start runs again."""
    emu.drop_up = nth("eps.rail.set", *range(POLICY.attempts))
    controller = Busy()

    async def connect(url: str) -> FakeLink:
        return FakeLink(emu)

    log = await run_board(controller, "fake://", max_ticks=2, connect=connect, policy=POLICY)
    assert controller.started == 2 and controller.turns == [0, 10]
    assert log.link["lost"] == 1 and log.link["retries"] == POLICY.attempts - 1


# -- pipelining (BoardClient.post) ----------------------------------------------------------------------------
class Pipelined(Controller):
    """Two requests a turn whose replies it does not read: posted (``post``) or waited for one by one."""

    name = "pipelined"
    period_s = PERIOD_S

    def __init__(self, post: bool) -> None:
        super().__init__()
        self.post = post
        self.after: list[int] = []  # sim time of each turn that ran to its end

    async def on_tick(self, board: BoardClient) -> None:
        send = board.post if self.post else board.request
        await send("accel.job.verdict", {"id": 1, "ok": True})
        await send("accel.job.submit", {"kind": "inference", "size": 10, "seed": 1})
        self.after.append(board.turn_ns // NS)


def refusing(emu: FakeEmulator, topic: str) -> None:
    """The double refuses ``topic`` as the runtime does (ok=False with the error), in order with the rest."""
    original = emu.handle

    async def serve() -> None:
        while True:
            msg = await emu._inbox.get()
            try:
                if msg.topic == topic:
                    emu.executed.append((msg.topic, msg.seq, emu.t_ns))
                    raise CommandError("no finished job with id 1", field="payload.id")
                reply = msg.reply(ok=True, t_ns=emu.t_ns, src="emulator", data=original(msg))
            except CommandError as exc:
                reply = msg.reply(ok=False, t_ns=emu.t_ns, src="emulator", error=exc.to_wire())
            emu.to_board(reply)
            if msg.topic == "board.step":
                asyncio.get_running_loop().call_soon(emu._run_clock)

    emu._serve.cancel()
    emu._serve = asyncio.create_task(serve())


@pytest.mark.parametrize("post", [True, False])
async def test_posted_requests_go_out_with_the_step_in_one_round_trip(emu: FakeEmulator, post: bool) -> None:
    async def connect(url: str) -> FakeLink:
        return FakeLink(emu)

    controller = Pipelined(post)
    log = await run_board(controller, "fake://", max_ticks=4, connect=connect, policy=POLICY)
    # the same requests, in the same order, at the same sim times either way
    per_turn = ["accel.job.verdict", "accel.job.submit", "board.step"]
    assert [(topic, t // NS) for topic, _, t in emu.executed[1:]] == [
        (topic, k * int(PERIOD_S)) for k in range(4) for topic in per_turn]
    assert controller.after == [0, 10, 20, 30] and log.errors == []
    # hello, then one round trip a turn when posted, three when each reply is waited for
    assert log.round_trips == 1 + 4 * (1 if post else 3)
    assert log.link["timeouts"] == 0


async def test_a_refused_posted_request_is_logged_and_the_turn_goes_on(emu: FakeEmulator) -> None:
    refusing(emu, "accel.job.verdict")

    async def connect(url: str) -> FakeLink:
        return FakeLink(emu)

    controller = Pipelined(post=True)
    log = await run_board(controller, "fake://", max_ticks=2, connect=connect, policy=POLICY)
    assert controller.after == [0, 10]  # the turn went on: its submit and step were sent
    assert emu.steps() == [0, 10] and emu.jobs == 2
    assert log.errors == ["accel.job.verdict: no finished job with id 1"] * 2


async def test_a_lost_posted_request_is_given_up_and_the_run_goes_on(emu: FakeEmulator) -> None:
    emu.drop_up = nth("accel.job.submit", 0)  # not repeatable: given up after the ping proves it lost

    async def connect(url: str) -> FakeLink:
        return FakeLink(emu)

    controller = Pipelined(post=True)
    log = await run_board(controller, "fake://", max_ticks=3, connect=connect, policy=POLICY)
    assert emu.steps() == [0, 10, 20] and emu.jobs == 2
    assert log.link["lost"] == 1 and log.errors == []


async def test_posted_requests_are_bounded(emu: FakeEmulator) -> None:
    from firmware_stubs.base import MAX_POSTED

    board = await client(emu)
    try:
        await board.say_hello({"name": "board"})
        emu.delay_s["ping"] = 1.0  # replies held back: the board must not run ahead of them without bound
        for _ in range(MAX_POSTED + 5):
            await board.post("ping")
        assert len(board._posted) <= MAX_POSTED
        assert await board.settle() == []
        assert not board._posted and not board._pending
    finally:
        await board.aclose()

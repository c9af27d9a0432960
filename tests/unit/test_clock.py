"""SimClock: modes, deadline pacing, lag accounting, pause/step/run-until, all on virtual wall time."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.clock import (
    NS_PER_S,
    QUIET_YIELD_NS,
    YIELD_NS,
    ClockMode,
    SimClock,
    VirtualWall,
    parse_duration_s,
)
from emulator.errors import CommandError

STEP_NS = 100_000_000  # 0.1 s


async def run_steps(clock: SimClock, n: int, step_ns: int = STEP_NS) -> None:
    for _ in range(n):
        await clock.wait_turn(step_ns)
        await clock.advance(step_ns)


async def test_realtime_follows_wall_clock_by_absolute_deadlines() -> None:
    wall = VirtualWall(start_ns=5 * NS_PER_S)
    clock = SimClock("realtime", wall=wall)
    await run_steps(clock, 100)
    assert clock.now_ns() == 10 * NS_PER_S
    # anchored at the first step: 10 s of sim time took exactly 10 s of (virtual) wall time
    assert wall.now_ns() == 15 * NS_PER_S
    assert clock.stats.lag_ns == 0 and clock.stats.overruns == 0


async def test_scaled_runs_n_times_faster() -> None:
    wall = VirtualWall()
    clock = SimClock("scaled", speed=50.0, wall=wall)
    await run_steps(clock, 500)  # 50 s sim
    assert wall.now_ns() == NS_PER_S


async def test_slow_steps_are_counted_as_lag_and_overruns_without_drift() -> None:
    wall = VirtualWall()
    clock = SimClock("realtime", wall=wall)
    await run_steps(clock, 10)
    for _ in range(10):  # each 0.1 s step now costs 0.25 s of processing: the run falls behind
        wall.advance(250_000_000)
        await clock.wait_turn(STEP_NS)
        await clock.advance(STEP_NS)
    assert clock.stats.overruns == 10
    assert clock.stats.lag_ns == 10 * 150_000_000  # 0.15 s more behind at every step, counted exactly
    # deadlines stay absolute: once the load goes, the clock catches up instead of keeping the lag
    await run_steps(clock, 30)
    assert clock.stats.lag_ns == 0
    assert clock.now_ns() == 5 * NS_PER_S


async def test_afap_never_waits_on_the_wall_clock() -> None:
    wall = VirtualWall()
    clock = SimClock("afap", wall=wall)
    await run_steps(clock, 1000)
    assert clock.now_ns() == 100 * NS_PER_S
    assert wall.now_ns() == 0


async def test_lockstep_advances_only_when_stepped() -> None:
    clock = SimClock("lockstep", wall=VirtualWall())
    assert not clock.may_advance(STEP_NS)
    waiter = asyncio.create_task(run_steps(clock, 3))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert clock.now_ns() == 0 and not waiter.done()
    clock.step(2 * STEP_NS)
    for _ in range(10):
        await asyncio.sleep(0)
    assert clock.now_ns() == 2 * STEP_NS and not waiter.done()
    clock.step(STEP_NS)
    await asyncio.wait_for(waiter, 1)
    assert clock.now_ns() == 3 * STEP_NS


async def test_pause_resume_and_run_until() -> None:
    clock = SimClock("afap", wall=VirtualWall())
    clock.pause()
    assert not clock.may_advance(STEP_NS)
    clock.run_until(5 * STEP_NS)
    assert clock.may_advance(STEP_NS)
    task = asyncio.create_task(run_steps(clock, 8))
    for _ in range(30):
        await asyncio.sleep(0)
    assert clock.now_ns() == 5 * STEP_NS and clock.paused and not task.done()
    clock.resume()
    await asyncio.wait_for(task, 1)
    assert clock.now_ns() == 8 * STEP_NS


async def test_speed_change_reanchors_without_a_jump() -> None:
    wall = VirtualWall()
    clock = SimClock("scaled", speed=10.0, wall=wall)
    await run_steps(clock, 10)  # 1 s sim, 0.1 s wall
    clock.set_speed(1.0)
    await run_steps(clock, 10)  # 1 s sim at x1
    assert wall.now_ns() == pytest.approx(1.1 * NS_PER_S, abs=STEP_NS)
    assert clock.stats.overruns == 0


def test_bad_control_values_are_refused_with_the_field() -> None:
    clock = SimClock("afap", wall=VirtualWall())
    with pytest.raises(CommandError) as exc:
        clock.set_speed(2.0)
    assert exc.value.field == "mode"
    lock = SimClock("lockstep", wall=VirtualWall())
    with pytest.raises(CommandError):
        lock.resume()
    with pytest.raises(CommandError) as exc:
        lock.step(0)
    assert exc.value.field == "payload.duration_s"
    sc = SimClock("scaled", speed=2, wall=VirtualWall())
    with pytest.raises(CommandError) as exc:
        sc.set_speed(-1)
    assert exc.value.field == "payload.speed"


def test_utc_maps_sim_time_to_the_epoch() -> None:
    clock = SimClock(ClockMode.AFAP)
    assert clock.utc(3600 * NS_PER_S).isoformat() == "2026-01-01T01:00:00+00:00"


@pytest.mark.parametrize(("text", "seconds"), [("1d", 86400), ("6h", 21600), ("90m", 5400), ("3600s", 3600),
                                               ("250ms", 0.25), ("42", 42), (7, 7),
                                               ("1h10m", 4200), ("40m10s", 2410), ("1d 6h", 108000), ("1.5h", 5400)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1y", "-5s", "0", "nan", "1h10", "m5", "5 x", "10M", "1H"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)


async def test_a_lockstep_wait_does_not_shrink_the_next_batches() -> None:
    """Batches are sized by the stepping between yields; the wall time a lockstep clock waits for its next step
    (a board's turn) is a yield, not stepping, so a turn of 10 steps still runs in one batch after a long wait."""
    wall = VirtualWall()
    clock = SimClock(ClockMode.LOCKSTEP, wall=wall)
    sizes = []
    for _ in range(8):
        waiter = asyncio.ensure_future(clock.wait_turn(STEP_NS))  # at its limit: waits for the board
        await asyncio.sleep(0)
        wall.advance(5_000_000)  # the board's turn: 5 ms of wall time
        clock.step(10 * STEP_NS)
        await waiter
        while clock.may_advance(STEP_NS):
            n = clock.batch(STEP_NS, 10)
            sizes.append(n)
            wall.advance(1_000 * n)  # 1 us of wall time a step: dozens fit in a yield
            await clock.advance_many(n, STEP_NS)
    assert clock.now_ns() == 80 * STEP_NS
    assert sizes[-4:] == [10] * 4, sizes


async def test_batches_fill_the_yield_period_and_shrink_at_once_when_it_shortens() -> None:
    """An afap clock sizes its batches to the wall time between yields (100 us a step: 40 steps in the quiet
    period, 10 in the short one); a shorter period takes effect at the next batch, not after a long one."""
    wall = VirtualWall()
    clock = SimClock(ClockMode.AFAP, wall=wall)

    async def run(batches: int) -> list[int]:
        sizes = []
        for _ in range(batches):
            n = clock.batch(STEP_NS, 1000)
            sizes.append(n)
            wall.advance(100_000 * n)
            await clock.advance_many(n, STEP_NS)
        return sizes

    assert clock.yield_ns == YIELD_NS
    clock.set_yield_ns(QUIET_YIELD_NS)
    quiet = await run(12)
    assert quiet[-3:] == [QUIET_YIELD_NS // 100_000] * 3, quiet
    clock.set_yield_ns(YIELD_NS)
    short = await run(6)
    assert short == [YIELD_NS // 100_000] * 6, short


@given(epoch_s=st.integers(-10**9, 10**10), epoch_us=st.sampled_from([0, 0, 7]),
       offset_min=st.sampled_from([0, 0, 330, -210, 60]),
       times_ns=st.lists(st.one_of(st.integers(-10**15, 10**17), st.integers(0, 7200 * NS_PER_S)), min_size=1,
                         max_size=40),
       step_ns=st.sampled_from([NS_PER_S, 1_000_000, 1, 999_999_999]))
@settings(max_examples=300, deadline=None)
def test_utc_text_is_isoformat_with_a_z(epoch_s: int, epoch_us: int, offset_min: int, times_ns: list[int],
                                        step_ns: int) -> None:
    """utc_text (cached within an hour) reads as the datetime's isoformat, any order of times, any fixed offset."""
    tz = dt.timezone(dt.timedelta(minutes=offset_min)) if offset_min else dt.UTC
    epoch = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).astimezone(tz) + dt.timedelta(seconds=epoch_s, microseconds=epoch_us)
    clock = SimClock("afap", epoch_utc=epoch)
    for t in times_ns:
        for k in range(3):  # and the steps after it (the cached hour)
            t_ns = t + k * step_ns
            want = (epoch + dt.timedelta(microseconds=t_ns // 1000)).isoformat().replace("+00:00", "Z")
            assert clock.utc_text(t_ns) == want

"""The real wall source: paced sleeps never return early, and (Linux) wait in the kernel, not on the CPU.

These touch the real monotonic clock for a few milliseconds each: they check what the wall source promises
(never before the deadline, cancellation safe, one timer per loop), not how late it wakes, which depends on
the machine.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from emulator.clock import WallSource

MS = 1_000_000

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux-only")


@pytest.mark.parametrize("precise", [True, False])
async def test_sleep_until_never_returns_before_the_deadline(precise: bool) -> None:
    wall = WallSource()
    wall.precise = precise
    for ahead_ns in (50_000, 300_000, 2 * MS, 0, -MS):
        deadline = time.monotonic_ns() + ahead_ns
        await wall.sleep_until(deadline)
        assert time.monotonic_ns() >= deadline, ahead_ns


async def cpu_of_sleeps(wall: WallSource, sleeps: int = 20) -> int:
    cpu0 = time.process_time_ns()
    for _ in range(sleeps):
        await wall.sleep_until(time.monotonic_ns() + MS)
    return time.process_time_ns() - cpu0


@linux_only
async def test_a_paced_sleep_waits_in_the_kernel_not_on_the_cpu() -> None:
    """20 sleeps of 1 ms: the coarse path spins through all of each (it spins for the last 1.5 ms before a
    deadline), the precise timer only for its early-wake margin (0.1 ms)."""
    coarse = WallSource()
    coarse.precise = False
    coarse_ns = await cpu_of_sleeps(coarse)
    precise_ns = await cpu_of_sleeps(WallSource())
    assert precise_ns < 10 * MS, f"{precise_ns / MS:.1f} ms of CPU for 20 ms of sleep"
    assert precise_ns * 2 < coarse_ns, f"precise {precise_ns / MS:.1f} ms vs coarse {coarse_ns / MS:.1f} ms of CPU"


@linux_only
async def test_a_cancelled_sleep_does_not_wake_the_next_one_early() -> None:
    wall = WallSource()
    first = asyncio.ensure_future(wall.sleep_until(time.monotonic_ns() + 1 * MS))
    await asyncio.sleep(0)  # armed
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    deadline = time.monotonic_ns() + 5 * MS
    await wall.sleep_until(deadline)
    assert time.monotonic_ns() >= deadline


async def test_two_sleepers_on_one_source_both_wait_for_their_own_deadlines() -> None:
    wall = WallSource()
    woke: dict[str, int] = {}
    deadlines = {"a": time.monotonic_ns() + 3 * MS, "b": time.monotonic_ns() + 1 * MS}

    async def sleeper(name: str) -> None:
        await wall.sleep_until(deadlines[name])
        woke[name] = time.monotonic_ns()

    await asyncio.gather(sleeper("a"), sleeper("b"))
    assert woke["a"] >= deadlines["a"] and woke["b"] >= deadlines["b"]


@linux_only
def test_each_event_loop_gets_its_own_timer() -> None:
    """A wall source outlives a loop (tests run one per test): the next loop gets a timer of its own."""
    wall = WallSource()
    for _ in range(3):
        deadline = time.monotonic_ns() + MS
        asyncio.run(wall.sleep_until(deadline))
        assert time.monotonic_ns() >= deadline

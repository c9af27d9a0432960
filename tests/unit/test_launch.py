"""A board started by flatsat ends when its flatsat ends (emulator/launch.py and run_until_signalled)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator import launch
from emulator.launch import PARENT_PID_ENV, board_env, parent_pid, watch_process

ROOT = Path(__file__).resolve().parents[2]


def test_board_env_names_this_process() -> None:
    env = board_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", PARENT_PID_ENV: str(os.getpid())}
    assert parent_pid(env) == os.getpid()


@pytest.mark.parametrize("raw", ["", "  ", "abc", "0", "-5"])
def test_a_missing_or_malformed_variable_watches_nothing(raw: str) -> None:
    assert parent_pid({PARENT_PID_ENV: raw}) is None
    assert parent_pid({}) is None


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


async def _ends_within(watched: subprocess.Popen[bytes], timeout_s: float) -> int:
    gone = asyncio.Event()
    calls = []

    def on_gone() -> None:
        calls.append(1)
        gone.set()

    stop = watch_process(watched.pid, on_gone)
    try:
        await asyncio.sleep(0)
        assert not gone.is_set()
        watched.kill()
        watched.wait()  # reaped, as flatsat's own parent (a shell, CI) reaps it
        await asyncio.wait_for(gone.wait(), timeout_s)
        await asyncio.sleep(0.05)  # a second signal would arrive now
    finally:
        stop()
        if watched.poll() is None:
            watched.kill()
            watched.wait()
    return len(calls)


async def test_the_end_of_a_process_is_seen_once() -> None:
    assert await _ends_within(_sleeper(), 10.0) == 1


async def test_without_pidfd_the_process_is_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    monkeypatch.setattr(launch, "POLL_S", 0.02)
    assert await _ends_within(_sleeper(), 10.0) == 1


async def test_a_process_already_gone_is_reported_at_once() -> None:
    p = _sleeper()
    p.kill()
    p.wait()
    gone = asyncio.Event()
    watch_process(p.pid, gone.set)
    await asyncio.wait_for(gone.wait(), 5.0)


async def test_stop_watching_means_no_call() -> None:
    p = _sleeper()
    calls: list[int] = []
    stop = watch_process(p.pid, lambda: calls.append(1))
    stop()
    p.kill()
    p.wait()
    await asyncio.sleep(0.05)
    assert calls == []


async def test_a_board_ends_when_the_flatsat_that_started_it_ends() -> None:
    """The reference board, started as flatsat starts it, with no emulator to reach (it retries for ever): it
    ends once the process named as its flatsat is killed, with the exit code of a board that was stopped."""
    flatsat = _sleeper()
    env = {**os.environ, PARENT_PID_ENV: str(flatsat.pid), "PYTHONPATH": str(ROOT)}
    board = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firmware_stubs.reference", "--url", "zmq+tcp://127.0.0.1:9", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        with pytest.raises(TimeoutError):  # alive while its flatsat is
            await asyncio.wait_for(asyncio.shield(board.wait()), 1.0)
        flatsat.kill()
        flatsat.wait()
        await asyncio.wait_for(board.wait(), 20.0)
        err = (await board.stderr.read()).decode()
        assert board.returncode == 0, err
        assert f"flatsat (pid {flatsat.pid}), which started this board, has ended" in err
    finally:
        if board.returncode is None:
            board.kill()
            await board.wait()
        if flatsat.poll() is None:
            flatsat.kill()

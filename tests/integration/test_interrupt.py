"""Every command stops on SIGINT the same way: 130, 'interrupted at sim t=...', even as a background job.

A background job of a non-interactive shell starts with SIGINT ignored; the children here start that way
too, so a command that relied on Python's KeyboardInterrupt would not stop at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    # an ignored signal stays ignored across exec: the child starts as a background job of a script would
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.Popen([sys.executable, "-m", "emulator", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_when(proc: subprocess.Popen[str], ready: Path | None, wait_s: float) -> tuple[int, str, str]:
    deadline = time.monotonic() + 60
    while ready is not None and not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(wait_s)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit 60 s after SIGINT; stderr:\n{err}")
    return proc.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_run_in_lockstep_stops_on_sigint_with_130(tmp_path: Path, quiet: bool) -> None:
    args = ["run", "--config", str(ROOT / "configs" / "suncatcher-proto.toml"), "--mode", "lockstep",
            "--board-url", "zmq+tcp://127.0.0.1:0", "--control-url", "none", "--duration", "1d",
            "--record", str(tmp_path / "run.rec")]
    proc = _start(args + (["--quiet"] if quiet else []), tmp_path)
    code, _, err = _interrupt_when(proc, tmp_path / "run.rec", 1.0)
    assert code == 130, err
    assert "interrupted at sim t=0 s (SIGINT)" in err
    assert "recording: " in err and "run.rec" in err


@pytest.mark.slow
def test_test_command_stops_on_sigint_writes_partial_junit_and_report(tmp_path: Path) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(f'''[scenario]
name = "long"
config = "{ROOT / 'configs' / 'suncatcher-proto.toml'}"
duration = "30d"
mode = "realtime"

[[requirement]]
kind = "always"
signal = "satellite.power.bus_v"
op = ">"
value = 0
''')
    proc = _start(["test", str(scenario), "--junit", "j.xml", "--report", "rep", "--record", "rec"], tmp_path)
    code, _, err = _interrupt_when(proc, tmp_path / "rec" / "long.rec", 1.5)
    assert code == 130, err
    assert "interrupted at sim t=" in err
    junit = (tmp_path / "j.xml").read_text()
    assert "interrupted at sim t=" in junit and 'errors="1"' in junit
    assert (tmp_path / "rep" / "index.html").exists()


@pytest.mark.slow
def test_one_signal_delivered_twice_stops_cleanly_as_timeout_sends_it(tmp_path: Path) -> None:
    """``timeout -s INT`` signals the command and its process group: one SIGINT arrives twice within
    microseconds. It is one request to stop cleanly (130 and where it stopped), not a second, forcing one that
    cancelled the run with a CancelledError traceback and exit 1 (3 times in 8 before)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "emulator", "run", "--mode", "afap", "--duration", "20d",
                                 "--record", str(tmp_path / "run.rec"), "--quiet"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run.rec").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)  # the group too, as timeout does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at sim t=" in err and "recording: " in err


def test_a_second_signal_later_stops_at_once_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A repeat of the first signal within REPEAT_S is the same delivery; a signal after it cancels the command's
    task, and the command exits 128 + the first signal's number saying it stopped at once."""
    import asyncio

    from emulator import interrupt

    now = [100.0]
    monkeypatch.setattr(interrupt.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(interrupt, "_forced", None)
    stops: list[str] = []

    async def command() -> None:
        intr = interrupt.Interrupts()
        task = asyncio.current_task()
        intr._fire(signal.SIGINT, stops.append, task)
        now[0] += 0.001
        intr._fire(signal.SIGINT, stops.append, task)  # the same delivery
        await asyncio.sleep(0)
        assert stops == ["signal SIGINT"] and not task.cancelling()
        now[0] += interrupt.REPEAT_S
        intr._fire(signal.SIGTERM, stops.append, task)
        await asyncio.sleep(3600)

    with pytest.raises(asyncio.CancelledError) as exc:
        asyncio.run(command())
    assert interrupt.forced_exit("run", exc.value) == 130
    assert "flatsat run: interrupted again (SIGINT): stopped at once" in capsys.readouterr().err
    assert interrupt.forced_exit("run", RuntimeError("x")) is None


@pytest.mark.slow
def test_replay_stops_on_sigint_saying_where(tmp_path: Path) -> None:
    rec = tmp_path / "r.rec"
    subprocess.run([sys.executable, "-m", "emulator", "run", "--mode", "afap", "--duration", "2h", "--quiet",
                    "--record", str(rec), "--board-url", "none", "--control-url", "none"], cwd=tmp_path, check=True)
    proc = _start(["replay", str(rec), "--plane", "control", "--speed", "60", "--to", "zmq+tcp://127.0.0.1:0"],
                  tmp_path)
    assert proc.stderr is not None
    said = proc.stderr.readline()  # publishing (its handler is on) once it says how to stop
    assert "Ctrl-C to stop" in said, said
    code, _, err = _interrupt_when(proc, None, 1.0)
    assert code == 130, said + err
    assert "flatsat replay: interrupted at sim t=" in err and " messages published" in err
    assert "Traceback" not in err

"""Every command stops on SIGINT the same way: 130, 'interrupted at sim t=...', even as a background job.

A background job of a non-interactive shell starts with SIGINT ignored; the children here start that way
too, so a command that relied on Python's KeyboardInterrupt would not stop at all.
"""

from __future__ import annotations

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

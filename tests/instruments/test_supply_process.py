"""The emulator as a subprocess (``flatsat run``) with a bench supply: SIGTERM switches the output off on the way
out; a crash (SIGKILL) or a stalled process (SIGSTOP) leaves it to the guard process, which switches it off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyvisa", reason="pip install 'flatsat[bench]'  (or: make install-test)")
pytest.importorskip("pyvisa_py", reason="pip install 'flatsat[bench]'  (or: make install-test)")

import tomli_w
from scpi_supply_sim import ScpiSupplySim
from supply_setup import raw_config

#: wall-clock limits for waiting on another process (generous: the machine is shared); not timing assertions
START_WAIT_S = 30.0
GUARD_WAIT_S = 20.0


@pytest.fixture
def sim() -> Iterator[ScpiSupplySim]:
    s = ScpiSupplySim().start()
    s.ch[1].load_ohm = 24.0
    yield s
    s.stop()


def wait_until(pred: Callable[[], bool], within_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if proc is not None and proc.poll() is not None:
            out = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"{what}: the emulator exited ({proc.returncode}) first:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within_s} s")
        time.sleep(0.02)


def start(tmp_path: Path, sim: ScpiSupplySim, **supply) -> subprocess.Popen:
    raw = raw_config(sim.resource, **supply)
    path = tmp_path / "bench.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMU_", "HIL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "-v", "run", "--config", str(path), "--quiet",
                             "--board-url", "none", "--control-url", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wait_until(lambda: sim.ch[1].on, START_WAIT_S, "the supply's output on", proc)
    return proc


def guard_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if line.split()[1] == str(parent) and "emulator.instruments.guard" in line]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_switches_the_output_off(tmp_path: Path, sim: ScpiSupplySim, sig: int) -> None:
    proc = start(tmp_path, sim, guard=True)
    guards = guard_pids(proc.pid)
    assert len(guards) == 1
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=START_WAIT_S)
    assert proc.returncode == 128 + sig, err.decode(errors="replace")[-2000:]  # interrupted: 130 / 143
    assert not sim.ch[1].on
    assert sim.sent()[-1] == "SYST:ERR?" and "OUTP OFF,(@1)" in sim.sent()
    assert "output off, settings found at start restored" in err.decode()
    # the guard said goodbye without touching the instrument (one connection: the emulator's)
    assert sim.connections == 1
    with pytest.raises(ProcessLookupError):
        os.kill(guards[0], 0)


def test_a_crash_leaves_the_output_to_the_guard(tmp_path: Path, sim: ScpiSupplySim) -> None:
    proc = start(tmp_path, sim, guard=True)
    proc.kill()   # SIGKILL: no handler, no cleanup, the kernel closes the guard's pipe
    proc.wait(timeout=START_WAIT_S)
    wait_until(lambda: not sim.ch[1].on, GUARD_WAIT_S, "the guard switching the output off")
    assert sim.connections == 2   # the emulator's, then the guard's


def test_a_stalled_emulator_trips_the_watchdog(tmp_path: Path, sim: ScpiSupplySim) -> None:
    proc = start(tmp_path, sim, guard=True, watchdog_s=0.5)
    try:
        proc.send_signal(signal.SIGSTOP)   # alive but stuck: no heartbeat
        wait_until(lambda: not sim.ch[1].on, GUARD_WAIT_S, "the watchdog switching the output off")
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=START_WAIT_S)
    assert not sim.ch[1].on

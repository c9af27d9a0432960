"""Exit codes: a set-up error is 2 whatever the command, and says how to fix it; default ports move over."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATCHUP = ROOT / "configs" / "scenarios" / "latchup.toml"


def _flatsat(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def busy_port() -> int:
    """A loopback TCP port held open (listening) for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_test_with_a_busy_board_url_is_a_setup_error_not_a_fail(tmp_path: Path, busy_port: int) -> None:
    proc = _flatsat("test", str(LATCHUP), "--board-url", f"zmq+tcp://127.0.0.1:{busy_port}",
                    "--record", str(tmp_path / "rec"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "address in use" in proc.stderr and "board plane" in proc.stderr
    assert "FAIL" not in proc.stdout


def test_run_with_a_busy_explicit_port_names_free_ports(tmp_path: Path, busy_port: int) -> None:
    proc = _flatsat("run", "--board-url", f"zmq+tcp://127.0.0.1:{busy_port}", "--control-url", "none",
                    "--duration", "10", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--board-url" in proc.stderr and "e.g. zmq+tcp://127.0.0.1:" in proc.stderr
    assert "port 0" in proc.stderr


def test_a_busy_port_the_user_chose_is_not_called_a_default_one(tmp_path: Path, busy_port: int) -> None:
    """The board URL given and busy, the control plane on its default: one error about the URL given (the control
    plane is not moved, nor said to be)."""
    proc = _flatsat("run", "--board-url", f"zmq+tcp://127.0.0.1:{busy_port}", "--duration", "10", "--quiet",
                    cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "board plane" in proc.stderr and "address in use" in proc.stderr
    assert "the default port is in use" not in proc.stderr and proc.stderr.count("address in use") == 1


def test_run_moves_off_busy_default_ports(tmp_path: Path) -> None:
    from emulator.config import LinksConfig
    from emulator.transports.url import parse_transport_url, split_host_port

    url = parse_transport_url(LinksConfig().control)
    host, port = split_host_port(url.location, str(url))
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            pytest.skip(f"the default control port {port} is already taken on this machine")
        sock.listen()
        proc = _flatsat("run", "--duration", "60", "--board-url", "none", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "the default port is in use" in proc.stderr
    assert f"127.0.0.1:{port}?" not in proc.stderr.split("control plane", 2)[-1].split()[0]


def test_run_set_error_is_blamed_on_the_set_not_the_file(tmp_path: Path) -> None:
    proc = _flatsat("run", "--set", "power.battery.capacity_wh=40", "--duration", "10", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid --set power.battery.capacity_wh=40" in proc.stderr
    assert "itself is fine" in proc.stderr and "did you mean 'cell_capacity_ah'" in proc.stderr


def test_run_help_examples_are_valid_overrides(tmp_path: Path) -> None:
    import re

    help_text = _flatsat("run", "--help", cwd=tmp_path).stdout
    examples = [e for e in re.findall(r"--set\s+([a-z_.\[\]0-9]+=[^\s)]+)", " ".join(help_text.split()))]
    assert examples, help_text
    for example in examples:
        proc = _flatsat("run", "--set", example, "--duration", "1", "--board-url", "none", "--control-url",
                        "none", "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, (example, proc.stderr)

"""The flatsat command: version, help, argument errors (no physics needed)."""

from __future__ import annotations

import pytest

from emulator import __version__
from emulator.cli import build_parser, main, overrides_from_args


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"flatsat {__version__}"


@pytest.mark.parametrize("cmd", [[], ["run"], ["demo"], ["monitor"], ["orbit"]])
def test_help_everywhere(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: flatsat" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bad_duration_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--duration", "forever"])
    assert exc.value.code == 2
    assert "bad duration 'forever'" in capsys.readouterr().err


def test_overrides_map_flags_to_dotted_keys() -> None:
    args = build_parser().parse_args(["run", "--speed", "100", "--duration", "2h", "--seed", "7",
                                      "--board-url", "none", "--set", "power.battery.capacity_wh=40",
                                      "--set", "name=sat-a"])
    ov = overrides_from_args(args)
    assert ov == {"power.battery.capacity_wh": 40, "name": "sat-a", "sim.speed": 100.0, "sim.duration_s": 7200.0,
                  "sim.seed": 7, "sim.mode": "scaled", "links.board": None}

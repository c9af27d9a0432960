"""`flatsat test`: output paths checked before any run, and a scenario that checks nothing says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import cli as emulator_cli

SCENARIO = """
[scenario]
name = "{name}"
duration = "2m"
mode = "afap"
{requirement}
"""

REQUIREMENT = """
[[requirement]]
kind = "final"
signal = "satellite.power.bus_v"
op = ">"
value = 1
"""


def scenario(tmp_path: Path, name: str = "short", requirement: str = REQUIREMENT) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, requirement=requirement), encoding="utf-8")
    return path


def flatsat(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = emulator_cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("--junit", "{file}/j.xml", "cannot be written"),  # under a file
    ("--junit", "{dir}", "is a folder; give a file name"),
    ("--report", "{file}", "is a file; give a folder"),
    ("--record", "{file}/rec", "cannot be written"),
])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    flag: str, value: str, problem: str) -> None:
    """A passing run used to end in a traceback and exit 1 when its JUnit file could not be written."""
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    where = value.format(file=a_file, dir=tmp_path)
    record = [] if flag == "--record" else ["--record", str(tmp_path / "rec")]
    code, out, err = flatsat(["test", str(scenario(tmp_path)), flag, where, *record, "--quiet"], capsys)
    assert code == 2
    assert f"flatsat test: {flag} {where}: {problem}" in err
    assert "PASS" not in out  # refused before anything ran


def test_writable_outputs_are_made_and_nothing_is_left_by_the_check(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "new" / "junit.xml"
    code, _out, err = flatsat(["test", str(scenario(tmp_path)), "--junit", str(junit), "--report",
                              str(tmp_path / "report"), "--record", str(tmp_path / "rec"), "--quiet"], capsys)
    assert code == 0, err
    assert junit.read_text(encoding="utf-8").startswith("<?xml")
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_scenario_without_requirements_passes_but_says_nothing_was_checked(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = flatsat(["test", str(scenario(tmp_path, "unchecked", requirement="")), "--record",
                              str(tmp_path / "rec"), "--quiet"], capsys)
    assert code == 0
    assert "scenario 'unchecked' has no [[requirement]]: nothing is checked" in err
    assert "nothing checked" in " ".join(out.split())


def test_a_board_module_that_its_python_cannot_find_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--board 'python -m firmware_stubs.refrence'``: the interpreter is there, the module is not. Refused at
    once (exit 2, naming the module), not found out by every run failing one after the other."""
    import sys

    board = f"{sys.executable} -m firmware_stubs.refrence"
    code, _, err = flatsat(["test", str(scenario(tmp_path)), "--board", board], capsys)
    assert code == 2
    assert "finds no module 'firmware_stubs.refrence'" in err and "Traceback" not in err

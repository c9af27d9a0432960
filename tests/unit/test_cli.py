"""The flatsat command: version, help, argument errors (no physics needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator import __version__
from emulator.cli import build_parser, main
from emulator.run_command import overrides_from_args


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


HEAVY = ("numpy", "pydantic", "rich", "matplotlib", "zmq", "hil", "emulator.models", "emulator.runtime")


def _imported_after(argv: list[str]) -> set[str]:
    """Top-level modules (and flatsat's packages) imported by ``flatsat ARGV`` in a fresh interpreter."""
    import json

    code = (f"import json, sys\nfrom emulator.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    mods = set(json.loads(out.stderr.strip().splitlines()[-1]))
    return {m for m in HEAVY if m in mods or any(x.startswith(m + ".") for x in mods)}


def test_version_and_run_help_load_nothing_heavy() -> None:
    """What makes `flatsat --version` and `flatsat run --help` start fast: the command table loads only the module
    of the command asked for (the start-up times are in docs/bench.md; no timing is asserted here)."""
    assert _imported_after(["--version"]) == set()
    assert _imported_after(["run", "--help"]) == set()


def test_emulator_finds_hil_commands_through_the_entry_point_group(capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.cli import plugin_commands

    names = {c.name for c in plugin_commands()}
    assert {"test", "replay", "plot", "export", "campaign"} <= names
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    assert "SCENARIO" in capsys.readouterr().out


def test_blas_runs_on_one_thread_unless_the_user_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """flatsat sets OPENBLAS_NUM_THREADS=1 for its process (and what it starts) before numpy loads: numpy's OpenBLAS
    would start a spinning thread per core for matrices it computes on one thread anyway; a value given wins."""
    import os

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


@pytest.mark.parametrize("cmd", [["export", "{path}", "--csv", "{tmp}/x.csv"], ["plot", "{path}", "-o", "{tmp}/x.png"],
                                 ["replay", "{path}"]])
@pytest.mark.parametrize("what", ["missing", "directory"])
def test_a_recording_that_cannot_be_read_is_named_not_a_traceback(cmd: list[str], what: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.rec" if what == "missing" else tmp_path
    assert main([a.format(path=path, tmp=tmp_path) for a in cmd]) == 2
    err = capsys.readouterr().err
    reason = "No such file or directory" if what == "missing" else "is a directory"
    assert f"{path}: cannot read the recording: {reason}" in err


@pytest.mark.parametrize("output", [["--json"], []], ids=["json", "table"])
def test_a_reader_that_goes_away_stops_the_command_quietly(output: list[str]) -> None:
    """`flatsat orbit ... | head`: the pipe's reader closes after a line; flatsat exits 141 (128 + SIGPIPE, as a
    shell reports it) with nothing on stderr, not a BrokenPipeError traceback, nor rich's exit 1 (the tables)."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "orbit", "--alt-km", "500", "--ltan", "13:30",
                             "--duration", "10d", *output], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert err == ""


def test_run_help_names_every_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    from emulator import shipped

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert shipped.names("satellite") and all(name in out for name in shipped.names("satellite"))
    assert "suncatcher-cluster" in out


def test_the_run_summary_says_which_accelerator_waits_for_a_board() -> None:
    """A fleet with no board connected: only its bound member idles (the others follow the built-in policy and
    work), so the summary names the member rather than saying the accelerator idles."""
    from types import SimpleNamespace as NS

    from emulator.terminal import board_summary

    def emu(model: object) -> object:
        return NS(stats=NS(boards_seen={}), model=model, interface=NS(commands=[NS(spec=NS(plane="board"))]))

    assert board_summary(emu(NS())) == "no board connected: the accelerator idles"
    fleet = board_summary(emu(NS(bound=[40], member_names=[f"sat-{k}" for k in range(81)])))
    assert fleet.startswith("no board connected: the bound member's accelerator idles (member 40 (sat-40);")
    assert "the others follow the built-in policy" in fleet


@pytest.mark.parametrize(("argv", "says"), [
    (["replay", "x.rec", "--wait", "-1"], "argument --wait: -1: give a number >= 0"),
    (["replay", "x.rec", "--speed", "0"], "argument --speed: 0: give a number > 0"),
    (["test", "latchup", "--hello-timeout", "-1"], "argument --hello-timeout: -1: give a number > 0"),
    (["test", "latchup", "--board-timeout", "nan"], "argument --board-timeout: nan: give a number >= 0"),
    (["test", "latchup", "--record-max-mb", "lots"], "argument --record-max-mb: 'lots' is not a number"),
    (["test", "latchup", "--seed", "-1"], "argument --seed: -1: give a whole number from 0 to 2**63 - 1"),
    (["run", "--seed", "1.5"], "argument --seed: '1.5' is not a whole number"),
])
def test_negative_and_impossible_numbers_are_argument_errors(argv: list[str], says: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_the_progress_bar_stays_off_stdout_and_out_of_logs(tmp_path: Path) -> None:
    """`flatsat run > file`: stdout gets nothing (the bar went there, stale, as one line), and with stderr not a
    terminal either (a CI log) no bar at all: the summary table only."""
    proc = subprocess.run([sys.executable, "-m", "emulator", "run", "--duration", "10m", "--mode", "afap",
                           "--board-url", "none", "--control-url", "none"], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "real time  lag" not in proc.stderr and "sim time" in proc.stderr


@pytest.mark.parametrize(("argv", "usage", "says"), [
    (["export", "r.rec", "--cvs", "x.csv"], "usage: flatsat export ",
     "flatsat export: error: unrecognized arguments: --cvs x.csv (did you mean '--csv'?)"),
    (["run", "--duraton", "1h"], "usage: flatsat run ",
     "flatsat run: error: unrecognized arguments: --duraton 1h (did you mean '--duration'?)"),
    (["monitor", "zmq+tcp://127.0.0.1:5999", "--topics", "eps"], "usage: flatsat monitor ",
     "unrecognized arguments: --topics eps (did you mean '--topic'?)"),
])
def test_an_option_a_command_does_not_know_is_told_by_that_command(capsys: pytest.CaptureFixture[str],
                                                                   argv: list[str], usage: str, says: str) -> None:
    """The command's usage (its options), not flatsat's top-level one, and the option meant."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and says in err


def test_a_recording_cut_inside_its_header_is_called_that(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copy cut at 100 bytes is a recording cut off, not 'not a flatsat recording'; a file that is not one at
    all still is not."""
    assert main(["run", "--mode", "afap", "--duration", "1m", "--quiet", "--record", str(tmp_path / "r.rec")]) == 0
    cut = tmp_path / "cut.rec"
    cut.write_bytes((tmp_path / "r.rec").read_bytes()[:100])
    other = tmp_path / "other.rec"
    other.write_text("hello\n")
    capsys.readouterr()
    assert main(["export", str(cut), "--csv", str(tmp_path / "c.csv")]) == 2
    assert f"{cut}: a flatsat recording cut off inside its header (100 bytes)" in capsys.readouterr().err
    assert main(["export", str(other), "--csv", str(tmp_path / "c.csv")]) == 2
    assert f"{other}: not a flatsat recording" in capsys.readouterr().err

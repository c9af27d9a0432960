"""Output paths are checked before a command does its work: a bad --plot, --record, -o or --out is refused
with exit 2 and a message naming the option and what would do, not a traceback after a run of hours."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.cli import main


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    return tmp_path


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--duration", "1d", "--mode", "afap", "--quiet", "--plot", "p.txt"],
     "flatsat run: --plot p.txt: cannot write a .txt image; give a file ending in one of"),
    (["run", "--duration", "1d", "--mode", "afap", "--quiet", "--record", "."],
     "flatsat run: --record .: is a folder; give a file name (e.g. run.rec)"),
    (["run", "--duration", "1d", "--mode", "afap", "--quiet", "--record", "afile/run.rec"],
     "flatsat run: --record afile/run.rec: cannot be written"),
    (["demo", "--plot", "d.doc"], "flatsat demo: --plot d.doc: cannot write a .doc image"),
    (["orbit", "--alt-km", "650", "--ltan", "18:00", "--plot", "o.txt"],
     "flatsat orbit: error: --plot o.txt: cannot write a .txt image"),
    (["campaign", "battery-sweep", "--out", "afile"],
     "flatsat campaign: --out afile: is a file; give a folder"),
    (["campaign", "battery-sweep", "--out", "afile/results"],
     "flatsat campaign: --out afile/results: cannot be written"),
])
def test_a_bad_output_path_is_refused_before_the_work(here: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str], says: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert sorted(p.name for p in here.iterdir()) == ["afile"]  # nothing run, nothing left behind


def test_plot_refuses_a_bad_output_before_reading_the_recording(here: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--duration", "2m", "--mode", "afap", "--quiet", "--record", "r.rec"]) == 0
    assert main(["plot", "r.rec", "-o", "x.txt"]) == 2
    assert "flatsat plot: -o x.txt: cannot write a .txt image; give a file ending in one of" in capsys.readouterr().err
    assert main(["plot", "r.rec", "-o", "sub/x.svg"]) == 0
    assert (here / "sub" / "x.svg").stat().st_size > 0


def test_run_says_it_replaces_a_recording(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--duration", "1m", "--mode", "afap", "--quiet", "--record", "r.rec"]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["run", "--duration", "1m", "--mode", "afap", "--quiet", "--record", "r.rec"]) == 0
    assert "flatsat run: --record r.rec: replacing the file there (" in capsys.readouterr().err

"""What a plain `pip install .` ships: every package, the configs as data, and a CLI that finds them by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from emulator import shipped
from emulator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_python_package_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for top in ("emulator", "firmware_stubs", "hil") for p in (ROOT / top).rglob("__init__.py")}
    assert not on_disk - listed, f"packages missing from pyproject.toml [tool.setuptools] packages: {on_disk - listed}"


def test_every_config_folder_ships() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    folders = {p.parent.relative_to(ROOT / "configs").parts for p in (ROOT / "configs").rglob("*.toml")}
    for parts in folders:
        assert ".".join(("emulator.configs", *parts)) in data, f"configs/{'/'.join(parts)} is not package data"


def test_names_and_paths_resolve_and_a_typo_gets_a_suggestion(tmp_path: Path) -> None:
    assert shipped.resolve("suncatcher-proto", "satellite").name == "suncatcher-proto.toml"
    assert shipped.resolve("latchup.toml", "scenario").name == "latchup.toml"
    assert "battery-sweep" in shipped.names("campaign")
    mine = tmp_path / "mine.toml"
    mine.write_text("")
    assert shipped.resolve(str(mine), "satellite") == mine.resolve()
    assert shipped.resolve("mine.toml", "satellite", base_dir=tmp_path) == mine.resolve()
    with pytest.raises(ConfigError, match="scenario file 'latchpu' not found .did you mean 'latchup'") as err:
        shipped.resolve("latchpu", "scenario")
    assert "day-in-the-life" in str(err.value) and err.value.valid == shipped.names("scenario")


@pytest.mark.slow
def test_a_non_editable_install_runs_the_shipped_configs_by_name_from_anywhere(tmp_path: Path) -> None:
    """Build the wheel, install it (without deps) into a fresh venv, run the console script outside the checkout.

    The dependencies come from this interpreter's site-packages through a .pth path entry (not a site dir, so
    the editable install living there is not loaded): the flatsat code run is the wheel's.
    """
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("flatsat-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.run([str(bindir / "python"), "-c", code], check=True, capture_output=True,
                                  text=True).stdout.strip())
    (purelib / "flatsat_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bindir / "python"), "install", "-q", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    flatsat = shutil.which("flatsat", path=str(bindir))
    assert flatsat is not None

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([flatsat, *argv], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    where = subprocess.run([str(bindir / "python"), "-c", "import emulator; print(emulator.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(purelib) in where, f"the wheel's code should run, not the checkout's: {where}"
    out = run("run", "--config", "suncatcher-proto", "--mode", "afap", "--duration", "10m", "--quiet",
              "--board-url", "none", "--control-url", "none")
    assert out.returncode == 0, out.stderr
    out = run("test", "latchup", "--board", "python -m firmware_stubs.reference", "--record", str(tmp_path / "rec"),
              "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    out = run("run", "--config", "suncatcher-prot", "--duration", "1m")
    assert out.returncode == 2 and "did you mean 'suncatcher-proto'" in out.stderr

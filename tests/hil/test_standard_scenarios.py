"""The standard scenarios: the reference board passes every one; the naive board fails the ones it should,
each for its own reason. That proves the scenarios can fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hil.runner import run_scenario
from hil.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "configs" / "scenarios").glob("*.toml"))
REFERENCE = f"{sys.executable} -m firmware_stubs.reference"
NAIVE = f"{sys.executable} -m firmware_stubs.naive"

#: scenarios of a model no board drives (a cluster whose members all run the built-in policy): run without a board
MODEL_ONLY = {"cluster-rail-short"}
#: the board decides every 10 s turn from the newest sample of these (the requirements read the emulator's truth):
#: at 0.1 Hz each turn still starts from a fresh sample, and a day in lockstep costs a fifth of the wall time
BOARD_RATES_HZ = {"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.1,
                  "sim.clock": 0.0, "sim.links": 0.1}


def with_board(path: Path) -> Scenario:
    """The scenario as the suite runs it with a board process: board telemetry at the board's turn rate."""
    sc = load_scenario(path)
    sc.overrides["telemetry.rates_hz"] = BOARD_RATES_HZ
    return sc

#: scenario -> the requirement labels the naive board must fail (and no others)
NAIVE_MUST_FAIL = {
    "day-in-the-life": {"battery never above 45 degC"},
    "eclipse-depletion": {"bus never reaches the EPS safe threshold (7.2 V): no EPS load shed"},
    "hot-case": {"the board manages its heat: the die never reaches the GPU's own slowdown (87 degC)"},
    "saa-radiation-storm": {"every SDC in a result is detected within 2 min", "every hang (SEFI) is reset within 1 min",
                            "work goes on through the storm (at least 500 k units)"},
    "latchup": {"the accelerator is powered again within 2 min of the trip",
                "work resumes after the latch-up (at least 450 k units in 2 h; ~180 k are done before it)"},
    "rail-short": {"every time the payload rail latches off, the board resets it within 1 min",
                   "work resumes after the short (at least 450 k units in 2 h; ~270 k are done before it)"},
}


def test_every_standard_scenario_is_listed() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"day-in-the-life", "eclipse-depletion", "hot-case", "saa-radiation-storm", "latchup", "rail-short",
            "board-reboot", "cluster-rail-short"} <= names
    assert set(NAIVE_MUST_FAIL) <= names


@pytest.mark.slow
@pytest.mark.timeout(900)  # a simulated day with a board process in lockstep; minutes on a loaded 2-core machine
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_reference_board_passes(path: Path, tmp_path: Path) -> None:
    board = None if path.stem in MODEL_ONLY else REFERENCE
    sc = load_scenario(path) if board is None else with_board(path)
    result = await run_scenario(sc, board_cmd=board, board_url=None, seed=None, record_dir=tmp_path)
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert result.error is None, result.error
    assert not failed, failed
    assert result.recording is not None and result.recording.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted(NAIVE_MUST_FAIL))
async def test_naive_board_fails_for_the_right_reason(name: str, tmp_path: Path) -> None:
    path = ROOT / "configs" / "scenarios" / f"{name}.toml"
    result = await run_scenario(with_board(path), board_cmd=NAIVE, board_url=None, seed=None, record_dir=tmp_path)
    assert result.error is None, result.error
    failed = {v.label for v in result.verdicts if not v.passed}
    assert failed == NAIVE_MUST_FAIL[name], {v.label: v.reason for v in result.verdicts}

"""The pytest plugin, run inside pytester against the toy model (and the toy board process)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import toy_model

# pytester's in-process runs drop modules first imported inside them; numpy cannot be imported twice in
# one process, so everything the inner runs use is imported here, before them
import emulator.series
import emulator.transports.zmq
import hil.runner

pytest_plugins = ["pytester"]
_PRELOADED = (emulator.series, emulator.transports.zmq, hil.runner, toy_model)

TESTS_DIR = Path(__file__).resolve().parent.parent
TOY_BOARD = f"{sys.executable} {Path(__file__).with_name('toy_board.py')}"
DOCS = TESTS_DIR.parent / "docs" / "hil.md"

SAT_TESTS = '''
import pytest
from emulator.errors import CommandError, SimTimeoutError

async def test_faults_and_sim_time_waits(sat, hil_seed):
    assert hil_seed == 42
    fid = sat.inject("lamp.brownout", {"factor": 0.25}, duration_s=30)
    assert sat.signal("satellite.factor") == 0.25 and sat.truth("faults")[0]["fault_id"] == fid
    t = await sat.wait_for(lambda: sat.signal("satellite.factor") == 1.0, within_s=60)
    assert t == 30.0 and sat.t_s == 30.0
    with pytest.raises(SimTimeoutError):
        await sat.wait_for(lambda: False, within_s=3600)  # an hour of sim time, no real waiting
    assert sat.t_s == 3630.0
    with pytest.raises(CommandError):
        sat.inject("lamp.brownout", {"factor": 2})

def test_unknown_signals_name_the_close_ones(sat):
    with pytest.raises(Exception, match="satellite.energy_j"):
        sat.signal("satellite.energy")
'''


@pytest.fixture
def hil(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for var in ("HIL_CONFIG", "HIL_BOARD", "HIL_BOARD_URL", "HIL_MODE", "HIL_SEED", "HIL_RECORD"):
        monkeypatch.delenv(var, raising=False)
    pytester.syspathinsert(TESTS_DIR)  # toy_model
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_sat_fixture_injects_faults_and_waits_in_sim_time(hil: pytest.Pytester) -> None:
    hil.makepyfile(SAT_TESTS)
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "--hil-seed", "42")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["flatsat: hil seed 42 (reproduce with --hil-seed 42)*"])


def test_the_fixtures_work_in_pytest_asyncios_strict_mode(hil: pytest.Pytester) -> None:
    """pytest-asyncio's default mode runs only fixtures declared with its decorator and only marked tests."""
    hil.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")  # no asyncio_mode: strict
    hil.makepyfile('''
import pytest

@pytest.mark.asyncio
async def test_marked(sat):
    await sat.run_for(10)
    assert sat.t_s == 10.0

def test_sync(sat):
    assert sat.signal("satellite.factor") == 1.0

async def test_unmarked(sat):
    await sat.run_for(10)
''')
    result = hil.runpytest("--hil-config", "toy_model:Lamp")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([("test_unmarked is an async test but pytest-asyncio does not run it (its strict "
                                  "mode runs only marked tests): mark it @pytest.mark.asyncio, or set asyncio_mode = "
                                  "auto*")])


def test_without_pytest_asyncio_the_fixtures_say_what_to_install(hil: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hil.makepyfile("async def test_a(sat):\n    pass\n\ndef test_b(board):\n    pass\n")
    # looptime (a test extra) is a pytest-asyncio add-on and fails without it
    args = ("--hil-config", "toy_model:Lamp", "-p", "no:asyncio", "-p", "no:looptime")
    result = hil.runpytest(*args)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([("*run on asyncio and need the pytest-asyncio plugin, which is installed but "
                                  "disabled (-p no:asyncio?)")] * 2)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as if not installed
                        lambda name, *args: None if name == "pytest_asyncio" else find_spec(name, *args))
    result = hil.runpytest(*args)
    result.assert_outcomes(errors=2)
    # at least once per error (the short summary repeats them in full where pytest does not cut it, as under CI=1)
    result.stdout.fnmatch_lines([("*need pytest-asyncio, which is not installed: "
                                  "pip install 'flatsat[[]pytest]' (or pip install pytest-asyncio)")] * 2)  # [[] is a literal [


def test_options_come_from_cli_then_env_then_ini(hil: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    hil.makepyfile("def test_seed(hil_seed, request):\n"
                   "    print('SEED', hil_seed, request.config.stash[__import__('hil.plugin').plugin.SETTINGS_KEY]"
                   ".config)\n")
    hil.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nhil_seed = 5\nhil_config = from_ini:f\n")
    hil.runpytest("-s").stdout.fnmatch_lines(["*SEED 5 from_ini:f*"])
    monkeypatch.setenv("HIL_SEED", "6")
    monkeypatch.setenv("HIL_CONFIG", "from_env:f")
    hil.runpytest("-s").stdout.fnmatch_lines(["*SEED 6 from_env:f*"])
    hil.runpytest("-s", "--hil-seed", "7").stdout.fnmatch_lines(["*SEED 7 from_env:f*"])
    result = hil.runpytest("--hil-seed", "x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hil-seed*must be an integer*"])


def test_a_failure_reports_the_seed_and_how_to_reproduce(hil: pytest.Pytester) -> None:
    hil.makepyfile('''
async def test_lamp_never_gets_energy(sat):
    await sat.run_for(10)
    sat.inject("lamp.brownout", {"factor": 0.5})
    await sat.run_for(5)
    assert sat.signal("satellite.factor") == 1.0
''')
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "--hil-seed", "9")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- flatsat -*",
                                 ("seed 9; reproduce: pytest test_a_failure_reports_the_seed_and_how_to_reproduce.py"
                                  "::test_lamp_never_gets_energy --hil-config toy_model:Lamp --hil-seed 9"),
                                 "sim time 15 s", "last messages:", "*t=15.000 s control out truth.sample*"])


def test_the_board_fixture_runs_a_board_process_in_lockstep(hil: pytest.Pytester) -> None:
    hil.makepyfile('''
async def test_board_switches_the_lamp_on(sat, board, emulator):
    assert board.simulated and board.hello["name"] == "toy-lamp"
    assert emulator.run_config.sim.lockstep_source == "board"
    t = await sat.wait_for(lambda: sat.signal("satellite.energy_j") >= 100, within_s=120)
    assert t == 10.0  # on at t = 0 (the first tick), 10 W
    msg = await sat.expect_message("lamp.toggled", where={"on": False}, within_s=60)
    assert msg.t_ns == 31 * 10**9  # off at the tick at 30 s; the event follows one step later

async def test_kill_and_restart(sat, board):
    await sat.run_for(20)
    await board.restart()
    await sat.run_for(20)
    assert len(board.emu.hellos) == 2
''')
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "--hil-board", TOY_BOARD, "--hil-record", "rec")
    result.assert_outcomes(passed=2)
    assert len(list((hil.path / "rec").glob("*.rec"))) == 2


def test_after_the_test_kills_the_board_the_clock_goes_on_without_it(hil: pytest.Pytester) -> None:
    """As the scenario runner after a board_kill: nobody steps a killed board's lockstep clock, so the test's waits do
    (it used to wait 30 s of wall time for a board.step, then blame the board)."""
    hil.makepyfile('''
import time

async def test_kill_run_on_and_restart(sat, board, emulator):
    await sat.run_for(20)
    await board.kill()
    wall = time.monotonic()
    await sat.run_for(30)
    assert await sat.wait_for(lambda: sat.t_s >= 55, within_s=3600) == 55.0
    assert time.monotonic() - wall < 5
    await board.restart()
    # the new board steps the clock again from t = 55, not after the hour the wait_for let run
    assert emulator.clock.limit_ns <= 65 * 10**9
    await sat.expect_message("board.step", within_s=30)
    t = sat.t_s
    await sat.run_for(20)
    assert sat.t_s == t + 20 and len(board.emu.hellos) == 2
''')
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "--hil-board", TOY_BOARD)
    result.assert_outcomes(passed=1)


def test_a_board_process_that_dies_ends_the_wait_with_the_reason(hil: pytest.Pytester) -> None:
    hil.makepyfile('''
async def test_wait_long(sat, board):
    await sat.wait_for(lambda: False, within_s=3600)
''')
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "--hil-board", f"{TOY_BOARD} --crash-at 20")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([("*EmulatorError: the run has stopped: board process exited with code 3 at "
                                  "t=0:00:20 (20 s)*")])


def test_without_a_board_the_board_fixture_skips(hil: pytest.Pytester) -> None:
    hil.makepyfile("async def test_needs_board(board):\n    pass\n")
    result = hil.runpytest("--hil-config", "toy_model:Lamp", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no board: pass --hil-board CMD*"])


def test_a_conftest_hook_can_make_the_model(hil: pytest.Pytester) -> None:
    hil.makeconftest('''
from toy_model import Lamp

def pytest_hil_make_model(config, seed):
    lamp = Lamp()
    lamp.factor = seed / 100
    return lamp
''')
    hil.makepyfile("def test_hook(sat):\n    assert sat.signal('satellite.factor') == 0.33\n")
    hil.runpytest("--hil-seed", "33").assert_outcomes(passed=1)


def test_an_emulator_fixture_can_be_overridden_by_a_test_module(hil: pytest.Pytester) -> None:
    hil.makepyfile('''
import pytest
from toy_model import Lamp
from emulator.config import RunConfig, SimConfig
from hil.runner import HilEmulator

@pytest.fixture
async def emulator():
    async with HilEmulator(Lamp(), RunConfig(sim=SimConfig(step_s=5.0)), board_url=None, control_url=None,
                           record_path=None) as emu:
        yield emu

async def test_uses_my_emulator(sat):
    await sat.run_for(10)
    assert sat.signal("satellite.steps") == 2
''')
    hil.runpytest().assert_outcomes(passed=1)


def test_hil_config_may_be_a_cluster(hil: pytest.Pytester) -> None:
    """--hil-config goes through the one config loader: a cluster config gives the cluster model."""
    hil.makepyfile('''
async def test_cluster(sat, emulator):
    assert emulator.model.n == 5
    fid = sat.inject("eps.rail.short", {"sat": 3, "rail": "payload", "extra_a": 65.0}, duration_s=10)
    await sat.wait_for(lambda: sat.signal("satellite.power.rail_trips.payload.3") >= 4, within_s=60)
    assert sat.signal("satellite.power.rail_trips.payload.2") == 0 and fid > 0
''')
    # small-cluster.toml extends suncatcher-cluster, which extends suncatcher-proto
    result = hil.runpytest("--hil-config", str(Path(__file__).with_name("small-cluster.toml")), "--hil-seed", "3")
    result.assert_outcomes(passed=1)


def docs_example() -> str:
    """The python example of docs/hil.md's pytest section, as a reader copies it."""
    section = DOCS.read_text(encoding="utf-8").split("\n## pytest plugin\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, f"docs/hil.md's pytest section has {len(blocks)} python examples; this test runs one"
    return blocks[0]


def test_the_docs_example_passes_with_the_reference_board(hil: pytest.Pytester) -> None:
    """As a user runs it: the default config, the reference board, pytest-asyncio's default (strict) mode."""
    hil.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    hil.makepyfile(test_docs_example=docs_example())
    result = hil.runpytest("--hil-board", f"{sys.executable} -m firmware_stubs.reference")
    result.assert_outcomes(passed=1)

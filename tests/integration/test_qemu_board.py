"""Firmware in the loop: the C firmware built for a Cortex-M3 and run by QEMU passes the standard scenarios.

``make -C firmware_stubs/c lm3s6965`` builds the bare-metal image of the same portable core the host program runs
(targets/lm3s6965: vector table, start-up, linker script, UART0 receive interrupt into a ring buffer, SysTick,
watchdog); QEMU's ``lm3s6965evb`` machine (a TI Stellaris LM3S6965: 256 KiB flash, 64 KiB SRAM) runs it. The HIL
runner starts QEMU with ``-serial {pty}``: QEMU opens a pty by path, which the runner joins to the pty the emulator
listens on (``serial://...?baud=921600&pace=1``), and ``board_restart`` restarts QEMU on the same line.

Time budget (QEMU delivers received bytes one at a time, ~20-30 us of host CPU each): the standard scenarios run
here cut to the part that makes their point (the fault and the response window; see ``CUTS``), two at a time,
with board telemetry at one sample per 20 s control period. ``FLATSAT_QEMU_FULL=1`` runs every standard scenario in
full, with both images (test_every_standard_scenario_in_full; 23 min on a loaded 2-core machine).

The tools come from Debian (``.ci/run`` installs them); without them these tests skip with the install line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from scenario_tools import cut, one_sample_per_turn

from emulator.protocol.system import system_topics
from emulator.recorder import read_recording, wall_path
from hil.runner import ScenarioResult, run_scenario
from hil.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_stubs" / "c"
SCENARIOS = ROOT / "configs" / "scenarios"
INSTALL = "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
MACHINE = "lm3s6965evb"
FLASH_BYTES = 256 * 1024
RAM_BYTES = 64 * 1024
#: the image's control period (targets/lm3s6965/port.c FSB_PERIOD_S)
PERIOD_S = 20.0
#: the 6U CubeSat's 2S bus (configs/cubesat-6u-jetson.toml: EPS safe 7.2 V, normal 7.4 V): the image for it sheds
#: 0.1 V above the EPS's own shed, as the default image does 0.4 V above it on the 8S bus
CUBESAT_6U_DEFS = "-DFSB_BUS_OFF_V=7.3 -DFSB_BUS_ON_V=7.55"
#: scenario runs at once (QEMU and the emulator each want a core)
PARALLEL = 2
#: wall-clock backstop per scenario run
RUN_LIMIT_S = 600.0


def _load_naive_failures() -> dict[str, set[str]]:
    """The requirement labels the naive Python board fails, from tests/hil/test_standard_scenarios.py (loaded by
    path: tests/hil would shadow the hil package)."""
    spec = importlib.util.spec_from_file_location("standard_scenarios", ROOT / "tests" / "hil" /
                                                  "test_standard_scenarios.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NAIVE_MUST_FAIL


NAIVE_MUST_FAIL = _load_naive_failures()


@dataclass(frozen=True)
class Cut:
    """A standard scenario run to ``duration_s``, checked on the requirements in ``keep`` (the others need the full
    duration: totals of work). The naive image must fail the kept ones the naive Python board fails."""

    name: str
    duration_s: float
    keep: tuple[str, ...]
    image: str = "reference"


CUTS = (
    # the limiter latches at 30 min; powered again within 2 min
    Cut("latchup", 40 * 60, ("the accelerator is powered again within 2 min of the trip", "the chip is never damaged")),
    # the short at 45 min latches the rail; reset within 1 min
    Cut("rail-short", 50 * 60, ("every time the payload rail latches off, the board resets it within 1 min",
                                "the bus rides through the short")),
    # the SDC at 40m15s (caught within 2 min by the digest computed on the MCU), the hang at 1 h (reset in 1 min)
    Cut("saa-radiation-storm", 65 * 60, ("every SDC in a result is detected within 2 min",
                                         "every hang (SEFI) is reset within 1 min",
                                         "the storm did produce SDCs (the scenario can fail)")),
    # QEMU killed at 50 min and started again 2 min later on the same line
    Cut("board-reboot", 60 * 60, ("the board said hello twice (it really restarted)", "battery never below 60 %")),
    # the naive board takes the EPS into its safe shed at 1h23m; the firmware lowers the DVFS level as the charge
    # falls (and would shed its own load above the EPS's threshold), so the bus stays above it
    Cut("eclipse-depletion", 90 * 60, ("bus never reaches the EPS safe threshold (7.2 V): no EPS load shed",
                                       "battery never below 20 % state of charge"), image="cubesat-6u"),
)
#: the naive image on the cuts whose kept requirements the naive Python board fails
NAIVE_CUTS = tuple(c for c in CUTS if NAIVE_MUST_FAIL.get(c.name, set()) & set(c.keep))


def require_tools() -> None:
    missing = [t for t in ("make", "arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        text = f"{', '.join(missing)} not found: install the Cortex-M tool chain and QEMU with `{INSTALL}` (as root)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the QEMU tests (.ci/run installs the tools): {text}")
        pytest.skip(text)


@dataclass
class Image:
    elf: Path
    build_output: str

    @property
    def bin(self) -> Path:
        return self.elf.with_suffix(".bin")


def make_image(out: Path, target: str, defs: str = "") -> Image:
    cmd = ["make", "-C", str(C_DIR), f"BUILD={out}", target]
    if defs:
        cmd.append(f"BOARD_DEFS={defs}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0 and "nano.specs" in proc.stderr:
        require_tools()  # newlib missing
        text = f"newlib for arm-none-eabi not found: install it with `{INSTALL}` (as root)"
        if os.environ.get("CI"):
            pytest.fail(text)
        pytest.skip(text)
    assert proc.returncode == 0, f"building {target} failed:\n{proc.stdout}\n{proc.stderr}"
    return Image(out / target / "flatsat_board.elf", proc.stdout)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    require_tools()
    out = tmp_path_factory.mktemp("lm3s6965")
    return {
        "reference": make_image(out / "reference", "lm3s6965"),
        "naive": make_image(out / "naive", "lm3s6965-naive"),
        "cubesat-6u": make_image(out / "cubesat-6u", "lm3s6965", CUBESAT_6U_DEFS),
        # a test build whose main loop stops at its 20th turn, once: the watchdog must reset it
        "stall": make_image(out / "stall", "lm3s6965", "-DFSB_TEST_STALL_AT_TURN=20"),
    }


def qemu_cmd(image: Image, log_uart: bool = True) -> str:
    """The board command: UART0 (the flatsat line) on the runner's pty; with ``log_uart`` UART1 (the firmware's
    log) on stdout, muxed with QEMU's monitor, which -nographic puts there anyway (never on the line)."""
    cmd = f"qemu-system-arm -M {MACHINE} -nographic -kernel {image.elf} -serial {{pty}}"
    return cmd + " -serial mon:stdio" if log_uart else cmd


async def run_all(jobs: Iterable[tuple[Scenario, str]], record_dir: Path,
                  limit_s: float = RUN_LIMIT_S) -> list[ScenarioResult]:
    """Run the scenarios, PARALLEL at a time, each in its own record directory; the results in the jobs' order.
    The longest start first (the gate lets tasks in in the order they were created), so the runs at once end
    closer together: 165 instead of 195 simulated minutes for CUTS on two lanes."""
    gate = asyncio.Semaphore(PARALLEL)
    todo = list(jobs)

    async def one(k: int, scenario: Scenario, board: str) -> ScenarioResult:
        async with gate, asyncio.timeout(limit_s):
            return await run_scenario(scenario, board_cmd=board, record_dir=record_dir / f"{k}-{scenario.name}",
                                      board_timeout_s=60.0)

    longest_first = sorted(range(len(todo)), key=lambda k: -todo[k][0].duration_s)
    tasks = {k: asyncio.ensure_future(one(k, *todo[k])) for k in longest_first}
    return list(await asyncio.gather(*(tasks[k] for k in range(len(todo)))))


def board_log(result: ScenarioResult) -> str:
    return result.board_log.read_text(errors="replace") if result.board_log is not None else ""


def last_stats(result: ScenarioResult) -> dict[str, int]:
    """The counters of the firmware's last whole ``stats:`` log line (it logs one every 60 turns, ending with
    ``t_s``; the line of the run's last turn may be cut off where QEMU was stopped)."""
    lines = [ln for ln in board_log(result).splitlines() if ln.startswith("stats:") and re.search(r" t_s=\d+$", ln)]
    assert lines, board_log(result)[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


def failures(result: ScenarioResult) -> dict[str, str]:
    return {v.label: v.reason for v in result.verdicts if not v.passed}


def cut_scenario(c: Cut) -> Scenario:
    return cut(load_scenario(SCENARIOS / f"{c.name}.toml"), duration_s=c.duration_s, keep=c.keep,
               rates_hz=one_sample_per_turn(PERIOD_S))


# -- the image -------------------------------------------------------------------------------------------------------
def test_image_is_built_strict_and_fits_256k_flash_64k_ram(images: dict[str, Image]) -> None:
    """-Os -Wall -Wextra -Werror, text/data/bss printed, inside the LM3S6965's flash and RAM; the vector table
    points the reset, SysTick, UART0 and watchdog vectors at the port's handlers."""
    for name, image in images.items():
        out = image.build_output
        assert "-Os" in out and "-Wall -Wextra -Werror" in out and "-mcpu=cortex-m3" in out, out
        sizes = re.search(r"text\s+data\s+bss\s+dec\s+hex\s+filename\s*\n\s*(\d+)\s+(\d+)\s+(\d+)", out)
        assert sizes is not None, out
        text, data, bss = (int(x) for x in sizes.groups())
        budget = re.search(r"flash (\d+) of (\d+) bytes .*RAM (\d+) of (\d+) bytes", out)
        assert budget is not None, out
        flash, flash_max, ram, ram_max = (int(x) for x in budget.groups())
        assert (flash, ram) == (text + data, data + bss)
        assert (flash_max, ram_max) == (FLASH_BYTES, RAM_BYTES)
        assert flash <= FLASH_BYTES and ram <= RAM_BYTES, (name, flash, ram)
    image = images["reference"]
    symbols = {}
    nm = subprocess.run(["arm-none-eabi-nm", str(image.elf)], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    vectors = struct.unpack("<64I", image.bin.read_bytes()[:256])
    assert vectors[0] == symbols["_stack_top"] and 0x2000_0000 < vectors[0] <= 0x2000_0000 + RAM_BYTES
    thumb = {name: symbols[name] | 1 for name in ("reset_handler", "systick_handler", "uart0_handler",
                                                  "watchdog_handler")}
    assert vectors[1] == thumb["reset_handler"]
    assert vectors[15] == thumb["systick_handler"]
    assert vectors[16 + 5] == thumb["uart0_handler"]  # LM3S6965 IRQ 5: UART0
    assert vectors[16 + 18] == thumb["watchdog_handler"]  # IRQ 18: watchdog
    # one core, two controllers: the naive image is the same core built -DFLATSAT_NAIVE
    assert b"c-stub-naive-lm3s6965" in images["naive"].bin.read_bytes()
    assert b"c-stub-naive" not in image.bin.read_bytes()
    assert "-DFLATSAT_NAIVE" in images["naive"].build_output


# -- the standard scenarios --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_standard_scenarios_pass_with_the_qemu_board(images: dict[str, Image], tmp_path: Path) -> None:
    """Each cut standard scenario passes with the firmware in QEMU; it checked every result on the MCU, and caught
    the storm's SDC there."""
    results = await run_all(((cut_scenario(c), qemu_cmd(images[c.image])) for c in CUTS), tmp_path)
    problems = {}
    for c, result in zip(CUTS, results, strict=True):
        if result.error is not None or failures(result):
            problems[c.name] = f"{result.error} {failures(result)}\n{board_log(result)[-2000:]}"
    assert not problems, problems
    by_name = {c.name: r for c, r in zip(CUTS, results, strict=True)}
    for name, result in by_name.items():
        stats = last_stats(result)
        assert stats["decode_errors"] == stats["bad_frames"] == stats["rx_overruns"] == 0, (name, stats)
        assert stats["jobs_checked"] == stats["jobs_done"], (name, stats)  # every result recomputed on the MCU
    # what the firmware did about each fault, in its own log (the stats line of the run's last turn may be cut
    # off): the SDC caught by the digest, the latched rail reset, the hang reset, and in the eclipse the
    # accelerator taken down the DVFS levels as the charge fell
    assert "job result corrupted (digest mismatch)" in board_log(by_name["saa-radiation-storm"])
    assert "rail latched off by its limiter: reset it" in board_log(by_name["latchup"])
    assert "rail latched off by its limiter: reset it" in board_log(by_name["rail-short"])
    assert "board hung: reset" in board_log(by_name["saa-radiation-storm"])
    assert board_log(by_name["eclipse-depletion"]).count("DVFS level changed") >= 2
    # the 6U image kept the bus up in eclipse and still worked
    assert by_name["eclipse-depletion"].series.get("satellite.accelerator.units_done")[-1] > 0
    # board-reboot: QEMU was killed and started again, and the firmware booted twice
    reboot_log = board_log(by_name["board-reboot"])
    assert len(re.findall(r"^--- start \d+: qemu-system-arm", reboot_log, flags=re.MULTILINE)) == 2
    assert reboot_log.count("flatsat firmware") == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_naive_image_fails_what_the_naive_python_board_fails(images: dict[str, Image], tmp_path: Path) -> None:
    """The naive build (-DFLATSAT_NAIVE) fails exactly the kept requirements the naive Python board fails."""
    # one naive image for every satellite: it never sheds, so the bus thresholds it was built with do not matter
    results = await run_all(((cut_scenario(c), qemu_cmd(images["naive"])) for c in NAIVE_CUTS), tmp_path)
    for c, result in zip(NAIVE_CUTS, results, strict=True):
        assert result.error is None, f"{c.name}: {result.error}\n{board_log(result)[-2000:]}"
        want = NAIVE_MUST_FAIL[c.name] & set(c.keep)
        assert set(failures(result)) == want, (c.name, failures(result))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_recordings_of_the_same_scenario_and_seed_are_byte_identical(images: dict[str, Image],
                                                                          tmp_path: Path) -> None:
    """Twice the latch-up (to 35 min) with the QEMU board, at once: the two main recordings are the same file,
    byte for byte. The ``.wall`` side files are not compared: they hold the topics whose figures depend on the wall
    clock (``sim.links``: drops and lags of the paced line; ``board.link``), which differ from run to run by design
    (docs/hil.md)."""
    scenario = cut(load_scenario(SCENARIOS / "latchup.toml"), duration_s=35 * 60.0,
                   rates_hz=one_sample_per_turn(PERIOD_S), keep=())
    first, second = await run_all([(scenario, qemu_cmd(images["reference"]))] * 2, tmp_path)
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.recording is not None and second.recording is not None
    assert first.recording.read_bytes() == second.recording.read_bytes()
    records = [r.raw for r in read_recording(first.recording)]
    assert len(records) > 1000
    assert any(b"eps.rail.reset" in raw for raw in records)  # the run did something worth repeating
    # the side file holds the wall-time topics and nothing else; the main recording none of them
    wall_topics = {spec.topic for spec in system_topics() if spec.wall_time}
    side_topics = {r.message.topic for r in read_recording(wall_path(first.recording))}
    assert side_topics and side_topics <= wall_topics, side_topics
    assert not wall_topics & {r.message.topic for r in read_recording(first.recording)}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_watchdog_resets_a_stalled_firmware_which_then_carries_on(images: dict[str, Image],
                                                                       tmp_path: Path) -> None:
    """A test image stops its main loop at its 20th turn: the watchdog interrupts after 4 s and resets the chip
    after 8 s; the firmware boots, says hello again and steps the rest of the run."""
    sc_path = tmp_path / "stall.toml"
    sc_path.write_text(
        '[scenario]\nname = "stall"\nconfig = "suncatcher-proto.toml"\nduration = "20m"\nseed = 5\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.hello"\nop = "=="\nvalue = 2\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.step"\nop = ">="\nvalue = 59\n')
    scenario = cut(load_scenario(sc_path), rates_hz=one_sample_per_turn(PERIOD_S))
    (result,) = await run_all([(scenario, qemu_cmd(images["stall"]))], tmp_path)
    log = board_log(result)
    assert result.error is None and not failures(result), f"{result.error} {failures(result)}\n{log[-3000:]}"
    assert "test: stalling the main loop" in log
    assert "watchdog: the main loop stopped; resetting" in log
    assert log.count("flatsat firmware") == 2  # booted again, by the watchdog (QEMU was not restarted)
    assert len(re.findall(r"^--- start \d+:", log, flags=re.MULTILINE)) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flatsat_test_runs_the_qemu_command_and_restarts_it_on_the_same_line(images: dict[str, Image],
                                                                            tmp_path: Path) -> None:
    """``flatsat test SCENARIO --board 'qemu-system-arm -M lm3s6965evb -nographic -kernel ELF -serial {pty}'``,
    the command as written (no log UART): a board_restart kills QEMU and starts it again on the same pty path.
    QEMU's monitor (-nographic puts it on stdio) ends up in the board log, never on the line: the emulator's link
    counted no bad frame."""
    from emulator.cli import main

    sc = tmp_path / "reboot.toml"
    sc.write_text(
        '[scenario]\nname = "qemu-reboot"\nconfig = "suncatcher-proto.toml"\nduration = "15m"\nseed = 3\n'
        '[overrides]\n"telemetry.rates_hz" = { "eps.telemetry" = 0.05, "accel.status" = 0.05, "adcs.sun" = 0.05, '
        '"thermal.telemetry" = 0.0, "sim.clock" = 0.0 }\n'
        '[[timeline]]\nat = "5m"\ndo = "board_restart"\ndown = "1m"\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.hello"\nop = "=="\nvalue = 2\n'
        '[[requirement]]\nkind = "count"\ntopic = "board.step"\nop = ">="\nvalue = 40\n')
    code = main(["test", str(sc), "--board", qemu_cmd(images["reference"], log_uart=False), "--record",
                 str(tmp_path / "rec"), "--quiet"])
    log = (tmp_path / "rec" / "qemu-reboot.board.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    starts = re.findall(r"^--- start (\d+): qemu-system-arm .* -serial (/dev/\S+)$", log, flags=re.MULTILINE)
    assert [n for n, _ in starts] == ["1", "2"] and starts[0][1] == starts[1][1], log[-3000:]
    assert "QEMU" in log and "monitor" in log  # the monitor's banner went to stdout
    links = [r.message.payload for r in read_recording(wall_path(tmp_path / "rec" / "qemu-reboot.rec"))
             if r.message.topic == "sim.links"]
    assert links and links[-1]["board"]["rx"] > 0
    assert links[-1]["board"]["bad_frames"] == links[-1]["board"]["decode_errors"] == 0, links[-1]["board"]


# -- every standard scenario in full (opt-in) ------------------------------------------------------------------------
FULL_SKIP = ("set FLATSAT_QEMU_FULL=1 to run every standard scenario in full with the QEMU board (both images: "
             "23 min on a loaded 2-core machine)")


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.skipif(not os.environ.get("FLATSAT_QEMU_FULL"), reason=FULL_SKIP)
async def test_every_standard_scenario_in_full(images: dict[str, Image], tmp_path: Path) -> None:
    """Every configs/scenarios/*.toml as it is (bench setting: one telemetry sample per turn): the reference image
    passes all; the naive image fails exactly what the naive Python board fails."""
    names = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    jobs = []
    for name in names:
        scenario = cut(load_scenario(SCENARIOS / f"{name}.toml"), rates_hz=one_sample_per_turn(PERIOD_S))
        good = images["cubesat-6u"] if name == "eclipse-depletion" else images["reference"]
        jobs.append((scenario, qemu_cmd(good)))
        if name in NAIVE_MUST_FAIL:
            jobs.append((scenario, qemu_cmd(images["naive"])))
    results = await run_all(jobs, tmp_path, limit_s=2 * 3600.0)
    problems = {}
    for (scenario, board), result in zip(jobs, results, strict=True):
        naive = "naive" in board
        want = NAIVE_MUST_FAIL[scenario.name] if naive else set()
        if result.error is not None or set(failures(result)) != want:
            problems[f"{scenario.name} ({'naive' if naive else 'reference'})"] = (result.error, failures(result))
    assert not problems, problems

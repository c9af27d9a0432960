"""The reference board on a noisy serial line: BER 1e-4 both ways for two hours of sim time, one process throughout.

The board runs as the HIL runner runs a serial board: a command with ``{fd}`` gets the master of a pty pair (here
``--url serial+fd://{fd}``), the emulator opens the slave (``serial://...?baud=921600&pace=1``) and, with
``line_options``, injects bit errors at 1e-4 into what it sends and what it reads (docs/transports.md, *Injected
noise*): ~8 % of requests and replies and ~4 % of the ``sim.waiting`` events are lost. The scenario is
configs/scenarios/latchup.toml as it is (the reference board passes it on a clean line: test_standard_scenarios),
with one bench setting: telemetry at 0.1 Hz, as in the C stub's runs, so the paced line carries two hours in
seconds. Wall-clock limits are safety nets only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from scenario_tools import cut

from emulator.clock import NS_PER_S
from emulator.protocol.envelope import Message
from emulator.reference_policy import REFERENCE
from hil.runner import ScenarioRun
from hil.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
PERIOD_S = REFERENCE.period_s  #: the reference board's control period (the one reference policy)
#: bit errors both ways; pace=0: what is tested is what the line loses, not its rate (paced, the same run takes
#: ~1.5x the wall time)
LINE = "ber=1e-4&ber_seed=11&pace=0"
#: a reply comes within a few ms on this line: a short time-out costs a ping when it is wrong, never a repeat
BOARD = (f"{sys.executable} -m firmware_stubs.reference --url serial+fd://{{fd}}?baud=921600 --timeout 0.02 "
         "--resync-after 0.1")


def summary(log: str) -> dict[str, int]:
    """The stub's last line: 'reference: N actions, ...; link: 3 timeouts, ...; line: 5 bad frames, ...'."""
    last = [line for line in log.splitlines() if line.startswith("reference: ")]
    assert last, f"no summary line: the board did not end through its own end\n{log[-3000:]}"
    return {k.replace(" ", "_"): int(v) for v, k in re.findall(r"(\d+) ([a-z][a-z ]*?)(?=,|;|$)", last[-1])}


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_reference_board_survives_ber_1e_4_both_ways_and_still_passes_latchup(tmp_path: Path) -> None:
    # to 1 h: the trip at 30 min and the recovery, with the two requirements about them
    scenario = cut(load_scenario(ROOT / "configs" / "scenarios" / "latchup.toml"), duration_s=3600.0,
                   keep=["the accelerator is powered again within 2 min of the trip", "the chip is never damaged"],
                   rates_hz={"eps.telemetry": 0.1, "accel.status": 0.1, "adcs.sun": 0.1, "thermal.telemetry": 0.0,
                             "sim.clock": 0.0, "sim.links": 0.1})
    run = ScenarioRun(scenario, board_cmd=BOARD, record_dir=tmp_path, line_options=LINE)
    assert run.pty is not None and "ber=0.0001" in run.pty.url and "pace=0" in run.pty.url
    steps_at: list[int] = []  # sim time of every board.step the emulator carried out
    seen: dict[str, int] = {}

    def hook(t_ns: int, plane: str, direction: str, msg: Message) -> None:
        if plane == "board" and direction == "in":
            seen[msg.topic] = seen.get(msg.topic, 0) + 1
            if msg.topic == "board.step":
                steps_at.append(t_ns)

    run.emu.message_hooks.append(hook)
    result = await run.run()
    assert result.board_log is not None
    log = result.board_log.read_text(errors="replace")

    # it ran throughout: one process, never exited (the runner stopped it at the end, and then it said its summary)
    assert result.error is None, f"{result.error}\n{log[-3000:]}"
    assert len(re.findall(r"^--- start ", log, flags=re.MULTILINE)) == 1, log[-3000:]
    counts = summary(log)
    # it stayed in step: sim time reached the end, and every turn (each 20 s waiting point) was stepped exactly
    # once: a lost step reply was never answered by a second step, a lost sim.waiting never skipped a turn
    assert result.t_end_s == scenario.duration_s == 3600.0
    turns = [k * round(PERIOD_S * NS_PER_S) for k in range(round(scenario.duration_s / PERIOD_S))]
    assert steps_at[: len(turns)] == turns, [t / NS_PER_S for t in steps_at][:50]
    assert steps_at[len(turns):] in ([], [round(scenario.duration_s * NS_PER_S)])
    # and it passed the scenario
    failed = [f"{v.label}: {v.reason}" for v in result.verdicts if not v.passed]
    assert not failed, f"{failed}\n{log[-3000:]}"
    assert len(result.verdicts) == len(scenario.requirements) == 2

    # the line really was bad, both ways, and the board survived it by the means it claims
    stats: Any = run.emu.board_link.stats
    assert stats.bad_frames >= 50, stats  # board -> emulator frames dropped by the emulator's CRC
    assert counts["bad_frames"] >= 50, counts  # emulator -> board frames dropped by the board's CRC
    assert counts["decode_errors"] == stats.decode_errors == 0
    assert counts["timeouts"] >= 50 and counts["retries"] >= 5, counts
    # the emulator's board.hello reply promises a duplicate window: the board repeats every request (steps and
    # job submissions too) and gives none up; a repeat of a request that had run is answered from the cache
    assert counts["lost"] == 0 and run.emu.stats.duplicates >= 5, (counts, run.emu.stats.duplicates)
    assert counts["resyncs"] >= 3, counts
    assert counts["reconnects"] == counts["rehellos"] == 0, counts
    assert seen["ping"] >= counts["resyncs"], seen  # each resync asked the clock

"""The board agent against the real emulator in external mode: power into the truth, latch-up, SDC, hang, reboot,
MBU and throttle, in process (lockstep driven by the agent) and as a subprocess over ZeroMQ."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.config import load_config
from emulator.recorder import read_recording
from emulator.runtime import Emulator
from firmware_stubs.agent import Agent, AgentOptions, run_agent
from firmware_stubs.agent.sensors import SensorOptions
from firmware_stubs.base import RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "cubesat-6u-jetson-external.toml"
#: wall-clock safety net only (nothing asserts on timing)
WALL_GUARD_S = 30.0
#: sim-time bound of every wait: the agent steps ~1 s of sim time per turn, several hundred turns per wall second
WITHIN_S = 20_000.0
#: the fake INA3221: VDD_IN 5.000 V x 1.200 A = 6.0 W (the board input the agent must pick)
VDD_IN_MV, VDD_IN_MA = 5000, 1200
VDD_IN_W = VDD_IN_MV / 1e3 * VDD_IN_MA / 1e3
CPU_MAX_KHZ = 1510400
POWER_TOL_W = 1e-9


def fake_sysfs(root: Path) -> Path:
    """An Orin-Nano-like tree: one INA3221 (three rails, V and I only), two thermal zones, four CPUs."""
    hw = root / "class" / "hwmon" / "hwmon1"
    hw.mkdir(parents=True)
    (hw / "name").write_text("ina3221\n")
    for k, (label, mv, ma) in enumerate((("VDD_IN", VDD_IN_MV, VDD_IN_MA), ("VDD_CPU_GPU_CV", 5000, 400),
                                          ("VDD_SOC", 5000, 300)), start=1):
        (hw / f"in{k}_label").write_text(label + "\n")
        (hw / f"in{k}_input").write_text(f"{mv}\n")
        (hw / f"curr{k}_input").write_text(f"{ma}\n")
    for i, (kind, mdeg) in enumerate((("cpu-thermal", 45500), ("gpu-thermal", 47250))):
        z = root / "class" / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(f"{mdeg}\n")
    for c in range(4):
        cf = root / "devices" / "system" / "cpu" / f"cpu{c}" / "cpufreq"
        cf.mkdir(parents=True)
        for f, v in (("scaling_cur_freq", CPU_MAX_KHZ), ("scaling_max_freq", CPU_MAX_KHZ),
                     ("cpuinfo_max_freq", CPU_MAX_KHZ), ("cpuinfo_min_freq", 115200),
                     ("scaling_governor", "schedutil")):
            (cf / f).write_text(f"{v}\n")
    return root


def agent_options(sysfs: Path, **more: Any) -> AgentOptions:
    # small matrices and short windows: a job takes milliseconds, so effects are met within a few turns
    base: dict[str, Any] = {"name": "bench-board", "matrix_dim": 32, "batches": 2, "result_dim": 16,
                            "watchdog_s": 1.0, "min_window_s": 0.02,
                            "sensors": SensorOptions(sysfs_root=str(sysfs), nvidia_smi=False, tegrastats=False)}
    base.update(more)
    return AgentOptions(**base)


@contextlib.asynccontextmanager
async def emulator_and_agent(tmp_path: Path, overrides: dict[str, Any] | None = None, *, agent_url: str | None = None,
                             policy: RetryPolicy | None = None, wall_guard_s: float = WALL_GUARD_S,
                             **agent_opts: Any) -> AsyncIterator[tuple[Emulator, Agent]]:
    cfg = load_config(CONFIG, {"sim.mode": "lockstep", "sim.lockstep_source": "board",
                               "links.board": f"loop://agent-{tmp_path.name}", "links.control": None,
                               **(overrides or {})})
    async with Emulator.from_config(cfg) as emu:
        agent = Agent(agent_options(fake_sysfs(tmp_path / "sys"), **agent_opts))
        task = asyncio.create_task(run_agent(agent, agent_url or emu.board_url, policy=policy))
        try:
            async with asyncio.timeout(wall_guard_s):
                yield emu, agent
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # the agent always shuts its workload down
            assert agent.workload.state == "stopped"
            assert not agent.workload._thread.is_alive()  # type: ignore[attr-defined]


def acc(emu: Emulator) -> dict[str, Any]:
    return emu.model.truth()["accelerator"]


def handled(emu: Emulator, kind: str) -> int:
    return acc(emu)["radiation"]["counts"][kind]["handled"]


async def until(emu: Emulator, pred: Callable[[], bool], what: str) -> None:
    await emu.wait_for(pred, within_s=WITHIN_S, what=what)


async def test_power_latchup_sdc_and_hang_follow_the_contract(tmp_path: Path) -> None:
    async with emulator_and_agent(tmp_path) as (emu, agent):
        # -- the measured power is the emulator's load ---------------------------------------------------------
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy") and agent.last_report is not None,
                    "first report")
        await emu.run_for(3)
        truth = acc(emu)
        assert agent.last_report["power_w"] == pytest.approx(VDD_IN_W, abs=POWER_TOL_W)
        assert truth["external"]["power_w"] == pytest.approx(VDD_IN_W, abs=POWER_TOL_W)
        assert truth["load_w"] == pytest.approx(VDD_IN_W, abs=POWER_TOL_W)
        assert agent.last_report["die_temp_degc"] == pytest.approx(47.25)   # hottest die zone (gpu-thermal)
        assert agent.last_report["clock_mhz"] == pytest.approx(CPU_MAX_KHZ / 1e3)

        # -- SDC: one bit flipped, caught by the agent's checker, verdict with the effect id -------------------
        emu.control("fault.inject", {"name": "radiation.sdc", "params": {}})
        await until(emu, lambda: handled(emu, "sdc") == 1, "sdc handled")
        assert acc(emu)["verdicts"]["true_positive"] == 1
        assert acc(emu)["verdicts"]["false_alarm"] == 0
        assert agent.stats["sdc_detected"] == 1
        assert acc(emu)["radiation"]["recent"][-1]["how"] == "verdict"

        # -- latch-up: the limiter cuts the rail, the agent stops; the retry powers it, the agent cold-boots --
        boots, refused = agent.stats["boots"], agent.stats["reports_refused"]
        emu.control("fault.inject", {"name": "radiation.sel", "params": {}})
        await until(emu, lambda: handled(emu, "sel") == 1, "latch-up cut")
        assert [e for e in acc(emu)["radiation"]["recent"] if e["kind"] == "sel"][-1]["how"] == "rail_cut"
        await until(emu, lambda: agent.stats["power_offs"] >= 1, "agent saw the power cut")
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "board back after the cut")
        assert agent.stats["boots"] == boots + 1 and agent.powered
        assert agent.stats["reports_refused"] == refused     # it never reported into an unpowered rail
        assert any("latchup" in text and "stopped" in text for _, text in agent.log.actions)

        # -- hang: the workload freezes, the agent's watchdog resets the board ---------------------------------
        emu.control("fault.inject", {"name": "radiation.sefi", "params": {}})
        await until(emu, lambda: handled(emu, "sefi") == 1, "hang reset")
        assert [e for e in acc(emu)["radiation"]["recent"] if e["kind"] == "sefi"][-1]["how"] == "reset"
        assert agent.stats["resets"] == 1
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "board back after the reset")
        assert acc(emu)["radiation"]["unhandled"] == []
        assert acc(emu)["rejected_commands"] == 0


async def test_reboot_and_mbu_are_acknowledged(tmp_path: Path) -> None:
    async with emulator_and_agent(tmp_path, {"radiation.sefi_reboot_fraction": 1.0}) as (emu, agent):
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "first report")
        boots = agent.workload.boots

        def acked() -> list[str]:
            return [text for _, text in agent.log.actions if text.startswith("acknowledged effects")]

        emu.control("fault.inject", {"name": "radiation.sefi", "params": {}})
        await until(emu, lambda: len(acked()) == 1, "reboot acknowledged")
        assert agent.workload.boots == boots + 1           # the workload restarted as from a cold boot
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "the acknowledging report ends booting")
        emu.control("fault.inject", {"name": "radiation.mbu", "params": {}})
        await until(emu, lambda: handled(emu, "mbu") == 1, "mbu acknowledged")
        mbu = [e for e in acc(emu)["radiation"]["recent"] if e["kind"] == "mbu"][-1]
        assert mbu["how"] == "acked"
        assert len(acked()) == 2
        # every acknowledgement named a pending effect (an unknown id would have been refused)
        assert acc(emu)["rejected_commands"] == 0 and agent.stats["reports_refused"] == 0
        assert acc(emu)["radiation"]["unhandled"] == []


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_agent_rides_out_a_noisy_serial_line(tmp_path: Path) -> None:
    """BER 1e-4 both ways on a pty (the emulator injects it, docs/transports.md): reboots are still acknowledged,
    the clock keeps moving under the agent's steps, and it counts what the line cost it."""
    master, slave = os.openpty()
    tty.setraw(slave)
    line = f"serial://{os.ttyname(slave)}?baud=921600&ber=1e-4&ber_seed=4"
    policy = RetryPolicy(timeout_s=0.05, resync_after_s=0.2)  # replies take milliseconds on a pty
    try:
        async with emulator_and_agent(tmp_path, {"radiation.sefi_reboot_fraction": 1.0, "links.board": line},
                                      agent_url=f"serial+fd://{master}?baud=921600", policy=policy,
                                      wall_guard_s=240.0,  # ~20 s on a quiet machine; every lost frame costs wall time
                                      report_hz=0.2) as (emu, agent):  # a turn per 5 s of sim time
            await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "first report")
            for n in range(1, 4):
                emu.control("fault.inject", {"name": "radiation.sefi", "params": {}})
                await until(emu, lambda n=n: handled(emu, "sefi") == n, f"reboot {n} acknowledged")
            t_end = emu.clock.now_ns() + 600 * 10**9
            await until(emu, lambda: emu.clock.now_ns() >= t_end, "10 more minutes (120 turns)")
            bad_at_emulator = emu.board_link.stats.bad_frames
    finally:
        with contextlib.suppress(OSError):
            os.close(slave)
    assert acc(emu)["radiation"]["unhandled"] == []
    assert agent.stats["reports"] >= 100 and bad_at_emulator > 0
    assert agent.log.link["timeouts"] > 0 and agent.log.line["bad_frames"] > 0, (agent.log.link, agent.log.line)
    assert agent.log.link["reconnects"] == 0


async def test_latched_limiter_is_reset_when_the_agent_acts_as_the_obc(tmp_path: Path) -> None:
    # the limiter latches at the first trip (configs/scenarios/latchup.toml): someone must send eps.rail.reset
    latch = {"power.rails.payload.max_retries": 0}
    async with emulator_and_agent(tmp_path, latch, recover_rail="payload") as (emu, agent):
        await until(emu, lambda: acc(emu)["state"] in ("idle", "busy"), "first report")
        emu.control("fault.inject", {"name": "radiation.sel", "params": {}})
        await until(emu, lambda: handled(emu, "sel") == 1, "latch-up cut")
        await until(emu, lambda: agent.stats["rail_resets"] >= 1 and acc(emu)["state"] in ("idle", "busy"),
                    "rail reset and board back")
        assert agent.stats["power_offs"] == 1 and agent.stats["rail_resets"] == 1
        assert emu.model.truth()["power"]["rails"]["payload"]["latched"] is False


async def test_throttle_reaches_the_workload_and_cpufreq(tmp_path: Path) -> None:
    # thresholds below the 20 degC start: the hardware slowdown is in force from the first step
    hot = {"accelerator.sw_slowdown_degc": 5.0, "accelerator.hw_slowdown_degc": 6.0,
           "accelerator.shutdown_degc": 150.0, "accelerator.hbm_max_degc": 160.0}
    async with emulator_and_agent(tmp_path, hot) as (emu, agent):
        await until(emu, lambda: agent.throttle["level"] == "hardware" and agent.powered, "throttle event")
        assert agent.workload.duty == pytest.approx(0.5)       # hw_throttle_duty in the config
        mid_khz = round(1113.6 * 1e3)                          # sw_slowdown_level "mid" of the config's table
        for c in range(4):
            f = tmp_path / "sys" / "devices" / "system" / "cpu" / f"cpu{c}" / "cpufreq" / "scaling_max_freq"
            assert int(f.read_text()) == mid_khz
        await until(emu, lambda: acc(emu)["state"] == "throttled", "board throttled")
    # shutdown restores the clock cap found at start-up
    f = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu0" / "cpufreq" / "scaling_max_freq"
    assert int(f.read_text()) == CPU_MAX_KHZ


async def test_agent_subprocess_over_zmq_says_what_it_measures(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path / "sys")
    rec = tmp_path / "run.rec"
    cfg = load_config(CONFIG, {"sim.mode": "lockstep", "sim.lockstep_source": "board",
                               "links.board": "zmq+tcp://127.0.0.1:0", "links.control": None})
    async with Emulator.from_config(cfg, record_path=str(rec)) as emu:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "firmware_stubs.agent", "--url", emu.board_url, "--sysfs-root", str(sysfs),
            "--no-nvidia-smi", "--no-tegrastats", "--matrix-dim", "32", "--name", "jetson-bench",
            cwd=str(ROOT), stderr=subprocess.PIPE)
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                await until(emu, lambda: (acc(emu)["external"] or {}).get("power_w") is not None, "report")
                assert acc(emu)["load_w"] == pytest.approx(VDD_IN_W, abs=POWER_TOL_W)
        finally:
            if proc.returncode is None:
                proc.terminate()
            _, err = await proc.communicate()
    table = err.decode()
    assert "ina3221/VDD_IN" in table and "thermal_zone1:gpu-thermal" in table
    assert "power reported: MEASURED: ina3221/VDD_IN (board input)" in table
    assert "missing  RAPL" in table
    hello = next(r.message for r in read_recording(rec) if r.message.topic == "board.hello")
    caps = hello.payload["capabilities"]
    assert "power:measured:ina3221/VDD_IN" in caps and "clock_cap:cpufreq" in caps
    assert hello.payload["name"] == "jetson-bench"


def test_agent_without_any_power_source_refuses_to_guess(tmp_path: Path) -> None:
    empty = tmp_path / "sys"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "firmware_stubs.agent", "--url", "loop://none", "--sysfs-root",
                           str(empty), "--no-nvidia-smi", "--no-tegrastats"], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=WALL_GUARD_S, check=False)
    assert done.returncode == 2
    assert "--fallback-power-w" in done.stderr and "Traceback" not in done.stderr

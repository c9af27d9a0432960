"""The real satellite on the wire: a board process killed and restarted, garbage on the links, bad configs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.asyncio

from emulator.cli import main as flatsat
from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.errors import ConfigError
from emulator.runtime import Emulator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "suncatcher-proto.toml"
#: wall-clock safety net only: a fresh interpreter importing numpy/pyzmq on a loaded 2-core CI machine
WALL_GUARD_S = 60.0


def lockstep_config(**more):
    return load_config(CONFIG, {"sim.mode": "lockstep", "sim.lockstep_source": "board",
                                "links.board": "zmq+tcp://127.0.0.1:0", "links.control": "zmq+tcp://127.0.0.1:0",
                                **more})


async def spawn_board(url: str, kind: str = "reference") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", f"firmware_stubs.{kind}", "--url", url,
                                                cwd=str(ROOT), stderr=subprocess.DEVNULL)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_board_killed_and_restarted_while_the_emulator_runs() -> None:
    async with Emulator.from_config(lockstep_config()) as emu:
        first = await spawn_board(emu.board_url)
        second = None
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                await emu.wait_for(lambda: emu.clock.now_ns() >= 300 * NS_PER_S, within_s=600)
                done_before = emu.model.truth()["accelerator"]["jobs_done"]
                first.kill()
                await first.wait()
                t_kill = emu.clock.now_ns()
                # the run is still alive and answering while no board is attached
                status = emu.control("clock.status")
                assert status["t_ns"] == t_kill
                second = await spawn_board(emu.board_url)
                await emu.wait_for(lambda: emu.clock.now_ns() >= t_kill + 300 * NS_PER_S, within_s=900)
        finally:
            await stop(first)
            if second is not None:
                await stop(second)
        assert emu.stats.commands["board"] > 60
        assert emu.model.truth()["accelerator"]["jobs_done"] > done_before
        assert emu.stats.rejected["board"] == 0


async def test_garbage_on_zmq_gets_a_precise_error_and_the_run_goes_on() -> None:
    cfg = load_config(CONFIG, {"links.board": "zmq+tcp://127.0.0.1:0", "links.control": None})
    async with Emulator.from_config(cfg) as emu:
        cmd_port = int(emu.board_url.split("cmd_port=")[1].split("&")[0])
        ctx = zmq.asyncio.Context.instance()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://127.0.0.1:{cmd_port}")
        run = asyncio.create_task(emu.run_for(3600))
        try:
            async with asyncio.timeout(WALL_GUARD_S):
                replies = []
                for raw in (b"\xff\x00garbage", msgpack.packb([1, 2, 3]),
                            msgpack.packb({"v": 9, "topic": "x", "seq": 1, "t_ns": 0, "src": "", "payload": {}}),
                            msgpack.packb({"v": 1, "topic": "eps.rail.set", "seq": 5, "t_ns": 0, "src": "b",
                                           "payload": {"rail": "payloadd", "on": True}}),
                            msgpack.packb({"v": 1, "topic": "eps.rail.set", "seq": 6, "t_ns": 0, "src": "b",
                                           "payload": {"rail": "payload", "on": True}})):
                    await dealer.send(raw)
                    replies.append(msgpack.unpackb(await dealer.recv(), raw=False))
                await run
        finally:
            dealer.close()
            if not run.done():
                run.cancel()
    errors = [r["payload"].get("error", {}) for r in replies]
    assert [r["payload"]["ok"] for r in replies] == [False, False, False, False, True]
    assert errors[0]["code"] == "codec" and errors[1]["field"] == "envelope"
    assert errors[2]["field"] == "v" and errors[2]["valid"] == [1]
    assert errors[3]["field"] == "payload.rail" or "payload" in errors[3]["message"]
    assert replies[4]["payload"]["id"] == 6
    assert emu.clock.now_ns() == 3600 * NS_PER_S  # the run never stopped


def test_misspelt_config_key_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.read_text().replace("cell_capacity_ah", "cell_capacity_ahh", 1))
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "power.battery.cell_capacity_ahh" in str(exc.value)
    assert "did you mean 'cell_capacity_ah'" in str(exc.value)
    assert flatsat(["run", "--config", str(bad), "--duration", "10"]) == 2
    err = capsys.readouterr().err
    assert "cell_capacity_ahh" in err and "Traceback" not in err


def test_override_with_impossible_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert flatsat(["run", "--config", str(CONFIG), "--set", "power.battery.cell_capacity_ah=-3"]) == 2
    assert "power.battery.cell_capacity_ah" in capsys.readouterr().err


def test_flatsat_run_afap_writes_a_plot_and_a_recording(tmp_path: Path) -> None:
    png, rec = tmp_path / "run.png", tmp_path / "run.rec"
    rc = flatsat(["run", "--config", str(CONFIG), "--mode", "afap", "--duration", "2h", "--board-url", "none",
                  "--control-url", "none", "--record", str(rec), "--plot", str(png), "--quiet"])
    assert rc == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    from emulator.recorder import read_recording

    topics = {r.message.topic for r in read_recording(rec)}
    assert {"eps.telemetry", "thermal.telemetry", "accel.status", "sim.clock", "truth.sample"} <= topics

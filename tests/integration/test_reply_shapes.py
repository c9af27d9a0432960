"""Every command's reply data has the shape its catalogue entry declares (and docs/protocol.md shows).

The board-plane commands are also driven over the wire by test_documented_board.py against the documents;
here every command of both planes runs in-process and its ``data`` is validated against ``TopicSpec.reply``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.config import load_config
from emulator.protocol.catalogue import Kind, Plane
from emulator.protocol.envelope import Message
from emulator.runtime import Emulator

ROOT = Path(__file__).resolve().parents[2]


def _ok(emu: Emulator, topic: str, payload: dict[str, Any], plane: Plane) -> dict[str, Any]:
    reply = emu.handle_request(Message(topic, payload), plane)
    assert reply.payload["ok"], (topic, reply.payload)
    spec = emu.catalogue.get(topic)
    assert spec.reply is not None, f"{topic} declares no reply data"
    spec.reply.model_validate(reply.payload["data"])  # strict: a missing, extra or mistyped field raises
    return reply.payload["data"]


async def test_every_control_command_reply_matches_its_declared_shape() -> None:
    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml", {"sim.mode": "lockstep"})
    c = Plane.CONTROL
    async with Emulator.from_config(cfg, board_url=None, control_url=None, record_path=None) as emu:
        sent = set()

        def ok(topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
            sent.add(topic)
            return _ok(emu, topic, payload or {}, c)

        ok("clock.status")
        ok("clock.step", {"duration_s": 10})  # an int in a float field is accepted (docs section 2)
        await emu.run_for(10)
        ok("clock.run_until", {"t_s": 20.0})
        ok("clock.pause")
        ok("clock.set_mode", {"mode": "scaled", "speed": 10.0})
        ok("clock.set_speed", {"speed": 20.0})
        ok("clock.resume")
        ok("truth.get")
        faults = ok("fault.list")["faults"]
        assert faults and all(f["params"]["type"] == "object" for f in faults)
        fid = ok("fault.inject", {"name": "radiation.scale", "params": {"factor": 2.0}, "duration_s": 60.0})
        assert ok("truth.get")["faults"][0]["fault_id"] == fid["fault_id"]
        ok("fault.clear", {"fault_id": fid["fault_id"]})
        ok("stats.get")
        rail = ok("board.command", {"topic": "eps.rail.set", "payload": {"rail": "payload", "on": True}})
        assert rail["topic"] == "eps.rail.set"
        ahead = ok("orbit.predict", {"duration_s": 6000.0, "step_s": 60.0})
        assert len(ahead["track"]["t_ns"]) == 101 and ahead["eclipses"] is not None
        ok("sim.stop", {"reason": "test"})
    every = {s.topic for s in emu.catalogue.topics(plane=c, kind=Kind.COMMAND)}
    # telemetry.feed sends to the peer that asked: test_telemetry_feed.py checks its replies over the wire
    assert every - {"telemetry.feed"} == sent


async def test_every_board_command_reply_matches_its_declared_shape() -> None:
    cfg = load_config(ROOT / "configs" / "suncatcher-proto.toml", {"sim.mode": "lockstep",
                                                                  "sim.lockstep_source": "board"})
    b = Plane.BOARD
    async with Emulator.from_config(cfg, board_url=None, control_url=None, record_path=None) as emu:
        sent = set()

        def ok(topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
            sent.add(topic)
            return _ok(emu, topic, payload or {}, b)

        hello = ok("board.hello", {"name": "b"})
        assert hello["epoch_utc"].endswith("Z") and hello["decimation"] == 1.0
        assert set(hello["rates_hz"]) >= {"eps.telemetry", "accel.status", "sim.clock"}
        ok("board.step", {"duration_s": 60})
        await emu.run(60)
        ok("ping")
        ok("board.link", {"rtt_p50_ms": 1.0, "rtt_p99_ms": 2.0, "rtt_max_ms": 3.0, "requests": 1, "lag_s": 0.0})
        ok("eps.rail.set", {"rail": "payload", "on": True})
        ok("eps.rail.reset", {"rail": "payload"})
        assert set(ok("eps.shed.set")["thresholds_v"]) == {"full_v", "normal_v", "safe_v", "critical_v", "hw_off_v",
                                                            "hw_on_v"}
        ok("thermal.heater.set", {"heater": "battery_heater", "mode": "on"})
        ok("accel.dvfs.set", {"level": "mid"})
        job = ok("accel.job.submit", {"kind": "inference", "size": 1})
        ok("board.step", {"duration_s": 60})
        await emu.run(60)
        ok("accel.job.verdict", {"id": job["id"], "ok": True})
        second = ok("accel.job.submit", {"kind": "training", "size": 1000})
        ok("accel.job.cancel", {"id": second["id"]})
        ok("accel.reset")
    every = {s.topic for s in emu.catalogue.topics(plane=b, kind=Kind.COMMAND)}
    assert every - sent == {"accel.report"}  # external mode only: driven in test_documented_board.py

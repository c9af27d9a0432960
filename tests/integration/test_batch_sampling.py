"""A batched clock samples the telemetry due between the steps of a batch and publishes it after the batch: the
messages, their order, times, sequence numbers and readings are those of one step at a time, byte for byte."""

from __future__ import annotations

import random
from typing import Any

import pytest
from toy_model import Lamp

from emulator import runtime
from emulator.clock import VirtualWall
from emulator.config import RunConfig, SimConfig, load_config
from emulator.protocol.catalogue import Plane
from emulator.protocol.envelope import Message
from emulator.protocol.templates import PayloadTemplate
from emulator.runtime import Emulator


class _BusyWall(VirtualWall):
    """Every look at the wall clock finds 1 us more gone: the afap clock sizes its batches (steps per yield) as on
    a real machine (a wall that never moves keeps them at one step)."""

    def now_ns(self) -> int:
        self._now_ns += 1_000
        return self._now_ns


def _count_calls(obj: Any, name: str) -> list[int]:
    """Wrap ``obj.name`` (a bound method) so that its calls are counted; returns the one-item counter."""
    calls = [0]
    method = getattr(obj, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return method(*args, **kwargs)

    setattr(obj, name, counting)
    return calls


RATES_HZ = {"eps.telemetry": 1.0, "thermal.telemetry": 0.5, "adcs.sun": 0.3, "accel.status": 1.0, "sim.clock": 1.0,
            "sim.links": 0.2}
#: every topic at one rate, in phase: a batch samples them all at the same steps (Emulator._step_sampled_together)
SAME_RATES_HZ = {"eps.telemetry": 0.5, "thermal.telemetry": 0.5, "adcs.sun": 0.5, "accel.status": 0.5,
                 "sim.clock": 0.5, "sim.links": 0.5}


async def _record(path, *, mode: str, rates_hz: dict[str, float]) -> tuple[bytes, int, int]:
    """A run of the shipped proto config with faults, commands and a timed fault, recorded (the main file: what
    depends on the wall clock goes to the side file); the batches that sampled between their steps, and those of
    them that sampled every topic at the same steps."""
    overrides = {"sim.mode": mode, "sim.seed": 5, "telemetry.truth_rate_hz": 0.5, "sim.lockstep_source": "control"}
    if rates_hz:
        overrides["telemetry.rates_hz"] = rates_hz
    cfg = load_config("suncatcher-proto", overrides)
    async with Emulator.from_config(cfg, wall=_BusyWall(), board_url=None, control_url=None,
                                    record_path=str(path)) as emu:
        sampled = _count_calls(emu.model, "step_sampled")
        together = _count_calls(emu, "_step_sampled_together")
        await emu.run_for(300)
        emu.control("fault.inject", {"name": "sensor.stuck", "params": {"channel": "eps.bus_v"}})
        emu.control("fault.inject", {"name": "sensor.noisy", "params": {"channel": "thermal.battery",
                                                                        "factor": 4.0}, "duration_s": 120})
        await emu.run_for(200)
        emu.control("fault.inject", {"name": "eps.rail.short", "params": {"rail": "payload", "extra_a": 30.0}})
        await emu.run_for(100)
        emu.handle_request(Message("eps.rail.reset", {"rail": "payload"}, seq=1), Plane.BOARD)
        emu.handle_request(Message("thermal.heater.set", {"heater": "battery_heater", "mode": "on"}, seq=2),
                           Plane.BOARD)
        emu.control("fault.inject", {"name": "radiation.scale", "params": {"factor": 1e4}})
        await emu.run_for(3 * 3600)
    return path.read_bytes(), sampled[0], together[0]


@pytest.mark.parametrize(("mode", "rates_hz"), [("afap", RATES_HZ), ("afap", {}), ("lockstep", RATES_HZ),
                                                ("afap", SAME_RATES_HZ)],
                         ids=["afap-mixed-rates", "afap-config-rates", "lockstep-mixed-rates", "afap-same-rates"])
async def test_a_batch_that_samples_between_its_steps_records_what_one_step_at_a_time_does(
        tmp_path, monkeypatch: pytest.MonkeyPatch, mode: str, rates_hz: dict[str, float]) -> None:
    batched, batches, together = await _record(tmp_path / "batched.rec", mode=mode, rates_hz=rates_hz)
    monkeypatch.setattr(runtime, "SAMPLED_STEPS", 1)  # no batch samples between its steps
    one_by_one, none, _ = await _record(tmp_path / "one.rec", mode=mode, rates_hz=rates_hz)
    assert batches > 100 and none == 0
    # the same rates sample together, in every batch but those a fault's end or a timed fault cuts short
    assert (together > 100) if rates_hz is SAME_RATES_HZ else (together == 0)
    assert len(batched) > 1_000_000
    assert batched == one_by_one


async def test_readings_encoded_by_templates_record_what_their_dicts_do(tmp_path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sensor readings' payloads written by their templates (emulator.protocol.templates) are the bytes the
    dicts encode to, through faults, rail trips and heater changes (new variants) and in both the batch path and the
    one-step path."""
    packed = [0]
    pack = PayloadTemplate.pack

    def counting(self, key, values):
        data = pack(self, key, values)
        packed[0] += data is not None
        return data

    monkeypatch.setattr(PayloadTemplate, "pack", counting)
    with_templates, _, _ = await _record(tmp_path / "templates.rec", mode="afap", rates_hz=RATES_HZ)
    assert packed[0] > 10_000
    monkeypatch.setattr(PayloadTemplate, "pack", lambda self, key, values: None)  # every payload as its dict
    as_dicts, _, _ = await _record(tmp_path / "dicts.rec", mode="afap", rates_hz=RATES_HZ)
    assert with_templates == as_dicts


class _SampledLamp(Lamp):
    """The toy lamp as a model that samples batches: only ``capture`` and ``sampled`` written (the runtime takes
    the base class's ``capturer``), a noisy reading drawn in ``sampled`` so that the draws' order shows."""

    batch_sampling = True

    def __init__(self) -> None:
        super().__init__()
        self.on = True
        self.rng = random.Random(7)

    def has_events(self) -> bool:
        return bool(self.events)

    def sampled_topics(self) -> frozenset[str]:
        return frozenset({"lamp.telemetry"})

    def capture(self, topic: str) -> tuple[bool, float]:
        return (self.on, self.energy_j)

    def sampled(self, topic: str, rows: list[Any]) -> list[dict[str, Any]]:
        return [{"on": on, "energy_j": energy_j + self.rng.random()} for on, energy_j in rows]


async def _lamp_messages(monkeypatch: pytest.MonkeyPatch, *, one_at_a_time: bool) -> tuple[list[tuple], int]:
    if one_at_a_time:
        monkeypatch.setattr(runtime, "SAMPLED_STEPS", 1)
    run = RunConfig(sim=SimConfig(step_s=1.0, mode="afap"), telemetry={"rates_hz": {"sim.clock": 1.0,
                                                                                    "sim.links": 1.0}})
    emu = Emulator(_SampledLamp(), run, wall=_BusyWall(), board_url=None, control_url=None, record_path=None)
    seen: list[tuple] = []
    emu.add_message_observer(lambda t_ns, plane, direction, msg: seen.append(
        (plane, direction, msg.topic, msg.seq, msg.t_ns, msg.payload)))
    async with emu:
        together = _count_calls(emu, "_step_sampled_together")
        await emu.run_for(2000)
        # an event (lamp.toggled): published before that step's samples
        emu.handle_request(Message("lamp.set", {"on": False}, seq=1), Plane.BOARD)
        await emu.run_for(1000)
    return seen, together[0]


async def test_a_model_with_only_capture_samples_its_batches_as_one_step_at_a_time_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The columns path through the base class's capturer (functools.partial of capture) on a model of another
    shape: the same messages, sequence numbers, times and draws as one step at a time."""
    batched, together = await _lamp_messages(monkeypatch, one_at_a_time=False)
    one_by_one, none = await _lamp_messages(monkeypatch, one_at_a_time=True)
    assert together > 20 and none == 0
    assert len(batched) > 4 * 3000  # lamp, clock, truth, links at 1 Hz
    assert batched == one_by_one

"""A batched clock samples the telemetry due between the steps of a batch and publishes it after the batch: the
messages, their order, times, sequence numbers and readings are those of one step at a time, byte for byte."""

from __future__ import annotations

import pytest

from emulator import runtime
from emulator.clock import VirtualWall
from emulator.config import load_config
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
    sampled = [0]
    together = [0]
    async with Emulator.from_config(cfg, wall=_BusyWall(), board_url=None, control_url=None,
                                    record_path=str(path)) as emu:
        step_sampled = emu.model.step_sampled

        def counting(*args, **kwargs):
            sampled[0] += 1
            return step_sampled(*args, **kwargs)

        emu.model.step_sampled = counting
        sample_together = emu._step_sampled_together

        def counting_together(*args, **kwargs):
            together[0] += 1
            return sample_together(*args, **kwargs)

        emu._step_sampled_together = counting_together
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

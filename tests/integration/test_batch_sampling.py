"""A batched clock samples the telemetry due between the steps of a batch and publishes it after the batch: the
messages, their order, times, sequence numbers and readings are those of one step at a time, byte for byte."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
import zmq
from toy_model import Lamp

from emulator import runtime
from emulator.clock import VirtualWall
from emulator.config import RunConfig, SimConfig, load_config
from emulator.protocol.catalogue import Plane
from emulator.protocol.envelope import Message
from emulator.protocol.templates import PayloadTemplate
from emulator.runtime import Emulator
from emulator.transports import parse_transport_url
from emulator.transports.zmq import endpoints


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


def _count_results(obj: Any, name: str) -> list[int]:
    """Wrap ``obj.name`` (a bound method) so that its results other than None are counted."""
    results = [0]
    method = getattr(obj, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        results[0] += result is not None
        return result

    setattr(obj, name, counting)
    return results


async def _record(path, *, mode: str, rates_hz: dict[str, float], counts: dict[str, list[int]] | None = None
                  ) -> tuple[bytes, int, int]:
    """A run of the shipped proto config with faults, commands and a timed fault, recorded (the main file: what
    depends on the wall clock goes to the side file); the batches that sampled between their steps, and those of
    them that sampled every topic at the same steps. ``counts`` gets the batches published a column at a time
    (``"columns"``) and those whose ``sim.clock`` column was written as one (``"clock_rows"``)."""
    overrides = {"sim.mode": mode, "sim.seed": 5, "telemetry.truth_rate_hz": 0.5, "sim.lockstep_source": "control"}
    if rates_hz:
        overrides["telemetry.rates_hz"] = rates_hz
    cfg = load_config("suncatcher-proto", overrides)
    async with Emulator.from_config(cfg, wall=_BusyWall(), board_url=None, control_url=None,
                                    record_path=str(path)) as emu:
        sampled = _count_calls(emu.model, "step_sampled")
        together = _count_calls(emu, "_step_sampled_together")
        if counts is not None:
            counts["columns"] = _count_calls(emu, "_publish_columns")
            counts["clock_rows"] = _count_results(emu, "_clock_envelopes")
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
    counts: dict[str, list[int]] = {}
    batched, batches, together = await _record(tmp_path / "batched.rec", mode=mode, rates_hz=rates_hz, counts=counts)
    monkeypatch.setattr(runtime, "SAMPLED_STEPS", 1)  # no batch samples between its steps
    one_by_one, none, _ = await _record(tmp_path / "one.rec", mode=mode, rates_hz=rates_hz)
    assert batches > 100 and none == 0
    # the same rates sample together, in every batch but those a fault's end or a timed fault cuts short; those
    # batches that sampled (an event may end one at its first step) are published a column at a time (no observer,
    # no feed), sim.clock's written as a column but where a batch crosses an hour or a number a msgpack width
    assert (together > 100) if rates_hz is SAME_RATES_HZ else (together == 0)
    columns, clock_rows = counts["columns"][0], counts["clock_rows"][0]
    assert together - 5 <= columns <= together and clock_rows >= columns - 10
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
    # every payload as its dict (the rows a bank read as one array too)
    monkeypatch.setattr(PayloadTemplate, "pack", lambda self, key, values: None)
    monkeypatch.setattr(PayloadTemplate, "pack_rows", lambda self, keys, values: [None] * len(keys))
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


async def _received(monkeypatch: pytest.MonkeyPatch, *, one_at_a_time: bool) -> tuple[list[bytes], int]:
    """What a subscriber to every board-plane topic receives of an afap run with every topic on one rate (the
    batches published a column at a time, as one outbox run per link), and the batches published so."""
    if one_at_a_time:
        monkeypatch.setattr(runtime, "SAMPLED_STEPS", 1)
    cfg = load_config("suncatcher-proto", {"sim.mode": "afap", "sim.seed": 5, "telemetry.rates_hz": SAME_RATES_HZ,
                                           "links.board": "zmq+tcp://127.0.0.1:0?hwm=1000000",
                                           "links.control": "zmq+tcp://127.0.0.1:0"})
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    received: list[bytes] = []
    try:
        async with Emulator.from_config(cfg, wall=_BusyWall(), record_path=None) as emu:
            columns = _count_calls(emu, "_publish_columns")
            sub.connect(endpoints(parse_transport_url(emu.board_url))[0])
            async with asyncio.timeout(10):  # the subscription reaches the emulator just after it connects
                while not emu.board_link.wants("eps.telemetry"):
                    await asyncio.sleep(0.005)
            await emu.run_for(3000)
            emu.handle_request(Message("eps.rail.set", {"rail": "payload", "on": False}, seq=1), Plane.BOARD)
            await emu.run_for(1000)
            while sub.poll(1000):  # all of it, before the link closes
                data = sub.recv()
                if data[:1] != b"\xc1":  # (the XPUB's welcome)
                    received.append(data)
    finally:
        sub.close(linger=0)
    return received, columns[0]


async def test_a_batch_published_a_column_at_a_time_reaches_a_subscriber_as_one_step_at_a_time_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The column lane's outbox runs through a live ZeroMQ link: a subscriber receives the bytes, in the order, of
    a run that publishes one step at a time (the reply to a command and an event among them)."""
    batched, columns = await _received(monkeypatch, one_at_a_time=False)
    one_by_one, none = await _received(monkeypatch, one_at_a_time=True)
    assert columns > 20 and none == 0
    assert len(batched) > 5 * 4000 // 2
    assert batched == one_by_one


def _clock_emulator(**sim: Any) -> Emulator:
    run = RunConfig(sim=SimConfig(mode="afap", **sim))
    return Emulator(Lamp(), run, wall=_BusyWall(), board_url=None, control_url=None, record_path=None)


def _clock_rows(emu: Emulator, times: list[int], steps: list[int], seqs: range) -> list[bytes]:
    """sim.clock's envelopes one sample at a time: what a column must equal."""
    samples = emu._clock_samples_at(times, steps)
    return [runtime.encode_envelope("sim.clock", sample, seq, t_ns, runtime.SRC)
            for sample, seq, t_ns in zip(samples, seqs, times, strict=True)]


def test_sim_clock_written_as_a_column_is_its_samples_encoding_or_left_to_them(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's sim.clock envelopes written as one column are, row for row, the samples' own encoding (whatever
    the clock's state); where the column cannot keep one shape (an hour crossed, a fraction of a second, a number
    crossing a msgpack width) it is left to the samples; a column that came out wrong is never published."""
    ns = 10**9
    emu = _clock_emulator()
    emu.clock.stats.max_lag_ns, emu.clock.stats.overruns = 1_234_567, 3
    times = [(3600 + 17 + 2 * k) * ns for k in range(40)]
    steps = list(range(1000, 1040))
    seqs = range(70_000, 70_000 + 40 * 6, 6)
    assert emu._clock_envelopes(times, steps, seqs) == _clock_rows(emu, times, steps, seqs)
    one = [(7 * 3600 + 59 * 60 + 59) * ns]  # a batch of one sample, a second before the hour
    assert emu._clock_envelopes(one, [5], range(9, 10)) == _clock_rows(emu, one, [5], range(9, 10))
    across_hour = [(3590 + k) * ns for k in range(20)]
    assert emu._clock_envelopes(across_hour, steps[:20], seqs[:20]) is None
    across_width = range(65_530, 65_530 + 40 * 6, 6)  # seq 65,535 is 3 bytes, 65,536 is 5
    assert emu._clock_envelopes(times, steps, across_width) is None
    half_seconds = [3600 * ns + k * ns // 2 for k in range(40)]
    assert emu._clock_envelopes(half_seconds, steps, seqs) is None
    fraction = _clock_emulator(epoch_utc="2026-06-21T00:00:00.25Z")
    assert fraction._clock_envelopes(times, steps, seqs) is None
    # each refused before it was written: no warning, and the next batch that can is written as a column
    assert "sim.clock" not in caplog.text
    assert emu._clock_envelopes(times, steps, seqs) == _clock_rows(emu, times, steps, seqs)
    # a column gone wrong (a byte flipped): refused with a warning, and no column is written after it
    real = runtime.write_rows
    monkeypatch.setattr(runtime, "write_rows", lambda m, parts: [row[:-1] + b"\x00" for row in real(m, parts)])
    with caplog.at_level(logging.WARNING, logger="emulator.runtime"):
        assert emu._clock_envelopes(times, steps, seqs) is None
    assert "encoding them one at a time" in caplog.text
    monkeypatch.setattr(runtime, "write_rows", real)
    assert emu._clock_envelopes(times, steps, seqs) is None

"""Emulator runtime without links: stepping, telemetry schedule, commands, faults, recording, waits."""

from __future__ import annotations

import logging

import msgpack
import pytest
from toy_model import Lamp

from emulator.clock import NS_PER_S, VirtualWall
from emulator.config import RunConfig, SimConfig, TelemetryConfig
from emulator.errors import CommandError, ConfigError, SimTimeoutError
from emulator.protocol.catalogue import Plane
from emulator.protocol.envelope import Message
from emulator.recorder import read_recording
from emulator.runtime import Emulator


def make(tmp_path=None, **sim) -> Emulator:
    run = RunConfig(sim=SimConfig(**{"step_s": 1.0, **sim}))
    rec = str(tmp_path / "run.rec") if tmp_path else None
    return Emulator(Lamp(), run, wall=VirtualWall(), board_url=None, control_url=None, record_path=rec)


async def test_run_for_steps_the_model_and_keeps_integer_time() -> None:
    async with make() as emu:
        await emu.run_for(10)
        assert emu.clock.now_ns() == 10 * NS_PER_S
        assert emu.model.steps == 10


async def test_commands_are_validated_and_answered_with_the_request_id() -> None:
    async with make() as emu:
        ok = emu.handle_request(Message("lamp.set", {"on": True}, seq=7), Plane.BOARD)
        assert ok.topic == "reply" and ok.payload["id"] == 7 and ok.payload["ok"] is True
        bad = emu.handle_request(Message("lamp.set", {"on": True, "power_w": 500.0}, seq=8), Plane.BOARD)
        assert bad.payload["ok"] is False and bad.payload["error"]["field"] == "payload.power_w"
        unknown = emu.handle_request(Message("lamp.sett", {}, seq=9), Plane.BOARD)
        assert unknown.payload["error"]["field"] == "topic" and "lamp.set" in unknown.payload["error"]["message"]
        # the board plane cannot reach control commands
        ctl = emu.handle_request(Message("fault.inject", {"name": "lamp.brownout"}, seq=10), Plane.BOARD)
        assert ctl.payload["ok"] is False and "control-plane" in ctl.payload["error"]["message"]
        assert emu.stats.rejected["board"] == 3 and emu.model.power_w == 10.0


async def test_energy_follows_commands_and_timed_faults() -> None:
    async with make() as emu:
        emu.handle_request(Message("lamp.set", {"on": True, "power_w": 10.0}), Plane.BOARD)
        await emu.run_for(10)
        fid = emu.control("fault.inject", {"name": "lamp.brownout", "params": {"factor": 0.5},
                                           "duration_s": 10.0})["fault_id"]
        assert [f["name"] for f in emu.truth()["faults"]] == ["lamp.brownout"]
        # the event carries the expiry: a page lists the fault with it at once, not "until cleared" until a poll
        assert emu._events[-1] == ("fault.changed", {"fault_id": fid, "name": "lamp.brownout",
                                                     "params": {"factor": 0.5}, "active": True, "t_ns": 10 * NS_PER_S,
                                                     "until_ns": 20 * NS_PER_S})
        await emu.run_for(20)
        assert emu.model.energy_j == pytest.approx(10 * 10 + 10 * 5 + 10 * 10)
        assert emu.truth()["faults"] == []
        with pytest.raises(CommandError) as exc:
            emu.control("fault.clear", {"fault_id": fid})
        assert exc.value.field == "payload.fault_id"


async def test_fault_params_are_validated_against_the_fault_schema() -> None:
    async with make() as emu:
        with pytest.raises(CommandError) as exc:
            emu.control("fault.inject", {"name": "lamp.brownout", "params": {"factor": 3}})
        assert exc.value.field == "payload.params.factor"
        with pytest.raises(CommandError) as exc:
            emu.control("fault.inject", {"name": "lamp.brown"})
        assert "lamp.brownout" in exc.value.valid


async def test_wait_for_uses_sim_time_and_times_out_in_sim_time() -> None:
    async with make() as emu:
        emu.handle_request(Message("lamp.set", {"on": True, "power_w": 1.0}), Plane.BOARD)
        t = await emu.wait_for(lambda: emu.model.energy_j >= 30, within_s=100)
        assert t == 30 * NS_PER_S
        with pytest.raises(SimTimeoutError):
            await emu.wait_for(lambda: emu.model.energy_j < 0, within_s=50)
        assert emu.clock.now_ns() == 80 * NS_PER_S


async def test_lockstep_waits_for_the_controller() -> None:
    async with make(mode="lockstep") as emu:
        await emu.run_for(5)  # the in-process controller steps
        assert emu.clock.now_ns() == 5 * NS_PER_S
        emu.control("clock.step", {"duration_s": 3.0})
        await emu.run_for(3)
        assert emu.clock.now_ns() == 8 * NS_PER_S


async def test_recording_holds_every_message_and_is_deterministic(tmp_path, caplog) -> None:
    async def one(path):
        run = RunConfig(sim=SimConfig(step_s=1.0, seed=3), telemetry=TelemetryConfig(truth_rate_hz=0.5))
        async with Emulator(Lamp(), run, wall=VirtualWall(), board_url=None, control_url=None,
                            record_path=str(path)) as emu:
            emu.handle_request(Message("lamp.set", {"on": True}, seq=1), Plane.BOARD)
            await emu.run_for(20)
            emu.control("fault.inject", {"name": "lamp.brownout", "params": {"factor": 0.0}})
            await emu.run_for(20)
        return path.read_bytes()

    a = await one(tmp_path / "a.rec")
    b = await one(tmp_path / "b.rec")
    assert a == b
    recs = list(read_recording(tmp_path / "a.rec"))
    topics = [r.message.topic for r in recs]
    assert topics.count("lamp.telemetry") == 41  # t = 0 .. 40 s at 1 Hz
    assert topics.count("truth.sample") == 21
    assert "lamp.toggled" in topics and "fault.changed" in topics
    injected = next(r.message.payload for r in recs if r.message.topic == "fault.changed")
    assert injected["active"] is True and injected["until_ns"] == -1  # until cleared (the console shows it so)
    # crash safety: a file cut anywhere still reads up to the cut, and says what it did not read
    with caplog.at_level(logging.WARNING, logger="emulator.recorder"):
        assert len(list(read_recording(tmp_path / "a.rec"))) == len(recs)
        assert not caplog.records  # a whole file: nothing to say
        cut = tmp_path / "cut.rec"
        cut.write_bytes(a[: len(a) * 2 // 3])
        read = list(read_recording(cut))
        assert 0 < len(read) < len(recs)
        kept = read[-1].offset + read[-1].size
        assert [r.getMessage() for r in caplog.records] == [
            (f"{cut}: the last {len(a) * 2 // 3 - kept} bytes are a cut-off record (the run stopped mid-write, a "
             "crash?): not read; everything before them was")]
        caplog.clear()
        damaged = tmp_path / "damaged.rec"  # a record whose envelope is not one: skipped and counted
        bad = msgpack.packb(["board", "out", b"\xc1 not an envelope"])
        damaged.write_bytes(a[:kept] + bad + a[kept:])
        assert len(list(read_recording(damaged))) == len(recs)
        assert [r.getMessage() for r in caplog.records] == [
            f"{damaged}: 1 record held an envelope that could not be decoded: skipped"]


def test_bad_telemetry_rate_topic_is_a_config_error() -> None:
    run = RunConfig(telemetry=TelemetryConfig(rates_hz={"lamp.telemetri": 1.0}))
    with pytest.raises(ConfigError) as exc:
        Emulator(Lamp(), run, board_url=None, control_url=None)
    assert "lamp.telemetry" in str(exc.value)


async def test_board_command_runs_a_board_command_from_the_control_plane_as_the_board_would() -> None:
    async with make() as emu:
        data = emu.control("board.command", {"topic": "lamp.set", "payload": {"on": True, "power_w": 20.0}})
        assert data == {"topic": "lamp.set", "data": {"on": True}}
        assert emu.model.on and emu.model.power_w == 20.0
        assert emu.stats.commands == {"board": 0, "control": 1}
        # the board's own validation, with the field named under the nested payload
        with pytest.raises(CommandError) as exc:
            emu.control("board.command", {"topic": "lamp.set", "payload": {"on": True, "power_w": 500.0}})
        assert exc.value.field == "payload.payload.power_w" and emu.model.power_w == 20.0
        # the model's own refusal, worded by the model
        emu.control("fault.inject", {"name": "lamp.brownout", "params": {"factor": 0.0}})
        with pytest.raises(CommandError, match="lamp is browned out") as exc:
            emu.control("board.command", {"topic": "lamp.set", "payload": {"on": True}})
        assert exc.value.field == "payload.payload.on"
        # only board commands, and not the board's own session topics
        for topic in ("lamp.sett", "board.hello", "ping", "clock.pause"):
            with pytest.raises(CommandError) as exc:
                emu.control("board.command", {"topic": topic, "payload": {}})
            assert exc.value.field == "payload.topic" and exc.value.valid == ["lamp.set"]
        assert emu.stats.rejected["control"] == 6


async def test_board_command_is_refused_on_the_board_plane_and_recorded_on_the_control_plane(tmp_path) -> None:
    async with make(tmp_path) as emu:
        reply = emu.handle_request(Message("board.command", {"topic": "lamp.set", "payload": {"on": True}}, seq=3),
                                   Plane.BOARD)
        assert reply.payload["ok"] is False and not emu.model.on


async def test_lockstep_wait_says_what_it_waits_for_and_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="flatsat.runtime")
    emu = make(mode="lockstep", lockstep_source="board", lockstep_notice_s=0.05, lockstep_timeout_s=0.5)
    async with emu:
        await emu.run(60)
    assert emu.clock.now_ns() == 0
    assert emu.stalled is not None and "gave up after 0.5 s" in emu.stalled
    assert "board.step from the board" in emu.stalled and "no board has said board.hello" in emu.stalled
    notices = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    # first after notice_s, then every 6 x notice_s: 0.05, 0.35 s
    assert len(notices) == 2, notices
    assert emu.stop_reason == emu.stalled


async def test_lockstep_by_control_says_the_board_cannot_step() -> None:
    emu = make(mode="lockstep", lockstep_notice_s=0.05, lockstep_timeout_s=0.2)
    async with emu:
        emu.handle_request(Message("board.hello", {"name": "b1"}), Plane.BOARD)
        await emu.run(60)
    assert emu.stalled is not None
    assert "clock.step or clock.run_until" in emu.stalled and "sim.lockstep_source is 'control'" in emu.stalled


async def test_lockstep_timeout_zero_waits_until_stepped() -> None:
    import asyncio

    emu = make(mode="lockstep", lockstep_notice_s=0.05, lockstep_timeout_s=0)
    async with emu:
        run = asyncio.create_task(emu.run(5))
        await asyncio.sleep(0.3)
        assert not run.done()
        emu.control("clock.step", {"duration_s": 5.0})
        await asyncio.wait_for(run, 5)
    assert emu.stalled is None and emu.clock.now_ns() == 5 * NS_PER_S


async def test_board_hello_telemetry_rates_slow_the_board_plane_only() -> None:
    """A board that needs one sample per 10 s turn says so at hello: the board plane sends that topic at 0.1 Hz
    from then on (on the board's grid), the control plane keeps the run's 1 Hz; a second board that names no
    rate gets the run's rate back; bad topics and rates are refused, naming the field."""
    emu = make()
    sent: list[tuple[int, str, str]] = []
    async with emu:
        emu.add_message_observer(lambda t, plane, d, msg: sent.append((t, plane, msg.topic)))
        await emu.run_for(3)
        reply = emu.handle_request(Message("board.hello", {"name": "b1", "telemetry_rates_hz": {
            "lamp.telemetry": 0.1, "sim.clock": 0.0}}, seq=1), Plane.BOARD)
        assert reply.payload["ok"], reply.payload
        assert reply.payload["data"]["rates_hz"] == {"lamp.telemetry": 0.1}
        sent.clear()
        await emu.run_for(30)
        board = [t for t, plane, topic in sent if plane == "board" and topic == "lamp.telemetry"]
        control = [t for t, plane, topic in sent if plane == "control" and topic == "lamp.telemetry"]
        assert board == [13 * NS_PER_S, 23 * NS_PER_S, 33 * NS_PER_S]
        assert len(control) == 30
        assert not [1 for _, plane, topic in sent if plane == "board" and topic == "sim.clock"]
        assert len([1 for _, plane, topic in sent if plane == "control" and topic == "sim.clock"]) == 30
        # a board that wants everything at the run's rates: the plane goes back to 1 Hz
        emu.handle_request(Message("board.hello", {"name": "b2"}, seq=1), Plane.BOARD)
        sent.clear()
        await emu.run_for(5)
        assert len([1 for _, plane, topic in sent if plane == "board" and topic == "lamp.telemetry"]) == 5
        for rates, field in (({"lamp.telemetri": 0.1}, "payload.telemetry_rates_hz.lamp.telemetri"),
                             ({"lamp.telemetry": -1.0}, "payload.telemetry_rates_hz.lamp.telemetry")):
            reply = emu.handle_request(Message("board.hello", {"name": "b3", "telemetry_rates_hz": rates}, seq=2),
                                       Plane.BOARD)
            assert not reply.payload["ok"] and reply.payload["error"]["field"] == field, reply.payload


async def test_a_board_asking_per_turn_telemetry_gets_it_and_falls_back_where_refused() -> None:
    """``--telemetry per-turn``: the board learns the run's board telemetry from its hello and says hello again
    asking one sample per turn of what it reads and none of the rest; a board that reads none of this run's
    topics asks nothing (everything at the run's rates)."""
    import asyncio

    from firmware_stubs.base import Controller, run_board

    class Reader(Controller):
        name = "reader"
        turn_topics = ("lamp.telemetry",)
        telemetry = "per-turn"

        async def on_tick(self, board) -> None:
            return None

    class Misfit(Reader):
        name = "misfit"
        turn_topics = ("eps.telemetry",)

    for controller, rates in ((Reader(), {"lamp.telemetry": 0.1}), (Misfit(), {"lamp.telemetry": 1.0,
                                                                               "sim.clock": 1.0})):
        run = RunConfig(sim=SimConfig(step_s=1.0, mode="lockstep", lockstep_source="board"))
        async with Emulator(Lamp(), run, board_url="zmq+tcp://127.0.0.1:0", control_url=None,
                            record_path=None) as emu:
            loop = asyncio.create_task(emu.run(40))
            await asyncio.wait_for(run_board(controller, emu.board_url, max_ticks=3), 30)
            emu.request_stop()
            await loop
            assert controller.name in emu.stats.boards_seen
            board_rates = {i.telemetry.spec.topic: NS_PER_S / i.period_ns for i in emu._schedule
                           if Plane.BOARD in i.planes and i.period_ns < 1 << 62}
            assert board_rates == rates, (controller.name, board_rates)


@pytest.mark.parametrize("every_s", [7.0, 30.5])
async def test_a_timed_observer_sees_the_step_ends_a_per_step_one_picks_and_lets_steps_batch(every_s: float) -> None:
    def picker() -> tuple[list[int], object, object]:
        seen: list[int] = []
        due = [0]

        def look(t_ns: int) -> None:
            if t_ns >= due[0]:
                seen.append(t_ns)
                due[0] = t_ns + round(every_s * NS_PER_S)

        return seen, look, lambda: due[0]

    runs = []
    for timed in (False, True):
        # the real wall clock: an afap clock sizes its batches by how fast the steps run (a virtual one: 1 step)
        run = RunConfig(sim=SimConfig(step_s=1.0, mode="afap"))
        async with Emulator(Lamp(), run, board_url=None, control_url=None, record_path=None) as emu:
            seen, look, due = picker()
            emu.add_observer(look, due_ns=due if timed else None)  # type: ignore[arg-type]
            turns = [0]
            step_many = emu.model.step_many

            def counted(*args: object, _inner: object = step_many, _turns: list[int] = turns) -> int:
                _turns[0] += 1
                return _inner(*args)  # type: ignore[operator]

            emu.model.step_many = counted  # type: ignore[method-assign]
            await emu.run(1000)
            runs.append((seen, emu.model.steps, turns[0]))
    (per_step, steps_a, batches_a), (timed_seen, steps_b, batches_b) = runs
    assert timed_seen == per_step and len(per_step) >= 1000 / (every_s + 1)
    assert steps_a == steps_b == 1000
    assert batches_a == 0 and batches_b > 0  # one step per loop turn with a per-step observer, batches without


@pytest.mark.parametrize(("mode", "built_at_start"), [("realtime", 1), ("scaled", 1), ("afap", 0), ("lockstep", 0)])
async def test_a_paced_run_builds_the_fault_schemas_before_its_first_tick(
        monkeypatch: pytest.MonkeyPatch, mode: str, built_at_start: int) -> None:
    """fault.list's schemas take pydantic 10-70 ms: a paced run with a control plane builds them as it starts
    (not in the middle of its ticks when a console connects); a fast-forward run leaves them for the first ask."""
    from toy_model import Brownout

    built = []
    schema = Brownout.model_json_schema
    monkeypatch.setattr(Brownout, "model_json_schema", classmethod(lambda cls, *a, **k: built.append(1) or
                                                                   schema(*a, **k)))
    run = RunConfig(sim=SimConfig(step_s=1.0, mode=mode, speed=2.0 if mode == "scaled" else 1.0))
    emu = Emulator(Lamp(), run, wall=VirtualWall(), board_url=None, control_url="zmq+tcp://127.0.0.1:0",
                   record_path=None)
    async with emu:
        assert len(built) == built_at_start
        assert [f["name"] for f in emu.fault_list()] == ["lamp.brownout"]
        assert len(built) == 1

"""The scenario runner end to end: toy model, toy board process over ZeroMQ, reports and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from toy_model import Lamp

from emulator.clock import NS_PER_S, VirtualWall
from emulator.errors import ConfigError
from emulator.recorder import read_recording
from emulator.transports import open_links
from hil import cli as hil_cli
from hil.report import junit_xml, write_html
from hil.runner import run_scenario
from hil.scenario import Scenario, ScenarioError, scenario_from_dict

TOY_BOARD = f"{sys.executable} {Path(__file__).with_name('toy_board.py')}"
#: the toy board's duty cycle: 3 periods of 10 s on, 2 off; lamp power 10 W
ON_S, CYCLE_S, LAMP_W = 30, 50, 10.0


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Every run must close its links and end its tasks (and its board process: see BoardProcess)."""
    yield
    tasks = [t.get_name() for t in asyncio.all_tasks()
             if t is not asyncio.current_task() and t.get_name().startswith("flatsat") and not t.done()]
    leaked = open_links()
    assert not leaked, f"links left open: {leaked}"
    assert not tasks, f"tasks left running: {tasks}"


def toy(scenario: Scenario, seed: int) -> Lamp:
    return Lamp()


def scenario(duration: str = "10m", timeline: list | None = None, requirements: list | None = None,
             **head) -> Scenario:
    return scenario_from_dict({"scenario": {"name": "toy", "duration": duration, "seed": 3, **head},
                               "timeline": timeline or [], "requirement": requirements or []}, source="toy.toml")


BROWNOUT = {"at": "2m", "do": "fault", "name": "lamp.brownout", "params": {"factor": 0.5}, "duration": "1m",
            "label": "dim"}


async def test_without_a_board_the_run_is_afap_and_faults_land_at_their_sim_time(tmp_path: Path) -> None:
    sc = scenario(timeline=[BROWNOUT],
                  requirements=[{"kind": "always", "signal": "satellite.factor", "op": "==", "value": 1},
                                {"kind": "final", "signal": "satellite.factor", "op": "==", "value": 1},
                                {"kind": "min", "signal": "satellite.factor", "op": ">=", "value": 0.5}])
    res = await run_scenario(sc, record_dir=tmp_path, model_factory=toy, wall=VirtualWall())
    assert res.error is None and res.mode == "afap" and res.t_end_s == 600.0
    always, final, minimum = res.verdicts
    assert not always.passed and always.t_s == 120.0 and always.value == 0.5
    assert "60 of 601 steps" in always.reason  # t = 120 .. 179 s, the fault clears after the step to 180 s
    assert final.passed and minimum.passed
    assert res.timeline_log == [(120.0, "fault lamp.brownout(factor=0.5) for 60 s [dim]")]
    assert not res.passed and res.marks() == [(120.0, always.label)]
    assert res.recording == tmp_path / "toy.rec" and res.recording.exists()
    assert res.command == "flatsat test toy.toml --seed 3"


async def test_a_board_process_steps_the_run_and_requirements_see_both_planes(tmp_path: Path) -> None:
    sc = scenario(timeline=[BROWNOUT], requirements=[
        {"kind": "final", "signal": "satellite.energy_j", "op": "==", "value": 3400},
        {"kind": "count", "topic": "lamp.toggled", "op": "==", "value": 24},
        {"kind": "count", "topic": "lamp.set", "where": {"on": True}, "op": "==", "value": 12},
        {"kind": "response", "trigger": {"topic": "lamp.set", "where": {"on": True}},
         "response": {"topic": "lamp.toggled", "where": {"on": True}}, "within": "1s"},
        {"kind": "response", "trigger": {"topic": "lamp.set", "where": {"on": True}},
         "response": {"topic": "lamp.toggled", "where": {"on": True}}, "within": "0.5s"}])
    res = await run_scenario(sc, board_cmd=TOY_BOARD, record_dir=tmp_path, model_factory=toy)
    assert res.error is None and res.mode == "lockstep (stepped by the board)"
    final, toggles, sets, in_time, too_fast = res.verdicts
    # 600 s at 30 s on per 50 s cycle and 10 W is 3600 J; the brownout halves 40 s of on-time (120-130, 150-180)
    assert final.passed, final.reason
    assert final.value == pytest.approx(LAMP_W * ON_S * 600 / CYCLE_S - 0.5 * LAMP_W * 40)
    assert toggles.passed and sets.passed, (toggles.reason, sets.reason)
    assert in_time.passed and "12 trigger(s), 12 answered in time, slowest 1 s" in in_time.reason
    # the event follows the command after one 1 s step: a 0.5 s window misses every one
    assert not too_fast.passed and too_fast.t_s == 0.5 and "12 of 12 trigger(s) missed" in too_fast.reason
    recs = list(read_recording(res.recording))
    assert {("board", "in", "board.hello"), ("board", "in", "lamp.set"), ("board", "out", "lamp.toggled")} <= \
        {(r.plane, r.direction, r.message.topic) for r in recs}


async def test_same_scenario_and_seed_give_byte_identical_recordings_with_a_board(tmp_path: Path) -> None:
    sc = scenario(timeline=[BROWNOUT, {"at": "5m", "do": "board_restart", "down": "30s"}],
                  requirements=[{"kind": "count", "topic": "board.hello", "op": "==", "value": 2}])
    a = await run_scenario(sc, board_cmd=TOY_BOARD, record_dir=tmp_path / "a", model_factory=toy)
    b = await run_scenario(sc, board_cmd=TOY_BOARD, record_dir=tmp_path / "b", model_factory=toy)
    assert a.passed and b.passed, (a.error, a.verdicts)
    assert a.recording is not None and b.recording is not None
    assert a.recording.read_bytes() == b.recording.read_bytes()
    assert [t for t, _ in a.timeline_log] == [120.0, 300.0, 330.0]
    # while the board was down (300-330 s) the runner stepped the clock and the lamp held its state
    hellos = [r.message.t_ns for r in read_recording(a.recording) if r.message.topic == "board.hello"]
    assert len(hellos) == 2


async def test_a_board_command_with_pty_gets_a_serial_path_that_survives_a_restart(tmp_path: Path) -> None:
    """``{pty}``: the board opens a pty by path (as QEMU's ``-serial {pty}`` does), the runner joins it to the pty the
    emulator listens on through ``serial://``; the restarted board opens the same path. The toy board over serial
    does what it does over ZeroMQ: the same energy, both hellos, the recording the same but for the board's link."""
    sc = scenario(timeline=[BROWNOUT, {"at": "5m", "do": "board_restart", "down": "30s"}],
                  requirements=[{"kind": "count", "topic": "board.hello", "op": "==", "value": 2}])
    # over ZeroMQ first: its process-wide context keeps descriptors open, which are not the runner's to close
    over_zmq = await run_scenario(sc, board_cmd=TOY_BOARD, record_dir=tmp_path / "zmq", model_factory=toy)
    fds_before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    over_serial = await run_scenario(sc, board_cmd=f"{TOY_BOARD} --url serial://{{pty}}?baud=921600",
                                     record_dir=tmp_path / "serial", model_factory=toy)
    assert over_serial.passed and over_zmq.passed, (over_serial.error, over_serial.verdicts)
    assert over_serial.board_log is not None
    log = over_serial.board_log.read_text()
    paths = re.findall(r"^--- start \d+: .* --url '?serial://(/dev/[^?]+)\?baud=921600", log, flags=re.MULTILINE)
    assert len(paths) == 2 and paths[0] == paths[1], log
    assert over_serial.series.get("satellite.energy_j")[-1] == over_zmq.series.get("satellite.energy_j")[-1]
    assert over_serial.recording is not None and over_zmq.recording is not None
    topics = [r.message.topic for r in read_recording(over_serial.recording)]
    assert topics == [r.message.topic for r in read_recording(over_zmq.recording)]
    if fds_before is not None:
        assert set(os.listdir("/proc/self/fd")) <= fds_before, "the runner left descriptors open"


async def test_a_board_command_takes_fd_or_pty_not_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\{fd\} \(a descriptor\) or as \{pty\}"):
        await run_scenario(scenario(), board_cmd=f"{TOY_BOARD} --fd {{fd}} --url serial://{{pty}}",
                           record_dir=tmp_path, model_factory=toy)


async def test_a_board_that_dies_fails_the_run_with_its_exit_code_and_keeps_the_recording(tmp_path: Path) -> None:
    sc = scenario(requirements=[{"kind": "count", "topic": "lamp.toggled", "op": ">=", "value": 1}])
    res = await run_scenario(sc, board_cmd=f"{TOY_BOARD} --crash-at 200", record_dir=tmp_path, model_factory=toy)
    assert not res.passed
    assert res.error is not None and res.error.startswith("board process exited with code 3 at t=0:03:20 (200 s)")
    assert "crashing on purpose" in res.error  # the board's own last words
    assert res.t_end_s == 200.0 and res.verdicts[0].passed
    recs = list(read_recording(res.recording))
    assert recs and max(r.message.t_ns for r in recs) == 200 * NS_PER_S
    assert res.board_log is not None and "crashing on purpose" in res.board_log.read_text()


async def test_a_hung_board_is_detected_on_the_wall_clock(tmp_path: Path) -> None:
    res = await run_scenario(scenario(), board_cmd=f"{TOY_BOARD} --hang-at 100", record_dir=tmp_path,
                             model_factory=toy, board_timeout_s=0.3)
    assert res.error is not None and "no board.step for 0.3 s (wall clock)" in res.error
    assert res.t_end_s == 100.0


async def test_a_board_that_never_says_hello_fails_clearly(tmp_path: Path) -> None:
    res = await run_scenario(scenario(), board_cmd=f"{sys.executable} -c pass", model_factory=toy)
    assert res.error is not None and "exited with code 0 before saying board.hello" in res.error
    assert res.verdicts == []
    res = await run_scenario(scenario(), board_url="zmq+tcp://127.0.0.1:0", model_factory=toy, hello_timeout_s=0.2)
    assert res.error is not None and "no board.hello from the board at zmq+tcp://127.0.0.1:" in res.error
    assert "within 0.2 s (wall clock)" in res.error


async def test_a_real_board_at_a_url_is_waited_for(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def status(text: str) -> None:  # the bench operator reads this line and plugs the board in
        if "waiting for a board at " in text:
            url = text.split("waiting for a board at ")[1].split(" (")[0]
            procs.append(subprocess.Popen([*TOY_BOARD.split(), "--url", url]))

    sc = scenario(duration="2m", requirements=[{"kind": "count", "topic": "lamp.toggled", "op": ">=", "value": 2}])
    try:
        res = await run_scenario(sc, board_url="zmq+tcp://127.0.0.1:0", model_factory=toy, status=status)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    assert len(procs) == 1 and res.passed, (res.error, res.verdicts)


@pytest.mark.slow
@pytest.mark.parametrize("line", ["serial+fd://{fd}", "serial://{pty}"])
async def test_a_python_board_over_a_noisy_pty_line(tmp_path: Path, line: str) -> None:
    """``line_options`` put bit errors on the emulator's end of a ``{fd}`` or ``{pty}`` board's line (here the toy
    board, a Python stub, through ``serial+fd://{fd}``, or opening the runner's relayed pty by path as QEMU does):
    frames are lost both ways, the board repeats and resynchronises, the run goes on."""
    # the toy board switches the lamp when its telemetry disagrees: lost samples and commands delay a switch by
    # a turn or two (24 switches on a clean line), the board keeps acting
    sc = scenario(requirements=[{"kind": "count", "topic": "lamp.toggled", "op": ">=", "value": 6}])
    board = f"{TOY_BOARD} --url {line}?baud=921600 --timeout 0.05 --resync-after 0.2"
    res = await run_scenario(sc, board_cmd=board, record_dir=tmp_path, model_factory=toy,
                             line_options="ber=3e-4&ber_seed=2&pace=0")
    assert res.board_log is not None
    log = res.board_log.read_text()
    assert res.passed and res.t_end_s == 600.0, (res.error, res.verdicts, log[-2000:])
    assert len(re.findall(r"^--- start ", log, flags=re.MULTILINE)) == 1
    assert "--line 'ber=3e-4&ber_seed=2&pace=0'" in res.command
    last = [line for line in log.splitlines() if line.startswith("toy-lamp: ")][-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) ([a-z ]+?)(?=,|;|$)", last.split("link: ")[1])}
    assert counts["bad frames"] > 0 and counts["timeouts"] > 0, last
    assert counts["resyncs"] + counts["unacked steps"] + counts["retries"] > 0, last


def test_line_options_need_a_pty_line_and_valid_serial_options() -> None:
    from emulator.errors import ConfigError
    from hil.runner import ScenarioRun

    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    with pytest.raises(ConfigError, match="line options apply to the pty line") as exc:
        ScenarioRun(scenario(), board_cmd=TOY_BOARD, model_factory=toy, line_options="ber=1e-4")
    assert exc.value.field == "line_options"
    for line in ("serial+fd://{fd}", "serial://{pty}"):
        with pytest.raises(ConfigError, match="unknown option 'bre'.*did you mean 'ber'") as exc:
            ScenarioRun(scenario(), board_cmd=f"{TOY_BOARD} --url {line}", model_factory=toy, line_options="bre=1e-4")
        assert exc.value.field == "line_options"
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds, "the refused run left its pty open"


async def test_bad_names_are_refused_before_anything_starts(tmp_path: Path) -> None:
    sc = scenario(timeline=[{"at": 1, "do": "board_kill"}],
                  requirements=[{"kind": "always", "signal": "satellite.energy", "op": "<", "value": 1}])
    with pytest.raises(ScenarioError) as exc:
        await run_scenario(sc, model_factory=toy, record_dir=tmp_path)
    assert {p.path for p in exc.value.problems} == {"timeline[0].do", "requirement[0].signal"}
    assert not (tmp_path / "toy.rec").exists()
    with pytest.raises(ScenarioError) as exc:
        await run_scenario(scenario_from_dict({"scenario": {"name": "x", "duration": 60},
                                               "overrides": {"sim.seed": 4}}), model_factory=toy)
    assert exc.value.problems[0].path == 'overrides."sim.seed"'
    from emulator.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        await run_scenario(scenario(), board_cmd="no-such-board-program --x", model_factory=toy)


async def test_reports_say_where_and_why(tmp_path: Path) -> None:
    sc = scenario(timeline=[BROWNOUT], requirements=[
        {"kind": "always", "signal": "satellite.factor", "op": "==", "value": 1, "why": "full brightness"},
        {"kind": "final", "signal": "satellite.factor", "op": "==", "value": 1}])
    ok = await run_scenario(scenario(duration="1m"), model_factory=toy, wall=VirtualWall())
    bad = await run_scenario(sc, model_factory=toy, wall=VirtualWall())
    root = ET.fromstring(junit_xml([ok, bad]))
    assert root.get("tests") == "4" and root.get("failures") == "1" and root.get("errors") == "0"
    suite = root.findall("testsuite")[1]
    assert suite.get("name") == "toy" and suite.get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["seed"] == "3" and props["reproduce"] == "flatsat test toy.toml --seed 3"
    failure = suite.find("testcase[@name='always satellite.factor == 1']/failure")
    assert failure is not None and "violated first at t=0:02:00 (120 s): value 0.5, limit 1" in failure.get("message")
    assert "full brightness" in failure.text
    paths = write_html([ok, bad], tmp_path)
    page = (tmp_path / "toy.html").read_text()
    assert [p.name for p in paths] == ["toy.html", "toy.html", "index.html"]
    assert "data:image/png;base64," in page and "<img alt=\"requirement signals\"" in page
    assert "flatsat test toy.toml --seed 3" in page and "FAIL" in page and "lamp.brownout" in page
    assert 'src="http' not in page  # self-contained


def test_cli_exit_codes_junit_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[scenario]\nname = "sat-ok"\nconfig = "suncatcher-proto.toml"\nduration = "5m"\n'
                    '[[requirement]]\nkind = "always"\nsignal = "satellite.power.bus_v"\nop = ">"\nvalue = 1\n')
    fail = tmp_path / "fail.toml"
    fail.write_text('[scenario]\nname = "sat-fail"\nconfig = "suncatcher-proto.toml"\nduration = "5m"\n'
                    '[[requirement]]\nkind = "always"\nsignal = "satellite.power.bus_v"\nop = "<"\nvalue = 1\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "bad"\nduration = "5m"\n[[requirement]]\nkind = "always"\n'
                   'signal = "satellite.power.bus_vv"\nop = "<"\nvalue = 1\n')
    from emulator.cli import main

    args = ["--record", str(tmp_path / "rec"), "--quiet"]
    assert main(["test", str(good), *args, "--junit", str(tmp_path / "j.xml"), "--report", str(tmp_path / "r")]) == 0
    assert ET.parse(tmp_path / "j.xml").getroot().get("failures") == "0"
    assert (tmp_path / "r" / "sat-ok.html").exists() and (tmp_path / "rec" / "sat-ok.rec").exists()
    assert main(["test", str(good), str(fail), *args]) == 1
    out = capsys.readouterr()
    assert "reproduce: flatsat test" in out.out and "1 of 2 scenario(s) passed" in out.err
    # not a terminal (a CI log): the command stays whole on one line, whatever its length, to be copied
    assert any(line.startswith("reproduce: flatsat test") and str(fail) in line and "--seed" in line
               for line in out.out.splitlines()), out.out
    assert main(["test", str(bad), *args]) == 2
    err = capsys.readouterr().err
    assert "requirement[0].signal: unknown signal 'satellite.power.bus_vv'" in err and "satellite.power.bus_v" in err
    assert "Traceback" not in err
    assert main(["test", str(tmp_path / "missing.toml"), *args]) == 2


async def test_replay_paces_by_sim_time_and_skips_replies(tmp_path: Path) -> None:
    res = await run_scenario(scenario(duration="20s"), board_cmd=TOY_BOARD, record_dir=tmp_path, model_factory=toy)
    wall = VirtualWall()
    sent: list[tuple[int, str, int]] = []

    async def publish(msg) -> None:
        sent.append((wall.now_ns(), msg.topic, msg.t_ns))

    n = await hil_cli.replay(res.recording, publish, speed=10.0, wait_s=1.0, wall=wall)
    assert n == len(sent) > 20
    assert "reply" not in {topic for _, topic, _ in sent}
    assert {"lamp.telemetry", "sim.waiting", "lamp.toggled"} <= {topic for _, topic, _ in sent}
    # message at sim time t goes out 1 s + t / 10 after the start (a virtual wall: exact)
    assert all(w == NS_PER_S + t // 10 for w, _, t in sent)


def test_export_takes_a_topic_the_board_sent(tmp_path: Path) -> None:
    """A board's requests are recorded coming in: `export --topic accel.job.submit` said there were none."""
    from emulator.protocol import Message, encode_message
    from emulator.recorder import Recorder

    rec = Recorder(tmp_path / "r.rec")
    for t in range(3):
        rec.write("control", "out", encode_message(Message("truth.sample", {"x": float(t)}, t_ns=t * NS_PER_S)))
        rec.write("board", "in", encode_message(Message("lamp.set", {"power_w": 10.0 + t}, t_ns=t * NS_PER_S)))
    rec.close()
    series = hil_cli.series_from_recording(tmp_path / "r.rec", ["lamp.set"])
    assert series.t_s == [0.0, 1.0, 2.0]
    assert series.get("lamp.set.power_w").tolist() == [10.0, 11.0, 12.0]


async def test_plot_and_export_read_a_recordings_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = scenario_from_dict({"scenario": {"name": "toy", "duration": "30s"},
                             "overrides": {"telemetry.truth_rate_hz": 0.5}})
    res = await run_scenario(sc, record_dir=tmp_path, model_factory=toy, wall=VirtualWall())
    from emulator.cli import main

    assert main(["export", str(res.recording), "--csv", str(tmp_path / "t.csv"), "--topic", "sim.clock"]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert head[0] == "t_s" and "satellite.energy_j" in head and "sim.clock.steps" in head
    assert len(lines) == 1 + 31  # sim.clock at 1 Hz, t = 0 .. 30 s; truth every other row
    capsys.readouterr()
    # a topic the recording does not hold (a typo): refused by name, not a CSV without its columns
    assert main(["export", str(res.recording), "--csv", str(tmp_path / "u.csv"), "--topic", "sim.clok"]) == 2
    err = capsys.readouterr().err
    assert "no sim.clok messages in this recording (did you mean 'sim.clock'?)" in err and "truth.sample" in err
    assert not (tmp_path / "u.csv").exists()
    assert main(["plot", str(res.recording), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        assert main(["export", str(res.recording), "--parquet", str(tmp_path / "t.parquet")]) == 2
        assert "needs pyarrow" in capsys.readouterr().err
    empty = scenario_from_dict({"scenario": {"name": "none", "duration": "5s"},
                                "overrides": {"telemetry.truth_rate_hz": 0}})
    res = await run_scenario(empty, record_dir=tmp_path, model_factory=toy, wall=VirtualWall())
    assert main(["plot", str(res.recording), "-o", str(tmp_path / "q.png")]) == 2
    assert "no truth.sample" in capsys.readouterr().err


def test_scenario_overrides_reach_list_items_by_name_and_by_index() -> None:
    """One dotted-override implementation (emulator.dotted): a scenario's [overrides] name a list item by its
    ``name`` or by ``[i]``, and a wrong one is refused naming the override."""
    from hil.runner import ScenarioRun

    sc = scenario_from_dict({"scenario": {"name": "x", "duration": 60},
                             "overrides": {"power.rails.payload.max_retries": 0, "power.rails[0].current_limit_a": 2.5,
                                           "thermal.nodes.battery.initial_temp_degc": 7.0}})
    power = ScenarioRun(sc).emu.model.config.power
    rails = {r.name: r for r in power.rails}
    assert rails["payload"].max_retries == 0 and power.rails[0].current_limit_a == 2.5
    assert power.rails[0].name != "payload"
    nodes = {n.name: n for n in ScenarioRun(sc).emu.model.config.thermal.nodes}
    assert nodes["battery"].initial_temp_degc == 7.0
    bad = scenario_from_dict({"scenario": {"name": "x", "duration": 60},
                              "overrides": {"power.rails.payloda.max_retries": 0}})
    with pytest.raises(ScenarioError) as exc:
        ScenarioRun(bad)
    (p,) = exc.value.problems
    assert (p.path, p.override, p.kind) == ('overrides."power.rails.payloda.max_retries"',
                                            "power.rails.payloda.max_retries", "key")
    assert "did you mean 'payload'" in p.message and "payload" in p.valid


def test_a_scenario_may_name_environment_signals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The truth a scenario's signals are checked against holds the environment before the first step."""
    sc = tmp_path / "env.toml"
    sc.write_text('[scenario]\nname = "env"\nconfig = "suncatcher-proto.toml"\nduration = "2m"\n'
                  '[[requirement]]\nkind = "always"\nsignal = "satellite.environment.sunlit_frac"\nop = ">="\n'
                  'value = 0\n')
    from emulator.cli import main

    assert main(["test", str(sc), "--record", str(tmp_path / "rec"), "--quiet"]) == 0
    assert "unknown signal" not in capsys.readouterr().err

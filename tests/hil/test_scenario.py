"""Scenario files: structure, durations, every problem reported at once with its key path, names checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from toy_model import Lamp

from emulator.config import RunConfig
from emulator.series import flatten
from hil.runner import HilEmulator
from hil.scenario import (
    AlwaysRequirement,
    FaultAction,
    ScenarioError,
    check_against,
    key_path,
    load_scenario,
    scenario_from_dict,
)

GOOD = """
[scenario]
name = "toy"
description = "a lamp under brownouts"
duration = "1h"
seed = 7
step_s = 1.0
epoch_utc = 2026-03-20T00:00:00Z

[overrides]
"telemetry.truth_rate_hz" = 0.5

[[timeline]]
at = "20m"
do = "clear"
label = "dim"

[[timeline]]
at = "10m"
do = "fault"
name = "lamp.brownout"
params = { factor = 0.5 }
label = "dim"

[[timeline]]
at = 0
do = "control"
topic = "clock.status"

[[requirement]]
kind = "always"
signal = "satellite.factor"
op = ">="
value = 0.5
after = "90s"
why = "below half power the lamp is useless"

[[requirement]]
kind = "response"
trigger = { topic = "lamp.set", where = { on = true } }
response = { topic = "lamp.toggled", where = { on = true } }
within = "5s"

[[requirement]]
kind = "count"
topic = "lamp.toggled"
op = ">="
value = 1
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toy_emulator() -> HilEmulator:
    return HilEmulator(Lamp(), RunConfig(), board_url=None, control_url=None, record_path=None)


def names(emu: HilEmulator, board: str | None = "process") -> dict:
    return {"signals": flatten(emu.truth()), "fault_params": emu.fault_schemas(), "catalogue": emu.catalogue,
            "board": board}


def test_a_good_file_loads_with_durations_in_seconds_and_the_timeline_in_time_order(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.name == "toy" and sc.duration_s == 3600.0 and sc.seed == 7
    assert [(i, a.at) for i, a in sc.timeline] == [(2, 0.0), (1, 600.0), (0, 1200.0)]
    fault = sc.timeline[1][1]
    assert isinstance(fault, FaultAction) and fault.params == {"factor": 0.5}
    req = sc.requirements[0][1]
    assert isinstance(req, AlwaysRequirement) and req.after == 90.0 and req.why.startswith("below")
    assert sc.overrides == {"telemetry.truth_rate_hz": 0.5}
    assert sc.signals() == ["satellite.factor"]
    check_against(sc, **names(toy_emulator()))  # every name exists: no error


def test_every_structural_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    text = """
[scenario]
name = "bad"
duration = "10x"
sed = 3
[[timeline]]
at = "2m"
do = "faul"
[[timeline]]
at = "2m"
do = "fault"
nme = "lamp.brownout"
[[timeline]]
at = "3m"
do = "clear"
label = "nope"
[[requirement]]
kind = "always"
signal = "satellite.factor"
op = "=<"
value = 1
[[requirement]]
kind = "sometimes"
[extra]
"""
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    err = exc.value
    by_path = {p.path: p for p in err.problems}
    assert set(by_path) == {"scenario.duration", "scenario.sed", "timeline[0].do", "timeline[1].nme",
                            "timeline[1].name", "requirement[0].op", "requirement[1].kind", "extra"}
    assert "did you mean 'seed'" in by_path["scenario.sed"].message
    assert "did you mean 'fault'" in by_path["timeline[0].do"].message
    assert by_path["timeline[0].do"].valid == ["board_kill", "board_restart", "clear", "control", "fault"]
    assert "did you mean 'name'" in by_path["timeline[1].nme"].message
    assert by_path["requirement[0].op"].valid == ["<", "<=", ">", ">=", "==", "!="]
    assert "always" in by_path["requirement[1].kind"].valid
    assert by_path["extra"].valid == ["overrides", "requirement", "scenario", "timeline"]
    assert str(err).startswith(f"{tmp_path / 's.toml'}: invalid scenario (8 problems)")


@pytest.mark.parametrize(("duration", "problem"), [
    (0, "Input should be greater than 0"),  # was a ZeroDivisionError traceback
    ("0s", "Input should be greater than 0"),
    (1e12, "Input should be less than or equal to 315360000"),
    ("10M", "bad duration '10M'"),  # the units are lower case: it was taken as ten minutes
])
def test_the_runs_duration_is_positive_at_most_ten_years_and_in_the_documented_units(duration: Any,
                                                                                     problem: str) -> None:
    data = {"scenario": {"name": "x", "duration": duration},
            "requirement": [{"kind": "final", "signal": "s", "op": ">", "value": 1}]}
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data, source="x.toml")
    assert [p.path for p in exc.value.problems] == ["scenario.duration"]
    assert problem in exc.value.problems[0].message


def test_timeline_consistency_is_checked(tmp_path: Path) -> None:
    data = {"scenario": {"name": "x", "duration": "10m"},
            "timeline": [{"at": "11m", "do": "board_kill"},
                         {"at": "1m", "do": "clear", "label": "dimm"},
                         {"at": "2m", "do": "fault", "name": "lamp.brownout", "label": "dim"}],
            "requirement": [{"kind": "always", "signal": "s", "op": "<", "value": 1, "after": "10m"}]}
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data, source="x.toml")
    by_path = {p.path: p.message for p in exc.value.problems}
    assert "after the end of the run" in by_path["timeline[0].at"]
    # the clear comes before the fault it names (timeline order is by time, not file order)
    assert "no fault labelled 'dimm' is injected before t=60" in by_path["timeline[1].label"]
    assert "leaves nothing to check" in by_path["requirement[0].after"]


def test_toml_syntax_errors_keep_the_parsers_line_number(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, "[scenario]\nname = \n"))
    assert "line 2" in str(exc.value)
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")


def test_config_is_found_next_to_the_scenario_then_in_configs(tmp_path: Path) -> None:
    (tmp_path / "sat.toml").write_text("name = 'x'\n", encoding="utf-8")
    base = {"name": "x", "duration": 60}
    sc = scenario_from_dict({"scenario": {**base, "config": "sat.toml"}}, base_dir=tmp_path)
    assert sc.config_path == (tmp_path / "sat.toml").resolve()
    sc = scenario_from_dict({"scenario": {**base, "config": "suncatcher-proto.toml"}}, base_dir=tmp_path)
    assert sc.config_path is not None and sc.config_path.parent.name == "configs"
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict({"scenario": {**base, "config": "nope.toml"}}, base_dir=tmp_path)
    assert exc.value.problems[0].path == "scenario.config"


def test_names_are_checked_against_the_emulator_all_at_once() -> None:
    data = {"scenario": {"name": "x", "duration": "10m"},
            "timeline": [{"at": 10, "do": "fault", "name": "lamp.brownot"},
                         {"at": 20, "do": "fault", "name": "lamp.brownout", "params": {"factor": 3}},
                         {"at": 30, "do": "control", "topic": "clock.stauts"},
                         {"at": 40, "do": "control", "topic": "lamp.set", "payload": {"on": True}},
                         {"at": 50, "do": "board_restart", "down": "10s"}],
            "requirement": [{"kind": "final", "signal": "satellite.energy", "op": ">", "value": 0},
                            {"kind": "count", "topic": "lamp.toggeld", "op": ">=", "value": 1},
                            {"kind": "response", "trigger": {"topic": "lamp.set", "where": {"onn": True}},
                             "response": {"topic": "lamp.toggled"}, "match": "job_id", "within": 5}]}
    sc = scenario_from_dict(data, source="x.toml")
    with pytest.raises(ScenarioError) as exc:
        check_against(sc, **names(toy_emulator(), board="url"))
    by_path = {p.path: p for p in exc.value.problems}
    assert "did you mean 'lamp.brownout'" in by_path["timeline[0].name"].message
    assert by_path["timeline[0].name"].valid == ["lamp.brownout"]
    assert "timeline[1].params.factor" in by_path
    assert "did you mean 'clock.status'" in by_path["timeline[2].topic"].message
    assert "board-plane command" in by_path["timeline[3].topic"].message
    assert "real board at --board-url" in by_path["timeline[4].do"].message
    assert "satellite.energy_j" in by_path["requirement[0].signal"].valid
    assert "did you mean 'lamp.toggled'" in by_path["requirement[1].topic"].message
    assert "did you mean 'on'" in by_path["requirement[2].trigger.where.onn"].message
    assert "has no payload field 'job_id'" in by_path["requirement[2].match"].message
    # match is missing from both the trigger's and the response's payload: two problems at one path
    assert [p.path for p in exc.value.problems].count("requirement[2].match") == 2
    assert len(exc.value.problems) == 10


def test_key_paths_read_like_the_file() -> None:
    assert key_path(("timeline", 2, "params", "factor")) == "timeline[2].params.factor"
    assert key_path(("overrides", "power.battery.capacity_wh")) == 'overrides."power.battery.capacity_wh"'


def test_values_that_name_things_are_checked_against_the_model_with_did_you_mean(tmp_path: Path) -> None:
    from hil.runner import ScenarioRun

    root = Path(__file__).resolve().parents[2]
    text = (root / "configs" / "scenarios" / "latchup.toml").read_text()
    good = text.replace('config = "suncatcher-proto.toml"', f'config = "{root / "configs" / "suncatcher-proto.toml"}"')
    bad = (good.replace('where = { rail = "payload" }', 'where = { rail = "paylod" }')
           .replace('where = { state = "failed" }', 'where = { state = "faild" }')
           + '\n[[timeline]]\nat = "1h"\ndo = "fault"\nname = "sensor.stuck"\nparams = { channel = "thermal.batery" }\n')
    path = tmp_path / "typo.toml"
    path.write_text(bad)
    with pytest.raises(ScenarioError) as err:
        ScenarioRun(load_scenario(path), record_dir=None)
    text = str(err.value)
    assert "requirement[0].trigger.where.rail: unknown rail 'paylod' (did you mean 'payload'?)" in text
    assert "requirement[2].where.state: unknown state value 'faild' (did you mean 'failed'?)" in text
    assert "params.channel: unknown channel 'thermal.batery' (did you mean 'thermal.battery'?)" in text
    path.write_text(good)
    ScenarioRun(load_scenario(path), record_dir=None)  # the good file passes the check


def test_a_wrong_entry_does_not_hide_the_checks_across_entries(tmp_path: Path) -> None:
    """A typo in one requirement's operator: the timeline's entry past the end of the run and its clear of a label
    nothing injected are still reported, in the same error (not one round of fixes each)."""
    text = """
[scenario]
name = "typos"
duration = "1h"
[[timeline]]
at = "2h"
do = "fault"
name = "lamp.brownout"
[[timeline]]
at = "10m"
do = "clear"
label = "nope"
[[requirement]]
kind = "always"
signal = "satellite.factor"
op = "=>"
value = 1
"""
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    assert [p.path for p in exc.value.problems] == ["requirement[0].op", "timeline[0].at", "timeline[1].label"]


def test_every_override_that_cannot_be_set_comes_at_once() -> None:
    from emulator.config import load_config
    from emulator.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {"power.rails.paylod.max_retries": 1, "power.rails[9].on": True})
    assert [p.override for p in exc.value.problems] == ["power.rails.paylod.max_retries", "power.rails[9].on"]
    assert str(exc.value).startswith("2 overrides cannot be set")
    # one that cannot be set and one that can but is wrong (an unknown key): both, in one error
    over = {"power.rails.paylod.max_retries": 1, "power.battery.cell_capacity_ahh": 1.0}
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", over, labels={k: f"--set {k}={v}" for k, v in over.items()})
    assert [p.path for p in exc.value.problems] == ["power.rails.paylod.max_retries",
                                                    "power.battery.cell_capacity_ahh"]
    assert "(2 problems; suncatcher-proto itself is fine)" in str(exc.value)

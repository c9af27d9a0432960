"""Run-config validation: unknown keys, wrong types and impossible values name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emulator.config import RunConfig, config_error
from emulator.errors import ConfigError


def err(data: dict) -> ConfigError:
    with pytest.raises(ValidationError) as exc:
        RunConfig.model_validate(data)
    return config_error(exc.value, RunConfig, "test.toml")


def test_misspelt_key_names_the_path_and_suggests() -> None:
    e = err({"sim": {"step_sec": 1.0}})
    assert e.field == "sim.step_sec"
    assert "did you mean 'step_s'" in str(e)
    assert "step_s" in e.valid and str(e).startswith("test.toml")


def test_unknown_table_lists_valid_tables() -> None:
    e = err({"simm": {}})
    assert "did you mean 'sim'" in str(e)


def test_wrong_type_and_out_of_range_values() -> None:
    e = err({"sim": {"step_s": "fast", "mode": "warp"}, "telemetry": {"truth_rate_hz": -1}})
    text = str(e)
    assert "sim.step_s" in text and "sim.mode" in text and "telemetry.truth_rate_hz" in text
    assert "3 problems" in text
    assert "'realtime', 'scaled', 'afap' or 'lockstep'" in text


def test_epoch_needs_a_time_zone() -> None:
    e = err({"sim": {"epoch_utc": "2026-06-21T00:00:00"}})
    assert "time zone" in str(e) and e.field == "sim.epoch_utc"


def test_rates_must_be_physical() -> None:
    e = err({"telemetry": {"rates_hz": {"eps.telemetry": 5000.0}}})
    assert "eps.telemetry" in str(e)


def test_dotted_overrides_reach_named_list_items() -> None:
    from emulator.config import set_dotted

    raw = {"power": {"rails": [{"name": "obc", "max_retries": 3}, {"name": "payload", "max_retries": 3}]}}
    set_dotted(raw, "power.rails.payload.max_retries", 0)
    set_dotted(raw, "power.rails[0].max_retries", 1)
    set_dotted(raw, "sim.seed", 4)
    assert raw["power"]["rails"] == [{"name": "obc", "max_retries": 1}, {"name": "payload", "max_retries": 0}]
    assert raw["sim"] == {"seed": 4}
    with pytest.raises(ConfigError) as exc:
        set_dotted(raw, "power.rails.payloda.max_retries", 0)
    assert "did you mean 'payload'" in str(exc.value) and exc.value.valid == ["obc", "payload"]
    with pytest.raises(ConfigError):
        set_dotted(raw, "power.rails[7].max_retries", 0)


@pytest.mark.parametrize(("override", "path", "says"), [
    ({"accelerator.rail": "paylod"}, "accelerator.rail", "unknown rail 'paylod' (did you mean 'payload'?)"),
    ({"power.rails.payload.thermal_node": "paylod_board"}, "power.rails.payload.thermal_node", "unknown thermal node"),
    ({"power.shed.critical_v": 30.0}, "power.shed", "critical_v (30.0 V) must be below safe_v"),
    ({"orbit.inc_deg": 50.0}, "orbit.inc_deg", "not used by a sun-synchronous orbit"),
])
def test_a_check_across_fields_names_the_key_and_blames_the_override(override: dict, path: str, says: str) -> None:
    """A model's own check (a rail that is not there, thresholds out of order) is located at the key it names and
    blamed on the override that caused it; the table it checked is not printed."""
    from emulator.config import load_config

    key = next(iter(override))
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", override, labels={key: f"--set {key}={override[key]}"})
    e = exc.value
    assert [p.path for p in e.problems] == [path]
    assert e.problems[0].message.startswith(says) and e.problems[0].override == key
    text = str(e)
    assert text.startswith(f"invalid --set {key}=") and "suncatcher-proto itself is fine" in text
    assert "Value error" not in text and "{" not in text and len(text) < 600


def test_a_check_across_fields_in_a_file_blames_the_file(tmp_path: Path) -> None:
    from emulator.config import load_config

    path = tmp_path / "mine.toml"
    path.write_text('extends = "suncatcher-proto"\n[accelerator]\nrail = "paylod"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"sim.seed": 3}, labels={"sim.seed": "--seed 3"})
    text = str(exc.value)
    assert text.startswith(f"{path}: invalid config (1 problem)")
    assert "itself is fine" not in text and "accelerator.rail: unknown rail 'paylod'" in text and "{" not in text


def test_an_infinite_number_is_refused_wherever_it_is_given() -> None:
    """1e400 reads as infinity: no config value is meant to be infinite (a limit that never trips is a large
    number or its own switch), so it is refused by name rather than run."""
    from emulator.config import load_config

    key = "power.rails.payload.current_limit_a"
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {key: float("inf")}, labels={key: f"--set {key}=1e400"})
    assert [(p.path, p.message) for p in exc.value.problems] == [
        ("power.rails.payload.current_limit_a", "Input should be a finite number (got inf)")]
    e = err({"sim": {"step_s": float("inf")}})
    assert e.field == "sim.step_s" and "finite number" in str(e)


def test_every_problem_of_the_run_tables_and_the_model_comes_at_once(tmp_path: Path) -> None:
    """A typo in [sim] and one in [power.battery] (or two overrides): one error lists both, not one per attempt."""
    from emulator.config import load_config

    path = tmp_path / "typos.toml"
    path.write_text('extends = "suncatcher-proto"\n[sim]\nstep_ss = 1\n[power.battery]\ncapacityy = 3\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.path for p in exc.value.problems] == ["sim.step_ss", "power.battery.capacityy"]
    assert str(exc.value).startswith(f"{path}: invalid config (2 problems)")
    over = {"power.battery.cell_capacity_ahh": 1, "sim.step_s": -1}
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", over, labels={k: f"--set {k}={v}" for k, v in over.items()})
    assert {p.path for p in exc.value.problems} == {"sim.step_s", "power.battery.cell_capacity_ahh"}
    assert "2 problems; suncatcher-proto itself is fine" in str(exc.value)
    assert "--set sim.step_s=-1" in str(exc.value) and "--set power.battery.cell_capacity_ahh=1" in str(exc.value)


def test_a_misspelt_item_name_in_a_file_that_extends_says_so(tmp_path: Path) -> None:
    """[[power.rails]] name = "paylod" over suncatcher-proto adds a rail (items merge by name) that lacks its keys:
    the error says which name made it and the name meant, not only that rating_w is missing."""
    from emulator.config import load_config

    path = tmp_path / "mine.toml"
    path.write_text('extends = "suncatcher-proto"\n[[power.rails]]\nname = "paylod"\ncurrent_limit_a = 40.0\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    problem = exc.value.problems[0]
    assert problem.path == "power.rails.paylod.rating_w"
    assert "'paylod' names no item of power.rails (did you mean 'payload'?)" in problem.message
    assert "(did you mean 'payload'?)" in str(exc.value)


@pytest.mark.parametrize(("key", "path"), [("power.battery.initial_soc", "power.battery.initial_soc"),
                                           ("power.rails.payload.max_retries", "power.rails.payload.max_retries"),
                                           ("sim.step_s", "sim.step_s")])
def test_true_or_false_is_not_taken_for_a_number(key: str, path: str) -> None:
    """pydantic would read true as 1 (initial_soc = true ran with a full battery): a config table refuses it."""
    from emulator.config import load_config

    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {key: True}, labels={key: f"--set {key}=true"})
    assert [(p.path, p.message) for p in exc.value.problems] == [(path, "a number is needed here, not true")]
    assert "suncatcher-proto itself is fine" in str(exc.value)


def test_a_check_across_fields_does_not_blame_an_override_it_is_not_about(tmp_path: Path) -> None:
    """The file's own load names a rail that is not there (a check on all of [power]); an override elsewhere in
    [power] is not blamed for it."""
    from emulator.config import load_config

    path = tmp_path / "mine.toml"
    path.write_text('extends = "suncatcher-proto"\n[[power.loads]]\nname = "obc"\nrail = "nope"\n')
    key = "power.battery.initial_soc"
    with pytest.raises(ConfigError) as exc:
        load_config(path, {key: 0.5}, labels={key: f"--set {key}=0.5"})
    assert str(exc.value).startswith(f"{path}: invalid config (1 problem)")
    problem = exc.value.problems[0]
    assert problem.path == "power" and "unknown rail 'nope'" in problem.message and problem.override is None


@pytest.mark.parametrize("key", ["power.rails.payload.max_retries", "power.rails[3].max_retries"])
def test_a_problem_in_a_list_item_is_located_by_the_items_name(key: str, tmp_path: Path) -> None:
    """pydantic locates list items by index (power.rails.3); the user names them (``--set
    power.rails.payload.max_retries``): the problem says the name, given by name or by index, in a file too."""
    from emulator.config import load_config

    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {key: -1}, labels={key: f"--set {key}=-1"})
    e = exc.value
    assert [(p.path, p.override) for p in e.problems] == [("power.rails.payload.max_retries", key)]
    assert e.field == "power.rails.payload.max_retries"
    assert "\n  power.rails.payload.max_retries: Input should be greater than or equal to 0" in str(e)
    assert ".3." not in str(e) and "suncatcher-proto itself is fine" in str(e)
    path = tmp_path / "mine.toml"
    path.write_text('extends = "suncatcher-proto"\n[[thermal.nodes]]\nname = "battery"\ncapacity_j_per_k = 5\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.path for p in exc.value.problems] == ["thermal.nodes.battery.capacity_j_per_k"]
    assert "thermal.nodes.battery.capacity_j_per_k: unknown key (did you mean 'capacity_j_k'?)" in str(exc.value)

"""Run-config validation: unknown keys, wrong types and impossible values name the key path."""

from __future__ import annotations

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

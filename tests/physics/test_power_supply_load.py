"""The power model's edge to a bench supply: the ``supply`` load source (an input: what a real board draws), what a
rail delivers (an output: on, volts, cuts), converter dropout (brown-out), and the ledger with measured loads."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from emulator.config import RUN_TABLES
from emulator.errors import ModelError
from emulator.models.power import ArrayConfig, LoadConfig, PowerConfig, PowerSystem, RailConfig
from emulator.models.satellite import Satellite, SatelliteConfig

ENERGY_CLOSURE_REL = 1e-3   # the issue: the ledger closes to better than 0.1 % with measured loads
POWER_TOL_W = 1e-9
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def supply_config(**kw) -> PowerConfig:
    base = {
        "arrays": [ArrayConfig(name="wing", area_m2=0.1, mount="tracking")],
        "rails": [RailConfig(name="obc", voltage_v=3.3, rating_w=10, current_limit_a=2.0),
                  RailConfig(name="payload", voltage_v=12.0, rating_w=60, current_limit_a=2.0, trip_delay_s=0.01,
                             max_retries=0, shed_mode="safe"),
                  RailConfig(name="mcu", voltage_v=5.0, dropout_v=0.5, rating_w=10, current_limit_a=1.0),
                  RailConfig(name="raw", kind="unregulated", efficiency=0.99, rating_w=20, current_limit_a=2.0)],
        "loads": [LoadConfig(name="obc", rail="obc", power_w=1.0),
                  LoadConfig(name="board", rail="payload", source="supply"),
                  LoadConfig(name="mcu_board", rail="mcu", source="supply", power_w=0.5)],
    }
    base.update(kw)
    return PowerConfig(**base)


def test_supply_load_is_an_input_that_becomes_the_rail_demand() -> None:
    p = PowerSystem(supply_config())
    assert p.supply_load_rail == {"board": 1, "mcu_board": 2}
    assert p.supply_load_w == {"board": 0.0, "mcu_board": 0.5}   # power_w until the first reading
    p.step(1.0, [1000.0], [20.0], 20.0, [0.0] * 4)
    assert p.rails[1].p_out == pytest.approx(0.0, abs=POWER_TOL_W)
    assert p.rails[2].p_out == pytest.approx(0.5, abs=POWER_TOL_W)
    p.set_supply_load("board", 18.0)
    p.step(1.0, [1000.0], [20.0], 20.0, [0.0] * 4)
    pay = p.rails[1]
    assert pay.p_out == pytest.approx(18.0, abs=POWER_TOL_W)
    assert pay.i_out == pytest.approx(18.0 / 12.0, abs=1e-12)
    assert pay.p_in == pytest.approx(18.0 / 0.9, abs=1e-9)
    # other demand on the same rail adds (heaters, a simulated accelerator)
    p.step(1.0, [1000.0], [20.0], 20.0, [0.0, 2.0, 0.0, 0.0])
    assert pay.p_out == pytest.approx(20.0, abs=POWER_TOL_W)


def test_supply_load_rejects_what_a_supply_cannot_measure() -> None:
    p = PowerSystem(supply_config())
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ModelError, match="finite and >= 0"):
            p.set_supply_load("board", bad)
    with pytest.raises(ModelError, match="source = 'supply'") as exc:
        p.set_supply_load("obc", 1.0)   # a fixed load is not an input
    assert exc.value.valid == ["board", "mcu_board"]
    assert p.supply_load_w["board"] == 0.0


def test_a_measured_overcurrent_trips_the_limiter() -> None:
    p = PowerSystem(supply_config())
    p.set_supply_load("board", 12.0 * 2.5)   # 2.5 A at 12 V over a 2 A limiter
    cuts = p.rails[1].cuts
    for _ in range(3):
        p.step(0.01, [1000.0], [20.0], 20.0, [0.0] * 4)
    pay = p.rails[1]
    assert pay.tripped and pay.latched and not pay.on
    assert pay.cuts == cuts + 1


def test_ledger_closes_with_a_measured_load_that_moves_every_step() -> None:
    p = PowerSystem(supply_config())
    rng = np.random.default_rng(7)
    for k in range(20_000):
        if k % 10 == 0:   # a 10 Hz readback against a 100 Hz physics step
            p.set_supply_load("board", float(rng.uniform(0.0, 22.0)))
            p.set_supply_load("mcu_board", float(rng.uniform(0.0, 4.0)))
        sun = 1200.0 if (k // 3000) % 2 == 0 else 0.0
        p.step(0.01, [sun], [20.0], 20.0, [0.0] * 4)
    bal = p.balance()
    assert bal["load_j"] > 1000.0
    assert abs(bal["residual_j"]) / bal["array_j"] < ENERGY_CLOSURE_REL


def test_cuts_count_every_off_even_one_that_never_spans_a_step() -> None:
    p = PowerSystem(supply_config())
    r = p.rail("payload")
    assert r.cuts == 0 and r.on
    p.set_rail("payload", False)
    p.set_rail("payload", True)      # off and on again between two steps: the device must still be cycled
    assert r.on and r.cuts == 1
    p.set_rail("payload", True)
    assert r.cuts == 1
    assert p.truth()["rails"]["payload"]["cuts"] == 1


def test_regulated_rail_browns_out_below_its_converter_headroom() -> None:
    p = PowerSystem(supply_config())
    mcu, raw, pay = p.rail("mcu"), p.rail("raw"), p.rail("payload")
    p.step(1.0, [0.0], [20.0], 20.0, [0.0] * 4)
    assert mcu.v_out == 5.0 and pay.v_out == 12.0 and raw.v_out == pytest.approx(p.bus_v)
    p.bus_v = 5.3                    # what a sagging pack would give (below 5.0 + 0.5 V of headroom)
    p._set_rail_outputs()
    assert mcu.v_out == pytest.approx(4.8)
    assert pay.v_out == 12.0         # no dropout_v: an ideal converter holds its set point
    assert raw.v_out == pytest.approx(5.3)


def test_a_fixed_load_still_needs_its_power() -> None:
    with pytest.raises(ValidationError, match="a fixed load needs power_w"):
        LoadConfig(name="radio", rail="comms")
    assert LoadConfig(name="board", rail="payload", source="supply").power_w == 0.0


def test_dropout_only_on_regulated_rails() -> None:
    with pytest.raises(ValidationError, match="dropout_v is the headroom"):
        RailConfig(name="x", kind="unregulated", dropout_v=0.3, rating_w=1, current_limit_a=1)


# -- the satellite: an external board on a supply -----------------------------------------------------------
def jetson_on_supply() -> Satellite:
    raw = tomllib.loads((CONFIGS / "cubesat-6u-jetson-external.toml").read_text(encoding="utf-8"))
    for table in RUN_TABLES:
        raw.pop(table, None)
    raw["power"].setdefault("loads", []).append({"name": "jetson", "rail": "payload", "source": "supply",
                                                 "thermal_node": "accel_die"})
    return Satellite(SatelliteConfig.model_validate(raw), epoch_utc=dt.datetime(2026, 6, 21, tzinfo=dt.UTC), seed=1,
                     step_s=1.0)


def test_external_board_on_a_supply_is_measured_not_reported_twice() -> None:
    sat = jetson_on_supply()
    assert sat.supply_loads() == {"jetson": "payload"}
    step_ns = 1_000_000_000
    for k in range(3):
        sat.step(k * step_ns, step_ns)
    assert sat.accel.load_w > 0          # the board's own default/reported power, before any reading
    pay = sat.power.rail("payload")
    assert pay.p_out == pytest.approx(0.0, abs=POWER_TOL_W)   # only the measured draw (none yet) is on the rail
    cold = jetson_on_supply()            # the same satellite whose board draws nothing
    for k in range(3):
        cold.step(k * step_ns, step_ns)
    sat.set_supply_load("jetson", 9.0)
    die = sat.thermal.index["accel_die"]
    for k in range(3, 60):
        sat.step(k * step_ns, step_ns)
        cold.step(k * step_ns, step_ns)
    assert pay.p_out == pytest.approx(9.0, rel=1e-9)
    assert float(sat.thermal.T[die]) > float(cold.thermal.T[die]) + 0.1   # the measured watts heat the die
    assert sat.power.soc < cold.power.soc                                 # and drain the battery
    d = sat.rail_delivery("payload")
    assert d.on and d.voltage_v == 12.0 and d.current_limit_a == pay.limit_a


def test_delivery_goes_dark_when_the_board_must_be_power_cycled() -> None:
    sat = jetson_on_supply()
    step_ns = 1_000_000_000
    sat.step(0, step_ns)
    before = sat.rail_delivery("payload")
    assert before.on
    sat.accel._thermal_latched = True    # what a thermal shutdown leaves behind (only a power cycle clears it)
    sat.accel._announce("thermal_shutdown")
    d = sat.rail_delivery("payload")
    assert not d.on and d.voltage_v == 0.0 and d.cuts == before.cuts + 1
    assert sat.power.rail("payload").on   # the rail itself still conducts

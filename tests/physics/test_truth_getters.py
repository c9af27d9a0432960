"""A model's truth getters (SpacecraftModel.truth_getter: what a run's requirements read at every step without the
truth tree) give exactly the tree's value, for every key of every shipped single-satellite config, through faults
that trip rails, latch up the chip, lose cells and strings, and change the heaters."""

from __future__ import annotations

import math
from typing import Any

import pytest

from emulator.config import load_config
from emulator.runtime import Emulator
from emulator.series import flatten, resolve_path, value_of

S = 1_000_000_000
CONFIGS = ["suncatcher-proto", "cubesat-6u-jetson", "cubesat-6u-jetson-external", "starcloud-like"]
#: (step, fault, params): each fault at its step of the run
FAULTS = [(200, "eps.rail.short", {"rail": "payload", "extra_a": 65.0}),
          (400, "radiation.sel", {}),
          (700, "eps.battery.cell_loss", {}),
          (900, "eps.array.string_fail", {"strings": 1}),
          (1100, "radiation.sdc", {}),
          (1300, "radiation.sefi", {})]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_getter_gives_the_trees_value(config: str) -> None:
    emu = Emulator.from_config(load_config(config, {"sim.seed": 4}))
    model = emu.model
    tree = model.truth()
    keys = list(flatten(tree))
    getters = {}
    for key in keys:
        path = resolve_path(tree, key.split("."))
        assert path is not None, key
        getter = model.truth_getter(path)
        if getter is not None:
            getters[key] = getter
    # what requirements and plots read has getters: every rail and temperature, the bus, the battery, the chip
    assert {"power.bus_v", "power.soc", "power.battery_a", "power.array_w", "accelerator.die_temp_degc",
            "accelerator.units_done", "accelerator.verdicts.false_alarm", "t_ns"} <= getters.keys()
    assert {k for k in keys if k.startswith(("thermal.temps_degc.", "power.rails."))} <= getters.keys()
    assert len(getters) >= 0.6 * len(keys), sorted(set(keys) - getters.keys())
    schemas = emu.fault_schemas()
    faults = {step: (name, params) for step, name, params in FAULTS if name in schemas}
    checked: dict[str, set[float]] = {key: set() for key in getters}
    for step in range(1, 1501):
        if step in faults:
            name, params = faults[step]
            if name in ("eps.array.string_fail",):
                params = {"array": model.power.arrays[0].name, **params}
            elif name == "eps.battery.cell_loss":
                params = {"group": 0, "mode": "open"}
            emu.inject_fault(name, params)
        model.step(model.t_ns, 2 * S)
        flat = flatten(model.truth())
        for key, getter in getters.items():
            got = value_of(getter())
            assert _same(got, flat[key]), (config, step, key, got, flat[key])
            checked[key].add(got)
    # the run moved what the getters read (not a comparison of constants): rails tripped, temperatures changed
    moved = {key for key, seen in checked.items() if len(seen) > 1}
    assert {"power.soc", "power.battery_a", "accelerator.die_temp_degc", "t_ns"} <= moved
    assert any(k.startswith("power.rails.") and k.endswith(".trips") for k in moved)


def test_a_path_it_does_not_know_has_no_getter() -> None:
    model: Any = Emulator.from_config(load_config("suncatcher-proto")).model
    for path in [(), ("power",), ("power", "nothing"), ("power", "rails", "nothing", "on"),
                 ("thermal", "temps_degc", "nothing"), ("accelerator", "radiation", "counts", "nothing", "total"),
                 ("accelerator", "verdicts", "nothing"), ("thermal", "heaters", "nothing", "on"),
                 ("name",), ("power", "mode"), ("nothing", "at", "all")]:
        assert model.truth_getter(path) is None, path

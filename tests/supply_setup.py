"""Configs for the closed-loop supply tests: the external-Jetson 6U satellite, its payload rail played by a bench
supply (the in-test SCPI instrument of scpi_supply_sim.py), realtime at 10 ms steps."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from emulator.config import Config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STEP_S = 0.01   # 100 Hz physics: a rail cut reaches the supply within a step


def raw_config(resource: str, **supply: Any) -> dict[str, Any]:
    raw = tomllib.loads((CONFIGS / "cubesat-6u-jetson-external.toml").read_text(encoding="utf-8"))
    raw["power"].setdefault("loads", []).append({"name": "jetson", "rail": "payload", "source": "supply",
                                                 "thermal_node": "accel_die"})
    raw["sim"].update({"mode": "realtime", "step_s": STEP_S})
    raw["sim"].pop("duration_s", None)
    raw["links"] = {"board": "none", "control": "none"}
    raw["bench"] = {"supply": {"name": "psu", "resource": resource, "driver": "keysight_e36300", "rail": "payload",
                               "max_v": 13.0, "max_a": 3.0, "guard": False, "readback_hz": 20.0, **supply}}
    return raw


def supply_config(resource: str, *, overrides: dict[str, Any] | None = None, **supply: Any) -> Config:
    raw = raw_config(resource, **supply)
    raw.pop("links")
    over = {"links.board": None, "links.control": None, **(overrides or {})}
    return load_config(None, over, data=raw)

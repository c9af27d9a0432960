"""Every message a shipped config publishes takes the fast encoder (ormsgpack) and not msgpack's fallback.

The fallback writes the same bytes (tests/unit/test_codec.py), so a payload that grew a numpy scalar would go
unnoticed but cost 2-3x per message; this test names the topic and the value instead.
"""

from __future__ import annotations

from typing import Any

import ormsgpack
import pytest

from emulator.clock import VirtualWall
from emulator.config import load_config
from emulator.runtime import Emulator

SHIPPED = ["suncatcher-proto", "cubesat-6u-jetson", "cubesat-6u-jetson-external", "starcloud-like",
           "suncatcher-cluster"]


def _numpy_leaf(obj: Any, path: str = "payload") -> str | None:
    """Where in ``obj`` a value ormsgpack refuses sits (None: nowhere)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (found := _numpy_leaf(v, f"{path}.{k}")) is not None:
                return found
        return None
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            if (found := _numpy_leaf(v, f"{path}[{i}]")) is not None:
                return found
        return None
    try:
        ormsgpack.packb(obj)
    except TypeError:
        return f"{path} = {obj!r} ({type(obj).__name__})"
    return None


@pytest.mark.parametrize("config", SHIPPED)
async def test_published_payloads_take_the_fast_encoder(config: str) -> None:
    cfg = load_config(config, {"sim.mode": "afap", "sim.seed": 3})
    refused: dict[str, str] = {}
    seen: set[str] = set()

    def observe(t_ns: int, plane: str, direction: str, msg: Any) -> None:
        if direction != "out":
            return
        seen.add(msg.topic)
        try:
            ormsgpack.packb(msg.payload)
        except TypeError:
            refused.setdefault(msg.topic, _numpy_leaf(msg.payload) or "?")

    emu = Emulator.from_config(cfg, wall=VirtualWall(), board_url=None, control_url=None, record_path=None)
    async with emu:
        emu.add_message_observer(observe)
        await emu.run_for(120)
    assert {"sim.clock", "truth.sample"} <= seen and any(t.endswith("eps.telemetry") for t in seen), sorted(seen)
    assert refused == {}

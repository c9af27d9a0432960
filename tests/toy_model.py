"""A tiny spacecraft for runtime tests: proves the runtime assumes nothing about the satellite's shape."""

from __future__ import annotations

from typing import Any

from emulator.errors import CommandError
from emulator.models.base import (
    Command,
    Fault,
    Interface,
    SpacecraftModel,
    Telemetry,
    command_spec,
    event_spec,
    telemetry_spec,
)
from emulator.protocol.catalogue import Payload, field


class LampTelemetry(Payload):
    on: bool = field(doc="lamp state")
    energy_j: float = field("J", "energy used", ge=0)


class LampSet(Payload):
    on: bool = field(doc="switch the lamp")
    power_w: float = field("W", "lamp power", ge=0, le=100, default=10.0)


class Brownout(Payload):
    factor: float = field(doc="power multiplier", ge=0, le=1)


class Toggled(Payload):
    on: bool = field(doc="new state")


class Lamp(SpacecraftModel):
    def __init__(self) -> None:
        self.on = False
        self.power_w = 10.0
        self.factor = 1.0
        self.energy_j = 0.0
        self.steps = 0
        self.events: list[tuple[str, dict[str, Any]]] = []

    def interface(self) -> Interface:
        return Interface(
            telemetry=[Telemetry(telemetry_spec("lamp.telemetry", LampTelemetry, "Lamp state.", 1.0),
                                 lambda: {"on": self.on, "energy_j": self.energy_j})],
            commands=[Command(command_spec("lamp.set", LampSet, "Switch the lamp."), self._set)],
            faults=[Fault("lamp.brownout", Brownout, "Scale lamp power.", self._brown, self._unbrown)],
            events=[event_spec("lamp.toggled", Toggled, "The lamp changed state.")],
        )

    def _set(self, p: LampSet) -> dict[str, Any]:
        if p.on and self.factor == 0:
            raise CommandError("lamp is browned out", field="payload.on")
        if p.on != self.on:
            self.events.append(("lamp.toggled", {"on": p.on}))
        self.on, self.power_w = p.on, p.power_w
        return {"on": self.on}

    def _brown(self, p: Brownout) -> None:
        self.factor = p.factor

    def _unbrown(self, p: Brownout) -> None:
        self.factor = 1.0

    def step(self, t_ns: int, dt_ns: int) -> None:
        self.steps += 1
        if self.on:
            self.energy_j += self.power_w * self.factor * dt_ns / 1e9

    def truth(self) -> dict[str, Any]:
        return {"on": self.on, "energy_j": self.energy_j, "factor": self.factor, "steps": self.steps}

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.events = self.events, []
        return out

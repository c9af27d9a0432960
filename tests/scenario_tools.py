"""Helpers for tests that run the standard scenarios with a bench setting or a shorter duration."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from hil.scenario import Scenario


def one_sample_per_turn(period_s: float) -> dict[str, float]:
    """Board telemetry rates giving a board one fresh sample of what it decides on per control period (the
    emulator's defaults are 1 Hz: ~14 kB of telemetry a 10 s step, which a paced serial line takes ~0.15 s to
    carry); thermal and clock telemetry, which the C board does not read, off."""
    rate_hz = 1.0 / period_s
    return {"eps.telemetry": rate_hz, "accel.status": rate_hz, "adcs.sun": rate_hz, "thermal.telemetry": 0.0,
            "sim.clock": 0.0, "sim.links": rate_hz}  # sim.links: the recording's wall-time side file, per turn


def cut(scenario: Scenario, *, duration_s: float | None = None, keep: Iterable[str] | None = None,
        rates_hz: dict[str, float] | None = None) -> Scenario:
    """A copy of ``scenario`` ending at ``duration_s``, with only the requirements labelled in ``keep`` (every
    label must exist: a renamed requirement fails the test instead of silently dropping out), and board
    telemetry at ``rates_hz``."""
    sc = scenario
    head = sc.head if duration_s is None else sc.head.model_copy(update={"duration": duration_s})
    requirements = sc.requirements
    if keep is not None:
        wanted = set(keep)
        labels = {req.label for _, req in sc.requirements}
        missing = wanted - labels
        assert not missing, f"{sc.name}: no requirement labelled {sorted(missing)}; labels: {sorted(labels)}"
        requirements = [(i, req) for i, req in sc.requirements if req.label in wanted]
    timeline = [(i, a) for i, a in sc.timeline if a.at <= head.duration]
    overrides = dict(sc.overrides)
    if rates_hz is not None:
        overrides["telemetry.rates_hz"] = rates_hz
    return dataclasses.replace(sc, head=head, requirements=requirements, timeline=timeline, overrides=overrides)

"""Every run's config built before anything runs; problems blamed on the campaign key they come from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from emulator.config import load_config
from emulator.errors import ConfigError
from emulator.shipped import DEFAULT_SATELLITE as DEFAULT_CONFIG
from hil.campaign.spec import Campaign, CampaignError, RunSpec, scenario_data
from hil.runner import ScenarioRun, override_labels, scenario_config_error
from hil.scenario import Problem, Scenario, ScenarioError, scenario_from_dict


# -- checks before any run -------------------------------------------------------------------
def validate_campaign(campaign: Campaign, *, board_cmd: str | None = None,
                      model_factory: Callable[..., Any] | None = None) -> list[RunSpec]:
    """Build every run's config before anything runs; returns the matrix.

    Each scenario is built once as a full run (emulator built, signals, faults and topics checked,
    board command found) and the satellite config is built for every sweep combination (with a
    ``model_factory``, the factory's model is built for every combination instead).

    Raises:
        CampaignError: every problem, located by key path (``sweep[0].key``, ``scenario[1]``).
    """
    problems: list[Problem] = []
    sweep_of = {s.key: i for i, s in enumerate(campaign.sweeps)}
    for i, sc in enumerate(campaign.scenarios):
        for n, combo in enumerate(campaign.combinations()):
            merged = {**campaign.overrides, **combo}
            try:
                built = scenario_from_dict(scenario_data(sc, merged), source=sc.source,
                                           base_dir=Path(sc.source).parent)
                if n == 0 or model_factory is not None:
                    ScenarioRun(built, board_cmd=board_cmd, seed=campaign.seeds[0], model_factory=model_factory)
                else:
                    config = built.config_path or DEFAULT_CONFIG
                    try:
                        load_config(config, built.overrides, labels=override_labels(built))
                    except ConfigError as exc:
                        raise scenario_config_error(built, exc, config) from None
            except ConfigError as exc:
                problems += located(exc, sc, combo, merged, sweep_of, i)
                if isinstance(exc, ScenarioError) and not any(p.override in merged for p in exc.problems):
                    break  # the scenario itself is at fault: once is enough
    if problems:
        # the same bad key shows up in many combinations: keep each message once
        unique = list({(p.path, p.message): p for p in problems}.values())
        raise CampaignError(campaign.source, unique)
    return campaign.runs()


def located(exc: ConfigError, sc: Scenario, combo: Mapping[str, Any], merged: Mapping[str, Any],
            sweep_of: Mapping[str, int], i: int) -> list[Problem]:
    """The problems of one scenario x sweep combination, each blamed on the campaign key it comes from (its
    ``override``): a bad key on ``sweep[i].key`` / ``overrides."KEY"``, a bad value on ``sweep[i].values``; any
    other on the scenario."""
    out: list[Problem] = []
    label = ", ".join(f"{k} = {v!r}" for k, v in combo.items())
    for p in exc.problems:
        key = p.override
        if key is None or key not in merged:
            out.append(Problem(f"scenario[{i}]", (f"with {label}: " if label else "") + str(p), p.valid))
            continue
        sweep = sweep_of.get(key)
        if p.kind == "key":
            where = f"sweep[{sweep}].key" if sweep is not None else f'overrides."{key}"'
            text = f"{key}: {p.message}"
        else:
            where = f"sweep[{sweep}].values" if sweep is not None else f'overrides."{key}"'
            text = f"{key} = {merged[key]!r}: {p.message}"
        out.append(Problem(where, f"{text} (scenario {sc.name!r})", p.valid, override=key, kind=p.kind))
    return out

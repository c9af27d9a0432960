"""A campaign file: its tables (pydantic), the checked :class:`Campaign` and its matrix of :class:`RunSpec`."""

from __future__ import annotations

import copy
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError

from emulator import shipped
from emulator.errors import ConfigError, suggest
from hil.runner import OWNED_KEYS
from hil.scenario import (
    Duration,
    Problem,
    Scenario,
    ScenarioError,
    key_path,
    load_scenario,
    scenario_from_dict,
)


# -- the file --------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SeedRange(_Strict):
    """``seeds = { first = 1, count = 100 }``: seeds first .. first + count - 1."""

    first: int = Field(1, ge=0, lt=2**63)
    count: int = Field(ge=1, le=1_000_000)


def _seeds(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


def _seeds_form(value: Any) -> str:
    """Which form of ``seeds`` a value is meant as: a table is a range, anything else a list (its errors alone are
    reported, not the other form's too)."""
    return "range" if isinstance(value, (dict, SeedRange)) else "list"


class CampaignHead(_Strict):
    """The ``[campaign]`` table."""

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    #: seeds of every scenario: a list, one int, or a range table
    seeds: Annotated[Annotated[list[Annotated[int, Field(ge=0, lt=2**63)]], Field(min_length=1), Tag("list")]
                     | Annotated[SeedRange, Tag("range")], Discriminator(_seeds_form), BeforeValidator(_seeds)]
    #: board command for every run (``--board`` wins); None: model only, as fast as possible
    board: str | None = None
    #: attempts a run gets again after a worker died while running it
    retries: int = Field(2, ge=0, le=10)
    #: keep each run's recording (and board log) under ``<out>/runs/``
    record: bool = False


class ScenarioEntry(_Strict):
    """One ``[[scenario]]``: a scenario file, optionally run for another duration than its own."""

    file: str = Field(min_length=1)
    #: sim time to run instead of the scenario's own duration
    duration: Duration | None = None


class Sweep(_Strict):
    """One ``[[sweep]]``: a dotted config key and the values it takes (the sweeps form a cartesian product)."""

    key: str = Field(min_length=1)
    values: list[Any] = Field(min_length=1)


class CampaignFile(_Strict):
    campaign: CampaignHead
    scenario: list[ScenarioEntry] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    sweep: list[Sweep] = Field(default_factory=list)


TOP_KEYS = sorted(CampaignFile.model_fields)


class CampaignError(ConfigError):
    """A campaign that cannot start; lists every problem with its key path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        text = f"{source}: invalid campaign ({n} problem{'s' if n != 1 else ''})\n  " + \
            "\n  ".join(str(p).replace("\n", "\n  ") for p in problems)
        super().__init__(text, field=problems[0].path if problems else None,
                         valid=problems[0].valid if problems else None, problems=problems)


@dataclass(frozen=True)
class RunSpec:
    """One run of the matrix; plain data, so it pickles to any worker."""

    index: int
    #: identifies the run across re-runs (``--resume``): scenario, seed, sweep values
    key: str
    scenario: str
    scenario_file: str
    seed: int
    #: the sweep values of this run (sweep order)
    overrides: dict[str, Any]
    #: the scenario as a dict: its overrides merged with the campaign's and the sweep values, duration set
    scenario_data: dict[str, Any]
    base_dir: str


@dataclass
class Campaign:
    """A checked campaign file."""

    head: CampaignHead
    scenarios: list[Scenario]
    overrides: dict[str, Any]
    sweeps: list[Sweep]
    source: str = "<campaign>"

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def seeds(self) -> list[int]:
        s = self.head.seeds
        return list(range(s.first, s.first + s.count)) if isinstance(s, SeedRange) else list(s)

    def combinations(self) -> list[dict[str, Any]]:
        """Every sweep combination (dotted key -> value), the last sweep varying fastest."""
        keys = [s.key for s in self.sweeps]
        return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(s.values for s in self.sweeps))]

    def runs(self) -> list[RunSpec]:
        """The matrix: scenario (file order) x sweep combination x seed."""
        out: list[RunSpec] = []
        for sc in self.scenarios:
            for combo in self.combinations():
                data = scenario_data(sc, {**self.overrides, **combo})
                for seed in self.seeds:
                    out.append(RunSpec(index=len(out), key=run_key(sc.name, seed, combo), scenario=sc.name,
                                       scenario_file=sc.source, seed=seed, overrides=dict(combo),
                                       scenario_data=data, base_dir=str(Path(sc.source).resolve().parent)))
        return out


def run_key(scenario: str, seed: int, overrides: Mapping[str, Any]) -> str:
    return json.dumps([scenario, seed, overrides], sort_keys=True, separators=(",", ":"), default=str)


def scenario_data(sc: Scenario, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario's dict with ``overrides`` on top of its own and its config made absolute."""
    data = copy.deepcopy(sc.raw)
    data["scenario"] = {**data.get("scenario", {}), "duration": sc.duration_s}
    if sc.config_path is not None:
        data["scenario"]["config"] = str(sc.config_path)
    data["overrides"] = {**data.get("overrides", {}), **overrides}
    return data


def load_campaign(path: str | Path) -> Campaign:
    """Read a campaign file and every scenario it names; check their structure.

    Raises:
        CampaignError: file missing, not TOML, unknown key, bad value, scenario missing or invalid
            (every problem listed with its key path).
    """
    source = str(path)
    try:
        path = shipped.resolve(path, "campaign")
    except ConfigError as exc:
        raise CampaignError(source, [Problem("file", exc.message, exc.valid)]) from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(source, [Problem("file", "campaign file not found")]) from None
    except OSError as exc:
        raise CampaignError(source, [Problem("file", f"cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(source, [Problem("file", f"not valid TOML: {exc}")]) from None
    return campaign_from_dict(data, source=source, base_dir=path.parent)


def campaign_from_dict(data: Mapping[str, Any], *, source: str = "<campaign>",
                       base_dir: Path | None = None) -> Campaign:
    """Check a campaign given as a dict (the parsed TOML); see :func:`load_campaign`."""
    try:
        parsed = CampaignFile.model_validate(dict(data))
    except ValidationError as exc:
        raise CampaignError(source, _problems(exc)) from None
    problems: list[Problem] = []
    seeds = parsed.campaign.seeds
    if isinstance(seeds, list) and len(set(seeds)) != len(seeds):  # the same run twice: n counts it twice
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        problems.append(Problem("campaign.seeds", f"a seed appears twice ({', '.join(map(str, twice))}): the same "
                                                  "run would count twice in the statistics"))
    seen: dict[str, int] = {}
    for i, sw in enumerate(parsed.sweep):
        if sw.key in seen:
            problems.append(Problem(f"sweep[{i}].key", f"{sw.key!r} is already swept by sweep[{seen[sw.key]}]"))
        seen.setdefault(sw.key, i)
        if sw.key in parsed.overrides:
            problems.append(Problem(f"sweep[{i}].key", f"{sw.key!r} is also set in [overrides]; set it in one place"))
        if len({json.dumps(v, sort_keys=True, default=str) for v in sw.values}) != len(sw.values):
            problems.append(Problem(f"sweep[{i}].values", "a value appears twice"))
    for where, key in [*((f'overrides."{k}"', k) for k in parsed.overrides),
                       *((f"sweep[{i}].key", s.key) for i, s in enumerate(parsed.sweep))]:
        if key in OWNED_KEYS:
            problems.append(Problem(where, f"{key!r} is set by the scenario or the runner, not an override "
                                           "(seeds: [campaign] seeds; duration: [[scenario]] duration)",
                                    override=key, kind="key"))
    scenarios: list[Scenario] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(parsed.scenario):
        try:
            found = shipped.resolve(entry.file, "scenario", base_dir)
        except ConfigError as exc:
            problems.append(Problem(f"scenario[{i}].file", exc.message, exc.valid))
            continue
        try:
            sc = load_scenario(found)
            if entry.duration is not None:
                raw = copy.deepcopy(sc.raw)
                raw["scenario"] = {**raw["scenario"], "duration": entry.duration}
                sc = scenario_from_dict(raw, source=str(found), base_dir=found.parent)
        except ScenarioError as exc:
            problems.append(Problem(f"scenario[{i}]", str(exc)))
            continue
        if sc.name in names:
            problems.append(Problem(f"scenario[{i}].file", f"scenario {sc.name!r} is already scenario[{names[sc.name]}]"))
        names.setdefault(sc.name, i)
        scenarios.append(sc)
    if problems:
        raise CampaignError(source, problems)
    return Campaign(head=parsed.campaign, scenarios=scenarios, overrides=dict(parsed.overrides),
                    sweeps=list(parsed.sweep), source=source)


def _problems(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # a union (seeds: list | table) puts its member into the path; keep the field's own path
        if loc[:2] == ["campaign", "seeds"] and len(loc) > 2 and not isinstance(loc[2], int):
            loc = loc[:2] + [p for p in loc[3:] if isinstance(p, int) or p in SeedRange.model_fields]
        path = key_path(loc)
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            name = str(loc[-1])
            out.append(Problem(path, f"unknown key{suggest(name, valid)}; valid keys here: {', '.join(valid)}",
                               valid))
        elif err["type"] == "missing":
            out.append(Problem(path, "required key is missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(Problem(path, f"{msg} (got {err.get('input')!r})"))
    return out


def _valid_keys(loc: list[Any]) -> list[str]:
    models: dict[str, type[BaseModel]] = {"campaign": CampaignHead, "scenario": ScenarioEntry, "sweep": Sweep}
    parts = [p for p in loc if isinstance(p, str)]
    if not parts:
        return TOP_KEYS
    if parts[:2] == ["campaign", "seeds"]:
        return sorted(SeedRange.model_fields)
    model = models.get(parts[0])
    return sorted(model.model_fields) if model is not None else []

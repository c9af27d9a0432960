"""Test campaigns: scenarios x seeds x config overrides on a process pool or Dask, with Monte Carlo statistics.

A campaign is a TOML file (``configs/campaigns/*.toml``)::

    [campaign]
    name = "battery-sweep"
    seeds = [1, 2, 3]                     # or seeds = { first = 1, count = 100 }

    [[scenario]]
    file = "../scenarios/eclipse-depletion.toml"   # next to this file, else configs/scenarios/
    duration = "2h"                                # optional: shorten the scenario

    [[sweep]]
    key = "power.battery.cell_capacity_ah"
    values = [0.8, 1.2, 1.6]

The matrix is every scenario x every seed x the cartesian product of the sweeps, each run
with the scenario's ``[overrides]``, then the campaign's ``[overrides]``, then its sweep values.
Everything is checked before any run starts (:func:`load_campaign`, :func:`validate_campaign`):
unknown keys, missing scenarios, and the satellite config built for every override combination.

:func:`run_campaign` runs the matrix on a local ``ProcessPoolExecutor`` or on a Dask cluster
(``scheduler=`` address); both call :func:`run_job` per run and give identical rows apart from
``wall_s``. Each finished row is appended to ``results.jsonl`` (flushed) as it arrives, so a
campaign that is stopped loses nothing; ``resume=True`` skips the runs already there. A pool
whose worker dies (``BrokenProcessPool``) is replaced and the unfinished runs resubmitted; a run
in flight when a worker died is charged an attempt and given up after ``retries`` more. On Dask
the scheduler reschedules the tasks of a dead worker itself (``distributed.scheduler.allowed-failures``)
and ``retries=`` is passed to ``submit``.

At the end: ``results.csv`` (one row per run, a pass and a value column per requirement),
``summary.json`` / ``summary.md`` (per requirement the probability of failing with a 95 % Wilson
score interval, overall and per sweep value; the worst runs with the ``flatsat test`` line that
replays each exactly) and ``report.html`` (the same with plots).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import copy
import csv
import html
import io
import itertools
import json
import math
import os
import shlex
import statistics
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from emulator import shipped
from emulator.errors import ConfigError, EmulatorError, suggest
from hil.scenario import (
    Duration,
    Problem,
    Scenario,
    ScenarioError,
    key_path,
    load_scenario,
    scenario_from_dict,
)

#: two-sided confidence of the Wilson intervals in the summary
CONFIDENCE = 0.95
#: failing runs listed by name in the summary (all of them are in results.jsonl)
MAX_WORST = 20
#: wall seconds to wait for a Dask scheduler before giving up
CONNECT_TIMEOUT_S = 5.0
#: pseudo-requirement of every run: it ran to the end (no board death, no refused action, no crash)
RUN_LABEL = "run completes"

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"


# -- the file --------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedRange(_Strict):
    """``seeds = { first = 1, count = 100 }``: seeds first .. first + count - 1."""

    first: int = Field(1, ge=0, lt=2**63)
    count: int = Field(ge=1, le=1_000_000)


def _seeds(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


class CampaignHead(_Strict):
    """The ``[campaign]`` table."""

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    #: seeds of every scenario: a list, one int, or a range table
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**63)]] | SeedRange, BeforeValidator(_seeds)]
    #: board command for every run (``--board`` wins); None: model only, as fast as possible
    board: str | None = None
    #: attempts a run gets again after a worker died while running it
    retries: int = Field(2, ge=0, le=10)
    #: keep each run's recording (and board log) under ``<out>/runs/``
    record: bool = False


class ScenarioEntry(_Strict):
    """One ``[[scenario]]``: a scenario file, optionally shortened."""

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
    seen: dict[str, int] = {}
    for i, sw in enumerate(parsed.sweep):
        if sw.key in seen:
            problems.append(Problem(f"sweep[{i}].key", f"{sw.key!r} is already swept by sweep[{seen[sw.key]}]"))
        seen.setdefault(sw.key, i)
        if sw.key in parsed.overrides:
            problems.append(Problem(f"sweep[{i}].key", f"{sw.key!r} is also set in [overrides]; set it in one place"))
        if len({json.dumps(v, sort_keys=True, default=str) for v in sw.values}) != len(sw.values):
            problems.append(Problem(f"sweep[{i}].values", "a value appears twice"))
    from hil.runner import OWNED_KEYS

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
    from emulator.config import load_config
    from emulator.shipped import DEFAULT_SATELLITE as DEFAULT_CONFIG
    from hil.runner import ScenarioRun, override_labels, scenario_config_error

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


# -- one run (in a worker) -------------------------------------------------------------------
def run_job(spec: RunSpec, *, attempt: int = 1, board_cmd: str | None = None, record_dir: str | None = None,
            model_factory: Callable[..., Any] | None = None, running_dir: str | None = None) -> dict[str, Any]:
    """Run one :class:`RunSpec` to the end and return its result row (plain JSON types).

    A run that fails as a whole (board died, refused action, an exception) gives a row with
    ``error`` set; only a dying worker process loses it.
    """
    from hil.runner import ScenarioRun

    marker = Path(running_dir) / str(spec.index) if running_dir else None
    if marker is not None:
        marker.write_text(str(os.getpid()))
    try:
        sc = scenario_from_dict(spec.scenario_data, source=spec.scenario_file, base_dir=Path(spec.base_dir))
        try:
            run = ScenarioRun(sc, board_cmd=board_cmd, seed=spec.seed, record_dir=record_dir,
                              model_factory=model_factory)
            res = asyncio.run(run.run())
        except EmulatorError as exc:
            return error_row(spec, str(exc), attempt)
        except Exception as exc:  # noqa: BLE001 (a bug in a model must not end the campaign): the row says what happened
            return error_row(spec, f"{type(exc).__name__}: {exc}", attempt)
        return result_row(spec, res, attempt)
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def key_figure(verdict: Any, res: Any) -> float | None:
    """A requirement's number: the checker's value, else the signal's worst sampled value over the run.

    Worst is the one nearest to failing: the minimum for ``>``/``>=``, the maximum for ``<``/``<=``,
    the farthest from the limit for ``==``/``!=`` (the report's series: every step up to 2000 points).
    """
    value = _num(verdict.value)
    if value is not None or not verdict.signal or verdict.signal not in res.series:
        return value
    import numpy as np

    req = next((r for i, r in res.scenario.requirements if i == verdict.index), None)
    ys = np.asarray(res.series.get(verdict.signal), dtype=float)
    after = getattr(req, "after", 0.0) or 0.0
    ys = ys[(res.series.time() >= after) & ~np.isnan(ys)]
    if ys.size == 0:
        return None
    op = getattr(req, "op", "")
    if op in (">", ">="):
        return float(ys.min())
    if op in ("<", "<="):
        return float(ys.max())
    limit = _num(verdict.limit) or 0.0
    return float(ys[int(np.argmax(np.abs(ys - limit)))])


def _base_row(spec: RunSpec, attempt: int) -> dict[str, Any]:
    return {"run": spec.index, "key": spec.key, "scenario": spec.scenario, "scenario_file": spec.scenario_file,
            "seed": spec.seed, "overrides": spec.overrides, "attempts": attempt}


def result_row(spec: RunSpec, res: Any, attempt: int = 1) -> dict[str, Any]:
    reqs = [{"index": v.index, "label": v.label, "kind": v.kind, "passed": bool(v.passed),
             "value": key_figure(v, res), "limit": _num(v.limit), "t_s": _num(v.t_s), "reason": v.reason}
            for v in res.verdicts]
    return {**_base_row(spec, attempt), "passed": bool(res.passed), "error": res.error,
            "failed": [r["label"] for r in reqs if not r["passed"]], "requirements": reqs,
            "t_end_s": _num(res.t_end_s), "wall_s": round(float(res.wall_s), 3)}


def error_row(spec: RunSpec, error: str, attempt: int = 1) -> dict[str, Any]:
    return {**_base_row(spec, attempt), "passed": False, "error": error, "failed": [], "requirements": [],
            "t_end_s": None, "wall_s": 0.0}


# -- statistics ------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (Wilson 1927; Newcombe 1998, method 3).

    Args:
        k: successes (here: failing runs), 0 <= k <= n.
        n: trials (runs); n = 0 gives (0, 1): nothing is known.
        confidence: two-sided, e.g. 0.95.

    Raises:
        ValueError: k outside 0..n or confidence outside (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"k must be within 0..n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (the formula gives them up to rounding)
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


@dataclass
class FailureStat:
    """How often one requirement failed in a group of runs."""

    scenario: str
    requirement: str
    #: "" overall, else the sweep key this group holds fixed
    key: str
    value: Any
    failed: int
    runs: int

    @property
    def p_fail(self) -> float:
        return self.failed / self.runs if self.runs else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.failed, self.runs)

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.ci
        return {"scenario": self.scenario, "requirement": self.requirement, "key": self.key or None,
                "value": self.value, "failed": self.failed, "runs": self.runs,
                "p_fail": None if math.isnan(self.p_fail) else self.p_fail, "ci_low": lo, "ci_high": hi}


def _outcomes(row: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(requirement, failed) of a row: the run itself, then each requirement it got a verdict for."""
    return [(RUN_LABEL, row.get("error") is not None)] + [(r["label"], not r["passed"]) for r in row["requirements"]]


def failure_stats(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str]) -> list[FailureStat]:
    """Per scenario and requirement: failures overall, then per value of each sweep key.

    A run that failed as a whole counts against ``run completes``; its requirements had no
    verdict and are left out of their counts (the ``runs`` column says how many had one).
    """
    groups: dict[tuple[str, str, str, str], FailureStat] = {}
    for row in rows:
        slots = [("", None)] + [(k, row["overrides"].get(k)) for k in sweep_keys]
        for label, failed in _outcomes(row):
            for key, value in slots:
                gk = (row["scenario"], label, key, json.dumps(value, sort_keys=True, default=str))
                stat = groups.get(gk)
                if stat is None:
                    stat = groups[gk] = FailureStat(row["scenario"], label, key, value, 0, 0)
                stat.runs += 1
                stat.failed += int(failed)
    # scenario and requirement as first seen; under each, "all" first, then each sweep key's values in order
    first: dict[tuple[str, str], int] = {}
    values: dict[str, int] = {}
    for s in groups.values():
        first.setdefault((s.scenario, s.requirement), len(first))
        values.setdefault(json.dumps(s.value, sort_keys=True, default=str), len(values))
    order = ["", *sweep_keys]
    return sorted(groups.values(), key=lambda s: (first[(s.scenario, s.requirement)], order.index(s.key),
                                                  values[json.dumps(s.value, sort_keys=True, default=str)]))


def worst_runs(rows: Sequence[Mapping[str, Any]], limit: int = MAX_WORST) -> list[Mapping[str, Any]]:
    """Failing runs, most requirements failed first (a run that failed as a whole first of all)."""
    failing = [r for r in rows if not r["passed"]]
    failing.sort(key=lambda r: (r.get("error") is None, -len(r["failed"]), r["run"]))
    return failing[:limit]


# -- outputs ---------------------------------------------------------------------------------
def replay_command(row: Mapping[str, Any], replay_path: Path, board_cmd: str | None) -> str:
    parts = ["flatsat", "test", str(replay_path)]
    if board_cmd:
        parts += ["--board", board_cmd]
    return shlex.join([*parts, "--seed", str(row["seed"])])


def write_replay_scenario(spec: RunSpec, out_dir: Path) -> Path:
    """The run's scenario with its overrides and duration, as a file ``flatsat test`` runs as is."""
    import tomli_w

    from hil.runner import safe_name

    parts = [spec.scenario] + [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in spec.overrides.items()]
    path = out_dir / "replay" / f"{safe_name('-'.join(parts))}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = copy.deepcopy(spec.scenario_data)
    data["scenario"]["seed"] = spec.seed
    head = f"# replays campaign run {spec.index} of {spec.scenario_file} (seed {spec.seed})\n"
    path.write_text(head + tomli_w.dumps(data), encoding="utf-8")
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def write_csv(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str], path: Path) -> Path:
    """One row per run; for each requirement (union over scenarios) a ``[pass]`` and a ``[value]`` column."""
    labels: list[str] = []
    for row in rows:
        for r in row["requirements"]:
            if r["label"] not in labels:
                labels.append(r["label"])
    head = ["run", "scenario", "seed", *sweep_keys, "overrides", "passed", "error", "failed", "wall_s",
            "attempts", "command"]
    head += [f"{label} [{what}]" for label in labels for what in ("pass", "value")]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for row in rows:
            by = {r["label"]: r for r in row["requirements"]}
            cells = [row["run"], row["scenario"], row["seed"], *(_cell(row["overrides"].get(k)) for k in sweep_keys),
                     _cell(row["overrides"]), row["passed"], _cell(row["error"]), "; ".join(row["failed"]),
                     row["wall_s"], row["attempts"], row.get("command", "")]
            for label in labels:
                r = by.get(label)
                cells += ["", ""] if r is None else [r["passed"], _cell(r["value"])]
            w.writerow(cells)
    return path


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f} %"


def _value_text(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# Campaign {summary['campaign']}: {summary['passed']} of {summary['runs']} runs passed", ""]
    if summary.get("description"):
        lines += [summary["description"], ""]
    lines += [f"Probability of failing, with its {round(100 * CONFIDENCE)} % Wilson score interval.", "",
              "| scenario | requirement | group | failed / runs | P(fail) | 95 % CI |",
              "| --- | --- | --- | --- | --- | --- |"]
    for s in summary["stats"]:
        group = "all" if not s["key"] else f"{s['key']} = {_value_text(s['value'])}"
        p = math.nan if s["p_fail"] is None else s["p_fail"]
        lines.append(f"| {s['scenario']} | {s['requirement']} | {group} | {s['failed']} / {s['runs']} | {_pct(p)} "
                     f"| {_pct(s['ci_low'])} .. {_pct(s['ci_high'])} |")
    lines += ["", "## Worst runs", ""]
    if not summary["worst"]:
        lines.append("None: every run passed.")
    else:
        lines += ["| run | scenario | seed | overrides | failed | replay |", "| --- | --- | --- | --- | --- | --- |"]
        for w in summary["worst"]:
            why = w["error"].splitlines()[0] if w["error"] else "; ".join(w["failed"])
            ov = ", ".join(f"{k} = {_value_text(v)}" for k, v in w["overrides"].items()) or "-"
            lines.append(f"| {w['run']} | {w['scenario']} | {w['seed']} | {ov} | {why} | `{w['command']}` |")
    return "\n".join(lines) + "\n"


def pass_rate_figure(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str]) -> bytes | None:
    """PNG: per sweep key, the fraction of runs that passed per value (a line per scenario, Wilson bars)."""
    if not sweep_keys or not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sweep_keys), 1, figsize=(9, 3.2 * len(sweep_keys)), squeeze=False)
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    for ax, key in zip(axes[:, 0], sweep_keys, strict=True):
        values = list(dict.fromkeys(json.dumps(r["overrides"].get(key), default=str) for r in rows))
        numeric = all(_num(json.loads(v)) is not None for v in values)
        xs_all = [float(json.loads(v)) if numeric else i for i, v in enumerate(values)]
        for sc in scenarios:
            xs, ys, lo, hi = [], [], [], []
            for x, v in zip(xs_all, values, strict=True):
                group = [r for r in rows if r["scenario"] == sc
                         and json.dumps(r["overrides"].get(key), default=str) == v]
                if not group:
                    continue
                k = sum(r["passed"] for r in group)
                a, b = wilson_interval(k, len(group))
                xs.append(x)
                ys.append(k / len(group))
                lo.append(k / len(group) - a)
                hi.append(b - k / len(group))
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=sc)
        if not numeric:
            ax.set_xticks(xs_all, [json.loads(v) if isinstance(json.loads(v), str) else v for v in values])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(key)
        ax.set_ylabel("pass rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"pass rate per override value ({round(100 * CONFIDENCE)} % Wilson intervals)", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def failure_figure(stats: Sequence[FailureStat]) -> bytes | None:
    """PNG: P(fail) of every requirement over all runs, with its Wilson interval."""
    overall = [s for s in stats if not s.key]
    if not overall:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(overall) + 1.2))
    ys = range(len(overall))
    ps = [s.p_fail for s in overall]
    err = [[p - s.ci[0] for p, s in zip(ps, overall, strict=True)],
           [s.ci[1] - p for p, s in zip(ps, overall, strict=True)]]
    ax.errorbar(ps, list(ys), xerr=err, fmt="o", capsize=4, color="#c62828")
    ax.set_yticks(list(ys), [f"{s.scenario}: {s.requirement}"[:70] for s in overall], fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.invert_yaxis()
    ax.set_xlabel("probability of failing (all runs)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_html(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], stats: Sequence[FailureStat],
               sweep_keys: Sequence[str], path: Path) -> Path:
    import base64

    from hil.report import REPORT_CSS

    def e(x: Any) -> str:
        return html.escape(str(x))

    def img(png: bytes | None, alt: str) -> str:
        return "" if png is None else \
            f'<p><img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'

    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>flatsat campaign: "
              f"{e(summary['campaign'])}</title><style>{REPORT_CSS}</style></head><body>"),
             f"<h1>Campaign {e(summary['campaign'])}: {summary['passed']} of {summary['runs']} runs passed</h1>",
             f"<p>{e(summary.get('description', ''))}</p>",
             (f"<p>Source: <code>{e(summary['source'])}</code>; seeds: {e(summary['seeds'])}; runs: "
              f"{summary['runs']}; total run wall time {summary['wall_s']:.1f} s.</p>"),
             "<h2>Pass rate per override value</h2>", img(pass_rate_figure(rows, sweep_keys), "pass rate"),
             "<h2>Probability of failing</h2>", img(failure_figure(stats), "failure probability"),
             ("<table><tr><th>scenario</th><th>requirement</th><th>group</th><th>failed / runs</th><th>P(fail)</th>"
              f"<th>{round(100 * CONFIDENCE)} % Wilson interval</th></tr>")]
    for s in summary["stats"]:
        group = "all" if not s["key"] else f"{s['key']} = {_value_text(s['value'])}"
        p = math.nan if s["p_fail"] is None else s["p_fail"]
        cls = "fail" if s["failed"] else "pass"
        parts.append(f"<tr class='{cls}'><td>{e(s['scenario'])}</td><td>{e(s['requirement'])}</td><td>{e(group)}"
                     f"</td><td>{s['failed']} / {s['runs']}</td><td class='res'>{_pct(p)}</td>"
                     f"<td>{_pct(s['ci_low'])} .. {_pct(s['ci_high'])}</td></tr>")
    parts.append("</table><h2>Worst runs</h2>")
    if summary["worst"]:
        parts.append("<table><tr><th>run</th><th>scenario</th><th>seed</th><th>overrides</th><th>failed</th>"
                     "<th>replay</th></tr>")
        for w in summary["worst"]:
            why = w["error"] or "; ".join(w["failed"])
            ov = ", ".join(f"{k} = {_value_text(v)}" for k, v in w["overrides"].items()) or "-"
            parts.append(f"<tr class='fail'><td>{w['run']}</td><td>{e(w['scenario'])}</td><td>{w['seed']}</td>"
                         f"<td>{e(ov)}</td><td>{e(why)}</td><td><code>{e(w['command'])}</code></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None: every run passed.</p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# -- running ---------------------------------------------------------------------------------
@dataclass
class CampaignResult:
    """Every row of the campaign (matrix order), the statistics and where the outputs are."""

    campaign: Campaign
    rows: list[dict[str, Any]]
    stats: list[FailureStat]
    summary: dict[str, Any]
    out_dir: Path
    #: runs run by this call (the rest came from results.jsonl with resume)
    ran: int = 0
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.rows)


class ResultLog:
    """``results.jsonl``: a row per line, appended and flushed as each run finishes."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines:
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    if isinstance(row, dict) and "key" in row:
                        self.rows[row["key"]] = row
            # a campaign killed mid-write leaves half a line: rewrite the file with the whole ones only
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows.values()), encoding="utf-8")
            tmp.replace(path)
        elif path.exists() and path.stat().st_size:
            raise ConfigError(f"{path} already holds results: pass --resume to continue that campaign, or choose "
                              "another --out directory", field="out")
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


Status = Callable[[str], None]


def _describe(spec: RunSpec) -> str:
    ov = " ".join(f"{k.rsplit('.', 1)[-1]}={_value_text(v)}" for k, v in spec.overrides.items())
    return f"{spec.scenario} seed {spec.seed}" + (f" {ov}" if ov else "")


def run_campaign(campaign: Campaign, *, out_dir: str | Path, workers: int | None = None,
                 scheduler: str | None = None, board_cmd: str | None = None, resume: bool = False,
                 model_factory: Callable[..., Any] | None = None, record: bool | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, status: Status | None = None,
                 mp_context: Any = None) -> CampaignResult:
    """Check, run and summarise a campaign.

    Args:
        campaign: from :func:`load_campaign`.
        out_dir: results.jsonl / .csv, summary.json / .md, report.html, replay/ (and runs/ when recording).
        workers: processes of the local pool (default: the CPU count); ignored with ``scheduler``.
        scheduler: a Dask scheduler address (``tcp://host:8786``, or a LocalCluster's); None: local pool.
        board_cmd: board command for every run (default: the campaign's ``board``).
        resume: keep the rows already in results.jsonl and run only the missing ones.
        model_factory: build each run's model from (scenario, seed) (tests; must pickle).
        record: keep recordings (default: the campaign's ``record``).
        connect_timeout_s: wall seconds to reach the scheduler.
        status: called with a line per finished run.
        mp_context: multiprocessing context of the local pool (default: the platform's).

    Raises:
        CampaignError: a problem in the campaign, its scenarios or an override (before any run).
        ConfigError: results exist and ``resume`` is False; the scheduler cannot be reached; Dask missing.
    """
    say = status or (lambda text: None)
    board = board_cmd if board_cmd is not None else campaign.head.board
    specs = validate_campaign(campaign, board_cmd=board, model_factory=model_factory)
    out = Path(out_dir)
    client = connect(scheduler, connect_timeout_s) if scheduler else None
    try:
        log = ResultLog(out / RESULTS_JSONL, resume=resume)
    except BaseException:
        if client is not None:
            client.close()
        raise
    keep = record if record is not None else campaign.head.record
    todo = [s for s in specs if s.key not in log.rows]
    if resume:
        say(f"{len(specs) - len(todo)} of {len(specs)} runs already in {log.path}; running {len(todo)}")
    done = [0]
    by_index = {s.index: s for s in specs}

    def finished(row: dict[str, Any]) -> None:
        spec = by_index[row["run"]]
        if not row["passed"]:
            row["command"] = replay_command(row, write_replay_scenario(spec, out), board)
        log.append(row)
        done[0] += 1
        verdict = "PASS" if row["passed"] else "FAIL"
        why = "" if row["passed"] else f": {(row['error'] or '; '.join(row['failed'])).splitlines()[0]}"
        say(f"[{done[0]}/{len(todo)}] {_describe(spec)}: {verdict} ({row['wall_s']:.1f} s){why}")

    def job_args(spec: RunSpec) -> dict[str, Any]:
        rec = str(out / "runs" / f"{spec.index:05d}") if keep else None
        return {"board_cmd": board, "record_dir": rec, "model_factory": model_factory}

    try:
        if client is not None:
            _run_dask(client, todo, job_args, finished, campaign.head.retries)
        else:
            _run_pool(todo, job_args, finished, workers or os.cpu_count() or 1, campaign.head.retries, out,
                      mp_context, say)
    finally:
        log.close()
        if client is not None:
            client.close()
    rows = [log.rows[s.key] for s in specs if s.key in log.rows]
    return summarise(campaign, rows, out, ran=done[0])


def _run_pool(todo: list[RunSpec], job_args: Callable[[RunSpec], dict[str, Any]],
              finished: Callable[[dict[str, Any]], None], workers: int, retries: int, out: Path,
              mp_context: Any, say: Status) -> None:
    running = out / ".running"
    running.mkdir(parents=True, exist_ok=True)
    pending = {s.index: s for s in todo}
    attempts = dict.fromkeys(pending, 1)
    while pending:
        for stale in running.iterdir():
            stale.unlink()
        broken = False
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=mp_context) as pool:
            futures = {pool.submit(run_job, s, attempt=attempts[i], running_dir=str(running), **job_args(s)): i
                       for i, s in pending.items()}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    row = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    continue
                except Exception as exc:  # noqa: BLE001 (e.g. a model factory that does not pickle)
                    row = error_row(pending[i], f"{type(exc).__name__}: {exc}", attempts[i])
                finished(row)
                del pending[i]
        if not broken:
            break
        # the runs that had started and not finished were in the dead worker or killed with it
        suspects = {int(p.name) for p in running.iterdir() if p.name.isdigit()} & set(pending) or set(pending)
        say(f"a worker process died; {len(pending)} unfinished run(s) go to a fresh pool "
            f"(in flight: {', '.join(_describe(pending[i]) for i in sorted(suspects))})")
        for i in sorted(suspects):
            attempts[i] += 1
            if attempts[i] > retries + 1:
                finished(error_row(pending.pop(i), f"the worker process died {retries + 1} time(s) while running "
                                                   "this run (killed, out of memory, or os._exit in a model)",
                                   attempts[i] - 1))
    with contextlib.suppress(OSError):
        for p in running.iterdir():
            p.unlink()
        running.rmdir()


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A ``distributed.Client`` for ``address``.

    Raises:
        ConfigError: dask is not installed, or no scheduler answered within ``timeout_s`` (wall).
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed, which is not installed; install it with "
                          "pip install 'flatsat[cluster]' (or pip install 'dask[distributed]')",
                          field="scheduler") from None
    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s: {first}; is "
                          "`dask scheduler` running there, and is the address (tcp://HOST:8786) right?",
                          field="scheduler") from None


def _run_dask(client: Any, todo: list[RunSpec], job_args: Callable[[RunSpec], dict[str, Any]],
              finished: Callable[[dict[str, Any]], None], retries: int) -> None:
    import uuid

    from distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures = {client.submit(run_job, s, key=f"flatsat-run-{s.index}-{tag}", pure=False, retries=retries,
                             **job_args(s)): s for s in todo}
    with client.as_current():  # as_completed looks for the current client
        for fut in as_completed(list(futures)):
            spec = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 (KilledWorker, or a task error after its retries)
                name = type(exc).__name__
                what = "the workers running it died too often" if name == "KilledWorker" else "the task failed"
                row = error_row(spec, f"{what}: {name}: {exc}")
            finished(row)


def summarise(campaign: Campaign, rows: list[dict[str, Any]], out_dir: str | Path, *, ran: int = 0) -> CampaignResult:
    """Statistics and every output file from the result rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = [s.key for s in campaign.sweeps]
    stats = failure_stats(rows, keys)
    worst = worst_runs(rows)
    summary: dict[str, Any] = {
        "campaign": campaign.name, "description": campaign.head.description, "source": campaign.source,
        "seeds": campaign.seeds if len(campaign.seeds) <= 20 else f"{campaign.seeds[0]} .. {campaign.seeds[-1]}",
        "sweeps": {s.key: s.values for s in campaign.sweeps}, "runs": len(rows),
        "passed": sum(r["passed"] for r in rows), "confidence": CONFIDENCE,
        "wall_s": round(sum(r["wall_s"] for r in rows), 3), "stats": [s.as_dict() for s in stats],
        "worst": [{k: w.get(k) for k in ("run", "scenario", "seed", "overrides", "failed", "error", "command")}
                  for w in worst]}
    paths = {"jsonl": out / RESULTS_JSONL, "csv": write_csv(rows, keys, out / RESULTS_CSV)}
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8")
    paths.update(json=out / SUMMARY_JSON, md=out / SUMMARY_MD,
                 html=write_html(summary, rows, stats, keys, out / REPORT_HTML))
    return CampaignResult(campaign=campaign, rows=rows, stats=stats, summary=summary, out_dir=out, ran=ran,
                          paths=paths)


# -- command line ----------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    """``flatsat campaign`` arguments."""
    p.add_argument("file", metavar="CAMPAIGN", help="campaign file, e.g. configs/campaigns/battery-sweep.toml")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                                          "(needs pip install 'flatsat[cluster]')")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help="wall seconds to reach the scheduler (default %(default)s)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: out/campaigns/<name>)")
    p.add_argument("--board", metavar="CMD", help="board command for every run (default: the campaign's)")
    p.add_argument("--resume", action="store_true", help="keep the rows in DIR/results.jsonl, run the rest")
    p.add_argument("--record", action="store_true", help="keep every run's recording under DIR/runs/")
    p.add_argument("--quiet", action="store_true", help="no line per run, no summary table")


def cmd_campaign(args: Any) -> int:
    def err(text: str) -> None:
        print(text, file=sys.stderr)

    if args.workers is not None and args.workers < 1:
        err("flatsat campaign: --workers must be >= 1")
        return 2
    try:
        campaign = load_campaign(args.file)
        from hil.runner import safe_name

        out = Path(args.out) if args.out else Path("out/campaigns") / safe_name(campaign.name)
        res = run_campaign(campaign, out_dir=out, workers=args.workers, scheduler=args.scheduler,
                           board_cmd=args.board, resume=args.resume, record=True if args.record else None,
                           connect_timeout_s=args.connect_timeout,
                           status=None if args.quiet else (lambda text: err(f"flatsat campaign: {text}")))
    except EmulatorError as exc:
        err(f"flatsat campaign: {exc}")
        return 2
    if not args.quiet:
        print_summary(res)
    err(f"flatsat campaign: {res.summary['passed']} of {len(res.rows)} runs passed; results in {res.out_dir} "
        f"({RESULTS_CSV}, {SUMMARY_MD}, {REPORT_HTML})")
    return 0 if res.passed else 1


def print_summary(res: CampaignResult) -> None:
    """The failure-probability table and the worst runs (stdout)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"campaign {res.campaign.name}: {res.summary['passed']} of {len(res.rows)} runs passed")
    table.add_column("scenario", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("requirement", max_width=44, overflow="fold")
    table.add_column("group", max_width=36, overflow="fold")
    for col in ("failed / runs", "P(fail)", f"{round(100 * CONFIDENCE)} % CI"):
        table.add_column(col, no_wrap=True)
    for s in res.stats:
        group = "all" if not s.key else f"{s.key} = {_value_text(s.value)}"
        lo, hi = s.ci
        table.add_row(s.scenario, s.requirement, group, f"{s.failed} / {s.runs}", _pct(s.p_fail),
                      f"{_pct(lo)} .. {_pct(hi)}", style="red" if s.failed else None)
    console.print(table)
    for w in res.summary["worst"]:
        console.print(f"worst: run {w['run']} {w['scenario']} seed {w['seed']} {w['overrides'] or ''}: "
                      f"{w['command']}", highlight=False, markup=False)


__all__ = ["Campaign", "CampaignError", "CampaignResult", "FailureStat", "RunSpec", "add_arguments",
           "campaign_from_dict", "failure_stats", "load_campaign", "run_campaign", "run_job", "summarise",
           "validate_campaign", "wilson_interval", "worst_runs"]

"""Run configuration: TOML -> validated pydantic models; errors name the key path and what is valid.

A config file has the run tables ``[sim]``, ``[links]``, ``[telemetry]``, ``[record]`` and
``[bench]`` (defined here) and the tables of one model kind (:mod:`emulator.model_kinds`): the satellite
tables (``name``, ``[orbit]``, ``[environment]``, ``[power]``, ``[thermal]``, ``[sensors]``,
``[accelerator]``, ``[radiation]``), which validate into :class:`emulator.models.satellite.SatelliteConfig`,
and for a cluster a ``[cluster]`` table besides (:class:`emulator.models.cluster.ClusterConfig`).

Precedence, lowest to highest: model defaults, the TOML file, explicit overrides (CLI flags,
keyword arguments) given as dotted keys (``{"sim.mode": "afap"}``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from emulator import model_kinds
from emulator.clock import ClockMode
from emulator.dotted import apply_overrides, merge_config, named_list, override_loc, set_dotted
from emulator.errors import ConfigError, ConfigProblem, suggest
from emulator.instruments.config import (
    SupplyConfig,
    as_list,
    check_unique,
    realtime_problem,
)
from emulator.validation import ConfigModel, combined_error, config_error

#: the dotted-override and validation helpers, public here too (one implementation: emulator.dotted, .validation)
__all__ = ["RUN_TABLES", "Config", "RunConfig", "apply_overrides", "config_error", "load_config", "merge_config",
           "origins", "read_raw", "read_toml", "set_dotted", "split_run"]

RUN_TABLES = ("sim", "links", "telemetry", "record", "bench")


_Strict = ConfigModel  # this module's tables


class SimConfig(_Strict):
    #: UTC instant of sim time 0 (the scenario epoch)
    epoch_utc: dt.datetime = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
    #: physics step in seconds; telemetry cannot be faster than 1/step_s
    step_s: float = Field(1.0, gt=0, le=60)
    mode: ClockMode = ClockMode.AFAP
    #: wall-clock multiplier for mode "scaled"
    speed: float = Field(1.0, ge=1e-3, le=1e6)
    seed: int = Field(1, ge=0, lt=2**63)
    #: run length; None runs until stopped
    duration_s: float | None = Field(None, gt=0)
    #: who may say "step" in lockstep mode: only the control plane, or also the board (board.step)
    lockstep_source: Literal["control", "board"] = "control"
    #: lockstep: wall seconds of waiting for a step before the emulator says what it waits for, and from which
    #: URL (it says so again every 6x as long)
    lockstep_notice_s: float = Field(5.0, gt=0)
    #: lockstep: wall seconds of waiting for a step before the run gives up (``flatsat run`` exits 2); 0: never
    lockstep_timeout_s: float = Field(300.0, ge=0)

    @field_validator("epoch_utc")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("epoch_utc needs a time zone; write it in UTC with a Z, e.g. 2026-06-21T00:00:00Z")
        return v.astimezone(dt.UTC)


class LinksConfig(_Strict):
    #: board plane (telemetry PUB + command ROUTER); None: no board link
    board: str | None = "zmq+tcp://127.0.0.1:5550"
    #: control plane; None: no control link (in-process control only)
    control: str | None = "zmq+tcp://127.0.0.1:5560"


class TelemetryConfig(_Strict):
    #: per-topic publish rate overrides, Hz (0 disables the topic)
    rates_hz: dict[str, float] = Field(default_factory=dict)
    #: rate of the control plane's ground-truth stream (truth.sample), Hz; 0 disables it
    truth_rate_hz: float = Field(1.0, ge=0)
    #: what to do when the telemetry does not fit a link's budget (serial baud rate)
    on_budget: Literal["refuse", "decimate"] = "refuse"

    @field_validator("rates_hz")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for topic, rate in v.items():
            if not 0 <= rate <= 1000:
                raise ValueError(f"rate for {topic!r} must be within 0..1000 Hz, got {rate}")
        return v


class RecordConfig(_Strict):
    #: recording file (every message on both planes, crash-safe); None: no recording
    path: str | None = None
    #: stop writing when the file reaches this many MB (the run goes on; the end of the run says so); None: no cap
    max_mb: float | None = Field(500.0, gt=0)


class BenchConfig(_Strict):
    #: shell commands run when the payload rail is cut / restored (e.g. a USB relay or uhubctl)
    power_off_cmd: str | None = None
    power_on_cmd: str | None = None
    #: programmable supplies that play rails of the bus (``[bench.supply]`` or ``[[bench.supply]]``; docs/hardware.md)
    supply: list[SupplyConfig] = Field(default_factory=list)

    @field_validator("supply", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return as_list(v)

    @field_validator("supply")
    @classmethod
    def _unique(cls, v: list[SupplyConfig]) -> list[SupplyConfig]:
        check_unique(v)
        return v


class RunConfig(_Strict):
    sim: SimConfig = Field(default_factory=SimConfig)
    links: LinksConfig = Field(default_factory=LinksConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)

    @model_validator(mode="after")
    def _supplies_need_real_time(self) -> RunConfig:
        if self.bench.supply:
            why = realtime_problem(str(self.sim.mode), self.sim.speed)
            if why:
                raise ValueError(f"bench.supply: {why}")
        return self


@dataclass(frozen=True)
class Config:
    """The run spec: one validated config file. ``run`` holds the run tables; ``model`` the model's config, of the
    model ``kind`` the file describes (:mod:`emulator.model_kinds`: ``satellite`` -> SatelliteConfig, ``cluster``
    -> ClusterConfig)."""

    run: RunConfig
    model: Any
    kind: str = "satellite"
    source: str = "<defaults>"

    @property
    def satellite(self) -> Any:
        """The satellite design: the satellite's config, or a cluster's member design."""
        return model_kinds.get(self.kind).design(self.model)

    @property
    def name(self) -> str:
        """The satellite's or the cluster's name."""
        return str(model_kinds.get(self.kind).title(self.model))

    def build_model(self) -> Any:
        """The model this config describes (a Satellite, a ClusterModel), for :class:`emulator.runtime.Emulator`."""
        return model_kinds.build(self)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> Config:
    """The one config loader: read a TOML file (or ``data``; what it ``extends`` under it), apply dotted-key
    ``overrides``, pick the model kind from the config (a ``[cluster]`` table: a cluster) and validate everything.

    ``labels``: override key -> how the user gave it (``--set KEY=VALUE``); an error in that key is blamed
    on it, not on the file.

    Raises:
        ConfigError: every problem located in ``problems`` (path, message, valid values, the override).
    """
    raw, source = read_raw(path, None, data)
    # overrides that cannot be set, the run tables and the model's tables are all checked, whatever the first
    # finds: every problem in one error
    errors: list[ConfigError] = []
    try:
        apply_overrides(raw, overrides or {})
    except ConfigError as exc:  # (the keys that could be set are set)
        errors.append(exc)
    by_path = origins(raw, overrides, labels)
    try:
        run = split_run(raw, source, by_path)
    except ConfigError as exc:
        errors.append(exc)
        run = None
    kind = model_kinds.kind_of(raw)
    items = _named_items(raw)  # (before the model's validation takes tables out of raw)
    try:
        model = kind.validate(raw, run, source, by_path, [*RUN_TABLES, *model_kinds.top_keys()])
    except ConfigError as exc:
        if any(_misnamed(p, items) for p in exc.problems):
            exc.problems = [_misnamed(p, items) or p for p in exc.problems]
            exc = combined_error([exc], source, by_path)
        errors.append(exc)
    errors = [_items_by_name(exc, items) for exc in errors]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise combined_error(errors, source, by_path)
    assert run is not None
    return Config(run=run, model=model, kind=kind.name, source=source)


#: an item name that reads as one part of a dotted key (``--set power.rails.payload.max_retries=...``)
_KEY_PART = re.compile(r"[A-Za-z_][\w-]*")


def _items_by_name(exc: ConfigError, items: dict[str, list[str]]) -> ConfigError:
    """``exc`` with its problems' list items named as the user names them (``power.rails.payload.max_retries``,
    as ``--set`` and scenarios write it) instead of by pydantic's index (``power.rails.3.max_retries``)."""
    problems = [dataclasses.replace(p, path=_item_path(p.path, items)) for p in exc.problems]
    if all(new.path == old.path for new, old in zip(problems, exc.problems, strict=True)):
        return exc
    text = exc.message
    for new, old in zip(problems, exc.problems, strict=True):
        if new.path != old.path:
            text = text.replace(f"{old.path}: ", f"{new.path}: ")
    field = _item_path(exc.field, items) if exc.field else exc.field
    return ConfigError(text, field=field, valid=exc.valid, problems=problems)


def _item_path(path: str, items: dict[str, list[str]]) -> str:
    """``path`` with each index into a list of named tables (``items``: path -> names) replaced by the name."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        names = items.get(".".join(parts[:i]))
        if names and parts[i].isdigit() and int(parts[i]) < len(names) and _KEY_PART.fullmatch(names[int(parts[i])]):
            parts[i] = names[int(parts[i])]
    return ".".join(parts)


def _named_items(raw: dict[str, Any], path: str = "") -> dict[str, list[str]]:
    """Every list of named tables in ``raw`` (rails, nodes, loads...): dotted path -> the names, in order."""
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        here = f"{path}{key}"
        if isinstance(value, dict):
            out.update(_named_items(value, here + "."))
        elif named_list(value):
            out[here] = [item["name"] for item in value]
    return out


def _misnamed(problem: ConfigProblem, items: dict[str, list[str]]) -> ConfigProblem | None:
    """A key missing from a list item whose name is close to another's: a misspelt name made a new item (a file
    that ``extends`` merges items by name) -- the problem, with that said; None if it is not that."""
    if problem.message != "required key is missing":
        return None
    head = problem.path.rpartition(".")[0]
    lst, _, index = head.rpartition(".")
    names = items.get(lst)
    if not names or not index.isdigit() or int(index) >= len(names):
        return None
    name = names[int(index)]
    hint = suggest(name, [n for n in names if n != name])
    if not hint:
        return None
    return dataclasses.replace(problem, message=f"required key is missing: {name!r} names no item of {lst}{hint}, "
                                                "so it adds a new one, which needs every key")


def origins(raw: dict[str, Any], overrides: dict[str, Any] | None,
            labels: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Pydantic key path -> (override key, how the user gave it), for every override: a problem found there is
    blamed on the override (``--set KEY=VALUE``, a scenario's ``[overrides]``), not on the file."""
    return {override_loc(raw, key): (key, (labels or {}).get(key, f"override {key}")) for key in (overrides or {})}


def read_raw(path: str | Path | None, overrides: dict[str, Any] | None = None,
             data: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The TOML file as a dict (what it ``extends`` under it, ``data`` merged in, dotted ``overrides`` applied)
    and its name for errors."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    if data is not None:
        merge_config(raw, data, by_name=False)
    apply_overrides(raw, overrides or {})
    return raw, source


#: how deep ``extends`` may chain (a loop is an error long before)
MAX_EXTENDS = 8


def read_toml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file as a dict, with what it ``extends`` under it.

    ``extends = "suncatcher-proto"`` (a path, relative to this file, or a shipped name) makes that config the base:
    this file's tables are merged over it, key by key; a list of tables whose items have a ``name`` (rails, nodes,
    arrays...) is merged item by item by name (a new name is appended), any other list is replaced.
    """
    from emulator import shipped

    base_dir = Path(_chain[-1]).parent if _chain else None
    try:
        found = shipped.resolve(path, "satellite", base_dir)  # a path, or the name of a shipped config
    except ConfigError as exc:
        if _chain:
            raise ConfigError(f"{_chain[-1]}: extends {str(path)!r}: {exc.message}", field="extends",
                              valid=exc.valid) from None
        raise
    if found in _chain or len(_chain) >= MAX_EXTENDS:
        loop = " -> ".join(str(p) for p in (*_chain, found))
        raise ConfigError(f"extends goes round in a loop (or deeper than {MAX_EXTENDS}): {loop}", field="extends")
    try:
        raw = tomllib.loads(found.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {found}", field="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: not valid TOML: {exc}", field="config") from None
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{found}: extends must be the name or path of one config, got {parent!r}",
                          field="extends")
    base = read_toml(parent, (*_chain, found))
    merge_config(base, raw)
    return base


def split_run(raw: dict[str, Any], source: str, labels: dict[str, tuple[str, str]] | None = None) -> RunConfig:
    """Take the run tables out of ``raw`` (in place) and validate them."""
    run_raw = {k: raw.pop(k) for k in RUN_TABLES if k in raw}
    try:
        return RunConfig.model_validate(run_raw)
    except ValidationError as exc:
        raise config_error(exc, RunConfig, source, labels=labels) from None

"""Run configuration: TOML -> validated pydantic models; errors name the key path and what is valid.

A config file has the run tables ``[sim]``, ``[links]``, ``[telemetry]``, ``[record]`` and
``[bench]`` (defined here) and the satellite tables (``name``, ``[orbit]``, ``[environment]``,
``[power]``, ``[thermal]``, ``[sensors]``, ``[accelerator]``, ``[radiation]``), which
validate into :class:`emulator.models.satellite.SatelliteConfig`.

Precedence, lowest to highest: model defaults, the TOML file, explicit overrides (CLI flags,
keyword arguments) given as dotted keys (``{"sim.mode": "afap"}``).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emulator.clock import ClockMode
from emulator.errors import ConfigError, ConfigProblem, suggest
from emulator.instruments.config import (
    SupplyConfig,
    as_list,
    check_against_satellite,
    check_unique,
    realtime_problem,
)

RUN_TABLES = ("sim", "links", "telemetry", "record", "bench")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


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
    run: RunConfig
    satellite: Any  # emulator.models.satellite.SatelliteConfig (imported lazily: physics is optional here)
    source: str = "<defaults>"


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> Config:
    """Read a TOML file (or ``data``), apply dotted-key ``overrides``, validate everything.

    ``labels``: override key -> how the user gave it (``--set KEY=VALUE``); an error in that key is blamed
    on it, not on the file.
    """
    raw, source = read_raw(path, overrides, data)
    by_path = origins(raw, overrides, labels)
    run = split_run(raw, source, by_path)
    from emulator.models.satellite import SatelliteConfig

    try:
        sat = SatelliteConfig.model_validate(raw)
    except ValidationError as exc:
        valid = list(RUN_TABLES) + list(SatelliteConfig.model_fields)
        raise config_error(exc, SatelliteConfig, source, extra_valid=valid, labels=by_path) from None
    if run.bench.supply:
        try:
            check_against_satellite(run.bench.supply, sat)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}", field="bench.supply") from None
    return Config(run=run, satellite=sat, source=source)


def origins(raw: dict[str, Any], overrides: dict[str, Any] | None,
            labels: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Pydantic key path -> (override key, how the user gave it), for every override: a problem found there is
    blamed on the override (``--set KEY=VALUE``, a scenario's ``[overrides]``), not on the file."""
    return {_loc_of(raw, key): (key, (labels or {}).get(key, f"override {key}")) for key in (overrides or {})}


def _loc_of(raw: dict[str, Any], key: str) -> str:
    """An override key as the dotted path pydantic reports (list items named by ``name`` become indexes)."""
    import re

    out: list[str] = []
    node: Any = raw
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            return key
        steps: list[str | int] = [m.group(1), *[int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]]
        for step in steps:
            if isinstance(node, list) and isinstance(step, str):
                index = next((i for i, it in enumerate(node) if isinstance(it, dict) and it.get("name") == step), None)
                step = step if index is None else index
            out.append(str(step))
            try:
                node = node[step]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                node = None
    return ".".join(out)


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


def merge_config(into: dict[str, Any], new: dict[str, Any], *, by_name: bool = True) -> None:
    """Merge ``new`` over ``into`` in place: tables key by key, lists of named tables item by item by ``name``
    (``by_name=False``: any list replaced whole)."""
    for k, v in new.items():
        old = into.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            merge_config(old, v, by_name=by_name)
        elif by_name and _named_list(v) and _named_list(old):
            named = {item["name"]: item for item in old}
            for item in v:
                if item["name"] in named:
                    merge_config(named[item["name"]], item)
                else:
                    old.append(item)
        else:
            into[k] = v


def _named_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in v)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply dotted-key ``overrides`` to a config dict in place: the one implementation every entry point uses
    (``--set``, a scenario's ``[overrides]``, a campaign's sweeps, the pytest plugin, cluster members).

    ``a.b.c`` reaches nested tables; a list of tables is indexed by an item's ``name`` or by ``[i]``:
    ``power.rails.payload.max_retries`` and ``power.rails[3].max_retries`` both reach the ``max_retries`` of the
    rail named ``payload`` (the fourth ``[[power.rails]]``).

    Raises:
        ConfigError: a key that cannot be set; its problem names the override (``override``).
    """
    for key, value in overrides.items():
        set_dotted(raw, key, value)


def split_run(raw: dict[str, Any], source: str, labels: dict[str, tuple[str, str]] | None = None) -> RunConfig:
    """Take the run tables out of ``raw`` (in place) and validate them."""
    run_raw = {k: raw.pop(k) for k in RUN_TABLES if k in raw}
    try:
        return RunConfig.model_validate(run_raw)
    except ValidationError as exc:
        raise config_error(exc, RunConfig, source, labels=labels) from None


def config_error(exc: ValidationError, root: type[BaseModel], source: str,
                 extra_valid: list[str] | None = None, labels: dict[str, tuple[str, str]] | None = None,
                 prefix: str = "") -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every bad key path with what is valid; its
    ``problems`` carry each one located (path, message, valid values, the override it came from).

    ``labels``: dotted path -> (override key, how it was given, e.g. ``--set KEY=VALUE``): problems there name it,
    and when every problem comes from an override the file is not blamed. ``prefix``: the table the model was
    read from (``cluster.``), put in front of every path.
    """
    problems: list[ConfigProblem] = []
    blamed: list[str] = []
    in_file = False
    for err in exc.errors(include_url=False):
        path = prefix + ".".join(str(p) for p in err["loc"])
        origin = next((o for p, o in (labels or {}).items() if path == p or path.startswith(p + ".")), None)
        if origin is None:
            in_file = True
        elif origin[1] not in blamed:
            blamed.append(origin[1])
        valid: list[str] | None = None
        if err["type"] == "extra_forbidden":
            fields = _fields_at(root, err["loc"][:-1])
            if not err["loc"][:-1] and extra_valid:
                fields = extra_valid
            name = str(err["loc"][-1])
            valid = sorted(fields)
            message = f"unknown key{suggest(name, fields)}; valid keys here: {', '.join(valid)}"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        problems.append(ConfigProblem(path, message, valid, origin[0] if origin else None))
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    if blamed and not in_file:
        head = f"invalid {', '.join(blamed)} ({count}; {source} itself is fine)"
    else:
        head = f"{source}: invalid config ({count})" + (f", from {', '.join(blamed)}" if blamed else "")
    first = problems[0] if problems else ConfigProblem("", head)
    return ConfigError(head + "\n  " + "\n  ".join(map(str, problems)), field=first.path or None,
                       valid=next((p.valid for p in problems if p.valid), None), problems=problems)


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc``, best effort."""
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part) if isinstance(model, type) else None
        if info is None:
            return []
        model = _model_of(info.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set one dotted key (see :func:`apply_overrides`)."""
    import re

    parts: list[str | int] = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise _override_error(key, f"bad key syntax at {part!r}")
        parts.append(m.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    node: Any = raw
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, p, key)
            continue
        nxt = parts[i + 1]
        if p not in node:
            node[p] = [] if isinstance(nxt, int) else {}
        node = node[p]
        if not isinstance(node, (dict, list)):
            raise _override_error(key, f"{p!r} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        raise _override_error(key, f"must name a key inside an item, e.g. {key}.<key>")
    node[last] = value


def _list_item(items: list[Any], sel: str | int, key: str) -> Any:
    if isinstance(sel, int):
        if not 0 <= sel < len(items):
            raise _override_error(key, f"index {sel} out of range (0..{len(items) - 1})")
        return items[sel]
    names = [it.get("name") for it in items if isinstance(it, dict)]
    for it in items:
        if isinstance(it, dict) and it.get("name") == sel:
            return it
    raise _override_error(key, f"no item named {sel!r}{suggest(str(sel), [str(n) for n in names])}",
                          [str(n) for n in names])


def _override_error(key: str, what: str, valid: list[str] | None = None) -> ConfigError:
    return ConfigError(f"override {key!r}: {what}", field=key, valid=valid,
                       problems=[ConfigProblem(key, what, valid, override=key)])

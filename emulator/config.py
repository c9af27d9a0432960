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
from emulator.errors import ConfigError, suggest
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
    by_path = {_loc_of(raw, key): label for key, label in (labels or {}).items()}
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
    """The TOML file as a dict (``data`` merged in, dotted ``overrides`` applied) and its name for errors."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        from emulator import shipped

        path = shipped.resolve(path, "satellite")  # a path, or the name of a shipped config
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}", field="config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", field="config") from None
    if data is not None:
        _merge(raw, data)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return raw, source


def split_run(raw: dict[str, Any], source: str, labels: dict[str, str] | None = None) -> RunConfig:
    """Take the run tables out of ``raw`` (in place) and validate them."""
    run_raw = {k: raw.pop(k) for k in RUN_TABLES if k in raw}
    try:
        return RunConfig.model_validate(run_raw)
    except ValidationError as exc:
        raise config_error(exc, RunConfig, source, labels=labels) from None


def config_error(exc: ValidationError, root: type[BaseModel], source: str,
                 extra_valid: list[str] | None = None, labels: dict[str, str] | None = None) -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every bad key path with what is valid.

    ``labels``: dotted path -> how an override gave it (``--set KEY=VALUE``): problems there name it, and when
    every problem comes from an override the file is not blamed.
    """
    lines = []
    first_field = None
    first_valid: list[str] | None = None
    blamed: list[str] = []
    in_file = False
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"])
        label = next((lab for p, lab in (labels or {}).items() if path == p or path.startswith(p + ".")), None)
        if label is None:
            in_file = True
        elif label not in blamed:
            blamed.append(label)
        first_field = first_field or path
        if err["type"] == "extra_forbidden":
            valid = _fields_at(root, err["loc"][:-1])
            if not err["loc"][:-1] and extra_valid:
                valid = extra_valid
            name = str(err["loc"][-1])
            lines.append(f"{path}: unknown key{suggest(name, valid)}; valid keys here: {', '.join(sorted(valid))}")
            first_valid = first_valid or sorted(valid)
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
    count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
    if blamed and not in_file:
        head = f"invalid {', '.join(blamed)} ({count}; {source} itself is fine)"
    else:
        head = f"{source}: invalid config ({count})" + (f", from {', '.join(blamed)}" if blamed else "")
    return ConfigError(head + "\n  " + "\n  ".join(lines), field=first_field, valid=first_valid)


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


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested tables; a list of named tables is indexed by name or ``[i]``.

    ``power.rails.payload.max_retries`` and ``power.rails[3].max_retries`` both reach the
    ``max_retries`` of the rail named ``payload`` (the fourth ``[[power.rails]]``).
    """
    import re

    parts: list[str | int] = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise ConfigError(f"override {key!r}: bad key syntax at {part!r}", field=key)
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
            raise ConfigError(f"override {key!r}: {p!r} is not a table", field=key)
    last = parts[-1]
    if isinstance(node, list):
        raise ConfigError(f"override {key!r} must name a key inside an item, e.g. {key}.<key>", field=key)
    node[last] = value


def _list_item(items: list[Any], sel: str | int, key: str) -> Any:
    if isinstance(sel, int):
        if not 0 <= sel < len(items):
            raise ConfigError(f"override {key!r}: index {sel} out of range (0..{len(items) - 1})", field=key)
        return items[sel]
    names = [it.get("name") for it in items if isinstance(it, dict)]
    for it in items:
        if isinstance(it, dict) and it.get("name") == sel:
            return it
    raise ConfigError(f"override {key!r}: no item named {sel!r}{suggest(str(sel), [str(n) for n in names])}",
                      field=key, valid=[str(n) for n in names])

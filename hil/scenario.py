"""Scenario files: a run's settings, a timeline of faults and actions, and the requirements to check.

A scenario is a TOML file (``configs/scenarios/*.toml``)::

    [scenario]
    name = "eclipse-brownout"
    config = "suncatcher-proto.toml"     # relative to this file, else to configs/
    duration = "1d"
    seed = 7

    [overrides]
    "power.battery.capacity_wh" = 20

    [[timeline]]
    at = "2h"
    do = "fault"
    name = "eps.array_degradation"
    params = { factor = 0.5 }
    duration = "10m"

    [[requirement]]
    kind = "always"
    signal = "satellite.power.bus_v"
    op = ">="
    value = 6.0

Checking happens in two passes, each reporting *every* problem at once: :func:`load_scenario`
checks the file's structure (unknown keys, unknown ``do`` / ``kind``, bad types and durations);
:func:`check_against` checks names against a built emulator (signals in the ground truth, fault
names and their parameter schemas, topics in the catalogue). Python's ``tomllib`` reports no
line numbers for valid TOML, so problems are located by key path (``timeline[2].name``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from emulator import shipped
from emulator.clock import parse_duration_s
from emulator.errors import CodecError, ConfigError, ConfigProblem, suggest
from emulator.protocol.system_schemas import LONGEST_SPAN_S

TOP_KEYS = ("scenario", "overrides", "timeline", "requirement")
OPS = ("<", "<=", ">", ">=", "==", "!=")
Op = Literal["<", "<=", ">", ">=", "==", "!="]
MODES = ("lockstep", "afap", "realtime", "scaled")


def _duration(value: Any) -> float:
    """A duration as TOML gives it: '2h', '90m', '30s', '250ms', '1d', or a number of seconds; 0 allowed."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string like '90m', got {value!r}")  # noqa: TRY004
    if isinstance(value, (int, float)) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip().rstrip("dhms").strip() in ("0", "0.0"):
        return 0.0
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"a duration is a number of seconds or a string like '90m', got {value!r}")  # noqa: TRY004
    return parse_duration_s(value)


#: seconds, from '2h' / '90m' / 3600
Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScenarioHead(_Strict):
    """The ``[scenario]`` table."""

    #: short name; names the recording and the report's test suite
    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    #: satellite config file, relative to the scenario file or to configs/ (None: the default config)
    config: str | None = None
    #: sim time to run (ten years at most: a span of sim time a command can name)
    duration: Annotated[Duration, Field(gt=0, le=LONGEST_SPAN_S)]
    #: clock mode; None: "lockstep" driven by the board when a board is attached, else "afap"
    mode: Literal["lockstep", "afap", "realtime", "scaled"] | None = None
    #: wall-clock multiplier for mode "scaled"
    speed: float | None = Field(None, ge=1e-3, le=1e6)
    #: seed of the run (the command line's --seed wins)
    seed: int = Field(1, ge=0, lt=2**63)
    #: physics step, seconds
    step_s: float = Field(1.0, gt=0, le=60)
    #: UTC instant of sim time 0 (None: the config's)
    epoch_utc: dt.datetime | None = None

    @field_validator("epoch_utc")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("epoch_utc needs a time zone; write it in UTC with a Z, e.g. 2026-06-21T00:00:00Z")
        return v


# -- timeline --------------------------------------------------------------------------------
class _Action(_Strict):
    #: sim time since the start of the run
    at: Duration
    #: shown in the report and the plots; names a fault for a later "clear"
    label: str | None = None


class FaultAction(_Action):
    do: Literal["fault"]
    #: fault name from the emulator's fault list
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: clear automatically after this long (None: until cleared)
    duration: Duration | None = None


class ClearAction(_Action):
    """Clear the fault injected by the timeline entry with this ``label`` (no label: every active one)."""

    do: Literal["clear"]


class BoardRestartAction(_Action):
    """Kill the board process, then start it again after ``down`` of sim time."""

    do: Literal["board_restart"]
    down: Duration = 0.0


class BoardKillAction(_Action):
    """Kill the board process for good (the run goes on without it)."""

    do: Literal["board_kill"]


class ControlAction(_Action):
    """A control-plane command, e.g. ``clock.set_speed``."""

    do: Literal["control"]
    topic: str
    payload: dict[str, Any] = Field(default_factory=dict)


Action = Annotated[FaultAction | ClearAction | BoardRestartAction | BoardKillAction | ControlAction,
                   Field(discriminator="do")]
ACTIONS: dict[str, type[_Action]] = {"fault": FaultAction, "clear": ClearAction, "board_restart": BoardRestartAction,
                                     "board_kill": BoardKillAction, "control": ControlAction}


# -- requirements ----------------------------------------------------------------------------
class _Requirement(_Strict):
    #: one line in the report (default: the requirement written out)
    label: str | None = None
    #: why it matters (shown in the report)
    why: str = ""


class _SignalRequirement(_Requirement):
    #: flattened ground-truth key, e.g. satellite.power.bus_v
    signal: str
    op: Op
    value: float


class AlwaysRequirement(_SignalRequirement):
    """``signal op value`` at every physics step (from ``after`` on)."""

    kind: Literal["always"]
    after: Duration = 0.0


class FinalRequirement(_SignalRequirement):
    """``signal op value`` at the end of the run."""

    kind: Literal["final"]


class ExtremumRequirement(_SignalRequirement):
    """The largest (``max``) or smallest (``min``) value over the run ``op value``."""

    kind: Literal["max", "min"]


class MessageFilter(_Strict):
    """Messages of ``topic`` whose payload fields equal ``where`` (dotted paths into the payload)."""

    topic: str
    where: dict[str, Any] = Field(default_factory=dict)


class ResponseRequirement(_Requirement):
    """Every ``trigger`` message is followed by a ``response`` message within ``within``."""

    kind: Literal["response"]
    trigger: MessageFilter
    response: MessageFilter
    #: a payload field that must be equal in the trigger and its response (e.g. job_id)
    match: str | None = None
    within: Duration
    #: pass when the trigger never fires (default: fail, since nothing was tested)
    allow_no_trigger: bool = False


class CountRequirement(_Requirement):
    """The number of ``topic`` messages (filtered by ``where``) ``op value``."""

    kind: Literal["count"]
    topic: str
    where: dict[str, Any] = Field(default_factory=dict)
    op: Op
    value: int = Field(ge=0)


Requirement = Annotated[AlwaysRequirement | FinalRequirement | ExtremumRequirement | ResponseRequirement
                        | CountRequirement, Field(discriminator="kind")]
KINDS: dict[str, type[_Requirement]] = {"always": AlwaysRequirement, "final": FinalRequirement,
                                        "max": ExtremumRequirement, "min": ExtremumRequirement,
                                        "response": ResponseRequirement, "count": CountRequirement}


class ScenarioFile(_Strict):
    scenario: ScenarioHead
    overrides: dict[str, Any] = Field(default_factory=dict)
    timeline: list[Action] = Field(default_factory=list)
    requirement: list[Requirement] = Field(default_factory=list)


# -- errors ----------------------------------------------------------------------------------
#: one thing wrong in a scenario (or a campaign): where (key path), what, what would be valid, and the override it
#: comes from; the config's own problem type, so a config problem carries over without parsing its text
Problem = ConfigProblem


class ScenarioError(ConfigError):
    """A scenario file that cannot run; lists every problem with its key path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        text = f"{source}: invalid scenario ({n} problem{'s' if n != 1 else ''})\n  " + \
            "\n  ".join(str(p) for p in problems)
        super().__init__(text, field=problems[0].path if problems else None,
                         valid=problems[0].valid if problems else None, problems=problems)


# -- the loaded scenario ---------------------------------------------------------------------
@dataclass
class Scenario:
    """A validated scenario file. Times are in seconds of sim time."""

    head: ScenarioHead
    overrides: dict[str, Any]
    #: timeline entries sorted by time (stable: entries at the same time keep file order), with file index
    timeline: list[tuple[int, _Action]]
    requirements: list[tuple[int, _Requirement]]
    source: str = "<scenario>"
    #: resolved satellite config path (None: the default config / a model factory decides)
    config_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def duration_s(self) -> float:
        return self.head.duration

    @property
    def seed(self) -> int:
        return self.head.seed

    def signals(self) -> list[str]:
        """Every ground-truth signal a requirement reads (file order, no repeats)."""
        out: list[str] = []
        for _, req in self.requirements:
            sig = getattr(req, "signal", None)
            if sig is not None and sig not in out:
                out.append(sig)
        return out

    def needs_board_process(self) -> list[int]:
        """File indexes of timeline entries that restart or kill the board process."""
        return [i for i, a in self.timeline if isinstance(a, (BoardRestartAction, BoardKillAction))]


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file's structure.

    Raises:
        ScenarioError: file missing, not TOML, or any structural problem (all listed at once).
    """
    try:
        path = shipped.resolve(path, "scenario")
    except ConfigError as exc:
        raise ScenarioError(str(path), [Problem("file", exc.message, exc.valid)]) from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(path), [Problem("file", "scenario file not found")]) from None
    except OSError as exc:
        raise ScenarioError(str(path), [Problem("file", f"cannot read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # TOML syntax errors are the one case where tomllib gives a line and column
        raise ScenarioError(str(path), [Problem("file", f"not valid TOML: {exc}")]) from None
    return scenario_from_dict(data, source=str(path), base_dir=path.parent)


def scenario_from_dict(data: Mapping[str, Any], *, source: str = "<scenario>",
                       base_dir: Path | None = None) -> Scenario:
    """Check a scenario given as a dict (the parsed TOML); see :func:`load_scenario`."""
    try:
        parsed = ScenarioFile.model_validate(dict(data))
    except ValidationError as exc:
        # the checks across entries still run on every entry that is right by itself: all problems at once
        problems = _problems(exc, data)
        seen = {p.path for p in problems}
        head, timeline, requirements = _valid_parts(data)
        # a fault entry that is wrong itself still has its label: clears are not checked against a partial list
        raw = data.get("timeline")
        faults_ok = sum(isinstance(a, FaultAction) for _, a in timeline) == sum(
            isinstance(item, dict) and item.get("do") == "fault" for item in (raw if isinstance(raw, list) else []))
        problems += [p for p in _cross_checks(head, timeline, requirements, base_dir, labels=faults_ok)[0]
                     if p.path not in seen]
        raise ScenarioError(source, problems) from None
    timeline = sorted(enumerate(parsed.timeline), key=lambda ia: ia[1].at)
    requirements = list(enumerate(parsed.requirement))
    problems, config_path = _cross_checks(parsed.scenario, timeline, requirements, base_dir)
    if problems:
        raise ScenarioError(source, problems)
    return Scenario(head=parsed.scenario, overrides=dict(parsed.overrides), timeline=timeline,
                    requirements=requirements, source=source, config_path=config_path, raw=dict(data))


def _valid_parts(data: Mapping[str, Any]) -> tuple[ScenarioHead | None, list[tuple[int, Any]], list[tuple[int, Any]]]:
    """The ``[scenario]`` table, timeline entries and requirements of ``data`` that are right by themselves (the
    file as a whole failed validation)."""
    head = None
    with contextlib.suppress(ValidationError, TypeError):
        head = ScenarioHead.model_validate(data.get("scenario"))
    parts: list[list[tuple[int, Any]]] = []
    for key in ("timeline", "requirement"):
        items = data.get(key)
        good = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            with contextlib.suppress(ValidationError):
                good.append((i, _adapter(key).validate_python(item)))
        parts.append(good)
    return head, sorted(parts[0], key=lambda ia: ia[1].at), parts[1]


def _cross_checks(head: ScenarioHead | None, timeline: list[tuple[int, Any]], requirements: list[tuple[int, Any]],
                  base_dir: Path | None, *, labels: bool = True) -> tuple[list[Problem], Path | None]:
    """What no single entry can tell: times past the end of the run, a ``clear`` of a label no earlier fault has
    (``labels``: every fault entry is in ``timeline``), requirements with nothing to check, the satellite config's
    file; and that file's path."""
    problems: list[Problem] = []
    duration = head.duration if head is not None else math.inf
    for i, action in timeline:
        if action.at > duration:
            problems.append(Problem(f"timeline[{i}].at", f"at {action.at:g} s is after the end of the run "
                                                         f"(duration {duration:g} s)"))
    labels_so_far: dict[str, FaultAction] = {}
    for i, action in timeline:
        if isinstance(action, FaultAction):
            label = action.label or action.name
            labels_so_far[label] = action
        elif (labels and isinstance(action, ClearAction) and action.label is not None
              and action.label not in labels_so_far):
            valid = sorted(labels_so_far)
            problems.append(Problem(f"timeline[{i}].label",
                                    f"no fault labelled {action.label!r} is injected before t={action.at:g} s"
                                    f"{suggest(action.label, valid)}; fault labels (default: the fault name): "
                                    f"{', '.join(valid) or 'none'}", valid))
    for i, req in requirements:
        if isinstance(req, AlwaysRequirement) and req.after >= duration:
            problems.append(Problem(f"requirement[{i}].after",
                                    f"after {req.after:g} s leaves nothing to check in a {duration:g} s run"))
        if isinstance(req, ResponseRequirement) and req.within <= 0:
            problems.append(Problem(f"requirement[{i}].within", "within must be > 0"))
    config_path = None
    if head is not None and head.config is not None:
        try:
            config_path = shipped.resolve(head.config, "satellite", base_dir)
        except ConfigError as exc:
            problems.append(Problem("scenario.config", exc.message, exc.valid))
    return problems, config_path


@functools.cache
def _adapter(kind: str) -> TypeAdapter[Any]:
    """One timeline entry or one requirement validated alone (built when a file is wrong, not at import)."""
    return TypeAdapter(Action if kind == "timeline" else Requirement)


def key_path(loc: Iterable[Any]) -> str:
    """('timeline', 2, 'name') -> 'timeline[2].name'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) if "." not in str(part) else f'"{part}"')
    return out


def _problems(exc: ValidationError, data: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # a discriminated union puts the tag into the path: ('timeline', 2, 'fault', 'name'); drop it
        if len(loc) > 2 and loc[0] in ("timeline", "requirement") and isinstance(loc[1], int):
            loc.pop(2)
        path = key_path(loc)
        typ = err["type"]
        if typ == "union_tag_invalid":
            tag_key = "do" if loc[0] == "timeline" else "kind"
            table = ACTIONS if loc[0] == "timeline" else KINDS
            got = str(err.get("ctx", {}).get("tag", "?"))
            valid = sorted(table)
            out.append(Problem(f"{path}.{tag_key}", f"unknown {'action' if tag_key == 'do' else tag_key} {got!r}{suggest(got, valid)}; "
                                                    f"valid: {', '.join(valid)}", valid))
        elif typ == "union_tag_not_found":
            tag_key = "do" if loc[0] == "timeline" else "kind"
            table = ACTIONS if loc[0] == "timeline" else KINDS
            valid = sorted(table)
            out.append(Problem(f"{path}.{tag_key}", f"missing {tag_key!r}; valid: {', '.join(valid)}", valid))
        elif typ == "extra_forbidden":
            valid = _valid_keys(loc[:-1], data)
            name = str(loc[-1])
            out.append(Problem(path, f"unknown key{suggest(name, valid)}; valid keys here: {', '.join(valid)}",
                               valid))
        elif typ == "missing":
            out.append(Problem(path, "required key is missing"))
        elif typ == "literal_error" and loc and loc[-1] == "op":
            out.append(Problem(path, f"unknown operator {err.get('input')!r}; valid: {' '.join(OPS)}", list(OPS)))
        elif typ == "literal_error" and loc and loc[-1] == "mode":
            out.append(Problem(path, f"unknown mode {err.get('input')!r}; valid: {', '.join(MODES)}", list(MODES)))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(Problem(path, f"{msg} (got {err.get('input')!r})"))
    return out


def _valid_keys(loc: list[Any], data: Mapping[str, Any]) -> list[str]:
    """Keys allowed at ``loc`` (a path with the union tag already removed)."""
    model: Any = ScenarioFile
    if not loc:
        return sorted(TOP_KEYS)
    if loc[0] in ("timeline", "requirement") and len(loc) >= 2 and isinstance(loc[1], int):
        items = data.get(str(loc[0])) or []
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else {}
        tag = item.get("do" if loc[0] == "timeline" else "kind") if isinstance(item, Mapping) else None
        model = (ACTIONS if loc[0] == "timeline" else KINDS).get(str(tag))
        rest = loc[2:]
    else:
        rest = loc
    for part in rest:
        if model is None:
            return []
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return []
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return sorted(model.model_fields) if model is not None else []


# -- checks against a built emulator ---------------------------------------------------------
def close_signals(name: str, signals: Iterable[str], n: int = 6) -> list[str]:
    """Signals that look like ``name``: difflib matches, else those sharing its longest prefix."""
    signals = list(signals)
    close = difflib.get_close_matches(name, signals, n=n, cutoff=0.6)
    if close:
        return close
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:k]) + "."
        same = [s for s in signals if s.startswith(prefix)]
        if same:
            return same[:n]
    return []


def check_against(scenario: Scenario, *, signals: Iterable[str], fault_params: Mapping[str, Any],
                  catalogue: Any, board: Literal["process", "url"] | None,
                  names: Mapping[str, list[str]] | None = None) -> None:
    """Check every name in ``scenario`` against what a built emulator offers.

    Args:
        signals: flattened ground-truth keys (``emulator.series.flatten(emu.truth())``).
        fault_params: fault name -> (params pydantic model, clearable: bool).
        catalogue: the emulator's :class:`~emulator.protocol.catalogue.Catalogue`.
        board: how a board is attached (a process the runner controls, a URL, or none).
        names: payload field name -> the names the model has (``rail``: the rails, ``node``: thermal nodes,
            ...; :meth:`~emulator.models.base.SpacecraftModel.names`): a value there must be one of them.

    Raises:
        ScenarioError: listing every problem found (key path, what, what is valid).
    """
    from emulator.protocol.catalogue import Catalogue, Kind, Plane, TopicSpec

    signals = set(signals)
    problems: list[Problem] = []
    topics = sorted(s.topic for s in catalogue)
    names = names or {}

    def check_names(where: str, values: Mapping[str, Any], schema: type[BaseModel] | None) -> None:
        """Values that name things (a rail, a node, a state): one of the model's names, or the field's choices."""
        for key, value in values.items():
            field_name = key.split(".")[-1]
            valid = names.get(field_name)
            if valid is None and schema is not None and "." not in key:
                valid = _choices(schema, key)
            if valid is None or not isinstance(value, str) or value in valid:
                continue
            what = field_name if field_name in names else f"{field_name} value"
            problems.append(Problem(f"{where}.{key}", f"unknown {what} {value!r}{suggest(value, valid)}; valid: "
                                                      f"{', '.join(map(str, valid))}", list(valid)))
    for i, action in scenario.timeline:
        base = f"timeline[{i}]"
        if isinstance(action, FaultAction):
            entry = fault_params.get(action.name)
            if entry is None:
                valid = sorted(fault_params)
                problems.append(Problem(f"{base}.name", f"unknown fault {action.name!r}{suggest(action.name, valid)}"
                                                        f"; valid: {', '.join(valid) or 'none'}", valid))
                continue
            schema, clearable = entry
            check_names(f"{base}.params", action.params, schema)
            cat = Catalogue([TopicSpec(f"fault:{action.name}", Kind.COMMAND, Plane.CONTROL, schema, "")])
            try:
                cat.validate(f"fault:{action.name}", action.params)
            except CodecError as exc:
                fld = (exc.field or "payload").replace("payload", "params", 1)
                msg = exc.message.replace(f"fault:{action.name}: payload", f"fault {action.name!r}: params")
                problems.append(Problem(f"{base}.{fld}", msg, exc.valid))
            if action.duration is not None and not clearable:
                problems.append(Problem(f"{base}.duration", f"fault {action.name!r} is permanent and cannot have "
                                                            "a duration"))
        elif isinstance(action, ControlAction):
            try:
                catalogue.validate(action.topic, action.payload, plane=Plane.CONTROL, kind=Kind.COMMAND)
            except CodecError as exc:
                fld = exc.field or "topic"
                fld = "topic" if fld == "topic" else fld
                problems.append(Problem(f"{base}.{fld}", exc.message, exc.valid))
        elif isinstance(action, (BoardRestartAction, BoardKillAction)) and board != "process":
            how = "a real board at --board-url" if board == "url" else "no board"
            problems.append(Problem(f"{base}.do", f"{action.do} needs a board process the runner started "
                                                  f"(--board CMD); this run has {how}"))
    for i, req in scenario.requirements:
        base = f"requirement[{i}]"
        sig = getattr(req, "signal", None)
        if sig is not None and sig not in signals:
            close = close_signals(sig, signals)
            hint = f"; close matches: {', '.join(close)}" if close else f"; {len(signals)} signals exist"
            problems.append(Problem(f"{base}.signal", f"unknown signal {sig!r} (not in the ground truth){hint}",
                                    close or None))
        filters: list[tuple[str, MessageFilter]] = []
        if isinstance(req, ResponseRequirement):
            filters = [("trigger", req.trigger), ("response", req.response)]
        elif isinstance(req, CountRequirement):
            filters = [("", MessageFilter(topic=req.topic, where=req.where))]
        fields_by_part: dict[str, list[str] | None] = {}
        for part, flt in filters:
            pre = f"{base}.{part}." if part else f"{base}."
            if flt.topic not in catalogue:
                problems.append(Problem(f"{pre}topic", f"unknown topic {flt.topic!r}{suggest(flt.topic, topics)}"
                                                       f"; valid: {', '.join(topics)}", topics))
                continue
            known = _payload_fields(catalogue.get(flt.topic).schema)
            fields_by_part[part] = known
            check_names(f"{pre}where", flt.where, catalogue.get(flt.topic).schema)
            for key in flt.where:
                head = key.split(".")[0]
                if known is not None and head not in known:
                    problems.append(Problem(f"{pre}where.{key}", f"{flt.topic!r} has no payload field {head!r}"
                                                                 f"{suggest(head, known)}; valid: {', '.join(known)}",
                                            known))
        if isinstance(req, ResponseRequirement) and req.match is not None:
            for part in ("trigger", "response"):
                known = fields_by_part.get(part)
                head = req.match.split(".")[0]
                if known is not None and head not in known:
                    topic = getattr(req, part).topic
                    problems.append(Problem(f"{base}.match", f"{topic!r} ({part}) has no payload field {head!r}"
                                                             f"{suggest(head, known)}; valid: {', '.join(known)}",
                                            known))
    if problems:
        raise ScenarioError(scenario.source, problems)


def _choices(schema: type[BaseModel], key: str) -> list[Any] | None:
    """The values a payload field accepts when they are a finite set (a Literal / enum), else None."""
    js = schema.model_json_schema()
    prop = js.get("properties", {}).get(key)
    if prop is None:
        return None
    options = [prop, *prop.get("anyOf", [])]
    options = [js.get("$defs", {}).get(o["$ref"].split("/")[-1], o) if "$ref" in o else o for o in options]
    for option in options:
        if "enum" in option:
            return list(option["enum"])
    return None


def _payload_fields(schema: type[BaseModel]) -> list[str] | None:
    """Field names of a payload schema, or None when it allows any key (opaque payloads)."""
    if schema.model_config.get("extra") == "allow":
        return None
    return sorted(schema.model_fields)

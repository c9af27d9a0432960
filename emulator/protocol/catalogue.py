"""The catalogue of topics: what each message means, its fields, types, units and valid ranges.

Every topic is a pydantic model (strict types, unknown fields forbidden). Models of the
spacecraft register their own topics when the satellite is built, so the runtime never
assumes the satellite's shape; ``docs/protocol.md`` tables are rendered from here
(:meth:`Catalogue.markdown`), and a test keeps them in step with the code.

A topic may name its schema by module and class (:class:`SchemaRef`) instead of holding the class: the module is
imported the first time the schema is read (a message of that topic validated, its docs rendered). Defining a
pydantic model costs ~0.3-0.5 ms even with ``defer_build``; a run that never receives a command need not define
the ~80 payload classes of its topics at all.
"""

from __future__ import annotations

import importlib
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.errors import CodecError, suggest


class Kind(StrEnum):
    TELEMETRY = "telemetry"  #: emulator -> subscribers, periodic
    COMMAND = "command"  #: request -> emulator; always answered by a ``reply``
    REPLY = "reply"  #: emulator -> requester
    EVENT = "event"  #: emulator -> subscribers, when something happens


class Plane(StrEnum):
    BOARD = "board"  #: what a dev board may see and send
    CONTROL = "control"  #: test harness / operator: time, faults, ground truth


class Payload(BaseModel):
    """Base of every payload schema: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


def field(unit: str = "", doc: str = "", **kwargs: Any) -> Any:
    """A pydantic ``Field`` carrying a unit (shown in docs and in errors)."""
    extra = {"unit": unit} if unit else None
    return Field(description=doc, json_schema_extra=extra, **kwargs)


@dataclass(frozen=True)
class SchemaRef:
    """A payload class named by its module and name, imported when first read through a :class:`SchemaField`."""

    module: str
    name: str

    def resolve(self) -> type[Payload]:
        schema = getattr(importlib.import_module(self.module), self.name)
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"{self.module}.{self.name} is not a pydantic model class")
        return schema  # type: ignore[no-any-return]


def schemas_from(owner: str, schemas: str, names: Iterable[str]) -> tuple[Callable[[str], SchemaRef],
                                                                          Callable[[str], Any]]:
    """For module ``owner`` whose payload classes ``names`` are defined in module ``schemas`` on first use: a maker
    of :class:`SchemaRef` to them, and the module ``__getattr__`` that keeps ``owner.Name`` importable."""
    known = frozenset(names)

    def ref(name: str) -> SchemaRef:
        return SchemaRef(schemas, name)

    def module_getattr(name: str) -> Any:
        if name in known:
            return getattr(importlib.import_module(schemas), name)
        raise AttributeError(f"module {owner!r} has no attribute {name!r}")

    return ref, module_getattr


class SchemaField:
    """A dataclass field that holds a payload class or a :class:`SchemaRef`; reading it gives the class (a reference
    is resolved on the first read and the class kept)."""

    def __init__(self, default: Any = MISSING) -> None:
        self._default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # the class's attribute: dataclasses reads the field's default here
            if self._default is MISSING:
                raise AttributeError(self._name)
            return self._default
        value = obj.__dict__[self._slot]
        if isinstance(value, SchemaRef):
            value = obj.__dict__[self._slot] = value.resolve()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value


@dataclass(frozen=True)
class TopicSpec:
    topic: str
    kind: Kind
    plane: Plane
    #: the payload's class (given as the class or as a :class:`SchemaRef`, imported on first use)
    schema: type[Payload] = SchemaField()  # type: ignore[assignment]
    doc: str
    #: default publish rate of a telemetry topic, in Hz (None: not periodic)
    rate_hz: float | None = None
    #: the payload depends on the wall clock (link health, round trips): recordings keep it in the
    #: wall-time side file, so the same scenario and seed give the same recording on every medium
    wall_time: bool = False
    #: a command's reply ``data`` (None: not a command, or its data is not described)
    reply: type[Payload] | None = SchemaField(None)  # type: ignore[assignment]


class Catalogue:
    """Topic name -> :class:`TopicSpec`. Unknown topics are an error naming the valid ones."""

    def __init__(self, specs: Iterable[TopicSpec] = ()) -> None:
        self._specs: dict[str, TopicSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: TopicSpec) -> None:
        if spec.topic in self._specs:
            raise ValueError(f"topic {spec.topic!r} is registered twice")
        self._specs[spec.topic] = spec

    def __contains__(self, topic: object) -> bool:
        return topic in self._specs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())

    def get(self, topic: str, *, plane: Plane | None = None, kind: Kind | None = None) -> TopicSpec:
        spec = self._specs.get(topic)
        if spec is not None and (plane is None or spec.plane == plane) and (kind is None or spec.kind == kind):
            return spec
        candidates = [s.topic for s in self._specs.values()
                      if (plane is None or s.plane == plane) and (kind is None or s.kind == kind)]
        if spec is None:
            raise CodecError(f"unknown topic {topic!r}{suggest(topic, candidates)}", field="topic",
                             valid=sorted(candidates))
        if (plane is not None and spec.plane != plane) or (kind is not None and spec.kind != kind):
            want = " ".join(x for x in (plane and f"{plane}-plane", kind and str(kind)) if x)
            raise CodecError(f"topic {topic!r} is a {spec.plane}-plane {spec.kind}, not a {want}",
                             field="topic", valid=sorted(candidates))
        return spec

    def validate(self, topic: str, payload: Any, *, plane: Plane | None = None,
                 kind: Kind | None = None) -> Payload:
        """Validate a payload against its topic's schema; raise :class:`CodecError` naming the field."""
        spec = self.get(topic, plane=plane, kind=kind)
        if not isinstance(payload, Mapping):
            raise CodecError(f"payload of {topic!r} must be a map, got {type(payload).__name__}",
                             field="payload")
        try:
            return spec.schema.model_validate(payload)
        except ValidationError as exc:
            raise _codec_error(topic, spec.schema, exc) from None

    def topics(self, *, plane: Plane | None = None, kind: Kind | None = None) -> list[TopicSpec]:
        return [s for s in self._specs.values()
                if (plane is None or s.plane == plane) and (kind is None or s.kind == kind)]

    def markdown(self) -> str:
        """Tables for ``docs/protocol.md``: one per topic, field / type / unit / range / meaning."""
        out: list[str] = []
        for plane in Plane:
            for kind in Kind:
                specs = sorted(self.topics(plane=plane, kind=kind), key=lambda s: s.topic)
                if not specs:
                    continue
                out.append(f"### {plane.value} plane: {kind.value}\n")
                for spec in specs:
                    rate = f" Default rate {spec.rate_hz:g} Hz." if spec.rate_hz else ""
                    out.append(f"#### `{spec.topic}`\n\n{spec.doc}{rate}\n")
                    out.append(schema_table(spec.schema, nested=True))
                    if spec.kind == Kind.COMMAND:
                        if spec.reply is None:
                            out.append("Reply `data`: not described.\n")
                        else:
                            doc = (spec.reply.__doc__ or "").strip()
                            doc = "" if not doc or doc.startswith(("A base class", "Base of")) else f" {doc}"
                            out.append(f"Reply `data`:{doc}\n")
                            out.append(schema_table(spec.reply, nested=True))
        return "\n".join(out)


def schema_table(schema: type[BaseModel], nested: bool = False) -> str:
    """A markdown table of a schema's fields; ``nested``: then a table for every map shape inside it
    (the items of ``rails``, an ``error`` map), named by its path (``rails[]``, ``error``)."""
    js = schema.model_json_schema()
    defs = js.get("$defs", {})
    out = [_fields_table(js, defs)]
    if nested:
        seen: set[str] = set()
        queue = [(name, prop) for name, prop in js.get("properties", {}).items()]
        while queue:
            path, prop = queue.pop(0)
            for sub, ref in _nested_refs(path, prop):
                if ref in seen and ref != "":
                    continue
                seen.add(ref)
                inner = defs[ref]
                out.append(f"`{sub}`: {inner.get('description', '').strip() or 'a map with these fields'}\n")
                out.append(_fields_table(inner, defs))
                queue += [(f"{sub}.{n}", p) for n, p in inner.get("properties", {}).items()]
    return "\n".join(out)


def _fields_table(js: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    rows = ["| field | type | unit | valid | meaning |", "| --- | --- | --- | --- | --- |"]
    props = js.get("properties", {})
    required = set(js.get("required", []))
    for name, prop in props.items():
        typ, valid = _describe(prop, defs)
        unit = prop.get("unit", "")
        opt = "" if name in required else " (optional)"
        rows.append(f"| `{name}` | {typ}{opt} | {unit} | {valid} | {prop.get('description', '')} |")
    if not props:
        rows.append("| (none) | | | | |")
    return "\n".join(rows) + "\n"


def _nested_refs(path: str, prop: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(shown path, $defs name) of the map schemas a property holds: itself, its items, its values."""
    found: list[tuple[str, str]] = []
    if "$ref" in prop:
        found.append((path, prop["$ref"].split("/")[-1]))
    for option in prop.get("anyOf", []):
        found += _nested_refs(path, option)
    if isinstance(prop.get("items"), Mapping):
        found += _nested_refs(f"{path}[]", prop["items"])
    if isinstance(prop.get("additionalProperties"), Mapping):
        found += _nested_refs(f"{path}{{}}", prop["additionalProperties"])
    return found


def _describe(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[str, str]:
    if "$ref" in prop:
        prop = {**defs[prop["$ref"].split("/")[-1]], **{k: v for k, v in prop.items() if k != "$ref"}}
    if "anyOf" in prop:
        parts = [_describe(p, defs) for p in prop["anyOf"]]
        return " or ".join(p[0] for p in parts), "; ".join(p[1] for p in parts if p[1])
    if "enum" in prop:
        return "str", ", ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return "str", f"`{prop['const']}`"
    typ = {"number": "float", "integer": "int", "string": "str", "boolean": "bool",
           "array": "array", "object": "map", "null": "nil"}.get(prop.get("type", ""), prop.get("type", "any"))
    if typ == "array" and "items" in prop:
        typ = f"array of {_describe(prop['items'], defs)[0]}"
    if typ == "map" and isinstance(prop.get("additionalProperties"), Mapping):
        typ = f"map of str to {_describe(prop['additionalProperties'], defs)[0]}"
    if "title" in prop and "properties" in prop:
        typ = "map"
    bounds = []
    for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop:
            bounds.append(f"{sym} {prop[key]:g}")
    for key, sym in (("minLength", "len >="), ("maxLength", "len <="), ("minItems", "items >="),
                     ("maxItems", "items <=")):
        if key in prop:
            bounds.append(f"{sym} {prop[key]}")
    return typ, ", ".join(bounds)


def _codec_error(topic: str, schema: type[BaseModel], exc: ValidationError) -> CodecError:
    errors = exc.errors(include_url=False)
    # an unknown field first: with a missing one beside it, it is the typo ("speeed"), and it carries the suggestion
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"])
    path = f"payload.{loc}" if loc else "payload"
    valid: list[Any] | None = None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        valid = sorted(schema.model_fields)
        msg = f"unknown field{suggest(str(err['loc'][-1]), valid)}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] in ("literal_error", "enum") and "expected" in err.get("ctx", {}):
        valid = [v.strip().strip("'") for v in str(err["ctx"]["expected"]).replace(" or ", ",").split(",")]
    more = ""
    if len(errors) > 1:  # the next one named (a missing field beside a typo), the rest counted
        nxt = errors[1]
        also = "required field is missing" if nxt["type"] == "missing" else nxt["msg"]
        more = f" (also payload.{'.'.join(str(p) for p in nxt['loc'])}: {also}"
        more += f"; +{len(errors) - 2} more)" if len(errors) > 2 else ")"
    # reprlib bounds the echo: the input may be a 1 MB string, and the error goes back on the wire
    got = f", got {reprlib.repr(err['input'])}" if err["type"] not in ("missing",) and "input" in err else ""
    return CodecError(f"{topic}: {path}: {msg}{got}{more}", field=path, valid=valid)

"""Pydantic validation errors as one :class:`~emulator.errors.ConfigError` whose ``problems`` locate each thing
wrong (dotted path, message, valid keys, the override it came from). Pure: the models use it for their own
sub-configs (a cluster member's overrides), the config loader for whole files."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from emulator.errors import ConfigError, ConfigProblem, suggest


class ConfigModel(BaseModel):
    """A table of a config file: unknown keys are refused, no number is infinite, and true / false is not taken
    for a number (pydantic would read true as 1)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any, handler: Any) -> Any:
        # one look at the table's values (a validator per field would cost every field a call, ~10 % of the
        # config's validation)
        if isinstance(data, dict):
            numeric = _NUMERIC_FIELDS.get(cls)
            if numeric is None:
                numeric = _NUMERIC_FIELDS[cls] = frozenset(
                    name for name, f in cls.model_fields.items() if _numeric(f.annotation))
            for key, value in data.items():
                if isinstance(value, bool) and key in numeric:
                    raise ValueError(f"{key}: a number is needed here, not {str(value).lower()}")
        return handler(data)


#: per config table class, its fields that take a number (int or float)
_NUMERIC_FIELDS: dict[type, frozenset[str]] = {}


def _numeric(annotation: Any) -> bool:
    """``annotation`` is int or float, or a union of them with None."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and get_origin(annotation) is not list and all(a in (int, float, type(None)) for a in args) \
        and any(a in (int, float) for a in args)


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
        cross = err["type"] == "value_error"  # a model's own check across its fields (a rail that is not there)
        named = None
        msg = ""
        if cross:
            msg = err["msg"].removeprefix("Value error, ")
            # the check names the key it is about first ("accelerator.rail: unknown rail ..."): that is the path
            named = _NAMED_KEY.match(msg)
            if named:
                path = ".".join(x for x in (path, _dotted(named.group(1))) if x)
                msg = named.group(2)
        origin = next((o for p, o in (labels or {}).items() if path == p or path.startswith(p + ".")
                       or (cross and _involved(p, path, named is not None, msg))), None)
        if origin is None:
            in_file = True
        elif origin[1] not in blamed:
            blamed.append(origin[1])
        valid: list[str] | None = None
        kind = "value"
        if err["type"] == "extra_forbidden":
            fields = _fields_at(root, err["loc"][:-1])
            if not err["loc"][:-1] and extra_valid:
                fields = extra_valid
            name = str(err["loc"][-1])
            valid = sorted(fields)
            kind = "key"
            message = f"unknown key{suggest(name, fields)}; valid keys here: {', '.join(valid)}"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif cross:
            message = msg  # its input is the whole table it checked: the message names what is wrong in it
        else:
            message = f"{err['msg']} (got {_shown(err.get('input'))})"
        problems.append(ConfigProblem(path, message, valid, origin[0] if origin else None,
                                      kind))  # type: ignore[arg-type]
    return _error(problems, source, blamed, in_file)


def combined_error(errors: list[ConfigError], source: str, labels: dict[str, tuple[str, str]]) -> ConfigError:
    """One error of every problem of ``errors`` (the run tables' and the model's, checked apart); ``labels`` as
    :func:`config_error` takes them."""
    problems = [p for e in errors for p in e.problems]
    how = dict(labels.values())
    blamed = list(dict.fromkeys(how.get(p.override, p.override) for p in problems if p.override))
    return _error(problems, source, blamed, in_file=any(p.override is None for p in problems))


def _error(problems: list[ConfigProblem], source: str, blamed: list[str], in_file: bool) -> ConfigError:
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    if blamed and not in_file:
        head = f"invalid {', '.join(blamed)} ({count}; {source} itself is fine)"
    else:
        head = f"{source}: invalid config ({count})" + (f", from {', '.join(blamed)}" if blamed else "")
    first = problems[0] if problems else ConfigProblem("", head)
    return ConfigError(head + "\n  " + "\n  ".join(map(str, problems)), field=first.path or None,
                       valid=next((p.valid for p in problems if p.valid), None), problems=problems)


def _involved(key: str, path: str, named: bool, message: str) -> bool:
    """Override ``key`` is inside the table at ``path`` that a check across fields found wrong, and the check
    named a key there (``named``) or its message mentions this one's: the override is blamed."""
    return bool(path) and key.startswith(path + ".") and (
        named or re.search(rf"\b{re.escape(key.rpartition('.')[2])}\b", message) is not None)


#: a cross-field check's message that starts with the dotted key it is about: ``power.rails[3].rail: ...``
_NAMED_KEY = re.compile(r"([A-Za-z_][\w.]*(?:\[\d+\][\w.]*)*): (.+)", re.DOTALL)


def _dotted(key: str) -> str:
    """``power.rails[3].rail`` as pydantic's path: ``power.rails.3.rail``."""
    return re.sub(r"\[(\d+)\]", r".\1", key)


def _shown(value: Any, limit: int = 80) -> str:
    """A value as a problem quotes it: its repr, cut short (a whole table is not worth printing)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


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

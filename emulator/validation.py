"""Pydantic validation errors as one :class:`~emulator.errors.ConfigError` whose ``problems`` locate each thing
wrong (dotted path, message, valid keys, the override it came from). Pure: the models use it for their own
sub-configs (a cluster member's overrides), the config loader for whole files."""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from emulator.errors import ConfigError, ConfigProblem, suggest


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
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        problems.append(ConfigProblem(path, message, valid, origin[0] if origin else None,
                                      kind))  # type: ignore[arg-type]
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

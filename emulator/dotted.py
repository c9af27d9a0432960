"""Dotted keys over config dicts: the one implementation of overrides (``--set``, a scenario's ``[overrides]``, a
campaign's sweeps, the pytest plugin, a cluster member's ``overrides``) and of the ``extends`` merge.

``a.b.c`` reaches nested tables; a list of tables is indexed by an item's ``name`` or by ``[i]``:
``power.rails.payload.max_retries`` and ``power.rails[3].max_retries`` both reach the ``max_retries`` of the rail
named ``payload`` (when it is the fourth ``[[power.rails]]``).

Pure functions on plain dicts (no file, no model): the models may use them to validate their own sub-configs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from emulator.errors import ConfigError, ConfigProblem, suggest

_PART = re.compile(r"([^\[\]]+)((?:\[\d+\])*)")


def parse_key(key: str) -> list[str | int]:
    """``power.rails[3].max_retries`` -> ``['power', 'rails', 3, 'max_retries']``.

    Raises:
        ConfigError: bad syntax (an empty part, an unclosed bracket); its problem names the key.
    """
    parts: list[str | int] = []
    for part in key.split("."):
        m = _PART.fullmatch(part)
        if not m:
            raise override_error(key, f"bad key syntax at {part!r}")
        parts.append(m.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return parts


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Apply dotted-key ``overrides`` to a config dict in place (see the module doc for the key syntax).

    Raises:
        ConfigError: a key that cannot be set; its problem names the override (``override``, ``kind = "key"``).
    """
    errors: list[ConfigError] = []
    for key, value in overrides.items():
        try:
            set_dotted(raw, key, value)
        except ConfigError as exc:  # the others are still tried: every key that cannot be set, in one error
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        problems = [p for e in errors for p in e.problems]
        raise ConfigError(f"{len(problems)} overrides cannot be set:\n  "
                          + "\n  ".join(f"override {p.override or p.path!r}: {p.message}" for p in problems),
                          field=problems[0].path, valid=problems[0].valid, problems=problems)


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set one dotted key (see :func:`apply_overrides`); missing tables on the way are created."""
    parts = parse_key(key)
    node: Any = raw
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = list_item(node, p, key)
            continue
        if isinstance(p, int):
            raise override_error(key, f"[{p}] indexes a list, but {key.split('[')[0]!r} is not a list of tables")
        nxt = parts[i + 1]
        if p not in node:
            node[p] = [] if isinstance(nxt, int) else {}
        node = node[p]
        if not isinstance(node, (dict, list)):
            raise override_error(key, f"{p!r} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        raise override_error(key, f"must name a key inside an item, e.g. {key}.<key>")
    if isinstance(last, int):
        raise override_error(key, f"[{last}] indexes a list, but this is a table")
    node[last] = value


def list_item(items: list[Any], sel: str | int, key: str) -> Any:
    """The item of a list of tables selected by index or by ``name``; ConfigError naming the valid ones."""
    names = [str(it.get("name")) for it in items if isinstance(it, dict) and "name" in it]
    if isinstance(sel, int):
        if not 0 <= sel < len(items):
            valid = names or [str(i) for i in range(len(items))]
            what = f"index {sel} out of range (0..{len(items) - 1})" if items else f"index {sel}: the list is empty"
            raise override_error(key, what, valid)
        return items[sel]
    for it in items:
        if isinstance(it, dict) and it.get("name") == sel:
            return it
    raise override_error(key, f"no item named {sel!r}{suggest(str(sel), names)}; valid: {', '.join(names) or 'none'}",
                         names)


def override_loc(raw: dict[str, Any], key: str) -> str:
    """An override key as the dotted path pydantic reports: list items named by ``name`` become indexes
    (``power.rails.payload.max_retries`` -> ``power.rails.3.max_retries``). Best effort: a part that is not found
    stays as written."""
    try:
        parts = parse_key(key)
    except ConfigError:
        return key
    out: list[str] = []
    node: Any = raw
    for step in parts:
        if isinstance(node, list) and isinstance(step, str):
            index = next((i for i, it in enumerate(node) if isinstance(it, dict) and it.get("name") == step), None)
            step = step if index is None else index
        out.append(str(step))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(out)


def merge_config(into: dict[str, Any], new: Mapping[str, Any], *, by_name: bool = True) -> None:
    """Merge ``new`` over ``into`` in place: tables key by key, lists of named tables item by item by ``name`` (a
    new name is appended; ``by_name=False``: any list replaced whole)."""
    for k, v in new.items():
        old = into.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            merge_config(old, v, by_name=by_name)
        elif by_name and named_list(v) and named_list(old):
            named = {item["name"]: item for item in old}
            for item in v:
                if item["name"] in named:
                    merge_config(named[item["name"]], item)
                else:
                    old.append(item)
        else:
            into[k] = v


def named_list(v: Any) -> bool:
    """A non-empty list of tables that all have a ``name``."""
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in v)


def override_error(key: str, what: str, valid: list[str] | None = None) -> ConfigError:
    """The error of an override key that cannot be set (the key is at fault, not its value)."""
    return ConfigError(f"override {key!r}: {what}", field=key, valid=valid,
                       problems=[ConfigProblem(key, what, valid, override=key, kind="key")])

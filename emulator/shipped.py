"""The satellite configs, scenarios and campaigns that ship with flatsat, found by name or by path.

In a source checkout they are the files in ``configs/``; an installed wheel carries a copy as the
package ``emulator.configs`` (pyproject maps ``configs/`` there). Either way a user writes
``flatsat run --config suncatcher-proto`` or ``flatsat test latchup``, and a path still works::

    resolve("suncatcher-proto", "satellite")          -> .../configs/suncatcher-proto.toml
    resolve("configs/scenarios/latchup.toml", "scenario")   (an existing path wins)
    names("scenario")                                 -> ["board-reboot", "day-in-the-life", ...]
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from emulator.errors import ConfigError, suggest

#: the satellite a command uses when none is named
DEFAULT_SATELLITE = "suncatcher-proto"
#: kind -> folder under configs/
KINDS = {"satellite": "", "scenario": "scenarios", "campaign": "campaigns"}
_LABEL = {"satellite": "config", "scenario": "scenario", "campaign": "campaign"}


def shipped_dir() -> Path | None:
    """The folder holding the shipped configs: the installed package copy, else the source checkout's."""
    try:
        spec = importlib.util.find_spec("emulator.configs")
    except ModuleNotFoundError:
        spec = None
    # a data-only (namespace) package: its folder is its search location
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location)
        if path.is_dir():
            return path
    # an editable install or a plain checkout: the package maps to the repository's configs/
    checkout = Path(__file__).resolve().parent.parent / "configs"
    return checkout if checkout.is_dir() else None


def _folder(kind: str) -> Path | None:
    root = shipped_dir()
    return None if root is None else root / KINDS[kind]


def names(kind: str) -> list[str]:
    """Names of the shipped files of one kind (``satellite``, ``scenario``, ``campaign``), without .toml."""
    folder = _folder(kind)
    return sorted(p.stem for p in folder.glob("*.toml")) if folder is not None and folder.is_dir() else []


def resolve(name: str | Path, kind: str, base_dir: Path | None = None) -> Path:
    """A config file by path (as given, or relative to ``base_dir``) or by shipped name.

    Raises:
        ConfigError: nothing by that path or name; lists the shipped names (with a did-you-mean).
    """
    text = str(name)
    p = Path(text).expanduser()
    candidates = [p] if p.is_absolute() else ([base_dir / p] if base_dir is not None else []) + [p]
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    folder = _folder(kind)
    if folder is not None and not p.is_absolute():
        stem = p.name.removesuffix(".toml")
        for cand in (folder / p, folder / f"{stem}.toml"):
            if cand.is_file():
                return cand.resolve()
    shipped = names(kind)
    where = ", ".join(str(c) for c in candidates)
    with_ext = text.endswith(".toml")
    hint = suggest(Path(text).name, [f"{n}.toml" for n in shipped] if with_ext else shipped)
    raise ConfigError(f"{_LABEL[kind]} file {text!r} not found{hint} (no file at {where}; shipped "
                      f"{_LABEL[kind]}s, by name: {', '.join(shipped) or 'none'})", field="config", valid=shipped)

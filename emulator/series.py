"""Time series of ground truth sampled during a run (for summaries, plots and requirement checks)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import ormsgpack

NS_PER_S = 1_000_000_000

#: what packs a truth tree as a row (:func:`tree_row`): plain dicts, lists, tuples, str, int, float, bool and None
#: only. Anything else (an enum, a numpy number, a dataclass, a subclass, a non-str key) raises, and the row is
#: flattened at once: unpacked, a packed tree flattens to exactly what the tree did.
_EXACT_PACK = (ormsgpack.OPT_PASSTHROUGH_SUBCLASS | ormsgpack.OPT_PASSTHROUGH_DATACLASS | ormsgpack.OPT_PASSTHROUGH_ENUM
               | ormsgpack.OPT_PASSTHROUGH_DATETIME | ormsgpack.OPT_PASSTHROUGH_UUID | ormsgpack.OPT_PASSTHROUGH_BIG_INT)

#: a truth tree kept as a row of a :class:`Series`: its msgpack (flattened when a column is read), or flattened
TreeRow = bytes | dict[str, float]


def flatten(tree: Mapping[str, Any], prefix: str = "", out: dict[str, float] | None = None) -> dict[str, float]:
    """{'power': {'bus_v': 7.9}} -> {'power.bus_v': 7.9}; numbers and bools only (lists indexed)."""
    if out is None:
        out = {}
    for key, value in tree.items():
        name = prefix + key if type(key) is str else f"{prefix}{key}"
        # the common types by identity first (an isinstance against Mapping, an ABC, costs several times more)
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            out[name] = float(value)
        elif kind is dict:
            flatten(value, name + ".", out)
        elif kind is str or value is None:
            continue
        elif isinstance(value, (int, float)):  # bool is an int
            out[name] = float(value)
        elif isinstance(value, Mapping):
            flatten(value, name + ".", out)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            for i, v in enumerate(value):
                out[f"{name}.{i}"] = float(v)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                flatten(v, f"{name}.{i}.", out)
    return out


def tree_row(tree: Mapping[str, Any]) -> TreeRow:
    """``tree`` as a row for :meth:`Series.append_tree`: its msgpack (a copy: the model may go on changing lists it
    shares with its truth), or, for a tree of more than msgpack primitives, flattened now."""
    try:
        return ormsgpack.packb(tree, option=_EXACT_PACK)
    except TypeError:  # ormsgpack's encode error: a value of another type, a non-str key, a too deep tree
        return flatten(tree)


class Series:
    """Columns of flattened samples; missing values are NaN."""

    def __init__(self) -> None:
        self.t_s: list[float] = []
        self._cols: dict[str, list[float]] = {}
        #: rows appended as trees and not flattened yet (the last rows, in order): a run keeps up to thousands of
        #: whole truth trees, ~0.5 ms each to flatten in the run and often read by nobody
        self._trees: list[tuple[TreeRow, Mapping[str, float] | None]] = []

    def append_tree(self, t_ns: int, row: TreeRow, replace: Mapping[str, float] | None = None) -> None:
        """:meth:`append` of ``{**flatten(tree), **replace}`` for ``row = tree_row(tree)``, flattened when a column
        is first read (one row may be appended many times)."""
        self.t_s.append(t_ns / NS_PER_S)
        self._trees.append((row, replace))

    def _flatten_trees(self) -> None:
        trees, self._trees = self._trees, []
        n0 = len(self.t_s) - len(trees)
        unpack = ormsgpack.unpackb
        last: Any = None
        flat: dict[str, float] = {}
        for i, (row, replace) in enumerate(trees):
            if row is not last:  # a window's rows share their tree
                last = row
                flat = flatten(unpack(row)) if isinstance(row, bytes) else row
            self._add(n0 + i, flat if replace is None else {**flat, **replace})

    def append(self, t_ns: int, sample: Mapping[str, float]) -> None:
        if self._trees:
            self._flatten_trees()
        n = len(self.t_s)
        self.t_s.append(t_ns / NS_PER_S)
        self._add(n, sample)

    def _add(self, n: int, sample: Mapping[str, float]) -> None:
        """Row ``n`` into the columns (which hold rows 0 .. n-1)."""
        cols = self._cols
        if len(sample) == len(cols) and sample.keys() == cols.keys():  # a run's rows: the same keys every time
            for key, value in sample.items():
                cols[key].append(value)
            return
        for key, value in sample.items():
            col = self._cols.get(key)
            if col is None:
                col = self._cols[key] = [float("nan")] * n
            col.append(value)
        for key, col in self._cols.items():
            if len(col) == n:
                col.append(float("nan"))

    def __len__(self) -> int:
        return len(self.t_s)

    def _columns(self) -> dict[str, list[float]]:
        """The columns by key, every row flattened."""
        if self._trees:
            self._flatten_trees()
        return self._cols

    def keys(self) -> list[str]:
        return list(self._columns())

    def __contains__(self, key: object) -> bool:
        return key in self._columns()

    def get(self, key: str) -> np.ndarray:
        return np.asarray(self._columns()[key], dtype=float)

    def time(self) -> np.ndarray:
        return np.asarray(self.t_s, dtype=float)

    def match(self, patterns: Iterable[str]) -> list[str]:
        import fnmatch

        out: list[str] = []
        cols = self._columns()
        for pat in patterns:
            out += [k for k in cols if fnmatch.fnmatchcase(k, pat) and k not in out]
        return out

    def to_columns(self) -> dict[str, list[float]]:
        return {"t_s": list(self.t_s), **{k: list(v) for k, v in self._columns().items()}}


class SignalReader:
    """Reads flattened ground-truth keys straight out of the nested truth tree (no full flatten per step).

    Each key is resolved once against a sample tree into a path of dict keys / list indexes, and the paths are
    merged into one tree that a read walks once (:func:`path_reader`); a key that does not resolve (or stops
    resolving) reads as NaN.
    """

    def __init__(self, keys: list[str], sample: Mapping[str, Any]) -> None:
        self.paths: dict[str, tuple[Any, ...] | None] = {k: resolve_path(sample, k.split(".")) for k in keys}
        self._read = path_reader({k: p for k, p in self.paths.items() if p})

    def read(self, tree: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = dict.fromkeys(self.paths, math.nan)  # the keys' order, whatever resolves
        self._read(tree, out)
        return out


#: what a failed lookup on the way to a key raises (a missing key, a short list, a None or a number in the way)
LOOKUP_ERRORS = (KeyError, IndexError, TypeError)

#: a compiled part of a path tree: reads the keys below one node of a truth tree into ``out``
NodeReader = Callable[[Any, dict[str, float]], None]


def path_reader(paths: Mapping[str, tuple[Any, ...]]) -> NodeReader:
    """A reader of ``paths`` (key -> non-empty path of dict keys / list indexes) that walks a tree once: paths are
    merged where they share a prefix. It writes each key's value into ``out``: a number or bool as a float, NaN
    where the path does not resolve or holds something else (as :func:`read_path`)."""
    trie: dict[Any, tuple[list[str], dict[Any, Any]]] = {}
    for key, path in paths.items():
        node = trie
        for n, edge in enumerate(path):
            keys, sub = node.setdefault(edge, ([], {}))
            if n == len(path) - 1:
                keys.append(key)
            node = sub
    return _compile(trie)


def value_of(node: Any) -> float:
    """A truth value as a signal: a number or bool as a float, NaN for anything else."""
    return float(node) if isinstance(node, (int, float)) else math.nan  # bool is an int


def _compile(trie: dict[Any, tuple[list[str], dict[Any, Any]]]) -> NodeReader:
    """A reader for one node of the path tree: ``trie`` maps an edge (dict key or list index) to the keys that end
    there and the sub-tree below it."""
    leaves = [(edge, keys) for edge, (keys, _) in trie.items() if keys]
    inner = [(edge, _compile(sub), _keys_below(sub)) for edge, (_, sub) in trie.items() if sub]
    nan = math.nan

    def read(node: Any, out: dict[str, float]) -> None:
        for edge, keys in leaves:
            try:
                v = value_of(node[edge])
            except LOOKUP_ERRORS:
                v = nan
            for k in keys:
                out[k] = v
        for edge, sub, below in inner:
            try:
                child = node[edge]
            except LOOKUP_ERRORS:
                for k in below:
                    out[k] = nan
                continue
            sub(child, out)

    return read


def _keys_below(trie: dict[Any, tuple[list[str], dict[Any, Any]]]) -> list[str]:
    out: list[str] = []
    for keys, sub in trie.values():
        out += keys
        out += _keys_below(sub)
    return out


def resolve_path(node: Any, parts: list[str]) -> tuple[Any, ...] | None:
    """The dict keys / list indexes that reach a flattened key (split at dots) in a tree, or None."""
    if not parts:
        return ()
    if isinstance(node, Mapping):
        # keys may themselves hold dots: try the longest key first
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in node:
                rest = resolve_path(node[key], parts[n:])
                if rest is not None:
                    return (key, *rest)
        return None
    if isinstance(node, (list, tuple)) and parts[0].isdigit() and int(parts[0]) < len(node):
        rest = resolve_path(node[int(parts[0])], parts[1:])
        return None if rest is None else (int(parts[0]), *rest)
    return None


def read_path(tree: Any, path: tuple[Any, ...]) -> float:
    node = tree
    try:
        for p in path:
            node = node[p]
    except (KeyError, IndexError, TypeError):
        return math.nan
    if isinstance(node, bool):
        return float(node)
    if isinstance(node, (int, float)):
        return float(node)
    return math.nan


class EnvelopeSampler:
    """Thins a per-step stream of ground truth into ``series``: about one row per ``every_ns`` of sim time, plus, in
    a window where any of ``keys`` went below or above the row's value, a row of each key's window minimum and one
    of its maximum (so a one-step spike survives the thinning, as in a min/max decimation for plots).

    Call :meth:`observe` with the truth tree at every step. The rows are whole trees (:meth:`Series.append_tree`:
    flattened when the series is read), or with ``rows="keys"`` only the ``keys`` (what a summary or a plot shows).
    ``reader`` replaces the key reader (e.g. a :class:`FleetReader`; its keys are the rows).
    """

    def __init__(self, series: Series, every_ns: int, keys: Iterable[str], sample: Mapping[str, Any], *,
                 rows: str = "all", reader: Any = None) -> None:
        if rows not in ("all", "keys"):
            raise ValueError(f"rows must be 'all' or 'keys', not {rows!r}")
        self.series = series
        self.every_ns = max(1, every_ns)
        self.reader = reader if reader is not None else SignalReader(sorted(set(keys)), sample)
        self.full_rows = rows == "all" and reader is None
        self.next_ns = 0
        self.window_start_ns = 0
        self.last: dict[str, float] = {}
        self.lo: dict[str, tuple[float, int]] = {}
        self.hi: dict[str, tuple[float, int]] = {}

    def observe(self, t_ns: int, tree: Mapping[str, Any]) -> None:
        self.last = values = self.reader.read(tree)
        for key, v in values.items():
            if math.isnan(v):
                continue
            if key not in self.lo or v < self.lo[key][0]:
                self.lo[key] = (v, t_ns)
            if key not in self.hi or v > self.hi[key][0]:
                self.hi[key] = (v, t_ns)
        if t_ns >= self.next_ns:
            self.flush(t_ns, tree, values)

    def flush(self, t_ns: int, tree: Mapping[str, Any], values: dict[str, float] | None = None) -> None:
        """Close the window at ``t_ns`` with the sample there (also the last row of a run)."""
        now = self.reader.read(tree) if values is None else values  # the keys' values in the row (NaN: none)
        series = self.series
        if self.full_rows:
            tree_at = tree_row(tree)

            def append(t: int, replace: dict[str, float] | None = None) -> None:
                series.append_tree(t, tree_at, replace)
        else:
            row = {k: v for k, v in now.items() if not math.isnan(v)}

            def append(t: int, replace: dict[str, float] | None = None) -> None:
                series.append(t, row if replace is None else {**row, **replace})
        lo = {k: v for k, (v, _) in self.lo.items() if v < now.get(k, v)}
        hi = {k: v for k, (v, _) in self.hi.items() if v > now.get(k, v)}
        if (lo or hi) and len(series):
            span = t_ns - self.window_start_ns
            t_lo = min((t for _, t in self.lo.values()), default=t_ns)
            t_hi = min((t for _, t in self.hi.values()), default=t_ns)
            first, second = (lo, hi) if t_lo <= t_hi else (hi, lo)
            for n, extreme in ((1, first), (2, second)):
                if extreme:
                    append(self.window_start_ns + span * n // 3, extreme)
        if not len(series) or series.t_s[-1] != t_ns / NS_PER_S:
            append(t_ns)
        self.lo.clear()
        self.hi.clear()
        self.window_start_ns = t_ns
        self.next_ns = t_ns + self.every_ns


#: suffixes of the fleet extremes a :class:`FleetReader` adds beside each fleet mean
FLEET_MIN, FLEET_MAX = ".fleet_min", ".fleet_max"


class FleetReader:
    """Reads a fleet's truth (per-member lists of ``n`` numbers, e.g. ``power.soc = [0.91, 0.90, ...]``) as fleet
    statistics: ``power.soc`` is the fleet mean, ``power.soc.fleet_min`` / ``.fleet_max`` the extremes.

    Only the lists whose key matches one of ``patterns`` (fnmatch, on the key without a member index) are read, so a
    summary of 81 members costs a few hundred numbers a sample, not the 3,000 of the whole tree.
    """

    def __init__(self, n: int, patterns: Iterable[str], sections: Iterable[str]) -> None:
        import fnmatch

        self.n = n
        self.patterns = list(patterns)
        self.sections = list(sections)
        self._wanted: dict[str, bool] = {}
        self._match = fnmatch.fnmatchcase

    def wanted(self, key: str) -> bool:
        hit = self._wanted.get(key)
        if hit is None:
            hit = self._wanted[key] = any(self._match(key, p) for p in self.patterns)
        return hit

    def read(self, tree: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for section in self.sections:
            node = tree.get(section)
            if isinstance(node, Mapping):
                self._walk(node, section + ".", out)
        return out

    def _walk(self, node: Mapping[str, Any], prefix: str, out: dict[str, float]) -> None:
        n = self.n
        for key, value in node.items():
            name = prefix + key
            if isinstance(value, Mapping):
                self._walk(value, name + ".", out)
            elif (isinstance(value, list) and len(value) == n and n and isinstance(value[0], (int, float))
                  and self.wanted(name)):
                out[name] = sum(value) / n
                out[name + FLEET_MIN] = float(min(value))
                out[name + FLEET_MAX] = float(max(value))

"""Time series of ground truth sampled during a run (for summaries, plots and requirement checks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000


def flatten(tree: Mapping[str, Any], prefix: str = "", out: dict[str, float] | None = None) -> dict[str, float]:
    """{'power': {'bus_v': 7.9}} -> {'power.bus_v': 7.9}; numbers and bools only (lists indexed)."""
    if out is None:
        out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float)):  # bool is an int
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


class Series:
    """Columns of flattened samples; missing values are NaN."""

    def __init__(self) -> None:
        self.t_s: list[float] = []
        self._cols: dict[str, list[float]] = {}

    def append(self, t_ns: int, sample: Mapping[str, float]) -> None:
        n = len(self.t_s)
        self.t_s.append(t_ns / NS_PER_S)
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

    def keys(self) -> list[str]:
        return list(self._cols)

    def __contains__(self, key: object) -> bool:
        return key in self._cols

    def get(self, key: str) -> np.ndarray:
        return np.asarray(self._cols[key], dtype=float)

    def time(self) -> np.ndarray:
        return np.asarray(self.t_s, dtype=float)

    def match(self, patterns: Iterable[str]) -> list[str]:
        import fnmatch

        out: list[str] = []
        for pat in patterns:
            out += [k for k in self._cols if fnmatch.fnmatchcase(k, pat) and k not in out]
        return out

    def to_columns(self) -> dict[str, list[float]]:
        return {"t_s": list(self.t_s), **{k: list(v) for k, v in self._cols.items()}}

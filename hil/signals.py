"""Reading the truth signals a run watches at every physics step: only the fields named, not the whole tree.

The requirements (``always``, ``min``/``max``) and the report's plots need a handful of flattened truth keys
(``satellite.power.bus_v``) at every step. :class:`StepReader` resolves each key once, against a sample of the
emulator's truth, into a path of dict keys and list indexes; the paths are merged into one tree that a read walks
once (``satellite.thermal.temps_degc`` is looked up once for its seven temperatures). When every key lies in the
model's truth (the ``satellite`` part of :meth:`Emulator.truth`), a read asks the model alone for its truth:
the run clock's status and the fault list are not built at every step. The model then reads what it can without
its tree at all (:meth:`~emulator.models.base.SpacecraftModel.truth_getter`: the satellite's bus voltage is its
power system's ``bus_v``); the tree is built only for the keys it has no getter for.

A read gives exactly what :class:`emulator.series.SignalReader` gives on the emulator's whole truth tree: a
number or bool as a float, NaN for a key that does not resolve, stops resolving or holds something else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from emulator.series import LOOKUP_ERRORS, EnvelopeSampler, flatten, path_reader, resolve_path, value_of

#: the part of the emulator's truth tree that is the model's own truth (Emulator.truth)
MODEL_KEY = "satellite"


class TruthSource(Protocol):
    """What :class:`StepReader` reads: the emulator (its whole truth) and its model (the model's truth)."""

    @property
    def model(self) -> Any: ...

    def truth(self) -> dict[str, Any]: ...


def _same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


class StepReader:
    """Reads ``keys`` (flattened truth keys) from ``source`` at every call; see the module docstring."""

    def __init__(self, source: TruthSource, keys: Iterable[str]) -> None:
        self.keys = sorted(set(keys))
        sample = source.truth()
        paths = {k: resolve_path(sample, k.split(".")) for k in self.keys}
        resolved = {k: p for k, p in paths.items() if p is not None}
        #: keys that name nothing in the truth: always NaN
        self.missing = [k for k, p in paths.items() if p is None]
        self.tree: Callable[[], Any] = source.truth
        #: True when a read asks the model alone (every key lies in its truth)
        self.model_only = bool(resolved) and all(p[0] == MODEL_KEY for p in resolved.values()) and \
            self._model_truth_is_the_subtree(source, sample)
        #: (key, getter) of the keys the model reads without its tree (SpacecraftModel.truth_getter)
        self.getters: list[tuple[str, Callable[[], Any]]] = []
        if self.model_only:
            self.tree = source.model.truth
            resolved = {k: p[1:] for k, p in resolved.items()}
            truth_getter = getattr(source.model, "truth_getter", None)
            for key, path in list(resolved.items()):
                getter = None if truth_getter is None else truth_getter(path)
                if getter is not None:
                    self.getters.append((key, getter))
                    del resolved[key]
        #: the keys left to the tree, which is built only when there are some
        self._read = path_reader(resolved) if resolved else None

    @staticmethod
    def _model_truth_is_the_subtree(source: TruthSource, sample: Mapping[str, Any]) -> bool:
        """The emulator's truth holds the model's truth under MODEL_KEY, value for value (checked once)."""
        sub = sample.get(MODEL_KEY)
        model = getattr(source, "model", None)
        if not isinstance(sub, Mapping) or model is None:
            return False
        return _same(flatten(sub), flatten(model.truth()))

    def read(self) -> dict[str, float]:
        """The value of every key now (NaN where it does not resolve)."""
        out: dict[str, float] = dict.fromkeys(self.missing, math.nan)
        for key, getter in self.getters:
            try:
                v = getter()
            except LOOKUP_ERRORS:  # what no longer resolves in the tree (a list grown shorter)
                out[key] = math.nan
                continue
            out[key] = v if type(v) is float else value_of(v)  # most are floats already: no call for them
        if self._read is not None:
            self._read(self.tree(), out)
        return out


class StepSampler(EnvelopeSampler):
    """:class:`EnvelopeSampler` fed with the values a :class:`StepReader` read (the same keys), so a step's signals
    are read once for the requirements and the plots; the whole truth tree is built only for a row."""

    def observe_values(self, t_ns: int, values: Mapping[str, float]) -> bool:
        """Widen the window's min and max with this step's values; True when a row is due (call :meth:`flush`
        with the whole truth tree)."""
        lo, hi, isnan = self.lo, self.hi, math.isnan
        self.last = {key: values[key] for key in self.reader.paths}
        for key, v in self.last.items():  # the order EnvelopeSampler.observe reads them in
            if isnan(v):
                continue
            low = lo.get(key)
            if low is None or v < low[0]:
                lo[key] = (v, t_ns)
            high = hi.get(key)
            if high is None or v > high[0]:
                hi[key] = (v, t_ns)
        return t_ns >= self.next_ns

"""The few non-arithmetic operations a physics kernel needs, for Python floats and for numpy arrays.

A kernel (a pure function of the physics, e.g. :func:`emulator.models.thermal.thermostat_on`) is written once on
``+ - * / ** < > & |`` and takes one of these namespaces for the rest: the single satellite calls it with plain
floats and :data:`SCALAR` (no numpy call on its per-step path: numpy's fixed per-call cost is several times the
arithmetic of one member), a fleet with arrays of N members and :data:`ARRAY`. Comparisons combine with ``&`` and
``|``, which mean the same on Python bools and on boolean arrays (no ``and``/``or``: they do not broadcast).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np


def _where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


#: for plain Python floats, ints and bools
SCALAR = SimpleNamespace(exp=math.exp, minimum=min, maximum=max, where=_where)
#: for numpy arrays (element-wise)
ARRAY = SimpleNamespace(exp=np.exp, minimum=np.minimum, maximum=np.maximum, where=np.where)

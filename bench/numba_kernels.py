"""Two physics stages written once as scalar code, for bench/bench_kernels.py: run as plain Python (today's single
satellite style), or compiled by numba (``@njit(cache=True)``) over a loop of members.

* ``battery_one``: the power step's battery stage (stage 3 of ``PowerSystem.step``, its common path: OCV lookup,
  temperature-dependent resistance, the quadratic for P = V I with the charge limits and cold-charge cut, the second
  pass with the mean OCV over the step, the breakpoint integral, the SoC update);
* ``thermal_one``: the backward-Euler thermal step as ``ThermalBatch`` writes it, ``T_new = B @ [T; T^4; q; 1]``.

The helpers are ``register_jitable`` (plain Python functions that numba code may call), so one source serves both
forms; without numba installed only the Python form exists.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    from numba.extending import register_jitable as jitable
except ImportError:  # numba is a bench extra: the Python form runs without it
    def jitable(fn: Any) -> Any:  # type: ignore[misc]
        return fn


@jitable
def seg_index(s: Any, x: float) -> int:
    """bisect_right over the table ``s`` (a list or an array), clipped to 1..len-1."""
    lo, hi = 0, len(s)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < s[mid]:
            hi = mid
        else:
            lo = mid + 1
    n = len(s)
    return 1 if lo < 1 else min(lo, n - 1)


@jitable
def cell_ocv(soc: float, s: Any, v: Any) -> float:
    if soc <= 0.0:
        return v[0]
    if soc >= 1.0:
        return v[len(v) - 1]
    i = seg_index(s, soc)
    return v[i - 1] + (v[i] - v[i - 1]) * (soc - s[i - 1]) / (s[i] - s[i - 1])


@jitable
def cell_energy(soc: float, s: Any, v: Any, cum: Any) -> float:
    """Integral of the cell OCV over soc from 0."""
    soc = 0.0 if soc < 0.0 else min(soc, 1.0)
    i = seg_index(s, soc)
    x = soc - s[i - 1]
    slope = (v[i] - v[i - 1]) / (s[i] - s[i - 1])
    return cum[i - 1] + v[i - 1] * x + 0.5 * slope * x * x


@jitable
def battery_one(soc0: float, net: float, temp_degc: float, dt_s: float, r25: float, r_b: float, r_sum_inv: float,
                q: float, v_eoc: float, i_chg_max: float, chg_min_t: float, groups: float, s: Any, v: Any,
                cum: Any) -> tuple[float, float, float, float, float]:
    """One member's battery stage: (soc, current A (> 0 charging), mean OCV V, bus V, shunted W)."""
    ocv = cell_ocv(soc0, s, v) * groups
    rr = r25 * math.exp(r_b * (1.0 / (temp_degc + 273.15) - 1.0 / 298.15)) * r_sum_inv
    cold = temp_degc < chg_min_t
    final = False
    i = 0.0
    shunt = 0.0
    for _ in range(4):  # the first pass, then at most one more with the mean OCV
        shunt = 0.0
        if net >= 0.0:
            i_max = (v_eoc - ocv) / rr
            i_max = min(i_max, i_chg_max)
            if i_max < 0.0 or cold:
                i_max = 0.0
            p_max = (ocv + i_max * rr) * i_max
            if net > p_max:
                i = i_max
                shunt = net - p_max
            else:
                i = (-ocv + math.sqrt(ocv * ocv + 4.0 * rr * net)) / (2.0 * rr)
        else:
            disc = ocv * ocv + 4.0 * rr * net
            i = (-ocv + math.sqrt(disc)) / (2.0 * rr) if disc >= 0.0 else 0.0
        if final or i == 0.0:
            break
        final = True
        end = soc0 + i * dt_s / q
        if 0.0 <= end <= 1.0 and 0.0 <= soc0 <= 1.0 and seg_index(s, soc0) != seg_index(s, end):
            ocv = (cell_energy(end, s, v, cum) - cell_energy(soc0, s, v, cum)) / (end - soc0) * groups
            continue
        mid = soc0 + 0.5 * i * dt_s / q
        ocv = cell_ocv(max(mid, 0.0), s, v) * groups
    soc = soc0 + i * dt_s / q
    soc = 0.0 if soc < 0.0 else min(soc, 1.0)
    return soc, i, ocv, ocv + i * rr, shunt


@jitable
def battery_loop(soc: Any, net: Any, temp: Any, dt_s: float, pack: Any, s: Any, v: Any, cum: Any, out: Any) -> None:
    """The stage over N members (arrays in, rows of ``out`` out: soc, current, OCV, bus V, shunt)."""
    for k in range(soc.shape[0]):
        r = battery_one(soc[k], net[k], temp[k], dt_s, pack[0], pack[1], pack[2], pack[3], pack[4], pack[5],
                        pack[6], pack[7], s, v, cum)
        out[0, k] = r[0]
        out[1, k] = r[1]
        out[2, k] = r[2]
        out[3, k] = r[3]
        out[4, k] = r[4]


@jitable
def thermal_one(B: Any, T: Any, rad: Any, q: Any, out: Any) -> None:
    """``out = B @ [T; T_rad^4; q; 1]`` for every member (columns of T, q; ``rad``: the radiating node indices).
    The member index runs innermost (contiguous rows: the compiler vectorises it)."""
    nn, n = T.shape
    nr = rad.shape[0]
    nc = B.shape[1]
    t4 = np.empty((nr, n))
    for r in range(nr):
        for k in range(n):
            t = T[rad[r], k]
            t2 = t * t
            t4[r, k] = t2 * t2
    for a in range(nn):
        c = B[a, nc - 1]
        for k in range(n):
            out[a, k] = c
        for j in range(nn):
            b = B[a, j]
            bq = B[a, nn + nr + j]
            for k in range(n):
                out[a, k] += b * T[j, k] + bq * q[j, k]
        for r in range(nr):
            b = B[a, nn + r]
            for k in range(n):
                out[a, k] += b * t4[r, k]


def compiled() -> dict[str, Any]:
    """The numba forms (``njit(cache=True)``): compiled, or loaded from the on-disk cache, at their first call."""
    import numba

    jit = numba.njit(cache=True)
    return {"battery_one": jit(battery_one), "battery_loop": jit(battery_loop), "thermal": jit(thermal_one)}

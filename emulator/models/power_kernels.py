"""The power equations, written once for one satellite (Python floats) and for a fleet (numpy arrays over members).

Each kernel is a pure function of plain arithmetic plus the few operations that differ between floats and arrays,
taken from an :class:`Ops` namespace the caller passes: :data:`SCALAR` (``math.exp``, ``min``, ``max``,
``a if c else b``, ``bisect_right``) for :class:`~emulator.models.power.PowerSystem`, :data:`ARRAY` (``np.exp``,
``np.minimum``, ``np.maximum``, ``np.where``, ``np.searchsorted``) for the cluster's ``PowerArrays``. Booleans combine
with ``&`` and ``|`` (both Python bools and numpy bool arrays), negation goes through ``ops.not_``.

Kernels that only make sense member by member (the over-current shed, which removes rails one at a time until the
discharge fits) take floats; the fleet calls them for the few members that need them.

Every equation of the power step is here, the OCV table lookup and the pack's make-up from its live cells included;
the two callers keep only their state and bookkeeping (``docs/models-power-thermal.md``, "One implementation"). The
single satellite does not call the float forms on its hot path: :func:`inline_kernels` writes them into
``PowerSystem.step`` (measured: a call costs the scalar step more than the arithmetic it holds).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import inspect
import marshal
import math
import operator
import os
import sys
import textwrap
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any

import numpy as np

# Shed modes, lowest first. A rail with shed_mode "safe" needs NORMAL or better to be on, and so on.
OFF, CRITICAL, SAFE, NORMAL, FULL = 0, 1, 2, 3, 4
#: a rail's shed_mode -> the lowest mode in which it conducts
MIN_MODE = {"safe": NORMAL, "critical": SAFE, "never": CRITICAL}
#: the mode rises to FULL this close below full_v (V): a pack floating at end of charge reads full
FULL_MARGIN_V = 1e-3
INF = math.inf
#: :func:`pack_makeup`'s minimum over no group at all
NO_GROUP = int(np.iinfo(np.int64).max)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


@dataclass(frozen=True)
class Ops:
    """What differs between a float and an array: the caller picks :data:`SCALAR` or :data:`ARRAY`."""

    exp: Any
    sqrt: Any
    minimum: Any
    maximum: Any
    where: Any
    not_: Any
    #: index of the first table point above x (``bisect_right``; numpy ``searchsorted(side="right")``, the table an
    #: array)
    search_right: Any


SCALAR = Ops(exp=math.exp, sqrt=math.sqrt, minimum=min, maximum=max, where=_where, not_=operator.not_,
             search_right=bisect_right)
ARRAY = Ops(exp=np.exp, sqrt=np.sqrt, minimum=np.minimum, maximum=np.maximum, where=np.where, not_=np.logical_not,
            search_right=lambda a, x: a.searchsorted(x, "right"))  # the method: a third of np.searchsorted's cost


# -- battery ---------------------------------------------------------------------------------------------------------
def pack_resistance(cell_r_ohm: Any, r_activation_k: float, temp_degc: Any, r_sum_inv: Any, ops: Ops) -> Any:
    """Pack resistance (Ohm): Arrhenius R(T) = R25 exp(B (1/T - 1/298.15)) of a cell, times sum(1/np) over the
    series groups (np: the live cells in parallel in a group)."""
    return cell_r_ohm * ops.exp(r_activation_k * (1.0 / (temp_degc + 273.15) - 1.0 / 298.15)) * r_sum_inv


def pack_limits(q_pack_c: Any, max_charge_c: float, max_discharge_c: float, eoc_cell_v: float, groups: Any
                ) -> tuple[Any, Any, Any]:
    """Charge and discharge current limits (A, C-rates of the usable charge) and the end-of-charge voltage (V)."""
    return max_charge_c * q_pack_c / 3600.0, max_discharge_c * q_pack_c / 3600.0, eoc_cell_v * groups


def cell_energy_per_c(soc: Any, soc_pts: Any, v_pts: Any, cum_ocv: Any, ops: Ops) -> Any:
    """Integral of the cell OCV over SoC from 0 (V; times coulombs gives joules), exact on the piecewise-linear
    table. ``cum_ocv[i]``: the integral up to table point i."""
    soc = ops.minimum(ops.maximum(soc, 0.0), 1.0)
    i = ops.minimum(ops.search_right(soc_pts, soc), len(soc_pts) - 1)
    x = soc - soc_pts[i - 1]
    slope = (v_pts[i] - v_pts[i - 1]) / (soc_pts[i] - soc_pts[i - 1])
    return cum_ocv[i - 1] + v_pts[i - 1] * x + 0.5 * slope * x * x


def ocv_segments(soc_pts: list[float], v_pts: list[float]) -> tuple[list[float], list[float], list[float], list[float]]:
    """The OCV table as segments for :func:`ocv_segment` / :func:`cell_ocv`: (bounds, s0, v0, slope). Segment j
    (1..n+1, n table points) holds the SoCs in [bounds[j - 1], bounds[j]): below the table (j = 1, slope 0: the
    first voltage), between two points, or from the table's end on (j = n + 1, slope 0: the last voltage); index 0
    is unused. The slope is numpy.interp's, ``(v1 - v0) / (s1 - s0)``."""
    n = len(soc_pts)
    bounds = [-INF, *soc_pts, INF]
    slopes = [(v_pts[i + 1] - v_pts[i]) / (soc_pts[i + 1] - soc_pts[i]) for i in range(n - 1)]
    # one more entry, n + 2, where a search puts a NaN: NaN out, as numpy.interp gives
    return (bounds, [0.0, soc_pts[0], *soc_pts[:-1], soc_pts[-1], soc_pts[-1]],
            [0.0, v_pts[0], *v_pts[:-1], v_pts[-1], v_pts[-1]], [0.0, 0.0, *slopes, 0.0, 0.0])


def ocv_segment(soc: Any, bounds: Any, ops: Ops) -> Any:
    """The OCV-table segment j that holds ``soc`` (:func:`ocv_segments`): bounds[j - 1] <= soc < bounds[j]."""
    return ops.search_right(bounds, soc)


def cell_ocv(soc: Any, s0: Any, v0: Any, slope: Any) -> Any:
    """Cell open-circuit voltage (V) at ``soc`` on the table segment (s0, v0, slope) that holds it (:func:`ocv_segment`):
    the piecewise-linear table, computed as numpy.interp does (slope x (soc - s0) + v0, the end voltages outside)."""
    return slope * (soc - s0) + v0


def crosses_breakpoint(soc0: Any, end: Any, seg0: Any, seg_end: Any) -> Any:
    """A step from ``soc0`` (in segment ``seg0``) to ``end`` (in ``seg_end``) crosses an OCV-table breakpoint and ends
    within the table: the OCV at the mid-step SoC is not the mean over the step then (:func:`mean_ocv_between`)."""
    return (seg0 != seg_end) & (end >= 0.0) & (end <= 1.0) & (soc0 <= 1.0)


def mean_ocv_between(e0: Any, e1: Any, soc0: Any, end: Any) -> Any:
    """The cell OCV averaged over the SoCs from ``soc0`` to ``end`` (V), from the OCV integral at both ends
    (:func:`cell_energy_per_c`): exact on the piecewise-linear table, across its breakpoints."""
    return (e1 - e0) / (end - soc0)


def cumulative_ocv(soc_pts: list[float], v_pts: list[float]) -> list[float]:
    """``cum_ocv`` of :func:`cell_energy_per_c`: the integral of the cell OCV at each table point (trapezoids)."""
    cum = [0.0]
    for i in range(1, len(soc_pts)):
        cum.append(cum[-1] + 0.5 * (v_pts[i] + v_pts[i - 1]) * (soc_pts[i] - soc_pts[i - 1]))
    return cum


def battery_current(net_w: Any, ocv_v: Any, r_ohm: Any, v_eoc: Any, i_chg_max: Any, i_dis_max: Any, cold: Any,
                    ops: Ops) -> tuple[Any, Any, Any]:
    """Solve P = V_term I with V_term = OCV + I R for the battery current I (A, > 0 charging) given the net power
    the bus offers the pack (W, array after MPPT minus loads). Charging is limited by the end-of-charge voltage, the
    charge C-rate and the cell temperature (``cold``: no charging); what the pack cannot take is shunted.

    Returns (current, shunted W, over-current): over-current means a discharge that does not fit (the terminal
    voltage would collapse, or the current exceeds the discharge limit); the caller sheds loads then
    (:func:`overcurrent_shed`), and the current returned for such a member is meaningless."""
    # the charge limit and the power it takes (p_max) inside the test: for floats ``&`` short-circuits, so a
    # discharge step skips them (``i_max`` and ``p_max`` are read below only where ``full``); arrays compute all
    full = (net_w >= 0.0) & (net_w > (p_max := (ocv_v + (i_max := ops.where(
        ((i_lim := ops.minimum(i_lim := (v_eoc - ocv_v) / r_ohm, i_chg_max)) < 0.0) | cold, 0.0, i_lim)) * r_ohm) * i_max))
    disc = ocv_v * ocv_v + 4.0 * r_ohm * net_w
    root = ops.maximum(disc, 0.0)
    # the root only where it is the answer (for floats, ``where`` evaluates the branch taken only)
    i = ops.where(full, i_max, (-ocv_v + ops.sqrt(root)) / (2.0 * r_ohm))
    over = (net_w < 0.0) & ((disc < 0.0) | (-i > i_dis_max))
    return i, ops.where(full, net_w - p_max, 0.0), over


def mid_step_soc(soc0: Any, current_a: Any, dt_s: float, q_pack_c: Any, ops: Ops) -> Any:
    """The SoC halfway through a step at ``current_a`` (never below 0): on one segment of the OCV table, the OCV
    there is the mean over the step, so OCV x I x dt is the change of stored energy (the ledger closes)."""
    mid = soc0 + 0.5 * current_a * dt_s / q_pack_c
    return ops.maximum(mid, 0.0)


def ledger_step(array_j: Any, mppt_loss_j: Any, load_j: Any, converter_loss_j: Any, array_w: Any, avail_w: Any,
                out_w: Any, in_w: Any, dt_s: float) -> tuple[Any, Any, Any, Any]:
    """The energy ledger over a step (J): array energy, MPPT loss (array - available), energy delivered to the loads
    (rail outputs) and converter loss (rail inputs - outputs)."""
    return (array_j + array_w * dt_s, mppt_loss_j + (array_w - avail_w) * dt_s, load_j + out_w * dt_s,
            converter_loss_j + (in_w - out_w) * dt_s)


def battery_ledger_step(battery_loss_j: Any, shunt_j: Any, loss_j: Any, shunt_w: Any, dt_s: float) -> tuple[Any, Any]:
    """The battery's part of the ledger over a step (J): its I^2 R loss (``loss_j``, :func:`battery_step_end`; 0 for
    an open pack) and the energy shunted at ``shunt_w``."""
    return battery_loss_j + loss_j, shunt_j + shunt_w * dt_s


def brown_out(p_out_w: Any, p_in_w: Any, frac: Any, heat_w: Any, brown: Any) -> tuple[Any, Any, Any, Any]:
    """A rail's output and input power, conduction fraction and heat when the bus carried the loads for the fraction
    ``brown`` of the step only (an emptied pack, :func:`battery_step_end`; no storage and no sun,
    :func:`open_pack_step`)."""
    return p_out_w * brown, p_in_w * brown, frac * brown, heat_w * brown


def pack_makeup(np_alive: Any, cell_q_c: Any, max_charge_c: float, max_discharge_c: float, eoc_cell_v: float,
                ops: Ops) -> tuple[Any, ...]:
    """The pack as its live cells make it: ``np_alive`` holds the live cells in parallel of each series group (a
    list of ints, or of arrays over members; a group shorted out of the string is absent or -1). Returns
    (connected groups, weakest group's cells, usable charge C, sum of 1/np over the groups, charge limit A, discharge
    limit A, end-of-charge voltage V): series groups carry one current, so the weakest bounds the usable charge
    (a balanced pack) and the pack resistance is R_cell x sum(1/np) (:func:`pack_resistance`)."""
    groups = 0
    r_sum_inv = 0.0
    np_min = NO_GROUP
    for n in np_alive:  # group by group, in order: the same sums for one pack and for a fleet
        live = n > 0
        groups = groups + live
        r_sum_inv = r_sum_inv + ops.where(live, 1.0 / ops.maximum(n, 1), 0.0)
        np_min = ops.minimum(np_min, ops.where(n < 0, NO_GROUP, n))
    np_min = ops.where(np_min == NO_GROUP, 0, np_min)
    q_pack_c = cell_q_c * np_min
    return (groups, np_min, q_pack_c, r_sum_inv, *pack_limits(q_pack_c, max_charge_c, max_discharge_c, eoc_cell_v,
                                                               groups))


def battery_step_end(connected: Any, soc0: Any, current_a: Any, ocv_v: Any, r_ohm: Any, q_pack_c: Any, shunt_w: Any,
                     avail_w: Any, dt_s: float, ops: Ops) -> tuple[Any, ...]:
    """A connected pack after a step at ``current_a``: (soc, bus_v, brown, shunt_w, battery_loss_j, empty). A pack
    that empties within the step (``empty``) carried the loads only for the fraction ``brown`` of it, then cut off:
    after that nothing takes the array power (shunted) and the I^2 R loss stops."""
    ds = current_a * dt_s / q_pack_c
    end = soc0 + ds
    empty = connected & (end < 0.0)
    brown = ops.where(empty, soc0 / ops.where(empty, -ds, 1.0), 1.0)
    return (ops.where(empty, 0.0, ops.minimum(end, 1.0)), ocv_v + current_a * r_ohm, brown,
            ops.where(empty, avail_w * (1.0 - brown), shunt_w), current_a * current_a * r_ohm * dt_s * brown, empty)


def open_pack_step(avail_w: Any, loads_in_w: Any, array_w: Any, eoc_cell_v: float, groups: Any, ops: Ops
                   ) -> tuple[Any, Any, Any, Any]:
    """A step with the pack disconnected (no storage): (bus_v, shunt_w, brown, dead). With enough sun the array
    holds the bus at the end-of-charge voltage and the surplus is shunted; without, everything browns out
    (``dead``: the loads got nothing, the bus is 0)."""
    net = avail_w - loads_in_w
    pos = net >= 0.0
    bus = ops.where(pos & (array_w > 0.0), eoc_cell_v * ops.maximum(groups, 1), 0.0)
    return bus, ops.where(pos, net, avail_w), ops.where(pos, 1.0, 0.0), ops.not_(pos)


def discharge_current(net_w: float, ocv_v: float, r_ohm: float, i_dis_max: float) -> float | None:
    """One member's discharge current (A, < 0) for a net power ``net_w`` < 0; None when it does not fit (over-
    current, as :func:`battery_current`)."""
    disc = ocv_v * ocv_v + 4.0 * r_ohm * net_w
    if disc < 0.0:
        return None
    i = (-ocv_v + math.sqrt(disc)) / (2.0 * r_ohm)
    return None if -i > i_dis_max else i


def overcurrent_shed(p_avail_w: float, p_loads_in_w: float, ocv_v: float, r_ohm: float, i_dis_max: float,
                     p_in_by_priority: list[float]) -> tuple[float, float, int]:
    """One member's discharge does not fit: shed rails by priority (``p_in_by_priority``: the rails' input powers,
    the first to go first) until it does. Returns (loads left W, battery current A, n): the shed went through the
    first n entries of the list, and those of them with input power are shed (the caller switches them off)."""
    for n, p_in in enumerate(p_in_by_priority):
        if p_in <= 0.0:
            continue
        p_loads_in_w -= p_in
        i = discharge_current(p_avail_w - p_loads_in_w, ocv_v, r_ohm, i_dis_max)
        if i is not None:
            return p_loads_in_w, i, n + 1
    return p_loads_in_w, discharge_current(p_avail_w - p_loads_in_w, ocv_v, r_ohm, i_dis_max) or 0.0, \
        len(p_in_by_priority)


def shed_shunt(p_avail_w: float, p_loads_in_w: float, ocv_v: float, current_a: float, r_ohm: float) -> float:
    """One member's shunted power after an over-current shed (W): what the array offers beyond the loads left and
    what the pack takes at ``current_a`` (:func:`overcurrent_shed`), never negative."""
    return max(0.0, p_avail_w - p_loads_in_w - (ocv_v + current_a * r_ohm) * current_a)


def shed_mode(rail_min_mode: int) -> int:
    """The mode an over-current shed of a rail leaves: just below the rail's minimum (the mode machine brings it
    back when the battery allows and the hold is over)."""
    return max(OFF, rail_min_mode - 1)


def array_power(irradiance_w_m2: Any, gain_m2: Any, temp_coeff_per_degc: Any, temp_degc: Any, ref_temp_degc: Any,
                ops: Ops) -> Any:
    """Array power at the maximum power point (W): irradiance x area x efficiency x degradation x live strings
    (``gain_m2``), derated linearly with cell temperature above the reference (never below zero)."""
    f = 1.0 + temp_coeff_per_degc * (temp_degc - ref_temp_degc)
    return ops.where(irradiance_w_m2 > 0.0, irradiance_w_m2 * gain_m2 * ops.maximum(f, 0.0), 0.0)


# -- mode machine ----------------------------------------------------------------------------------------------------
def initial_mode(v: Any, hw_off: Any, critical: Any, safe: Any, full: Any, ops: Ops) -> Any:
    """The mode at start for battery voltage ``v`` (no history)."""
    return ops.where(v < hw_off, OFF, ops.where(v < critical, CRITICAL, ops.where(
        v < safe, SAFE, ops.where(v < full - FULL_MARGIN_V, NORMAL, FULL))))


def next_mode(mode: Any, v: Any, hw_off: Any, hw_on: Any, critical: Any, safe: Any, normal: Any, full: Any,
              hold_s: Any, ops: Ops) -> Any:
    """One transition of the shed mode machine on the measured battery voltage ``v``: the hardware cut-off below
    hw_off (back on at hw_on), falling one or more modes at the thresholds, rising one threshold + hysteresis
    (normal - safe) above them; rising waits while an over-current hold runs (``hold_s`` > 0)."""
    hyst = normal - safe
    was_off = mode == OFF
    m = ops.where(was_off, ops.where(v >= hw_on, CRITICAL, OFF), ops.where(v < hw_off, OFF, mode))
    on = m != OFF
    m = ops.where(on & (m >= SAFE) & (v < critical), CRITICAL,
                  ops.where(on & (m >= NORMAL) & (v < safe), SAFE,
                            ops.where(on & (m == FULL) & (v < full - hyst), NORMAL, m)))
    rise = on & (hold_s <= 0.0)
    m = ops.where(rise & (m == CRITICAL) & (v >= critical + hyst), SAFE, m)
    m = ops.where(rise & (m == SAFE) & (v >= normal), NORMAL, m)
    return ops.where(rise & (m == NORMAL) & (v >= full - FULL_MARGIN_V), FULL, m)


def mode_band(mode: Any, hw_off: Any, hw_on: Any, critical: Any, safe: Any, normal: Any, full: Any, held: Any,
              ops: Ops) -> tuple[Any, Any]:
    """The battery voltages [lo, hi) for which :func:`next_mode` leaves ``mode`` as it is (``held``: an over-current
    hold runs, so the mode cannot rise). The steps run the machine only when the voltage leaves this band."""
    hyst = normal - safe
    lo = ops.where(mode == OFF, -INF, hw_off)
    lo = ops.where(mode >= SAFE, ops.maximum(lo, critical), lo)
    lo = ops.where(mode >= NORMAL, ops.maximum(lo, safe), lo)
    lo = ops.where(mode == FULL, ops.maximum(lo, full - hyst), lo)
    rise = ops.where(mode == CRITICAL, critical + hyst, ops.where(
        mode == SAFE, normal, ops.where(mode == NORMAL, full - FULL_MARGIN_V, INF)))
    return lo, ops.where(mode == OFF, hw_on, ops.where(held, INF, rise))


# -- rails -----------------------------------------------------------------------------------------------------------
def rail_conducts(cmd_on: Any, tripped: Any, mode: Any, min_mode: Any, ops: Ops) -> Any:
    """A rail conducts when commanded on, its limiter is closed, and the mode is at or above its shed level."""
    return cmd_on & ops.not_(tripped) & (mode >= min_mode) & (mode != OFF)


def rail_step(on: Any, demand_w: Any, v_out: Any, short_a: Any, limit_a: Any, over_s: Any, good_s: Any, retries: Any,
              window_s: Any, trip_s: Any, eff: Any, dt_s: float, ops: Ops) -> tuple[Any, ...]:
    """One step of a rail and its latching current limiter. The rail draws ``demand_w`` at ``v_out`` (plus a short's
    ``short_a``, dissipated in the short); over ``limit_a`` the limiter's timer runs and trips it after ``trip_s``
    (the rail conducts until the trip instant: ``frac`` of the step); below, the good-time counter runs and clears
    the retry count after ``window_s``. A rail that does not conduct (``on`` false) draws nothing, its timers hold.

    Returns (i_out A, p_out W, p_in W, heat_w, frac, over_s, good_s, retries, trip): heat is the converter loss plus
    the short's power; on ``trip`` the caller opens the limiter (:func:`retry_step` then times the retry)."""
    live = v_out > 0.0
    i_out = ops.where(live, demand_w / ops.where(live, v_out, 1.0) + short_a, 0.0)
    p_short = short_a * v_out
    over = on & (i_out > limit_a)
    ok = on & ops.not_(over)
    over_new = ops.where(over, over_s + dt_s, ops.where(on, 0.0, over_s))
    good = ops.where(over, 0.0, ops.where(ok & (good_s < window_s), good_s + dt_s, good_s))
    retries = ops.where(ok & (good >= window_s), 0, retries)
    trip = over & (over_new >= trip_s)
    frac = ops.where(trip, ops.maximum((trip_s - over_s) / dt_s, 0.0), ops.where(on, 1.0, 0.0))
    p_out = (demand_w + p_short) * frac
    p_in = p_out / eff
    return (ops.where(on, i_out, 0.0), p_out, p_in, p_in - p_out + p_short * frac, frac, over_new, good, retries,
            trip)


def retry_step(waiting: Any, off_s: Any, retry_off_s: Any, dt_s: float, ops: Ops) -> tuple[Any, Any]:
    """A tripped (not latched) limiter's off time; (off_s, retry): it closes again after ``retry_off_s``."""
    off = ops.where(waiting, off_s + dt_s, off_s)
    return off, waiting & (off >= retry_off_s)


def rail_voltage(regulated: Any, v_nom: Any, dropout_v: Any, bus_v: Any, ops: Ops) -> Any:
    """Output voltage of a conducting rail: the bus itself (unregulated); the set point while a regulated converter
    has its headroom (``dropout_v`` above it), else bus - dropout (browned out). ``dropout_v`` = -inf: an ideal
    converter that holds its set point whatever the bus."""
    v = bus_v - dropout_v
    v = ops.maximum(v, 0.0)
    return ops.where(regulated, ops.minimum(v_nom, v), bus_v)


# -- float kernels: the same source, compiled for floats -------------------------------------------------------------
class _Inline(ast.NodeTransformer):
    """Rewrites a kernel for floats: ``ops.where(c, a, b)`` -> ``a if c else b`` (only the branch taken is
    evaluated), ``ops.minimum(a, b)`` -> ``b if b < a else a`` (``min``'s result; ``max`` alike) when a and b are
    names or constants (or a is ``x := e``: ``b if b < (x := e) else x``), ``ops.not_(x)`` -> ``not x``, ``x & y`` / ``x | y`` -> ``x and y`` / ``x or y`` (kernels
    combine booleans only), other ``ops.f`` -> the float function; the ``ops`` parameter goes."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "ops"):
            return node
        a = node.args
        if f.attr == "where":
            return ast.IfExp(test=a[0], body=a[1], orelse=a[2])
        if f.attr == "not_":
            return ast.UnaryOp(op=ast.Not(), operand=a[0])
        if f.attr in ("minimum", "maximum") and all(isinstance(x, ast.Name | ast.Constant) for x in a):
            op = ast.Lt() if f.attr == "minimum" else ast.Gt()
            return ast.IfExp(test=ast.Compare(left=a[1], ops=[op], comparators=[a[0]]), body=a[1], orelse=a[0])
        if (f.attr in ("minimum", "maximum") and isinstance(a[0], ast.NamedExpr)
                and isinstance(a[1], ast.Name | ast.Constant)):  # minimum(x := e, b) -> b if b < (x := e) else x
            op = ast.Lt() if f.attr == "minimum" else ast.Gt()
            return ast.IfExp(test=ast.Compare(left=a[1], ops=[op], comparators=[a[0]]), body=a[1],
                             orelse=ast.Name(id=a[0].target.id, ctx=ast.Load()))
        return ast.Call(func=ast.Name(id=f"_ops_{f.attr}", ctx=ast.Load()), args=a, keywords=node.keywords)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.BitAnd | ast.BitOr):
            return ast.BoolOp(op=ast.And() if isinstance(node.op, ast.BitAnd) else ast.Or(),
                              values=[node.left, node.right])
        return node


class FloatKernels:
    """Every ops-taking kernel of this module compiled for floats (see :class:`_Inline`): the single satellite's.
    Same equations, no ``ops`` argument, no calls for the float operations; equal to ``kernel(..., SCALAR)``
    (tests/unit/test_power_kernels.py). Compiled once per source (:func:`cached_code`)."""

    KERNELS = ("pack_resistance", "cell_energy_per_c", "battery_current", "array_power", "initial_mode", "next_mode",
               "mode_band", "rail_conducts", "rail_voltage", "rail_step", "retry_step", "mid_step_soc", "ledger_step",
               "battery_step_end", "open_pack_step", "ocv_segment", "cell_ocv", "crosses_breakpoint", "mean_ocv_between",
               "battery_ledger_step", "brown_out")

    def __init__(self) -> None:
        fns = [globals()[name] for name in self.KERNELS]
        code, _ = cached_code("power_kernels.FLOAT", [__file__], lambda: (compile(
            ast.Module(body=[_float_tree(fn) for fn in fns], type_ignores=[]), __file__, "exec"), []))
        env = dict(_FLOAT_ENV)
        exec(code, env)  # noqa: S102 (our own source)
        for fn in fns:
            out = env[fn.__name__]
            out.__doc__ = fn.__doc__
            setattr(self, fn.__name__, out)


def float_forms(fns: list[Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Kernels of another module (taking ``ops`` last) compiled for floats as :class:`FloatKernels` compiles this
    module's: name -> the float form, which sees its own module's globals. Cached as :func:`cached_code` caches."""
    module = fns[0].__module__
    src = fns[0].__code__.co_filename
    code, _ = cached_code(f"{module}.FLOAT", [src], lambda: (compile(
        ast.Module(body=[_float_tree(fn) for fn in fns], type_ignores=[]), src, "exec"), []))
    env = {**fns[0].__globals__, **{f"_ops_{k}": getattr(SCALAR, k)
                                    for k in ("exp", "sqrt", "minimum", "maximum", "search_right")}}
    exec(code, env)  # noqa: S102 (our own source)
    out = {}
    for fn in fns:
        f = env[fn.__name__]
        f.__doc__ = fn.__doc__
        out[fn.__name__] = f
    return out


# -- the compiled forms, cached on disk ------------------------------------------------------------------------------
#: bump when the transformation below changes in a way its source hash would not show
_CACHE_FORMAT = 1


def cached_code(name: str, sources: list[str], build: Callable[[], tuple[CodeType, list[str]]]
                ) -> tuple[CodeType, list[str]]:
    """``build()`` (a code object and a list of names it needs), or the same from a cache file beside the first of
    ``sources`` (``__pycache__/<name>.<python tag>.kernels``, or under ``PYTHONPYCACHEPREFIX``, as Python caches
    bytecode): the AST rewriting and compiling cost ~60 ms at every start, loading the result ~0.1 ms. The cache is
    valid for the exact bytes of every file in ``sources`` (the kernels' and the methods' source files; this module
    is always added), their paths and the Python version; anything else (a missing, stale, corrupt or unwritable
    file) builds again. Writing is best effort. ``PYTHONDONTWRITEBYTECODE`` does not stop it (it is about .pyc
    files, which pip writes at install; nothing writes these but the first start, as numba's on-disk cache)."""
    files = sorted({*sources, __file__})
    h = hashlib.sha256(f"{_CACHE_FORMAT}\0{name}\0{sys.version}\0{importlib.util.MAGIC_NUMBER!r}".encode())
    try:
        for f in files:
            h.update(f.encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(fh.read())
    except OSError:
        return build()  # no source to key a cache on (e.g. a zip import): build every time
    key = h.hexdigest()
    src_dir = os.path.dirname(os.path.abspath(sources[0]))
    cache_dir = (os.path.join(sys.pycache_prefix, src_dir.lstrip(os.sep)) if sys.pycache_prefix
                 else os.path.join(src_dir, "__pycache__"))
    path = os.path.join(cache_dir, f"{name}.{sys.implementation.cache_tag}.kernels")
    try:
        with open(path, "rb") as fh:
            got = marshal.load(fh)
        if isinstance(got, tuple) and len(got) == 3 and got[0] == key and isinstance(got[1], CodeType):
            return got[1], list(got[2])
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code, names = build()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with open(tmp, "wb") as fh:
            marshal.dump((key, code, list(names)), fh)
        os.replace(tmp, path)  # atomic: a concurrent start reads the old file or the new, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return code, names


# -- inlining: the float kernels written into a hot method -----------------------------------------------------------
def _float_tree(fn: Callable[..., Any]) -> ast.FunctionDef:
    """``fn``'s definition rewritten for floats (:class:`_Inline`), without its ``ops`` parameter."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef), fn
    if func.args.args[-1].arg == "ops":
        func.args.args.pop()
    func.returns = None
    for arg in func.args.args:
        arg.annotation = None
    ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)  # tracebacks point at the kernel's own lines
    ast.fix_missing_locations(_Inline().visit(tree))
    return func


class _Splice(ast.NodeTransformer):
    """Replaces ``targets = kernel(args)`` statements by the kernel's float body (see :func:`inline_kernels`)."""

    def __init__(self, kernels: dict[str, Callable[..., Any]]) -> None:
        self.kernels = kernels
        self.globals_used: set[str] = set()
        self.n = 0

    def visit_Assign(self, node: ast.Assign) -> Any:
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in self.kernels):
            return node
        func = _float_tree(self.kernels[call.func.id])
        *body, ret = func.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        if not isinstance(ret, ast.Return) or any(not isinstance(s, ast.Assign) for s in body):
            raise TypeError(f"{call.func.id}: only straight-line kernels (assignments, then return) can be inlined")
        self.n += 1
        prefix = f"_k{self.n}_"
        params = [a.arg for a in func.args.args]
        stored = {t.id for s in body for t in ast.walk(s) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        args = dict(zip(params, call.args, strict=True))
        uses = [n.id for s in [*body, ret] for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        out: list[ast.stmt] = []
        subst: dict[str, ast.expr] = {}
        for p, a in args.items():
            if p not in stored and (isinstance(a, ast.Name | ast.Constant) or (_plain_read(a) and uses.count(p) <= 1)):
                subst[p] = a  # a read-only parameter given a name, a constant or a plain read used once: as it is
            else:
                out.append(ast.Assign(targets=[ast.Name(id=prefix + p, ctx=ast.Store())], value=a))
        local = set(params) | stored

        class Rename(ast.NodeTransformer):
            def visit_Name(self, n: ast.Name) -> ast.expr:
                if n.id in subst and isinstance(n.ctx, ast.Load):
                    return subst[n.id]
                if n.id in local:
                    return ast.Name(id=prefix + n.id, ctx=n.ctx)
                return ast.Name(id=f"_pk_{n.id}", ctx=n.ctx)  # a kernel-module global

        self.globals_used |= {n.id for s in [*body, ret] for n in ast.walk(s) if isinstance(n, ast.Name)} - local
        out += [_Fold().visit(Rename().visit(s)) for s in body]
        value = _Fold().visit(Rename().visit(ret.value))
        targets = node.targets
        if (len(targets) == 1 and isinstance(targets[0], ast.Tuple) and isinstance(value, ast.Tuple)
                and len(targets[0].elts) == len(value.elts)
                and not _roots(targets[0].elts) & {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}):
            # one assignment per value (no tuple built and unpacked): no value reads what a target writes
            out += [ast.Assign(targets=[t], value=v) for t, v in zip(targets[0].elts, value.elts, strict=True)]
        else:
            out.append(ast.Assign(targets=targets, value=value))
        for s in out:  # the inlined lines report the call's line in tracebacks
            for n in ast.walk(s):
                if hasattr(n, "lineno"):
                    ast.copy_location(n, node)
        return out


def _plain_read(a: ast.expr) -> bool:
    """``x.attr`` or ``x[i]`` with x and i names or constants: a read with no effect."""
    if isinstance(a, ast.Attribute):
        return isinstance(a.value, ast.Name)
    return isinstance(a, ast.Subscript) and isinstance(a.value, ast.Name) and isinstance(a.slice, ast.Name | ast.Constant)


def _roots(targets: list[ast.expr]) -> set[str]:
    """The names assignment targets write to or through (``r`` of ``r.x``, ``a`` of ``a[i]``)."""
    out = set()
    for t in targets:
        while isinstance(t, ast.Attribute | ast.Subscript):
            t = t.value
        if isinstance(t, ast.Name):
            out.add(t.id)
    return out


class _Fold(ast.NodeTransformer):
    """Folds what a constant argument decides: ``True and x`` -> x, ``x if True else y`` -> x, ``not True``."""

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        self.generic_visit(node)
        keep = isinstance(node.op, ast.And)  # the constant that does not decide: True for and, False for or
        last = len(node.values) - 1
        vals = [v for i, v in enumerate(node.values) if i == last or not (isinstance(v, ast.Constant) and v.value is keep)]
        if isinstance(vals[0], ast.Constant) and isinstance(vals[0].value, bool):
            return vals[0]  # the first value decides
        return vals[0] if len(vals) == 1 else ast.BoolOp(op=node.op, values=vals)

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.test, ast.Constant) and isinstance(node.test.value, bool):
            return node.body if node.test.value else node.orelse
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Constant):
            return ast.Constant(not node.operand.value)
        return node


def inline_kernels(fn: Callable[..., Any], kernels: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """``fn`` (a hot method) with every statement ``targets = name(args)``, ``name`` a key of ``kernels``, replaced by
    the float form of that kernel's body: the same equations as calling :data:`FLOAT` ``.kernel``, without the call.
    ``fn.__wrapped__`` is the method as written (calls); tests/physics check the two agree exactly."""
    env = fn.__globals__

    def build() -> tuple[CodeType, list[str]]:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)
        func = tree.body[0]
        assert isinstance(func, ast.FunctionDef)
        func.decorator_list = []
        func.returns = None
        for arg in [*func.args.args, *func.args.kwonlyargs]:
            arg.annotation = None
        splice = _Splice(kernels)
        tree = ast.fix_missing_locations(splice.visit(tree))
        return compile(tree, inspect.getsourcefile(fn) or "<inlined>", "exec"), sorted(splice.globals_used)

    key = ",".join(f"{k}={v.__module__}.{v.__qualname__}" for k, v in sorted(kernels.items()))
    code, used = cached_code(f"{fn.__module__}.{fn.__qualname__}.{hashlib.sha256(key.encode()).hexdigest()[:12]}",
                             [fn.__code__.co_filename, *(k.__code__.co_filename for k in kernels.values())], build)
    for name in used:
        env[f"_pk_{name}"] = _FLOAT_ENV[name]
    ns: dict[str, Any] = {}
    exec(code, env, ns)  # noqa: S102 (our own source)
    out = ns[fn.__name__]
    out.__doc__, out.__qualname__, out.__wrapped__ = fn.__doc__, fn.__qualname__, fn
    return out


#: the names the float kernels see (this module's, and the float operations)
_FLOAT_ENV: dict[str, Any] = {**globals(), **{f"_ops_{k}": getattr(SCALAR, k)
                                               for k in ("exp", "sqrt", "minimum", "maximum", "search_right")}}
FLOAT = FloatKernels()

"""Electrical power system: solar arrays, MPPT, Li-ion pack, PDU rails with latching current limiters, load shedding.

The bus is a battery-voltage (unregulated) bus, as on GomSpace P31u-class EPS boards: the arrays feed it
through an MPPT stage, the Li-ion pack floats on it, and the PDU's switched rails draw from it through
their converters. Every joule is booked (:class:`EnergyLedger`) so that, over any run,

    array = loads + converter losses + battery I^2 R + MPPT losses + shunted + fault losses + delta stored

closes to rounding (the stored energy is the integral of OCV over charge, see ``docs/models-power-thermal.md``).

The equations are those of :mod:`emulator.models.power_kernels`, written once for one satellite and for the fleet
(``cluster.PowerArrays``); :meth:`PowerSystem.step` has them compiled for floats and written into its body.

The hot path (:meth:`PowerSystem.step`) is plain Python on floats and lists: at ~10 rails and arrays this
is faster than numpy, whose per-call overhead dominates at this size (ceilings.md row 6). It avoids work whose
result is known: rails whose outputs have settled ("quiet": constant demand, no limiter activity) are held
rather than recomputed until their demand or anything about them changes (:meth:`PowerSystem._probe_quiet`),
rail outputs are recomputed only when the mode or a limiter changed, the mode machine runs only when the
battery voltage leaves the band in which it would keep its mode, and the OCV lookup starts from the last
segment. None of this changes a result beyond floating-point round-off (the order of a few sums).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from emulator.errors import CommandError, ModelError, suggest
from emulator.models import power_kernels as pk
from emulator.models.power_kernels import CRITICAL, FULL, NORMAL, OFF, SAFE  # noqa: F401 (the shed modes, public here too)
from emulator.validation import ConfigModel

FACES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")  # body faces, same order as emulator.models.environment.FACES

# Shed modes (OFF, CRITICAL, SAFE, NORMAL, FULL: emulator.models.power_kernels), lowest first. A rail with
# shed_mode "safe" needs NORMAL or better to be on, and so on.
MODE_NAMES = ("off", "critical", "safe", "normal", "full")

_F = pk.FLOAT  # the kernels compiled for floats
_battery_current = _F.battery_current
_pack_resistance = _F.pack_resistance
_array_power = _F.array_power
_rail_voltage = _F.rail_voltage
_rail_step = _F.rail_step
_retry_step = _F.retry_step
_mid_step_soc = _F.mid_step_soc
_ledger_step = _F.ledger_step
_battery_step_end = _F.battery_step_end
_open_pack_step = _F.open_pack_step
_ocv_segment = _F.ocv_segment
_cell_ocv = _F.cell_ocv
_crosses_breakpoint = _F.crosses_breakpoint
_mean_ocv_between = _F.mean_ocv_between
_battery_ledger_step = _F.battery_ledger_step
_brown_out = _F.brown_out
#: steps between two looks for rails whose outputs have settled (a cost knob only: results do not depend on it)
QUIET_PROBE_STEPS = 16

CELL_MIN_V = 2.5  # physics-sources.md §3 "Li-ion cell window": minimum 2.5 V
CELL_MAX_V = 4.2  # physics-sources.md §3 "Li-ion cell window": maximum 4.2 V

# Open-circuit voltage of one NMC/NCA 18650 cell vs state of charge: typical low-rate curve (shape as in
# the Panasonic NCR18650B datasheet and Plett, "Battery Management Systems" vol. I, fig. 2.5), pinned to
# the 3.0..4.2 V window the issue asks for; 4.2 V is the cell maximum in physics-sources.md §3.
DEFAULT_OCV_TABLE: tuple[tuple[float, float], ...] = (
    (0.00, 3.00), (0.05, 3.30), (0.10, 3.45), (0.20, 3.55), (0.30, 3.62), (0.40, 3.68),
    (0.50, 3.74), (0.60, 3.81), (0.70, 3.89), (0.80, 3.97), (0.90, 4.07), (1.00, 4.20),
)

# Per-cell shed thresholds: the 2S P31u values of physics-sources.md §3 (full 8.3 / normal 7.4 / safe 7.2 /
# critical 6.5 V, hardware off 6.0 V, back on 6.4 V) divided by 2, scaled by cells_series for other packs.
P31U_PER_CELL_V = {"full_v": 4.15, "normal_v": 3.70, "safe_v": 3.60, "critical_v": 3.25,
                   "hw_off_v": 3.00, "hw_on_v": 3.20}


_Strict = ConfigModel  # this module's tables


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} name {n!r}; names must be unique")
        seen.add(n)


class ArrayConfig(_Strict):
    name: str = Field(min_length=1)
    #: cell area (active area; packing factor folded in)
    area_m2: float = Field(gt=0, le=1000)
    #: BOL efficiency at 28 °C, AM0: XTJ 29.8 % average (physics-sources.md §3 "Triple-junction GaAs efficiency")
    efficiency: float = Field(0.29, gt=0, le=1)
    #: relative power change per °C above ref_temp_degc: ~-0.2 %/°C for GaAs (physics-sources.md §3, conf. L)
    temp_coeff_per_degc: float = Field(-0.002, ge=-0.02, le=0.0)
    #: datasheet reference temperature 28 °C (physics-sources.md §3 "Seasonal TSI swing" row)
    ref_temp_degc: float = 28.0
    #: "body": fixed to a face (uses face_solar_w_m2[face]); "tracking": a sun-tracking wing
    mount: Literal["body", "tracking"] = "body"
    face: Literal["+X", "-X", "+Y", "-Y", "+Z", "-Z"] | None = None
    #: P_mp retention (radiation, UV): 0.89 at 5e14 1-MeV e/cm² for XTJ (physics-sources.md §3); 1.0 = BOL
    degradation: float = Field(1.0, gt=0, le=1)
    #: parallel strings; a string failure removes 1/strings of the array
    strings: int = Field(4, ge=1, le=1000)
    #: thermal node whose temperature the cells have (and which receives their unconverted heat)
    thermal_node: str = "solar_panels"

    @model_validator(mode="after")
    def _face(self) -> ArrayConfig:
        if self.mount == "body" and self.face is None:
            raise ValueError(f"array {self.name!r}: a body-mounted array needs face, one of {', '.join(FACES)}")
        if self.mount == "tracking" and self.face is not None:
            raise ValueError(f"array {self.name!r}: a tracking array has no face (leave face out)")
        return self


class BatteryConfig(_Strict):
    #: 2S (physics-sources.md §3 "2S pack", AAUSAT3 / P31u)
    cells_series: int = Field(2, ge=1, le=16)
    cells_parallel: int = Field(2, ge=1, le=64)
    #: Panasonic CGR18650AF, 2 Ah (physics-sources.md §3 "2S pack")
    cell_capacity_ah: float = Field(2.0, gt=0, le=1000)
    #: (soc, V) points, soc 0..1 increasing, V increasing; typical 18650 curve (see DEFAULT_OCV_TABLE)
    ocv_table: list[tuple[float, float]] = Field(default_factory=lambda: list(DEFAULT_OCV_TABLE))
    #: DC internal resistance of a fresh 18650 at 25 °C, ~40-60 mOhm (typical datasheet AC/DC IR;
    #: not in physics-sources.md, chosen as a typical value)
    cell_r_ohm: float = Field(0.05, gt=0, le=10)
    #: Arrhenius temperature dependence R(T) = R25 exp(B (1/T - 1/298.15)); B = 1800 K doubles R near -5 °C
    #: (typical Li-ion; not in physics-sources.md, chosen)
    r_activation_k: float = Field(1800.0, ge=0, le=10000)
    #: charge current limit, C-rate: 0.5 C standard charge of 18650 datasheets
    max_charge_c: float = Field(0.5, gt=0, le=10)
    #: discharge current limit, C-rate (typical 18650 continuous 2 C)
    max_discharge_c: float = Field(2.0, gt=0, le=30)
    #: end-of-charge (CV) voltage per cell, 4.15 V (physics-sources.md §3 "End-of-charge voltage")
    end_of_charge_v_cell: float = Field(4.15, ge=3.0, le=CELL_MAX_V)
    #: no charging below this cell temperature: charging 0..30 °C (physics-sources.md §4 "Li-ion battery temperatures")
    charge_min_temp_degc: float = Field(0.0, ge=-40, le=45)
    initial_soc: float = Field(0.8, ge=0, le=1)
    thermal_node: str = "battery"

    @field_validator("ocv_table")
    @classmethod
    def _ocv(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(v) < 2:
            raise ValueError("ocv_table needs at least two (soc, V) points")
        socs = [p[0] for p in v]
        volts = [p[1] for p in v]
        if socs[0] != 0.0 or socs[-1] != 1.0:
            raise ValueError(f"ocv_table must span soc 0..1, got {socs[0]}..{socs[-1]}")
        if any(b <= a for a, b in itertools.pairwise(socs)):
            raise ValueError("ocv_table soc values must be strictly increasing")
        if any(b <= a for a, b in itertools.pairwise(volts)):
            raise ValueError("ocv_table voltages must be strictly increasing with soc")
        if volts[0] < CELL_MIN_V or volts[-1] > CELL_MAX_V:
            raise ValueError(f"ocv_table voltages must be within the cell window {CELL_MIN_V}..{CELL_MAX_V} V, "
                             f"got {volts[0]}..{volts[-1]}")
        return v

    @model_validator(mode="after")
    def _eoc(self) -> BatteryConfig:
        if not self.ocv_table[0][1] < self.end_of_charge_v_cell <= self.ocv_table[-1][1]:
            raise ValueError(f"end_of_charge_v_cell {self.end_of_charge_v_cell} must lie within the OCV table "
                             f"({self.ocv_table[0][1]}..{self.ocv_table[-1][1]} V)")
        return self

    @property
    def capacity_ah(self) -> float:
        return self.cell_capacity_ah * self.cells_parallel


class RailConfig(_Strict):
    name: str = Field(min_length=1)
    #: "regulated": a DC/DC converter at voltage_v; "unregulated": a switch on the battery bus
    kind: Literal["regulated", "unregulated"] = "regulated"
    voltage_v: float | None = Field(None, gt=0, le=100)
    #: regulated rails: the converter's dropout (input headroom it needs above voltage_v). With the bus below
    #: voltage_v + dropout_v the output browns out and follows bus_v - dropout_v (a buck in dropout). None: an
    #: ideal converter that holds voltage_v whatever the bus (a buck-boost; the hardware cut-off ends it)
    dropout_v: float | None = Field(None, ge=0, le=100)
    #: converter efficiency; ~0.9 typical buck/boost at load (not in physics-sources.md: chosen), switch ~0.99
    efficiency: float = Field(0.9, gt=0, le=1)
    #: converter output rating; the P31u 5 V rail is <= 4 A (20 W), 3.3 V <= 5 A (physics-sources.md §3)
    rating_w: float = Field(gt=0)
    #: latching current limiter threshold: P31u outputs 0.5-3 A (physics-sources.md §3 "CubeSat rails")
    current_limit_a: float = Field(gt=0)
    #: time over the limit before the LCL trips (ECSS LCL trip-off time; class table not found, physics-sources.md §5)
    trip_delay_s: float = Field(0.01, ge=0, le=60)
    #: off time before an automatic retry (Maxwell LPT re-applies power automatically, physics-sources.md §5)
    retry_off_s: float = Field(1.0, gt=0, le=3600)
    #: automatic retries before latching off until eps.rail.reset; 0 = latch at the first trip
    max_retries: int = Field(3, ge=0, le=1000)
    #: the retry counter resets after this long on without overcurrent
    retry_window_s: float = Field(60.0, gt=0)
    #: shed when the mode falls to this ("safe": payload first; "critical"; "never": only the hardware cut-off)
    shed_mode: Literal["safe", "critical", "never"] = "never"
    default_on: bool = True
    #: where the converter losses (and a short's heat) go
    thermal_node: str = "structure"

    @model_validator(mode="after")
    def _volts(self) -> RailConfig:
        if self.kind == "regulated" and self.voltage_v is None:
            raise ValueError(f"rail {self.name!r}: a regulated rail needs voltage_v (e.g. 3.3, 5.0, 12.0)")
        if self.kind == "unregulated" and self.voltage_v is not None:
            raise ValueError(f"rail {self.name!r}: an unregulated rail follows the battery; leave voltage_v out")
        if self.kind == "unregulated" and self.dropout_v is not None:
            raise ValueError(f"rail {self.name!r}: dropout_v is the headroom of a regulated rail's converter; an "
                             "unregulated rail has none (leave dropout_v out)")
        return self


class LoadConfig(_Strict):
    """A load on a rail (OBC, radio, ...); its power ends up as heat in thermal_node.

    ``source = "fixed"``: it draws ``power_w``, constant. ``source = "supply"``: a real board powered by a bench
    supply that plays this rail; it draws what the supply measures, an input set from outside the model with
    :meth:`PowerSystem.set_supply_load` (``power_w`` is its draw until the first reading, usually 0).
    """

    name: str = Field(min_length=1)
    rail: str
    power_w: float = Field(0.0, ge=0, le=100000)
    source: Literal["fixed", "supply"] = "fixed"
    thermal_node: str = "structure"

    @model_validator(mode="after")
    def _power(self) -> LoadConfig:
        if self.source == "fixed" and "power_w" not in self.model_fields_set:
            raise ValueError(f"load {self.name!r}: a fixed load needs power_w (W); a board measured by a bench "
                             "supply is source = 'supply'")
        return self


class ShedConfig(_Strict):
    """Battery-voltage thresholds of the mode machine (pack volts). None: P31u per-cell value x cells_series."""

    full_v: float | None = Field(None, gt=0)
    normal_v: float | None = Field(None, gt=0)
    safe_v: float | None = Field(None, gt=0)
    critical_v: float | None = Field(None, gt=0)
    hw_off_v: float | None = Field(None, gt=0)
    hw_on_v: float | None = Field(None, gt=0)

    def resolved(self, cells_series: int) -> dict[str, float]:
        return {k: (v if v is not None else P31U_PER_CELL_V[k] * cells_series)
                for k, v in self.model_dump().items()}


def check_thresholds(th: dict[str, float], cells_series: int) -> None:
    """Raise ValueError naming the first bad threshold: ordered and within the cell window."""
    lo, hi = CELL_MIN_V * cells_series, CELL_MAX_V * cells_series
    for k, v in th.items():
        if not lo <= v <= hi:
            raise ValueError(f"{k} = {v} V is outside the {cells_series}S cell window {lo:g}..{hi:g} V")
    order = ("hw_off_v", "critical_v", "safe_v", "normal_v", "full_v")
    for a, b in itertools.pairwise(order):
        if not th[a] < th[b]:
            raise ValueError(f"{a} ({th[a]} V) must be below {b} ({th[b]} V): "
                             "hw_off_v < critical_v < safe_v < normal_v < full_v")
    if not th["hw_off_v"] < th["hw_on_v"] < th["full_v"]:
        raise ValueError(f"hw_on_v ({th['hw_on_v']} V) must lie between hw_off_v ({th['hw_off_v']} V) "
                         f"and full_v ({th['full_v']} V)")


def updated_thresholds(current: dict[str, float], values: dict[str, float | None], cells_series: int
                       ) -> dict[str, float]:
    """``current`` with ``values`` applied (None: keep), checked as a set; CommandError naming the field
    (``payload.<key>``) on an unknown key or a bad set. ``current`` is not changed."""
    new = dict(current)
    for k, v in values.items():
        if k not in new:
            raise CommandError(f"unknown threshold {k!r}{suggest(k, new)}", field=f"payload.{k}", valid=list(new))
        if v is not None:
            new[k] = float(v)
    try:
        check_thresholds(new, cells_series)
    except ValueError as exc:
        bad = next((k for k in new if str(exc).startswith(k)), None)
        raise CommandError(str(exc), field=f"payload.{bad}" if bad else "payload") from None
    return new


class PowerConfig(_Strict):
    arrays: list[ArrayConfig] = Field(min_length=1)
    #: MPPT conversion efficiency: not found in a primary datasheet (physics-sources.md §3); 0.95 is a typical
    #: buck MPPT figure (one model assumes 0.8 end-to-end including the converters)
    mppt_efficiency: float = Field(0.95, gt=0, le=1)
    battery: BatteryConfig = Field(default_factory=BatteryConfig)
    rails: list[RailConfig] = Field(min_length=1)
    loads: list[LoadConfig] = Field(default_factory=list)
    shed: ShedConfig = Field(default_factory=ShedConfig)
    #: after a battery over-current shed the mode may not rise again for this long (stops on/off cycling)
    overcurrent_hold_s: float = Field(30.0, ge=0, le=86400)
    #: node receiving the MPPT losses (the EPS board)
    eps_node: str = "structure"
    #: node receiving shunted power (None: the node of the first array, where a shunt regulator dumps it)
    shunt_node: str | None = None

    @model_validator(mode="after")
    def _cross(self) -> PowerConfig:
        _unique([a.name for a in self.arrays], "array")
        _unique([r.name for r in self.rails], "rail")
        _unique([ld.name for ld in self.loads], "load")
        rails = {r.name: r for r in self.rails}
        per_rail: dict[str, float] = {}
        for ld in self.loads:
            if ld.rail not in rails:
                raise ValueError(f"load {ld.name!r}: unknown rail {ld.rail!r}{suggest(ld.rail, rails)}; "
                                 f"valid rails: {', '.join(rails)}")
            per_rail[ld.rail] = per_rail.get(ld.rail, 0.0) + ld.power_w
        for name, p in per_rail.items():
            if p > rails[name].rating_w:
                raise ValueError(f"rail {name!r}: its loads draw {p:g} W, above the converter rating "
                                 f"{rails[name].rating_w:g} W")
        try:
            check_thresholds(self.shed.resolved(self.battery.cells_series), self.battery.cells_series)
        except ValueError as exc:
            raise ValueError(f"shed: {exc}") from None
        if self.shed.resolved(self.battery.cells_series)["full_v"] > (
                self.battery.end_of_charge_v_cell * self.battery.cells_series + 1e-9):
            raise ValueError("shed.full_v is above the pack end-of-charge voltage; the mode could never be full")
        return self


class EnergyLedger:
    """Cumulative energies in joules since construction (or :meth:`reset`)."""

    __slots__ = (
        "array_j",
        "battery_loss_j",
        "converter_loss_j",
        "fault_loss_j",
        "load_j",
        "mppt_loss_j",
        "shunt_j",
        "stored0_j",
    )

    def __init__(self, stored0_j: float = 0.0) -> None:
        self.reset(stored0_j)

    def reset(self, stored0_j: float) -> None:
        self.array_j = self.load_j = self.converter_loss_j = self.battery_loss_j = 0.0
        self.mppt_loss_j = self.shunt_j = self.fault_loss_j = 0.0
        self.stored0_j = stored0_j

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Rail:
    __slots__ = (
        "cfg",
        "cmd_on",
        "cuts",
        "dropout",
        "dropout_v",
        "eff",
        "follows_bus",
        "frac",
        "good_s",
        "heat_w",
        "i_out",
        "idx",
        "latched",
        "limit_a",
        "max_retries",
        "min_mode",
        "name",
        "off_s",
        "on",
        "over_s",
        "p_in",
        "p_out",
        "q_demand_w",
        "regulated",
        "retries",
        "retry_off_s",
        "short_a",
        "trip_s",
        "tripped",
        "trips",
        "v_nom",
        "v_out",
        "window_s",
    )

    def __init__(self, cfg: RailConfig, idx: int) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.idx = idx
        self.regulated = cfg.kind == "regulated"
        self.v_nom = cfg.voltage_v or 0.0
        #: the output voltage follows the bus: unregulated, or a regulated converter that can brown out
        self.dropout_v = cfg.dropout_v
        self.dropout = cfg.dropout_v if cfg.dropout_v is not None else -math.inf  # as pk.rail_voltage takes it
        self.follows_bus = not self.regulated or cfg.dropout_v is not None
        self.cuts = 0  # times the output went from on to off (switched, tripped, shed, cut off)
        self.eff = cfg.efficiency
        self.limit_a = cfg.current_limit_a
        self.trip_s = cfg.trip_delay_s
        self.retry_off_s = cfg.retry_off_s
        self.max_retries = cfg.max_retries
        self.window_s = cfg.retry_window_s
        self.min_mode = pk.MIN_MODE[cfg.shed_mode]
        self.cmd_on = cfg.default_on
        self.tripped = False   # LCL open (waiting for retry, or latched)
        self.latched = False   # no more automatic retries: needs eps.rail.reset
        self.over_s = 0.0
        self.off_s = 0.0
        self.good_s = 0.0
        self.retries = 0
        self.trips = 0
        self.short_a = 0.0
        self.on = False
        self.v_out = 0.0
        self.i_out = 0.0
        self.p_out = 0.0
        self.p_in = 0.0
        self.frac = 0.0
        self.heat_w = 0.0  # converter loss + power dissipated in a short, over the last step
        self.q_demand_w = -1.0  # demand at the last quiet probe (PowerSystem._probe_quiet)


def _rail_v(r: _Rail, bus_v: float) -> float:
    """Output voltage of a conducting rail (:func:`~emulator.models.power_kernels.rail_voltage`)."""
    return _F.rail_voltage(r.regulated, r.v_nom, r.dropout, bus_v)


def strings_failed_after(array: str, total: int, failed: int, strings: int) -> int:
    """How many of an array's ``total`` strings have failed once ``strings`` more fail (``failed`` already have);
    more than are left is refused (clearing the fault restores what it failed, so nothing may be clipped)."""
    left = total - failed
    if strings > left:
        have = f"all {total} of its strings have failed" if left == 0 else (
            f"it has {total} strings, {failed} failed: at most {left} more can fail")
        raise CommandError(f"cannot fail {strings} strings of array {array!r}: {have}",
                           field="params.strings", valid=list(range(1, left + 1)) if left else None)
    return failed + strings


class PowerSystem:
    """Arrays + MPPT + battery + PDU. Pure; :meth:`step` advances it by ``dt_s``."""

    def __init__(self, config: PowerConfig) -> None:
        self.config = config
        b = config.battery
        self.ns = b.cells_series
        self.np_alive = [b.cells_parallel] * b.cells_series  # live cells per series group
        self.cell_q_c = b.cell_capacity_ah * 3600.0
        self._soc_pts = [p[0] for p in b.ocv_table]
        self._v_pts = [p[1] for p in b.ocv_table]
        # the OCV table as segments (pk.ocv_segments), and the segment of the last lookup: (j, lo, hi, s0, v0, slope)
        self._ocv_bounds, self._ocv_s0, self._ocv_v0, self._ocv_slope = pk.ocv_segments(self._soc_pts, self._v_pts)
        self._seg = self._segment(self._soc_pts[0])
        # cumulative integral of cell OCV over soc at the breakpoints (exact for a piecewise-linear table)
        self._cum_ocv = pk.cumulative_ocv(self._soc_pts, self._v_pts)
        self.r25 = b.cell_r_ohm
        self.r_b = b.r_activation_k
        self.eoc_cell = b.end_of_charge_v_cell
        self.chg_min_t = b.charge_min_temp_degc
        self.soc = b.initial_soc
        self._update_pack()

        self.arrays = config.arrays
        self.array_alive = [1.0] * len(config.arrays)
        self.array_failed_strings = [0] * len(config.arrays)
        self.array_w = [0.0] * len(config.arrays)
        self.mppt_eff = config.mppt_efficiency
        self._array_gains()

        self.rails = [_Rail(r, i) for i, r in enumerate(config.rails)]
        self._bus_following = [r for r in self.rails if r.follows_bus]
        self._out_mode = -1
        self._rails_dirty = True
        # quiet rails: outputs that cannot change until their demand, the mode or a command changes are not
        # recomputed every step (see _probe_quiet); ``quiet_version`` counts changes of that set
        self._active = list(self.rails)
        self._quiet: list[_Rail] = []
        self._quiet_bus: list[_Rail] = []
        self._quiet_get: itemgetter | None = None
        self._quiet_loads: object = None
        self._quiet_in_w = 0.0
        self._quiet_out_w = 0.0
        self._probe_in = QUIET_PROBE_STEPS
        self.quiet_version = 0
        self.rail_index = {r.name: r.idx for r in self.rails}
        self.static_load_w = [0.0] * len(self.rails)
        self._fixed_load_w = [0.0] * len(self.rails)
        #: loads with source "supply": name -> rail index, and their measured draw (W), see set_supply_load
        self.supply_load_rail = {ld.name: self.rail_index[ld.rail] for ld in config.loads if ld.source == "supply"}
        self.supply_load_w = {ld.name: ld.power_w for ld in config.loads if ld.source == "supply"}
        for ld in config.loads:
            if ld.source == "fixed":
                self._fixed_load_w[self.rail_index[ld.rail]] += ld.power_w
        self._sum_static()
        # shed order under battery over-current: lowest min_mode is shed last; payload ("safe") first
        self._shed_order = sorted(self.rails, key=lambda r: -r.min_mode)

        self.th = config.shed.resolved(self.ns)
        self._th_src: dict[str, float] | None = None
        self._th_t: tuple[float, ...] = ()
        self._band: tuple = (0.0, -1.0, -1, None, False)  # (lo, hi, mode, th, held): see _update_mode
        self.battery_connected = True
        self.ocv_v = self.pack_ocv(self.soc)
        self.bus_v = self.ocv_v
        self.battery_a = 0.0
        self.battery_r_ohm = self.pack_r(25.0)
        self.mode = self._initial_mode(self.bus_v)
        self.s_since_full = 0.0
        self.hold_s = 0.0
        self.array_total_w = 0.0
        self.shunt_w = 0.0
        self.ledger = EnergyLedger(self.stored_j())
        self.events: list[tuple[str, dict[str, object]]] = []
        self._set_rail_outputs()

    # -- battery helpers ------------------------------------------------------------------------------------
    def _update_pack(self) -> None:
        b = self.config.battery
        (self.connected_groups, self.np_min, self.q_pack_c, self.r_sum_inv, self.i_chg_max, self.i_dis_max,
         self.v_eoc) = pk.pack_makeup(self.np_alive, self.cell_q_c, b.max_charge_c, b.max_discharge_c,
                                      b.end_of_charge_v_cell, pk.SCALAR)
        # everything step() needs of the pack, in one tuple (one attribute load on the hot path)
        self._pack = (self.r25, self.r_b, self.r_sum_inv, self.q_pack_c, self.v_eoc, self.i_chg_max, self.i_dis_max,
                      self.chg_min_t, self.connected_groups)

    def _segment(self, soc: float) -> tuple[int, float, float, float, float, float]:
        """The OCV-table segment holding ``soc`` (pk.ocv_segment): (j, lo, hi, s0, v0, slope), remembered (the SoC
        moves slowly: the next lookup is usually in the same segment, ``lo <= soc < hi``, and needs no search)."""
        j = _ocv_segment(soc, self._ocv_bounds)
        b = self._ocv_bounds
        self._seg = seg = (j, b[j - 1], b[j], self._ocv_s0[j], self._ocv_v0[j], self._ocv_slope[j])
        return seg

    def cell_ocv(self, soc: float) -> float:
        _, lo, hi, s0, v0, slope = self._seg
        if not lo <= soc < hi:
            _, lo, hi, s0, v0, slope = self._segment(soc)
        return _F.cell_ocv(soc, s0, v0, slope)

    def pack_ocv(self, soc: float) -> float:
        return self.cell_ocv(soc) * self.connected_groups

    def pack_r(self, temp_degc: float) -> float:
        return _F.pack_resistance(self.r25, self.r_b, temp_degc, self.r_sum_inv)

    def _cell_energy_per_c(self, soc: float) -> float:
        """Integral of cell OCV over soc from 0 (V; times coulombs gives joules)."""
        return _F.cell_energy_per_c(soc, self._soc_pts, self._v_pts, self._cum_ocv)

    def stored_j(self) -> float:
        """Chemical energy in the pack: Q_pack * integral_0^soc OCV_pack(s) ds."""
        if not self.battery_connected:
            return 0.0
        return self.q_pack_c * self.connected_groups * self._cell_energy_per_c(self.soc)

    # -- mode machine ---------------------------------------------------------------------------------------
    def _initial_mode(self, v: float) -> int:
        th = self.th
        return _F.initial_mode(v, th["hw_off_v"], th["critical_v"], th["safe_v"], th["full_v"])

    def _thresholds(self) -> tuple[float, ...]:
        th = self.th
        if th is not self._th_src:  # set_thresholds (or anyone) assigned a new dict
            self._th_src = th
            self._th_t = (th["hw_off_v"], th["hw_on_v"], th["critical_v"], th["safe_v"], th["normal_v"],
                          th["full_v"], th["normal_v"] - th["safe_v"])
        return self._th_t

    def _update_mode(self, v: float) -> None:
        hw_off, hw_on, critical, safe, normal, full, _ = self._thresholds()
        old = self.mode
        m = _F.next_mode(old, v, hw_off, hw_on, critical, safe, normal, full, self.hold_s)
        if m != old:
            self.mode = m
            self.events.append(("eps.mode.changed", {"mode": MODE_NAMES[m], "previous": MODE_NAMES[old],
                                                     "battery_v": v}))
            if m == FULL:
                self.s_since_full = 0.0
        # the battery voltages for which this method would leave mode m as it is (step() skips the call then)
        held = self.hold_s > 0.0
        lo, hi = _F.mode_band(m, hw_off, hw_on, critical, safe, normal, full, held)
        self._band = (lo, hi, m, self.th, held)

    def set_thresholds(self, **values: float | None) -> dict[str, float]:
        """Change shed thresholds (pack volts); validated as a set, nothing changes on error."""
        new = updated_thresholds(self.th, values, self.ns)
        self.th = new
        return dict(new)

    # -- rails ----------------------------------------------------------------------------------------------
    def rail(self, name: str) -> _Rail:
        i = self.rail_index.get(name)
        if i is None:
            valid = list(self.rail_index)
            raise CommandError(f"unknown rail {name!r}{suggest(name, valid)}; valid rails: {', '.join(valid)}",
                               field="payload.rail", valid=valid)
        return self.rails[i]

    def set_rail(self, name: str, on: bool) -> None:
        self.rail(name).cmd_on = on
        self._set_rail_outputs()

    def reset_rail(self, name: str) -> None:
        r = self.rail(name)
        self._thaw()
        r.tripped = r.latched = False
        r.retries = 0
        r.over_s = r.off_s = 0.0
        self._set_rail_outputs()

    def _set_rail_outputs(self) -> None:
        """Which rails conduct, and at what voltage, for the coming step (inputs of the loads)."""
        if self._quiet:
            self._thaw()
        mode = self.mode
        bus = self.bus_v
        for r in self.rails:
            on = _F.rail_conducts(r.cmd_on, r.tripped, mode, r.min_mode)
            if r.on and not on:
                r.cuts += 1
            r.on = on
            r.v_out = _rail_v(r, bus) if on else 0.0
        # step() redoes this only when the mode or a limiter changed; else it just follows the bus
        self._out_mode = mode
        self._rails_dirty = False

    def rail_voltage(self, idx: int) -> float:
        """Output voltage of rail ``idx`` for the coming step; 0.0 when off, tripped, shed or cut."""
        return self.rails[idx].v_out

    # -- the "supply" load source ---------------------------------------------------------------------------
    def set_supply_load(self, name: str, power_w: float) -> None:
        """Input: the draw of load ``name`` (``source = "supply"``), as a bench supply measured it, in W.

        A real board on a bench supply that plays the load's rail draws what it draws; the caller (the bench
        supply loop, at the edge of the emulator) reports it here between steps, and from the next step on it is
        that rail's load like any other: the battery, the shed logic, the limiter and the ledger see it. The
        value holds until the next call. ``power_w`` must be finite and >= 0 (a supply does not sink power).
        """
        idx = self.supply_load_rail.get(name)
        if idx is None:
            valid = list(self.supply_load_rail)
            raise ModelError(f"{name!r} is not a load with source = 'supply'{suggest(name, valid)}; such loads: "
                             f"{', '.join(valid) or 'none'}", field="load", valid=valid)
        if not (math.isfinite(power_w) and power_w >= 0.0):
            raise ModelError(f"supply load {name!r}: power_w must be finite and >= 0, got {power_w!r}",
                             field="power_w")
        if power_w != self.supply_load_w[name]:
            self.supply_load_w[name] = power_w
            self._sum_static()
            self._thaw()

    def _sum_static(self) -> None:
        static = list(self._fixed_load_w)
        for name, idx in self.supply_load_rail.items():
            static[idx] += self.supply_load_w[name]
        self.static_load_w[:] = static

    def _array_gains(self) -> None:
        self._array_k = [(a.area_m2 * a.efficiency * a.degradation * f, a.temp_coeff_per_degc, a.ref_temp_degc)
                         for a, f in zip(self.arrays, self.array_alive, strict=True)]

    # -- faults ---------------------------------------------------------------------------------------------
    def fail_strings(self, array: str, strings: int) -> None:
        names = [a.name for a in self.arrays]
        if array not in names:
            raise CommandError(f"unknown array {array!r}{suggest(array, names)}", field="params.array", valid=names)
        i = names.index(array)
        total = self.arrays[i].strings
        n = strings_failed_after(array, total, self.array_failed_strings[i], strings)
        self.array_failed_strings[i] = n
        self.array_alive[i] = 1.0 - n / total
        self._array_gains()

    def restore_strings(self, array: str, strings: int) -> None:
        names = [a.name for a in self.arrays]
        i = names.index(array)
        n = max(0, self.array_failed_strings[i] - strings)
        self.array_failed_strings[i] = n
        self.array_alive[i] = 1.0 - n / self.arrays[i].strings
        self._array_gains()

    def lose_cell(self, group: int, mode: str = "open") -> None:
        """A cell fails in series group ``group``: "open" removes it from its parallel group (capacity and
        resistance of the group change; an empty group opens the pack); "short" shorts the whole group
        (one fewer series cell). The chemical energy no longer reachable is booked as a fault loss."""
        if not 0 <= group < len(self.np_alive):
            raise CommandError(f"group must be within 0..{len(self.np_alive) - 1}", field="params.group",
                               valid=list(range(len(self.np_alive))))
        if self.np_alive[group] == 0:
            raise CommandError(f"series group {group} has no live cells left", field="params.group")
        before = self.stored_j()
        if mode == "open":
            self.np_alive[group] -= 1
        elif mode == "short":
            self.np_alive[group] = 0
            self.np_alive.pop(group)
        else:
            raise CommandError(f"unknown cell failure mode {mode!r}", field="params.mode", valid=["open", "short"])
        if not self.np_alive or min(self.np_alive) == 0:
            self.battery_connected = False
            self.battery_a = 0.0
        self._update_pack()
        after = self.stored_j()
        self.ledger.fault_loss_j += before - after
        self.events.append(("eps.battery.fault", {"mode": mode, "group": group,
                                                  "connected": self.battery_connected}))

    def short_rail(self, name: str, extra_a: float) -> None:
        self.rail(name).short_a = extra_a
        self._thaw()

    def clear_short(self, name: str) -> None:
        self.rail(name).short_a = 0.0
        self._thaw()

    # -- quiet rails ----------------------------------------------------------------------------------------
    @property
    def quiet_rails(self) -> tuple[_Rail, ...]:
        """Rails whose outputs step() currently holds rather than recomputes (see :meth:`_probe_quiet`); the set
        changes only when :attr:`quiet_version` does."""
        return tuple(self._quiet)

    def _thaw(self) -> None:
        """Every rail is recomputed from the next step on."""
        if self._quiet:
            self._quiet = []
            self._quiet_bus = []
            self._active = list(self.rails)
            self._quiet_get = None
            self._quiet_loads = None
            self._quiet_in_w = self._quiet_out_w = 0.0
            self.quiet_version += 1
        self._probe_in = QUIET_PROBE_STEPS

    def _probe_quiet(self, loads_w: list[float]) -> None:
        """Move rails whose outputs have settled out of the per-step loop. A rail is quiet when it is on, conducts
        the whole step, is past its retry window, and its demand (static + ``loads_w``) has not moved since the
        last probe, and it is regulated (fixed voltage) or has no short (then only its current follows the bus
        voltage: ``i_out = p_out / v``, updated and checked against the limiter every step); or it is off and not
        waiting to retry. Its outputs are then exactly those of the last step until its demand changes (checked
        every step), its limiter would trip, a command, a limiter or the mode changes (:meth:`_set_rail_outputs`),
        or a brown-out or an over-current shed rescales it (:meth:`_thaw`)."""
        self._probe_in = QUIET_PROBE_STEPS
        static = self.static_load_w
        settled = []
        for r in self._active:
            d = static[r.idx] + loads_w[r.idx]
            if r.on:
                if (d == r.q_demand_w and r.frac == 1.0 and r.over_s == 0.0 and r.good_s >= r.window_s
                        and (not r.follows_bus or r.short_a == 0.0)):
                    settled.append(r)
            elif not r.tripped or r.latched:
                settled.append(r)
            r.q_demand_w = d
        if not settled:
            return
        quiet = [r for r in self.rails if r in self._quiet or r in settled]
        active = [r for r in self.rails if r not in quiet]
        self._quiet = quiet
        self._active = active
        # (a rail that carries nothing has no current to follow: 0 / v is 0 at any bus voltage, and it has it)
        self._quiet_bus = [r for r in quiet if r.on and r.follows_bus and not (r.p_out == 0.0 and r.i_out == 0.0)]
        on = [r.idx for r in quiet if r.on]
        self._quiet_get = itemgetter(*on) if on else None
        self._quiet_loads = self._quiet_get(loads_w) if on else None
        qin = qout = 0.0
        for r in quiet:
            qin += r.p_in
            qout += r.p_out
        self._quiet_in_w = qin
        self._quiet_out_w = qout
        self.quiet_version += 1

    # -- the step -------------------------------------------------------------------------------------------
    def step(self, dt_s: float, solar_w_m2: list[float], array_temps_degc: list[float], battery_temp_degc: float,
             loads_w: list[float]) -> None:
        """Advance by ``dt_s``.

        ``solar_w_m2[k]``: irradiance on array k (face or tracking flux from the environment);
        ``array_temps_degc[k]``: its cell temperature; ``loads_w[i]``: demand on rail i *besides* the static
        loads of the config (accelerator, heaters), evaluated at the rail voltages of :meth:`rail_voltage`.
        """
        if dt_s <= 0:
            raise ModelError(f"dt_s must be > 0, got {dt_s}", field="dt_s")
        led = self.ledger
        # 1. array power at the maximum power point
        aw = self.array_w
        if len(aw) == 1:
            gain, tc, ref = self._array_k[0]
            aw[0] = p = _array_power(solar_w_m2[0], gain, tc, array_temps_degc[0], ref)
            p_arr = 0.0 + p
        else:
            p_arr = 0.0
            for k, (gain, tc, ref) in enumerate(self._array_k):
                aw[k] = p = _array_power(solar_w_m2[k], gain, tc, array_temps_degc[k], ref)
                p_arr += p
        p_avail = p_arr * self.mppt_eff

        # 2. rails: demand, latching current limiters (quiet rails: as in the last step, see _probe_quiet)
        quiet_get = self._quiet_get
        if quiet_get is not None and quiet_get(loads_w) != self._quiet_loads:
            self._thaw()
        for r in self._quiet_bus:  # quiet rails on the bus: only their current follows its voltage
            v = r.v_out
            i_out = r.p_out / v if v > 0.0 else 0.0
            if i_out > r.limit_a:
                self._thaw()
                break
            r.i_out = i_out
        p_loads_in = self._quiet_in_w
        e_out = self._quiet_out_w
        static = self.static_load_w
        for r in self._active:
            if r.on:
                idx = r.idx
                (r.i_out, r.p_out, p_in, r.heat_w, r.frac, r.over_s, r.good_s, r.retries, trip) = _rail_step(
                    True, static[idx] + loads_w[idx], r.v_out, r.short_a, r.limit_a, r.over_s, r.good_s, r.retries,
                    r.window_s, r.trip_s, r.eff, dt_s)
                r.p_in = p_in
                if trip:
                    self._trip(r)
                p_loads_in += p_in
                e_out += r.p_out
            else:
                r.i_out = r.p_out = r.p_in = r.frac = r.heat_w = 0.0
                if r.tripped and not r.latched:
                    r.off_s, retry = _retry_step(True, r.off_s, r.retry_off_s, dt_s)
                    if retry:
                        r.tripped = False
                        self._rails_dirty = True
                        r.retries += 1
                        r.over_s = r.good_s = 0.0
        e_in = p_loads_in

        # 3. battery: solve P = V_term * I with V_term = OCV + I R (I > 0 charging)
        shunt = 0.0
        brown = 1.0
        shed = False
        if self.battery_connected:
            r25, r_b, r_sum_inv, q, v_eoc, i_chg_max, i_dis_max, chg_min_t, groups = self._pack
            soc0 = self.soc
            j0, lo, hi, s0, v0, slope = self._seg
            if not lo <= soc0 < hi:  # not the segment of the last lookup (pk.ocv_segment)
                j0, lo, hi, s0, v0, slope = self._segment(soc0)
            c = _cell_ocv(soc0, s0, v0, slope)
            ocv = c * groups
            rr = _pack_resistance(r25, r_b, battery_temp_degc, r_sum_inv)
            cold = battery_temp_degc < chg_min_t
            net = p_avail - p_loads_in
            # two passes: the second uses the mean OCV over the step (the mid-SoC OCV on one linear segment, the
            # integral across a breakpoint), so OCV * I * dt equals the change of stored energy (ledger closes).
            # An over-current shed changes the loads: solve again (the pack may now charge, under its limits), and
            # take the mean over the new current. Ends: every shed removes a rail, and nothing left gives i = 0.
            final = False
            while True:
                i, shunt, over = _battery_current(net, ocv, rr, v_eoc, i_chg_max, i_dis_max, cold)
                if over:
                    # the terminal voltage would collapse (or the current exceed its limit): shed by priority
                    p_loads_in, i = self._overcurrent_shed(p_avail, p_loads_in, ocv, rr, i_dis_max)
                    shunt = pk.shed_shunt(p_avail, p_loads_in, ocv, i, rr)
                    net = p_avail - p_loads_in
                    shed = True
                    final = False
                    if net >= 0.0 and i != 0.0:
                        continue  # the array now covers the loads left: the charge branch, with its limits
                if final or i == 0.0:
                    break
                final = True
                end = soc0 + i * dt_s / q
                # the segment of the step's end: soc0's (lo <= end < hi) or another (pk.ocv_segment)
                j1 = j0 if lo <= end < hi else _ocv_segment(end, self._ocv_bounds)
                cross = _crosses_breakpoint(soc0, end, j0, j1)
                if cross:
                    # the step crosses an OCV-table breakpoint: the mid-SoC OCV is no longer the mean; take the
                    # mean of the piecewise-linear OCV over the step from its integral
                    ocv = _mean_ocv_between(self._cell_energy_per_c(soc0), self._cell_energy_per_c(end), soc0,
                                            end) * groups
                    continue
                mid = _mid_step_soc(soc0, i, dt_s, q)
                _, lm, hm, sm, vm, slm = self._seg
                if not lm <= mid < hm:
                    _, lm, hm, sm, vm, slm = self._segment(mid)
                c = _cell_ocv(mid, sm, vm, slm)
                ocv = c * groups
            self.soc, self.bus_v, brown, shunt, loss_j, empty = _battery_step_end(
                True, soc0, i, ocv, rr, q, shunt, p_avail, dt_s)
            if empty:  # exhausted within the step: the pack cut off
                self.events.append(("eps.mode.changed", {"mode": "off", "previous": MODE_NAMES[self.mode],
                                                         "battery_v": self.bus_v, "reason": "battery empty"}))
                self.mode = OFF
            self.ocv_v = ocv
            self.battery_r_ohm = rr
            self.battery_a = i
        else:
            self.bus_v, shunt, brown, dead = _open_pack_step(p_avail, p_loads_in, p_arr, self.eoc_cell,
                                                             self.connected_groups)
            if dead:  # no storage, not enough sun: everything browns out
                if self.mode != OFF:
                    self.events.append(("eps.mode.changed", {"mode": "off", "previous": MODE_NAMES[self.mode],
                                                             "battery_v": 0.0}))
                self.mode = OFF
            loss_j = 0.0
        led.battery_loss_j, led.shunt_j = _battery_ledger_step(led.battery_loss_j, led.shunt_j, loss_j, shunt, dt_s)

        if brown < 1.0 or shed:
            self._thaw()
            if brown < 1.0:
                for r in self.rails:
                    r.p_out, r.p_in, r.frac, r.heat_w = _brown_out(r.p_out, r.p_in, r.frac, r.heat_w, brown)
            e_out = 0.0
            e_in = 0.0
            for r in self.rails:
                e_out += r.p_out
                e_in += r.p_in

        # 4. ledger
        led.array_j, led.mppt_loss_j, led.load_j, led.converter_loss_j = _ledger_step(
            led.array_j, led.mppt_loss_j, led.load_j, led.converter_loss_j, p_arr, p_avail, e_out, e_in, dt_s)
        self.array_total_w = p_arr
        self.shunt_w = shunt
        self.s_since_full += dt_s
        if self.hold_s > 0.0:
            self.hold_s -= dt_s

        # 5. mode machine on the measured battery voltage, then rail outputs for the next step
        if self.battery_connected:
            v = self.bus_v
            lo, hi, mode, th, held = self._band
            if not (lo <= v < hi and mode == self.mode and th is self.th and held == (self.hold_s > 0.0)):
                self._update_mode(v)
        elif self.bus_v > 0.0 and self.mode == OFF:
            self.mode = CRITICAL
        if self._rails_dirty or self.mode != self._out_mode:
            self._set_rail_outputs()
        else:
            bus = self.bus_v
            for r in self._bus_following:
                if r.on:
                    r.v_out = _rail_voltage(r.regulated, r.v_nom, r.dropout, bus)
            self._probe_in -= 1
            if self._probe_in <= 0 and brown == 1.0 and not shed:
                self._probe_quiet(loads_w)

    def _overcurrent_shed(self, p_avail: float, p_loads_in: float, ocv: float, rr: float,
                          i_dis_max: float) -> tuple[float, float]:
        order = self._shed_order
        p_loads_in, i, n = pk.overcurrent_shed(p_avail, p_loads_in, ocv, rr, i_dis_max, [r.p_in for r in order])
        for r in order[:n]:
            if r.p_in > 0.0:
                r.p_out = r.p_in = r.frac = r.heat_w = 0.0
                r.i_out = 0.0
                self._shed_down(r)
        return p_loads_in, i

    def _shed_down(self, r: _Rail) -> None:
        """Drop the mode below rail r's minimum (a voltage-collapse shed) so the mode machine brings it back."""
        new = pk.shed_mode(r.min_mode)
        self.hold_s = self.config.overcurrent_hold_s
        if new < self.mode:
            self.events.append(("eps.mode.changed", {"mode": MODE_NAMES[new], "previous": MODE_NAMES[self.mode],
                                                     "battery_v": self.bus_v, "reason": "battery over-current"}))
            self.mode = new

    def _trip(self, r: _Rail) -> None:
        r.tripped = True
        self._rails_dirty = True
        r.trips += 1
        r.off_s = 0.0
        r.over_s = 0.0
        if r.retries >= r.max_retries:
            r.latched = True
        self.events.append(("eps.rail.tripped", {"rail": r.name, "current_a": r.i_out, "trips": r.trips,
                                                 "latched": r.latched}))

    # -- views ----------------------------------------------------------------------------------------------
    @property
    def mode_name(self) -> str:
        return MODE_NAMES[self.mode]

    def balance(self) -> dict[str, float]:
        """Energy ledger plus the closing residual (J): array - (everything else) - delta stored."""
        led = self.ledger
        d = led.as_dict()
        d["stored_j"] = self.stored_j()
        d["delta_stored_j"] = d["stored_j"] - led.stored0_j
        d["residual_j"] = (led.array_j - led.load_j - led.converter_loss_j - led.battery_loss_j
                           - led.mppt_loss_j - led.shunt_j - led.fault_loss_j - d["delta_stored_j"])
        return d

    def truth(self) -> dict[str, object]:
        return {
            "bus_v": self.bus_v, "battery_v": self.bus_v if self.battery_connected else 0.0,
            "battery_ocv_v": self.ocv_v, "battery_a": self.battery_a, "battery_r_ohm": self.battery_r_ohm,
            "soc": self.soc, "battery_connected": self.battery_connected, "cells_alive": list(self.np_alive),
            "capacity_ah": self.q_pack_c / 3600.0, "stored_j": self.stored_j(),
            "array_w": self.array_total_w, "arrays_w": {a.name: w for a, w in zip(self.arrays, self.array_w,
                                                                                    strict=True)},
            "array_alive": {a.name: f for a, f in zip(self.arrays, self.array_alive, strict=True)},
            "shunt_w": self.shunt_w, "mode": self.mode_name, "thresholds_v": dict(self.th),
            "rails": {r.name: {"on": r.on, "commanded_on": r.cmd_on, "tripped": r.tripped, "latched": r.latched,
                               "trips": r.trips, "retries": r.retries, "voltage_v": r.v_out, "current_a": r.i_out,
                               "power_w": r.p_out, "input_w": r.p_in, "short_a": r.short_a, "cuts": r.cuts}
                      for r in self.rails},
            "energy": self.balance(),
        }

    def truth_getter(self, path: Sequence[Any]) -> Callable[[], Any] | None:
        """A function reading ``path`` of :meth:`truth` now without building it (a run's per-step requirement
        reads), or None for a path it has none for (the tree is read)."""
        if len(path) == 1:
            key = path[0]
            if key in TRUTH_ATTRS:
                return functools.partial(getattr, self, TRUTH_ATTRS[key])
            if key == "battery_v":
                return lambda: self.bus_v if self.battery_connected else 0.0
            if key == "capacity_ah":
                return lambda: self.q_pack_c / 3600.0
            if key == "stored_j":
                return self.stored_j
            return None
        if len(path) == 2 and path[0] in ("arrays_w", "array_alive"):
            attr = "array_w" if path[0] == "arrays_w" else "array_alive"
            names = [a.name for a in self.arrays]
            if path[1] not in names:
                return None
            i = names.index(path[1])
            return lambda: getattr(self, attr)[i]
        if len(path) == 3 and path[0] == "rails" and path[2] in RAIL_TRUTH_ATTRS:
            for r in self.rails:  # the rails are made once (a rail's state changes in place)
                if r.name == path[1]:
                    return functools.partial(getattr, r, RAIL_TRUTH_ATTRS[path[2]])
        return None


#: truth keys of :meth:`PowerSystem.truth` that are a PowerSystem attribute as they are (key -> attribute)
TRUTH_ATTRS = {"bus_v": "bus_v", "battery_ocv_v": "ocv_v", "battery_a": "battery_a", "battery_r_ohm": "battery_r_ohm",
               "soc": "soc", "battery_connected": "battery_connected", "array_w": "array_total_w",
               "shunt_w": "shunt_w"}
#: the same for a rail's truth (``rails.<name>.<key>``)
RAIL_TRUTH_ATTRS = {"on": "on", "commanded_on": "cmd_on", "tripped": "tripped", "latched": "latched", "trips": "trips",
                    "retries": "retries", "voltage_v": "v_out", "current_a": "i_out", "power_w": "p_out",
                    "input_w": "p_in", "short_a": "short_a", "cuts": "cuts"}


#: the kernels written into PowerSystem.step (its name for each -> the kernel): the equations of
#: emulator.models.power_kernels, as the fleet's PowerArrays runs them on arrays
STEP_KERNELS = {
    "_array_power": pk.array_power, "_rail_step": pk.rail_step, "_retry_step": pk.retry_step,
    "_pack_resistance": pk.pack_resistance, "_battery_current": pk.battery_current, "_rail_voltage": pk.rail_voltage,
    "_mid_step_soc": pk.mid_step_soc, "_ledger_step": pk.ledger_step, "_battery_step_end": pk.battery_step_end,
    "_open_pack_step": pk.open_pack_step, "_ocv_segment": pk.ocv_segment, "_cell_ocv": pk.cell_ocv,
    "_crosses_breakpoint": pk.crosses_breakpoint, "_mean_ocv_between": pk.mean_ocv_between,
    "_battery_ledger_step": pk.battery_ledger_step, "_brown_out": pk.brown_out}
# the hot step with the float kernels written in (no call per equation: pk.inline_kernels)
PowerSystem.step = pk.inline_kernels(PowerSystem.step, STEP_KERNELS)  # type: ignore[method-assign]

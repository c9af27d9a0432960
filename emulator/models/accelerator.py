"""AI accelerator board: states, DVFS, leakage + dynamic power, thermal throttling, jobs with real results, ECC.

One board carries ``chips`` accelerator chips (a Suncatcher prototype flies 4 TPUs, physics-sources.md §1) behind one
PDU rail and one thermal node. Power drawn from the rail over a step::

    P = P_board + n * P_leak,ref * (V/V_top) * 2^((T - T_ref)/T_double) * (1 + k_tid * D_krad)
              + u * n * C * V^2 * f                                      (+ I_SEL * V_supply while latched up)

and all of it ends up as heat in the board's thermal node (``heat_w == load_w``). ``u`` is the utilisation
(busy fraction of the step, idle/boot/hang floors otherwise), ``f`` the effective clock after the software
slowdown cap and the hardware throttle duty. In mode "external" a real (or separately simulated) board reports
its own power with ``accel.report`` and that replaces the model (the latch-up current is still added).

Radiation effects come from :mod:`emulator.models.radiation`; every event is ground truth (``truth()`` and the
control-plane ``radiation.event`` / ``radiation.handled`` events), with whether the board's software noticed and
handled it. Equations, calibration and sources: ``docs/models-accelerator.md``; wire contract:
``docs/protocol-accelerator.md``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from emulator.errors import CommandError, ModelError, suggest
from emulator.models import power_kernels as pk
from emulator.models.base import (
    Command,
    Fault,
    Interface,
    Telemetry,
    command_spec,
    event_spec,
    telemetry_spec,
)
from emulator.models.power_kernels import SCALAR
from emulator.models.radiation import EVENT_KINDS, EccMemory, RadiationConfig, RadiationSource
from emulator.protocol.catalogue import Plane, schemas_from
from emulator.validation import ConfigModel

if TYPE_CHECKING:
    from emulator.models.accelerator_schemas import (
        DvfsSet,
        JobCancel,
        JobSubmit,
        JobVerdict,
        Report,
        ResetCmd,
        ScaleParam,
    )


class BoardState(StrEnum):
    OFF = "off"
    BOOTING = "booting"
    IDLE = "idle"
    BUSY = "busy"
    THROTTLED = "throttled"
    HUNG = "hung"
    LATCHED_UP = "latched_up"
    FAILED = "failed"


_exp = math.exp

OFF, BOOTING, IDLE, BUSY, THROTTLED, HUNG, LATCHED_UP, FAILED = (
    BoardState.OFF, BoardState.BOOTING, BoardState.IDLE, BoardState.BUSY, BoardState.THROTTLED, BoardState.HUNG,
    BoardState.LATCHED_UP, BoardState.FAILED)

#: every allowed state change; anything else is a bug in this module (ModelError)
TRANSITIONS: dict[BoardState, frozenset[BoardState]] = {
    OFF: frozenset({BOOTING}),                                       # supply back / reset after thermal shutdown
    BOOTING: frozenset({IDLE, BUSY, THROTTLED, OFF, HUNG, LATCHED_UP}),  # boot done (straight into work or a
    #                                                                 hardware slowdown) / supply lost or too hot / SEE
    IDLE: frozenset({BUSY, THROTTLED, BOOTING, OFF, HUNG, LATCHED_UP}),
    BUSY: frozenset({IDLE, THROTTLED, BOOTING, OFF, HUNG, LATCHED_UP}),
    THROTTLED: frozenset({IDLE, BUSY, BOOTING, OFF, HUNG, LATCHED_UP}),
    HUNG: frozenset({BOOTING, OFF, LATCHED_UP}),                     # reset / power cycle, thermal trip / SEL
    LATCHED_UP: frozenset({OFF, FAILED}),                            # rail cut in time / conducted too long
    FAILED: frozenset(),
}
_RUNNING = frozenset({BOOTING, IDLE, BUSY, THROTTLED})
_POWERED = _RUNNING | {HUNG, LATCHED_UP}
_WORKING = frozenset({IDLE, BUSY, THROTTLED})  # accepts jobs and DVFS commands

THROTTLE_NAMES = ("none", "software", "hardware")
#: truth keys of :meth:`AcceleratorBoard.truth` that are a board attribute of the same name
TRUTH_ATTRS = frozenset({"clock_mhz", "die_temp_degc", "load_w", "heat_w", "utilisation", "jobs_done", "jobs_failed",
                         "jobs_corrupted", "units_done", "rejected_commands"})
JOB_KINDS = ("inference", "training")


class DvfsLevel(ConfigModel):
    name: str = Field(min_length=1, max_length=32)
    clock_mhz: float = Field(gt=0, le=10000)
    core_v: float = Field(gt=0, le=2.0)


# TPU v6e clocks and voltages are not published (physics-sources.md §7). A four-point table spanning the usual
# 0.65-0.90 V DVFS range of 5-7 nm accelerators, top clock 1.75 GHz (chosen).
DEFAULT_DVFS = (
    DvfsLevel(name="low", clock_mhz=600.0, core_v=0.65),
    DvfsLevel(name="mid", clock_mhz=1000.0, core_v=0.75),
    DvfsLevel(name="high", clock_mhz=1500.0, core_v=0.85),
    DvfsLevel(name="max", clock_mhz=1750.0, core_v=0.90),
)


class AcceleratorConfig(ConfigModel):
    """The accelerator board: mode, wiring, chips, DVFS table, power, thermal limits, jobs, external mode."""

    #: "model": the emulator simulates the board; "external": a real board reports over ``accel.report``
    mode: Literal["model", "external"] = "model"
    #: PDU rail feeding the board (power.rails[].name)
    rail: str = "payload"
    #: thermal node of the dies (thermal.nodes[].name)
    thermal_node: str = "accel_die"
    #: Suncatcher prototype: 4 TPUs per test satellite (physics-sources.md §1, conf. M)
    chips: int = Field(4, ge=1, le=64)
    dvfs: list[DvfsLevel] = Field(default_factory=lambda: [lv.model_copy() for lv in DEFAULT_DVFS], min_length=1)
    #: level at power-on
    default_level: str = "high"
    #: dynamic power of one chip at the top level and full utilisation. TPU v6e TDP is not published; one
    #: secondary estimates 150-200 W/chip (physics-sources.md §1, conf. L): 120 W dynamic + leakage at ~80 degC ~ 150 W
    dynamic_max_w: float = Field(120.0, gt=0, le=5000)
    #: static leakage of one chip at leakage_ref_degc and the top level's voltage (chosen, ~10 % of TDP at 60 degC)
    leakage_ref_w: float = Field(15.0, ge=0, le=5000)
    leakage_ref_degc: float = Field(60.0, ge=-50, le=150)
    #: leakage doubles every ~20-25 degC in CMOS (issue text; chosen 22 degC)
    leakage_doubling_degc: float = Field(22.0, gt=1, le=200)
    #: host CPU, HBM PHY/refresh, I/O and converters that do not scale with the chips' clock (chosen)
    board_base_w: float = Field(20.0, ge=0, le=5000)
    #: utilisation floors: clock-gated idle, boot, and a hung chip spinning (chosen)
    idle_utilisation: float = Field(0.05, ge=0, le=1)
    boot_utilisation: float = Field(0.3, ge=0, le=1)
    hung_utilisation: float = Field(0.3, ge=0, le=1)
    #: power-on to ready (host boot, firmware load; chosen)
    boot_s: float = Field(20.0, ge=0, le=3600)
    #: below this the board browns out (a wide-input 4.5-36 V point-of-load front end; chosen)
    min_supply_v: float = Field(4.5, gt=0, le=1000)
    #: thermal limits. TPU limits are not published (physics-sources.md §4, §7); the Hopper values are used:
    #: software slowdown 87 degC, hardware slowdown 89 degC, shutdown 92 degC, HBM max 95 degC (physics-sources.md §4)
    sw_slowdown_degc: float = Field(87.0, ge=0, le=200)
    hw_slowdown_degc: float = Field(89.0, ge=0, le=200)
    shutdown_degc: float = Field(92.0, ge=0, le=200)
    hbm_max_degc: float = Field(95.0, ge=0, le=200)
    #: HBM temperature = die node temperature + offset (one node for the package; chosen 0)
    hbm_offset_degc: float = Field(0.0, ge=-50, le=50)
    #: a throttle releases this far below its threshold; after a thermal shutdown a reset needs the die this
    #: far below the shutdown threshold (chosen)
    hysteresis_degc: float = Field(3.0, gt=0, le=50)
    #: the software slowdown caps the clock at this level
    sw_slowdown_level: str = "mid"
    #: hardware slowdown: clock duty (fraction of cycles), as a clock-stretching throttle (chosen 0.5)
    hw_throttle_duty: float = Field(0.5, gt=0, le=1)
    #: chip-cycles of work per unit of job size, summed over the chips (chosen: at 4 x 1750 MHz an inference batch
    #: takes 10 ms, a training step 2 s)
    inference_unit_mcycles: float = Field(70.0, gt=0)
    training_unit_mcycles: float = Field(14000.0, gt=0)
    #: size of the job's real computation: a dim x dim integer matmul + ReLU (see job_result)
    result_dim: int = Field(16, ge=2, le=256)
    #: jobs queued or running at most
    queue_max: int = Field(64, ge=1, le=100000)
    #: finished jobs remembered for accel.job.verdict
    history_max: int = Field(4096, ge=1, le=1_000_000)
    #: external mode: the board's power until its first report after power-on (W), and the largest report accepted
    external_default_power_w: float = Field(10.0, ge=0, le=100000)
    external_max_power_w: float = Field(100.0, gt=0, le=100000)
    #: external mode: a reported utilisation at or above this makes the board "busy"
    external_busy_utilisation: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> AcceleratorConfig:
        names = [lv.name for lv in self.dvfs]
        if len(set(names)) != len(names):
            raise ValueError(f"dvfs: level names must be unique, got {names}")
        clocks = [lv.clock_mhz for lv in self.dvfs]
        if clocks != sorted(clocks) or len(set(clocks)) != len(clocks):
            raise ValueError(f"dvfs: levels must be ordered by strictly rising clock_mhz, got {clocks}")
        for key in ("default_level", "sw_slowdown_level"):
            v = getattr(self, key)
            if v not in names:
                raise ValueError(f"{key}: unknown level {v!r}{suggest(v, names)}; valid levels: {', '.join(names)}")
        if not self.sw_slowdown_degc < self.hw_slowdown_degc < self.shutdown_degc:
            raise ValueError(f"thresholds must rise: sw_slowdown_degc ({self.sw_slowdown_degc}) < hw_slowdown_degc "
                             f"({self.hw_slowdown_degc}) < shutdown_degc ({self.shutdown_degc})")
        return self

    @property
    def max_power_w(self) -> float:
        """Worst-case draw in normal operation (top level, full load, fresh chips at the shutdown temperature);
        in external mode the largest report accepted. A latch-up is a fault on top (its limiter trips)."""
        if self.mode == "external":
            return self.external_max_power_w
        leak = self.leakage_ref_w * 2.0 ** ((self.shutdown_degc - self.leakage_ref_degc) / self.leakage_doubling_degc)
        return self.board_base_w + self.chips * (self.dynamic_max_w + leak)


# -- the board's physics, once: kernels for one board (floats, ops.SCALAR) and for N boards (arrays, ops.ARRAY) -------
#: board states as small ints (BoardState order) for the array form, and TRANSITIONS as a matrix over them:
#: LEGAL[old, new] (both forms refuse anything else with a ModelError)
STATE_NAMES = tuple(s.value for s in BoardState)
LEGAL = np.array([[BoardState(b) in TRANSITIONS[BoardState(a)] for b in STATE_NAMES] for a in STATE_NAMES])
#: the states as those ints, and back: STATES[S_IDLE] is IDLE, STATE_CODE[IDLE] is S_IDLE
S_OFF, S_BOOTING, S_IDLE, S_BUSY, S_THROTTLED, S_HUNG, S_LATCHED, S_FAILED = range(8)
STATES = tuple(BoardState)
STATE_CODE = {s: i for i, s in enumerate(STATES)}


# -- the state machine, once: what supply, heat, boot, reset and a single-event effect do to a board's state. Both
# boards take their transitions from these (the single board: one state, emitting accel.state / radiation.event; the
# fleet's reduced board: arrays of states, counting them); ``state`` is an int above (or an array of them).
def supply_state(state: Any, supply_good: Any, ops: Any) -> Any:
    """The state after the supply changed to good / not good: power back boots an off board; power lost switches a
    powered one (anything but off and failed) off. A failed board stays failed."""
    powered = (state != S_OFF) & (state != S_FAILED)
    return ops.where(supply_good, ops.where(state == S_OFF, S_BOOTING, state), ops.where(powered, S_OFF, state))


def throttled_state(state: Any, throttle: Any, working: Any, ops: Any) -> Any:
    """The state under the thermal slowdown ``throttle`` (:func:`throttle_level`): the hardware slowdown (2) throttles
    an idle or busy board; below it a throttled board goes back to busy while it has work (``working``), else idle."""
    on = (throttle == 2) & ((state == S_IDLE) | (state == S_BUSY))
    off = (throttle < 2) & (state == S_THROTTLED)
    return ops.where(on, S_THROTTLED, ops.where(off, ops.where(working, S_BUSY, S_IDLE), state))


def shuts_down(state: Any, too_hot: Any) -> Any:
    """A die at its shutdown temperature (``too_hot``: :func:`thermal_shutdown`) switches a running or hung board off
    (latched off until a reset once it has cooled); a latched-up board waits for its rail to be cut."""
    return too_hot & (state >= S_BOOTING) & (state <= S_HUNG)


def boot_done_state(throttle: Any, ops: Any) -> Any:
    """The state a finished boot enters: idle, or throttled under a hardware slowdown (work then starts as a job
    arrives: the fleet's steady workload is one that arrives at once, :func:`work_state`)."""
    return ops.where(throttle == 2, S_THROTTLED, S_IDLE)


def work_state(state: Any, working: Any, ops: Any) -> Any:
    """An idle board with work to do gets busy; a busy one with none left goes idle."""
    return ops.where((state == S_IDLE) & working, S_BUSY, ops.where((state == S_BUSY) & ops.not_(working), S_IDLE,
                                                                     state))


def latch_damaged(latched: Any, t_ns: Any, latch_t_ns: Any, damage_ns: int) -> Any:
    """A latch-up (``latched``) that has conducted ``damage_ns`` since ``latch_t_ns`` has destroyed the chip."""
    return latched & (t_ns - latch_t_ns >= damage_ns)


def can_reset(state: Any, thermal_latched: Any, supply_good: Any) -> Any:
    """``accel.reset`` reboots a board that is booting (the boot restarts), working or hung, or one that is off after
    a thermal shutdown with its supply good (the single board also waits for the die to cool; the fleet's policy
    checks that itself). A latch-up clears only by removing power; a failed board never."""
    return (((state >= S_BOOTING) & (state <= S_HUNG))
            | ((state == S_OFF) & thermal_latched & supply_good))


class SeeOutcome(NamedTuple):
    """What one single-event effect does to a powered board (:func:`see_outcome`)."""

    #: the event's effect as ``radiation.event`` reports it
    effect: str
    #: the board's new state (an int above), or None: unchanged
    state: int | None
    #: the work running when it struck is lost (the single board fails its job, the fleet counts ``work_lost``)
    loses_work: bool

    @property
    def hurts(self) -> bool:
        """It had an effect: neither corrected (ECC) nor masked."""
        return self.effect not in ("corrected", "masked")


_SEE_MASKED = SeeOutcome("masked", None, False)


def see_outcome(kind: str, state: int, running: bool, reboot: bool) -> SeeOutcome | None:
    """The effect of one single-event effect of ``kind`` on a board in ``state``; None when the board is unpowered
    (off or failed: nothing to upset). ``running``: work was in progress on the chips (a started job; the fleet's
    busy board); ``reboot``: a SEFI's draw said reboot rather than hang (drawn for every SEFI, used where it matters).

    - SEU: corrected by the ECC (the single board's ECC can turn a second upset of a word into an MBU first);
    - MBU: uncorrectable, the running work is lost;
    - SDC: corrupts the running work's result, masked when nothing runs;
    - SEFI: a reboot (the work is lost, the board boots) or a hang (hung until a reset or a power cycle, the work
      with it); masked on a latched-up board, and a reboot on a hung one;
    - SEL: a latch-up (the work is lost; its extra current flows until the rail is cut, and destroys the chip after
      ``sel_damage_s``); masked on a board already latched up."""
    if state == S_OFF or state == S_FAILED:
        return None
    if kind == "seu":
        return SeeOutcome("corrected", None, False)
    if kind == "mbu":
        return SeeOutcome("uncorrectable", None, running)
    if kind == "sdc":
        return SeeOutcome("corrupted", None, False) if running else _SEE_MASKED
    if kind == "sefi":
        if state == S_LATCHED or (state == S_HUNG and reboot):
            return _SEE_MASKED
        return SeeOutcome("reboot", S_BOOTING, running) if reboot else SeeOutcome("hang", S_HUNG, running)
    if kind == "sel":
        return _SEE_MASKED if state == S_LATCHED else SeeOutcome("latchup", S_LATCHED, running)
    raise ModelError(f"unknown radiation event kind {kind!r}", field="kind", valid=list(EVENT_KINDS[:-1]))


def dvfs_tables(c: AcceleratorConfig) -> tuple[list[float], list[float], list[float]]:
    """Per DVFS level: clock (Hz), dynamic power of the board's chips at full utilisation (W, C V^2 f with the
    switched capacitance that gives ``dynamic_max_w`` at the top level) and leakage at ``leakage_ref_degc`` (W,
    proportional to the core voltage)."""
    top = c.dvfs[-1]
    cap = c.dynamic_max_w / (top.core_v ** 2 * top.clock_mhz * 1e6)  # effective switched capacitance, F/chip
    clock_hz = [lv.clock_mhz * 1e6 for lv in c.dvfs]
    dyn_w = [c.chips * cap * lv.core_v ** 2 * f for lv, f in zip(c.dvfs, clock_hz, strict=True)]
    leak_w = [c.chips * c.leakage_ref_w * lv.core_v / top.core_v for lv in c.dvfs]
    return clock_hz, dyn_w, leak_w


def operating_point(level: Any, throttle: Any, sw_cap: int, hw_duty: float, clock_hz: Any, dyn_w: Any, leak_w: Any,
                    ops: Any) -> tuple[Any, Any, Any]:
    """Effective clock (Hz), dynamic power at full utilisation (W) and reference leakage (W) at DVFS ``level`` under
    ``throttle`` (0 none, 1 software: clock capped at level ``sw_cap``, 2 hardware: also a ``hw_duty`` clock duty).
    ``clock_hz``, ``dyn_w``, ``leak_w``: :func:`dvfs_tables` (lists for one board, arrays for N)."""
    lv = ops.where((throttle >= 1) & (level > sw_cap), sw_cap, level)
    duty = ops.where(throttle == 2, hw_duty, 1.0)
    return clock_hz[lv] * duty, dyn_w[lv] * duty, leak_w[lv]


def hot_guard_degc(c: AcceleratorConfig) -> float:
    """Below this die temperature, with no slowdown on, no thermal limit can act (the step may skip them)."""
    return min(c.sw_slowdown_degc, c.hbm_max_degc - c.hbm_offset_degc) - c.hysteresis_degc


def leakage_k_per_degc(c: AcceleratorConfig) -> float:
    """The leakage's exponential temperature coefficient: ln 2 / ``leakage_doubling_degc``."""
    return math.log(2.0) / c.leakage_doubling_degc


def thermal_shutdown(die_temp_degc: Any, c: AcceleratorConfig) -> Any:
    """The die is at or above its shutdown temperature."""
    return die_temp_degc >= c.shutdown_degc


def throttle_level(die_temp_degc: Any, throttle: Any, c: AcceleratorConfig, ops: Any) -> Any:
    """The thermal slowdown after this step (0 none, 1 software, 2 hardware) from the die and HBM temperatures and
    the present ``throttle``: a slowdown starts at its threshold and releases ``hysteresis_degc`` below it."""
    t = die_temp_degc
    hbm = t + c.hbm_offset_degc
    h = c.hysteresis_degc
    hw = (t >= c.hw_slowdown_degc) | (hbm >= c.hbm_max_degc) | ((throttle == 2) & ((t > c.hw_slowdown_degc - h)
                                                                                  | (hbm > c.hbm_max_degc - h)))
    sw = (t >= c.sw_slowdown_degc) | ((throttle >= 1) & (t > c.sw_slowdown_degc - h))
    return ops.where(hw, 2, ops.where(sw, 1, 0))


def dose_step(dose_rate_rad_s: Any, dt_s: float, rad_flux_factor: Any, scale: Any, flux_weight: bool,
              scale_dose: bool, ops: Any) -> tuple[Any, Any]:
    """A step's radiation dose: ``(d_eff, d_tid)``, the dose scaled by the event-rate ``scale`` (drives single-event
    effects) and the dose added to the total ionising dose (scaled too if ``scale_dose``). ``flux_weight``: the
    rate source weights the dose rate by the flux factor."""
    d = dose_rate_rad_s * dt_s
    d = ops.where(flux_weight, d * rad_flux_factor, d)
    d_eff = d * scale
    return d_eff, ops.where(scale_dose, d_eff, d)


def busy_utilisation(work_fraction: Any, idle_utilisation: float) -> Any:
    """Utilisation of a busy board: the fraction of the step it worked, the idle floor for the rest."""
    return work_fraction + (1.0 - work_fraction) * idle_utilisation


def board_power_w(c: AcceleratorConfig, leak_ref_w: Any, leak_k: float, die_temp_degc: Any, leak_per_rad: float,
                  dose_rad: Any, utilisation: Any, dyn_w: Any, exp: Any) -> Any:
    """The board's draw (W, all of it heat in the die node): base + leakage(T, TID) + utilisation x dynamic power;
    leakage doubles every ``leakage_doubling_degc`` (``leak_k`` = ln 2 / that) and grows with the dose. A latch-up's
    current comes on top (:func:`latchup_w`)."""
    return (c.board_base_w + leak_ref_w * exp(leak_k * (die_temp_degc - c.leakage_ref_degc))
            * (1.0 + leak_per_rad * dose_rad) + utilisation * dyn_w)


def latchup_w(sel_current_a: float, supply_v: Any) -> Any:
    """Extra draw of a single-event latch-up at the supply voltage (W)."""
    return sel_current_a * supply_v


# -- the job's real computation ----------------------------------------------------------------------------------
_MUL = np.uint64(6364136223846793005)   # Knuth's MMIX LCG multiplier
_INC = np.uint64(1442695040888963407)
_MIX = np.uint64(0xBF58476D1CE4E5B9)    # splitmix64 mixing constant
_KIND_SALT = {"inference": np.uint64(1), "training": np.uint64(2)}


def job_inputs(seed: int, kind: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The job's two int8-range matrices, from a portable integer recipe (any language with uint64 can redo it).

    For k = 0 .. 2*dim*dim-1 (all arithmetic mod 2^64): x = seed*M + (k+1)*I + salt; x ^= x >> 29; x *= X;
    v = (x >> 40) mod 255 - 127. A = v[:dim*dim], B = v[dim*dim:], row-major. salt: 1 inference, 2 training.
    """
    n2 = dim * dim
    k = np.arange(1, 2 * n2 + 1, dtype=np.uint64)
    x = np.full(2 * n2, seed, dtype=np.uint64) * _MUL + k * _INC + _KIND_SALT[kind]
    x ^= x >> np.uint64(29)
    x *= _MIX
    v = (x >> np.uint64(40)) % np.uint64(255)
    v = v.astype(np.int64) - 127
    return v[:n2].reshape(dim, dim), v[n2:].reshape(dim, dim)


def job_result(seed: int, kind: str, dim: int) -> np.ndarray:
    """The correct result of a job: ReLU(A @ B) as int32 (exact integer arithmetic, bit-identical everywhere)."""
    a, b = job_inputs(seed, kind, dim)
    return np.maximum(a @ b, 0).astype(np.int32)


def result_digest(result: np.ndarray) -> str:
    """SHA-256 (hex) of the result as little-endian int32, row-major."""
    return hashlib.sha256(result.astype("<i4").tobytes()).hexdigest()


class Job:
    __slots__ = ("flips", "id", "kind", "left_cycles", "sdc_events", "seed", "size", "t_start_ns", "t_submit_ns")

    def __init__(self, job_id: int, kind: str, size: int, seed: int, cycles: float, t_ns: int) -> None:
        self.id = job_id
        self.kind = kind
        self.size = size
        self.seed = seed
        self.left_cycles = cycles
        self.t_submit_ns = t_ns
        self.t_start_ns = -1
        self.flips: list[tuple[int, int]] = []   # (element, bit) of each SDC
        self.sdc_events: list[int] = []


class RadEvent:
    """Ground truth of one radiation event (or the TID threshold crossing)."""

    __slots__ = (
        "chip",
        "effect",
        "handled",
        "how",
        "id",
        "job_id",
        "kind",
        "noticed",
        "region",
        "t_handled_ns",
        "t_ns",
        "word",
    )

    def __init__(self, ev_id: int, t_ns: int, kind: str, chip: int, region: str, effect: str,
                 job_id: int | None = None, word: int | None = None) -> None:
        self.id = ev_id
        self.t_ns = t_ns
        self.kind = kind
        self.chip = chip
        self.region = region
        self.word = word
        self.job_id = job_id
        self.effect = effect
        self.noticed = False
        self.handled = False
        self.how: str | None = None
        self.t_handled_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "t_ns": self.t_ns, "kind": self.kind, "chip": self.chip, "region": self.region,
                "word": self.word, "job_id": self.job_id, "effect": self.effect, "noticed": self.noticed,
                "handled": self.handled, "how": self.how, "t_handled_ns": self.t_handled_ns}


# -- wire schemas: in emulator.models.accelerator_schemas, imported on first use ------------------------------------
_SCHEMAS = "emulator.models.accelerator_schemas"
#: the payload classes of the board's topics, by name (``from emulator.models.accelerator import JobSubmit`` works)
SCHEMA_NAMES = frozenset((
    "AccelStatus", "DvfsSet", "JobSubmit", "JobCancel", "JobVerdict", "ResetCmd", "DvfsReply", "SubmitReply",
    "CancelReply", "VerdictReply", "StateReply", "Report", "JobDone", "PowerEvent", "ThrottleEvent", "StateEvent",
    "ErrorEvent", "EffectEvent", "RadiationEventPayload", "RadiationHandled", "ChipParam", "ScaleParam"))


_schema, __getattr__ = schemas_from(__name__, _SCHEMAS, SCHEMA_NAMES)


# -- the board -------------------------------------------------------------------------------------------------------
#: dose_step on floats (AcceleratorBoard.advance, as written; the inlined step has its body instead of the call)
_dose_step = functools.partial(dose_step, ops=SCALAR)


class AcceleratorBoard:
    """The accelerator board as the satellite steps it and the board plane commands it."""

    def __init__(self, config: AcceleratorConfig, radiation: RadiationConfig, rng: np.random.Generator) -> None:
        self.config = c = config
        self.rad_config = radiation
        self.rng = rng
        self.external = c.mode == "external"
        self.chips = c.chips
        self.rad = RadiationSource(radiation, c.chips, rng)
        self.mem = EccMemory(c.chips, radiation.hbm_words_per_chip, radiation.scrub_interval_s)
        self._level_names = [lv.name for lv in c.dvfs]
        self._tables = dvfs_tables(c)
        self._sw_cap = self._level_names.index(c.sw_slowdown_level)
        self.level = self._level_names.index(c.default_level)
        self._unit_cycles = {"inference": c.inference_unit_mcycles * 1e6, "training": c.training_unit_mcycles * 1e6}
        self._leak_k = leakage_k_per_degc(c)
        self._min_v = c.min_supply_v
        self._hot_guard = hot_guard_degc(c)
        self._damage_ns = round(radiation.sel_damage_s * 1e9)
        self._flux_weight = radiation.rate_source == "dose_rate_x_flux_factor"
        self._scale_dose = radiation.scale_dose
        self._leak_tid = radiation.leakage_per_krad * 1e-3  # per rad
        # state
        self.state = OFF
        self.t_ns = 0
        self.die_temp_degc = 20.0
        self.load_w = 0.0
        self.heat_w = 0.0
        self.utilisation = 0.0
        self.throttle = 0
        self._supply_good = False
        self._supply_v = 0.0
        self._announced_on = False
        #: times the board lost power (every accel.power {on: false}): a bench supply cuts its output for each
        self.power_offs = 0
        self._thermal_latched = False
        self._boot_left_s = 0.0
        self._latch_t_ns = 0
        self._latch_event: RadEvent | None = None
        self._f_hz = 0.0
        self._dyn_w = 0.0
        self._leak_w = 0.0
        self._op()
        self._dt_s = 0.0
        self._dt_ns = 0
        # jobs
        self.queue: deque[Job] = deque()
        self._active_ids: set[int] = set()
        self._history: OrderedDict[int, Job] = OrderedDict()
        self._next_id = 1
        self.jobs_done = 0
        self.jobs_failed = 0
        self.jobs_corrupted = 0
        self.units_done = 0
        self.verdicts = {"true_positive": 0, "false_alarm": 0, "missed": 0, "true_negative": 0}
        self.rejected_commands = 0
        # external mode
        self._ext_power_w = c.external_default_power_w
        self._ext_reported = False
        self._ext_last: dict[str, Any] = {}
        self._ext_sdc: dict[int, RadEvent] = {}
        self._ext_ack: dict[int, RadEvent] = {}
        # radiation ground truth
        self._ev_id = 0
        self._unhandled: dict[int, RadEvent] = {}
        self._handled: deque[RadEvent] = deque(maxlen=radiation.truth_events)
        self._handled_counts = dict.fromkeys(EVENT_KINDS, 0)
        self._kind_counts = dict.fromkeys(EVENT_KINDS, 0)
        self._hang_events: list[RadEvent] = []
        self._resubmit: dict[tuple[str, int], list[RadEvent]] = {}
        self._scale_faults: list[float] = []
        self.exposure_rad = 0.0  # scaled dose received while powered
        self._events: list[tuple[str, dict[str, Any]]] = []

    # -- state machine ---------------------------------------------------------------------------------------------
    def _set_state(self, new: BoardState, reason: str) -> None:
        old = self.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise ModelError(f"illegal accelerator transition {old} -> {new} ({reason})", field="state",
                             valid=sorted(TRANSITIONS[old]))
        self.state = new
        self._events.append(("accel.state", {"state": new.value, "previous": old.value, "reason": reason}))

    def _op(self) -> None:
        """Refresh the operating point (clock, dynamic and leakage coefficients) after a level/throttle change."""
        self._f_hz, self._dyn_w, self._leak_w = operating_point(self.level, self.throttle, self._sw_cap,
                                                                self.config.hw_throttle_duty, *self._tables, SCALAR)

    def _announce(self, reason: str) -> None:
        on = self._supply_good and self.state is not FAILED and not self._thermal_latched
        if on != self._announced_on:
            self._announced_on = on
            if not on:
                self.power_offs += 1
            self._events.append(("accel.power", {"on": on, "reason": reason}))

    def _boot(self, reason: str) -> None:
        self._set_state(BOOTING, reason)
        self._boot_left_s = self.config.boot_s
        self._ext_reported = False
        self._ext_power_w = self.config.external_default_power_w

    @property
    def powered(self) -> bool:
        """The board has power as the last ``accel.power`` said: its rail is good and it is not shut down
        (thermal shutdown, failed) in a way that only a power cycle (or nothing) ends."""
        return self._announced_on

    @property
    def latchup_w(self) -> float:
        """Extra draw of a latch-up at the present supply voltage (0.0 unless latched up)."""
        return latchup_w(self.rad_config.sel_current_a, self._supply_v) if self.state is LATCHED_UP else 0.0

    # -- the step --------------------------------------------------------------------------------------------------
    def step(self, t_ns: int, dt_s: float, *, supply_v: float, die_temp_degc: float, dose_rate_rad_s: float,
             rad_flux_factor: float) -> None:
        """Advance from ``t_ns`` by ``dt_s`` with the rail's voltage (0.0: off), the die node temperature and the
        radiation environment; sets :attr:`load_w` / :attr:`heat_w` for this step.

        During the step :attr:`t_ns` is its start (state changes at the boundary are stamped with it); after it,
        the step's end, so commands and injected events between steps are stamped with the current sim time."""
        self.advance(t_ns, dt_s, supply_v, die_temp_degc, dose_rate_rad_s, rad_flux_factor)

    def advance(self, t_ns: int, dt_s: float, supply_v: float, die_temp_degc: float, dose_rate_rad_s: float,
                rad_flux_factor: float) -> None:
        """:meth:`step` with positional arguments (the satellite's per-step path)."""
        self.t_ns = t_ns
        if dt_s != self._dt_s:
            self._dt_s = dt_s
            self._dt_ns = round(dt_s * 1e9)
        try:
            self.die_temp_degc = die_temp_degc
            self._supply_v = supply_v
            if (supply_v >= self._min_v) is not self._supply_good:
                self._supply_changed(supply_v)
            st = self.state
            # total ionising dose accumulates powered or not
            rad = self.rad
            d_eff, dd = _dose_step(dose_rate_rad_s, dt_s, rad_flux_factor, rad.scale, self._flux_weight,
                                   self._scale_dose)
            dose = rad.dose_rad + dd  # RadiationSource.add_dose, inlined while no threshold is crossed
            if rad.degraded or dose < rad.degrade_at_rad:
                rad.dose_rad = dose
            elif rad.add_dose(dd):
                self._tid_degraded(t_ns)
            if st is OFF or st is FAILED:
                self.load_w = self.heat_w = self.utilisation = 0.0
                return
            if st is LATCHED_UP and latch_damaged(True, t_ns, self._latch_t_ns, self._damage_ns):
                self._damaged(t_ns)
                self.load_w = self.heat_w = self.utilisation = 0.0
                return
            if self.throttle or die_temp_degc >= self._hot_guard:
                self._thermal(die_temp_degc)
                st = self.state
                if st is OFF:
                    self.load_w = self.heat_w = self.utilisation = 0.0
                    return
            # work
            c = self.config
            if st is IDLE:
                util = c.idle_utilisation
            elif st is BUSY or st is THROTTLED:
                util = busy_utilisation(self._work(t_ns, dt_s) if self.queue else 0.0, c.idle_utilisation)
            elif st is BOOTING:
                util = c.boot_utilisation
                self._boot_left_s -= dt_s
                if self._boot_left_s <= 0.0 and not self.external:  # one state event per instant
                    to = STATES[_boot_done_state(self.throttle)]
                    self._set_state(to, "boot complete; hardware slowdown" if to is THROTTLED else "boot complete")
            elif st is HUNG:
                util = c.hung_utilisation
            else:  # latched up: the chips do nothing useful
                util = 0.0
            if self.external and self._ext_reported and (st is IDLE or st is BUSY or st is THROTTLED):
                util = self._ext_last["utilisation"]  # the board's own figure, not the model's idle floor
            if t_ns >= self.mem.next_scrub_ns:
                self.mem.scrub(t_ns)
            # single-event effects while powered
            self.exposure_rad += d_eff
            h = rad.hazard + d_eff * rad.k_per_rad  # RadiationSource.exposure, inlined for the quiet step
            if h < rad.next_hazard:
                rad.hazard = h
            else:
                for frac in rad.exposure(d_eff):
                    self._see(t_ns + round(frac * dt_s * 1e9))
                st = self.state
                if st is OFF or st is FAILED:
                    self.load_w = self.heat_w = self.utilisation = 0.0
                    return
            # power
            if st is LATCHED_UP:
                util = 0.0
            self.utilisation = util
            if self.external:
                p = self._ext_power_w
            else:
                p = board_power_w(c, self._leak_w, self._leak_k, die_temp_degc, self._leak_tid, rad.dose_rad, util,
                                  self._dyn_w, _exp)
            if st is LATCHED_UP:
                p += latchup_w(self.rad_config.sel_current_a, supply_v)
            self.load_w = self.heat_w = p
        finally:
            self.t_ns = t_ns + self._dt_ns

    def _supply_changed(self, supply_v: float) -> None:
        good = supply_v >= self._min_v
        self._supply_good = good
        st = self.state
        new = STATES[_supply_state(STATE_CODE[st], good)]
        if good:
            self._thermal_latched = False
            self._announce("rail_on")
            if new is BOOTING and st is not BOOTING:
                self._boot("power on")
            return
        if st is LATCHED_UP:
            reason = "latchup"
        elif supply_v > 0.0:
            reason = "brownout"
        else:
            reason = "rail_off"
        self._announce(reason)
        if new is OFF and st is not OFF:
            self._power_lost(reason)

    def _power_lost(self, reason: str) -> None:
        t = self.t_ns
        if self.state is LATCHED_UP and self._latch_event is not None:
            ev = self._latch_event
            ev.effect = "recovered"
            self._handle(ev, "rail_cut", t)
            self._latch_event = None
        for ev in self._hang_events:
            self._handle(ev, "power_cycle", t)
        self._hang_events.clear()
        self._lose_all("power_loss")
        self.mem.power_loss()
        self._set_state(OFF, reason)
        self.throttle = 0
        self._op()

    def _thermal(self, temp: float) -> None:
        c = self.config
        st = self.state
        if thermal_shutdown(temp, c):
            if _shuts_down(STATE_CODE[st], True):
                self._lose_all("thermal_shutdown")
                for ev in self._hang_events:  # a thermal trip power-cycles the chips
                    self._handle(ev, "power_cycle", self.t_ns)
                self._hang_events.clear()
                self.mem.power_loss()
                self._thermal_latched = True
                self._set_state(OFF, "thermal shutdown")
                self._announce("thermal_shutdown")
                self._set_throttle(0, temp)
            return
        cur = self.throttle
        new = throttle_level(temp, cur, c, SCALAR)
        if new != cur:
            self._set_throttle(new, temp)
        st = self.state
        to = STATES[_throttled_state(STATE_CODE[st], new, bool(self.queue))]
        if to is not st:
            self._set_state(to, "hardware slowdown" if to is THROTTLED else "throttle released")

    def _set_throttle(self, level: int, temp: float) -> None:
        if level == self.throttle:
            return
        self.throttle = level
        self._op()
        lv = self.level if level == 0 else min(self.level, self._sw_cap)
        self._events.append(("accel.throttle", {
            "level": THROTTLE_NAMES[level], "clock_cap_mhz": self.config.dvfs[lv].clock_mhz,
            "duty": self.config.hw_throttle_duty if level == 2 else 1.0, "die_temp_degc": float(temp)}))

    # -- jobs ------------------------------------------------------------------------------------------------------
    def _work(self, t_ns: int, dt_s: float) -> float:
        """Run the queue for ``dt_s`` at the effective clock; returns the busy fraction of the step."""
        rate = self._f_hz * self.chips  # cycles/s, summed over the chips
        left = dt_s
        q = self.queue
        while q and left > 0.0:
            job = q[0]
            if job.t_start_ns < 0:
                job.t_start_ns = t_ns + round((dt_s - left) * 1e9)
            need = job.left_cycles / rate
            if need > left:
                job.left_cycles -= left * rate
                left = 0.0
                break
            left -= need
            job.left_cycles = 0.0
            q.popleft()
            self._finish(job, t_ns + round((dt_s - left) * 1e9))
        if not q and self.state is BUSY:
            self._set_state(IDLE, "queue empty")
        return (dt_s - left) / dt_s

    def _finish(self, job: Job, t_ns: int) -> None:
        self._active_ids.discard(job.id)
        result = job_result(job.seed, job.kind, self.config.result_dim)
        if job.flips:
            flat = result.reshape(-1).view(np.uint32)
            for elem, bit in job.flips:
                flat[elem] ^= np.uint32(1 << bit)
            self.jobs_corrupted += 1
            for ev_id in job.sdc_events:
                ev = self._unhandled.get(ev_id)
                if ev is not None:
                    self._resubmit.setdefault((job.kind, job.seed), []).append(ev)
        self.jobs_done += 1
        self.units_done += job.size
        self._remember(job)
        flat = result.reshape(-1)
        self._events.append(("accel.job.done", {
            "id": job.id, "kind": job.kind, "size": job.size, "seed": job.seed, "ok": True, "error": None,
            "digest": result_digest(result), "checksum": int(flat.astype(np.int64).sum()),
            "values": [int(v) for v in flat[:4]], "duration_s": (t_ns - job.t_submit_ns) * 1e-9}))

    def _remember(self, job: Job) -> None:
        h = self._history
        h[job.id] = job
        h.move_to_end(job.id)
        while len(h) > self.config.history_max:
            h.popitem(last=False)

    def _fail_job(self, job: Job, error: str) -> None:
        self._active_ids.discard(job.id)
        self.jobs_failed += 1
        for ev_id in job.sdc_events:  # a corrupted result that is never delivered harms nobody
            ev = self._unhandled.get(ev_id)
            if ev is not None:
                self._handle(ev, "result_discarded", self.t_ns)
        self._events.append(("accel.job.done", {
            "id": job.id, "kind": job.kind, "size": job.size, "seed": job.seed, "ok": False, "error": error,
            "digest": None, "checksum": None, "values": [], "duration_s": (self.t_ns - job.t_submit_ns) * 1e-9}))

    def _lose_all(self, error: str) -> list[Job]:
        lost = list(self.queue)
        self.queue.clear()
        for job in lost:
            self._fail_job(job, error)
        return lost

    # -- radiation -------------------------------------------------------------------------------------------------
    def _new_event(self, t_ns: int, kind: str, chip: int, region: str, effect: str, job_id: int | None = None,
                   word: int | None = None) -> RadEvent:
        self._ev_id += 1
        ev = RadEvent(self._ev_id, t_ns, kind, chip, region, effect, job_id, word)
        self._unhandled[ev.id] = ev
        self._kind_counts[kind] += 1
        self._events.append(("radiation.event", {"id": ev.id, "t_ns": t_ns, "kind": kind, "chip": chip,
                                                 "region": region, "job_id": job_id, "effect": effect}))
        return ev

    def _handle(self, ev: RadEvent, how: str, t_ns: int) -> None:
        if ev.handled:
            return
        ev.handled = ev.noticed = True
        ev.how = how
        ev.t_handled_ns = t_ns
        self._unhandled.pop(ev.id, None)
        self._handled.append(ev)
        self._handled_counts[ev.kind] += 1
        self._events.append(("radiation.handled", {"id": ev.id, "kind": ev.kind, "how": how, "t_ns": t_ns}))

    def _see(self, t_ns: int) -> None:
        rad = self.rad
        kind = rad.draw_kind()
        self.apply_event(kind, rad.draw_chip(), t_ns)

    def apply_event(self, kind: str, chip: int, t_ns: int) -> RadEvent | None:
        """Apply one single-event effect of ``kind`` on ``chip`` at ``t_ns``; None if the board is unpowered. What it
        does to the state and the work is :func:`see_outcome` (shared with the fleet's reduced board); this board adds
        its ECC words, its job queue (the job a hit loses, the result an SDC corrupts) and the external mode."""
        st = self.state
        if st not in _POWERED:
            return None
        running = self.queue[0] if self.queue and st in _WORKING else None
        job_id = running.id if running is not None else None
        ext = self.external
        word = None
        if kind == "seu":
            word = int(self.rng.integers(self.mem.words))
            if self.mem.upset(chip, word):  # the ECC: a second upset in a word not yet scrubbed is uncorrectable
                return self._uncorrectable(chip, t_ns, running, "mbu", word, accumulated=True)
        elif kind == "mbu":
            self.mem.multi(chip)
        reboot = kind == "sefi" and float(self.rng.random()) < self.rad_config.sefi_reboot_fraction
        # work in progress: a started job (an external board reports its own work: working states)
        started = (st in _WORKING) if ext else (running is not None and running.t_start_ns >= 0)
        out = see_outcome(kind, STATE_CODE[st], started, reboot)
        assert out is not None  # powered
        if kind == "seu":
            ev = self._new_event(t_ns, "seu", chip, "hbm", out.effect, job_id, word)
            self._handle(ev, "ecc", t_ns)
            return ev
        if kind == "mbu":
            return self._uncorrectable(chip, t_ns, running, "mbu", None, accumulated=False)
        if kind == "sdc":
            if ext:
                ev = self._new_event(t_ns, "sdc", chip, "logic", "corrupted")
                if out.hurts:
                    self._ext_sdc[ev.id] = ev
                    self._events.append(("accel.effect", {"effect_id": ev.id, "kind": "sdc", "chip": chip}))
                else:
                    ev.effect = "masked"
                    self._handle(ev, "masked", t_ns)
                return ev
            if not out.hurts:
                ev = self._new_event(t_ns, "sdc", chip, "logic", "masked")
                self._handle(ev, "masked", t_ns)
                return ev
            assert running is not None
            n = self.config.result_dim ** 2
            running.flips.append((int(self.rng.integers(n)), int(self.rng.integers(32))))
            ev = self._new_event(t_ns, "sdc", chip, "logic", out.effect, running.id)
            running.sdc_events.append(ev.id)
            return ev
        if kind == "sefi":
            if not out.hurts:  # on a latched-up board (nothing left to crash), or a reboot of a hung one
                ev = self._new_event(t_ns, "sefi", chip, "logic", "reboot" if st is HUNG else "masked", job_id)
                ev.effect = "masked"
                self._handle(ev, "masked", t_ns)
                return ev
            if out.state == S_BOOTING:
                ev = self._new_event(t_ns, "sefi", chip, "logic", out.effect, job_id)
                lost = self._lose_all("reboot")
                self._await_resubmit(ev, lost)
                if ext:
                    self._ext_ack[ev.id] = ev
                    self._events.append(("accel.effect", {"effect_id": ev.id, "kind": "reboot", "chip": chip}))
                self._boot("SEFI reboot")
                return ev
            ev = self._new_event(t_ns, "sefi", chip, "logic", out.effect, job_id)
            self._hang_events.append(ev)  # the queue waits, hung, until a reset or a power cycle drops it
            if st is not HUNG:
                self._set_state(HUNG, "SEFI")
                if ext:
                    self._events.append(("accel.effect", {"effect_id": ev.id, "kind": "hang", "chip": chip}))
            return ev
        # sel
        if not out.hurts:
            ev = self._new_event(t_ns, "sel", chip, "supply", "masked")
            self._handle(ev, "masked", t_ns)
            return ev
        ev = self._new_event(t_ns, "sel", chip, "supply", out.effect, job_id)
        self._lose_all("latchup")
        self._latch_t_ns = t_ns
        self._latch_event = ev
        self._set_state(LATCHED_UP, "single-event latch-up")
        return ev

    def _uncorrectable(self, chip: int, t_ns: int, running: Job | None, kind: str, word: int | None,
                       accumulated: bool) -> RadEvent:
        effect = "uncorrectable_accumulated" if accumulated else "uncorrectable"
        ev = self._new_event(t_ns, kind, chip, "hbm", effect, running.id if running else None, word)
        ev.noticed = True  # the ECC reports it
        if self.external:
            self._ext_ack[ev.id] = ev
            self._events.append(("accel.effect", {"effect_id": ev.id, "kind": "mbu", "chip": chip}))
            return ev
        self._events.append(("accel.error", {"kind": "uecc", "chip": chip,
                                             "job_id": running.id if running else None}))
        lost: list[Job] = []
        if running is not None:
            self.queue.popleft()
            self._fail_job(running, "uecc")
            lost.append(running)
            if not self.queue and self.state is BUSY:
                self._set_state(IDLE, "queue empty")
        self._await_resubmit(ev, lost)
        return ev

    def _await_resubmit(self, ev: RadEvent, lost: list[Job]) -> None:
        """The event is handled when the board resubmits the lost work (same kind and seed); at once if none."""
        if not lost:
            self._handle(ev, "nothing_lost", self.t_ns)
            return
        for job in lost[:1]:  # the running job is the one whose loss the event caused
            self._resubmit.setdefault((job.kind, job.seed), []).append(ev)

    def _damaged(self, t_ns: int) -> None:
        ev = self._latch_event
        if ev is not None:
            ev.effect = "damaged"
            self._latch_event = None
        self._set_state(FAILED, "latch-up conducted too long: chip destroyed")
        self.throttle = 0
        self._op()
        self._announce("failed")

    def _tid_degraded(self, t_ns: int) -> None:
        ev = self._new_event(t_ns, "tid", -1, "hbm", "degraded")
        ev.noticed = False  # no action expected from the board; kept in the handled history
        self._handle(ev, "none_required", t_ns)

    # -- commands --------------------------------------------------------------------------------------------------
    def _reject(self, message: str, field_: str, valid: list[Any] | None = None) -> CommandError:
        self.rejected_commands += 1
        return CommandError(message, field=field_, valid=valid)

    def _need_working(self, what: str) -> None:
        st = self.state
        if st not in _WORKING:
            hint = {OFF: "the board is off (rail off, browned out or thermally shut down)",
                    BOOTING: "the board is still booting", HUNG: "the board is hung: send accel.reset",
                    LATCHED_UP: "the board is latched up: power-cycle its rail",
                    FAILED: "the board has failed"}[st]
            raise self._reject(f"{what} refused: {hint}", "state", sorted(s.value for s in _WORKING))

    def _model_only(self, topic: str) -> None:
        if self.external:
            raise self._reject(f"{topic} is not accepted in external mode (the board runs its own work and clocks; "
                               "report with accel.report)", "mode", ["model"])

    def cmd_dvfs_set(self, p: DvfsSet) -> dict[str, Any]:
        self._model_only("accel.dvfs.set")
        if p.level not in self._level_names:
            raise self._reject(f"unknown DVFS level {p.level!r}{suggest(p.level, self._level_names)}",
                               "payload.level", self._level_names)
        self._need_working("accel.dvfs.set")
        self.level = self._level_names.index(p.level)
        self._op()
        return {"level": p.level, "clock_mhz": self._f_hz / 1e6}

    def cmd_job_submit(self, p: JobSubmit) -> dict[str, Any]:
        self._model_only("accel.job.submit")
        self._need_working("accel.job.submit")
        if len(self.queue) >= self.config.queue_max:
            raise self._reject(f"job queue full ({self.config.queue_max} jobs)", "payload", None)
        if p.id is not None:
            job_id = p.id
            if job_id in self._active_ids:
                raise self._reject(f"job id {job_id} is already queued or running", "payload.id",
                                   sorted(self._active_ids)[:20])
        else:
            job_id = self._next_id
            while job_id in self._active_ids:
                job_id += 1
        self._next_id = max(self._next_id, job_id + 1)
        seed = p.seed if p.seed is not None else job_id
        job = Job(job_id, p.kind, p.size, seed, p.size * self._unit_cycles[p.kind], self.t_ns)
        self.queue.append(job)
        self._active_ids.add(job_id)
        waiting = self._resubmit.pop((p.kind, seed), None)
        if waiting:
            for ev in waiting:
                self._handle(ev, "resubmitted", self.t_ns)
        if self.state is IDLE:
            self._set_state(BUSY, "job submitted")
        return {"id": job_id, "seed": seed, "queue_len": len(self.queue)}

    def cmd_job_cancel(self, p: JobCancel) -> dict[str, Any]:
        self._model_only("accel.job.cancel")
        self._need_working("accel.job.cancel")
        for job in self.queue:
            if job.id == p.id:
                self.queue.remove(job)
                self._fail_job(job, "cancelled")
                if not self.queue and self.state is BUSY:
                    self._set_state(IDLE, "queue empty")
                return {"id": p.id, "queue_len": len(self.queue)}
        raise self._reject(f"no queued or running job with id {p.id}", "payload.id",
                           [j.id for j in self.queue][:20])

    def cmd_job_verdict(self, p: JobVerdict) -> dict[str, Any]:
        if self.external:
            if p.effect_id is None:
                return {"id": p.id, "ok": p.ok, "matched": False}
            ev = self._ext_sdc.get(p.effect_id)
            if ev is None:
                raise self._reject(f"no pending sdc effect with effect_id {p.effect_id}", "payload.effect_id",
                                   sorted(self._ext_sdc)[:20])
            if p.ok:
                ev.effect = "escaped"
                self.verdicts["missed"] += 1
            else:
                ev.job_id = p.id
                self._ext_sdc.pop(p.effect_id)
                self.verdicts["true_positive"] += 1
                self._handle(ev, "verdict", self.t_ns)
            return {"id": p.id, "ok": p.ok, "matched": True}
        job = self._history.get(p.id)
        if job is None:
            raise self._reject(f"no finished job with id {p.id}", "payload.id", list(self._history)[-20:])
        corrupted = bool(job.flips)
        if p.ok and corrupted:
            self.verdicts["missed"] += 1
            for ev_id in job.sdc_events:
                ev = self._unhandled.get(ev_id)
                if ev is not None:
                    ev.effect = "escaped"
        elif p.ok:
            self.verdicts["true_negative"] += 1
        elif corrupted:
            self.verdicts["true_positive"] += 1
            for ev_id in job.sdc_events:
                ev = self._unhandled.get(ev_id)
                if ev is not None:
                    self._handle(ev, "verdict", self.t_ns)
        else:
            self.verdicts["false_alarm"] += 1
        return {"id": p.id, "ok": p.ok}

    def cmd_reset(self, p: ResetCmd | None = None) -> dict[str, Any]:
        st = self.state
        if not can_reset(STATE_CODE[st], self._thermal_latched, self._supply_good):
            why = {FAILED: "the board has failed (latch-up damage); nothing recovers it",
                   LATCHED_UP: "a latch-up clears only by removing power (eps.rail.set off, then on)"}.get(
                st, "the board is unpowered (its rail is off or browned out)")
            raise self._reject(f"accel.reset refused: {why}", "state", sorted(s.value for s in _POWERED - {LATCHED_UP}))
        if st is OFF:  # after a thermal shutdown, its supply good
            limit = self.config.shutdown_degc - self.config.hysteresis_degc
            if self.die_temp_degc >= limit:
                raise self._reject(f"accel.reset refused: die at {self.die_temp_degc:.1f} degC after a thermal "
                                   f"shutdown; it must cool below {limit:g} degC", "die_temp_degc", None)
            self._thermal_latched = False
            self._announce("reset")
            self._boot("reset after thermal shutdown")
            return {"state": self.state.value}
        t = self.t_ns
        for ev in self._hang_events:
            self._handle(ev, "reset", t)
        self._hang_events.clear()
        if not self.external:
            self._lose_all("reset")
        if st is BOOTING:
            self._boot_left_s = self.config.boot_s
        else:
            self._boot("reset")
        return {"state": self.state.value}

    def cmd_report(self, p: Report) -> dict[str, Any]:
        if not self.external:
            raise self._reject("accel.report is only accepted in external mode", "mode", ["external"])
        st = self.state
        if st is OFF or st is FAILED:
            raise self._reject(f"accel.report refused: the board is {st.value} in the emulator (it should be "
                               "unpowered)", "state", sorted(s.value for s in _POWERED))
        if p.power_w > self.config.external_max_power_w:
            raise self._reject(f"power_w {p.power_w:g} W exceeds external_max_power_w "
                               f"({self.config.external_max_power_w:g} W)", "payload.power_w", None)
        unknown = [e for e in p.acked_effects if e not in self._ext_ack]
        if unknown:
            raise self._reject(f"acked_effects: no pending reboot/mbu effect with id {unknown[0]}",
                               "payload.acked_effects", sorted(self._ext_ack)[:20])
        for e in p.acked_effects:
            self._handle(self._ext_ack.pop(e), "acked", self.t_ns)
        self._ext_power_w = p.power_w
        self._ext_reported = True
        self._ext_last = p.model_dump()
        self.utilisation = p.utilisation
        busy = p.utilisation >= self.config.external_busy_utilisation
        # one state event per report: booting ends straight in the state the report calls for
        if st is BOOTING:
            target = THROTTLED if self.throttle == 2 else BUSY if busy else IDLE
            self._set_state(target, "board reported" + ("; hardware slowdown" if target is THROTTLED else ""))
        elif st is IDLE and busy:
            self._set_state(BUSY, "board reports work")
        elif st is BUSY and not busy:
            self._set_state(IDLE, "board reports idle")
        return {"state": self.state.value}

    # -- faults (control plane) ------------------------------------------------------------------------------------
    def _check_chip(self, chip: int) -> None:
        if not 0 <= chip < self.chips:
            raise CommandError(f"chip must be within 0..{self.chips - 1}", field="payload.params.chip",
                               valid=list(range(self.chips)))

    def inject(self, kind: str, chip: int = 0) -> RadEvent | None:
        """Inject one event now (control plane); counted like a drawn one."""
        self._check_chip(chip)
        if kind not in EVENT_KINDS[:-1]:
            raise CommandError(f"unknown event kind {kind!r}", field="payload.name", valid=list(EVENT_KINDS[:-1]))
        return self.apply_event(kind, chip, self.t_ns)

    def _scale_on(self, p: ScaleParam) -> None:
        self._scale_faults.append(p.factor)
        self.rad.set_fault_scales(self._scale_faults)

    def _scale_off(self, p: ScaleParam) -> None:
        if p.factor in self._scale_faults:
            self._scale_faults.remove(p.factor)
        self.rad.set_fault_scales(self._scale_faults)

    # -- interface -------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        st = self.state
        running = self.queue[0].id if self.queue and st in _WORKING and self.queue[0].t_start_ns >= 0 else None
        return {
            "state": st.value, "mode": self.config.mode, "level": self._level_names[self.level],
            "clock_mhz": self.clock_mhz, "throttle": THROTTLE_NAMES[self.throttle],
            "die_temp_degc": float(round(self.die_temp_degc)), "power_w": self.load_w,
            "utilisation": min(1.0, max(0.0, self.utilisation)), "queue_len": len(self.queue),
            "running_job": running,
            "jobs_done": int(self._ext_last.get("jobs_done") or 0) if self.external else self.jobs_done,
            "jobs_failed": self.jobs_failed,
            "ecc_corrected": sum(self.mem.corrected), "ecc_uncorrected": sum(self.mem.uncorrectable),
            "rejected_commands": self.rejected_commands}

    @property
    def clock_mhz(self) -> float:
        """0 when off, hung, latched up or failed; in external mode the clock the board last reported (0 before its
        first report since power-on or reset, or when it reports none)."""
        if self.state not in _RUNNING:
            return 0.0
        if self.external:
            return float(self._ext_last.get("clock_mhz") or 0.0) if self._ext_reported else 0.0
        return self._f_hz / 1e6

    def interface(self) -> Interface:
        ref = _schema  # the payload classes are imported when first used (a command validated, the docs rendered)

        def fault(kind: str, doc: str) -> Fault:
            return Fault(f"radiation.{kind}", ref("ChipParam"), doc, lambda p: self.inject(kind, p.chip))

        return Interface(
            telemetry=[Telemetry(telemetry_spec(
                "accel.status", ref("AccelStatus"), "The accelerator board's own status: state, clock, throttle, die "
                "temperature, power, jobs, ECC counters, refused commands.", 1.0), self.status)],
            commands=[
                Command(command_spec("accel.dvfs.set", ref("DvfsSet"), "Set the DVFS level (power mode), model mode.",
                                     reply=ref("DvfsReply")),
                        self.cmd_dvfs_set),
                Command(command_spec("accel.job.submit", ref("JobSubmit"), "Queue a job (model mode); every accepted "
                                     "job ends with exactly one accel.job.done.", reply=ref("SubmitReply")),
                        self.cmd_job_submit),
                Command(command_spec("accel.job.cancel", ref("JobCancel"), "Cancel a queued or running job.",
                                     reply=ref("CancelReply")),
                        self.cmd_job_cancel),
                Command(command_spec("accel.job.verdict", ref("JobVerdict"), "The board's checker verdict on a "
                                     "finished job's result (how silent data corruption is detected).",
                                     reply=ref("VerdictReply")),
                        self.cmd_job_verdict),
                Command(command_spec("accel.reset", ref("ResetCmd"), "Reset the board (clears a hang; restarts after "
                                     "a thermal shutdown once cool). A latch-up needs a power cycle.",
                                     reply=ref("StateReply")),
                        self.cmd_reset),
                Command(command_spec("accel.report", ref("Report"), "External mode: the board's measured power, "
                                     "utilisation, temperature and acknowledged effects.", reply=ref("StateReply")),
                        self.cmd_report),
            ],
            faults=[
                Fault("radiation.scale", ref("ScaleParam"), "Multiply every single-event rate by a factor (an SPE, a "
                      "beam campaign); clearing restores it.", self._scale_on, self._scale_off),
                fault("seu", "One single-bit HBM upset (ECC corrects it; a second in the same word is a UECC)."),
                fault("mbu", "One uncorrectable HBM error (the running job is lost)."),
                fault("sdc", "One silent data corruption in the running job's result."),
                fault("sefi", "One single-event functional interrupt (the board hangs until reset)."),
                fault("sel", "One single-event latch-up (supply current jumps; the rail limiter must cut it)."),
            ],
            events=[
                event_spec("accel.job.done", ref("JobDone"), "A job finished (with its result) or was lost."),
                event_spec("accel.power", ref("PowerEvent"), "The board's power switched (supply, thermal shutdown, "
                           "failure); the bench runs its power hook on it."),
                event_spec("accel.throttle", ref("ThrottleEvent"), "Thermal throttle demand changed."),
                event_spec("accel.state", ref("StateEvent"), "The board's state changed."),
                event_spec("accel.error", ref("ErrorEvent"), "An uncorrectable memory error (model mode)."),
                event_spec("accel.effect", ref("EffectEvent"), "External mode: a radiation effect the board's agent "
                           "must enact."),
                event_spec("radiation.event", ref("RadiationEventPayload"), "Ground truth: a radiation event "
                           "happened.", Plane.CONTROL),
                event_spec("radiation.handled", ref("RadiationHandled"), "Ground truth: the board handled an event.",
                           Plane.CONTROL),
            ],
        )

    def truth(self) -> dict[str, Any]:
        rad = self.rad
        counts = {k: {"total": self._kind_counts[k], "handled": self._handled_counts[k], "drawn": rad.counts[k]}
                  for k in EVENT_KINDS}
        return {
            "mode": self.config.mode, "state": self.state.value, "level": self._level_names[self.level],
            "clock_mhz": self.clock_mhz, "throttle": THROTTLE_NAMES[self.throttle],
            "die_temp_degc": self.die_temp_degc, "supply_v": self._supply_v, "load_w": self.load_w,
            "heat_w": self.heat_w, "utilisation": self.utilisation, "queue_len": len(self.queue),
            "jobs_done": self.jobs_done, "jobs_failed": self.jobs_failed, "jobs_corrupted": self.jobs_corrupted,
            "units_done": self.units_done, "verdicts": dict(self.verdicts),
            "rejected_commands": self.rejected_commands,
            "ecc": {"corrected": list(self.mem.corrected), "uncorrectable": list(self.mem.uncorrectable),
                    "pending_words": [len(p) for p in self.mem.pending], "scrubbed": self.mem.scrubbed,
                    "accumulated_mbu": self.mem.accumulated_mbu},
            "radiation": {
                "dose_krad": rad.dose_rad * 1e-3, "degraded": rad.degraded, "scale": rad.scale,
                "exposure_rad": self.exposure_rad, "counts": counts,
                "unhandled": [ev.to_dict() for ev in self._unhandled.values()],
                "recent": [ev.to_dict() for ev in self._handled],
            },
            "external": dict(self._ext_last) if self.external else None,
        }

    def truth_getter(self, path: Sequence[Any]) -> Callable[[], Any] | None:
        """A function reading ``path`` of :meth:`truth` now without building it (a run's per-step requirement
        reads), or None for a path it has none for (the tree is read)."""
        if len(path) == 1:
            key = path[0]
            if key in TRUTH_ATTRS:
                return functools.partial(getattr, self, key)
            if key == "supply_v":
                return lambda: self._supply_v
            if key == "queue_len":
                return lambda: len(self.queue)
            return None
        if len(path) == 2 and path[0] == "verdicts" and path[1] in self.verdicts:
            key = path[1]
            return lambda: self.verdicts[key]
        if len(path) == 2 and path[0] == "radiation":
            if path[1] == "dose_krad":
                return lambda: self.rad.dose_rad * 1e-3
            if path[1] == "exposure_rad":
                return lambda: self.exposure_rad
            return None
        if len(path) == 4 and tuple(path[:2]) == ("radiation", "counts") and path[2] in EVENT_KINDS:
            kind = path[2]
            counts = {"total": lambda: self._kind_counts[kind], "handled": lambda: self._handled_counts[kind],
                      "drawn": lambda: self.rad.counts[kind]}
            return counts.get(path[3])
        return None

    def has_events(self) -> bool:
        return bool(self._events)

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._events
        self._events = []
        return out

    def unhandled(self, kind: str | None = None) -> list[RadEvent]:
        """Radiation events the board has not (yet) handled, oldest first."""
        return [ev for ev in self._unhandled.values() if kind is None or ev.kind == kind]


# The per-step path with the shared kernels written in (no call per equation: power_kernels.inline_kernels, the same
# source as the fleet's AcceleratorArrays runs on arrays; AcceleratorBoard.advance.__wrapped__ is the method as written)
AcceleratorBoard.advance = pk.inline_kernels(AcceleratorBoard.advance, {  # type: ignore[method-assign]
    "_dose_step": dose_step, "busy_utilisation": busy_utilisation, "board_power_w": board_power_w})

#: the state machine's kernels compiled for floats (power_kernels.float_forms: a conditional for each where), as the
#: board calls them, one state at a time (equal to the ops.SCALAR call: tests/physics/test_kernels.py)
STATE_FLOAT = pk.float_forms([supply_state, throttled_state, boot_done_state, work_state, shuts_down])
_supply_state, _throttled_state, _boot_done_state, _shuts_down = (
    STATE_FLOAT[k] for k in ("supply_state", "throttled_state", "boot_done_state", "shuts_down"))

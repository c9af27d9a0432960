"""Radiation effects: single-event upsets, MBU, SDC, SEFI, latch-up and total ionising dose, drawn reproducibly.

Single-event effects (SEE) arrive as a Poisson process whose intensity follows the dose rate::

    lambda_k(t) = n_chips * D'(t) * s(t) / R_k          [events/s]

with ``D'`` the dose rate behind the shielding (rad(Si)/s, from the environment), ``s`` the scale factor
(config x active ``radiation.scale`` faults) and ``R_k`` the rad(Si) per event per chip of kind k, calibrated to
the Google TPU v6e proton campaign (physics-sources.md §1). This is the same as ``sigma_k * flux``: for protons of
energy E, one rad(Si) is a fluence of ``1 / (1.602e-8 * S(E))`` p/cm^2 (S the mass stopping power), so
``sigma_k = 1 / (R_k * fluence_per_rad)`` (see :func:`cross_section_cm2`).

Arrivals are drawn by inversion rather than one Poisson draw per step: the integrated intensity (expected
events) accumulates each step and an event fires when it crosses an exponential(1) threshold; the kind is then a
categorical draw weighted by ``1 / R_k`` and the chip a uniform draw. That is exactly a non-homogeneous Poisson
process, reproducible from the seed, and costs one multiply-add and one compare per quiet step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from emulator.validation import ConfigModel

KINDS = ("seu", "mbu", "sdc", "sefi", "sel")
#: kinds with a per-chip rate in the config (same order as KINDS); "tid" is the dose threshold crossing
EVENT_KINDS = (*KINDS, "tid")

# -- proton dose <-> fluence (Bethe formula, PDG "Passage of particles through matter", eq. 34.5) ----------
_K_MEV_CM2_MOL = 0.307075          # 4 pi N_A r_e^2 m_e c^2 (PDG)
_ME_MEV = 0.51099895               # electron rest energy (CODATA 2018)
_MP_MEV = 938.27208816             # proton rest energy (CODATA 2018)
_SI_Z_OVER_A = 14.0 / 28.0855      # silicon, mol/g
_SI_I_EV = 173.0                   # mean excitation energy of silicon (PDG / ICRU 37)
_MEV_G_PER_RAD = 1.0 / 1.602176634e-8  # 1 rad = 0.01 J/kg = 6.2415e7 MeV/g


def proton_stopping_power_si(energy_mev: float) -> float:
    """Mass electronic stopping power of silicon for protons, MeV cm^2/g (Bethe, no shell/density terms).

    Valid from ~10 MeV to ~1 GeV (density effect negligible for beta*gamma < ~1.6 in Si). At 67 MeV it gives
    7.9 MeV cm^2/g (NIST PSTAR lists ~7.8 near 70 MeV).
    """
    if not 1.0 <= energy_mev <= 1e4:
        raise ValueError(f"energy_mev must be within 1..1e4 MeV, got {energy_mev}")
    gamma = 1.0 + energy_mev / _MP_MEV
    b2 = 1.0 - 1.0 / (gamma * gamma)
    bg2 = b2 * gamma * gamma
    r = _ME_MEV / _MP_MEV
    tmax = 2.0 * _ME_MEV * bg2 / (1.0 + 2.0 * gamma * r + r * r)
    arg = 2.0 * _ME_MEV * 1e6 * bg2 * tmax * 1e6 / (_SI_I_EV * _SI_I_EV)
    return _K_MEV_CM2_MOL * _SI_Z_OVER_A / b2 * (0.5 * math.log(arg) - b2)


def proton_fluence_per_rad(energy_mev: float = 67.0) -> float:
    """Protons per cm^2 that deposit 1 rad(Si): 6.24e7 MeV/g / S(E). 67 MeV: the Crocker beam (physics-sources.md §1)."""
    return _MEV_G_PER_RAD / proton_stopping_power_si(energy_mev)


def cross_section_cm2(rad_per_event: float, energy_mev: float = 67.0) -> float:
    """Per-chip cross-section equivalent to ``rad_per_event`` at a proton energy: sigma = 1 / (R * fluence/rad)."""
    return 1.0 / (rad_per_event * proton_fluence_per_rad(energy_mev))


class RadiationConfig(ConfigModel):
    """Single-event rates (rad(Si) per event per chip; None disables a kind), scaling, latch-up and dose."""

    #: correctable single-bit upsets in HBM. Not published for the TPU (physics-sources.md §1: correctable counts "not
    #: reliably available"); derived from the UECC rate and the V100 HBM2 figure that 31.5 % of memory upsets are
    #: multi-bit (physics-sources.md §5, conf. L): 44 rad x 0.315 / 0.685 = 20 rad per SBU
    rad_per_seu: float | None = Field(20.0, gt=0)
    #: HBM uncorrectable ECC: ~1 per 44 rad per chip (physics-sources.md §1, TPU v6e, conf. M)
    rad_per_mbu: float | None = Field(44.0, gt=0)
    #: silent data corruption in core logic / SRAM: 1 per 14.4-20 rad per chip, "~1/17 rad" (physics-sources.md §1)
    rad_per_sdc: float | None = Field(17.0, gt=0)
    #: system SEFI (crash / hang): ~1 per 5 krad per chip (physics-sources.md §1, conf. M)
    rad_per_sefi: float | None = Field(5000.0, gt=0)
    #: single-event latch-up: not reported for the TPU (physics-sources.md §1). Zero SEL in >= 15 krad on one chip gives a
    #: 95 % upper limit of 3 / 15 krad = 1 per 5 krad; in orbit heavy ions dominate SEL, so chosen 10x below
    #: that bound: 1 per 50 krad per chip (a 4-chip board at 150 rad/yr: one SEL per ~80 years)
    rad_per_sel: float | None = Field(50000.0, gt=0)
    #: fraction of SEFIs that reboot the board by themselves (the rest hang until reset or power cycle);
    #: physics-sources.md §1 reports SEFIs as crashes without a split, so all hang by default
    sefi_reboot_fraction: float = Field(0.0, ge=0, le=1)
    #: multiplies every SEE rate (a solar particle event, a 1000x test campaign); faults multiply on top
    scale: float = Field(1.0, ge=0, le=1e9)
    #: the scale also multiplies the accumulated dose (true for a beam or an SPE; false keeps TID at orbit pace)
    scale_dose: bool = True
    #: "dose_rate": SEE rates follow the environment's dose_rate_rad_s (which already follows position: SAA,
    #: horns); "dose_rate_x_flux_factor": the dose rate is an orbit average and rad_flux_factor carries position
    rate_source: Literal["dose_rate", "dose_rate_x_flux_factor"] = "dose_rate"
    #: extra supply current of a latch-up at the board input. Xavier NX SEL surges ~2 A (physics-sources.md §5, conf. L)
    #: on a 15 W module; a latch-up shorting a data-centre chip's core supply through its regulator draws more than
    #: the board's full load (664 W / 12 V = 55 A by default): chosen 60 A. It must exceed the rail limiter's
    #: headroom (limit minus normal draw), or the limiter never sees the latch-up
    sel_current_a: float = Field(60.0, gt=0, le=10000)
    #: how long a latch-up may conduct before the chip is destroyed. SEL damage is thermal (metal voids,
    #: physics-sources.md §5); LPT-style protection cuts within ms. Chosen 5 s: an LCL that trips within one 1 s step
    #: saves the chip; a rail left on for several steps (limit above the latch current, no limiter) does not
    sel_damage_s: float = Field(5.0, gt=0, le=3600)
    #: HBM first irregularities at 2 krad(Si) cumulative (physics-sources.md §1, conf. H): the board turns "degraded"
    tid_degraded_krad: float = Field(2.0, gt=0)
    #: HBM UECC rate multiplier once degraded (no published figure; chosen: irregularities double the MBU rate)
    degraded_mbu_factor: float = Field(2.0, ge=1, le=1000)
    #: relative static-leakage growth per krad(Si) (no TPU figure; chosen: +2 %/krad, +30 % at the 15 krad the
    #: TPU survived without hard failure, physics-sources.md §1)
    leakage_per_krad: float = Field(0.02, ge=0, le=10)
    #: dose already accumulated at the start (ground tests, a satellite mid-mission)
    initial_dose_krad: float = Field(0.0, ge=0)
    #: 64-bit ECC words of HBM per chip: 32 GB (physics-sources.md §1, TPU v6e) / 8 B
    hbm_words_per_chip: int = Field(32 * 2**30 // 8, ge=1)
    #: patrol scrub interval (None: no scrubbing). A word with one upset that is hit again before the scrub
    #: rewrites it holds two bad bits: uncorrectable. Server DRAM patrol scrubbing covers memory in ~24 h (chosen)
    scrub_interval_s: float | None = Field(86400.0, gt=0)
    #: handled radiation events kept in truth() (unhandled ones are always kept)
    truth_events: int = Field(1000, ge=0, le=1_000_000)

    def rad_per_event(self) -> tuple[float | None, ...]:
        """Per-chip rad(Si) per event in KINDS order."""
        return (self.rad_per_seu, self.rad_per_mbu, self.rad_per_sdc, self.rad_per_sefi, self.rad_per_sel)


# -- the arrival and kind draws, once (the single board's RadiationSource and the fleet's AcceleratorArrays) --------
def arrivals(h0: float, h1: float, next_hazard: float, exponential: Callable[[], float]) -> tuple[list[float], float]:
    """The events whose thresholds the integrated intensity passes on its way from ``h0`` to ``h1`` in a step (hazard
    inversion: each threshold an exponential(1) draw after the last): their times as fractions of the step, and the
    next threshold."""
    out = []
    span = h1 - h0
    while next_hazard <= h1:
        out.append((next_hazard - h0) / span if span > 0 else 1.0)
        next_hazard += float(exponential())
    return out, next_hazard


def kind_cdf(weights: list[float]) -> list[float]:
    """The cumulative distribution of an event's kind (KINDS order) from the kinds' rates (events per rad)."""
    total = sum(weights)
    acc = 0.0
    cum = []
    for x in weights:
        acc += x
        cum.append(acc / total if total > 0 else 1.0)
    cum[-1] = 1.0
    return cum


def pick_kind(u: float, cdf: list[float]) -> int:
    """The kind (index into KINDS) a uniform draw ``u`` picks from :func:`kind_cdf`."""
    for i, c in enumerate(cdf):
        if u < c:
            return i
    return len(cdf) - 1


def draw_chip(rng: np.random.Generator, chips: int) -> int:
    """The chip an event strikes (no draw on a one-chip board)."""
    return int(rng.integers(chips)) if chips > 1 else 0


class RadiationSource:
    """SEE arrivals for a board of ``chips`` chips, and the accumulated dose.

    The board calls :meth:`exposure` once per step with the step's dose; arrivals are returned as fractions of
    the step (None on the common quiet step). ``hazard`` is the integrated intensity in expected events.
    """

    __slots__ = (
        "_cum",
                "_w",
        "cfg",
        "chips",
        "counts",
        "degrade_at_rad",
        "degraded",
        "dose_rad",
        "fault_scales",
        "hazard",
        "k_per_rad",
        "next_hazard",
        "rng",
        "scale",
    )

    def __init__(self, cfg: RadiationConfig, chips: int, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.chips = chips
        self.rng = rng
        self.fault_scales: list[float] = []
        self.scale = cfg.scale
        self.dose_rad = cfg.initial_dose_krad * 1e3
        self.degrade_at_rad = cfg.tid_degraded_krad * 1e3
        self.degraded = self.dose_rad >= self.degrade_at_rad
        self.hazard = 0.0
        self.next_hazard = float(rng.exponential())
        self.counts = dict.fromkeys(EVENT_KINDS, 0)
        self._weights()

    def _weights(self) -> None:
        w = [0.0 if r is None else self.chips / r for r in self.cfg.rad_per_event()]
        if self.degraded:
            w[1] *= self.cfg.degraded_mbu_factor
        self._w = w
        self.k_per_rad = sum(w)
        self._cum = kind_cdf(w)

    def rate_per_rad(self, kind: str) -> float:
        """Expected events of ``kind`` per rad(Si) of (scaled) dose for the whole board, as configured now."""
        return self._w[KINDS.index(kind)]

    def set_fault_scales(self, factors: list[float]) -> None:
        self.fault_scales = list(factors)
        s = self.cfg.scale
        for f in factors:
            s *= f
        self.scale = s

    def add_dose(self, rad: float) -> bool:
        """Accumulate dose; True when this crosses the degradation threshold."""
        self.dose_rad += rad
        if not self.degraded and self.dose_rad >= self.degrade_at_rad:
            self.degraded = True
            self._weights()
            self.counts["tid"] += 1
            return True
        return False

    def exposure(self, rad_eff: float) -> list[float] | None:
        """Advance the intensity by ``rad_eff`` (scaled dose while powered); arrival fractions within the step."""
        h0 = self.hazard
        h1 = h0 + rad_eff * self.k_per_rad
        self.hazard = h1
        if h1 < self.next_hazard:
            return None
        out, self.next_hazard = arrivals(h0, h1, self.next_hazard, self.rng.exponential)
        return out

    def draw_kind(self) -> str:
        kind = KINDS[pick_kind(float(self.rng.random()), self._cum)]
        self.counts[kind] += 1
        return kind

    def draw_chip(self) -> int:
        return draw_chip(self.rng, self.chips)


class EccMemory:
    """SECDED-protected HBM: a single upset per word is corrected; a second one in the same word before a scrub
    (or a direct multi-bit upset) is uncorrectable. Only words with a pending upset are stored."""

    __slots__ = (
        "accumulated_mbu",
        "corrected",
        "next_scrub_ns",
        "pending",
        "scrub_ns",
        "scrubbed",
        "uncorrectable",
        "words",
    )

    def __init__(self, chips: int, words: int, scrub_interval_s: float | None) -> None:
        self.words = words
        self.pending: list[set[int]] = [set() for _ in range(chips)]
        self.scrub_ns = None if scrub_interval_s is None else round(scrub_interval_s * 1e9)
        #: 2**62: never (an int compare per step; no None check on the hot path)
        self.next_scrub_ns = self.scrub_ns if self.scrub_ns is not None else 1 << 62
        self.corrected = [0] * chips
        self.uncorrectable = [0] * chips
        self.scrubbed = 0
        self.accumulated_mbu = 0

    def upset(self, chip: int, word: int) -> bool:
        """A single-bit upset in ``word``; True if the word now holds two bad bits (uncorrectable)."""
        p = self.pending[chip]
        if word in p:
            p.discard(word)
            self.uncorrectable[chip] += 1
            self.accumulated_mbu += 1
            return True
        p.add(word)
        self.corrected[chip] += 1
        return False

    def multi(self, chip: int) -> None:
        self.uncorrectable[chip] += 1

    def scrub(self, t_ns: int) -> None:
        """Patrol scrub: every pending single-bit error is rewritten (corrected in place)."""
        for p in self.pending:
            self.scrubbed += len(p)
            p.clear()
        assert self.scrub_ns is not None
        while self.next_scrub_ns <= t_ns:
            self.next_scrub_ns += self.scrub_ns

    def power_loss(self) -> None:
        """HBM contents are gone when unpowered: pending upsets with them."""
        for p in self.pending:
            p.clear()

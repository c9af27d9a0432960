"""What the board can measure: thermistors, INA-class rail monitors, a battery gauge, a sun sensor; noise,
quantisation, offsets, sample rate, and faults (stuck, drift, open circuit, noisy) injected at run time.

A :class:`SensorBank` holds many channels as numpy arrays and reads them all in one vectorised call, lazily:
the satellite only reads when a telemetry topic is sampled. A channel takes a new sample when its sample
period has rolled over since its last one and otherwise holds the last reading (a zero-order hold), so the
board never sees more than ``sample_hz`` distinct values per second. Draws come from one seeded numpy
Generator per bank, so a run with the same seed and read schedule is identical.

A reading is

    q(x) = clip(lo + lsb * round((x + offset + drift * (t - t0) + sigma * k * z - lo) / lsb), lo, hi)

with z ~ N(0, 1), k the "noisy" factor; an open circuit reads ``lo`` or ``hi`` (the ADC rail), a stuck
channel repeats the reading it had when it stuck.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from emulator.errors import CommandError, suggest
from emulator.validation import ConfigModel

_Strict = ConfigModel  # this module's tables


class ChannelConfig(_Strict):
    """One kind of channel. Ranges left at None are derived from the satellite (rail limits, pack size)."""

    #: ADC resolution: the INA219 shunt/bus ADCs and most MCU ADCs are 12-bit (issue: "like a 12-bit ADC")
    bits: int = Field(12, ge=1, le=24)
    #: least significant bit in the channel's unit; None: (range_max - range_min) / 2**bits
    lsb: float | None = Field(None, gt=0)
    range_min: float | None = None
    range_max: float | None = None
    #: white noise, in LSB (1 LSB rms is a typical INA-class figure)
    noise_lsb: float = Field(1.0, ge=0, le=1e6)
    #: fixed offset, in LSB
    offset_lsb: float = Field(0.0, ge=-1e6, le=1e6)
    sample_hz: float = Field(1.0, gt=0, le=1e6)
    #: an open circuit pins the reading to this end of the range (ADC rail)
    open_reads: Literal["min", "max"] = "min"

    @model_validator(mode="after")
    def _range(self) -> ChannelConfig:
        if self.range_min is not None and self.range_max is not None and not self.range_min < self.range_max:
            raise ValueError(f"range_min ({self.range_min}) must be below range_max ({self.range_max})")
        return self


class SensorsConfig(_Strict):
    #: nodes with a thermistor; None: every thermal node
    thermistor_nodes: list[str] | None = None
    #: NTC thermistor in a divider: -55..125 °C is the usual NTC rating; an open NTC with a pull-up reads
    #: full scale, i.e. the cold end
    thermistor: ChannelConfig = Field(default_factory=lambda: ChannelConfig(range_min=-55.0, range_max=125.0,
                                                                            open_reads="min"))
    #: rail output current (INA219 class); range None: 0 .. 2 x the rail's current limit
    rail_current: ChannelConfig = Field(default_factory=ChannelConfig)
    #: rail output voltage; range None: 0 .. 1.5 x nominal (regulated) or 1.2 x pack max (unregulated)
    rail_voltage: ChannelConfig = Field(default_factory=ChannelConfig)
    #: battery/bus voltage; range None: 0 .. 1.2 x cells_series x 4.2 V
    battery_voltage: ChannelConfig = Field(default_factory=ChannelConfig)
    #: battery current, signed (charging > 0); range None: +-1.5 x the discharge limit
    battery_current: ChannelConfig = Field(default_factory=ChannelConfig)
    #: array power; range None: 0 .. 1.2 x the arrays' power at 1361 W/m² (physics-sources.md §3 solar constant)
    array_power: ChannelConfig = Field(default_factory=ChannelConfig)
    #: state-of-charge estimate of the gauge, 0..1; 10-bit (0.1 %) and ~1 % noise like a fuel-gauge IC
    soc: ChannelConfig = Field(default_factory=lambda: ChannelConfig(bits=10, range_min=0.0, range_max=1.0,
                                                                     noise_lsb=5.0))
    #: gauge coulomb-counting error: current-sense offset per Ah of capacity (A/Ah); the gauge re-zeroes
    #: when the pack reaches end of charge ("full")
    gauge_offset_a_per_ah: float = Field(0.001, ge=-1, le=1)
    #: coarse sun sensor (photodiode on a sun-facing side), W/m²
    sun: ChannelConfig = Field(default_factory=lambda: ChannelConfig(range_min=0.0, range_max=1500.0))
    #: the board's eclipse flag: sun reading below this
    eclipse_threshold_w_m2: float = Field(200.0, gt=0, le=1500)


class ChannelSpec:
    """A resolved channel: name, unit and the numbers of its kind."""

    __slots__ = ("hi", "lo", "lsb", "name", "offset", "open_reads", "period_ns", "sigma", "unit")

    def __init__(self, name: str, unit: str, cfg: ChannelConfig, lo: float, hi: float) -> None:
        lo = cfg.range_min if cfg.range_min is not None else lo
        hi = cfg.range_max if cfg.range_max is not None else hi
        if not lo < hi:
            raise ValueError(f"sensor {name!r}: empty range {lo}..{hi}")
        self.name = name
        self.unit = unit
        self.lo = float(lo)
        self.hi = float(hi)
        self.lsb = cfg.lsb if cfg.lsb is not None else (hi - lo) / 2 ** cfg.bits
        self.sigma = cfg.noise_lsb * self.lsb
        self.offset = cfg.offset_lsb * self.lsb
        self.period_ns = max(1, round(1e9 / cfg.sample_hz))
        self.open_reads = cfg.open_reads


FAULT_KINDS = ("stuck", "drift", "open", "noisy")
NOISE_BLOCK = 256  # reads' worth of normal draws fetched from the Generator at once
#: 1.5 * 2**52: for |q| < 2**51, ``q + RINT - RINT`` is q rounded to the nearest integer, ties to even (IEEE
#: round-to-nearest), i.e. ``float(round(q))`` without a call; NaN and +-inf pass through
RINT = 6755399441055744.0
#: a bank whose range is at most this many LSB rounds with RINT: beyond 2**51 LSB the reading is clipped anyway
RINT_MAX_CODES = 2.0 ** 50
#: read_many reads one row at a time below this many values (rows x channels): numpy's per-call cost (~20 us a
#: batch) exceeds the arithmetic (measured: 8 rows of the 15-channel EPS bank faster vectorised, of the 7 thermistors
#: or the 1-channel sun sensor faster one at a time)
READ_MANY_MIN_VALUES = 96


class SensorBank:
    """Channels read together (one telemetry topic). Deterministic given the Generator and read times.

    Plain Python floats per channel: a bank has 1 to ~20 channels and is read once per telemetry sample, where
    numpy's per-call overhead would cost more than the arithmetic (the same IEEE operations in the same order,
    so the readings are those of the vectorised formula bit for bit; ``round`` is half-to-even like ``rint``).
    """

    def __init__(self, specs: list[ChannelSpec], rng: np.random.Generator) -> None:
        self.specs = specs
        self.names = [s.name for s in specs]
        self.index = {s.name: i for i, s in enumerate(specs)}
        self.n = n = len(specs)
        self.rng = rng
        self.lo = [s.lo for s in specs]
        self.hi = [s.hi for s in specs]
        self.lsb = [s.lsb for s in specs]
        self.sigma = [s.sigma for s in specs]
        self.offset = [s.offset for s in specs]
        self.period_ns = [s.period_ns for s in specs]
        self.open_val = [s.lo if s.open_reads == "min" else s.hi for s in specs]
        self.last_k = [-1] * n
        self.held = [0.0] * n
        # faults
        self.stuck = [False] * n
        self.stuck_val = [0.0] * n
        self.open = [False] * n
        self.noise_factor = [1.0] * n
        self.drift_per_s = [0.0] * n
        self.drift_t0_ns = [0] * n
        self.faults: dict[str, set[str]] = {}
        # the per-read fast path: while every channel shares one sample period and took its last sample at the
        # same index k, the hold check is one integer compare
        periods = set(self.period_ns)
        self._period = periods.pop() if len(periods) == 1 else 0
        self._synced = self._period > 0
        self._k = -1
        self._faulty = False
        self._consts = list(zip(self.offset, self.sigma, self.lo, self.lsb, self.hi, strict=True))
        self._rint = all((s.hi - s.lo) / s.lsb <= RINT_MAX_CODES for s in specs)
        # normal draws fetched a block at a time: the same stream as one draw of n per read (numpy fills in order)
        self._z: list[list[float]] = []
        self._zarr = np.empty((0, n))  # the block of ``_z`` as an array (read_many takes rows of it)
        self._zi = 0
        self._np_consts = [np.array(c, dtype=float) for c in (self.offset, self.sigma, self.lo, self.lsb, self.hi)]

    def _normals(self) -> list[float]:
        i = self._zi
        if i >= len(self._z):
            self._new_block()
            i = 0
        self._zi = i + 1
        return self._z[i]

    def _new_block(self) -> None:
        self._zarr = self.rng.standard_normal((NOISE_BLOCK, self.n))
        self._z = self._zarr.tolist()

    def _normal_rows(self, rows: int) -> np.ndarray:
        """The next ``rows`` reads' normal draws as one array: the rows ``rows`` calls of :meth:`_normals` give."""
        parts = []
        while rows:
            i = self._zi
            if i >= len(self._z):
                self._new_block()
                i = 0
            take = min(rows, len(self._z) - i)
            parts.append(self._zarr[i:i + take])
            self._zi = i + take
            rows -= take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read(self, t_ns: int, truth: Sequence[float]) -> list[float]:
        """Readings at ``t_ns`` of channels whose true values are ``truth`` (held between samples). The list
        returned is the bank's: copy it to keep it past the next read."""
        if self._synced:
            k = t_ns // self._period
            if k == self._k:
                return self.held
            self._k = k
            new = None
        else:
            ks = [t_ns // p for p in self.period_ns]
            new = [a != b for a, b in zip(ks, self.last_k, strict=True)]
            if not any(new):
                return self.held
        z = self._normals()
        if self._faulty:
            v = self._read_faulty(t_ns, truth, z)
        elif self._rint:  # the same readings as round() below, a fifth cheaper; NaN stays NaN, +-inf pins
            v = [hi if (q := lo + lsb * ((x + off + sig * zz - lo) / lsb + RINT - RINT)) > hi
                 else lo if q < lo else q  # noqa: FURB136 (per read: no builtin call)
                 for x, zz, (off, sig, lo, lsb, hi) in zip(truth, z, self._consts, strict=True)]
        else:
            try:
                v = [hi if (q := lo + lsb * round((x + off + sig * zz - lo) / lsb)) > hi
                     else lo if q < lo else q  # noqa: FURB136 (per read: no builtin call)
                     for x, zz, (off, sig, lo, lsb, hi) in zip(truth, z, self._consts, strict=True)]
            except (ValueError, OverflowError):  # a NaN or infinite truth: the careful path
                v = self._read_faulty(t_ns, truth, z)
        if new is None:
            self.held = v
        else:
            self.held = [a if b else c for a, b, c in zip(v, new, self.held, strict=True)]
            self.last_k = ks
            if self._period and ks.count(ks[0]) == len(ks):
                self._synced = True
                self._k = ks[0]
        return self.held

    def read_many(self, ts_ns: Sequence[int], truths: Sequence[Sequence[float]]) -> list[list[float]]:
        """:meth:`read` at each ``ts_ns[j]`` of ``truths[j]`` in order (the same draws, the same readings, the same
        state after), for a batch of steps sampled together. The common case (every channel on one sample period,
        no fault) reads the new samples of the batch in one vectorised call: the same IEEE operations in the same
        order as :meth:`read`, so the readings are bit for bit those of one read at a time."""
        values, array = self.read_many_array(ts_ns, truths)
        return array.tolist() if values is None else values

    def read_many_array(self, ts_ns: Sequence[int], truths: Sequence[Sequence[float]]
                        ) -> tuple[list[list[float]] | None, np.ndarray | None]:
        """:meth:`read_many` as (readings, None), or as (None, the readings as one float array, a row per read) where
        the vectorised call gave every row a new sample (its rows' lists are not built: a caller that writes the
        array seldom needs them)."""
        m = len(ts_ns)
        if m * self.n < READ_MANY_MIN_VALUES or not self._synced or self._faulty or not self._rint:
            return [self.read(t, x) for t, x in zip(ts_ns, truths, strict=True)], None
        period, k_prev = self._period, self._k
        fresh = []  # the rows that take a new sample (the others hold the one before)
        for j, t in enumerate(ts_ns):
            k = t // period
            if k != k_prev:
                fresh.append(j)
                k_prev = k
        if not fresh:
            return [self.held] * m, None
        off, sig, lo, lsb, hi = self._np_consts
        x = np.array([truths[j] for j in fresh], dtype=float)
        q = lo + lsb * ((x + off + sig * self._normal_rows(len(fresh)) - lo) / lsb + RINT - RINT)
        readings = np.where(q > hi, hi, np.where(q < lo, lo, q))
        if len(fresh) == m:  # every row a new sample (the usual case: telemetry at the sensors' rate)
            self.held = readings[-1].tolist()
            self._k = k_prev
            return None, readings
        values = readings.tolist()
        out = []
        held = self.held
        nxt = fresh[0]
        f = 0
        for j in range(m):
            if j == nxt:
                held = values[f]
                f += 1
                nxt = fresh[f] if f < len(fresh) else -1
            out.append(held)
        self.held = held
        self._k = k_prev
        return out, None

    def _read_faulty(self, t_ns: int, truth: Sequence[float], z: list[float]) -> list[float]:
        """One channel at a time: faults, drift, and non-finite truths (NaN stays NaN, +-inf pins to the range)."""
        out = []
        for i, (off, sig, lo, lsb, hi) in enumerate(self._consts):
            v = truth[i] + off + sig * self.noise_factor[i] * z[i]
            rate = self.drift_per_s[i]
            if rate:
                v = v + rate * ((t_ns - self.drift_t0_ns[i]) * 1e-9)
            q = (v - lo) / lsb
            v = lo + lsb * (round(q) if q - q == 0.0 else q)  # q - q: NaN for NaN and +-inf
            v = hi if v > hi else lo if v < lo else v  # noqa: FURB136 (NaN stays NaN)
            if self.open[i]:
                v = self.open_val[i]
            if self.stuck[i]:
                v = self.stuck_val[i]
            out.append(v)
        return out

    def _touch(self, i: int) -> None:
        """Channel ``i`` changed (a fault): it takes a fresh sample at the next read, the others hold."""
        if self._synced:
            self.last_k = [self._k] * self.n
            self._synced = False
        self.last_k[i] = -1
        self._faulty = (any(self.stuck) or any(self.open) or any(self.drift_per_s)
                        or any(f != 1.0 for f in self.noise_factor))

    def channel(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            raise CommandError(f"unknown sensor channel {name!r}{suggest(name, self.names)}",
                               field="payload.params.channel", valid=self.names)
        return i

    def inject(self, name: str, kind: str, *, t_ns: int = 0, rate_per_h: float = 0.0, factor: float = 1.0) -> None:
        i = self.channel(name)
        if kind == "stuck":
            self.stuck_val[i] = self.held[i]
            self.stuck[i] = True
        elif kind == "drift":
            self.drift_per_s[i] = rate_per_h / 3600.0
            self.drift_t0_ns[i] = t_ns
        elif kind == "open":
            self.open[i] = True
        elif kind == "noisy":
            self.noise_factor[i] = factor
        else:
            raise CommandError(f"unknown sensor fault {kind!r}", field="name", valid=list(FAULT_KINDS))
        self.faults.setdefault(name, set()).add(kind)
        self._touch(i)  # the fault shows at the next read

    def clear(self, name: str, kind: str) -> None:
        i = self.channel(name)
        if kind == "stuck":
            self.stuck[i] = False
        elif kind == "drift":
            self.drift_per_s[i] = 0.0
        elif kind == "open":
            self.open[i] = False
        elif kind == "noisy":
            self.noise_factor[i] = 1.0
        self.faults.get(name, set()).discard(kind)
        self._touch(i)

    def active_faults(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self.faults.items() if v}

"""Sensors: quantisation, noise statistics, sample-and-hold, determinism, faults (stuck, drift, open, noisy)."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import CommandError
from emulator.models import sensors
from emulator.models.sensors import FAULT_KINDS, ChannelConfig, ChannelSpec, SensorBank

NS = 1_000_000_000
NOISE_STD_REL_TOL = 0.1   # sample std of 4000 draws is within ~2.2 % (1 sigma); 10 % is > 4 sigma
DRIFT_TOL_LSB = 6.0       # drift readback: quantisation + 1 LSB noise, 4000-sample mean


def bank(seed: int = 1, **cfg) -> SensorBank:
    specs = [ChannelSpec("v", "V", ChannelConfig(**cfg), 0.0, 32.768),  # 12-bit over 32.768 V: 8 mV LSB
             ChannelSpec("t", "degC", ChannelConfig(range_min=-55, range_max=125, open_reads="min", **cfg),
                         0, 1)]
    return SensorBank(specs, np.random.default_rng(seed))


@given(x=st.floats(-10.0, 40.0))
@settings(max_examples=200, deadline=None)
def test_noise_free_reading_is_the_nearest_code_clipped_to_range(x: float) -> None:
    b = bank(noise_lsb=0.0)
    r = b.read(0, np.array([x, 20.0]))[0]
    lsb = 32.768 / 4096
    assert r == pytest.approx(round(r / lsb) * lsb, abs=1e-9)  # on the ADC grid
    assert 0.0 <= r <= 32.768
    if 0.0 <= x <= 32.768:
        assert abs(r - x) <= lsb / 2 + 1e-12


def test_noise_standard_deviation_in_lsb() -> None:
    b = bank(noise_lsb=5.0, sample_hz=1.0)
    lsb = 32.768 / 4096
    vals = np.array([b.read(k * NS, np.array([12.0, 20.0]))[0] for k in range(4000)])
    assert vals.std() == pytest.approx(5.0 * lsb, rel=NOISE_STD_REL_TOL)
    assert vals.mean() == pytest.approx(12.0, abs=lsb)


def test_offset_in_lsb() -> None:
    b = bank(noise_lsb=0.0, offset_lsb=3.0)
    assert b.read(0, np.array([12.0, 20.0]))[0] == pytest.approx(12.0 + 3 * 32.768 / 4096, abs=32.768 / 8192)


def test_sample_and_hold_at_the_sample_rate() -> None:
    b = bank(noise_lsb=3.0, sample_hz=1.0)
    first = b.read(0, np.array([12.0, 20.0])).copy()
    for k in range(1, 10):  # 0.1 .. 0.9 s: same sample held, even if the truth moves
        assert np.array_equal(b.read(k * NS // 10, np.array([15.0, 30.0])), first)
    assert b.read(NS, np.array([15.0, 30.0]))[0] == pytest.approx(15.0, abs=0.1)


def test_same_seed_same_readings_other_seed_differs() -> None:
    def run(seed: int) -> list[float]:
        b = bank(seed, noise_lsb=2.0)
        return [float(b.read(k * NS, np.array([5.0, 20.0]))[0]) for k in range(50)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_faults_stuck_drift_open_noisy_and_clear() -> None:
    b = bank(noise_lsb=1.0)
    lsb = 32.768 / 4096
    truth = np.array([12.0, 20.0])
    b.read(0, truth)
    # stuck: repeats the last reading whatever the truth does
    b.inject("v", "stuck")
    held = b.held[0]
    for k in range(1, 20):
        assert b.read(k * NS, np.array([3.0 + k, 20.0]))[0] == held
    b.clear("v", "stuck")
    assert b.read(20 * NS, truth)[0] == pytest.approx(12.0, abs=4 * lsb)
    # drift: +0.5 V per hour from injection
    b.inject("v", "drift", t_ns=100 * NS, rate_per_h=0.5)
    two_h = [b.read((100 + 7200) * NS + k * NS, truth)[0] for k in range(4000)]
    assert np.mean(two_h) == pytest.approx(12.0 + 1.0 + 0.5 * 2000 / 3600, abs=DRIFT_TOL_LSB * lsb)
    b.clear("v", "drift")
    # open: thermistor reads the cold rail of its range
    b.inject("t", "open")
    assert b.read(10_000 * NS, truth)[1] == -55.0
    b.clear("t", "open")
    assert b.read(10_001 * NS, truth)[1] == pytest.approx(20.0, abs=0.5)
    # noisy: std grows by the factor
    b.inject("v", "noisy", factor=10.0)
    noisy = np.array([b.read((20_000 + k) * NS, truth)[0] for k in range(2000)])
    assert noisy.std() == pytest.approx(10.0 * lsb, rel=NOISE_STD_REL_TOL)
    assert b.active_faults() == {"v": ["noisy"]}
    with pytest.raises(CommandError) as exc:
        b.inject("vv", "stuck")
    assert exc.value.valid == ["v", "t"]


def test_open_can_read_the_top_rail() -> None:
    spec = ChannelSpec("i", "A", ChannelConfig(open_reads="max"), 0.0, 8.0)
    b = SensorBank([spec], np.random.default_rng(0))
    b.inject("i", "open")
    assert b.read(0, np.array([1.0]))[0] == 8.0


class ReferenceBank:
    """The sensor model written plainly (per channel, no fast paths, one draw of n normals per new sample):
    the optimised :class:`SensorBank` must read exactly the same values."""

    def __init__(self, specs: list[ChannelSpec], rng: np.random.Generator) -> None:
        self.specs, self.rng, self.n = specs, rng, len(specs)
        self.last_k = [-1] * self.n
        self.held = [0.0] * self.n
        self.stuck: dict[int, float] = {}
        self.open: set[int] = set()
        self.factor = [1.0] * self.n
        self.drift: dict[int, tuple[float, int]] = {}

    def read(self, t_ns: int, truth: list[float]) -> list[float]:
        ks = [t_ns // s.period_ns for s in self.specs]
        if ks == self.last_k:
            return list(self.held)
        z = self.rng.standard_normal(self.n)
        for i, s in enumerate(self.specs):
            if ks[i] == self.last_k[i]:
                continue
            v = truth[i] + s.offset + s.sigma * self.factor[i] * z[i]
            if i in self.drift:
                rate, t0 = self.drift[i]
                v = v + rate * ((t_ns - t0) * 1e-9)
            v = s.lo + s.lsb * round((v - s.lo) / s.lsb)
            v = min(max(v, s.lo), s.hi)
            if i in self.open:
                v = s.lo if s.open_reads == "min" else s.hi
            if i in self.stuck:
                v = self.stuck[i]
            self.held[i] = v
        self.last_k = ks
        return list(self.held)

    def inject(self, i: int, kind: str, t_ns: int) -> None:
        if kind == "stuck":
            self.stuck[i] = self.held[i]
        elif kind == "drift":
            self.drift[i] = (3.0 / 3600.0, t_ns)
        elif kind == "open":
            self.open.add(i)
        else:
            self.factor[i] = 4.0
        self.last_k[i] = -1

    def clear(self, i: int, kind: str) -> None:
        {"stuck": lambda: self.stuck.pop(i, None), "drift": lambda: self.drift.pop(i, None),
         "open": lambda: self.open.discard(i), "noisy": lambda: self.factor.__setitem__(i, 1.0)}[kind]()
        self.last_k[i] = -1


def test_a_fault_resamples_only_its_channel_within_the_sample_period() -> None:
    specs = [ChannelSpec(f"c{i}", "V", ChannelConfig(noise_lsb=2.0), -5.0, 20.0) for i in range(3)]
    fast, plain = SensorBank(specs, np.random.default_rng(3)), ReferenceBank(specs, np.random.default_rng(3))
    truth = [3.0, 4.0, 5.0]
    before = list(fast.read(NS // 10, truth))
    assert before == plain.read(NS // 10, truth)
    fast.inject("c1", "noisy", t_ns=NS // 5, factor=4.0)
    plain.inject(1, "noisy", NS // 5)
    after = list(fast.read(NS // 2, truth))  # same 1 Hz sample period
    assert after == plain.read(NS // 2, truth)
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]


@given(rates=st.lists(st.sampled_from([1.0, 1.0, 1.0, 2.0, 0.5]), min_size=1, max_size=5),
       ops=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["read", "read", "read", "inject", "clear"]),
                              st.sampled_from(list(FAULT_KINDS)), st.integers(1, 700)), max_size=60),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_bank_reads_exactly_what_the_plain_model_reads(rates: list[float], ops: list, seed: int) -> None:
    specs = [ChannelSpec(f"c{i}", "V", ChannelConfig(sample_hz=hz, noise_lsb=2.0, offset_lsb=1.5), -5.0, 20.0)
             for i, hz in enumerate(rates)]
    fast, plain = SensorBank(specs, np.random.default_rng(seed)), ReferenceBank(specs, np.random.default_rng(seed))
    t_ns = 0
    for ch, op, kind, dt_ms in ops:
        t_ns += dt_ms * 1_000_000
        i = ch % len(specs)
        if op == "read":
            truth = [3.0 + 0.37 * j + t_ns * 1e-10 for j in range(len(specs))]
            assert fast.read(t_ns, truth) == plain.read(t_ns, truth)
        elif op == "inject":
            fast.inject(f"c{i}", kind, t_ns=t_ns, rate_per_h=3.0, factor=4.0)
            plain.inject(i, kind, t_ns)
        else:
            fast.clear(f"c{i}", kind)
            plain.clear(i, kind)


def test_non_finite_truth_reads_nan_or_the_range_end_and_never_raises() -> None:
    b = bank(noise_lsb=1.0)
    nan, inf = float("nan"), float("inf")
    v, t = b.read(0, [nan, inf])
    assert math.isnan(v) and t == 125.0  # NaN stays NaN (the board sees a bad reading), +inf pins to the top
    v, t = b.read(NS, [-inf, 20.0])
    assert v == 0.0 and t == pytest.approx(20.0, abs=0.5)


def _rounded_reading(x: float, lo: float, lsb: float, hi: float) -> float:
    """The noise-free reading written with round() (what SensorBank's float trick must equal, bit for bit); an
    overflow to +-inf pins to the range as a non-finite truth does."""
    q = (x + 0.0 + 0.0 - lo) / lsb
    q = lo + lsb * (round(q) if q - q == 0.0 else q)
    return hi if q > hi else lo if q < lo else q  # noqa: FURB136 (as SensorBank writes it)


@given(codes=st.one_of(st.integers(-2**62, 2**62), *[st.integers(2**e - 9, 2**e + 9) for e in (12, 50, 51, 52, 53)]),
       frac=st.sampled_from([0.0, 0.25, 0.5, -0.5, 0.5000001, 0.75]), bits=st.integers(1, 24),
       lo=st.one_of(st.sampled_from([0.0, -55.0]), st.floats(-1e6, 1e6)),
       span=st.one_of(st.sampled_from([1.0, 32.768]), st.floats(1e-6, 1e9)),
       lsb_log2=st.sampled_from([None, 12, 49, 50, 51, 52, 53, 55, 60, 1000]),
       other=st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=1000, deadline=None)
def test_rounding_is_round_half_even_bit_for_bit(codes: int, frac: float, bits: int, lo: float, span: float,
                                                 lsb_log2: int | None, other: float) -> None:
    """Readings on, between and exactly halfway between codes, far outside the range, with ranges of 2 to 2**1000
    codes (an explicit ``lsb``): the fast rounding is round() bit for bit, sign of zero included."""
    hi = lo + span
    if not lo < hi:
        return
    cfg = ChannelConfig(bits=bits, noise_lsb=0.0, lsb=None if lsb_log2 is None else span / 2.0 ** lsb_log2,
                        range_min=lo, range_max=hi)
    spec = ChannelSpec("c", "V", cfg, lo, hi)
    b = SensorBank([spec, ChannelSpec("d", "V", cfg, lo, hi)], np.random.default_rng(0))
    x = lo + spec.lsb * (codes + frac)
    got = b.read(0, [x, other])
    assert got == [_rounded_reading(x, lo, spec.lsb, hi), _rounded_reading(other, lo, spec.lsb, hi)]
    assert [math.copysign(1.0, g) for g in got] == [math.copysign(1.0, _rounded_reading(v, lo, spec.lsb, hi))
                                                     for v in (x, other)]


def _bits(rows: list[list[float]]) -> bytes:
    return np.array(rows, dtype=float).tobytes()  # bit for bit: NaN payloads and -0.0 included


@given(data=st.data(), n_rows=st.integers(0, 40), hz=st.sampled_from([(1.0, 1.0), (2.0, 2.0), (0.5, 0.5),
                                                                       (1.0, 4.0)]),
       fault=st.sampled_from([None, "stuck", "drift", "open", "noisy"]), noise=st.sampled_from([0.0, 1.0, 300.0]))
@settings(max_examples=150, deadline=None)
def test_reading_many_rows_at_once_is_reading_them_one_at_a_time(data, n_rows, hz, fault, noise) -> None:
    """read_many (a batch's samples read together, vectorised when it can) gives the readings, the draws and the
    state after of one read per row, bit for bit: held rows, channels on different sample periods, faults,
    NaN and infinite truths, values beyond the range."""
    def make() -> SensorBank:
        specs = [ChannelSpec("v", "V", ChannelConfig(noise_lsb=noise, sample_hz=hz[0]), 0.0, 32.768),
                 ChannelSpec("t", "degC", ChannelConfig(range_min=-55, range_max=125, noise_lsb=noise,
                                                        sample_hz=hz[1]), 0, 1),
                 ChannelSpec("i", "A", ChannelConfig(bits=16, offset_lsb=3.0, noise_lsb=noise, sample_hz=hz[0]),
                             -2.0, 2.0)]
        b = SensorBank(specs, np.random.default_rng(7))
        if fault is not None:
            b.inject("t", fault, t_ns=0, rate_per_h=36.0, factor=5.0)
        return b

    value = st.one_of(st.floats(-100.0, 200.0), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e300]))
    steps = data.draw(st.lists(st.sampled_from([0, NS // 4, NS // 2, NS, 3 * NS]), min_size=n_rows,
                               max_size=n_rows))
    ts = list(np.cumsum([NS, *steps])[1:].tolist()) if steps else []
    truths = [data.draw(st.lists(value, min_size=3, max_size=3)) for _ in ts]
    one, many = make(), make()
    one.read(0, [1.0, 20.0, 0.1])  # both start from a reading (what is held)
    many.read(0, [1.0, 20.0, 0.1])
    expected = [list(one.read(t, x)) for t, x in zip(ts, truths, strict=True)]
    with mock.patch.object(sensors, "READ_MANY_MIN_VALUES", 1):  # vectorised whenever it can be
        got = many.read_many(ts, truths)
    assert _bits(got) == _bits(expected)
    after = ts[-1] + NS if ts else NS
    assert _bits([many.read(after, [3.0, 4.0, 0.5])]) == _bits([one.read(after, [3.0, 4.0, 0.5])])  # same state

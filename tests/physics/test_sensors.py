"""Sensors: quantisation, noise statistics, sample-and-hold, determinism, faults (stuck, drift, open, noisy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import CommandError
from emulator.models.sensors import ChannelConfig, ChannelSpec, SensorBank

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

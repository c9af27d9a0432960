"""Inter-satellite links: line of sight against the analytic chord geometry, range, the 1/d^2 link budget, and
transfer times (one message, ring all-reduce) against their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from emulator.errors import CommandError
from emulator.models.isl import (
    SPEED_OF_LIGHT_KM_S,
    IslConfig,
    IslNetwork,
    line_of_sight,
    link_rate_gbps,
    pair_geometry,
    ring_order,
)
from emulator.models.orbit import R_EARTH_KM

#: geometry in km: rounding of 7000 km vectors
RANGE_TOL_KM = 1e-9
#: the occlusion edge found by the code vs the analytic chord angle (rad)
EDGE_TOL_RAD = 1e-9
TIME_REL_TOL = 1e-12


def on_circle(r_km: float, theta_rad: np.ndarray) -> np.ndarray:
    """Points on a circle of radius r in an inclined plane (the test should not depend on the plane)."""
    th = np.atleast_1d(theta_rad)
    x, y = r_km * np.cos(th), r_km * np.sin(th)
    tilt = math.radians(37.0)
    return np.stack([x, y * math.cos(tilt), y * math.sin(tilt)], axis=-1)


@pytest.mark.parametrize("alt_km,graze_km", [(650.0, 100.0), (550.0, 0.0), (2000.0, 300.0)])
def test_occlusion_edge_matches_the_chord_geometry(alt_km: float, graze_km: float) -> None:
    """Two satellites at radius r, separated by angle theta: the chord's closest approach to the centre is
    r cos(theta/2), so they see each other iff theta <= 2 acos((R_E + h_g) / r)."""
    r = R_EARTH_KM + alt_km
    edge = 2.0 * math.acos((R_EARTH_KM + graze_km) / r)
    a = on_circle(r, np.array([0.3]))
    thetas = np.array([edge - 1e-6, edge - EDGE_TOL_RAD * 10, edge + EDGE_TOL_RAD * 10, edge + 1e-6, math.pi])
    b = on_circle(r, 0.3 + thetas)
    los = line_of_sight(np.repeat(a, len(thetas), axis=0), b, graze_km)
    assert los.tolist() == [True, True, False, False, False]
    # symmetric in its ends
    assert (line_of_sight(b, np.repeat(a, len(thetas), axis=0), graze_km) == los).all()


def test_segment_not_line_decides_occlusion() -> None:
    """Two satellites on the same radial line: the infinite line passes through the Earth, the segment does not."""
    a = np.array([R_EARTH_KM + 500.0, 0.0, 0.0])
    b = np.array([R_EARTH_KM + 900.0, 0.0, 0.0])
    assert bool(line_of_sight(a, b, 100.0))
    assert not bool(line_of_sight(a, -b, 100.0))  # across the Earth


def test_pair_geometry_ranges_and_diagonal() -> None:
    rng = np.random.default_rng(3)
    r = on_circle(R_EARTH_KM + 650.0, rng.uniform(0, 2 * math.pi, 12))
    d, los = pair_geometry(r, 100.0)
    manual = np.array([[np.linalg.norm(p - q) for q in r] for p in r])
    np.testing.assert_allclose(d, manual, atol=RANGE_TOL_KM)
    assert (np.diag(d) == 0).all() and np.diag(los).all()
    assert (los == los.T).all()


def test_link_budget_full_rate_then_inverse_square_then_outage() -> None:
    cfg = IslConfig()  # 1 x 800 Gbps (physics-sources.md §1 demo), full rate to 2 km, 100 km max, 1 Gbps floor
    d = np.array([0.1, 2.0, 4.0, 20.0, 30.0, 99.0, 101.0])
    rate = link_rate_gbps(d, np.ones_like(d, bool), cfg)
    np.testing.assert_allclose(rate[:5], [800.0, 800.0, 200.0, 8.0, 800.0 * (2.0 / 30.0) ** 2], rtol=1e-12)
    assert rate[5] == 0.0  # 0.33 Gbps at 99 km is below min_gbps: the link does not close
    assert rate[6] == 0.0  # beyond max_range_km
    assert link_rate_gbps(np.array([99.0]), np.array([True]), IslConfig(min_gbps=0.0))[0] == pytest.approx(
        800.0 * (2.0 / 99.0) ** 2)
    assert link_rate_gbps(np.array([1.0]), np.array([False]), cfg)[0] == 0.0  # occluded
    floor = IslConfig(min_gbps=10.0)
    assert link_rate_gbps(np.array([20.0]), np.array([True]), floor)[0] == 0.0  # 8 Gbps does not close
    tens = IslConfig(transceivers=25)
    assert tens.max_gbps == 20_000.0  # "tens of Tbps" (physics-sources.md §1) = tens of transceiver pairs


@given(st.floats(0.01, 200.0), st.floats(0.01, 200.0))
def test_rate_never_rises_with_range(d1: float, d2: float) -> None:
    cfg = IslConfig()
    lo, hi = sorted((d1, d2))
    r = link_rate_gbps(np.array([lo, hi]), np.array([True, True]), cfg)
    assert r[0] >= r[1]


def test_config_refuses_impossible_links() -> None:
    with pytest.raises(ValidationError) as exc:
        IslConfig(full_rate_range_km=200.0, max_range_km=100.0)
    assert "full_rate_range_km" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        IslConfig(min_gbps=900.0)
    assert "min_gbps" in str(exc.value)


def square(side_km: float, n: int = 4) -> np.ndarray:
    """n members on a ring of chord side_km (a square for n = 4) at 650 km, nearly co-located."""
    base = np.array([R_EARTH_KM + 650.0, 0.0, 0.0])
    ang = np.arange(n) * 2 * math.pi / n
    rad = side_km / (2 * math.sin(math.pi / n))
    return base + np.stack([np.zeros(n), rad * np.cos(ang), rad * np.sin(ang)], axis=-1)


def test_pair_transfer_is_size_over_rate_plus_light_time() -> None:
    net = IslNetwork(IslConfig(), 4)
    r = square(1.0)
    t = net.pair_transfer(r, 10.0, 0, 1)
    assert t.time_s == pytest.approx(8 * 10.0 / 800.0 + 1.0 / SPEED_OF_LIGHT_KM_S + 10e-6, rel=TIME_REL_TOL)
    assert t.bottleneck_gbps == 800.0


def test_ring_allreduce_on_equal_links_is_the_textbook_time() -> None:
    cfg = IslConfig()
    net = IslNetwork(cfg, 4)
    x_gb = 32.0
    t = net.allreduce(square(1.0), x_gb)
    p = 4
    per_round = 8 * x_gb / p / 800.0 + 1.0 / SPEED_OF_LIGHT_KM_S + cfg.hop_latency_s
    assert t.time_s == pytest.approx(2 * (p - 1) * per_round, rel=1e-9)
    # the bandwidth term alone is 2 (P-1)/P X / B (Patarasuk & Yuan 2009)
    assert 2 * (p - 1) * 8 * x_gb / p / 800.0 == pytest.approx(2 * (p - 1) / p * 8 * x_gb / 800.0)
    assert sorted(t.members) == [0, 1, 2, 3]


def test_ring_allreduce_is_paced_by_its_slowest_link() -> None:
    net = IslNetwork(IslConfig(), 4)
    r = square(1.0)
    r[3] = r[0] + np.array([0.0, -5.0, 0.0])  # member 3 drifts 5 km from 0 and ~5.1 km from 2
    t = net.allreduce(r, 8.0)
    ring = t.members
    links = [(ring[i], ring[(i + 1) % 4]) for i in range(4)]
    d = [np.linalg.norm(r[a] - r[b]) for a, b in links]
    rates = [min(800.0, 800.0 * 4.0 / (x * x)) for x in d]
    worst = int(np.argmin(rates))
    assert t.bottleneck_gbps == pytest.approx(rates[worst], rel=1e-12)
    expect = 2 * 3 * (8 * 8.0 / 4 / rates[worst] + d[worst] / SPEED_OF_LIGHT_KM_S + 10e-6)
    assert t.time_s == pytest.approx(expect, rel=1e-9)


def test_outage_makes_the_transfer_never_finish_and_names_the_link() -> None:
    net = IslNetwork(IslConfig(), 4)
    r = square(1.0)
    net.forced_down.add((0, 1))
    t = net.pair_transfer(r, 1.0, 1, 0)
    assert math.isinf(t.time_s) and t.links_down == [(1, 0)]
    ring = net.allreduce(r, 1.0)
    assert math.isinf(ring.time_s) and {tuple(sorted(x)) for x in ring.links_down} == {(0, 1)}
    assert ring.to_dict()["finite"] is False and ring.to_dict()["time_s"] == -1.0
    # an Earth-occluded pair: opposite sides of the orbit
    far = np.stack([on_circle(R_EARTH_KM + 650.0, np.array([0.0]))[0],
                    on_circle(R_EARTH_KM + 650.0, np.array([math.pi]))[0]])
    assert math.isinf(IslNetwork(IslConfig(max_range_km=1e5, min_gbps=0.0), 2).pair_transfer(far, 1.0, 0, 1).time_s)


def test_members_out_of_range_are_refused() -> None:
    net = IslNetwork(IslConfig(), 4)
    with pytest.raises(CommandError) as exc:
        net.pair_transfer(square(1.0), 1.0, 0, 4)
    assert exc.value.field == "payload.dst" and exc.value.valid == [0, 3]
    with pytest.raises(CommandError) as exc:
        net.allreduce(square(1.0), 1.0, [0, 0])
    assert exc.value.field == "payload.members"


def test_ring_order_visits_every_member_once_along_short_hops() -> None:
    r = square(1.0, n=12)
    order = ring_order(r[np.random.default_rng(1).permutation(12)])
    assert sorted(order) == list(range(12))

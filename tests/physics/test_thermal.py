"""Thermal network: analytic equilibria and time constants, energy conservation, stiffness, heaters, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from emulator.errors import CommandError
from emulator.models.thermal import (
    KELVIN,
    SIGMA,
    HeaterConfig,
    LinkConfig,
    NodeConfig,
    SurfaceConfig,
    ThermalConfig,
    ThermalNetwork,
)

EQUILIBRIUM_TOL_K = 1e-3     # steady state is exact for the linearised backward Euler (fixed point)
TAU_TOL_K = 0.02             # dt = 0.1 s against the exponential, tau = 1000 s, 100 K step
SCHEME_TOL_K = 1e-9          # dt = 60 s against the discrete backward-Euler solution
ENERGY_TOL_REL = 1e-9
# 60 s and 1 s steps against a 0.1 s reference through eclipse transients. Backward Euler is first order:
# the panel (tau ~ 100 s) lags by ~dt/tau of its 700 W step response; measured 10.4 K at 60 s, 0.15 K at 1 s
STEP60_VS_REF_TOL_K = 12.0
STEP1_VS_REF_TOL_K = 0.2
STEP_SIZES_S = (0.1, 1.0, 60.0)


def one_node(q_w: float = 30.0, eps: float = 0.9, area: float = 0.1, c: float = 500.0) -> ThermalNetwork:
    return ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="plate", capacity_j_k=c, initial_temp_degc=60.0)],
        surfaces=[SurfaceConfig(node="plate", area_m2=area, face="none", absorptivity=0.0, emissivity=eps)]),
        track_energy=True)


@pytest.mark.parametrize("dt_s", STEP_SIZES_S)
def test_radiative_equilibrium_matches_stefan_boltzmann(dt_s: float) -> None:
    net = one_node(c=50.0)  # radiative time constant ~120 s
    q = np.array([30.0])
    for _ in range(int(3000 / dt_s)):
        net.step(dt_s, q)
    expected_k = (30.0 / (0.9 * SIGMA * 0.1) + 3.0 ** 4) ** 0.25
    assert net.T[0] == pytest.approx(expected_k, abs=EQUILIBRIUM_TOL_K)


@given(q=st.floats(1.0, 5000.0), eps=st.floats(0.05, 1.0), area=st.floats(0.01, 10.0))
@settings(max_examples=30, deadline=None)
def test_equilibrium_for_any_heat_load(q: float, eps: float, area: float) -> None:
    net = one_node(q, eps, area, c=50.0)
    expected_k = (q / (eps * SIGMA * area) + 3.0 ** 4) ** 0.25
    for _ in range(4000):
        net.step(60.0, np.array([q]))
    assert net.T[0] == pytest.approx(expected_k, rel=1e-6)


def tau_network() -> ThermalNetwork:
    # node "box" (C = 1000 J/K) linked with G = 1 W/K to a bath of huge capacity: tau = C/G = 1000 s
    return ThermalNetwork(ThermalConfig(nodes=[
        NodeConfig(name="box", capacity_j_k=1000.0, initial_temp_degc=120.0),
        NodeConfig(name="bath", capacity_j_k=1e15, initial_temp_degc=20.0)],
        links=[LinkConfig(a="box", b="bath", conductance_w_k=1.0)]))


def test_single_node_exponential_time_constant() -> None:
    net = tau_network()
    zero = np.zeros(2)
    for _ in range(10000):  # 1000 s at 0.1 s = one tau
        net.step(0.1, zero)
    assert net.T[0] - KELVIN == pytest.approx(20.0 + 100.0 * math.exp(-1.0), abs=TAU_TOL_K)


def test_backward_euler_is_exact_to_its_own_recurrence_at_60_s() -> None:
    net = tau_network()
    zero = np.zeros(2)
    for _ in range(50):
        net.step(60.0, zero)
    assert net.T[0] - KELVIN == pytest.approx(20.0 + 100.0 / (1.0 + 60.0 / 1000.0) ** 50, abs=SCHEME_TOL_K)
    # and within 1 K of the exponential (first-order error, dt/tau = 0.06)
    assert net.T[0] - KELVIN == pytest.approx(20.0 + 100.0 * math.exp(-3.0), abs=1.0)


def test_stiff_network_is_stable_and_monotone_at_60_s() -> None:
    # tau = C/G = 0.01 s << dt: explicit Euler would explode; backward Euler relaxes monotonically
    net = ThermalNetwork(ThermalConfig(nodes=[
        NodeConfig(name="die", capacity_j_k=0.1, initial_temp_degc=100.0),
        NodeConfig(name="sink", capacity_j_k=2000.0, initial_temp_degc=0.0)],
        links=[LinkConfig(a="die", b="sink", conductance_w_k=10.0)],
        surfaces=[SurfaceConfig(node="sink", area_m2=0.5, face="none", absorptivity=0.2, emissivity=0.9)]))
    q = np.array([50.0, 0.0])
    prev = []
    for _ in range(200):
        net.step(60.0, q)
        d = net.T[0] - net.T[1]
        prev.append(d)
        assert np.all(np.isfinite(net.T))
    assert prev[-1] == pytest.approx(50.0 / 10.0, rel=1e-6)  # die sits q/G above the sink


def conserving_network() -> ThermalNetwork:
    return ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="a", capacity_j_k=300.0, initial_temp_degc=10.0),
               NodeConfig(name="b", capacity_j_k=900.0, initial_temp_degc=-30.0),
               NodeConfig(name="c", capacity_j_k=50.0, initial_temp_degc=70.0)],
        links=[LinkConfig(a="a", b="b", conductance_w_k=0.7), LinkConfig(a="b", b="c", conductance_w_k=2.0),
               LinkConfig(a="a", b="c", conductance_w_k=0.1)],
        surfaces=[SurfaceConfig(node="b", area_m2=0.3, face="+Z", absorptivity=0.15, emissivity=0.91)]),
        track_energy=True)


@pytest.mark.parametrize("dt_s", STEP_SIZES_S)
def test_energy_is_conserved(dt_s: float) -> None:
    net = conserving_network()
    e0 = net.internal_energy_j()
    rng = np.random.default_rng(3)
    for _ in range(int(6000 / dt_s)):
        net.step(dt_s, rng.uniform(0, 20, 3))
    change = net.internal_energy_j() - e0
    assert change == pytest.approx(net.heat_in_j - net.radiated_j, rel=ENERGY_TOL_REL, abs=1e-6)
    # radiated energy checked independently: backward Euler emits at about the end-of-step temperature
    assert net.radiated_j > 0


def test_conduction_alone_conserves_exactly() -> None:
    net = ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="a", capacity_j_k=300.0), NodeConfig(name="b", capacity_j_k=900.0)],
        links=[LinkConfig(a="a", b="b", conductance_w_k=3.0)]))
    e0 = net.internal_energy_j()
    for _ in range(1000):
        net.step(1.0, np.array([10.0, 0.0]))
    assert net.internal_energy_j() - e0 == pytest.approx(10.0 * 1000, rel=1e-10)


def orbit_like_run(dt_s: float) -> np.ndarray:
    net = ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="panel", capacity_j_k=800.0, initial_temp_degc=0.0),
               NodeConfig(name="bus", capacity_j_k=5000.0, initial_temp_degc=0.0),
               NodeConfig(name="die", capacity_j_k=20.0, initial_temp_degc=0.0)],
        links=[LinkConfig(a="panel", b="bus", conductance_w_k=0.5), LinkConfig(a="die", b="bus",
                                                                               conductance_w_k=4.0)],
        surfaces=[SurfaceConfig(node="panel", area_m2=0.6, face="sun", absorptivity=0.88, emissivity=0.8),
                  SurfaceConfig(node="panel", area_m2=0.6, face="none", absorptivity=0.0, emissivity=0.8),
                  SurfaceConfig(node="bus", area_m2=0.2, face="none", absorptivity=0.0, emissivity=0.9)]))
    out = []
    dt_ms = round(dt_s * 1000)
    n = 3 * 5820_000 // dt_ms
    every = 60_000 // dt_ms
    for k in range(n):
        t_ms = k * dt_ms  # forcing sampled at the step start, on integer time, the same for every dt
        sun = 1361.0 if (t_ms % 5820_000) >= 2100_000 else 0.0
        q = net.environment_heat(np.zeros((1, 6)), np.zeros((1, 6)), np.zeros((1, 6)), np.array([sun]))[0]
        q = q + np.array([0.0, 5.0, 30.0 if (t_ms % 1200_000) < 600_000 else 5.0])
        net.step(dt_s, q)
        if (k + 1) % every == 0:
            out.append(net.T.copy())
    return np.array(out)


@pytest.mark.slow
def test_sixty_second_steps_track_a_fine_reference_through_eclipses() -> None:
    ref = orbit_like_run(0.1)
    coarse = orbit_like_run(60.0)
    err60 = np.max(np.abs(coarse - ref))
    err1 = np.max(np.abs(orbit_like_run(1.0) - ref))
    assert err60 < STEP60_VS_REF_TOL_K
    assert err1 < STEP1_VS_REF_TOL_K


def test_environment_heat_maps_faces_and_tracking() -> None:
    net = ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="rad", capacity_j_k=100.0), NodeConfig(name="wing", capacity_j_k=100.0)],
        surfaces=[SurfaceConfig(node="rad", area_m2=2.0, face="-Z", absorptivity=0.15, emissivity=0.91),
                  SurfaceConfig(node="wing", area_m2=1.0, face="sun", absorptivity=0.88, emissivity=0.8)]))
    solar = np.zeros((1, 6))
    solar[0, 5] = 100.0  # -Z
    albedo = np.zeros((1, 6))
    albedo[0, 5] = 50.0
    ir = np.zeros((1, 6))
    ir[0, 5] = 237.0
    ir[0, 4] = 999.0  # +Z: no surface there
    q = net.environment_heat(solar, albedo, ir, np.array([1361.0]))[0]
    assert q[0] == pytest.approx(0.15 * 2.0 * (100.0 + 50.0) + 0.91 * 2.0 * 237.0)
    assert q[1] == pytest.approx(0.88 * 1361.0)


def test_heater_thermostat_hysteresis_and_commands() -> None:
    net = ThermalNetwork(ThermalConfig(
        nodes=[NodeConfig(name="battery", capacity_j_k=200.0, initial_temp_degc=6.0)],
        heaters=[HeaterConfig(name="batt_htr", node="battery", power_w=2.0, on_below_degc=5.0,
                              off_above_degc=10.0)]))
    assert net.heater_demand() == [0.0]          # 6 °C: inside the band, starts off
    net.T[0] = 4.0 + KELVIN
    assert net.heater_demand() == [2.0]
    net.T[0] = 9.0 + KELVIN
    assert net.heater_demand() == [2.0]          # still on inside the band
    net.T[0] = 10.5 + KELVIN
    assert net.heater_demand() == [0.0]
    net.set_heater("batt_htr", "on")
    assert net.heater_demand() == [2.0]
    with pytest.raises(CommandError) as exc:
        net.set_heater("batt", "auto")
    assert exc.value.valid == ["batt_htr"]
    with pytest.raises(CommandError):
        net.set_heater("batt_htr", "auto", on_below_degc=20.0)  # above off_above 10: refused
    assert net.heater_mode == ["on"] and net.heater_on_below[0] == pytest.approx(5.0 + KELVIN)


@pytest.mark.parametrize(("raw", "where"), [
    ({"nodes": [{"name": "a", "capacity_j_k": 1.0}], "links": [{"a": "a", "b": "zz", "conductance_w_k": 1.0}]},
     "links[0].b: unknown node 'zz'"),
    ({"nodes": [{"name": "a", "capacity_j_k": 1.0}, {"name": "a", "capacity_j_k": 2.0}]}, "duplicate node"),
    ({"nodes": [{"name": "a", "capacity_j_k": -1.0}]}, "capacity_j_k"),
    ({"nodes": [{"name": "a", "capacity_j_k": 1.0}],
      "surfaces": [{"node": "a", "area_m2": 1.0, "face": "+Q", "absorptivity": 0.1, "emissivity": 0.9}]}, "face"),
    ({"nodes": [{"name": "a", "capacity_j_k": 1.0}],
      "surfaces": [{"node": "a", "area_m2": 1.0, "face": "+Z", "absorptivity": 1.1, "emissivity": 0.9}]},
     "absorptivity"),
])
def test_bad_thermal_configs_are_refused(raw: dict, where: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ThermalConfig.model_validate(raw)
    assert where in str(exc.value)

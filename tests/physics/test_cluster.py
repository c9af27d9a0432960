"""The N-satellite cluster: formation geometry (Clohessy-Wiltshire), per-member environment against the single
Environment, the vectorised step against the single Satellite, per-member seeds, the built-in policy, binding a
member to a board through the runtime, and bad input refused with the key and what is valid."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import ormsgpack
import pytest

from emulator.clock import VirtualWall
from emulator.config import RunConfig, SimConfig, load_config
from emulator.errors import CommandError, ConfigError, ModelError
from emulator.models.accelerator import AcceleratorConfig
from emulator.models.cluster import (
    OVERRIDABLE,
    STATE_NAMES,
    AcceleratorArrays,
    ClusterConfig,
    ClusterEnvironment,
    ClusterModel,
    ClusterSpec,
    FormationConfig,
    MemberConfig,
    PolicyConfig,
    cw_relative_state,
    disc_lattice,
    sat_schema,
)
from emulator.models.environment import Environment
from emulator.models.orbit import OrbitConfig, sunlit_fraction, tle_checksum
from emulator.models.radiation import RadiationConfig
from emulator.models.satellite import EpsTelemetry, Satellite
from emulator.protocol.catalogue import Plane
from emulator.protocol.envelope import Message
from emulator.protocol.templates import PackedPayload
from emulator.runtime import Emulator
from emulator.transports import connect
from firmware_stubs.base import BoardClient

NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[2]
CLUSTER_TOML = ROOT / "configs" / "suncatcher-cluster.toml"
PROTO_TOML = ROOT / "configs" / "suncatcher-proto.toml"
EPOCH = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
ORBIT_S = 5862  # one orbit at 650 km (physics-sources.md §4: 97.7 min)
RAD_OFF = {f"radiation.rad_per_{k}": None for k in ("seu", "mbu", "sdc", "sefi", "sel")}

#: formation: physics-sources.md §1 (81 members within 1 km; neighbours 100..200 m); float rounding of km-scale vectors
SPACING_TOL_M = 1e-3
#: the CW equations hold for the relative motion (finite differences of the closed form, 1 s step)
CW_RESIDUAL_TOL_M_S2 = 1e-9
#: ClusterEnvironment with one member at the formation centre vs Environment.chunk (same equations, reordered sums)
ENV_REL_TOL = 1e-9
ENV_ABS_TOL = 1e-9
#: vectorised step vs Satellite.step over an orbit (identical equations: differences are float rounding)
SOC_TOL = 1e-9
TEMP_TOL_K = 1e-6
LOAD_TOL_W = 1e-6
#: a member 20 K off the fleet mean takes its implicit step about the mean's linearisation (documented
#: simplification): the centre member still follows the single satellite to this
TEMP_SHARED_LIN_TOL_K = 0.01
SOC_SHARED_LIN_TOL = 1e-6
#: energy ledger closure per member over an orbit, relative to the array energy
ENERGY_CLOSURE_REL = 1e-6


def quiet_policy(**kw: Any) -> PolicyConfig:
    """A policy that never acts (so a member runs like an unattended single satellite), busy fraction as given."""
    base = {"workload_utilisation": 1.0, "shed_below_soc": 0.0, "resume_above_soc": 0.01, "low_power_below_soc": 0.0,
            "hot_degc": 250.0, "cool_degc": -99.0}
    return PolicyConfig(**{**base, **kw})


def proto(overrides: dict[str, Any] | None = None) -> Any:
    return load_config(PROTO_TOML, overrides=overrides).satellite


def cluster(radius: float = 0.0, *, sat: Any = None, policy: PolicyConfig | None = None,
            members: list[MemberConfig] | None = None, seed: int = 7, bind: list[int] | None = None,
            topics: str = "prefixed", **spec: Any) -> ClusterModel:
    cc = ClusterConfig(satellite=sat or proto(RAD_OFF), cluster=ClusterSpec(
        name="c", formation=FormationConfig(disc_radius=radius), policy=policy or quiet_policy(),
        members=members or [], bind={"members": bind or [], "topics": topics}, **spec))
    return ClusterModel(cc, epoch_utc=EPOCH, seed=seed)


# -- formation geometry --------------------------------------------------------------------------------------------
def test_disc_of_radius_5_has_81_members_with_the_centre_at_index_40() -> None:
    pts = disc_lattice(5)
    assert len(pts) == 81  # physics-sources.md §1: "81 satellites"; Gauss circle N(5) = 81
    assert (pts[40] == [0, 0]).all()
    assert (np.sum(pts ** 2, axis=1) <= 25).all()
    assert len(disc_lattice(0)) == 1 and len(disc_lattice(1)) == 5


def test_shipped_cluster_config_loads_81_members_within_1_km() -> None:
    lc = load_config(CLUSTER_TOML)
    m = ClusterModel.from_config(lc, bind=[])
    assert m.n == 81 and m.member_names[0] == "suncatcher-00" and m.member_names[-1] == "suncatcher-80"
    assert lc.model.cluster.bind.members == [40]
    t = np.linspace(0.0, ORBIT_S, 41)
    r, _ = m.env.states(t)
    centre = r[:, 40:41, :]
    d_m = np.linalg.norm(r - centre, axis=-1) * 1e3
    assert d_m.max() <= 1000.0 + SPACING_TOL_M  # physics-sources.md §1: within a 1 km radius
    assert d_m.max() >= 1000.0 - 1.0  # the rim reaches it (2 x 500 m along-track on the 2:1 ellipse)
    for k in range(len(t)):
        dd = np.linalg.norm(r[k][:, None, :] - r[k][None, :, :], axis=-1) * 1e3
        np.fill_diagonal(dd, np.inf)
        nn = dd.min(axis=1)
        # physics-sources.md §1: next-nearest neighbours oscillate ~100-200 m
        assert nn.min() >= 100.0 - SPACING_TOL_M and nn.max() <= 200.0 + SPACING_TOL_M


def test_cluster_members_are_the_proto_design() -> None:
    """configs/suncatcher-cluster.toml extends suncatcher-proto (no copied member tables): the member design is the
    proto's, the cluster changes only the name and the run tables it writes."""
    import tomllib

    text = tomllib.loads(CLUSTER_TOML.read_text(encoding="utf-8"))
    assert text["extends"] == "suncatcher-proto"
    assert not {"orbit", "environment", "power", "thermal", "sensors", "accelerator", "radiation"} & set(text)
    lc = load_config(CLUSTER_TOML)
    assert lc.kind == "cluster" and lc.name == "suncatcher" and lc.model.satellite.name == "suncatcher-member"
    member = lc.model.satellite.model_dump(exclude={"name"})
    assert member == proto().model_dump(exclude={"name"})
    base = load_config("suncatcher-proto").run.model_dump()
    base["sim"]["duration_s"], base["telemetry"]["truth_rate_hz"] = 86400.0, 0.1
    assert lc.run.model_dump() == base


def test_relative_motion_solves_the_clohessy_wiltshire_equations() -> None:
    form = FormationConfig(phase_deg=30.0)
    lat = disc_lattice(5)
    a_km = 6378.137 + 650.0
    n = math.sqrt(398600.4418 / a_km ** 3)
    h = 1.0
    t = np.arange(0.0, 6000.0, 97.0)
    p0, v0 = cw_relative_state(lat, form, n, t)
    pm, _ = cw_relative_state(lat, form, n, t - h)
    pp, _ = cw_relative_state(lat, form, n, t + h)
    acc = (pp - 2 * p0 + pm) / (h * h)
    x = p0[..., 0]
    vx, vy = v0[..., 0], v0[..., 1]
    # x'' - 2 n y' - 3 n^2 x = 0 ; y'' + 2 n x' = 0 (Clohessy & Wiltshire 1960, circular reference)
    assert np.abs(acc[..., 0] - 2 * n * vy - 3 * n * n * x).max() < CW_RESIDUAL_TOL_M_S2
    assert np.abs(acc[..., 1] + 2 * n * vx).max() < CW_RESIDUAL_TOL_M_S2
    # velocities are the derivative of the positions, and the motion is periodic (no along-track drift)
    np.testing.assert_allclose((pp - pm)[..., :2] / (2 * h), v0[..., :2], atol=1e-6)
    p_period, _ = cw_relative_state(lat, form, n, t + 2 * math.pi / n)
    np.testing.assert_allclose(p_period, p0, atol=1e-6)


# -- environment ----------------------------------------------------------------------------------------------------
ENV_FIELDS = ("r_eci_km", "sunlit_frac", "beta_deg", "lat_deg", "lon_deg", "alt_km", "local_solar_time_h",
              "face_solar_w_m2", "face_albedo_w_m2", "face_ir_w_m2", "tracking_solar_w_m2", "rad_flux_factor",
              "dose_rate_rad_s", "in_saa", "in_polar_horn")


@pytest.mark.parametrize("attitude", ["nadir", "sun_pointing", "inertial"])
def test_formation_centre_sees_exactly_the_single_environment(attitude: str) -> None:
    sat = proto({"environment.attitude": attitude})
    ce = ClusterEnvironment(sat.orbit, sat.environment, EPOCH, lattice=disc_lattice(0), formation=FormationConfig())
    ref = Environment(sat.orbit, sat.environment, EPOCH)
    a = ce.chunk(0, 7 * NS, 900)
    b = ref.chunk(0, 7 * NS, 900)
    for name in ENV_FIELDS:
        np.testing.assert_allclose(getattr(a, name)[:, 0], getattr(b, name), rtol=ENV_REL_TOL, atol=ENV_ABS_TOL,
                                   err_msg=name)


def test_list_mode_members_see_their_own_orbits() -> None:
    sat = proto()
    l1 = "1 25544U 98067A   26172.50000000  .00016717  00000-0  10270-3 0  900"
    l2 = "2 25544  51.6400 208.9163 0006317  69.9862  25.2906 15.50000000    0"
    tle = OrbitConfig(tle_line1=l1 + str(tle_checksum(l1)), tle_line2=l2 + str(tle_checksum(l2)))
    elements = OrbitConfig(alt_km=550.0, inc_deg=53.0, raan_deg=40.0, ma_deg=10.0)
    orbits = [sat.orbit, tle, elements]
    ce = ClusterEnvironment(sat.orbit, sat.environment, EPOCH, orbits=orbits)
    c = ce.chunk(0, 30 * NS, 400)
    for k, o in enumerate(orbits):
        b = Environment(o, sat.environment, EPOCH).chunk(0, 30 * NS, 400)
        for name in ENV_FIELDS:
            np.testing.assert_allclose(getattr(c, name)[:, k], getattr(b, name), rtol=ENV_REL_TOL, atol=ENV_ABS_TOL,
                                       err_msg=f"member {k} {name}")


def test_each_member_has_its_own_shadow_leading_members_enter_first() -> None:
    m = cluster(5)
    env = m.env
    t = np.arange(0.0, 86400.0, 5.0)
    nu_ref = env.ref.orbit.sunlit_frac(t)
    k = int(np.flatnonzero((nu_ref[:-1] == 1.0) & (nu_ref[1:] < 1.0))[0])  # first penumbra entry
    c = env.chunk(round(t[k] * NS), 100_000_000, 200)  # 20 s at 0.1 s through the penumbra
    nu = c.sunlit_frac
    # the vectorised (time x member) pass equals the shadow function member by member
    for j in (0, 17, 40, 80):
        r_sun = c.sun_unit_eci * (c.sun_dist_au * 149_597_870.7)[:, None]
        np.testing.assert_allclose(nu[:, j], sunlit_fraction(c.r_eci_km[:, j], r_sun), rtol=0, atol=1e-12)
    # members spread 1 km along-track cross the shadow edge at different times (~0.13 s per km at 7.5 km/s)
    partial = (nu > 0.0) & (nu < 1.0)
    assert partial.any()
    row = int(np.flatnonzero(partial.any(axis=1))[len(np.flatnonzero(partial.any(axis=1))) // 2])
    assert np.ptp(nu[row]) > 1e-3
    # the one furthest ahead along the velocity is darker than the one furthest behind
    v_hat = c.v_eci_km_s[row, 40] / np.linalg.norm(c.v_eci_km_s[row, 40])
    ahead = (c.r_eci_km[row] - c.r_eci_km[row, 40]) @ v_hat
    assert nu[row, int(np.argmax(ahead))] < nu[row, int(np.argmin(ahead))]


# -- the vectorised step against the single satellite ----------------------------------------------------------
def run_pair(m: ClusterModel, member: int, single: Satellite, steps: int, busy: bool) -> dict[str, float]:
    worst = {"soc": 0.0, "temp_k": 0.0, "load_w": 0.0, "bus_v": 0.0}
    socs = []
    submitted = not busy
    for k in range(steps):
        single.step(k * NS, NS)
        m.step(k * NS, NS)
        if not submitted and single.accel.state.value == "idle":
            # a job that outlasts the run: the single board is busy from the step after boot, like the policy's
            single.accel.cmd_job_submit(single.accel.interface().commands[1].spec.schema(kind="training",
                                                                                         size=10_000_000))
            submitted = True
        worst["soc"] = max(worst["soc"], abs(single.power.soc - m.power.soc[member]))
        worst["bus_v"] = max(worst["bus_v"], abs(single.power.bus_v - m.power.bus_v[member]))
        worst["temp_k"] = max(worst["temp_k"], float(np.abs(single.thermal.T - m.thermal.T[:, member]).max()))
        worst["load_w"] = max(worst["load_w"], abs(single.accel.load_w - m.accel.load_w[member]))
        socs.append(single.power.soc)
    worst["soc_span"] = max(socs) - min(socs)
    return worst


@pytest.mark.parametrize("busy", [True, False])
def test_one_member_follows_the_single_satellite_over_an_orbit(busy: bool) -> None:
    sat = proto(RAD_OFF)
    m = cluster(0, sat=sat, policy=quiet_policy(workload_utilisation=1.0 if busy else 0.0))
    single = Satellite(sat, epoch_utc=EPOCH, seed=7)
    worst = run_pair(m, 0, single, ORBIT_S, busy)
    assert worst["soc"] < SOC_TOL and worst["bus_v"] < 1e-6
    assert worst["temp_k"] < TEMP_TOL_K and worst["load_w"] < LOAD_TOL_W
    assert single.accel.state.value == ("busy" if busy else "idle")
    assert m.truth()["accelerator"]["state"][0] == single.accel.state.value
    # the orbit went through eclipse and the battery worked: the comparison is not trivial
    assert worst["soc_span"] > 0.01
    bal = m.power.balance()
    assert abs(bal["residual_j"][0]) < ENERGY_CLOSURE_REL * bal["array_j"][0]
    assert bal["residual_j"][0] == pytest.approx(single.power.balance()["residual_j"], abs=1.0)


def test_shared_linearisation_keeps_a_member_on_the_single_satellite() -> None:
    """Five members, the others 20 K hotter at the start: the centre member's implicit step is taken about the
    fleet mean, not its own temperatures; it still follows the single satellite within the stated tolerance."""
    sat = proto(RAD_OFF)
    hot = {f"thermal.nodes.{nd.name}.initial_temp_degc": nd.initial_temp_degc + 20.0 for nd in sat.thermal.nodes}
    members = [MemberConfig(member=k, overrides=hot) for k in (0, 1, 3, 4)]
    m = cluster(1, sat=sat, members=members)
    assert m.member_names[2] == "c-2" and (disc_lattice(1)[2] == [0, 0]).all()
    single = Satellite(sat, epoch_utc=EPOCH, seed=7)
    worst = run_pair(m, 2, single, ORBIT_S, busy=True)
    assert worst["temp_k"] < TEMP_SHARED_LIN_TOL_K
    assert worst["soc"] < SOC_SHARED_LIN_TOL
    assert m.thermal.refreshes > 1
    # and the hot members really were far from the centre member (the structure's time constant is hours)
    structure = m.node_names.index("structure")
    assert m.thermal.T[structure, 0] > m.thermal.T[structure, 2] + 10.0


def test_energy_closes_for_every_member_of_the_shipped_cluster() -> None:
    lc = load_config(CLUSTER_TOML, overrides={"cluster.bind.members": []})
    m = ClusterModel.from_config(lc, chunk_steps=600)
    for k in range(1200):
        m.step(k * NS, NS)
    bal = m.power.balance()
    assert np.all(np.abs(bal["residual_j"]) < ENERGY_CLOSURE_REL * bal["array_j"])
    tr = m.truth()
    assert len(tr["power"]["soc"]) == 81 and set(tr["accelerator"]["state"]) <= {"busy", "throttled"}
    # member 0 flies degraded arrays (override 0.89): it makes 11 % less power than the others in the same sun
    assert tr["power"]["array_w"][0] == pytest.approx(0.89 * tr["power"]["array_w"][1], rel=1e-3)


# -- seeds and radiation ------------------------------------------------------------------------------------------
def radiating(seed: int, radius: float = 2.0, n_steps: int = 400) -> ClusterModel:
    sat = proto({"radiation.scale": 2e5})
    m = cluster(radius, sat=sat, seed=seed, policy=PolicyConfig())
    for k in range(n_steps):
        m.step(k * NS, NS)
    return m


def test_member_seeds_are_reproducible_and_independent() -> None:
    a, b, c = radiating(11), radiating(11), radiating(12)
    np.testing.assert_array_equal(a.accel.counts, b.accel.counts)
    np.testing.assert_array_equal(a.power.soc, b.power.soc)
    assert a.truth() == b.truth()
    assert not np.array_equal(a.accel.counts, c.accel.counts)
    totals = a.accel.counts.sum(axis=0)
    assert len(set(totals.tolist())) > 3  # members draw from their own streams, not one shared sequence
    # a member's stream does not depend on how many members there are: SeedSequence(seed).spawn(N)[k]
    small = cluster(1, seed=11)
    big = cluster(5, seed=11)
    np.testing.assert_array_equal(small.accel.next_hazard, big.accel.next_hazard[:5])
    # Poisson arrivals: sum of counts vs sum of expected events (exposure x rate per rad), within 5 sigma
    expected = float(np.sum(a.accel.exposure_rad * a.accel.k_per_rad))
    assert expected > 200
    assert abs(totals.sum() - expected) < 5 * math.sqrt(expected)
    # the kinds follow the per-rad rates: SEUs (1/20 rad) outnumber SDCs (1/17) less than MBUs (1/44)
    seu, mbu, sdc = (int(a.accel.counts[i].sum()) for i in range(3))
    assert sdc > mbu and seu > mbu


def test_bound_member_draws_do_not_change_the_others() -> None:
    sat = proto({"radiation.scale": 2e5})
    free = cluster(1, sat=sat, seed=5)
    bound = cluster(1, sat=sat, seed=5, bind=[2])
    for k in range(200):
        free.step(k * NS, NS)
        bound.step(k * NS, NS)
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(free.accel.counts[:, others], bound.accel.counts[:, others])
    assert bound.accel.counts[:, 2].sum() == 0  # the bound member's full board draws instead
    assert bound.boards[2].rad.counts["seu"] > 0


# -- the built-in reference behaviour ----------------------------------------------------------------------------
def test_policy_sheds_a_low_member_and_cools_a_hot_one() -> None:
    sat = proto(RAD_OFF)
    members = [MemberConfig(member=0, overrides={"power.battery.initial_soc": 0.2})]
    m = cluster(1, sat=sat, members=members, policy=PolicyConfig())
    for k in range(29):
        m.step(k * NS, NS)
    tr = m.truth()
    assert tr["power"]["rails_on"]["payload"] == [False, True, True, True, True]
    assert tr["accelerator"]["policy_shed"][0] is True
    assert tr["accelerator"]["state"] == ["off", "busy", "busy", "busy", "busy"]
    # member 1's die runs hot (86 degC > hot_degc 80): at the next decision it steps one DVFS level down
    die = m.node_names.index("accel_die")
    m.thermal.T[die, 1] = 86.0 + 273.15
    m.step(29 * NS, NS)
    assert m.truth()["accelerator"]["level"] == ["high", "mid", "high", "high", "high"]


def test_latchup_is_cleared_by_the_rail_limiter_and_the_board_recovers() -> None:
    m = cluster(1, policy=PolicyConfig())
    for k in range(30):
        m.step(k * NS, NS)
    m.accel.apply(3, "sel", m.t_ns)  # 60 A on top of ~45 A trips the 60 A limiter
    for k in range(30, 120):
        m.step(k * NS, NS)
    assert m.power.trips[m.power.rail("payload"), 3] >= 1
    assert m.accel.power_cycles[3] == 1
    assert m.truth()["accelerator"]["state"][3] == "busy"
    assert m.truth()["accelerator"]["state"][0] == "busy" and m.power.trips[:, 0].sum() == 0


# -- the reduced boards' state machine (found by tests/physics/test_twins.py against the full board) ------------------
def reduced_boards(n: int = 1, reboot: float = 0.0) -> AcceleratorArrays:
    rad = RadiationConfig(**{k.split(".")[1]: None for k in RAD_OFF}, sefi_reboot_fraction=reboot)
    return AcceleratorArrays(AcceleratorConfig(), rad, n, [np.random.default_rng(k) for k in range(n)],
                             level=np.full(n, 2), initial_dose_krad=np.zeros(n), scale=np.ones(n))


def step_boards(a: AcceleratorArrays, steps: int, temp: float = 40.0, supply: float = 12.0) -> None:
    n = a.n
    for _ in range(steps):
        a.step(0, 1.0, np.full(n, supply), np.full(n, temp), np.zeros(n), np.ones(n), np.ones(n), np.ones(n, bool))


@pytest.mark.parametrize(("temp", "end", "changes"), [(40.0, "busy", 3), (89.5, "throttled", 2)])
def test_reduced_board_boots_through_idle_like_the_board(temp: float, end: str, changes: int) -> None:
    """A boot ends idle (work then arrives: busy) or, under the hardware slowdown, throttled at once
    (accelerator.boot_done_state), and the state changes are counted as the board's accel.state events are: off ->
    booting -> idle -> busy, or off -> booting -> throttled (the fleet counted a pass through idle there, which the
    board never emitted; see tests/physics/test_kernels.py)."""
    a = reduced_boards()
    step_boards(a, 25, temp)
    assert STATE_NAMES[int(a.state[0])] == end
    assert a.state_changes[0] == changes


def test_reduced_board_refuses_an_illegal_transition() -> None:
    a = reduced_boards()
    with pytest.raises(ModelError) as exc:
        a._set(np.ones(1, bool), STATE_NAMES.index("busy"))  # off -> busy
    assert exc.value.field == "state"


@pytest.mark.parametrize("reboot", [0.0, 1.0])
def test_a_sefi_that_changes_nothing_is_not_a_state_change(reboot: float) -> None:
    a = reduced_boards(reboot=reboot)
    step_boards(a, 1)  # booting
    before = int(a.state_changes[0])
    a.apply(0, "sefi", 0)
    assert STATE_NAMES[int(a.state[0])] == ("booting" if reboot else "hung")
    assert a.state_changes[0] == before + (0 if reboot else 1)
    if not reboot:
        a.apply(0, "sefi", 0)  # a hung board hangs on
        assert a.state_changes[0] == before + 1


def test_reset_while_booting_restarts_the_boot() -> None:
    a = reduced_boards()
    step_boards(a, 5)
    assert a.boot_left_s[0] < 20.0
    a.reset(np.ones(1, bool))
    assert STATE_NAMES[int(a.state[0])] == "booting" and a.boot_left_s[0] == 20.0


# -- bad input --------------------------------------------------------------------------------------------------------
def test_bind_out_of_range_is_refused_naming_the_key_and_the_valid_members() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides={"cluster.bind.members": [81]})
    assert exc.value.field == "cluster.bind.members[0]"
    assert exc.value.valid == list(range(81)) and "0..80" in exc.value.message
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides={"cluster.bind.members": ["suncatcher-4O"]})
    assert "did you mean 'suncatcher-" in exc.value.message  # a suggestion from the names
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides={"cluster.bind.members": [3, 4]})  # plain topics, two boards
    assert exc.value.field == "cluster.bind.topics"


def test_member_overrides_reach_list_items_by_name_or_by_index() -> None:
    """A member's overrides use the one dotted-override syntax: ``power.arrays.wings`` and ``power.arrays[0]`` are the
    same array (and ``thermal.nodes[2]`` the battery node of the proto design)."""
    def member_configs(overrides: dict[str, Any]) -> Any:
        lc = load_config(CLUSTER_TOML, overrides={"cluster.members": [{"member": 5, "overrides": overrides}]})
        return ClusterModel.from_config(lc, bind=[]).members.configs[5]

    by_name = member_configs({"power.arrays.wings.degradation": 0.8, "thermal.nodes.battery.initial_temp_degc": 3.0})
    by_index = member_configs({"power.arrays[0].degradation": 0.8, "thermal.nodes[2].initial_temp_degc": 3.0})
    assert by_name == by_index
    assert by_name.power.arrays[0].degradation == 0.8 and by_name.thermal.nodes[2].name == "battery"
    assert by_name.thermal.nodes[2].initial_temp_degc == 3.0
    with pytest.raises(ConfigError) as exc:
        member_configs({"power.arrays[3].degradation": 0.8})
    assert exc.value.field == "cluster.members[0].overrides.power.arrays[3].degradation"
    assert "index 3 out of range" in exc.value.message


def test_unknown_or_invalid_override_is_refused_with_what_is_valid() -> None:
    bad = {"cluster.members": [{"member": 2, "overrides": {"power.battery.cells_series": 4}}]}
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides=bad)
    assert exc.value.field == "cluster.members[0].overrides.power.battery.cells_series"
    assert exc.value.valid == list(OVERRIDABLE)
    bad = {"cluster.members": [{"member": 2, "overrides": {"power.battery.initial_soc": 1.5}}]}
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides=bad)
    assert "initial_soc" in exc.value.field
    bad = {"cluster.members": [{"member": 2, "overrides": {"power.arrays.wing.degradation": 0.9}}]}
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides=bad)
    assert exc.value.valid == ["wings"] and "wings" in exc.value.message
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides={"cluster.members": [{"member": 99}]})
    assert exc.value.field == "cluster.members[0].member"
    with pytest.raises(ConfigError) as exc:
        load_config(CLUSTER_TOML, overrides={"cluster.formation.disc_radiu": 3})
    assert exc.value.field == "cluster.formation.disc_radiu" and "disc_radius" in exc.value.message


def test_fault_and_query_addressing_a_missing_member_are_refused() -> None:
    m = cluster(1, bind=[2])
    emu = Emulator(m, RunConfig(), board_url=None, control_url=None, record_path=None, wall=VirtualWall())
    with pytest.raises(CommandError) as exc:
        emu.control("fault.inject", {"name": "radiation.sel", "params": {"sat": 5}})
    assert exc.value.field == "params.sat" and exc.value.valid == [0, 1, 2, 3, 4]
    with pytest.raises(CommandError) as exc:
        emu.control("fault.inject", {"name": "sensor.stuck", "params": {"sat": 1, "channel": "eps.bus_v"}})
    assert exc.value.field == "params.sat" and exc.value.valid == [2]
    with pytest.raises(CommandError) as exc:
        emu.control("cluster.isl.transfer", {"pattern": "send", "size_gb": 1.0, "src": 0, "dst": 9})
    assert exc.value.field == "payload.dst"


# -- binding members to boards through the runtime ----------------------------------------------------------------
async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_board_on_the_link_sees_only_its_member(request: pytest.FixtureRequest) -> None:
    url = f"loop://cluster-{request.node.name}"
    m = cluster(1, bind=[3], policy=PolicyConfig())
    run = RunConfig(sim=SimConfig(step_s=1.0, epoch_utc=EPOCH))
    async with Emulator(m, run, board_url=url, control_url=None, record_path=None, wall=VirtualWall()) as emu:
        board = BoardClient(await connect(url), "member-3")
        await board.start()
        try:
            hello = await board.request("board.hello", {"name": "member-3", "version": "1", "capabilities": []})
            member_topics = [t for t in hello["topics"] if t.startswith("sat.")]
            assert member_topics and all(t.startswith("sat.3.") for t in member_topics)
            await emu.run_for(25)
            await settle()
            tel = {t: p for t, p in board.latest.items() if t != "sim.clock"}
            assert {"sat.3.eps.telemetry", "sat.3.thermal.telemetry", "sat.3.adcs.sun", "sat.3.accel.status"} <= set(tel)
            assert all(t.startswith("sat.3.") and p["sat"] == 3 for t, p in tel.items())  # events too
            schema = sat_schema(EpsTelemetry, "out")
            schema.model_validate(tel["sat.3.eps.telemetry"])  # what goes out matches the declared schema
            # commands reach member 3 only
            await board.request("sat.3.eps.rail.set", {"rail": "payload", "on": False})
            await emu.run_for(2)
            on = emu.truth()["satellite"]["power"]["rails_on"]["payload"]
            assert on == [True, True, True, False, True]
            # a payload naming another member is refused, and unbound members have no board topics
            with pytest.raises(CommandError) as exc:
                await board.request("sat.3.eps.rail.set", {"rail": "payload", "on": True, "sat": 4})
            assert exc.value.field == "payload.sat"
            with pytest.raises(CommandError) as exc:
                await board.request("sat.4.eps.rail.set", {"rail": "payload", "on": True})
            assert exc.value.field == "topic"
            # the member's full board takes jobs once its rail is back
            await board.request("sat.3.eps.rail.set", {"rail": "payload", "on": True, "sat": "c-3"})
            await emu.run_for(25)
            done = await board.request("sat.3.accel.job.submit", {"kind": "inference", "size": 5})
            assert done["id"] >= 1
            await emu.run_for(2)
            await settle()
            ev = [e for e in board.events() if e.topic == "sat.3.accel.job.done"]
            assert ev and ev[0].payload["ok"] and ev[0].payload["sat"] == 3
            # the board also asks what its links can carry now
            t = await board.request("sat.3.isl.transfer", {"pattern": "allreduce", "size_gb": 1.0})
            assert t["finite"] and t["time_s"] > 0 and sorted(t["members"]) == [0, 1, 2, 3, 4]
        finally:
            await board.aclose()


async def test_plain_topics_let_unmodified_firmware_drive_one_member(request: pytest.FixtureRequest) -> None:
    url = f"loop://cluster-{request.node.name}"
    m = cluster(1, bind=["c-1"], topics="plain")
    async with Emulator(m, RunConfig(), board_url=url, control_url=None, record_path=None,
                        wall=VirtualWall()) as emu:
        board = BoardClient(await connect(url), "plain")
        await board.start()
        try:
            await emu.run_for(3)
            await settle()
            assert board.latest["eps.telemetry"]["sat"] == 1
            await board.request("eps.rail.set", {"rail": "payload", "on": False})
            await emu.run_for(1)
            assert emu.truth()["satellite"]["power"]["rails_on"]["payload"] == [True, False, True, True, True]
        finally:
            await board.aclose()


def test_control_plane_faults_address_one_member() -> None:
    m = cluster(1, bind=[2], policy=PolicyConfig())
    emu = Emulator(m, RunConfig(), board_url=None, control_url=None, record_path=None, wall=VirtualWall())
    for k in range(25):
        m.step(k * NS, NS)
    emu.control("fault.inject", {"name": "eps.rail.short", "params": {"sat": "c-4", "rail": "payload",
                                                                         "extra_a": 100.0}})
    emu.control("fault.inject", {"name": "eps.array.string_fail", "params": {"sat": 0, "array": "wings",
                                                                                "strings": 10}})
    with pytest.raises(CommandError, match="cannot fail 11 strings of array 'wings': it has 20 strings, 10 failed"):
        emu.control("fault.inject", {"name": "eps.array.string_fail", "params": {"sat": 0, "array": "wings",
                                                                                    "strings": 11}})
    emu.control("fault.inject", {"name": "radiation.sefi", "params": {"sat": 2}})
    for k in range(25, 28):
        m.step(k * NS, NS)
    tr = m.truth()
    trips = tr["power"]["rail_trips"]["payload"]
    assert trips[:4] == [0, 0, 0, 0] and trips[4] >= 1  # trips, retries after 1 s, trips again
    assert tr["power"]["array_w"][0] == pytest.approx(0.5 * tr["power"]["array_w"][1], rel=1e-3)
    assert tr["members"]["2"]["accelerator"]["state"] == "hung"
    assert tr["accelerator"]["state"][2] == "hung"
    out = emu.control("cluster.isl.transfer", {"pattern": "send", "size_gb": 8.0, "src": 0, "dst": 4})
    assert out["bottleneck_gbps"] == 800.0 and out["time_s"] == pytest.approx(8 * 8.0 / 800.0, rel=1e-3)
    emu.control("fault.inject", {"name": "isl.link.down", "params": {"a": 0, "b": 4}})
    out = emu.control("cluster.isl.transfer", {"pattern": "send", "size_gb": 8.0, "src": 0, "dst": 4})
    assert out["finite"] is False and out["links_down"] == [[0, 4]]


def test_board_plane_messages_are_well_formed() -> None:
    m = cluster(1, bind=[0, 4])
    emu = Emulator(m, RunConfig(), board_url=None, control_url=None, record_path=None, wall=VirtualWall())
    board_topics = {s.topic for s in emu.catalogue.topics(plane=Plane.BOARD)}
    assert "sat.0.eps.telemetry" in board_topics and "sat.4.accel.job.submit" in board_topics
    assert not any(t.startswith(("sat.1.", "sat.2.", "sat.3.")) for t in board_topics)
    for k in range(3):
        m.step(k * NS, NS)
    for tel in emu.interface.telemetry:
        sample = tel.sample()  # a dict, or the readings encoded already (what the runtime publishes as it is)
        emu.catalogue.validate(tel.spec.topic, sample.to_dict() if isinstance(sample, PackedPayload) else sample)
    reply = emu.handle_request(Message("sat.0.eps.shed.set", {"safe_v": 40.0}), Plane.BOARD)
    assert reply.payload["ok"] is False and reply.payload["error"]["field"] == "payload.safe_v"


def test_a_bound_members_encoded_readings_are_the_bytes_of_its_dicts() -> None:
    """What the runtime publishes for a bound member (its EPS and thermal readings encoded by templates, "sat" first) is
    ormsgpack's encoding of the dict readings, step after step, through a rail trip and a heater change."""
    m, twin = cluster(1, bind=[0, 4]), cluster(1, bind=[0, 4])
    for step in range(40):
        for model in (m, twin):
            model.step(step * NS, NS)
            if step == 10:
                model.power.set_rail(4, "payload", False)
                model.heaters.set(0, "battery_heater", "on", None, None)
        for k in (0, 4):
            for encoded, plain in ((m.eps_payload(k), twin.read_eps(k)), (m.thermal_payload(k), twin.read_thermal(k))):
                assert isinstance(encoded, PackedPayload)
                assert plain["sat"] == k and encoded.data == ormsgpack.packb(plain)


def test_the_fleet_truth_and_a_bound_sun_sensor_before_the_first_step_see_the_environment_at_t0() -> None:
    """As the single satellite's: a scenario's environment signals and the first readings exist at t = 0."""
    m = cluster(1.0, bind=[0])
    twin = cluster(1.0, bind=[0])
    env0 = m.env.chunk(0, NS, 2)
    env = m.truth()["environment"]
    assert env["sunlit_frac"] == env0.sunlit_frac[0].tolist() and len(env["lat_deg"]) == m.n
    assert env["lat_deg"] == env0.lat_deg[0].tolist()
    assert m.read_sun(0)["eclipse"] is (float(env0.tracking_solar_w_m2[0, 0]) < 1.0)
    for k in range(3):  # the look at t = 0 changes nothing of what the steps compute
        m.step(k * NS, NS)
        twin.step(k * NS, NS)
    assert m.truth() == twin.truth()

"""N satellites in one model (Suncatcher's 81-member formation), vectorised across members with numpy.

State is struct-of-arrays with the member on the last axis: ``soc[k]``, ``rail_on[r, k]``, ``T[node, k]``. Every
member has the single satellite's physics (same config classes, same equations: ``docs/models-cluster.md``):

* **Orbits.** Either a formation on a reference orbit (the published lattice: 100 m radial x 200 m along-track,
  members at the integer points of a disc of radius 5, 81 of them, physics-sources.md §1), placed with the periodic
  Clohessy-Wiltshire (Hill) solution ``x = x0 cos nt + (y0/2) sin nt``, ``y = y0 cos nt - 2 x0 sin nt``: the lattice
  turns rigidly in the (x, y/2) plane, so neighbours stay 100..200 m apart and every member within 1 km; or any
  list of orbits (TLEs, elements).
* **Environment.** Each member's own shadow, face fluxes, sub-satellite point and radiation environment, for a chunk
  of time steps x all members in one vectorised pass (:class:`ClusterEnvironment`).
* **Power.** :class:`PowerArrays`: the arrays, MPPT, battery (OCV table, R(T), two-pass quadratic solve), rails with
  latching current limiters and the shed mode machine of :class:`~emulator.models.power.PowerSystem`, on arrays.
* **Thermal.** :class:`ThermalBatch`: one shared network (the template's nodes, links and surfaces), one backward-
  Euler matrix for all members: ``T_new = B @ X`` with X holding every member's temperatures and heat inputs
  (ceilings.md interpretation 5: one matmul).
* **Accelerator + radiation.** :class:`AcceleratorArrays`: the board's power equation, DVFS, throttling and a
  reduced state machine, driven by a vectorised built-in policy; SEE arrivals are the single model's hazard
  inversion on arrays, each member drawing from its own stream ``SeedSequence(seed).spawn(N)[k]``.

Members bound to a board (``cluster.bind``) run the full :class:`~emulator.models.accelerator.AcceleratorBoard` and
sensors, and get board-plane topics ``sat.<k>.<topic>`` (or the plain single-satellite topics when exactly one member
is bound with ``topics = "plain"``); every payload carries ``sat``. See ``docs/models-cluster.md``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, create_model, model_validator

from emulator.dotted import parse_key, set_dotted
from emulator.errors import CommandError, ConfigError, ConfigProblem, ModelError, suggest
from emulator.models import power_kernels as pk
from emulator.models.accelerator import (
    LEGAL,
    S_BOOTING,
    S_BUSY,
    S_FAILED,
    S_HUNG,
    S_IDLE,
    S_LATCHED,
    S_OFF,
    S_THROTTLED,
    STATE_NAMES,
    TRANSITIONS,
    AcceleratorBoard,
    AcceleratorConfig,
    BoardState,
    board_power_w,
    boot_done_state,
    busy_utilisation,
    can_reset,
    dose_step,
    dvfs_tables,
    hot_guard_degc,
    latch_damaged,
    latchup_w,
    leakage_k_per_degc,
    operating_point,
    see_outcome,
    shuts_down,
    supply_state,
    thermal_shutdown,
    throttle_level,
    throttled_state,
    work_state,
)
from emulator.models.accelerator_schemas import ChipParam, ScaleParam
from emulator.models.base import (
    Command,
    Fault,
    Interface,
    SpacecraftModel,
    Telemetry,
    command_spec,
    event_spec,
    telemetry_spec,
)
from emulator.models.environment import Environment, EnvironmentConfig, along_orbit
from emulator.models.isl import IslConfig, IslNetwork, ring_order
from emulator.models.orbit import (
    MU_EARTH_KM3_S2,
    R_EARTH_KM,
    OrbitConfig,
)
from emulator.models.power import MODE_NAMES, PowerConfig, strings_failed_after, updated_thresholds
from emulator.models.power_kernels import ARRAY, CRITICAL, FULL, OFF
from emulator.models.radiation import KINDS, RadiationConfig, arrivals, draw_chip, kind_cdf, pick_kind
from emulator.models.satellite import (
    SEED_STREAMS,
    SatelliteConfig,
    SensorSuite,
    heat_routing,
    loss_heat_w,
)
from emulator.models.satellite_schemas import (
    BatteryFault,
    CellLoss,
    EpsTelemetry,
    HeaterSet,
    ModeChanged,
    RailReset,
    RailSet,
    RailShort,
    RailTripped,
    SensorChannel,
    SensorDrift,
    SensorNoisy,
    ShedSet,
    StringFail,
    SunTelemetry,
    ThermalTelemetry,
)
from emulator.models.thermal import (
    HEATER_MODES,
    KELVIN,
    ImplicitOperator,
    ThermalNetwork,
    heater_band,
    heater_demand_w,
    heater_index,
    relinearise_every,
    thermostat_on,
)
from emulator.protocol.catalogue import Payload, Plane, field
from emulator.reference_policy import REFERENCE
from emulator.validation import ConfigModel, config_error

TH_KEYS = ("full_v", "normal_v", "safe_v", "critical_v", "hw_off_v", "hw_on_v")
TH_FULL, TH_NORMAL, TH_SAFE, TH_CRIT, TH_HWOFF, TH_HWON = range(6)

THROTTLE_NAMES = ("none", "software", "hardware")

#: per-member overrides: keys a member may change without changing the shared structure (dotted; a list element
#: is addressed by its name, e.g. ``thermal.nodes.battery.initial_temp_degc``)
OVERRIDABLE = (
    "power.battery.initial_soc",
    "power.battery.cell_capacity_ah",
    "power.battery.cell_r_ohm",
    "power.mppt_efficiency",
    "power.arrays.<array>.degradation",
    "thermal.nodes.<node>.initial_temp_degc",
    "accelerator.default_level",
    "radiation.initial_dose_krad",
    "radiation.scale",
)
#: samples of (time x member) per environment chunk: bounds the chunk's memory (~25 MB at 810 members) and keeps its
#: (time x member x 3) arrays small enough for the CPU caches: 617 steps at 81 members computes a chunk ~2x faster per
#: sample than 2,469 (docs/bench.md "Fleet"); at least 60 steps, at most 3600
CHUNK_MEMBER_SAMPLES = 50_000
#: "any member?" on the per-step path: ``np.count_nonzero(a)`` is truthy exactly when ``a.any()`` is, at ~0.3 us
#: instead of ~1.3 (ndarray.any goes through numpy's Python-level reduction wrapper)
_nonzero = np.count_nonzero


_Strict = ConfigModel  # this module's tables


# -- configuration ---------------------------------------------------------------------------------------------
class FormationConfig(_Strict):
    """A lattice formation on the reference orbit (the top-level ``[orbit]``), as Suncatcher's cluster study."""

    #: lattice spacing along the radial axis: 100 m (physics-sources.md §1 "Spacing", conf. M)
    radial_spacing_m: float = Field(100.0, gt=0, le=1e5)
    #: lattice spacing along-track: 200 m (physics-sources.md §1 "Spacing"); 2x radial is the natural 2:1 CW ellipse
    along_track_spacing_m: float = Field(200.0, gt=0, le=1e5)
    #: members are the integer points (i, j) with i^2 + j^2 <= disc_radius^2: radius 5 gives 81 (physics-sources.md §1)
    disc_radius: float = Field(5.0, ge=0, le=60)
    #: phase of the relative ellipses at the epoch (turns the lattice in the (x, y/2) plane)
    phase_deg: float = Field(0.0, ge=-360, le=360)


class MemberConfig(_Strict):
    """One member's name, orbit (list mode) and overrides. In formation mode ``member`` says which member."""

    member: int | str | None = None
    name: str | None = Field(None, min_length=1, max_length=64)
    orbit: OrbitConfig | None = None
    #: dotted keys of OVERRIDABLE -> value (validated like the satellite config)
    overrides: dict[str, Any] = Field(default_factory=dict)


class BindConfig(_Strict):
    """Members driven by a real or simulated board over the board link."""

    members: list[int | str] = Field(default_factory=list)
    #: "prefixed": topics ``sat.<k>.eps.telemetry`` etc. (any number of bound members); "plain": the single-
    #: satellite topics (``eps.telemetry``), so unmodified firmware runs; allowed with exactly one bound member
    topics: Literal["prefixed", "plain"] = "prefixed"


class PolicyConfig(_Strict):
    """The built-in reference behaviour of unbound members (vectorised); the defaults are the one reference policy's
    numbers (``emulator.reference_policy``, also read by the reference board and the C stub)."""

    enabled: bool = True
    #: decisions every period_s of sim time: the reference control period
    period_s: float = Field(REFERENCE.period_s, gt=0, le=86400)
    #: the work the payload keeps running (busy fraction of the accelerator): 1.0 = always busy ("keep working")
    workload_utilisation: float = Field(1.0, ge=0, le=1)
    #: switch the payload rail off below this state of charge, back on above resume_above_soc
    shed_below_soc: float = Field(REFERENCE.soc_off, ge=0, le=1)
    resume_above_soc: float = Field(REFERENCE.soc_on, ge=0, le=1)
    #: below this state of charge run at the lowest DVFS level
    low_power_below_soc: float = Field(REFERENCE.soc_low, ge=0, le=1)
    #: one DVFS level down above hot_degc, one up below cool_degc (under the 87 degC software slowdown of
    #: physics-sources.md §4)
    hot_degc: float = Field(REFERENCE.temp_high_degc, ge=-100, le=300)
    cool_degc: float = Field(REFERENCE.temp_low_degc, ge=-100, le=300)
    #: after a thermal shutdown, reset the board once the die is below this
    restart_below_degc: float = Field(REFERENCE.temp_restart_degc, ge=-100, le=300)

    @model_validator(mode="after")
    def _bands(self) -> PolicyConfig:
        if not self.shed_below_soc < self.resume_above_soc:
            raise ValueError(f"shed_below_soc ({self.shed_below_soc}) must be below resume_above_soc "
                             f"({self.resume_above_soc})")
        if not self.cool_degc < self.hot_degc:
            raise ValueError(f"cool_degc ({self.cool_degc}) must be below hot_degc ({self.hot_degc})")
        return self


class ClusterSpec(_Strict):
    """The ``[cluster]`` table."""

    name: str = Field("cluster", min_length=1, max_length=64)
    formation: FormationConfig | None = None
    members: list[MemberConfig] = Field(default_factory=list)
    bind: BindConfig = Field(default_factory=BindConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    isl: IslConfig = Field(default_factory=IslConfig)


class ClusterConfig(_Strict):
    """A cluster: the member design (the single-satellite tables) plus the ``[cluster]`` table."""

    satellite: SatelliteConfig
    cluster: ClusterSpec


# -- members -------------------------------------------------------------------------------------------------
def disc_lattice(radius: float) -> np.ndarray:
    """Integer points (i, j) with i^2 + j^2 <= radius^2, ordered by i then j: (N, 2) int. radius 5: 81 points."""
    r = math.floor(radius + 1e-9)
    pts = [(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if i * i + j * j <= radius * radius + 1e-9]
    return np.array(pts, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class Members:
    """Who the members are: names, lattice points (formation) or orbits (list), configs, bound indices."""

    names: list[str]
    lattice: np.ndarray | None           # (N, 2) (i radial, j along-track), formation mode
    orbits: list[OrbitConfig] | None     # list mode
    configs: list[SatelliteConfig]       # per member (the template object where nothing is overridden)
    overridden: dict[int, dict[str, Any]]
    bound: list[int]

    @property
    def n(self) -> int:
        return len(self.names)

    def index(self, ref: Any, field: str) -> int:
        """A member index from an index or a name; CommandError naming ``field`` and the valid members."""
        n = self.n
        if isinstance(ref, bool):
            ref = None
        if isinstance(ref, int) and 0 <= ref < n:
            return ref
        if isinstance(ref, str) and ref in self.names:
            return self.names.index(ref)
        hint = suggest(ref, self.names) if isinstance(ref, str) else ""
        raise CommandError(f"{field}: no member {ref!r}{hint}; valid members are 0..{n - 1} or a name "
                           f"({self.names[0]} .. {self.names[-1]})", field=field, valid=[*range(n)] if n <= 128
                           else [0, n - 1])


def _member_override(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set one of OVERRIDABLE in a member's satellite-config dict (emulator.dotted: list items by name or [i])."""
    try:
        parts = parse_key(key)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", field=where, valid=list(OVERRIDABLE)) from None
    patterns = [p.split(".") for p in OVERRIDABLE]
    ok = any(len(p) == len(parts) and all(a == b or a.startswith("<") for a, b in zip(p, parts, strict=True))
             for p in patterns)
    if not ok:
        raise ConfigError(f"{where}: unknown override {key!r}{suggest(key, OVERRIDABLE)}; a member may override "
                          f"only: {', '.join(OVERRIDABLE)}", field=where, valid=list(OVERRIDABLE),
                          problems=[ConfigProblem(where, f"unknown override {key!r}", list(OVERRIDABLE),
                                                  kind="key")])
    try:
        set_dotted(data, key, value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.problems[0].message}", field=where, valid=exc.valid,
                          problems=[replace(p, path=where) for p in exc.problems]) from None


def resolve_members(cfg: ClusterConfig, bind: list[int | str] | None = None) -> Members:
    """Check the cluster table against the design and return the members. ConfigError names the key and the valid
    values (a member out of range, an unknown name, an unknown or invalid override, a bad binding)."""
    spec, sat = cfg.cluster, cfg.satellite
    form = spec.formation
    lattice = None
    orbits: list[OrbitConfig] | None = None
    if form is not None:
        lattice = disc_lattice(form.disc_radius)
        n = len(lattice)
        width = len(str(n - 1))
        names = [f"{spec.name}-{k:0{width}d}" for k in range(n)]
        for i, m in enumerate(spec.members):
            if m.orbit is not None:
                raise ConfigError(f"cluster.members[{i}].orbit: a formation places its members on the reference "
                                  "[orbit]; give members orbits only without [cluster.formation]",
                                  field=f"cluster.members[{i}].orbit")
            if m.member is None:
                raise ConfigError(f"cluster.members[{i}].member: in formation mode say which member this entry "
                                  f"addresses (0..{n - 1} or a name)", field=f"cluster.members[{i}].member",
                                  valid=[0, n - 1])
    else:
        if not spec.members:
            raise ConfigError("cluster: give [cluster.formation] (a lattice on the reference [orbit]) or a list of "
                              "[[cluster.members]] with their orbits", field="cluster.formation")
        n = len(spec.members)
        width = len(str(n - 1))
        names = [m.name or f"{spec.name}-{k:0{width}d}" for k, m in enumerate(spec.members)]
        orbits = [m.orbit if m.orbit is not None else sat.orbit for m in spec.members]
        for i, m in enumerate(spec.members):
            if m.member is not None:
                raise ConfigError(f"cluster.members[{i}].member: without a formation the list itself defines the "
                                  "members (entry i is member i); leave member out", field=f"cluster.members[{i}]"
                                  ".member")
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise ConfigError(f"cluster.members: duplicate member name {dup!r}", field="cluster.members")
    probe = Members(names, lattice, orbits, [], {}, [])
    configs = [sat] * n
    overridden: dict[int, dict[str, Any]] = {}
    seen: set[int] = set()
    for i, m in enumerate(spec.members):
        where = f"cluster.members[{i}]"
        k = i if form is None else _config_index(probe, m.member, f"{where}.member")
        if form is not None and m.name is not None:
            if m.name in names and names.index(m.name) != k:
                raise ConfigError(f"{where}.name: {m.name!r} is already member {names.index(m.name)}",
                                  field=f"{where}.name")
            names[k] = m.name
        if k in seen:
            raise ConfigError(f"{where}.member: member {k} is configured twice", field=f"{where}.member")
        seen.add(k)
        if m.overrides:
            data = sat.model_dump(mode="python")
            for key, value in m.overrides.items():
                _member_override(data, key, value, f"{where}.overrides.{key}")
            try:
                configs[k] = SatelliteConfig.model_validate(data)
            except ValidationError as exc:
                err = config_error(exc, SatelliteConfig, where)
                raise ConfigError(f"{where}.overrides: {err.message}", field=f"{where}.overrides.{err.field}",
                                  valid=err.valid) from None
            overridden[k] = dict(m.overrides)
    probe = Members(names, lattice, orbits, configs, overridden, [])
    refs = spec.bind.members if bind is None else bind
    bound: list[int] = []
    for i, ref in enumerate(refs):
        k = _config_index(probe, ref, f"cluster.bind.members[{i}]")
        if k in bound:
            raise ConfigError(f"cluster.bind.members[{i}]: member {k} is bound twice",
                              field=f"cluster.bind.members[{i}]")
        bound.append(k)
    if spec.bind.topics == "plain" and len(bound) > 1:
        raise ConfigError(f"cluster.bind.topics: 'plain' topics need exactly one bound member (got {len(bound)}): "
                          "several boards on one link need the sat.<k>. prefixes", field="cluster.bind.topics",
                          valid=["prefixed"])
    return Members(names, lattice, orbits, configs, overridden, sorted(bound))


def _config_index(members: Members, ref: Any, field: str) -> int:
    try:
        return members.index(ref, field)
    except CommandError as exc:
        raise ConfigError(exc.message, field=field, valid=exc.valid) from None


# -- formation geometry --------------------------------------------------------------------------------------------
def cw_relative_state(lattice: np.ndarray, form: FormationConfig, n_rad_s: float,
                      t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members' positions (m) and velocities (m/s) in the reference's LVLH frame (x radial, y along-track, z cross-
    track), shape (n_t, N, 3): the periodic Clohessy-Wiltshire solution with no along-track drift (vy0 = -2 n x0),
    started at the lattice point turned by ``phase_deg`` in the (x, y/2) plane."""
    i = lattice[:, 0].astype(float) * form.radial_spacing_m
    j = lattice[:, 1].astype(float) * form.along_track_spacing_m
    ph = math.radians(form.phase_deg)
    # turn (x, y/2) by the phase: the same rotation the free motion makes in time ph / n
    x0 = i * math.cos(ph) + 0.5 * j * math.sin(ph)
    y0 = j * math.cos(ph) - 2.0 * i * math.sin(ph)
    th = n_rad_s * np.asarray(t_s, float)[:, None]
    c, s = np.cos(th), np.sin(th)
    x = x0 * c + 0.5 * y0 * s
    y = y0 * c - 2.0 * x0 * s
    vx = n_rad_s * (-x0 * s + 0.5 * y0 * c)
    vy = n_rad_s * (-y0 * s - 2.0 * x0 * c)
    z = np.zeros_like(x)
    return np.stack([x, y, z], axis=-1), np.stack([vx, vy, z], axis=-1)


def lvlh_to_inertial(r_ref_km: np.ndarray, v_ref_km_s: np.ndarray, rel_m: np.ndarray,
                     rel_v_m_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members' inertial positions (km) and velocities (km/s), (n_t, N, 3), from LVLH offsets of the reference."""
    rn = np.linalg.norm(r_ref_km, axis=-1, keepdims=True)
    xh = r_ref_km / rn
    h = np.cross(r_ref_km, v_ref_km_s)
    hn = np.linalg.norm(h, axis=-1, keepdims=True)
    zh = h / hn
    yh = np.cross(zh, xh)
    w = (hn / (rn * rn))[:, :, None]  # orbit rate of the LVLH frame, rad/s, (n, 1, 1)
    rx, ry, rz = rel_m[..., 0:1], rel_m[..., 1:2], rel_m[..., 2:3]
    vx, vy, vz = rel_v_m_s[..., 0:1], rel_v_m_s[..., 1:2], rel_v_m_s[..., 2:3]
    X, Y, Z = xh[:, None, :], yh[:, None, :], zh[:, None, :]
    r = r_ref_km[:, None, :] + 1e-3 * (rx * X + ry * Y + rz * Z)
    # transport theorem: d/dt of the rotating basis adds w x rho (w along z: z x x = y, z x y = -x)
    v = v_ref_km_s[:, None, :] + 1e-3 * ((vx - w * ry) * X + (vy + w * rx) * Y + vz * Z)
    return r, v


# -- environment -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterChunk:
    """The environment of every member at ``n`` instants: arrays (n, N, ...) (``t_ns``, ``sun_*``, ``solar_flux``
    (n,)). Fields mean what they mean in :class:`~emulator.models.environment.EnvironmentChunk`."""

    t_ns: np.ndarray
    r_eci_km: np.ndarray
    v_eci_km_s: np.ndarray
    sun_unit_eci: np.ndarray
    sun_dist_au: np.ndarray
    solar_flux_w_m2: np.ndarray
    sunlit_frac: np.ndarray
    beta_deg: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_km: np.ndarray
    local_solar_time_h: np.ndarray
    face_solar_w_m2: np.ndarray
    face_albedo_w_m2: np.ndarray
    face_ir_w_m2: np.ndarray
    tracking_solar_w_m2: np.ndarray
    in_saa: np.ndarray
    in_polar_horn: np.ndarray
    rad_flux_factor: np.ndarray
    dose_rate_rad_s: np.ndarray

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])


class ClusterEnvironment:
    """Environment of N members on a formation or on their own orbits, vectorised over (time x member)."""

    def __init__(self, ref_orbit: OrbitConfig, config: EnvironmentConfig, epoch_utc: dt.datetime, *,
                 lattice: np.ndarray | None = None, formation: FormationConfig | None = None,
                 orbits: list[OrbitConfig] | None = None) -> None:
        if (lattice is None) == (orbits is None):
            raise ModelError("give a formation (lattice + formation) or a list of orbits", field="members")
        self.config = config
        self.ref = Environment(ref_orbit, config, epoch_utc)
        self.lattice = lattice
        self.formation = formation
        if lattice is not None:
            assert formation is not None
            self.n = len(lattice)
            a = R_EARTH_KM + self.ref.orbit.mean_alt_km
            self.n_rad_s = math.sqrt(MU_EARTH_KM3_S2 / a ** 3)
            self.envs: list[Environment] = []
            self._norm = np.full(self.n, self.ref.flux_norm)
            self._dose_per_s = np.full(self.n, self.ref.dose_per_s)
        else:
            assert orbits is not None
            self.n = len(orbits)
            cache: dict[str, Environment] = {}
            envs = []
            for o in orbits:
                key = o.model_dump_json()
                if key not in cache:
                    cache[key] = self.ref if o == ref_orbit else Environment(o, config, epoch_utc)
                envs.append(cache[key])
            self.envs = envs
            self._norm = np.array([e.flux_norm for e in envs])
            self._dose_per_s = np.array([e.dose_per_s for e in envs])
            self.n_rad_s = 0.0

    def states(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Members' TEME positions (km) and velocities (km/s), (n_t, N, 3)."""
        if self.lattice is not None:
            r0, v0 = self.ref.orbit.state(t_s)
            assert self.formation is not None
            rel, rel_v = cw_relative_state(self.lattice, self.formation, self.n_rad_s, t_s)
            return lvlh_to_inertial(r0, v0, rel, rel_v)
        rs, vs = [], []
        done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for e in self.envs:
            if id(e) not in done:
                done[id(e)] = e.orbit.state(t_s)
            r, v = done[id(e)]
            rs.append(r)
            vs.append(v)
        return np.stack(rs, axis=1), np.stack(vs, axis=1)

    def chunk(self, t0_ns: int, dt_ns: int, n: int) -> ClusterChunk:
        """The environment of every member at ``t0_ns + k dt_ns``, k = 0 .. n-1 (the single model's equations)."""
        if n < 1:
            raise ModelError(f"n: a chunk needs at least 1 sample, got {n}", field="n")
        if n > 1 and dt_ns <= 0:
            raise ModelError(f"dt_ns: must be > 0, got {dt_ns}", field="dt_ns")
        N = self.n
        t_ns = np.int64(t0_ns) + np.int64(dt_ns) * np.arange(n, dtype=np.int64)
        t_s = t_ns.astype(float) * 1e-9
        orb = self.ref.orbit
        orb.check_range(float(t_s[0]), float(t_s[-1]))
        cfg = self.config
        r3, v3 = self.states(t_s)
        M = n * N
        r = r3.reshape(M, 3)
        v = v3.reshape(M, 3)
        sun_u, au = orb.sun(t_s)
        flux_t = cfg.solar_constant_w_m2 / (au * au)
        g = along_orbit(cfg, r, v, np.repeat(sun_u, N, axis=0), np.repeat(au, N), np.repeat(orb.gmst(t_s), N),
                        np.repeat(np.mod(orb.fr0 + t_s / 86400.0, 1.0) * 24.0, N))
        raw, in_saa, in_horn = self.ref.raw_flux(np.repeat(t_s, N), g.lat_deg, g.lon_deg, g.r_ecef_km)
        factor = raw * np.tile(self._norm, n)
        dose = factor * np.tile(self._dose_per_s, n)

        def sh(a: np.ndarray) -> np.ndarray:
            return a.reshape((n, N, *a.shape[1:]))

        return ClusterChunk(
            t_ns=t_ns, r_eci_km=r3, v_eci_km_s=v3, sun_unit_eci=sun_u, sun_dist_au=au, solar_flux_w_m2=flux_t,
            sunlit_frac=sh(g.sunlit_frac), beta_deg=sh(g.beta_deg), lat_deg=sh(g.lat_deg), lon_deg=sh(g.lon_deg),
            alt_km=sh(g.alt_km), local_solar_time_h=sh(g.local_solar_time_h), face_solar_w_m2=sh(g.face_solar_w_m2),
            face_albedo_w_m2=sh(g.face_albedo_w_m2), face_ir_w_m2=sh(g.face_ir_w_m2),
            tracking_solar_w_m2=sh(g.tracking_solar_w_m2), in_saa=sh(in_saa), in_polar_horn=sh(in_horn),
            rad_flux_factor=sh(factor), dose_rate_rad_s=sh(dose))


# -- power ------------------------------------------------------------------------------------------------------
class PowerArrays:
    """:class:`~emulator.models.power.PowerSystem` for N members: state (N,) or (rails|arrays, N); same equations.

    Events are collected as (member, topic, payload) in :attr:`events`."""

    def __init__(self, cfg: PowerConfig, n: int, *, initial_soc: np.ndarray, cell_capacity_ah: np.ndarray,
                 cell_r_ohm: np.ndarray, mppt_efficiency: np.ndarray, degradation: np.ndarray) -> None:
        self.cfg = cfg
        self.n = n
        b = cfg.battery
        self.ns = b.cells_series
        self.np_alive = np.full((b.cells_series, n), b.cells_parallel, dtype=np.int64)
        self.cell_q_c = np.asarray(cell_capacity_ah, float) * 3600.0
        self.soc_pts = np.array([p[0] for p in b.ocv_table])
        self.v_pts = np.array([p[1] for p in b.ocv_table])
        self.cum_ocv = np.array(pk.cumulative_ocv(self.soc_pts.tolist(), self.v_pts.tolist()))
        # the table as segments (pk.ocv_segments): bounds, s0, v0, slope (a tuple: constants, not member state)
        self._ocv = tuple(np.array(t) for t in pk.ocv_segments(self.soc_pts.tolist(), self.v_pts.tolist()))
        self.r25 = np.asarray(cell_r_ohm, float)
        self.r_b = b.r_activation_k
        self.eoc_cell = b.end_of_charge_v_cell
        self.chg_min_t = b.charge_min_temp_degc
        self.max_charge_c = b.max_charge_c
        self.max_discharge_c = b.max_discharge_c
        self.soc = np.array(initial_soc, float)
        self.battery_connected = np.ones(n, bool)
        self._update_pack()
        # arrays
        self.array_names = [a.name for a in cfg.arrays]
        self.array_strings = np.array([a.strings for a in cfg.arrays])
        self.base_gain = np.array([a.area_m2 * a.efficiency for a in cfg.arrays])[:, None] * np.asarray(degradation)
        self.array_alive = np.ones((len(cfg.arrays), n))
        self.array_failed = np.zeros((len(cfg.arrays), n), dtype=np.int64)
        self.gain = self.base_gain * self.array_alive
        self.tc = np.array([a.temp_coeff_per_degc for a in cfg.arrays])[:, None]
        self.tref = np.array([a.ref_temp_degc for a in cfg.arrays])[:, None]
        self.array_w = np.zeros((len(cfg.arrays), n))
        self.mppt = np.asarray(mppt_efficiency, float)
        # rails: constants (R, 1), state (R, N)
        rails = cfg.rails
        self.rail_names = [r.name for r in rails]
        self.rail_index = {r.name: i for i, r in enumerate(rails)}
        R = len(rails)

        def col(vals: list[float], dtype: Any = float) -> np.ndarray:
            return np.array(vals, dtype=dtype)[:, None]

        self.regulated = col([r.kind == "regulated" for r in rails], bool)
        #: converter dropout (V); -inf: an ideal converter (pk.rail_voltage)
        self.dropout_v = col([-math.inf if r.dropout_v is None else r.dropout_v for r in rails])
        self.v_nom = col([r.voltage_v or 0.0 for r in rails])
        self.eff = col([r.efficiency for r in rails])
        self.limit_a = col([r.current_limit_a for r in rails])
        self.trip_s = col([r.trip_delay_s for r in rails])
        self.retry_off_s = col([r.retry_off_s for r in rails])
        self.max_retries = col([r.max_retries for r in rails], np.int64)
        self.window_s = col([r.retry_window_s for r in rails])
        self.min_mode = col([pk.MIN_MODE[r.shed_mode] for r in rails], np.int64)
        self.static_w = np.zeros((R, 1))
        for ld in cfg.loads:
            self.static_w[self.rail_index[ld.rail], 0] += ld.power_w
        self.shed_order = sorted(range(R), key=lambda i: -int(self.min_mode[i, 0]))
        z = np.zeros((R, n))
        self.cmd_on = np.repeat(col([r.default_on for r in rails], bool), n, axis=1)
        self.tripped = np.zeros((R, n), bool)
        self.latched = np.zeros((R, n), bool)
        self.over_s, self.off_s, self.good_s = z.copy(), z.copy(), z.copy()
        self.retries = np.zeros((R, n), np.int64)
        self.trips = np.zeros((R, n), np.int64)
        self.short_a = z.copy()
        self.on = np.zeros((R, n), bool)
        self.v_out, self.i_out, self.p_out, self.p_in, self.frac, self.heat_w = (z.copy() for _ in range(6))
        th = cfg.shed.resolved(self.ns)
        self.th = np.repeat(np.array([th[k] for k in TH_KEYS])[:, None], n, axis=1)
        self.ocv_v = self.pack_ocv(self.soc)
        self.bus_v = self.ocv_v.copy()
        self.battery_a = np.zeros(n)
        self.battery_r_ohm = self.pack_r(np.full(n, 25.0))
        self.mode = self._initial_mode(self.bus_v)
        self.s_since_full = np.zeros(n)
        self.hold_s = np.zeros(n)
        self.array_total_w = np.zeros(n)
        self.shunt_w = np.zeros(n)
        self.array_j, self.load_j, self.converter_loss_j = np.zeros(n), np.zeros(n), np.zeros(n)
        self.battery_loss_j, self.mppt_loss_j, self.shunt_j, self.fault_loss_j = (np.zeros(n) for _ in range(4))
        self.stored0_j = self.stored_j()
        self.mode_changes = np.zeros(n, np.int64)
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        # fast-path flags: which rare cases are live (retry timers, holds, lost cells)
        self._any_tripped = self._hold_any = False
        self._all_connected = True
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self._set_rail_outputs()

    # -- battery ------------------------------------------------------------------------------------------------
    def _update_pack(self) -> None:
        (self.connected_groups, self.np_min, self.q_pack_c, self.r_sum_inv, self.i_chg_max, self.i_dis_max,
         self.v_eoc) = pk.pack_makeup(self.np_alive, self.cell_q_c, self.max_charge_c, self.max_discharge_c,
                                      self.eoc_cell, ARRAY)

    def _cell_ocv(self, soc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, cell OCV) of each member's ``soc`` on the OCV table (pk.ocv_segment, pk.cell_ocv)."""
        bounds, s0, v0, slope = self._ocv
        j = pk.ocv_segment(soc, bounds, ARRAY)
        return j, pk.cell_ocv(soc, s0[j], v0[j], slope[j])

    def pack_ocv(self, soc: np.ndarray) -> np.ndarray:
        return self._cell_ocv(soc)[1] * self.connected_groups

    def pack_r(self, temp_degc: np.ndarray) -> np.ndarray:
        return pk.pack_resistance(self.r25, self.r_b, temp_degc, self.r_sum_inv, ARRAY)

    def stored_j(self) -> np.ndarray:
        """Chemical energy of each pack: Q_pack * integral_0^soc OCV_pack(s) ds (J)."""
        e = self._cell_energy(self.soc)
        return np.where(self.battery_connected, self.q_pack_c * self.connected_groups * e, 0.0)

    # -- mode machine -------------------------------------------------------------------------------------------
    def _initial_mode(self, v: np.ndarray) -> np.ndarray:
        th = self.th
        return pk.initial_mode(v, th[TH_HWOFF], th[TH_CRIT], th[TH_SAFE], th[TH_FULL], ARRAY).astype(np.int64)

    def _update_mode(self, v: np.ndarray, mask: np.ndarray) -> None:
        th = self.th
        old = self.mode
        m = pk.next_mode(old, v, *th[[TH_HWOFF, TH_HWON, TH_CRIT, TH_SAFE, TH_NORMAL, TH_FULL]], self.hold_s, ARRAY)
        m = np.where(mask, m, old)
        changed = m != old
        if _nonzero(changed):
            for k in np.flatnonzero(changed).tolist():
                self.events.append((k, "eps.mode.changed", {"mode": MODE_NAMES[m[k]], "previous": MODE_NAMES[old[k]],
                                                            "battery_v": float(v[k])}))
            self.mode_changes += changed
            self.s_since_full = np.where(changed & (m == FULL), 0.0, self.s_since_full)
            self.mode = m
        self._bounds = self._mode_bounds()

    def _mode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per member, the battery voltages [lo, hi) within which the mode machine changes nothing (the step checks
        these two bounds and runs the machine only when a member leaves them)."""
        th = self.th
        return pk.mode_band(self.mode, *th[[TH_HWOFF, TH_HWON, TH_CRIT, TH_SAFE, TH_NORMAL, TH_FULL]],
                            self.hold_s > 0.0, ARRAY)

    def thresholds(self, k: int) -> dict[str, float]:
        return {key: float(self.th[i, k]) for i, key in enumerate(TH_KEYS)}

    def set_thresholds(self, k: int, **values: float | None) -> dict[str, float]:
        new = updated_thresholds(self.thresholds(k), values, self.ns)
        self.th[:, k] = [new[key] for key in TH_KEYS]
        self._bounds = None
        return new

    # -- rails --------------------------------------------------------------------------------------------------
    def rail(self, name: str) -> int:
        i = self.rail_index.get(name)
        if i is None:
            valid = self.rail_names
            raise CommandError(f"unknown rail {name!r}{suggest(name, valid)}; valid rails: {', '.join(valid)}",
                               field="payload.rail", valid=valid)
        return i

    def set_rail(self, k: int, name: str, on: bool) -> None:
        self.cmd_on[self.rail(name), k] = on
        self._set_rail_outputs()

    def reset_rail(self, k: int, name: str) -> None:
        i = self.rail(name)
        self.tripped[i, k] = self.latched[i, k] = False
        self.retries[i, k] = 0
        self.over_s[i, k] = self.off_s[i, k] = 0.0
        self._set_rail_outputs()

    def _set_rail_outputs(self) -> None:
        self.on = on = pk.rail_conducts(self.cmd_on, self.tripped, self.mode, self.min_mode, ARRAY)
        self.v_out = np.where(on, pk.rail_voltage(self.regulated, self.v_nom, self.dropout_v, self.bus_v, ARRAY), 0.0)

    # -- faults -------------------------------------------------------------------------------------------------
    def set_short(self, k: int, rail: str, extra_a: float) -> None:
        self.short_a[self.rail(rail), k] = extra_a

    def _array(self, name: str) -> int:
        if name not in self.array_names:
            raise CommandError(f"unknown array {name!r}{suggest(name, self.array_names)}", field="params.array",
                               valid=self.array_names)
        return self.array_names.index(name)

    def fail_strings(self, k: int, array: str, strings: int) -> None:
        i = self._array(array)
        total = int(self.array_strings[i])
        n = strings_failed_after(array, total, int(self.array_failed[i, k]), strings)
        self.array_failed[i, k] = n
        self.array_alive[i, k] = 1.0 - n / total
        self.gain = self.base_gain * self.array_alive

    def restore_strings(self, k: int, array: str, strings: int) -> None:
        i = self._array(array)
        n = max(0, int(self.array_failed[i, k]) - strings)
        self.array_failed[i, k] = n
        self.array_alive[i, k] = 1.0 - n / int(self.array_strings[i])
        self.gain = self.base_gain * self.array_alive

    def _groups(self, k: int) -> list[int]:
        """Rows of member k's series groups still in the string (a shorted group, -1, is gone from it)."""
        return [g for g in range(self.np_alive.shape[0]) if self.np_alive[g, k] >= 0]

    def lose_cell(self, k: int, group: int, mode: str = "open") -> None:
        """As PowerSystem.lose_cell for member k: "open" removes a cell from its parallel group, "short" shorts the
        group (one fewer series cell); the chemical energy no longer reachable is booked as a fault loss."""
        groups = self._groups(k)
        if not 0 <= group < len(groups):
            raise CommandError(f"group must be within 0..{len(groups) - 1}", field="params.group",
                               valid=list(range(len(groups))))
        g = groups[group]
        if self.np_alive[g, k] == 0:
            raise CommandError(f"series group {group} has no live cells left", field="params.group")
        if mode not in ("open", "short"):
            raise CommandError(f"unknown cell failure mode {mode!r}", field="params.mode", valid=["open", "short"])
        before = float(self.stored_j()[k])
        if mode == "open":
            self.np_alive[g, k] -= 1
        else:
            self.np_alive[g, k] = -1
        rest = [int(self.np_alive[x, k]) for x in self._groups(k)]
        if not rest or min(rest) == 0:
            self.battery_connected[k] = False
            self.battery_a[k] = 0.0
            self._all_connected = False
            self._bounds = None
        self._update_pack()
        self.fault_loss_j[k] += before - float(self.stored_j()[k])
        self.events.append((k, "eps.battery.fault", {"mode": mode, "group": group,
                                                     "connected": bool(self.battery_connected[k])}))

    # -- the step -----------------------------------------------------------------------------------------------
    def step(self, dt_s: float, solar_w_m2: np.ndarray, array_temps_degc: np.ndarray, battery_temp_degc: np.ndarray,
             loads_w: np.ndarray) -> None:
        """Advance every member by ``dt_s``. ``solar_w_m2`` and ``array_temps_degc`` are (A, N), ``loads_w`` (R, N)
        (demand besides the static loads), ``battery_temp_degc`` (N,). As PowerSystem.step, member by member."""
        if dt_s <= 0:
            raise ModelError(f"dt_s must be > 0, got {dt_s}", field="dt_s")
        # 1. arrays at the maximum power point
        aw = pk.array_power(solar_w_m2, self.gain, self.tc, array_temps_degc, self.tref, ARRAY)
        self.array_w = aw
        p_arr = aw.sum(axis=0)
        p_avail = p_arr * self.mppt
        # 2. rails and latching current limiters
        on = self.on
        (self.i_out, self.p_out, p_in, self.heat_w, self.frac, self.over_s, self.good_s, self.retries,
         trip) = pk.rail_step(on, self.static_w + loads_w, self.v_out, self.short_a, self.limit_a, self.over_s,
                              self.good_s, self.retries, self.window_s, self.trip_s, self.eff, dt_s, ARRAY)
        self.p_in = p_in
        if _nonzero(trip):
            self.tripped |= trip
            self.trips += trip
            self.off_s = np.where(trip, 0.0, self.off_s)
            self.over_s = np.where(trip, 0.0, self.over_s)
            self.latched |= trip & (self.retries >= self.max_retries)
            for r, k in zip(*np.nonzero(trip), strict=True):
                self.events.append((int(k), "eps.rail.tripped", {
                    "rail": self.rail_names[r], "current_a": float(self.i_out[r, k]),
                    "trips": int(self.trips[r, k]), "latched": bool(self.latched[r, k])}))
        # rails that were off: retry timers of tripped (not latched) limiters
        if self._any_tripped:
            self.off_s, retry = pk.retry_step(~on & self.tripped & ~self.latched, self.off_s, self.retry_off_s, dt_s,
                                              ARRAY)
            if _nonzero(retry):
                self.tripped &= ~retry
                self.retries += retry
                self.over_s = np.where(retry, 0.0, self.over_s)
                self.good_s = np.where(retry, 0.0, self.good_s)
        self._any_tripped = bool(_nonzero(self.tripped))
        p_loads_in = p_in.sum(axis=0)

        # 3. battery: P = V_term I with V_term = OCV + I R, two passes (mean OCV) or more after an over-current shed
        conn = self.battery_connected
        soc0 = self.soc
        rr = self.pack_r(battery_temp_degc)
        cold = battery_temp_degc < self.chg_min_t
        q = np.where(self.q_pack_c > 0, self.q_pack_c, 1.0)
        seg0, c0 = self._cell_ocv(soc0)
        ocv = c0 * self.connected_groups
        everyone = np.ones(len(soc0), dtype=bool)
        i, shunt, p_loads_in, _ = self._solve_and_shed(everyone, p_avail, p_loads_in, ocv, rr, cold)
        # the next pass takes the mean OCV over the step (the mid-SoC OCV on one segment of the table, its integral
        # across a breakpoint); a member that sheds in it solves again from the mean over its new current (as
        # PowerSystem.step; every shed removes a rail, so this ends)
        todo = i != 0.0
        while _nonzero(todo):
            ocv = np.where(todo, self._mean_ocv(soc0, seg0, i, dt_s, q), ocv)
            i2, shunt2, p_loads_in, shed = self._solve_and_shed(todo, p_avail, p_loads_in, ocv, rr, cold)
            i = np.where(todo, i2, i)
            shunt = np.where(todo, shunt2, shunt)
            todo = shed & (i != 0.0)
        soc, bus, brown, shunt, loss, empty = pk.battery_step_end(conn, soc0, i, ocv, rr, q, shunt, p_avail, dt_s,
                                                                  ARRAY)
        if _nonzero(empty):
            for k in np.flatnonzero(empty).tolist():
                self.events.append((k, "eps.mode.changed", {"mode": "off", "previous": MODE_NAMES[self.mode[k]],
                                                            "battery_v": float(bus[k]), "reason": "battery empty"}))
            self.mode_changes += empty & (self.mode != OFF)
            self.mode = np.where(empty, OFF, self.mode)
            self._bounds = None
        if self._all_connected:
            self.soc = soc
            self.ocv_v, self.battery_r_ohm, self.battery_a = ocv, rr, i
        else:
            self.soc = np.where(conn, soc, soc0)
            self.ocv_v = np.where(conn, ocv, self.ocv_v)
            self.battery_r_ohm = np.where(conn, rr, self.battery_r_ohm)
            self.battery_a = np.where(conn, i, self.battery_a)
            loss = np.where(conn, loss, 0.0)
            disc = ~conn
            bus_o, shunt_o, brown_o, dead = pk.open_pack_step(p_avail, p_loads_in, p_arr, self.eoc_cell,
                                                              self.connected_groups, ARRAY)
            shunt = np.where(disc, shunt_o, shunt)
            brown = np.where(disc, brown_o, brown)
            bus = np.where(disc, bus_o, bus)
            dead &= disc
            for k in np.flatnonzero(dead & (self.mode != OFF)).tolist():
                self.events.append((k, "eps.mode.changed", {"mode": "off", "previous": MODE_NAMES[self.mode[k]],
                                                            "battery_v": 0.0}))
            self.mode_changes += dead & (self.mode != OFF)
            self.mode = np.where(dead, OFF, self.mode)
            self._bounds = None
        self.bus_v = bus
        self.battery_loss_j, self.shunt_j = pk.battery_ledger_step(self.battery_loss_j, self.shunt_j, loss, shunt, dt_s)
        if _nonzero(brown < 1.0):
            self.p_out, self.p_in, self.frac, self.heat_w = pk.brown_out(self.p_out, self.p_in, self.frac, self.heat_w,
                                                                         brown)
        # 4. ledger
        e_out = self.p_out.sum(axis=0)
        e_in = self.p_in.sum(axis=0)
        self.array_j, self.mppt_loss_j, self.load_j, self.converter_loss_j = pk.ledger_step(
            self.array_j, self.mppt_loss_j, self.load_j, self.converter_loss_j, p_arr, p_avail, e_out, e_in, dt_s)
        self.array_total_w = p_arr
        self.shunt_w = shunt
        self.s_since_full += dt_s
        if self._hold_any:
            self.hold_s = np.where(self.hold_s > 0.0, self.hold_s - dt_s, self.hold_s)
            self._hold_any = bool(_nonzero(self.hold_s > 0.0))
            if not self._hold_any:
                self._bounds = None  # the bounds were computed with rising transitions on hold
        # 5. mode machine on the battery voltage, then rail outputs for the next step
        if self._bounds is None or self._hold_any:
            self._update_mode(self.bus_v, conn)
        else:
            lo, hi = self._bounds
            if _nonzero(((self.bus_v < lo) | (self.bus_v >= hi)) & conn):
                self._update_mode(self.bus_v, conn)
        if not self._all_connected:
            self.mode = np.where(~conn & (self.bus_v > 0.0) & (self.mode == OFF), CRITICAL, self.mode)
            self._bounds = None
        self._set_rail_outputs()

    def _mean_ocv(self, soc0: np.ndarray, seg0: np.ndarray, i: np.ndarray, dt_s: float, q: np.ndarray) -> np.ndarray:
        """Pack OCV averaged over the SoC a step at current ``i`` sweeps from ``soc0`` (in table segment ``seg0``):
        exact on a piecewise-linear table."""
        mid = pk.mid_step_soc(soc0, i, dt_s, q, ARRAY)
        if self._all_connected:
            ocv = self.pack_ocv(mid)
        else:
            with np.errstate(invalid="ignore"):  # a disconnected pack's current (R = 0) is meaningless, unused
                ocv = self.pack_ocv(mid)
        end = soc0 + i * dt_s / q
        cross = pk.crosses_breakpoint(soc0, end, seg0, pk.ocv_segment(end, self._ocv[0], ARRAY))
        if _nonzero(cross):
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = pk.mean_ocv_between(self._cell_energy(soc0), self._cell_energy(end), soc0, end)
                ocv = np.where(cross, mean * self.connected_groups, ocv)
        return ocv

    def _cell_energy(self, soc: np.ndarray) -> np.ndarray:
        """Integral of cell OCV over soc from 0 (V; times coulombs gives joules)."""
        return pk.cell_energy_per_c(soc, self.soc_pts, self.v_pts, self.cum_ocv, ARRAY)

    def _solve_and_shed(self, members: np.ndarray, p_avail: np.ndarray, p_loads_in: np.ndarray, ocv: np.ndarray,
                        rr: np.ndarray, cold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_solve`, then the over-current shed of the connected ``members`` whose discharge does not fit;
        (current, shunt, loads after shedding, the members that shed)."""
        i, shunt, bad = self._solve(p_avail, p_loads_in, ocv, rr, cold)
        bad &= self.battery_connected & members
        if _nonzero(bad):
            p_loads_in = p_loads_in.copy()
            for k in np.flatnonzero(bad).tolist():
                p_loads_in[k], i[k] = self._overcurrent_shed(k, p_avail[k], p_loads_in[k], ocv[k], rr[k])
                shunt[k] = pk.shed_shunt(p_avail[k], p_loads_in[k], ocv[k], i[k], rr[k])
            # the array now covers the loads left: the charge branch, with its limits
            charge = bad & (p_avail - p_loads_in >= 0.0) & (i != 0.0)
            if _nonzero(charge):
                i_c, shunt_c, _ = self._solve(p_avail, p_loads_in, ocv, rr, cold)
                i = np.where(charge, i_c, i)
                shunt = np.where(charge, shunt_c, shunt)
        return i, shunt, p_loads_in, bad

    def _solve(self, p_avail: np.ndarray, p_loads_in: np.ndarray, ocv: np.ndarray, rr: np.ndarray,
               cold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Battery current (> 0 charging), shunted power and the members whose discharge does not fit (over-
        current: the terminal voltage would collapse or the current exceeds the discharge limit)."""
        args = (p_avail - p_loads_in, ocv, rr, self.v_eoc, self.i_chg_max, self.i_dis_max, cold, ARRAY)
        if self._all_connected:
            return pk.battery_current(*args)
        with np.errstate(divide="ignore", invalid="ignore"):  # a disconnected pack (R = 0): its values are unused
            return pk.battery_current(*args)

    def _overcurrent_shed(self, k: int, p_avail: float, p_loads_in: float, ocv: float, rr: float) -> tuple[float,
                                                                                                             float]:
        """Member k's discharge does not fit: shed rails by priority (payload first) until it does."""
        order = self.shed_order
        p_loads_in, i, n = pk.overcurrent_shed(p_avail, p_loads_in, ocv, rr, float(self.i_dis_max[k]),
                                               [float(self.p_in[r, k]) for r in order])
        for r in order[:n]:
            if self.p_in[r, k] <= 0.0:
                continue
            self.p_out[r, k] = self.p_in[r, k] = self.frac[r, k] = self.heat_w[r, k] = self.i_out[r, k] = 0.0
            new = pk.shed_mode(int(self.min_mode[r, 0]))
            self.hold_s[k] = self.cfg.overcurrent_hold_s
            self._hold_any = True
            self._bounds = None
            if new < self.mode[k]:
                self.events.append((k, "eps.mode.changed", {"mode": MODE_NAMES[new],
                                                            "previous": MODE_NAMES[self.mode[k]],
                                                            "battery_v": float(self.bus_v[k]),
                                                            "reason": "battery over-current"}))
                self.mode[k] = new
                self.mode_changes[k] += 1
        return p_loads_in, i

    def balance(self) -> dict[str, np.ndarray]:
        """Energy ledger per member plus the closing residual (J)."""
        stored = self.stored_j()
        d = {"array_j": self.array_j, "load_j": self.load_j, "converter_loss_j": self.converter_loss_j,
             "battery_loss_j": self.battery_loss_j, "mppt_loss_j": self.mppt_loss_j, "shunt_j": self.shunt_j,
             "fault_loss_j": self.fault_loss_j, "stored_j": stored, "delta_stored_j": stored - self.stored0_j}
        d["residual_j"] = (self.array_j - self.load_j - self.converter_loss_j - self.battery_loss_j - self.mppt_loss_j
                           - self.shunt_j - self.fault_loss_j - d["delta_stored_j"])
        return d


# -- thermal ------------------------------------------------------------------------------------------------------
class ThermalBatch:
    """One thermal network structure, N members' temperatures ``T`` (nodes, N) in kelvin, one matmul per step.

    The update is the single network's backward Euler with T^4 linearised about T_lin (see
    :mod:`emulator.models.thermal`), with one T_lin shared by all members: the fleet mean, refreshed when it moves
    more than ``relinearise_k`` (checked every ~10 s). A member away from the mean takes a frozen-Jacobian step
    about the mean: the fixed point is still its exact steady state. Every heat input is a row of ``X``:

        T_new = B @ [T; T^4; Q_env; F; 1],   B = [A^-1 C/dt', -A^-1 k, A^-1, A^-1 M, A^-1 (q_static + k T_sink^4)]

    with ``F`` the electrical features (rail losses, heater and accelerator power, battery I^2 R, MPPT loss, shunt,
    array extraction) and ``M`` (nodes x features) where each one goes.
    """

    def __init__(self, net: ThermalNetwork, n: int, T0: np.ndarray, features: np.ndarray, static_q: np.ndarray) -> None:
        self.net = net
        self.n_nodes = net.n
        self.n = n
        self.T = np.array(T0, float)
        self.M = np.asarray(features, float)
        self.static_q = np.asarray(static_q, float)
        nn, nf = net.n, self.M.shape[1]
        self.X = np.empty((3 * nn + nf + 1, n))
        self.X[-1] = 1.0
        self._f0 = 3 * nn
        self._dt = -1.0
        self._t_lin = self.T.mean(axis=1)
        self._rad = np.array(net.radiating_nodes, dtype=np.intp)
        self._operator = ImplicitOperator(net, features=self.M, static_q_w=self.static_q)
        self._check_every = 1
        self._countdown = 1
        self.refreshes = 0

    @property
    def features(self) -> np.ndarray:
        """The feature rows of X (fill them before :meth:`step`)."""
        return self.X[self._f0:-1]

    def _refresh(self, dt_s: float) -> None:
        self._check_every = self._countdown = relinearise_every(dt_s)
        self._t_lin = self.T.mean(axis=1)
        self.B, _ = self._operator.build(self._t_lin, dt_s)
        self._dt = dt_s
        self.refreshes += 1

    def step(self, dt_s: float, env_q: np.ndarray) -> None:
        """Advance by ``dt_s`` with environment heat ``env_q`` (nodes, N); the feature rows must be filled."""
        if dt_s != self._dt:
            if not dt_s > 0:
                raise ModelError(f"dt_s must be > 0, got {dt_s}", field="dt_s")
            self._refresh(dt_s)
        T = self.T
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = self._check_every
            rad = self._rad
            if rad.size and np.abs(T[rad].mean(axis=1) - self._t_lin[rad]).max() > self.net.tol_k:
                self._refresh(dt_s)
        nn = self.n_nodes
        X = self.X
        X[:nn] = T
        t2 = T * T
        np.multiply(t2, t2, out=X[nn:2 * nn])
        X[2 * nn:3 * nn] = env_q
        self.T = self.B @ X


class HeaterArrays:
    """Heater thermostats for N members: modes, thresholds and states (heaters, N)."""

    def __init__(self, net: ThermalNetwork, n: int) -> None:
        hs = net.heaters
        self.names = [h.name for h in hs]
        self.node = np.array([net.index[h.node] for h in hs], dtype=np.intp)
        self.mode = np.repeat(np.array([HEATER_MODES.index(h.mode) for h in hs], np.int64)[:, None], n, axis=1)
        self.on_below = np.repeat(np.array([h.on_below_degc + KELVIN for h in hs])[:, None], n, axis=1)
        self.off_above = np.repeat(np.array([h.off_above_degc + KELVIN for h in hs])[:, None], n, axis=1)
        self.on = np.zeros((len(hs), n), bool)
        self.power_w = np.array([h.power_w for h in hs])[:, None]

    def demand(self, T: np.ndarray) -> np.ndarray:
        """Thermostats on the current temperatures; each heater's electrical demand (heaters, N), W."""
        if not self.names:
            return np.zeros((0, T.shape[1]))
        self.on = thermostat_on(T[self.node], self.on, self.mode == 0, self.mode == 1, self.on_below, self.off_above,
                                ARRAY)
        return heater_demand_w(self.on, self.power_w, ARRAY)

    def set(self, k: int, name: str, mode: str, on_below_degc: float | None,
            off_above_degc: float | None) -> dict[str, Any]:
        h = heater_index(self.names, name)
        lo, hi = heater_band(mode, float(self.on_below[h, k]) - KELVIN, float(self.off_above[h, k]) - KELVIN,
                             on_below_degc, off_above_degc)
        self.mode[h, k] = HEATER_MODES.index(mode)
        self.on_below[h, k] = lo + KELVIN
        self.off_above[h, k] = hi + KELVIN
        return {"heater": name, "mode": mode, "on_below_degc": lo, "off_above_degc": hi}


# -- accelerator ----------------------------------------------------------------------------------------------------
class AcceleratorArrays:
    """The accelerator board of N members with a reduced state machine, vectorised.

    Same power equation as :class:`~emulator.models.accelerator.AcceleratorBoard` (board base + leakage(T, TID, V)
    + utilisation x C V^2 f), the same DVFS table, thermal slowdowns with hysteresis and shutdown, boot time, supply
    brown-out, SEL current and damage time. Simplified: no job queue (a steady workload of busy fraction
    ``workload``; work is counted in inference units), no per-word ECC bookkeeping (SEUs are corrected, MBUs lose the
    running work), radiation events are counted rather than kept one by one. Arrivals use the single model's hazard
    inversion: the integrated intensity accumulates on an array and an event fires where it crosses the member's
    exponential(1) threshold, drawn from the member's own Generator (kind, chip, reboot draw likewise)."""

    def __init__(self, cfg: AcceleratorConfig, rad: RadiationConfig, n: int, rngs: list[np.random.Generator], *,
                 level: np.ndarray, initial_dose_krad: np.ndarray, scale: np.ndarray) -> None:
        self.cfg = c = cfg
        self.rad_cfg = rad
        self.n = n
        self.rngs = rngs
        self.chips = c.chips
        self.level_names = [lv.name for lv in c.dvfs]
        self.F, self.DYN, self.LEAK = (np.array(t) for t in dvfs_tables(c))
        self.sw_cap = self.level_names.index(c.sw_slowdown_level)
        self.leak_k = leakage_k_per_degc(c)
        self.unit_cycles = c.inference_unit_mcycles * 1e6
        self.damage_ns = round(rad.sel_damage_s * 1e9)
        self.flux_weight = rad.rate_source == "dose_rate_x_flux_factor"
        self.leak_tid = rad.leakage_per_krad * 1e-3
        self.state = np.full(n, S_OFF, np.int64)
        self.level = np.asarray(level, np.int64).copy()
        self.throttle = np.zeros(n, np.int64)
        self.supply_good = np.zeros(n, bool)
        self.thermal_latched = np.zeros(n, bool)
        self.boot_left_s = np.zeros(n)
        self.latch_t_ns = np.zeros(n, np.int64)
        self.load_w = np.zeros(n)
        self.utilisation = np.zeros(n)
        self.units_done = np.zeros(n)
        self.work_lost = np.zeros(n, np.int64)
        self.power_cycles = np.zeros(n, np.int64)
        # radiation
        w = np.array([0.0 if r is None else c.chips / r for r in rad.rad_per_event()])
        w_deg = w.copy()
        w_deg[1] *= rad.degraded_mbu_factor
        self._w = (w, w_deg)
        self._cdf = (kind_cdf(w.tolist()), kind_cdf(w_deg.tolist()))  # the kind's distribution, fresh and degraded
        self.dose_rad = np.asarray(initial_dose_krad, float) * 1e3
        self.degrade_at_rad = rad.tid_degraded_krad * 1e3
        self.degraded = self.dose_rad >= self.degrade_at_rad
        self.k_per_rad = np.where(self.degraded, w_deg.sum(), w.sum())
        self.scale_cfg = np.asarray(scale, float).copy()
        self.scale = self.scale_cfg.copy()
        self.fault_scales: list[list[float]] = [[] for _ in range(n)]
        self.hazard = np.zeros(n)
        self.next_hazard = np.array([float(g.exponential()) for g in rngs])
        self.exposure_rad = np.zeros(n)
        #: events drawn per kind (KINDS order) and member, and how many hurt (not masked / corrected)
        self.counts = np.zeros((len(KINDS), n), np.int64)
        self.effects = np.zeros((len(KINDS), n), np.int64)
        self.tid_events = np.zeros(n, np.int64)
        self.state_changes = np.zeros(n, np.int64)
        self._n_degraded = int(self.degraded.sum())
        self._hot_guard = hot_guard_degc(c)
        self._throttle_any = False
        self._op_key: tuple[int, int] | None = None
        self._op_cache: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(n), np.zeros(n), np.zeros(n))
        #: per state: utilisation floor (busy states get the workload's), powered, busy
        self._util_table = np.array([0.0, c.boot_utilisation, c.idle_utilisation, 0.0, 0.0, c.hung_utilisation, 0.0,
                                     0.0])
        self._ALIVE = np.array([s not in (S_OFF, S_FAILED) for s in range(8)])
        self._BUSY = np.array([s in (S_BUSY, S_THROTTLED) for s in range(8)])

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _op(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Effective clock (Hz), dynamic power at full utilisation (W) and leakage at the reference (W). Cached on the
        identity of the level and throttle arrays (they are replaced, never changed in place)."""
        key = (id(self.level), id(self.throttle))
        if key != self._op_key:
            self._op_cache = operating_point(self.level, self.throttle, self.sw_cap, self.cfg.hw_throttle_duty, self.F,
                                             self.DYN, self.LEAK, ARRAY)
            self._op_key = (id(self.level), id(self.throttle))
        return self._op_cache

    def clock_mhz(self) -> np.ndarray:
        running = (self.state >= S_BOOTING) & (self.state <= S_THROTTLED)
        return np.where(running, self._op()[0] / 1e6, 0.0)

    def set_scale(self, k: int, factors: list[float]) -> None:
        self.fault_scales[k] = list(factors)
        s = float(self.scale_cfg[k])
        for f in factors:
            s *= f
        self.scale[k] = s

    def _set(self, mask: np.ndarray, new: int | np.ndarray) -> None:
        """The members in ``mask`` go to state ``new`` (one for all, or one per member); illegal changes raise."""
        changed = mask & (self.state != new)
        if _nonzero(changed):
            bad = changed & ~LEGAL[self.state, new]
            if _nonzero(bad):
                k = int(np.flatnonzero(bad)[0])
                old = BoardState(STATE_NAMES[int(self.state[k])])
                to = STATE_NAMES[int(np.broadcast_to(new, self.state.shape)[k])]
                raise ModelError(f"illegal accelerator transition {old} -> {to} (member {k})",
                                 field="state", valid=sorted(TRANSITIONS[old]))
            self.state_changes += changed
            self.state = np.where(mask, new, self.state)

    def _set_one(self, k: int, new: int) -> None:
        old = int(self.state[k])
        if old != new:
            if not LEGAL[old, new]:
                raise ModelError(f"illegal accelerator transition {STATE_NAMES[old]} -> {STATE_NAMES[new]} (member {k})",
                                 field="state", valid=sorted(TRANSITIONS[BoardState(STATE_NAMES[old])]))
            self.state[k] = new
            self.state_changes[k] += 1

    # -- the step ---------------------------------------------------------------------------------------------------
    def step(self, t_ns: int, dt_s: float, supply_v: np.ndarray, die_temp_degc: np.ndarray, dose_rate_rad_s: np.ndarray,
             rad_flux_factor: np.ndarray, workload: np.ndarray, active: np.ndarray) -> None:
        """Advance every member; sets :attr:`load_w` (all of it becomes heat in the die node). ``active``: members
        this model simulates (bound members run the full board instead and draw nothing here)."""
        c = self.cfg
        st = self.state
        # supply: brown-out or rail off loses everything; power back boots the board
        good = supply_v >= c.min_supply_v
        changed = good != self.supply_good
        if _nonzero(changed):
            new = supply_state(st, good, ARRAY)
            booted = changed & (st == S_OFF) & (new == S_BOOTING)
            lost = changed & (st != S_OFF) & (new == S_OFF)
            self.thermal_latched &= ~(changed & good)
            self._set(changed, new)
            self.boot_left_s = np.where(booted, c.boot_s, self.boot_left_s)
            self.work_lost += lost & ((st == S_BUSY) | (st == S_THROTTLED))
            self.power_cycles += lost & (st == S_LATCHED)
            self.throttle = np.where(lost, 0, self.throttle)
            self.supply_good = good
            st = self.state
        # total ionising dose, powered or not
        d_eff, d_tid = dose_step(dose_rate_rad_s, dt_s, rad_flux_factor, self.scale, self.flux_weight,
                                 self.rad_cfg.scale_dose, ARRAY)
        self.dose_rad += d_tid
        if np.count_nonzero(self.dose_rad >= self.degrade_at_rad) != self._n_degraded:
            newly = ~self.degraded & (self.dose_rad >= self.degrade_at_rad)
            self.degraded |= newly
            self.tid_events += newly
            self._n_degraded = int(self.degraded.sum())
            self.k_per_rad = np.where(self.degraded, self._w[1].sum(), self._w[0].sum())
        # latch-up conducted too long: destroyed
        latched = st == S_LATCHED
        if _nonzero(latched):
            dead = latch_damaged(latched, t_ns, self.latch_t_ns, self.damage_ns)
            if _nonzero(dead):
                self._set(dead, S_FAILED)
                self.throttle = np.where(dead, 0, self.throttle)
                st = self.state
        alive = self._ALIVE[st]
        T = die_temp_degc
        working = workload > 0.0
        powered = alive
        # thermal: shutdown, then hardware / software slowdown with hysteresis (only near the thresholds, as the
        # single board: below its hot guard with no throttle nothing can change)
        if self._throttle_any or T.max(initial=-np.inf) >= self._hot_guard:
            hot = alive & thermal_shutdown(T, c)
            shut = shuts_down(st, hot)
            if _nonzero(shut):
                self.work_lost += shut & ((st == S_BUSY) | (st == S_THROTTLED))
                self._set(shut, S_OFF)
                self.thermal_latched |= shut
                self.throttle = np.where(shut, 0, self.throttle)
                powered = alive & ~shut
            cur = self.throttle
            new = throttle_level(T, cur, c, ARRAY)
            upd = alive & ~hot
            self.throttle = np.where(upd, new, cur)
            self._throttle_any = bool(_nonzero(self.throttle))
            self._set(upd, throttled_state(self.state, new, working, ARRAY))
            st = self.state
        # work and utilisation
        busy = self._BUSY[st]
        util = self._util_table[st]
        if _nonzero(busy):
            util = np.where(busy, busy_utilisation(workload, c.idle_utilisation), util)
        booting = st == S_BOOTING
        if _nonzero(booting):
            self.boot_left_s = np.where(booting, self.boot_left_s - dt_s, self.boot_left_s)
            done = booting & (self.boot_left_s <= 0.0)
            if _nonzero(done):
                self._set(done, boot_done_state(self.throttle, ARRAY))
                self._set(done, work_state(self.state, working, ARRAY))  # the steady workload arrives at once
        f_eff, dyn, leak = self._op()
        self.units_done += busy * (workload * f_eff) * (self.chips * dt_s / self.unit_cycles)
        # single-event effects while powered
        exp = d_eff * powered
        self.exposure_rad += exp
        h0 = self.hazard
        h1 = h0 + exp * self.k_per_rad
        self.hazard = h1
        fired = h1 >= self.next_hazard
        if _nonzero(fired):
            for k in np.flatnonzero(fired & active).tolist():
                self._fire(k, t_ns, dt_s, float(h0[k]), float(h1[k]))
            st = self.state
            f_eff, dyn, leak = self._op()
        # power (all of it is heat in the die node)
        latched = st == S_LATCHED
        any_latched = bool(_nonzero(latched))
        if any_latched:
            util = np.where(latched, 0.0, util)
        p = board_power_w(c, leak, self.leak_k, T, self.leak_tid, self.dose_rad, util, dyn, np.exp)
        if any_latched:
            p = np.where(latched, p + latchup_w(self.rad_cfg.sel_current_a, supply_v), p)
        on = self._ALIVE[st]
        self.load_w = p * on
        self.utilisation = util * on

    def _fire(self, k: int, t_ns: int, dt_s: float, h0: float, h1: float) -> None:
        rng = self.rngs[k]
        fracs, self.next_hazard[k] = arrivals(h0, h1, float(self.next_hazard[k]), rng.exponential)
        cdf = self._cdf[1] if self.degraded[k] else self._cdf[0]
        for frac in fracs:  # the draws of the single board's RadiationSource, in its order
            kind = pick_kind(float(rng.random()), cdf)
            draw_chip(rng, self.chips)  # every chip of the board shares its state in the reduced model
            self.apply(k, KINDS[kind], t_ns + round(frac * dt_s * 1e9))

    def apply(self, k: int, kind: str, t_ns: int) -> bool:
        """One single-event effect on member k (drawn or injected); True if it had an effect. What it does is
        :func:`~emulator.models.accelerator.see_outcome`, as on the single board; here the lost work is counted."""
        if kind not in KINDS:
            raise CommandError(f"unknown event kind {kind!r}", field="name", valid=list(KINDS))
        i = KINDS.index(kind)
        st = int(self.state[k])
        if st in (S_OFF, S_FAILED):
            return False
        self.counts[i, k] += 1
        reboot = kind == "sefi" and float(self.rngs[k].random()) < self.rad_cfg.sefi_reboot_fraction
        out = see_outcome(kind, st, st in (S_BUSY, S_THROTTLED), reboot)
        assert out is not None  # powered
        self.work_lost[k] += out.loses_work
        if out.state is not None:
            self._set_one(k, out.state)
            if out.state == S_BOOTING:
                self.boot_left_s[k] = self.cfg.boot_s
            elif out.state == S_LATCHED:
                self.latch_t_ns[k] = t_ns
        self.effects[i, k] += out.hurts
        return out.hurts

    def reset(self, mask: np.ndarray) -> None:
        """Reset (reboot) the boards in ``mask`` that are booting (the boot restarts), hung, working or cooled after a
        thermal shutdown."""
        c = self.cfg
        st = self.state
        ok = mask & can_reset(st, self.thermal_latched, self.supply_good)
        self.work_lost += ok & ((st == S_BUSY) | (st == S_THROTTLED))
        self.thermal_latched &= ~ok
        self._set(ok, S_BOOTING)
        self.boot_left_s = np.where(ok, c.boot_s, self.boot_left_s)


# -- wire schemas ---------------------------------------------------------------------------------------------------
_SAT_DOC = "member index of the satellite this message is about (0..N-1)"


@functools.cache
def sat_schema(schema: type[Payload], mode: Literal["out", "command", "fault"]) -> type[Payload]:
    """``schema`` plus a ``sat`` field: required int on telemetry and events ("out"), optional index-or-name on board
    commands (it must name the topic's member), required index-or-name on control-plane faults."""
    if mode == "out":
        spec: Any = (int, field(doc=_SAT_DOC, ge=0))
    elif mode == "command":
        spec = (int | str | None, field(doc="optional: the member this command is for (index or name); must be the "
                                        "topic's member", default=None))
    else:
        spec = (int | str, field(doc="member index (0..N-1) or name"))
    return create_model(f"Sat{schema.__name__}", __base__=schema, sat=spec)


class ScaleAll(ScaleParam):
    sat: int | str | None = field(doc="member index or name; absent: every member", default=None)


class LinkDown(Payload):
    a: int | str = field(doc="one end of the link (member index or name)")
    b: int | str = field(doc="the other end")


class IslTransfer(Payload):
    pattern: Literal["allreduce", "send"] = field(doc="allreduce: ring all-reduce across `members`; send: one "
                                                  "message from `src` to `dst`")
    size_gb: float = field("GB", "data size (1 GB = 1e9 bytes); for allreduce, each member's buffer", gt=0, le=1e9)
    members: list[int] | None = field(doc="allreduce: member indices (default: every member)", default=None,
                                      max_length=100000)
    src: int | None = field(doc="send: source member (default: the requesting member)", default=None, ge=0)
    dst: int | None = field(doc="send: destination member", default=None, ge=0)


# -- the model -----------------------------------------------------------------------------------------------------
class ClusterModel(SpacecraftModel):
    """N satellites stepping together. ``bind`` (member indices or names) overrides ``cluster.bind.members``."""

    def __init__(self, config: ClusterConfig, *, epoch_utc: dt.datetime, seed: int, step_s: float = 1.0,
                 bind: list[int | str] | None = None, chunk_steps: int | None = None) -> None:
        self.config = config
        self.members = mem = resolve_members(config, bind)
        self.member_names = mem.names
        self.n = n = mem.n
        self.bound = list(mem.bound)
        self.topics_mode = config.cluster.bind.topics
        self.epoch_utc = epoch_utc
        self.step_s = step_s
        self.chunk_steps = chunk_steps or max(60, min(3600, CHUNK_MEMBER_SAMPLES // n))
        sat = config.satellite
        self.template = sat
        self.policy = config.cluster.policy
        # seeds: member k owns SeedSequence(seed).spawn(N)[k], split like a single satellite's (SEED_STREAMS)
        member_ss = np.random.SeedSequence(seed).spawn(n)
        self._member_ss = member_ss
        self.rngs = [np.random.default_rng(ss.spawn(len(SEED_STREAMS))[0]) for ss in member_ss]
        # environment
        form = config.cluster.formation
        self.env = ClusterEnvironment(sat.orbit, sat.environment, epoch_utc, lattice=mem.lattice, formation=form,
                                      orbits=mem.orbits)
        cfgs = mem.configs

        def vec(get: Any) -> np.ndarray:
            return np.array([get(c) for c in cfgs], dtype=float)

        pc = sat.power
        self.power = PowerArrays(
            pc, n, initial_soc=vec(lambda c: c.power.battery.initial_soc),
            cell_capacity_ah=vec(lambda c: c.power.battery.cell_capacity_ah),
            cell_r_ohm=vec(lambda c: c.power.battery.cell_r_ohm), mppt_efficiency=vec(lambda c: c.power.mppt_efficiency),
            degradation=np.array([[a.degradation for a in c.power.arrays] for c in cfgs]).T)
        net = ThermalNetwork(sat.thermal)
        self.net = net
        self.node_names = net.names
        pw = self.power
        self._accel_rail = pw.rail_index[sat.accelerator.rail]
        self.routing = hr = heat_routing(sat, net.index, pw.rail_index)
        self._accel_node = hr.accel_node
        self._batt_node = hr.battery_node
        self._array_nodes = np.array(hr.array_nodes, dtype=np.intp)
        self._array_face = hr.array_faces
        self.heaters = HeaterArrays(net, n)
        self._heater_rail = np.array([r for r, _ in hr.heaters], dtype=np.intp)
        # heat routing (HeatRouting, the single satellite's): features F (rows) -> nodes (M columns); see ThermalBatch
        R, H, A = len(pc.rails), len(hr.heaters), len(pc.arrays)
        nn = net.n
        self._f_shed = slice(0, R)                 # (1 - frac) of each rail: its static loads' heat not delivered
        self._f_rail = slice(R, 2 * R)             # rail converter loss + short
        self._f_heat = slice(2 * R, 2 * R + H)     # heater power x its rail's conduction fraction
        self._f_acc = 2 * R + H                    # accelerator heat x its rail's fraction
        self._f_batt = self._f_acc + 1             # I^2 R
        self._f_mppt = self._f_acc + 2             # MPPT loss
        self._f_shunt = self._f_acc + 3            # shunted power
        self._f_arr = slice(self._f_acc + 4, self._f_acc + 4 + A)  # array extraction (negative)
        nf = self._f_acc + 4 + A
        Mf = np.zeros((nn, nf))
        static_q = np.array(hr.static_q_w)
        for r, loads in enumerate(hr.rail_loads):
            for node, p in loads:
                Mf[node, r] -= p
        for r, node in enumerate(hr.rail_nodes):
            Mf[node, R + r] += 1.0
        for h, (_, node) in enumerate(hr.heaters):
            Mf[node, 2 * R + h] += 1.0
        Mf[hr.accel_node, self._f_acc] += 1.0
        Mf[hr.battery_node, self._f_batt] += 1.0
        Mf[hr.eps_node, self._f_mppt] += 1.0
        Mf[hr.shunt_node, self._f_shunt] += 1.0
        for a, node in enumerate(hr.array_nodes):
            Mf[node, self._f_acc + 4 + a] -= 1.0
        T0 = np.array([[nd.initial_temp_degc + KELVIN for nd in c.thermal.nodes] for c in cfgs]).T
        self.thermal = ThermalBatch(net, n, T0, Mf, static_q)
        # accelerators: the reduced vectorised model for every member, the full board for bound members
        ac = sat.accelerator
        lv_names = [lv.name for lv in ac.dvfs]
        self.accel = AcceleratorArrays(
            ac, sat.radiation, n, self.rngs, level=np.array([lv_names.index(c.accelerator.default_level) for c in cfgs]),
            initial_dose_krad=vec(lambda c: c.radiation.initial_dose_krad), scale=vec(lambda c: c.radiation.scale))
        self._default_level = self.accel.level.copy()
        self.active = np.ones(n, bool)
        self.active[self.bound] = False
        self.boards: dict[int, AcceleratorBoard] = {}
        self._sensors: dict[int, SensorSuite] = {}
        for k in self.bound:
            streams = member_ss[k].spawn(len(SEED_STREAMS))
            rng = dict(zip(SEED_STREAMS, (np.random.default_rng(s) for s in streams), strict=True))
            self.boards[k] = AcceleratorBoard(cfgs[k].accelerator, cfgs[k].radiation, rng["accelerator"])
            self._sensors[k] = SensorSuite(cfgs[k], net.index, rng, sat=k)
        self._workload = np.where(self.active, self.policy.workload_utilisation, 0.0)
        # policy state
        self._policy_shed = np.zeros(n, bool)
        self._cycle = np.zeros(n, bool)
        self._next_policy_ns = 0
        self.isl = IslNetwork(config.cluster.isl, n)
        self._ring: list[int] | None = None
        self._chunk: ClusterChunk | None = None
        self._c_t0 = self._c_dt = self._c_n = 0
        self._i = 0
        self.t_ns = 0
        self.steps = 0
        self._events: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def from_config(cls, spec: Any, **kwargs: Any) -> ClusterModel:
        """From a run spec (:class:`emulator.config.Config` of kind ``cluster``: ``spec.model`` is the ClusterConfig,
        ``spec.run.sim`` the epoch, seed and step)."""
        sim = spec.run.sim
        return cls(spec.model, epoch_utc=sim.epoch_utc, seed=sim.seed, step_s=sim.step_s, **kwargs)

    # -- environment chunks -----------------------------------------------------------------------------------------
    def _load_chunk(self, t_ns: int, dt_ns: int) -> None:
        c = self.env.chunk(t_ns, dt_ns, self.chunk_steps)
        m = len(c)
        # absorbed environment heat per node, ThermalNetwork.environment_heat's equation for every member at once;
        # one einsum (numpy's own loop: a multithreaded BLAS matmul stalls on a busy 2-core machine)
        net = self.net
        faces = np.concatenate([c.face_solar_w_m2, c.face_albedo_w_m2, c.face_ir_w_m2,
                                c.tracking_solar_w_m2[:, :, None]], axis=2)            # (m, N, 19)
        gains = np.concatenate([net.m_solar, net.m_albedo, net.m_ir, net.v_track[None, :]])  # (19, nodes)
        self._env_q = np.einsum("tkf,fn->tnk", faces, gains)                           # (m, nodes, N)
        cols = [c.tracking_solar_w_m2 if f < 0 else c.face_solar_w_m2[:, :, f] for f in self._array_face]
        self._solar = np.ascontiguousarray(np.stack(cols, axis=1))  # (m, A, N)
        # keep what truth, sensors and links need; drop the face arrays
        self._chunk = ClusterChunk(**{**c.__dict__, "face_solar_w_m2": None, "face_albedo_w_m2": None,
                                      "face_ir_w_m2": None})
        self._c_t0, self._c_dt, self._c_n = t_ns, dt_ns, m

    def _chunk_now(self) -> ClusterChunk:
        """The environment chunk of the current sample; before the first step, the one the first step loads (the
        environment at ``t_ns``): a reading or truth at the start sees t = 0's sun, shadow and orbit."""
        if self._chunk is None:
            self._load_chunk(self.t_ns, round(self.step_s * 1e9))
        assert self._chunk is not None
        return self._chunk

    # -- the step ---------------------------------------------------------------------------------------------------
    def step(self, t_ns: int, dt_ns: int) -> None:
        k = (t_ns - self._c_t0) // self._c_dt if self._c_dt else -1
        if (self._chunk is None or dt_ns != self._c_dt or not 0 <= k < self._c_n
                or t_ns != self._c_t0 + k * self._c_dt):
            self._load_chunk(t_ns, dt_ns)
            k = 0
        self._i = i = k
        ch = self._chunk
        assert ch is not None
        dt_s = dt_ns * 1e-9
        pw, th, acc = self.power, self.thermal, self.accel
        T = th.T
        ai = self._accel_rail
        supply = pw.v_out[ai]
        die = T[self._accel_node] - KELVIN
        dose = ch.dose_rate_rad_s[i]
        radf = ch.rad_flux_factor[i]
        acc.step(t_ns, dt_s, supply, die, dose, radf, self._workload, self.active)
        load = acc.load_w
        if self.boards:
            load = load.copy()
            for m, b in self.boards.items():
                b.step(t_ns, dt_s, supply_v=float(supply[m]), die_temp_degc=float(die[m]),
                       dose_rate_rad_s=float(dose[m]), rad_flux_factor=float(radf[m]))
                load[m] = b.heat_w
        hd = self.heaters.demand(T)
        loads = np.zeros_like(pw.v_out)
        loads[ai] = load
        if len(self._heater_rail):
            np.add.at(loads, self._heater_rail, hd)
        pw.step(dt_s, self._solar[i], T[self._array_nodes] - KELVIN, T[self._batt_node] - KELVIN, loads)
        F = th.features
        frac = pw.frac
        F[self._f_shed] = 1.0 - frac
        F[self._f_rail] = pw.heat_w
        if len(self._heater_rail):
            F[self._f_heat] = hd * frac[self._heater_rail]
        F[self._f_acc] = load * frac[ai]
        F[self._f_batt], F[self._f_mppt] = loss_heat_w(pw.battery_a, pw.battery_r_ohm, pw.array_total_w, pw.mppt)
        F[self._f_shunt] = pw.shunt_w
        F[self._f_arr] = pw.array_w
        th.step(dt_s, self._env_q[i])
        self.t_ns = t_end = t_ns + dt_ns
        self.steps += 1
        if self.policy.enabled and t_end >= self._next_policy_ns:
            self._run_policy(t_end)
            period = round(self.policy.period_s * 1e9)
            self._next_policy_ns = (t_end // period + 1) * period
        if pw.events:
            self._route_power_events()

    def _run_policy(self, t_ns: int) -> None:
        """The built-in reference behaviour of every unbound member (vectorised; see PolicyConfig)."""
        p = self.policy
        pw, acc = self.power, self.accel
        act = self.active
        ai = self._accel_rail
        soc = pw.soc
        die = self.thermal.T[self._accel_node] - KELVIN
        st = acc.state
        # latched current limiter: reset it; latch-up: power-cycle the rail (off now, on at the next decision)
        latched = act & pw.latched[ai]
        if _nonzero(latched):
            for k in np.flatnonzero(latched).tolist():
                pw.reset_rail(k, pw.rail_names[ai])
        cycle_on = act & self._cycle
        self._cycle = act & (st == S_LATCHED)
        # energy: shed below shed_below_soc, back above resume_above_soc
        self._policy_shed = act & np.where(soc < p.shed_below_soc, True,
                                           np.where(soc > p.resume_above_soc, False, self._policy_shed))
        want_on = act & ~self._policy_shed & ~self._cycle
        pw.cmd_on[ai] = np.where(act, want_on | (cycle_on & ~self._policy_shed), pw.cmd_on[ai])
        pw._set_rail_outputs()
        # heat and energy: DVFS one level down when hot (or lowest when low on energy), up when cool
        working = act & (st >= S_IDLE) & (st <= S_THROTTLED)
        low = soc < p.low_power_below_soc
        lv = acc.level
        lv = np.where(working & low, 0, lv)
        lv = np.where(working & ~low & (die > p.hot_degc), np.maximum(lv - 1, 0), lv)
        lv = np.where(working & ~low & (die < p.cool_degc), np.minimum(lv + 1, self._default_level), lv)
        acc.level = lv
        # hangs: reset; thermal shutdown: reset once cool
        acc.reset(act & ((st == S_HUNG) | ((st == S_OFF) & acc.thermal_latched & (die < p.restart_below_degc))))

    def _route_power_events(self) -> None:
        for k, topic, payload in self.power.events:
            if k in self.boards:
                self._events.append((self._topic(k, topic), {**payload, "sat": k}))
        self.power.events.clear()

    # -- topics -----------------------------------------------------------------------------------------------------
    def _topic(self, k: int, topic: str) -> str:
        return topic if self.topics_mode == "plain" else f"sat.{k}.{topic}"

    def member(self, ref: Any, field: str = "params.sat") -> int:
        """Member index from an index or a name (CommandError naming ``field`` and the valid members)."""
        return self.members.index(ref, field)

    # -- board-plane readings of a bound member ---------------------------------------------------------------------
    def read_eps(self, k: int) -> dict[str, Any]:
        return {"sat": k, **self._sensors[k].read_eps_columns(self.t_ns, **self._eps_columns(k))}

    def eps_payload(self, k: int) -> Any:
        """:meth:`read_eps`, encoded (the runtime's publishing path)."""
        return self._sensors[k].read_eps_columns(self.t_ns, **self._eps_columns(k), encoded=True)

    def _eps_columns(self, k: int) -> dict[str, Any]:
        # member k's column of each array as Python scalars, one conversion per array (not one per element)
        pw = self.power
        return {"bus_v": pw.bus_v.item(k), "battery_connected": pw.battery_connected.item(k),
                "battery_a": pw.battery_a.item(k), "soc": pw.soc.item(k), "s_since_full": pw.s_since_full.item(k),
                "q_pack_c": pw.q_pack_c.item(k), "array_total_w": pw.array_total_w.item(k), "names": pw.rail_names,
                "on": pw.on[:, k].tolist(), "tripped": pw.tripped[:, k].tolist(), "latched": pw.latched[:, k].tolist(),
                "trips": pw.trips[:, k].tolist(), "frac": pw.frac[:, k].tolist(), "i_out": pw.i_out[:, k].tolist(),
                "v_out": pw.v_out[:, k].tolist(), "mode": MODE_NAMES[pw.mode.item(k)]}

    def thermal_payload(self, k: int) -> Any:
        """:meth:`read_thermal`, encoded."""
        return self._sensors[k].thermal_payload(self.t_ns, self.thermal.T[:, k].tolist(), self._heater_states(k))

    def read_thermal(self, k: int) -> dict[str, Any]:
        reading = self._sensors[k].read_thermal(self.t_ns, self.thermal.T[:, k].tolist(), self._heater_states(k))
        return {"sat": k, **reading}

    def _heater_states(self, k: int) -> tuple[tuple[str, str, bool], ...]:
        """Member k's heaters as (name, mode, on)."""
        hs = self.heaters
        return tuple([(name, HEATER_MODES[mode], on)
                      for name, mode, on in zip(hs.names, hs.mode[:, k].tolist(), hs.on[:, k].tolist(), strict=True)])

    def read_sun(self, k: int) -> dict[str, Any]:
        truth = float(self._chunk_now().tracking_solar_w_m2[self._i, k])
        return {"sat": k, **self._sensors[k].read_sun(self.t_ns, truth)}

    # -- interface --------------------------------------------------------------------------------------------------
    def interface(self) -> Interface:
        iface = Interface(faults=self._faults(), commands=[
            Command(command_spec("cluster.isl.transfer", IslTransfer, "Control plane: time to move data across the cluster's "
                                 "links now (ring all-reduce or one message), from the link budget and geometry.",
                                 Plane.CONTROL), lambda p: self._isl_transfer(p, None))])
        for k in self.bound:
            iface.extend(self._member_interface(k))
        return iface

    def _member_interface(self, k: int) -> Interface:
        name = self.member_names[k]
        t = functools.partial(self._topic, k)
        who = f" Member {k} ({name})."
        board = self.boards[k]

        def guard(handler: Any) -> Any:
            def handle(p: Any) -> Any:
                if p.sat is not None and self.member(p.sat, "payload.sat") != k:
                    raise CommandError(f"payload.sat {p.sat!r} is another member: this topic is member {k} ({name})",
                                       field="payload.sat", valid=[k, name])
                return handler(p)
            return handle

        def out(spec_schema: type[Payload]) -> type[Payload]:
            return sat_schema(spec_schema, "out")

        def cmd(spec_schema: type[Payload]) -> type[Payload]:
            return sat_schema(spec_schema, "command")

        pw = self.power
        iface = Interface(
            telemetry=[
                Telemetry(telemetry_spec(t("eps.telemetry"), out(EpsTelemetry), "Power system as the member's EPS "
                                         "board measures it." + who, 1.0), lambda: self.eps_payload(k)),
                Telemetry(telemetry_spec(t("thermal.telemetry"), out(ThermalTelemetry), "Thermistors and heaters."
                                         + who, 1.0), lambda: self.thermal_payload(k)),
                Telemetry(telemetry_spec(t("adcs.sun"), out(SunTelemetry), "Coarse sun sensor and eclipse flag." + who,
                                         1.0), lambda: self.read_sun(k)),
            ],
            commands=[
                Command(command_spec(t("eps.rail.set"), cmd(RailSet), "Switch a PDU rail on or off." + who),
                        guard(lambda p: self._rail_set(k, p))),
                Command(command_spec(t("eps.rail.reset"), cmd(RailReset), "Clear a tripped or latched current "
                                     "limiter." + who), guard(lambda p: self._rail_reset(k, p))),
                Command(command_spec(t("eps.shed.set"), cmd(ShedSet), "Set undervoltage shed thresholds (checked as "
                                     "a set)." + who),
                        guard(lambda p: {"thresholds_v": pw.set_thresholds(k, **p.model_dump(exclude={"sat"}))})),
                Command(command_spec(t("thermal.heater.set"), cmd(HeaterSet), "Set a heater's mode and thermostat."
                                     + who), guard(lambda p: self.heaters.set(k, p.heater, p.mode, p.on_below_degc,
                                                                              p.off_above_degc))),
                Command(command_spec(t("isl.transfer"), cmd(IslTransfer), "Time to move data over the inter-"
                                     "satellite links now (ring all-reduce or one message from this member)." + who),
                        guard(lambda p: self._isl_transfer(p, k))),
            ],
            events=[
                event_spec(t("eps.mode.changed"), out(ModeChanged), "The shed mode changed." + who),
                event_spec(t("eps.rail.tripped"), out(RailTripped), "A rail's latching current limiter tripped." + who),
                event_spec(t("eps.battery.fault"), out(BatteryFault), "A battery cell failed." + who),
            ],
        )
        acc = board.interface()
        for tel in acc.telemetry:
            s = tel.spec
            iface.telemetry.append(Telemetry(telemetry_spec(t(s.topic), out(s.schema), s.doc + who, s.rate_hz or 1.0,
                                                            s.plane), functools.partial(self._sat_sample, k, tel.sample)))
        for c in acc.commands:
            s = c.spec
            iface.commands.append(Command(command_spec(t(s.topic), cmd(s.schema), s.doc + who, s.plane), guard(c.handle)))
        for e in acc.events:
            iface.events.append(event_spec(t(e.topic), out(e.schema), e.doc + who, e.plane))
        return iface

    @staticmethod
    def _sat_sample(k: int, sample: Any) -> dict[str, Any]:
        return {**sample(), "sat": k}

    def _rail_set(self, k: int, p: Any) -> dict[str, Any]:
        pw = self.power
        pw.set_rail(k, p.rail, p.on)
        r = pw.rail(p.rail)
        return {"rail": p.rail, "commanded_on": bool(pw.cmd_on[r, k]), "on": bool(pw.on[r, k])}

    def _rail_reset(self, k: int, p: Any) -> dict[str, Any]:
        pw = self.power
        pw.reset_rail(k, p.rail)
        r = pw.rail(p.rail)
        return {"rail": p.rail, "on": bool(pw.on[r, k]), "tripped": bool(pw.tripped[r, k])}

    def positions_km(self) -> np.ndarray:
        """Members' TEME positions now (N, 3), km."""
        if self._chunk is not None:
            return self._chunk.r_eci_km[self._i]
        r, _ = self.env.states(np.array([self.t_ns * 1e-9]))
        return r[0]

    def _isl_transfer(self, p: Any, k: int | None) -> dict[str, Any]:
        r = self.positions_km()
        if p.pattern == "allreduce":
            if p.members is not None:
                for j, m in enumerate(p.members):
                    self.member(m, f"payload.members[{j}]")
            res = self.isl.allreduce(r, p.size_gb, p.members)
        else:
            src = p.src if p.src is not None else k
            if src is None or p.dst is None:
                raise CommandError("send needs src and dst (a member's own board may leave src out)",
                                   field="payload.dst" if p.dst is None else "payload.src")
            res = self.isl.pair_transfer(r, p.size_gb, self.member(src, "payload.src"),
                                         self.member(p.dst, "payload.dst"))
        return res.to_dict()

    # -- faults (control plane, any member) ---------------------------------------------------------------------------
    def _faults(self) -> list[Fault]:
        def f(schema: type[Payload]) -> type[Payload]:
            return sat_schema(schema, "fault")

        def on(fn: Any) -> Any:
            return lambda p: fn(self.member(p.sat), p)

        def sensor(kind: str) -> tuple[Any, Any]:
            def inject(p: Any) -> None:
                k = self.member(p.sat)
                s = self.sensor_suite(k)
                bank = s.bank_of(p.channel)
                getattr(self, {"eps": "read_eps", "thermal": "read_thermal", "sun": "read_sun"}[s.kind_of(bank)])(k)
                bank.inject(p.channel, kind, t_ns=self.t_ns, rate_per_h=getattr(p, "rate_per_h", 0.0),
                            factor=getattr(p, "factor", 1.0))

            def clear(p: Any) -> None:
                k = self.member(p.sat)
                self.sensor_suite(k).bank_of(p.channel).clear(p.channel, kind)
            return inject, clear

        pw = self.power
        faults = [
            Fault("eps.array.string_fail", f(StringFail), "Strings of a member's solar array fail (open).",
                  on(lambda k, p: pw.fail_strings(k, p.array, p.strings)),
                  on(lambda k, p: pw.restore_strings(k, p.array, p.strings))),
            Fault("eps.battery.cell_loss", f(CellLoss), "A battery cell of a member fails (permanent).",
                  on(lambda k, p: (pw.lose_cell(k, p.group, p.mode), self._route_power_events()))),
            Fault("eps.rail.short", f(RailShort), "Extra load current on a member's rail.",
                  on(lambda k, p: pw.set_short(k, p.rail, p.extra_a)), on(lambda k, p: pw.set_short(k, p.rail, 0.0))),
        ]
        for kind, schema in (("stuck", SensorChannel), ("drift", SensorDrift), ("open", SensorChannel),
                             ("noisy", SensorNoisy)):
            inj, clr = sensor(kind)
            faults.append(Fault(f"sensor.{kind}", f(schema), f"A bound member's sensor: {kind}.", inj, clr))
        faults.append(Fault("radiation.scale", ScaleAll, "Multiply the single-event rates of one member (sat) or of "
                            "every member by a factor; clearing restores it.", self._scale_on, self._scale_off))
        for kind in KINDS:
            faults.append(Fault(f"radiation.{kind}", f(ChipParam), f"One {kind.upper()} on a member's accelerator.",
                                functools.partial(self._inject_see, kind)))
        faults.append(Fault("isl.link.down", LinkDown, "Force the link between two members down (terminal "
                            "failure, pointing loss); clearing restores it.", self._link_down, self._link_up))
        return faults

    def sensor_suite(self, k: int) -> SensorSuite:
        s = self._sensors.get(k)
        if s is None:
            raise CommandError(f"params.sat: member {k} ({self.member_names[k]}) runs the built-in reference behaviour and "
                               "has no board sensors; sensor faults address bound members", field="params.sat",
                               valid=self.bound)
        return s

    def _scale_targets(self, p: Any) -> list[int]:
        return list(range(self.n)) if p.sat is None else [self.member(p.sat)]

    def _scale_on(self, p: Any) -> None:
        for k in self._scale_targets(p):
            if k in self.boards:
                self.boards[k]._scale_on(ScaleParam(factor=p.factor))
            self.accel.set_scale(k, [*self.accel.fault_scales[k], p.factor])

    def _scale_off(self, p: Any) -> None:
        for k in self._scale_targets(p):
            if k in self.boards:
                self.boards[k]._scale_off(ScaleParam(factor=p.factor))
            f = list(self.accel.fault_scales[k])
            if p.factor in f:
                f.remove(p.factor)
            self.accel.set_scale(k, f)

    def _inject_see(self, kind: str, p: Any) -> None:
        k = self.member(p.sat)
        if not 0 <= p.chip < self.accel.chips:
            raise CommandError(f"chip must be within 0..{self.accel.chips - 1}", field="payload.params.chip",
                               valid=list(range(self.accel.chips)))
        if k in self.boards:
            self.boards[k].inject(kind, p.chip)
        else:
            self.accel.apply(k, kind, self.t_ns)

    def _link_down(self, p: LinkDown) -> None:
        a, b = self.member(p.a, "params.a"), self.member(p.b, "params.b")
        if a == b:
            raise CommandError("params.b: a link joins two different members", field="params.b")
        self.isl.forced_down.add((min(a, b), max(a, b)))

    def _link_up(self, p: LinkDown) -> None:
        a, b = self.member(p.a, "params.a"), self.member(p.b, "params.b")
        self.isl.forced_down.discard((min(a, b), max(a, b)))

    # -- truth and events -------------------------------------------------------------------------------------------
    @property
    def fleet_size(self) -> int:  # type: ignore[override]
        return self.n

    def names(self) -> dict[str, list[str]]:
        """The names payload fields refer to (as :meth:`Satellite.names`; ``sat`` takes a member index)."""
        sat = self.template
        return {"rail": list(self.power.rail_names), "heater": list(self.heaters.names), "node": list(self.node_names),
                "array": list(self.power.array_names), "level": [lv.name for lv in sat.accelerator.dvfs]}

    def truth(self) -> dict[str, Any]:
        pw, th, acc = self.power, self.thermal, self.accel
        env: dict[str, Any] = {}
        c = self._chunk_now()
        if c is not None:
            i = self._i
            for key in ("sunlit_frac", "tracking_solar_w_m2", "dose_rate_rad_s", "rad_flux_factor", "lat_deg",
                        "lon_deg", "alt_km", "beta_deg"):
                env[key] = getattr(c, key)[i].tolist()
            env["in_saa"] = c.in_saa[i].tolist()
        states = acc.state.copy()
        level = acc.level.copy()
        throttle = acc.throttle.copy()
        clock = acc.clock_mhz()
        for k, b in self.boards.items():
            states[k] = STATE_NAMES.index(b.state.value)
            level[k] = b.level
            throttle[k] = b.throttle
            clock[k] = b.clock_mhz
        if self._ring is None:
            self._ring = ring_order(self.positions_km())
        bal = pw.balance()
        return {
            "name": self.config.cluster.name,
            "t_ns": self.t_ns,
            "n": self.n,
            "names": list(self.member_names),
            "bound": list(self.bound),
            "environment": env,
            "power": {
                "soc": pw.soc.tolist(), "bus_v": pw.bus_v.tolist(), "battery_a": pw.battery_a.tolist(),
                "array_w": pw.array_total_w.tolist(), "shunt_w": pw.shunt_w.tolist(),
                "mode": [MODE_NAMES[m] for m in pw.mode.tolist()], "mode_changes": pw.mode_changes.tolist(),
                "battery_connected": pw.battery_connected.tolist(),
                "rails_on": {name: pw.on[r].tolist() for r, name in enumerate(pw.rail_names)},
                "rail_trips": {name: pw.trips[r].tolist() for r, name in enumerate(pw.rail_names)},
                "energy_residual_j": bal["residual_j"].tolist(),
            },
            "thermal": {"temps_degc": {name: (th.T[j] - KELVIN).tolist() for j, name in enumerate(self.node_names)},
                        "heaters_on": {name: self.heaters.on[h].tolist() for h, name in enumerate(self.heaters.names)}},
            "accelerator": {
                "state": [STATE_NAMES[s] for s in states.tolist()], "level": [acc.level_names[x] for x in level.tolist()],
                "throttle": [THROTTLE_NAMES[x] for x in throttle.tolist()], "clock_mhz": clock.tolist(),
                "load_w": acc.load_w.tolist(), "units_done": acc.units_done.tolist(), "work_lost": acc.work_lost.tolist(),
                "dose_krad": (acc.dose_rad * 1e-3).tolist(),
                "see_counts": {kind: acc.counts[j].tolist() for j, kind in enumerate(KINDS)},
                "policy_shed": self._policy_shed.tolist(),
            },
            "isl": self.isl.ring_summary(self.positions_km(), self._ring),
            "members": {str(k): {"accelerator": b.truth()} for k, b in self.boards.items()},
        }

    def has_events(self) -> bool:
        return bool(self._events) or any(b.has_events() for b in self.boards.values())

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._events
        self._events = []
        for k, b in self.boards.items():
            for topic, payload in b.drain_events():
                out.append((self._topic(k, topic), {**payload, "sat": k}))
        return out

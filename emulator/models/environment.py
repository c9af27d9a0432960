"""Space environment along the orbit: Sun, shadow, fluxes on each body face, and the radiation environment.

The environment does not depend on the spacecraft's state, so :meth:`Environment.chunk` computes it for many
time steps at once with numpy (a day at 1 s costs a few tens of ms). Equations and sources are in
``docs/models-orbit.md``:

* direct solar on a face: S(d) * sunlit_frac * max(0, n . s), S(d) = S0 / d_AU^2 (physics-sources.md §3);
* Earth IR and albedo: the view factor of a tilted planar element to a sphere (Howell, *A Catalog of
  Radiation Heat Transfer Configuration Factors*, "differential planar element to sphere"), IR = E_IR F,
  albedo = S a F max(0, cos zeta), zeta the solar zenith angle at the sub-satellite point (the usual
  engineering approximation, Gilmore, *Spacecraft Thermal Control Handbook* vol. 1, ch. 2);
* radiation: an engineering model, **not** AP8/AE8: a relative particle-flux factor made of a quiet level,
  a smooth bump over the South Atlantic Anomaly and bands at the polar horns, normalised to 1 over the first
  day of the orbit; dose rate = annual dose behind the shielding / year * that factor.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, field_validator

from emulator.errors import ModelError
from emulator.models.orbit import (
    AU_KM,
    Orbit,
    OrbitConfig,
    geodetic,
    shadow_angles,
    sunlit_fraction_from_angles,
    teme_to_ecef,
)
from emulator.validation import ConfigModel

FACES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")  # body faces, outward normals; same order as power.FACES
R_EARTH_MEAN_KM = 6371.0088  # IUGG mean radius: the sphere that radiates and reflects (view factors)
SECONDS_PER_YEAR = 365.25 * 86400.0

# physics-sources.md §5: SPENVIS 4.6.11, 550 km, 100 deg, AP8-MIN + AE8, SHIELDOSE-2, per year (5-yr value / 5)
SPENVIS_550KM_RAD_PER_YR: tuple[tuple[float, float], ...] = (
    (1.0, 6700.0), (2.0, 2300.0), (2.5, 1500.0), (3.0, 1000.0), (5.0, 290.0), (10.0, 110.0))
SPENVIS_ALT_KM = 550.0
# physics-sources.md §1: ~150 rad(Si)/yr behind ~10 mm Al (Google, altitude of the anchor given as 650 km)
GOOGLE_650KM_10MM_RAD_PER_YR = 150.0
#: e-folding altitude of the dose: the two anchors 110 rad/yr (550 km) and 150 rad/yr (650 km) at 10 mm
DOSE_SCALE_HEIGHT_KM = 100.0 / math.log(GOOGLE_650KM_10MM_RAD_PER_YR / SPENVIS_550KM_RAD_PER_YR[-1][1])

# physics-sources.md §5: SAA centre ~26.6 S, 49.1 W, drifting west ~0.3 deg/yr; outline at ~500 km: lat -50..0,
# lon -90..+40. The centre coordinate is taken to hold at 2020.0 (the source gives no epoch).
SAA_CENTRE_LAT_DEG = -26.6
SAA_CENTRE_LON_DEG = -49.1
SAA_REF_YEAR = 2020.0
SAA_OUTLINE_DEG = {"south": -50.0, "north": 0.0, "west": -90.0, "east": 40.0}
# IGRF-13 geomagnetic (dipole) north pole, 2020: 80.65 N, 72.68 W (NOAA NCEI, "Geomagnetic poles")
DIPOLE_POLE_LAT_DEG = 80.65
DIPOLE_POLE_LON_DEG = -72.68


def default_annual_dose_rad(alt_km: float, shielding_mm_al: float) -> float:
    """Annual dose [rad(Si)/yr] behind ``shielding_mm_al`` of aluminium at ``alt_km``.

    Log-log interpolation of the SPENVIS 550 km table in thickness (physics-sources.md §5; the end slopes continue
    outside 1..10 mm), times exp((alt - 550 km) / H) with H set so that 10 mm gives Google's ~150 rad/yr at
    650 km (physics-sources.md §1). Inclination, solar cycle and GCR are not modelled.
    """
    xs = np.log([p[0] for p in SPENVIS_550KM_RAD_PER_YR])
    ys = np.log([p[1] for p in SPENVIS_550KM_RAD_PER_YR])
    x = math.log(shielding_mm_al)
    if x <= xs[0]:
        y = ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (x - xs[0])
    elif x >= xs[-1]:
        y = ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1])
    else:
        y = float(np.interp(x, xs, ys))
    return math.exp(y) * math.exp((alt_km - SPENVIS_ALT_KM) / DOSE_SCALE_HEIGHT_KM)


class EnvironmentConfig(ConfigModel):
    """Attitude, Earth radiation and the radiation environment."""

    #: body frame: "nadir" (+X velocity, +Z nadir), "sun_pointing" (+Z to the Sun, +X toward nadir),
    #: "inertial" (body axes = TEME axes)
    attitude: Literal["nadir", "sun_pointing", "inertial"] = "nadir"
    albedo: float = Field(0.30, ge=0.0, le=1.0)  # physics-sources.md §4: orbit-average Earth albedo ~0.30
    earth_ir_w_m2: float = Field(237.0, ge=0.0, le=500.0)  # physics-sources.md §4: OLR ~237 W/m2
    solar_constant_w_m2: float = Field(1361.0, ge=1200.0, le=1500.0)  # physics-sources.md §3: 1361 W/m2 at 1 AU
    #: aluminium-equivalent shielding in front of the electronics; physics-sources.md §1: ~10 mm (Google)
    shielding_mm_al: float = Field(10.0, gt=0.0, le=100.0)
    #: annual dose behind the shielding [rad(Si)/yr]; None -> default_annual_dose_rad(alt, shielding)
    annual_dose_rad: float | None = Field(None, ge=0.0, le=1e7)
    #: relative particle flux outside the SAA and the horns (GCR and the quiet inner zone)
    quiet_flux_weight: float = Field(1.0, ge=0.0, le=1e6)
    #: relative flux at the SAA's centre (x quiet). Chosen so that the SAA carries ~80 % of the dose of a
    #: 650 km SSO (physics-sources.md §5: "80-97 % of LEO SEUs in the SAA", confidence L)
    saa_peak_weight: float = Field(300.0, ge=0.0, le=1e6)
    #: relative flux at the centre of the polar-horn bands (outer-belt electrons, x quiet)
    polar_horn_weight: float = Field(5.0, ge=0.0, le=1e6)
    #: magnetic-latitude band of the polar horns [deg]: L-shells ~3..8 (invariant latitude acos(L^-1/2))
    polar_horn_mlat_deg: tuple[float, float] = (55.0, 70.0)
    #: westward drift of the SAA (physics-sources.md §5: ~0.3 deg/yr)
    saa_drift_deg_per_yr: float = Field(0.3, ge=-5.0, le=5.0)

    @field_validator("polar_horn_mlat_deg")
    @classmethod
    def _band(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.0 <= lo < hi <= 90.0:
            raise ValueError(f"polar_horn_mlat_deg: need 0 <= low < high <= 90 deg, got ({lo:g}, {hi:g})")
        return v


@dataclass(frozen=True)
class EnvironmentSample:
    """The environment at one instant (see :class:`EnvironmentChunk` for the meaning of each field)."""

    t_ns: int
    r_eci_km: np.ndarray
    sun_unit_eci: np.ndarray
    sun_dist_au: float
    solar_flux_w_m2: float
    sunlit_frac: float
    beta_deg: float
    lat_deg: float
    lon_deg: float
    alt_km: float
    local_solar_time_h: float
    face_solar_w_m2: np.ndarray
    face_albedo_w_m2: np.ndarray
    face_ir_w_m2: np.ndarray
    tracking_solar_w_m2: float
    in_saa: bool
    in_polar_horn: bool
    rad_flux_factor: float
    dose_rate_rad_s: float


@dataclass(frozen=True)
class EnvironmentChunk:
    """The environment at ``n`` instants; every field is a numpy array whose first axis is n.

    ``r_eci_km`` (n, 3) TEME; ``sun_unit_eci`` (n, 3) geocentric Sun direction; ``sun_dist_au`` Earth-Sun;
    ``solar_flux_w_m2`` TSI at that distance (shadow ignored); ``sunlit_frac`` 0 umbra .. 1 full Sun;
    ``beta_deg`` Sun above the orbit plane; ``lat_deg``/``lon_deg``/``alt_km`` WGS84 geodetic sub-satellite
    point; ``local_solar_time_h`` mean solar time there; ``face_*_w_m2`` (n, 6) in :data:`FACES` order;
    ``tracking_solar_w_m2`` on a Sun-tracking wing; ``in_saa``/``in_polar_horn`` flags; ``rad_flux_factor``
    relative particle flux (1 = orbit average); ``dose_rate_rad_s`` behind the configured shielding.
    """

    t_ns: np.ndarray
    r_eci_km: np.ndarray
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

    def sample(self, i: int) -> EnvironmentSample:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for a chunk of {n}")
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)[i]
            if isinstance(v, np.ndarray):
                out[f.name] = v.copy()
            elif isinstance(v, np.bool_):
                out[f.name] = bool(v)
            elif isinstance(v, np.integer):
                out[f.name] = int(v)
            else:
                out[f.name] = float(v)
        return EnvironmentSample(**out)


def view_factor_to_sphere(cos_theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """View factor from a planar element to a sphere: ``h`` = distance to the centre / sphere radius (> 1),
    ``cos_theta`` = cosine of the angle between the element's normal and the direction to the centre.

    Full view (cos theta >= 1/h): F = cos theta / h^2. Partial: F = [cos theta acos(y) - x sin theta
    sqrt(1 - y^2)] / (pi h^2) + atan(sin theta sqrt(1 - y^2) / x) / pi, x = sqrt(h^2 - 1), y = -x cot theta.
    No view (cos theta <= -1/h): 0. (Howell's catalogue, "differential planar element to sphere".)
    """
    ct, hh = np.broadcast_arrays(np.asarray(cos_theta, float), np.asarray(h, float))
    ct = np.clip(ct, -1.0, 1.0)
    inv = 1.0 / hh
    f = np.where(ct >= inv, ct * inv * inv, 0.0)
    part = (ct < inv) & (ct > -inv)
    if np.any(part):
        c, H = ct[part], hh[part]
        s = np.sqrt(1.0 - c * c)
        x = np.sqrt(H * H - 1.0)
        y = np.clip(-x * c / s, -1.0, 1.0)
        sy = np.sqrt(1.0 - y * y)
        f[part] = ((c * np.arccos(y) - x * s * sy) / (math.pi * H * H)
                   + np.arctan(s * sy / x) / math.pi)
    return np.maximum(f, 0.0)


def _face_cosines(x: np.ndarray, y: np.ndarray, z: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Cosines (n, 6) between the outward normals of the faces +X -X +Y -Y +Z -Z (body axes ``x, y, z``, each
    (n, 3)) and the unit directions ``d`` (n, 3): three dot products, the opposite faces are their negatives."""
    out = np.empty((len(d), 6))
    out[:, 0] = np.einsum("ij,ij->i", x, d)
    out[:, 2] = np.einsum("ij,ij->i", y, d)
    out[:, 4] = np.einsum("ij,ij->i", z, d)
    np.negative(out[:, 0::2], out=out[:, 1::2])
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class OrbitGeometry(NamedTuple):
    """What :func:`along_orbit` gives per row (one row per satellite and instant)."""

    solar_flux_w_m2: np.ndarray
    sunlit_frac: np.ndarray
    beta_deg: np.ndarray
    r_ecef_km: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_km: np.ndarray
    local_solar_time_h: np.ndarray
    face_solar_w_m2: np.ndarray
    face_albedo_w_m2: np.ndarray
    face_ir_w_m2: np.ndarray
    tracking_solar_w_m2: np.ndarray


def along_orbit(cfg: EnvironmentConfig, r: np.ndarray, v: np.ndarray, sun_u: np.ndarray, au: np.ndarray,
                gmst_rad: np.ndarray, ut_h: np.ndarray) -> OrbitGeometry:
    """Shadow, geodetic point and the fluxes on each body face for rows of TEME states ``r`` [km], ``v`` [km/s]
    (m, 3), with the Sun direction ``sun_u`` (m, 3), its distance ``au`` (m,), GMST and UT hours (m,) of each
    row. :meth:`Environment.chunk` passes one satellite's instants, the cluster every member's."""
    r_sun = sun_u * (au * AU_KM)[:, None]
    nu = sunlit_fraction_from_angles(*shadow_angles(r, r_sun))
    flux = cfg.solar_constant_w_m2 / (au * au)
    s_sat = _unit(r_sun - r)
    rn = np.linalg.norm(r, axis=-1)
    r_hat = r / rn[:, None]
    h_hat = _unit(np.cross(r, v))
    beta = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", h_hat, sun_u), -1.0, 1.0)))
    ecef = teme_to_ecef(r, gmst_rad)
    lat, lon, alt = geodetic(ecef)
    lst = np.mod(ut_h + lon / 15.0, 24.0)

    # body axes in TEME, (m, 3) each
    if cfg.attitude == "nadir":
        z = -r_hat
        y = _unit(np.cross(z, v))
        x = np.cross(y, z)
    elif cfg.attitude == "sun_pointing":
        z = s_sat
        nadir = -r_hat
        xr = nadir - np.einsum("ij,ij->i", nadir, z)[:, None] * z
        bad = np.linalg.norm(xr, axis=-1) < 1e-9
        if np.any(bad):  # nadir along the Sun line: fall back to the TEME z axis
            ez = np.broadcast_to(np.array([0.0, 0.0, 1.0]), z.shape)
            alt_x = ez - np.einsum("ij,ij->i", ez, z)[:, None] * z
            xr = np.where(bad[:, None], alt_x, xr)
        x = _unit(xr)
        y = np.cross(z, x)
    else:
        x = np.broadcast_to(np.array([1.0, 0.0, 0.0]), r.shape)
        y = np.broadcast_to(np.array([0.0, 1.0, 0.0]), r.shape)
        z = np.broadcast_to(np.array([0.0, 0.0, 1.0]), r.shape)
    cos_sun = _face_cosines(x, y, z, s_sat)  # (m, 6), faces in FACES order
    track = flux * nu
    face_solar = track[:, None] * np.maximum(cos_sun, 0.0)
    h = rn / R_EARTH_MEAN_KM
    if cfg.attitude == "nadir":
        # the Earth's centre lies on +Z and in the plane of the side faces, by construction: one view factor per
        # row for the four side faces (cos 0), full view (1/h^2) for +Z, none for -Z
        vf = np.empty((len(h), 6))
        vf[:, :4] = view_factor_to_sphere(np.zeros_like(h), h)[:, None]
        vf[:, 4] = 1.0 / (h * h)
        vf[:, 5] = 0.0
    else:
        vf = view_factor_to_sphere(_face_cosines(x, y, z, -r_hat), h[:, None])
    face_ir = cfg.earth_ir_w_m2 * vf
    cos_zenith = np.maximum(np.einsum("ij,ij->i", r_hat, sun_u), 0.0)
    face_albedo = (flux * cfg.albedo * cos_zenith)[:, None] * vf
    return OrbitGeometry(flux, nu, beta, ecef, lat, lon, alt, lst, face_solar, face_albedo, face_ir, track)


class Environment:
    """The space environment of one satellite on ``orbit``; times are ns since ``epoch_utc``."""

    def __init__(self, orbit: OrbitConfig, config: EnvironmentConfig, epoch_utc: dt.datetime) -> None:
        self.config = config
        self.orbit = Orbit(orbit, epoch_utc)
        self.epoch_utc = self.orbit.epoch_utc
        self.annual_dose_rad = (config.annual_dose_rad if config.annual_dose_rad is not None
                                else default_annual_dose_rad(self.orbit.mean_alt_km, config.shielding_mm_al))
        self.dose_per_s = self.annual_dose_rad / SECONDS_PER_YEAR
        self._epoch_year = (self.epoch_utc.year
                            + (self.epoch_utc - dt.datetime(self.epoch_utc.year, 1, 1, tzinfo=dt.UTC)).total_seconds()
                            / SECONDS_PER_YEAR)
        pole_lat, pole_lon = math.radians(DIPOLE_POLE_LAT_DEG), math.radians(DIPOLE_POLE_LON_DEG)
        self._dipole = np.array([math.cos(pole_lat) * math.cos(pole_lon), math.cos(pole_lat) * math.sin(pole_lon),
                                 math.sin(pole_lat)])
        # normalise the flux factor to 1 over the first day (30 s samples)
        t = np.arange(0.0, 86400.0, 30.0)
        r, _ = self.orbit.state(t)
        ecef = teme_to_ecef(r, self.orbit.gmst(t))
        lat, lon, _alt = geodetic(ecef)
        raw, _, _ = self.raw_flux(t, lat, lon, ecef)
        self.flux_norm = 1.0 / float(np.mean(raw)) if np.mean(raw) > 0 else 0.0

    # -- radiation ------------------------------------------------------------------------------------------------
    def saa_centre_lon_deg(self, t_s: np.ndarray | float) -> np.ndarray:
        year = self._epoch_year + np.asarray(t_s, float) / SECONDS_PER_YEAR
        return SAA_CENTRE_LON_DEG - self.config.saa_drift_deg_per_yr * (year - SAA_REF_YEAR)

    def saa_rho(self, t_s: np.ndarray, lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
        """Normalised elliptical distance from the SAA centre: 1 on the physics-sources.md outline (moved with the drift)."""
        shift = self.saa_centre_lon_deg(t_s) - SAA_CENTRE_LON_DEG
        dlon = (np.asarray(lon_deg) - (SAA_CENTRE_LON_DEG + shift) + 180.0) % 360.0 - 180.0
        dlat = np.asarray(lat_deg) - SAA_CENTRE_LAT_DEG
        o = SAA_OUTLINE_DEG
        wlon = np.where(dlon < 0, SAA_CENTRE_LON_DEG - o["west"], o["east"] - SAA_CENTRE_LON_DEG)
        wlat = np.where(dlat < 0, SAA_CENTRE_LAT_DEG - o["south"], o["north"] - SAA_CENTRE_LAT_DEG)
        return np.sqrt((dlon / wlon) ** 2 + (dlat / wlat) ** 2)

    def saa_outline(self, t_s: float, n: int = 73) -> tuple[np.ndarray, np.ndarray]:
        """The SAA outline at ``t_s`` (where :meth:`saa_rho` is 1, i.e. where ``in_saa`` switches), as a closed
        polygon of ``n`` points, clockwise seen from above (the winding spherical polygon code such as d3-geo
        takes for "the small side"): (lat_deg, lon_deg), longitudes wrapped to [-180, 180)."""
        shift = float(self.saa_centre_lon_deg(t_s)) - SAA_CENTRE_LON_DEG
        theta = np.linspace(2.0 * math.pi, 0.0, n)
        c, s = np.cos(theta), np.sin(theta)
        o = SAA_OUTLINE_DEG
        wlon = np.where(c < 0, SAA_CENTRE_LON_DEG - o["west"], o["east"] - SAA_CENTRE_LON_DEG)
        wlat = np.where(s < 0, SAA_CENTRE_LAT_DEG - o["south"], o["north"] - SAA_CENTRE_LAT_DEG)
        lon = (SAA_CENTRE_LON_DEG + shift + wlon * c + 180.0) % 360.0 - 180.0
        return SAA_CENTRE_LAT_DEG + wlat * s, lon

    def magnetic_lat_deg(self, r_ecef_km: np.ndarray) -> np.ndarray:
        """Latitude in the tilted-dipole frame (IGRF-13 2020 pole)."""
        return np.degrees(np.arcsin(np.clip(_unit(r_ecef_km) @ self._dipole, -1.0, 1.0)))

    def raw_flux(self, t_s: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                  ecef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        rho = self.saa_rho(t_s, lat, lon)
        mlat = np.abs(self.magnetic_lat_deg(ecef))
        lo, hi = c.polar_horn_mlat_deg
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        saa = c.saa_peak_weight * np.exp(-math.log(10.0) * rho * rho)  # 10 % of the peak on the outline
        horn = c.polar_horn_weight * np.exp(-((mlat - mid) / half) ** 2)
        return c.quiet_flux_weight + saa + horn, rho <= 1.0, (mlat >= lo) & (mlat <= hi)

    # -- the chunk ------------------------------------------------------------------------------------------------
    def chunk(self, t0_ns: int, dt_ns: int, n: int) -> EnvironmentChunk:
        """The environment at ``t0_ns + k * dt_ns`` for k = 0 .. n-1 (ns since the epoch)."""
        if n < 1:
            raise ModelError(f"n: a chunk needs at least 1 sample, got {n}", field="n")
        if n > 1 and dt_ns <= 0:
            raise ModelError(f"dt_ns: must be > 0, got {dt_ns}", field="dt_ns")
        t_ns = np.int64(t0_ns) + np.int64(dt_ns) * np.arange(n, dtype=np.int64)
        t_s = t_ns.astype(float) * 1e-9
        self.orbit.check_range(float(t_s[0]), float(t_s[-1]))
        orb = self.orbit
        r, v = orb.state(t_s)
        sun_u, au = orb.sun(t_s)
        g = along_orbit(self.config, r, v, sun_u, au, orb.gmst(t_s), np.mod(orb.fr0 + t_s / 86400.0, 1.0) * 24.0)
        raw, in_saa, in_horn = self.raw_flux(t_s, g.lat_deg, g.lon_deg, g.r_ecef_km)
        factor = raw * self.flux_norm
        return EnvironmentChunk(
            t_ns=t_ns, r_eci_km=r, sun_unit_eci=sun_u, sun_dist_au=au, solar_flux_w_m2=g.solar_flux_w_m2,
            sunlit_frac=g.sunlit_frac, beta_deg=g.beta_deg, lat_deg=g.lat_deg, lon_deg=g.lon_deg, alt_km=g.alt_km,
            local_solar_time_h=g.local_solar_time_h, face_solar_w_m2=g.face_solar_w_m2,
            face_albedo_w_m2=g.face_albedo_w_m2, face_ir_w_m2=g.face_ir_w_m2,
            tracking_solar_w_m2=g.tracking_solar_w_m2, in_saa=in_saa, in_polar_horn=in_horn,
            rad_flux_factor=factor, dose_rate_rad_s=factor * self.dose_per_s)

    def sample(self, t_ns: int) -> EnvironmentSample:
        """The environment at one instant (``chunk(t_ns, 1, 1).sample(0)``)."""
        return self.chunk(t_ns, 1, 1).sample(0)

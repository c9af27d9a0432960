"""Fluxes on the body faces, view factors, and the radiation environment (SAA, polar horns, dose)."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest
from pydantic import ValidationError

from emulator.errors import ModelError
from emulator.models.environment import (
    FACES,
    R_EARTH_MEAN_KM,
    SAA_CENTRE_LAT_DEG,
    SAA_CENTRE_LON_DEG,
    SPENVIS_550KM_RAD_PER_YR,
    Environment,
    EnvironmentChunk,
    EnvironmentConfig,
    default_annual_dose_rad,
    view_factor_to_sphere,
)
from emulator.models.orbit import OrbitConfig, config_error

VIEW_FACTOR_TOL = 2e-3  # closed form vs a 600 x 1200 quadrature over the sphere
FLUX_TOL_W_M2 = 1e-6  # identities that hold to rounding
RAD_AVG_TOL_FRAC = 0.10  # orbit-average flux factor on a later day (ground track does not repeat exactly)
SAA_SHARE_RANGE = (0.60, 0.97)  # physics-sources.md §5: the SAA carries 80-97 % of LEO SEUs (confidence L)
DOSE_TOL_FRAC = 0.01  # default dose vs the physics-sources.md anchors it is built on

EPOCH = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
DAWN_DUSK = OrbitConfig(alt_km=650.0, ltan_h="18:00")
ISS_TLE = ("1 25544U 98067A   14020.93268519  .00009878  00000-0  18200-3 0  5082",
           "2 25544  51.6498 109.4756 0003572  55.9686 274.8005 15.49815350868473")


def env(attitude: str = "nadir", orbit: OrbitConfig = DAWN_DUSK, epoch: dt.datetime = EPOCH, **kw: object
        ) -> Environment:
    return Environment(orbit, EnvironmentConfig(attitude=attitude, **kw), epoch)


@pytest.fixture(scope="module")
def day() -> EnvironmentChunk:
    return env().chunk(0, 60 * 10**9, 1440)


# -- the chunk ---------------------------------------------------------------------------------------------------
def test_chunk_shapes_and_a_day_at_one_second() -> None:
    c = env().chunk(0, 10**9, 86_400)
    assert len(c) == 86_400
    assert c.r_eci_km.shape == (86_400, 3) and c.face_solar_w_m2.shape == (86_400, 6)
    assert c.t_ns.dtype == np.int64 and c.t_ns[-1] == 86_399 * 10**9
    for name in ("sunlit_frac", "face_albedo_w_m2", "face_ir_w_m2", "dose_rate_rad_s", "rad_flux_factor"):
        v = getattr(c, name)
        assert np.all(np.isfinite(v)) and np.all(v >= 0.0), name
    assert c.sunlit_frac.max() <= 1.0 and c.in_saa.dtype == bool


def test_sample_equals_the_chunk_and_is_deterministic() -> None:
    e1, e2 = env(), env()
    c = e1.chunk(5 * 10**9, 7 * 10**9, 2000)
    for i in (0, 17, 999, 1999):
        s = e2.sample(int(c.t_ns[i]))
        t = c.sample(i)
        for f in ("sunlit_frac", "beta_deg", "lat_deg", "lon_deg", "alt_km", "local_solar_time_h", "solar_flux_w_m2",
                  "rad_flux_factor", "dose_rate_rad_s", "tracking_solar_w_m2", "sun_dist_au"):
            assert getattr(s, f) == pytest.approx(getattr(t, f), rel=1e-12, abs=1e-12), f
        np.testing.assert_allclose(s.face_solar_w_m2, t.face_solar_w_m2, rtol=1e-12, atol=1e-9)
        assert s.in_saa is t.in_saa and isinstance(s.in_saa, bool)
        assert isinstance(t.t_ns, int) and isinstance(t.beta_deg, float)


def test_chunk_refuses_bad_arguments() -> None:
    e = env()
    with pytest.raises(ModelError, match="at least 1"):
        e.chunk(0, 10**9, 0)
    with pytest.raises(ModelError, match="dt_ns"):
        e.chunk(0, 0, 10)
    with pytest.raises(ModelError, match="outside"):
        e.chunk(80 * 365 * 86400 * 10**9, 10**9, 2)


# -- view factor and face fluxes -----------------------------------------------------------------------------------
def numeric_view_factor(theta: float, h: float, n: int = 600) -> float:
    """F = integral over the sphere of cos t1 cos t2 / (pi s^2) dA, by midpoint quadrature (unit sphere)."""
    th = (np.arange(n) + 0.5) * np.pi / n
    ph = (np.arange(2 * n) + 0.5) * np.pi / n
    T, P = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], axis=-1)
    da = np.sin(T) * (np.pi / n) ** 2
    el = np.array([0.0, 0.0, h])  # element above the north pole; its normal tilted by theta from -z
    normal = np.array([math.sin(theta), 0.0, -math.cos(theta)])
    s = pts - el
    d = np.linalg.norm(s, axis=-1)
    c1 = (s @ normal) / d
    c2 = -np.sum(s * pts, axis=-1) / d
    ok = (c1 > 0) & (c2 > 0)
    return float(np.sum(np.where(ok, c1 * c2 / (np.pi * d * d) * da, 0.0)))


@pytest.mark.parametrize("h", [1.1, 1.5, 3.0])
@pytest.mark.parametrize("theta_deg", [0.0, 30.0, 60.0, 90.0, 110.0, 130.0])
def test_view_factor_matches_numeric_integration(h: float, theta_deg: float) -> None:
    f = float(view_factor_to_sphere(np.array([math.cos(math.radians(theta_deg))]), np.array([h]))[0])
    assert f == pytest.approx(numeric_view_factor(math.radians(theta_deg), h), abs=VIEW_FACTOR_TOL)


def test_nadir_faces_see_the_earth_as_expected(day: EnvironmentChunk) -> None:
    c = day
    h = np.linalg.norm(c.r_eci_km, axis=1) / R_EARTH_MEAN_KM
    iz, imz = FACES.index("+Z"), FACES.index("-Z")
    np.testing.assert_allclose(c.face_ir_w_m2[:, iz], 237.0 / h**2, rtol=1e-9)  # +Z = nadir, full view
    assert np.all(c.face_ir_w_m2[:, imz] == 0.0)  # zenith face sees no Earth
    side = view_factor_to_sphere(np.zeros_like(h), h) * 237.0
    for f in ("+X", "-X", "+Y", "-Y"):
        np.testing.assert_allclose(c.face_ir_w_m2[:, FACES.index(f)], side, rtol=1e-9)
    cos_zenith = np.maximum(np.sum(c.r_eci_km * c.sun_unit_eci, axis=1) / np.linalg.norm(c.r_eci_km, axis=1), 0)
    np.testing.assert_allclose(c.face_albedo_w_m2[:, iz], c.solar_flux_w_m2 * 0.30 * cos_zenith / h**2, rtol=1e-9)
    assert np.all(c.face_albedo_w_m2[cos_zenith == 0.0] == 0.0)


@pytest.mark.parametrize("attitude", ["nadir", "sun_pointing", "inertial"])
def test_direct_solar_is_the_projection_on_an_orthonormal_body_frame(attitude: str) -> None:
    c = env(attitude).chunk(0, 60 * 10**9, 1440)
    s = c.face_solar_w_m2
    net = s[:, 0::2] - s[:, 1::2]  # (+X - -X, +Y - -Y, +Z - -Z) = track * (cosines of the three axes)
    np.testing.assert_allclose(np.linalg.norm(net, axis=1), c.tracking_solar_w_m2, atol=FLUX_TOL_W_M2)
    assert np.all(np.minimum(s[:, 0::2], s[:, 1::2]) == 0.0)  # a face and its opposite are never both lit
    np.testing.assert_allclose(c.tracking_solar_w_m2, c.solar_flux_w_m2 * c.sunlit_frac, rtol=1e-12)
    if attitude == "sun_pointing":
        np.testing.assert_allclose(s[:, FACES.index("+Z")], c.tracking_solar_w_m2, rtol=1e-12)
    if attitude == "inertial":
        # the body axes are the TEME axes; the Sun seen from 7,000 km off the Earth's centre moves < 0.003 deg
        want = c.tracking_solar_w_m2 * np.maximum(c.sun_unit_eci[:, 0], 0.0)
        np.testing.assert_allclose(s[:, FACES.index("+X")], want, atol=0.1)


def test_dawn_dusk_wing_and_eclipse_flux(day: EnvironmentChunk) -> None:
    c = day
    lit = c.sunlit_frac == 1.0
    assert np.all(c.tracking_solar_w_m2[lit] == pytest.approx(1361.0 / 1.0163**2, rel=0.002))  # near aphelion
    assert np.all(c.face_solar_w_m2[c.sunlit_frac == 0.0] == 0.0)
    # nadir attitude in a dawn-dusk orbit: the Sun is broadside, on the -Y side (anti orbit normal is +Y)
    iy, imy = FACES.index("+Y"), FACES.index("-Y")
    assert c.face_solar_w_m2[lit, imy].mean() > 0.8 * c.tracking_solar_w_m2[lit].mean()
    assert np.all(c.face_solar_w_m2[:, iy] == 0.0)


# -- radiation ------------------------------------------------------------------------------------------------------
def test_saa_outline_follows_physics_md() -> None:
    e = env()
    t0 = np.zeros(1)
    year_2020 = (dt.datetime(2020, 1, 1, tzinfo=dt.UTC) - EPOCH).total_seconds()
    def rho(lat: float, lon: float, t: float = year_2020) -> float:
        return float(e.saa_rho(np.array([t]), np.array([lat]), np.array([lon]))[0])

    # (2020-01-01 is 2020.0 to within a fraction of a day with 365.25-day years: ~1e-5 deg of drift)
    assert rho(SAA_CENTRE_LAT_DEG, SAA_CENTRE_LON_DEG) == pytest.approx(0.0, abs=1e-4)
    for lat, lon in ((-50.0, SAA_CENTRE_LON_DEG), (0.0, SAA_CENTRE_LON_DEG), (SAA_CENTRE_LAT_DEG, -90.0),
                     (SAA_CENTRE_LAT_DEG, 40.0)):
        assert rho(lat, lon) == pytest.approx(1.0, abs=1e-4)
    assert rho(40.0, 100.0) > 3.0
    # drift: 0.3 deg/yr westward
    assert float(e.saa_centre_lon_deg(t0)[0]) == pytest.approx(SAA_CENTRE_LON_DEG - 0.3 * 6.47, abs=0.02)


def test_saa_and_horns_dominate_the_dose(day: EnvironmentChunk) -> None:
    c = day
    assert c.in_saa.any() and c.in_polar_horn.any() and (~c.in_saa & ~c.in_polar_horn).any()
    assert c.rad_flux_factor.mean() == pytest.approx(1.0, abs=0.02)
    quiet = np.median(c.rad_flux_factor[~c.in_saa & ~c.in_polar_horn])
    assert c.rad_flux_factor[c.in_saa].max() > 20.0 * quiet
    assert c.rad_flux_factor[c.in_polar_horn & ~c.in_saa].mean() > 2.0 * quiet
    share = c.rad_flux_factor[c.in_saa].sum() / c.rad_flux_factor.sum()
    assert SAA_SHARE_RANGE[0] <= share <= SAA_SHARE_RANGE[1]
    assert np.all(np.abs(c.lat_deg[c.in_saa]) <= 50.0 + 1e-9)


@pytest.mark.parametrize("orbit", [DAWN_DUSK, OrbitConfig(tle_line1=ISS_TLE[0], tle_line2=ISS_TLE[1])])
def test_orbit_average_flux_factor_is_one(orbit: OrbitConfig) -> None:
    epoch = EPOCH if orbit.kind == "sso" else dt.datetime(2014, 1, 21, tzinfo=dt.UTC)
    e = env(orbit=orbit, epoch=epoch)
    later = e.chunk(3 * 86400 * 10**9, 20 * 10**9, 4320)  # day 4
    assert later.rad_flux_factor.mean() == pytest.approx(1.0, rel=RAD_AVG_TOL_FRAC)
    per_day = later.dose_rate_rad_s.mean() * 86400.0
    assert per_day * 365.25 == pytest.approx(e.annual_dose_rad, rel=RAD_AVG_TOL_FRAC)


def test_default_annual_dose_lands_on_the_published_figures() -> None:
    for mm, rad in SPENVIS_550KM_RAD_PER_YR:  # physics-sources.md §5, SPENVIS at 550 km
        assert default_annual_dose_rad(550.0, mm) == pytest.approx(rad, rel=DOSE_TOL_FRAC)
    assert default_annual_dose_rad(650.0, 10.0) == pytest.approx(150.0, rel=DOSE_TOL_FRAC)  # physics-sources.md §1
    doses = [default_annual_dose_rad(650.0, mm) for mm in (0.5, 1, 2, 4, 8, 16, 32)]
    assert all(a > b for a, b in itertools.pairwise(doses))
    assert env().annual_dose_rad == pytest.approx(150.0, rel=DOSE_TOL_FRAC)
    assert env(annual_dose_rad=400.0).annual_dose_rad == 400.0
    e = env(shielding_mm_al=2.0)
    c = e.chunk(0, 60 * 10**9, 10)
    np.testing.assert_allclose(c.dose_rate_rad_s, c.rad_flux_factor * e.annual_dose_rad / (365.25 * 86400.0))


def test_polar_horns_are_a_magnetic_latitude_band(day: EnvironmentChunk) -> None:
    e = env()
    r = np.array([[math.cos(math.radians(80.65)) * math.cos(math.radians(-72.68)),
                   math.cos(math.radians(80.65)) * math.sin(math.radians(-72.68)), math.sin(math.radians(80.65))]])
    assert float(e.magnetic_lat_deg(r * 7000.0)[0]) == pytest.approx(90.0, abs=1e-9)
    c = day
    assert not np.any(c.in_polar_horn & (np.abs(c.lat_deg) < 40.0))  # the dipole tilt is ~9 deg


# -- config ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "field"), [
    ({"albedo": 1.5}, "albedo"), ({"attitude": "tumbling"}, "attitude"), ({"earth_ir_w_m2": -1.0}, "earth_ir_w_m2"),
    ({"shielding_mm_al": 0.0}, "shielding_mm_al"), ({"annual_dose_rad": -5.0}, "annual_dose_rad"),
    ({"polar_horn_mlat_deg": (70.0, 55.0)}, "polar_horn_mlat_deg"), ({"albdeo": 0.3}, "albdeo"),
])
def test_bad_environment_config_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        EnvironmentConfig(**kw)
    assert config_error(info.value).field == field

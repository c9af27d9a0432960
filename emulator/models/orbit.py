"""Orbit propagation (SGP4 or J2 secular), the Sun, the Earth's conical shadow, eclipse search and frames.

Everything here is vectorised over time with numpy and pure (no I/O, no wall clock). Times are seconds
(``t_s``, float64) since the orbit's epoch, a UTC instant; equations, sources and the approximations made are
in ``docs/models-orbit.md``. In short:

* **Frames.** SGP4 returns TEME (true equator, mean equinox of date). TEME is used as the inertial frame for
  everything: the J2 propagator's elements, the Sun (rotated from true-of-date into TEME by the equation of
  the equinoxes) and the Earth-fixed frame (TEME rotated by GMST, IAU-82, as in Vallado's TEME -> PEF; polar
  motion is ignored and UT1 is taken equal to UTC, |UT1 - UTC| < 0.9 s, i.e. < 0.004 deg of longitude).
* **Sun.** Meeus, *Astronomical Algorithms* (2nd ed.), ch. 25 "low accuracy" apparent position with the
  nutation and aberration terms, ~0.01 deg; checked against JPL DE421 through skyfield in the tests.
* **Shadow.** Conical umbra and penumbra with the apparent-radius model (Montenbruck & Gill, *Satellite
  Orbits*, sec. 3.4.2): the sunlit fraction is the part of the solar disc not covered by the Earth's disc as
  seen from the satellite, for a spherical Earth of the equatorial radius and no atmosphere.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import field_validator, model_validator

from emulator.errors import ConfigError, ModelError
from emulator.validation import ConfigModel

if TYPE_CHECKING:  # sgp4 is imported where a TLE is read: the other orbits never need it
    from sgp4.api import Satrec

# -- constants -----------------------------------------------------------------------------------------------
MU_EARTH_KM3_S2 = 398600.4418  # EGM96 / WGS84 GM
R_EARTH_KM = 6378.137  # WGS84 equatorial radius; physics-sources.md §1 uses the same R_E
WGS84_F = 1.0 / 298.257223563  # WGS84 flattening (geodetic latitude and altitude)
J2_EARTH = 1.08262668e-3  # EGM96 J2 (physics-sources.md §1 rounds it to 1.0826e-3)
R_SUN_KM = 695_700.0  # IAU 2015 nominal solar radius
AU_KM = 149_597_870.7  # IAU 2012
TROPICAL_YEAR_D = 365.2422  # physics-sources.md §1: the SSO condition uses 2 pi / 365.2422 d
SSO_RAAN_RATE_RAD_S = 2.0 * math.pi / (TROPICAL_YEAR_D * 86400.0)
MIN_ALT_KM = 160.0  # below this a satellite re-enters within days; refused
REENTRY_ALT_KM = 100.0  # SGP4 positions below the Karman line: the object has re-entered
MAX_ALT_KM = 50_000.0  # beyond GEO: the shadow model still holds but nothing else here is meant for it
MIN_YEAR, MAX_YEAR = 1957, 2100  # supported epoch range (Meeus' Sun and GMST-82 are good over it)
TT_MINUS_UTC_S = 69.184  # 37 leap s + 32.184 s (since 2017); a fixed value moves the Sun < 0.0003 deg
JD_UNIX_EPOCH = 2440587.5

OrbitKind = Literal["tle", "sso", "elements"]


# -- configuration -------------------------------------------------------------------------------------------
def tle_checksum(line: str) -> int:
    """The TLE checksum of the first 68 columns: sum of the digits, '-' counting 1, modulo 10."""
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def check_tle_line(line: str, number: int) -> str:
    """Return the line (trailing blanks removed) or raise ValueError saying what is wrong with it."""
    name = f"tle_line{number}"
    text = line.rstrip()
    if len(text) != 69:
        raise ValueError(f"{name}: a TLE line has exactly 69 columns, got {len(text)}")
    if not text.startswith(f"{number} "):
        raise ValueError(f"{name}: must start with '{number} ' (line number {number}), got {text[:2]!r}")
    if not text[68].isdigit():
        raise ValueError(f"{name}: column 69 must be the checksum digit, got {text[68]!r}")
    want = tle_checksum(text)
    if int(text[68]) != want:
        raise ValueError(f"{name}: bad checksum: column 69 is {text[68]}, the first 68 columns give {want}")
    return text


def parse_ltan_h(value: Any) -> float:
    """'18:00', '06:30:00', 18, 18.5 -> hours. Raises ValueError naming the format."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        hours = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?\s*", value)
        if m:
            hh, mm, ss = int(m[1]), int(m[2]), float(m[3] or 0.0)
            if mm >= 60 or ss >= 60:
                raise ValueError(f"ltan_h: bad time {value!r}: minutes and seconds must be < 60")
            hours = hh + mm / 60.0 + ss / 3600.0
        else:
            try:
                hours = float(value)
            except ValueError:
                raise ValueError(f"ltan_h: bad local time {value!r}: use HH:MM (e.g. '18:00') or hours "
                                 "(e.g. 18.0)") from None
    else:
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error naming the field
        raise ValueError(f"ltan_h: expected HH:MM or hours, got {type(value).__name__}")  # noqa: TRY004
    if not 0.0 <= hours < 24.0:
        raise ValueError(f"ltan_h: local time of the ascending node must be in [0, 24) h, got {hours:g}")
    return hours


def sso_inclination_deg(alt_km: float) -> float:
    """Inclination of a circular sun-synchronous orbit at ``alt_km`` (physics-sources.md §1).

    cos i = -Omega_dot_sun / (1.5 J2 n (R_E / a)^2), Omega_dot_sun = 2 pi / 365.2422 d, n = sqrt(mu / a^3).
    Raises ValueError above the highest sun-synchronous altitude (cos i < -1).
    """
    a = R_EARTH_KM + alt_km
    n = math.sqrt(MU_EARTH_KM3_S2 / a**3)
    cos_i = -SSO_RAAN_RATE_RAD_S / (1.5 * J2_EARTH * n * (R_EARTH_KM / a) ** 2)
    if cos_i < -1.0:
        raise ValueError(f"alt_km: no sun-synchronous orbit at {alt_km:g} km: J2 precession is too slow "
                         "above about 5,970 km")
    return math.degrees(math.acos(cos_i))


#: |z| below which the satellite is on the equator at a search's start (km; 1 mm): that instant is a node
NODE_AT_START_KM = 1e-6

class OrbitConfig(ConfigModel):
    """One orbit, given in one of three ways (which one is inferred from the fields that are set):

    * ``tle``: ``tle_line1`` and ``tle_line2`` (a two-line element set, propagated with SGP4);
    * ``sso``: ``alt_km`` and ``ltan_h``: a circular sun-synchronous orbit; the inclination follows from the
      altitude and the RAAN from the local time of the ascending node (mean solar time) at the epoch;
      ``ma_deg`` (argument of latitude at the epoch) places the satellite on it;
    * ``elements``: ``alt_km`` (a - R_E), ``inc_deg``, ``raan_deg`` and optionally ``ecc``, ``argp_deg``,
      ``ma_deg``: mean elements at the simulation epoch, propagated with J2 secular rates.
    """

    tle_line1: str | None = None
    tle_line2: str | None = None
    #: mean altitude a - R_E [km]; physics-sources.md §1: Suncatcher's cluster study flies at ~650 km
    alt_km: float | None = None
    #: local time of the ascending node [h], mean solar time; 18.0 = dawn-dusk (physics-sources.md §1)
    ltan_h: float | None = None
    inc_deg: float | None = None
    raan_deg: float | None = None
    ecc: float | None = None  # None -> 0 (circular)
    argp_deg: float | None = None  # None -> 0
    ma_deg: float | None = None  # None -> 0 (at perigee; for a circular orbit: at the ascending node)

    @field_validator("tle_line1")
    @classmethod
    def _line1(cls, v: str | None) -> str | None:
        return None if v is None else check_tle_line(v, 1)

    @field_validator("tle_line2")
    @classmethod
    def _line2(cls, v: str | None) -> str | None:
        return None if v is None else check_tle_line(v, 2)

    @field_validator("ltan_h", mode="before")
    @classmethod
    def _ltan(cls, v: Any) -> float | None:
        return None if v is None else parse_ltan_h(v)

    @field_validator("alt_km")
    @classmethod
    def _alt(cls, v: float | None) -> float | None:
        if v is not None and not MIN_ALT_KM <= v <= MAX_ALT_KM:
            raise ValueError(f"alt_km: altitude must be in [{MIN_ALT_KM:g}, {MAX_ALT_KM:g}] km, got {v:g} "
                             f"(below ~{MIN_ALT_KM:g} km an orbit decays within days)")
        return v

    @field_validator("inc_deg")
    @classmethod
    def _inc(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 <= v <= 180.0:
            raise ValueError(f"inc_deg: inclination must be in [0, 180] deg, got {v:g}")
        return v

    @field_validator("raan_deg", "argp_deg", "ma_deg")
    @classmethod
    def _angle(cls, v: float | None, info: Any) -> float | None:
        if v is not None and not (-360.0 <= v <= 360.0 and math.isfinite(v)):
            raise ValueError(f"{info.field_name}: angle must be in [-360, 360] deg, got {v:g}")
        return v

    @field_validator("ecc")
    @classmethod
    def _ecc(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 <= v < 1.0:
            raise ValueError(f"ecc: eccentricity must be in [0, 1) (a closed orbit), got {v:g}")
        return v

    @property
    def kind(self) -> OrbitKind:
        if self.tle_line1 is not None or self.tle_line2 is not None:
            return "tle"
        if self.ltan_h is not None:
            return "sso"
        return "elements"

    @model_validator(mode="after")
    def _one_way(self) -> OrbitConfig:
        given = {k for k in type(self).model_fields if getattr(self, k) is not None}
        ways = ("give one of: tle_line1 + tle_line2 (TLE), alt_km + ltan_h (sun-synchronous), or "
                "alt_km + inc_deg + raan_deg [+ ecc, argp_deg, ma_deg] (elements)")
        if not given:
            raise ValueError(f"orbit: no orbit given; {ways}")
        kind = self.kind
        what = {"tle": "a TLE", "sso": "a sun-synchronous", "elements": "an elements"}[kind]
        allowed = {"tle": {"tle_line1", "tle_line2"},
                   "sso": {"alt_km", "ltan_h", "ma_deg"},
                   "elements": {"alt_km", "inc_deg", "raan_deg", "ecc", "argp_deg", "ma_deg"}}[kind]
        required = {"tle": {"tle_line1", "tle_line2"}, "sso": {"alt_km", "ltan_h"},
                    "elements": {"alt_km", "inc_deg", "raan_deg"}}[kind]
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{extra[0]}: not used by {what} orbit (fields set: {', '.join(sorted(given))}); "
                             f"{ways}")
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"{missing[0]}: missing for {what} orbit; {ways}")
        if kind == "tle":
            _satrec(self.tle_line1 or "", self.tle_line2 or "")  # raises ValueError naming the problem
        elif kind == "sso":
            sso_inclination_deg(self.alt_km or 0.0)
        else:
            a = R_EARTH_KM + (self.alt_km or 0.0)
            perigee_km = a * (1.0 - (self.ecc or 0.0)) - R_EARTH_KM
            if perigee_km < MIN_ALT_KM:
                what = "inside the Earth" if perigee_km < 0 else "too low"
                raise ValueError(f"ecc: perigee altitude {perigee_km:.0f} km is {what} (alt_km {self.alt_km:g}, "
                                 f"ecc {self.ecc:g}); the perigee must be at least {MIN_ALT_KM:g} km up")
        return self


def _satrec(line1: str, line2: str) -> Satrec:
    from sgp4.api import SGP4_ERRORS, Satrec

    if line1[2:7] != line2[2:7]:
        raise ValueError(f"tle_line2: catalogue number {line2[2:7]!r} differs from line 1's {line1[2:7]!r}")
    try:
        sat = Satrec.twoline2rv(line1, line2)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"tle_line1: SGP4 cannot read this TLE: {exc}") from None
    if sat.error:
        raise ValueError(f"tle_line2: SGP4 refuses this TLE: {SGP4_ERRORS.get(sat.error, sat.error)}")
    a_km = sat.a * sat.radiusearthkm
    perigee_km = a_km * (1.0 - sat.ecco) - sat.radiusearthkm
    if not sat.ecco < 1.0 or perigee_km < MIN_ALT_KM:
        raise ValueError(f"tle_line2: perigee altitude {perigee_km:.0f} km (eccentricity {sat.ecco:g}) is below "
                         f"{MIN_ALT_KM:g} km")
    return sat


def config_error(exc: Exception) -> ConfigError:
    """A ConfigError from a pydantic ValidationError (or any ValueError), naming the field."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return ConfigError(str(exc))
    first = errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", exc)).removeprefix("Value error, ")
    head = msg.split(":", 1)[0]
    field = head if re.fullmatch(r"[a-z0-9_.]+", head) else (loc or None)
    if field and not msg.startswith(field):
        msg = f"{field}: {msg}"
    return ConfigError(msg, field=field)


# -- time ------------------------------------------------------------------------------------------------------
def check_epoch(epoch_utc: dt.datetime, field: str = "epoch_utc") -> dt.datetime:
    """Return ``epoch_utc`` as an aware UTC datetime (naive means UTC) or raise ConfigError."""
    if not isinstance(epoch_utc, dt.datetime):
        raise ConfigError(f"{field}: expected a datetime, got {type(epoch_utc).__name__}", field=field)
    if epoch_utc.tzinfo is None:
        epoch_utc = epoch_utc.replace(tzinfo=dt.UTC)
    epoch_utc = epoch_utc.astimezone(dt.UTC)
    if not MIN_YEAR <= epoch_utc.year < MAX_YEAR:
        raise ConfigError(f"{field}: {epoch_utc.isoformat()} is outside the supported range "
                          f"{MIN_YEAR}-01-01 .. {MAX_YEAR}-01-01", field=field)
    return epoch_utc


#: spacing of the Sun-position knots that :meth:`Orbit.sun` interpolates between for chunks of many samples
SUN_KNOT_S = 60.0
SUN_INTERP_MIN_SAMPLES = 256


def julian_date(utc: dt.datetime) -> tuple[float, float]:
    """(whole, fraction) Julian date of an aware datetime; the whole part ends in .5 (midnight)."""
    utc = utc.astimezone(dt.UTC)
    days = (utc.date() - dt.date(1970, 1, 1)).days
    whole = JD_UNIX_EPOCH + days
    frac = (utc.hour * 3600 + utc.minute * 60 + utc.second + utc.microsecond * 1e-6) / 86400.0
    return whole, frac


def gmst_rad(jd_ut1: np.ndarray | float, fr: np.ndarray | float) -> np.ndarray:
    """Greenwich mean sidereal time, IAU-82 (Vallado, *Fundamentals of Astrodynamics*, eq. 3-47), radians."""
    jd0 = np.asarray(jd_ut1, dtype=float) - 2451545.0
    frac = np.asarray(fr, dtype=float)
    t = (jd0 + frac) / 36525.0
    # 876600 h * 3600 s/h * T = 86400 s/day * 36525 days * T = 86400 * (days since J2000); split for precision
    sec = 67310.54841 + 86400.0 * (np.mod(jd0, 1.0) + frac) + 8640184.812866 * t + 0.093104 * t**2 - 6.2e-6 * t**3
    return np.mod(sec, 86400.0) * (2.0 * math.pi / 86400.0)


def sun_teme(jd_utc: np.ndarray | float, fr: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Apparent geocentric Sun: (unit vector in TEME (n, 3), Earth-Sun distance [AU] (n,)).

    Meeus, *Astronomical Algorithms* 2nd ed., ch. 25 (low accuracy), with the apparent-place corrections
    (aberration -20.5", nutation in longitude and obliquity, ch. 22 leading terms) and the rotation from true
    equinox to TEME's mean equinox by the equation of the equinoxes.
    """
    jd = np.atleast_1d(np.asarray(jd_utc, dtype=float)) - 2451545.0
    fr_tt = np.atleast_1d(np.asarray(fr, dtype=float)) + TT_MINUS_UTC_S / 86400.0
    t = (jd + fr_tt) / 36525.0
    deg = math.pi / 180.0
    l0 = 280.46646 + 36000.76983 * t + 0.0003032 * t**2
    m = (357.52911 + 35999.05029 * t - 0.0001537 * t**2) * deg
    e = 0.016708634 - 0.000042037 * t - 0.0000001267 * t**2
    c = ((1.914602 - 0.004817 * t - 0.000014 * t**2) * np.sin(m) + (0.019993 - 0.000101 * t) * np.sin(2 * m)
         + 0.000289 * np.sin(3 * m))
    nu = m + c * deg
    # perturbations by Venus (A, B), Jupiter (C), the Moon (D: the Earth circles the Earth-Moon barycentre) and
    # a long-period term (E), and in distance (H): Meeus, *Astronomical Formulae for Calculators*, ch. 18
    # (Newcomb's theory; arguments count centuries from 1900 Jan 0.5). They cut the error ~2.5x (see tests).
    t9 = t + 1.0  # 1900 Jan 0.5 is JD 2415020.0, exactly 36525 days before J2000
    pa = (153.23 + 22518.7541 * t9) * deg
    pb = (216.57 + 45037.5082 * t9) * deg
    pc = (312.69 + 32964.3577 * t9) * deg
    pd = (350.74 + 445267.1142 * t9 - 0.00144 * t9**2) * deg
    pe = (231.19 + 20.20 * t9) * deg
    ph = (353.40 + 65928.7155 * t9) * deg
    true_lon = (l0 + c + 0.00134 * np.cos(pa) + 0.00154 * np.cos(pb) + 0.00200 * np.cos(pc)
                + 0.00179 * np.sin(pd) + 0.00178 * np.sin(pe))
    dist_au = (1.000001018 * (1.0 - e**2) / (1.0 + e * np.cos(nu))
               + 5.43e-6 * np.sin(pa) + 1.575e-5 * np.sin(pb) + 1.627e-5 * np.sin(pc) + 3.076e-5 * np.cos(pd)
               + 9.27e-6 * np.sin(ph))
    # nutation (Meeus ch. 22, terms > 0.1"): Omega, and mean longitudes of the Sun (L) and Moon (L')
    om = (125.04452 - 1934.136261 * t) * deg
    ls = (280.4665 + 36000.7698 * t) * deg
    lm = (218.3165 + 481267.8813 * t) * deg
    dpsi = (-17.20 * np.sin(om) - 1.32 * np.sin(2 * ls) - 0.23 * np.sin(2 * lm) + 0.21 * np.sin(2 * om)) / 3600.0
    deps = (9.20 * np.cos(om) + 0.57 * np.cos(2 * ls) + 0.10 * np.cos(2 * lm) - 0.09 * np.cos(2 * om)) / 3600.0
    eps0 = 23.0 + 26.0 / 60.0 + (21.448 - 46.8150 * t - 0.00059 * t**2 + 0.001813 * t**3) / 3600.0
    eps = (eps0 + deps) * deg
    lam = (true_lon - 20.4898 / 3600.0 / dist_au + dpsi) * deg  # apparent longitude, true equinox of date
    x = np.cos(lam)
    y = np.cos(eps) * np.sin(lam)
    z = np.sin(eps) * np.sin(lam)
    # true equator/equinox -> TEME (true equator, mean equinox): RA_TEME = RA_TOD - dpsi cos(eps)
    eqeq = dpsi * deg * np.cos(eps)
    ce, se = np.cos(eqeq), np.sin(eqeq)
    unit = np.stack([ce * x + se * y, -se * x + ce * y, z], axis=-1)
    return unit, dist_au


def teme_to_ecef(r_teme: np.ndarray, gmst: np.ndarray) -> np.ndarray:
    """Rotate TEME vectors (n, 3) into the Earth-fixed (pseudo-Earth-fixed) frame by GMST (n,)."""
    cg, sg = np.cos(gmst), np.sin(gmst)
    x, y, z = r_teme[:, 0], r_teme[:, 1], r_teme[:, 2]
    return np.stack([cg * x + sg * y, -sg * x + cg * y, z], axis=-1)


def geodetic(r_ecef_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WGS84 geodetic (lat_deg, lon_deg, alt_km) of Earth-fixed positions (n, 3): Bowring's method, 3 passes."""
    x, y, z = r_ecef_km[:, 0], r_ecef_km[:, 1], r_ecef_km[:, 2]
    a = R_EARTH_KM
    e2 = WGS84_F * (2.0 - WGS84_F)
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1.0 - e2))
    for _ in range(3):
        s = np.sin(lat)
        n = a / np.sqrt(1.0 - e2 * s * s)
        lat = np.arctan2(z + e2 * n * s, p)
    s, c = np.sin(lat), np.cos(lat)
    n = a / np.sqrt(1.0 - e2 * s * s)
    # altitude, well conditioned at every latitude
    alt = p * c + z * s - n * (1.0 - e2 * s * s)
    return np.degrees(lat), np.degrees(np.arctan2(y, x)), alt


# -- shadow --------------------------------------------------------------------------------------------------
def shadow_angles(r_km: np.ndarray, r_sun_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seen from the satellite: apparent Sun radius a, apparent Earth radius b, and their centres' separation
    c (radians, each (n,)). ``r_km`` satellite, ``r_sun_km`` Sun, both geocentric (n, 3)."""
    d = r_sun_km - r_km
    dn = np.linalg.norm(d, axis=-1)
    rn = np.linalg.norm(r_km, axis=-1)
    a = np.arcsin(np.minimum(R_SUN_KM / dn, 1.0))
    b = np.arcsin(np.minimum(R_EARTH_KM / rn, 1.0))
    dot = -np.einsum("ij,ij->i", r_km, d)
    cross = np.linalg.norm(np.cross(-r_km, d), axis=-1)
    c = np.arctan2(cross, dot)
    return a, b, c


def sunlit_fraction_from_angles(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Fraction of the solar disc (radius a) not covered by the Earth's disc (radius b) at separation c."""
    a, b, c = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(c, float))
    nu = np.ones_like(c)
    umbra = c <= b - a
    nu[umbra] = 0.0
    annular = (c <= a - b) & ~umbra
    nu[annular] = 1.0 - (b[annular] / a[annular]) ** 2
    part = (c < a + b) & ~umbra & ~annular
    if np.any(part):
        ap, bp, cp = a[part], b[part], c[part]
        x = (cp * cp + ap * ap - bp * bp) / (2.0 * cp)
        y = np.sqrt(np.maximum(ap * ap - x * x, 0.0))
        area = (ap * ap * np.arccos(np.clip(x / ap, -1.0, 1.0))
                + bp * bp * np.arccos(np.clip((cp - x) / bp, -1.0, 1.0)) - cp * y)
        nu[part] = np.clip(1.0 - area / (math.pi * ap * ap), 0.0, 1.0)
    return nu


def sunlit_fraction(r_km: np.ndarray, r_sun_km: np.ndarray) -> np.ndarray:
    """Sunlit fraction (0 umbra .. 1 full Sun) for satellite and Sun positions (n, 3), geocentric km."""
    return sunlit_fraction_from_angles(*shadow_angles(r_km, r_sun_km))


# -- propagators ---------------------------------------------------------------------------------------------
class _Sgp4:
    def __init__(self, sat: Satrec) -> None:
        self.sat = sat

    def state(self, jd: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        err, r, v = self.sat.sgp4_array(jd, fr)
        if np.any(err):
            from sgp4.api import SGP4_ERRORS

            k = int(np.flatnonzero(err)[0])
            raise ModelError(f"orbit: SGP4 failed at JD {jd[k] + fr[k]:.5f}: {SGP4_ERRORS.get(int(err[k]))} "
                             "(propagated too far from the TLE epoch, or the object has decayed)",
                             field="orbit.tle_line2")
        low = np.einsum("ij,ij->i", r, r) < (R_EARTH_KM + REENTRY_ALT_KM) ** 2
        if np.any(low):
            k = int(np.flatnonzero(low)[0])
            raise ModelError(f"orbit: SGP4 puts the satellite below {REENTRY_ALT_KM:g} km at JD {jd[k] + fr[k]:.5f}: "
                             "it has re-entered (drag term of the TLE)", field="orbit.tle_line2")
        return r, v


class _J2Secular:
    """Mean elements with J2 secular rates of RAAN, argument of perigee and mean anomaly (Vallado sec. 9.6)."""

    def __init__(self, a_km: float, ecc: float, inc_rad: float, raan_rad: float, argp_rad: float,
                 ma_rad: float, jd0: float, fr0: float) -> None:
        self.a, self.e, self.i = a_km, ecc, inc_rad
        self.raan0, self.argp0, self.ma0 = raan_rad, argp_rad, ma_rad
        self.jd0, self.fr0 = jd0, fr0
        n0 = math.sqrt(MU_EARTH_KM3_S2 / a_km**3)
        p = a_km * (1.0 - ecc * ecc)
        k = 1.5 * J2_EARTH * (R_EARTH_KM / p) ** 2 * n0
        s2 = math.sin(inc_rad) ** 2
        self.raan_dot = -k * math.cos(inc_rad)
        self.argp_dot = k * (2.0 - 2.5 * s2)
        self.n = n0 + k * math.sqrt(1.0 - ecc * ecc) * (1.0 - 1.5 * s2)

    def state(self, jd: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = ((jd - self.jd0) + (fr - self.fr0)) * 86400.0
        e = self.e
        raan = self.raan0 + self.raan_dot * t
        argp = self.argp0 + self.argp_dot * t
        m = np.mod(self.ma0 + self.n * t, 2.0 * math.pi)
        if e == 0.0:
            ea = m
        else:
            ea = m + e * np.sin(m)
            for _ in range(50):
                d = (ea - e * np.sin(ea) - m) / (1.0 - e * np.cos(ea))
                ea = ea - d
                if np.max(np.abs(d)) < 1e-14:
                    break
        ce, se = np.cos(ea), np.sin(ea)
        sq = math.sqrt(1.0 - e * e)
        a = self.a
        xp, yp = a * (ce - e), a * sq * se
        rr = a * (1.0 - e * ce)
        vfac = math.sqrt(MU_EARTH_KM3_S2 * a) / rr
        vxp, vyp = -vfac * se, vfac * sq * ce
        co, so = np.cos(raan), np.sin(raan)
        cw, sw = np.cos(argp), np.sin(argp)
        ci, si = math.cos(self.i), math.sin(self.i)
        # perifocal -> inertial (P, Q columns of R3(-raan) R1(-i) R3(-argp))
        px, py, pz = co * cw - so * sw * ci, so * cw + co * sw * ci, sw * si
        qx, qy, qz = -co * sw - so * cw * ci, -so * sw + co * cw * ci, cw * si
        r = np.stack([px * xp + qx * yp, py * xp + qy * yp, pz * xp + qz * yp], axis=-1)
        v = np.stack([px * vxp + qx * vyp, py * vxp + qy * vyp, pz * vxp + qz * vyp], axis=-1)
        # the orbit plane drifts (raan_dot, argp_dot): add the frame rotation to the velocity
        z_cross_r = np.stack([-r[:, 1], r[:, 0], np.zeros_like(raan)], axis=-1)
        h = np.stack([so * si, -co * si, np.full_like(raan, ci)], axis=-1)
        v = v + self.raan_dot * z_cross_r + self.argp_dot * np.cross(h, r)
        return r, v


# -- eclipses ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Eclipse:
    """One pass through the Earth's shadow. Times are ns since the orbit epoch (None: outside the window,
    or not reached, e.g. no umbra in a grazing penumbral pass). ``entry_ns``/``exit_ns``: sunlit fraction
    crosses 50 %; ``duration_s``: time below 50 % inside the search window; ``umbra_s``: time in umbra."""

    penumbra_entry_ns: int | None
    umbra_entry_ns: int | None
    entry_ns: int | None
    exit_ns: int | None
    umbra_exit_ns: int | None
    penumbra_exit_ns: int | None
    duration_s: float
    umbra_s: float
    min_sunlit_frac: float

    @property
    def complete(self) -> bool:
        return self.penumbra_entry_ns is not None and self.penumbra_exit_ns is not None


# -- the orbit ------------------------------------------------------------------------------------------------
class Orbit:
    """A propagated orbit with the Sun and the Earth's shadow, as functions of ``t_s`` (s since the epoch)."""

    def __init__(self, config: OrbitConfig, epoch_utc: dt.datetime) -> None:
        self.config = config
        self.epoch_utc = check_epoch(epoch_utc)
        self.jd0, self.fr0 = julian_date(self.epoch_utc)
        kind = self.kind = config.kind
        if kind == "tle":
            sat = _satrec(config.tle_line1 or "", config.tle_line2 or "")
            self._prop: Any = _Sgp4(sat)
            self.mean_alt_km = sat.a * sat.radiusearthkm - sat.radiusearthkm
            self.inc_deg = math.degrees(sat.inclo)
            self.tle_epoch_utc = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                                  + dt.timedelta(days=(sat.jdsatepoch - JD_UNIX_EPOCH) + sat.jdsatepochF))
        else:
            alt = float(config.alt_km or 0.0)
            a = R_EARTH_KM + alt
            self.mean_alt_km = alt
            if kind == "sso":
                self.inc_deg = sso_inclination_deg(alt)
                # mean local time at the node = UT + lon/15, lon = RAAN - GMST: RAAN = GMST + 15 (LTAN - UT)
                ut_h = self.fr0 * 24.0
                gmst = float(gmst_rad(self.jd0, self.fr0)[()])
                raan = gmst + math.radians(15.0 * ((config.ltan_h or 0.0) - ut_h))
                ecc, argp = 0.0, 0.0
            else:
                self.inc_deg = float(config.inc_deg or 0.0)
                raan = math.radians(config.raan_deg or 0.0)
                ecc, argp = float(config.ecc or 0.0), math.radians(config.argp_deg or 0.0)
            self.raan0_deg = math.degrees(raan) % 360.0
            self._prop = _J2Secular(a, ecc, math.radians(self.inc_deg), raan, argp,
                                    math.radians(config.ma_deg or 0.0), self.jd0, self.fr0)
        self.period_s = 2.0 * math.pi * math.sqrt((R_EARTH_KM + self.mean_alt_km) ** 3 / MU_EARTH_KM3_S2)

    # -- basic quantities --------------------------------------------------------------------------------------
    def _jd(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        days = t / 86400.0
        whole = np.floor(days)
        return self.jd0 + whole, self.fr0 + (days - whole)

    def utc(self, t_s: float) -> dt.datetime:
        return self.epoch_utc + dt.timedelta(seconds=float(t_s))

    def check_range(self, t0_s: float, t1_s: float) -> None:
        """ModelError if [t0_s, t1_s] leaves the supported years."""
        for t in (t0_s, t1_s):
            y = self.epoch_utc.year + (self.epoch_utc.timetuple().tm_yday + t / 86400.0) / 365.25
            if not MIN_YEAR <= y < MAX_YEAR:
                raise ModelError(f"time {t:.0f} s after the epoch is outside {MIN_YEAR}..{MAX_YEAR}", field="t_ns")

    def state(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position [km] and velocity [km/s] in TEME, each (n, 3)."""
        jd, fr = self._jd(t_s)
        return self._prop.state(jd, fr)

    def sun(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sun unit vector in TEME (n, 3) and Earth-Sun distance [AU] (n,).

        Many closely spaced times (an environment chunk) are served by linear interpolation between
        :data:`SUN_KNOT_S` knots at fixed multiples of the epoch, so a time gets the same value whatever array
        it comes in. The Sun turns ~2e-7 rad/s with a curvature of ~4e-14 rad/s^2: the interpolation error is
        below 2e-11 rad (and 1e-13 AU), a thousand times below the Meeus series' own error, at ~5 % of its cost.
        """
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        if t.size < SUN_INTERP_MIN_SAMPLES:
            return sun_teme(*self._jd(t))
        k0 = math.floor(float(t.min()) / SUN_KNOT_S)
        k1 = math.ceil(float(t.max()) / SUN_KNOT_S)
        if (k1 - k0 + 1) * 4 > t.size:  # sparse times: the series directly is cheaper
            return sun_teme(*self._jd(t))
        knots = np.arange(k0, k1 + 1, dtype=float) * SUN_KNOT_S
        u_k, au_k = sun_teme(*self._jd(knots))
        pos = t / SUN_KNOT_S - k0
        idx = np.minimum(pos.astype(np.int64), len(knots) - 2)
        w = pos - idx
        u = u_k[idx] + w[:, None] * (u_k[idx + 1] - u_k[idx])
        u /= np.sqrt(np.einsum("ij,ij->i", u, u))[:, None]
        return u, au_k[idx] + w * (au_k[idx + 1] - au_k[idx])

    def gmst(self, t_s: np.ndarray) -> np.ndarray:
        return gmst_rad(*self._jd(t_s))

    def shadow(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r, _ = self.state(t_s)
        su, au = self.sun(t_s)
        return shadow_angles(r, su * (au * AU_KM)[:, None])

    def sunlit_frac(self, t_s: np.ndarray) -> np.ndarray:
        return sunlit_fraction_from_angles(*self.shadow(t_s))

    def beta_deg(self, t_s: np.ndarray) -> np.ndarray:
        """Angle between the Sun and the orbit plane, positive on the side of the orbit normal r x v."""
        r, v = self.state(t_s)
        h = np.cross(r, v)
        h /= np.linalg.norm(h, axis=-1, keepdims=True)
        su, _ = self.sun(t_s)
        return np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", h, su), -1.0, 1.0)))

    # -- event search -------------------------------------------------------------------------------------------
    def _grid(self, t0_s: float, t1_s: float, step_s: float) -> np.ndarray:
        if not step_s > 0:
            raise ModelError(f"step_s must be > 0, got {step_s}", field="step_s")
        n = max(2, math.ceil((t1_s - t0_s) / step_s) + 1)
        return np.linspace(t0_s, t1_s, n)

    @staticmethod
    def _bisect(f: Any, lo: np.ndarray, hi: np.ndarray, flo: np.ndarray, tol_s: float = 1e-6) -> np.ndarray:
        """Vectorised bisection of f on brackets [lo, hi] with sign(f(lo)) = sign(flo) != sign(f(hi))."""
        lo, hi, slo = lo.copy(), hi.copy(), np.sign(flo)
        while lo.size and np.max(hi - lo) > tol_s:
            mid = 0.5 * (lo + hi)
            fm = f(mid)
            same = np.sign(fm) == slo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
        return 0.5 * (lo + hi)

    def _crossings(self, f: Any, t: np.ndarray, ft: np.ndarray, tol_s: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Roots of f between grid points: (times, +1 where f goes up / -1 down)."""
        s = np.sign(ft)
        k = np.flatnonzero((s[:-1] != s[1:]) & (s[:-1] != 0))
        roots = self._bisect(f, t[k], t[k + 1], ft[k], tol_s)
        return roots, np.sign(ft[k + 1] - ft[k])

    def sunlit_crossings(self, t_s: np.ndarray, sunlit_frac: np.ndarray, level: float = 0.5,
                         tol_s: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Where the sunlit fraction, sampled as ``sunlit_frac`` at ``t_s``, crosses ``level`` (refined to
        ``tol_s`` by bisection): (times in s since the epoch, +1 leaving the shadow / -1 entering it).

        A cheap look-ahead for displays (a few ms for an orbit); :meth:`find_eclipses` is the thorough search
        (penumbra and umbra, grazing passes shorter than the sample spacing)."""
        t = np.asarray(t_s, dtype=float)
        return self._crossings(lambda x: self.sunlit_frac(x) - level, t, np.asarray(sunlit_frac, float) - level,
                               tol_s)

    def find_eclipses(self, t0_s: float, t1_s: float, step_s: float = 10.0) -> list[Eclipse]:
        """Every eclipse that overlaps [t0_s, t1_s] (s since epoch), events refined to ~1 us by bisection.

        The sunlit fraction is sampled every ``step_s``; the Sun-limb distance c - b is also minimised around
        every sampled local minimum, so that a grazing pass shorter than ``step_s`` is not missed.
        """
        self.check_range(t0_s, t1_s)
        t = self._grid(t0_s, t1_s, step_s)
        a, b, c = self.shadow(t)
        depth = c - b
        # refine local minima of the Sun-limb distance (golden section), and add them to the grid
        k = np.flatnonzero((depth[1:-1] < depth[:-2]) & (depth[1:-1] <= depth[2:]) & (depth[1:-1] < a[1:-1] * 4
                                                                                      + 0.2)) + 1
        if k.size:
            lo, hi = t[k - 1].copy(), t[k + 1].copy()
            g = (math.sqrt(5.0) - 1.0) / 2.0
            for _ in range(40):
                m1, m2 = hi - g * (hi - lo), lo + g * (hi - lo)
                _, b1, c1 = self.shadow(np.concatenate([m1, m2]))
                d = c1 - b1
                left = d[: m1.size] < d[m1.size:]
                hi = np.where(left, m2, hi)
                lo = np.where(left, lo, m1)
            tm = 0.5 * (lo + hi)
            t = np.unique(np.concatenate([t, tm]))
            a, b, c = self.shadow(t)
        nu = sunlit_fraction_from_angles(a, b, c)

        def g_pen(x: np.ndarray) -> np.ndarray:
            aa, bb, cc = self.shadow(x)
            return cc - (aa + bb)

        def g_umb(x: np.ndarray) -> np.ndarray:
            aa, bb, cc = self.shadow(x)
            return cc - (bb - aa)

        def g_half(x: np.ndarray) -> np.ndarray:
            return self.sunlit_frac(x) - 0.5

        events: list[tuple[float, str]] = []
        for name, f, ft in (("pen", g_pen, c - (a + b)), ("umb", g_umb, c - (b - a)), ("half", g_half, nu - 0.5)):
            roots, direction = self._crossings(f, t, ft)
            for r, d in zip(roots.tolist(), direction.tolist(), strict=True):
                events.append((r, f"{name}_{'in' if d < 0 else 'out'}"))
        events.sort()

        out: list[Eclipse] = []
        cur: dict[str, float] | None = {} if nu[0] < 1.0 else None
        start_in = {"half": nu[0] < 0.5, "umb": c[0] <= b[0] - a[0]}
        t_lo = t0_s
        for tr, ev in events:
            if ev == "pen_in":
                cur = {"pen_in": tr}
                start_in = {"half": False, "umb": False}
                t_lo = tr
            elif cur is not None:
                cur[ev] = tr
                if ev == "pen_out":
                    out.append(self._record(cur, start_in, t_lo, tr))
                    cur = None
        if cur is not None:
            out.append(self._record(cur, start_in, t_lo, t1_s, open_end=True))
        return out

    def _record(self, ev: dict[str, float], start_in: dict[str, bool], t_lo: float, t_hi: float,
                open_end: bool = False) -> Eclipse:
        def ns(key: str) -> int | None:
            return round(ev[key] * 1e9) if key in ev else None

        def span(kind: str) -> float:
            lo = ev.get(f"{kind}_in", t_lo if start_in[kind] else None)
            hi = ev.get(f"{kind}_out", t_hi if lo is not None and open_end else None)
            if lo is None and hi is not None:
                lo = t_lo
            return max(0.0, hi - lo) if lo is not None and hi is not None else 0.0

        probe = np.linspace(t_lo, t_hi, 64)
        return Eclipse(
            penumbra_entry_ns=ns("pen_in"), umbra_entry_ns=ns("umb_in"), entry_ns=ns("half_in"),
            exit_ns=ns("half_out"), umbra_exit_ns=ns("umb_out"), penumbra_exit_ns=ns("pen_out"),
            duration_s=span("half"), umbra_s=span("umb"), min_sunlit_frac=float(np.min(self.sunlit_frac(probe))))

    def ascending_nodes(self, t0_s: float, t1_s: float, step_s: float = 60.0) -> np.ndarray:
        """Times (s since epoch) when the satellite crosses the equator northbound (z goes - to +)."""
        self.check_range(t0_s, t1_s)
        t = self._grid(t0_s, t1_s, min(step_s, self.period_s / 8.0))

        def z(x: np.ndarray) -> np.ndarray:
            return self.state(x)[0][:, 2]

        zt = z(t)
        roots, direction = self._crossings(z, t, zt)
        nodes = roots[direction > 0]
        # a satellite on the node at t0 (mean anomaly 0 from the ascending node, the default) crosses there: a
        # root on the grid's first point, which a sign change between grid points does not show
        if abs(zt[0]) < NODE_AT_START_KM and zt.size > 1 and zt[1] > 0 and not (nodes.size and nodes[0] - t[0] < 1.0):
            nodes = np.concatenate(([t[0]], nodes))
        return nodes


def find_eclipses(orbit: Orbit, t0_s: float, t1_s: float, step_s: float = 10.0) -> list[Eclipse]:
    """Every eclipse of ``orbit`` overlapping [t0_s, t1_s] (s since its epoch); see :meth:`Orbit.find_eclipses`."""
    return orbit.find_eclipses(t0_s, t1_s, step_s)

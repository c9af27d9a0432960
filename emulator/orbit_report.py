"""``flatsat orbit``: eclipses, orbits (nodes, period, beta) and a summary of an orbit, as tables, JSON or a plot."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from typing import Any

import numpy as np
from pydantic import ValidationError

from emulator.clock import parse_duration_s
from emulator.errors import ConfigError, EmulatorError
from emulator.models.environment import (
    SAA_CENTRE_LAT_DEG,
    SAA_CENTRE_LON_DEG,
    SAA_OUTLINE_DEG,
    Environment,
    EnvironmentConfig,
)
from emulator.models.orbit import R_EARTH_KM, Eclipse, Orbit, OrbitConfig, check_epoch, config_error

DEFAULT_START_UTC = "2026-06-21T00:00:00Z"  # the sim epoch of the reference configs (contract: [sim] epoch_utc)
MAX_DURATION_S = 400 * 86400.0  # a year and a bit: long enough for a season, short enough for memory
MAX_SAMPLES = 5_000_000  # duration / step for the eclipse scan
SUMMARY_SAMPLES = 200_000  # at most this many samples for the ground track and the ranges


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``flatsat orbit``."""
    g = parser.add_argument_group("orbit (give a TLE, or --alt-km with --ltan, or --alt-km with elements)")
    g.add_argument("--tle", nargs=2, metavar=("LINE1", "LINE2"), help="two-line element set (SGP4)")
    g.add_argument("--alt-km", type=float, help="mean altitude a - R_E [km]")
    g.add_argument("--ltan", help="sun-synchronous: local time of the ascending node, HH:MM (18:00 = dawn-dusk)")
    g.add_argument("--inc-deg", type=float, help="inclination [deg]")
    g.add_argument("--raan-deg", type=float, help="right ascension of the ascending node [deg]")
    g.add_argument("--ecc", type=float, help="eccentricity (default 0)")
    g.add_argument("--argp-deg", type=float, help="argument of perigee [deg] (default 0)")
    g.add_argument("--ma-deg", type=float, help="mean anomaly at the start [deg] (default 0)")
    parser.add_argument("--start", help=f"UTC start, ISO 8601 (default: the TLE epoch, else {DEFAULT_START_UTC})")
    parser.add_argument("--duration", default="1d", help="how long: 1d, 6h, 90m, 3600s or seconds (default 1d)")
    parser.add_argument("--step", default="10", help="sampling step [s] for the event search (default 10)")
    parser.add_argument("--json", action="store_true", help="JSON lines: one record per eclipse, per orbit, "
                                                            "then a summary")
    parser.add_argument("--plot", metavar="FILE.png", help="write a ground track (SAA, eclipses) and beta over "
                                                           "a year")


def run(args: argparse.Namespace) -> int:
    """Run ``flatsat orbit``; exit code 0, or 2 on bad input (the error is printed, no traceback)."""
    if getattr(args, "plot", None):
        from emulator.outputs import file_problem

        problem = file_problem("--plot", args.plot, image=True)
        if problem:
            print(f"flatsat orbit: error: {problem}", file=sys.stderr)
            return 2
    try:
        report = build_report(args)
        if getattr(args, "plot", None):
            write_plot(report, args.plot)
    except EmulatorError as exc:
        print(f"flatsat orbit: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for rec in report["records"]:
            print(json.dumps(rec))
    else:
        print_tables(report)
    return 0


# -- inputs --------------------------------------------------------------------------------------------------
def parse_utc(text: str, field: str = "start") -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{field}: bad UTC time {text!r}: use ISO 8601, e.g. 2026-06-21T00:00:00Z",
                          field=field) from None
    return check_epoch(t, field=field)


def orbit_config(args: argparse.Namespace) -> OrbitConfig:
    kw: dict[str, Any] = {}
    if args.tle:
        kw["tle_line1"], kw["tle_line2"] = args.tle
    for name in ("alt_km", "inc_deg", "raan_deg", "ecc", "argp_deg", "ma_deg"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if args.ltan is not None:
        kw["ltan_h"] = args.ltan
    try:
        return OrbitConfig(**kw)
    except ValidationError as exc:
        err = config_error(exc)
        # the orbit's field names as this command's flags (``alt_km`` is ``--alt-km`` here)
        text = _FIELD.sub(lambda m: FLAGS[m.group(0)], err.message)
        raise ConfigError(text, field=FLAGS.get(err.field or "", err.field), valid=err.valid) from None


#: OrbitConfig's fields as ``flatsat orbit``'s flags
FLAGS = {"tle_line1 + tle_line2": "--tle LINE1 LINE2", "tle_line1": "--tle LINE1", "tle_line2": "--tle LINE2",
         "alt_km": "--alt-km", "ltan_h": "--ltan", "inc_deg": "--inc-deg", "raan_deg": "--raan-deg", "ecc": "--ecc",
         "argp_deg": "--argp-deg", "ma_deg": "--ma-deg"}
_FIELD = re.compile("|".join(rf"\b{re.escape(k)}\b" for k in sorted(FLAGS, key=len, reverse=True)))


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the report ------------------------------------------------------------------------------------------------
def build_report(args: argparse.Namespace) -> dict[str, Any]:
    cfg = orbit_config(args)
    try:
        duration_s = parse_duration_s(args.duration)
    except ValueError as exc:
        raise ConfigError(f"duration: {exc}", field="duration") from None
    try:
        step_s = float(args.step)
    except ValueError:
        raise ConfigError(f"step: bad step {args.step!r}: seconds, e.g. 10", field="step") from None
    if not 0.1 <= step_s <= 600.0:
        raise ConfigError(f"step: must be in [0.1, 600] s, got {step_s:g}", field="step")
    if duration_s > MAX_DURATION_S:
        raise ConfigError(f"duration: at most {MAX_DURATION_S / 86400:.0f} days, got {duration_s / 86400:.1f}",
                          field="duration")
    if duration_s / step_s > MAX_SAMPLES:
        raise ConfigError(f"step: {duration_s:.0f} s at {step_s:g} s is {duration_s / step_s:.0f} samples; at most "
                          f"{MAX_SAMPLES} (use a larger --step)", field="step")
    if args.start:
        start = parse_utc(args.start)
    elif cfg.kind == "tle":
        start = Orbit(cfg, parse_utc(DEFAULT_START_UTC)).tle_epoch_utc
        start = check_epoch(start, field="start")
    else:
        start = parse_utc(DEFAULT_START_UTC)
    end_utc = start + dt.timedelta(seconds=duration_s)
    if end_utc.year >= 2100:
        raise ConfigError(f"duration: the run would end at {_iso(end_utc)}, after the supported range (< 2100)",
                          field="duration")
    env = Environment(cfg, EnvironmentConfig(), start)
    orbit = env.orbit
    eclipses = orbit.find_eclipses(0.0, duration_s, step_s)
    nodes = orbit.ascending_nodes(0.0, duration_s, min(step_s * 6, 60.0))

    # sampled series: ground track, SAA, ranges
    dt_s = max(step_s, duration_s / SUMMARY_SAMPLES)
    n = int(duration_s // dt_s) + 1
    c = env.chunk(0, round(dt_s * 1e9), n)

    def utc(t_s: float | None) -> str | None:
        return None if t_s is None else _iso(orbit.utc(t_s))

    def ns_utc(t_ns: int | None) -> str | None:
        return None if t_ns is None else utc(t_ns * 1e-9)

    records: list[dict[str, Any]] = []
    for e in eclipses:
        records.append({
            "type": "eclipse", "penumbra_entry_utc": ns_utc(e.penumbra_entry_ns),
            "umbra_entry_utc": ns_utc(e.umbra_entry_ns), "entry_utc": ns_utc(e.entry_ns),
            "exit_utc": ns_utc(e.exit_ns), "umbra_exit_utc": ns_utc(e.umbra_exit_ns),
            "penumbra_exit_utc": ns_utc(e.penumbra_exit_ns), "duration_s": round(e.duration_s, 3),
            "umbra_s": round(e.umbra_s, 3), "min_sunlit_frac": round(e.min_sunlit_frac, 4),
            "complete": e.complete})
    beta = orbit.beta_deg(nodes) if nodes.size else np.zeros(0)
    ltan0 = env.sample(round(float(nodes[0]) * 1e9)).local_solar_time_h if nodes.size else None
    starts = np.array([(e.entry_ns if e.entry_ns is not None else (e.penumbra_entry_ns or 0)) * 1e-9
                       for e in eclipses])
    durs = np.array([e.duration_s for e in eclipses])
    for k in range(nodes.size - 1):
        sel = (starts >= nodes[k]) & (starts < nodes[k + 1]) if starts.size else np.zeros(0, bool)
        records.append({"type": "orbit", "number": k + 1, "ascending_node_utc": utc(float(nodes[k])),
                        "period_s": round(float(nodes[k + 1] - nodes[k]), 3), "beta_deg": round(float(beta[k]), 3),
                        "eclipse_s": round(float(durs[sel].sum()) if starts.size else 0.0, 3)})
    saa = c.in_saa.astype(int)
    saa_passes = int(np.sum(np.diff(saa) == 1) + saa[0])
    days = duration_s / 86400.0
    summary = {
        "type": "summary", "kind": cfg.kind, "start_utc": _iso(start), "end_utc": _iso(end_utc),
        "duration_s": duration_s, "inc_deg": round(orbit.inc_deg, 4), "mean_alt_km": round(orbit.mean_alt_km, 3),
        "period_s": round(float(np.mean(np.diff(nodes))), 3) if nodes.size > 1 else round(orbit.period_s, 3),
        "ltan_h": None if ltan0 is None else round(float(ltan0), 4),
        "orbits": max(int(nodes.size) - 1, 0), "eclipses": len(eclipses),
        "eclipse_min_per_day": round(float(durs.sum()) / 60.0 / days, 3),
        "eclipse_max_min": round(float(durs.max()) / 60.0, 3) if durs.size else 0.0,
        "sunlit_fraction": round(float(np.mean(c.sunlit_frac)), 5),
        "passes": saa_passes, "saa_passes": saa_passes,
        "saa_min_per_day": round(float(np.mean(c.in_saa)) * 1440.0, 2),
        "beta_min_deg": round(float(c.beta_deg.min()), 3), "beta_max_deg": round(float(c.beta_deg.max()), 3),
        "alt_min_km": round(float(c.alt_km.min()), 3), "alt_max_km": round(float(c.alt_km.max()), 3),
        "eclipse_free_beta_deg": round(math.degrees(math.asin(R_EARTH_KM / (R_EARTH_KM + orbit.mean_alt_km))), 3),
    }
    if cfg.kind == "tle":
        summary["tle_epoch_utc"] = _iso(orbit.tle_epoch_utc)
    records.append(summary)
    return {"records": records, "summary": summary, "eclipses": eclipses, "env": env, "chunk": c,
            "duration_s": duration_s, "start": start}


# -- output ----------------------------------------------------------------------------------------------------
def _hhmm(hours: float) -> str:
    minutes = round(hours * 60.0)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _hms(iso: str | None) -> str:
    return "-" if iso is None else iso[11:21]


def print_tables(report: dict[str, Any]) -> None:
    from rich.table import Table

    from emulator.terminal import console as make_console

    console = make_console()  # piped: not squeezed into 80 columns
    recs = report["records"]
    s = report["summary"]
    ecl = [r for r in recs if r["type"] == "eclipse"]
    t = Table(title=f"Eclipses ({len(ecl)}), UTC" + (f" from {s['start_utc'][:10]}" if ecl else ""))
    for col in ("#", "penumbra in", "umbra in", "50 % in", "50 % out", "umbra out", "penumbra out", "duration"):
        t.add_column(col, justify="right")
    for i, r in enumerate(ecl, 1):
        t.add_row(str(i), _hms(r["penumbra_entry_utc"]), _hms(r["umbra_entry_utc"]), _hms(r["entry_utc"]),
                  _hms(r["exit_utc"]), _hms(r["umbra_exit_utc"]), _hms(r["penumbra_exit_utc"]),
                  f"{r['duration_s'] / 60:.2f} min")
    console.print(t)
    orb = [r for r in recs if r["type"] == "orbit"]
    t = Table(title=f"Orbits ({len(orb)})")
    for col in ("#", "ascending node (UTC)", "period", "beta", "eclipse"):
        t.add_column(col, justify="right")
    for r in orb:
        t.add_row(str(r["number"]), r["ascending_node_utc"][:23], f"{r['period_s'] / 60:.2f} min",
                  f"{r['beta_deg']:.2f} deg", f"{r['eclipse_s'] / 60:.2f} min")
    console.print(t)
    t = Table(title="Summary")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = [("orbit", s["kind"]), ("start (UTC)", s["start_utc"]), ("end (UTC)", s["end_utc"]),
            ("inclination", f"{s['inc_deg']:.3f} deg"), ("mean altitude", f"{s['mean_alt_km']:.1f} km"),
            ("nodal period", f"{s['period_s'] / 60:.2f} min"),
            ("LTAN (mean solar time)", "-" if s["ltan_h"] is None else _hhmm(s["ltan_h"])),
            ("orbits / eclipses", f"{s['orbits']} / {s['eclipses']}"),
            ("eclipse per day", f"{s['eclipse_min_per_day']:.2f} min"),
            ("longest eclipse", f"{s['eclipse_max_min']:.2f} min"),
            ("sunlit fraction", f"{100 * s['sunlit_fraction']:.2f} %"),
            ("beta range", (f"{s['beta_min_deg']:.2f} .. {s['beta_max_deg']:.2f} deg "
                            f"(eclipse-free above {s['eclipse_free_beta_deg']:.1f})")),
            ("altitude range (geodetic)", f"{s['alt_min_km']:.1f} .. {s['alt_max_km']:.1f} km"),
            ("SAA passes", f"{s['saa_passes']} ({s['saa_min_per_day']:.1f} min/day)")]
    if "tle_epoch_utc" in s:
        rows.insert(1, ("TLE epoch", s["tle_epoch_utc"]))
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)


def _saa_outline(lon_centre: float) -> tuple[np.ndarray, np.ndarray]:
    o = SAA_OUTLINE_DEG
    phi = np.linspace(0.0, 2.0 * math.pi, 241)
    cp, sp = np.cos(phi), np.sin(phi)
    wlon = np.where(cp < 0, SAA_CENTRE_LON_DEG - o["west"], o["east"] - SAA_CENTRE_LON_DEG)
    wlat = np.where(sp < 0, SAA_CENTRE_LAT_DEG - o["south"], o["north"] - SAA_CENTRE_LAT_DEG)
    return lon_centre + wlon * cp, SAA_CENTRE_LAT_DEG + wlat * sp


def _world_axes(fig: Any, spec: Any) -> tuple[Any, dict[str, Any]]:
    """An equirectangular world map (cartopy, with its bundled Natural Earth image: no download), and the keyword
    that places lon/lat data on it; a plain lon/lat grid when cartopy is not installed."""
    try:
        import cartopy.crs as ccrs
    except ImportError:
        ax = fig.add_subplot(spec)
        ax.grid(alpha=0.3)
        return ax, {}
    ax = fig.add_subplot(spec, projection=ccrs.PlateCarree())
    ax.stock_img()  # Natural Earth shaded relief, shipped inside cartopy
    ax.set_xticks(range(-180, 181, 60), crs=ccrs.PlateCarree())
    ax.set_yticks(range(-90, 91, 30), crs=ccrs.PlateCarree())
    ax.gridlines(alpha=0.3)
    return ax, {"transform": ccrs.PlateCarree()}


def write_plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env: Environment = report["env"]
    orbit = env.orbit
    c = report["chunk"]
    fig = plt.figure(figsize=(11, 9.5))
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 2])
    ax1, on_map = _world_axes(fig, grid[0])
    ax2 = fig.add_subplot(grid[1])
    lon, lat = c.lon_deg, c.lat_deg
    dark = c.sunlit_frac < 0.5
    ax1.scatter(lon[~dark], lat[~dark], s=0.3, c="goldenrod", label="sunlit", zorder=3, **on_map)
    ax1.scatter(lon[dark], lat[dark], s=0.3, c="midnightblue", label="eclipse (sunlit < 50 %)", zorder=3, **on_map)
    ax1.scatter(lon[c.in_saa], lat[c.in_saa], s=0.6, c="crimson", label="in SAA", zorder=4, **on_map)
    centre_lon = float(env.saa_centre_lon_deg(0.0))
    ol, oa = _saa_outline(centre_lon)
    ax1.plot(((ol + 180) % 360) - 180, oa, "-", lw=1.2, c="crimson", zorder=4, **on_map)
    ax1.annotate("South Atlantic Anomaly", (((centre_lon + 180) % 360) - 180, SAA_CENTRE_LAT_DEG), ha="center",
                 va="center", fontsize=9, color="crimson", fontweight="bold", zorder=5,
                 bbox={"boxstyle": "round", "fc": "white", "ec": "crimson", "alpha": 0.8}, **on_map)
    ax1.set_xlim(-180, 180)
    ax1.set_ylim(-90, 90)
    ax1.set_xlabel("longitude [deg]")
    ax1.set_ylabel("latitude [deg]")
    ax1.set_title(f"Ground track from {report['summary']['start_utc']} ({report['duration_s'] / 3600:.1f} h)"
                  + ("" if on_map else "  (no world map: pip install 'flatsat[maps]')"))
    ax1.legend(loc="lower left", markerscale=10, fontsize=8)
    days = np.arange(0.0, 366.0)
    try:
        beta = orbit.beta_deg(days * 86400.0)
    except EmulatorError:  # SGP4 far from the TLE epoch: plot as far as it goes
        vals = []
        for d in days:
            try:
                vals.append(float(orbit.beta_deg(np.array([d * 86400.0]))[0]))
            except EmulatorError:
                break
        beta = np.array(vals)
        days = days[: beta.size]
    bstar = report["summary"]["eclipse_free_beta_deg"]
    ax2.plot(days, beta, c="k", label="beta")
    ax2.axhline(bstar, ls="--", c="gray", label=f"eclipse-free |beta| > {bstar:.1f} deg")
    ax2.axhline(-bstar, ls="--", c="gray")
    ax2.set_xlabel("days from the start")
    ax2.set_ylabel("beta [deg]")
    ax2.set_title("Beta angle over a year")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ConfigError(f"plot: cannot write {path!r}: {exc.strerror or exc}", field="plot") from None
    finally:
        plt.close(fig)


__all__ = ["Eclipse", "add_arguments", "build_report", "run"]

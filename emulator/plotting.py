"""Plots and summary rows of a run's ground-truth series (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emulator.series import FLEET_MAX, FLEET_MIN, Series

#: (panel title, y label, glob patterns over flattened truth keys); a panel with no match is skipped
PANELS: list[tuple[str, str, list[str]]] = [
    ("Battery state of charge", "SoC (0..1)", ["power.soc", "*.soc"]),
    ("Bus voltage", "V", ["power.bus_v", "*bus_v"]),
    ("Power", "W", ["power.array_w", "accelerator.load_w", "power.shunt_w", "*array_w", "*load_w"]),
    ("Temperatures", "°C", ["accelerator.die_temp_degc", "thermal.temps_degc.*", "*temp_degc", "*thermal.temps_degc.*"]),
    ("Accelerator clock", "MHz", ["accelerator.clock_mhz", "*clock_mhz"]),
    ("Accelerator utilisation", "0..1", ["accelerator.utilisation", "*utilisation"]),
]

#: the sections of a fleet's truth whose per-member lists the summary and plots read
FLEET_SECTIONS = ["power", "thermal", "accelerator", "environment"]

#: patterns that mark sunlight (for eclipse shading)
SUNLIT_PATTERNS = ["*sunlit_frac"]

#: signals shown in the summary table (first matches win)
SUMMARY_PATTERNS = ["power.soc", "power.bus_v", "power.array_w", "accelerator.load_w", "thermal.temps_degc.battery",
                    "accelerator.die_temp_degc", "thermal.temps_degc.radiator", "accelerator.utilisation",
                    "accelerator.jobs_done", "accelerator.jobs_failed", "accelerator.jobs_corrupted",
                    "accelerator.radiation.counts.*.total", "power.rails.*.trips", "environment.sunlit_frac"]

#: what a fleet's summary adds (its truth names some things differently)
FLEET_SUMMARY_PATTERNS = [*SUMMARY_PATTERNS, "thermal.temps_degc.accel_die", "accelerator.units_done",
                          "accelerator.see_counts.*", "power.rail_trips.*"]


def signal_keys(series: Series, patterns: list[str]) -> list[str]:
    """The series keys the patterns select, without a fleet's extremes (they go with their mean's key)."""
    return [k for k in series.match(patterns) if not k.endswith((FLEET_MIN, FLEET_MAX))]


def summary_rows(series: Series, limit: int = 24, patterns: list[str] | None = None,
                 ) -> list[tuple[str, str, str, str, str]]:
    """(signal, min, mean, max, end) per summary signal. For a fleet (series with ``.fleet_min`` / ``.fleet_max``
    beside a key) min and max are over every member, mean and end are the fleet mean's."""
    rows = []
    for key in signal_keys(series, SUMMARY_PATTERNS if patterns is None else patterns)[:limit]:
        v = series.get(key)
        ok = np.isfinite(v)
        if not ok.any():
            continue
        lo = series.get(key + FLEET_MIN)[ok] if key + FLEET_MIN in series else v[ok]
        hi = series.get(key + FLEET_MAX)[ok] if key + FLEET_MAX in series else v[ok]
        v = v[ok]
        if ("counts" in key or "trips" in key) and not hi.any():
            continue  # event counters that stayed at zero say nothing
        rows.append((key, f"{lo.min():.4g}", f"{v.mean():.4g}", f"{hi.max():.4g}", f"{v[-1]:.4g}"))
    return rows


#: characters of a failed requirement's label drawn beside its red mark (the report's table has the whole label)
MARK_LABEL_CHARS = 40
#: signals drawn on top, thick and dashed, so a node line of the same value cannot hide them
EMPHASIS_PATTERNS = ["*accelerator.die_temp_degc"]


def preload() -> None:
    """Import what :func:`plot_run` needs (matplotlib, Agg) now: a command that waits anyway (for a board to start)
    takes it off the end of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def plot_run(series: Series, path: str | Path, *, title: str = "flatsat run",
             marks: list[tuple[float, str]] | None = None, events: list[tuple[float, str]] | None = None,
             epoch_utc: str | None = None) -> Path:
    """One figure, a panel per signal group, eclipses shaded grey, legends beside the panels (never on the data).

    ``marks``: (sim time s, label) drawn red on every panel (failed requirements); ``events``: the timeline as
    applied, grey dotted on every panel with its label on the top one; ``epoch_utc``: sim time 0, shown on the
    time axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [(t, y, signal_keys(series, p)) for t, y, p in PANELS]
    panels = [(t, y, [k for k in keys if np.isfinite(series.get(k)).any()][:8]) for t, y, keys in panels]
    panels = [p for p in panels if p[2]]
    emphasis = set(series.match(EMPHASIS_PATTERNS))
    n = max(1, len(panels))
    fig, axes = plt.subplots(n, 1, figsize=(13, 2.3 * n + 0.9), sharex=True, squeeze=False)
    t_h = series.time() / 3600.0
    sunlit_keys = series.match(SUNLIT_PATTERNS)
    sunlit = series.get(sunlit_keys[0]) if sunlit_keys else None
    for row, (ax, (ptitle, ylabel, keys)) in enumerate(zip(axes[:, 0], panels, strict=False)):
        for key in keys:
            if key in emphasis:
                (line,) = ax.plot(t_h, series.get(key), label=_short(key), linewidth=2.2, linestyle="--", color="black",
                        zorder=5)
            else:
                (line,) = ax.plot(t_h, series.get(key), label=_short(key), linewidth=1.1)
            if key + FLEET_MIN in series:  # a fleet: the band of its members around the mean
                ax.fill_between(t_h, series.get(key + FLEET_MIN), series.get(key + FLEET_MAX), alpha=0.2,
                                color=line.get_color() if key not in emphasis else "black", linewidth=0)
        ax.set_title(ptitle, fontsize=10, loc="left")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, frameon=False)
        if sunlit is not None:
            _shade_eclipses(ax, t_h, sunlit)
        for t_s, label in events or []:
            ax.axvline(t_s / 3600.0, color="0.35", linestyle=":", linewidth=0.9)
            if row == 0:
                ax.text(t_s / 3600.0, 1.0, f" {label}"[:40], fontsize=6, color="0.25", va="bottom", rotation=30,
                        transform=ax.get_xaxis_transform())
        for t_s, label in marks or []:
            ax.axvline(t_s / 3600.0, color="red", linewidth=0.8, alpha=0.7)
            # short enough to stay inside its panel (a requirement's whole label did not fit: no layout applied)
            short = label if len(label) <= MARK_LABEL_CHARS else label[:MARK_LABEL_CHARS - 1] + "…"
            ax.text(t_s / 3600.0, ax.get_ylim()[1], f" {short}", fontsize=6, color="red", va="top", rotation=90)
    start = f"hours since {epoch_utc.replace('T', ' ').replace('Z', ' UTC')}" if epoch_utc else "sim time [h]"
    extra = "; dotted: timeline" if events else ""
    axes[-1, 0].set_xlabel(f"{start}  (grey: eclipse{extra})")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)  # tight_layout placed everything (a bbox_inches="tight" crop would draw it again)
    plt.close(fig)
    return path


def _short(key: str) -> str:
    """A legend label: the key without the ``satellite.`` prefix every truth key has."""
    return key.removeprefix("satellite.")


def _shade_eclipses(ax: Any, t_h: np.ndarray, sunlit: np.ndarray) -> None:
    dark = np.nan_to_num(sunlit, nan=1.0) < 0.5
    if not dark.any():
        return
    edges = np.flatnonzero(np.diff(np.concatenate(([0], dark.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=False):
        ax.axvspan(t_h[start], t_h[min(stop, len(t_h) - 1)], color="0.85", zorder=0)

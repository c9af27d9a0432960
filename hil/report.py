"""Reports of scenario runs: JUnit XML (a testsuite per scenario, a testcase per requirement) and HTML.

The HTML report is one self-contained file per scenario (PNG plots embedded as base64): the
verdict, the requirement table with reasons, the timeline as written and as applied, the seed
and the exact command that reproduces the run, plots of the requirement signals (limits drawn,
red lines where a requirement failed) and of the spacecraft (:func:`emulator.plotting.plot_run`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hil.requirements import fmt_t
from hil.runner import safe_name

if TYPE_CHECKING:
    from hil.runner import ScenarioResult

#: most requirement signals drawn in the requirement figure
MAX_SIGNAL_PANELS = 8


# -- JUnit -----------------------------------------------------------------------------------
def junit_xml(results: Sequence[ScenarioResult]) -> str:
    """JUnit XML: ``<testsuites>`` with a ``<testsuite>`` per scenario and a ``<testcase>`` per requirement.

    A run that failed as a whole (board died, hello never came) adds a testcase ``run`` with an
    ``<error>``; a failed requirement's ``<failure>`` message says where (first violation sim
    time), the value and the limit.
    """
    root = ET.Element("testsuites", name="flatsat")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for res in results:
        cls = f"flatsat.{safe_name(res.scenario.name)}"
        failures = len(res.failures)
        errors = 1 if res.error else 0
        tests = len(res.verdicts) + 1
        suite = ET.SubElement(root, "testsuite", name=res.scenario.name, tests=str(tests), failures=str(failures),
                              errors=str(errors), skipped="0", time=f"{res.wall_s:.3f}")
        props = ET.SubElement(suite, "properties")
        for key, value in (("seed", res.seed), ("mode", res.mode), ("board", res.board),
                           ("scenario_file", res.scenario.source), ("sim_time_s", f"{res.t_end_s:g}"),
                           ("recording", res.recording or ""), ("reproduce", res.command)):
            ET.SubElement(props, "property", name=key, value=str(value))
        run = ET.SubElement(suite, "testcase", classname=cls, name="run", time=f"{res.wall_s:.3f}")
        if res.error:
            err = ET.SubElement(run, "error", message=res.error.splitlines()[0], type="run")
            err.text = f"{res.error}\n\nreproduce: {res.command}"
        for v in res.verdicts:
            case = ET.SubElement(suite, "testcase", classname=cls, name=v.label, time="0")
            if not v.passed:
                fail = ET.SubElement(case, "failure", message=v.reason, type=v.kind)
                lines = [f"requirement: {v.text}", f"result: {v.reason}"]
                if v.why:
                    lines.append(f"why it matters: {v.why}")
                lines.append(f"seed {res.seed}; reproduce: {res.command}")
                fail.text = "\n".join(lines)
        out = ET.SubElement(suite, "system-out")
        out.text = "\n".join(f"t={fmt_t(t)}: {text}" for t, text in res.timeline_log) or None
        totals["tests"] += tests
        totals["failures"] += failures
        totals["errors"] += errors
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results: Sequence[ScenarioResult], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(results), encoding="utf-8")
    return path


# -- plots -----------------------------------------------------------------------------------
def requirement_figure(res: ScenarioResult) -> bytes | None:
    """PNG: a panel per requirement signal, its limits dashed, failures as red lines, timeline grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = res.series
    signals: list[str] = []
    for v in res.verdicts:
        if v.signal and v.signal in series and v.signal not in signals:
            signals.append(v.signal)
    signals = signals[:MAX_SIGNAL_PANELS]
    if not signals or len(series) == 0:
        return None
    t_h = series.time() / 3600.0
    fig, axes = plt.subplots(len(signals), 1, figsize=(11, 2.1 * len(signals) + 0.8), sharex=True, squeeze=False)
    for ax, sig in zip(axes[:, 0], signals, strict=True):
        ax.plot(t_h, series.get(sig), linewidth=1.1, label=sig)
        for v in res.verdicts:
            if v.signal != sig:
                continue
            if v.limit is not None and not math.isnan(v.limit):
                ax.axhline(v.limit, color="red" if not v.passed else "green", linestyle="--", linewidth=0.8,
                           alpha=0.7)
            if not v.passed and v.t_s is not None:
                ax.axvline(v.t_s / 3600.0, color="red", linewidth=1.0)
                ax.annotate(f" {v.label}", (v.t_s / 3600.0, 1.0), xycoords=("data", "axes fraction"),
                            fontsize=6, color="red", va="top", rotation=90)
        for t_s, _ in res.timeline_log:
            ax.axvline(t_s / 3600.0, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_title(sig, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    start = f"hours since {res.epoch_utc.replace('T', ' ').replace('Z', ' UTC')}" if res.epoch_utc else "sim time [h]"
    axes[-1, 0].set_xlabel(f"{start}  (dashed: limits; red: first violation; grey dotted: timeline)")
    fig.suptitle(f"{res.scenario.name}: requirement signals", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def overview_figure(res: ScenarioResult) -> bytes | None:
    """PNG from :func:`emulator.plotting.plot_run` (None when no spacecraft panel matches the signals)."""
    from emulator.plotting import PANELS, plot_run

    if len(res.series) == 0 or not any(res.series.match(p) for _, _, p in PANELS):
        return None
    with tempfile.TemporaryDirectory(prefix="flatsat-report-") as tmp:
        path = plot_run(res.series, Path(tmp) / "run.png", title=f"{res.scenario.name} (seed {res.seed})",
                        events=res.timeline_log, epoch_utc=res.epoch_utc or None,
                        marks=res.marks())
        return path.read_bytes()


# -- HTML ------------------------------------------------------------------------------------
REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1 .pass{color:#1a7f37} h1 .fail{color:#c62828}
table{border-collapse:collapse;margin:0.5em 0 1.5em} td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top;font-size:90%} th{background:#f4f4f4}
tr.fail td{background:#fdecea} tr.pass td.res{color:#1a7f37;font-weight:bold} tr.fail td.res{color:#c62828;
font-weight:bold} pre{background:#f6f8fa;padding:8px;overflow-x:auto} .error{border:2px solid #c62828;
padding:8px;background:#fdecea} img{max-width:100%} code{font-size:90%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'


def _timeline_rows(res: ScenarioResult) -> str:
    rows = []
    for i, action in res.scenario.timeline:
        data = action.model_dump(exclude_none=True)
        at = data.pop("at")
        do = data.pop("do")
        detail = ", ".join(f"{k} = {v!r}" for k, v in data.items())
        rows.append(f"<tr><td>{i}</td><td>{_e(fmt_t(at))}</td><td>{_e(do)}</td><td>{_e(detail)}</td></tr>")
    return "".join(rows)


def html_report(res: ScenarioResult) -> str:
    """One self-contained HTML page for a scenario run."""
    sc = res.scenario
    verdict = '<span class="pass">PASS</span>' if res.passed else '<span class="fail">FAIL</span>'
    info = [("scenario file", sc.source), ("description", sc.head.description or "-"),
            ("config", sc.config_path or "default"), ("seed", res.seed), ("mode", res.mode), ("board", res.board),
            ("duration", fmt_t(sc.duration_s)), ("sim time reached", fmt_t(res.t_end_s)),
            ("wall time", f"{res.wall_s:.2f} s"), ("recording", res.recording or "-"),
            ("board log", res.board_log or "-")]
    if sc.overrides:
        info.append(("overrides", ", ".join(f"{k} = {v!r}" for k, v in sc.overrides.items())))
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>flatsat: {_e(sc.name)}</title>"
              f"<style>{REPORT_CSS}</style></head><body>"),
             f"<h1>{_e(sc.name)}: {verdict}</h1>",
             "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in info) + "</table>"]
    if res.error:
        parts.append(f"<div class='error'><b>The run failed:</b><pre>{_e(res.error)}</pre></div>")
    parts.append(f"<h2>Reproduce</h2><pre>{_e(res.command)}</pre>")
    rows = []
    for v in res.verdicts:
        cls = "pass" if v.passed else "fail"
        text = f"<br><code>{_e(v.text)}</code>" if v.text != v.label else ""
        rows.append(f"<tr class='{cls}'><td>{v.index}</td><td>{_e(v.label)}{text}</td><td>{_e(v.kind)}</td>"
                    f"<td class='res'>{'pass' if v.passed else 'FAIL'}</td><td>{_e(v.reason)}</td>"
                    f"<td>{_e(v.why)}</td></tr>")
    parts.append(f"<h2>Requirements ({len(res.verdicts) - len(res.failures)} of {len(res.verdicts)} passed)</h2>"
                 "<table><tr><th>#</th><th>requirement</th><th>kind</th><th>result</th><th>why (result)</th>"
                 "<th>why it matters</th></tr>" + "".join(rows) + "</table>")
    parts.append("<h2>Timeline</h2>")
    if sc.timeline:
        parts.append("<table><tr><th>#</th><th>at</th><th>do</th><th>details</th></tr>" + _timeline_rows(res)
                     + "</table>")
    else:
        parts.append("<p>No timeline entries.</p>")
    if res.timeline_log:
        parts.append("<p>As applied:</p><table><tr><th>sim time</th><th>action</th></tr>"
                     + "".join(f"<tr><td>{_e(fmt_t(t))}</td><td>{_e(x)}</td></tr>" for t, x in res.timeline_log)
                     + "</table>")
    parts.append("<h2>Plots</h2>")
    parts.append(_img(requirement_figure(res), "requirement signals"))
    parts.append(_img(overview_figure(res), "spacecraft overview"))
    if res.recent and not res.passed:
        lines = [f"t={t / 1e9:.3f} s {plane:7s} {direction:3s} {msg.topic} {msg.payload!r}"[:300]
                 for t, plane, direction, msg in res.recent]
        parts.append("<details><summary>Last messages of the run</summary><pre>" + _e("\n".join(lines))
                     + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(results: Iterable[ScenarioResult], out_dir: str | Path) -> list[Path]:
    """``<out_dir>/<scenario>.html`` per run and ``index.html`` linking them; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for res in results:
        path = out_dir / f"{safe_name(res.scenario.name)}.html"
        path.write_text(html_report(res), encoding="utf-8")
        written.append(path)
        state = "pass" if res.passed else "fail"
        why = res.error.splitlines()[0] if res.error else "; ".join(v.label for v in res.failures)
        rows.append(f"<tr class='{state}'><td><a href='{_e(path.name)}'>{_e(res.scenario.name)}</a></td>"
                    f"<td class='res'>{state.upper() if state == 'fail' else state}</td><td>{res.seed}</td>"
                    f"<td>{_e(why)}</td></tr>")
    index = out_dir / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>flatsat test report</title>"
                     f"<style>{REPORT_CSS}</style></head><body><h1>flatsat test report</h1><table><tr><th>scenario</th>"
                     f"<th>result</th><th>seed</th><th>failed</th></tr>{''.join(rows)}</table></body></html>",
                     encoding="utf-8")
    return [*written, index]

"""The campaign's outputs: results.csv, summary.json / .md, report.html and the replay scenarios."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.campaign.spec import Campaign, RunSpec
from hil.campaign.statistics import (
    CONFIDENCE,
    FailureStat,
    failure_stats,
    number,
    wilson_interval,
    worst_runs,
)
from hil.runner import safe_name

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"


# -- outputs ---------------------------------------------------------------------------------
def replay_command(row: Mapping[str, Any], replay_path: Path, board_cmd: str | None) -> str:
    parts = ["flatsat", "test", str(replay_path)]
    if board_cmd:
        parts += ["--board", board_cmd]
    return shlex.join([*parts, "--seed", str(row["seed"])])


def write_replay_scenario(spec: RunSpec, out_dir: Path) -> Path:
    """The run's scenario with its overrides and duration, as a file ``flatsat test`` runs as is."""
    import tomli_w

    # one file per run: the seed in the name too (the file says its seed: runs of one combination must not share it)
    parts = [spec.scenario, *(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in spec.overrides.items()), f"seed{spec.seed}"]
    path = out_dir / "replay" / f"{safe_name('-'.join(parts))}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = copy.deepcopy(spec.scenario_data)
    data["scenario"]["seed"] = spec.seed
    head = f"# replays campaign run {spec.index} of {spec.scenario_file} (seed {spec.seed})\n"
    path.write_text(head + tomli_w.dumps(data), encoding="utf-8")
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def write_csv(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str], path: Path) -> Path:
    """One row per run; for each requirement (union over scenarios) a ``[pass]`` and a ``[value]`` column."""
    labels: list[str] = []
    for row in rows:
        for r in row["requirements"]:
            if r["label"] not in labels:
                labels.append(r["label"])
    head = ["run", "scenario", "seed", *sweep_keys, "overrides", "passed", "error", "failed", "wall_s",
            "attempts", "command"]
    head += [f"{label} [{what}]" for label in labels for what in ("pass", "value")]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for row in rows:
            by = {r["label"]: r for r in row["requirements"]}
            cells = [row["run"], row["scenario"], row["seed"], *(_cell(row["overrides"].get(k)) for k in sweep_keys),
                     _cell(row["overrides"]), row["passed"], _cell(row["error"]), "; ".join(row["failed"]),
                     row["wall_s"], row["attempts"], row.get("command", "")]
            for label in labels:
                r = by.get(label)
                cells += ["", ""] if r is None else [r["passed"], _cell(r["value"])]
            w.writerow(cells)
    return path


def percent(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f} %"


def value_text(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# Campaign {summary['campaign']}: {summary['passed']} of {summary['runs']} runs passed", ""]
    if summary.get("description"):
        lines += [summary["description"], ""]
    lines += [f"Probability of failing, with its {round(100 * CONFIDENCE)} % Wilson score interval.", "",
              "| scenario | requirement | group | failed / runs | P(fail) | 95 % CI |",
              "| --- | --- | --- | --- | --- | --- |"]
    for s in summary["stats"]:
        group = "all" if not s["key"] else f"{s['key']} = {value_text(s['value'])}"
        p = math.nan if s["p_fail"] is None else s["p_fail"]
        lines.append(f"| {s['scenario']} | {s['requirement']} | {group} | {s['failed']} / {s['runs']} | {percent(p)} "
                     f"| {percent(s['ci_low'])} .. {percent(s['ci_high'])} |")
    lines += ["", "## Worst runs", ""]
    if not summary["worst"]:
        lines.append("None: every run passed.")
    else:
        lines += ["| run | scenario | seed | overrides | failed | replay |", "| --- | --- | --- | --- | --- | --- |"]
        for w in summary["worst"]:
            why = w["error"].splitlines()[0] if w["error"] else "; ".join(w["failed"])
            ov = ", ".join(f"{k} = {value_text(v)}" for k, v in w["overrides"].items()) or "-"
            lines.append(f"| {w['run']} | {w['scenario']} | {w['seed']} | {ov} | {why} | `{w['command']}` |")
    return "\n".join(lines) + "\n"


def pass_rate_figure(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str]) -> bytes | None:
    """PNG: per sweep key, the fraction of runs that passed per value (a line per scenario, Wilson bars)."""
    if not sweep_keys or not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sweep_keys), 1, figsize=(9, 3.2 * len(sweep_keys)), squeeze=False)
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    for ax, key in zip(axes[:, 0], sweep_keys, strict=True):
        values = list(dict.fromkeys(json.dumps(r["overrides"].get(key), default=str) for r in rows))
        numeric = all(number(json.loads(v)) is not None for v in values)
        xs_all = [float(json.loads(v)) if numeric else i for i, v in enumerate(values)]
        for sc in scenarios:
            xs, ys, lo, hi = [], [], [], []
            for x, v in zip(xs_all, values, strict=True):
                group = [r for r in rows if r["scenario"] == sc
                         and json.dumps(r["overrides"].get(key), default=str) == v]
                if not group:
                    continue
                k = sum(r["passed"] for r in group)
                a, b = wilson_interval(k, len(group))
                xs.append(x)
                ys.append(k / len(group))
                lo.append(k / len(group) - a)
                hi.append(b - k / len(group))
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=sc)
        if not numeric:
            ax.set_xticks(xs_all, [json.loads(v) if isinstance(json.loads(v), str) else v for v in values])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(key)
        ax.set_ylabel("pass rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"pass rate per override value ({round(100 * CONFIDENCE)} % Wilson intervals)", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def failure_figure(stats: Sequence[FailureStat]) -> bytes | None:
    """PNG: P(fail) of every requirement over all runs, with its Wilson interval."""
    overall = [s for s in stats if not s.key]
    if not overall:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(overall) + 1.2))
    ys = range(len(overall))
    ps = [s.p_fail for s in overall]
    err = [[p - s.ci[0] for p, s in zip(ps, overall, strict=True)],
           [s.ci[1] - p for p, s in zip(ps, overall, strict=True)]]
    ax.errorbar(ps, list(ys), xerr=err, fmt="o", capsize=4, color="#c62828")
    ax.set_yticks(list(ys), [f"{s.scenario}: {s.requirement}"[:70] for s in overall], fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.invert_yaxis()
    ax.set_xlabel("probability of failing (all runs)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_html(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], stats: Sequence[FailureStat],
               sweep_keys: Sequence[str], path: Path) -> Path:
    import base64

    from hil.report import REPORT_CSS

    def e(x: Any) -> str:
        return html.escape(str(x))

    def img(png: bytes | None, alt: str) -> str:
        return "" if png is None else \
            f'<p><img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'

    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>flatsat campaign: "
              f"{e(summary['campaign'])}</title><style>{REPORT_CSS}</style></head><body>"),
             f"<h1>Campaign {e(summary['campaign'])}: {summary['passed']} of {summary['runs']} runs passed</h1>",
             f"<p>{e(summary.get('description', ''))}</p>",
             (f"<p>Source: <code>{e(summary['source'])}</code>; seeds: {e(summary['seeds'])}; runs: "
              f"{summary['runs']}; total run wall time {summary['wall_s']:.1f} s.</p>"),
             "<h2>Pass rate per override value</h2>", img(pass_rate_figure(rows, sweep_keys), "pass rate"),
             "<h2>Probability of failing</h2>", img(failure_figure(stats), "failure probability"),
             ("<table><tr><th>scenario</th><th>requirement</th><th>group</th><th>failed / runs</th><th>P(fail)</th>"
              f"<th>{round(100 * CONFIDENCE)} % Wilson interval</th></tr>")]
    for s in summary["stats"]:
        group = "all" if not s["key"] else f"{s['key']} = {value_text(s['value'])}"
        p = math.nan if s["p_fail"] is None else s["p_fail"]
        cls = "fail" if s["failed"] else "pass"
        parts.append(f"<tr class='{cls}'><td>{e(s['scenario'])}</td><td>{e(s['requirement'])}</td><td>{e(group)}"
                     f"</td><td>{s['failed']} / {s['runs']}</td><td class='res'>{percent(p)}</td>"
                     f"<td>{percent(s['ci_low'])} .. {percent(s['ci_high'])}</td></tr>")
    parts.append("</table><h2>Worst runs</h2>")
    if summary["worst"]:
        parts.append("<table><tr><th>run</th><th>scenario</th><th>seed</th><th>overrides</th><th>failed</th>"
                     "<th>replay</th></tr>")
        for w in summary["worst"]:
            why = w["error"] or "; ".join(w["failed"])
            ov = ", ".join(f"{k} = {value_text(v)}" for k, v in w["overrides"].items()) or "-"
            parts.append(f"<tr class='fail'><td>{w['run']}</td><td>{e(w['scenario'])}</td><td>{w['seed']}</td>"
                         f"<td>{e(ov)}</td><td>{e(why)}</td><td><code>{e(w['command'])}</code></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None: every run passed.</p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


@dataclass
class CampaignResult:
    """Every row of the campaign (matrix order), the statistics and where the outputs are."""

    campaign: Campaign
    rows: list[dict[str, Any]]
    stats: list[FailureStat]
    summary: dict[str, Any]
    out_dir: Path
    #: runs run by this call (the rest came from results.jsonl with resume)
    ran: int = 0
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.rows)


def summarise(campaign: Campaign, rows: list[dict[str, Any]], out_dir: str | Path, *, ran: int = 0) -> CampaignResult:
    """Statistics and every output file from the result rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = [s.key for s in campaign.sweeps]
    stats = failure_stats(rows, keys)
    worst = worst_runs(rows)
    summary: dict[str, Any] = {
        "campaign": campaign.name, "description": campaign.head.description, "source": campaign.source,
        "seeds": campaign.seeds if len(campaign.seeds) <= 20 else f"{campaign.seeds[0]} .. {campaign.seeds[-1]}",
        "sweeps": {s.key: s.values for s in campaign.sweeps}, "runs": len(rows),
        "passed": sum(r["passed"] for r in rows), "confidence": CONFIDENCE,
        "wall_s": round(sum(r["wall_s"] for r in rows), 3), "stats": [s.as_dict() for s in stats],
        "worst": [{k: w.get(k) for k in ("run", "scenario", "seed", "overrides", "failed", "error", "command")}
                  for w in worst]}
    paths = {"jsonl": out / RESULTS_JSONL, "csv": write_csv(rows, keys, out / RESULTS_CSV)}
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8")
    paths.update(json=out / SUMMARY_JSON, md=out / SUMMARY_MD,
                 html=write_html(summary, rows, stats, keys, out / REPORT_HTML))
    return CampaignResult(campaign=campaign, rows=rows, stats=stats, summary=summary, out_dir=out, ran=ran,
                          paths=paths)

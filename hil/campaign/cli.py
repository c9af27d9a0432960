"""``flatsat campaign``: arguments, the run, the summary table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from emulator.errors import EmulatorError
from emulator.outputs import folder_problem
from hil.campaign.execution import CONNECT_TIMEOUT_S, run_campaign
from hil.campaign.report import (
    REPORT_HTML,
    RESULTS_CSV,
    RESULTS_JSONL,
    SUMMARY_MD,
    CampaignResult,
    percent,
    value_text,
)
from hil.campaign.spec import load_campaign
from hil.campaign.statistics import CONFIDENCE
from hil.runner import safe_name


# -- command line ----------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    """``flatsat campaign`` arguments."""
    p.add_argument("file", metavar="CAMPAIGN", help="campaign file, e.g. configs/campaigns/battery-sweep.toml")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                                          "(needs pip install 'flatsat[cluster]')")
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help="wall seconds to reach the scheduler (default %(default)s)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: out/campaigns/<name>)")
    p.add_argument("--board", metavar="CMD", help="board command for every run (default: the campaign's)")
    p.add_argument("--resume", action="store_true", help="keep the rows in DIR/results.jsonl, run the rest")
    p.add_argument("--record", action="store_true", help="keep every run's recording under DIR/runs/")
    p.add_argument("--quiet", action="store_true", help="no line per run, no summary table")


def cmd_campaign(args: Any) -> int:
    def err(text: str) -> None:
        print(text, file=sys.stderr)

    if args.workers is not None and args.workers < 1:
        err("flatsat campaign: --workers must be >= 1")
        return 2
    try:
        campaign = load_campaign(args.file)
        out = Path(args.out) if args.out else Path("out/campaigns") / safe_name(campaign.name)
        problem = folder_problem("--out", out, keep=False)  # made once the campaign is checked
        if problem:
            err(f"flatsat campaign: {problem}")
            return 2
        res = run_campaign(campaign, out_dir=out, workers=args.workers, scheduler=args.scheduler,
                           board_cmd=args.board, resume=args.resume, record=True if args.record else None,
                           connect_timeout_s=args.connect_timeout,
                           status=None if args.quiet else (lambda text: err(f"flatsat campaign: {text}")))
    except EmulatorError as exc:
        err(f"flatsat campaign: {exc}")
        return 2
    except KeyboardInterrupt:  # (Ctrl-C) what is kept and how to go on
        rows = out / RESULTS_JSONL
        done = sum(1 for line in rows.read_text(encoding="utf-8").splitlines() if line.strip()) if rows.exists() else 0
        err(f"flatsat campaign: interrupted after {done} finished run{'s' if done != 1 else ''}, kept in {rows}; "
            "the same command with --resume runs the rest")
        return 130
    if not args.quiet:
        print_summary(res)
    if not (args.board or campaign.head.board) and not res.passed:  # why work-related requirements failed
        err("flatsat campaign: no board ([campaign] board or --board): nobody gave the accelerator work in any "
            "run, so a requirement on its work cannot pass")
    err(f"flatsat campaign: {res.summary['passed']} of {len(res.rows)} runs passed; results in {res.out_dir} "
        f"({RESULTS_CSV}, {SUMMARY_MD}, {REPORT_HTML})")
    return 0 if res.passed else 1


def print_summary(res: CampaignResult) -> None:
    """The failure-probability table and the worst runs (stdout)."""
    from rich.table import Table

    from emulator.terminal import console as make_console

    console = make_console()
    table = Table(title=f"campaign {res.campaign.name}: {res.summary['passed']} of {len(res.rows)} runs passed")
    table.add_column("scenario", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("requirement", max_width=44, overflow="fold")
    table.add_column("group", max_width=36, overflow="fold")
    for col in ("failed / runs", "P(fail)", f"{round(100 * CONFIDENCE)} % CI"):
        table.add_column(col, no_wrap=True)
    for s in res.stats:
        group = "all" if not s.key else f"{s.key} = {value_text(s.value)}"
        lo, hi = s.ci
        table.add_row(s.scenario, s.requirement, group, f"{s.failed} / {s.runs}", percent(s.p_fail),
                      f"{percent(lo)} .. {percent(hi)}", style="red" if s.failed else None)
    console.print(table)
    for w in res.summary["worst"]:
        console.print(f"worst: run {w['run']} {w['scenario']} seed {w['seed']} {w['overrides'] or ''}: "
                      f"{w['command']}", highlight=False, markup=False, soft_wrap=True)

"""Benchmark: what a scenario run pays for its report series' whole-tree rows, kept as trees against flattened in the run.

    .venv/bin/python bench/bench_rows.py [SCENARIO ...] [--repeats 5]

A scenario run keeps up to 2,000 windows of its whole truth tree for the report and ``ScenarioResult.series`` (a
window where a plotted or required signal went beyond the row adds a row of its minima and one of its maxima: up to
three rows a window). Since the sixteenth round a row is kept as its tree's msgpack (``emulator.series.tree_row``)
and flattened only when a column is first read. The baseline, in the same process and alternating with it: the
same run with ``tree_row`` replaced by ``flatten``, so every row is flattened in the run, as before.

Each arm runs the scenario in this process with no board (``board_cmd=None``), afap, no recording (the default
scenarios: latchup and hot-case, short runs where the rows are a large share). It prints the run's CPU time, the
CPU time to read the series afterwards (``Series.keys()``: every row flattened), both summed, medians of
``--repeats``, and the ratios baseline / trees (> 1: keeping the trees is cheaper). The verdicts and the series must
be the same in both arms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import emulator.series
from hil.runner import run_scenario
from hil.scenario import load_scenario

KEPT_AS_TREES = emulator.series.tree_row


def run_once(path: Path, flatten_in_run: bool) -> tuple[float, float, Any]:
    emulator.series.tree_row = emulator.series.flatten if flatten_in_run else KEPT_AS_TREES
    try:
        c0 = time.process_time()
        res = asyncio.run(run_scenario(load_scenario(path), board_cmd=None, board_url=None, seed=None,
                                       record_dir=None))
        c1 = time.process_time()
        res.series.keys()
        c2 = time.process_time()
    finally:
        emulator.series.tree_row = KEPT_AS_TREES
    return c1 - c0, c2 - c1, res


#: truth keys that follow the wall clock (how fast the run went), different from run to run by design
WALL_KEYS = ("clock.wall_elapsed_s", "clock.realtime_factor")


def differences(a: Any, b: Any) -> list[str]:
    """What differs between two runs' verdicts and series (the wall-clock keys aside)."""
    if [(v.label, v.passed) for v in a.verdicts] != [(v.label, v.passed) for v in b.verdicts]:
        return ["verdicts"]
    sa, sb = a.series, b.series
    columns = sa.keys()
    if sa.t_s != sb.t_s or columns != sb.keys():
        return ["rows or columns"]
    return [k for k in columns if k not in WALL_KEYS and not np.array_equal(sa.get(k), sb.get(k), equal_nan=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", default=["latchup", "hot-case"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("| scenario | rows | arm | run CPU s | reading CPU s | both s |")
    print("| --- | --- | --- | --- | --- | --- |")
    ratios = []
    for name in args.scenarios:
        path = Path(name) if name.endswith(".toml") else ROOT / "configs" / "scenarios" / f"{name}.toml"
        arms: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        results: dict[bool, Any] = {}
        for k in range(args.repeats):
            for flatten_in_run in ((False, True) if k % 2 == 0 else (True, False)):  # alternating, ABBA
                run_s, read_s, res = run_once(path, flatten_in_run)
                arms[flatten_in_run].append((run_s, read_s))
                results[flatten_in_run] = res
        diff = differences(results[False], results[True])
        if diff:
            sys.exit(f"{name}: the two arms differ: {diff[:10]}")
        med = {arm: (statistics.median(r for r, _ in v), statistics.median(s for _, s in v),
                     statistics.median(r + s for r, s in v)) for arm, v in arms.items()}
        rows = len(results[False].series)
        for arm, label in ((True, "flattened in the run (baseline)"), (False, "kept as trees")):
            run_s, read_s, both_s = med[arm]
            print(f"| {name} | {rows} | {label} | {run_s:.2f} | {read_s:.2f} | {both_s:.2f} |")
        ratios.append((name, med[True][0] / med[False][0], med[True][2] / med[False][2]))
    print()
    for name, unread, read in ratios:
        print(f"{name}: baseline / trees = {unread:.2f}x with the series unread (a campaign's run, a test), "
              f"{read:.2f}x with it read (flatsat test's summary, the report)")


if __name__ == "__main__":
    main()

"""Benchmark: what a scenario run's requirements cost per step, reading the model through its truth getters against
reading its whole truth tree.

    .venv/bin/python bench/bench_scenario.py [SCENARIO] [--hours 6] [--repeats 3]

A scenario run (``flatsat test``, a campaign's runs, the pytest plugin) checks its ``always`` / ``min`` / ``max``
requirements and samples its report's plot signals at every physics step. It reads them through
``hil.signals.StepReader``; since the thirteenth round the model gives each value through
``SpacecraftModel.truth_getter`` (the satellite's bus voltage is its power system's ``bus_v``) instead of building
its whole truth tree. The baseline, in the same run and alternating with it: the same reader with the getters
withheld, so that every step builds the model's truth tree and walks it (what every run did before).

Both arms run the scenario in this process with no board (``board_cmd=None``), afap, with a recording in a
temporary folder (as ``flatsat test`` records by default) and the report's series, for ``--hours`` of the
scenario (default: day-in-the-life's first 6 h). It prints wall and CPU time per arm (medians of ``--repeats``),
per step, and the ratio tree / getters (> 1: the getters are faster). The verdicts of both arms must agree.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hil.runner
from hil.runner import run_scenario
from hil.scenario import load_scenario
from hil.signals import StepReader


class _TreeOnly:
    """A truth source whose model offers no getters (its truth tree only): the baseline's reads."""

    def __init__(self, emu: Any) -> None:
        self._emu = emu
        self.model = _ModelTree(emu.model)

    def truth(self) -> dict[str, Any]:
        return self._emu.truth()


class _ModelTree:
    def __init__(self, model: Any) -> None:
        self.truth = model.truth


class TreeReader(StepReader):
    """StepReader with the model's getters withheld: every read builds the model's truth tree."""

    def __init__(self, source: Any, keys: Any) -> None:
        super().__init__(_TreeOnly(source), keys)


async def one_run(path: Path, hours: float, tree: bool) -> dict[str, Any]:
    sc = load_scenario(path)
    sc.head.duration = hours * 3600.0
    hil.runner.StepReader = TreeReader if tree else StepReader  # type: ignore[misc]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cpu0, t0 = time.process_time(), time.perf_counter()
            res = await run_scenario(sc, board_cmd=None, board_url=None, seed=None, record_dir=Path(tmp))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        hil.runner.StepReader = StepReader  # type: ignore[misc]
    if res.error is not None:
        raise SystemExit(f"the run failed: {res.error}")
    return {"wall_s": wall, "cpu_s": cpu, "verdicts": [(v.label, v.passed) for v in res.verdicts],
            "steps": round(res.t_end_s)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "configs" / "scenarios" / "day-in-the-life.toml"))
    ap.add_argument("--hours", type=float, default=6.0, help="sim time of each run (default 6 h)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.scenario)
    runs: dict[str, list[dict[str, Any]]] = {"getters": [], "tree": []}
    for rep in range(args.repeats):
        order = ("tree", "getters") if rep % 2 else ("getters", "tree")  # alternating: drift falls on both
        for arm in order:
            runs[arm].append(asyncio.run(one_run(path, args.hours, arm == "tree")))
        g, t = runs["getters"][-1], runs["tree"][-1]
        if g["verdicts"] != t["verdicts"]:
            raise SystemExit(f"the arms disagree: {g['verdicts']} != {t['verdicts']}")
        print(f"  run {rep + 1}: getters {g['wall_s']:.2f} s (CPU {g['cpu_s']:.2f} s), whole tree {t['wall_s']:.2f} s "
              f"(CPU {t['cpu_s']:.2f} s)", flush=True)
    med = statistics.median
    steps = runs["getters"][0]["steps"]
    print(f"\n{path.stem}, {args.hours:g} h ({steps} steps), no board, afap, recorded, medians of {args.repeats}:")
    print("| reads | wall | CPU | CPU per step |")
    print("| --- | --- | --- | --- |")
    for arm, label in (("tree", "the model's whole truth tree at every step (before)"),
                       ("getters", "the model's truth getters (now)")):
        wall, cpu = med(r["wall_s"] for r in runs[arm]), med(r["cpu_s"] for r in runs[arm])
        print(f"| {label} | {wall:.2f} s | {cpu:.2f} s | {cpu / steps * 1e6:.1f} us |")
    ratio = med(r["cpu_s"] for r in runs["tree"]) / med(r["cpu_s"] for r in runs["getters"])
    wall_ratio = med(r["wall_s"] for r in runs["tree"]) / med(r["wall_s"] for r in runs["getters"])
    print(f"\nwhole tree / getters: {wall_ratio:.2f}x wall, {ratio:.2f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

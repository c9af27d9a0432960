"""Monte Carlo statistics of the result rows: Wilson score intervals per requirement and sweep value."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
#: failing runs listed by name in the summary (all of them are in results.jsonl)
MAX_WORST = 20
#: pseudo-requirement of every run: it ran to the end (no board death, no refused action, no crash)
RUN_LABEL = "run completes"


# -- statistics ------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (Wilson 1927; Newcombe 1998, method 3).

    Args:
        k: successes (here: failing runs), 0 <= k <= n.
        n: trials (runs); n = 0 gives (0, 1): nothing is known.
        confidence: two-sided, e.g. 0.95.

    Raises:
        ValueError: k outside 0..n or confidence outside (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"k must be within 0..n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (the formula gives them up to rounding)
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


@dataclass
class FailureStat:
    """How often one requirement failed in a group of runs."""

    scenario: str
    requirement: str
    #: "" overall, else the sweep key this group holds fixed
    key: str
    value: Any
    failed: int
    runs: int

    @property
    def p_fail(self) -> float:
        return self.failed / self.runs if self.runs else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.failed, self.runs)

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.ci
        return {"scenario": self.scenario, "requirement": self.requirement, "key": self.key or None,
                "value": self.value, "failed": self.failed, "runs": self.runs,
                "p_fail": None if math.isnan(self.p_fail) else self.p_fail, "ci_low": lo, "ci_high": hi}


def _outcomes(row: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(requirement, failed) of a row: the run itself, then each requirement it got a verdict for."""
    return [(RUN_LABEL, row.get("error") is not None)] + [(r["label"], not r["passed"]) for r in row["requirements"]]


def failure_stats(rows: Sequence[Mapping[str, Any]], sweep_keys: Sequence[str]) -> list[FailureStat]:
    """Per scenario and requirement: failures overall, then per value of each sweep key.

    A run that failed as a whole counts against ``run completes``; its requirements had no
    verdict and are left out of their counts (the ``runs`` column says how many had one).
    """
    groups: dict[tuple[str, str, str, str], FailureStat] = {}
    for row in rows:
        slots = [("", None)] + [(k, row["overrides"].get(k)) for k in sweep_keys]
        for label, failed in _outcomes(row):
            for key, value in slots:
                gk = (row["scenario"], label, key, json.dumps(value, sort_keys=True, default=str))
                stat = groups.get(gk)
                if stat is None:
                    stat = groups[gk] = FailureStat(row["scenario"], label, key, value, 0, 0)
                stat.runs += 1
                stat.failed += int(failed)
    # scenario and requirement as first seen; under each, "all" first, then each sweep key's values in order
    first: dict[tuple[str, str], int] = {}
    values: dict[str, int] = {}
    for s in groups.values():
        first.setdefault((s.scenario, s.requirement), len(first))
        values.setdefault(json.dumps(s.value, sort_keys=True, default=str), len(values))
    order = ["", *sweep_keys]
    return sorted(groups.values(), key=lambda s: (first[(s.scenario, s.requirement)], order.index(s.key),
                                                  values[json.dumps(s.value, sort_keys=True, default=str)]))


def worst_runs(rows: Sequence[Mapping[str, Any]], limit: int = MAX_WORST) -> list[Mapping[str, Any]]:
    """Failing runs, most requirements failed first (a run that failed as a whole first of all)."""
    failing = [r for r in rows if not r["passed"]]
    failing.sort(key=lambda r: (r.get("error") is None, -len(r["failed"]), r["run"]))
    return failing[:limit]


def number(value: Any) -> float | None:
    """A finite float, or None (None, a bool, NaN, infinities, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f

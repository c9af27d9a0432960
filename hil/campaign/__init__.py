"""Test campaigns: scenarios x seeds x config overrides on a process pool or Dask, with Monte Carlo statistics.

A campaign is a TOML file (``configs/campaigns/*.toml``)::

    [campaign]
    name = "battery-sweep"
    seeds = [1, 2, 3]                     # or seeds = { first = 1, count = 100 }

    [[scenario]]
    file = "../scenarios/eclipse-depletion.toml"   # next to this file, else configs/scenarios/
    duration = "2h"                                # optional: shorten the scenario

    [[sweep]]
    key = "power.battery.cell_capacity_ah"
    values = [0.8, 1.2, 1.6]

The matrix is every scenario x every seed x the cartesian product of the sweeps, each run
with the scenario's ``[overrides]``, then the campaign's ``[overrides]``, then its sweep values.
Everything is checked before any run starts (:func:`load_campaign`, :func:`validate_campaign`):
unknown keys, missing scenarios, and the satellite config built for every override combination.

:func:`run_campaign` runs the matrix on a local ``ProcessPoolExecutor`` or on a Dask cluster
(``scheduler=`` address); both call :func:`run_job` per run and give identical rows apart from
``wall_s``. Each finished row is appended to ``results.jsonl`` (flushed) as it arrives, so a
campaign that is stopped loses nothing; ``resume=True`` skips the runs already there. A pool
whose worker dies (``BrokenProcessPool``) is replaced and the unfinished runs resubmitted; a run
in flight when a worker died is charged an attempt and given up after ``retries`` more. On Dask
the scheduler reschedules the tasks of a dead worker itself (``distributed.scheduler.allowed-failures``)
and ``retries=`` is passed to ``submit``.

At the end: ``results.csv`` (one row per run, a pass and a value column per requirement),
``summary.json`` / ``summary.md`` (per requirement the probability of failing with a 95 % Wilson
score interval, overall and per sweep value; the worst runs with the ``flatsat test`` line that
replays each exactly) and ``report.html`` (the same with plots).

The package, by concern: :mod:`~hil.campaign.spec` (the file, the matrix), :mod:`~hil.campaign.validation` (every
run's config checked first), :mod:`~hil.campaign.execution` (pool, Dask, results.jsonl),
:mod:`~hil.campaign.statistics` (Wilson intervals), :mod:`~hil.campaign.report` (CSV, Markdown, HTML, replays) and
:mod:`~hil.campaign.cli` (``flatsat campaign``).
"""

from __future__ import annotations

from hil.campaign.cli import add_arguments, cmd_campaign, print_summary
from hil.campaign.execution import (
    CONNECT_TIMEOUT_S,
    connect,
    error_row,
    key_figure,
    result_row,
    run_campaign,
    run_job,
)
from hil.campaign.report import (
    REPORT_HTML,
    RESULTS_CSV,
    RESULTS_JSONL,
    SUMMARY_JSON,
    SUMMARY_MD,
    CampaignResult,
    failure_figure,
    pass_rate_figure,
    replay_command,
    summarise,
    summary_markdown,
    write_csv,
    write_html,
    write_replay_scenario,
)
from hil.campaign.spec import (
    Campaign,
    CampaignError,
    CampaignFile,
    CampaignHead,
    RunSpec,
    ScenarioEntry,
    SeedRange,
    Sweep,
    campaign_from_dict,
    load_campaign,
    run_key,
    scenario_data,
)
from hil.campaign.statistics import (
    CONFIDENCE,
    MAX_WORST,
    RUN_LABEL,
    FailureStat,
    failure_stats,
    wilson_interval,
    worst_runs,
)
from hil.campaign.validation import located, validate_campaign

__all__ = ["CONFIDENCE", "CONNECT_TIMEOUT_S", "MAX_WORST", "REPORT_HTML", "RESULTS_CSV", "RESULTS_JSONL", "RUN_LABEL",
           "SUMMARY_JSON", "SUMMARY_MD", "Campaign", "CampaignError", "CampaignFile", "CampaignHead", "CampaignResult",
           "FailureStat", "RunSpec", "ScenarioEntry", "SeedRange", "Sweep", "add_arguments", "campaign_from_dict",
           "cmd_campaign", "connect", "error_row", "failure_figure", "failure_stats", "key_figure", "load_campaign",
           "located", "pass_rate_figure", "print_summary", "replay_command", "result_row", "run_campaign", "run_job",
           "run_key", "scenario_data", "summarise", "summary_markdown", "validate_campaign", "wilson_interval",
           "worst_runs", "write_csv", "write_html", "write_replay_scenario"]

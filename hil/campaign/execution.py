"""Running the matrix: one run in a worker (:func:`run_job`), on a local process pool or a Dask cluster, each row
appended to results.jsonl as it arrives."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError, EmulatorError
from hil.campaign.report import (
    RESULTS_JSONL,
    CampaignResult,
    replay_command,
    summarise,
    value_text,
    write_replay_scenario,
)
from hil.campaign.spec import Campaign, RunSpec
from hil.campaign.statistics import number
from hil.campaign.validation import validate_campaign
from hil.runner import ScenarioRun
from hil.scenario import scenario_from_dict

#: wall seconds to wait for a Dask scheduler before giving up
CONNECT_TIMEOUT_S = 5.0


# -- one run (in a worker) -------------------------------------------------------------------
def run_job(spec: RunSpec, *, attempt: int = 1, board_cmd: str | None = None, record_dir: str | None = None,
            model_factory: Callable[..., Any] | None = None, running_dir: str | None = None) -> dict[str, Any]:
    """Run one :class:`RunSpec` to the end and return its result row (plain JSON types).

    A run that fails as a whole (board died, refused action, an exception) gives a row with
    ``error`` set; only a dying worker process loses it.
    """
    marker = Path(running_dir) / str(spec.index) if running_dir else None
    if marker is not None:
        marker.write_text(str(os.getpid()))
    try:
        sc = scenario_from_dict(spec.scenario_data, source=spec.scenario_file, base_dir=Path(spec.base_dir))
        try:
            run = ScenarioRun(sc, board_cmd=board_cmd, seed=spec.seed, record_dir=record_dir,
                              model_factory=model_factory)
            res = asyncio.run(run.run())
        except EmulatorError as exc:
            return error_row(spec, str(exc), attempt)
        except Exception as exc:  # noqa: BLE001 (a bug in a model must not end the campaign): the row says what happened
            return error_row(spec, f"{type(exc).__name__}: {exc}", attempt)
        return result_row(spec, res, attempt)
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()



def key_figure(verdict: Any, res: Any) -> float | None:
    """A requirement's number: the checker's value, else the signal's worst sampled value over the run.

    Worst is the one nearest to failing: the minimum for ``>``/``>=``, the maximum for ``<``/``<=``,
    the farthest from the limit for ``==``/``!=`` (the report's series: every step up to 2000 points).
    """
    value = number(verdict.value)
    if value is not None or not verdict.signal or verdict.signal not in res.series:
        return value
    import numpy as np

    req = next((r for i, r in res.scenario.requirements if i == verdict.index), None)
    ys = np.asarray(res.series.get(verdict.signal), dtype=float)
    after = getattr(req, "after", 0.0) or 0.0
    ys = ys[(res.series.time() >= after) & ~np.isnan(ys)]
    if ys.size == 0:
        return None
    op = getattr(req, "op", "")
    if op in (">", ">="):
        return float(ys.min())
    if op in ("<", "<="):
        return float(ys.max())
    limit = number(verdict.limit) or 0.0
    return float(ys[int(np.argmax(np.abs(ys - limit)))])


def _base_row(spec: RunSpec, attempt: int) -> dict[str, Any]:
    return {"run": spec.index, "key": spec.key, "scenario": spec.scenario, "scenario_file": spec.scenario_file,
            "seed": spec.seed, "overrides": spec.overrides, "attempts": attempt}


def result_row(spec: RunSpec, res: Any, attempt: int = 1) -> dict[str, Any]:
    reqs = [{"index": v.index, "label": v.label, "kind": v.kind, "passed": bool(v.passed),
             "value": key_figure(v, res), "limit": number(v.limit), "t_s": number(v.t_s), "reason": v.reason}
            for v in res.verdicts]
    return {**_base_row(spec, attempt), "passed": bool(res.passed), "error": res.error,
            "failed": [r["label"] for r in reqs if not r["passed"]], "requirements": reqs,
            "t_end_s": number(res.t_end_s), "wall_s": round(float(res.wall_s), 3)}


def error_row(spec: RunSpec, error: str, attempt: int = 1) -> dict[str, Any]:
    return {**_base_row(spec, attempt), "passed": False, "error": error, "failed": [], "requirements": [],
            "t_end_s": None, "wall_s": 0.0}


# -- running ---------------------------------------------------------------------------------
class ResultLog:
    """``results.jsonl``: a row per line, appended and flushed as each run finishes."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines:
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    if isinstance(row, dict) and "key" in row:
                        self.rows[row["key"]] = row
            # a campaign killed mid-write leaves half a line: rewrite the file with the whole ones only
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows.values()), encoding="utf-8")
            tmp.replace(path)
        elif path.exists() and path.stat().st_size:
            raise ConfigError(f"{path} already holds results: pass --resume to continue that campaign, or choose "
                              "another --out directory", field="out")
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


Status = Callable[[str], None]


def _describe(spec: RunSpec) -> str:
    ov = " ".join(f"{k.rsplit('.', 1)[-1]}={value_text(v)}" for k, v in spec.overrides.items())
    return f"{spec.scenario} seed {spec.seed}" + (f" {ov}" if ov else "")


def run_campaign(campaign: Campaign, *, out_dir: str | Path, workers: int | None = None,
                 scheduler: str | None = None, board_cmd: str | None = None, resume: bool = False,
                 model_factory: Callable[..., Any] | None = None, record: bool | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, status: Status | None = None,
                 mp_context: Any = None) -> CampaignResult:
    """Check, run and summarise a campaign.

    Args:
        campaign: from :func:`load_campaign`.
        out_dir: results.jsonl / .csv, summary.json / .md, report.html, replay/ (and runs/ when recording).
        workers: processes of the local pool (default: the CPU count); ignored with ``scheduler``.
        scheduler: a Dask scheduler address (``tcp://host:8786``, or a LocalCluster's); None: local pool.
        board_cmd: board command for every run (default: the campaign's ``board``).
        resume: keep the rows already in results.jsonl and run only the missing ones.
        model_factory: build each run's model from (scenario, seed) (tests; must pickle).
        record: keep recordings (default: the campaign's ``record``).
        connect_timeout_s: wall seconds to reach the scheduler.
        status: called with a line per finished run.
        mp_context: multiprocessing context of the local pool (default: the platform's).

    Raises:
        CampaignError: a problem in the campaign, its scenarios or an override (before any run).
        ConfigError: results exist and ``resume`` is False; the scheduler cannot be reached; Dask missing.
    """
    say = status or (lambda text: None)
    board = board_cmd if board_cmd is not None else campaign.head.board
    specs = validate_campaign(campaign, board_cmd=board, model_factory=model_factory)
    out = Path(out_dir)
    client = connect(scheduler, connect_timeout_s) if scheduler else None
    try:
        log = ResultLog(out / RESULTS_JSONL, resume=resume)
    except BaseException:
        if client is not None:
            client.close()
        raise
    keep = record if record is not None else campaign.head.record
    todo = [s for s in specs if s.key not in log.rows]
    if resume:
        say(f"{len(specs) - len(todo)} of {len(specs)} runs already in {log.path}; running {len(todo)}")
    done = [0]
    by_index = {s.index: s for s in specs}

    def finished(row: dict[str, Any]) -> None:
        spec = by_index[row["run"]]
        if not row["passed"]:
            row["command"] = replay_command(row, write_replay_scenario(spec, out), board)
        log.append(row)
        done[0] += 1
        verdict = "PASS" if row["passed"] else "FAIL"
        why = "" if row["passed"] else f": {(row['error'] or '; '.join(row['failed'])).splitlines()[0]}"
        say(f"[{done[0]}/{len(todo)}] {_describe(spec)}: {verdict} ({row['wall_s']:.1f} s){why}")

    def job_args(spec: RunSpec) -> dict[str, Any]:
        rec = str(out / "runs" / f"{spec.index:05d}") if keep else None
        return {"board_cmd": board, "record_dir": rec, "model_factory": model_factory}

    try:
        if client is not None:
            _run_dask(client, todo, job_args, finished, campaign.head.retries)
        else:
            _run_pool(todo, job_args, finished, workers or os.cpu_count() or 1, campaign.head.retries, out,
                      mp_context, say)
    finally:
        log.close()
        if client is not None:
            client.close()
    rows = [log.rows[s.key] for s in specs if s.key in log.rows]
    return summarise(campaign, rows, out, ran=done[0])


def _run_pool(todo: list[RunSpec], job_args: Callable[[RunSpec], dict[str, Any]],
              finished: Callable[[dict[str, Any]], None], workers: int, retries: int, out: Path,
              mp_context: Any, say: Status) -> None:
    running = out / ".running"
    running.mkdir(parents=True, exist_ok=True)
    pending = {s.index: s for s in todo}
    attempts = dict.fromkeys(pending, 1)
    while pending:
        for stale in running.iterdir():
            stale.unlink()
        broken = False
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=mp_context) as pool:
            futures = {pool.submit(run_job, s, attempt=attempts[i], running_dir=str(running), **job_args(s)): i
                       for i, s in pending.items()}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    row = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    continue
                except Exception as exc:  # noqa: BLE001 (e.g. a model factory that does not pickle)
                    row = error_row(pending[i], f"{type(exc).__name__}: {exc}", attempts[i])
                finished(row)
                del pending[i]
        if not broken:
            break
        # the runs that had started and not finished were in the dead worker or killed with it
        suspects = {int(p.name) for p in running.iterdir() if p.name.isdigit()} & set(pending) or set(pending)
        say(f"a worker process died; {len(pending)} unfinished run(s) go to a fresh pool "
            f"(in flight: {', '.join(_describe(pending[i]) for i in sorted(suspects))})")
        for i in sorted(suspects):
            attempts[i] += 1
            if attempts[i] > retries + 1:
                finished(error_row(pending.pop(i), f"the worker process died {retries + 1} time(s) while running "
                                                   "this run (killed, out of memory, or os._exit in a model)",
                                   attempts[i] - 1))
    with contextlib.suppress(OSError):
        for p in running.iterdir():
            p.unlink()
        running.rmdir()


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A ``distributed.Client`` for ``address``.

    Raises:
        ConfigError: dask is not installed, or no scheduler answered within ``timeout_s`` (wall).
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed, which is not installed; install it with "
                          "pip install 'flatsat[cluster]' (or pip install 'dask[distributed]')",
                          field="scheduler") from None
    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s: {first}; is "
                          "`dask scheduler` running there, and is the address (tcp://HOST:8786) right?",
                          field="scheduler") from None


def _run_dask(client: Any, todo: list[RunSpec], job_args: Callable[[RunSpec], dict[str, Any]],
              finished: Callable[[dict[str, Any]], None], retries: int) -> None:
    import uuid

    from distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures = {client.submit(run_job, s, key=f"flatsat-run-{s.index}-{tag}", pure=False, retries=retries,
                             **job_args(s)): s for s in todo}
    with client.as_current():  # as_completed looks for the current client
        for fut in as_completed(list(futures)):
            spec = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 (KilledWorker, or a task error after its retries)
                name = type(exc).__name__
                what = "the workers running it died too often" if name == "KilledWorker" else "the task failed"
                row = error_row(spec, f"{what}: {name}: {exc}")
            finished(row)

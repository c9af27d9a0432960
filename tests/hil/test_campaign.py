"""Campaigns: matrix, result table, Wilson intervals, resume, retry after a dead worker, pool vs Dask, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from toy_model import Lamp

from emulator import cli as emulator_cli
from emulator.errors import ConfigError
from hil.campaign import (
    RESULTS_JSONL,
    CampaignError,
    load_campaign,
    run_campaign,
    validate_campaign,
    wilson_interval,
)
from hil.runner import run_scenario_sync
from hil.scenario import Scenario, load_scenario, scenario_from_dict

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "campaigns" / "battery-sweep.toml"
#: Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score, no continuity
#: correction): (failures, runs) -> 95 % interval, printed to 4 decimals
NEWCOMBE_WILSON = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                   (1, 29): (0.0061, 0.1718)}
#: the table's rounding
NEWCOMBE_TOL = 0.5e-4
#: toy run: 10 min of sim time at 1 s steps, the lamp on all the time at (power_w + seed) W
TOY_S = 600
#: requirement: final energy <= 7200 J, i.e. power_w + seed <= 12 W
ENERGY_LIMIT_J = 7200

TOY_SCENARIO = f"""
[scenario]
name = "lamp"
duration = "{TOY_S}s"
seed = 1

[[requirement]]
kind = "final"
signal = "satellite.energy_j"
op = "<="
value = {ENERGY_LIMIT_J}
label = "energy budget"

[[requirement]]
kind = "always"
signal = "satellite.factor"
op = "=="
value = 1
label = "no brownout"
"""


def campaign_text(seeds: str = "[1, 2, 3]", powers: str = "[9.0, 10.0]", extra: str = "") -> str:
    return f"""
[campaign]
name = "lamp-sweep"
seeds = {seeds}
retries = 1
{extra}

[[scenario]]
file = "lamp.toml"

[[sweep]]
key = "lamp.power_w"
values = {powers}
"""


@dataclass(frozen=True)
class LampFactory:
    """The toy lamp, on, at ``lamp.power_w + seed`` W; optionally its worker dies on the way.

    With ``crash_seed``, building that seed's model calls ``os._exit``: the first time only when
    ``crash_flag`` names a file that does not exist yet (it is created), every time when it is None.
    """

    crash_seed: int = -1
    crash_flag: str | None = None

    def __call__(self, scenario: Scenario, seed: int) -> Lamp:
        if seed == self.crash_seed and (self.crash_flag is None or not Path(self.crash_flag).exists()):
            if self.crash_flag is not None:
                Path(self.crash_flag).touch()
            os._exit(7)
        lamp = Lamp()
        lamp.on = True
        lamp.power_w = float(scenario.overrides.get("lamp.power_w", 10.0)) + seed
        return lamp


def make_files(tmp_path: Path, **kw: Any) -> Path:
    (tmp_path / "lamp.toml").write_text(TOY_SCENARIO, encoding="utf-8")
    path = tmp_path / "campaign.toml"
    path.write_text(campaign_text(**kw), encoding="utf-8")
    return path


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


# -- matrix ----------------------------------------------------------------------------------
def test_the_matrix_is_scenarios_x_sweep_product_x_seeds(tmp_path: Path) -> None:
    path = make_files(tmp_path, seeds="{ first = 5, count = 2 }",
                      extra='[overrides]\n"telemetry.truth_rate_hz" = 0\n\n[[sweep]]\nkey = "lamp.mode"\nvalues = ["a", "b", "c"]')
    # the [[sweep]] in extra lands before [[scenario]]: TOML arrays of tables may be split
    camp = load_campaign(path)
    runs = camp.runs()
    assert camp.seeds == [5, 6]
    assert len(runs) == 1 * 2 * 3 * 2
    assert [r.index for r in runs] == list(range(12))
    # last sweep fastest, seeds innermost
    assert [(r.overrides["lamp.mode"], r.overrides["lamp.power_w"], r.seed) for r in runs[:4]] == \
        [("a", 9.0, 5), ("a", 9.0, 6), ("a", 10.0, 5), ("a", 10.0, 6)]
    assert len({r.key for r in runs}) == 12
    first = runs[0].scenario_data
    assert first["overrides"] == {"telemetry.truth_rate_hz": 0, "lamp.mode": "a", "lamp.power_w": 9.0}
    assert first["scenario"]["duration"] == TOY_S


def test_the_example_campaign_checks_every_combination_before_running() -> None:
    camp = load_campaign(EXAMPLE)
    specs = validate_campaign(camp)  # builds the real emulator and the config of every capacity
    assert len(specs) == 3 * 3
    assert {s.overrides["power.battery.cell_capacity_ah"] for s in specs} == {0.35, 0.7, 1.2}
    assert all(s.scenario_data["scenario"]["duration"] == 7200 for s in specs)
    assert all(s.scenario_data["overrides"]["power.battery.cell_capacity_ah"] == s.overrides[
        "power.battery.cell_capacity_ah"] for s in specs)


# -- statistics ------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), list(NEWCOMBE_WILSON))
def test_wilson_interval_matches_newcombe_1998(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    want_lo, want_hi = NEWCOMBE_WILSON[(k, n)]
    assert lo == pytest.approx(want_lo, abs=NEWCOMBE_TOL)
    assert hi == pytest.approx(want_hi, abs=NEWCOMBE_TOL)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(0, 5)[0] == 0.0
    with pytest.raises(ValueError, match="k must be within"):
        wilson_interval(3, 2)


# -- running ---------------------------------------------------------------------------------
def test_pool_campaign_writes_rows_statistics_and_replayable_worst_runs(tmp_path: Path) -> None:
    camp = load_campaign(make_files(tmp_path))
    lines: list[str] = []
    res = run_campaign(camp, out_dir=tmp_path / "out", workers=2, model_factory=LampFactory(), status=lines.append)
    assert res.ran == 6 and len(res.rows) == 6 and len(lines) == 6
    # power 9: 10, 11, 12 W pass; power 10: 11, 12 pass and 13 W (seed 3) fails
    failing = [(r["overrides"]["lamp.power_w"], r["seed"]) for r in res.rows if not r["passed"]]
    assert failing == [(10.0, 3)]
    row = res.rows[5]
    energy, brownout = row["requirements"]
    assert energy["label"] == "energy budget" and not energy["passed"]
    assert energy["value"] == pytest.approx(13 * TOY_S)
    assert brownout["passed"] and brownout["value"] == 1.0  # the key figure of a passing 'always'
    assert row["failed"] == ["energy budget"] and row["error"] is None and row["attempts"] == 1
    # the JSONL has every row; the CSV a row per run with pass/value columns per requirement
    assert len((tmp_path / "out" / RESULTS_JSONL).read_text().splitlines()) == 6
    csv_lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and "energy budget [pass]" in csv_lines[0] and "lamp.power_w" in csv_lines[0]
    # Monte Carlo: P(fail) of the energy budget is 1/6 overall, 1/3 at 10 W, 0/3 at 9 W
    stats = {(s.requirement, s.key, s.value): (s.failed, s.runs) for s in res.stats}
    assert stats[("energy budget", "", None)] == (1, 6)
    assert stats[("energy budget", "lamp.power_w", 10.0)] == (1, 3)
    assert stats[("energy budget", "lamp.power_w", 9.0)] == (0, 3)
    assert stats[("run completes", "", None)] == (0, 6)
    one_in_six = next(s for s in res.summary["stats"] if s["requirement"] == "energy budget" and not s["key"])
    assert (one_in_six["ci_low"], one_in_six["ci_high"]) == wilson_interval(1, 6)
    # the worst run is named with a command that replays it exactly
    (worst,) = res.summary["worst"]
    assert worst["seed"] == 3 and worst["command"].startswith("flatsat test ") and worst["command"].endswith(
        "--seed 3")
    replay = load_scenario(worst["command"].split()[2])
    again = run_scenario_sync(replay, seed=3, model_factory=LampFactory())
    assert not again.passed and again.verdicts[0].value == energy["value"]
    for name in ("summary.md", "summary.json", "report.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "| lamp | energy budget | lamp.power_w = 10.0 | 1 / 3 | 33.3 % |" in \
        (tmp_path / "out" / "summary.md").read_text()


def test_resume_runs_only_what_is_missing_and_survives_a_torn_last_line(tmp_path: Path) -> None:
    camp = load_campaign(make_files(tmp_path))
    out = tmp_path / "out"
    first = run_campaign(camp, out_dir=out, workers=2, model_factory=LampFactory())
    jsonl = out / RESULTS_JSONL
    kept = jsonl.read_text().splitlines()[:2]
    jsonl.write_text("\n".join(kept) + "\n" + kept[0][:25])  # killed in the middle of a write
    with pytest.raises(ConfigError, match="pass --resume"):
        run_campaign(camp, out_dir=out, workers=2, model_factory=LampFactory())
    again = run_campaign(camp, out_dir=out, workers=2, model_factory=LampFactory(), resume=True)
    assert again.ran == 4
    assert comparable(again.rows) == comparable(first.rows)
    assert len(jsonl.read_text().splitlines()) == 6
    assert all(json.loads(line) for line in jsonl.read_text().splitlines())


def test_a_worker_that_dies_has_its_run_retried_on_a_fresh_pool(tmp_path: Path) -> None:
    camp = load_campaign(make_files(tmp_path))
    flag = tmp_path / "crashed-once"
    lines: list[str] = []
    res = run_campaign(camp, out_dir=tmp_path / "out", workers=2, status=lines.append,
                       model_factory=LampFactory(crash_seed=2, crash_flag=str(flag)))
    assert flag.exists()  # the worker did die
    assert any("a worker process died" in line for line in lines)
    assert len(res.rows) == 6 and all(r["error"] is None for r in res.rows)
    assert [r["seed"] for r in res.rows if r["attempts"] > 1] and \
        all(r["attempts"] <= 2 for r in res.rows)
    clean = run_campaign(camp, out_dir=tmp_path / "clean", workers=2, model_factory=LampFactory())
    assert [(r["key"], r["passed"], r["requirements"]) for r in res.rows] == \
        [(r["key"], r["passed"], r["requirements"]) for r in clean.rows]


def test_a_run_whose_worker_always_dies_is_given_up_after_its_retries(tmp_path: Path) -> None:
    camp = load_campaign(make_files(tmp_path, powers="[9.0]", seeds="[1, 2]"))
    res = run_campaign(camp, out_dir=tmp_path / "out", workers=1, model_factory=LampFactory(crash_seed=2))
    ok, dead = res.rows
    assert ok["passed"] and ok["seed"] == 1
    assert not dead["passed"] and dead["attempts"] == 2  # retries = 1
    assert "worker process died 2 time(s)" in dead["error"]
    assert res.summary["worst"][0]["seed"] == 2
    assert {(s.requirement, s.key): s.failed for s in res.stats}[("run completes", "")] == 1


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed not installed (pip install 'flatsat[cluster]')")
def test_pool_and_dask_give_identical_rows(tmp_path: Path) -> None:
    from distributed import LocalCluster

    camp = load_campaign(make_files(tmp_path))
    out = tmp_path / "out"  # the same directory, so the replay paths in the rows agree
    pool = run_campaign(camp, out_dir=out, workers=2, model_factory=LampFactory())
    out.rename(tmp_path / "pool")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask = run_campaign(camp, out_dir=out, scheduler=cluster.scheduler_address, model_factory=LampFactory())
    assert dask.ran == 6
    assert comparable(dask.rows) == comparable(pool.rows)
    assert dask.summary["stats"] == pool.summary["stats"]


# -- bad input: exit code 2, one clear message, no traceback ---------------------------------
def flatsat(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = emulator_cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_unknown_campaign_key_is_refused_with_the_valid_keys(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = make_files(tmp_path, extra="sedes = [4]")
    code, err = flatsat(["campaign", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "campaign.sedes: unknown key (did you mean 'seeds'?)" in err
    assert "valid keys here: board, description, name, record, retries, seeds" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("seeds", "problem"), [
    ("{ first = 1, count = -3 }", "campaign.seeds.count: Input should be greater than or equal to 1 (got -3)"),
    ("[1, -2]", "campaign.seeds[1]: Input should be greater than or equal to 0 (got -2)"),
    ("[]", "campaign.seeds: List should have at least 1 item after validation, not 0 (got [])"),  # was IndexError
    ("[3, 1, 3]", "campaign.seeds: a seed appears twice (3): the same run would count twice in the statistics"),
])
def test_bad_seeds_give_the_problem_of_the_form_used(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      seeds: str, problem: str) -> None:
    """seeds is a list or a range table: a bad table is not also told it is not a list (and the reverse)."""
    code, err = flatsat(["campaign", str(make_files(tmp_path, seeds=seeds)), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "(1 problem)" in err and problem in err


def real_campaign(tmp_path: Path, *sweeps: tuple[str, list[Any]]) -> Path:
    """A campaign of eclipse-depletion shortened to 10 min (model only), with these sweeps."""
    text = f"""
[campaign]
name = "real"
seeds = [1]
[[scenario]]
file = "{REPO / 'configs/scenarios/eclipse-depletion.toml'}"
duration = "10m"
"""
    for key, values in sweeps:
        text += f'[[sweep]]\nkey = "{key}"\nvalues = {json.dumps(values)}\n'
    path = tmp_path / "real.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_override_key_is_refused_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = real_campaign(tmp_path, ("power.battery.cell_capacity_ahh", [1.0, 2.0]))
    code, err = flatsat(["campaign", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "sweep[0].key: power.battery.cell_capacity_ahh: unknown key (did you mean 'cell_capacity_ah'?)" in err
    assert "valid keys here: cell_capacity_ah, cell_r_ohm," in err
    assert err.count("sweep[0].key") == 1  # one problem, not one per value
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("sweep", "where", "kind", "expected"), [
    (("power.battery.cell_capacity_ah", [1.0, -2.0]), "sweep[0].values", "value",
     "sweep[0].values: power.battery.cell_capacity_ah = -2.0: Input should be greater than 0"),
    (("power.rails.nosuchrail.max_retries", [1]), "sweep[0].key", "key",
     ("sweep[0].key: power.rails.nosuchrail.max_retries: no item named 'nosuchrail'; valid: obc_3v3, "
      "comms_5v, payload, heaters")),
    (("thermal.surfaces[99].area_m2", [0.1]), "sweep[0].key", "key",
     "sweep[0].key: thermal.surfaces[99].area_m2: index 99 out of range"),
    (("power.rails.payload.max_retries", [1, -1]), "sweep[0].values", "value",
     "sweep[0].values: power.rails.payload.max_retries = -1: Input should be greater than or equal to 0 (got -1)"),
    (("sim.seed", [1, 2]), "sweep[0].key", "key", "sweep[0].key: 'sim.seed' is set by the scenario or the runner"),
])
def test_bad_override_values_and_list_items_are_located(tmp_path: Path, sweep: tuple[str, list[Any]], where: str,
                                                        kind: str, expected: str) -> None:
    with pytest.raises(CampaignError) as info:
        validate_campaign(load_campaign(real_campaign(tmp_path, sweep)))
    assert expected in str(info.value)
    # located from the structured problems (path, override, kind), not from the message text
    assert [(p.path, p.kind) for p in info.value.problems] == [(where, kind)]
    assert info.value.problems[0].override == sweep[0]


def test_a_list_item_sweep_by_index_is_accepted(tmp_path: Path) -> None:
    camp = load_campaign(real_campaign(tmp_path, ("thermal.surfaces[2].area_m2", [0.05, 0.1])))
    assert len(validate_campaign(camp)) == 2


def test_a_sweep_by_item_name_and_by_index_reaches_every_run(tmp_path: Path) -> None:
    from hil.runner import ScenarioRun

    camp = load_campaign(real_campaign(tmp_path, ("power.rails.payload.max_retries", [0, 2]),
                                       ("thermal.nodes[0].initial_temp_degc", [5.0])))
    runs = validate_campaign(camp)
    assert [r.overrides for r in runs] == [
        {"power.rails.payload.max_retries": 0, "thermal.nodes[0].initial_temp_degc": 5.0},
        {"power.rails.payload.max_retries": 2, "thermal.nodes[0].initial_temp_degc": 5.0}]
    for run, retries in zip(runs, (0, 2), strict=True):
        sc = scenario_from_dict(run.scenario_data, source=run.scenario_file, base_dir=Path(run.base_dir))
        cfg = ScenarioRun(sc, seed=run.seed).emu.model.config
        assert {r.name: r.max_retries for r in cfg.power.rails}["payload"] == retries
        assert cfg.thermal.nodes[0].initial_temp_degc == 5.0


def test_missing_scenario_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[campaign]\nname = "x"\nseeds = [1]\n[[scenario]]\nfile = "eclipse-depletoin.toml"\n')
    code, err = flatsat(["campaign", str(path)], capsys)
    assert code == 2
    assert "scenario[0].file: scenario file 'eclipse-depletoin.toml' not found" in err
    assert "did you mean 'eclipse-depletion.toml'?" in err


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed not installed (pip install 'flatsat[cluster]')")
def test_unreachable_scheduler_is_a_clear_error_before_any_run(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = real_campaign(tmp_path, ("power.battery.cell_capacity_ah", [1.0]))
    code, err = flatsat(["campaign", str(path), "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout",
                         "0.5", "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert f"cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}' within 0.5 s" in err
    assert not (tmp_path / "out" / RESULTS_JSONL).exists()


def test_a_failing_campaign_without_a_board_says_nobody_gave_the_accelerator_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """latchup asks for work after the latch-up; with no board nobody submits any: the failure says why, as
    flatsat test's summary does ('no board connected')."""
    path = tmp_path / "c.toml"
    path.write_text('[campaign]\nname = "nb"\nseeds = [1]\n[[scenario]]\nfile = "latchup.toml"\n')
    code, err = flatsat(["campaign", str(path), "--workers", "1", "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 1
    assert "no board ([campaign] board or --board): nobody gave the accelerator work in any run" in err


def test_an_interrupted_campaign_says_what_it_kept_and_how_to_go_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from hil.campaign import cli as campaign_cli

    def interrupted(campaign: Any, *, out_dir: Path, **kw: Any) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.jsonl").write_text('{"key": 1}\n{"key": 2}\n', encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(campaign_cli, "run_campaign", interrupted)
    code, err = flatsat(["campaign", str(make_files(tmp_path)), "--out", str(tmp_path / "out")], capsys)
    assert code == 130
    assert (f"flatsat campaign: interrupted after 2 finished runs, kept in {tmp_path / 'out' / 'results.jsonl'}; the "
            "same command with --resume runs the rest") in err


def test_each_failing_run_gets_its_own_replay_file(tmp_path: Path) -> None:
    """Runs of one scenario and sweep value with different seeds shared one replay file, whose header and seed
    were the last run's: a file that reproduced another run than the row it was named in."""
    from hil.campaign.report import write_replay_scenario
    from hil.campaign.spec import RunSpec

    data = {"scenario": {"name": "s", "duration": "1h"}}
    paths = [write_replay_scenario(RunSpec(index=i, key=str(i), scenario="s", scenario_file="s.toml", seed=seed,
                                           overrides={"power.battery.cell_capacity_ah": 0.35}, scenario_data=data,
                                           base_dir="."), tmp_path) for i, seed in enumerate([1, 2])]
    assert [p.name for p in paths] == ["s-cell_capacity_ah_0.35-seed1.toml", "s-cell_capacity_ah_0.35-seed2.toml"]
    for path, seed in zip(paths, [1, 2], strict=True):
        text = path.read_text()
        assert f"(seed {seed})" in text.splitlines()[0] and f"seed = {seed}" in text

"""The cluster is a first-class run: ``flatsat run``, ``flatsat test`` and ``flatsat campaign`` take a cluster config
through the one config loader (the model kind picked from the config) and the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import cli as emulator_cli
from emulator.config import load_config
from emulator.errors import ConfigError
from emulator.recorder import read_recording
from hil.campaign import load_campaign, run_campaign, validate_campaign
from hil.runner import ScenarioRun
from hil.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "configs" / "suncatcher-cluster.toml"


def truths(path: Path) -> list[dict]:
    return [r.message.payload for r in read_recording(path) if r.message.topic == "truth.sample"]


@pytest.mark.parametrize("config", ["suncatcher-cluster", str(CLUSTER)], ids=["by-name", "by-path"])
def test_flatsat_run_runs_the_81_member_cluster(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "cluster.rec"
    code = emulator_cli.main(["run", "--config", config, "--duration", "60", "--quiet", "--board-url", "none",
                              "--control-url", "none", "--record", str(rec), "--truth-rate", "0.1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "unknown key" not in err
    samples = truths(rec)
    assert len(samples) >= 2
    last = samples[-1]
    assert last["n"] == 81 and len(last["power"]["soc"]) == 81 and last["names"][40] == "suncatcher-40"
    assert last["t_ns"] == 60 * 10**9


def test_a_cluster_run_summary_and_plot_show_the_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The summary of a fleet gives each signal's fleet mean and its members' extremes (the single satellite's
    summary keys matched nothing on per-member lists: the table was empty), and the plot is drawn."""
    plot = tmp_path / "cluster.png"
    code = emulator_cli.main(["run", "--config", str(CLUSTER), "--duration", "600", "--board-url", "none",
                              "--control-url", "none", "--plot", str(plot), "--set", "cluster.formation.disc_radius=1",
                              "--set", "cluster.bind.members=[]", "--set", "power.battery.initial_soc=0.6"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "fleet of 5" in err
    rows = {line.split("│")[1].strip(): line for line in err.splitlines() if line.count("│") == 6}
    assert {"power.soc", "power.bus_v", "thermal.temps_degc.battery", "environment.sunlit_frac"} <= set(rows)
    soc_min, soc_mean, soc_max, soc_end = (float(x) for x in rows["power.soc"].split("│")[2:6])
    assert 0.59 < soc_min <= soc_mean <= soc_max < 0.7 and soc_min <= soc_end <= soc_max
    assert plot.stat().st_size > 10_000


def test_flatsat_run_takes_dotted_overrides_into_the_cluster(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "small.rec"
    code = emulator_cli.main(["run", "--config", str(CLUSTER), "--duration", "20", "--quiet", "--board-url", "none",
                              "--control-url", "none", "--record", str(rec), "--truth-rate", "0.1",
                              "--set", "cluster.formation.disc_radius=1", "--set", "cluster.bind.members=[]",
                              "--set", "power.battery.initial_soc=0.6"])
    assert code == 0, capsys.readouterr().err
    last = truths(rec)[-1]
    assert last["n"] == 5 and last["bound"] == []
    assert all(0.55 < soc < 0.65 for soc in last["power"]["soc"])


def test_the_loader_picks_the_model_kind_from_the_config() -> None:
    sat = load_config("suncatcher-proto")
    cluster = load_config("suncatcher-cluster")
    assert (sat.kind, cluster.kind) == ("satellite", "cluster")
    assert type(sat.build_model()).__name__ == "Satellite"
    model = cluster.build_model()
    assert type(model).__name__ == "ClusterModel" and model.n == 81
    # a cluster key in a satellite config is named as what it is
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {"cluster.formation.disc_radiu": 2})
    assert exc.value.problems[0].path == "cluster.formation.disc_radiu"
    assert exc.value.problems[0].override == "cluster.formation.disc_radiu"
    assert "disc_radius" in exc.value.problems[0].message


def test_flatsat_test_takes_a_cluster_scenario_and_refuses_a_board_with_nothing_to_drive() -> None:
    sc = load_scenario(ROOT / "configs" / "scenarios" / "cluster-rail-short.toml")
    run = ScenarioRun(sc)
    assert type(run.emu.model).__name__ == "ClusterModel" and run.emu.model.n == 81
    with pytest.raises(ScenarioError) as exc:
        ScenarioRun(sc, board_url="zmq+tcp://127.0.0.1:0")
    assert exc.value.problems[0].path == "board" and "nothing to drive" in exc.value.problems[0].message


SHORT_SCENARIO = """
[scenario]
name = "cluster-short-small"
config = "suncatcher-cluster"
duration = "3m"

[overrides]
"cluster.bind.members" = []
"cluster.formation.disc_radius" = 2
"telemetry.truth_rate_hz" = 0.1

[[timeline]]
at = "1m"
do = "fault"
name = "eps.rail.short"
params = { sat = 3, rail = "payload", extra_a = 65.0 }
duration = "10s"

[[requirement]]
kind = "final"
signal = "satellite.power.rail_trips.payload.3"
op = ">="
value = 4

[[requirement]]
kind = "final"
signal = "satellite.power.rail_trips.payload.4"
op = "=="
value = 0
"""


@pytest.mark.timeout(300)
def test_flatsat_campaign_sweeps_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "short.toml").write_text(SHORT_SCENARIO, encoding="utf-8")
    (tmp_path / "camp.toml").write_text("""
[campaign]
name = "cluster-policy"
seeds = [1]
[[scenario]]
file = "short.toml"
[[sweep]]
key = "cluster.members"
values = [[], [{ member = 3, overrides = { "power.arrays.wings.degradation" = 0.9 } }]]
[[sweep]]
key = "cluster.policy.period_s"
values = [5.0, 20.0]
""", encoding="utf-8")
    camp = load_campaign(tmp_path / "camp.toml")
    assert len(validate_campaign(camp)) == 4
    res = run_campaign(camp, out_dir=tmp_path / "out", workers=1)
    assert res.ran == 4 and all(r["error"] is None for r in res.rows), [r["error"] for r in res.rows]
    assert res.passed, [r["failed"] for r in res.rows]


def test_a_bad_cluster_sweep_value_is_located_before_any_run(tmp_path: Path) -> None:
    (tmp_path / "short.toml").write_text(SHORT_SCENARIO, encoding="utf-8")
    (tmp_path / "camp.toml").write_text("""
[campaign]
name = "bad"
seeds = [1]
[[scenario]]
file = "short.toml"
[[sweep]]
key = "cluster.policy.period_s"
values = [5.0, -1.0]
""", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        validate_campaign(load_campaign(tmp_path / "camp.toml"))
    (p,) = exc.value.problems
    assert (p.path, p.override, p.kind) == ("sweep[0].values", "cluster.policy.period_s", "value")
    assert "cluster.policy.period_s = -1.0: Input should be greater than 0" in p.message

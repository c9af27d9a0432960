"""``flatsat orbit``: options, JSON records, tables, plot, and bad input (exit code 2, no traceback)."""

from __future__ import annotations

import argparse
import json

import pytest

from emulator import orbit_report

ISS_TLE = ("1 25544U 98067A   14020.93268519  .00009878  00000-0  18200-3 0  5082",
           "2 25544  51.6498 109.4756 0003572  55.9686 274.8005 15.49815350868473")
DAWN_DUSK_JUNE = ["--alt-km", "650", "--ltan", "18:00", "--start", "2026-06-21T00:00:00Z"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flatsat orbit")
    orbit_report.add_arguments(parser)
    return orbit_report.run(parser.parse_args(argv))


def records(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict]:
    assert run([*argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_records_for_a_dawn_dusk_day_in_june(capsys: pytest.CaptureFixture[str]) -> None:
    recs = records(capsys, [*DAWN_DUSK_JUNE, "--duration", "1d"])
    kinds = [r["type"] for r in recs]
    assert kinds[-1] == "summary" and kinds.count("summary") == 1
    ecl = [r for r in recs if r["type"] == "eclipse"]
    orbits = [r for r in recs if r["type"] == "orbit"]
    assert 14 <= len(ecl) <= 16 and 13 <= len(orbits) <= 15
    full = [e for e in ecl if e["complete"]]
    for e in full:
        keys = ("penumbra_entry_utc", "entry_utc", "umbra_entry_utc", "umbra_exit_utc", "exit_utc",
                "penumbra_exit_utc")
        times = [e[k] for k in keys]
        assert all(t.endswith("Z") for t in times) and times == sorted(times)
        assert 18.5 * 60 <= e["duration_s"] <= 21.5 * 60  # physics-sources.md §4: ~20 min
    for o in orbits:
        assert o["period_s"] == pytest.approx(5871.0, abs=5.0)  # nodal period at 650 km
        assert o["beta_deg"] == pytest.approx(58.6, abs=0.3)  # physics-sources.md §4
        assert o["eclipse_s"] == pytest.approx(full[0]["duration_s"], abs=5.0)
    s = recs[-1]
    assert s["kind"] == "sso" and s["inc_deg"] == pytest.approx(97.99, abs=0.01)
    assert s["ltan_h"] == pytest.approx(18.0, abs=1e-3)
    assert s["eclipse_min_per_day"] == pytest.approx(sum(e["duration_s"] for e in ecl) / 60.0, abs=2e-3)  # rounded
    assert s["eclipse_free_beta_deg"] == pytest.approx(65.2, abs=0.05)
    assert s["saa_passes"] >= 3 and s["passes"] == s["saa_passes"]
    assert 650.0 <= s["alt_min_km"] < s["alt_max_km"] <= 672.0


def test_december_is_eclipse_free(capsys: pytest.CaptureFixture[str]) -> None:
    recs = records(capsys, ["--alt-km", "650", "--ltan", "18:00", "--start", "2026-12-21T00:00:00Z",
                            "--duration", "12h"])
    assert not [r for r in recs if r["type"] == "eclipse"]
    s = recs[-1]
    assert s["eclipse_min_per_day"] == 0.0 and s["sunlit_fraction"] == 1.0
    assert s["beta_min_deg"] == pytest.approx(74.6, abs=0.3)


def test_tle_defaults_to_its_epoch_and_elements_work(capsys: pytest.CaptureFixture[str]) -> None:
    recs = records(capsys, ["--tle", *ISS_TLE, "--duration", "3h"])
    s = recs[-1]
    assert s["kind"] == "tle" and s["start_utc"] == s["tle_epoch_utc"] == "2014-01-20T22:23:04.000Z"
    assert s["inc_deg"] == pytest.approx(51.65, abs=0.01)
    recs = records(capsys, ["--alt-km", "500", "--inc-deg", "53", "--raan-deg", "10", "--ecc", "0.001",
                            "--argp-deg", "90", "--ma-deg", "0", "--start", "2026-03-01T00:00:00Z",
                            "--duration", "90m", "--step", "5"])
    assert recs[-1]["kind"] == "elements" and recs[-1]["duration_s"] == 5400.0


def test_tables_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    png = tmp_path / "orbit.png"  # type: ignore[operator]
    assert run([*DAWN_DUSK_JUNE, "--duration", "6h", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Eclipses" in out and "Orbits" in out and "Summary" in out and "97.986 deg" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize(("argv", "words"), [
    (["--tle", ISS_TLE[0][:68] + "0", ISS_TLE[1]], "--tle LINE1: bad checksum"),
    (["--tle", ISS_TLE[0] + " 99", ISS_TLE[1]], "69 columns"),
    (["--alt-km", "120", "--ltan", "18:00"], "--alt-km: altitude must be in"),
    (["--alt-km", "500", "--inc-deg", "50", "--raan-deg", "0", "--ecc", "0.6"], "perigee"),
    (["--alt-km", "500", "--inc-deg", "50", "--raan-deg", "0", "--ecc", "1.2"], "ecc"),
    (["--alt-km", "650"], "--inc-deg: missing for an elements orbit; give one of: --tle LINE1 LINE2 (TLE)"),
    ([], "no orbit given"),
    ([*DAWN_DUSK_JUNE[:4], "--start", "1950-01-01T00:00:00Z"], "start: 1950-01-01"),
    ([*DAWN_DUSK_JUNE[:4], "--start", "2101-01-01T00:00:00Z"], "outside the supported range"),
    ([*DAWN_DUSK_JUNE[:4], "--start", "yesterday"], "start: bad UTC time"),
    ([*DAWN_DUSK_JUNE, "--duration", "a while"], "duration: bad duration"),
    ([*DAWN_DUSK_JUNE, "--duration", "1000d"], "duration: at most"),
    ([*DAWN_DUSK_JUNE, "--step", "0"], "step: must be in"),
    ([*DAWN_DUSK_JUNE[:4], "--start", "2099-12-31T00:00:00Z", "--duration", "2d"], "after the supported range"),
])
def test_bad_input_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                words: str) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("flatsat orbit: error: ") and words in err and "Traceback" not in err


def test_unwritable_plot_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    """Refused before the report is computed; missing folders are made (as for every command's outputs)."""
    (tmp_path / "afile").write_text("x")  # type: ignore[operator]
    bad = tmp_path / "afile" / "x.png"  # type: ignore[operator]
    assert run([*DAWN_DUSK_JUNE, "--duration", "1h", "--plot", str(bad)]) == 2
    assert f"--plot {bad}: cannot be written" in capsys.readouterr().err
    made = tmp_path / "no" / "such" / "dir" / "x.png"  # type: ignore[operator]
    assert run([*DAWN_DUSK_JUNE, "--duration", "1h", "--plot", str(made)]) == 0
    assert made.stat().st_size > 0

"""One reference policy: the Python reference board, the cluster's built-in policy and the C stub (through its
generated header) all take their numbers from ``emulator.reference_policy``."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from emulator.models.cluster import PolicyConfig
from emulator.reference_policy import REFERENCE, ReferencePolicy
from firmware_stubs.policy_header import HEADER_NAME, c_value, render
from firmware_stubs.reference import ReferenceController

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_stubs" / "c"
REGENERATE = f"python -m firmware_stubs.policy_header > firmware_stubs/c/{HEADER_NAME}"


def test_the_c_stubs_header_is_generated_from_the_policy() -> None:
    committed = (C_DIR / HEADER_NAME).read_text(encoding="utf-8")
    assert committed == render(), f"firmware_stubs/c/{HEADER_NAME} is out of step with the policy: run {REGENERATE}"


def test_a_changed_policy_changes_the_header() -> None:
    """The check above can fail: every number is in the header, so changing any one changes it."""
    base = render()
    for f in dataclasses.fields(REFERENCE):
        value = getattr(REFERENCE, f.name)
        other = (*value, "extra") if isinstance(value, tuple) else value + "x" if isinstance(value, str) else value + 1
        changed = render(dataclasses.replace(REFERENCE, **{f.name: other}))
        assert changed != base, f.name
        assert f"FSB_POLICY_{f.name.upper()} {c_value(other)}" in changed


def test_c_literals() -> None:
    assert c_value(10.0) == "10.0" and c_value(0.3) == "0.3" and c_value(1e-5) == "1e-05" and c_value(2) == "2"
    assert c_value("payload") == '"payload"' and c_value(("a", "b")) == '{"a", "b"}'
    with pytest.raises(TypeError):
        c_value(True)


def test_the_python_reference_board_reads_the_policy() -> None:
    board = ReferenceController()
    for name in ("period_s", "rail", "levels", "soc_off", "soc_on", "soc_low", "soc_eclipse", "temp_high_degc",
                 "temp_low_degc", "temp_restart_degc", "queue_target", "job_size"):
        assert getattr(board, name) == getattr(REFERENCE, name), name
    assert board.level == REFERENCE.start_level


def test_the_clusters_built_in_policy_reads_the_policy() -> None:
    p = PolicyConfig()
    assert (p.period_s, p.shed_below_soc, p.resume_above_soc, p.low_power_below_soc, p.hot_degc, p.cool_degc,
            p.restart_below_degc) == (REFERENCE.period_s, REFERENCE.soc_off, REFERENCE.soc_on, REFERENCE.soc_low,
                                      REFERENCE.temp_high_degc, REFERENCE.temp_low_degc, REFERENCE.temp_restart_degc)


def test_the_policy_is_consistent() -> None:
    r = REFERENCE
    assert isinstance(r, ReferencePolicy)
    assert r.soc_off < r.soc_low < r.soc_on and r.bus_off_v < r.bus_on_v
    assert r.temp_low_degc < r.temp_restart_degc < r.temp_high_degc
    assert r.start_level in r.levels and r.period_s > 0 and r.queue_target >= 1 and r.job_size >= 1


C_PROBE = r"""
#include <stdio.h>
#include "flatsat_board.h"

static fsb_board board;

static uint32_t no_time(void *ctx)
{
    (void)ctx;
    return 0;
}

int main(void)
{
    fsb_config c;
    fsb_io io = {0};
    unsigned i;
    io.millis = no_time; /* the core's one required clock */
    fsb_config_default(&c);
    fsb_board_init(&board, &c, &io);
    printf("{\"period_s\": %.17g, \"rail\": \"%s\", \"start_level\": \"%s\", \"soc_off\": %.17g, \"soc_on\": %.17g, "
           "\"soc_low\": %.17g, \"soc_eclipse\": %.17g, \"temp_high_degc\": %.17g, \"temp_low_degc\": %.17g, "
           "\"temp_restart_degc\": %.17g, \"queue_target\": %d, \"job_size\": %d, \"bus_off_v\": %.17g, "
           "\"bus_on_v\": %.17g, \"levels\": [",
           c.period_s, c.rail, board.want_level, c.soc_off, c.soc_on, c.soc_low, c.soc_eclipse, c.temp_high_degc,
           c.temp_low_degc, c.temp_restart_degc, (int)c.queue_target, (int)c.job_size, c.bus_off_v, c.bus_on_v);
    for (i = 0; i < board.n_levels; i++) {
        printf("%s\"%s\"", i ? ", " : "", board.levels[i]);
    }
    printf("]}\n");
    return 0;
}
"""


def test_the_c_stub_takes_every_number_from_the_header(tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: `cc` is not on PATH (apt-get install -y gcc)")
    (tmp_path / "probe.c").write_text(C_PROBE, encoding="utf-8")
    exe = tmp_path / "probe"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(C_DIR), "-o", str(exe),
                    str(tmp_path / "probe.c"), str(C_DIR / "flatsat_board.c"), str(C_DIR / "fsb_jobcheck.c")], check=True, capture_output=True)
    got = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    want = {**dataclasses.asdict(REFERENCE), "levels": list(REFERENCE.levels)}
    assert got == want

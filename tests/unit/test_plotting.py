"""The run plot: a failed requirement's mark keeps the figure's layout whatever its label's length."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from emulator.plotting import MARK_LABEL_CHARS, plot_run
from emulator.series import Series


def test_a_long_requirement_label_leaves_the_layout_applied(tmp_path: Path) -> None:
    """hot-case with the naive board: matplotlib warned "Tight layout not applied" and drew a crowded report."""
    series = Series()
    for t in range(0, 3600, 60):
        series.append(t * 1_000_000_000, {"satellite.power.bus_v": 30.0 + np.sin(t / 600.0),
                                          "satellite.thermal.temps_degc.battery": 20.0 + t / 600.0})
    label = "max satellite.thermal.temps_degc.accel_die <= 95 (the die must stay below its throttle point) " * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any layout warning fails the test
        path = plot_run(series, tmp_path / "run.png", marks=[(1800.0, label), (2400.0, label)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert MARK_LABEL_CHARS <= 60

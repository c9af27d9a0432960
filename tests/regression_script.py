"""The physics regression script, shared by the pins (``tests/physics/test_satellite_regression.py``) and the twin
tests (``tests/physics/test_twins.py``): a scripted stand-in for the orbit environment (closed form, no propagator: a
nadir-pointing orbit of ORBIT_S seconds in which the Sun turns about the body's Y axis, with a long eclipse, body-face
and tracking flux, albedo, Earth IR and a dose-rate bump like the SAA) and one orbit of commands and faults through it
(jobs, DVFS, a radiation storm, a rail short with trips, retries, latch and reset, a forced heater, a string failure, a
cell loss, squeezed shed thresholds, telemetry sampled every 10 s), on frozen copies of the shipped configs
(``tests/physics/data/regression-*.toml``)."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emulator.models.satellite import Satellite, SatelliteConfig

NS = 1_000_000_000
DATA = Path(__file__).resolve().parent / "physics" / "data"

ORBIT_S = 5862  # one orbit at 650 km (configs/suncatcher-proto.toml [sim].duration_s)
SOLAR_W_M2 = 1361.0
ECLIPSE_PHASE = (0.35, 0.72)  # a long (36 min) eclipse, to stress the pack
SAA_PHASE = (0.10, 0.14)      # dose rate x 30
DOSE_RAD_S = 4.75e-6          # ~150 rad/yr behind 10 mm Al (physics-sources.md §1)


@dataclass(frozen=True)
class ScriptedChunk:
    face_solar_w_m2: np.ndarray
    face_albedo_w_m2: np.ndarray
    face_ir_w_m2: np.ndarray
    tracking_solar_w_m2: np.ndarray
    dose_rate_rad_s: np.ndarray
    rad_flux_factor: np.ndarray

    def __len__(self) -> int:
        return len(self.tracking_solar_w_m2)


class ScriptedEnvironment:
    """A nadir-pointing orbit of ORBIT_S seconds in closed form: the Sun turns about the body's Y axis. ``sun_scale``
    scales the solar flux (a second satellite in a different light)."""

    def __init__(self, sun_scale: float = 1.0) -> None:
        self.sun_scale = sun_scale

    def chunk(self, t0_ns: int, dt_ns: int, n: int) -> ScriptedChunk:
        t_s = (t0_ns + dt_ns * np.arange(n, dtype=np.int64)) * 1e-9
        phase = (t_s % ORBIT_S) / ORBIT_S
        sunlit = ((phase < ECLIPSE_PHASE[0]) | (phase >= ECLIPSE_PHASE[1])).astype(float)
        theta = 2.0 * np.pi * phase
        sun = np.stack([np.cos(theta), np.full(n, 0.3), np.sin(theta)], axis=1)
        sun /= np.linalg.norm(sun, axis=1)[:, None]
        normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
        s = SOLAR_W_M2 * self.sun_scale
        face = s * sunlit[:, None] * np.maximum(sun @ normals.T, 0.0)
        albedo = np.zeros((n, 6))
        albedo[:, 4] = 0.3 * s * 0.5 * sunlit * np.maximum(np.cos(theta), 0.0)
        ir = np.zeros((n, 6))
        ir[:, 4] = 0.9 * 237.0
        saa = (phase >= SAA_PHASE[0]) & (phase < SAA_PHASE[1])
        flux = np.where(saa, 30.0, 1.0)
        return ScriptedChunk(face, albedo, ir, s * sunlit, DOSE_RAD_S * flux, flux)


#: shed thresholds per cell that sit just under a full pack (pack volts = x cells_series)
SQUEEZED_PER_CELL_V = {"safe_v": 4.1625, "normal_v": 4.175, "full_v": 4.1875}


def regression_satellite(name: str, seed: int) -> Satellite:
    raw = tomllib.loads((DATA / f"regression-{name}.toml").read_text(encoding="utf-8"))
    sim = raw.pop("sim")
    raw.pop("links")
    return Satellite(SatelliteConfig.model_validate(raw), epoch_utc=dt.datetime.fromisoformat(sim["epoch_utc"]),
                     seed=seed, step_s=sim["step_s"], environment=ScriptedEnvironment())


def scenario(name: str, seed: int = 7, prepare: Callable[[Satellite], None] | None = None) -> dict[str, Any]:
    """Run one scripted orbit; return a flat map of end-state values. ``prepare`` sees the satellite before the first
    step (the twin tests put their side-by-side forms in)."""
    sat = regression_satellite(name, seed)
    if prepare is not None:
        prepare(sat)
    iface = sat.interface()
    cmds = {c.spec.topic: c for c in iface.commands}
    faults = {f.name: f for f in iface.faults}
    tele = {t.spec.topic: t for t in iface.telemetry}
    cfg = sat.config
    heater = cfg.thermal.heaters[-1].name
    array = cfg.power.arrays[0].name
    ns = cfg.power.battery.cells_series
    original = cfg.power.shed.resolved(ns)

    def cmd(topic: str, **kw: Any) -> Any:
        c = cmds[topic]
        return c.handle(c.spec.schema(**kw))

    def fault(name_: str, clear: bool = False, **kw: Any) -> None:
        f = faults[name_]
        p = f.params(**kw)
        (f.clear if clear else f.inject)(p)

    events: Counter[str] = Counter()
    last: dict[str, Any] = {}
    scale = 2e4
    for k in range(ORBIT_S):
        if k == 40:
            cmd("accel.dvfs.set", level="max")
            cmd("accel.job.submit", kind="inference", size=20000)
            cmd("accel.job.submit", kind="training", size=400)
            cmd("accel.job.submit", kind="inference", size=5, seed=99)
        elif k == 200:
            fault("radiation.scale", factor=scale)
        elif k == 1200:
            fault("radiation.scale", clear=True, factor=scale)
            if sat.accel.state.value == "hung":
                cmd("accel.reset")
        elif k == 1300 and sat.accel.state.value in ("idle", "busy", "throttled"):
            cmd("accel.job.submit", kind="training", size=1500)
        elif k == 3000:
            fault("eps.rail.short", rail="comms_5v", extra_a=10.0)
        elif k == 3020:
            fault("eps.rail.short", clear=True, rail="comms_5v", extra_a=10.0)
        elif k == 3030:
            cmd("eps.rail.reset", rail="comms_5v")
        elif k == 3500:
            cmd("thermal.heater.set", heater=heater, mode="on")
        elif k == 4000:
            cmd("thermal.heater.set", heater=heater, mode="auto")
        elif k == 4500:
            fault("eps.array.string_fail", array=array, strings=3)
        elif k == 5000:
            fault("eps.battery.cell_loss", group=0, mode="open")
            # squeeze the shed thresholds under the pack voltage: full -> normal -> safe sheds the payload
            cmd("eps.shed.set", **{key: v * ns for key, v in SQUEEZED_PER_CELL_V.items()})
        elif k == 5600:
            cmd("eps.shed.set", **original)
        sat.step(k * NS, NS)
        for topic, _ in sat.drain_events():
            events[topic] += 1
        if k % 10 == 0:
            for topic, t in tele.items():
                last[topic] = t.sample()
    pw, th, acc = sat.power, sat.thermal, sat.accel
    out: dict[str, Any] = {
        "soc": pw.soc, "bus_v": pw.bus_v, "battery_a": pw.battery_a, "ocv_v": pw.ocv_v, "mode": pw.mode,
        "array_total_w": pw.array_total_w, "shunt_w": pw.shunt_w, "stored_j": pw.stored_j(),
        "jobs_done": acc.jobs_done, "jobs_failed": acc.jobs_failed, "units_done": acc.units_done,
        "accel_state": acc.state.value, "accel_load_w": acc.load_w, "dose_rad": acc.rad.dose_rad,
        "exposure_rad": acc.exposure_rad, "accel_events": sum(acc._kind_counts.values()),
    }
    for key, v in pw.ledger.as_dict().items():
        out[f"ledger.{key}"] = v
    for name_, t in zip(th.names, th.T.tolist(), strict=True):
        out[f"T.{name_}"] = t
    for r in pw.rails:
        out[f"rail.{r.name}.trips"] = r.trips
        out[f"rail.{r.name}.on"] = r.on
        out[f"rail.{r.name}.p_in"] = r.p_in
    for topic, n in sorted(events.items()):
        out[f"events.{topic}"] = n
    eps = last["eps.telemetry"]
    for key in ("bus_v", "battery_a", "soc_est", "array_w"):
        out[f"tm.eps.{key}"] = eps[key]
    for node, v in last["thermal.telemetry"]["temps_degc"].items():
        out[f"tm.thermal.{node}"] = v
    out["tm.sun"] = last["adcs.sun"]["sun_w_m2"]
    return out



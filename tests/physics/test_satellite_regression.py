"""Equivalence pin for the satellite step: a fixed seed and a scripted orbit (jobs, DVFS, radiation storm, rail short
and reset, forced heater, string failure, cell loss, squeezed shed thresholds, telemetry sampling) end in the exact
state the reference implementation produced before the step was optimised (commit 3435f72). Any change to the
physics of the satellite's own models (power, thermal, accelerator, radiation, sensors, the glue) moves these numbers.
One deliberate change since: the battery's second pass takes the exact mean OCV when a step crosses an OCV-table
breakpoint, and a third pass after an over-current shed (the ledger closes to round-off); it moved the cubesat's
stored energy and battery loss by 1e-9 relative, and those two values were re-pinned.

The inputs are frozen so that nothing else can move them: the configs are copies of the shipped ones at that commit
(``data/regression-*.toml``) and the environment is a scripted stand-in (eclipse, body-face and tracking flux,
albedo, Earth IR, a dose-rate bump like the SAA) instead of the orbit propagator."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emulator.models.satellite import Satellite, SatelliteConfig

NS = 1_000_000_000
DATA = Path(__file__).resolve().parent / "data"
ORBIT_S = 5862  # one orbit at 650 km (configs/suncatcher-proto.toml [sim].duration_s)
#: relative tolerance of a pinned float: round-off only (the reference run agrees to ~1e-11 relative)
REL_TOL = 1e-9
#: absolute floor for pinned values that sit near zero (W, A, K, ...)
ABS_TOL = 1e-9
#: shed thresholds per cell that sit just under a full pack (pack volts = x cells_series)
SQUEEZED_PER_CELL_V = {"safe_v": 4.1625, "normal_v": 4.175, "full_v": 4.1875}
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
    """A nadir-pointing orbit of ORBIT_S seconds in closed form: the Sun turns about the body's Y axis."""

    def chunk(self, t0_ns: int, dt_ns: int, n: int) -> ScriptedChunk:
        t_s = (t0_ns + dt_ns * np.arange(n, dtype=np.int64)) * 1e-9
        phase = (t_s % ORBIT_S) / ORBIT_S
        sunlit = ((phase < ECLIPSE_PHASE[0]) | (phase >= ECLIPSE_PHASE[1])).astype(float)
        theta = 2.0 * np.pi * phase
        sun = np.stack([np.cos(theta), np.full(n, 0.3), np.sin(theta)], axis=1)
        sun /= np.linalg.norm(sun, axis=1)[:, None]
        normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
        face = SOLAR_W_M2 * sunlit[:, None] * np.maximum(sun @ normals.T, 0.0)
        albedo = np.zeros((n, 6))
        albedo[:, 4] = 0.3 * SOLAR_W_M2 * 0.5 * sunlit * np.maximum(np.cos(theta), 0.0)
        ir = np.zeros((n, 6))
        ir[:, 4] = 0.9 * 237.0
        saa = (phase >= SAA_PHASE[0]) & (phase < SAA_PHASE[1])
        flux = np.where(saa, 30.0, 1.0)
        return ScriptedChunk(face, albedo, ir, SOLAR_W_M2 * sunlit, DOSE_RAD_S * flux, flux)


def _sat(name: str, seed: int) -> Satellite:
    raw = tomllib.loads((DATA / f"regression-{name}.toml").read_text(encoding="utf-8"))
    sim = raw.pop("sim")
    raw.pop("links")
    return Satellite(SatelliteConfig.model_validate(raw), epoch_utc=dt.datetime.fromisoformat(sim["epoch_utc"]),
                     seed=seed, step_s=sim["step_s"], environment=ScriptedEnvironment())


def scenario(name: str, seed: int = 7) -> dict[str, Any]:
    """Run one scripted orbit; return a flat map of end-state values."""
    sat = _sat(name, seed)
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


#: captured from the reference implementation (commit 3435f72) with scenario(name)
EXPECTED: dict[str, dict[str, Any]] = {'suncatcher-proto': {'soc': 0.6930049329766051,
                      'bus_v': 31.564665450254573,
                      'battery_a': 10.5,
                      'ocv_v': 31.07478712660583,
                      'mode': 3,
                      'array_total_w': 1271.3452703759822,
                      'shunt_w': 788.0520028474187,
                      'stored_j': 1515664.3390544227,
                      'jobs_done': 2,
                      'jobs_failed': 2,
                      'units_done': 20005,
                      'accel_state': 'idle',
                      'accel_load_w': 50.79893227055454,
                      'dose_rad': 739.69309450009,
                      'exposure_rad': 739.6902397500801,
                      'accel_events': 366,
                      'ledger.array_j': 5361059.7491629515,
                      'ledger.battery_loss_j': 56174.958498383756,
                      'ledger.converter_loss_j': 145772.37946170842,
                      'ledger.fault_loss_j': 176835.4815785545,
                      'ledger.load_j': 2183667.9580753176,
                      'ledger.mppt_loss_j': 268052.98745814804,
                      'ledger.shunt_j': 3315378.0437608156,
                      'ledger.stored0_j': 2300486.4,
                      'T.structure': 293.57846710326805,
                      'T.solar_panels': 327.45457323270637,
                      'T.battery': 302.506538626924,
                      'T.payload_board': 289.9637366692451,
                      'T.accel_die': 263.5542799206642,
                      'T.heat_sink': 260.8326672432592,
                      'T.radiator': 257.4343041649412,
                      'rail.obc_3v3.trips': 0,
                      'rail.obc_3v3.on': True,
                      'rail.obc_3v3.p_in': 4.545454545454546,
                      'rail.comms_5v.trips': 4,
                      'rail.comms_5v.on': True,
                      'rail.comms_5v.p_in': 16.666666666666668,
                      'rail.adcs_12v.trips': 0,
                      'rail.adcs_12v.on': True,
                      'rail.adcs_12v.p_in': 13.043478260869565,
                      'rail.payload.trips': 0,
                      'rail.payload.on': True,
                      'rail.payload.p_in': 54.041417309100574,
                      'rail.heaters.trips': 0,
                      'rail.heaters.on': True,
                      'rail.heaters.p_in': 0.0,
                      'events.accel.error': 52,
                      'events.accel.job.done': 4,
                      'events.accel.power': 5,
                      'events.accel.state': 14,
                      'events.eps.battery.fault': 1,
                      'events.eps.mode.changed': 6,
                      'events.eps.rail.tripped': 4,
                      'events.radiation.event': 366,
                      'events.radiation.handled': 363,
                      'tm.eps.bus_v': 31.58859375,
                      'tm.eps.battery_a': 10.51171875,
                      'tm.eps.soc_est': 0.6884765625,
                      'tm.eps.array_w': 1271.48766796875,
                      'tm.thermal.structure': 20.4541015625,
                      'tm.thermal.solar_panels': 54.3359375,
                      'tm.thermal.battery': 29.4189453125,
                      'tm.thermal.payload_board': 16.89453125,
                      'tm.thermal.accel_die': -9.560546875,
                      'tm.thermal.heat_sink': -12.373046875,
                      'tm.thermal.radiator': -15.625,
                      'tm.sun': 1360.83984375},
 'cubesat-6u-jetson': {'soc': 0.3248596185968228,
                       'bus_v': 7.223916599724032,
                       'battery_a': -0.5453266084971764,
                       'ocv_v': 7.269876986487932,
                       'mode': 2,
                       'array_total_w': 0.0,
                       'shunt_w': 0.0,
                       'stored_j': 16198.951977743181,
                       'jobs_done': 1,
                       'jobs_failed': 3,
                       'units_done': 5,
                       'accel_state': 'off',
                       'accel_load_w': 0.0,
                       'dose_rad': 739.69309450009,
                       'exposure_rad': 739.6873992500703,
                       'accel_events': 83,
                       'ledger.array_j': 44504.69140659743,
                       'ledger.battery_loss_j': 1471.3646595258856,
                       'ledger.converter_loss_j': 9608.456891153706,
                       'ledger.fault_loss_j': 19616.014297851012,
                       'ledger.load_j': 84720.65747492816,
                       'ledger.mppt_loss_j': 2225.2345703298747,
                       'ledger.shunt_j': 692.8115434280621,
                       'ledger.stored0_j': 90028.8,
                       'T.structure': 291.5399601062023,
                       'T.solar_panels': 280.84424008035654,
                       'T.battery': 292.497279568032,
                       'T.payload_board': 287.2507654759307,
                       'T.accel_die': 281.2955296874413,
                       'T.radiator': 278.9382122286135,
                       'rail.obc_3v3.trips': 0,
                       'rail.obc_3v3.on': True,
                       'rail.obc_3v3.p_in': 2.272727272727273,
                       'rail.comms_5v.trips': 4,
                       'rail.comms_5v.on': True,
                       'rail.comms_5v.p_in': 1.6666666666666665,
                       'rail.payload.trips': 0,
                       'rail.payload.on': False,
                       'rail.payload.p_in': 0.0,
                       'rail.heaters.trips': 0,
                       'rail.heaters.on': True,
                       'rail.heaters.p_in': 0.0,
                       'events.accel.error': 16,
                       'events.accel.job.done': 4,
                       'events.accel.power': 2,
                       'events.accel.state': 6,
                       'events.eps.battery.fault': 1,
                       'events.eps.mode.changed': 1,
                       'events.eps.rail.tripped': 4,
                       'events.radiation.event': 83,
                       'events.radiation.handled': 81,
                       'tm.eps.bus_v': 7.2179296875,
                       'tm.eps.battery_a': -0.556640625,
                       'tm.eps.soc_est': 0.328125,
                       'tm.eps.array_w': 0.0,
                       'tm.thermal.structure': 18.4326171875,
                       'tm.thermal.solar_panels': 7.7099609375,
                       'tm.thermal.battery': 19.267578125,
                       'tm.thermal.payload_board': 14.08203125,
                       'tm.thermal.accel_die': 8.193359375,
                       'tm.thermal.radiator': 5.8203125,
                       'tm.sun': 1360.83984375},
 'starcloud-like': {'soc': 0.8690810398008462,
                    'bus_v': 32.859042915692086,
                    'battery_a': 10.5,
                    'ocv_v': 32.312092762851215,
                    'mode': 3,
                    'array_total_w': 532.3727925588086,
                    'shunt_w': 86.0678583445877,
                    'stored_j': 1937106.5553741942,
                    'jobs_done': 1,
                    'jobs_failed': 3,
                    'units_done': 5,
                    'accel_state': 'idle',
                    'accel_load_w': 37.986099828611316,
                    'dose_rad': 739.69309450009,
                    'exposure_rad': 739.6902445000801,
                    'accel_events': 83,
                    'ledger.array_j': 2558550.3394864737,
                    'ledger.battery_loss_j': 25360.645648349564,
                    'ledger.converter_loss_j': 102145.60657835726,
                    'ledger.fault_loss_j': 235570.77782184398,
                    'ledger.load_j': 1493868.7182563446,
                    'ledger.mppt_loss_j': 127927.51697432372,
                    'ledger.shunt_j': 937056.9173966041,
                    'ledger.stored0_j': 2300486.4,
                    'T.structure': 296.6407912227227,
                    'T.solar_panels': 319.42062218689205,
                    'T.battery': 297.0074538277679,
                    'T.payload_board': 295.61358276983646,
                    'T.accel_die': 281.49337414365925,
                    'T.heat_sink': 277.82220811035404,
                    'T.radiator': 274.14950500658813,
                    'rail.obc_3v3.trips': 0,
                    'rail.obc_3v3.on': True,
                    'rail.obc_3v3.p_in': 4.545454545454546,
                    'rail.comms_5v.trips': 4,
                    'rail.comms_5v.on': True,
                    'rail.comms_5v.p_in': 16.666666666666668,
                    'rail.adcs_12v.trips': 0,
                    'rail.adcs_12v.on': True,
                    'rail.adcs_12v.p_in': 13.043478260869565,
                    'rail.payload.trips': 0,
                    'rail.payload.on': True,
                    'rail.payload.p_in': 40.41074449852268,
                    'rail.heaters.trips': 0,
                    'rail.heaters.on': True,
                    'rail.heaters.p_in': 0.0,
                    'events.accel.error': 16,
                    'events.accel.job.done': 4,
                    'events.accel.power': 3,
                    'events.accel.state': 8,
                    'events.eps.battery.fault': 1,
                    'events.eps.mode.changed': 4,
                    'events.eps.rail.tripped': 4,
                    'events.radiation.event': 83,
                    'events.radiation.handled': 81,
                    'tm.eps.bus_v': 32.878125,
                    'tm.eps.battery_a': 10.51171875,
                    'tm.eps.soc_est': 0.8642578125,
                    'tm.eps.array_w': 532.36897265625,
                    'tm.thermal.structure': 23.5302734375,
                    'tm.thermal.solar_panels': 46.2939453125,
                    'tm.thermal.battery': 23.92578125,
                    'tm.thermal.payload_board': 22.51953125,
                    'tm.thermal.accel_die': 8.369140625,
                    'tm.thermal.heat_sink': 4.6337890625,
                    'tm.thermal.radiator': 1.1181640625,
                    'tm.sun': 1360.83984375}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scripted_orbit_ends_in_the_pinned_state(name: str) -> None:
    got = scenario(name)
    want = EXPECTED[name]
    assert sorted(got) == sorted(want)
    bad = []
    for key, w in want.items():
        g = got[key]
        if isinstance(w, float):
            if not math.isclose(g, w, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                bad.append(f"{key}: got {g!r}, pinned {w!r}")
        elif g != w:
            bad.append(f"{key}: got {g!r}, pinned {w!r}")
    assert not bad, "\n".join(bad)

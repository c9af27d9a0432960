"""Basilisk reference run for the benchmarks: orbit + eclipse + solar panel + battery + power sink, one satellite.

Needs ``bsk`` (``.venv/bin/pip install bsk``; not a flatsat dependency). The Earth is built by hand as a
``GravBodyData`` (mu, equatorial radius) so that nothing is downloaded: Basilisk's gravity-body factory fetches
SPICE kernels on first use. The Sun is a fixed message at 1 AU along +x and the orbit's RAAN is 0, so the Sun
lies in the orbit plane (beta = 0, the longest eclipses); the spacecraft keeps its initial inertial attitude, so
the panel (normal +x) faces the Sun all the time, like a sun-tracking wing.
"""

from __future__ import annotations

import math
import time
from typing import Any

AU_M = 149_597_870_700.0
MU_EARTH_M3_S2 = 3.986004418e14
R_EARTH_M = 6_378_137.0


def basilisk_available() -> tuple[bool, str]:
    """(True, "") if Basilisk imports, else (False, why)."""
    try:
        from Basilisk.simulation import spacecraft  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install (missing shared library...)
        return False, f"Basilisk (bsk) is not importable: {exc!s}"
    return True, ""


def basilisk_day(alt_km: float, inc_deg: float, panel_area_m2: float, panel_efficiency: float,
                 battery_capacity_wh: float, load_w: float, step_s: float, duration_s: float,
                 log_every_s: float | None = None) -> dict[str, Any]:
    """Run Basilisk for ``duration_s`` at ``step_s``; return wall time (of ExecuteSimulation only), final SOC
    and simulated seconds. The battery starts full; its state is recorded every step (or every ``log_every_s``)."""
    from Basilisk.architecture import messaging
    from Basilisk.simulation import (
        eclipse,
        gravityEffector,
        simpleBattery,
        simplePowerSink,
        simpleSolarPanel,
        spacecraft,
    )
    from Basilisk.utilities import SimulationBaseClass, macros, orbitalMotion

    sim = SimulationBaseClass.SimBaseClass()
    proc = sim.CreateNewProcess("flatsat_ref")
    proc.addTask(sim.CreateNewTask("task", macros.sec2nano(step_s)))

    sc = spacecraft.Spacecraft()
    sc.ModelTag = "sat"
    earth = gravityEffector.GravBodyData()
    earth.planetName = "earth_planet_data"
    earth.mu = MU_EARTH_M3_S2
    earth.radEquator = R_EARTH_M
    earth.isCentralBody = True
    sc.gravField.gravBodies = spacecraft.GravBodyVector([earth])

    oe = orbitalMotion.ClassicElements()
    oe.a = R_EARTH_M + alt_km * 1e3
    oe.e = 0.0
    oe.i = math.radians(inc_deg)
    oe.Omega = 0.0
    oe.omega = 0.0
    oe.f = math.radians(90.0)
    r_n, v_n = orbitalMotion.elem2rv(MU_EARTH_M3_S2, oe)
    sc.hub.r_CN_NInit = r_n
    sc.hub.v_CN_NInit = v_n

    sun = messaging.SpicePlanetStateMsgPayload()
    sun.PlanetName = "sun"
    sun.PositionVector = [AU_M, 0.0, 0.0]
    sun_msg = messaging.SpicePlanetStateMsg().write(sun)
    planet = messaging.SpicePlanetStateMsgPayload()
    planet.PlanetName = "earth"
    planet.PositionVector = [0.0, 0.0, 0.0]
    earth_msg = messaging.SpicePlanetStateMsg().write(planet)

    ecl = eclipse.Eclipse()
    ecl.ModelTag = "eclipse"
    ecl.addSpacecraftToModel(sc.scStateOutMsg)
    ecl.addPlanetToModel(earth_msg)
    ecl.sunInMsg.subscribeTo(sun_msg)

    panel = simpleSolarPanel.SimpleSolarPanel()
    panel.ModelTag = "panel"
    panel.stateInMsg.subscribeTo(sc.scStateOutMsg)
    panel.sunInMsg.subscribeTo(sun_msg)
    panel.sunEclipseInMsg.subscribeTo(ecl.eclipseOutMsgs[0])
    panel.setPanelParameters([1.0, 0.0, 0.0], panel_area_m2, panel_efficiency)

    sink = simplePowerSink.SimplePowerSink()
    sink.ModelTag = "load"
    sink.nodePowerOut = -float(load_w)

    battery = simpleBattery.SimpleBattery()
    battery.ModelTag = "battery"
    battery.storageCapacity = battery_capacity_wh * 3600.0
    battery.storedCharge_Init = battery_capacity_wh * 3600.0
    battery.addPowerNodeToModel(panel.nodePowerOutMsg)
    battery.addPowerNodeToModel(sink.nodePowerOutMsg)

    for model in (sc, ecl, panel, sink, battery):
        sim.AddModelToTask("task", model)
    rec = battery.batPowerOutMsg.recorder(macros.sec2nano(log_every_s) if log_every_s else 0)
    sim.AddModelToTask("task", rec)

    sim.InitializeSimulation()
    sim.ConfigureStopTime(macros.sec2nano(duration_s))
    t0 = time.perf_counter()
    sim.ExecuteSimulation()
    wall = time.perf_counter() - t0
    level = list(rec.storageLevel)
    return {"wall_s": wall, "final_soc": float(level[-1]) / battery.storageCapacity,
            "sim_s": float(duration_s), "min_soc": float(min(level)) / battery.storageCapacity}


if __name__ == "__main__":
    # As a whole process (bench/bench_run_day.py times it from start to exit):
    #   python bench/basilisk_ref.py ALT_KM INC_DEG AREA_M2 EFFICIENCY CAPACITY_WH LOAD_W STEP_S DURATION_S LOG_EVERY_S
    import json
    import sys

    ok, why = basilisk_available()
    if not ok:
        print(why, file=sys.stderr)
        raise SystemExit(3)
    args = [float(a) for a in sys.argv[1:]] or [650.0, 97.99, 1.0, 0.3, 100.0, 150.0, 1.0, 86400.0, 10.0]
    print(json.dumps(basilisk_day(*args[:8], log_every_s=args[8] if len(args) > 8 else None)))

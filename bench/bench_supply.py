"""Bench supply latency: how long after the model cuts a rail the supply's output is really off, and what a set and a
readback cost, against the floor of the same instrument link.

The instrument is the in-test SCPI supply of tests/scpi_supply_sim.py on a loopback TCP socket (pyvisa-py, TCPIP
SOCKET), so the figures are flatsat's own share: a real supply adds its network or USB round trip and its own
command processing (typically 1-10 ms on LAN/USBTMC, more on serial).

- baseline: one thread sends "OUTP OFF,(@1)" + "*OPC?" through pyvisa, nothing else running (the floor);
- flatsat cut-to-off: the emulator runs in real time at 10 ms steps with the supply playing the payload rail; a short
  is injected, the limiter trips, and the time from the release of the step in which it tripped to the instrument
  receiving OUTP OFF is taken from the instrument's own log (and flatsat's cut_to_off, to the *OPC? answer);
- from the fault injection to the output off: adds the wait for the next physics step (at most one step);
- set (switch on: CURR, VOLT, OUTP with an error-queue read after each) and readback (MEAS:VOLT?, MEAS:CURR?).

Goal: cut-to-off p99 below 100 ms (the issue's bound); ratio of flatsat's p50 to the baseline's p50 printed beside.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pyvisa
from scpi_supply_sim import ScpiSupplySim
from supply_setup import supply_config

from emulator.runtime import Emulator

TRIPS = 30        #: rail cuts per run
BASELINE_N = 300  #: raw OUTP OFF + *OPC? round trips
GOAL_MS = 100.0


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def baseline(sim: ScpiSupplySim) -> list[float]:
    rm = pyvisa.ResourceManager("@py")
    res = rm.open_resource(sim.resource, read_termination="\n", write_termination="\n", timeout=2000)
    import socket

    rm.visalib.sessions[res.session].interface.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(BASELINE_N):
        t0 = time.perf_counter_ns()
        res.write("OUTP OFF,(@1)")
        res.query("*OPC?")
        out.append((time.perf_counter_ns() - t0) / 1e6)
    res.close()
    return out


async def flatsat(sim: ScpiSupplySim) -> dict[str, Any]:
    cfg = supply_config(sim.resource, min_off_s=0.05, readback_hz=20.0)
    cut_to_off_inst: list[float] = []
    inject_to_off: list[float] = []
    async with Emulator.from_config(cfg) as emu:
        pay = emu.model.power.rail("payload")
        released: list[tuple[int, bool]] = []
        emu.add_observer(lambda t: released.append((time.monotonic_ns(), pay.tripped)))
        await emu.run_for(0.5)
        for _ in range(TRIPS):
            released.clear()
            t_inj = time.monotonic_ns()
            fid = emu.inject_fault("eps.rail.short", {"rail": "payload", "extra_a": 5.0})
            await emu.wait_for(lambda: pay.tripped, within_s=1.0, what="trip")
            await emu.wait_for(lambda t0=t_inj: bool(sim.offs_after(t0)), within_s=1.0, what="output off")
            t_rel = next(t for t, tripped in released if tripped)
            off = sim.offs_after(t_inj)[0]
            cut_to_off_inst.append((off - t_rel) / 1e6)
            inject_to_off.append((off - t_inj) / 1e6)
            emu.clear_fault(fid)
            emu.model.power.reset_rail("payload")
            await emu.wait_for(lambda: sim.ch[1].on, within_s=2.0, what="output back on")
            await emu.run_for(0.2)
        st = emu.stats_snapshot()["supplies"]["psu"]
    return {"cut_to_off_inst": cut_to_off_inst, "inject_to_off": inject_to_off, "stats": st}


def main() -> int:
    sim = ScpiSupplySim().start()
    sim.ch[1].load_ohm = 24.0
    try:
        base = baseline(sim)
        res = asyncio.run(flatsat(sim))
    finally:
        sim.stop()
    st = res.pop("stats")
    print(f"bench supply latency, loopback SCPI socket, {TRIPS} rail cuts at 10 ms physics steps (ms)")
    print(f"{'':52s} {'p50':>8s} {'p99':>8s} {'max':>8s}")
    rows = [("baseline: raw pyvisa OUTP OFF + *OPC?", base),
            ("flatsat: step release -> instrument gets OUTP OFF", res["cut_to_off_inst"]),
            ("flatsat: fault injected -> instrument gets OUTP OFF", res["inject_to_off"])]
    for label, v in rows:
        print(f"{label:52s} {pct(v, 0.5):8.2f} {pct(v, 0.99):8.2f} {max(v):8.2f}")
    for key, label in (("cut_to_off", "flatsat cut_to_off (to the *OPC? answer)"),
                       ("set", "flatsat set (switch on: CURR, VOLT, OUTP + errors)"),
                       ("readback", "flatsat readback (MEAS:VOLT?, MEAS:CURR?)")):
        t = st[key]
        print(f"{label:52s} mean {t['mean_ms']:6.2f}  max {t['max_ms']:6.2f}  n {t['n']}")
    ratio = statistics.median(res["cut_to_off_inst"]) / statistics.median(base)
    worst = max(res["inject_to_off"])
    print(f"p50 ratio flatsat cut-to-off / raw round trip: {ratio:.2f}")
    print(f"worst fault-to-off {worst:.1f} ms (goal < {GOAL_MS:.0f} ms: {'met' if worst < GOAL_MS else 'NOT met'})")
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())

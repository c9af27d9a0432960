"""The cost of watching: the emulator with and without `flatsat console` (and a page) attached.

Baseline, in the same run on the same machine: the emulator alone. Then the same emulator with a
`flatsat console` process subscribed to its control plane and a page stand-in (a WebSocket client that asks
for three plots, as the browser page does) attached to the console. Runs alternate (alone, attached, alone,
attached) so machine noise falls on both sides.

1. Tick lateness in `realtime` at 1 kHz: the full satellite steps every 1 ms and publishes its board telemetry
   (eps, thermal, sun, accelerator) and sim.clock at 1 kHz, truth at 10 Hz: lateness of every released step.
2. Speed in `afap`: sim seconds per wall second with 1 Hz telemetry (thousands of messages a wall second).

Goal (issue 18): with the console attached, tick lateness and speed change by less than 5 %.
Usage: python bench/bench_console.py [--seconds S]   (--page URL is the page stand-in, run by the bench)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.runtime import Emulator

FAST_HZ = 1000
PLOTS = [{"id": "a", "fields": ["satellite.power.soc"], "window_s": 1800},
         {"id": "b", "fields": ["eps.telemetry.bus_v", "eps.telemetry.battery_a"], "window_s": 300},
         {"id": "c", "fields": ["satellite.thermal.temps_degc.accel_die"], "window_s": 7200}]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def page(url: str) -> None:
    """A page stand-in: read every frame the console pushes, with three plots subscribed."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws") as ws:
        await ws.send_json({"op": "plots", "plots": PLOTS})
        frames = 0
        async for msg in ws:
            json.loads(msg.data)
            frames += 1


class Attached:
    """`flatsat console` on the control plane plus a page stand-in, as subprocesses."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        con = subprocess.Popen([sys.executable, "-m", "emulator", "console", self.control_url, "--listen",
                                "127.0.0.1:0"], stderr=subprocess.PIPE, cwd=ROOT)
        self.procs.append(con)
        assert con.stderr is not None
        url = None
        for line in con.stderr:
            m = re.search(rb"open (http://\S+)", line)
            if m:
                url = m.group(1).decode()
                break
        if url is None:
            raise RuntimeError("flatsat console did not start")
        # the page stand-in plays a browser: like a desktop's, it runs at a lower priority than the emulator
        self.procs.append(subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "--page", url], cwd=ROOT))
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def config(mode: str) -> object:
    over: dict[str, object] = {"sim.mode": mode, "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"}
    if mode == "realtime":
        rates = {t: float(FAST_HZ) for t in ("eps.telemetry", "thermal.telemetry", "adcs.sun", "accel.status",
                                             "sim.clock")}
        over.update({"sim.step_s": 1 / FAST_HZ, "telemetry.rates_hz": rates, "telemetry.truth_rate_hz": 10.0})
    return load_config(ROOT / "configs" / "suncatcher-proto.toml", over)


async def one_run(mode: str, seconds: float, attached: bool) -> dict[str, float]:
    emu = Emulator.from_config(config(mode), record_path=None)
    lags: list[float] = []
    async with emu:
        ctx = Attached(emu.control_url) if attached else None
        if ctx is not None:
            ctx.__enter__()
        try:
            if attached:  # let the console connect and the page subscribe before measuring
                await emu.run_for(2.0 if mode == "realtime" else 600.0)
            if mode == "realtime":
                emu.add_observer(lambda t: lags.append(emu.clock.stats.lag_ns / 1e6))
                await emu.run_for(seconds)
                lags = lags[20:]
                return {"p50": statistics.median(lags), "p99": pct(lags, 0.99), "mean": statistics.fmean(lags),
                        "overruns": float(emu.clock.stats.overruns)}
            t0_sim, t0 = emu.clock.now_ns(), time.perf_counter()
            deadline = t0 + seconds
            while time.perf_counter() < deadline:
                await emu.run_for(600.0)
            return {"speed": (emu.clock.now_ns() - t0_sim) / NS_PER_S / (time.perf_counter() - t0)}
        finally:
            if ctx is not None:
                ctx.__exit__()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--page", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help="wall seconds per measured run (default 5)")
    ap.add_argument("--pairs", type=int, default=3, help="alone/attached pairs per mode, alternating (default 3)")
    args = ap.parse_args()
    if args.page:
        asyncio.run(page(args.page))
        return 0
    out: dict[tuple[str, bool], list[dict[str, float]]] = {}
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for mode in ("realtime", "afap"):
        for _ in range(args.pairs):
            for attached in (False, True):
                out.setdefault((mode, attached), []).append(asyncio.run(one_run(mode, args.seconds, attached)))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    def med(mode: str, attached: bool, key: str) -> float:
        return statistics.median(r[key] for r in out[(mode, attached)])

    print(f"flatsat console attached vs not ({args.seconds:g} s per run, {args.pairs} alternating pairs, medians; "
          f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs: a busy machine swamps the effect)")
    print(f"realtime at {FAST_HZ} Hz (1 ms step, 5 topics at {FAST_HZ} Hz), tick lateness in ms:")
    print(f"{'':26s} {'p50':>8s} {'p99':>8s} {'mean':>8s} {'overruns':>9s}")
    for attached, name in ((False, "emulator alone"), (True, "with console + page")):
        print(f"{name:26s} {med('realtime', attached, 'p50'):8.3f} {med('realtime', attached, 'p99'):8.3f} "
              f"{med('realtime', attached, 'mean'):8.3f} {med('realtime', attached, 'overruns'):9.0f}")
    r_mean = med("realtime", True, "mean") / med("realtime", False, "mean")
    r_p99 = med("realtime", True, "p99") / med("realtime", False, "p99")
    print("afap speed, sim s per wall s:")
    print(f"{'emulator alone':26s} {med('afap', False, 'speed'):10.0f}")
    print(f"{'with console + page':26s} {med('afap', True, 'speed'):10.0f}")
    r_speed = med("afap", True, "speed") / med("afap", False, "speed")
    ok = abs(r_mean - 1) < 0.05 and abs(r_speed - 1) < 0.05
    print(f"ratio attached / alone: lateness mean {r_mean:.3f}, p99 {r_p99:.3f}; afap speed {r_speed:.3f} "
          f"(goal: mean lateness and speed within 5 %: {'met' if ok else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

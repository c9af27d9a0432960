"""Benchmark: an afap run watched by a board subscribed to every topic, beside Basilisk's pace.

    .venv/bin/python bench/bench_subscribed.py [CONFIG] [--hours 6] [--repeats 3]

The emulator runs in this process (`Emulator`, afap, the config's telemetry rates: 1 Hz at 1 s steps), with a
subscriber in its own process on the board plane that subscribes to everything and reads and decodes every
message (what a board that reads every topic costs the emulator: every sensor read, payload built, encoded and
sent). Beside it, in the same run and alternating: the same run with nobody subscribed (the no-board figure),
and Basilisk's script (`bench/basilisk_ref.py`, orbit + eclipse + panel + battery + constant load) as a whole
process for the same sim time. It prints sim-seconds per wall-second for each (and per CPU-second of the
emulator's process, steadier on a shared machine; the CPU time counts ZeroMQ's I/O thread too, which writes the
messages to the socket, and the event loop's thread alone is printed per run), medians of ``--repeats``, and the ratio to Basilisk's
whole-process pace; issue 14's goal for the subscribed run is at least 0.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from emulator.config import load_config
from emulator.runtime import Emulator

#: a board-plane subscriber in its own process: every topic, every message read and decoded
SUBSCRIBER = """
import sys, zmq
from emulator.errors import CodecError
from emulator.protocol import decode_message
from emulator.transports import parse_transport_url
from emulator.transports.zmq import endpoints
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.RCVHWM, 0)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.connect(endpoints(parse_transport_url(sys.argv[1]))[0])
n = 0
while s.poll(3000):
    try:
        decode_message(s.recv())
    except CodecError:  # the XPUB's welcome message
        continue
    n += 1
print(n)
"""


async def run_emulator(config: str, sim_s: float, subscribed: bool) -> dict[str, float]:
    cfg = load_config(config, {"sim.mode": "afap", "sim.seed": 1, "links.board": "zmq+tcp://127.0.0.1:0",
                               "links.control": "zmq+tcp://127.0.0.1:0"})
    async with Emulator.from_config(cfg, record_path=None) as emu:
        sub = None
        if subscribed:
            sub = await asyncio.create_subprocess_exec(sys.executable, "-c", SUBSCRIBER, emu.board_url, cwd=ROOT,
                                                       stdout=asyncio.subprocess.PIPE)
            while not emu.board_link.wants("eps.telemetry"):  # the subscription reached the emulator
                await asyncio.sleep(0.05)
        cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        await emu.run_for(sim_s)
        wall, cpu, main = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - main0
        published = emu.stats.published
    received = 0
    if sub is not None:
        out, _ = await asyncio.wait_for(sub.communicate(), 60)
        received = int(out.strip() or 0)
    return {"wall_s": wall, "cpu_s": cpu, "main_s": main, "published": published, "received": received}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="suncatcher-proto")
    ap.add_argument("--hours", type=float, default=24.0, help="sim time of each run (default 24 h: a day, as bench_run_day)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from basilisk_ref import basilisk_available
    from bench_run_day import basilisk_args, timed

    sim_s = args.hours * 3600.0
    have_bsk, why = basilisk_available()
    if not have_bsk:
        print(f"Basilisk skipped: {why} (pip install bsk)")
    bk_cmd = [sys.executable, str(ROOT / "bench" / "basilisk_ref.py"), *basilisk_args(args.config, sim_s)]
    runs: dict[str, list[dict[str, float]]] = {"subscribed": [], "alone": [], "basilisk": []}
    for rep in range(args.repeats):
        for who in ("subscribed", "alone"):
            runs[who].append(asyncio.run(run_emulator(args.config, sim_s, who == "subscribed")))
        if have_bsk:
            wall, out, cpu = timed(bk_cmd)
            runs["basilisk"].append({"wall_s": wall, "cpu_s": cpu, "exec_s": json.loads(out)["wall_s"]})
        sub, alone = runs["subscribed"][-1], runs["alone"][-1]
        line = (f"  run {rep + 1}: subscribed {sub['wall_s']:.2f} s (CPU {sub['cpu_s']:.2f} s, of it the event loop's "
                f"thread {sub['main_s']:.2f} s and ZeroMQ's I/O thread the rest; {sub['published']} "
                f"published, {sub['received']} received), nobody subscribed {alone['wall_s']:.2f} s "
                f"(CPU {alone['cpu_s']:.2f} s)")
        if have_bsk:
            bk = runs["basilisk"][-1]
            line += f", Basilisk {bk['wall_s']:.2f} s (CPU {bk['cpu_s']:.2f} s, ExecuteSimulation {bk['exec_s']:.2f} s)"
        print(line, flush=True)
    med = statistics.median
    rate = {who: sim_s / med([r["wall_s"] for r in rs]) for who, rs in runs.items() if rs}
    cpu_rate = {who: sim_s / med([r["cpu_s"] for r in rs]) for who, rs in runs.items() if rs}
    print(f"\n{args.config}, {args.hours:g} h of sim time at 1 s steps, afap, medians of {args.repeats}:")
    print("| run | sim-s per wall-s | sim-s per CPU-s | / Basilisk (wall) | / Basilisk (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    for who, label in (("subscribed", "a board subscribed to every topic (emulator in-process)"),
                       ("alone", "nobody subscribed (emulator in-process)"),
                       ("basilisk", "Basilisk script, whole process")):
        if who not in rate:
            continue
        bw, bc = rate.get("basilisk", float("nan")), cpu_rate.get("basilisk", float("nan"))
        print(f"| {label} | {rate[who]:,.0f} | {cpu_rate[who]:,.0f} | {rate[who] / bw:.2f}x | {cpu_rate[who] / bc:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: instructions per step of the emulator's main thread (callgrind), the figure a shared machine cannot blur.

    .venv/bin/python bench/bench_instructions.py [CONFIG] [--subscribed | --alone] [--batch 8] [--baseline CHECKOUT]

Wall-clock benches on a shared 2-core VM swing by 10-50 % between runs of the same commit, more than most changes
they are meant to judge. This one runs the emulator in ``afap`` under ``valgrind --tool=callgrind`` twice (600 and
2,400 one-second steps) and prints the difference of the main thread's instruction counts per step: start-up and
shutdown cancel out, and the count repeats to a fraction of a percent. It is a diagnostic beside the wall-clock
benches, not a replacement: it does not see system calls, cache misses or the other threads, and callgrind runs the
process ~50x slower.

``--subscribed`` (default): a subscriber in the process reads every board-plane message after the run (its high-water
mark lifted, so every message is sent); ``--alone``: nobody subscribed. ``--batch`` fixes the clock's steps between
yields (``YIELD_STEPS``; afap sizes batches by wall time, which callgrind slows down), 8 by default, about what
a subscribed run of ``suncatcher-proto`` takes on this machine at full speed. With ``--baseline CHECKOUT`` (another
checkout with its own ``.venv``) the same runs there too and the ratio is printed.

Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT_STEPS, LONG_STEPS = 600, 2400


async def child(config: str, steps: int, subscribed: bool, batch: int) -> None:
    """The run measured: the emulator in this process, afap, ``steps`` one-second steps."""
    import zmq

    from emulator import clock, runtime
    from emulator.config import load_config
    from emulator.runtime import Emulator
    from emulator.transports import parse_transport_url
    from emulator.transports.zmq import endpoints

    # batches sized by YIELD_STEPS alone (callgrind's pace would shrink them), whichever yield period the runtime sets
    clock.YIELD_NS = clock.QUIET_YIELD_NS = runtime.YIELD_NS = runtime.QUIET_YIELD_NS = 10**15
    clock.YIELD_STEPS = batch
    cfg = load_config(config, {"sim.mode": "afap", "sim.seed": 1, "links.board": "zmq+tcp://127.0.0.1:0?hwm=10000000",
                               "links.control": "zmq+tcp://127.0.0.1:0"})
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    async with Emulator.from_config(cfg, record_path=None) as emu:
        if subscribed:
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(endpoints(parse_transport_url(emu.board_url))[0])
            while not emu.board_link.wants("eps.telemetry"):
                await asyncio.sleep(0.05)
        await emu.run_for(float(steps))
        published = emu.stats.published
        await asyncio.sleep(0.5)
    received = 0
    while True:  # read after the run: the reads are not counted per step
        try:
            sub.recv(zmq.NOBLOCK)
            received += 1
        except zmq.Again:
            if not sub.poll(300):
                break
    import emulator

    print(f"published {published} received {received} (emulator from {Path(emulator.__file__).parent.parent})")


def main_thread_instructions(checkout: Path, config: str, steps: int, subscribed: bool, batch: int) -> tuple[int, str]:
    python = checkout / ".venv" / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
                               str(python), str(ROOT / "bench" / "bench_instructions.py"), "--child", config,
                               str(steps), "1" if subscribed else "0", str(batch)],
                              cwd=checkout, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"the run under callgrind failed ({checkout}):\n{proc.stderr[-3000:]}")
        counts = []
        for f in Path(tmp).glob("cg.out*"):
            m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.MULTILINE)
            if m:
                counts.append(int(m.group(1)))
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("published")), "")
    if os.environ.get("BENCH_DEBUG"):
        print(f"    {checkout} {steps} steps: threads' instructions {sorted(counts, reverse=True)}")
    return max(counts), line  # the main thread runs the most by far


def per_step(checkout: Path, config: str, subscribed: bool, batch: int,
             steps: tuple[int, int] = (SHORT_STEPS, LONG_STEPS)) -> tuple[float, str]:
    # one run first, outside valgrind: what a checkout's first run writes (caches) is not counted in the short run
    subprocess.run([str(checkout / ".venv" / "bin" / "python"), str(ROOT / "bench" / "bench_instructions.py"),
                    "--child", config, "60", "1" if subscribed else "0", str(batch)], cwd=checkout,
                   capture_output=True, check=True)
    short, _ = main_thread_instructions(checkout, config, steps[0], subscribed, batch)
    long, line = main_thread_instructions(checkout, config, steps[1], subscribed, batch)
    return (long - short) / (steps[1] - steps[0]), line


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        config, steps, subscribed, batch = sys.argv[2:6]
        sys.path.insert(0, os.getcwd())  # the checkout measured (its emulator package)
        asyncio.run(child(config, int(steps), subscribed == "1", int(batch)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="suncatcher-proto")
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--subscribed", dest="subscribed", action="store_true", default=True)
    who.add_argument("--alone", dest="subscribed", action="store_false")
    ap.add_argument("--batch", type=int, default=8, help="steps between the clock's yields (default 8)")
    ap.add_argument("--steps", type=int, nargs=2, default=(SHORT_STEPS, LONG_STEPS), metavar=("SHORT", "LONG"),
                    help=f"the two runs' steps (default {SHORT_STEPS} {LONG_STEPS}; e.g. 100 400 for the 81-member "
                         "cluster, ~50x slower a step)")
    ap.add_argument("--baseline", type=Path, help="another checkout (with its .venv) measured the same way")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind")
        return 1
    what = "a subscriber reading every board-plane message" if args.subscribed else "nobody subscribed"
    print(f"{args.config}, afap, {args.batch} steps between yields, {what}: main-thread instructions per step "
          f"(callgrind, {args.steps[1]} minus {args.steps[0]} steps)")
    ours, line = per_step(ROOT, args.config, args.subscribed, args.batch, tuple(args.steps))
    print(f"  this checkout: {ours:,.0f} per step ({line} in the longer run)")
    if args.baseline is not None:
        base, line = per_step(args.baseline.resolve(), args.config, args.subscribed, args.batch, tuple(args.steps))
        print(f"  baseline {args.baseline}: {base:,.0f} per step ({line})")
        print(f"  baseline / this checkout: {base / ours:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

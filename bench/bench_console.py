"""The cost of watching: the emulator with and without `flatsat console` (and a page) attached.

Baseline, in the same run on the same machine: the emulator with one plain subscriber on its control plane
(a process that reads every message and drops it, as a recorder or a board would: the emulator samples and
publishes a topic only while someone receives it, so with nobody listening it does less work, shown for
reference). Then the same plus a `flatsat console` process on the control plane and a page stand-in (a
WebSocket client that asks for three plots, as the browser page does) attached to the console. Runs alternate
(baseline, attached, attached, baseline, ...) so machine noise and any drift fall on both sides.

1. Tick lateness in `realtime` at 1 kHz: the full satellite steps every 1 ms and publishes its board telemetry
   (eps, thermal, sun, accelerator) and sim.clock at 1 kHz, truth at 10 Hz: lateness of every released step.
2. Speed in `afap`: sim seconds per wall second with 1 Hz telemetry (thousands of messages a wall second).

Beside the wall-clock figures, CPU time (Linux): the emulator process's (all its threads) per sim second in
`afap`, and the console's and the page's as a share of one core. On a shared machine these say what
watching costs even when the wall-clock figures drown in the machine's noise.

The console asks the emulator for its own feed (``telemetry.feed``, 10 per topic per wall second) instead of
subscribing to everything, so it receives (and decodes) ~70 messages a second whatever the telemetry rate.

Two more arms split what the console changes (``--split``; POSIX, Linux for the idle priority):
- ``paused``: console and page attached, then stopped (SIGSTOP) for the measured span and continued after it.
  The emulator still serves them (feeds offered, pumped and sent, within the feed's lease): the emulator's own
  cost of a console, without the console's CPU time on the machine.
- ``busy``: no console; a process that has nothing to do with the emulator spends BUSY_MS of CPU every
  BUSY_PERIOD_MS (~2.4 % of a core, about what console + page take) at the console's default priority (idle):
  what any process of that size does to the emulator on this machine.
Lateness is also given as its mean over the ticks under 1 ms late (``mean<1ms``): on a shared virtual machine a
few stalls of milliseconds a run (the hypervisor's, not the emulator's) decide the plain mean.

Goal (issue 18): with the console attached, tick lateness and speed change by less than 5 %. Judged on 95 %
intervals, not on medians: each statistic's per-set ratio to the plain subscriber, their geometric mean and its
bootstrap interval, beside an A/A check (two plain-subscriber runs in a row, which ABBA provides) that says how much
this machine alone moves that statistic. Met when, for the speed and every lateness statistic the A/A check
resolves to 5 %, the console's interval lies within 0.95-1.05; a statistic the machine cannot resolve is shown,
not judged. Many sets narrow the intervals (``--pairs 30``: ~20 min).
A third way, resolvable on a noisy machine (``--instructions STEPS``, needs valgrind): the emulator's main-thread
instructions per afap step under callgrind, with the plain subscriber and with console + page as well (they run
outside valgrind), counted over STEPS steps once they are connected. It counts what serving a console adds to the
emulator's own work; callgrind slows the emulator ~100x while the console asks at wall-clock rates, so the figure
is an upper bound on that share.
Usage: python bench/bench_console.py [--seconds S] [--pairs N] [--split] [--instructions STEPS]
(--page URL is the page stand-in, run by the bench)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.clock import NS_PER_S
from emulator.config import load_config
from emulator.runtime import Emulator

FAST_HZ = 1000
#: the ``busy`` arm's process: BUSY_MS of CPU every BUSY_PERIOD_MS
BUSY_MS, BUSY_PERIOD_MS = 1.0, 40.0
#: ticks this late or later are the machine's stalls, left out of ``mean<1ms``
STALL_MS = 1.0
#: extra `flatsat console` arguments (--console-arg), e.g. --max-hz 0: the console as it was (subscribed)
CONSOLE_ARGS: list[str] = []
PLOTS = [{"id": "a", "fields": ["satellite.power.soc"], "window_s": 1800},
         {"id": "b", "fields": ["eps.telemetry.bus_v", "eps.telemetry.battery_a"], "window_s": 300},
         {"id": "c", "fields": ["satellite.thermal.temps_degc.accel_die"], "window_s": 7200}]


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def drain(url: str) -> None:
    """A plain subscriber: every message on the control plane, read and dropped."""
    from emulator.transports import connect

    async with await connect(url) as link:
        async for _ in link:
            pass


def busy() -> None:
    """The ``busy`` arm: BUSY_MS of CPU every BUSY_PERIOD_MS at the console's default priority, doing nothing."""
    from emulator.console.app import lower_priority

    lower_priority("idle")
    while True:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < BUSY_MS / 1e3:
            pass
        time.sleep(BUSY_PERIOD_MS / 1e3)


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
    """Subprocesses on the control plane: a plain subscriber, and (``console``) `flatsat console` + a page."""

    def __init__(self, control_url: str, console: bool, busy: bool = False) -> None:
        self.control_url = control_url
        self.console = console
        self.busy = busy
        self.procs: list[subprocess.Popen[bytes]] = []
        self.paused: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        self.procs.append(subprocess.Popen([sys.executable, __file__, "--drain", self.control_url], cwd=ROOT))
        if self.busy:
            self.procs.append(subprocess.Popen([sys.executable, __file__, "--busy", "1"], cwd=ROOT))
        if not self.console:
            return self
        con = subprocess.Popen([sys.executable, "-m", "emulator", "console", self.control_url, "--listen",
                                "127.0.0.1:0", *CONSOLE_ARGS], stderr=subprocess.PIPE, cwd=ROOT)
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

    def pause(self) -> None:
        """Stop the console and the page (the emulator keeps feeding them, within the feed's lease)."""
        self.paused = self.procs[1:]
        for p in self.paused:
            os.kill(p.pid, signal.SIGSTOP)

    def resume(self) -> None:
        for p in self.paused:
            os.kill(p.pid, signal.SIGCONT)
        self.paused = []

    def __exit__(self, *exc: object) -> None:
        self.resume()
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


#: the --instructions arm: the clock's batches fixed at this many steps (as bench_instructions.py), watchers given
#: this long (wall seconds, under callgrind) to connect and subscribe before the count starts
INSTR_BATCH = 32
INSTR_SETTLE_S = 10.0


def count_instructions(on: bool) -> None:
    """Switch callgrind's count in this process on or off (blocking: nothing of the emulator runs meanwhile)."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], capture_output=True,
                   check=True)


async def instructions_child(who: str, steps: int) -> None:
    """Run under ``valgrind --tool=callgrind --instr-atstart=no``: the afap emulator with the arm's watchers, the
    count switched on for ``steps`` steps once they are connected; prints the measured span's sim-s per wall-s."""
    from emulator import clock, runtime

    clock.YIELD_NS = clock.QUIET_YIELD_NS = runtime.YIELD_NS = runtime.QUIET_YIELD_NS = 10**15
    clock.YIELD_STEPS = INSTR_BATCH
    emu = Emulator.from_config(config("afap"), record_path=None)
    async with emu:
        with Attached(emu.control_url, who == "console"):
            link = emu.control_link
            t_end = time.perf_counter() + 120
            while not (link.wants("sim.clock") and (who != "console" or link.feeds)):
                if time.perf_counter() > t_end:
                    raise SystemExit(f"{who}: the watchers did not connect within 120 s")
                await emu.run_for(10.0)  # serving the watchers' requests as it runs
            t_end = time.perf_counter() + INSTR_SETTLE_S  # the page's plots, the console's first polls
            while time.perf_counter() < t_end:
                await emu.run_for(10.0)
            count_instructions(True)
            t0 = time.perf_counter()
            await emu.run_for(float(steps))
            wall = time.perf_counter() - t0
            count_instructions(False)
    print(json.dumps({"sim_per_wall": steps / wall}))


def instructions_run(who: str, steps: int) -> tuple[float, float]:
    """The main thread's instructions per step of one run of ``who`` under callgrind, and its sim-s per wall-s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                               f"--callgrind-out-file={out}", sys.executable, __file__, "--instructions-child", who,
                               str(steps)], cwd=ROOT, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"the {who} run under callgrind failed:\n{proc.stderr[-3000:]}")
        counts = [int(m.group(1)) for f in Path(tmp).glob("cg.out*")
                  if (m := re.search(r"^totals: (\d+)", f.read_text(errors="replace"), re.MULTILINE))]
    pace = json.loads(proc.stdout.strip().splitlines()[-1])["sim_per_wall"]
    return max(counts) / steps, pace  # the main thread runs the most by far


def instructions(steps: int, sets: int) -> None:
    """The emulator's own extra work for a console, counted: main-thread instructions per afap step with a plain
    subscriber, and with console + page as well, ABBA sets."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")
    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "console": []}
    for k in range(sets):
        for who in ("baseline", "console") if k % 2 == 0 else ("console", "baseline"):
            runs[who].append(instructions_run(who, steps))
            print(f"  set {k + 1} {who}: {runs[who][-1][0]:,.0f} instructions a step "
                  f"({runs[who][-1][1]:,.0f} sim-s per wall-s under callgrind)", flush=True)
    base = statistics.median(r[0] for r in runs["baseline"])
    con = statistics.median(r[0] for r in runs["console"])
    ratios = [c[0] / b[0] for b, c in zip(runs["baseline"], runs["console"], strict=True)]
    pace = statistics.median(r[1] for r in runs["console"])
    print(f"afap, {steps} steps a run, batches of {INSTR_BATCH}, medians of {sets}: plain subscriber {base:,.0f}, "
          f"+ console + page {con:,.0f} instructions a step of the emulator's main thread: {con / base:.4f} "
          f"(per set {' '.join(f'{r:.4f}' for r in ratios)}). Under callgrind the emulator ran {pace:,.0f} sim-s "
          "per wall-s, so what the console asks per wall second (its polls, the feed's samples) weighs on each step "
          "as many times more as callgrind slowed the run: an upper bound on the console's cost to the emulator.")


def config(mode: str) -> object:
    over: dict[str, object] = {"sim.mode": mode, "links.board": None, "links.control": "zmq+tcp://127.0.0.1:0"}
    if mode == "realtime":
        rates = {t: float(FAST_HZ) for t in ("eps.telemetry", "thermal.telemetry", "adcs.sun", "accel.status",
                                             "sim.clock")}
        over.update({"sim.step_s": 1 / FAST_HZ, "telemetry.rates_hz": rates, "telemetry.truth_rate_hz": 10.0})
    return load_config(ROOT / "configs" / "suncatcher-proto.toml", over)


async def one_run(mode: str, seconds: float, who: str) -> dict[str, float]:
    """``who``: "alone" (nobody listening), "baseline" (a plain subscriber), "console" (plus console and page),
    "paused" (console and page stopped while measured), "busy" (a plain subscriber and the busy process)."""
    emu = Emulator.from_config(config(mode), record_path=None)
    lags: list[float] = []
    async with emu:
        ctx = Attached(emu.control_url, who in ("console", "paused"), busy=who == "busy") if who != "alone" else None
        if ctx is not None:
            ctx.__enter__()
        try:
            if ctx is not None:  # let the subscribers connect and the page subscribe before measuring
                await asyncio.sleep(3.0)
                await emu.run_for(2.0 if mode == "realtime" else 600.0)
            watchers = ctx.procs[1:] if ctx is not None else []  # the console and the page (or the busy process)
            if who == "paused":
                ctx.pause()
            w0 = [proc_cpu_s(p.pid) for p in watchers]
            c0, t0_sim, t0 = self_cpu_s(), emu.clock.now_ns(), time.perf_counter()

            def cpu() -> dict[str, float]:
                wall = time.perf_counter() - t0
                sim = (emu.clock.now_ns() - t0_sim) / NS_PER_S
                watch = sum(proc_cpu_s(p.pid) - w for p, w in zip(watchers, w0, strict=True))
                return {"emu_cpu_ms_per_sim_s": 1e3 * (self_cpu_s() - c0) / sim,
                        "watch_core": watch / wall if watchers else 0.0}

            if mode == "realtime":
                emu.add_observer(lambda t: lags.append(emu.clock.stats.lag_ns / 1e6))
                await emu.run_for(seconds)
                lags = lags[20:]
                return {"p50": statistics.median(lags), "p90": pct(lags, 0.9), "p99": pct(lags, 0.99),
                        "mean": statistics.fmean(lags),
                        "tmean": statistics.fmean([x for x in lags if x < STALL_MS] or [0.0]),
                        "overruns": float(emu.clock.stats.overruns), **cpu()}
            deadline = t0 + seconds
            while time.perf_counter() < deadline:
                await emu.run_for(600.0)
            return {"speed": (emu.clock.now_ns() - t0_sim) / NS_PER_S / (time.perf_counter() - t0), **cpu()}
        finally:
            if ctx is not None:
                ctx.__exit__()


#: the statistics judged against the goal, as (mode, key, label); a ratio above 1 is worse for lateness, better
#: for speed
JUDGED = (("afap", "speed", "afap speed"), ("realtime", "tmean", "lateness mean<1ms"),
          ("realtime", "mean", "lateness mean"), ("realtime", "p50", "lateness p50"),
          ("realtime", "p90", "lateness p90"))
#: the goal's band for a ratio (issue 18: less than 5 % change)
BAND = (0.95, 1.05)


def geomean_ci(ratios: list[float], draws: int = 5000, seed: int = 1) -> tuple[float, float, float]:
    """The geometric mean of ``ratios`` and its 95 % bootstrap interval (percentiles of ``draws`` resamples)."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if not logs:
        return math.nan, math.nan, math.nan
    rng = random.Random(seed)
    n = len(logs)
    means = sorted(statistics.fmean(rng.choices(logs, k=n)) for _ in range(draws))
    return (math.exp(statistics.fmean(logs)), math.exp(means[int(0.025 * draws)]),
            math.exp(means[int(0.975 * draws) - 1]))


def band_verdict(lo: float, hi: float) -> str:
    """Where a ratio's interval lies against the goal's band."""
    if BAND[0] <= lo and hi <= BAND[1]:
        return "within 5 %"
    if hi < BAND[0] or lo > BAND[1]:
        return "outside 5 %"
    return "not resolved"


def print_confidence(out: dict[tuple[str, str], list[dict[str, float]]], arms: tuple[str, ...],
                     names: dict[str, str]) -> None:
    """Each judged statistic's ratio to the plain subscriber, per arm (per set, then the geometric mean of the
    sets' ratios with a 95 % interval), beside the same for two plain-subscriber runs in a row (A/A: what this
    machine alone moves it by; ABBA puts a set's last baseline next to the next set's first). A statistic whose
    A/A interval is not within the band cannot show a 5 % effect on this machine; the goal is judged on those that
    can, for the console arm. (N sets give N ratios to the baseline but only (N - 1) // 2 A/A ratios: the A/A
    interval is the wider, so the check errs towards "cannot resolve".)"""
    print("95 % intervals of the ratios to the plain subscriber (geometric mean of the per-set ratios, bootstrap); "
          "A/A: two plain-subscriber runs in a row:")
    print(f"{'':22s} {'A/A':>26s}" + "".join(f" {names[who][:30]:>30s}" for who in arms[1:]))
    resolved: dict[str, str] = {}
    for mode, key, label in JUDGED:
        base = [r[key] for r in out[(mode, "baseline")]]
        aa = geomean_ci([base[i + 1] / base[i] for i in range(1, len(base) - 1, 2) if base[i] > 0])
        can = band_verdict(aa[1], aa[2]) == "within 5 %"
        line = f"{label:22s} {aa[0]:7.3f} [{aa[1]:.3f}, {aa[2]:.3f}]"
        for who in arms[1:]:
            ab = geomean_ci([c / b for b, c in zip(base, [r[key] for r in out[(mode, who)]], strict=True) if b > 0])
            line += f"  {ab[0]:10.3f} [{ab[1]:.3f}, {ab[2]:.3f}]"
            if who == "console" and can:
                resolved[label] = band_verdict(ab[1], ab[2])
        print(line + ("" if can else "   (A/A wider than 5 %: not resolved here)"))
    lateness = [v for k, v in resolved.items() if k.startswith("lateness")]
    ok = resolved.get("afap speed") == "within 5 %" and bool(lateness) and all(v == "within 5 %" for v in
                                                                              resolved.values())
    verdict = "met" if ok else "NOT met" if "outside 5 %" in resolved.values() else "not shown"
    judged = ", ".join(f"{k} {v}" for k, v in resolved.items()) or "none"
    print(f"  goal (issue 18), console / plain on the statistics this machine resolves ({judged}): {verdict}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--page", help=argparse.SUPPRESS)
    ap.add_argument("--drain", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help="wall seconds per measured run (default 5)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="sets of runs (one per arm) per mode, alternating (default 3)")
    ap.add_argument("--console-arg", action="append", default=[], metavar="ARG",
                    help="pass ARG to `flatsat console` (repeat it; e.g. --console-arg=--max-hz --console-arg=0 "
                         "measures a console that subscribes to everything)")
    ap.add_argument("--split", action="store_true",
                    help="add the paused and busy arms: the emulator's own cost of a console vs any process's")
    ap.add_argument("--busy", help=argparse.SUPPRESS)
    ap.add_argument("--instructions", type=int, metavar="STEPS", default=0,
                    help="instead: count the emulator's main-thread instructions per afap step under callgrind, "
                         "STEPS steps a run, with a plain subscriber and with console + page (needs valgrind)")
    ap.add_argument("--instructions-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    CONSOLE_ARGS.extend(args.console_arg)
    if args.instructions_child:
        asyncio.run(instructions_child(args.instructions_child[0], int(args.instructions_child[1])))
        return 0
    if args.instructions:
        instructions(args.instructions, args.pairs)
        return 0
    if args.page:
        asyncio.run(page(args.page))
        return 0
    if args.drain:
        asyncio.run(drain(args.drain))
        return 0
    if args.busy:
        busy()
        return 0
    arms = ("baseline", "console", "paused", "busy") if args.split else ("baseline", "console")
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for mode in ("realtime", "afap"):
        out[(mode, "alone")] = [asyncio.run(one_run(mode, args.seconds, "alone"))]
        for pair in range(args.pairs):
            # ABBA: which arm runs first alternates, so a drift over the runs falls on every side
            for who in arms if pair % 2 == 0 else arms[::-1]:
                out.setdefault((mode, who), []).append(asyncio.run(one_run(mode, args.seconds, who)))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    def med(mode: str, who: str, key: str) -> float:
        return statistics.median(r[key] for r in out[(mode, who)])

    print(f"flatsat console attached vs not ({args.seconds:g} s per run, {args.pairs} alternating sets, medians; "
          f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs: a busy machine swamps the effect)")
    print(f"realtime at {FAST_HZ} Hz (1 ms step, 5 topics at {FAST_HZ} Hz), tick lateness in ms:")
    print(f"{'':30s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'mean':>7s} {'mean<1ms':>9s} {'overruns':>9s}")
    names = {"alone": "nobody listening (ref.)", "baseline": "plain subscriber", "console": "+ console + page",
             "paused": "+ console + page, stopped", "busy": f"+ a {100 * BUSY_MS / (BUSY_MS + BUSY_PERIOD_MS):.1f} %"
             " process (idle prio)"}
    shown = ("alone", *arms)
    for who in shown:
        print(f"{names[who]:30s} {med('realtime', who, 'p50'):7.3f} {med('realtime', who, 'p90'):7.3f} "
              f"{med('realtime', who, 'p99'):7.3f} {med('realtime', who, 'mean'):7.3f} "
              f"{med('realtime', who, 'tmean'):9.4f} {med('realtime', who, 'overruns'):9.0f}")
    print("afap speed, sim s per wall s:")
    for who in shown:
        print(f"{names[who]:30s} {med('afap', who, 'speed'):10.0f}")
    print("CPU time: the emulator process (all threads) per sim second; the console + page (or the busy process), "
          "share of one core:")
    print(f"{'':30s} {'afap ms/sim-s':>14s} {'realtime ms/sim-s':>18s} {'watchers afap':>14s} {'realtime':>9s}")
    for who in shown:
        print(f"{names[who]:30s} {med('afap', who, 'emu_cpu_ms_per_sim_s'):14.3f} "
              f"{med('realtime', who, 'emu_cpu_ms_per_sim_s'):18.1f} {med('afap', who, 'watch_core'):13.1%} "
              f"{med('realtime', who, 'watch_core'):9.1%}")

    def pairs(mode: str, who: str, key: str) -> str:
        return " ".join(f"{c[key] / b[key]:.2f}" for b, c in zip(out[(mode, "baseline")], out[(mode, who)],
                                                                  strict=True))

    for who in arms[1:]:
        r = {k: med("realtime", who, k) / med("realtime", "baseline", k) for k in ("mean", "tmean", "p99")}
        r_speed = med("afap", who, "speed") / med("afap", "baseline", "speed")
        r_cpu = med("afap", who, "emu_cpu_ms_per_sim_s") / med("afap", "baseline", "emu_cpu_ms_per_sim_s")
        print(f"{names[who]} / plain subscriber: lateness mean {r['mean']:.3f}, mean<1ms {r['tmean']:.3f}, p99 "
              f"{r['p99']:.3f}; afap speed {r_speed:.3f}; emulator CPU per sim s {r_cpu:.3f}; per set: mean<1ms "
              f"{pairs('realtime', who, 'tmean')}, afap speed {pairs('afap', who, 'speed')}")
    print_confidence(out, arms, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())

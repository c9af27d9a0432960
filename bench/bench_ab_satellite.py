"""Benchmark: this checkout's Satellite.step against another checkout's, in ONE process, alternating blocks of steps.

    .venv/bin/python bench/bench_ab_satellite.py BASE_CHECKOUT [config] [--steps 43200] [--block 200] [--many]

BASE_CHECKOUT is a directory holding another version's ``emulator/`` package (e.g. ``git worktree add /tmp/base
main`` or ``git archive main | tar -x -C /tmp/base``). Its package is copied to a temporary directory as
``emulator_base`` (imports rewritten), so both versions live in one interpreter; the two satellites then take turns
in blocks of ``--block`` steps and each block's CPU time (``time.process_time``) is added to its side. On a shared,
loaded machine this is far steadier than two processes run one after the other (both sides see the same load at
the same moments); prints us per step of both and the ratio, and checks that both ended in the same state.

A cluster config (``suncatcher-cluster``) compares ``ClusterModel.step`` (the whole fleet per step) the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000


def load_base(base: Path, tmp: Path) -> None:
    dst = tmp / "emulator_base"
    shutil.copytree(base / "emulator", dst, ignore=shutil.ignore_patterns("__pycache__"))
    if (base / "configs").is_dir():  # its shipped configs (a cluster config extends one by name)
        shutil.copytree(base / "configs", tmp / "configs")
    pat = re.compile(r"\b(from|import) emulator(\.|\b)")
    for f in dst.rglob("*.py"):
        f.write_text(pat.sub(lambda m: f"{m.group(1)} emulator_base{m.group(2)}", f.read_text(encoding="utf-8")),
                     encoding="utf-8")
    sys.path.insert(0, str(tmp))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="a checkout of the version to compare with")
    ap.add_argument("config", nargs="?", default="suncatcher-proto")
    ap.add_argument("--steps", type=int, default=43200)
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--many", action="store_true",
                    help="take each block with step_many (as the runtime batches a run nobody talks to), events "
                         "drained after each call; default: one step() call per step")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        load_base(args.base.resolve(), Path(tmp))
        import emulator_base.models.satellite as base_mod  # type: ignore[import-not-found]

        import emulator.models.satellite as new_mod

        path = ROOT / "configs" / f"{args.config}.toml"
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        if "cluster" in raw:
            import emulator_base.config as base_config  # type: ignore[import-not-found]
            import emulator_base.models.cluster as base_cluster  # type: ignore[import-not-found]

            import emulator.config as new_config
            import emulator.models.cluster as new_cluster

            sats = {name: cl.ClusterModel.from_config(cf.load_config(path))
                    for name, cl, cf in (("base", base_cluster, base_config), ("this", new_cluster, new_config))}
        else:
            for key in ("sim", "links", "telemetry", "record", "bench"):
                raw.pop(key, None)
            epoch = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
            sats = {name: mod.Satellite(mod.SatelliteConfig.model_validate(raw), epoch_utc=epoch, seed=1)
                    for name, mod in (("base", base_mod), ("this", new_mod))}
        cpu = dict.fromkeys(sats, 0.0)
        clock = time.process_time
        for b, k0 in enumerate(range(0, args.steps, args.block)):
            for name in (("base", "this") if b % 2 else ("this", "base")):
                model = sats[name]
                step = model.step
                t0 = clock()
                if args.many:
                    t_ns, left = k0 * NS, min(k0 + args.block, args.steps) - k0
                    while left:
                        n = model.step_many(t_ns, NS, left)
                        t_ns += n * NS
                        left -= n
                        model.drain_events()
                else:
                    for k in range(k0, min(k0 + args.block, args.steps)):
                        step(k * NS, NS)
                cpu[name] += clock() - t0
    base_us, this_us = (cpu[n] / args.steps * 1e6 for n in ("base", "this"))
    print(f"{args.config}, {args.steps} steps in blocks of {args.block}: base {base_us:.2f} us/step, this "
          f"{this_us:.2f} us/step, ratio this/base {this_us / base_us:.3f}")
    a, b = sats["base"], sats["this"]
    d_soc = float(np.max(np.abs(a.power.soc - b.power.soc)))
    d_t = float(np.max(np.abs(a.thermal.T - b.thermal.T)))
    same = d_soc <= 1e-9 and d_t <= 1e-6
    print(f"end state: mean soc {float(np.mean(a.power.soc)):.12f} vs {float(np.mean(b.power.soc)):.12f} (max |d| "
          f"{d_soc:.1e}), max |dT| {d_t:.2e} K: {'same' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Record one orbit of the 81-member cluster (configs/suncatcher-cluster.toml) through ``ClusterModel``, to prove a
change of the physics leaves it unchanged (or to find the first step where it does not).

    .venv/bin/python bench/cluster_orbit_record.py OUT_DIR            # in each checkout (before, after)
    .venv/bin/python bench/cluster_orbit_record.py --compare BEFORE AFTER

OUT_DIR gets ``digests.txt`` (a SHA-256 of every state array of power, thermal, heaters and accelerators and of the
bound member's board truth, after every step), ``truth.json`` (``truth()`` every 60 s), ``events.json`` (every event
with its step) and ``final.npz`` (every state array after the last step). ``--compare`` prints the first step whose
digest differs and which arrays differ at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.models.cluster import ClusterModel

try:  # the one config loader (a run spec); checkouts before it had the cluster's own
    from emulator.models.cluster import load_cluster_config as load_config  # type: ignore[attr-defined]
except ImportError:
    from emulator.config import load_config

NS = 1_000_000_000
PARTS = ("power", "thermal", "heaters", "accel")


def arrays(obj: Any) -> dict[str, np.ndarray]:
    return {k: v for k, v in sorted(vars(obj).items()) if isinstance(v, np.ndarray)}


def record(out: Path) -> None:
    m = ClusterModel.from_config(load_config(ROOT / "configs" / "suncatcher-cluster.toml"))
    a_km = 6378.137 + m.config.satellite.orbit.alt_km
    steps = round(2 * math.pi * math.sqrt(a_km ** 3 / 398600.4418))
    digests, truths, events, final = [], [], [], {}
    t0 = time.perf_counter()
    for k in range(steps):
        m.step(k * NS, NS)
        h = hashlib.sha256()
        for part in PARTS:
            for name, v in arrays(getattr(m, part)).items():
                h.update(f"{part}.{name}".encode())
                h.update(np.ascontiguousarray(v).tobytes())
                if k == steps - 1:
                    final[f"{part}.{name}"] = v.copy()
        for b in m.boards.values():
            h.update(json.dumps(b.truth(), sort_keys=True, default=str).encode())
        digests.append(h.hexdigest())
        ev = m.drain_events()
        if ev:
            events.append([k, ev])
        if k % 60 == 59:
            truths.append(m.truth())
    out.mkdir(parents=True, exist_ok=True)
    (out / "digests.txt").write_text("\n".join(digests) + "\n")
    (out / "truth.json").write_text(json.dumps(truths, default=str))
    (out / "events.json").write_text(json.dumps(events, default=str))
    np.savez(out / "final.npz", **final)
    print(f"{steps} steps of {m.n} members in {time.perf_counter() - t0:.1f} s; last digest {digests[-1]}")


def compare(before: Path, after: Path) -> int:
    da = (before / "digests.txt").read_text().split()
    db = (after / "digests.txt").read_text().split()
    first = next((k for k, (x, y) in enumerate(zip(da, db, strict=False)) if x != y), None)
    same_len = len(da) == len(db)
    print(f"digests: {len(da)} vs {len(db)} steps; first differing step: {first}")
    for name in ("truth.json", "events.json"):
        print(f"{name}: {'same' if (before / name).read_bytes() == (after / name).read_bytes() else 'DIFFERENT'}")
    fa, fb = np.load(before / "final.npz"), np.load(after / "final.npz")
    for key in sorted(set(fa) | set(fb)):
        if key not in fa or key not in fb:
            print(f"final {key}: only in {'after' if key not in fa else 'before'}")
        elif fa[key].shape != fb[key].shape or not np.array_equal(fa[key], fb[key], equal_nan=True):
            print(f"final {key}: before {fa[key].ravel()[:4]} after {fb[key].ravel()[:4]}")
    return 0 if first is None and same_len else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        raise SystemExit(compare(*args.compare))
    if args.out is None:
        ap.error("give OUT_DIR or --compare BEFORE AFTER")
    record(args.out)


if __name__ == "__main__":
    main()

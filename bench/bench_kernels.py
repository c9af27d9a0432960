"""Benchmark: which kernel technology lets one implementation of a physics stage serve the single satellite (N = 1)
and the fleet (N = 81)? Two stages, each in every form side by side in one run:

* the power step's battery stage (``bench/numba_kernels.py`` ``battery_one``: OCV lookup, R(T), the P = V I quadratic
  with the charge limits, the mean-OCV second pass, the SoC update) as scalar Python (the single satellite's style),
  numpy arrays (``PowerArrays``' style) and numba ``@njit(cache=True)``, at N = 1 and N = 81; beside them today's whole
  power step, ``PowerSystem.step`` (N = 1) and ``PowerArrays.step`` (N = 1 and 81);
* the thermal backward-Euler step as today's ``ThermalNetwork.advance`` (N = 1), ``ThermalBatch.step`` (N = 1, 81)
  and numba (N = 1, 81).

Every form of a stage is checked against the others (1e-12) before it is timed. Then numba's life cycle, each in a
fresh process: ``import numba``; the first run with an empty on-disk cache (compile + cache write); the first run
with the cache filled (load); and the whole process for both.

    .venv/bin/python -m pip install -e '.[kernels]'   # numba (a bench extra, not a runtime dependency)
    .venv/bin/python bench/bench_kernels.py [--steps 3000] [--repeats 5]

Best of ``--repeats``; the machine is shared, so the ratios in one run are what counts.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numba_kernels as K

from emulator.models.cluster import PowerArrays, ThermalBatch
from emulator.models.power import PowerConfig, PowerSystem
from emulator.models.thermal import KELVIN, ThermalConfig, ThermalNetwork

CONFIG = ROOT / "configs" / "suncatcher-proto.toml"
FLEET = 81
DT_S = 1.0
ORBIT_S = 5862
ECLIPSE = (0.35, 0.72)
INSTALL = ".venv/bin/python -m pip install -e '.[kernels]'"


def have_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


Forms = dict[str, Any]
Checks = list[Any]


def timed(forms: Forms, steps: int, repeats: int) -> dict[str, float]:
    """Best per-step time of every form; the forms take turns in each repeat (the load of a shared machine then
    falls on all of them alike)."""
    out = dict.fromkeys(forms, math.inf)
    for _ in range(repeats):
        for key, fn in forms.items():
            t0 = time.perf_counter()
            fn()
            out[key] = min(out[key], (time.perf_counter() - t0) / steps)
    return out


# -- inputs: an orbit of net bus power and battery temperature per member ---------------------------------------------
def inputs(n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(steps)[:, None] + 97.0 * np.arange(n)[None, :]  # members a little apart along the orbit
    phase = (t % ORBIT_S) / ORBIT_S
    sun = (phase < ECLIPSE[0]) | (phase >= ECLIPSE[1])
    net_w = np.where(sun, 900.0, -650.0) + 40.0 * np.sin(t / 13.0)   # the wings' surplus, the eclipse deficit
    temp_degc = 15.0 + 8.0 * np.sin(2 * np.pi * phase)
    return net_w, temp_degc


# -- the battery stage on numpy arrays, as PowerArrays writes it ------------------------------------------------------
class BatteryNumpy:
    def __init__(self, pack: np.ndarray, s: np.ndarray, v: np.ndarray, cum: np.ndarray) -> None:
        self.r25, self.r_b, self.r_sum_inv, self.q, self.v_eoc, self.i_chg_max, self.chg_min_t, self.groups = pack
        self.s, self.v, self.cum = s, v, cum

    def ocv(self, soc: np.ndarray) -> np.ndarray:
        return np.interp(soc, self.s, self.v) * self.groups

    def energy(self, soc: np.ndarray) -> np.ndarray:
        s, v, cum = self.s, self.v, self.cum
        soc = np.clip(soc, 0.0, 1.0)
        i = np.clip(np.searchsorted(s, soc, side="right"), 1, len(s) - 1)
        x = soc - s[i - 1]
        return cum[i - 1] + v[i - 1] * x + 0.5 * (v[i] - v[i - 1]) / (s[i] - s[i - 1]) * x * x

    def solve(self, net: np.ndarray, ocv: np.ndarray, rr: np.ndarray, cold: np.ndarray) -> tuple[np.ndarray,
                                                                                               np.ndarray]:
        chg = net >= 0.0
        i_max = np.minimum((self.v_eoc - ocv) / rr, self.i_chg_max)
        i_max = np.where((i_max < 0.0) | cold, 0.0, i_max)
        p_max = (ocv + i_max * rr) * i_max
        full = chg & (net > p_max)
        disc = ocv * ocv + 4.0 * rr * net
        i_q = (-ocv + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * rr)
        i = np.where(full, i_max, np.where(chg | (disc >= 0.0), i_q, 0.0))
        return i, np.where(full, net - p_max, 0.0)

    def step(self, soc0: np.ndarray, net: np.ndarray, temp: np.ndarray, dt_s: float) -> tuple[np.ndarray, ...]:
        ocv = self.ocv(soc0)
        rr = self.r25 * np.exp(self.r_b * (1.0 / (temp + 273.15) - 1.0 / 298.15)) * self.r_sum_inv
        cold = temp < self.chg_min_t
        i, shunt = self.solve(net, ocv, rr, cold)
        end = soc0 + i * dt_s / self.q
        s = self.s
        seg0 = np.clip(np.searchsorted(s, soc0, side="right"), 1, len(s) - 1)
        seg1 = np.clip(np.searchsorted(s, end, side="right"), 1, len(s) - 1)
        cross = (seg0 != seg1) & (end >= 0.0) & (end <= 1.0) & (soc0 >= 0.0) & (soc0 <= 1.0)
        mid = self.ocv(np.maximum(soc0 + 0.5 * i * dt_s / self.q, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (self.energy(end) - self.energy(soc0)) / (end - soc0) * self.groups
        ocv2 = np.where(i == 0.0, ocv, np.where(cross, mean, mid))
        i2, shunt2 = self.solve(net, ocv2, rr, cold)
        i = np.where(i == 0.0, i, i2)
        shunt = np.where(i == 0.0, shunt, shunt2)
        soc = np.clip(soc0 + i * dt_s / self.q, 0.0, 1.0)
        return soc, i, ocv2, ocv2 + i * rr, shunt


def battery_setup(cfg: PowerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    ps = PowerSystem(cfg)
    b = cfg.battery
    pack = np.array([ps.r25, b.r_activation_k, ps.r_sum_inv, ps.q_pack_c, ps.v_eoc, ps.i_chg_max,
                     b.charge_min_temp_degc, float(ps.connected_groups)])
    s = np.array([p[0] for p in b.ocv_table])
    v = np.array([p[1] for p in b.ocv_table])
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(s))])
    return pack, s, v, cum, b.initial_soc


def bench_battery(cfg: PowerConfig, steps: int, jit: dict[str, Any] | None, forms: Forms, checks: Checks) -> None:
    pack, s, v, cum, soc_init = battery_setup(cfg)
    pk = pack.tolist()
    sl, vl, cl = s.tolist(), v.tolist(), cum.tolist()
    def per_n(n: int) -> None:  # one scope per N: the forms keep their own inputs
        net, temp = inputs(n, steps)
        net_l, temp_l = net.tolist(), temp.tolist()
        results: dict[str, np.ndarray] = {}

        def python(n: int = n, net_l: list[list[float]] = net_l, temp_l: list[list[float]] = temp_l) -> None:
            one = K.battery_one
            soc = [soc_init] * n
            for row_net, row_t in zip(net_l, temp_l, strict=True):
                for k in range(n):
                    soc[k] = one(soc[k], row_net[k], row_t[k], DT_S, *pk, sl, vl, cl)[0]
            results["python"] = np.array(soc)

        bn = BatteryNumpy(pack, s, v, cum)

        def numpy_(n: int = n, net: np.ndarray = net, temp: np.ndarray = temp) -> None:
            soc = np.full(n, soc_init)
            for j in range(steps):
                soc = bn.step(soc, net[j], temp[j], DT_S)[0]
            results["numpy"] = soc

        mine = {"python": python, "numpy": numpy_}
        if jit is not None:
            loop, one_jit = jit["battery_loop"], jit["battery_one"]

            def numba_(n: int = n, net: np.ndarray = net, temp: np.ndarray = temp) -> None:
                o = np.empty((5, n))
                soc = np.full(n, soc_init)
                for j in range(steps):
                    loop(soc, net[j], temp[j], DT_S, pack, s, v, cum, o)
                    soc[:] = o[0]
                results["numba"] = soc

            mine["numba"] = numba_
            if n == 1:  # N = 1 as the single satellite would call it: scalars in, a tuple out
                def numba_scalar(net_l: list[list[float]] = net_l, temp_l: list[list[float]] = temp_l) -> None:
                    soc = soc_init
                    for row_net, row_t in zip(net_l, temp_l, strict=True):
                        soc = one_jit(soc, row_net[0], row_t[0], DT_S, *pk, s, v, cum)[0]
                    results["numba_scalar"] = np.array([soc])

                mine["numba_scalar"] = numba_scalar
        forms.update({f"battery {name} N={n}": fn for name, fn in mine.items()})

        def check(n: int = n, results: dict[str, np.ndarray] = results) -> None:
            ref = results["python"]
            for name, got in results.items():
                if not np.allclose(got, ref, rtol=1e-12, atol=1e-12):
                    raise SystemExit(f"battery stage N={n}: {name} differs from python: {got[:3]} != {ref[:3]}")

        checks.append(check)

    for n in (1, FLEET):
        per_n(n)



def bench_power_today(cfg: PowerConfig, steps: int, forms: Forms) -> None:
    """Today's whole power step (five stages), for scale: PowerSystem.step and PowerArrays.step."""
    na = len(cfg.arrays)
    nr = len(cfg.rails)
    def per_n(n: int) -> None:  # one scope per N: the forms keep their own inputs
        net, temp = inputs(n, steps)
        solar = np.where(net > 0.0, 1361.0, 0.0)
        loads = [0.0] * nr
        if n == 1:
            solar_l, temp_l = solar[:, 0].tolist(), temp[:, 0].tolist()

            def single() -> None:
                ps = PowerSystem(cfg)
                for g, tb in zip(solar_l, temp_l, strict=True):
                    ps.step(DT_S, [g] * na, [40.0] * na, tb, loads)

            forms["power today PowerSystem.step N=1"] = single
        b = cfg.battery

        def arrays(n: int = n, solar: np.ndarray = solar, temp: np.ndarray = temp) -> None:
            pa = PowerArrays(cfg, n, initial_soc=np.full(n, b.initial_soc),
                             cell_capacity_ah=np.full(n, b.cell_capacity_ah), cell_r_ohm=np.full(n, b.cell_r_ohm),
                             mppt_efficiency=np.full(n, cfg.mppt_efficiency),
                             degradation=np.array([[a.degradation] * n for a in cfg.arrays]))
            at = np.full((na, n), 40.0)
            ld = np.zeros((nr, n))
            for j in range(steps):
                pa.step(DT_S, np.repeat(solar[j][None, :], na, axis=0), at, temp[j], ld)

        forms[f"power today PowerArrays.step N={n}"] = arrays

    for n in (1, FLEET):
        per_n(n)



def bench_thermal(tcfg: ThermalConfig, steps: int, jit: dict[str, Any] | None, forms: Forms, checks: Checks) -> None:
    net = ThermalNetwork(tcfg)
    # one linearisation for the whole run in the arrays and numba forms (a relinearisation is one small solve every
    # >= 10 s of sim time, the same in every form), so their temperatures can be compared
    net.tol_k = math.inf
    nn = net.n
    rad = np.array([j for j in range(nn) if net.k_rad[j] > 0.0], dtype=np.int64)
    T0 = np.array([nd.initial_temp_degc + KELVIN for nd in tcfg.nodes])
    def per_n(n: int) -> None:  # one scope per N: the forms keep their own inputs
        rng = np.random.default_rng(1)
        q = rng.uniform(0.0, 30.0, (steps, nn, n))
        results: dict[str, np.ndarray] = {}
        if n == 1:
            q_l = [q[j, :, 0].tolist() for j in range(steps)]

            def today() -> None:
                tn = ThermalNetwork(tcfg)
                tn.track_energy = False
                for j in range(steps):
                    tn.advance(DT_S, tn.T.tolist(), q_l[j])
                results["today"] = tn.T[:, None].copy()

            forms["thermal today ThermalNetwork.advance N=1"] = today

        def batch(n: int = n, q: np.ndarray = q) -> None:
            tb = ThermalBatch(net, n, np.repeat(T0[:, None], n, axis=1), np.zeros((nn, 0)), np.zeros(nn))
            for j in range(steps):
                tb.step(DT_S, q[j])
            results["arrays"] = tb.T.copy()

        forms[f"thermal today ThermalBatch.step N={n}"] = batch
        if jit is not None:
            kernel = jit["thermal"]
            tb0 = ThermalBatch(net, n, np.repeat(T0[:, None], n, axis=1), np.zeros((nn, 0)), np.zeros(nn))
            tb0.step(DT_S, q[0])  # builds B about the same linearisation as the arrays run
            B = tb0.B
            Bc = np.ascontiguousarray(np.concatenate([B[:, :nn], B[:, nn + rad], B[:, 2 * nn:3 * nn], B[:, -1:]],
                                                     axis=1))

            def numba_(n: int = n, q: np.ndarray = q) -> None:
                T = np.repeat(T0[:, None], n, axis=1)
                o = np.empty_like(T)
                for j in range(steps):
                    kernel(Bc, T, rad, q[j], o)
                    T, o = o, T
                results["numba"] = T

            forms[f"thermal numba N={n}"] = numba_

        def check(n: int = n, results: dict[str, np.ndarray] = results) -> None:
            if "numba" in results and not np.allclose(results["numba"], results["arrays"], rtol=1e-12, atol=1e-9):
                raise SystemExit(f"thermal N={n}: numba differs from ThermalBatch")

        checks.append(check)

    for n in (1, FLEET):
        per_n(n)



# -- numba's life cycle, each in a fresh process ------------------------------------------------------------------------
LIFECYCLE = r"""
import sys, time, json
t_start = time.perf_counter()
import numpy as np
t_np = time.perf_counter()
import numba
t_numba = time.perf_counter()
sys.path.insert(0, {bench!r})
import numba_kernels as K
jit = K.compiled()
s = np.array([0.0, 0.5, 1.0]); v = np.array([3.0, 3.7, 4.2]); cum = np.array([0.0, 1.675, 3.65])
pack = np.array([0.05, 1000.0, 1.0, 10800.0, 33.2, 1.5, 0.0, 8.0])
o = np.empty((5, 2))
t0 = time.perf_counter()
jit["battery_loop"](np.full(2, 0.5), np.full(2, 10.0), np.full(2, 20.0), 1.0, pack, s, v, cum, o)
jit["battery_one"](0.5, 10.0, 20.0, 1.0, 0.05, 1000.0, 1.0, 10800.0, 33.2, 1.5, 0.0, 8.0, s, v, cum)
jit["thermal"](np.eye(3, 7), np.ones((3, 2)), np.array([0], dtype=np.int64), np.ones((3, 2)), np.empty((3, 2)))
t1 = time.perf_counter()
print(json.dumps({{"import_numpy_s": t_np - t_start, "import_numba_s": t_numba - t_np, "first_calls_s": t1 - t0}}))
"""


def lifecycle() -> dict[str, float]:
    import json

    code = LIFECYCLE.format(bench=str(ROOT / "bench"))
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for phase in ("compile", "cached"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            whole = time.perf_counter() - t0
            got = json.loads(proc.stdout)
            out[f"{phase}: import numba"] = got["import_numba_s"]
            out[f"{phase}: first calls of the 3 kernels"] = got["first_calls_s"]
            out[f"{phase}: whole process"] = whole
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy"], check=True)
    out["baseline: a process importing numpy only"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    raw = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    pcfg = PowerConfig.model_validate(raw["power"])
    tcfg = ThermalConfig.model_validate(raw["thermal"])
    jit = None
    if have_numba():
        jit = K.compiled()
    else:
        print(f"numba is not installed: its columns are left out ({INSTALL})")
    forms: Forms = {}
    checks: Checks = []
    bench_battery(pcfg, args.steps, jit, forms, checks)
    bench_power_today(pcfg, args.steps, forms)
    bench_thermal(tcfg, args.steps, jit, forms, checks)
    for fn in forms.values():  # the numba kernels compile (or load from the cache) here, outside the timing
        fn()
    for check in checks:
        check()
    res = timed(forms, args.steps, args.repeats)
    for check in checks:
        check()
    print(f"per step, best of {args.repeats} x {args.steps} steps (us per step; per member-step at N={FLEET})")
    for key, sec in res.items():
        us = sec * 1e6
        per = f"   {us / FLEET:8.3f} us per member" if key.endswith(f"N={FLEET}") else ""
        print(f"  {key:48s} {us:10.2f} us{per}")

    def ratio(a: str, b: str) -> None:
        if a in res and b in res:
            print(f"  {a} / {b}: {res[a] / res[b]:.2f}")

    print("ratios (> 1: the first is slower)")
    ratio("battery numba N=1", "battery python N=1")
    ratio("battery numba_scalar N=1", "battery python N=1")
    ratio("battery numpy N=1", "battery python N=1")
    ratio(f"battery numba N={FLEET}", f"battery numpy N={FLEET}")
    ratio(f"battery python N={FLEET}", f"battery numpy N={FLEET}")
    ratio("thermal numba N=1", "thermal today ThermalNetwork.advance N=1")
    ratio("thermal today ThermalBatch.step N=1", "thermal today ThermalNetwork.advance N=1")
    ratio(f"thermal numba N={FLEET}", f"thermal today ThermalBatch.step N={FLEET}")
    ratio("power today PowerArrays.step N=1", "power today PowerSystem.step N=1")
    if jit is not None:
        print("numba life cycle (seconds; each phase a fresh process, NUMBA_CACHE_DIR shared between them)")
        for key, sec in lifecycle().items():
            print(f"  {key:48s} {sec:8.3f} s")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}"
          + (f", numba {__import__('numba').__version__}" if jit is not None else "")
          + f", {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Accelerator board: every state transition, power equations, throughput, real job results, ECC, SEFI, latch-up
(against the real PDU limiter), the hot case with a one-node radiator, commands, external mode, wire schemas."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from emulator.errors import CommandError, ModelError
from emulator.models.accelerator import (
    TRANSITIONS,
    AcceleratorBoard,
    AcceleratorConfig,
    BoardState,
    DvfsSet,
    JobCancel,
    JobSubmit,
    JobVerdict,
    Report,
    ResetCmd,
    job_result,
    result_digest,
)
from emulator.models.radiation import RadiationConfig
from emulator.protocol.catalogue import Catalogue, Kind

S = BoardState
V12 = 12.0
NS = 1_000_000_000
POWER_TOL_W = 1e-9           # closed-form power, float rounding only
THROUGHPUT_TOL_S = 1.0       # a job's completion is resolved to the 1 s step
HOT_TOL_DEGC = 1.0           # a threshold crossing is seen within one step's temperature rise (< 1 K here)
SIGMA_SB = 5.670374419e-8    # Stefan-Boltzmann, W m^-2 K^-4 (CODATA 2018)


def quiet_rad(**kw: object) -> RadiationConfig:
    """No random single-event effects (events are injected by the tests)."""
    base: dict[str, object] = {"rad_per_seu": None, "rad_per_mbu": None, "rad_per_sdc": None, "rad_per_sefi": None,
                               "rad_per_sel": None}
    base.update(kw)
    return RadiationConfig(**base)  # type: ignore[arg-type]


class Drv:
    """Steps a board at 1 s with chosen inputs and collects its events."""

    def __init__(self, cfg: AcceleratorConfig | None = None, rad: RadiationConfig | None = None, seed: int = 1):
        self.b = AcceleratorBoard(cfg or AcceleratorConfig(), rad or quiet_rad(), np.random.default_rng(seed))
        self.t_ns = 0
        self.supply_v = V12
        self.temp = 40.0
        self.dose = 0.0
        self.events: list[tuple[str, dict]] = []

    def step(self, n: int = 1, **kw: float) -> AcceleratorBoard:
        for _ in range(n):
            self.b.step(self.t_ns, 1.0, supply_v=kw.get("supply_v", self.supply_v),
                        die_temp_degc=kw.get("temp", self.temp), dose_rate_rad_s=kw.get("dose", self.dose),
                        rad_flux_factor=1.0)
            self.t_ns += NS
            self.events += self.b.drain_events()
        return self.b

    def boot(self) -> AcceleratorBoard:
        for _ in range(int(self.b.config.boot_s) + 2):
            self.step()
            if self.b.state is S.IDLE:
                break
        assert self.b.state is S.IDLE
        return self.b

    def topics(self, topic: str) -> list[dict]:
        return [p for t, p in self.events if t == topic]

    @property
    def state(self) -> BoardState:
        return self.b.state


# -- every transition of the table -----------------------------------------------------------------------------------
def _reach(state: BoardState) -> Drv:
    d = Drv()
    if state is S.OFF:
        return d
    d.step()
    if state is S.BOOTING:
        return d
    d.boot()
    if state is S.IDLE:
        return d
    if state is S.BUSY:
        d.b.cmd_job_submit(JobSubmit(kind="training", size=100))
        return d
    if state is S.THROTTLED:
        d.temp = 90.0
        d.step()
        return d
    if state is S.HUNG:
        d.b.inject("sefi")
        return d
    if state is S.LATCHED_UP:
        d.b.inject("sel")
        return d
    raise AssertionError(state)


def _cool(d: Drv) -> None:
    d.temp = 40.0
    d.step()


def _busy_then_cool(d: Drv) -> None:
    d.b.cmd_job_submit(JobSubmit(kind="training", size=1000))
    _cool(d)


def _boot_hot(d: Drv) -> None:
    d.step(int(d.b.config.boot_s) + 2, temp=90.0)  # the hardware slowdown comes on while booting


def _external_board_reports_work_while_booting(d: Drv) -> None:
    d.b = AcceleratorBoard(AcceleratorConfig(mode="external"), quiet_rad(), np.random.default_rng(1))
    d.step()
    assert d.b.state is S.BOOTING
    d.b.cmd_report(Report(power_w=20.0, utilisation=0.9))


TRIGGERS: dict[tuple[BoardState, BoardState], Callable[[Drv], object]] = {
    (S.OFF, S.BOOTING): lambda d: d.step(),
    (S.BOOTING, S.IDLE): lambda d: d.boot(),
    (S.BOOTING, S.THROTTLED): _boot_hot,
    (S.BOOTING, S.BUSY): _external_board_reports_work_while_booting,
    (S.BOOTING, S.OFF): lambda d: d.step(supply_v=0.0),
    (S.BOOTING, S.HUNG): lambda d: d.b.inject("sefi"),
    (S.BOOTING, S.LATCHED_UP): lambda d: d.b.inject("sel"),
    (S.IDLE, S.BUSY): lambda d: d.b.cmd_job_submit(JobSubmit(kind="inference", size=10)),
    (S.IDLE, S.THROTTLED): lambda d: d.step(temp=90.0),
    (S.IDLE, S.BOOTING): lambda d: d.b.cmd_reset(ResetCmd()),
    (S.IDLE, S.OFF): lambda d: d.step(supply_v=0.0),
    (S.IDLE, S.HUNG): lambda d: d.b.inject("sefi"),
    (S.IDLE, S.LATCHED_UP): lambda d: d.b.inject("sel"),
    (S.BUSY, S.IDLE): lambda d: d.step(240),   # 100 training steps at 4 x 1500 MHz: 233 s
    (S.BUSY, S.THROTTLED): lambda d: d.step(temp=90.0),
    (S.BUSY, S.BOOTING): lambda d: d.b.cmd_reset(ResetCmd()),
    (S.BUSY, S.OFF): lambda d: d.step(temp=93.0),
    (S.BUSY, S.HUNG): lambda d: d.b.inject("sefi"),
    (S.BUSY, S.LATCHED_UP): lambda d: d.b.inject("sel"),
    (S.THROTTLED, S.IDLE): _cool,
    (S.THROTTLED, S.BUSY): _busy_then_cool,
    (S.THROTTLED, S.BOOTING): lambda d: d.b.cmd_reset(ResetCmd()),
    (S.THROTTLED, S.OFF): lambda d: d.step(supply_v=0.0),
    (S.THROTTLED, S.HUNG): lambda d: d.b.inject("sefi"),
    (S.THROTTLED, S.LATCHED_UP): lambda d: d.b.inject("sel"),
    (S.HUNG, S.BOOTING): lambda d: d.b.cmd_reset(ResetCmd()),
    (S.HUNG, S.OFF): lambda d: d.step(supply_v=0.0),
    (S.HUNG, S.LATCHED_UP): lambda d: d.b.inject("sel"),
    (S.LATCHED_UP, S.OFF): lambda d: d.step(supply_v=0.0),
    (S.LATCHED_UP, S.FAILED): lambda d: d.step(6),
}

EDGES = sorted((a, b) for a, tos in TRANSITIONS.items() for b in tos)


def test_every_table_edge_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(EDGES)


@pytest.mark.parametrize(("src", "dst"), EDGES, ids=[f"{a}->{b}" for a, b in EDGES])
def test_transition(src: BoardState, dst: BoardState) -> None:
    d = _reach(src)
    assert d.state is src
    TRIGGERS[(src, dst)](d)
    assert d.state is dst
    d.events += d.b.drain_events()
    last = d.topics("accel.state")[-1]
    assert (last["previous"], last["state"]) == (src.value, dst.value)


def test_illegal_transition_is_a_model_error() -> None:
    d = Drv()
    with pytest.raises(ModelError) as exc:
        d.b._set_state(S.BUSY, "test")
    assert exc.value.field == "state" and exc.value.valid == [S.BOOTING]
    d = _reach(S.LATCHED_UP)
    d.step(6)
    assert d.state is S.FAILED
    for target in S:
        if target is not S.FAILED:
            with pytest.raises(ModelError):
                d.b._set_state(target, "test")


def test_state_events_follow_the_table() -> None:
    d = _reach(S.BUSY)
    d.step(temp=90.0)
    d.b.inject("sefi")
    d.b.cmd_reset(ResetCmd())
    d.step(supply_v=0.0)
    d.step(25)
    for p in d.topics("accel.state"):
        assert S(p["state"]) in TRANSITIONS[S(p["previous"])]


# -- power ---------------------------------------------------------------------------------------------------------
def _expected_power(cfg: AcceleratorConfig, level: str, util: float, temp: float, dose_krad: float = 0.0,
                    leak_per_krad: float = 0.02) -> float:
    top = cfg.dvfs[-1]
    lv = next(x for x in cfg.dvfs if x.name == level)
    cap = cfg.dynamic_max_w / (top.core_v ** 2 * top.clock_mhz * 1e6)
    dyn = cfg.chips * cap * lv.core_v ** 2 * lv.clock_mhz * 1e6 * util
    leak = (cfg.chips * cfg.leakage_ref_w * lv.core_v / top.core_v
            * 2 ** ((temp - cfg.leakage_ref_degc) / cfg.leakage_doubling_degc) * (1 + leak_per_krad * dose_krad))
    return cfg.board_base_w + leak + dyn


@pytest.mark.parametrize("level", ["low", "mid", "high", "max"])
def test_busy_power_is_leakage_plus_cv2f(level: str) -> None:
    d = _reach(S.IDLE)
    d.b.cmd_dvfs_set(DvfsSet(level=level))
    d.b.cmd_job_submit(JobSubmit(kind="training", size=1000))
    d.step(temp=70.0)
    assert d.b.utilisation == 1.0
    assert d.b.load_w == pytest.approx(_expected_power(d.b.config, level, 1.0, 70.0), abs=POWER_TOL_W)
    assert d.b.heat_w == d.b.load_w


def test_dynamic_power_scales_as_v2_f() -> None:
    cfg = AcceleratorConfig()
    p = {}
    for level in ("low", "max"):
        d = _reach(S.IDLE)
        d.b.cmd_dvfs_set(DvfsSet(level=level))
        d.step(temp=60.0)
        idle = d.b.load_w
        d.b.cmd_job_submit(JobSubmit(kind="training", size=1000))
        d.step(temp=60.0)
        p[level] = (d.b.load_w - idle) / (1 - cfg.idle_utilisation)
    lo, hi = cfg.dvfs[0], cfg.dvfs[-1]
    assert p["max"] == pytest.approx(cfg.chips * cfg.dynamic_max_w, rel=1e-12)
    assert p["low"] / p["max"] == pytest.approx(lo.core_v ** 2 * lo.clock_mhz / (hi.core_v ** 2 * hi.clock_mhz),
                                                rel=1e-12)


def test_leakage_doubles_every_doubling_interval_and_grows_with_dose() -> None:
    cfg = AcceleratorConfig(dynamic_max_w=1e-9, board_base_w=0.0)  # leakage alone
    d = _reach(S.IDLE)
    d.b = AcceleratorBoard(cfg, quiet_rad(), np.random.default_rng(1))
    d.boot()
    d.step(temp=40.0)
    p40 = d.b.load_w
    d.step(temp=40.0 + cfg.leakage_doubling_degc)
    assert d.b.load_w == pytest.approx(2 * p40, rel=1e-6)
    dosed = Drv(cfg, quiet_rad(initial_dose_krad=10.0))
    dosed.boot()
    dosed.step(temp=40.0)
    assert dosed.b.load_w == pytest.approx(p40 * (1 + 0.02 * 10.0), rel=1e-6)


def test_supply_off_brownout_and_power_events() -> None:
    d = _reach(S.IDLE)
    assert d.topics("accel.power") == [{"on": True, "reason": "rail_on"}]
    d.step(supply_v=3.0)                                   # below min_supply_v 4.5 V
    assert d.state is S.OFF and d.b.load_w == 0.0
    d.step(supply_v=0.0)
    d.step()
    d.step(supply_v=0.0)
    reasons = [(p["on"], p["reason"]) for p in d.topics("accel.power")]
    assert reasons == [(True, "rail_on"), (False, "brownout"), (True, "rail_on"), (False, "rail_off")]


def test_max_power_is_full_load_at_shutdown_temperature() -> None:
    cfg = AcceleratorConfig()
    assert cfg.max_power_w == pytest.approx(_expected_power(cfg, "max", 1.0, cfg.shutdown_degc), rel=1e-12)
    assert AcceleratorConfig(mode="external", external_max_power_w=40.0).max_power_w == 40.0


# -- jobs ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("level", "kind", "size"), [("max", "inference", 3000), ("low", "inference", 3000),
                                                     ("high", "training", 20)])
def test_job_time_follows_clock(level: str, kind: str, size: int) -> None:
    d = _reach(S.IDLE)
    cfg = d.b.config
    d.b.cmd_dvfs_set(DvfsSet(level=level))
    d.b.cmd_job_submit(JobSubmit(kind=kind, size=size, id=7))
    clock_hz = next(x.clock_mhz for x in cfg.dvfs if x.name == level) * 1e6
    mcyc = cfg.inference_unit_mcycles if kind == "inference" else cfg.training_unit_mcycles
    expected_s = size * mcyc * 1e6 / (cfg.chips * clock_hz)
    d.step(int(expected_s) + 2)
    done = d.topics("accel.job.done")
    assert len(done) == 1 and done[0]["ok"] and done[0]["id"] == 7
    assert done[0]["duration_s"] == pytest.approx(expected_s, abs=THROUGHPUT_TOL_S)
    assert d.state is S.IDLE


def test_hardware_throttle_halves_throughput() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="training", size=1000))
    d.step(10, temp=90.0)  # software cap to "mid" (1000 MHz) and duty 0.5
    left = d.b.queue[0].left_cycles
    d.step(10, temp=90.0)
    rate = (left - d.b.queue[0].left_cycles) / 10
    assert rate == pytest.approx(4 * 1000e6 * 0.5, rel=1e-12)
    assert d.b.status()["clock_mhz"] == 500.0 and d.b.status()["throttle"] == "hardware"


def _portable_recipe(seed: int, kind: str, dim: int) -> list[int]:
    """The documented job recipe in plain Python integers (independent of numpy)."""
    m64 = (1 << 64) - 1
    salt = {"inference": 1, "training": 2}[kind]
    v = []
    for k in range(1, 2 * dim * dim + 1):
        x = (seed * 6364136223846793005 + k * 1442695040888963407 + salt) & m64
        x ^= x >> 29
        x = (x * 0xBF58476D1CE4E5B9) & m64
        v.append((x >> 40) % 255 - 127)
    a, b = v[:dim * dim], v[dim * dim:]
    out = []
    for i in range(dim):
        for j in range(dim):
            out.append(max(0, sum(a[i * dim + k] * b[k * dim + j] for k in range(dim))))
    return out


@pytest.mark.parametrize(("seed", "kind"), [(0, "inference"), (1, "training"), (2**63 - 1, "inference")])
def test_job_result_matches_the_portable_recipe(seed: int, kind: str) -> None:
    ref = _portable_recipe(seed, kind, 16)
    got = job_result(seed, kind, 16)
    assert got.reshape(-1).tolist() == ref
    raw = b"".join(int(x).to_bytes(4, "little", signed=True) for x in ref)
    assert result_digest(got) == hashlib.sha256(raw).hexdigest()


def test_sdc_flips_one_bit_and_a_verdict_detects_it() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="inference", size=2000, id=1, seed=99))
    d.step()
    ev = d.b.inject("sdc", chip=2)
    assert ev is not None and ev.effect == "corrupted" and ev.job_id == 1
    d.step(40)
    done = d.topics("accel.job.done")[0]
    good = job_result(99, "inference", 16).reshape(-1)
    assert done["ok"] and done["digest"] != result_digest(good.reshape(16, 16))
    diff = [(i, int(v) ^ int(w)) for i, (v, w) in enumerate(zip(done["values"], good[:4].tolist(), strict=True))
            if v != w]
    bits_checksum = done["checksum"] - int(good.astype(np.int64).sum())
    assert len(diff) <= 1 and bits_checksum != 0
    if diff:
        assert (diff[0][1] & 0xFFFFFFFF).bit_count() == 1
    assert d.b.truth()["jobs_corrupted"] == 1
    assert [e.id for e in d.b.unhandled("sdc")] == [ev.id]
    d.b.cmd_job_verdict(JobVerdict(id=1, ok=False))
    assert ev.handled and ev.how == "verdict" and not d.b.unhandled()
    assert d.b.truth()["verdicts"]["true_positive"] == 1


def test_sdc_missed_by_the_checker_stays_unhandled_and_resubmission_handles_it() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="inference", size=200, id=3, seed=5))
    d.step()
    ev = d.b.inject("sdc")
    d.step(5)
    d.b.cmd_job_verdict(JobVerdict(id=3, ok=True))
    assert ev is not None and not ev.handled and ev.effect == "escaped"
    assert d.b.truth()["verdicts"]["missed"] == 1
    d.b.cmd_job_submit(JobSubmit(kind="inference", size=200, seed=5))  # dual execution after the fact
    assert ev.handled and ev.how == "resubmitted"


def test_sdc_on_an_idle_board_is_masked() -> None:
    d = _reach(S.IDLE)
    ev = d.b.inject("sdc")
    assert ev is not None and ev.effect == "masked" and ev.handled


def test_clean_job_rejected_is_a_false_alarm() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="inference", size=10, id=4))
    d.step(2)
    d.b.cmd_job_verdict(JobVerdict(id=4, ok=False))
    assert d.b.truth()["verdicts"]["false_alarm"] == 1


# -- memory ----------------------------------------------------------------------------------------------------------
def test_seu_is_corrected_and_counted() -> None:
    d = _reach(S.IDLE)
    ev = d.b.inject("seu", chip=1)
    assert ev is not None and ev.kind == "seu" and ev.handled and ev.how == "ecc"
    assert d.b.status()["ecc_corrected"] == 1 and d.b.status()["ecc_uncorrected"] == 0


def test_mbu_loses_the_running_job_and_is_handled_by_resubmission() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="training", size=100, id=11, seed=42))
    d.step()
    ev = d.b.inject("mbu", chip=3)
    assert ev is not None and ev.noticed and not ev.handled
    d.events += d.b.drain_events()
    done = d.topics("accel.job.done")[-1]
    assert (done["id"], done["ok"], done["error"]) == (11, False, "uecc")
    assert d.topics("accel.error") == [{"kind": "uecc", "chip": 3, "job_id": 11}]
    assert d.state is S.IDLE and d.b.status()["ecc_uncorrected"] == 1
    d.b.cmd_job_submit(JobSubmit(kind="training", size=100, seed=42))
    assert ev.handled and ev.how == "resubmitted"


def test_single_upsets_accumulate_into_an_uncorrectable_word_unless_scrubbed() -> None:
    # one word per chip: the second upset always hits the same word
    d = Drv(rad=quiet_rad(hbm_words_per_chip=1, scrub_interval_s=None))
    d.boot()
    d.b.inject("seu")
    ev = d.b.inject("seu")
    assert ev is not None and ev.kind == "mbu" and ev.effect == "uncorrectable_accumulated"
    s = Drv(rad=quiet_rad(hbm_words_per_chip=1, scrub_interval_s=5.0))
    s.boot()
    s.b.inject("seu")
    s.step(6)
    ev = s.b.inject("seu")
    assert ev is not None and ev.kind == "seu" and s.b.truth()["ecc"]["scrubbed"] == 1


# -- SEFI and latch-up -------------------------------------------------------------------------------------------
def test_sefi_hangs_until_reset() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="training", size=1000, id=1))
    d.step()
    ev = d.b.inject("sefi")
    left = d.b.queue[0].left_cycles
    d.step(10)
    assert d.state is S.HUNG and d.b.queue[0].left_cycles == left    # no progress
    with pytest.raises(CommandError):
        d.b.cmd_job_submit(JobSubmit(kind="inference", size=1))
    d.b.cmd_reset(ResetCmd())
    assert ev is not None and ev.handled and ev.how == "reset"
    d.events += d.b.drain_events()
    assert [(p["id"], p["error"]) for p in d.topics("accel.job.done")] == [(1, "reset")]
    d.step(25)
    assert d.state is S.IDLE


def test_sefi_is_also_handled_by_a_power_cycle() -> None:
    d = _reach(S.IDLE)
    ev = d.b.inject("sefi")
    d.step(supply_v=0.0)
    assert ev is not None and ev.handled and ev.how == "power_cycle"


def test_latchup_current_jump() -> None:
    d = _reach(S.IDLE)
    d.b.inject("sel")
    d.step(temp=50.0)
    # the chips stop switching (utilisation 0); leakage stays; the latch-up draws sel_current_a at the supply
    assert d.b.load_w == pytest.approx(_expected_power(d.b.config, "high", 0.0, 50.0) + 60.0 * V12,
                                       abs=POWER_TOL_W)


def _power_system(limit_a: float):  # type: ignore[no-untyped-def]
    from emulator.models.power import ArrayConfig, BatteryConfig, PowerConfig, PowerSystem, RailConfig

    return PowerSystem(PowerConfig(
        arrays=[ArrayConfig(name="wing", area_m2=4.0, mount="tracking")],
        battery=BatteryConfig(cells_series=8, cells_parallel=20, initial_soc=0.9),
        rails=[RailConfig(name="payload", voltage_v=V12, rating_w=1500.0, current_limit_a=limit_a,
                          trip_delay_s=0.01, retry_off_s=1.0, max_retries=3)]))


def _run_with_pdu(limit_a: float, steps: int) -> tuple[AcceleratorBoard, list[tuple[str, dict]]]:
    pw = _power_system(limit_a)
    b = AcceleratorBoard(AcceleratorConfig(), quiet_rad(), np.random.default_rng(3))
    events: list[tuple[str, dict]] = []
    t = 0
    for k in range(steps):
        b.step(t, 1.0, supply_v=pw.rail_voltage(0), die_temp_degc=50.0, dose_rate_rad_s=0.0, rad_flux_factor=1.0)
        if k == 30:
            assert b.state is S.IDLE
            b.inject("sel")
            b.step(t, 1.0, supply_v=pw.rail_voltage(0), die_temp_degc=50.0, dose_rate_rad_s=0.0,
                   rad_flux_factor=1.0)
        pw.step(1.0, [1361.0], [30.0], 20.0, [b.load_w])
        events += b.drain_events()
        t += NS
    return b, events


def test_latchup_cut_by_the_rail_limiter_recovers_after_the_power_cycle() -> None:
    b, events = _run_with_pdu(limit_a=60.0, steps=60)   # full load 55 A < 60 A < idle + latch-up
    power = [(p["on"], p["reason"]) for t, p in events if t == "accel.power"]
    assert power == [(True, "rail_on"), (False, "latchup"), (True, "rail_on")]
    sel = [p for t, p in events if t == "radiation.handled" and p["kind"] == "sel"]
    assert sel and sel[0]["how"] == "rail_cut"
    assert b.state is S.IDLE and not b.unhandled()


def test_latchup_not_cut_in_time_destroys_the_chip() -> None:
    b, events = _run_with_pdu(limit_a=500.0, steps=60)  # limiter set far above the latch-up current
    assert b.state is S.FAILED and b.load_w == 0.0
    assert [e.effect for e in b.unhandled("sel")] == ["damaged"]
    power = [(p["on"], p["reason"]) for t, p in events if t == "accel.power"]
    assert power[-1] == (False, "failed")
    failed_at = next(i for i, (t, p) in enumerate(events) if t == "accel.state" and p["state"] == "failed")
    assert failed_at > 0


# -- the hot case -----------------------------------------------------------------------------------------------------
def _hot_run(radiator_m2: float, steps: int, cap_j_k: float = 1500.0) -> tuple[Drv, list[tuple[int, float, str]]]:
    """Board at full clock with a full queue, its die node radiating to 3 K from ``radiator_m2`` (eps 0.9):
    C dT/dt = heat_w - eps sigma A (T^4 - 3^4), explicit Euler at 0.25 s substeps."""
    d = Drv()
    d.boot()
    d.b.cmd_dvfs_set(DvfsSet(level="max"))
    for _ in range(60):
        d.b.cmd_job_submit(JobSubmit(kind="training", size=100))
    temp_k = 40.0 + 273.15
    log: list[tuple[int, float, str]] = []
    for _ in range(steps):
        d.step(temp=temp_k - 273.15)
        for _ in range(4):
            q = d.b.heat_w - 0.9 * SIGMA_SB * radiator_m2 * (temp_k ** 4 - 3.0 ** 4)
            temp_k += 0.25 * q / cap_j_k
        log.append((d.t_ns, temp_k - 273.15, d.state.value))
    return d, log


def test_hot_case_throttles_then_shuts_down() -> None:
    cfg = AcceleratorConfig()
    d, log = _hot_run(radiator_m2=0.2, steps=900)
    thr = d.topics("accel.throttle")
    assert [p["level"] for p in thr[:2]] == ["software", "hardware"]
    assert cfg.sw_slowdown_degc <= thr[0]["die_temp_degc"] < cfg.sw_slowdown_degc + HOT_TOL_DEGC
    assert cfg.hw_slowdown_degc <= thr[1]["die_temp_degc"] < cfg.hw_slowdown_degc + HOT_TOL_DEGC
    off = [p for p in d.topics("accel.power") if not p["on"]]
    assert off == [{"on": False, "reason": "thermal_shutdown"}]
    i_off = next(i for i, (_, _, state) in enumerate(log) if state == "off")
    seen_temp = log[i_off - 1][1]          # the board decides on the temperature of the previous step
    assert cfg.shutdown_degc <= seen_temp < cfg.shutdown_degc + HOT_TOL_DEGC
    assert all(state != "off" for _, _, state in log[:i_off])
    assert max(temp for _, temp, _ in log) < cfg.shutdown_degc + HOT_TOL_DEGC  # nothing runs after the trip
    assert all(p["error"] == "thermal_shutdown" for p in d.topics("accel.job.done"))
    # a reset while hot is refused; once cool it boots again
    d.step(temp=cfg.shutdown_degc - 1.0)
    with pytest.raises(CommandError, match="cool below"):
        d.b.cmd_reset(ResetCmd())
    d.step(temp=60.0)
    d.b.cmd_reset(ResetCmd())
    d.events += d.b.drain_events()
    assert d.state is S.BOOTING and d.topics("accel.power")[-1] == {"on": True, "reason": "reset"}


def test_a_big_enough_radiator_holds_the_board_in_throttle_without_shutdown() -> None:
    cfg = AcceleratorConfig()
    d, log = _hot_run(radiator_m2=0.33, steps=3000)
    states = {s for _, _, s in log}
    assert "throttled" in states and "off" not in states
    assert max(t for _, t, _ in log) < cfg.shutdown_degc
    assert d.b.jobs_done > 0


# -- commands --------------------------------------------------------------------------------------------------------
def test_refused_commands_change_nothing_and_are_counted() -> None:
    d = Drv()
    with pytest.raises(CommandError) as exc:
        d.b.cmd_job_submit(JobSubmit(kind="inference", size=1))
    assert exc.value.field == "state" and "off" in exc.value.message
    d.boot()
    with pytest.raises(CommandError) as exc:
        d.b.cmd_dvfs_set(DvfsSet(level="turbo"))
    assert exc.value.valid == ["low", "mid", "high", "max"]
    assert d.b.status()["level"] == "high"
    with pytest.raises(CommandError):
        d.b.cmd_job_cancel(JobCancel(id=9))
    with pytest.raises(CommandError):
        d.b.cmd_job_verdict(JobVerdict(id=9, ok=True))
    with pytest.raises(CommandError):
        d.b.cmd_report(Report(power_w=10.0, utilisation=0.5))
    d.b.cmd_job_submit(JobSubmit(kind="training", size=5, id=1))
    with pytest.raises(CommandError):
        d.b.cmd_job_submit(JobSubmit(kind="training", size=5, id=1))
    d.b.inject("sel")
    with pytest.raises(CommandError):
        d.b.cmd_reset(ResetCmd())
    assert d.state is S.LATCHED_UP
    assert d.b.status()["rejected_commands"] == 7


def test_cancel_ends_the_job_with_one_done_event() -> None:
    d = _reach(S.IDLE)
    d.b.cmd_job_submit(JobSubmit(kind="training", size=5, id=1))
    d.b.cmd_job_cancel(JobCancel(id=1))
    d.step()
    done = d.topics("accel.job.done")
    assert [(p["id"], p["ok"], p["error"]) for p in done] == [(1, False, "cancelled")]
    assert d.state is S.IDLE


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="default_level"):
        AcceleratorConfig(default_level="turbo")
    with pytest.raises(ValidationError, match="sw_slowdown_degc"):
        AcceleratorConfig(sw_slowdown_degc=95.0)
    with pytest.raises(ValidationError, match="clock_mhz"):
        AcceleratorConfig(dvfs=[{"name": "a", "clock_mhz": 900, "core_v": 0.8},
                                {"name": "b", "clock_mhz": 600, "core_v": 0.7}], default_level="a",
                          sw_slowdown_level="a")
    with pytest.raises(ValidationError, match="extra"):
        AcceleratorConfig(clocks=[1])  # type: ignore[call-arg]


# -- external mode --------------------------------------------------------------------------------------------------
def _external() -> Drv:
    d = Drv(AcceleratorConfig(mode="external", external_max_power_w=60.0))
    d.step()
    assert d.state is S.BOOTING
    d.b.cmd_report(Report(power_w=12.5, utilisation=0.8, die_temp_degc=48.0))
    return d


def test_external_mode_uses_the_reported_power() -> None:
    d = _external()
    d.step(temp=60.0)
    assert d.state is S.BUSY and d.b.load_w == 12.5 and d.b.heat_w == 12.5
    d.b.cmd_report(Report(power_w=3.0, utilisation=0.0))
    d.step(temp=60.0)
    assert d.state is S.IDLE and d.b.load_w == 3.0
    with pytest.raises(CommandError):
        d.b.cmd_report(Report(power_w=61.0, utilisation=0.0))
    with pytest.raises(CommandError):
        d.b.cmd_job_submit(JobSubmit(kind="inference", size=1))
    assert d.b.truth()["external"]["power_w"] == 3.0


def test_external_status_follows_the_report_and_one_state_event_per_report() -> None:
    d = Drv(AcceleratorConfig(mode="external", external_max_power_w=60.0))
    d.step()
    status = d.b.status()
    assert status["state"] == "booting" and status["clock_mhz"] == 0.0  # no report yet: no clock to show
    d.events += d.b.drain_events()
    before = len(d.topics("accel.state"))
    d.b.cmd_report(Report(power_w=12.5, utilisation=0.8, clock_mhz=1100.0, jobs_done=7))
    d.events += d.b.drain_events()
    states = d.topics("accel.state")[before:]
    assert [(e["previous"], e["state"]) for e in states] == [("booting", "busy")]
    d.step()
    status = d.b.status()
    assert (status["utilisation"], status["clock_mhz"], status["jobs_done"]) == (0.8, 1100.0, 7)
    d.b.cmd_report(Report(power_w=3.0, utilisation=0.02, clock_mhz=300.0, jobs_done=9))
    d.step()
    status = d.b.status()
    assert status["state"] == "idle"
    assert (status["utilisation"], status["clock_mhz"], status["jobs_done"]) == (0.02, 300.0, 9)


def test_external_reset_boots_until_the_next_report() -> None:
    d = _external()
    d.step()
    d.b.cmd_reset(ResetCmd())
    d.step(int(d.b.config.boot_s) + 5)  # the boot time is the model's; the board itself says when it is up
    assert d.state is S.BOOTING and d.b.status()["clock_mhz"] == 0.0
    d.b.cmd_report(Report(power_w=5.0, utilisation=0.0, clock_mhz=900.0))
    assert d.state is S.IDLE


def test_boot_into_a_hardware_slowdown_is_one_state_event() -> None:
    d = Drv()
    d.step()
    _boot_hot(d)
    assert d.state is S.THROTTLED
    assert [(e["previous"], e["state"]) for e in d.topics("accel.state")] == [("off", "booting"),
                                                                              ("booting", "throttled")]


def test_external_mode_throttle_and_power_events() -> None:
    d = _external()
    d.step(temp=88.0)
    d.step(temp=90.0)
    assert [p["level"] for p in d.topics("accel.throttle")] == ["software", "hardware"]
    assert d.topics("accel.throttle")[-1]["duty"] == 0.5
    d.step(temp=93.0)
    assert d.topics("accel.power")[-1] == {"on": False, "reason": "thermal_shutdown"}
    assert d.b.load_w == 0.0


def test_external_mode_effects_and_their_handling() -> None:
    d = _external()
    sdc = d.b.inject("sdc")
    hang = d.b.inject("sefi")
    d.b.cmd_reset(ResetCmd())
    d.b.cmd_report(Report(power_w=10.0, utilisation=0.5))
    mbu = d.b.inject("mbu")
    d.events += d.b.drain_events()
    effects = [(p["kind"], p["effect_id"]) for p in d.topics("accel.effect")]
    assert sdc is not None and hang is not None and mbu is not None
    assert effects == [("sdc", sdc.id), ("hang", hang.id), ("mbu", mbu.id)]
    assert hang.handled and hang.how == "reset"
    d.b.cmd_job_verdict(JobVerdict(id=77, ok=False, effect_id=sdc.id))
    assert sdc.handled and sdc.job_id == 77
    d.b.cmd_report(Report(power_w=10.0, utilisation=0.5, acked_effects=[mbu.id]))
    assert mbu.handled and mbu.how == "acked" and not d.b.unhandled()


def test_external_latchup_adds_current_and_the_cut_tells_the_board() -> None:
    d = _external()
    d.step()
    d.b.inject("sel")
    d.step()
    assert d.b.load_w == pytest.approx(12.5 + 60.0 * V12)
    d.step(supply_v=0.0)
    assert d.topics("accel.power")[-1] == {"on": False, "reason": "latchup"}
    with pytest.raises(CommandError):
        d.b.cmd_report(Report(power_w=1.0, utilisation=0.0))


# -- wire --------------------------------------------------------------------------------------------------------
def test_every_emitted_payload_matches_its_declared_schema() -> None:
    rad = RadiationConfig(scale=2e4)  # ~1 event per step at 4.75e-6 rad/s x 2e4 ... plus injected ones
    d = Drv(rad=rad)
    d.dose = 1e-3
    iface = d.b.interface()
    cat = Catalogue([c.spec for c in iface.commands] + [t.spec for t in iface.telemetry] + iface.events)
    d.boot()
    for k in range(300):
        if d.state in (S.IDLE, S.BUSY) and not d.b.queue:
            d.b.cmd_job_submit(JobSubmit(kind="inference", size=500))
        if d.state is S.HUNG:
            d.b.cmd_reset(ResetCmd())
        d.step(supply_v=0.0 if d.state is S.LATCHED_UP else V12, temp=60.0 + 30.0 * math.sin(k / 20))
        cat.validate("accel.status", d.b.status(), kind=Kind.TELEMETRY)
    topics = {t for t, _ in d.events}
    assert {"accel.job.done", "accel.state", "radiation.event", "radiation.handled", "accel.throttle"} <= topics
    for topic, payload in d.events:
        cat.validate(topic, payload, kind=Kind.EVENT)
    msgpack.packb(d.b.truth())
    names = {f.name for f in iface.faults}
    assert names == {"radiation.scale", "radiation.seu", "radiation.mbu", "radiation.sdc", "radiation.sefi",
                     "radiation.sel"}


def test_fault_hooks_inject_and_scale() -> None:
    d = _reach(S.IDLE)
    faults = {f.name: f for f in d.b.interface().faults}
    f = faults["radiation.sefi"]
    f.inject(f.params(chip=1))
    assert d.state is S.HUNG
    with pytest.raises(CommandError) as exc:
        f.inject(f.params(chip=4))
    assert exc.value.valid == [0, 1, 2, 3]
    sc = faults["radiation.scale"]
    sc.inject(sc.params(factor=1000.0))
    assert d.b.rad.scale == 1000.0
    assert sc.clear is not None
    sc.clear(sc.params(factor=1000.0))
    assert d.b.rad.scale == 1.0


def test_same_seed_same_run() -> None:
    def run(seed: int) -> list[tuple[str, dict]]:
        d = Drv(rad=RadiationConfig(scale=1e5), seed=seed)
        d.dose = 1e-4
        for _ in range(300):
            if d.state is S.IDLE:
                d.b.cmd_job_submit(JobSubmit(kind="inference", size=300))
            elif d.state is S.HUNG:
                d.b.cmd_reset(ResetCmd())
            d.step(supply_v=0.0 if d.state is S.LATCHED_UP else V12)
        return d.events

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_protocol_doc_tables_match_the_schemas() -> None:
    """docs/protocol-accelerator.md embeds the schema tables; they must stay true to the code."""
    import re
    from pathlib import Path

    from emulator.models import accelerator
    from emulator.protocol.catalogue import schema_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol-accelerator.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- schema:(\w+) -->\n\n(.*?)\n<!-- /schema -->", doc, flags=re.DOTALL)
    assert len(blocks) == 17
    for name, table in blocks:
        assert table == schema_table(getattr(accelerator, name)), name

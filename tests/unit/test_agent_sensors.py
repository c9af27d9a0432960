"""The board agent's sensors and workloads: discovery and units on a fake sysfs tree, estimates labelled as such,
the cpufreq clock cap, tool parsers, the job checker, and this machine's real sensors where it has any."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emulator.errors import ConfigError
from firmware_stubs.agent import Agent, AgentOptions
from firmware_stubs.agent.sensors import (
    CpuFreq,
    SensorOptions,
    Sensors,
    is_input_rail,
    parse_nvidia_smi,
    parse_tegrastats,
)
from firmware_stubs.agent.workload import CommandWorkload, FinishedJob, NumpyWorkload, throttle_sleep_s
from firmware_stubs.jobcheck import expected_result

#: exact decimal conversions: µW, mA x mV, m°C and kHz are integers, so the watts must match to rounding
UNIT_TOL = 1e-12
#: how long a test waits for a signal to land on a child process (a guard, not a timing assertion)
SIGNAL_GUARD_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def build_tree(root: Path, *, rapl: bool = True, psys: bool = False) -> Path:
    """hwmon INA3221 (3 channels, V and I), hwmon ina219 (power in µW) and coretemp, 3 thermal zones (one broken),
    RAPL package + core subzone (+ psys), 2 CPUs with cpufreq."""
    ina = root / "class" / "hwmon" / "hwmon0"
    ina.mkdir(parents=True)
    (ina / "name").write_text("ina3221\n")
    for k, (label, mv, ma) in enumerate((("VDD_IN", 19000, 350), ("VDD_CPU_GPU_CV", 5000, 400),
                                          ("VDD_SOC", 5000, 300)), start=1):
        (ina / f"in{k}_label").write_text(label + "\n")
        (ina / f"in{k}_input").write_text(f"{mv}\n")
        (ina / f"curr{k}_input").write_text(f"{ma}\n")
        (ina / f"in{k + 3}_input").write_text("12\n")          # shunt voltages: no curr partner, no power
    i219 = root / "class" / "hwmon" / "hwmon1"
    i219.mkdir(parents=True)
    (i219 / "name").write_text("ina219\n")
    (i219 / "power1_input").write_text("2500000\n")             # 2.5 W in µW
    (i219 / "curr1_input").write_text("500\n")
    (i219 / "in1_input").write_text("5000\n")
    core = root / "class" / "hwmon" / "hwmon2"
    core.mkdir(parents=True)
    (core / "name").write_text("coretemp\n")
    (core / "temp1_label").write_text("Package id 0\n")
    (core / "temp1_input").write_text("51000\n")
    for i, (kind, temp) in enumerate((("cpu-thermal", "45500"), ("gpu-thermal", "47250"), ("battery", "x"))):
        z = root / "class" / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(temp + "\n")
    if rapl:
        pkg = root / "class" / "powercap" / "intel-rapl:0"
        pkg.mkdir(parents=True)
        (pkg / "name").write_text("package-0\n")
        (pkg / "energy_uj").write_text("1000000\n")
        (pkg / "max_energy_range_uj").write_text("262143328850\n")
        sub = root / "class" / "powercap" / "intel-rapl:0:0"
        sub.mkdir(parents=True)
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("5\n")
    if psys:
        ps = root / "class" / "powercap" / "intel-rapl:1"
        ps.mkdir(parents=True)
        (ps / "name").write_text("psys\n")
        (ps / "energy_uj").write_text("0\n")
        (ps / "max_energy_range_uj").write_text("262143328850\n")
    for c in range(2):
        cf = root / "devices" / "system" / "cpu" / f"cpu{c}" / "cpufreq"
        cf.mkdir(parents=True)
        for f, v in (("scaling_cur_freq", 1200000 + 100000 * c), ("scaling_max_freq", 1510400),
                     ("cpuinfo_max_freq", 1510400), ("cpuinfo_min_freq", 115200), ("scaling_governor", "schedutil")):
            (cf / f).write_text(f"{v}\n")
    return root


def sensors(root: Path, clock: FakeClock | None = None, **opts: object) -> Sensors:
    o = SensorOptions(sysfs_root=str(root), nvidia_smi=False, tegrastats=False, **opts)  # type: ignore[arg-type]
    return Sensors(o, monotonic=clock or FakeClock()).discover()


# -- discovery and units ---------------------------------------------------------------------------------------------
def test_ina3221_channels_are_found_with_labels_and_the_input_rail_is_reported(tmp_path: Path) -> None:
    s = sensors(build_tree(tmp_path))
    by_name = {p.name: p for p in s.power}
    assert {"ina3221/VDD_IN", "ina3221/VDD_CPU_GPU_CV", "ina3221/VDD_SOC", "ina219/ch1", "rapl/package-0"} \
        <= set(by_name)
    assert by_name["ina3221/VDD_IN"].read_w() == pytest.approx(19.0 * 0.350, abs=UNIT_TOL)   # mV x mA
    assert by_name["ina3221/VDD_SOC"].read_w() == pytest.approx(5.0 * 0.300, abs=UNIT_TOL)
    assert by_name["ina219/ch1"].read_w() == pytest.approx(2.5, abs=UNIT_TOL)                 # µW, not V x I
    assert "rapl/core" not in by_name                       # a subzone is inside its package: never summed
    assert s.power_plan is not None and s.power_plan.kind == "measured"
    assert [p.name for p in s.power_plan.sources] == ["ina3221/VDD_IN"]
    r = s.sample(0.5)
    assert r.power_w == pytest.approx(6.65, abs=UNIT_TOL) and not r.power_estimated


def test_thermal_zones_in_millidegrees_hottest_die_zone_wins_broken_zone_listed(tmp_path: Path) -> None:
    s = sensors(build_tree(tmp_path))
    temps = {t.name: t.read_degc() for t in s.temps}
    assert temps["thermal_zone0:cpu-thermal"] == pytest.approx(45.5)
    assert temps["thermal_zone1:gpu-thermal"] == pytest.approx(47.25)
    assert temps["coretemp/Package id 0"] == pytest.approx(51.0)
    assert "thermal_zone2:battery" in [m.what for m in s.missing]     # unreadable: reported, not guessed
    assert s.sample(0.0).die_temp_degc == pytest.approx(51.0)
    only = sensors(tmp_path, temp_sensor="gpu-thermal")
    assert only.sample(0.0).die_temp_degc == pytest.approx(47.25)
    with pytest.raises(ConfigError) as exc:
        sensors(tmp_path, temp_sensor="gpu-thermla")
    assert "thermal_zone1:gpu-thermal" in exc.value.valid


def test_rapl_energy_is_differentiated_over_wall_time_and_survives_a_wrap(tmp_path: Path) -> None:
    root = build_tree(tmp_path, rapl=True)
    for d in (root / "class" / "hwmon").iterdir():
        shutil.rmtree(d)
    clock = FakeClock()
    s = sensors(root, clock, min_window_s=0.5)
    assert s.power_plan is not None and [p.name for p in s.power_plan.sources] == ["rapl/package-0"]
    assert "no input rail found" in s.power_plan.description
    energy = root / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    clock.t += 1.0
    energy.write_text(f"{1_000_000 + 12_000_000}\n")          # 12 J in 1 s
    assert s.sample(0.0).power_w == pytest.approx(12.0, rel=1e-12)
    clock.t += 0.1                                             # shorter than the window: the last value holds
    energy.write_text(f"{13_000_000 + 100}\n")
    assert s.sample(0.0).power_w == pytest.approx(12.0, rel=1e-12)
    rng = 262143328850
    clock.t += 0.9
    energy.write_text(f"{13_000_000 + 100 + 5_000_000 - rng - 1}\n")  # wrapped past max_energy_range_uj
    # the window rolled at the 12 W sample: 100 uJ + 5 J over the 1 s since (0.1 s + 0.9 s)
    assert s.sample(0.0).power_w == pytest.approx(5.0001, rel=1e-9)


def test_psys_is_the_whole_platform_and_preferred_over_packages(tmp_path: Path) -> None:
    root = build_tree(tmp_path, psys=True)
    for d in (root / "class" / "hwmon").iterdir():
        shutil.rmtree(d)
    s = sensors(root)
    assert s.power_plan is not None and [p.name for p in s.power_plan.sources] == ["rapl/psys"]


def test_jetson_l4t32_iio_ina3221x_in_milliwatts(tmp_path: Path) -> None:
    d = tmp_path / "bus" / "iio" / "devices" / "iio:device0"
    d.mkdir(parents=True)
    (d / "name").write_text("ina3221x\n")
    for k, (rail, mw) in enumerate((("POM_5V_IN", 3415), ("POM_5V_GPU", 120), ("POM_5V_CPU", 600))):
        (d / f"rail_name_{k}").write_text(rail + "\n")
        (d / f"in_power{k}_input").write_text(f"{mw}\n")
    s = sensors(tmp_path)
    assert s.power_plan is not None and [p.name for p in s.power_plan.sources] == ["ina3221x/POM_5V_IN"]
    assert s.sample(0.0).power_w == pytest.approx(3.415, abs=UNIT_TOL)


@pytest.mark.parametrize(("label", "is_input"), [("VDD_IN", True), ("POM_5V_IN", True), ("VIN_SYS_5V0", True),
                                                 ("Total", True), ("VDD_CPU_GPU_CV", False), ("VDD_SOC", False),
                                                 ("in1", False), ("POM_5V_GPU", False)])
def test_input_rail_labels(label: str, is_input: bool) -> None:
    assert is_input_rail(label) is is_input


def test_power_channel_can_be_chosen_and_a_typo_lists_the_valid_names(tmp_path: Path) -> None:
    s = sensors(build_tree(tmp_path), power_channel="VDD_SOC")
    assert s.sample(0.0).power_w == pytest.approx(1.5, abs=UNIT_TOL)
    with pytest.raises(ConfigError) as exc:
        sensors(tmp_path, power_channel="VDD_SCO")
    assert exc.value.field == "power_channel" and "ina3221/VDD_SOC" in exc.value.valid


# -- estimates ---------------------------------------------------------------------------------------------------------
def test_no_power_source_and_no_fallback_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        sensors(tmp_path)
    assert "--fallback-power-w" in str(exc.value) and "hwmon" in str(exc.value)


def test_fallback_is_an_estimate_scaled_by_utilisation_and_labelled_everywhere(tmp_path: Path,
                                                                              caplog: pytest.LogCaptureFixture
                                                                              ) -> None:
    s = sensors(tmp_path, fallback_power_w=15.0, fallback_idle_w=5.0)
    assert s.power_plan is not None and s.power_plan.kind == "estimate"
    r = s.sample(0.25)
    assert r.power_w == pytest.approx(5.0 + 10.0 * 0.25) and r.power_estimated
    assert r.die_temp_degc is None and r.clock_mhz is None          # nothing measured: left out, not faked
    assert "power:estimate:idle=5W,busy=15W" in s.capabilities()
    assert "temp:none" in s.capabilities()
    assert "power reported: ESTIMATE" in s.table()
    with caplog.at_level("WARNING", logger="flatsat.agent"):
        agent = Agent(AgentOptions(matrix_dim=16, batches=1, result_dim=4), sensors=s)
    try:
        assert any("ESTIMATE" in rec.message for rec in caplog.records)
        assert "power:estimate:idle=5W,busy=15W" in agent.capabilities()
    finally:
        agent.shutdown()


def test_a_measured_source_wins_over_a_configured_fallback(tmp_path: Path) -> None:
    s = sensors(build_tree(tmp_path), fallback_power_w=99.0)
    r = s.sample(1.0)
    assert r.power_w == pytest.approx(6.65, abs=UNIT_TOL) and not r.power_estimated
    assert any(c.startswith("power:measured:") for c in s.capabilities())


# -- cpufreq -----------------------------------------------------------------------------------------------------------
def test_clock_is_the_mean_of_scaling_cur_freq(tmp_path: Path) -> None:
    assert sensors(build_tree(tmp_path)).sample(0.0).clock_mhz == pytest.approx((1200.0 + 1300.0) / 2)


def test_clock_cap_writes_khz_clamped_to_the_hardware_range_and_restores(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    cf = CpuFreq(root)
    files = [root / "devices" / "system" / "cpu" / f"cpu{c}" / "cpufreq" / "scaling_max_freq" for c in range(2)]
    assert cf.writable and cf.cap(1113.6) == []
    assert [int(f.read_text()) for f in files] == [1113600, 1113600]
    assert cf.cap(5000.0) == [] and int(files[0].read_text()) == 1510400      # above cpuinfo_max_freq
    assert cf.cap(10.0) == [] and int(files[0].read_text()) == 115200         # below cpuinfo_min_freq
    assert cf.cap(None) == [] and int(files[1].read_text()) == 1510400        # restored


def test_clock_cap_that_cannot_be_written_is_reported_not_allowed(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    target = root / "devices" / "system" / "cpu" / "cpu1" / "cpufreq" / "scaling_max_freq"
    target.unlink()
    target.mkdir()   # root ignores file modes, so a directory stands in for a file the kernel refuses
    problems = CpuFreq(root).cap(1000.0)
    assert len(problems) == 1 and "cpu1" in problems[0] and "not allowed" in problems[0]


# -- tools ---------------------------------------------------------------------------------------------------------------
def test_nvidia_smi_is_parsed_summed_and_used_when_installed(tmp_path: Path) -> None:
    text = "35.12, 45, 3\n[N/A], 61, 97\n"
    parsed = parse_nvidia_smi(text)
    assert parsed["power_w"] == pytest.approx(35.12) and parsed["temp_degc"] == 61.0
    assert parsed["utilisation"] == pytest.approx(0.5)
    calls = []

    def runner(cmd, timeout_s):
        calls.append(cmd)
        return text

    o = SensorOptions(sysfs_root=str(tmp_path), tegrastats=False)
    s = Sensors(o, runner=runner, which=lambda exe: f"/usr/bin/{exe}", monotonic=FakeClock()).discover()
    assert [p.name for p in s.power_plan.sources] == ["nvidia-smi/gpu"]  # type: ignore[union-attr]
    r = s.sample(0.0)
    assert r.power_w == pytest.approx(35.12) and r.die_temp_degc == 61.0 and r.gpu_utilisation == pytest.approx(0.5)
    assert len(calls) == 1     # cached: one query per second of wall time at most
    assert calls[0][1] == "--query-gpu=power.draw,temperature.gpu,utilization.gpu"


def test_tegrastats_lines_of_both_jetpack_generations() -> None:
    new = ("RAM 2103/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@729,1%@729,off,off] EMC_FREQ 0%@2133 "
           "GR3D_FREQ 45%@[611] APE 200 cpu@45.5C soc2@44.25C gpu@44.468C tj@45.5C VDD_IN 4507mW/4507mW "
           "VDD_CPU_GPU_CV 573mW/573mW VDD_SOC 1383mW/1383mW")
    p = parse_tegrastats(new)
    assert p["rails_w"] == {"VDD_IN": 4.507, "VDD_CPU_GPU_CV": 0.573, "VDD_SOC": 1.383}
    assert p["temps_degc"]["gpu"] == pytest.approx(44.468) and p["gpu_util"] == pytest.approx(0.45)
    assert p["gpu_mhz"] == 611.0
    old = ("RAM 1536/3956MB (lfb 4x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [3%@102,2%@102] "
           "EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@26.5C CPU@29C GPU@28C POM_5V_IN 1115/1115 POM_5V_GPU 0/0 "
           "POM_5V_CPU 123/123")
    q = parse_tegrastats(old)
    assert q["rails_w"] == {"POM_5V_IN": 1.115, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.123}
    assert q["temps_degc"]["CPU"] == 29.0 and q["gpu_util"] == 0.0 and q["gpu_mhz"] == 76.0


# -- workloads -----------------------------------------------------------------------------------------------------------
def test_throttle_sleep_makes_work_the_given_duty() -> None:
    for duty in (0.1, 0.5, 0.9):
        busy = 0.02
        assert busy / (busy + throttle_sleep_s(busy, duty)) == pytest.approx(duty)
    assert throttle_sleep_s(0.02, 1.0) == 0.0


def test_checker_catches_one_flipped_bit_in_any_element() -> None:
    agent = Agent(AgentOptions(matrix_dim=16, batches=1, result_dim=8),
                  sensors=sensors_for_agent())
    try:
        good = expected_result(42, "inference", 8)
        assert agent.check(FinishedJob(1, 42, "inference", good.copy()))
        for elem in (0, 17, 63):
            for bit in (0, 15, 31):
                bad = good.copy()
                bad.reshape(-1).view(np.uint32)[elem] ^= np.uint32(1 << bit)
                assert not agent.check(FinishedJob(1, 42, "inference", bad))
    finally:
        agent.shutdown()


def sensors_for_agent() -> Sensors:
    o = SensorOptions(sysfs_root="/nonexistent-sysfs", nvidia_smi=False, tegrastats=False, fallback_power_w=1.0)
    return Sensors(o).discover()


def wait_until(pred, what: str) -> None:
    deadline = time.monotonic() + SIGNAL_GUARD_S
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {SIGNAL_GUARD_S} s: {what}")
        time.sleep(0.01)


def test_numpy_workload_corrupts_exactly_the_next_result_and_resubmits_after_an_mbu() -> None:
    w = NumpyWorkload(matrix_dim=16, batches=2, result_dim=8)
    try:
        w.start()
        wait_until(lambda: w.jobs_done >= 2, "jobs done")
        w.corrupt_next(7)
        jobs: list[FinishedJob] = []
        wait_until(lambda: (jobs.extend(w.take_finished()), any(j.effect_id == 7 for j in jobs))[1], "sdc job")
        hit = [j for j in jobs if j.effect_id is not None]
        assert len(hit) == 1
        assert not np.array_equal(hit[0].result, expected_result(hit[0].seed, "inference", 8))
        assert all(np.array_equal(j.result, expected_result(j.seed, "inference", 8)) for j in jobs
                   if j.effect_id is None)
        w.lose_job(9)
        acked: list[int] = []
        wait_until(lambda: (acked.extend(w.take_acked()), 9 in acked)[1], "mbu acknowledged once resubmitted")
        w.hang()
        assert w.state == "hung" and w.expects_progress
        w.stop()
        assert w.state == "stopped" and not w.expects_progress
    finally:
        w.close()
    assert not w._thread.is_alive()


def _proc_state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or sys.platform != "linux", reason="needs Linux /proc")
def test_command_workload_is_stopped_frozen_and_restarted_with_signals() -> None:
    w = CommandWorkload(f"{sys.executable} -c 'import time; time.sleep(60)'", duty_period_s=0.05)
    try:
        w.start()
        first = w._p
        assert first is not None and first.poll() is None
        w.hang()
        wait_until(lambda: _proc_state(first.pid) == "T", "SIGSTOP on hang")
        w.start()                                   # the reset: a new process, the frozen one is gone
        second = w._p
        assert second is not None and second.pid != first.pid and first.poll() is not None
        w.lose_job(5)                               # MBU: the job in flight is lost and resubmitted
        assert w._p is not None and w._p.pid != second.pid and w.take_acked() == [5]
        assert not w.corrupt_next(1)                # a foreign program's results cannot be corrupted
        w.set_duty(0.5)                             # throttled: SIGSTOP/SIGCONT alternate
        pid = w._p.pid
        wait_until(lambda: _proc_state(pid) == "T", "SIGSTOP in the off part of the duty cycle")
        w.stop()
        assert w._p is None
    finally:
        w.close()
    assert not w._thread.is_alive()


def test_command_utilisation_sums_the_process_tree_from_proc(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    # pid 100: the command; 101: its child (a name with spaces and parentheses); 102: unrelated
    rows = {100: ("sh", 1, (100, 50, 0, 0)), 101: ("my (odd) cmd", 100, (20, 0, 5, 5)),
            102: ("other", 1, (999, 999, 0, 0))}
    for pid, (comm, ppid, (ut, st, cut, cst)) in rows.items():
        d = tmp_path / str(pid)
        d.mkdir()
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(ut), str(st), str(cut), str(cst)] + ["0"] * 5
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "stat").write_text("1 (x) S 0\n")
    w = CommandWorkload("true", proc_root=str(tmp_path), cpus=2)
    try:
        assert w._tree_cpu_s(100) == pytest.approx((150 + 30) / tick)
    finally:
        w.close()


# -- this machine ----------------------------------------------------------------------------------------------------
def test_this_machines_real_sensors() -> None:
    # the fallback only keeps discovery going on a machine without a power source; it is never what is checked
    probe = Sensors(SensorOptions(fallback_power_w=1.0)).discover()
    try:
        if not probe.power and not probe.temps and not probe.cpufreq.present:
            pytest.skip("this machine exposes no power monitor, thermal zone, RAPL counter, GPU tool or cpufreq: "
                        + "; ".join(f"{m.what}: {m.why}" for m in probe.missing))
        r = probe.sample(0.0)
        if probe.power:
            assert not r.power_estimated
            assert r.power_w is not None and 0.0 <= r.power_w < 5000.0
        if probe.temp_choice:
            assert r.die_temp_degc is not None and -60.0 <= r.die_temp_degc <= 200.0
        if probe.cpufreq.present:
            assert r.clock_mhz is None or 0.0 < r.clock_mhz < 10000.0
        assert len(probe.capabilities()) <= 64
    finally:
        probe.close()

"""What a Linux board can measure about itself: power monitors, thermal zones, RAPL, cpufreq, nvidia-smi, tegrastats.

Everything is found under a configurable sysfs root (``/sys`` on a board, a fake tree in tests) and read with
plain file I/O; the two optional tools run as subprocesses. Units as the kernel documents them
(Documentation/hwmon/sysfs-interface.rst, Documentation/power/powercap/powercap.rst):

==================================================  ===========  ==========================================
file                                                unit         converted to
==================================================  ===========  ==========================================
``class/hwmon/hwmon*/power<k>_input``               µW           W
``class/hwmon/hwmon*/curr<k>_input``                mA           A (x ``in<k>_input`` V = W)
``class/hwmon/hwmon*/in<k>_input``                  mV           V
``class/hwmon/hwmon*/temp<k>_input``                m°C          °C
``bus/iio/devices/iio:device*/in_power<k>_input``   mW           W (Jetson L4T 32.x ``ina3221x`` driver)
``class/thermal/thermal_zone*/temp``                m°C          °C (with its ``type``)
``class/powercap/intel-rapl:*/energy_uj``           µJ           W, differentiated over wall time
``devices/system/cpu/cpu*/cpufreq/*_freq``          kHz          MHz
==================================================  ===========  ==========================================

Nothing is invented: a source that is absent or unreadable is listed as such, and a power *estimate*
(``fallback_power_w`` / ``fallback_idle_w``) is used only when configured, and labelled as one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError

log = logging.getLogger("flatsat.agent")

UW_PER_W = 1e6
MW_PER_W = 1e3
MV_PER_V = 1e3
MA_PER_A = 1e3
MDEGC_PER_DEGC = 1e3
UJ_PER_J = 1e6
KHZ_PER_MHZ = 1e3

#: report range of accel.report die_temp_degc (docs/protocol-accelerator.md); a reading outside it is a bad sensor
TEMP_VALID_DEGC = (-60.0, 200.0)
#: thermal-zone / hwmon names that are on (or next to) the compute die
_DIE_WORDS = ("cpu", "gpu", "soc", "tj", "x86_pkg", "package", "tctl", "tdie", "core", "junction", "edge", "cv")
#: rail labels that name a board's input: VDD_IN, POM_5V_IN, VIN_SYS_5V0, "total"
_INPUT_TOKENS = frozenset({"in", "vin", "input", "total"})

Runner = Callable[[Sequence[str], float], str]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def is_input_rail(label: str) -> bool:
    """True for labels that name a board's input rail (VDD_IN, POM_5V_IN, VIN_SYS_5V0, Total)."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", label.lower()) if t]
    return bool(tokens) and (any(t in _INPUT_TOKENS for t in tokens) or tokens[0].startswith("vin"))


def is_die_sensor(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _DIE_WORDS)


def default_runner(cmd: Sequence[str], timeout_s: float) -> str:
    """Run a tool and return its stdout (raises OSError / subprocess errors on failure)."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=True)
    return done.stdout


class MinWindow:
    """A rate over wall time that only rolls its window after ``min_window_s`` (a counter read every millisecond in
    a fast lockstep run would otherwise give noise). ``update(total, now)`` returns the rate of the last window that
    was long enough, or of the window so far while none was."""

    def __init__(self, min_window_s: float) -> None:
        self.min_window_s = min_window_s
        self._t0: float | None = None
        self._v0 = 0.0
        self.value: float | None = None

    def update(self, total: float, now_s: float) -> float | None:
        if self._t0 is None:
            self._t0, self._v0 = now_s, total
            return self.value
        dt = now_s - self._t0
        if dt <= 0:
            return self.value
        if dt >= self.min_window_s or self.value is None:
            rate = (total - self._v0) / dt
            self.value = rate
            if dt >= self.min_window_s:
                self._t0, self._v0 = now_s, total
        return self.value

    def reset(self) -> None:
        self._t0 = None
        self.value = None


# -- sources ---------------------------------------------------------------------------------------------------------
@dataclass
class PowerSource:
    """One power reading: a monitor channel, a RAPL domain, a GPU, a tegrastats rail."""

    name: str           #: e.g. ``ina3221/VDD_IN``, ``rapl/package-0``, ``nvidia-smi/gpu``
    origin: str         #: hwmon, iio, rapl, nvidia-smi, tegrastats
    detail: str         #: where it comes from (paths, units)
    input_rail: bool    #: measures the whole board's input
    read_w: Callable[[], float | None]


@dataclass
class TempSource:
    name: str           #: e.g. ``thermal_zone1:gpu-thermal``, ``coretemp/Package id 0``
    origin: str
    detail: str
    read_degc: Callable[[], float | None]


@dataclass
class Missing:
    what: str
    why: str


def _hwmon_channels(root: Path, power: list[PowerSource], temps: list[TempSource], missing: list[Missing]) -> None:
    base = root / "class" / "hwmon"
    dirs = sorted(base.glob("hwmon*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not dirs:
        missing.append(Missing("hwmon", f"no {base}/hwmon* (no INA219/INA3221-class power monitor driver loaded)"))
        return
    for d in dirs:
        chip = _read_text(d / "name") or d.name
        files = {p.name for p in d.iterdir()} if d.is_dir() else set()
        idx: dict[str, set[int]] = {"power": set(), "curr": set(), "in": set(), "temp": set()}
        for fname in files:
            m = re.fullmatch(r"(power|curr|in|temp)(\d+)_(input|average)", fname)
            if m:
                idx[m.group(1)].add(int(m.group(2)))

        def label(kind: str, k: int, d: Path = d, files: set[str] = files) -> str | None:
            for cand in (f"{kind}{k}_label", f"in{k}_label", f"curr{k}_label", f"power{k}_label"):
                if cand in files:
                    return _read_text(d / cand)
            return None

        for k in sorted(idx["power"] | idx["curr"]):
            lab = label("power", k) or f"ch{k}"
            pfile = next((d / f for f in (f"power{k}_input", f"power{k}_average") if f in files), None)
            cfile = d / f"curr{k}_input" if f"curr{k}_input" in files else None
            vfile = d / f"in{k}_input" if f"in{k}_input" in files else None
            if pfile is not None:
                def read_p(p: Path = pfile) -> float | None:
                    v = _read_int(p)
                    return None if v is None else v / UW_PER_W
                detail = f"{pfile} (uW)"
                reader = read_p
            elif cfile is not None and vfile is not None:
                def read_vi(c: Path = cfile, v: Path = vfile) -> float | None:
                    i_ma, u_mv = _read_int(c), _read_int(v)
                    return None if i_ma is None or u_mv is None else (i_ma / MA_PER_A) * (u_mv / MV_PER_V)
                detail = f"{cfile} (mA) x {vfile} (mV)"
                reader = read_vi
            else:
                missing.append(Missing(f"{chip}/{lab}", f"{d}: curr{k}_input without in{k}_input: no power"))
                continue
            if reader() is None:
                missing.append(Missing(f"{chip}/{lab}", f"{detail}: not readable"))
                continue
            power.append(PowerSource(f"{chip}/{lab}", "hwmon", detail, is_input_rail(lab), reader))
        for k in sorted(idx["temp"]):
            tfile = d / f"temp{k}_input"
            lab = label("temp", k) or f"temp{k}"

            def read_t(p: Path = tfile) -> float | None:
                v = _read_int(p)
                return None if v is None else v / MDEGC_PER_DEGC
            if read_t() is None:
                missing.append(Missing(f"{chip}/{lab}", f"{tfile}: not readable"))
                continue
            temps.append(TempSource(f"{chip}/{lab}", "hwmon", f"{tfile} (m°C)", read_t))


def _iio_channels(root: Path, power: list[PowerSource], missing: list[Missing]) -> None:
    """Jetson L4T 32.x: the ina3221x IIO driver (``in_power<k>_input`` in mW, ``rail_name_<k>``)."""
    for d in sorted((root / "bus" / "iio" / "devices").glob("iio:device*")):
        chip = _read_text(d / "name") or d.name
        if "ina" not in chip.lower():
            continue
        for pfile in sorted(d.glob("in_power*_input")):
            k = re.sub(r"\D", "", pfile.name)
            lab = _read_text(d / f"rail_name_{k}") or f"ch{k}"

            def read_p(p: Path = pfile) -> float | None:
                v = _read_int(p)
                return None if v is None else v / MW_PER_W
            if read_p() is None:
                missing.append(Missing(f"{chip}/{lab}", f"{pfile}: not readable"))
                continue
            power.append(PowerSource(f"{chip}/{lab}", "iio", f"{pfile} (mW)", is_input_rail(lab), read_p))


def _thermal_zones(root: Path, temps: list[TempSource], missing: list[Missing]) -> None:
    base = root / "class" / "thermal"
    zones = sorted(base.glob("thermal_zone*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not zones:
        missing.append(Missing("thermal zones", f"no {base}/thermal_zone*"))
        return
    for z in zones:
        kind = _read_text(z / "type") or "?"
        tfile = z / "temp"

        def read_t(p: Path = tfile) -> float | None:
            v = _read_int(p)
            return None if v is None else v / MDEGC_PER_DEGC
        if read_t() is None:  # some zones answer EINVAL/ENODATA while their sensor is off
            missing.append(Missing(f"{z.name}:{kind}", f"{tfile}: not readable"))
            continue
        temps.append(TempSource(f"{z.name}:{kind}", "thermal", f"{tfile} (m°C)", read_t))


class RaplDomain:
    """A RAPL energy counter (µJ, wraps at ``max_energy_range_uj``) turned into watts over a minimum window."""

    def __init__(self, path: Path, name: str, min_window_s: float, monotonic: Callable[[], float]) -> None:
        self.path = path
        self.name = name
        self.energy_file = path / "energy_uj"
        self.range_uj = _read_int(path / "max_energy_range_uj") or 0
        self._mono = monotonic
        self._window = MinWindow(min_window_s)
        self._last_raw: int | None = None
        self._total_uj = 0

    def read_w(self) -> float | None:
        raw = _read_int(self.energy_file)
        if raw is None:
            return self._window.value
        if self._last_raw is not None:
            delta = raw - self._last_raw
            if delta < 0 and self.range_uj:
                delta += self.range_uj + 1   # the counter wrapped
            self._total_uj += max(delta, 0)
        self._last_raw = raw
        w = self._window.update(self._total_uj / UJ_PER_J, self._mono())
        return w


def _rapl(root: Path, power: list[PowerSource], missing: list[Missing], min_window_s: float,
          monotonic: Callable[[], float]) -> None:
    base = root / "class" / "powercap"
    tops = sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not tops:
        missing.append(Missing("RAPL", f"no {base}/intel-rapl:* (not an x86 CPU, or the powercap driver is not "
                                       "loaded)"))
        return
    for d in tops:
        name = _read_text(d / "name") or d.name
        efile = d / "energy_uj"
        try:
            int(efile.read_text().split()[0])
        except PermissionError:
            missing.append(Missing(f"rapl/{name}", f"{efile}: permission denied (root-only since Linux 5.10; run "
                                                   "as root or chmod o+r it)"))
            continue
        except (OSError, ValueError, IndexError):
            missing.append(Missing(f"rapl/{name}", f"{efile}: not readable"))
            continue
        dom = RaplDomain(d, name, min_window_s, monotonic)
        dom.read_w()  # baseline
        # psys is the whole platform (it includes the packages); a package is the CPU only
        power.append(PowerSource(f"rapl/{name}", "rapl", f"{efile} (uJ, differentiated)", name == "psys",
                                 dom.read_w))


# -- cpufreq -----------------------------------------------------------------------------------------------------------
@dataclass
class CpuPolicy:
    cpu: str
    path: Path
    governor: str | None
    min_khz: int | None
    max_khz: int | None
    scaling_max_khz: int | None
    writable: bool


class CpuFreq:
    """Per-CPU clocks (``scaling_cur_freq``) and the clock cap (``scaling_max_freq``, honoured by every governor)."""

    def __init__(self, root: Path) -> None:
        base = root / "devices" / "system" / "cpu"
        self.policies: list[CpuPolicy] = []
        for d in sorted(base.glob("cpu[0-9]*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
            cf = d / "cpufreq"
            if not (cf / "scaling_max_freq").exists():
                continue
            smax = cf / "scaling_max_freq"
            self.policies.append(CpuPolicy(d.name, cf, _read_text(cf / "scaling_governor"),
                                           _read_int(cf / "cpuinfo_min_freq"), _read_int(cf / "cpuinfo_max_freq"),
                                           _read_int(smax), os.access(smax, os.W_OK)))
        self._original = {p.cpu: p.scaling_max_khz for p in self.policies}
        self.capped_mhz: float | None = None

    @property
    def present(self) -> bool:
        return bool(self.policies)

    @property
    def writable(self) -> bool:
        return any(p.writable for p in self.policies)

    def clock_mhz(self) -> float | None:
        vals = [v for p in self.policies if (v := _read_int(p.path / "scaling_cur_freq")) is not None]
        return sum(vals) / len(vals) / KHZ_PER_MHZ if vals else None

    def cap(self, clock_mhz: float | None) -> list[str]:
        """Write ``scaling_max_freq`` on every CPU (None: restore the values found at start-up). Returns problems."""
        problems = []
        for p in self.policies:
            if clock_mhz is None:
                target = self._original.get(p.cpu)
                if target is None:
                    continue
            else:
                target = round(clock_mhz * KHZ_PER_MHZ)
                if p.max_khz is not None:
                    target = min(target, p.max_khz)
                if p.min_khz is not None:
                    target = max(target, p.min_khz)
            try:
                (p.path / "scaling_max_freq").write_text(f"{target}\n", encoding="ascii")
            except OSError as exc:
                problems.append(f"{p.cpu}: cannot write scaling_max_freq ({exc.strerror or exc}): not allowed")
        self.capped_mhz = clock_mhz if not problems else self.capped_mhz
        return problems


# -- tools ------------------------------------------------------------------------------------------------------------
NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=power.draw,temperature.gpu,utilization.gpu",
                    "--format=csv,noheader,nounits")


def _num(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_nvidia_smi(text: str) -> dict[str, float | None]:
    """``power.draw, temperature.gpu, utilization.gpu`` per GPU line -> summed W, hottest °C, mean utilisation 0..1."""
    powers, temps, utils = [], [], []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        p, t, u = (_num(x) for x in parts)
        if p is not None:
            powers.append(p)
        if t is not None:
            temps.append(t)
        if u is not None:
            utils.append(u / 100.0)
    return {"power_w": sum(powers) if powers else None, "temp_degc": max(temps) if temps else None,
            "utilisation": sum(utils) / len(utils) if utils else None, "gpus": float(len(powers) or len(temps))}


class NvidiaSmi:
    """One ``nvidia-smi`` query at most every ``min_period_s`` of wall time (it takes ~50-100 ms)."""

    def __init__(self, runner: Runner, monotonic: Callable[[], float], min_period_s: float = 1.0) -> None:
        self.runner = runner
        self._mono = monotonic
        self.min_period_s = min_period_s
        self._t: float | None = None
        self.last: dict[str, float | None] = {}

    def query(self) -> dict[str, float | None]:
        now = self._mono()
        if self._t is None or now - self._t >= self.min_period_s:
            self._t = now
            try:
                self.last = parse_nvidia_smi(self.runner(NVIDIA_SMI_QUERY, 5.0))
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("nvidia-smi failed: %s", exc)
                self.last = {}
        return self.last


_TEGRA_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TEGRA_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_TEGRA_GR3D = re.compile(r"\bGR3D_FREQ\s+(\d+)%(?:@\[?(\d+)\]?)?")
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ", "APE", "MTS"})


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line (JetPack 4 ``POM_5V_IN 1115/1115`` or JetPack 5+ ``VDD_IN 4507mW/4507mW``) ->
    ``{"rails_w": {name: W}, "temps_degc": {name: °C}, "gpu_util": 0..1 | None, "gpu_mhz": MHz | None}``."""
    rails = {m.group(1): int(m.group(2)) / MW_PER_W for m in _TEGRA_RAIL.finditer(line)
             if m.group(1) not in _NOT_RAILS}
    temps = {m.group(1): float(m.group(2)) for m in _TEGRA_TEMP.finditer(line)}
    g = _TEGRA_GR3D.search(line)
    return {"rails_w": rails, "temps_degc": temps,
            "gpu_util": int(g.group(1)) / 100.0 if g else None,
            "gpu_mhz": float(g.group(2)) if g and g.group(2) else None}


class Tegrastats:
    """A running ``tegrastats --interval MS``; a reader thread keeps the latest parsed line."""

    def __init__(self, exe: str, interval_ms: int = 500) -> None:
        self.proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.latest: dict[str, Any] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="agent-tegrastats", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parsed = parse_tegrastats(line)
            if parsed["rails_w"] or parsed["temps_degc"]:
                self.latest = parsed
                self._ready.set()
        self._ready.set()

    def wait_first(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s) and bool(self.latest)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=3)


# -- the aggregate ----------------------------------------------------------------------------------------------------
@dataclass
class Reading:
    """One sample: what goes into ``accel.report`` (None = not measured, left out)."""

    power_w: float | None
    power_estimated: bool
    die_temp_degc: float | None
    clock_mhz: float | None
    gpu_utilisation: float | None = None


@dataclass
class SensorOptions:
    sysfs_root: str = "/sys"
    #: use this power source only (a name from the table, or a label such as VDD_IN)
    power_channel: str | None = None
    #: use this temperature source only (a name from the table, or a thermal zone type)
    temp_sensor: str | None = None
    #: estimate = idle + (busy - idle) x utilisation, when nothing is measured (W); None: no estimate
    fallback_power_w: float | None = None
    fallback_idle_w: float | None = None
    nvidia_smi: bool = True
    tegrastats: bool = True
    #: a counter-derived rate (RAPL) is taken over at least this much wall time
    min_window_s: float = 0.5


@dataclass
class PowerPlan:
    kind: str                        #: "measured" or "estimate"
    sources: list[PowerSource] = field(default_factory=list)
    description: str = ""


class Sensors:
    """Discover the board's sensors once, then :meth:`sample` them for every report."""

    def __init__(self, options: SensorOptions | None = None, *, runner: Runner | None = None,
                 which: Callable[[str], str | None] = shutil.which,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.options = o = options or SensorOptions()
        self.root = Path(o.sysfs_root)
        self._runner = runner or default_runner
        self._which = which
        self._mono = monotonic
        self.power: list[PowerSource] = []
        self.temps: list[TempSource] = []
        self.missing: list[Missing] = []
        self.cpufreq = CpuFreq(self.root)
        self.smi: NvidiaSmi | None = None
        self.tegra: Tegrastats | None = None
        self.power_plan: PowerPlan | None = None
        self.temp_choice: list[TempSource] = []
        self.notes: list[str] = []

    # -- discovery -------------------------------------------------------------------------------------------------
    def discover(self) -> Sensors:
        o = self.options
        _hwmon_channels(self.root, self.power, self.temps, self.missing)
        _iio_channels(self.root, self.power, self.missing)
        _thermal_zones(self.root, self.temps, self.missing)
        _rapl(self.root, self.power, self.missing, o.min_window_s, self._mono)
        if not self.cpufreq.present:
            self.missing.append(Missing("cpufreq", f"no {self.root}/devices/system/cpu/cpu*/cpufreq (no clock "
                                                   "reading, no clock cap)"))
        self._discover_tools()
        self._choose_power()
        self._choose_temp()
        return self

    def _discover_tools(self) -> None:
        o = self.options
        if o.nvidia_smi:
            if self._which("nvidia-smi"):
                smi = NvidiaSmi(self._runner, self._mono)
                first = smi.query()
                if first.get("power_w") is None and first.get("temp_degc") is None:
                    self.missing.append(Missing("nvidia-smi", "installed, but the query returned no GPU"))
                else:
                    self.smi = smi
                    if first.get("power_w") is not None:
                        self.power.append(PowerSource("nvidia-smi/gpu", "nvidia-smi", " ".join(NVIDIA_SMI_QUERY),
                                                      False, lambda: smi.query().get("power_w")))
                    if first.get("temp_degc") is not None:
                        self.temps.append(TempSource("nvidia-smi/gpu", "nvidia-smi", "temperature.gpu",
                                                     lambda: smi.query().get("temp_degc")))
            else:
                self.missing.append(Missing("nvidia-smi", "not installed"))
        if o.tegrastats:
            exe = self._which("tegrastats")
            if exe:
                tegra = Tegrastats(exe)
                if tegra.wait_first(3.0):
                    self.tegra = tegra
                    for rail in tegra.latest["rails_w"]:
                        self.power.append(PowerSource(f"tegrastats/{rail}", "tegrastats", f"tegrastats {rail} (mW)",
                                                      is_input_rail(rail),
                                                      lambda r=rail: tegra.latest["rails_w"].get(r)))
                    for zone in tegra.latest["temps_degc"]:
                        self.temps.append(TempSource(f"tegrastats/{zone}", "tegrastats", f"tegrastats {zone}@C",
                                                     lambda z=zone: tegra.latest["temps_degc"].get(z)))
                else:
                    tegra.close()
                    self.missing.append(Missing("tegrastats", "installed, but printed no sample within 3 s"))
            else:
                self.missing.append(Missing("tegrastats", "not installed (Jetson only)"))

    def _match_power(self, want: str) -> list[PowerSource]:
        return [s for s in self.power if s.name == want or s.name.split("/", 1)[-1] == want]

    def _choose_power(self) -> None:
        o = self.options
        if o.power_channel:
            hits = self._match_power(o.power_channel)
            if not hits:
                raise ConfigError(f"--power-channel {o.power_channel!r}: no such power source; found: "
                                  f"{', '.join(s.name for s in self.power) or 'none'}", field="power_channel",
                                  valid=[s.name for s in self.power])
            self.power_plan = PowerPlan("measured", hits[:1], f"{hits[0].name} (chosen with --power-channel)")
            return
        inputs = [s for s in self.power if s.input_rail]
        # prefer a monitor on the board's input (hwmon/iio, then tegrastats, then RAPL psys)
        order = {"hwmon": 0, "iio": 1, "tegrastats": 2, "rapl": 3}
        if inputs:
            best = min(inputs, key=lambda s: order.get(s.origin, 9))
            self.power_plan = PowerPlan("measured", [best], f"{best.name} (board input)")
            return
        if self.power:
            parts = self.power
            self.power_plan = PowerPlan("measured", list(parts),
                                        f"sum of {', '.join(s.name for s in parts)} (no input rail found: the sum "
                                        "may miss parts of the board or count a rail twice; choose one with "
                                        "--power-channel)")
            return
        if o.fallback_power_w is not None:
            idle = o.fallback_idle_w if o.fallback_idle_w is not None else o.fallback_power_w
            self.power_plan = PowerPlan("estimate", [], f"ESTIMATE {idle:g} W idle .. {o.fallback_power_w:g} W busy, "
                                                        "scaled by utilisation (nothing measured)")
            return
        raise ConfigError("no power source found on this board (" + "; ".join(
            f"{m.what}: {m.why}" for m in self.missing) + "). accel.report needs power_w: give "
            "--fallback-power-w W (busy) and --fallback-idle-w W to report a labelled estimate",
            field="fallback_power_w")

    def _choose_temp(self) -> None:
        o = self.options
        if o.temp_sensor:
            hits = [t for t in self.temps if t.name == o.temp_sensor or t.name.split(":", 1)[-1] == o.temp_sensor
                    or t.name.split("/", 1)[-1] == o.temp_sensor]
            if not hits:
                raise ConfigError(f"--temp-sensor {o.temp_sensor!r}: no such temperature source; found: "
                                  f"{', '.join(t.name for t in self.temps) or 'none'}", field="temp_sensor",
                                  valid=[t.name for t in self.temps])
            self.temp_choice = hits[:1]
            return
        die = [t for t in self.temps if is_die_sensor(t.name)]
        self.temp_choice = die or list(self.temps)

    # -- sampling --------------------------------------------------------------------------------------------------
    def estimate_w(self, utilisation: float) -> float | None:
        o = self.options
        if o.fallback_power_w is None:
            return None
        idle = o.fallback_idle_w if o.fallback_idle_w is not None else o.fallback_power_w
        u = min(1.0, max(0.0, utilisation))
        return idle + (o.fallback_power_w - idle) * u

    def sample(self, utilisation: float) -> Reading:
        plan = self.power_plan
        power: float | None = None
        estimated = False
        if plan is not None and plan.kind == "measured":
            vals = [s.read_w() for s in plan.sources]
            if all(v is not None for v in vals):
                power = max(0.0, sum(v for v in vals if v is not None))
        if power is None and plan is not None and plan.kind == "estimate":
            power = self.estimate_w(utilisation)
            estimated = power is not None
        temp = None
        vals_t = [v for t in self.temp_choice if (v := t.read_degc()) is not None
                  and TEMP_VALID_DEGC[0] <= v <= TEMP_VALID_DEGC[1]]
        if vals_t:
            temp = max(vals_t)
        clock = self.cpufreq.clock_mhz()
        gpu_util = None
        if self.smi is not None:
            gpu_util = self.smi.query().get("utilisation")
        elif self.tegra is not None:
            gpu_util = self.tegra.latest.get("gpu_util")
        return Reading(power, estimated, temp, clock, gpu_util)

    # -- what we found -----------------------------------------------------------------------------------------------
    def table(self) -> str:
        """The start-up table (stderr): every source found, its reading and units, and what is missing."""
        rows = [("kind", "source", "reading", "from")]
        chosen_p = {id(s) for s in (self.power_plan.sources if self.power_plan else [])}
        for s in self.power:
            v = s.read_w()
            mark = " *" if id(s) in chosen_p else ""
            rows.append(("power" + mark, s.name, "-" if v is None else f"{v:.3f} W", s.detail))
        chosen_t = {id(t) for t in self.temp_choice}
        for t in self.temps:
            v = t.read_degc()
            mark = " *" if id(t) in chosen_t else ""
            rows.append(("temp" + mark, t.name, "-" if v is None else f"{v:.1f} °C", t.detail))
        if self.cpufreq.present:
            c = self.cpufreq.clock_mhz()
            gov = sorted({p.governor or "?" for p in self.cpufreq.policies})
            rows.append(("clock *", f"cpufreq ({len(self.cpufreq.policies)} CPUs)",
                         "-" if c is None else f"{c:.0f} MHz",
                         (f"governor {','.join(gov)}; scaling_max_freq "
                         f"{'writable' if self.cpufreq.writable else 'NOT writable (clock cap will be logged only)'}")))
        for m in self.missing:
            rows.append(("missing", m.what, "-", m.why))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        lines.insert(1, "-" * min(120, sum(widths) + 6 + max(len(r[3]) for r in rows)))
        plan = self.power_plan
        lines.append("")
        lines.append(f"power reported: {plan.kind.upper()}: {plan.description}" if plan else "power reported: none")
        lines.append("temperature reported: " + (", ".join(t.name for t in self.temp_choice) + " (hottest)"
                                                  if self.temp_choice else "none (left out of accel.report)"))
        lines.append("clock reported: " + ("mean scaling_cur_freq" if self.cpufreq.present
                                            else "none (left out of accel.report)"))
        return "\n".join(lines)

    def capabilities(self) -> list[str]:
        """Short strings for ``board.hello`` capabilities (at most 40 source entries)."""
        plan = self.power_plan
        caps = []
        if plan is not None:
            if plan.kind == "measured":
                caps.append("power:measured:" + "+".join(s.name for s in plan.sources))
            else:
                o = self.options
                idle = o.fallback_idle_w if o.fallback_idle_w is not None else o.fallback_power_w
                caps.append(f"power:estimate:idle={idle:g}W,busy={o.fallback_power_w:g}W")
        caps.append("temp:measured:" + "+".join(t.name for t in self.temp_choice) if self.temp_choice
                    else "temp:none")
        caps.append("clock:measured:cpufreq" if self.cpufreq.present else "clock:none")
        caps.append("clock_cap:cpufreq" if self.cpufreq.writable else "clock_cap:none")
        sources = [f"source:{s.origin}:{s.name}" for s in self.power] + \
                  [f"source:{t.origin}:{t.name}" for t in self.temps]
        caps += sources[:40]
        if len(sources) > 40:
            caps.append(f"source:+{len(sources) - 40} more")
        caps += [f"missing:{m.what}" for m in self.missing][: 60 - len(caps)]
        return caps

    def close(self) -> None:
        if self.tegra is not None:
            self.tegra.close()
            self.tegra = None
        with contextlib.suppress(Exception):
            if self.cpufreq.capped_mhz is not None:
                self.cpufreq.cap(None)

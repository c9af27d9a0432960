"""Satellite composition: environment chunks, rail supply to the accelerator, heat routing, board-plane interface,
faults, determinism, and the shipped configs. Small fakes that follow the contract drive the coupling tests; the
real Environment / AcceleratorBoard drive the config and day-run tests."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from emulator.errors import CommandError
from emulator.models.base import Interface
from emulator.models.power import ArrayConfig, BatteryConfig, LoadConfig, PowerConfig, RailConfig
from emulator.models.satellite import (
    EpsTelemetry,
    Satellite,
    SatelliteConfig,
    SunTelemetry,
    ThermalTelemetry,
)
from emulator.models.sensors import SensorsConfig
from emulator.models.thermal import (
    HeaterConfig,
    LinkConfig,
    NodeConfig,
    SurfaceConfig,
    ThermalConfig,
    ThermalNetwork,
)

NS = 1_000_000_000
EPOCH = dt.datetime(2026, 6, 21, tzinfo=dt.UTC)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SAT_CONFIGS = ("suncatcher-proto", "cubesat-6u-jetson", "starcloud-like")
ENERGY_CLOSURE_REL = 1e-3
PERIOD_S, ECLIPSE_S = 5820, 2100


# -- fakes that follow the contract -------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeChunk:
    t_ns: np.ndarray
    face_solar_w_m2: np.ndarray
    face_albedo_w_m2: np.ndarray
    face_ir_w_m2: np.ndarray
    tracking_solar_w_m2: np.ndarray
    sunlit_frac: np.ndarray
    dose_rate_rad_s: np.ndarray
    rad_flux_factor: np.ndarray
    in_saa: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    def sample(self, i: int) -> SimpleNamespace:
        return SimpleNamespace(sunlit_frac=self.sunlit_frac[i], tracking_solar_w_m2=self.tracking_solar_w_m2[i],
                               dose_rate_rad_s=self.dose_rate_rad_s[i], in_saa=self.in_saa[i])


class FakeEnvironment:
    """Eclipse for the first 2100 s of every 5820 s orbit; the Sun on -Y; Earth below +Z."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def chunk(self, t0_ns: int, dt_ns: int, n: int) -> FakeChunk:
        self.calls.append((t0_ns, dt_ns, n))
        t_ns = t0_ns + dt_ns * np.arange(n, dtype=np.int64)
        sun = ((t_ns // NS) % PERIOD_S >= ECLIPSE_S).astype(float)
        face = np.zeros((n, 6))
        face[:, 3] = 1361.0 * sun
        albedo = np.zeros((n, 6))
        albedo[:, 4] = 0.3 * 1361.0 * 0.5 * sun
        ir = np.zeros((n, 6))
        ir[:, 4] = 237.0
        return FakeChunk(t_ns, face, albedo, ir, 1361.0 * sun, sun, np.full(n, 1e-8), np.ones(n),
                         np.zeros(n, dtype=bool))


class FakeBoard:
    """Draws power_w while its rail is up; heat = load."""

    def __init__(self, power_w: float = 30.0) -> None:
        self.power_w = power_w
        self.supplies: list[float] = []
        self.die_temps: list[float] = []
        self.load_w = 0.0
        self.heat_w = 0.0

    def step(self, t_ns: int, dt_s: float, *, supply_v: float, die_temp_degc: float, dose_rate_rad_s: float,
             rad_flux_factor: float) -> None:
        self.supplies.append(supply_v)
        self.die_temps.append(die_temp_degc)
        self.load_w = self.heat_w = self.power_w if supply_v > 0.0 else 0.0

    def interface(self) -> Interface:
        return Interface()

    def truth(self) -> dict:
        return {"load_w": self.load_w}

    def drain_events(self) -> list:
        return []


def small_config(**power_kw: Any) -> SatelliteConfig:
    power = PowerConfig(**{
        "arrays": [ArrayConfig(name="wing", area_m2=0.12, mount="tracking"),
                   ArrayConfig(name="side", area_m2=0.03, face="-Y")],
        "battery": BatteryConfig(initial_soc=0.7),
        "rails": [RailConfig(name="obc_3v3", voltage_v=3.3, rating_w=10, current_limit_a=2),
                  RailConfig(name="payload", voltage_v=12.0, rating_w=60, current_limit_a=4.0, shed_mode="safe",
                             thermal_node="payload_board"),
                  RailConfig(name="heaters", kind="unregulated", efficiency=0.99, rating_w=10, current_limit_a=2,
                             shed_mode="critical", thermal_node="battery")],
        "loads": [LoadConfig(name="obc", rail="obc_3v3", power_w=1.5)],
        **power_kw})
    thermal = ThermalConfig(
        nodes=[NodeConfig(name="structure", capacity_j_k=4000.0), NodeConfig(name="solar_panels", capacity_j_k=600.0),
               NodeConfig(name="battery", capacity_j_k=300.0, initial_temp_degc=8.0),
               NodeConfig(name="payload_board", capacity_j_k=200.0), NodeConfig(name="accel_die", capacity_j_k=30.0)],
        links=[LinkConfig(a="structure", b="solar_panels", conductance_w_k=0.3),
               LinkConfig(a="structure", b="battery", conductance_w_k=0.2),
               LinkConfig(a="structure", b="payload_board", conductance_w_k=1.0),
               LinkConfig(a="payload_board", b="accel_die", conductance_w_k=3.0)],
        surfaces=[SurfaceConfig(node="solar_panels", area_m2=0.12, face="sun", absorptivity=0.88, emissivity=0.8),
                  SurfaceConfig(node="solar_panels", area_m2=0.12, face="none", absorptivity=0.0, emissivity=0.8),
                  SurfaceConfig(node="structure", area_m2=0.2, face="+Z", absorptivity=0.15, emissivity=0.91),
                  SurfaceConfig(node="structure", area_m2=0.1, face="-Z", absorptivity=0.15, emissivity=0.91)],
        heaters=[HeaterConfig(name="batt_htr", node="battery", power_w=2.0, rail="heaters")])
    return SatelliteConfig.model_construct(
        name="testsat", orbit=None, environment=None, power=power, thermal=thermal, sensors=SensorsConfig(),
        accelerator=SimpleNamespace(rail="payload", thermal_node="accel_die"), radiation=None)


def fake_sat(seed: int = 1, board: FakeBoard | None = None, **power_kw: Any) -> Satellite:
    return Satellite(small_config(**power_kw), epoch_utc=EPOCH, seed=seed, environment=FakeEnvironment(),
                     accelerator=board or FakeBoard())


def run(sat: Satellite, seconds: int, t0_s: int = 0, dt_s: float = 1.0) -> None:
    dt_ns = round(dt_s * NS)
    for k in range(round(seconds / dt_s)):
        sat.step(t0_s * NS + k * dt_ns, dt_ns)


def iface_maps(sat: Satellite) -> tuple[dict, dict]:
    iface = sat.interface()
    return {c.spec.topic: c for c in iface.commands}, {f.name: f for f in iface.faults}


# -- coupling -------------------------------------------------------------------------------------------------
def test_environment_is_pulled_in_chunks() -> None:
    sat = fake_sat()
    run(sat, 7300)
    assert [c[0] // NS for c in sat.env.calls] == [0, 3600, 7200]
    assert all(c[2] == 3600 for c in sat.env.calls)


def test_accelerator_gets_its_rail_voltage_and_its_node_temperature() -> None:
    board = FakeBoard(30.0)
    sat = fake_sat(board=board)
    cmds, _ = iface_maps(sat)
    run(sat, 10, t0_s=3000)
    assert board.supplies[-1] == 12.0
    assert board.die_temps[-1] == pytest.approx(sat.thermal.temp_degc("accel_die"), abs=2.0)
    cmds["eps.rail.set"].handle(cmds["eps.rail.set"].spec.schema(rail="payload", on=False))
    run(sat, 5, t0_s=3010)
    assert board.supplies[-1] == 0.0 and board.load_w == 0.0
    assert sat.power.rail("payload").p_out == 0.0


def test_accelerator_heat_warms_its_node() -> None:
    hot, cold = FakeBoard(40.0), FakeBoard(0.0)
    a, b = fake_sat(board=hot), fake_sat(board=cold)
    run(a, 600, t0_s=3000)
    run(b, 600, t0_s=3000)
    assert a.thermal.temp_degc("accel_die") > b.thermal.temp_degc("accel_die") + 5.0


def test_battery_heater_runs_in_eclipse_and_keeps_the_pack_above_its_setpoint() -> None:
    sat = fake_sat()
    run(sat, 2 * PERIOD_S)
    tb = sat.thermal.temp_degc("battery")
    assert tb > 5.0 - 1.0
    assert sat.power.ledger.load_j > 0


def test_energy_balance_closes_for_the_whole_satellite_over_a_day() -> None:
    sat = fake_sat(board=FakeBoard(25.0))
    run(sat, 86400)
    b = sat.power.balance()
    assert abs(b["residual_j"]) < ENERGY_CLOSURE_REL * b["array_j"]


def test_same_seed_same_run() -> None:
    def trace(seed: int) -> list:
        sat = fake_sat(seed)
        out = []
        for k in range(300):
            sat.step(k * NS, NS)
            if k % 10 == 0:
                out.append((sat.read_eps(), sat.read_thermal(), sat.read_sun()))
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_written_in_thermal_step_equals_the_thermal_networks_own() -> None:
    """step_many writes a ThermalNetwork's usual thermostat pass and its step vector in; a stand-in network (any
    other type) is called through thermostat() and advance(): the two give the same bits, heaters switching."""

    class CalledThermal(ThermalNetwork):
        pass

    class BatchBoard(FakeBoard):
        def has_events(self) -> bool:
            return False

    own, called = fake_sat(board=BatchBoard()), fake_sat(board=BatchBoard())
    called.thermal.__class__ = CalledThermal
    switches = 0
    t = 0
    while t < 2 * PERIOD_S * NS:
        batch = min(97, 2 * PERIOD_S - t // NS)
        n_own = own.step_many(t, NS, batch)
        assert called.step_many(t, NS, batch) == n_own
        t += n_own * NS
        own.drain_events()
        called.drain_events()
        assert own.thermal.T.tolist() == called.thermal.T.tolist()
        assert own.thermal.heater_on == called.thermal.heater_on
        switches += own.thermal.heater_on != [False] * len(own.thermal.heater_on)
        assert (own.power.soc, own.power.bus_v) == (called.power.soc, called.power.bus_v)
    assert own.thermal.refreshes == called.thermal.refreshes > 1
    assert switches and own.steps == called.steps == 2 * PERIOD_S


# -- interface ------------------------------------------------------------------------------------------------
def test_telemetry_validates_against_its_schemas_and_packs() -> None:
    sat = fake_sat()
    run(sat, 3000)
    iface = sat.interface()
    topics = {t.spec.topic: t for t in iface.telemetry}
    assert set(topics) >= {"eps.telemetry", "thermal.telemetry", "adcs.sun"}
    eps = EpsTelemetry.model_validate(topics["eps.telemetry"].sample())
    assert [r.name for r in eps.rails] == ["obc_3v3", "payload", "heaters"]
    assert eps.mode in ("normal", "full")
    ThermalTelemetry.model_validate(topics["thermal.telemetry"].sample())
    sun = SunTelemetry.model_validate(topics["adcs.sun"].sample())
    assert sun.eclipse is False and sun.sun_w_m2 > 1000
    run(sat, 10, t0_s=PERIOD_S)  # eclipse
    assert SunTelemetry.model_validate(sat.read_sun()).eclipse is True
    msgpack.packb(sat.truth())
    assert sat.truth()["thermal"]["heaters"]["batt_htr"]["rail"] == "heaters"  # the console: a heater's power
    for t in iface.telemetry:
        msgpack.packb(t.sample())


def test_sensors_read_near_the_truth() -> None:
    sat = fake_sat()
    run(sat, 3000)
    eps = sat.read_eps()
    assert eps["bus_v"] == pytest.approx(sat.power.bus_v, abs=0.05)
    assert eps["rails"][1]["voltage_v"] == pytest.approx(12.0, abs=0.05)
    assert eps["rails"][1]["current_a"] == pytest.approx(30.0 / 12.0, abs=0.05)
    temps = sat.read_thermal()["temps_degc"]
    for name, t in temps.items():
        assert t == pytest.approx(sat.thermal.temp_degc(name), abs=0.5)


def test_unknown_rail_command_names_the_valid_rails_and_changes_nothing() -> None:
    sat = fake_sat()
    cmds, _ = iface_maps(sat)
    before = sat.truth()["power"]["rails"]
    for topic in ("eps.rail.set", "eps.rail.reset"):
        spec = cmds[topic].spec
        payload = {"rail": "paylod", "on": False} if topic == "eps.rail.set" else {"rail": "paylod"}
        with pytest.raises(CommandError) as exc:
            cmds[topic].handle(spec.schema(**payload))
        assert exc.value.valid == ["obc_3v3", "payload", "heaters"] and exc.value.field == "payload.rail"
    assert sat.truth()["power"]["rails"] == before


def test_shed_and_heater_commands_are_validated() -> None:
    sat = fake_sat()
    cmds, _ = iface_maps(sat)
    shed = cmds["eps.shed.set"]
    with pytest.raises(CommandError):
        shed.handle(shed.spec.schema(safe_v=7.9))
    out = shed.handle(shed.spec.schema(safe_v=7.1))
    assert out["thresholds_v"]["safe_v"] == 7.1
    heat = cmds["thermal.heater.set"]
    with pytest.raises(CommandError) as exc:
        heat.handle(heat.spec.schema(heater="nope", mode="on"))
    assert exc.value.valid == ["batt_htr"]
    heat.handle(heat.spec.schema(heater="batt_htr", mode="on"))
    run(sat, 2, t0_s=3000)
    assert sat.thermal.heater_on == [True]


def test_rail_short_fault_trips_the_payload_and_reset_restores_it() -> None:
    sat = fake_sat()
    cmds, faults = iface_maps(sat)
    run(sat, 5, t0_s=3000)
    f = faults["eps.rail.short"]
    params = f.params(rail="payload", extra_a=10.0)
    f.inject(params)
    run(sat, 1, t0_s=3005)
    r = sat.power.rail("payload")
    assert r.trips == 1 and not r.on
    assert ("eps.rail.tripped" in [e[0] for e in sat.drain_events()])
    run(sat, 10, t0_s=3006)  # 1 s off, retry, trip again ... 3 retries, then latched
    assert r.trips == 4 and r.latched and sat.accel.supplies[-1] == 0.0
    f.clear(params)
    reset = cmds["eps.rail.reset"]
    reset.handle(reset.spec.schema(rail="payload"))
    run(sat, 2, t0_s=3016)
    assert r.on and sat.accel.supplies[-1] == 12.0
    with pytest.raises(CommandError):
        f.inject(f.params(rail="nope", extra_a=1.0))


def test_array_string_and_cell_faults() -> None:
    sat = fake_sat()
    _, faults = iface_maps(sat)
    run(sat, 5, t0_s=3000)
    p0 = sat.power.array_total_w
    faults["eps.array.string_fail"].inject(faults["eps.array.string_fail"].params(array="wing", strings=2))
    run(sat, 1, t0_s=3005)
    assert sat.power.array_w[0] == pytest.approx(0.5 * p0 * 0.12 / 0.15, rel=0.05)
    cell = faults["eps.battery.cell_loss"]
    assert cell.clear is None
    cell.inject(cell.params(group=1))
    assert sat.power.truth()["cells_alive"] == [2, 1]


def test_sensor_faults_through_the_interface() -> None:
    sat = fake_sat()
    _, faults = iface_maps(sat)
    run(sat, 100, t0_s=3000)
    assert "thermal.battery" in sat.sensor_channels()
    f = faults["sensor.open"]
    p = f.params(channel="thermal.battery")
    f.inject(p)
    run(sat, 1, t0_s=3100)
    assert sat.read_thermal()["temps_degc"]["battery"] == -55.0
    f.clear(p)
    run(sat, 1, t0_s=3101)
    assert sat.read_thermal()["temps_degc"]["battery"] == pytest.approx(sat.thermal.temp_degc("battery"), abs=0.5)
    stuck = faults["sensor.stuck"]
    sp = stuck.params(channel="eps.bus_v")
    stuck.inject(sp)
    v = sat.read_eps()["bus_v"]
    run(sat, 3000, t0_s=3102)
    assert sat.read_eps()["bus_v"] == v
    assert sat.truth()["sensors"]["faults"] == {"eps.bus_v": ["stuck"]}
    with pytest.raises(CommandError) as exc:
        stuck.inject(stuck.params(channel="thermal.batery"))
    assert "thermal.battery" in exc.value.valid


# -- configs --------------------------------------------------------------------------------------------------
def load_raw(name: str) -> dict:
    return tomllib.loads((CONFIGS / f"{name}.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", SAT_CONFIGS)
def test_shipped_configs_validate(name: str) -> None:
    raw = load_raw(name)
    assert {"epoch_utc", "step_s", "mode", "speed", "seed", "duration_s"} <= set(raw["sim"])
    assert {"board", "control"} <= set(raw["links"])
    raw.pop("sim")
    raw.pop("links")
    cfg = SatelliteConfig.model_validate(raw)
    assert cfg.name


def _bad(name: str, path: list[Any], value: Any) -> dict:
    raw = load_raw(name)
    raw.pop("sim")
    raw.pop("links")
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "value", "needle"), [
    (["power", "rails", 0, "thermal_node"], "nowhere", "power.rails[0].thermal_node: unknown thermal node"),
    (["power", "battery", "cell_capacity_ah"], -2.0, "cell_capacity_ah"),
    (["power", "mppt_efficiency"], 1.3, "mppt_efficiency"),
    (["accelerator", "rail"], "nope", "accelerator.rail: unknown rail 'nope'"),
    (["thermal", "links", 0, "b"], "ghost", "links[0].b: unknown node 'ghost'"),
])
def test_impossible_satellite_configs_are_refused(path: list, value: Any, needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        SatelliteConfig.model_validate(_bad("cubesat-6u-jetson", path, value))
    assert needle in str(exc.value)


def test_rail_rating_must_cover_its_loads() -> None:
    raw = _bad("cubesat-6u-jetson", ["power", "loads"], [{"name": "brick", "rail": "obc_3v3", "power_w": 500.0}])
    with pytest.raises(ValidationError) as exc:
        SatelliteConfig.model_validate(raw)
    assert "rating" in str(exc.value)


def test_duplicate_rail_names_are_refused() -> None:
    raw = load_raw("cubesat-6u-jetson")
    raw.pop("sim")
    raw.pop("links")
    raw["power"]["rails"].append(dict(raw["power"]["rails"][0]))
    with pytest.raises(ValidationError) as exc:
        SatelliteConfig.model_validate(raw)
    assert "duplicate rail name" in str(exc.value)


# -- the real thing -------------------------------------------------------------------------------------------
def real_sat(name: str, seed: int = 1) -> Satellite:
    raw = load_raw(name)
    sim = raw.pop("sim")
    raw.pop("links")
    epoch = dt.datetime.fromisoformat(sim["epoch_utc"])
    return Satellite(SatelliteConfig.model_validate(raw), epoch_utc=epoch, seed=seed, step_s=sim["step_s"])


@pytest.mark.parametrize("name", SAT_CONFIGS)
def test_real_satellites_run_an_orbit_and_close_their_energy(name: str) -> None:
    sat = real_sat(name)
    run(sat, PERIOD_S)
    truth = sat.truth()
    msgpack.packb(truth)
    b = sat.power.balance()
    assert abs(b["residual_j"]) < ENERGY_CLOSURE_REL * max(b["array_j"], 1.0)
    assert 0.0 <= truth["power"]["soc"] <= 1.0
    for t in truth["thermal"]["temps_degc"].values():
        assert -150.0 < t < 200.0 and math.isfinite(t)
    iface = sat.interface()
    topics = [t.spec.topic for t in iface.telemetry]
    assert "eps.telemetry" in topics and any(t.startswith("accel.") for t in topics)
    for t in iface.telemetry:
        t.spec.schema.model_validate(t.sample())


def test_faces_match_the_environment() -> None:
    from emulator.models import power, thermal
    from emulator.models.environment import FACES

    assert power.FACES == thermal.FACES == FACES


async def test_runs_under_the_runtime_with_a_timed_rail_short() -> None:
    from emulator.clock import VirtualWall
    from emulator.config import load_config
    from emulator.runtime import Emulator

    cfg = load_config(CONFIGS / "cubesat-6u-jetson.toml")
    emu = Emulator.from_config(cfg, board_url=None, control_url=None, record_path=None, wall=VirtualWall())
    async with emu:
        await emu.run_for(60)
        emu.control("fault.inject", {"name": "eps.rail.short", "params": {"rail": "payload", "extra_a": 5.0},
                                     "duration_s": 10.0})
        await emu.run_for(30)
        rail = emu.truth()["satellite"]["power"]["rails"]["payload"]
        assert rail["trips"] == 4 and rail["latched"] and not rail["on"] and rail["short_a"] == 0.0


def predict(sat: Satellite, payload: Any) -> dict[str, Any]:
    """``orbit.predict`` through the satellite's interface, as the runtime calls it."""
    return next(c for c in sat.interface().commands if c.spec.topic == "orbit.predict").handle(payload)


def test_orbit_predict_matches_the_eclipse_search_and_changes_nothing() -> None:
    from emulator.config import load_config
    from emulator.models.satellite import OrbitPredict

    cfg = load_config(CONFIGS / "suncatcher-proto.toml")
    sat = Satellite(cfg.satellite, epoch_utc=cfg.run.sim.epoch_utc, seed=1, step_s=1.0)
    for k in range(100):
        sat.step(k * NS, NS)
    before = sat.truth()
    out = predict(sat, OrbitPredict(duration_s=2 * 6000.0, step_s=30.0))
    assert sat.truth() == before  # a look-ahead, not a step
    track = out["track"]
    assert len(track["t_ns"]) == 401 and track["t_ns"][0] == 100 * NS and track["t_ns"][1] - track["t_ns"][0] == 30 * NS
    assert all(-90 <= v <= 90 for v in track["lat_deg"]) and all(-180 <= v <= 180 for v in track["lon_deg"])
    orbit = sat.env.orbit
    ref = [e for e in orbit.find_eclipses(100.0, 12100.0) if e.entry_ns is not None and e.exit_ns is not None]
    got = [e for e in out["eclipses"] if e["entry_ns"] > 0 and e["exit_ns"] > 0]
    assert len(got) == len(ref) >= 1
    for g, r in zip(got, ref, strict=True):
        assert abs(g["entry_ns"] - r.entry_ns) < 2_000_000 and abs(g["exit_ns"] - r.exit_ns) < 2_000_000
    # the satellite is in the Sun at 100 s; the track's sunlit fraction agrees with the eclipse times
    in_shadow = [t for t, f in zip(track["t_ns"], track["sunlit_frac"], strict=True) if f < 0.5]
    assert in_shadow and all(any(e["entry_ns"] <= t <= e["exit_ns"] for e in got) for t in in_shadow
                             if t < got[-1]["exit_ns"])
    assert out["period_s"] == pytest.approx(orbit.period_s)
    assert out["beta_deg"] == pytest.approx(float(orbit.beta_deg(np.array([100.0]))[0]), abs=1e-6)
    # the SAA outline is where the in_saa flag switches
    env = sat.env
    lat, lon = np.array(out["saa_outline"]["lat_deg"]), np.array(out["saa_outline"]["lon_deg"])
    assert np.allclose(env.saa_rho(np.full(lat.shape, 100.0), lat, lon), 1.0)
    inside = env.saa_rho(np.array(track["t_ns"]) * 1e-9, np.array(track["lat_deg"]), np.array(track["lon_deg"])) <= 1
    assert track["in_saa"] == inside.tolist()


def test_orbit_predict_bounds_the_reply_and_is_a_control_plane_command() -> None:
    from emulator.config import load_config
    from emulator.models.satellite import OrbitPredict
    from emulator.protocol.catalogue import Plane

    cfg = load_config(CONFIGS / "suncatcher-proto.toml")
    sat = Satellite(cfg.satellite, epoch_utc=cfg.run.sim.epoch_utc, seed=1, step_s=1.0)
    spec = next(c.spec for c in sat.interface().commands if c.spec.topic == "orbit.predict")
    assert spec.plane == Plane.CONTROL
    with pytest.raises(CommandError) as exc:
        predict(sat, OrbitPredict(duration_s=86400.0, step_s=1.0))
    assert exc.value.field == "payload.step_s" and "at most 5000" in exc.value.message
    sat.step(0, NS)
    # in shadow at the start: the open eclipse is reported with entry -1
    shadow_t = next(e.entry_ns for e in sat.env.orbit.find_eclipses(0.0, 7000.0) if e.entry_ns)
    sat2 = Satellite(cfg.satellite, epoch_utc=cfg.run.sim.epoch_utc, seed=1, step_s=60.0)
    t = (shadow_t // (60 * NS) + 2) * 60 * NS
    sat2.step(t - 60 * NS, 60 * NS)
    first = predict(sat2, OrbitPredict(duration_s=3000.0, step_s=30.0))["eclipses"][0]
    assert first["entry_ns"] == -1 and first["exit_ns"] > t


def test_the_truth_and_the_sun_sensor_before_the_first_step_see_the_environment_at_t0() -> None:
    """A run's start (a scenario's signals checked against the truth, a plot's sampler, the first telemetry) sees
    the orbit, the sun and the shadow of t = 0, the sample the first step then uses: not an empty environment and
    a dark sun sensor."""
    from emulator.config import load_config

    cfg = load_config(CONFIGS / "suncatcher-proto.toml")
    sat = Satellite(cfg.satellite, epoch_utc=cfg.run.sim.epoch_utc, seed=1, step_s=1.0)
    env0 = sat.env.chunk(0, NS, 2)  # an independent look at t = 0 (a chunk starting there)
    env = sat.truth()["environment"]
    assert env["sunlit_frac"] == float(env0.sunlit_frac[0]) == 1.0  # dawn-dusk orbit in June: in the sun
    assert env["lat_deg"] == float(env0.lat_deg[0]) and env["beta_deg"] == float(env0.beta_deg[0])
    sun = sat.read_sun()
    assert sun["eclipse"] is False and abs(sun["sun_w_m2"] - float(env0.tracking_solar_w_m2[0])) < 5.0  # noise, LSB
    twin = Satellite(cfg.satellite, epoch_utc=cfg.run.sim.epoch_utc, seed=1, step_s=1.0)
    for k in range(5):  # the look at t = 0 changes nothing of what the steps compute
        sat.step(k * NS, NS)
        twin.step(k * NS, NS)
    assert sat.truth() == twin.truth()

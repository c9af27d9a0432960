"""The whole spacecraft: environment + power bus + thermal network + accelerator board + sensors, one step().

Order inside :meth:`Satellite.step` (from ``t`` to ``t + dt``, environment sampled at ``t``):

1. the accelerator steps with the supply voltage of its PDU rail (0.0 when off, tripped, shed or cut) and the
   die temperature of its thermal node;
2. heater thermostats decide on the current temperatures;
3. the power system steps with the array irradiances, the accelerator and heater demand on their rails;
4. every electrical loss and load becomes heat in its configured node (scaled by the fraction of the step
   the rail conducted), the arrays' extracted power leaves the panel node, and the thermal network steps.

The environment does not depend on the satellite, so it is pulled from :meth:`Environment.chunk` for
``chunk_steps`` steps at a time and its absorbed heat is precomputed for the chunk in one matmul; the per-step
path is plain Python floats plus one small matrix-vector product.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from emulator.errors import CommandError, suggest
from emulator.models import power_kernels as pk
from emulator.models.accelerator import AcceleratorBoard, AcceleratorConfig
from emulator.models.base import (
    Command,
    Fault,
    Interface,
    SpacecraftModel,
    Telemetry,
    command_spec,
    event_spec,
    telemetry_spec,
)
from emulator.models.environment import Environment, EnvironmentConfig
from emulator.models.orbit import OrbitConfig
from emulator.models.power import CELL_MAX_V, FACES, MODE_NAMES, PowerConfig, PowerSystem
from emulator.models.radiation import RadiationConfig
from emulator.models.sensors import ChannelSpec, SensorBank, SensorsConfig
from emulator.models.thermal import KELVIN, ThermalConfig, ThermalNetwork
from emulator.protocol.catalogue import Plane, schemas_from
from emulator.protocol.templates import PackedPayload, PayloadTemplate
from emulator.validation import ConfigModel

if TYPE_CHECKING:
    from emulator.models.satellite_schemas import (
        CellLoss,
        HeaterSet,
        OrbitPredict,
        RailReset,
        RailSet,
        RailShort,
        ShedSet,
        StringFail,
    )

SOLAR_CONSTANT_W_M2 = 1361.0  # physics-sources.md §3 "Solar constant" (design value)
#: child seed streams, in SeedSequence.spawn order (append only: the order is part of determinism)
SEED_STREAMS = ("accelerator", "sensors.eps", "sensors.thermal", "sensors.sun")


#: environment values in the satellite's truth
TRUTH_ENV_FLOATS = ("sunlit_frac", "solar_flux_w_m2", "beta_deg", "lat_deg", "lon_deg", "alt_km", "local_solar_time_h",
                    "tracking_solar_w_m2", "dose_rate_rad_s", "rad_flux_factor")


class SatelliteConfig(ConfigModel):
    """Everything that defines one satellite (the TOML file minus ``[sim]`` and ``[links]``)."""

    name: str = Field(min_length=1, max_length=64)
    orbit: OrbitConfig
    environment: EnvironmentConfig
    power: PowerConfig
    thermal: ThermalConfig
    sensors: SensorsConfig = Field(default_factory=SensorsConfig)
    accelerator: AcceleratorConfig
    radiation: RadiationConfig

    @model_validator(mode="after")
    def _references(self) -> SatelliteConfig:
        nodes = [n.name for n in self.thermal.nodes]
        rails = [r.name for r in self.power.rails]

        def node(path: str, name: str | None) -> None:
            if name is not None and name not in nodes:
                raise ValueError(f"{path}: unknown thermal node {name!r}{suggest(name, nodes)}; "
                                 f"valid nodes: {', '.join(nodes)}")

        def rail(path: str, name: str) -> None:
            if name not in rails:
                raise ValueError(f"{path}: unknown rail {name!r}{suggest(name, rails)}; valid rails: "
                                 f"{', '.join(rails)}")

        p = self.power
        for i, a in enumerate(p.arrays):
            node(f"power.arrays[{i}].thermal_node", a.thermal_node)
        node("power.battery.thermal_node", p.battery.thermal_node)
        for i, r in enumerate(p.rails):
            node(f"power.rails[{i}].thermal_node", r.thermal_node)
        for i, ld in enumerate(p.loads):
            node(f"power.loads[{i}].thermal_node", ld.thermal_node)
        node("power.eps_node", p.eps_node)
        node("power.shunt_node", p.shunt_node)
        for i, h in enumerate(self.thermal.heaters):
            rail(f"thermal.heaters[{i}].rail", h.rail)
        for i, n in enumerate(self.sensors.thermistor_nodes or []):
            node(f"sensors.thermistor_nodes[{i}]", n)
        rail("accelerator.rail", self.accelerator.rail)
        node("accelerator.thermal_node", self.accelerator.thermal_node)
        # the converter of every rail must carry its worst-case load (static loads + heaters + accelerator)
        worst = {r.name: 0.0 for r in p.rails}
        for ld in p.loads:
            worst[ld.rail] += ld.power_w
        for h in self.thermal.heaters:
            worst[h.rail] += h.power_w
        acc_max = _accelerator_max_w(self.accelerator)
        if acc_max is not None:
            worst[self.accelerator.rail] += acc_max
        for i, r in enumerate(p.rails):
            if worst[r.name] > r.rating_w + 1e-9:
                raise ValueError(f"power.rails[{i}].rating_w: rail {r.name!r} carries up to {worst[r.name]:g} W "
                                 f"(loads, heaters, accelerator) but its converter is rated {r.rating_w:g} W")
        return self


def _accelerator_max_w(cfg: Any) -> float | None:
    """The accelerator's worst-case electrical draw, if its config states one."""
    for attr in ("max_power_w", "board_max_power_w", "tdp_w"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int | float):
            return float(v)
    return None


# -- wire schemas: in emulator.models.satellite_schemas, imported on first use --------------------------------------
_SCHEMAS = "emulator.models.satellite_schemas"
#: the payload classes of the satellite's topics, by name (``from emulator.models.satellite import RailSet`` works)
SCHEMA_NAMES = frozenset((
    "RailReading", "EpsTelemetry", "HeaterReading", "ThermalTelemetry", "SunTelemetry", "RailSet", "RailReset",
    "HeaterSet", "RailSetReply", "RailResetReply", "ShedSetReply", "HeaterSetReply", "ShedSet", "ModeChanged",
    "RailTripped", "BatteryFault", "StringFail", "CellLoss", "RailShort", "SensorChannel", "SensorDrift",
    "SensorNoisy", "OrbitPredict", "OrbitTrack", "OrbitEclipse", "SaaOutline", "OrbitPredictReply"))

#: most ground-track samples one ``orbit.predict`` returns (keeps the reply far below the envelope limit)
MAX_PREDICT_SAMPLES = 5000


_schema, __getattr__ = schemas_from(__name__, _SCHEMAS, SCHEMA_NAMES)


def eps_channels(config: SatelliteConfig) -> list[ChannelSpec]:
    """The EPS board's measurement channels (bus, battery, gauge, arrays, every rail) with their ranges."""
    sc, pc = config.sensors, config.power
    vmax = 1.2 * pc.battery.cells_series * CELL_MAX_V
    i_dis = pc.battery.max_discharge_c * pc.battery.capacity_ah
    p_arr = sum(SOLAR_CONSTANT_W_M2 * a.area_m2 * a.efficiency for a in pc.arrays)
    eps = [
        ChannelSpec("eps.bus_v", "V", sc.battery_voltage, 0.0, vmax),
        ChannelSpec("eps.battery_v", "V", sc.battery_voltage, 0.0, vmax),
        ChannelSpec("eps.battery_a", "A", sc.battery_current, -1.5 * i_dis, 1.5 * i_dis),
        ChannelSpec("eps.soc", "", sc.soc, 0.0, 1.0),
        ChannelSpec("eps.array_w", "W", sc.array_power, 0.0, 1.2 * p_arr),
    ]
    for r in pc.rails:
        eps.append(ChannelSpec(f"eps.rail.{r.name}.current_a", "A", sc.rail_current, 0.0, 2.0 * r.current_limit_a))
        hi = 1.5 * r.voltage_v if r.voltage_v is not None else vmax
        eps.append(ChannelSpec(f"eps.rail.{r.name}.voltage_v", "V", sc.rail_voltage, 0.0, hi))
    return eps


class HeatRouting(NamedTuple):
    """Where a satellite's electrical power becomes heat, and which light each array sees, from its config: one
    description for the single satellite (routed on floats every step) and the fleet (its feature matrix, see
    :class:`~emulator.models.cluster.ThermalBatch`). Node indices are the thermal network's.

    Per step: each static load's heat at full conduction (``static_q_w``) less ``W x (1 - frac)`` of the loads on a
    rail that conducted a fraction ``frac`` of the step; each rail's converter loss and short at its node; heaters and
    the accelerator ``W x frac`` of their rail; the battery's I^2 R and the MPPT loss (:func:`loss_heat_w`); the
    shunted power; the arrays' extracted power leaves their node."""

    static_q_w: list[float]                  #: per node: the static loads' heat at full conduction (W)
    rail_loads: list[list[tuple[int, float]]]  #: per rail: (node, W) of each static load on it
    rail_nodes: list[int]                    #: per rail: the node of its converter loss
    heaters: list[tuple[int, int]]           #: per heater: (rail, node)
    supply_loads: list[tuple[str, int, int]]  #: loads a bench supply measures (source = "supply"): (name, rail, node)
    accel_node: int
    battery_node: int
    eps_node: int                            #: MPPT loss
    shunt_node: int                          #: shunted surplus
    array_nodes: list[int]
    array_faces: list[int]                   #: per array: its body face (FACES index), -1 for a sun-tracking one


def heat_routing(config: SatelliteConfig, node_index: dict[str, int], rail_index: dict[str, int]) -> HeatRouting:
    pc = config.power
    static_q = [0.0] * len(node_index)
    rail_loads: list[list[tuple[int, float]]] = [[] for _ in pc.rails]
    for ld in pc.loads:
        if ld.source == "supply":
            continue
        node = node_index[ld.thermal_node]
        static_q[node] += ld.power_w
        rail_loads[rail_index[ld.rail]].append((node, ld.power_w))
    return HeatRouting(
        static_q_w=static_q, rail_loads=rail_loads, rail_nodes=[node_index[r.thermal_node] for r in pc.rails],
        heaters=[(rail_index[h.rail], node_index[h.node]) for h in config.thermal.heaters],
        supply_loads=[(ld.name, rail_index[ld.rail], node_index[ld.thermal_node]) for ld in pc.loads
                      if ld.source == "supply"],
        accel_node=node_index[config.accelerator.thermal_node], battery_node=node_index[pc.battery.thermal_node],
        eps_node=node_index[pc.eps_node], shunt_node=node_index[pc.shunt_node or pc.arrays[0].thermal_node],
        array_nodes=[node_index[a.thermal_node] for a in pc.arrays],
        array_faces=[(-1 if a.mount == "tracking" else FACES.index(a.face)) for a in pc.arrays])


def loss_heat_w(battery_a: Any, battery_r_ohm: Any, array_total_w: Any, mppt_efficiency: Any) -> tuple[Any, Any]:
    """The battery's I^2 R and the MPPT converters' loss (W): heat in the battery and EPS nodes."""
    return battery_a * battery_a * battery_r_ohm, array_total_w * (1.0 - mppt_efficiency)


class RailStatus(NamedTuple):
    """One PDU rail as its EPS board reports it (the truth behind ``eps.rail.<name>.*``)."""

    name: str
    on: bool
    tripped: bool
    latched: bool
    trips: int
    frac: float     #: fraction of the step the rail conducted
    i_out: float
    v_out: float


def _eps_reading(v: Sequence[float], names: Sequence[str], flags: Iterable[tuple[bool, bool, bool, int]],
                 mode: str) -> dict[str, Any]:
    """The EPS reading's payload from the bank's read values (``v``: the five head channels, then current and voltage
    per rail), the rails' ``names`` and their ``flags`` (on, tripped, latched, trips)."""
    return {"bus_v": v[0], "battery_v": v[1], "battery_a": v[2], "soc_est": v[3], "array_w": v[4], "mode": mode,
            "rails": [{"name": n, "on": o, "tripped": tr, "latched": la, "trips": c, "current_a": cur, "voltage_v": vol}
                      for n, (o, tr, la, c), cur, vol in zip(names, flags, v[5::2], v[6::2], strict=True)]}


def _thermal_reading(names: Sequence[str], v: Sequence[float], heaters: Iterable[tuple[str, str, bool]]
                     ) -> dict[str, Any]:
    """The thermal reading's payload: the thermistors ``names`` read ``v``; the heaters as (name, mode, on)."""
    return {"temps_degc": dict(zip(names, v, strict=True)),
            "heaters": [{"name": n, "mode": m, "on": o} for n, m, o in heaters]}


def _packed(template: PayloadTemplate, rows: list[tuple[Any, list[Any]]]) -> list[PackedPayload | dict[str, Any]]:
    """Each (variant, values) row's payload, encoded by ``template`` (or as its dict where it cannot)."""
    out: list[PackedPayload | dict[str, Any]] = []
    pack = template.pack
    for key, values in rows:
        data = pack(key, values)
        out.append(PackedPayload(data) if data is not None else template.build(key, values))
    return out


def _packed_rows(template: PayloadTemplate, keys: list[Any], values: list[list[float]] | None,
                 array: np.ndarray | None) -> list[PackedPayload | dict[str, Any]]:
    """:func:`_packed` of the rows (``keys[j]``, ``values[j]``); ``array``: the values as one float array instead,
    if the bank read them so (the rows are then written together, :meth:`PayloadTemplate.pack_rows`)."""
    if array is None:
        return _packed(template, list(zip(keys, values, strict=True)))
    return [PackedPayload(data) if data is not None else template.build(key, array[j].tolist())
            for j, (key, data) in enumerate(zip(keys, template.pack_rows(keys, array), strict=True))]


class SensorSuite:
    """What a satellite's board can measure: the EPS, thermistor and sun sensor banks, with the gauge's SoC error
    and the eclipse flag. One per single satellite and one per bound fleet member (the same banks and readings);
    a member's encoded payloads (``sat``: its index) start with ``"sat": sat``."""

    def __init__(self, config: SatelliteConfig, node_index: dict[str, int],
                 rngs: dict[str, np.random.Generator], *, sat: int | None = None) -> None:
        sc, pc = config.sensors, config.power
        self.sat = sat
        self.eps = SensorBank(eps_channels(config), rngs["sensors.eps"])
        nodes = sc.thermistor_nodes if sc.thermistor_nodes is not None else list(node_index)
        self.thermistor_idx = [node_index[n] for n in nodes]
        self.thermistor_names = list(nodes)
        self.thermal = SensorBank([ChannelSpec(f"thermal.{n}", "degC", sc.thermistor, -55.0, 125.0) for n in nodes],
                                  rngs["sensors.thermal"])
        self.sun = SensorBank([ChannelSpec("adcs.sun", "W/m^2", sc.sun, 0.0, 1500.0)], rngs["sensors.sun"])
        self.banks = {"eps": self.eps, "thermal": self.thermal, "sun": self.sun}
        self.gauge_offset_a = sc.gauge_offset_a_per_ah * pc.battery.capacity_ah
        self.eclipse_w_m2 = sc.eclipse_threshold_w_m2
        # the readings' payloads written straight to msgpack (the *_rows readers, the runtime's publishing path):
        # the banks' readings are floats by construction (their ranges and steps are), so the templates trust them
        self._eps_template: PayloadTemplate | None = None
        self._eps_template_names: tuple[str, ...] = ()
        names = self.thermistor_names
        self.thermal_template = PayloadTemplate(
            "thermal.telemetry", lambda heaters, v: self._member(_thermal_reading(names, v, heaters)), len(names))

    def _member(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload if self.sat is None else {"sat": self.sat, **payload}

    def eps_template(self, names: Sequence[str]) -> PayloadTemplate:
        """The EPS reading's template for rails ``names``: variant (mode, rail flags (on, tripped, latched, trips)
        per rail), values the bank's readings."""
        if self._eps_template is None or tuple(names) != self._eps_template_names:
            rail_names = self._eps_template_names = tuple(names)

            def build(key: tuple[Any, ...], v: Sequence[float]) -> dict[str, Any]:
                mode, *flags = key
                return self._member(_eps_reading(v, rail_names, flags, mode))

            self._eps_template = PayloadTemplate("eps.telemetry", build, 5 + 2 * len(rail_names))
        return self._eps_template

    @property
    def channels(self) -> list[str]:
        return [n for b in self.banks.values() for n in b.names]

    def bank_of(self, channel: str) -> SensorBank:
        for bank in self.banks.values():
            if channel in bank.index:
                return bank
        valid = self.channels
        raise CommandError(f"unknown sensor channel {channel!r}{suggest(channel, valid)}", field="payload.params.channel",
                           valid=valid)

    def kind_of(self, bank: SensorBank) -> str:
        """"eps", "thermal" or "sun": which reading ``bank`` belongs to."""
        return next(k for k, b in self.banks.items() if b is bank)

    def active_faults(self) -> dict[str, list[str]]:
        faults: dict[str, list[str]] = {}
        for b in self.banks.values():
            faults.update(b.active_faults())
        return faults

    def _eps_head(self, bus_v: float, battery_connected: bool, battery_a: float, soc: float, s_since_full: float,
                  q_pack_c: float, array_total_w: float) -> list[float]:
        """The EPS bank's first five channels' truth: bus and battery voltage (0 when the pack is cut off),
        current, the gauge's SoC (true SoC plus its integrated offset current since the last full charge), array."""
        soc_est = soc + (self.gauge_offset_a * s_since_full / q_pack_c if q_pack_c > 0 else 0.0)
        return [bus_v, bus_v if battery_connected else 0.0, battery_a, soc_est, array_total_w]

    def read_eps(self, t_ns: int, *, bus_v: float, battery_connected: bool, battery_a: float, soc: float,
                 s_since_full: float, q_pack_c: float, array_total_w: float, rails: Sequence[RailStatus],
                 mode: str) -> dict[str, Any]:
        """The EPS reading: bus and battery voltage (0 when the pack is cut off), current, the gauge's SoC (true SoC
        plus its integrated offset current since the last full charge), array power, and per rail its current
        (0 unless it conducted) and voltage. ``rails``: RailStatus, or anything with its attributes (a
        :class:`~emulator.models.power.PowerSystem`'s rails)."""
        vals = self._eps_head(bus_v, battery_connected, battery_a, soc, s_since_full, q_pack_c, array_total_w)
        for r in rails:
            vals.append(r.i_out if r.on or r.frac > 0 else 0.0)
            vals.append(r.v_out)
        v = self.eps.read(t_ns, vals)
        return _eps_reading(v, [r.name for r in rails], [(r.on, r.tripped, r.latched, r.trips) for r in rails], mode)

    def read_eps_columns(self, t_ns: int, *, bus_v: float, battery_connected: bool, battery_a: float, soc: float,
                         s_since_full: float, q_pack_c: float, array_total_w: float, names: Sequence[str],
                         on: Sequence[bool], tripped: Sequence[bool], latched: Sequence[bool], trips: Sequence[int],
                         frac: Sequence[float], i_out: Sequence[float], v_out: Sequence[float],
                         mode: str, encoded: bool = False) -> dict[str, Any] | PackedPayload:
        """:meth:`read_eps` with the rails given as columns (one list per field, a fleet's member's column of
        its arrays): the same reading, without building a :class:`RailStatus` per rail. ``encoded``: the payload
        written by the EPS template (a fleet member's: ``"sat"`` first)."""
        vals = self._eps_head(bus_v, battery_connected, battery_a, soc, s_since_full, q_pack_c, array_total_w)
        for o, f, i, u in zip(on, frac, i_out, v_out, strict=True):
            vals.append(i if o or f > 0 else 0.0)
            vals.append(u)
        v = self.eps.read(t_ns, vals)
        if encoded:
            return _packed(self.eps_template(names), [((mode, *zip(on, tripped, latched, trips, strict=True)), v)])[0]
        return _eps_reading(v, names, zip(on, tripped, latched, trips, strict=True), mode)

    def thermal_payload(self, t_ns: int, temps_k: list[float], heaters: tuple[tuple[str, str, bool], ...]
                        ) -> PackedPayload | dict[str, Any]:
        """:meth:`read_thermal` with the heaters as (name, mode, on), encoded by the thermal template."""
        v = self.thermal.read(t_ns, [temps_k[i] - KELVIN for i in self.thermistor_idx])
        return _packed(self.thermal_template, [(heaters, v)])[0]

    def read_thermal(self, t_ns: int, temps_k: list[float], heaters: Iterable[tuple[str, str, bool]]
                     ) -> dict[str, Any]:
        """The thermistors (``temps_k``: every node's temperature, K) and the heaters' states (name, mode, on)."""
        v = self.thermal.read(t_ns, [temps_k[i] - KELVIN for i in self.thermistor_idx])
        return _thermal_reading(self.thermistor_names, v, heaters)

    def read_eps_rows(self, names: Sequence[str], rows: Sequence[tuple[int, list[float], tuple[Any, ...], str]]
                      ) -> list[PackedPayload | dict[str, Any]]:
        """:meth:`read_eps` of captured rows ``(t_ns, truth, rail flags ((on, tripped, latched, trips) per rail),
        mode)`` in order, the bank read once for all of them (``names``: the rails'), as encoded payloads."""
        vs, array = self.eps.read_many_array([r[0] for r in rows], [r[1] for r in rows])
        return _packed_rows(self.eps_template(names), [(mode, *flags) for _, _, flags, mode in rows], vs, array)

    def read_thermal_rows(self, rows: Sequence[tuple[int, list[float], tuple[tuple[str, str, bool], ...]]]
                          ) -> list[PackedPayload | dict[str, Any]]:
        """:meth:`read_thermal` of captured rows ``(t_ns, thermistor truths in degC, heaters (name, mode, on))``,
        as encoded payloads."""
        vs, array = self.thermal.read_many_array([r[0] for r in rows], [r[1] for r in rows])
        return _packed_rows(self.thermal_template, [heaters for _, _, heaters in rows], vs, array)

    def read_sun_rows(self, rows: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
        """:meth:`read_sun` of captured rows ``(t_ns, true sun-tracking irradiance)`` (dicts: a payload this small
        encodes faster with ormsgpack than through a template, measured 0.6 us a reading)."""
        vs = self.sun.read_many([r[0] for r in rows], [[r[1]] for r in rows])
        threshold = self.eclipse_w_m2
        return [{"sun_w_m2": v[0], "eclipse": v[0] < threshold} for v in vs]

    def read_sun(self, t_ns: int, sun_w_m2: float) -> dict[str, Any]:
        """The coarse sun sensor (true sun-tracking irradiance ``sun_w_m2``) and the eclipse flag from its reading."""
        v = self.sun.read(t_ns, [sun_w_m2])[0]
        return {"sun_w_m2": v, "eclipse": v < self.eclipse_w_m2}


class RailDelivery(NamedTuple):
    """What a rail delivers to the device on it (:meth:`Satellite.rail_delivery`)."""

    on: bool                 #: conducting (commanded on, not tripped, latched or shed, battery not cut off)
    voltage_v: float         #: output voltage now (set point, browned-out value, or the bus); 0.0 when off
    current_limit_a: float   #: the rail's latching current limiter threshold
    cuts: int                #: times the output was cut since start: a rise means "power-cycle the device"


#: what a batch of steps samples as truth rows and reads together (Satellite.capture / Satellite.sampled)
SAMPLED_TOPICS = frozenset({"eps.telemetry", "thermal.telemetry", "adcs.sun"})


class Satellite(SpacecraftModel):
    """One simulated satellite. ``environment`` / ``accelerator`` may be injected (tests); else built from config."""

    def __init__(self, config: SatelliteConfig, *, epoch_utc: dt.datetime, seed: int, step_s: float = 1.0,
                 environment: Any = None, accelerator: Any = None, chunk_steps: int = 3600) -> None:
        self.config = config
        self.name = config.name
        self.epoch_utc = epoch_utc
        self.step_s = step_s
        self.chunk_steps = chunk_steps
        streams = np.random.SeedSequence(seed).spawn(len(SEED_STREAMS))
        self.rngs = {name: np.random.default_rng(s) for name, s in zip(SEED_STREAMS, streams, strict=True)}
        self.env = environment if environment is not None else Environment(config.orbit, config.environment,
                                                                           epoch_utc)
        self.power = PowerSystem(config.power)
        self.thermal = ThermalNetwork(config.thermal)
        self._heater_names = [h.name for h in self.thermal.heaters]  # (a twin in a test keeps the same heaters)
        self.accel = accelerator if accelerator is not None else AcceleratorBoard(
            config.accelerator, config.radiation, self.rngs["accelerator"])
        th, pw = self.thermal, self.power
        self.n_nodes = th.n
        self._accel_rail = pw.rail_index[config.accelerator.rail]
        self.routing = hr = heat_routing(config, th.index, pw.rail_index)
        self._accel_node, self._batt_node = hr.accel_node, hr.battery_node
        self._array_nodes, self._array_face, self._rail_nodes = hr.array_nodes, hr.array_faces, hr.rail_nodes
        # static loads' heat at full conduction, and per rail what to take back when it conducted less
        self._static_q = hr.static_q_w
        self._rail_loads = hr.rail_loads
        # loads whose draw a bench supply measures (an input, see set_supply_load): heat routed every step
        self._supply_heat = [(name, pw.rails[r], node) for name, r, node in hr.supply_loads]
        # a real board in external mode on a supply: the supply measures the accelerator's draw, so the board's own
        # report is not put on the rail a second time (only a simulated latch-up's extra current is)
        self._acc_supplied = getattr(config.accelerator, "mode", "model") == "external" and any(
            ld.rail == config.accelerator.rail for ld in config.power.loads if ld.source == "supply")
        self._heaters = hr.heaters
        self._eps_node = hr.eps_node
        self._shunt_node = hr.shunt_node
        self._n_rails = len(pw.rails)
        self._rail_route = [(r, self._rail_loads[r.idx], self._rail_nodes[r.idx]) for r in pw.rails]
        self._acc_rail = pw.rails[self._accel_rail]
        self._quiet_heat: list[tuple[int, float]] = []
        self._active_route = list(self._rail_route)
        self._route_version = -1
        self._q_flat: list[float] = []
        self._solar_flat: list[float] = []
        self._dose: list[float] = []
        self._radf: list[float] = []
        self._n_arrays = len(self._array_face)
        self._next_t = -1
        self._c_dt_s = 0.0
        self._nodes = (self._accel_node, self._batt_node, self._eps_node, self._shunt_node)
        # what step_many binds to locals at every call, in one tuple (a batch of one pays this set-up per step)
        an = self._array_nodes
        self._step_consts = (*self._nodes, self._acc_rail, self._accel_rail, self._acc_supplied, an, len(an) == 1,
                             an[0] if len(an) == 1 else -1, self._n_arrays, self.n_nodes)
        # AcceleratorBoard.advance is step() with positional arguments; an injected board may only have step()
        self._acc_advance = getattr(self.accel, "advance", None) or self._accel_step
        self._heaters_switched()
        self._chunk: Any = None
        self._c_t0 = 0
        self._c_dt = 0
        self._c_n = 0
        self._i = 0
        self.t_ns = 0
        self.steps = 0
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._build_sensors()

    # -- sensors ----------------------------------------------------------------------------------------------
    def _build_sensors(self) -> None:
        self.sensors = SensorSuite(self.config, self.thermal.index, self.rngs)
        self.eps_bank, self.thermal_bank, self.sun_bank = self.sensors.eps, self.sensors.thermal, self.sensors.sun

    def read_eps(self) -> dict[str, Any]:
        pw = self.power
        return self.sensors.read_eps(
            self.t_ns, bus_v=pw.bus_v, battery_connected=pw.battery_connected, battery_a=pw.battery_a, soc=pw.soc,
            s_since_full=pw.s_since_full, q_pack_c=pw.q_pack_c, array_total_w=pw.array_total_w,
            rails=pw.rails, mode=MODE_NAMES[pw.mode])

    def read_thermal(self) -> dict[str, Any]:
        return self.sensors.read_thermal(self.t_ns, self.thermal.T.tolist(), self._heater_states())

    def _heater_states(self) -> tuple[tuple[str, str, bool], ...]:
        """Every heater as (name, mode, on)."""
        th = self.thermal
        return tuple(zip(self._heater_names, th.heater_mode, th.heater_on, strict=True))

    def read_sun(self) -> dict[str, Any]:
        return self.sensors.read_sun(self.t_ns, self._sun_now())

    def _sun_now(self) -> float:
        """The true sun-tracking irradiance now (W/m^2)."""
        if self._chunk is None:
            self._chunk_now()
        return self._track[self._i]

    def _chunk_now(self) -> Any:
        """The environment chunk of the current sample; before the first step, the one the first step loads (the
        environment at ``t_ns``): a reading or truth at the start sees the sun, the shadow and the orbit of t = 0."""
        if self._chunk is None:
            self._load_chunk(self.t_ns, round(self.step_s * 1e9))
        return self._chunk

    # -- batch sampling (Emulator: telemetry due at many steps of one batch) ---------------------------------------
    batch_sampling = True

    def sampled_topics(self) -> frozenset[str]:
        return SAMPLED_TOPICS

    def capture(self, topic: str) -> Any:
        return self.capturer(topic)()

    def capturer(self, topic: str) -> Callable[[], Any]:
        if topic == "eps.telemetry":
            return self._capture_eps
        if topic == "thermal.telemetry":
            return self._capture_thermal
        if topic == "adcs.sun":
            return self._capture_sun
        raise KeyError(f"{topic!r} is not sampled in batches (sampled_topics: {sorted(SAMPLED_TOPICS)})")

    def _capture_eps(self) -> tuple[int, list[float], tuple[tuple[bool, bool, bool, int], ...], str]:
        pw = self.power
        vals = self.sensors._eps_head(pw.bus_v, pw.battery_connected, pw.battery_a, pw.soc, pw.s_since_full,
                                      pw.q_pack_c, pw.array_total_w)
        flags = []
        for r in pw.rails:
            vals.append(r.i_out if r.on or r.frac > 0 else 0.0)
            vals.append(r.v_out)
            flags.append((r.on, r.tripped, r.latched, r.trips))
        return (self.t_ns, vals, tuple(flags), MODE_NAMES[pw.mode])

    def _capture_thermal(self) -> tuple[int, list[float], tuple[tuple[str, str, bool], ...]]:
        temps_k = self.thermal.T.tolist()
        return (self.t_ns, [temps_k[i] - KELVIN for i in self.sensors.thermistor_idx], self._heater_states())

    def _capture_sun(self) -> tuple[int, float]:
        return (self.t_ns, self._sun_now())

    def sampled(self, topic: str, rows: list[Any]) -> list[dict[str, Any] | PackedPayload]:
        if topic == "eps.telemetry":
            return self.sensors.read_eps_rows([r.name for r in self.power.rails], rows)
        if topic == "thermal.telemetry":
            return self.sensors.read_thermal_rows(rows)
        if topic == "adcs.sun":
            return self.sensors.read_sun_rows(rows)
        raise KeyError(f"{topic!r} is not sampled in batches (sampled_topics: {sorted(SAMPLED_TOPICS)})")

    # -- environment chunks -----------------------------------------------------------------------------------
    def _load_chunk(self, t_ns: int, dt_ns: int) -> None:
        c = self.env.chunk(t_ns, dt_ns, self.chunk_steps)
        self._chunk = c
        self._c_t0, self._c_dt, self._c_n = t_ns, dt_ns, len(c)
        self._c_dt_s = dt_ns * 1e-9
        face = np.asarray(c.face_solar_w_m2, dtype=float)
        track = np.asarray(c.tracking_solar_w_m2, dtype=float)
        self._track = track.tolist()
        # what the step needs of sample i as flat lists of plain floats (one slice per step, no per-sample lists):
        # the array irradiances, the dose rate and flux factor, and the absorbed environment heat plus the static
        # loads' heat at full conduction per node
        if self._array_face == [-1]:
            self._solar_flat = self._track
        else:
            cols = [track if f < 0 else face[:, f] for f in self._array_face]
            self._solar_flat = np.stack(cols, axis=1).ravel().tolist()
        env_q = self.thermal.environment_heat(face, c.face_albedo_w_m2, c.face_ir_w_m2, track)
        env_q += np.asarray(self._static_q)
        self._q_flat = env_q.ravel().tolist()
        self._dose = np.asarray(c.dose_rate_rad_s, dtype=float).tolist()
        self._radf = np.asarray(c.rad_flux_factor, dtype=float).tolist()

    def _reroute(self) -> None:
        """Heat routing of the power system's quiet rails (their frac and heat_w hold until quiet_version moves):
        one (node, W) term per node; the active rails are routed every step."""
        pw = self.power
        quiet = {id(r) for r in pw.quiet_rails}
        fixed = [0.0] * self.n_nodes
        used = [False] * self.n_nodes
        for r, rloads, rnode in self._rail_route:
            if id(r) not in quiet:
                continue
            f = r.frac
            if f != 1.0:
                for node, p in rloads:
                    fixed[node] -= p * (1.0 - f)
                    used[node] = True
            if r.heat_w:
                fixed[rnode] += r.heat_w
                used[rnode] = True
        self._quiet_heat = [(n, fixed[n]) for n in range(self.n_nodes) if used[n]]
        self._active_route = [x for x in self._rail_route if id(x[0]) not in quiet]
        self._route_version = pw.quiet_version

    def _accel_step(self, t_ns: int, dt_s: float, supply_v: float, die_temp_degc: float, dose_rate_rad_s: float,
                    rad_flux_factor: float) -> None:
        self.accel.step(t_ns, dt_s, supply_v=supply_v, die_temp_degc=die_temp_degc, dose_rate_rad_s=dose_rate_rad_s,
                        rad_flux_factor=rad_flux_factor)

    def _heaters_switched(self) -> None:
        """Rail demand and heat routing of the heaters that are on (after a thermostat switched)."""
        th = self.thermal
        loads = [0.0] * self._n_rails
        route = []
        for (ridx, node), p, on in zip(self._heaters, th.heater_power_w, th.heater_on, strict=True):
            if on:
                loads[ridx] += p
                route.append((self.power.rails[ridx], node, p))
        self._heater_loads = loads
        self._heater_on_route = route

    # -- the step ---------------------------------------------------------------------------------------------
    def step(self, t_ns: int, dt_ns: int) -> None:
        self.step_many(t_ns, dt_ns, 1)

    def step_sampled(self, t_ns: int, dt_ns: int, steps: int, sample_after: Sequence[int],
                     sample: Callable[[int], None]) -> int:
        # the samples taken inside step_many's loop: a batch that samples every step pays its set-up once, not at
        # every step (~8,000 instructions a step, an eighth of one)
        return self.step_many(t_ns, dt_ns, steps, sample_after, sample)

    def step_many(self, t_ns: int, dt_ns: int, steps: int, sample_after: Sequence[int] = (),
                  sample: Callable[[int], None] | None = None) -> int:
        # the steps of a batch in one frame: what holds for the whole batch (the models, the node indices, the
        # chunk's flat lists until the next chunk loads) is looked up once, not at every step. ``sample_after`` and
        # ``sample``: step_sampled's (``sample(k)`` after the k-th step, the state stored back first, unless that
        # step left events: the batch then ends there, unsampled)
        pw = self.power
        th = self.thermal
        acc = self.accel
        acc_advance = self._acc_advance
        # the board's pending events: its list, read directly (the board's own has_events() for an injected one)
        acc_has_events = (None if (steps == 1 and sample is None) or type(acc) is AcceleratorBoard
                          else acc.has_events)
        # a ThermalNetwork's thermostat pass and step vector are written in below (its advance_x takes the vector);
        # a stand-in (a test's twin) is called through thermostat() and advance()
        own_thermal = type(th) is ThermalNetwork
        power_step, thermostat = pw.step, th.thermostat
        thermal_advance = th.advance_x if own_thermal else th.advance
        (acc_node, batt_node, eps_node, shunt_node, acc_rail, accel_rail, acc_supplied, an, one_array, an0, na,
         nn) = self._step_consts
        rad = th.radiating_nodes if own_thermal else None
        solar_flat, q_flat, dose, radf, dt_s = self._solar_flat, self._q_flat, self._dose, self._radf, self._c_dt_s
        # the sample index, the next step's time, the heat routing and the steps done as locals, stored back on
        # every way out (finally)
        i_now, next_t, c_dt, c_n = self._i, self._next_t, self._c_dt, self._c_n
        route_version, quiet_heat, active_route = self._route_version, self._quiet_heat, self._active_route
        heater_loads, heater_on_route, supply_heat = self._heater_loads, self._heater_on_route, self._supply_heat
        t0_ns = t_ns
        steps0 = self.steps
        done = 0
        last = steps - 1
        # the pending events: the satellite's and the power system's lists (only added to and cleared in place
        # here), the board's (its own list; has_events() for an injected board)
        events, pw_events = self._events, pw.events
        acc_events = acc._events if acc_has_events is None and (steps > 1 or sample is not None) else None
        samples = iter(sample_after)
        sample_k = next(samples, 0)
        try:
            for k in range(steps):
                if k:
                    t_ns += dt_ns
                i = i_now + 1
                if t_ns != next_t or dt_ns != c_dt or i >= c_n:  # not the next sample of the chunk
                    c = (t_ns - self._c_t0) // c_dt if c_dt else -1
                    if (self._chunk is None or dt_ns != c_dt or not 0 <= c < c_n
                            or t_ns != self._c_t0 + c * c_dt):
                        self._load_chunk(t_ns, dt_ns)
                        c = 0
                        solar_flat, q_flat, dose, radf = self._solar_flat, self._q_flat, self._dose, self._radf
                        dt_s, c_dt, c_n = self._c_dt_s, self._c_dt, self._c_n
                    i = c
                i_now = i
                next_t = t_ns + dt_ns
                solar = [solar_flat[i]] if one_array else solar_flat[i * na:i * na + na]
                temps = th.T.tolist()
                acc_advance(t_ns, dt_s, acc_rail.v_out, temps[acc_node] - KELVIN, dose[i], radf[i])
                if not own_thermal:
                    if thermostat(temps):
                        self._heaters_switched()
                        heater_loads, heater_on_route = self._heater_loads, self._heater_on_route
                else:
                    for node, lo, hi in th.heater_bands:  # ThermalNetwork.thermostat's usual step: all in band
                        if not lo <= temps[node] <= hi:
                            if thermostat(temps):
                                self._heaters_switched()
                                heater_loads, heater_on_route = self._heater_loads, self._heater_on_route
                            break
                loads = heater_loads.copy()
                acc_w = acc.latchup_w if acc_supplied else acc.load_w
                loads[accel_rail] += acc_w
                if one_array:
                    power_step(dt_s, solar, [temps[an0] - KELVIN], temps[batt_node] - KELVIN, loads)
                else:
                    power_step(dt_s, solar, [temps[n] - KELVIN for n in an], temps[batt_node] - KELVIN, loads)

                # heat routing: environment + static loads (per chunk), the quiet rails (per quiet_version), the rest
                if pw.quiet_version != route_version:
                    self._reroute()
                    route_version, quiet_heat, active_route = self._route_version, self._quiet_heat, self._active_route
                a = i * nn
                q = q_flat[a:a + nn]
                for node, w in quiet_heat:
                    q[node] += w
                for r, rloads, rnode in active_route:
                    f = r.frac
                    if f != 1.0:
                        for node, p in rloads:
                            q[node] -= p * (1.0 - f)
                    h = r.heat_w
                    if h:
                        q[rnode] += h
                for r, node, p in heater_on_route:
                    q[node] += p * r.frac
                q[acc_node] += (acc_w if acc_supplied else acc.heat_w) * acc_rail.frac
                if supply_heat:
                    sw = pw.supply_load_w
                    for name, r, node in supply_heat:
                        q[node] += sw[name] * r.frac
                i2r_w, mppt_w = loss_heat_w(pw.battery_a, pw.battery_r_ohm, pw.array_total_w, pw.mppt_eff)
                q[batt_node] += i2r_w
                q[eps_node] += mppt_w
                q[shunt_node] += pw.shunt_w
                aw = pw.array_w
                if one_array:
                    q[an0] -= aw[0]
                else:
                    for node, w in zip(an, aw):
                        q[node] -= w
                if own_thermal:
                    # ThermalNetwork.advance, its vector [T, T_r^4, q, 1] built on this step's own list of
                    # temperatures (nothing reads it after this)
                    x = temps
                    for j in rad:
                        t = x[j]
                        t2 = t * t
                        x.append(t2 * t2)
                    x += q
                    x.append(1.0)
                    thermal_advance(dt_s, x)
                else:
                    thermal_advance(dt_s, temps, q)
                done = k + 1
                if pw_events:
                    events += pw_events
                    pw_events.clear()
                if ((k < last or done == sample_k)
                        and (events or (acc_events if acc_has_events is None else acc_has_events()))):
                    # published with this step's time: the batch stops here (unsampled)
                    return done
                if done == sample_k:
                    self._i, self._next_t, self.steps, self.t_ns = i_now, next_t, steps0 + done, t_ns + dt_ns
                    sample(done)  # type: ignore[misc]
                    sample_k = next(samples, 0)
            return steps
        finally:
            self._i = i_now
            self._next_t = next_t
            if done:
                self.steps = steps0 + done
                self.t_ns = t0_ns + done * dt_ns

    # -- bench supplies: what a rail delivers, what a real board on it draws ---------------------------------
    def supply_loads(self) -> dict[str, str]:
        """Loads with ``source = "supply"`` (a real board on a bench supply): load name -> rail name."""
        return {ld.name: ld.rail for ld in self.config.power.loads if ld.source == "supply"}

    def set_supply_load(self, name: str, power_w: float) -> None:
        """Input: what a bench supply measured on load ``name`` (W); see :meth:`PowerSystem.set_supply_load`."""
        self.power.set_supply_load(name, power_w)

    def rail_delivery(self, rail: str) -> RailDelivery:
        """Output: what rail ``rail`` delivers now to the device on it, for a bench supply that plays it.

        On the external accelerator's rail the device is the real board: it also goes dark while the model's board
        is shut down in a way only a power cycle ends (thermal shutdown, failed), and every such power loss
        counts as a cut."""
        pw = self.power
        r = pw.rail(rail)
        on, cuts = r.on, r.cuts
        if self._acc_supplied and r.idx == self._accel_rail:
            on = on and self.accel.powered
            cuts += self.accel.power_offs
        return RailDelivery(on, r.v_out if on else 0.0, r.limit_a, cuts)

    # -- interface --------------------------------------------------------------------------------------------
    def interface(self) -> Interface:
        ref = _schema  # the payload classes are imported when first used (a command validated, the docs rendered)
        iface = Interface(
            telemetry=[
                Telemetry(telemetry_spec("eps.telemetry", ref("EpsTelemetry"),
                                         "Power system as the EPS board measures it: bus, battery, arrays, rails, "
                                         "shed mode.", 1.0), self.read_eps),
                Telemetry(telemetry_spec("thermal.telemetry", ref("ThermalTelemetry"),
                                         "Thermistor readings and heater states.", 1.0), self.read_thermal),
                Telemetry(telemetry_spec("adcs.sun", ref("SunTelemetry"), "Coarse sun sensor and eclipse flag.", 1.0),
                          self.read_sun),
            ],
            commands=[
                Command(command_spec("eps.rail.set", ref("RailSet"), "Switch a PDU rail on or off.",
                                     reply=ref("RailSetReply")), self._cmd_rail_set),
                Command(command_spec("eps.rail.reset", ref("RailReset"),
                                     "Clear a tripped or latched current limiter (the rail comes back if "
                                     "commanded on).", reply=ref("RailResetReply")), self._cmd_rail_reset),
                Command(command_spec("eps.shed.set", ref("ShedSet"),
                                     "Set undervoltage shed thresholds (pack volts); checked as a set: "
                                     "hw_off < critical < safe < normal < full, hw_off < hw_on < full, within "
                                     "the cell window.", reply=ref("ShedSetReply")), self._cmd_shed_set),
                Command(command_spec("thermal.heater.set", ref("HeaterSet"), "Set a heater's mode and thermostat.",
                                     reply=ref("HeaterSetReply")), self._cmd_heater_set),
                Command(command_spec("orbit.predict", ref("OrbitPredict"),
                                     "Control plane: the orbit ahead of now (ground track with sunlit fraction "
                                     "and SAA flag, eclipses with entry and exit where the sunlit fraction "
                                     "crosses 50 % (-1: before now / beyond the horizon), beta angle, period, "
                                     "SAA outline). Pure: the run is not changed.", Plane.CONTROL,
                                     reply=ref("OrbitPredictReply")),
                        self._cmd_orbit_predict),
            ],
            faults=[
                Fault("eps.array.string_fail", ref("StringFail"), "Strings of a solar array fail (open); clearing "
                      "restores them.", self._f_strings, self._f_strings_clear),
                Fault("eps.battery.cell_loss", ref("CellLoss"), "A battery cell fails (permanent).", self._f_cell),
                Fault("eps.rail.short", ref("RailShort"), "Extra load current on a rail (its limiter should trip).",
                      self._f_short, self._f_short_clear),
                Fault("sensor.stuck", ref("SensorChannel"), "A sensor repeats its last reading.",
                      lambda p: self._f_sensor(p, "stuck"), lambda p: self._f_sensor_clear(p, "stuck")),
                Fault("sensor.drift", ref("SensorDrift"), "A sensor drifts at a rate per hour.",
                      lambda p: self._f_sensor(p, "drift"), lambda p: self._f_sensor_clear(p, "drift")),
                Fault("sensor.open", ref("SensorChannel"), "Open circuit: the reading pins to its range limit.",
                      lambda p: self._f_sensor(p, "open"), lambda p: self._f_sensor_clear(p, "open")),
                Fault("sensor.noisy", ref("SensorNoisy"), "A sensor's noise grows by a factor.",
                      lambda p: self._f_sensor(p, "noisy"), lambda p: self._f_sensor_clear(p, "noisy")),
            ],
            events=[
                event_spec("eps.mode.changed", ref("ModeChanged"), "The shed mode changed."),
                event_spec("eps.rail.tripped", ref("RailTripped"), "A rail's latching current limiter tripped."),
                event_spec("eps.battery.fault", ref("BatteryFault"), "A battery cell failed."),
            ],
        )
        iface.extend(self.accel.interface())
        return iface

    def _cmd_rail_set(self, p: RailSet) -> dict[str, Any]:
        self.power.set_rail(p.rail, p.on)
        r = self.power.rail(p.rail)
        return {"rail": r.name, "commanded_on": r.cmd_on, "on": r.on}

    def _cmd_rail_reset(self, p: RailReset) -> dict[str, Any]:
        self.power.reset_rail(p.rail)
        r = self.power.rail(p.rail)
        return {"rail": r.name, "on": r.on, "tripped": r.tripped}

    def _cmd_shed_set(self, p: ShedSet) -> dict[str, Any]:
        return {"thresholds_v": self.power.set_thresholds(**p.model_dump())}

    def _cmd_heater_set(self, p: HeaterSet) -> dict[str, Any]:
        return self.thermal.set_heater(p.heater, p.mode, p.on_below_degc, p.off_above_degc)

    def _cmd_orbit_predict(self, p: OrbitPredict) -> dict[str, Any]:
        n = int(p.duration_s // p.step_s) + 1
        if n > MAX_PREDICT_SAMPLES:
            raise CommandError(f"duration_s / step_s gives {n} track samples, at most {MAX_PREDICT_SAMPLES}: raise "
                               f"step_s to at least {p.duration_s / (MAX_PREDICT_SAMPLES - 1):.0f} s",
                               field="payload.step_s")
        t0 = self.t_ns
        c = self.env.chunk(t0, round(p.step_s * 1e9), n)
        out: dict[str, Any] = {
            "t_ns": t0, "step_s": p.step_s, "beta_deg": float(c.beta_deg[0]),
            "track": {"t_ns": c.t_ns.tolist(), "lat_deg": np.asarray(c.lat_deg, float).tolist(),
                      "lon_deg": np.asarray(c.lon_deg, float).tolist(),
                      "sunlit_frac": np.asarray(c.sunlit_frac, float).tolist(),
                      "in_saa": np.asarray(c.in_saa, bool).tolist()},
            "period_s": None, "eclipses": [], "saa_outline": None}
        orbit = getattr(self.env, "orbit", None)  # an injected environment may have no orbit
        if orbit is not None:
            out["period_s"] = float(orbit.period_s)
            t_s = c.t_ns.astype(float) * 1e-9
            times, direction = orbit.sunlit_crossings(t_s, c.sunlit_frac)
            entry: int | None = None if c.sunlit_frac[0] >= 0.5 else -1  # -1: in shadow at t0 (entered before)
            for tc, d in zip(times.tolist(), direction.tolist(), strict=True):
                if d < 0:
                    entry = round(tc * 1e9)
                elif entry is not None:
                    out["eclipses"].append({"entry_ns": entry, "exit_ns": round(tc * 1e9)})
                    entry = None
            if entry is not None:
                out["eclipses"].append({"entry_ns": entry, "exit_ns": -1})  # -1: beyond the horizon
        outline = getattr(self.env, "saa_outline", None)
        if outline is not None:
            lat, lon = outline(t0 * 1e-9)
            out["saa_outline"] = {"lat_deg": lat.tolist(), "lon_deg": lon.tolist()}
        return out

    def _f_strings(self, p: StringFail) -> None:
        self.power.fail_strings(p.array, p.strings)

    def _f_strings_clear(self, p: StringFail) -> None:
        self.power.restore_strings(p.array, p.strings)

    def _f_cell(self, p: CellLoss) -> None:
        self.power.lose_cell(p.group, p.mode)
        self._events += self.power.events
        self.power.events.clear()

    def _f_short(self, p: RailShort) -> None:
        self.power.short_rail(p.rail, p.extra_a)

    def _f_short_clear(self, p: RailShort) -> None:
        self.power.clear_short(p.rail)

    def _f_sensor(self, p: Any, kind: str) -> None:
        bank = self.sensors.bank_of(p.channel)
        # take a fresh reading first, so "stuck" holds what the board would see now
        {"eps": self.read_eps, "thermal": self.read_thermal, "sun": self.read_sun}[self.sensors.kind_of(bank)]()
        bank.inject(p.channel, kind, t_ns=self.t_ns, rate_per_h=getattr(p, "rate_per_h", 0.0),
                    factor=getattr(p, "factor", 1.0))

    def _f_sensor_clear(self, p: Any, kind: str) -> None:
        self.sensors.bank_of(p.channel).clear(p.channel, kind)

    # -- truth and events -------------------------------------------------------------------------------------
    def names(self) -> dict[str, list[str]]:
        cfg = self.config
        return {"rail": [r.name for r in cfg.power.rails], "heater": [h.name for h in cfg.thermal.heaters],
                "node": list(self.thermal.names), "array": [a.name for a in cfg.power.arrays],
                "channel": self.sensor_channels(), "level": [lv.name for lv in cfg.accelerator.dvfs],
                "thermistor": list(self.sensors.thermistor_names)}

    def sensor_channels(self) -> list[str]:
        return self.sensors.channels

    def truth(self) -> dict[str, Any]:
        env: dict[str, Any] = {}
        c = self._chunk_now()
        if c is not None:  # straight from the chunk's arrays (a whole EnvironmentSample would copy the face arrays)
            i = self._i
            for key in TRUTH_ENV_FLOATS:
                a = getattr(c, key, None)  # an injected environment may provide fewer fields
                if a is not None:
                    env[key] = float(a[i])
            for key in ("in_saa", "in_polar_horn"):
                a = getattr(c, key, None)
                if a is not None:
                    env[key] = bool(a[i])
        faults = self.sensors.active_faults()
        return {
            "name": self.name,
            "t_ns": self.t_ns,
            "environment": env,
            "power": self.power.truth(),
            "thermal": self.thermal.truth(),
            "sensors": {"faults": faults},
            "accelerator": self.accel.truth(),
        }

    def truth_getter(self, path: Sequence[str | int]) -> Callable[[], Any] | None:
        path = tuple(path)
        if not path:
            return None
        part, rest = path[0], path[1:]
        if part == "t_ns" and not rest:
            return lambda: self.t_ns
        if part == "environment" and len(rest) == 1 and rest[0] in (*TRUTH_ENV_FLOATS, "in_saa", "in_polar_horn"):
            return functools.partial(self._environment_now, rest[0])
        model = {"power": self.power, "thermal": self.thermal, "accelerator": self.accel}.get(str(part))
        getter = getattr(model, "truth_getter", None)
        return None if getter is None else getter(rest)

    def _environment_now(self, key: str) -> Any:
        """The environment's ``key`` now, as :meth:`truth` gives it (None where it gives none: no such field)."""
        c = self._chunk_now()
        a = None if c is None else getattr(c, key, None)
        if a is None:
            return None
        return float(a[self._i]) if key in TRUTH_ENV_FLOATS else bool(a[self._i])

    def has_events(self) -> bool:
        return bool(self._events) or self.accel.has_events()

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._events
        self._events = []
        out += self.accel.drain_events()
        return out


# The per-step path with the heat-routing kernel written in (power_kernels.inline_kernels: no call per equation);
# Satellite.step.__wrapped__ is one step of the method as written (calls), as the inlined methods of the other models
Satellite.step_many = pk.inline_kernels(Satellite.step_many, {"loss_heat_w": loss_heat_w})  # type: ignore[method-assign]


def _step_as_written(self: Satellite, t_ns: int, dt_ns: int) -> None:
    Satellite.step_many.__wrapped__(self, t_ns, dt_ns, 1)


Satellite.step.__wrapped__ = _step_as_written  # type: ignore[attr-defined]

"""The satellite's wire schemas: the payloads of its board-plane and control-plane topics (``eps.*``, ``thermal.*``,
``adcs.sun``, ``orbit.predict``) and of its faults' parameters.

Imported on first use (:class:`emulator.protocol.catalogue.SchemaRef`): :mod:`emulator.models.satellite` names them
by reference, so a run that never validates a command of these topics or renders the docs never defines them.
"""

from __future__ import annotations

from typing import Literal

from emulator.protocol.catalogue import Payload, field

Mode = Literal["off", "critical", "safe", "normal", "full"]


class RailReading(Payload):
    name: str = field(doc="rail name from the config")
    on: bool = field(doc="output switched on (commanded on, not tripped, not shed)")
    tripped: bool = field(doc="latching current limiter open (waiting to retry, or latched)")
    latched: bool = field(doc="no automatic retries left: needs `eps.rail.reset`")
    trips: int = field(doc="trips since start", ge=0)
    current_a: float = field("A", "output current as the rail monitor reads it")
    voltage_v: float = field("V", "output voltage as the rail monitor reads it")


class EpsTelemetry(Payload):
    bus_v: float = field("V", "bus voltage (battery terminal) as measured", ge=0)
    battery_v: float = field("V", "battery voltage as measured", ge=0)
    battery_a: float = field("A", "battery current as measured, > 0 charging")
    soc_est: float = field(doc="battery gauge state-of-charge estimate, 0..1", ge=0, le=1)
    array_w: float = field("W", "solar array power as measured", ge=0)
    mode: Mode = field(doc="undervoltage shed mode (battery-voltage mode machine)")
    rails: list[RailReading] = field(doc="every PDU rail")


class HeaterReading(Payload):
    name: str = field(doc="heater name")
    mode: Literal["auto", "on", "off"] = field(doc="commanded mode")
    on: bool = field(doc="heater element energised (thermostat or forced)")


class ThermalTelemetry(Payload):
    temps_degc: dict[str, float] = field("degC", "thermistor readings; keys: the thermistor's thermal node names "
                                                 "(this satellite's are listed under 'Names')")
    heaters: list[HeaterReading] = field(doc="heater states")


class SunTelemetry(Payload):
    sun_w_m2: float = field("W/m^2", "coarse sun sensor reading", ge=0)
    eclipse: bool = field(doc="sun reading below the eclipse threshold")


class RailSet(Payload):
    rail: str = field(doc="rail name")
    on: bool = field(doc="switch the rail on or off")


class RailReset(Payload):
    rail: str = field(doc="rail name; clears a tripped or latched current limiter and its retry counter")


class HeaterSet(Payload):
    heater: str = field(doc="heater name")
    mode: Literal["auto", "on", "off"] = field(doc="auto: thermostat; on/off: forced")
    on_below_degc: float | None = field("degC", "thermostat on threshold (unchanged if absent)", default=None,
                                        ge=-100, le=150)
    off_above_degc: float | None = field("degC", "thermostat off threshold (unchanged if absent)", default=None,
                                         ge=-100, le=150)


class RailSetReply(Payload):
    rail: str = field(doc="rail name")
    commanded_on: bool = field(doc="the state you commanded")
    on: bool = field(doc="output on now (commanded on, not tripped, not shed)")


class RailResetReply(Payload):
    rail: str = field(doc="rail name")
    on: bool = field(doc="output on now")
    tripped: bool = field(doc="limiter still open (always false right after a reset)")


class ShedSetReply(Payload):
    thresholds_v: dict[str, float] = field("V", "every threshold now in force, by name (`full_v`, `normal_v`, "
                                                 "`safe_v`, `critical_v`, `hw_off_v`, `hw_on_v`)")


class HeaterSetReply(Payload):
    heater: str = field(doc="heater name")
    mode: Literal["auto", "on", "off"] = field(doc="mode now")
    on_below_degc: float = field("degC", "thermostat on threshold now")
    off_above_degc: float = field("degC", "thermostat off threshold now")


class ShedSet(Payload):
    full_v: float | None = field("V", "battery voltage of mode full", default=None, gt=0, le=200)
    normal_v: float | None = field("V", "rising threshold safe -> normal", default=None, gt=0, le=200)
    safe_v: float | None = field("V", "falling threshold normal -> safe (payload shed)", default=None, gt=0,
                                 le=200)
    critical_v: float | None = field("V", "falling threshold safe -> critical", default=None, gt=0, le=200)
    hw_off_v: float | None = field("V", "hardware cut-off: every rail off", default=None, gt=0, le=200)
    hw_on_v: float | None = field("V", "hardware back on", default=None, gt=0, le=200)


class ModeChanged(Payload):
    mode: Mode = field(doc="new mode")
    previous: Mode = field(doc="previous mode")
    battery_v: float = field("V", "battery voltage at the change")
    reason: str | None = field(doc="why, when not a plain threshold crossing", default=None)


class RailTripped(Payload):
    rail: str = field(doc="rail name")
    current_a: float = field("A", "output current that tripped it")
    trips: int = field(doc="trips since start", ge=0)
    latched: bool = field(doc="no automatic retries left")


class BatteryFault(Payload):
    mode: Literal["open", "short"] = field(doc="cell failure mode")
    group: int = field(doc="series group", ge=0)
    connected: bool = field(doc="the pack still connects the bus")


class StringFail(Payload):
    array: str = field(doc="array name")
    strings: int = field(doc="strings lost", ge=1, default=1)


class CellLoss(Payload):
    group: int = field(doc="series group (0 = most negative)", ge=0, default=0)
    mode: Literal["open", "short"] = field(doc="open: the cell leaves its parallel group; short: the group shorts",
                                           default="open")


class RailShort(Payload):
    rail: str = field(doc="rail name")
    extra_a: float = field("A", "extra load current of the short", gt=0, le=1000)


class SensorChannel(Payload):
    channel: str = field(doc="sensor channel, e.g. `thermal.battery`, `eps.rail.payload.current_a`")


class SensorDrift(Payload):
    channel: str = field(doc="sensor channel")
    rate_per_h: float = field("unit/h", "drift rate in the channel's unit per hour", ge=-1e6, le=1e6)


class SensorNoisy(Payload):
    channel: str = field(doc="sensor channel")
    factor: float = field(doc="noise multiplier", gt=0, le=1e6, default=10.0)


class OrbitPredict(Payload):
    duration_s: float = field("s", "how far ahead of now to predict", gt=0, le=30 * 86400, default=6000.0)
    step_s: float = field("s", "ground-track sample spacing", ge=1, le=3600, default=30.0)


class OrbitTrack(Payload):
    t_ns: list[int] = field("ns", "sample times since the epoch")
    lat_deg: list[float] = field("deg", "geodetic latitude")
    lon_deg: list[float] = field("deg", "longitude, -180..180")
    sunlit_frac: list[float] = field(doc="fraction of the Sun's disc seen, 0..1 (umbra 0, penumbra between)")
    in_saa: list[bool] = field(doc="inside the South Atlantic Anomaly")


class OrbitEclipse(Payload):
    entry_ns: int = field("ns", "entry (sunlit fraction falls through 50 %); -1: before now")
    exit_ns: int = field("ns", "exit; -1: beyond the horizon")


class SaaOutline(Payload):
    lat_deg: list[float] = field("deg", "outline latitude")
    lon_deg: list[float] = field("deg", "outline longitude")


class OrbitPredictReply(Payload):
    t_ns: int = field("ns", "sim time of the first track sample (now)", ge=0)
    step_s: float = field("s", "track sample spacing")
    beta_deg: float = field("deg", "beta angle now")
    period_s: float | None = field("s", "orbital period (null for an environment without an orbit)")
    track: OrbitTrack = field(doc="the ground track ahead")
    eclipses: list[OrbitEclipse] = field(doc="eclipses within the horizon")
    saa_outline: SaaOutline | None = field(doc="the SAA's outline at the orbit's altitude (null if none)")

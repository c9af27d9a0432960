"""``[bench.supply]``: a programmable bench supply that plays one rail of the emulated power bus.

Pure configuration (pydantic), no I/O: :mod:`emulator.config` validates it with the rest of the run tables, and
:func:`check_against_satellite` checks it against the satellite it powers (rail, load, voltage limits).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from emulator.errors import suggest
from emulator.instruments.dialects import DIALECTS, DRIVERS, Dialect, check_template
from emulator.validation import ConfigModel

#: VISA resource classes a supply may sit behind (pyvisa-py: LAN VXI-11 / HiSLIP / raw socket, serial, USBTMC, GPIB)
RESOURCE_PREFIXES = ("TCPIP", "ASRL", "USB", "GPIB")


class _Strict(ConfigModel):
    """A table of [bench.supply] (its schema is built when one is validated)."""

class ScpiTemplates(_Strict):
    """The ``scpi`` driver's command set: str.format templates with {ch}, {volts}, {amps} (see dialects.py)."""

    #: regex searched in the *IDN? reply, e.g. "^ACME,PS-3005"
    idn: str = Field(min_length=1)
    channels: int = Field(1, ge=1, le=16)
    select: str | None = None
    set_voltage: str
    set_current: str
    output_on: list[str] = Field(min_length=1)
    output_off: list[str] = Field(min_length=1)
    measure_voltage: str
    measure_current: str
    query_voltage: str | None = None
    query_current: str | None = None
    query_output: str | None = None
    set_ovp: list[str] = Field(default_factory=list)
    query_ovp: str | None = None
    error_query: str | None = "SYST:ERR?"
    clear: str | None = "*CLS"
    ack_query: str | None = "*OPC?"
    command_gap_s: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _templates(self) -> ScpiTemplates:
        try:
            re.compile(self.idn)
        except re.error as exc:
            raise ValueError(f"idn: not a regular expression: {exc}") from None
        check_template("set_voltage", self.set_voltage, {"volts"})
        check_template("set_current", self.set_current, {"amps"})
        for role in ("select", "measure_voltage", "measure_current", "query_voltage", "query_current",
                     "query_output", "query_ovp", "error_query", "clear", "ack_query"):
            value = getattr(self, role)
            if value is not None:
                check_template(role, value, set())
        for role in ("output_on", "output_off", "set_ovp"):
            for i, line in enumerate(getattr(self, role)):
                check_template(f"{role}[{i}]", line, set())
        if self.set_ovp and not any("{volts" in line for line in self.set_ovp):
            raise ValueError("set_ovp: one of its lines must use {volts} (the hard max_v)")
        return self

    def dialect(self) -> Dialect:
        return Dialect(name="scpi", title="generic SCPI (templates from the config)", idn=self.idn,
                       channels=self.channels, select=self.select, set_voltage=self.set_voltage,
                       set_current=self.set_current, output_on=tuple(self.output_on),
                       output_off=tuple(self.output_off), measure_voltage=self.measure_voltage,
                       measure_current=self.measure_current, query_voltage=self.query_voltage,
                       query_current=self.query_current, query_output=self.query_output,
                       set_ovp=tuple(self.set_ovp), query_ovp=self.query_ovp, error_query=self.error_query,
                       clear=self.clear, ack_query=self.ack_query, command_gap_s=self.command_gap_s)


class SupplyConfig(_Strict):
    """One supply channel that plays one rail (``[bench.supply]``, or ``[[bench.supply]]`` for several)."""

    #: a name for logs, stats and sim.links
    name: str = Field("supply", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    #: VISA resource: TCPIP::host::INSTR, TCPIP::host::5025::SOCKET, ASRL/dev/ttyUSB0::INSTR, USB::0x2A8D::...::INSTR
    resource: str = Field(min_length=1)
    #: SCPI dialect: keysight_e36300, keysight_e36, rigol_dp800, siglent_spd3303x, rs_nge100, rs_hmc804x, or scpi
    driver: str
    channel: int = Field(1, ge=1, le=16)
    #: the power.rails[] this supply plays
    rail: str = Field(min_length=1)
    #: the power.loads[] entry (source = "supply") its measurement feeds; None: the only such load on the rail
    load: str | None = None
    #: hard limits: no command flatsat sends exceeds them; the supply's own OVP is set at max_v where it has one
    max_v: float = Field(gt=0, le=1000)
    max_a: float = Field(gt=0, le=1000)
    #: measured voltage and current are read back this often (wall clock)
    readback_hz: float = Field(10.0, gt=0, le=100)
    #: the supply's current limit is the rail limiter's threshold plus this fraction (capped at max_a), so that a real
    #: over-current reaches the model's limiter before the supply clamps it
    limit_margin: float = Field(0.1, ge=0, le=1)
    #: a bus-following voltage is re-sent when it moved by more than this
    voltage_deadband_v: float = Field(0.01, ge=0, le=1)
    #: an output cut lasts at least this long (a power cycle must discharge the board's input capacitors)
    min_off_s: float = Field(0.5, ge=0, le=60)
    #: set the supply's over-voltage protection at max_v (if the dialect has one)
    ovp: bool = True
    #: log every SCPI line instead of sending it (no instrument is opened; nothing is measured)
    dry_run: bool = False
    #: a separate guard process turns the output off if the emulator dies or stops answering for watchdog_s
    guard: bool = True
    watchdog_s: float = Field(2.0, ge=0.2, le=60)
    #: VISA I/O timeout of one line
    timeout_s: float = Field(1.0, gt=0, le=30)
    #: after a lost connection, try this long to reconnect and switch the output off (the run stops either way)
    reconnect_s: float = Field(5.0, ge=0, le=300)
    #: pyvisa backend: "@py" (pyvisa-py, pure Python); "path/devices.yaml@sim" is pyvisa-sim (tests)
    backend: str = "@py"
    read_termination: str = "\n"
    write_termination: str = "\n"
    #: serial (ASRL) resources only
    baud_rate: int | None = Field(None, ge=300, le=4_000_000)
    #: override the dialect's gap between lines (s)
    command_gap_s: float | None = Field(None, ge=0, le=1)
    #: the scpi driver's templates
    commands: ScpiTemplates | None = None

    @field_validator("resource")
    @classmethod
    def _resource(cls, v: str) -> str:
        if not v.upper().startswith(RESOURCE_PREFIXES):
            raise ValueError(f"not a VISA resource string: {v!r}; e.g. TCPIP::192.168.1.20::INSTR, "
                             "TCPIP::192.168.1.20::5025::SOCKET, ASRL/dev/ttyUSB0::INSTR, "
                             "USB0::0x2A8D::0x1102::MY123::INSTR")
        return v

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str) -> str:
        if v not in DRIVERS:
            raise ValueError(f"unknown driver {v!r}{suggest(v, DRIVERS)}; valid drivers: {', '.join(DRIVERS)}")
        return v

    @model_validator(mode="after")
    def _cross(self) -> SupplyConfig:
        if self.driver == "scpi" and self.commands is None:
            raise ValueError("driver 'scpi' needs its command templates in [bench.supply.commands] (docs/hardware.md)")
        if self.driver != "scpi" and self.commands is not None:
            raise ValueError(f"commands are the scpi driver's templates; driver {self.driver!r} has its own "
                             "(set driver = 'scpi' to use yours)")
        d = self.dialect()
        if self.channel > d.channels:
            raise ValueError(f"channel {self.channel}: {d.title} has channels 1..{d.channels}")
        if self.baud_rate is not None and not self.resource.upper().startswith("ASRL"):
            raise ValueError("baud_rate applies to serial (ASRL) resources only")
        return self

    def dialect(self) -> Dialect:
        if self.commands is not None:
            return self.commands.dialect()
        return DIALECTS[self.driver]

    @property
    def gap_s(self) -> float:
        return self.dialect().command_gap_s if self.command_gap_s is None else self.command_gap_s


def as_list(v: Any) -> Any:
    """``[bench.supply]`` (one table) or ``[[bench.supply]]`` (a list): always a list."""
    if v is None:
        return []
    if isinstance(v, dict):
        return [v]
    return v


def check_unique(supplies: list[SupplyConfig]) -> None:
    seen: set[str] = set()
    for s in supplies:
        if s.name in seen:
            raise ValueError(f"two supplies are named {s.name!r}; give each [[bench.supply]] its own name")
        seen.add(s.name)
    used: set[tuple[str, int]] = set()
    for s in supplies:
        key = (s.resource, s.channel)
        if key in used and not s.dry_run:
            raise ValueError(f"supply {s.name!r}: {s.resource} channel {s.channel} is already played by another "
                             "supply")
        used.add(key)


def realtime_problem(mode: str, speed: float) -> str | None:
    """Why a clock in ``mode`` at ``speed`` cannot drive a bench supply (None: it can)."""
    if mode == "realtime" or (mode == "scaled" and speed <= 1.0):
        return None
    if mode == "scaled":
        return (f"sim.mode 'scaled' at {speed:g}x runs faster than the wall clock, and a real board on a bench "
                "supply draws and heats in real time: use mode 'realtime' (or 'scaled' at speed <= 1)")
    return (f"sim.mode {mode!r} does not follow the wall clock, and a real board on a bench supply draws and heats "
            "in real time: use mode 'realtime' (or 'scaled' at speed <= 1)")


def supply_load_of(s: SupplyConfig, loads: list[Any]) -> str:
    """The name of the ``source = "supply"`` load that supply ``s`` feeds; ValueError naming the fix."""
    on_rail = [ld.name for ld in loads if ld.source == "supply" and ld.rail == s.rail]
    if s.load is not None:
        if s.load not in on_rail:
            raise ValueError(f"bench.supply {s.name!r}: load {s.load!r} is not a source = 'supply' load on rail "
                             f"{s.rail!r}{suggest(s.load, on_rail)}; such loads: {', '.join(on_rail) or 'none'}")
        return s.load
    if not on_rail:
        raise ValueError(
            f"bench.supply {s.name!r}: rail {s.rail!r} has no load with source = 'supply' for the measured draw; "
            f"add one, e.g.\n[[power.loads]]\nname = \"board\"\nrail = \"{s.rail}\"\nsource = \"supply\"\n"
            "thermal_node = \"accel_die\"   # where the board's heat goes")
    if len(on_rail) > 1:
        raise ValueError(f"bench.supply {s.name!r}: rail {s.rail!r} has several supply loads ({', '.join(on_rail)}); "
                         "say which one with load = \"...\"")
    return on_rail[0]


def check_against_satellite(supplies: list[SupplyConfig], sat: Any) -> None:
    """ValueError unless every supply plays an existing rail within its hard limits and feeds a supply load."""
    rails = {r.name: r for r in sat.power.rails}
    for s in supplies:
        r = rails.get(s.rail)
        if r is None:
            raise ValueError(f"bench.supply {s.name!r}: unknown rail {s.rail!r}{suggest(s.rail, rails)}; valid rails: "
                             f"{', '.join(rails)}")
        supply_load_of(s, sat.power.loads)
        b = sat.power.battery
        top_v = r.voltage_v if r.kind == "regulated" else b.end_of_charge_v_cell * b.cells_series
        if top_v > s.max_v:
            what = f"its set point {top_v:g} V" if r.kind == "regulated" else f"the bus, up to {top_v:g} V"
            raise ValueError(f"bench.supply {s.name!r}: rail {s.rail!r} delivers {what}, above max_v {s.max_v:g} V; "
                             "raise max_v if the board takes it, or play another rail")

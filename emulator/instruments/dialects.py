"""SCPI dialects of bench power supplies: the command templates a :class:`~emulator.instruments.supply.Supply` sends.

A dialect is data, not code: every line flatsat sends to an instrument comes from one of these templates, formatted
with ``{ch}`` (channel number), ``{volts}`` and ``{amps}`` (already clamped to the hard limits). Adding a supply is
adding a :class:`Dialect` here (or writing the same templates into a config's ``[bench.supply.commands]`` for the
``scpi`` driver); docs/hardware.md says how. Numbers are formatted with a fixed number of decimals (mV, mA): every
supply listed resolves 1 mV / 1 mA or coarser.

Pure: no I/O, no pyvisa import.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

#: fields a template may use
TEMPLATE_FIELDS = frozenset({"ch", "volts", "amps"})


@dataclass(frozen=True)
class Dialect:
    """The SCPI command set of one family of supplies."""

    name: str
    title: str
    #: regex searched in the ``*IDN?`` reply (manufacturer,model,...); no match: flatsat refuses to start
    idn: str
    #: highest channel number
    channels: int
    set_voltage: str
    set_current: str
    output_on: tuple[str, ...]
    output_off: tuple[str, ...]
    measure_voltage: str
    measure_current: str
    #: sent before every group of channel commands when the commands do not name the channel (R&S: INST:NSEL)
    select: str | None = None
    #: set-point and output-state queries: the settings found at start are restored at exit
    query_voltage: str | None = None
    query_current: str | None = None
    query_output: str | None = None
    #: the supply's own over-voltage protection, set at the hard max_v (None: the dialect has none)
    set_ovp: tuple[str, ...] = ()
    query_ovp: str | None = None
    #: error queue (read after every setting; None: the instrument has none)
    error_query: str | None = "SYST:ERR?"
    #: clear status and the error queue at start
    clear: str | None = "*CLS"
    #: a query that returns once the previous commands are done: times "output off" to the instrument's word
    ack_query: str | None = "*OPC?"
    #: wait at least this long between two lines (some supplies drop commands that come too fast)
    command_gap_s: float = 0.0
    notes: str = ""

    def lines(self) -> dict[str, tuple[str, ...]]:
        """Every template by role (for checks and docs)."""
        one = {k: getattr(self, k) for k in ("set_voltage", "set_current", "measure_voltage", "measure_current",
                                             "select", "query_voltage", "query_current", "query_output",
                                             "query_ovp", "error_query", "clear", "ack_query")}
        out = {k: (v,) for k, v in one.items() if v}
        out.update({k: getattr(self, k) for k in ("output_on", "output_off", "set_ovp") if getattr(self, k)})
        return out


def template_fields(template: str) -> set[str]:
    """Field names used by a str.format template; ValueError if it is not one."""
    fields = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if name == "" or not name.isidentifier():
                raise ValueError(f"template {template!r}: use named fields only ({', '.join(sorted(TEMPLATE_FIELDS))})")
            fields.add(name)
    return fields


def check_template(role: str, template: str, needs: set[str]) -> None:
    """ValueError unless ``template`` formats with the allowed fields and uses every field in ``needs``."""
    fields = template_fields(template)
    bad = fields - TEMPLATE_FIELDS
    if bad:
        raise ValueError(f"{role}: unknown field {{{min(bad)}}} in {template!r}; fields: {{ch}}, {{volts}}, "
                         "{amps}")
    missing = needs - fields
    if missing:
        raise ValueError(f"{role}: {template!r} must use {{{min(missing)}}}")
    template.format(ch=1, volts=1.0, amps=1.0)  # format specs must suit floats / ints


KEYSIGHT_E36300 = Dialect(
    name="keysight_e36300",
    title="Keysight E36300 series (E36311A, E36312A, E36313A)",
    idn=r"^Keysight Technologies,E363\d\d",
    channels=3,
    set_voltage="VOLT {volts:.3f},(@{ch})",
    set_current="CURR {amps:.3f},(@{ch})",
    output_on=("OUTP ON,(@{ch})",),
    output_off=("OUTP OFF,(@{ch})",),
    measure_voltage="MEAS:VOLT? (@{ch})",
    measure_current="MEAS:CURR? (@{ch})",
    query_voltage="VOLT? (@{ch})",
    query_current="CURR? (@{ch})",
    query_output="OUTP? (@{ch})",
    set_ovp=("VOLT:PROT {volts:.3f},(@{ch})",),
    query_ovp="VOLT:PROT? (@{ch})",
    notes="channel lists (@n) on every command; OVP is always armed",
)

KEYSIGHT_E36 = Dialect(
    name="keysight_e36",
    title="Keysight/Agilent single-output E36xx (E36102A-E36106A, E36231A/E36232A, E3640A-E3645A)",
    idn=r"^(Keysight|Agilent) Technologies,E36(1\d\d|2\d\d|4\d)A",
    channels=1,
    set_voltage="VOLT {volts:.3f}",
    set_current="CURR {amps:.3f}",
    output_on=("OUTP ON",),
    output_off=("OUTP OFF",),
    measure_voltage="MEAS:VOLT?",
    measure_current="MEAS:CURR?",
    query_voltage="VOLT?",
    query_current="CURR?",
    query_output="OUTP?",
    set_ovp=("VOLT:PROT {volts:.3f}",),
    query_ovp="VOLT:PROT?",
    notes="one output (channel 1); over RS-232 the E364xA wants SYST:REM first (use the scpi driver's setup)",
)

RIGOL_DP800 = Dialect(
    name="rigol_dp800",
    title="Rigol DP800 series (DP811, DP821, DP831, DP832)",
    idn=r"^RIGOL TECHNOLOGIES,DP8\d\d",
    channels=3,
    set_voltage=":SOUR{ch}:VOLT {volts:.3f}",
    set_current=":SOUR{ch}:CURR {amps:.3f}",
    output_on=(":OUTP CH{ch},ON",),
    output_off=(":OUTP CH{ch},OFF",),
    measure_voltage=":MEAS:VOLT? CH{ch}",
    measure_current=":MEAS:CURR? CH{ch}",
    query_voltage=":SOUR{ch}:VOLT?",
    query_current=":SOUR{ch}:CURR?",
    query_output=":OUTP? CH{ch}",
    set_ovp=(":OUTP:OVP:VAL CH{ch},{volts:.3f}", ":OUTP:OVP CH{ch},ON"),
    query_ovp=":OUTP:OVP:VAL? CH{ch}",
    notes="OVP value and state per channel",
)

SIGLENT_SPD3303X = Dialect(
    name="siglent_spd3303x",
    title="Siglent SPD3303X / SPD3303X-E",
    idn=r"^Siglent Technologies,SPD3303X",
    channels=2,
    set_voltage="CH{ch}:VOLT {volts:.3f}",
    set_current="CH{ch}:CURR {amps:.3f}",
    output_on=("OUTP CH{ch},ON",),
    output_off=("OUTP CH{ch},OFF",),
    measure_voltage="MEAS:VOLT? CH{ch}",
    measure_current="MEAS:CURR? CH{ch}",
    query_voltage="CH{ch}:VOLT?",
    query_current="CH{ch}:CURR?",
    clear=None,
    ack_query=None,
    command_gap_s=0.02,
    notes="no OVP command (hard limits are enforced by flatsat only), no *CLS or *OPC?; the instrument drops "
          "lines sent back to back, so flatsat leaves 20 ms between lines (command_gap_s)",
)

RS_NGE100 = Dialect(
    name="rs_nge100",
    title="Rohde & Schwarz NGE100 series (NGE102B, NGE103B)",
    idn=r"^Rohde&Schwarz,NGE10\d",
    channels=3,
    select="INST:NSEL {ch}",
    set_voltage="VOLT {volts:.3f}",
    set_current="CURR {amps:.3f}",
    output_on=("OUTP 1",),
    output_off=("OUTP 0",),
    measure_voltage="MEAS:VOLT?",
    measure_current="MEAS:CURR?",
    query_voltage="VOLT?",
    query_current="CURR?",
    query_output="OUTP?",
    set_ovp=("VOLT:PROT:LEV {volts:.3f}",),
    query_ovp="VOLT:PROT:LEV?",
    notes="the channel is selected (INST:NSEL) before every group of commands",
)

RS_HMC804X = Dialect(
    name="rs_hmc804x",
    title="Rohde & Schwarz (Hameg) HMC8041, HMC8042, HMC8043",
    idn=r"^(Rohde&Schwarz|HAMEG),HMC804\d",
    channels=3,
    select="INST:NSEL {ch}",
    set_voltage="VOLT {volts:.3f}",
    set_current="CURR {amps:.3f}",
    output_on=("OUTP:CHAN ON", "OUTP:MAST ON"),
    output_off=("OUTP:CHAN OFF",),
    measure_voltage="MEAS:VOLT?",
    measure_current="MEAS:CURR?",
    query_voltage="VOLT?",
    query_current="CURR?",
    query_output="OUTP:CHAN?",
    set_ovp=("VOLT:PROT:LEV {volts:.3f}",),
    query_ovp="VOLT:PROT:LEV?",
    notes="a channel delivers only with the master switch on: flatsat turns the master on with its channel (every "
          "other channel whose own output is enabled goes live too) and off only its own channel",
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (KEYSIGHT_E36300, KEYSIGHT_E36, RIGOL_DP800, SIGLENT_SPD3303X,
                                                     RS_NGE100, RS_HMC804X)}
#: driver names a config may use: the dialects above, and "scpi" (templates in the config)
DRIVERS = (*DIALECTS, "scpi")


def idn_matches(dialect: Dialect, idn: str) -> bool:
    return re.search(dialect.idn, idn.strip()) is not None

"""Every SCPI dialect's command sequence against PyVISA's simulated backend (pyvisa-sim), with the device
definitions in supplies.yaml beside this file: identity, take-over (settings saved, output off, OVP), on, a voltage
change, a readback, off, and the restore at exit. The simulated devices accept only their family's syntax and put
anything else in their error queue, which the driver reads after every setting."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pyvisa", reason="pip install 'flatsat[bench]' pyvisa-sim  (or: make install-test)")
pytest.importorskip("pyvisa_sim", reason="pip install pyvisa-sim  (or: make install-test)")

from emulator.errors import InstrumentError
from emulator.instruments.config import ScpiTemplates, SupplyConfig
from emulator.instruments.dialects import DIALECTS
from emulator.instruments.supply import Supply

HERE = Path(__file__).resolve().parent

#: driver -> (simulated resource, channel, the lines it must send for: start; on at 12 V / 2.2 A; 11.5 V; measure;
#: off; restore), error-queue reads left out
SEQUENCES = {
    "keysight_e36300": ("TCPIP::keysight.bench::INSTR", 2, [
        "*IDN?", "*CLS", "VOLT? (@2)", "CURR? (@2)", "VOLT:PROT? (@2)", "OUTP? (@2)", "OUTP OFF,(@2)", "*OPC?",
        "VOLT:PROT 13.000,(@2)",
        "CURR 2.200,(@2)", "VOLT 12.000,(@2)", "OUTP ON,(@2)",
        "VOLT 11.500,(@2)",
        "MEAS:VOLT? (@2)", "MEAS:CURR? (@2)",
        "OUTP OFF,(@2)", "*OPC?",
        "OUTP OFF,(@2)", "*OPC?", "CURR 1.000,(@2)", "VOLT 0.000,(@2)", "VOLT:PROT 13.000,(@2)"]),
    "keysight_e36": ("ASRL7::INSTR", 1, [
        "*IDN?", "*CLS", "VOLT?", "CURR?", "VOLT:PROT?", "OUTP?", "OUTP OFF", "*OPC?", "VOLT:PROT 13.000",
        "CURR 2.200", "VOLT 12.000", "OUTP ON",
        "VOLT 11.500",
        "MEAS:VOLT?", "MEAS:CURR?",
        "OUTP OFF", "*OPC?",
        "OUTP OFF", "*OPC?", "CURR 0.500", "VOLT 0.000", "VOLT:PROT 13.000"]),
    "rigol_dp800": ("USB0::0x1AB1::0x0E11::DP8C000000001::INSTR", 2, [
        "*IDN?", "*CLS", ":SOUR2:VOLT?", ":SOUR2:CURR?", ":OUTP:OVP:VAL? CH2", ":OUTP? CH2", ":OUTP CH2,OFF", "*OPC?",
        ":OUTP:OVP:VAL CH2,13.000", ":OUTP:OVP CH2,ON",
        ":SOUR2:CURR 2.200", ":SOUR2:VOLT 12.000", ":OUTP CH2,ON",
        ":SOUR2:VOLT 11.500",
        ":MEAS:VOLT? CH2", ":MEAS:CURR? CH2",
        ":OUTP CH2,OFF", "*OPC?",
        ":OUTP CH2,OFF", "*OPC?", ":SOUR2:CURR 1.000", ":SOUR2:VOLT 0.000", ":OUTP:OVP:VAL CH2,13.000",
        ":OUTP:OVP CH2,ON"]),
    "siglent_spd3303x": ("TCPIP::siglent.bench::5025::SOCKET", 2, [
        "*IDN?", "CH2:VOLT?", "CH2:CURR?", "OUTP CH2,OFF",
        "CH2:CURR 2.200", "CH2:VOLT 12.000", "OUTP CH2,ON",
        "CH2:VOLT 11.500",
        "MEAS:VOLT? CH2", "MEAS:CURR? CH2",
        "OUTP CH2,OFF",
        "OUTP CH2,OFF", "CH2:CURR 2.500", "CH2:VOLT 0.000"]),   # 3.2 A found, restored within max_a
    "rs_nge100": ("TCPIP::nge.bench::INSTR", 2, [
        "*IDN?", "*CLS", "INST:NSEL 2", "VOLT?", "INST:NSEL 2", "CURR?", "INST:NSEL 2", "VOLT:PROT:LEV?",
        "INST:NSEL 2", "OUTP?", "INST:NSEL 2", "OUTP 0", "*OPC?", "INST:NSEL 2", "VOLT:PROT:LEV 13.000",
        "INST:NSEL 2", "CURR 2.200", "VOLT 12.000", "OUTP 1",
        "INST:NSEL 2", "VOLT 11.500",
        "INST:NSEL 2", "MEAS:VOLT?", "MEAS:CURR?",
        "INST:NSEL 2", "OUTP 0", "*OPC?",
        "INST:NSEL 2", "OUTP 0", "*OPC?", "INST:NSEL 2", "CURR 1.000", "INST:NSEL 2", "VOLT 0.000",
        "INST:NSEL 2", "VOLT:PROT:LEV 13.000"]),
    "rs_hmc804x": ("TCPIP::hmc.bench::INSTR", 2, [
        "*IDN?", "*CLS", "INST:NSEL 2", "VOLT?", "INST:NSEL 2", "CURR?", "INST:NSEL 2", "VOLT:PROT:LEV?",
        "INST:NSEL 2", "OUTP:CHAN?", "INST:NSEL 2", "OUTP:CHAN OFF", "*OPC?", "INST:NSEL 2", "VOLT:PROT:LEV 13.000",
        "INST:NSEL 2", "CURR 2.200", "VOLT 12.000", "OUTP:CHAN ON", "OUTP:MAST ON",
        "INST:NSEL 2", "VOLT 11.500",
        "INST:NSEL 2", "MEAS:VOLT?", "MEAS:CURR?",
        "INST:NSEL 2", "OUTP:CHAN OFF", "*OPC?",
        "INST:NSEL 2", "OUTP:CHAN OFF", "*OPC?", "INST:NSEL 2", "CURR 1.000", "INST:NSEL 2", "VOLT 0.000",
        "INST:NSEL 2", "VOLT:PROT:LEV 13.000"]),
}
#: what the simulated devices measure (supplies.yaml)
MEASURED = {"keysight_e36300": (11.98, 0.75), "keysight_e36": (4.999, 0.12), "rigol_dp800": (5.002, 0.341),
            "siglent_spd3303x": (12.01, 1.204), "rs_nge100": (3.301, 0.205), "rs_hmc804x": (11.995, 1.5)}


@pytest.fixture
def sim_backend(tmp_path: Path) -> str:
    # a copy per test: pyvisa-sim keeps one device state per definitions file for the whole process
    path = tmp_path / "supplies.yaml"
    shutil.copy(HERE / "supplies.yaml", path)
    return f"{path}@sim"


def cfg(backend: str, driver: str, resource: str, channel: int = 1, **kw) -> SupplyConfig:
    fields = {"name": driver, "resource": resource, "driver": driver, "channel": channel, "rail": "payload",
              "max_v": 13.0, "max_a": 2.5, "backend": backend, "guard": False, "command_gap_s": 0.0, **kw}
    return SupplyConfig(**fields)


def sent(s: Supply) -> list[str]:
    return [line for _, way, line in s.transcript if way == ">" and "ERR?" not in line]


def test_every_dialect_has_a_sequence_here() -> None:
    assert set(SEQUENCES) == set(DIALECTS)


@pytest.mark.parametrize("driver", sorted(SEQUENCES))
def test_dialect_sequence(sim_backend: str, driver: str) -> None:
    resource, channel, expected = SEQUENCES[driver]
    s = Supply(cfg(sim_backend, driver, resource, channel))
    try:
        assert s.start() is False
        assert s.switch_on(12.0, 2.2) == (12.0, 2.2)
        assert s.set_voltage(11.5) == 11.5
        assert s.measure() == pytest.approx(MEASURED[driver])
        s.output_off()
        s.restore()
    finally:
        s.close()
    assert sent(s) == expected
    assert not s.errors
    if DIALECTS[driver].error_query:   # the queue was read after every setting
        assert sum("ERR?" in line for _, way, line in s.transcript if way == ">") >= 8


def test_restore_puts_back_what_was_found(sim_backend: str) -> None:
    import pyvisa

    resource, channel, _ = SEQUENCES["keysight_e36300"]
    rm = pyvisa.ResourceManager(sim_backend)
    probe = rm.open_resource(resource, read_termination="\n", write_termination="\n")
    probe.write("VOLT 3.300,(@2)")
    probe.write("CURR 0.400,(@2)")
    probe.write("OUTP ON,(@2)")   # flatsat finds the output on: it switches it off before taking over
    s = Supply(cfg(sim_backend, "keysight_e36300", resource, channel))
    assert s.start() is True
    assert probe.query("OUTP? (@2)") == "OFF"
    s.switch_on(12.0, 2.0)
    assert probe.query("OUTP? (@2)") == "ON"
    assert float(probe.query("VOLT? (@2)")) == 12.0
    s.restore()
    s.close()
    assert probe.query("OUTP? (@2)") == "OFF"
    assert float(probe.query("VOLT? (@2)")) == pytest.approx(3.3)
    assert float(probe.query("CURR? (@2)")) == pytest.approx(0.4)


def test_refuses_an_instrument_that_is_not_what_the_driver_drives(sim_backend: str) -> None:
    s = Supply(cfg(sim_backend, "rigol_dp800", "TCPIP::load.bench::INSTR"))
    with pytest.raises(InstrumentError, match="DL3021.*not a Rigol DP800") as exc:
        s.start()
    assert exc.value.command == "*IDN?"
    assert sent(s) == ["*IDN?"]   # nothing else was sent to it
    # and the other way round: the right family behind the wrong driver
    s = Supply(cfg(sim_backend, "keysight_e36300", SEQUENCES["rigol_dp800"][0]))
    with pytest.raises(InstrumentError, match="refusing to start"):
        s.start()


def test_instrument_errors_are_reported_with_the_command_that_caused_them(sim_backend: str) -> None:
    resource, channel, _ = SEQUENCES["keysight_e36300"]
    s = Supply(cfg(sim_backend, "keysight_e36300", resource, channel, max_v=27.0))
    s.start()
    with pytest.raises(InstrumentError) as exc:
        s.switch_on(26.0, 1.0)    # the simulated channel takes at most 25 V
    s.close()
    assert exc.value.command == "VOLT 26.000,(@2)"
    assert '-113,"Undefined header"' in str(exc.value) and "VOLT 26.000,(@2)" in str(exc.value)
    assert len(s.errors) == 1


def test_nothing_exceeds_the_hard_limits(sim_backend: str) -> None:
    resource, channel, _ = SEQUENCES["keysight_e36300"]
    s = Supply(cfg(sim_backend, "keysight_e36300", resource, channel))
    s.start()
    assert s.switch_on(40.0, 9.0) == (13.0, 2.5)
    assert s.set_voltage(float("nan")) == 0.0
    assert s.set_current(-1.0) == 0.0
    s.restore()
    s.close()
    lines = sent(s)
    assert "VOLT 13.000,(@2)" in lines and "CURR 2.500,(@2)" in lines and "VOLT 40.000,(@2)" not in lines
    assert s.clamps == 4
    assert all(float(line.split()[1].split(",")[0]) <= 13.0 for line in lines if line.startswith("VOLT "))


def test_generic_scpi_driver_from_templates(sim_backend: str) -> None:
    """What a user writes for a supply flatsat has no dialect for (here: the E36300 syntax again)."""
    templates = ScpiTemplates(idn=r"^Keysight Technologies,E3631\d", channels=3,
                              set_voltage="VOLT {volts:.3f},(@{ch})", set_current="CURR {amps:.3f},(@{ch})",
                              output_on=["OUTP ON,(@{ch})"], output_off=["OUTP OFF,(@{ch})"],
                              measure_voltage="MEAS:VOLT? (@{ch})", measure_current="MEAS:CURR? (@{ch})",
                              query_voltage="VOLT? (@{ch})")
    c = SupplyConfig(name="mine", resource="TCPIP::keysight.bench::INSTR", driver="scpi", channel=3, rail="payload",
                     max_v=13.0, max_a=2.5, backend=sim_backend, guard=False, commands=templates)
    s = Supply(c)
    s.start()
    s.switch_on(5.0, 1.0)
    assert s.measure() == pytest.approx((11.98, 0.75))
    s.restore()
    s.close()
    assert sent(s) == ["*IDN?", "*CLS", "VOLT? (@3)", "OUTP OFF,(@3)", "*OPC?", "CURR 1.000,(@3)", "VOLT 5.000,(@3)",
                       "OUTP ON,(@3)", "MEAS:VOLT? (@3)", "MEAS:CURR? (@3)", "OUTP OFF,(@3)", "*OPC?",
                       "VOLT 0.000,(@3)"]


def test_dry_run_logs_every_line_and_sends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    c = SupplyConfig(resource="TCPIP::192.0.2.1::INSTR", driver="rigol_dp800", channel=1, rail="payload", max_v=13.0,
                     max_a=2.5, backend="@no-such-backend", dry_run=True)
    s = Supply(c)
    with caplog.at_level(logging.INFO, logger="flatsat.supply"):
        assert s.start() is False
        s.switch_on(12.0, 2.2)
        assert s.measure() is None
        s.output_off()
    logged = [r.getMessage() for r in caplog.records]
    assert any("dry run" in m and "not opened" in m for m in logged)
    for line in (":OUTP:OVP:VAL CH1,13.000", ":SOUR1:VOLT 12.000", ":OUTP CH1,ON", ":OUTP CH1,OFF"):
        assert f"supply (dry run) > {line}" in logged
    assert s._res is None

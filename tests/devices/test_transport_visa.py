"""VisaTransport: pyvisa-sim with our multimeter.yaml, and pyvisa-py to our TCP simulator."""
import importlib.util

import pytest

from devices.errors import ConfigError, DeviceDisconnected, DeviceTimeout
from devices.simulators.instrument import InstrumentSimulator, definition_path
from devices.transport import Terminators, Timeouts
from devices.transports import transport_from_config
from devices.transports.visa import VisaTransport

FAST = Timeouts(lock=0.5, write=0.5, reply=0.3, read=0.1)
MULTIMETER = definition_path("multimeter") + "@sim"


@pytest.fixture
def dmm():
    transport = VisaTransport("ASRL2::INSTR", library=MULTIMETER, timeouts=FAST,
                              terminators=Terminators(b"\n", b"\n"))
    transport.open()
    yield transport
    transport.close()


def test_idn_and_measurement(dmm):
    assert dmm.query(b"*IDN?") == b"CAPROTO-BRIDGE,DMM-6500,SIM0002,1.0"
    assert float(dmm.query(b"MEAS:VOLT:DC?")) == pytest.approx(1.234567)


def test_configure_range_and_error_queue(dmm):
    with dmm.locked():
        dmm.write(b"CONF:VOLT:DC 100")
    assert float(dmm.query(b"VOLT:DC:RANG?")) == 100.0
    with dmm.locked():
        dmm.write(b"CONF:VOLT:DC 7")        # not a valid range
    assert float(dmm.query(b"VOLT:DC:RANG?")) == 100.0
    assert dmm.query(b"SYST:ERR?") == b'-100,"Command error"'
    assert dmm.query(b"SYST:ERR?") == b'+0,"No error"'


def test_silent_instrument_is_a_timeout(dmm):
    with dmm.locked():
        dmm.write(b"VOLT:DC:NPLC 10")       # a setter: no reply
    with pytest.raises(DeviceTimeout) as info:
        dmm.read()
    assert info.value.alarm_status == "TIMEOUT"
    assert float(dmm.query(b"VOLT:DC:NPLC?")) == 10.0


def test_unknown_resource_cannot_open():
    transport = VisaTransport("ASRL9::INSTR", library=MULTIMETER, timeouts=FAST)
    with pytest.raises(DeviceDisconnected) as info:
        transport.open()
    assert "ASRL9::INSTR" in str(info.value)
    assert not transport.is_open


@pytest.mark.parametrize("config, where, text", [
    ({"kind": "visa"}, ("d", "resource"), "needs a 'resource'"),
    ({"kind": "visa", "resource": "ASRL1::INSTR", "library": "/nonexistent/x.yaml@sim"},
     ("d", "library"), "does not exist"),
    ({"kind": "visa", "resource": "ASRL1::INSTR", "libary": "@py"}, ("d", "libary"), "did you mean 'library'"),
])
def test_bad_visa_config(config, where, text):
    with pytest.raises(ConfigError) as info:
        transport_from_config(config, timeouts=FAST, terminators=Terminators(), path=("d",))
    assert info.value.path == where
    assert text in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("pyvisa_py") is None, reason="pyvisa-py not installed")
def test_pyvisa_py_socket_resource_reaches_our_tcp_simulator():
    with InstrumentSimulator("temperature_controller") as sim:
        port = sim.serve_tcp()
        transport = VisaTransport("TCPIP::127.0.0.1::%d::SOCKET" % port, library="@py",
                                  timeouts=FAST, terminators=Terminators(b"\r\n", b"\r"))
        transport.open()
        try:
            with transport.locked():
                transport.write(b"SP 42.5")
            assert transport.query(b"SP?") == b"42.50"
            assert sim.received == ["SP 42.5", "SP?"]
            sim.inject("no_reply")
            with pytest.raises(DeviceTimeout):
                transport.query(b"SP?")
        finally:
            transport.close()

"""The YAML-driven instrument simulator: model behaviour, serving, and clean shutdown."""
import socket
import threading

import pytest
import serial

from devices.simulators.instrument import InstrumentModel, InstrumentSimulator, load_definition


def model(name="temperature_controller"):
    device, definition, _ = load_definition(name)
    return InstrumentModel(device, definition)


def test_dialogues_and_properties():
    tc = model()
    assert tc.handle("*IDN?") == "CAPROTO-BRIDGE,TC-100,SIM0001,1.0"
    assert tc.handle("SP?") == "25.00"
    assert tc.handle("SP 31.5") is None          # setters are silent
    assert tc.handle("SP?") == "31.50"
    assert tc.handle("NAME oven two") is None
    assert tc.handle("NAME?") == "oven two"


def test_specs_are_enforced_and_unknown_commands_answer_err():
    tc = model()
    assert tc.handle("SP 999") == "ERR"           # above max 300
    assert tc.handle("HEAT MAYBE") == "ERR"       # not in valid list
    assert tc.handle("FOO?") == "ERR"
    assert tc.handle("SP?") == "25.00"
    assert tc.handle("HEAT?") == "OFF"


def test_readback_approaches_setpoint_while_heating_and_ambient_when_off():
    tc = model()
    tc.handle("SP 80")
    tc.advance(10)
    assert tc.get("temperature") == pytest.approx(20.0)   # heater off: stays at ambient
    tc.handle("HEAT ON")
    tc.advance(5)                                          # one time constant
    first = float(tc.handle("TEMP?"))
    assert 50 < first < 65                                 # 20 + 60 * (1 - 1/e) = 57.9
    tc.advance(50)
    assert float(tc.handle("TEMP?")) == pytest.approx(80.0, abs=0.01)
    tc.handle("HEAT OFF")
    tc.set("ambient", 15.0)
    tc.advance(60)
    assert float(tc.handle("TEMP?")) == pytest.approx(15.0, abs=0.01)


def test_reset_restores_defaults():
    tc = model()
    tc.handle("SP 55")
    tc.handle("MODE STANDBY")
    assert tc.handle("*RST") is None
    assert (tc.handle("SP?"), tc.handle("MODE?")) == ("25.00", "AUTO")


def test_multimeter_error_queue():
    dmm = model("multimeter")
    assert dmm.handle("CONF:VOLT:DC 1") is None
    assert dmm.handle("VOLT:DC:RANG?") == "+1.000000E+00"
    assert dmm.handle("CONF:VOLT:DC 3") is None            # invalid range: queued error
    assert dmm.handle("BOGUS?") is None
    assert dmm.handle("SYST:ERR?") == '-100,"Command error"'
    assert dmm.handle("SYST:ERR?") == '-113,"Undefined header"'
    assert dmm.handle("SYST:ERR?") == '+0,"No error"'


def test_unknown_definition_and_device():
    with pytest.raises(FileNotFoundError, match="no simulator definition"):
        load_definition("toaster")
    with pytest.raises(ValueError, match="no device 'toaster'"):
        load_definition("multimeter", "toaster")


def test_temperature_controller_yaml_also_loads_in_pyvisa_sim():
    pyvisa = pytest.importorskip("pyvisa")
    _, _, path = load_definition("temperature_controller")
    manager = pyvisa.ResourceManager(path + "@sim")
    try:
        resource = manager.open_resource("ASRL1::INSTR", read_termination="\r\n", write_termination="\r")
        assert resource.query("*IDN?") == "CAPROTO-BRIDGE,TC-100,SIM0001,1.0"
    finally:
        manager.close()


def _ask(port, command, eom=b"\r", end=b"\r\n"):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(command + eom)
        data = b""
        while not data.endswith(end):
            chunk = conn.recv(100)
            if not chunk:
                break
            data += chunk
        return data


def test_serves_tcp_and_logs_received_commands():
    with InstrumentSimulator("temperature_controller") as sim:
        port = sim.serve_tcp()
        assert sim.url == "socket://127.0.0.1:%d" % port
        assert _ask(port, b"SP?") == b"25.00\r\n"
        with serial.serial_for_url(sim.url, timeout=2) as port_:
            port_.write(b"SP 12\rSP?\r")                  # two commands in one packet
            assert port_.read_until(b"\r\n") == b"12.00\r\n"
        assert sim.received == ["SP?", "SP 12", "SP?"]
        assert sim.get("setpoint") == 12.0


def test_serves_a_pty():
    with InstrumentSimulator("multimeter") as sim:
        path = sim.serve_pty()
        with serial.Serial(path, timeout=2) as port:
            port.write(b"*IDN?\n")
            assert port.read_until(b"\n") == b"CAPROTO-BRIDGE,DMM-6500,SIM0002,1.0\n"


def test_client_limit_and_clean_close():
    before = set(threading.enumerate())
    sim = InstrumentSimulator("temperature_controller", max_clients=1)
    port = sim.serve_tcp()
    first = socket.create_connection(("127.0.0.1", port), timeout=2)
    first.sendall(b"SP?\r")
    assert first.recv(100) == b"25.00\r\n"
    second = socket.create_connection(("127.0.0.1", port), timeout=2)
    assert second.recv(100) == b""                        # closed at once: limit reached
    second.close()
    sim.close()
    assert first.recv(100) == b""                         # close() hangs up on clients
    first.close()
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_disconnect_fault_refuses_then_same_port_comes_back():
    with InstrumentSimulator("temperature_controller") as sim:
        port = sim.serve_tcp()
        sim.inject("disconnect")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        sim.inject("none")
        assert _ask(port, b"HEAT?") == b"OFF\r\n"


def test_unknown_fault_is_rejected():
    with InstrumentSimulator("temperature_controller") as sim:
        with pytest.raises(ValueError, match="unknown fault 'melt'"):
            sim.inject("melt")

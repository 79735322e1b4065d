"""No PV value reaches an instrument unchecked.

The shipped configs run as bridge SUBPROCESSES without --sim, pointed at
instrument simulators served by this test process (the serial controller via
``TC_PORT=socket://...``, the VISA meter via pyvisa-py's
``DMM_RESOURCE=TCPIP::127.0.0.1::PORT::SOCKET``), so the simulator's
``.received`` -- every command that reached the instrument whole -- is the
proof, read on the far side of a real socket.  Writes come from libca
(epics-base ``caput -c``, pyepics) and our ``caproto.commandline.put``.
"""
import os

import pytest

from tests.bridges.e2e import (CONFIGS, BridgeProcess, ca_alarm, ca_get, ca_put, unique_prefix,
                               wait_until)
from tests.commandline import run_epics, run_tool

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def _start(tmp_path, config, simulator, env):
    prefix = unique_prefix("I")
    proc = BridgeProcess(os.path.join(CONFIGS, config), "--prefix", prefix,
                         log_path=tmp_path / "bridge.log",
                         env=dict(env, AUTOSAVE_DIR=str(tmp_path)))
    return proc.wait_serving(), prefix


@pytest.fixture
def controller(tmp_path):
    from devices.simulators.instrument import InstrumentSimulator
    sim = InstrumentSimulator("temperature_controller")
    sim.serve_tcp()
    proc = None
    try:
        proc, prefix = _start(tmp_path, "temperature_controller.yaml", sim, {"TC_PORT": sim.url})
        tc = prefix + "TC1:"
        assert wait_until(lambda: ca_get(tc + "CONNECTED") == 1, 10), proc.log
        assert wait_until(lambda: "NAME?" in sim.received, 12), sim.received   # first scan done
        yield proc, tc, sim
        code, log = proc.terminate()
        assert code == 0 and "Traceback" not in log, log
    finally:
        if proc is not None:
            proc.kill()
        sim.close()


def _refused(result):
    text = result.stdout + result.stderr
    return "write request failed" in text or "failed" in result.stderr


def _log_lines(proc, text):
    return [line for line in proc.log.splitlines() if text in line]


@pytest.mark.parametrize("payload", ["TC-7\r\n*RST", "TC-7\r*RST", "TC-7\n*RST", "\x1b*RST"])
def test_terminator_in_a_string_never_reaches_the_controller(controller, payload):
    proc, tc, sim = controller
    assert ca_put(tc + "SP", 33.0) == 1
    assert wait_until(lambda: "SP 33.00" in sim.received, 3)
    before = len(sim.received)

    result = run_epics("caput", "-c", "-w", "5", tc + "NAME", payload)
    assert _refused(result), result.stdout + result.stderr
    status, severity, value = ca_alarm(tc + "NAME")
    assert (status, severity) == ("WRITE", 3) and value == "TC-100"
    assert wait_until(lambda: len(_log_lines(proc, "write to NAME refused")) == 1, 3), proc.log
    line = _log_lines(proc, "write to NAME refused")[0]
    assert "WARNING" in line and repr(payload) in line     # the value shown escaped, on one line
    # nothing new reached the instrument except polls; *RST never did
    new = sim.received[before:]
    assert not any("RST" in c or "TC-7" in c or c.startswith("NAME ") for c in new), new
    assert sim.get("setpoint") == 33.0 and sim.get("label") == "TC-100"


def test_string_injection_through_pyepics_and_our_put(controller):
    proc, tc, sim = controller
    before = len(sim.received)
    ca_put(tc + "NAME", "A\r\n*RST")                       # pyepics cannot report the failure...
    assert ca_alarm(tc + "NAME")[:2] == ("WRITE", 3)       # ...but the PV shows it
    result = run_tool("put", "-w", "5", "-c", tc + "NAME", "B\r\n*RST")
    assert result.returncode != 0 and "failed" in result.stderr
    assert not any("RST" in c or c.startswith("NAME") for c in sim.received[before:])
    # a clean label goes through, and clears the alarm
    result = run_tool("put", "-w", "5", "-c", tc + "NAME", "TC-200")
    assert result.returncode == 0, result.stderr
    assert "NAME TC-200" in sim.received
    assert ca_alarm(tc + "NAME") == ("NO_ALARM", 0, "TC-200")
    assert sim.get("label") == "TC-200"


def test_setpoint_past_the_drive_limit_is_clamped_before_sending(controller):
    proc, tc, sim = controller
    result = run_epics("caput", "-c", "-w", "5", tc + "SP", "500")
    assert not _refused(result), result.stdout + result.stderr
    assert ca_get(tc + "SP") == 120.0
    assert "SP 120.00" in sim.received
    assert not any(c.startswith("SP 5") for c in sim.received), sim.received
    assert sim.get("setpoint") == 120.0
    assert ca_put(tc + "SP", -40) == 1
    assert wait_until(lambda: "SP 0.00" in sim.received, 3) and sim.get("setpoint") == 0.0


def test_enum_choice_outside_the_states_is_refused(controller):
    proc, tc, sim = controller
    before = len(sim.received)
    # (state names are checked by the clients themselves; an index is not)
    result = run_epics("caput", "-c", "-w", "5", tc + "MODE", "7")
    assert _refused(result), result.stdout + result.stderr
    assert not any(c.startswith("MODE ") for c in sim.received[before:])
    result = run_epics("caput", "-c", "-w", "5", tc + "MODE", "STANDBY")
    assert not _refused(result), result.stdout + result.stderr
    assert wait_until(lambda: "MODE STANDBY" in sim.received, 3) and sim.get("mode") == "STANDBY"


def test_visa_meter_range_past_the_limit_is_rejected_not_sent(tmp_path):
    from devices.simulators.instrument import InstrumentSimulator
    sim = InstrumentSimulator("multimeter")
    sim.serve_tcp()
    proc = None
    try:
        proc, prefix = _start(tmp_path, "multimeter.yaml", sim,
                              {"DMM_RESOURCE": "TCPIP::127.0.0.1::%d::SOCKET" % sim.port})
        dmm = prefix + "DMM1:"
        assert wait_until(lambda: ca_get(dmm + "CONNECTED") == 1, 10), proc.log
        result = run_epics("caput", "-c", "-w", "5", dmm + "RANGE", "5000")
        assert _refused(result), result.stdout + result.stderr
        assert ca_alarm(dmm + "RANGE")[:2] == ("WRITE", 3)
        assert len(_log_lines(proc, "outside the drive limits")) == 1, proc.log
        assert not any(c.startswith("CONF:VOLT:DC") for c in sim.received), sim.received
        assert sim.get("range") == 10.0
        assert ca_put(dmm + "RANGE", 100) == 1
        assert wait_until(lambda: "CONF:VOLT:DC 100.000000" in sim.received, 3), sim.received
        assert sim.get("range") == 100.0
        code, log = proc.terminate()
        assert code == 0 and "Traceback" not in log, log
    finally:
        if proc is not None:
            proc.kill()
        sim.close()

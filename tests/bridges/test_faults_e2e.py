"""A device that stops answering, answers garbage or drops the connection:
its PVs go INVALID (TIMEOUT/READ/COMM) within two scan periods, the other
devices of the same IOC keep being served, and recovery clears the alarm.
Clients are libca (pyepics) over real TCP.
"""
import time

import pytest

from tests.bridges.e2e import (BridgeProcess, InProcessBridge, ca_alarm, ca_get, unique_prefix,
                               wait_alarm, wait_no_alarm, wait_until)

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

SCAN = 1.0
# Two scan periods, plus what it takes to see it: libca's round trip and our 0.1 s polling.
ALARM_WITHIN = 2 * SCAN + 0.5
SERIAL_PAIR = """
version: 1
ioc: {{prefix: "X:"}}
devices:
  - name: tc
    prefix: "TC:"
    driver: message
    transport: {{kind: serial, port: "{tc_url}"}}
    out_terminator: CR
    in_terminator: CR LF
    timeouts: {{reply: 300 ms, read: 100 ms}}
    retry: {{initial: 200 ms, max: 1 s}}
    pvs:
      TEMP: {{type: float, read: {{query: "TEMP?", format: "%f"}}, scan: {scan}, units: degC}}
      SP:
        type: float
        read: {{query: "SP?", format: "%f"}}
        write: {{command: "SP %.2f"}}
        scan: {scan}
  - name: dmm
    prefix: "DMM:"
    driver: message
    transport: {{kind: serial, port: "{dmm_url}"}}
    terminator: LF
    timeouts: {{reply: 300 ms}}
    pvs:
      VOLT: {{type: float, read: {{query: "MEAS:VOLT:DC?", format: "%f"}}, scan: {scan}}}
"""


@pytest.fixture
def serial_bridge(tmp_path):
    """Two instrument simulators served by THIS process on loopback TCP, and a
    bridge SUBPROCESS (no --sim) whose config points pyserial at them with
    ``socket://``: the faults cross a real process and socket boundary, as a
    terminal server or ser2net link would fail in the field."""
    from devices.simulators.instrument import InstrumentSimulator
    tc = InstrumentSimulator("temperature_controller")
    dmm = InstrumentSimulator("multimeter")
    tc.serve_tcp()
    dmm.serve_tcp()
    config = tmp_path / "pair.yaml"
    config.write_text(SERIAL_PAIR.format(tc_url=tc.url, dmm_url=dmm.url, scan=SCAN))
    prefix = unique_prefix("F")
    proc = BridgeProcess(config, "--prefix", prefix, log_path=tmp_path / "bridge.log")
    try:
        proc.wait_serving()
        assert wait_until(lambda: ca_get(prefix + "TC:CONNECTED") == 1
                          and ca_get(prefix + "DMM:CONNECTED") == 1, 10), proc.log
        wait_no_alarm(prefix + "TC:TEMP", 5)
        yield proc, prefix, tc, dmm
        code, log = proc.terminate()
        assert code == 0 and "Traceback" not in log, log
    finally:
        proc.kill()
        tc.close()
        dmm.close()


def _still_served(name, since):
    """The other device: no alarm and a value acquired after ``since``."""
    status, severity, _value = ca_alarm(name)
    assert (status, severity) == ("NO_ALARM", 0), (name, status, severity)
    import epics
    stamp = epics.get_pv(name).get_with_metadata(form="time", use_monitor=False, timeout=5)["timestamp"]
    assert stamp > since, (name, stamp, since)


@pytest.mark.parametrize("fault, statuses", [
    ("no_reply", {"TIMEOUT"}),
    ("garbage", {"READ"}),
    ("disconnect", {"COMM", "TIMEOUT"}),
])
def test_serial_instrument_fault_alarms_and_recovers(serial_bridge, fault, statuses):
    proc, p, tc, _dmm = serial_bridge
    errors_before = ca_get(p + "TC:ERR_CNT")
    injected = time.monotonic()
    tc.inject(fault)
    wait_alarm(p + "TC:TEMP", statuses, ALARM_WITHIN)
    assert time.monotonic() - injected <= ALARM_WITHIN
    wait_alarm(p + "TC:SP", statuses, ALARM_WITHIN)
    # the value shown is the last good one, still INVALID, never re-stamped as fresh
    assert ca_alarm(p + "TC:TEMP")[2] == pytest.approx(20.0, abs=0.01)
    assert ca_get(p + "TC:ERR_CNT") > errors_before
    assert ca_get(p + "TC:LAST_ERR", as_string=True) != ""
    if fault == "disconnect":
        assert wait_until(lambda: ca_get(p + "TC:CONNECTED") == 0, ALARM_WITHIN)
        proc.wait_log("tc: connection lost")
    _still_served(p + "DMM:VOLT", time.time() - SCAN - 0.5)
    assert ca_get(p + "DMM:CONNECTED") == 1

    tc.inject("none")
    wait_no_alarm(p + "TC:TEMP", 5.0)
    wait_no_alarm(p + "TC:SP", 5.0)
    assert ca_get(p + "TC:CONNECTED") == 1
    if fault == "disconnect":
        proc.wait_log("tc: recovered")


def test_serial_slow_reply_times_out_then_recovers(serial_bridge):
    """A reply later than the 300 ms reply timeout counts as no reply."""
    _proc, p, tc, _dmm = serial_bridge
    tc.inject("slow", delay=1.0)
    wait_alarm(p + "TC:TEMP", {"TIMEOUT", "READ"}, ALARM_WITHIN)
    tc.inject("none")
    wait_no_alarm(p + "TC:TEMP", 5.0)


# -- every transport in one IOC, in-process --------------------------------------

MIXED = """
version: 1
ioc: {prefix: "X:"}
devices:
  - name: dmm
    prefix: "DMM:"
    driver: message
    transport: {kind: visa, resource: "USB0::0x05E6::0x6500::SIM0002::INSTR"}
    terminator: LF
    timeouts: {reply: 300 ms}
    retry: {initial: 200 ms, max: 1 s}
    sim: {definitions: multimeter}
    pvs:
      VOLT: {type: float, read: {query: "MEAS:VOLT:DC?", format: "%f"}, scan: 1 s}
  - name: dht
    prefix: "DHT:"
    driver: dht22
    retry: {initial: 500 ms, max: 2 s}
    read_retries: 0     # the default retries a failed read once, 2 s later (one more period)
    sim: {temperature: 22.0, humidity: 45.0}
    pvs:
      TEMP: {type: float, read: temperature_raw, scan: 2 s}
  - name: gpio
    prefix: "GPIO:"
    driver: gpio
    retry: {initial: 200 ms, max: 1 s}
    pvs:
      BUTTON: {type: bool, enum: [Released, Pressed], read: {device: button, pin: 17}, scan: 500 ms}
"""
SCANS = {"dmm": 1.0, "dht": 2.0, "gpio": 0.5}
PV = {"dmm": "DMM:VOLT", "dht": "DHT:TEMP", "gpio": "GPIO:BUTTON"}


@pytest.fixture
def mixed_bridge(tmp_path):
    """VISA (pyvisa-sim), DHT22 (fake IIO sysfs) and GPIO (gpiozero mock pins)
    in one IOC, run IN this process: those simulators live inside the driver
    (a pyvisa-sim session wrapper, the sysfs opener, MockFactory pins), so the
    test reaches them through ``runner.driver.simulator``.  Clients still
    connect over real CA sockets."""
    config = tmp_path / "mixed.yaml"
    config.write_text(MIXED)
    bridge = InProcessBridge(config, prefix=unique_prefix("M"))
    with bridge:
        p = bridge.prefix
        assert wait_until(lambda: all(ca_get(p + d + ":CONNECTED") == 1
                                      for d in ("DMM", "DHT", "GPIO")), 10)
        for name in PV.values():
            wait_no_alarm(p + name, 5)
        yield bridge
    assert all(runner._closed for runner in bridge.ioc.runners)


@pytest.mark.parametrize("device, fault, statuses", [
    ("dmm", "no_reply", {"TIMEOUT"}),
    ("dmm", "garbage", {"READ"}),
    ("dmm", "disconnect", {"COMM"}),
    ("dht", "eio", {"READ"}),
    ("dht", "etimedout", {"TIMEOUT"}),
    ("dht", "disconnect", {"COMM"}),
    ("gpio", "disconnect", {"COMM"}),
])
def test_each_transport_alarms_others_keep_serving(mixed_bridge, device, fault, statuses):
    p = mixed_bridge.prefix
    others = [d for d in PV if d != device]
    mixed_bridge.simulator(device).inject(fault)
    injected = time.monotonic()
    wait_alarm(p + PV[device], statuses, 2 * SCANS[device] + 0.5)
    assert time.monotonic() - injected <= 2 * SCANS[device] + 0.5
    for other in others:
        _still_served(p + PV[other], time.time() - 2 * SCANS[other] - 0.5)
    mixed_bridge.simulator(device).inject("none")
    wait_no_alarm(p + PV[device], 3 * SCANS[device] + 3.0)
    assert ca_get(p + PV[device].split(":")[0] + ":CONNECTED") == 1


def test_sigterm_while_a_device_hangs_still_exits_cleanly(serial_bridge):
    """SIGTERM while an exchange waits on a silent instrument: exit 0, hardware closed."""
    proc, p, tc, _dmm = serial_bridge
    tc.inject("slow", delay=30.0)
    wait_alarm(p + "TC:TEMP", {"TIMEOUT", "READ"}, ALARM_WITHIN)
    code, log = proc.terminate(timeout=15.0)
    assert code == 0 and "devices closed" in log and "Traceback" not in log, log
    tc.inject("none")

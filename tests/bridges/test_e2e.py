"""Every shipped config, served by ``python -m bridges CONFIG --sim`` as a
subprocess, read and written by libca (pyepics, caget/caput) and by our
``caproto.commandline`` tools, exactly as a user would.
"""
import os
import re
import time

import pytest

from tests.bridges.e2e import (CONFIGS, BridgeProcess, ca_alarm, ca_get, ca_info, ca_put,
                               run_bridge, unique_prefix, wait_until)
from tests.commandline import run_epics, run_tool

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def config(name):
    return os.path.join(CONFIGS, name)


@pytest.fixture
def bridge(tmp_path):
    """start(config_name, *args) -> (BridgeProcess, prefix); killed (by PID) if a test fails."""
    started = []

    def start(name, *args, env=None, tag="B"):
        prefix = unique_prefix(tag)
        proc = BridgeProcess(config(name), "--sim", "--prefix", prefix, *args,
                             log_path=tmp_path / ("bridge-%d.log" % len(started)),
                             env=dict({"AUTOSAVE_DIR": str(tmp_path)}, **(env or {})))
        started.append(proc)
        proc.wait_serving()
        return proc, prefix
    yield start
    for proc in started:
        proc.kill()


def assert_clean_exit(proc):
    code, log = proc.terminate()
    assert code == 0, log
    assert "devices closed" in log, log
    assert "Traceback" not in log, log
    return log


def wait_connected(name, timeout=10.0):
    assert wait_until(lambda: ca_get(name) == 1, timeout), "%s never became 1" % name


def tool_value(*args):
    """Our caproto-get, value column of its one output line."""
    result = run_tool("get", "-w", "5", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.split(None, 1)[1].strip()


def monitor_events(name, seconds):
    """camonitor-style lines from our caproto-monitor over a bounded window."""
    result = run_tool("monitor", "-w", "5", "--duration", str(seconds), name, timeout=seconds + 20)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(name)]


def test_dht22_serves_values_metadata_and_health(bridge):
    proc, p = bridge("dht22.yaml")
    wait_connected(p + "dht:CONNECTED")
    assert wait_until(lambda: ca_alarm(p + "dht:TEMP")[1] == 0, 10), ca_alarm(p + "dht:TEMP")
    temp = ca_info(p + "dht:TEMP")
    assert 20.0 < temp["value"] < 24.0          # the simulated room is 22 +- 0.5 degC
    assert temp["units"] == "degC" and temp["precision"] == 1
    assert (temp["lower_disp_limit"], temp["upper_disp_limit"]) == (-40, 80)
    assert (temp["lower_alarm_limit"], temp["lower_warning_limit"],
            temp["upper_warning_limit"], temp["upper_alarm_limit"]) == (10, 15, 30, 35)
    # the timestamp is when the sample was taken: at most one scan period old
    assert abs(time.time() - temp["timestamp"]) < 4.0
    humidity = ca_info(p + "dht:HUMIDITY")
    assert humidity["units"] == "%RH" and 40 < humidity["value"] < 50
    assert ca_get(p + "dht:ERR_CNT") == 0
    assert ca_get(p + "dht:LAST_ERR", as_string=True) == ""
    assert ca_get(p + "dht:CONNECTED", as_string=True) == "Yes"
    assert abs(time.time() - ca_get(p + "dht:LAST_UPDATE")) < 4.0
    # our own client reads the same things
    assert tool_value(p + "dht:CONNECTED") == "Yes"
    assert abs(float(tool_value(p + "dht:TEMP")) - ca_get(p + "dht:TEMP")) < 0.5
    assert "Units:            degC" in run_tool("get", "-w", "5", "-d", "CTRL_DOUBLE",
                                                p + "dht:TEMP").stdout
    assert_clean_exit(proc)


def time_monitors(names, seconds):
    """``{name: [(timestamp, value), ...]}``: libca DBR_TIME monitors on `names`,
    subscribed one after the other from this thread, collected for `seconds`.

    Not ``epics.PV(auto_monitor=True)``: that subscribes from libca's connection
    callback, where pyepics cannot flush the request, and libca may then keep
    the EventAdd unsent until the program next calls into CA -- no event at
    all, not even the first (about 1 run in 4 against a softIoc as well as
    ours). ``ca.create_subscription`` here sends each request as it is made.
    """
    from epics import ca
    events = {name: [] for name in names}

    def on_event(pvname=None, value=None, timestamp=None, **kw):
        events[pvname].append((timestamp, value))
    chids, subscriptions = [], []
    try:
        for name in names:
            chids.append(ca.create_channel(name, connect=False, auto_cb=False))
            assert ca.connect_channel(chids[-1], timeout=5), "libca could not connect to %s" % name
            subscriptions.append(ca.create_subscription(chids[-1], use_time=True,
                                                        callback=on_event))
        time.sleep(seconds)
    finally:
        for _callback, _argument, event_id in subscriptions:
            ca.clear_subscription(event_id)
        for chid in chids:
            ca.clear_channel(chid)
        ca.flush_io()
    return events


def test_dht22_monitors_fire_at_the_scan_rate(bridge):
    """The sensor is read every 2 s: LAST_UPDATE (the newest acquisition time)
    posts a monitor per read, never faster; TEMP_RAW shows its value at once,
    then posts only on change, at most once per read."""
    proc, p = bridge("dht22.yaml")
    wait_connected(p + "dht:CONNECTED")
    events = time_monitors([p + "dht:LAST_UPDATE", p + "dht:TEMP_RAW"], 9.0)
    updates = events[p + "dht:LAST_UPDATE"]
    assert 3 <= len(updates) <= 9.0 / 2.0 + 2, updates
    acquired = [value for _stamp, value in updates]
    assert all(later - earlier > 1.9 for earlier, later in zip(acquired, acquired[1:])), acquired
    raw = events[p + "dht:TEMP_RAW"]
    assert 1 <= len(raw) <= 9.0 / 2.0 + 2, raw      # the first event comes at once
    assert all(value != previous for (_, previous), (_, value) in zip(raw, raw[1:])), raw
    # each change is a new sample, stamped when it was taken (the first event
    # may still be the value from before the first read)
    stamps = [stamp for stamp, _value in raw[1:]]
    assert all(later - earlier > 1.9 for earlier, later in zip(stamps, stamps[1:])), raw
    assert_clean_exit(proc)


def test_temperature_controller_values_flow_both_ways(bridge):
    """A setpoint put reaches the simulated controller: its readback and the
    evolving temperature follow; the heater's enum strings are the config's."""
    proc, p = bridge("temperature_controller.yaml")
    tc = p + "TC1:"
    wait_connected(tc + "CONNECTED")
    assert wait_until(lambda: ca_get(tc + "SP") == 25.0, 5)   # init_from_device
    sp = ca_info(tc + "SP")
    assert sp["units"] == "degC" and sp["precision"] == 2
    assert (sp["lower_ctrl_limit"], sp["upper_ctrl_limit"]) == (0, 120)
    heater = ca_info(tc + "HEATER")
    assert list(heater["enum_strs"]) == ["OFF", "ON"]
    assert list(ca_info(tc + "MODE")["enum_strs"]) == ["AUTO", "MANUAL", "STANDBY"]
    assert ca_get(tc + "TEMP") == pytest.approx(20.0, abs=0.01)

    assert ca_put(tc + "SP", 60.5) == 1                        # libca
    result = run_tool("put", "-w", "5", "-c", tc + "HEATER", "ON")   # ours
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: ca_get(tc + "SP_RBV") == 60.5, 5), ca_get(tc + "SP_RBV")
    assert ca_get(tc + "HEATER", as_string=True) == "ON"
    assert tool_value(tc + "SP") == "60.5"
    # the controller heats toward the setpoint (time constant 5 s)
    assert wait_until(lambda: ca_get(tc + "TEMP") > 25.0, 8), ca_get(tc + "TEMP")

    # monitors fire at the 1 s scan rate while the temperature moves
    lines = monitor_events(tc + "TEMP", 5)
    assert 4 <= len(lines) <= 7, lines          # 5 scans (+ the initial value, + 1 of slack)
    values = [float(line.split()[-1]) for line in lines]
    assert values == sorted(values) and len(set(values)) == len(values), values   # heating up
    result = run_epics("caget", "-d", "DBR_CTRL_DOUBLE", tc + "TEMP")
    assert "Units:            degC" in result.stdout
    log = assert_clean_exit(proc)
    assert "tc: connected" in log


def test_temperature_controller_clamps_a_setpoint_past_the_drive_limit(bridge):
    proc, p = bridge("temperature_controller.yaml")
    tc = p + "TC1:"
    wait_connected(tc + "CONNECTED")
    result = run_tool("put", "-w", "5", "-c", tc + "SP", "500")
    assert result.returncode == 0, result.stderr
    assert ca_get(tc + "SP") == 120.0
    assert wait_until(lambda: ca_get(tc + "SP_RBV") == 120.0, 5), ca_get(tc + "SP_RBV")
    assert_clean_exit(proc)


def test_multimeter_over_visa(bridge):
    proc, p = bridge("multimeter.yaml")
    dmm = p + "DMM1:"
    wait_connected(dmm + "CONNECTED")
    assert wait_until(lambda: ca_alarm(dmm + "VOLT")[1] == 0, 5)
    volt = ca_info(dmm + "VOLT")
    assert volt["value"] == pytest.approx(1.234567) and volt["units"] == "V"
    assert volt["precision"] == 6
    assert wait_until(lambda: ca_get(dmm + "IDN", as_string=True) ==
                      "CAPROTO-BRIDGE,DMM-6500,SIM0002,1.0", 5)
    assert ca_get(dmm + "ERR") == 0
    # RANGE rejects values past its drive limits (the put fails, WRITE alarm);
    # NPLC clamps them
    assert ca_put(dmm + "RANGE", 100.0) == 1
    assert ca_get(dmm + "RANGE") == 100.0
    result = run_epics("caput", "-c", "-w", "5", dmm + "RANGE", "5000")
    assert "write request failed" in result.stdout + result.stderr, result.stdout + result.stderr
    assert ca_alarm(dmm + "RANGE") == ("WRITE", 3, 100.0)
    proc.wait_log("RANGE: 5000.0 is outside the drive limits [0.1, 1000]")
    result = run_tool("put", "-w", "5", "-c", dmm + "RANGE", "5000")
    assert result.returncode != 0 and "failed" in result.stderr
    assert ca_put(dmm + "NPLC", 500.0) == 1
    assert ca_get(dmm + "NPLC") == 100.0
    # the meter itself reports the range it was sent at the next 5 s scan,
    # which also clears the WRITE alarm
    sent_at = ca_info(dmm + "RANGE")["timestamp"]
    assert wait_until(lambda: ca_info(dmm + "RANGE")["timestamp"] > sent_at + 0.5, 7)
    assert ca_alarm(dmm + "RANGE") == ("NO_ALARM", 0, 100.0)
    assert float(tool_value("-f", "6", dmm + "VOLT")) == pytest.approx(1.234567)
    assert_clean_exit(proc)


def test_gpio_demo(bridge):
    proc, p = bridge("gpio_demo.yaml")
    g = p + "GPIO:"
    wait_connected(g + "CONNECTED")
    assert list(ca_info(g + "BUTTON")["enum_strs"]) == ["Released", "Pressed"]
    assert ca_get(g + "BUTTON", as_string=True) == "Released"
    distance = ca_info(g + "DISTANCE")
    assert distance["units"] == "m" and distance["precision"] == 3
    assert wait_until(lambda: abs(ca_get(g + "DISTANCE") - 0.42) < 0.05, 5), ca_get(g + "DISTANCE")
    result = run_tool("put", "-w", "5", "-c", g + "LED", "On")
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: ca_get(g + "LED", as_string=True) == "On", 3)
    assert ca_put(g + "BRIGHTNESS", 2.5) == 1                 # clamped to 0..1
    assert ca_get(g + "BRIGHTNESS") == 1.0
    assert_clean_exit(proc)


@pytest.mark.parametrize("library", ["curio", "trio"])
def test_curio_and_trio_serve_the_same_pvs(bridge, library):
    """Same PVs, and SIGTERM stops the server cleanly (no task crash logged)."""
    proc, p = bridge("gpio_demo.yaml", "--async-lib", library)
    g = p + "GPIO:"
    wait_connected(g + "CONNECTED")
    assert ca_put(g + "LED", 1) == 1
    assert wait_until(lambda: tool_value(g + "LED") == "On", 5)
    assert ca_put(g + "BRIGHTNESS", -3) == 1
    assert ca_get(g + "BRIGHTNESS") == 0.0
    assert wait_until(lambda: abs(ca_get(g + "DISTANCE") - 0.42) < 0.05, 5)
    log = assert_clean_exit(proc)
    assert f"with {library}" in log and f"({library})" in log


def test_missing_hardware_is_one_clear_line(tmp_path):
    """Without --sim, a serial port that is not there: exit 1 and one line saying how to simulate."""
    result = run_bridge(config("temperature_controller.yaml"),
                        env={"TC_PORT": str(tmp_path / "ttyUSB-absent"),
                             "AUTOSAVE_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ttyUSB-absent" in lines[0] and "--sim" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_iio_sensor_without_sim(tmp_path):
    result = run_bridge(config("dht22.yaml"))
    if result.returncode == 0:
        pytest.skip("this machine has a DHT IIO device")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--sim" in lines[0] and "dht" in lines[0], result.stderr


def test_sigint_is_as_clean_as_sigterm(bridge):
    import signal
    proc, p = bridge("gpio_demo.yaml")
    wait_connected(p + "GPIO:CONNECTED")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(15) == 0, proc.log
    assert "devices closed" in proc.log and "Traceback" not in proc.log


def test_list_pvs_matches_what_is_served(bridge):
    result = run_bridge(config("multimeter.yaml"), "--list-pvs", "--prefix", "LISTED:")
    names = result.stdout.split()
    assert "LISTED:DMM1:VOLT" in names and "LISTED:DMM1:LAST_ERR" in names
    proc, p = bridge("multimeter.yaml")
    for name in names:
        served = name.replace("LISTED:", p, 1)
        assert ca_alarm(served) is not None
    assert re.search(r"serving \d+ PVs", proc.log)
    assert_clean_exit(proc)

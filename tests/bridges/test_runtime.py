"""DeviceRunner/DeviceMachine: alarms, staleness, back-off, writes, hard timeouts, real sim drivers."""
import logging
import threading
import time

import pytest

from bridges.loader import parse_config
from bridges.runtime import DeviceRunner, create_runner
from bridges.values import WriteRejected
from devices.errors import DeviceDisconnected, DeviceReplyError, DeviceTimeout, UnsafeValueError
from tests.bridges.helpers import Clock, Recorder, ScriptedDriver, scripted_registry

CONFIG = """
version: 1
ioc: {prefix: "T:"}
devices:
  - name: dev
    driver: scripted
    stale_after: 3
    retry: {initial: 1 s, max: 4 s, call_timeout: 200 ms}
    pvs:
      temp: {type: float, scan: 1 s, read: temp, alarm: {high: 50, hihi: 80, hyst: 2}}
      sp:   {type: float, write: sp, drive_limits: [0, 100]}
      sp_strict: {type: float, write: sp2, drive_limits: [0, 100], on_drive_limit: reject}
      mode: {type: enum, enum: ["OFF", HEAT, COOL], write: mode}
      label: {type: string, write: label}
"""


def make_runner(text=CONFIG, settings_extra=None):
    config = parse_config(text, registry=scripted_registry())
    device = config.devices[0]
    driver = ScriptedDriver(device.settings)
    clock = Clock()
    driver.clock = clock
    rec = Recorder()
    runner = DeviceRunner(device, driver, rec, clock=clock, call_timeout=None)
    return runner, driver, clock, rec


def run_until(runner, clock, t_end, max_steps=1000):
    """Step the runner, advancing the fake clock to each next due time, until ``t_end``."""
    for _ in range(max_steps):
        delay = runner.step()
        if delay is None or clock.t + delay > t_end:
            clock.t = t_end
            runner.step()
            return
        clock.t += delay
    raise AssertionError("runner did not settle")


def test_pv_is_udf_invalid_before_first_good_read():
    runner, driver, clock, rec = make_runner()
    assert rec.last["temp"] == (None, "UDF", "INVALID", None)
    assert rec.last["CONNECTED"][0] == 0
    driver.values["temp"] = DeviceTimeout("no reply")
    run_until(runner, clock, clock.t + 0.5)
    # a failing first read leaves the PV UDF: there is no value to put an alarm on
    assert rec.last["temp"][:3] == (None, "UDF", "INVALID")
    driver.values["temp"] = 21.5
    run_until(runner, clock, clock.t + 1.0)
    assert rec.last["temp"] == (21.5, "NO_ALARM", "NO_ALARM", driver.read_times[-1])


def test_read_failure_keeps_value_and_acquisition_time():
    runner, driver, clock, rec = make_runner()
    driver.values["temp"] = 20.0
    runner.step()   # open
    runner.step()   # read
    acquired = clock.t
    driver.values["temp"] = DeviceReplyError("garbage: '#!?'")
    run_until(runner, clock, clock.t + 1.0)
    assert rec.last["temp"] == (20.0, "READ", "INVALID", acquired)
    assert rec.last["ERR_CNT"][0] == 1
    assert "garbage" in rec.last["LAST_ERR"][0]


def test_stale_after_n_missed_periods_then_fresh_clears():
    runner, driver, clock, rec = make_runner()
    driver.values["temp"] = 20.0
    start = clock.t
    driver.stamps["temp"] = start          # the driver keeps handing back one old sample
    run_until(runner, clock, start + 2.9)   # not yet stale_after (3) periods old: fresh
    assert rec.last["temp"] == (20.0, "NO_ALARM", "NO_ALARM", start)
    run_until(runner, clock, start + 3.0)
    assert rec.last["temp"] == (20.0, "TIMEOUT", "INVALID", start)
    driver.stamps.clear()
    run_until(runner, clock, start + 4.5)
    assert rec.last["temp"][1:3] == ("NO_ALARM", "NO_ALARM")
    assert rec.last["temp"][3] > start


def test_open_retries_with_exponential_backoff_capped_at_max():
    runner, driver, clock, rec = make_runner()
    driver.open_error = DeviceDisconnected("no such port /dev/ttyUSB0")
    start = clock.t
    run_until(runner, clock, start + 20)
    offsets = [t - start for t in driver.open_times]
    assert offsets == [0, 1, 3, 7, 11, 15, 19]   # 1, 2, 4, then max 4 s
    assert rec.last["CONNECTED"][:3] == (0, "COMM", "MAJOR")
    assert rec.last["ERR_CNT"][0] == 7


def test_recovery_clears_alarms_and_logs_each_state_change_once(caplog):
    caplog.set_level(logging.INFO, logger="bridges.runtime")
    runner, driver, clock, rec = make_runner()
    driver.values["temp"] = 20.0
    run_until(runner, clock, clock.t + 0.5)
    assert rec.last["CONNECTED"][0] == 1
    driver.values["temp"] = DeviceDisconnected("socket closed by peer")
    driver.open_error = DeviceDisconnected("connection refused")
    run_until(runner, clock, clock.t + 10)
    assert rec.last["temp"][1:3] == ("COMM", "INVALID")
    assert rec.last["CONNECTED"][0] == 0
    driver.open_error = None
    driver.values["temp"] = 22.0
    run_until(runner, clock, clock.t + 5)
    assert rec.last["temp"][:3] == (22.0, "NO_ALARM", "NO_ALARM")
    assert rec.last["CONNECTED"][0] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connected" in m and "dev" in m for m in messages if "recovered" not in m) == 1
    assert sum("connection lost" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


def test_timeouts_in_a_row_force_a_reconnect():
    runner, driver, clock, rec = make_runner()
    driver.values["temp"] = 20.0
    run_until(runner, clock, clock.t + 0.5)
    driver.values["temp"] = DeviceTimeout("no reply within 1 s")
    run_until(runner, clock, clock.t + 3.0)
    assert rec.last["temp"][1:3] == ("TIMEOUT", "INVALID")
    assert len(driver.open_times) == 1
    run_until(runner, clock, clock.t + 3)
    assert len(driver.open_times) >= 2


def test_min_period_of_driver_wins_over_faster_scan():
    text = CONFIG.replace("driver: scripted", "driver: scripted\n    min_period: 2.5")
    runner, driver, clock, rec = make_runner(text)
    driver.min_period = 2.5
    runner = DeviceRunner(runner.device, driver, rec, clock=clock, call_timeout=None)
    driver.values["temp"] = 20.0
    start = clock.t
    run_until(runner, clock, start + 10)
    gaps = [b - a for a, b in zip(driver.read_times, driver.read_times[1:])]
    assert gaps and all(g == pytest.approx(2.5) for g in gaps)


def test_alarm_limits_with_hysteresis():
    runner, driver, clock, rec = make_runner()
    for value, expected in [(40.0, ("NO_ALARM", "NO_ALARM")), (55.0, ("HIGH", "MINOR")),
                            (49.0, ("HIGH", "MINOR")),       # within HYST 2 of HIGH 50
                            (47.0, ("NO_ALARM", "NO_ALARM")), (90.0, ("HIHI", "MAJOR"))]:
        driver.values["temp"] = value
        run_until(runner, clock, clock.t + 1.0)
        assert rec.last["temp"][:3] == (value,) + expected


def connected_runner():
    runner, driver, clock, rec = make_runner()
    driver.values["temp"] = 20.0
    run_until(runner, clock, clock.t + 0.5)
    return runner, driver, clock, rec


def test_write_past_drive_limit_is_clamped():
    runner, driver, clock, rec = connected_runner()
    future = runner.submit_write("sp", 150)
    runner.step()
    assert future.result(0) == 100.0
    assert driver.written == [("sp", 100.0)]
    assert rec.last["sp"][:3] == (100.0, "NO_ALARM", "NO_ALARM")


def test_write_past_drive_limit_is_rejected_when_configured(caplog):
    runner, driver, clock, rec = connected_runner()
    future = runner.submit_write("sp_strict", 150)
    runner.step()
    with pytest.raises(WriteRejected, match="drive limits"):
        future.result(0)
    assert driver.written == []
    assert rec.last["sp_strict"][1:3] == ("UDF", "INVALID")   # never had a value
    runner.submit_write("sp_strict", 10)
    runner.step()
    runner.submit_write("sp_strict", 1000)
    runner.step()
    assert driver.written == [("sp2", 10.0)]
    assert rec.last["sp_strict"][:3] == (10.0, "WRITE", "INVALID")
    assert any("sp_strict" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_enum_write_by_name_or_index_and_bad_state_refused():
    runner, driver, clock, rec = connected_runner()
    futures = [runner.submit_write("mode", "COOL"), runner.submit_write("mode", 1),
               runner.submit_write("mode", "WARM"), runner.submit_write("mode", 7)]
    for _ in futures:
        runner.step()
    assert [f.result(0) for f in futures[:2]] == [2, 1]
    for f in futures[2:]:
        with pytest.raises(WriteRejected):
            f.result(0)
    assert driver.written == [("mode", 2), ("mode", 1)]


def test_string_with_terminator_never_reaches_driver(caplog):
    runner, driver, clock, rec = connected_runner()
    future = runner.submit_write("label", "ok\r\n*RST")
    runner.step()
    with pytest.raises(WriteRejected, match="control characters"):
        future.result(0)
    assert driver.written == []
    assert any("label" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_driver_unsafe_value_error_gives_write_alarm_and_log(caplog):
    runner, driver, clock, rec = connected_runner()
    runner.submit_write("label", "first")
    runner.step()
    future = runner.submit_write("label", "a*b")
    runner.step()
    with pytest.raises(UnsafeValueError):
        future.result(0)
    assert driver.written == [("label", "first")]
    assert rec.last["label"][:3] == ("first", "WRITE", "INVALID")
    assert any("a*b" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_write_while_disconnected_is_refused_with_comm():
    runner, driver, clock, rec = make_runner()
    driver.open_error = DeviceDisconnected("gone")
    runner.step()
    future = runner.submit_write("sp", 5)
    runner.step()
    with pytest.raises(WriteRejected) as info:
        future.result(0)
    assert info.value.alarm_status == "COMM"
    assert driver.written == []


def test_close_closes_hardware_and_fails_queued_writes():
    runner, driver, clock, rec = connected_runner()
    future = runner.submit_write("sp", 5)
    runner.close()
    assert driver.closed >= 1
    with pytest.raises(WriteRejected):
        future.result(0)
    with pytest.raises(WriteRejected):
        runner.submit_write("sp", 6).result(0)


RESTORE = CONFIG.replace("sp:   {type: float, write: sp, drive_limits: [0, 100]}",
                         "sp:   {type: float, write: sp, drive_limits: [0, 100], autosave: true}\n"
                         "      sp_init: {type: float, write: spi, read: spi, init_from_device: true,"
                         " autosave: true}")


def test_autosave_restore_is_shown_then_sent_once_connected():
    runner, driver, clock, rec = make_runner(RESTORE)
    driver.values.update(temp=20.0, spi=7.5)
    assert runner.restore("sp", 150) is True          # clamped like any write
    assert runner.restore("sp_init", 3.0) is True
    assert runner.restore("mode", "WARM") is False    # not a state: ignored, logged
    assert rec.last["sp"][:3] == (100.0, "NO_ALARM", "NO_ALARM")
    assert rec.last["sp_init"][0] == 3.0
    assert driver.written == []                       # nothing sent before connecting
    run_until(runner, clock, clock.t + 0.5)
    assert driver.written == [("sp", 100.0)]          # init_from_device: the device wins
    assert rec.last["sp_init"][:3] == (7.5, "NO_ALARM", "NO_ALARM")
    run_until(runner, clock, clock.t + 5)
    assert driver.written == [("sp", 100.0)]          # sent once


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_hung_call_hits_hard_timeout_and_device_recovers_after_it_returns():
    config = parse_config(CONFIG, registry=scripted_registry())
    device = config.devices[0]
    driver = ScriptedDriver(device.settings)
    driver.values["temp"] = 20.0
    driver.clock = time.time
    rec = Recorder()
    driver.block = threading.Event()
    runner = DeviceRunner(device, driver, rec).start()
    try:
        assert wait_for(lambda: rec.last["ERR_CNT"][0] >= 1)
        assert "hard timeout" in rec.last["LAST_ERR"][0]
        assert runner.submit_write("sp", 1).exception(10).alarm_status == "TIMEOUT"
        assert driver.written == []
        driver.block.set()
        driver.block = None
        assert wait_for(lambda: rec.last["temp"][:3] == (20.0, "NO_ALARM", "NO_ALARM"))
        assert len(driver.open_times) == 2   # reconnected only after the stuck call returned
    finally:
        runner.close()
    assert driver.closed >= 1


DHT22_SIM = """
version: 1
ioc: {prefix: "SIM:"}
devices:
  - name: dht
    driver: dht22
    pvs:
      T: {type: float, units: degC, scan: 2 s, read: temperature}
      RH: {type: float, units: "%RH", scan: 2 s, read: humidity}
"""


def test_real_dht22_driver_in_sim_mode_publishes_values():
    pytest.importorskip("devices.drivers.dht22")
    config = parse_config(DHT22_SIM, sim=True)
    rec = Recorder()
    runner = create_runner(config.devices[0], rec, sim=True, index=0).start()
    try:
        assert wait_for(lambda: rec.last.get("T", (None,))[0] is not None
                        and rec.last.get("RH", (None,))[0] is not None)
        value, status, severity, stamp = rec.last["T"]
        assert -40 <= value <= 80 and (status, severity) == ("NO_ALARM", "NO_ALARM")
        assert 0 <= rec.last["RH"][0] <= 100
        assert abs(stamp - time.time()) < 60
        assert rec.last["CONNECTED"][0] == 1
    finally:
        runner.close()


CONFIGS_DIR = __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "..", "configs")


def start_shipped(name, monkeypatch):
    """A started runner for the first device of configs/<name>, simulated."""
    for macro in ("P", "TC_PORT", "DMM_RESOURCE", "AUTOSAVE_DIR"):
        monkeypatch.delenv(macro, raising=False)
    from bridges.loader import load_config
    config = load_config(__import__("os").path.join(CONFIGS_DIR, name), sim=True)
    rec = Recorder()
    return create_runner(config.devices[0], rec, sim=True, index=0).start(), rec


def status(rec, name):
    return rec.last.get(name, (None, None, None, None))[1:3]


@pytest.mark.parametrize("fault, alarm", [("no_reply", "TIMEOUT"), ("garbage", "READ"),
                                          ("disconnect", "COMM")])
def test_serial_controller_faults_alarm_and_recover(fault, alarm, monkeypatch):
    pytest.importorskip("devices.drivers.message")
    runner, rec = start_shipped("temperature_controller.yaml", monkeypatch)
    try:
        assert wait_for(lambda: status(rec, "TEMP") == ("NO_ALARM", "NO_ALARM"))
        good_value, _s, _v, good_stamp = rec.last["TEMP"]
        runner.driver.simulator.inject(fault)
        assert wait_for(lambda: status(rec, "TEMP") == (alarm, "INVALID")), rec.last["TEMP"]
        value, _s, _v, stamp = rec.last["TEMP"]
        assert stamp is not None and stamp >= good_stamp   # the last good acquisition, not "now"
        assert rec.last["ERR_CNT"][0] >= 1 and rec.last["LAST_ERR"][0]
        runner.driver.simulator.inject("none")
        assert wait_for(lambda: status(rec, "TEMP") == ("NO_ALARM", "NO_ALARM"), 20), rec.last["TEMP"]
        assert rec.last["CONNECTED"][0] == 1
    finally:
        runner.close()


def test_serial_controller_injection_and_limits_never_reach_instrument(monkeypatch):
    pytest.importorskip("devices.drivers.message")
    runner, rec = start_shipped("temperature_controller.yaml", monkeypatch)
    try:
        assert wait_for(lambda: rec.last["CONNECTED"][0] == 1)
        received = runner.driver.simulator.received
        with pytest.raises(WriteRejected):
            runner.submit_write("NAME", "x\r\n*RST").result(10)
        with pytest.raises(WriteRejected):
            runner.submit_write("NAME", "x\n*RST").result(10)
        assert runner.submit_write("SP", 500).result(10) == 120.0
        assert runner.submit_write("HEATER", "ON").result(10) == 1
        assert wait_for(lambda: "HEAT ON" in received)
        assert "SP 120.00" in received
        assert not any("RST" in command for command in received)
        assert not any("500" in command for command in received)
        assert wait_for(lambda: rec.last["SP_RBV"][0] == 120.0)
    finally:
        runner.close()


def test_visa_multimeter_in_sim_reads_and_rejects_out_of_range(monkeypatch):
    pytest.importorskip("devices.drivers.message")
    runner, rec = start_shipped("multimeter.yaml", monkeypatch)
    try:
        assert wait_for(lambda: status(rec, "VOLT") == ("NO_ALARM", "NO_ALARM"))
        assert rec.last["VOLT"][0] == pytest.approx(1.234567)
        assert rec.last["IDN"][0].startswith("CAPROTO-BRIDGE,DMM")
        with pytest.raises(WriteRejected, match="drive limits"):
            runner.submit_write("RANGE", 5000).result(10)
        assert runner.submit_write("RANGE", 100).result(10) == 100.0
        assert wait_for(lambda: rec.last["RANGE"][0] == 100.0)
    finally:
        runner.close()


def test_gpio_demo_in_sim_led_round_trip(monkeypatch):
    pytest.importorskip("devices.drivers.gpio")
    runner, rec = start_shipped("gpio_demo.yaml", monkeypatch)
    try:
        assert wait_for(lambda: status(rec, "DISTANCE") == ("NO_ALARM", "NO_ALARM"))
        assert 0 <= rec.last["DISTANCE"][0] <= 2
        assert runner.submit_write("LED", "On").result(10) == 1
        assert runner.submit_write("BRIGHTNESS", 3).result(10) == 1.0   # clamped to drive limit
        assert wait_for(lambda: rec.last["LED"][:3] == (1, "NO_ALARM", "NO_ALARM"))
    finally:
        runner.close()
    assert rec.last["CONNECTED"][0] == 1

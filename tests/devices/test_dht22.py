"""DHT22Driver: the IIO backend reading a fake sysfs tree, filtering and fault handling.

Time is a FakeClock shared by driver and simulator, so the 2 s rules are tested
without sleeping.
"""
import errno
import importlib.util
import os

import pytest

from devices.drivers.dht22 import DHT22Driver, adafruit_error
from devices.errors import (ConfigError, DeviceDisconnected, DeviceError, DeviceReplyError,
                            DeviceTimeout)
from devices.registry import get_driver
from devices.simulators.iio import FakeClock, FakeIIOTree

STILL_ROOM = {"temperature": 21.3, "humidity": 40.2, "swing": 0, "noise": 0}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_driver(clock):
    made = []

    def make(sim=None, **settings):
        settings.setdefault("read_retries", 0)
        settings["sim"] = dict(STILL_ROOM, **(sim or {}))
        driver = DHT22Driver(settings, sim=True, path=("devices", 0), clock=clock)
        made.append(driver)
        handles = {name: driver.channel(name, {"read": name}, ("devices", 0, "pvs", name))
                   for name in ("temperature", "humidity", "temperature_raw", "humidity_raw")}
        driver.open()
        return driver, handles

    yield make
    for driver in made:
        driver.close()


def test_reads_milli_unit_files_as_degrees_and_percent(make_driver):
    driver, h = make_driver()
    directory = driver.simulator.sensor.directory
    assert open(os.path.join(directory, "in_temp_input")).read() == "21300\n"
    assert driver.read(h["temperature"]).value == pytest.approx(21.3)
    assert driver.read(h["humidity"]).value == pytest.approx(40.2)
    assert "iio:device1" in driver.describe() and "(sim)" in driver.describe()


def test_published_value_is_the_median_of_the_last_three_good_samples(make_driver, clock):
    driver, h = make_driver()
    seen = []
    for temperature in (20.0, 21.0, 20.4, 22.0):
        driver.simulator.set(temperature=temperature)
        clock.advance(2.5)
        seen.append((driver.read(h["temperature"]).value, driver.read(h["temperature_raw"]).value))
    # first sample (21.3) was read at open+0 by nobody; history starts with 20.0
    assert seen[-2] == (pytest.approx(20.4), pytest.approx(20.4))   # median(20.0, 21.0, 20.4)
    assert seen[-1] == (pytest.approx(21.0), pytest.approx(22.0))   # median(21.0, 20.4, 22.0)


def test_median_window_is_configurable(make_driver, clock):
    driver, h = make_driver(median=1)
    for temperature in (20.0, 21.0):
        driver.simulator.set(temperature=temperature)
        clock.advance(2.5)
        assert driver.read(h["temperature"]).value == pytest.approx(temperature)


def test_read_sooner_than_min_period_returns_cached_value_with_original_timestamp(make_driver, clock):
    driver, h = make_driver()
    first = driver.read(h["temperature_raw"])
    served = len(driver.simulator.received)
    driver.simulator.set(temperature=22.0)
    clock.advance(1.9)
    again = driver.read(h["temperature_raw"])
    assert again == first                       # same value, same (original) timestamp
    assert len(driver.simulator.received) == served   # the sensor was not asked
    clock.advance(0.1)
    fresh = driver.read(h["temperature_raw"])
    assert fresh.value == pytest.approx(22.0)
    assert fresh.timestamp == pytest.approx(first.timestamp + 2.0)


def test_min_period_below_two_seconds_is_a_config_error(clock):
    with pytest.raises(ConfigError) as info:
        DHT22Driver({"min_period": "1 s"}, sim=True, path=("devices", 0), clock=clock)
    assert info.value.path == ("devices", 0, "min_period")


def test_out_of_range_spike_is_rejected_and_leaves_the_median_alone(make_driver, clock):
    driver, h = make_driver()
    assert driver.read(h["humidity"]).value == pytest.approx(40.2)
    driver.simulator.inject("spike")              # 3304 %RH, as seen in the wild
    clock.advance(2.0)
    with pytest.raises(DeviceReplyError) as info:
        driver.read(h["humidity"])
    assert info.value.alarm_status == "READ"
    assert "3304.0" in str(info.value) and "humidity" in str(info.value)
    with pytest.raises(DeviceReplyError):         # the other channel shares the acquisition
        driver.read(h["temperature"])
    clock.advance(2.0)
    assert driver.read(h["humidity"]).value == pytest.approx(40.2)


def test_in_range_jump_faster_than_max_rate_is_rejected(make_driver, clock):
    driver, h = make_driver()
    driver.read(h["temperature"])
    driver.simulator.inject("spike", quantity="temperature", value=50.0)
    clock.advance(2.0)
    with pytest.raises(DeviceReplyError, match=r"jumped 21.3 -> 50.0"):
        driver.read(h["temperature"])
    clock.advance(2.0)
    assert driver.read(h["temperature"]).value == pytest.approx(21.3)


def test_a_lasting_level_change_is_believed_after_three_rejections(make_driver, clock):
    driver, h = make_driver(max_rate={"temperature": 1.0})
    driver.read(h["temperature"])
    driver.simulator.set(temperature=35.0)
    for _ in range(2):
        clock.advance(2.0)
        with pytest.raises(DeviceReplyError):
            driver.read(h["temperature"])
    clock.advance(2.0)
    assert driver.read(h["temperature"]).value == pytest.approx(35.0)


@pytest.mark.parametrize("fault, error, alarm", [
    ("eio", DeviceReplyError, "READ"),
    ("etimedout", DeviceTimeout, "TIMEOUT"),
])
def test_kernel_errno_faults_raise_the_right_error_and_recover(make_driver, clock, fault, error, alarm):
    driver, h = make_driver()
    good = driver.read(h["temperature"])
    driver.simulator.inject(fault)
    clock.advance(2.0)
    with pytest.raises(error) as info:
        driver.read(h["temperature"])
    assert info.value.alarm_status == alarm
    assert "in_temp_input" in str(info.value)
    driver.simulator.inject("none")
    clock.advance(2.0)
    recovered = driver.read(h["temperature"])
    assert recovered.value == pytest.approx(good.value)
    assert recovered.timestamp > good.timestamp


def test_failed_read_is_retried_after_two_seconds_when_it_fits(make_driver, clock):
    driver, h = make_driver(read_retries=1, read_budget="3 s")
    driver.read(h["temperature"])
    clock.advance(2.0)
    driver.simulator.inject("spike")              # one bad sample, then good ones
    started = clock.time()
    reading = driver.read(h["humidity_raw"])
    assert reading.value == pytest.approx(40.2)
    assert reading.timestamp - started >= 2.0     # the retry waited for the sensor


def test_no_retry_when_it_would_not_fit_the_budget(make_driver, clock):
    driver, h = make_driver(read_retries=3, read_budget="1 s")
    driver.read(h["temperature"])
    clock.advance(2.0)
    driver.simulator.inject("spike")
    before = clock.monotonic()
    with pytest.raises(DeviceReplyError):
        driver.read(h["humidity"])
    assert clock.monotonic() == before            # gave up instead of waiting 2 s


def test_slow_read_beyond_read_timeout_is_a_timeout(make_driver, clock):
    driver, h = make_driver(sim={"slow_delay": 1.5})
    driver.simulator.inject("slow")
    clock.advance(2.0)
    with pytest.raises(DeviceTimeout, match="took 3.0 s"):
        driver.read(h["temperature"])


def test_slow_read_within_read_timeout_keeps_the_acquisition_time(make_driver, clock):
    driver, h = make_driver(sim={"slow_delay": 1.5}, read_timeout="5 s")
    driver.simulator.inject("slow")
    clock.advance(2.0)
    started = clock.time()
    reading = driver.read(h["temperature"])
    assert reading.value == pytest.approx(21.3)
    assert reading.timestamp == started
    assert clock.time() == started + 3.0


def test_backend_is_restarted_after_repeated_failures(make_driver, clock):
    driver, h = make_driver(reset_after=3)
    driver.simulator.inject("eio")
    for _ in range(5):
        clock.advance(2.0)
        with pytest.raises(DeviceReplyError):
            driver.read(h["temperature"])
    assert driver.backend_restarts == 1
    driver.simulator.inject("none")
    clock.advance(2.0)
    assert driver.read(h["temperature"]).value == pytest.approx(21.3)
    assert driver.failures_in_a_row == 0


def test_frozen_sensor_is_reported_when_frozen_detection_is_on(make_driver, clock):
    driver, h = make_driver(frozen_after=3)
    driver.read(h["temperature"])
    driver.simulator.inject("frozen")
    for step in range(3):
        driver.simulator.set(temperature=21.3 + 0.1 * (step + 1))   # the room moves...
        clock.advance(2.0)
        if step < 2:
            driver.read(h["temperature"])                          # ...the files do not
    with pytest.raises(DeviceReplyError, match="frozen"):
        driver.read(h["temperature"])


def test_a_steady_room_is_not_called_frozen_by_default(make_driver, clock):
    driver, h = make_driver()
    for _ in range(20):
        clock.advance(2.0)
        assert driver.read(h["temperature"]).value == pytest.approx(21.3)


def test_disconnect_then_reconnect_finds_the_device_under_its_new_index(make_driver, clock):
    driver, h = make_driver()
    driver.read(h["temperature"])
    driver.simulator.inject("disconnect")
    clock.advance(2.0)
    with pytest.raises(DeviceDisconnected) as info:
        driver.read(h["temperature"])
    assert info.value.alarm_status == "COMM"
    driver.simulator.inject("none")
    driver.open()                                  # what the bridge does after COMM
    assert driver.read(h["humidity"]).value == pytest.approx(40.2)
    assert "iio:device2" in driver.describe()


def test_real_backend_reads_a_tree_given_as_iio_root(tmp_path, clock):
    tree = FakeIIOTree(tmp_path)
    tree.add_device("other")
    tree.add_device("dht11", {"in_temp_input": 19500, "in_humidityrelative_input": 55100})
    driver = DHT22Driver({"iio": {"root": str(tmp_path)}}, path=("devices", 0), clock=clock)
    handle = driver.channel("t", {"read": "temperature"}, ("pvs", "t"))
    driver.open()
    try:
        assert driver.read(handle).value == pytest.approx(19.5)
        assert driver.simulator is None
    finally:
        driver.close()


def test_missing_kernel_device_explains_the_overlay_and_sim(tmp_path, clock):
    driver = DHT22Driver({"iio": {"root": str(tmp_path)}}, path=("devices", 0), clock=clock)
    with pytest.raises(DeviceDisconnected) as info:
        driver.open()
    text = str(info.value)
    assert "no IIO device named 'dht11' under %s" % tmp_path in text
    assert "dtoverlay=dht11,gpiopin=4" in text and "/boot/firmware/config.txt" in text
    assert "--sim" in text


def test_config_typos_and_bad_channels_name_their_place(clock):
    with pytest.raises(ConfigError, match="did you mean 'backend'") as info:
        DHT22Driver({"backnd": "iio"}, sim=True, path=("devices", 0), clock=clock)
    assert info.value.path == ("devices", 0, "backnd")
    driver = DHT22Driver({}, sim=True, path=("devices", 0), clock=clock)
    with pytest.raises(ConfigError, match="temperature_raw") as info:
        driver.channel("x", {"read": "dewpoint"}, ("devices", 0, "pvs", "x"))
    assert info.value.path == ("devices", 0, "pvs", "x", "read")
    with pytest.raises(ConfigError, match="read-only"):
        driver.channel("x", {"read": "temperature", "write": "temperature"}, ("pvs", "x"))
    with pytest.raises(ConfigError, match="unknown backend"):
        DHT22Driver({"backend": "pigpio"}, path=("devices", 0))


@pytest.mark.skipif(importlib.util.find_spec("adafruit_dht") is not None,
                    reason="adafruit-circuitpython-dht is installed here")
def test_adafruit_backend_without_the_library_is_a_clear_config_error():
    with pytest.raises(ConfigError) as info:
        DHT22Driver({"backend": "adafruit", "pin": 4}, path=("devices", 0))
    assert info.value.path == ("devices", 0, "backend")
    assert "adafruit-circuitpython-dht" in str(info.value)
    assert "backend: iio" in str(info.value)


def test_adafruit_backend_needs_a_pin():
    with pytest.raises(ConfigError) as info:
        DHT22Driver({"backend": "adafruit"}, path=("devices", 0))
    assert info.value.path == ("devices", 0, "pin")


@pytest.mark.parametrize("exc, error", [
    (RuntimeError("Checksum did not validate. Try again."), DeviceReplyError),
    (RuntimeError("A full buffer was not returned. Try again."), DeviceTimeout),
    (RuntimeError("DHT sensor not found, check wiring"), DeviceTimeout),
    (OSError(errno.EIO, "Input/output error"), DeviceReplyError),
])
def test_adafruit_errors_map_to_device_errors(exc, error):
    mapped = adafruit_error(exc)
    assert type(mapped) is error
    assert isinstance(mapped, DeviceError)


def test_registry_resolves_dht22_and_close_removes_the_fake_tree(make_driver):
    assert get_driver("dht22") is DHT22Driver
    driver, _ = make_driver()
    root = driver.simulator.root
    assert os.path.isdir(root)
    driver.close()
    assert not os.path.exists(root)

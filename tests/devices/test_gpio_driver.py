"""GPIODriver on gpiozero's MockFactory: a fresh factory per driver, closed per test."""
import time

import pytest

pytest.importorskip("gpiozero")
from gpiozero import Device  # noqa: E402

from devices.drivers.gpio import GPIODriver  # noqa: E402
from devices.errors import (ConfigError, DeviceDisconnected, DeviceError,  # noqa: E402
                            UnsafeValueError)
from devices.registry import get_driver  # noqa: E402


@pytest.fixture
def make_driver():
    """Build, declare channels, open; close every driver after the test."""
    made = []
    global_factory = Device.pin_factory

    def make(pvs, settings=None, sim=True):
        driver = GPIODriver(settings or {}, sim=sim, path=("devices", 0))
        made.append(driver)
        handles = {name: driver.channel(name, spec, ("devices", 0, "pvs", name))
                   for name, spec in pvs.items()}
        driver.open()
        return driver, handles

    yield make
    for driver in made:
        driver.close()
    assert Device.pin_factory is global_factory   # gpiozero's global was never left changed


def test_button_press_and_release_are_read(make_driver):
    driver, h = make_driver({"btn": {"read": {"device": "button", "pin": 17}}})
    assert driver.read(h["btn"]).value == 0
    driver.simulator.inject("press", pin=17)
    assert driver.read(h["btn"]).value == 1
    assert driver.simulator.pin(17).state is False    # pull-up button: pressed = low
    driver.simulator.inject("release", pin=17)
    assert driver.read(h["btn"]).value == 0


def test_digital_input_follows_the_pin(make_driver):
    driver, h = make_driver({"door": {"read": {"device": "digital_in", "pin": 5}}})
    driver.simulator.inject("high", pin=5)
    assert driver.read(h["door"]).value == 1
    driver.simulator.inject("low", pin=5)
    assert driver.read(h["door"]).value == 0


def test_led_write_reaches_the_mock_pin_and_reads_back(make_driver):
    led = {"device": "led", "pin": 27}
    driver, h = make_driver({"led": {"read": led, "write": led}})
    driver.write(h["led"], 1)
    assert driver.simulator.pin(27).state is True
    assert driver.read(h["led"]).value == 1
    driver.write(h["led"], 0)
    assert driver.simulator.pin(27).state is False
    assert driver.simulator.received == [("led", 27, 1), ("led", 27, 0)]


def test_active_low_output_inverts_the_pin(make_driver):
    driver, h = make_driver({"relay": {"write": {"device": "digital_out", "pin": 22,
                                                 "active_high": False}}})
    driver.write(h["relay"], 1)
    assert driver.simulator.pin(22).state is False
    assert driver.read(h["relay"]).value == 1           # write-only PV reads back its output


def test_pwm_duty_cycle_is_set_and_bad_values_never_reach_the_pin(make_driver):
    driver, h = make_driver({"dim": {"write": {"device": "pwm_led", "pin": 18, "frequency": 200}}})
    driver.write(h["dim"], 0.25)
    pin = driver.simulator.pin(18)
    assert pin.state == pytest.approx(0.25)
    assert pin.frequency == 200
    for bad in (1.5, -0.1, "0.5", float("nan")):
        with pytest.raises(UnsafeValueError) as info:
            driver.write(h["dim"], bad)
        assert info.value.alarm_status == "WRITE"
    assert pin.state == pytest.approx(0.25)
    assert driver.simulator.received == [("pwm_led", 18, 0.25)]


def test_led_accepts_only_zero_or_one(make_driver):
    driver, h = make_driver({"led": {"write": {"device": "led", "pin": 27}}})
    with pytest.raises(UnsafeValueError, match="0 \\(off\\) or 1 \\(on\\)"):
        driver.write(h["led"], 2)
    assert driver.simulator.received == []


def test_mcp3008_channels_are_read_over_mock_spi(make_driver):
    driver, h = make_driver({
        "pot": {"read": {"device": "mcp3008", "channel": 2}},
        "ldr": {"read": {"device": "mcp3008", "channel": 5, "quantity": "voltage",
                         "max_voltage": 5.0}},
    })
    driver.simulator.inject("adc", channel=2, value=0.5)
    driver.simulator.inject("adc", channel=5, value=0.2)
    step = 1 / 1023                                     # one LSB of a 10-bit ADC
    assert driver.read(h["pot"]).value == pytest.approx(0.5, abs=step)
    assert driver.read(h["ldr"]).value == pytest.approx(1.0, abs=5.0 * step)
    driver.simulator.inject("adc", channel=2, value=1.0)
    assert driver.read(h["pot"]).value == pytest.approx(1.0)


def test_cpu_temperature_comes_from_a_fake_thermal_zone_file(make_driver):
    driver, h = make_driver({"cpu": {"read": {"device": "cpu_temperature"}}},
                            settings={"sim": {"cpu_temperature": 51.5}})
    assert driver.read(h["cpu"]).value == pytest.approx(51.5)
    driver.simulator.inject("cpu_temperature", value=63.25)
    assert driver.read(h["cpu"]).value == pytest.approx(63.25)


def _settled_distance(driver, handle, target, tolerance):
    """DistanceSensor averages a queue of echoes; poll (bounded) until it settles."""
    value = None
    for _ in range(40):
        value = driver.read(handle).value
        if abs(value - target) <= tolerance:
            break
        time.sleep(0.05)
    return value


def test_distance_sensor_measures_the_mock_echo(make_driver):
    driver, h = make_driver({"range": {"read": {"device": "distance_sensor", "echo": 24,
                                                "trigger": 23, "max_distance": 4,
                                                "queue_len": 3}}},
                            settings={"sim": {"distance": 0.5}})
    assert _settled_distance(driver, h["range"], 0.5, 0.1) == pytest.approx(0.5, abs=0.1)
    driver.simulator.inject("distance", value=2.0)
    assert _settled_distance(driver, h["range"], 2.0, 0.2) == pytest.approx(2.0, abs=0.2)


def test_disconnect_fault_fails_reads_until_cleared(make_driver):
    driver, h = make_driver({"btn": {"read": {"device": "button", "pin": 17}}})
    driver.simulator.inject("disconnect")
    with pytest.raises(DeviceDisconnected) as info:
        driver.read(h["btn"])
    assert info.value.alarm_status == "COMM"
    driver.simulator.inject("none")
    assert driver.read(h["btn"]).value == 0


def test_reopen_starts_from_a_fresh_mock_factory(make_driver):
    driver, h = make_driver({"led": {"write": {"device": "led", "pin": 27}}})
    driver.write(h["led"], 1)
    driver.close()
    driver.open()                          # no GPIOPinInUse from the old reservation
    assert driver.read(h["led"]).value == 0
    assert driver.simulator.pin(27).state is False


def test_explicit_mock_pin_factory_without_sim(make_driver):
    driver, h = make_driver({"led": {"write": {"device": "led", "pin": 27}}},
                            settings={"pin_factory": "mock"}, sim=False)
    assert driver.simulator is None
    driver.write(h["led"], 1)
    assert driver.read(h["led"]).value == 1
    assert "MockFactory" in driver.describe()


def test_unknown_pin_factory_fails_open_with_the_known_names():
    driver = GPIODriver({"pin_factory": "nosuch"}, path=("devices", 0))
    with pytest.raises(DeviceDisconnected, match="nosuch: unknown.*mock"):
        driver.open()
    driver.close()


def test_read_only_pv_refuses_writes(make_driver):
    driver, h = make_driver({"btn": {"read": {"device": "button", "pin": 17}}})
    with pytest.raises(DeviceError) as info:
        driver.write(h["btn"], 1)
    assert info.value.alarm_status == "WRITE"


@pytest.mark.parametrize("spec, path_tail, message", [
    ({"read": {"device": "buton", "pin": 17}}, ("read", "device"), "did you mean|choose one of"),
    ({"read": {"device": "button"}}, ("read", "pin"), "needs 'pin'"),
    ({"read": {"device": "button", "pin": 17, "pul_up": True}}, ("read", "pul_up"),
     "did you mean 'pull_up'"),
    ({"write": {"device": "button", "pin": 17}}, ("write", "device"), "cannot be written"),
    ({"read": {"device": "led", "pin": 99}}, ("read", "pin"), "0..53"),
    ({"read": {"device": "mcp3008", "channel": 8}}, ("read", "channel"), "0..7"),
    ({}, (), "needs 'read' and/or 'write'"),
])
def test_bad_specs_are_config_errors_at_their_path(spec, path_tail, message):
    driver = GPIODriver({}, sim=True, path=("devices", 0))
    with pytest.raises(ConfigError, match=message) as info:
        driver.channel("pv", spec, ("devices", 0, "pvs", "pv"))
    assert info.value.path == ("devices", 0, "pvs", "pv") + path_tail


def test_a_pin_used_by_two_devices_is_a_config_error_naming_the_other_pv():
    driver = GPIODriver({}, sim=True, path=("devices", 0))
    driver.channel("led", {"write": {"device": "led", "pin": 8}}, ("pvs", "led"))
    with pytest.raises(ConfigError, match="GPIO 8 is already used by led on pin 8 \\(PV 'led'\\)"):
        driver.channel("adc", {"read": {"device": "mcp3008", "channel": 0}}, ("pvs", "adc"))


def test_registry_resolves_gpio():
    assert get_driver("gpio") is GPIODriver

"""Injected faults map to the right DeviceError and alarm status, and clear cleanly.

Run against both simulated paths: serial over TCP to our instrument simulator,
and VISA through pyvisa-sim with the fault layer.
"""
import pytest

from devices.drivers.message import MessageDriver
from devices.errors import DeviceDisconnected, DeviceError, DeviceReplyError, DeviceTimeout

TIMEOUTS = {"reply": "300 ms", "read": "100 ms", "lock": "1 s", "write": "500 ms"}
BACKENDS = {
    "serial": ({"transport": {"kind": "serial", "port": "/dev/ttyUSB0"},
                "in_terminator": "CR LF", "out_terminator": "CR",
                "sim": {"definitions": "temperature_controller"}},
               {"query": "SP?", "format": "%f"}, 25.0),
    "visa": ({"transport": {"kind": "visa", "resource": "ASRL2::INSTR"}, "terminator": "LF",
              "sim": {"definitions": "multimeter"}},
             {"query": "VOLT:DC:RANG?", "format": "%e"}, 10.0),
}
EXPECTED = {
    "no_reply": (DeviceTimeout, "TIMEOUT"),
    "garbage": (DeviceReplyError, "READ"),
    "slow": (DeviceTimeout, "TIMEOUT"),
    "disconnect": (DeviceDisconnected, "COMM"),
}


@pytest.fixture(params=sorted(BACKENDS))
def device(request):
    settings, read, value = BACKENDS[request.param]
    driver = MessageDriver(dict(settings, timeouts=TIMEOUTS), sim=True, path=("devices", 0))
    handle = driver.channel("pv", {"read": read}, ("devices", 0, "pvs", "pv"))
    driver.open()
    yield driver, handle, value
    driver.close()


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_fault_maps_to_error_and_recovers(device, fault):
    driver, handle, value = device
    assert driver.read(handle).value == value
    driver.simulator.inject(fault, delay=1.0)
    error_class, alarm = EXPECTED[fault]
    with pytest.raises(error_class) as info:
        driver.read(handle)
    assert type(info.value) is error_class
    assert info.value.alarm_status == alarm
    assert driver.transport.describe() in str(info.value)     # says which device

    driver.simulator.inject("none")
    if fault == "disconnect":
        with pytest.raises(DeviceDisconnected):
            driver.read(handle)                    # the bridge must reopen
        driver.open()
    assert driver.read(handle).value == value


def test_reopen_fails_while_disconnected(device):
    driver, handle, value = device
    driver.simulator.inject("disconnect")
    with pytest.raises(DeviceDisconnected):
        driver.read(handle)
    with pytest.raises(DeviceDisconnected):
        driver.open()
    driver.simulator.inject("none")
    driver.open()
    assert driver.read(handle).value == value


def test_slow_reply_within_the_reply_timeout_is_fine(device):
    driver, handle, value = device
    driver.simulator.inject("slow", delay=0.05)
    assert driver.read(handle).value == value


def test_no_reply_does_not_hide_that_the_command_arrived(device):
    driver, handle, _ = device
    driver.simulator.inject("no_reply")
    with pytest.raises(DeviceTimeout):
        driver.read(handle)
    assert driver.simulator.received[-1] == BACKENDS_QUERY[driver.transport.kind]


BACKENDS_QUERY = {"serial": "SP?", "visa": "VOLT:DC:RANG?"}


def test_a_late_reply_is_not_taken_for_the_next_answer():
    settings, _, _ = BACKENDS["serial"]
    driver = MessageDriver(dict(settings, timeouts=TIMEOUTS), sim=True, path=("devices", 0))
    temperature = driver.channel("t", {"read": {"query": "TEMP?", "format": "%f"}}, ())
    setpoint = driver.channel("sp", {"read": {"query": "SP?", "format": "%f"},
                                     "write": {"command": "SP %.1f"}}, ())
    with driver:
        driver.write(setpoint, 33)
        driver.simulator.inject("slow", delay=0.5)
        with pytest.raises(DeviceTimeout):
            driver.read(temperature)
        assert driver.simulator.wait_idle(5.0)     # the 20.000 reply has now been sent, late
        driver.simulator.inject("none")
        assert driver.read(setpoint).value == 33.0


def test_every_error_is_a_device_error():
    for error_class, _ in EXPECTED.values():
        assert issubclass(error_class, DeviceError)

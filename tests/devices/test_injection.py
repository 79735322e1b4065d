"""Command injection through written values never reaches the instrument.

The simulator's ``.received`` log is what the instrument actually got, and its
state (setpoint, label) shows a reset never happened.
"""
import pytest

from devices.drivers.message import MessageDriver
from devices.errors import UnsafeValueError

SERIAL = {
    "transport": {"kind": "serial", "port": "/dev/ttyS0"},
    "in_terminator": "CR LF", "out_terminator": "CR",
    "timeouts": {"reply": "1 s"},
    "sim": {"definitions": "temperature_controller"},
}


@pytest.fixture
def tc():
    driver = MessageDriver(SERIAL, sim=True, path=("devices", 0))
    driver.open()
    yield driver
    driver.close()


def _sync(driver):
    """Read once so every command sent before is in the log."""
    driver.read(driver.channel("sp", {"read": {"query": "SP?", "format": "%f"}}, ()))


@pytest.mark.parametrize("value", [
    "1\r\n*RST",
    "lab\r*RST",
    "lab\n*RST",
    "x\x00*RST",
    "x\x1b[2J",
    "x\x85*RST",        # C1 "next line"
])
def test_string_with_control_characters_is_refused_and_never_sent(tc, value):
    label = tc.channel("label", {"write": {"command": "NAME %s"}}, ("pvs", "label"))
    setpoint = tc.channel("sp", {"write": {"command": "SP %.1f"}}, ("pvs", "sp"))
    tc.write(setpoint, 55)
    _sync(tc)
    before = list(tc.simulator.received)
    with pytest.raises(UnsafeValueError) as info:
        tc.write(label, value)
    assert info.value.alarm_status == "WRITE"
    _sync(tc)
    assert tc.simulator.received == before + ["SP?"]
    assert not any("*RST" in command for command in tc.simulator.received)
    assert tc.simulator.get("setpoint") == 55.0        # no reset happened
    assert tc.simulator.get("label") == "TC-100"


@pytest.mark.parametrize("value", ["1\r\n*RST", "25; *RST", b"25\r*RST"])
def test_numeric_template_refuses_text(tc, value):
    setpoint = tc.channel("sp", {"write": {"command": "SP %.2f"}}, ("pvs", "sp"))
    with pytest.raises(UnsafeValueError, match="not a number"):
        tc.write(setpoint, value)
    _sync(tc)
    assert tc.simulator.received == ["SP?"]


def test_enum_template_refuses_unknown_labels(tc):
    heater = tc.channel("heat", {"write": {"command": "HEAT %{OFF|ON}"}}, ("pvs", "heat"))
    with pytest.raises(UnsafeValueError):
        tc.write(heater, "ON\r*RST")
    _sync(tc)
    assert tc.simulator.received == ["SP?"]


def test_printable_terminator_inside_a_value_is_refused():
    # Some instruments end messages with ';' - a value containing it would split the command.
    driver = MessageDriver({"transport": {"kind": "serial", "port": "loop://"}, "terminator": ";"},
                           path=("devices", 0))
    label = driver.channel("label", {"write": {"command": "NAME %s"}}, ("pvs", "label"))
    with driver:
        with pytest.raises(UnsafeValueError, match="terminator"):
            driver.write(label, "a;*RST")
        driver.write(label, "plain")
        assert driver.transport.read() == b"NAME plain"     # loop:// echoes what was sent


def test_visa_values_are_checked_the_same_way():
    driver = MessageDriver({"transport": {"kind": "visa", "resource": "ASRL2::INSTR"},
                            "terminator": "LF", "sim": {"definitions": "multimeter"}},
                           sim=True, path=("devices", 1))
    rng = driver.channel("range", {"write": {"command": "CONF:VOLT:DC %s"}}, ("pvs", "range"))
    with driver:
        with pytest.raises(UnsafeValueError):
            driver.write(rng, "10\n*RST")
        assert driver.simulator.received == []


def test_a_query_containing_the_terminator_is_a_config_error():
    from devices.errors import ConfigError
    driver = MessageDriver({"transport": {"kind": "serial", "port": "loop://"}, "terminator": ";"},
                           path=("devices", 0))
    with pytest.raises(ConfigError) as info:
        driver.channel("x", {"read": {"query": "SP?;*RST"}}, ("devices", 0, "pvs", "x"))
    assert info.value.path == ("devices", 0, "pvs", "x", "read", "query")

"""MessageDriver: templates, typed writes, scaling, mismatch handling, config errors."""
import pytest

from devices.drivers.message import MessageDriver, Template
from devices.errors import ConfigError, DeviceReplyError, UnsafeValueError
from devices.registry import DriverRegistry, get_driver

TC_SETTINGS = {
    "transport": {"kind": "serial", "port": "/dev/ttyUSB0", "baudrate": 9600},
    "in_terminator": "CR LF",
    "out_terminator": "CR",
    "timeouts": {"reply": "1 s", "read": "100 ms", "lock": "1 s"},
    "sim": {"definitions": "temperature_controller"},
}


@pytest.fixture
def tc():
    driver = MessageDriver(dict(TC_SETTINGS, init=["MODE MANUAL"]), sim=True, path=("devices", 0))
    driver.open()
    yield driver
    driver.close()


def channel(driver, name, **spec):
    return driver.channel(name, spec, ("devices", 0, "pvs", name))


def received_so_far(driver):
    """The simulator's log once every earlier command has been handled.

    Commands without a reply are in flight when write() returns; a query on the
    same connection is answered only after them.
    """
    driver.read(channel(driver, "sync", read={"query": "*IDN?", "format": "%[^,],%*s"}))
    return driver.simulator.received[:-1]


# -- templates, without I/O ------------------------------------------------------

@pytest.mark.parametrize("fmt, reply, value", [
    ("%f", "3.25", 3.25),
    ("%f", "  -1.5e3", -1500.0),
    ("T=%f C", "T=21.5 C", 21.5),
    ("%d", "-42", -42),
    ("%i", "0x1F", 31),
    ("%i", "017", 15),
    ("%x", "ff", 255),
    ("%o", "17", 15),
    ("%s", "READY", "READY"),
    ("%[^,]", "two words,rest", None),
    ("%{OFF|ON|AUTO}", "AUTO", 2),
    ("%*d,%f", "7,2.5", 2.5),
    ("100%% %d", "100% 3", 3),
])
def test_read_templates(fmt, reply, value):
    template = Template(fmt, ())
    if value is None:
        assert template.parse(reply, extra_input="ignore") == "two words"
    else:
        assert template.parse(reply) == value


def test_extra_input_is_an_error_unless_ignored():
    template = Template("%d", ())
    with pytest.raises(ValueError, match="does not match"):
        template.parse("12 volts")
    assert template.parse("12 volts", extra_input="ignore") == 12


@pytest.mark.parametrize("fmt, value, sent", [
    ("SP %.2f", 25, "SP 25.00"),
    ("SP %+08.3f", -1.5, "SP -001.500"),
    ("CH%d", 3.0, "CH3"),
    ("ADDR %04X", 255, "ADDR 00FF"),
    ("HEAT %{OFF|ON}", "ON", "HEAT ON"),
    ("HEAT %{OFF|ON}", 0, "HEAT OFF"),
    ("NAME %s", "oven", "NAME oven"),
    ("VOLT %e", 0.5, "VOLT 5.000000e-01"),
])
def test_write_templates(fmt, value, sent):
    assert Template(fmt, ()).render(value, "pv") == sent


@pytest.mark.parametrize("fmt, value, text", [
    ("SP %f", "hot", "not a number"),
    ("SP %f", float("nan"), "not a finite number"),
    ("HEAT %{OFF|ON}", 2, "not one of OFF|ON"),
    ("HEAT %{OFF|ON}", "MAYBE", "not a number"),
    ("CH%d", 1.5, None),
])
def test_write_values_that_do_not_fit(fmt, value, text):
    if text is None:  # %d rounds like StreamDevice's integer output of a double
        assert Template(fmt, ()).render(value, "pv") == "CH2"
        return
    with pytest.raises(UnsafeValueError, match=text):
        Template(fmt, ()).render(value, "pv")


@pytest.mark.parametrize("fmt, text", [
    ("%f %f", "2 value conversions"),
    ("SP?", "0 value conversions"),
    ("%q", "bad conversion"),
    ("%{ON}", "two or more"),
    ("SP\r%f", "control characters"),
])
def test_bad_read_templates(fmt, text):
    with pytest.raises(ConfigError, match=text) as info:
        Template(fmt, ("pvs", "x", "read", "format"))
    assert info.value.path == ("pvs", "x", "read", "format")


# -- config validation ------------------------------------------------------------

def test_registry_finds_the_message_driver():
    assert get_driver("message") is MessageDriver


def test_registry_accepts_extra_drivers_and_refuses_non_drivers():
    registry = DriverRegistry(use_entry_points=False)
    registry.register("msg2", "devices.drivers.message:MessageDriver")
    assert registry.get("msg2") is MessageDriver
    registry.register("bogus", "devices.errors:ConfigError")
    with pytest.raises(ConfigError, match="not a devices.driver.Driver subclass"):
        registry.get("bogus", ("devices", 1, "driver"))


@pytest.mark.parametrize("settings, where, text", [
    ({}, ("devices", 0), "needs a 'transport'"),
    ({"transport": {"kind": "serial", "port": "loop://"}, "terminater": "CR"},
     ("devices", 0, "terminater"), "did you mean 'terminator'"),
    ({"transport": {"kind": "serial", "port": "loop://"}, "init": ["SP %f"]},
     ("devices", 0, "init", 0), "must not contain"),
    ({"transport": {"kind": "serial", "port": "loop://"}, "init": ["*RST\r\n"]},
     ("devices", 0, "init", 0, "command"), "control characters"),
    ({"transport": {"kind": "serial", "port": "loop://"}, "timeouts": {"reply": "quick"}},
     ("devices", 0, "timeouts", "reply"), "duration"),
])
def test_bad_device_settings(settings, where, text):
    with pytest.raises(ConfigError) as info:
        MessageDriver(settings, path=("devices", 0))
    assert info.value.path == where
    assert text in str(info.value)


def test_sim_needs_a_sim_block_and_an_existing_definition():
    settings = {"transport": {"kind": "serial", "port": "loop://"}}
    with pytest.raises(ConfigError, match="needs a 'sim' block"):
        MessageDriver(settings, sim=True, path=("devices", 0))
    with pytest.raises(ConfigError) as info:
        MessageDriver(dict(settings, sim={"definitions": "toaster"}), sim=True, path=("devices", 0))
    assert info.value.path == ("devices", 0, "sim", "definitions")


@pytest.mark.parametrize("spec, where, text", [
    ({}, ("devices", 0, "pvs", "x"), "needs 'read' and/or 'write'"),
    ({"read": {"query": "SP?", "fromat": "%f"}}, ("devices", 0, "pvs", "x", "read", "fromat"), "did you mean 'format'"),
    ({"read": {"query": "SP?", "on_mismatch": "retry"}}, ("devices", 0, "pvs", "x", "read", "on_mismatch"), "error|ignore"),
    ({"read": {"query": "SP?", "scale": 0}}, ("devices", 0, "pvs", "x", "read", "scale"), "must not be 0"),
    ({"write": {"command": "SP %*d"}}, ("devices", 0, "pvs", "x", "write", "command"), "input-only"),
    ({"write": {"comand": "SP %f"}}, ("devices", 0, "pvs", "x", "write", "comand"), "did you mean 'command'"),
])
def test_bad_channel_specs(spec, where, text):
    driver = MessageDriver({"transport": {"kind": "serial", "port": "loop://"}}, path=("devices", 0))
    with pytest.raises(ConfigError) as info:
        driver.channel("x", spec, ("devices", 0, "pvs", "x"))
    assert info.value.path == where
    assert text in str(info.value)


def test_no_io_before_open():
    driver = MessageDriver(TC_SETTINGS, sim=True, path=("devices", 0))
    assert driver.simulator.port is None and driver.simulator.received == []
    assert driver.describe() == "message serial /dev/ttyUSB0 (sim)"


# -- against the simulated temperature controller --------------------------------

def test_init_commands_and_reads(tc):
    assert received_so_far(tc) == ["MODE MANUAL"]
    assert tc.describe().startswith("message serial socket://127.0.0.1:")
    mode = channel(tc, "mode", read={"query": "MODE?", "format": "%{AUTO|MANUAL|STANDBY}"})
    idn = channel(tc, "idn", read={"query": "*IDN?", "format": "%*[^,],%[^,],%*s"})
    assert tc.read(mode).value == 1
    assert tc.read(idn).value == "TC-100"


def test_write_then_read_back_setpoint_with_heater_enum(tc):
    setpoint = channel(tc, "sp", read={"query": "SP?", "format": "%f"}, write={"command": "SP %.2f"})
    heater = channel(tc, "heat", read={"query": "HEAT?", "format": "%{OFF|ON}"},
                     write="HEAT %{OFF|ON}")
    temp = channel(tc, "temp", read="TEMP?")
    tc.write(setpoint, 60)
    tc.write(heater, 1)
    assert tc.read(setpoint).value == 60.0
    assert tc.read(heater).value == 1
    tc.simulator.advance(60)
    assert tc.read(temp).value == pytest.approx(60.0, abs=0.01)
    assert "SP 60.00" in tc.simulator.received and "HEAT ON" in tc.simulator.received


def test_scale_and_offset_apply_both_ways(tc):
    # The PV is in Fahrenheit; the instrument speaks Celsius.
    fahrenheit = channel(tc, "sp_f", read={"query": "SP?", "format": "%f", "scale": 1.8, "offset": 32},
                         write={"command": "SP %.2f", "scale": 1.8, "offset": 32})
    tc.write(fahrenheit, 212)
    assert received_so_far(tc)[-1] == "SP 100.00"
    assert tc.read(fahrenheit).value == pytest.approx(212.0)


def test_write_limits_refuse_before_sending(tc):
    setpoint = channel(tc, "sp", write={"command": "SP %.1f", "min": 0, "max": 150})
    label = channel(tc, "label", write={"command": "NAME %s", "max_length": 8})
    sent = received_so_far(tc)
    with pytest.raises(UnsafeValueError, match="outside"):
        tc.write(setpoint, 151)
    with pytest.raises(UnsafeValueError, match="max_length 8"):
        tc.write(label, "a much longer label")
    assert received_so_far(tc) == sent + ["*IDN?"]


def test_mismatch_is_a_read_error_quoting_the_reply(tc):
    wrong = channel(tc, "wrong", read={"query": "HEAT?", "format": "%f"})
    with pytest.raises(DeviceReplyError) as info:
        tc.read(wrong)
    assert info.value.alarm_status == "READ"
    assert "'OFF'" in str(info.value)


def test_mismatch_ignore_keeps_the_last_good_reading(tc):
    temp = channel(tc, "temp", read={"query": "TEMP?", "format": "%f", "on_mismatch": "ignore"})
    good = tc.read(temp)
    tc.simulator.inject("garbage")
    assert tc.read(temp) is good                      # same value, same (old) timestamp
    tc.simulator.inject("none")
    fresh = channel(tc, "fresh", read={"query": "TEMP?", "format": "%f", "on_mismatch": "ignore"})
    tc.simulator.inject("garbage")
    with pytest.raises(DeviceReplyError):             # nothing good to fall back on
        tc.read(fresh)


def test_write_with_expected_reply(tc):
    # The controller answers "ERR" to commands it refuses.
    checked = channel(tc, "rst", write={"command": "RESET", "reply": "OK"})
    with pytest.raises(DeviceReplyError) as info:
        tc.write(checked, 1)
    assert info.value.alarm_status == "WRITE"
    assert "'ERR'" in str(info.value)


def test_visa_sim_multimeter():
    driver = MessageDriver({"transport": {"kind": "visa", "resource": "ASRL2::INSTR"},
                            "terminator": "LF", "sim": {"definitions": "multimeter"}},
                           sim=True, path=("devices", 1))
    volts = channel(driver, "volts", read={"query": "MEAS:VOLT:DC?", "format": "%e", "scale": 1000})
    rng = channel(driver, "range", read={"query": "VOLT:DC:RANG?", "format": "%e"},
                  write={"command": "CONF:VOLT:DC %g"})
    with driver:
        assert driver.read(volts).value == pytest.approx(1234.567)
        driver.write(rng, 100)
        assert driver.read(rng).value == 100.0
        assert driver.simulator.received == ["MEAS:VOLT:DC?", "CONF:VOLT:DC 100", "VOLT:DC:RANG?"]

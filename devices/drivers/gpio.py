"""Raspberry Pi GPIO devices (gpiozero) as PVs: buttons, LEDs, PWM, ADC, sensors.

Invariants:
- All YAML validation happens in ``channel()`` (ConfigError with a path): the
  device kind, its pins and options, and that no pin is claimed twice.
- This module never imports gpiozero; devices/transports/gpio.py does, lazily.
- A PV whose ``read`` and ``write`` name the same device shares one gpiozero
  device, so reading an LED shows what was last written to it.
- Written values are validated before any pin is touched (UnsafeValueError).
- Under sim the pins belong to a fresh gpiozero MockFactory per open();
  ``simulator.inject()`` drives inputs, ``simulator.received`` lists writes.

PV spec: ``{device: button|led|pwm_led|distance_sensor|mcp3008|cpu_temperature|
digital_in|digital_out, pin: 17, ...}``; see SPECS for each kind's keys.
"""
import math
import time

from devices.driver import Driver, Reading
from devices.errors import (ConfigError, DeviceError, UnsafeValueError, expect_mapping,
                            parse_duration, reject_unknown)
from devices.transports.gpio import OUTPUT_KINDS, GPIOBoard, GPIOEndpoint

SETTINGS = ("pin_factory", "sim")
SIM_SETTINGS = ("distance", "cpu_temperature")


def _bool(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, "expected true or false, got %r" % (value,))
    return value


def _number(low=None, high=None, integer=False):
    def check(value, path):
        kinds = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(path, "expected %s, got %r" % ("an integer" if integer else "a number", value))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(path, "expected a value within %s..%s, got %r"
                              % ("" if low is None else low, "" if high is None else high, value))
        return value
    return check


def _positive(value, path):
    value = _number()(value, path)
    if value <= 0:
        raise ConfigError(path, "expected a positive number, got %r" % (value,))
    return float(value)


def _duration(value, path):
    return parse_duration(value, path)


def _choice(*allowed):
    def check(value, path):
        if value not in allowed:
            raise ConfigError(path, "expected one of %s, got %r" % (", ".join(allowed), value))
        return value
    return check


def _text(value, path):
    if not isinstance(value, str) or not value:
        raise ConfigError(path, "expected a non-empty string, got %r" % (value,))
    return value


_INPUT_OPTIONS = {"pull_up": _bool, "bounce_time": _duration}
_OUTPUT_OPTIONS = {"active_high": _bool, "initial": _number(0, 1, integer=True)}

# kind -> (pin keys, option validators)
SPECS = {
    "button": (("pin",), _INPUT_OPTIONS),
    "digital_in": (("pin",), _INPUT_OPTIONS),
    "led": (("pin",), _OUTPUT_OPTIONS),
    "digital_out": (("pin",), _OUTPUT_OPTIONS),
    "pwm_led": (("pin",), {"active_high": _bool, "initial": _number(0, 1), "frequency": _positive}),
    "distance_sensor": (("echo", "trigger"), {"max_distance": _positive,
                                              "queue_len": _number(1, 100, integer=True)}),
    "mcp3008": ((), {"channel": _number(0, 7, integer=True), "differential": _bool,
                     "max_voltage": _positive, "quantity": _choice("value", "voltage"),
                     "spi_port": _number(0, 0, integer=True),
                     "spi_select": _number(0, 1, integer=True)}),
    "cpu_temperature": ((), {"sensor_file": _text}),
}
_SPI_PINS = {0: (11, 10, 9), "select": (8, 7)}   # BCM pins of SPI port 0 (MCP3008)


def _pin(value, path):
    """BCM number (0..53) or a gpiozero pin name such as "GPIO17" or "BOARD11"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise ConfigError(path, "expected a BCM GPIO number like 17 or a name like 'GPIO17', got %r"
                          % (value,))
    if isinstance(value, int) and not 0 <= value <= 53:
        raise ConfigError(path, "GPIO number must be within 0..53, got %d" % value)
    return value


def parse_endpoint(spec, path):
    """Validate one ``read:``/``write:`` mapping -> GPIOEndpoint."""
    spec = expect_mapping(spec, path, "a mapping like {device: led, pin: 17}")
    kind = spec.get("device")
    if kind not in SPECS:
        raise ConfigError(path + ("device",), "unknown gpio device %r" % (kind,),
                          "choose one of: %s" % ", ".join(sorted(SPECS)))
    pin_keys, options = SPECS[kind]
    reject_unknown(spec, ("device",) + pin_keys + tuple(options), path)
    pins = []
    for key in pin_keys:
        if key not in spec:
            raise ConfigError(path + (key,), "%s needs '%s'" % (kind, key))
        pins.append((key, _pin(spec[key], path + (key,))))
    checked = tuple(sorted((key, options[key](spec[key], path + (key,)))
                           for key in options if key in spec))
    return GPIOEndpoint(kind, tuple(pins), checked)


def _claimed_pins(endpoint):
    pins = [pin for _key, pin in endpoint.pins]
    if endpoint.kind == "mcp3008":
        pins += list(_SPI_PINS[endpoint.option("spi_port", 0)])
        pins.append(_SPI_PINS["select"][endpoint.option("spi_select", 0)])
    return pins


class GPIOChannel:
    """The handle channel() returns: what to read and what to write."""

    def __init__(self, name, read, write):
        self.name = name
        self.read = read
        self.write = write

    def __repr__(self):
        return "GPIOChannel(%r, read=%r, write=%r)" % (self.name, self.read, self.write)


class GPIODriver(Driver):
    name = "gpio"

    def __init__(self, settings, *, sim=False, path=()):
        super().__init__(settings, sim=sim, path=path)
        settings = expect_mapping(self.settings, self.path)
        reject_unknown(settings, SETTINGS, self.path)
        factory = settings.get("pin_factory")
        if factory is not None:
            _text(factory, self.path + ("pin_factory",))
        self._board = GPIOBoard(factory, sim=sim)
        self.simulator = self._board.simulator
        sim_settings = expect_mapping(settings.get("sim", {}), self.path + ("sim",))
        reject_unknown(sim_settings, SIM_SETTINGS, self.path + ("sim",))
        for key, value in sim_settings.items():
            number = _number()(value, self.path + ("sim", key))
            if self.simulator is not None:
                self.simulator.inject(key, value=number)
        self._endpoints = []
        self._pin_owner = {}         # pin -> (endpoint, PV name)

    def channel(self, name, spec, path):
        path = tuple(path)
        spec = expect_mapping(spec, path)
        reject_unknown(spec, ("read", "write"), path)
        ends = {}
        for role in ("read", "write"):
            if spec.get(role) is None:
                ends[role] = None
                continue
            endpoint = parse_endpoint(spec[role], path + (role,))
            if role == "write" and endpoint.kind not in OUTPUT_KINDS:
                raise ConfigError(path + ("write", "device"), "%s is an input and cannot be "
                                  "written" % endpoint.kind,
                                  "writable devices: %s" % ", ".join(OUTPUT_KINDS))
            self._claim(endpoint, name, path + (role,))
            ends[role] = endpoint
        if ends["read"] is None and ends["write"] is None:
            raise ConfigError(path, "a gpio PV needs 'read' and/or 'write'")
        return GPIOChannel(name, ends["read"], ends["write"])

    def _claim(self, endpoint, name, path):
        for pin in _claimed_pins(endpoint):
            owner = self._pin_owner.get(pin)
            if owner is None:
                continue
            other, other_name = owner
            shared_spi = endpoint.kind == other.kind == "mcp3008" and endpoint != other
            if other != endpoint and not shared_spi:
                raise ConfigError(path, "GPIO %s is already used by %s (PV %r)"
                                  % (pin, other.label(), other_name))
        for pin in _claimed_pins(endpoint):
            self._pin_owner.setdefault(pin, (endpoint, name))
        if endpoint not in self._endpoints:
            self._endpoints.append(endpoint)

    def open(self):
        self._board.open()
        for endpoint in self._endpoints:
            self._board.attach(endpoint)   # pin errors surface here, not at first read

    def close(self):
        self._board.close()

    def describe(self):
        return self._board.describe()

    def read(self, handle):
        endpoint = handle.read or handle.write     # an output PV reads back its pin
        return Reading(self._board.read(endpoint), time.time())

    def write(self, handle, value):
        endpoint = handle.write
        if endpoint is None:
            raise DeviceError("gpio PV %r is read-only" % handle.name, alarm_status="WRITE")
        self._board.write(endpoint, _output_value(endpoint, value))


def _output_value(endpoint, value):
    """The value for gpiozero's ``.value``, or UnsafeValueError before touching a pin."""
    if isinstance(value, str) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise UnsafeValueError("%s: cannot write %r (expected a number)" % (endpoint.label(), value))
    if endpoint.kind == "pwm_led":
        if not 0.0 <= value <= 1.0:
            raise UnsafeValueError("%s: duty cycle %r outside 0..1" % (endpoint.label(), value))
        return float(value)
    if value not in (0, 1):
        raise UnsafeValueError("%s: expected 0 (off) or 1 (on), got %r" % (endpoint.label(), value))
    return int(value)

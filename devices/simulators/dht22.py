"""The DHT22 simulator: a kernel-style IIO device in a temporary directory.

Invariants:
- The simulated sensor is an ``iio:deviceN`` directory named like the real
  overlay's device (``dht11``) holding ``in_temp_input`` (milli-°C) and
  ``in_humidityrelative_input`` (milli-%RH), so DHT22Driver reads it with its
  real IIO backend; only the root directory and the file opener differ.
- Values are quantised to 0.1 like the sensor's own 16-bit frame.
- Nothing touches the disk before ``start()``; ``stop()`` removes everything.
- Fault state survives stop()/start(), so a driver reconnect does not heal a fault.
"""
import math
import random
import shutil
import tempfile
import time

from devices.errors import ConfigError, expect_mapping, parse_duration, reject_unknown
from devices.simulators.iio import FakeIIOTree, SimulatedIIOSensor

TEMPERATURE_FILE = "in_temp_input"
HUMIDITY_FILE = "in_humidityrelative_input"
SETTINGS = ("temperature", "humidity", "swing", "period", "noise", "seed", "slow_delay", "index")
# Humidity moves against temperature: at constant absolute humidity near room
# temperature, relative humidity falls roughly 3 %RH per °C.
HUMIDITY_PER_DEGREE = -3.0


def _milli(value):
    """Quantise to the sensor's 0.1 resolution, then express in IIO milli-units."""
    return int(round(value * 10.0)) * 100


class DHT22Model:
    """Temperature and humidity as smooth functions of wall time, plus noise."""

    def __init__(self, temperature=22.0, humidity=45.0, swing=0.5, period=600.0,
                 noise=0.05, seed=0):
        self.temperature = temperature
        self.humidity = humidity
        self.swing = swing
        self.period = period
        self.noise = noise
        self._random = random.Random(seed)

    def _wave(self, wall):
        return self.swing * math.sin(2.0 * math.pi * wall / self.period) if self.period else 0.0

    def _jitter(self):
        return self._random.gauss(0.0, self.noise) if self.noise else 0.0

    def temperature_at(self, wall):
        return self.temperature + self._wave(wall) + self._jitter()

    def humidity_at(self, wall):
        value = self.humidity + HUMIDITY_PER_DEGREE * self._wave(wall) + self._jitter()
        return min(100.0, max(0.0, value))


class DHT22Simulator:
    """The object a simulated DHT22Driver exposes as ``.simulator``.

    ``inject(fault)``: none, eio, etimedout, slow, frozen, spike, disconnect.
    ``spike`` takes ``quantity`` (temperature|humidity, default humidity) and
    ``value`` in °C/%RH (default 3304.0 %RH, a spike seen in the wild).
    ``set(temperature=..., humidity=...)`` moves the simulated room.
    ``received`` lists the channel files the fake device served.
    """

    def __init__(self, settings=None, *, name="dht11", clock=None, path=()):
        settings = expect_mapping(settings if settings is not None else {}, path)
        reject_unknown(settings, SETTINGS, path)
        number = _number_reader(settings, path)
        self.model = DHT22Model(
            temperature=number("temperature", 22.0),
            humidity=number("humidity", 45.0),
            swing=number("swing", 0.5),
            period=parse_duration(settings.get("period", 600.0), tuple(path) + ("period",)),
            noise=number("noise", 0.05),
            seed=int(number("seed", 0)),
        )
        index = settings.get("index", 1)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(tuple(path) + ("index",), "expected an integer >= 0, got %r" % (index,))
        self.sensor = SimulatedIIOSensor(
            None, name,
            {TEMPERATURE_FILE: lambda wall: _milli(self.model.temperature_at(wall)),
             HUMIDITY_FILE: lambda wall: _milli(self.model.humidity_at(wall))},
            clock=clock or time,
            slow_delay=parse_duration(settings.get("slow_delay", 3.0), tuple(path) + ("slow_delay",)),
            first_index=index,
        )
        self.root = None

    @property
    def received(self):
        return self.sensor.received

    @property
    def opener(self):
        return self.sensor.opener

    def start(self):
        """Create the fake tree (once); return its root, the stand-in for /sys/bus/iio/devices."""
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="dht22-sim-")
            self.sensor.tree = FakeIIOTree(self.root)
            self.sensor.directory = None
            if self.sensor.fault != "disconnect":
                self.sensor.connect()
        return self.root

    def stop(self):
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.sensor.tree = None
            self.sensor.directory = None

    def set(self, temperature=None, humidity=None):
        """Move the room; the sensor reports it from its next sample on."""
        if temperature is not None:
            self.model.temperature = float(temperature)
        if humidity is not None:
            self.model.humidity = float(humidity)

    def inject(self, fault, quantity="humidity", value=None, **params):
        if fault == "spike":
            if quantity not in ("temperature", "humidity"):
                raise ValueError("spike quantity must be 'temperature' or 'humidity', got %r"
                                 % (quantity,))
            if value is None:
                value = 3304.0 if quantity == "humidity" else 150.0
            attribute = TEMPERATURE_FILE if quantity == "temperature" else HUMIDITY_FILE
            self.sensor.inject("spike", attribute=attribute, value=_milli(value))
        else:
            self.sensor.inject(fault, **params)

    @property
    def fault(self):
        return self.sensor.fault


def _number_reader(settings, path):
    def number(key, default):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(tuple(path) + (key,), "expected a number, got %r" % (value,))
        return float(value)
    return number

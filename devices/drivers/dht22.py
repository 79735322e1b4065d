"""DHT22/AM2302 temperature and humidity sensor on a Raspberry Pi.

Invariants:
- The sensor is never asked more often than every ``min_period`` (>= 2 s). A read
  sooner returns the cached acquisition -- the same values and the ORIGINAL
  timestamp, or the same error -- never a fresh one.
- A sample is published only after plausibility checks (range, rate of change,
  optional frozen detection); a rejected sample raises DeviceReplyError and
  leaves the filter history untouched.
- ``temperature``/``humidity`` are the median of the last ``median`` good samples;
  ``*_raw`` are the latest good sample. Every Reading carries the time of the
  latest good acquisition, not the time it was published.
- Failed reads are retried at most ``read_retries`` times, each attempt starting
  >= min_period after the previous one, and only if the retry still ends inside
  ``read_budget`` (the bridge's hard timeout must exceed it).
- After ``reset_after`` failed acquisitions in a row the backend is closed and
  re-opened (a stuck libgpiod_pulsein helper, a re-probed IIO device), counted
  in ``backend_restarts``, instead of waiting for someone to restart the IOC.
- Under sim the ``iio`` backend reads a fake sysfs tree (devices/simulators/dht22.py)
  through exactly the code that reads /sys on a Pi.

Backends: ``iio`` (default: the kernel driver from ``dtoverlay=dht11,gpiopin=N``,
files in milli-units) and ``adafruit`` (adafruit-circuitpython-dht, imported lazily).
"""
import collections
import importlib.util
import statistics
import time
from dataclasses import dataclass

from devices.driver import Driver, Reading
from devices.errors import (ConfigError, DeviceDisconnected, DeviceError, DeviceReplyError,
                            DeviceTimeout, expect_mapping, parse_duration, reject_unknown)
from devices.transports.sysfs import IIO_ROOT, IIODevice, device_error_from_os_error

SETTINGS = ("backend", "iio", "pin", "use_pulseio", "min_period", "median", "max_rate",
            "frozen_after", "read_retries", "read_budget", "read_timeout", "reset_after", "sim")
CHANNELS = ("temperature", "humidity", "temperature_raw", "humidity_raw")
RANGES = {"temperature": (-40.0, 80.0), "humidity": (0.0, 100.0)}     # DHT22 datasheet
UNITS = {"temperature": "°C", "humidity": "%RH"}
DEFAULT_MAX_RATE = {"temperature": 2.0, "humidity": 10.0}             # per second
IIO_HINT = ("is dtoverlay=dht11,gpiopin=4 in /boot/firmware/config.txt? "
            "-- run with --sim to use the simulator")
ADAFRUIT_HINT = ("pip install adafruit-circuitpython-dht (in a venv on Raspberry Pi OS "
                 "bookworm), or use backend: iio with dtoverlay=dht11,gpiopin=4")


@dataclass(frozen=True)
class Sample:
    temperature: float
    humidity: float
    timestamp: float        # wall clock, when the acquisition started


class SampleFilter:
    """Plausibility checks and the median of recent good samples (no I/O, no clock).

    The rate check compares with the last accepted sample. After ``rate_reset``
    rejections in a row the new level is believed (a door opened, or the first
    reference was itself bad) and the history restarts from it.
    """

    def __init__(self, median=3, max_rate=None, frozen_after=None, min_interval=2.0,
                 rate_reset=3):
        self.max_rate = dict(DEFAULT_MAX_RATE if max_rate is None else max_rate)
        self.frozen_after = frozen_after
        self.min_interval = min_interval
        self.rate_reset = rate_reset
        self.history = collections.deque(maxlen=median)
        self._rate_rejections = 0
        self._identical = 0

    def accept(self, sample):
        """Add ``sample`` to the history, or raise DeviceReplyError saying why not."""
        for quantity, (low, high) in RANGES.items():
            value = getattr(sample, quantity)
            if not low <= value <= high:
                raise DeviceReplyError("DHT22 %s %.1f %s outside the plausible range %g..%g; "
                                       "sample rejected" % (quantity, value, UNITS[quantity], low, high))
        if self.history:
            last = self.history[-1]
            self._check_rate(last, sample)
            self._check_frozen(last, sample)
        self._rate_rejections = 0
        self.history.append(sample)

    def _check_rate(self, last, sample):
        interval = max(sample.timestamp - last.timestamp, self.min_interval)
        for quantity, limit in self.max_rate.items():
            change = getattr(sample, quantity) - getattr(last, quantity)
            if abs(change) / interval <= limit:
                continue
            self._rate_rejections += 1
            if self._rate_rejections >= self.rate_reset:
                self.history.clear()   # believe the new level
                return
            raise DeviceReplyError(
                "DHT22 %s jumped %.1f -> %.1f %s in %.1f s (more than max_rate %g %s/s); "
                "sample rejected" % (quantity, getattr(last, quantity), getattr(sample, quantity),
                                     UNITS[quantity], interval, limit, UNITS[quantity]))

    def _check_frozen(self, last, sample):
        same = (last.temperature, last.humidity) == (sample.temperature, sample.humidity)
        self._identical = self._identical + 1 if same else 0
        if self.frozen_after and self._identical >= self.frozen_after:
            raise DeviceReplyError("DHT22 values unchanged (%.1f °C, %.1f %%RH) for %d reads in a "
                                   "row; sensor frozen?" % (sample.temperature, sample.humidity,
                                                            self._identical + 1))

    def latest(self, quantity):
        return getattr(self.history[-1], quantity)

    def median(self, quantity):
        return statistics.median(getattr(s, quantity) for s in self.history)


class IIOBackend:
    """The kernel driver's IIO files: milli-°C and milli-%RH."""

    kind = "iio"

    def __init__(self, name, root, opener=None):
        self.device = IIODevice(name, root, hint=IIO_HINT, opener=opener)

    def open(self):
        self.device.open()

    def close(self):
        self.device.close()

    def read(self):
        """(°C, %RH); the kernel caches a reading ~2 s, so the pair is consistent."""
        if not self.device.is_open:
            self.device.open()   # the device came back with a new N
        return (self.device.read_channel("temp") / 1000.0,
                self.device.read_channel("humidityrelative") / 1000.0)

    def describe(self):
        return self.device.describe()


def adafruit_error(exc):
    """Map adafruit_dht's RuntimeError/OSError to the DeviceError family."""
    if isinstance(exc, OSError):
        return device_error_from_os_error(exc, "adafruit_dht sensor")
    text = str(exc)
    if "full buffer" in text or "not found" in text or "timed out" in text.lower():
        return DeviceTimeout("DHT22 (adafruit_dht): %s" % text)
    return DeviceReplyError("DHT22 (adafruit_dht): %s" % text)


class AdafruitBackend:
    """adafruit-circuitpython-dht through Blinka; ``.exit()`` frees the GPIO line."""

    kind = "adafruit"

    def __init__(self, pin, use_pulseio=True):
        self.pin = pin
        self.use_pulseio = use_pulseio
        self._sensor = None

    def open(self):
        self.close()
        try:
            import adafruit_dht
            import board
        except (ImportError, NotImplementedError, RuntimeError) as exc:
            raise DeviceDisconnected("DHT22 adafruit backend unavailable: %s (%s)"
                                     % (exc, ADAFRUIT_HINT)) from exc
        pin = getattr(board, "D%d" % self.pin, None)
        if pin is None:
            raise DeviceDisconnected("DHT22: this board has no pin D%d" % self.pin)
        try:
            self._sensor = adafruit_dht.DHT22(pin, use_pulseio=self.use_pulseio)
        except (RuntimeError, OSError) as exc:
            raise adafruit_error(exc) from exc

    def close(self):
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            try:
                sensor.exit()
            except Exception:  # noqa: BLE001 - closing must not fail; the line is released anyway
                pass

    def read(self):
        if self._sensor is None:
            raise DeviceDisconnected("DHT22 adafruit backend is not open")
        try:
            temperature = self._sensor.temperature
            humidity = self._sensor.humidity
        except (RuntimeError, OSError) as exc:
            raise adafruit_error(exc) from exc
        if temperature is None or humidity is None:
            raise DeviceReplyError("DHT22 (adafruit_dht): no data returned")
        return float(temperature), float(humidity)

    def describe(self):
        return "adafruit_dht D%d%s" % (self.pin, "" if self.use_pulseio else " (bit-banged)")


@dataclass
class _Acquisition:
    """The outcome of the last attempt: a sample or an error, and when it started."""

    started: float               # clock.monotonic()
    error: DeviceError = None


class DHT22Driver(Driver):
    """Channels ``temperature``, ``humidity``, ``temperature_raw``, ``humidity_raw``."""

    name = "dht22"
    min_period = 2.0

    def __init__(self, settings, *, sim=False, path=(), clock=None):
        super().__init__(settings, sim=sim, path=path)
        path = self.path
        settings = expect_mapping(self.settings, path)
        reject_unknown(settings, SETTINGS, path)
        self._clock = clock or time
        self.backend_kind = settings.get("backend", "iio")
        if self.backend_kind not in ("iio", "adafruit"):
            raise ConfigError(path + ("backend",), "unknown backend %r" % (self.backend_kind,),
                              "choose 'iio' (kernel driver) or 'adafruit'")
        iio = expect_mapping(settings.get("iio", {}), path + ("iio",))
        reject_unknown(iio, ("name", "root"), path + ("iio",))
        self.iio_name = str(iio.get("name", "dht11"))
        self.iio_root = str(iio.get("root", IIO_ROOT))
        self.pin = settings.get("pin")
        if self.pin is not None and (isinstance(self.pin, bool) or not isinstance(self.pin, int)):
            raise ConfigError(path + ("pin",), "expected a BCM GPIO number like 4, got %r" % (self.pin,))
        self.use_pulseio = bool(settings.get("use_pulseio", True))
        self.min_period = parse_duration(settings.get("min_period", 2.0), path + ("min_period",))
        if self.min_period < 2.0:
            raise ConfigError(path + ("min_period",), "a DHT22 must not be read more often "
                              "than every 2 s, got %g s" % self.min_period)
        self.read_retries = _count(settings, "read_retries", 1, path)
        self.read_budget = parse_duration(settings.get("read_budget", 2.5), path + ("read_budget",))
        self.read_timeout = parse_duration(settings.get("read_timeout", 2.0), path + ("read_timeout",))
        self.reset_after = _count(settings, "reset_after", 5, path)   # 0: never
        frozen_after = settings.get("frozen_after")
        self.filter = SampleFilter(
            median=_count(settings, "median", 3, path, minimum=1),
            max_rate=_max_rate(settings.get("max_rate"), path + ("max_rate",)),
            frozen_after=None if frozen_after is None else _count(settings, "frozen_after", 0, path, 2),
            min_interval=self.min_period,
        )
        if self.backend_kind == "adafruit" and not sim:
            if self.pin is None:
                raise ConfigError(path + ("pin",), "backend 'adafruit' needs the GPIO pin",
                                  "e.g. pin: 4")
            if importlib.util.find_spec("adafruit_dht") is None:
                raise ConfigError(path + ("backend",), "backend 'adafruit' needs the "
                                  "adafruit-circuitpython-dht package, which is not installed",
                                  ADAFRUIT_HINT)
        if sim:
            from devices.simulators.dht22 import DHT22Simulator
            self.simulator = DHT22Simulator(settings.get("sim"), name=self.iio_name,
                                            clock=self._clock, path=path + ("sim",))
        elif "sim" in settings:
            expect_mapping(settings["sim"], path + ("sim",))
        self._backend = None
        self._last = None            # _Acquisition
        self.failures_in_a_row = 0
        self.backend_restarts = 0

    # -- configuration -----------------------------------------------------
    def channel(self, name, spec, path):
        path = tuple(path)
        spec = expect_mapping(spec, path)
        reject_unknown(spec, ("read", "write"), path)
        if spec.get("write") is not None:
            raise ConfigError(path + ("write",), "a DHT22 is read-only; remove 'write'")
        which = spec.get("read")
        if which not in CHANNELS:
            raise ConfigError(path + ("read",), "unknown DHT22 channel %r" % (which,),
                              "choose one of: %s" % ", ".join(CHANNELS))
        return which

    # -- lifecycle ---------------------------------------------------------
    def _make_backend(self):
        if self.simulator is not None:
            root = self.simulator.start()
            return IIOBackend(self.iio_name, root, opener=self.simulator.opener)
        if self.backend_kind == "adafruit":
            return AdafruitBackend(self.pin, self.use_pulseio)
        return IIOBackend(self.iio_name, self.iio_root)

    def open(self):
        if self._backend is None:
            self._backend = self._make_backend()
        if self._last is not None and isinstance(self._last.error, DeviceDisconnected):
            self._last = None      # the sensor itself was never reached: no spacing owed
        self._backend.open()

    def close(self):
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        if self.simulator is not None:
            self.simulator.stop()

    def describe(self):
        where = self._backend.describe() if self._backend else (
            "iio %r under %s" % (self.iio_name, self.iio_root) if self.backend_kind == "iio"
            else "adafruit_dht D%s" % self.pin)
        return "dht22 %s%s" % (where, " (sim)" if self.simulator is not None else "")

    # -- I/O -----------------------------------------------------------------
    def read(self, handle):
        if handle not in CHANNELS:
            raise DeviceError("not a DHT22 channel handle: %r" % (handle,))
        now = self._clock.monotonic()
        if self._last is None or now - self._last.started >= self.min_period:
            self._acquire()
        if self._last.error is not None:   # the cached acquisition failed: fail alike
            error = type(self._last.error)(str(self._last.error))
            error.alarm_status = self._last.error.alarm_status
            raise error
        quantity, _, raw = handle.partition("_")
        value = self.filter.latest(quantity) if raw else self.filter.median(quantity)
        return Reading(value, self.filter.history[-1].timestamp)

    def write(self, handle, value):
        raise DeviceError("DHT22 channel %r is read-only" % (handle,), alarm_status="WRITE")

    def _acquire(self):
        """One acquisition: attempts spaced >= min_period, retried while they fit the budget."""
        if self._backend is None:
            raise DeviceDisconnected("%s is not open" % self.describe())
        began = self._clock.monotonic()
        for attempt in range(self.read_retries + 1):
            if attempt:
                wait = self.min_period - (self._clock.monotonic() - self._last.started)
                if self._clock.monotonic() - began + max(wait, 0.0) > self.read_budget:
                    break
                self._clock.sleep(max(wait, 0.0))
            self._last = _Acquisition(self._clock.monotonic())
            try:
                self.filter.accept(self._attempt())
                self.failures_in_a_row = 0
                return
            except DeviceDisconnected as exc:
                self._last.error = exc
                return
            except DeviceError as exc:
                self._last.error = exc
                self.failures_in_a_row += 1
                if self.reset_after and self.failures_in_a_row % self.reset_after == 0:
                    self._restart_backend()

    def _restart_backend(self):
        self.backend_restarts += 1
        self._backend.close()
        try:
            self._backend.open()
        except DeviceError:
            pass    # the next attempt reports it (IIOBackend re-opens on read)

    def _attempt(self):
        stamp = self._clock.time()
        started = self._clock.monotonic()
        temperature, humidity = self._backend.read()
        took = self._clock.monotonic() - started
        if took > self.read_timeout:
            raise DeviceTimeout("DHT22 read took %.1f s (read_timeout %g s); value discarded"
                                % (took, self.read_timeout))
        return Sample(temperature, humidity, stamp)


def _count(settings, key, default, path, minimum=0):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(tuple(path) + (key,), "expected an integer >= %d, got %r" % (minimum, value))
    return value


def _max_rate(value, path):
    if value is None:
        return None
    expect_mapping(value, path)
    reject_unknown(value, tuple(RANGES), path)
    rates = dict(DEFAULT_MAX_RATE)
    for quantity, limit in value.items():
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
            raise ConfigError(tuple(path) + (quantity,),
                              "expected a positive number (%s per second), got %r"
                              % (UNITS[quantity], limit))
        rates[quantity] = float(limit)
    return rates

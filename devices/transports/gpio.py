"""gpiozero adapter: GPIO devices built on one explicitly chosen pin factory.

Invariants:
- gpiozero is imported inside functions only (an optional dependency).
- Every gpiozero device gets ``pin_factory=`` explicitly. gpiozero's class-level
  ``Device.pin_factory`` is left alone, except while building an SPI device:
  gpiozero 2.0's software SPI bus ignores ``pin_factory`` and falls back to the
  global, so ``_global_pin_factory`` sets it for that constructor and restores
  the previous value in ``finally``.
- Under sim the factory is a fresh ``MockFactory`` per open(), prepared by
  GPIOSimulator (PWM pins, trigger/echo pairs, a mock MCP3008 on the SPI pins,
  a fake thermal_zone file) before the gpiozero device claims the pins.
- gpiozero exceptions and OSErrors never escape: they become DeviceError.

This is not a ``devices.transport.Transport`` (that ABC moves terminated
messages); it is the pin-level adapter GPIODriver talks to.
"""
import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass

from devices.errors import DeviceDisconnected, DeviceError, DeviceTimeout
from devices.transports.sysfs import device_error_from_os_error

SPEED_OF_SOUND = 343.26   # m/s, the value gpiozero's DistanceSensor uses
FALLBACK_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native")
OUTPUT_KINDS = ("led", "pwm_led", "digital_out")


@dataclass(frozen=True)
class GPIOEndpoint:
    """One gpiozero device, as validated config: ``kind``, its pins, its options.

    ``options`` is a tuple of (key, value) pairs so endpoints can be dict keys:
    a PV reading and writing the same LED shares one gpiozero device.
    """

    kind: str
    pins: tuple
    options: tuple = ()

    def option(self, key, default=None):
        return dict(self.options).get(key, default)

    def label(self):
        return "%s on %s" % (self.kind, ", ".join("%s %s" % pin for pin in self.pins) or "the SoC")


def _gpiozero():
    try:
        import gpiozero
    except ImportError as exc:
        raise DeviceDisconnected("the gpio driver needs gpiozero (pip install gpiozero): %s"
                                 % exc) from exc
    return gpiozero


def make_pin_factory(name=None):
    """A new pin factory: ``name`` (an entry point of gpiozero_pin_factories),
    else $GPIOZERO_PIN_FACTORY, else the first of FALLBACK_FACTORIES that loads."""
    _gpiozero()
    from importlib.metadata import entry_points
    name = name or os.environ.get("GPIOZERO_PIN_FACTORY")
    found = entry_points()
    group = (found.select(group="gpiozero_pin_factories") if hasattr(found, "select")
             else found.get("gpiozero_pin_factories", ()))
    available = {ep.name: ep for ep in group}
    names = [name.lower()] if name else list(FALLBACK_FACTORIES)
    failures = []
    for candidate in names:
        if candidate not in available:
            failures.append("%s: unknown (known: %s)" % (candidate, ", ".join(sorted(available))))
            continue
        try:
            return available[candidate].load()()
        except Exception as exc:  # noqa: BLE001 - any failure means "try the next one"
            failures.append("%s: %s" % (candidate, exc))
    raise DeviceDisconnected("no usable gpiozero pin factory (%s); on a Pi install python3-lgpio, "
                             "or run with --sim to use the simulator" % "; ".join(failures))


@contextlib.contextmanager
def _global_pin_factory(factory):
    """Work around gpiozero's SPISoftwareBus ignoring pin_factory (set, then restore)."""
    from gpiozero import Device
    previous = Device.pin_factory
    Device.pin_factory = factory
    try:
        yield
    finally:
        Device.pin_factory = previous


def _construct(endpoint, factory, sensor_file=None):
    """Build the gpiozero device for ``endpoint`` on ``factory``."""
    gz = _gpiozero()
    pins = dict(endpoint.pins)
    opt = endpoint.option
    kind = endpoint.kind
    if kind == "button":
        return gz.Button(pins["pin"], pull_up=opt("pull_up", True), bounce_time=opt("bounce_time"),
                         pin_factory=factory)
    if kind == "digital_in":
        return gz.DigitalInputDevice(pins["pin"], pull_up=opt("pull_up", False),
                                     bounce_time=opt("bounce_time"), pin_factory=factory)
    if kind in ("led", "digital_out"):
        cls = gz.LED if kind == "led" else gz.DigitalOutputDevice
        return cls(pins["pin"], active_high=opt("active_high", True),
                   initial_value=bool(opt("initial", 0)), pin_factory=factory)
    if kind == "pwm_led":
        return gz.PWMLED(pins["pin"], active_high=opt("active_high", True),
                         initial_value=float(opt("initial", 0.0)), frequency=opt("frequency", 100),
                         pin_factory=factory)
    if kind == "distance_sensor":
        return gz.DistanceSensor(echo=pins["echo"], trigger=pins["trigger"],
                                 max_distance=opt("max_distance", 1.0), queue_len=opt("queue_len", 9),
                                 pin_factory=factory)
    if kind == "mcp3008":
        with _global_pin_factory(factory):
            return gz.MCP3008(channel=opt("channel", 0), differential=opt("differential", False),
                              max_voltage=opt("max_voltage", 3.3), port=opt("spi_port", 0),
                              device=opt("spi_select", 0), pin_factory=factory)
    if kind == "cpu_temperature":
        sensor_file = sensor_file or opt("sensor_file")
        extra = {"sensor_file": sensor_file} if sensor_file else {}   # else gpiozero's thermal_zone0
        return gz.CPUTemperature(pin_factory=factory, **extra)
    raise DeviceError("unknown gpio device kind %r" % (kind,))


class GPIOBoard:
    """The gpiozero devices of one driver, on one pin factory.

    ``attach(endpoint)`` builds (or reuses) a device; ``read``/``write`` use it.
    Under sim, ``simulator`` is a GPIOSimulator consulted before every access.
    """

    def __init__(self, pin_factory=None, *, sim=False):
        self.pin_factory_name = pin_factory
        self.simulator = GPIOSimulator() if sim else None
        self.factory = None
        self._devices = {}

    @property
    def is_open(self):
        return self.factory is not None

    def open(self):
        self.close()
        try:
            if self.simulator is not None:
                from gpiozero.pins.mock import MockFactory
                self.factory = MockFactory()
                self.simulator.attach(self.factory)
            else:
                self.factory = make_pin_factory(self.pin_factory_name)
        except ImportError as exc:
            raise DeviceDisconnected("gpiozero is not installed: %s" % exc) from exc

    def close(self):
        devices, self._devices = self._devices, {}
        for device in devices.values():
            # gpiozero's DistanceSensor.close() drops its trigger pin before its
            # base class stops the background reading thread, which can then
            # die with a traceback: stop that thread first (a second stop by
            # gpiozero is harmless).
            queue = getattr(device, "_queue", None)
            if queue is not None:
                with contextlib.suppress(Exception):
                    queue.stop()
            with contextlib.suppress(Exception):
                device.close()
        if self.simulator is not None:
            self.simulator.detach()
        factory, self.factory = self.factory, None
        if factory is not None:
            with contextlib.suppress(Exception):
                factory.close()

    def attach(self, endpoint):
        """The gpiozero device for ``endpoint``, built on first use."""
        if endpoint in self._devices:
            return self._devices[endpoint]
        if self.factory is None:
            raise DeviceDisconnected("gpio: not open")
        sensor_file = None
        try:
            with warnings.catch_warnings():
                # software PWM/SPI fallbacks are expected without pigpio/spidev
                warnings.simplefilter("ignore")
                if self.simulator is not None:
                    with self.simulator.prepare(endpoint) as sensor_file:
                        device = _construct(endpoint, self.factory, sensor_file)
                else:
                    device = _construct(endpoint, self.factory)
        except OSError as exc:
            raise device_error_from_os_error(exc, endpoint.label(), "set up") from exc
        except Exception as exc:  # gpiozero raises GPIOZeroError and ValueError subclasses
            raise DeviceError("gpio: cannot set up %s: %s: %s"
                              % (endpoint.label(), type(exc).__name__, exc)) from exc
        self._devices[endpoint] = device
        return device

    def _check_sim(self, endpoint):
        if self.simulator is not None and self.simulator.fault == "disconnect":
            raise DeviceDisconnected("gpio (sim): %s disconnected" % endpoint.label())

    def read(self, endpoint):
        """The value a PV shows: 0/1, a 0..1 fraction, metres, volts or °C."""
        self._check_sim(endpoint)
        device = self.attach(endpoint)
        kind = endpoint.kind
        try:
            if kind == "button":
                return int(device.is_pressed)
            if kind == "distance_sensor":
                return self._read_distance(endpoint, device)
            if kind == "mcp3008":
                return device.voltage if endpoint.option("quantity") == "voltage" else device.value
            if kind == "cpu_temperature":
                return device.temperature
            if kind in ("digital_in", "led", "digital_out"):
                return int(device.value)
            return float(device.value)
        except OSError as exc:
            raise device_error_from_os_error(exc, endpoint.label()) from exc
        except ValueError as exc:
            raise DeviceError("gpio: %s: unreadable value (%s)" % (endpoint.label(), exc),
                              alarm_status="READ") from exc

    @staticmethod
    def _read_distance(endpoint, device):
        # gpiozero blocks until its sample queue is full, forever if no echo
        # arrives; wait a bounded time on that (private) event instead.
        full = getattr(getattr(device, "_queue", None), "full", None)
        limit = 1.0 + 0.2 * endpoint.option("queue_len", 9)
        if full is not None and not full.wait(limit):
            raise DeviceTimeout("gpio: %s: no echo within %.1f s" % (endpoint.label(), limit))
        return device.distance

    def write(self, endpoint, value):
        """Set an output; the driver has already validated ``value``."""
        self._check_sim(endpoint)
        device = self.attach(endpoint)
        try:
            device.value = value
        except Exception as exc:  # noqa: BLE001 - gpiozero's errors vary by factory
            raise DeviceError("gpio: cannot set %s to %r: %s" % (endpoint.label(), value, exc),
                              alarm_status="WRITE") from exc
        if self.simulator is not None:
            self.simulator.received.append((endpoint.kind, dict(endpoint.pins).get("pin"), value))

    def describe(self):
        if self.simulator is not None:
            return "gpio MockFactory (sim)"
        name = type(self.factory).__name__ if self.factory else (self.pin_factory_name or "default")
        return "gpio %s" % name


class GPIOSimulator:
    """Drives MockFactory inputs and records outputs, for ``GPIODriver(sim=True)``.

    ``inject(event, pin=None, value=None, channel=0)``:
      ``press``/``release`` a button; ``high``/``low`` a digital input;
      ``adc`` (value 0..1 on MCP3008 ``channel``, any SGL/DIFF mode);
      ``distance`` (metres, for every simulated DistanceSensor: the mock trigger
      pin echoes for 2*d/343.26 s, timed with real threads, so +-a few cm);
      ``cpu_temperature`` (°C); ``disconnect`` (reads/writes fail); ``none``.
    ``received``: ``(kind, pin, value)`` for every output write that reached a pin.
    """

    EVENTS = ("none", "disconnect", "press", "release", "high", "low", "adc", "distance",
              "cpu_temperature")

    def __init__(self):
        self.factory = None
        self.received = []
        self.fault = "none"
        self._buttons = {}         # pin -> pull_up
        self._adc_chips = {}       # (port, select) -> mock chip
        self._adc_values = {}      # (port, select, channel) -> raw 0..1023
        self._triggers = {}        # trigger pin -> (MockTriggerPin, echo pin)
        self._distance = 0.5
        self._cpu_temperature = 45.0
        self._thermal_dir = None

    def attach(self, factory):
        self.factory = factory
        self._adc_chips = {}
        self._triggers = {}

    def detach(self):
        for chip in self._adc_chips.values():
            chip.close()
        self._adc_chips = {}
        if self._thermal_dir is not None:
            shutil.rmtree(self._thermal_dir, ignore_errors=True)
            self._thermal_dir = None
        self.factory = None

    def pin(self, name):
        """The existing mock pin ``name`` (to assert ``.state`` or ``.frequency`` on)."""
        for _header, info in self.factory.board_info.find_pin(name):
            if info in self.factory.pins:
                return self.factory.pins[info]
        raise ValueError("pin %r is not in use in the simulator" % (name,))

    @contextlib.contextmanager
    def prepare(self, endpoint):
        """Set up mock pins for ``endpoint``; yields a sensor_file override or None."""
        from gpiozero.pins.mock import MockPin, MockPWMPin, MockTriggerPin
        pins = dict(endpoint.pins)
        factory = self.factory
        if endpoint.kind == "button":
            self._buttons[pins["pin"]] = endpoint.option("pull_up", True)
        if endpoint.kind == "pwm_led":
            saved, factory.pin_class = factory.pin_class, MockPWMPin
            try:
                yield None
            finally:
                factory.pin_class = saved
            return
        if endpoint.kind == "distance_sensor":
            echo = factory.pin(pins["echo"], pin_class=MockPin)
            trigger = factory.pin(pins["trigger"], pin_class=MockTriggerPin, echo_pin=echo,
                                  echo_time=self._echo_time())
            self._triggers[pins["trigger"]] = (trigger, pins["echo"])
        if endpoint.kind == "mcp3008":
            self._adc_chip(endpoint.option("spi_port", 0), endpoint.option("spi_select", 0))
        if endpoint.kind == "cpu_temperature":
            yield self._thermal_file()
            return
        yield None

    # -- inputs ------------------------------------------------------------
    def inject(self, event, pin=None, value=None, channel=0, spi_port=0, spi_select=0):
        if event not in self.EVENTS:
            raise ValueError("unknown gpio simulator event %r; choose from %s"
                             % (event, ", ".join(self.EVENTS)))
        if event in ("none", "disconnect"):
            self.fault = event
        elif event in ("press", "release"):
            pressed_low = self._buttons.get(pin, True)
            self._drive(pin, (event == "press") != pressed_low)
        elif event in ("high", "low"):
            self._drive(pin, event == "high")
        elif event == "adc":
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError("adc value must be within 0..1, got %r" % (value,))
            self._adc_values[(spi_port, spi_select, channel)] = int(round(float(value) * 1023))
        elif event == "distance":
            self._distance = float(value)
            for trigger, _echo in self._triggers.values():
                trigger.echo_time = self._echo_time()
        elif event == "cpu_temperature":
            self._cpu_temperature = float(value)
            if self._thermal_dir is not None:
                self._write_thermal()

    def _drive(self, pin, high):
        if pin is None or self.factory is None:
            raise ValueError("inject needs pin= and an open driver")
        mock = self.pin(pin)
        mock.drive_high() if high else mock.drive_low()

    def _echo_time(self):
        return 2.0 * self._distance / SPEED_OF_SOUND

    def _thermal_file(self):
        if self._thermal_dir is None:
            self._thermal_dir = tempfile.mkdtemp(prefix="gpio-sim-thermal-")
            self._write_thermal()
        return os.path.join(self._thermal_dir, "temp")

    def _write_thermal(self):
        path = os.path.join(self._thermal_dir, "temp")
        with open(path + ".new", "w") as handle:
            handle.write("%d\n" % round(self._cpu_temperature * 1000))
        os.replace(path + ".new", path)

    def _adc_chip(self, port, select):
        key = (port, select)
        if key not in self._adc_chips:
            from gpiozero.pins.pi import SPI_HARDWARE_PINS
            hw = SPI_HARDWARE_PINS[port]
            chip_class = _mock_mcp3008_class()
            self._adc_chips[key] = chip_class(
                hw["clock"], hw["mosi"], hw["miso"], hw["select"][select],
                pin_factory=self.factory, values=self._adc_values, key=key)
        return self._adc_chips[key]


_MOCK_MCP3008 = []


def _mock_mcp3008_class():
    """A MockSPIDevice answering the MCP3008 protocol (built lazily: gpiozero is optional).

    Frame (MSB first): start bit 1, SGL/DIFF, D2 D1 D0; the chip then sends a
    sample slot and a null bit, then 10 data bits -- 12 bits after D0.
    """
    if not _MOCK_MCP3008:
        from gpiozero.pins.mock import MockSPIDevice

        class MockMCP3008(MockSPIDevice):
            def __init__(self, *pins, values, key, **kwargs):
                super().__init__(*pins, **kwargs)
                self.values = values      # shared dict owned by GPIOSimulator
                self.key = key

            def on_bit(self):
                bits = self.rx_buf
                if 1 not in bits:
                    return
                start = bits.index(1)
                if len(bits) == start + 5:
                    channel = bits[start + 2] * 4 + bits[start + 3] * 2 + bits[start + 4]
                    self.tx_word(self.values.get(self.key + (channel,), 0), 12)

        _MOCK_MCP3008.append(MockMCP3008)
    return _MOCK_MCP3008[0]

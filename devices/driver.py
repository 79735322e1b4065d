"""The Driver ABC and Reading: what the bridge calls, whatever the hardware.

Invariants:
- Constructors and ``channel()`` only validate (ConfigError with a path); all I/O
  happens in open/read/write/close, which raise DeviceError subclasses only.
- Drivers are blocking and not thread-safe: the bridge serialises calls per device.
- Under ``sim=True`` a driver talks to a simulator through the same code path as
  real hardware, and exposes it as ``self.simulator`` (``.inject(fault)``,
  ``.received``). Without sim, ``simulator`` is None.
"""
import abc
import time
from dataclasses import dataclass, field

FAULTS = ("none", "no_reply", "garbage", "slow", "disconnect")


@dataclass(frozen=True)
class Reading:
    """A value and the wall-clock time (time.time()) it was acquired."""

    value: object
    timestamp: float = field(default_factory=time.time)


class Driver(abc.ABC):
    """One device: validated settings, named channels, blocking read/write."""

    name = "abstract"          # registry key, used as ``driver:`` in YAML
    min_period = 0.0           # seconds; the bridge never polls faster
    simulator = None           # under sim: object with .inject(fault) and .received

    def __init__(self, settings, *, sim=False, path=()):
        """Validate device-level settings; raise ConfigError(path + (key,), msg). No I/O."""
        self.settings = dict(settings or {})
        self.sim = bool(sim)
        self.path = tuple(path)

    @abc.abstractmethod
    def channel(self, name, spec, path):
        """Validate one PV's ``{"read": ..., "write": ...}``; return an opaque handle."""

    @abc.abstractmethod
    def open(self):
        """Connect (and run init commands). May raise DeviceError; called again to reconnect."""

    @abc.abstractmethod
    def close(self):
        """Release everything (including a simulator this driver started). Idempotent."""

    @abc.abstractmethod
    def read(self, handle):
        """Return a Reading for the channel ``handle``; DeviceError on failure."""

    @abc.abstractmethod
    def write(self, handle, value):
        """Send ``value`` to the channel; validate first (UnsafeValueError before any I/O)."""

    @abc.abstractmethod
    def describe(self):
        """Short text for logs, e.g. ``message serial socket://127.0.0.1:5555 (sim)``."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

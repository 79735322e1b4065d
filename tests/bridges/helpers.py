"""A scripted in-memory driver, a fake clock and an update recorder for bridge tests."""
from devices.driver import Driver, Reading
from devices.errors import ConfigError, UnsafeValueError
from devices.registry import DriverRegistry


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class ScriptedDriver(Driver):
    """Channels named by ``read: <name>``; the test sets values or exceptions per channel."""

    name = "scripted"

    def __init__(self, settings, *, sim=False, path=()):
        super().__init__(settings, sim=sim, path=path)
        unknown = set(self.settings) - {"min_period", "forbid"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(tuple(path) + (key,), "unknown key %r" % key)
        self.min_period = float(self.settings.get("min_period", 0.0))
        self.forbid = self.settings.get("forbid", "*")
        self.values = {}
        self.open_error = None
        self.stamps = {}          # channel -> fixed acquisition time (a driver cache)
        self.clock = None
        self.open_times, self.read_times, self.written = [], [], []
        self.closed = 0
        self.block = None         # threading.Event a read waits on

    def channel(self, name, spec, path):
        for key in ("read", "write"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise ConfigError(tuple(path) + (key,), "expected a channel name")
        return spec.get("read") or spec.get("write")

    def open(self):
        self.open_times.append(self.clock() if self.clock else None)
        if self.open_error is not None:
            raise self.open_error

    def close(self):
        self.closed += 1

    def read(self, handle):
        if self.block is not None:
            self.block.wait(20)
        self.read_times.append(self.clock() if self.clock else None)
        value = self.values[handle]
        if isinstance(value, Exception):
            raise value
        stamp = self.stamps.get(handle)
        return Reading(value, stamp if stamp is not None else (self.clock() if self.clock else 0.0))

    def write(self, handle, value):
        if isinstance(value, str) and self.forbid in value:
            raise UnsafeValueError("%r contains %r, which the instrument treats as a command"
                                   % (value, self.forbid))
        self.written.append((handle, value))

    def describe(self):
        return "scripted test driver"


def scripted_registry():
    return DriverRegistry({"scripted": ScriptedDriver}, use_entry_points=False)


class Recorder:
    """Collects on_update calls; ``last[name]`` is the newest (value, status, severity, ts)."""

    def __init__(self):
        self.calls = []
        self.last = {}

    def __call__(self, name, value, status, severity, timestamp):
        self.calls.append((name, value, status, severity, timestamp))
        self.last[name] = (value, status, severity, timestamp)

    def statuses(self, name):
        return [(c[2], c[3]) for c in self.calls if c[0] == name]

"""Driver name -> Driver class, built-ins plus entry points.

Invariants:
- Targets are ``"module:Class"`` strings imported only when asked for, so an
  optional dependency of one driver never breaks the others.
- Explicit registration > entry point (group ``caproto_bridge.drivers``) > built-in.
- An unknown name is a ConfigError with a close-match suggestion.
"""
import difflib
import importlib
import importlib.metadata

from devices.driver import Driver
from devices.errors import ConfigError

ENTRY_POINT_GROUP = "caproto_bridge.drivers"

BUILTIN_DRIVERS = {
    "message": "devices.drivers.message:MessageDriver",
    "dht22": "devices.drivers.dht22:DHT22Driver",
    "gpio": "devices.drivers.gpio:GPIODriver",
}


def _entry_points():
    """``{name: "module:attr"}`` for our group (Python 3.9's entry_points() is a dict)."""
    found = importlib.metadata.entry_points()
    if hasattr(found, "select"):
        selected = found.select(group=ENTRY_POINT_GROUP)
    else:  # pragma: no cover - Python 3.9
        selected = found.get(ENTRY_POINT_GROUP, ())
    return {ep.name: ep.value for ep in selected}


def _import_target(target):
    if isinstance(target, type):
        return target
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class DriverRegistry:
    """A name -> driver-class table. ``registry`` below is the process-wide one."""

    def __init__(self, builtins=None, *, use_entry_points=True):
        self._targets = dict(BUILTIN_DRIVERS if builtins is None else builtins)
        if use_entry_points:
            self._targets.update(_entry_points())

    def register(self, name, target):
        """Add or replace ``name``; ``target`` is a Driver subclass or ``"module:Class"``."""
        self._targets[name] = target

    def names(self):
        return sorted(self._targets)

    def get(self, name, path=()):
        """The Driver subclass for ``name``; ConfigError (at ``path``) if unknown or broken."""
        if name not in self._targets:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = ("did you mean %r?" % close[0]) if close else "known drivers: %s" % ", ".join(self.names())
            raise ConfigError(path, "unknown driver %r" % (name,), hint)
        target = self._targets[name]
        try:
            cls = _import_target(target)
        except ImportError as exc:
            raise ConfigError(path, "driver %r cannot be loaded: %s" % (name, exc),
                              "is its optional dependency installed?") from exc
        except AttributeError as exc:
            raise ConfigError(path, "driver %r: %s has no such class (%s)" % (name, target, exc)) from exc
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise ConfigError(path, "driver %r (%s) is not a devices.driver.Driver subclass" % (name, target))
        return cls

    def create(self, name, settings, *, sim=False, path=()):
        """Look up ``name`` and construct it with validated settings."""
        return self.get(name, path)(settings, sim=sim, path=path)


registry = DriverRegistry()


def get_driver(name, path=()):
    return registry.get(name, path)


def driver_names():
    return registry.names()

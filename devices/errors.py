"""Errors shared by devices/ and bridges/, plus the config helpers that raise them.

Invariants:
- A ConfigError always names *where* in the config it happened (``path``, a tuple
  of keys/indices from the config root); the bridge loader adds file:line.
- Every DeviceError carries ``alarm_status``, one of ALARM_STATUSES, spelled as
  StreamDevice spells the CA alarm status it sets (TIMEOUT/COMM/READ/WRITE).
- Nothing here does I/O or imports third-party code.
"""
import difflib
import re

ALARM_STATUSES = ("TIMEOUT", "COMM", "READ", "WRITE")


def format_path(path):
    """``("devices", 0, "pvs", "temp")`` -> ``"devices[0].pvs.temp"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += "[%d]" % part
        else:
            text += ("." if text else "") + str(part)
    return text or "<root>"


class ConfigError(ValueError):
    """A configuration value is wrong; ``path`` says where, ``hint`` how to fix it."""

    def __init__(self, path, message, hint=None):
        self.path = tuple(path)
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self):
        text = "%s: %s" % (format_path(self.path), self.message)
        if self.hint:
            text += " (%s)" % self.hint
        return text


def reject_unknown(mapping, allowed, path):
    """Raise ConfigError for the first key of ``mapping`` not in ``allowed``.

    Typos are the commonest config bug, so suggest the closest allowed key.
    """
    allowed = list(allowed)
    for key in mapping:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
        hint = ("did you mean %r?" % close[0]) if close else (
            "allowed keys: %s" % ", ".join(sorted(str(a) for a in allowed)))
        raise ConfigError(tuple(path) + (key,), "unknown key %r" % (key,), hint)


def expect_mapping(value, path, what="a mapping"):
    """Return ``value`` if it is a dict, else raise ConfigError at ``path``."""
    if not isinstance(value, dict):
        raise ConfigError(path, "expected %s, got %s" % (what, type(value).__name__))
    return value


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s|min|h)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0, "min": 60.0, "h": 3600.0}


def parse_duration(value, path):
    """``"500 ms"``, ``"2 s"``, ``"1.5"`` or a number -> seconds (float, >= 0)."""
    if isinstance(value, bool):
        raise ConfigError(path, "expected a duration like '500 ms', got %r" % (value,))
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value):
        number, unit = _DURATION.match(value).groups()
        seconds = float(number) * _UNIT_SECONDS[unit]
    else:
        raise ConfigError(path, "expected a duration like '500 ms' or '2 s', got %r" % (value,),
                          "units: us, ms, s, min, h")
    if seconds < 0:
        raise ConfigError(path, "duration must not be negative, got %r" % (value,))
    return seconds


class DeviceError(Exception):
    """Talking to a device failed; the bridge turns ``alarm_status`` into a CA alarm."""

    alarm_status = "COMM"

    def __init__(self, message, *, alarm_status=None):
        super().__init__(message)
        if alarm_status is not None:
            if alarm_status not in ALARM_STATUSES:
                raise ValueError("alarm_status must be one of %s" % (ALARM_STATUSES,))
            self.alarm_status = alarm_status


class DeviceTimeout(DeviceError):
    """The device did not answer (or accept output) in time."""

    alarm_status = "TIMEOUT"


class DeviceDisconnected(DeviceError):
    """The port, socket or file is gone; the bridge will call open() again."""

    alarm_status = "COMM"


class DeviceReplyError(DeviceError):
    """A reply arrived but is garbage or does not match its format."""

    alarm_status = "READ"


class UnsafeValueError(DeviceError):
    """A value would inject a terminator/control character or break its template.

    Raised before anything is sent, so the instrument never sees it.
    """

    alarm_status = "WRITE"

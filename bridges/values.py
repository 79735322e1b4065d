"""Value rules shared by reads and writes: coercion to a PV's type, write checks, limit alarms.

Invariants:
- Pure functions of (PVConfig, value): no state, no I/O, no clock.
- Enum and bool PVs hold the state *index* (int); state names are accepted on
  write and mapped to their index.
- A value that fails a write check raises ``WriteRejected`` before any driver
  sees it; drive limits clamp or reject exactly as the PV's config says.
"""
import math

from bridges.schema import MAX_STRING_VALUE

INT32 = (-2 ** 31, 2 ** 31 - 1)


class WriteRejected(ValueError):
    """A write refused by the bridge; ``alarm_status`` is what the PV shows."""

    def __init__(self, message, alarm_status="WRITE"):
        super().__init__(message)
        self.alarm_status = alarm_status


class ReadValueError(ValueError):
    """A driver returned a value the PV cannot hold (shown as a READ alarm)."""

    alarm_status = "READ"


def _as_index(pv, value, error):
    states = pv.enum
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        if value in states:
            return states.index(value)
        try:
            value = int(value.strip())
        except ValueError:
            raise error("%r is not one of the states %s" % (value, "|".join(states))) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < len(states):
        raise error("%r is not a state index 0..%d of %s" % (value, len(states) - 1, "|".join(states)))
    return value


def _as_number(pv, value, error):
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise error("%r is not a number" % (value,)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)          # numpy scalars and friends
        except (TypeError, ValueError):
            raise error("%r is not a number" % (value,)) from None
    if pv.type == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise error("%r is not an integer" % (value,))
            value = int(value)
        if not INT32[0] <= value <= INT32[1]:
            raise error("%r does not fit a 32-bit integer" % (value,))
        return int(value)
    return float(value)


def coerce_read(pv, value):
    """A driver's value as the PV holds it; ReadValueError if it cannot be."""
    if pv.type in ("enum", "bool"):
        return _as_index(pv, value, ReadValueError)
    if pv.type == "string":
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return str(value)[:MAX_STRING_VALUE]
    return _as_number(pv, value, ReadValueError)


def check_write(pv, value):
    """The value to send for a requested write, after type, enum and drive-limit checks."""
    def reject(message):
        return WriteRejected("%s: %s" % (pv.name, message))
    if pv.write is None:
        raise WriteRejected("%s: this PV is read-only" % pv.name)
    if pv.type in ("enum", "bool"):
        return _as_index(pv, value, reject)
    if pv.type == "string":
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            raise reject("expected a string, got %r" % (value,))
        if len(value) > MAX_STRING_VALUE:
            raise reject("at most %d characters, got %d" % (MAX_STRING_VALUE, len(value)))
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise WriteRejected("%s: refused %r: control characters or terminators could inject "
                                "a command" % (pv.name, value))
        return value
    number = _as_number(pv, value, reject)
    if isinstance(number, float) and not math.isfinite(number):
        raise reject("refused %r: not a finite number" % (number,))
    if pv.drive_limits is not None:
        lo, hi = pv.drive_limits
        if not lo <= number <= hi:
            if pv.on_drive_limit == "reject":
                raise reject("%r is outside the drive limits [%g, %g]" % (value, lo, hi))
            number = min(max(number, lo), hi)
            number = int(number) if pv.type == "int" else float(number)
    return number


def limit_alarm(pv, value, previous_status):
    """``(status, severity)`` from the PV's HIHI/HIGH/LOW/LOLO, with HYST as EPICS applies it:
    an alarm already raised at a limit clears only once the value is HYST past it."""
    alarm = pv.alarm
    if alarm is None or pv.type not in ("float", "int") or value is None:
        return "NO_ALARM", "NO_ALARM"
    if isinstance(value, float) and math.isnan(value):
        return "NO_ALARM", "NO_ALARM"
    checks = (("HIHI", alarm.hihi, alarm.hhsv, True), ("LOLO", alarm.lolo, alarm.llsv, False),
              ("HIGH", alarm.high, alarm.hsv, True), ("LOW", alarm.low, alarm.lsv, False))
    for status, limit, severity, upper in checks:
        if limit is None or severity == "NO_ALARM":
            continue
        margin = alarm.hyst if previous_status == status else 0.0
        if (upper and value >= limit - margin) or (not upper and value <= limit + margin):
            return status, severity
    return "NO_ALARM", "NO_ALARM"

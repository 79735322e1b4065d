"""Alarm state shared between channels, and the epics-base rules deciding
when an update raises an alarm (limits) or posts a monitor (deadbands).

Invariants:
- A ChannelAlarm is the one source of status/severity for every ChannelData
  connected to it.  Any change of status, severity, alarm message or the
  acknowledgement fields is published as DBE_ALARM to *all* of them.
- Acknowledgement follows epics-base recGbl/dbAccess: when status or severity
  changes, the severity to acknowledge follows the new severity unless
  transients must be acknowledged and the new severity is lower;
  acknowledging a severity >= the pending one clears it.
- Limit alarms follow the ai record's checkAlarms: HIHI, LOLO, HIGH, LOW are
  tried in that order, limits are inclusive, a limit whose severity is
  NO_ALARM is ignored, and an alarm latched at a limit only clears (or drops
  to a lower level) once the value is more than HYST past that limit.
- Deadbands follow recGblCheckDeadband: post when |value - last posted| >
  deadband, so 0 posts every change and a negative deadband posts always.
- Nothing here touches an event loop: the only await is ChannelData.publish.
"""
import math
import weakref

from ._dbr import (AlarmSeverity, AlarmStatus, ChannelType, DBR_TYPES, SubscriptionType,
                   event_flags)
from ._errors import CaprotoValueError

__all__ = ("ChannelAlarm", "coerce_enum", "exceeds_deadband", "limit_alarm",
           "validate_alarm_fields")

_NO_EVENTS = SubscriptionType(0)


def coerce_enum(enum_cls, value, what):
    """Coerce `value` to `enum_cls`, raising an error that names `what`."""
    try:
        return enum_cls(value)
    except ValueError:
        valid = ", ".join(member.name for member in enum_cls)
        raise CaprotoValueError(
            f"{what}={value!r} is not a valid {enum_cls.__name__} ({valid})"
        ) from None


_FIELD_TYPES = {"status": AlarmStatus, "severity": AlarmSeverity,
                "severity_to_acknowledge": AlarmSeverity}


def validate_alarm_fields(fields):
    """Coerce status/severity fields to their enums, naming any bad one."""
    return {key: (coerce_enum(_FIELD_TYPES[key], value, key)
                  if key in _FIELD_TYPES and value is not None else value)
            for key, value in fields.items()}


class ChannelAlarm:
    """Alarm status, severity and acknowledgement state for one or more channels.

    Several ChannelData instances may share one ChannelAlarm (like records
    sharing an alarm through links); writing it notifies every one of them.
    The fields are read-only properties: change them with ``await write(...)``
    so that subscribers hear about it.
    """

    def __init__(self, *, status=0, severity=0, must_acknowledge_transient=True,
                 severity_to_acknowledge=0, alarm_string="",
                 string_encoding="latin-1"):
        self._channels = weakref.WeakSet()
        self.string_encoding = string_encoding
        self._status = coerce_enum(AlarmStatus, status, "status")
        self._severity = coerce_enum(AlarmSeverity, severity, "severity")
        self._must_acknowledge_transient = bool(must_acknowledge_transient)
        self._severity_to_acknowledge = coerce_enum(
            AlarmSeverity, severity_to_acknowledge, "severity_to_acknowledge")
        self._alarm_string = str(alarm_string)

    status = property(lambda self: self._status, doc="AlarmStatus (STAT)")
    severity = property(lambda self: self._severity, doc="AlarmSeverity (SEVR)")
    must_acknowledge_transient = property(
        lambda self: self._must_acknowledge_transient,
        doc="ACKT: transient alarms stay pending until acknowledged")
    severity_to_acknowledge = property(
        lambda self: self._severity_to_acknowledge,
        doc="ACKS: highest unacknowledged severity")
    alarm_string = property(lambda self: self._alarm_string, doc="AMSG")

    @property
    def channels(self):
        """The ChannelData instances currently connected (a snapshot)."""
        return list(self._channels)

    def connect(self, channel_data):
        self._channels.add(channel_data)

    def disconnect(self, channel_data):
        self._channels.discard(channel_data)

    def __repr__(self):
        return (f"<ChannelAlarm status={self._status.name} "
                f"severity={self._severity.name} "
                f"acks={self._severity_to_acknowledge.name} "
                f"ackt={self._must_acknowledge_transient}>")

    async def read(self, dbr=None):
        """Fill (or create) the DBR_STSACK_STRING metadata structure."""
        if dbr is None:
            dbr = DBR_TYPES[ChannelType.STSACK_STRING]()
        dbr.status = self._status
        dbr.severity = self._severity
        dbr.ackt = int(self._must_acknowledge_transient)
        dbr.acks = self._severity_to_acknowledge
        return dbr

    def _apply(self, status, severity, must_acknowledge_transient,
               severity_to_acknowledge, alarm_string):
        """Change state without publishing; return the DBE bits it fires.

        Every argument is validated before anything changes.
        """
        status, severity, severity_to_acknowledge = validate_alarm_fields(dict(
            status=status, severity=severity,
            severity_to_acknowledge=severity_to_acknowledge)).values()
        before = (self._status, self._severity, self._alarm_string,
                  self._must_acknowledge_transient, self._severity_to_acknowledge)
        if status is not None:
            self._status = status
        if severity is not None:
            self._severity = severity
        if alarm_string is not None:
            self._alarm_string = str(alarm_string)
        if must_acknowledge_transient is not None:
            self._must_acknowledge_transient = bool(must_acknowledge_transient)
            if (not self._must_acknowledge_transient
                    and self._severity_to_acknowledge > self._severity):
                self._severity_to_acknowledge = self._severity
        alarm_changed = before[:3] != (self._status, self._severity, self._alarm_string)
        if severity_to_acknowledge is not None:
            self._severity_to_acknowledge = severity_to_acknowledge
        elif alarm_changed and (not self._must_acknowledge_transient
                                or self._severity >= self._severity_to_acknowledge):
            self._severity_to_acknowledge = self._severity
        after = (self._status, self._severity, self._alarm_string,
                 self._must_acknowledge_transient, self._severity_to_acknowledge)
        return SubscriptionType.DBE_ALARM if after != before else _NO_EVENTS

    async def write(self, *, status=None, severity=None,
                    must_acknowledge_transient=None, severity_to_acknowledge=None,
                    alarm_string=None, flags=0, publish=True, caller=None):
        """Change any of the alarm fields; publish to every connected channel.

        Returns the DBE bits the change fired (DBE_ALARM or nothing) so that
        `caller`, a channel that is publishing anyway, can fold them into its
        own single update instead of being notified twice.
        """
        fired = self._apply(status, severity, must_acknowledge_transient,
                            severity_to_acknowledge, alarm_string)
        flags = event_flags(int(flags) | int(fired))
        if publish and flags:
            for channel in list(self._channels):
                if channel is not caller:
                    await channel.publish(flags)
        return flags

    async def acknowledge(self, severity, *, caller=None):
        """Acknowledge (PUT_ACKS): clears the pending severity if `severity` covers it."""
        severity = coerce_enum(AlarmSeverity, severity, "acknowledged severity")
        if severity >= self._severity_to_acknowledge:
            return await self.write(severity_to_acknowledge=AlarmSeverity.NO_ALARM,
                                    caller=caller)
        return _NO_EVENTS


# Tried in this order, as the ai record's checkAlarms does: the alarm pair
# (HIHI, LOLO), then the warning pair (HIGH, LOW).
_LIMITS = (
    (("HIHI", True, "upper_alarm_limit", "upper_alarm_severity", AlarmStatus.HIHI),
     ("LOLO", False, "lower_alarm_limit", "lower_alarm_severity", AlarmStatus.LOLO)),
    (("HIGH", True, "upper_warning_limit", "upper_warning_severity", AlarmStatus.HIGH),
     ("LOW", False, "lower_warning_limit", "lower_warning_severity", AlarmStatus.LOW)),
)


def limit_alarm(fields, value, latched):
    """Status and severity that `value` earns against the limits in `fields`.

    `fields` maps the limit names, their ``*_severity`` and
    ``alarm_hysteresis``.  A pair of limits (upper, lower) whose values are
    equal is off.  `latched` is what the previous call returned as its third
    element (the ai record's LALM).  Returns ``(status, severity, latched)``,
    or None when both pairs are off (the alarm is then left alone).
    """
    # (Runs on every write to a numeric channel: plain lookups, no formatting.)
    # A pair is on unless its two limits are equal.
    pairs = [pair for pair in _LIMITS if fields[pair[0][2]] != fields[pair[1][2]]]
    if not pairs:
        return None
    hysteresis = fields["alarm_hysteresis"]
    for limits in pairs:
        for name, upper, limit_key, severity_key, status in limits:
            limit, severity = fields[limit_key], fields[severity_key]
            if severity == AlarmSeverity.NO_ALARM:
                continue
            held = latched == (name, limit)
            if upper:
                hit = value >= limit or (held and value >= limit - hysteresis)
            else:
                hit = value <= limit or (held and value <= limit + hysteresis)
            if hit:
                return status, severity, (name, limit)
    return AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM, None


def exceeds_deadband(last_posted, value, deadband):
    """epics-base recGblCheckDeadband: post when |change| > deadband (MDEL/ADEL).

    A change between a finite and a non-finite value (or between different
    non-finite values) always counts; NaN -> NaN never does.
    """
    if last_posted is None:
        return True
    if math.isfinite(last_posted) and math.isfinite(value):
        delta = abs(last_posted - value)
    elif (math.isnan(last_posted) and math.isnan(value)) or last_posted == value:
        delta = 0.0
    else:
        delta = math.inf
    return delta > deadband

"""State and change-of-state alarms of bi, bo, mbbi and mbbo, as epics-base computes them.

Invariants:
- Computed on every processing of the record (each write of VAL, and each
  write of a severity field, which epics-base marks pp(TRUE)), inside the
  record's own update: the value and its alarm reach subscribers in one
  event, DBE_ALARM set when the alarm changed.
- epics-base's recGblSetSevr rule: the first alarm raised wins unless a
  later one is strictly more severe, so STATE (the state's severity, UNSV
  for a value with no state) is tried first, then COS (COSV) when the state
  index differs from LALM.  An alarm of severity NO_ALARM is never raised.
- LALM follows the records' code: bi/bo take the new state whenever it
  changed; mbbi/mbbo only when COS was *not* raised, so their COS alarm
  holds until the value returns to LALM or a state alarm at least as
  severe takes over (what a softIoc does).
- With every state severity and COSV at NO_ALARM, an alarm that IOC code
  set stays; one this module raised (STATE/COS, mbbo's SOFT) is cleared.
- Rewriting an mbbi/mbbo state string with its own text still posts
  DBE_VALUE/DBE_LOG when VAL is that state, as the records' special() does
  (a changed text posts through multibit.py's metadata update).
- An mbbi/mbbo index past FFST (they may hold any 0..65535, multibit.py)
  raises STATE with UNSV; an mbbo with states defined first raises SOFT
  INVALID for it (its convert step cannot find a raw value), so UNSV never
  shows there -- both checked against a softIoc in test_mbb_unsv.py.
"""
from ..._data import ChannelEnum
from ..._dbr import AlarmSeverity, AlarmStatus, SubscriptionType
from .multibit import UnnamedStates

__all__ = ("StateAlarms", "state_index")

_SEVERITIES = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")
_OURS = (AlarmStatus.STATE, AlarmStatus.COS)


def state_index(data, value=None):
    """The state number of `value` (default: VAL): its index among the state
    strings, or the index itself for an unnamed state an mbbi/mbbo holds
    (records/multibit.py); None for a value that is no state.  A ChannelEnum
    without state strings holds "": 0."""
    value = data.value if value is None else value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    strings = data.enum_strings
    if not strings:
        return 0
    return strings.index(value) if value in strings else None


class StateAlarms:
    """Mixin for RecordFields: ``state_severity_fields`` name the severity
    field of each state (ZSV, OSV / ZRSV..FFSV), ``unknown_severity_field``
    the one for an index past them, ``cos_sticks`` picks the mbbi/mbbo LALM
    rule, ``invalid_past_slots`` the mbbo rule that an index past FFST with
    states defined cannot be output (SOFT, INVALID, raised before STATE)."""

    state_severity_fields = ()
    unknown_severity_field = None
    cos_sticks = False
    invalid_past_slots = False

    def __init__(self, data):
        super().__init__(data)
        self._last_alarmed = None
        self._last_raised = None          # the status state_alarm last raised
        if isinstance(data, ChannelEnum):
            self._last_alarmed = state_index(data)
            # ChannelData.write asks _limit_alarm(value) for the alarm a
            # value earns, folding it into the same update; a state record's
            # alarm comes from its severity fields instead of limits.
            data._limit_alarm = self.state_alarm

    def _severity(self, name):
        return AlarmSeverity(_SEVERITIES.index(self.field_value(name)))

    def _state_severity(self, index):
        if index is None or index >= len(self.state_severity_fields):
            return self._severity(self.unknown_severity_field) \
                if self.unknown_severity_field else AlarmSeverity.NO_ALARM
        return self._severity(self.state_severity_fields[index])

    def state_alarm(self, value):
        """The alarm fields `value` earns ({} to leave IOC code's alarm alone)."""
        index = state_index(self.data, value)
        status, severity = AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM
        if (self.invalid_past_slots and index is not None
                and index >= len(self.state_severity_fields) and self.states_defined()):
            status, severity = AlarmStatus.SOFT, AlarmSeverity.INVALID_ALARM
        state_severity = self._state_severity(index)
        if state_severity > severity:
            status, severity = AlarmStatus.STATE, state_severity
        if index != self._last_alarmed:
            cos = self._severity("COSV")
            raised = cos > severity
            if raised:
                status, severity = AlarmStatus.COS, cos
            if not (raised and self.cos_sticks):
                self._last_alarmed = index
        configured = any(self._severity(name) for name in self._severity_names())
        current = self.data.alarm.status
        if (not configured and severity == AlarmSeverity.NO_ALARM
                and current not in _OURS and current != self._last_raised):
            return {}
        self._last_raised = status if severity else None
        return {"status": status, "severity": severity, "alarm_string": ""}

    def states_defined(self):
        """epics-base's SDEF: some state has a string or a nonzero value."""
        return any(self.field_value(f"{name[:2]}ST") or self.field_value(f"{name[:2]}VL")
                   for name in self.state_severity_fields)

    def _severity_names(self):
        names = list(self.state_severity_fields) + ["COSV"]
        if self.unknown_severity_field:
            names.append(self.unknown_severity_field)
        return names

    async def field_written(self, name, value):
        """ZRST..FFST rewritten unchanged: DBE_VALUE/LOG if VAL is that state."""
        mirror = self._defs[name].mirror
        slot = mirror[1] if isinstance(mirror, tuple) and mirror[0] == "enum" else None
        rewritten = slot is not None and self.fields[name].value == value
        value = await super().field_written(name, value)
        if (rewritten and isinstance(self.data, UnnamedStates)
                and state_index(self.data) == slot):
            await self.data.publish(SubscriptionType.DBE_VALUE | SubscriptionType.DBE_LOG)
        return value

    async def sync(self, flags):
        await super().sync(flags)
        lalm = self.fields.get("LALM")
        if lalm is not None and self._last_alarmed is not None \
                and lalm.value != self._last_alarmed:
            await lalm.write(self._last_alarmed, verify_value=False)

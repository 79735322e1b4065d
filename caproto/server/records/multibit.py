"""mbbi/mbbo VAL: any state index 0..65535, named or not, written by name or number.

Invariants:
- VAL is a state index.  It is held as its state string when that string
  names it unambiguously (not empty, and the first state with that text);
  any other index -- no string, an empty slot below the last named state, a
  repeated name, past FFST -- is held as the ``int``, so an index never
  drifts to another state with the same text.  A plain ChannelEnum (no
  ``record=``) still refuses unnamed indices: this mixin is only put on
  mbbi/mbbo data (``record_data_class``).
- As epics-base serves VAL: DBR_STRING gives the slot's string ("" for an
  empty slot 0..15) and "Illegal Value" above 15; the numeric types give the
  index; CTRL/GR enum strings are the states up to the last named one.
  Indices outside 0..65535 (epicsEnum16) are refused with the value named.
- A client's DBR_STRING write is resolved as a softIoc resolves it
  (``state_for_text``): with states defined (SDEF), the first of the 16
  slots whose string is the text -- so "" picks the first empty slot --
  else the text as a state number below the number of strings.  Anything
  else is a failed put (CaprotoValueError -> ECA_PUTFAIL) naming the text,
  and changes nothing.
- Naming or unnaming a state (ZRST..FFST) keeps the index: a held 5 becomes
  "five" when FVST is written, and 5 again when FVST is cleared.  DBE_VALUE
  and DBE_LOG fire with the DBE_PROPERTY when the text of the state held
  changed (state_alarms.py adds the rewrite of unchanged text).
- Alarms (STATE with the state's severity, UNSV above 15) are computed by
  state_alarms.py from ``state_index``, which gives the index either way.
"""
from ..._convert import C_SPACE, TO_WIRE, match_integer
from ..._data import ChannelEnum
from ..._dbr import ChannelType, SubscriptionType, channel_type, native_type

__all__ = ("UnnamedStates", "MAX_STATE_INDEX", "STATE_SLOTS", "parse_state_number")

MAX_STATE_INDEX = 65535       # VAL is an epicsEnum16
STATE_SLOTS = 16              # ZRST..FFST
_BEYOND_SLOTS = "Illegal Value"
_VALUE_AND_LOG = SubscriptionType.DBE_VALUE | SubscriptionType.DBE_LOG

_ULONG = 1 << 64
# Record types whose VAL ignores text after the number ("1abc" is state 1),
# as a softIoc's mbbo does; its mbbi refuses it (tests/server/test_multibit_strings.py).
_TRAILING_TEXT_IGNORED = frozenset({"mbbo"})


def _as_index(value):
    """`value` as a state index when it is integer-like (not bool), else None."""
    if hasattr(value, "__index__") and not isinstance(value, bool):
        return value.__index__()
    return None


def parse_state_number(text, *, trailing_text=False):
    """The state number `text` gives as epicsParseUInt16 reads it, or None.

    strtoul with base 0 on a 64-bit unsigned long: leading C whitespace,
    a sign, 0x hex or 0 octal; a negative number wraps modulo 2**64, and
    epicsParseUInt16 accepts what then lies within 0xffff of either end:
    "-1" is 65535, "-65535" is 1, "70000" and "-70000" are refused.  Text after the number other than
    whitespace makes it None unless `trailing_text`.
    """
    matched = match_integer(text)
    if matched is None:
        return None
    number, end = matched
    if not trailing_text and text[end:].strip(C_SPACE):
        return None
    if abs(number) >= _ULONG:
        return None                                   # strtoul: ERANGE
    number %= _ULONG                                  # "-1" wraps as strtoul's does
    if MAX_STATE_INDEX < number <= _ULONG - 1 - MAX_STATE_INDEX:
        return None                                   # S_stdlib_overflow
    return number & MAX_STATE_INDEX


class UnnamedStates:
    """Mixin for a ChannelEnum class serving an mbbi/mbbo VAL."""

    applies_to = ChannelEnum

    def _held(self, index):
        """How state `index` is held: its name when that is unambiguous, else the int."""
        strings = self._metadata["enum_strings"]
        if index < len(strings) and strings[index] and strings.index(strings[index]) == index:
            return strings[index]
        return index

    def preprocess_value(self, value):
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        index = _as_index(value)
        if index is None:
            name = super().preprocess_value(value)
            strings = self._metadata["enum_strings"]
            return self._held(strings.index(name)) if name in strings else name
        if not 0 <= index <= MAX_STATE_INDEX:
            raise self._error(f"state index {index!r} is out of range 0..{MAX_STATE_INDEX}")
        return self._held(index)

    def _native_values(self):
        if isinstance(self._value, int):
            return [self._value]
        return super()._native_values()

    def _slot_text(self, index, strings=None):
        """What DBR_STRING shows for state `index`."""
        strings = self._metadata["enum_strings"] if strings is None else strings
        if index < len(strings):
            return strings[index]
        return "" if index < STATE_SLOTS else _BEYOND_SLOTS

    def _read_values(self, native):
        if isinstance(self._value, int) and native == ChannelType.STRING:
            text = self._slot_text(self._value)
            return self._convert([text], ChannelType.STRING, ChannelType.STRING, TO_WIRE)
        return super()._read_values(native)

    def _apply_metadata(self, metadata):
        """New state strings keep the index, named or not."""
        if "enum_strings" not in metadata:
            return super()._apply_metadata(metadata)
        index = self.state_index()
        old = self._metadata["enum_strings"]
        flags = super()._apply_metadata(metadata)
        self._value = self._held(index)
        if self._slot_text(index, old) != self._slot_text(index):
            flags |= _VALUE_AND_LOG
        return flags

    def state_index(self):
        """The index of the state held (0 when there are no states)."""
        if isinstance(self._value, int):
            return self._value
        strings = self._metadata["enum_strings"]
        return strings.index(self._value) if self._value in strings else 0

    def state_for_text(self, text):
        """The state a client's DBR_STRING `text` selects, as a softIoc picks it
        (see the module docstring); CaprotoValueError naming it if none."""
        strings = self._metadata["enum_strings"]
        record = self.field_inst
        if record.states_defined():
            slots = list(strings) + [""] * (STATE_SLOTS - len(strings))
            if text in slots:
                return slots.index(text)
        number = parse_state_number(
            text, trailing_text=record.record_type in _TRAILING_TEXT_IGNORED)
        if number is not None and number < len(strings):
            return number
        raise self._error(f"{self.pvname}: {text!r} is neither one of the states "
                          f"{list(strings)!r} nor a state number below {len(strings)}")

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        if native_type(channel_type(data_type)) != ChannelType.STRING or len(data) != 1:
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        text, = self._convert(data, ChannelType.STRING, ChannelType.STRING)
        return await self.write(self.state_for_text(text), flags=flags)

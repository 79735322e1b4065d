"""mbbi/mbbo VAL: any state index 0..65535, whether or not the state has a name.

Invariants:
- A named state is held as its string, as for any ChannelEnum; an index
  with no string (past the last named state) is held as that ``int``.  A
  plain ChannelEnum (no ``record=``) still refuses such an index: this
  mixin is only put on mbbi/mbbo data (``record_data_class``).
- As epics-base's mbbi/mbbo serve VAL: DBR_STRING of an unnamed index is
  "" for 0..15 (the empty ZRST..FFST slot) and "Illegal Value" above; the
  numeric types give the index itself; CTRL/GR enum strings stay the named
  states.  Indices outside 0..65535 (epicsEnum16) are refused with an error
  naming the value.
- Naming or unnaming a state (writing ZRST..FFST) keeps the index: a held
  5 becomes "five" when FVST is written, and 5 again when FVST is cleared.
- Alarms (STATE with the state's severity, UNSV above 15) are computed by
  state_alarms.py from ``state_index``, which gives the index either way.
"""
from ..._convert import TO_WIRE
from ..._data import ChannelEnum
from ..._dbr import ChannelType

__all__ = ("UnnamedStates", "MAX_STATE_INDEX", "STATE_SLOTS")

MAX_STATE_INDEX = 65535       # VAL is an epicsEnum16
STATE_SLOTS = 16              # ZRST..FFST
_BEYOND_SLOTS = "Illegal Value"


def _as_index(value):
    """`value` as a state index when it is integer-like (not bool), else None."""
    if hasattr(value, "__index__") and not isinstance(value, bool):
        return value.__index__()
    return None


class UnnamedStates:
    """Mixin for a ChannelEnum class serving an mbbi/mbbo VAL."""

    applies_to = ChannelEnum

    def preprocess_value(self, value):
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        index = _as_index(value)
        if index is not None and index >= len(self._metadata["enum_strings"]):
            if not 0 <= index <= MAX_STATE_INDEX:
                raise self._error(f"state index {index!r} is out of range 0.."
                                  f"{MAX_STATE_INDEX}")
            return index
        return super().preprocess_value(value)

    def _native_values(self):
        if isinstance(self._value, int):
            return [self._value]
        return super()._native_values()

    def _read_values(self, native):
        if isinstance(self._value, int) and native == ChannelType.STRING:
            text = "" if self._value < STATE_SLOTS else _BEYOND_SLOTS
            return self._convert([text], ChannelType.STRING, ChannelType.STRING, TO_WIRE)
        return super()._read_values(native)

    def _apply_metadata(self, metadata):
        """New state strings keep the index, named or not."""
        if "enum_strings" not in metadata:
            return super()._apply_metadata(metadata)
        index = self.state_index()
        flags = super()._apply_metadata(metadata)
        strings = self._metadata["enum_strings"]
        self._value = strings[index] if index < len(strings) else index
        return flags

    def state_index(self):
        """The index of the state held (0 when there are no states)."""
        if isinstance(self._value, int):
            return self._value
        strings = self._metadata["enum_strings"]
        return strings.index(self._value) if self._value in strings else 0

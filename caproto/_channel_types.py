"""The typed ChannelData classes: numbers, enums and text.

Invariants:
- ``value`` always holds the channel's Python form: a number (or a list /
  array.array / numpy array of at most ``max_length`` numbers) for the
  ChannelNumeric family, a ``str`` for ChannelEnum, ChannelChar and
  ChannelString (a list of ``str`` for string arrays).  ``preprocess_value``
  coerces every write to that form and checks type, max_length, enum
  strings and text sizes; ChannelNumeric's ``verify_value`` checks the
  control limits.
- Metadata lives in ``_metadata`` and is validated field by field
  (``_check_metadata``) before any of it is stored; the public attributes
  (``units``, ``precision``, limits, ``enum_strings``) are read-only views.
- These classes only say *what* a value is; reading, writing, publishing and
  subscriptions are ChannelData's (``_channel_data``), written once.
"""
from ._alarm import coerce_enum, exceeds_deadband, limit_alarm
from ._channel_data import _VALUE_AND_LOG, ChannelData, _is_sequence
from ._constants import (MAX_ENUM_STATES, MAX_ENUM_STRING_SIZE, MAX_STRING_SIZE,
                         MAX_UNITS_SIZE)
from ._convert import char_array_to_string, string_to_char_array, truncate_string
from ._dbr import (AlarmSeverity, ChannelType, SubscriptionType, channel_type,
                   event_flags, native_type)
from ._errors import CannotExceedLimits, CaprotoTypeError, CaprotoValueError

__all__ = ("ChannelNumeric", "ChannelDouble", "ChannelFloat", "ChannelInteger",
           "ChannelShort", "ChannelByte", "ChannelChar", "ChannelEnum", "ChannelString")

_DBE = SubscriptionType
_LIMIT_FIELDS = ("upper_disp_limit", "lower_disp_limit", "upper_alarm_limit",
                 "upper_warning_limit", "lower_warning_limit", "lower_alarm_limit",
                 "upper_ctrl_limit", "lower_ctrl_limit")


def _check_text(text, encoding, max_bytes, what):
    """Encode `text`, raising an error naming it when it needs more than `max_bytes`."""
    if isinstance(text, bytes):
        text = text.decode(encoding)
    if not isinstance(text, str):
        raise CaprotoTypeError(f"{what} must be a str, not {text!r}")
    encoded = text.encode(encoding)
    if len(encoded) > max_bytes:
        raise CaprotoValueError(
            f"{what} {text!r} is {len(encoded)} bytes encoded as {encoding}; "
            f"Channel Access allows at most {max_bytes}")
    return text


def _metadata_property(name, doc=None):
    return property(lambda self: self._metadata[name], doc=doc)


class ChannelNumeric(ChannelData):
    """Numbers with units, display/alarm/control limits, deadbands and limit alarms.

    Limits come in pairs (upper, lower); a pair whose two limits are equal
    (the default 0, 0) is off.  Control limits reject writes outside them
    (CannotExceedLimits).  Alarm limits (HIHI/LOLO, default MAJOR) and warning
    limits (HIGH/LOW, default MINOR) set the alarm on every write, with
    ``alarm_hysteresis`` (HYST) as the ai record does; a severity of
    NO_ALARM switches one limit off.  ``value_atol`` (MDEL) and ``log_atol``
    (ADEL) are the monitor and archive deadbands.
    """

    _python_type = float
    _int_range = None
    _property_fields = ("units",) + _LIMIT_FIELDS
    _config_fields = ("value_atol", "log_atol", "upper_alarm_severity",
                      "upper_warning_severity", "lower_warning_severity",
                      "lower_alarm_severity", "alarm_hysteresis")

    def __init__(self, *, units="", upper_disp_limit=0, lower_disp_limit=0,
                 upper_alarm_limit=0, upper_warning_limit=0, lower_warning_limit=0,
                 lower_alarm_limit=0, upper_ctrl_limit=0, lower_ctrl_limit=0,
                 value_atol=0.0, log_atol=0.0,
                 upper_alarm_severity=AlarmSeverity.MAJOR_ALARM,
                 upper_warning_severity=AlarmSeverity.MINOR_ALARM,
                 lower_warning_severity=AlarmSeverity.MINOR_ALARM,
                 lower_alarm_severity=AlarmSeverity.MAJOR_ALARM,
                 alarm_hysteresis=0.0, **kwargs):
        fields = {key: value for key, value in locals().items()
                  if key in self._property_fields + self._config_fields}
        own_alarm = kwargs.get("alarm") is None
        super().__init__(**kwargs)
        self._apply_metadata(fields)
        self._latched_limit = None
        last = None if _is_sequence(self._value) else self._value
        self._last_posted = dict.fromkeys((_DBE.DBE_VALUE, _DBE.DBE_LOG), last)
        initial = self._limit_alarm(self._value)
        if initial and own_alarm:     # quietly: nobody can have subscribed yet
            self.alarm._apply(initial["status"], initial["severity"], None, None, None)

    def _check_metadata(self, key, value):
        if key == "units":
            return _check_text(value, self.string_encoding, MAX_UNITS_SIZE - 1,
                               f"{type(self).__name__}: units")
        if key == "precision":
            if not isinstance(value, int) or not 0 <= value <= 32767:
                raise self._error(f"precision must be an int in 0..32767, not {value!r}")
            return value
        if key.endswith("_severity"):
            return coerce_enum(AlarmSeverity, value, f"{type(self).__name__}: {key}")
        try:
            if key in _LIMIT_FIELDS and self._python_type is int:
                return int(value)     # integer records keep integer limits
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise self._error(f"{key} must be a number, not {value!r}") from None

    def _coerce_number(self, value):
        try:
            if self._python_type is int:
                number = int(float(value)) if isinstance(value, (str, bytes)) else int(value)
            else:
                number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise self._error(f"value {value!r} is not a number "
                              f"({self.data_type.name})") from None
        if self._int_range and not self._int_range[0] <= number <= self._int_range[1]:
            low, high = self._int_range
            raise self._error(f"value {value!r} does not fit {self.data_type.name} "
                              f"({low}..{high})")
        return number

    def preprocess_value(self, value):
        if _is_sequence(value):
            if self._max_length == 1 and len(value) == 1:
                value = value[0]
            elif isinstance(value, (list, tuple)):
                value = [self._coerce_number(item) for item in value]
        elif self._max_length > 1:
            value = [value]
        if not _is_sequence(value):
            value = self._coerce_number(value)
        return super().preprocess_value(value)

    def _limit_pair(self, upper, lower):
        """The (upper, lower) limit values, or None when the pair is off (equal)."""
        high, low = self._metadata[upper], self._metadata[lower]
        return None if high == low else (high, low)

    async def verify_value(self, value):
        """Reject values outside the control limits (CannotExceedLimits)."""
        limits = self._limit_pair("upper_ctrl_limit", "lower_ctrl_limit")
        if limits is not None and self.calculate_length(value):
            high, low = limits
            if hasattr(value, "min"):           # numpy: no per-element Python loop
                smallest, largest = value.min(), value.max()
            else:
                items = value if _is_sequence(value) else (value,)
                smallest, largest = min(items), max(items)
            if largest > high or smallest < low:
                bad = largest if largest > high else smallest
                raise CannotExceedLimits(
                    f"{type(self).__name__}: value {bad!r} is outside the control "
                    f"limits [{low}, {high}]")
        return value

    def _value_flags(self, old, new):
        if _is_sequence(new):
            return _VALUE_AND_LOG
        bits = 0
        for bit, deadband in ((_DBE.DBE_VALUE, self._metadata["value_atol"]),
                              (_DBE.DBE_LOG, self._metadata["log_atol"])):
            if exceeds_deadband(self._last_posted[bit], new, deadband):
                self._last_posted[bit] = new
                bits |= int(bit)
        return event_flags(bits)

    def _limit_alarm(self, value):
        if _is_sequence(value):
            return {}
        result = limit_alarm(self._metadata, value, self._latched_limit)
        if result is None:
            return {}
        status, severity, self._latched_limit = result
        return {"status": status, "severity": severity}


# Read-only views of ChannelNumeric metadata; change them with write_metadata.
for _name, _doc in {
        "units": "EGU (at most 7 bytes)", "value_atol": "MDEL", "log_atol": "ADEL",
        "alarm_hysteresis": "HYST", "upper_alarm_severity": "HHSV",
        "upper_warning_severity": "HSV", "lower_warning_severity": "LSV",
        "lower_alarm_severity": "LLSV", "upper_disp_limit": "HOPR",
        "lower_disp_limit": "LOPR", "upper_alarm_limit": "HIHI",
        "upper_warning_limit": "HIGH", "lower_warning_limit": "LOW",
        "lower_alarm_limit": "LOLO", "upper_ctrl_limit": "DRVH",
        "lower_ctrl_limit": "DRVL"}.items():
    setattr(ChannelNumeric, _name, _metadata_property(_name, _doc))


class _Precision:
    """Mixin: floating-point channels carry a display precision (PREC)."""

    _property_fields = ChannelNumeric._property_fields + ("precision",)

    def __init__(self, *, precision=0, **kwargs):
        super().__init__(**kwargs)
        self._apply_metadata({"precision": precision})

    precision = _metadata_property("precision", "Display precision (PREC).")


class ChannelDouble(_Precision, ChannelNumeric):
    data_type = ChannelType.DOUBLE
    default_value = 0.0


class ChannelFloat(_Precision, ChannelNumeric):
    data_type = ChannelType.FLOAT
    default_value = 0.0


class ChannelInteger(ChannelNumeric):
    data_type = ChannelType.LONG
    _python_type = int
    _int_range = (-2 ** 31, 2 ** 31 - 1)


class ChannelShort(ChannelNumeric):
    data_type = ChannelType.INT
    _python_type = int
    _int_range = (-2 ** 15, 2 ** 15 - 1)


class ChannelByte(ChannelNumeric):
    """CHAR as numbers (0..255); bytes values are arrays of them."""

    data_type = ChannelType.CHAR
    _python_type = int
    _int_range = (0, 255)

    def preprocess_value(self, value):
        if isinstance(value, (bytes, bytearray)) and self._max_length > 1:
            return ChannelData.preprocess_value(self, bytes(value))
        return super().preprocess_value(value)

    def _native_values(self):
        if isinstance(self._value, bytes):
            return bytearray(self._value)     # bytes would read as one string
        return super()._native_values()

    def calculate_length(self, value):
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        return super().calculate_length(value)


class ChannelEnum(ChannelData):
    """An enumerated value: one of at most 16 strings of at most 25 bytes.

    The value is the state's string; writes may also give its index.
    """

    data_type = ChannelType.ENUM
    _property_fields = ("enum_strings",)

    def __init__(self, *, enum_strings=None, **kwargs):
        self.string_encoding = kwargs.get("string_encoding", "latin-1")
        self._metadata = {}
        self._metadata["enum_strings"] = self._check_metadata("enum_strings",
                                                              enum_strings or ())
        if kwargs.get("value") is None:
            kwargs["value"] = self._metadata["enum_strings"][0] if enum_strings else ""
        super().__init__(**kwargs)

    enum_strings = _metadata_property("enum_strings", "The state strings, index order.")

    def _check_metadata(self, key, value):
        if key != "enum_strings":
            return value
        if isinstance(value, (str, bytes)):
            raise self._error(f"enum_strings must be a sequence of strings, not {value!r}")
        strings = tuple(
            _check_text(text, self.string_encoding, MAX_ENUM_STRING_SIZE - 1,
                        f"{type(self).__name__}: enum string #{index}")
            for index, text in enumerate(value))
        if len(strings) > MAX_ENUM_STATES:
            raise self._error(f"{len(strings)} enum_strings given; Channel Access "
                              f"allows at most {MAX_ENUM_STATES}: {list(strings)!r}")
        return strings

    def _apply_metadata(self, metadata):
        """New state strings keep the state index, as an mbbi's VAL stays put."""
        old = self._metadata["enum_strings"]
        index = old.index(self._value) if self._value in old else 0
        flags = super()._apply_metadata(metadata)
        new = self._metadata["enum_strings"]
        if new != old:
            self._value = new[index] if index < len(new) else (new[0] if new else "")
        return flags

    def preprocess_value(self, value):
        strings = self._metadata["enum_strings"]
        if _is_sequence(value) and len(value) == 1:
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode(self.string_encoding)
        if hasattr(value, "__index__") and not isinstance(value, bool):
            value = value.__index__()
            if not 0 <= value < len(strings):
                raise self._error(f"enum index {value!r} is out of range; "
                                  f"states are {list(strings)!r}")
            return strings[value]
        if value == "" and not strings:
            return value
        if value not in strings:
            raise self._error(f"{value!r} is not one of the enum strings "
                              f"{list(strings)!r}")
        return value

    def _native_values(self):
        strings = self._metadata["enum_strings"]
        return [strings.index(self._value) if self._value in strings else 0]

    def _from_native(self, values):
        return values[0]


class _LongString:
    """Mixin: text that CHAR clients read and write as a NUL-terminated array."""

    def _long_text(self):
        return self._value if isinstance(self._value, str) else self._value[0]

    def _read_values(self, native):
        if native == ChannelType.CHAR:
            raw = string_to_char_array(self._long_text(), self.string_encoding)
            return self._convert(bytearray(raw[:self._long_string_bytes()]),
                                 ChannelType.CHAR, ChannelType.CHAR)
        return super()._read_values(native)

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        native = native_type(channel_type(data_type))
        if native == ChannelType.CHAR:
            text = char_array_to_string(data, self.string_encoding)
            return await self.write(text, flags=flags)
        return await super().write_from_dbr(data, data_type, metadata, flags=flags)


class ChannelString(_LongString, ChannelData):
    """DBR_STRING text (40-byte elements), or a list of them.

    ``long_string_max_length`` bounds the value when clients read or write
    it as a CHAR array (the ``$`` long-string form); such values may exceed
    39 bytes, and DBR_STRING readers then see the first 39.
    """

    data_type = ChannelType.STRING
    default_value = ""

    def __init__(self, *, long_string_max_length=81, **kwargs):
        if not isinstance(long_string_max_length, int) or long_string_max_length < 1:
            raise CaprotoValueError(f"ChannelString: long_string_max_length must be "
                                    f"a positive int, not {long_string_max_length!r}")
        self.long_string_max_length = long_string_max_length
        super().__init__(**kwargs)

    def _long_string_bytes(self):
        return self.long_string_max_length

    def _max_text_bytes(self):
        if self._max_length == 1:
            return max(MAX_STRING_SIZE, self.long_string_max_length) - 1
        return MAX_STRING_SIZE - 1

    def preprocess_value(self, value):
        if _is_sequence(value) and self._max_length == 1 and len(value) == 1:
            value = value[0]
        max_bytes = self._max_text_bytes()
        if _is_sequence(value):
            value = [_check_text(item, self.string_encoding, max_bytes,
                                 f"ChannelString: element #{index}")
                     for index, item in enumerate(value)]
        else:
            value = _check_text(value, self.string_encoding, max_bytes,
                                "ChannelString: value")
        return super().preprocess_value(value)

    def _native_values(self):
        items = self._value if _is_sequence(self._value) else [self._value]
        return [truncate_string(item, self.string_encoding) for item in items]

    def _from_native(self, values):
        text = [item.decode(self.string_encoding) if isinstance(item, bytes) else item
                for item in values]
        return super()._from_native(text)


class ChannelChar(_LongString, ChannelData):
    """A CHAR array presented as one long string (a waveform of FTVL=CHAR).

    ``max_length`` counts bytes (default 256, or the initial value's length
    if longer); the value is a str.
    """

    data_type = ChannelType.CHAR
    default_value = ""

    def __init__(self, *, max_length=None, **kwargs):
        encoding = kwargs.get("string_encoding", "latin-1")
        if max_length is None:
            initial = kwargs.get("value") or ""
            if isinstance(initial, str):
                initial = initial.encode(encoding)
            max_length = max(256, len(initial) if isinstance(initial, bytes) else 0)
        super().__init__(max_length=max_length, **kwargs)

    def calculate_length(self, value):
        if isinstance(value, str):
            return len(value.encode(self.string_encoding))
        return len(value) if _is_sequence(value) else 1

    def preprocess_value(self, value):
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).split(b"\0", 1)[0].decode(self.string_encoding)
        if not isinstance(value, str):
            raise self._error(f"value must be a str, not {value!r}", CaprotoTypeError)
        return super().preprocess_value(value)

    def _long_string_bytes(self):
        return self._max_length

    def _read_values(self, native):
        if native == ChannelType.STRING:       # the text itself, cut to 39 bytes
            return [truncate_string(self._value, self.string_encoding)]
        return super()._read_values(native)

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        if native_type(ChannelType(data_type)) == ChannelType.STRING:
            return await self.write(data[0] if _is_sequence(data) else data, flags=flags)
        return await super().write_from_dbr(data, data_type, metadata, flags=flags)

    def _native_values(self):
        return bytearray(self._value.encode(self.string_encoding))

    def _from_native(self, values):
        return bytes(values)

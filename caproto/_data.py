"""ChannelData: the values a server serves and IOC code manipulates.

Invariants:
- Loop-free: async methods await only other ChannelData/ChannelAlarm methods
  and the ``queue.put`` handed to ``subscribe``; nothing imports an event loop.
- ``value`` always holds the channel's Python form: a number (or a list /
  array.array / numpy array of at most ``max_length`` numbers) for numeric
  channels, a ``str`` for ChannelEnum, ChannelChar and ChannelString (a list
  of ``str`` for string arrays).  Every write is coerced to that form and
  checked (type, max_length, enum strings, control limits) before anything
  is stored: a rejected write changes nothing and names the value.
- Wire conversion happens only in ``_convert`` (``convert_values`` for
  values, ``build_metadata`` for DBR structures).  ``read`` builds a fresh
  metadata structure per call, so queued updates are never mutated later.
- Each update computes its DBE bits once (VALUE / LOG from the MDEL / ADEL
  deadbands, ALARM on an alarm change, PROPERTY on a metadata change), reads
  once per distinct requested data type, and reaches a subscriber's queue
  only when the subscription's mask intersects those bits.
"""
import reprlib
import time
from collections import namedtuple

from ._alarm import (ChannelAlarm, coerce_enum, exceeds_deadband, limit_alarm,
                     validate_alarm_fields)
from ._constants import (MAX_ENUM_STATES, MAX_ENUM_STRING_SIZE, MAX_STRING_SIZE,
                         MAX_UNITS_SIZE)
from ._convert import (TO_WIRE, build_metadata, char_array_to_string, convert_values,
                       string_to_char_array, truncate_string)
from ._dbr import (AccessRights, AlarmSeverity, ChannelType, SubscriptionType,
                   channel_type, event_flags, native_type, timestamp_to_epics)
from ._errors import (CannotExceedLimits, CaprotoConversionError, CaprotoError,
                      CaprotoTypeError, CaprotoValueError, ChannelReadError,
                      ChannelWriteError)

__all__ = (
    "ChannelAlarm", "ChannelData", "ChannelNumeric", "ChannelDouble", "ChannelFloat",
    "ChannelInteger", "ChannelShort", "ChannelByte", "ChannelChar", "ChannelEnum",
    "ChannelString", "SkipWrite", "SubscriptionSpec", "SubscriptionUpdate",
)

_DBE = SubscriptionType
_VALUE_AND_LOG = _DBE.DBE_VALUE | _DBE.DBE_LOG
_NO_EVENTS = _DBE(0)    # bits are ORed as ints, made flags once (IntFlag `|` is slow)
_SCALAR_TYPES = frozenset({float, int, bool, str, bytes, bytearray})
_READ_WRITE = AccessRights.READ | AccessRights.WRITE
_ALARM_FIELDS = ("status", "severity", "alarm_string", "must_acknowledge_transient",
                 "severity_to_acknowledge")
_LIMIT_FIELDS = ("upper_disp_limit", "lower_disp_limit", "upper_alarm_limit",
                 "upper_warning_limit", "lower_warning_limit", "lower_alarm_limit",
                 "upper_ctrl_limit", "lower_ctrl_limit")


class SkipWrite(CaprotoError):
    """Raise from ``verify_value`` to drop a write silently (nothing stored or published)."""


SubscriptionSpec = namedtuple("SubscriptionSpec",
                              "db_entry data_type mask channel_filter data_count",
                              defaults=(None, 0))
SubscriptionSpec.__doc__ = """What one subscription asked for (hashable).

ChannelData uses only ``data_type`` and ``mask``; ``channel_filter`` and
``data_count`` are for the server."""

SubscriptionUpdate = namedtuple("SubscriptionUpdate",
                                "sub_specs metadata values flags subs")
SubscriptionUpdate.__doc__ = """What ``subscribe``/``publish`` put on a queue.

``sub_specs``: the specs this update matches (all of one data type);
``metadata, values``: ``read(data_type)`` output; ``flags``: the DBE bits the
change fired (the subscription's own mask for the initial update); ``subs``:
the ``sub`` objects registered for those specs on this queue."""


def _is_sequence(value):
    """Arrays are anything sized except text and 0-d numpy arrays."""
    if type(value) in _SCALAR_TYPES or isinstance(value, (str, bytes, bytearray)):
        return False
    return hasattr(value, "__len__") and getattr(value, "ndim", 1) != 0


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


class ChannelData:
    """Value, timestamp and alarm of one channel, plus its subscribers.

    Subclasses set ``data_type`` (the native ChannelType) and override
    ``preprocess_value`` (coercion + invariants), ``verify_value`` (policy
    hook, overridable by IOC code) and ``_native_values`` / ``_from_native`` /
    ``_read_values`` (the bridge to ``convert_values``).
    """

    data_type = ChannelType.LONG
    default_value = 0
    read_only = False
    _property_fields = ()     # metadata in GR/CTRL structures: changes fire DBE_PROPERTY
    _config_fields = ()       # server-side settings: stored, never published

    def __init__(self, *, alarm=None, value=None, timestamp=None, max_length=None,
                 string_encoding="latin-1", reported_record_type="caproto",
                 read_only=None):
        self.string_encoding = string_encoding
        self.reported_record_type = reported_record_type
        if read_only is not None:
            self.read_only = bool(read_only)
        self._queues = {}              # queue -> {sub_spec: {sub: None}}
        # Subclasses whose value checks need metadata (enum strings) set it first.
        self.__dict__.setdefault("_metadata", {})
        if value is None:
            value = self.default_value
        if max_length is None:
            max_length = max(1, self.calculate_length(value))
        if not isinstance(max_length, int) or max_length < 1:
            raise CaprotoValueError(
                f"{type(self).__name__}: max_length must be a positive int, "
                f"not {max_length!r}")
        self._max_length = max_length
        self._value = self.preprocess_value(value)
        self._timestamp = time.time() if timestamp is None else float(timestamp)
        self.alarm = ChannelAlarm(string_encoding=string_encoding) if alarm is None else alarm
        self.alarm.connect(self)

    # -- state ------------------------------------------------------------------

    value = property(lambda self: self._value, doc="The value, in its Python form.")
    timestamp = property(lambda self: self._timestamp, doc="POSIX time of the last write.")
    max_length = property(lambda self: self._max_length,
                          doc="Most elements the value may hold (the native count).")

    @property
    def epics_timestamp(self):
        """The timestamp as (seconds, nanoseconds) since the EPICS epoch."""
        return timestamp_to_epics(self._timestamp)

    @property
    def status(self):
        return self.alarm.status

    @property
    def severity(self):
        return self.alarm.severity

    def calculate_length(self, value):
        """Element count of `value` as it goes on the wire (1 for scalars)."""
        return len(value) if _is_sequence(value) else 1

    def __len__(self):
        return self.calculate_length(self._value)

    def __repr__(self):
        return f"<{type(self).__name__} value={self._value!r} alarm={self.alarm!r}>"

    def _error(self, message, cls=CaprotoValueError):
        return cls(f"{type(self).__name__}: {message}")

    # -- values -----------------------------------------------------------------

    def preprocess_value(self, value):
        """Coerce `value` to this channel's Python form, enforcing max_length."""
        length = self.calculate_length(value)
        if length > self._max_length:
            raise self._error(f"value {reprlib.repr(value)} has {length} elements; "
                              f"max_length is {self._max_length}")
        return value

    async def verify_value(self, value):
        """Policy hook run on every write before storing; return the value to store.

        Raise to reject (the error reaches the writer), raise SkipWrite to drop
        the write silently, return None to keep `value` unchanged.
        """
        return value

    def _native_values(self):
        """The stored value as a sequence of this channel's native type."""
        return self._value if _is_sequence(self._value) else [self._value]

    def _from_native(self, values):
        """Inverse of _native_values, for values converted from a client's DBR data."""
        if self._max_length == 1 and _is_sequence(values) and len(values) == 1:
            return values[0]
        return values

    def _convert(self, values, from_type, to_type, direction=None):
        return convert_values(values, from_type, to_type, direction=direction,
                              string_encoding=self.string_encoding,
                              enum_strings=self._metadata.get("enum_strings"),
                              precision=self._metadata.get("precision"))

    # -- reading ----------------------------------------------------------------

    async def read(self, data_type):
        """Return ``(metadata, values)`` for `data_type`, ready for the payload codec.

        `metadata` is None for plain types, else a fresh DBR_TYPES structure
        filled as epics-base fills it (``build_metadata`` casts the limits to
        the requested type); strings in `values` are encoded bytes.
        """
        data_type = channel_type(data_type)
        alarm = self.alarm
        fields = dict(self._metadata, status=alarm.status, severity=alarm.severity,
                      timestamp=self._timestamp,
                      ackt=int(alarm.must_acknowledge_transient),
                      acks=alarm.severity_to_acknowledge)
        metadata = build_metadata(data_type, fields, string_encoding=self.string_encoding)
        if data_type == ChannelType.CLASS_NAME:
            return metadata, [self.reported_record_type.encode(self.string_encoding)]
        if data_type == ChannelType.PUT_ACKT:
            return metadata, [fields["ackt"]]
        if data_type == ChannelType.PUT_ACKS:
            return metadata, [int(fields["acks"])]
        return metadata, self._read_values(native_type(data_type))

    def _read_values(self, native):
        """The value converted to `native` for the wire."""
        return self._convert(self._native_values(), self.data_type, native, TO_WIRE)

    # -- writing ----------------------------------------------------------------

    async def write(self, value, *, flags=0, verify_value=True, update_fields=True,
                    **metadata):
        """Store `value` (after coercion and verification) and publish the change.

        Keyword metadata (timestamp, status, severity, units, limits, ...) is
        applied in the same update.  Returns the DBE bits the update fired.
        """
        value = self.preprocess_value(value)
        if verify_value:
            try:
                verified = await self.verify_value(value)
            except SkipWrite:
                return _NO_EVENTS
            if verified is not None and verified is not value:
                value = self.preprocess_value(verified)
        if update_fields:
            await self.update_fields(value)
        timestamp = metadata.pop("timestamp", None)
        alarm_fields = validate_alarm_fields(
            {key: metadata.pop(key) for key in _ALARM_FIELDS if key in metadata})
        bits = (int(flags) | int(self._apply_metadata(metadata))
                | int(self._value_flags(self._value, value)))
        self._value = value
        self._timestamp = time.time() if timestamp is None else float(timestamp)
        if not alarm_fields:
            alarm_fields = self._limit_alarm(value)
        if alarm_fields:
            bits |= int(await self.alarm.write(**alarm_fields, caller=self))
        flags = event_flags(bits)
        await self.publish(flags)
        return flags

    async def update_fields(self, value):
        """Hook for record-like subclasses to mirror an accepted value into fields."""

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        """Apply a client's write: `data` decoded as `data_type` (any DBR type).

        PUT_ACKT / PUT_ACKS acknowledge alarms; everything else is converted
        to the native type, then goes through ``write``.  The metadata of
        STS/TIME writes is ignored, as epics-base ignores it.
        """
        data_type = channel_type(data_type)
        if data_type in (ChannelType.PUT_ACKT, ChannelType.PUT_ACKS):
            ack = int(data[0] if _is_sequence(data) else data)
            if data_type == ChannelType.PUT_ACKT:
                return await self.alarm.write(must_acknowledge_transient=ack)
            return await self.alarm.acknowledge(ack)
        native = native_type(data_type)
        values = self._convert(data, native, self.data_type)
        return await self.write(self._from_native(values), flags=flags)

    async def write_metadata(self, *, publish=True, timestamp=None, **metadata):
        """Change metadata (units, limits, precision, enum strings, alarm fields).

        Fires DBE_PROPERTY when a GR/CTRL field changed and DBE_ALARM when the
        alarm changed; returns those bits (and publishes them unless
        ``publish=False``).
        """
        alarm_fields = validate_alarm_fields(
            {key: metadata.pop(key) for key in _ALARM_FIELDS if key in metadata})
        flags = self._apply_metadata(metadata)
        if timestamp is not None:
            self._timestamp = float(timestamp)
        if alarm_fields:
            flags = event_flags(int(flags) | int(await self.alarm.write(
                **alarm_fields, publish=publish, caller=self)))
        if publish:
            await self.publish(flags)
        return flags

    def _apply_metadata(self, metadata):
        """Validate then store metadata; all-or-nothing.  Returns DBE_PROPERTY or 0."""
        if not metadata:                  # every plain write comes through here
            return _NO_EVENTS
        known = self._property_fields + self._config_fields
        unknown = sorted(set(metadata) - set(known))
        if unknown:
            raise self._error(f"unknown metadata {unknown}; "
                              f"this channel has {sorted(known + _ALARM_FIELDS)}")
        checked = {key: self._check_metadata(key, value) for key, value in metadata.items()}
        changed = any(self._metadata.get(key) != value for key, value in checked.items()
                      if key in self._property_fields)
        self._metadata.update(checked)
        return _DBE.DBE_PROPERTY if changed else _NO_EVENTS

    def _check_metadata(self, key, value):
        """Validate one metadata field; subclasses handle their own fields."""
        return value

    def _value_flags(self, old, new):
        """DBE bits a value change fires: VALUE|LOG whenever the value changed.

        Arrays always fire, as a waveform record posts on every write.
        """
        if _is_sequence(new) or _is_sequence(old):
            return _VALUE_AND_LOG
        return _VALUE_AND_LOG if old != new else _NO_EVENTS

    def _limit_alarm(self, value):
        """Alarm fields computed from the value; none for plain channels."""
        return {}

    # -- subscriptions ----------------------------------------------------------

    async def subscribe(self, queue, sub_spec, sub):
        """Register `sub` under `sub_spec` on `queue`; send it the current value now.

        A type the value cannot be converted to raises (CaprotoConversionError)
        and registers nothing.
        """
        metadata, values = await self.read(channel_type(sub_spec.data_type))
        self._queues.setdefault(queue, {}).setdefault(sub_spec, {})[sub] = None
        await queue.put(SubscriptionUpdate((sub_spec,), metadata, values,
                                           event_flags(sub_spec.mask), (sub,)))

    async def unsubscribe(self, queue, sub_spec, sub=None):
        """Forget `sub` (or every subscription under `sub_spec` when sub is None)."""
        specs = self._queues.get(queue, {})
        subs = specs.get(sub_spec, {})
        if sub is None:
            subs.clear()
        else:
            subs.pop(sub, None)
        if not subs:
            specs.pop(sub_spec, None)
        if not specs:
            self._queues.pop(queue, None)

    async def publish(self, flags):
        """Send the current state to every subscription whose mask meets `flags`.

        A data type the new value cannot be converted to is skipped (as an
        IOC sends no event it cannot convert); the others still go out.
        """
        bits = int(flags)
        if not bits:
            return
        flags = event_flags(bits)
        reads = {}
        for queue, specs in list(self._queues.items()):
            by_type = {}
            for spec in specs:
                if spec.mask & bits:
                    by_type.setdefault(channel_type(spec.data_type), []).append(spec)
            for data_type, matched in by_type.items():
                if data_type not in reads:
                    try:
                        reads[data_type] = await self.read(data_type)
                    except CaprotoConversionError:
                        reads[data_type] = None
                if reads[data_type] is None:
                    continue
                metadata, values = reads[data_type]
                subs = tuple(sub for spec in matched for sub in specs[spec])
                await queue.put(SubscriptionUpdate(tuple(matched), metadata, values,
                                                   flags, subs))

    # -- access -----------------------------------------------------------------

    def check_access(self, hostname, username):
        """Access rights of a client; read_only channels refuse writes.  Override to restrict."""
        if self.read_only:
            return AccessRights.READ
        return _READ_WRITE

    async def auth_read(self, hostname, username, data_type, *, user_address=None):
        if not self.check_access(hostname, username) & AccessRights.READ:
            raise ChannelReadError(f"{username}@{hostname} may not read this channel")
        return await self.read(data_type)

    async def auth_write(self, hostname, username, data, data_type, metadata, *,
                         flags=0, user_address=None):
        if not self.check_access(hostname, username) & AccessRights.WRITE:
            raise ChannelWriteError(f"{username}@{hostname} may not write this channel"
                                    + (" (read-only)" if self.read_only else ""))
        return await self.write_from_dbr(data, data_type, metadata, flags=flags)


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

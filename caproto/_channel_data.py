"""ChannelData: the values a server serves and IOC code manipulates (the base class).

Invariants:
- Loop-free: async methods await only other ChannelData/ChannelAlarm methods
  and the ``queue.put`` handed to ``subscribe``; nothing imports an event loop.
- Every write is coerced (``preprocess_value``) and checked (``verify_value``)
  before anything is stored: a rejected write changes nothing and names the
  value.  The typed subclasses (``_channel_types``) define the coercion.
- Wire conversion happens only in ``_convert`` (``convert_values`` for
  values, ``build_metadata`` for DBR structures).  ``read`` builds a fresh
  metadata structure per call, so queued updates are never mutated later.
- Each update computes its DBE bits once (VALUE / LOG from ``_value_flags``,
  ALARM on an alarm change, PROPERTY on a metadata change), reads once per
  distinct requested data type, and reaches a subscriber's queue only when
  the subscription's mask intersects those bits.
"""
import reprlib
import time
from collections import namedtuple

from ._alarm import ChannelAlarm, validate_alarm_fields
from ._convert import TO_WIRE, build_metadata, convert_values
from ._dbr import (AccessRights, ChannelType, SubscriptionType, channel_type,
                   event_flags, native_type, timestamp_to_epics)
from ._errors import (CaprotoConversionError, CaprotoError, CaprotoValueError,
                      ChannelReadError, ChannelWriteError)

__all__ = ("ChannelData", "SkipWrite", "SubscriptionSpec", "SubscriptionUpdate")

_DBE = SubscriptionType
_VALUE_AND_LOG = _DBE.DBE_VALUE | _DBE.DBE_LOG
_NO_EVENTS = _DBE(0)    # bits are ORed as ints, made flags once (IntFlag `|` is slow)
_SCALAR_TYPES = frozenset({float, int, bool, str, bytes, bytearray})
_READ_WRITE = AccessRights.READ | AccessRights.WRITE
# Types whose metadata is at most status, severity and timestamp: most reads
# and events; their metadata is built without copying the channel's.
_ALARM_AND_TIME_ONLY = frozenset(
    t for t in ChannelType
    if t <= ChannelType.TIME_DOUBLE and not ChannelType.GR_STRING <= t)
_ALARM_FIELDS = ("status", "severity", "alarm_string", "must_acknowledge_transient",
                 "severity_to_acknowledge")


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
        source = self.alarm_source()
        alarm = source.alarm
        if data_type in _ALARM_AND_TIME_ONLY:
            fields = {"status": alarm.status, "severity": alarm.severity,
                      "timestamp": source._timestamp}
        else:
            fields = dict(self._metadata, status=alarm.status, severity=alarm.severity,
                          timestamp=source._timestamp,
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

    def _reads_stored_state(self):
        """Whether ``read`` answers from the stored value, alarm and timestamp
        only (not overridden): then the server may reuse an answer's encoding
        until those change."""
        return type(self).read is ChannelData.read

    def alarm_source(self):
        """The channel whose alarm and timestamp reads report and PUT_ACKT/ACKS
        acknowledge: this one, except that a record's field answers with its
        record's (as an IOC serves ``rec.DESC`` with rec's STAT/SEVR/TIME)."""
        return self

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
        bits, timestamp, alarm_fields = int(flags), None, None
        if metadata:               # (a client's put has none: skip the sorting)
            timestamp = metadata.pop("timestamp", None)
            alarm_fields = validate_alarm_fields(
                {key: metadata.pop(key) for key in _ALARM_FIELDS if key in metadata})
            bits |= int(self._apply_metadata(metadata))
        bits |= int(self._value_flags(self._value, value))
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
            alarm = self.alarm_source().alarm
            if data_type == ChannelType.PUT_ACKT:
                return await alarm.write(must_acknowledge_transient=ack)
            return await alarm.acknowledge(ack)
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

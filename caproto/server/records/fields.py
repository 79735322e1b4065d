"""Record fields as channels: one ChannelData per field, kept in step with the record.

Invariants:
- A record's fields live in ``RecordFields.fields`` (FIELD name -> ChannelData);
  VAL is the record's own PvpropertyData and is not in the mapping.
  ``fields.get('NAME$')`` finds the long-string channel of a string or link
  field (or of a string VAL), made once on first use and never listed.
- A field either stores its own value, or *mirrors* something of the record:
  metadata (EGU -> units, HOPR -> display limits, HIHI -> alarm limit, ...),
  the alarm (SEVR, STAT, ACKS, ACKT, AMSG), or the enum state strings
  (ZNAM/ONAM, ZRST..FFST).  Writing a mirroring field changes the record
  first (a refused change refuses the write); a change made on the record
  side (``write_metadata``, alarms) is copied into the field when the record
  publishes, and the field publishes it to its own subscribers.
- Fields epics-base marks pp(TRUE) (alarm limits and severities, state
  severities, drive limits, CALC and its inputs) process the record after a
  write, so the alarm is re-evaluated at once as in an IOC; during that
  processing ``field_value(name)`` already gives the value being written.
- Every field has the DBF type epics-base serves it with (checked against a
  softIoc in tests/server/test_records_libca.py).
- A field's STS/TIME/STSACK reads carry the record's alarm and timestamp,
  not the field's own (``alarm_source``), as dbGet of any field of a record
  does; PUT_ACKT/PUT_ACKS on a field acknowledge the record's alarm.
"""
import collections

from ..._data import (ChannelByte, ChannelDouble, ChannelEnum, ChannelFloat,
                      ChannelInteger, ChannelShort, ChannelString)
from ..._dbr import ChannelType, SubscriptionType
from ..._errors import CaprotoValueError
from .long_string import LongStringChannel

__all__ = ("FieldDef", "FieldMap", "RecordFields", "MenuChannel", "MENUS", "field_def")

_DBE = SubscriptionType
LINK_SIZE = 1024              # epics-base PVLINK_STRINGSZ: what a link's ``$`` serves
LINK_LENGTH = LINK_SIZE - 1

MENUS = {
    "scan": ("Passive", "Event", "I/O Intr", "10 second", "5 second", "2 second",
             "1 second", ".5 second", ".2 second", ".1 second"),
    "pini": ("NO", "YES", "RUN", "RUNNING", "PAUSE", "PAUSED"),
    "sevr": ("NO_ALARM", "MINOR", "MAJOR", "INVALID"),
    "stat": ("NO_ALARM", "READ", "WRITE", "HIHI", "HIGH", "LOLO", "LOW", "STATE",
             "COS", "COMM", "TIMEOUT", "HWLIMIT", "CALC", "SCAN", "LINK", "SOFT",
             "BAD_SUB", "UDF", "DISABLE", "SIMM", "READ_ACCESS", "WRITE_ACCESS"),
    "yesno": ("NO", "YES"),
    "prio": ("LOW", "MEDIUM", "HIGH"),
    "dtyp": ("Soft Channel",),
    "omsl": ("supervisory", "closed_loop"),
    "ivoa": ("Continue normally", "Don't drive outputs", "Set output to IVOV"),
    "linr": ("NO CONVERSION", "SLOPE", "LINEAR"),
    "ftype": ("STRING", "CHAR", "UCHAR", "SHORT", "USHORT", "LONG", "ULONG",
              "INT64", "UINT64", "FLOAT", "DOUBLE", "ENUM"),
    "post": ("On Change", "Always"),
    "post_waveform": ("Always", "On Change"),
}

FieldDef = collections.namedtuple(
    "FieldDef", "name kind default read_only mirror process menu length friendly")
FieldDef.__doc__ = """One field of a record type.

``kind``: the DBF type as served (STRING, SHORT, LONG, ULONG -> DOUBLE on
the wire, DOUBLE, FLOAT, UCHAR, MENU, LINK -> STRING); ``default``: a value or a callable
``(record_data) -> value``; ``mirror``: what the field follows (a metadata
key or tuple of keys, ``'alarm.<attr>'``, ``('enum', index)``, or None);
``process``: writing it processes the record; ``length``: most bytes of a
STRING (the epics-base field size less its NUL; ``FIELD$`` serves
length + 1 CHARs, a LINK's ``$`` 1024); ``friendly``: the attribute name on RecordFields."""


def field_def(name, kind, default=None, *, read_only=False, mirror=None,
              process=False, menu=None, length=None, friendly=None):
    if length is None:
        length = LINK_LENGTH if kind == "LINK" else 39
    return FieldDef(name, kind, default, read_only, mirror, process,
                    MENUS[menu] if isinstance(menu, str) else menu, length, friendly)


class MenuChannel(ChannelEnum):
    """A DBF_MENU field: any number of choices (STAT has 22); CA clients see
    the first 16 as enum strings, DBR_STRING readers any choice's name."""

    def __init__(self, *, choices, value=None, **kwargs):
        self.choices = tuple(choices)
        super().__init__(enum_strings=self.choices[:16],
                         value=self.choices[0] if value is None else value, **kwargs)

    def preprocess_value(self, value):
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode(self.string_encoding)
        if hasattr(value, "__index__") and not isinstance(value, bool):
            index = value.__index__()
            if not 0 <= index < len(self.choices):
                raise self._error(f"menu index {index} is out of range; choices are "
                                  f"{list(self.choices)!r}")
            return self.choices[index]
        if value not in self.choices:
            raise self._error(f"{value!r} is not one of {list(self.choices)!r}")
        return value

    def _native_values(self):
        return [self.choices.index(self._value)]

    def _convert(self, values, from_type, to_type, *args, **kwargs):
        """Convert with every choice (not only the 16 clients are shown)."""
        shown = self._metadata["enum_strings"]
        self._metadata["enum_strings"] = self.choices
        try:
            return super()._convert(values, from_type, to_type, *args, **kwargs)
        finally:
            self._metadata["enum_strings"] = shown


class _FieldMixin:
    """A field's channel: writes go through the record's RecordFields first."""

    def __init__(self, *, record_fields, field_name, **kwargs):
        self.record_fields = record_fields
        self.field_name = field_name
        super().__init__(**kwargs)

    async def verify_value(self, value):
        value = await super().verify_value(value)
        return await self.record_fields.field_written(self.field_name, value)

    def alarm_source(self):
        """A field reports (and acknowledges) its record's alarm and timestamp."""
        return self.record_fields.data


def _field_class(base):
    return type(f"Field{base.__name__[len('Channel'):]}", (_FieldMixin, base), {})


class _FieldString(_FieldMixin, ChannelString):
    long_string = None        # its LongStringChannel, once ``FIELD$`` was asked for

    async def publish(self, flags):
        await super().publish(flags)
        if self.long_string is not None:
            await self.long_string.follow()


class FieldMap(dict):
    """FIELD name -> ChannelData (``RecordFields.fields``).

    ``get('DESC$')`` also finds the long-string channel of a string field
    (names.py asks through ``data.get_field``); those are made on first use
    and never listed, so iterating gives the record's fields only.
    """

    def __init__(self, record_fields):
        super().__init__()
        self.record_fields = record_fields

    def get(self, name, default=None):
        if isinstance(name, str) and name.endswith("$"):
            found = self.record_fields.long_string(name[:-1])
            return default if found is None else found
        return super().get(name, default)


_CLASSES = {
    "STRING": _FieldString, "SHORT": _field_class(ChannelShort),
    "LONG": _field_class(ChannelInteger), "ULONG": _field_class(ChannelDouble),
    "DOUBLE": _field_class(ChannelDouble), "FLOAT": _field_class(ChannelFloat),
    "UCHAR": _field_class(ChannelByte), "MENU": _field_class(MenuChannel),
    "LINK": _FieldString,
}
_STRING_KINDS = ("STRING", "LINK")
_NATIVE_KIND = {ChannelType.DOUBLE: "DOUBLE", ChannelType.FLOAT: "FLOAT",
                ChannelType.LONG: "LONG", ChannelType.INT: "SHORT",
                ChannelType.CHAR: "UCHAR", ChannelType.STRING: "STRING",
                ChannelType.ENUM: "MENU"}


class RecordFields:
    """The fields of one record (``data.field_inst``); subclasses set
    ``record_type`` and ``field_defs``.  Fields are also attributes under
    their friendly names (``description``, ``engineering_units``, ...)."""

    record_type = None
    field_defs = ()
    data_mixin = None         # mixed into the VAL data class (record_data_class)
    clamp_to_drive_limits = False
    min_states = 0
    val_string_size = 0       # VAL's epics-base size when VAL is a string (VAL$)

    def __init__(self, data):
        self.data = data
        self._scan_written = False
        self._long_strings = {}
        self.fields = FieldMap(self)
        self._friendly = {}
        self._writing = set()
        self._pending = {}
        for fd in self.field_defs:
            self.fields[fd.name] = self._make_field(fd)
            if fd.friendly:
                self._friendly[fd.friendly] = fd.name
        self._defs = {fd.name: fd for fd in self.field_defs}

    def __getattr__(self, name):
        friendly = self.__dict__.get("_friendly", {})
        if name in friendly:
            return self.fields[friendly[name]]
        raise AttributeError(f"{type(self).__name__} has no field called {name!r}; "
                             f"fields: {sorted(self.__dict__.get('fields', ()))}")

    def __repr__(self):
        return f"<{type(self).__name__} of {self.data.pvname!r}>"

    def _live(self, fd):
        """Does `fd` mirror something this record's data actually has?"""
        mirror = fd.mirror
        if mirror is None or isinstance(mirror, str) and mirror.startswith("alarm."):
            return mirror is not None
        if isinstance(mirror, tuple) and mirror[0] == "enum":
            return isinstance(self.data, ChannelEnum)
        keys = mirror if isinstance(mirror, tuple) else (mirror,)
        return all(key in self.data._metadata for key in keys)

    def _make_field(self, fd):
        value = fd.default(self.data) if callable(fd.default) else fd.default
        if self._live(fd):
            value = self._from_record(fd)
        kwargs = dict(record_fields=self, field_name=fd.name, read_only=fd.read_only,
                      string_encoding=self.data.string_encoding,
                      reported_record_type=self.record_type)
        if fd.kind == "MENU":
            kwargs["choices"] = fd.menu
        elif fd.kind in _STRING_KINDS:
            kwargs["long_string_max_length"] = fd.length + 1
            value = "" if value is None else _truncate(value, fd.length,
                                                       self.data.string_encoding)
        return _CLASSES[fd.kind](value=value, **kwargs)

    # -- record -> field ----------------------------------------------------------

    def _from_record(self, fd):
        mirror, data = fd.mirror, self.data
        if isinstance(mirror, str) and mirror.startswith("alarm."):
            value = getattr(data.alarm, mirror[len("alarm."):])
        elif isinstance(mirror, tuple) and mirror[0] == "enum":
            strings = data.enum_strings
            return strings[mirror[1]] if mirror[1] < len(strings) else ""
        else:
            value = data._metadata[mirror[0] if isinstance(mirror, tuple) else mirror]
        if fd.kind == "MENU":
            return fd.menu[int(value)]
        if fd.kind == "STRING":
            return str(value)
        return value

    def long_string(self, name):
        """The LongStringChannel serving ``NAME$`` (made once), or None when
        NAME is not a string or link field (nor a string VAL)."""
        view = self._long_strings.get(name)
        if view is not None:
            return view
        if name == "VAL":
            source, size = self.data, self.val_string_size
            if not (size and isinstance(source, ChannelString)
                    and source.max_length == 1):
                return None
        else:
            fd = self._defs.get(name)
            if fd is None or fd.kind not in _STRING_KINDS:
                return None
            source = self.fields[name]
            size = LINK_SIZE if fd.kind == "LINK" else fd.length + 1
        view = self._long_strings[name] = LongStringChannel(source, size)
        if source is not self.data:
            source.long_string = view
        return view

    async def sync(self, flags):
        """Copy what `flags` say changed on the record into the mirroring fields
        (and a string VAL into ``VAL$``)."""
        val_view = self._long_strings.get("VAL")
        if val_view is not None and flags & (_DBE.DBE_VALUE | _DBE.DBE_LOG):
            await val_view.follow()
        if not flags & (_DBE.DBE_PROPERTY | _DBE.DBE_ALARM):
            return
        for name, fd in self._defs.items():
            if fd.mirror is None or name in self._writing or not self._live(fd):
                continue
            is_alarm = isinstance(fd.mirror, str) and fd.mirror.startswith("alarm.")
            if not flags & (_DBE.DBE_ALARM if is_alarm else _DBE.DBE_PROPERTY):
                continue
            value = self._from_record(fd)
            field = self.fields[name]
            if field.value != value:
                await field.write(value, verify_value=False)

    async def value_written(self, value):
        """The record accepted a value: UDF clears, NORD follows the length."""
        udf = self.fields.get("UDF")
        if udf is not None and udf.value:
            await udf.write(0, verify_value=False)
        nord = self.fields.get("NORD")
        if nord is not None:
            count = self.data.calculate_length(value)
            if nord.value != count:
                await nord.write(count, verify_value=False)

    # -- field -> record ----------------------------------------------------------

    async def field_written(self, name, value):
        """A client (or IOC code) writes field `name`; returns the value to store."""
        fd = self._defs[name]
        self._writing.add(name)
        self._pending[name] = value
        try:
            if fd.mirror is not None and self._live(fd):
                await self._to_record(fd, value)
            handler = getattr(self, f"on_{name}", None)
            if handler is not None:
                value = await handler(value)
            if fd.process:
                await self.reprocess()
        finally:
            self._writing.discard(name)
            self._pending.pop(name, None)
        return value

    def field_value(self, name):
        """Field `name`'s value -- the one being written while its write
        processes the record (the field stores it only afterwards)."""
        if name in self._pending:
            return self._pending[name]
        return self.fields[name].value

    async def _to_record(self, fd, value):
        mirror, data = fd.mirror, self.data
        if fd.kind == "MENU":
            value = fd.menu.index(value)
        if isinstance(mirror, tuple) and mirror[0] == "enum":
            await data.write_metadata(enum_strings=self.enum_strings_with(mirror[1],
                                                                          value))
            return
        if isinstance(mirror, str) and mirror.startswith("alarm."):
            raise CaprotoValueError(f"{fd.name} follows the alarm and is read-only")
        keys = mirror if isinstance(mirror, tuple) else (mirror,)
        if keys[0] == "units":
            value = _truncate(value, 7, data.string_encoding)
        await data.write_metadata(**{key: value for key in keys})

    def enum_strings_with(self, index, text):
        """The record's state strings with state `index` set to `text`."""
        strings = [self.fields[fd.name].value for fd in self.field_defs
                   if isinstance(fd.mirror, tuple) and fd.mirror[0] == "enum"]
        strings[index] = text
        return self.trim_states(strings)

    def trim_states(self, strings):
        """As mbbi/mbbo report them: up to the last state that has a name
        (bi/bo always have their two)."""
        while len(strings) > self.min_states and not strings[-1]:
            strings.pop()
        return strings

    # -- record behaviour -----------------------------------------------------------

    def check_value(self, value):
        """A value about to be written to VAL; output records clamp to DRVL..DRVH."""
        if not self.clamp_to_drive_limits or isinstance(value, (list, tuple)):
            return value
        high = self.data._metadata.get("upper_ctrl_limit", 0)
        low = self.data._metadata.get("lower_ctrl_limit", 0)
        if high > low:
            value = min(max(value, low), high)
        return value

    async def reprocess(self):
        """Process with the current value: alarms re-evaluated, monitors as due."""
        await self.data.write(self.data.value, verify_value=False)

    @property
    def scan_period(self):
        """Seconds between scans: the scan hook's own period until SCAN is
        written, then SCAN's 'N second' (None for Passive/Event/I/O Intr)."""
        scan = self.fields.get("SCAN")
        spec = getattr(self.data.pvspec, "scan", None)
        if not self._scan_written and spec is not None:
            return spec.period
        if scan is None or not scan.value.endswith(" second"):
            return None
        return float(scan.value.split()[0])

    async def on_SCAN(self, value):
        self._scan_written = True
        return value

    async def on_PROC(self, value):
        await self.data.process()
        return value


def scan_choice(data):
    """SCAN's initial choice: the scan hook's period when it is one of the menu's."""
    spec = getattr(data.pvspec, "scan", None)
    if spec is not None and spec.use_scan_field:
        for choice in MENUS["scan"]:
            if choice.endswith(" second") and float(choice.split()[0]) == spec.period:
                return choice
    return "Passive"


def _truncate(text, limit, encoding):
    text = str(text)
    raw = text.encode(encoding)
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(encoding, "ignore")


def native_kind(data):
    """The FieldDef kind matching a record's VAL (for FTVL and friends)."""
    return _NATIVE_KIND.get(data.data_type, "DOUBLE")

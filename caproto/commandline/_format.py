"""Text output shared by caproto-get, -put and -monitor, as epics-base prints it.

The layouts follow caget/caput/camonitor (epics-base tool_lib):
- plain: the name padded to 30 columns (only for a single element with the
  default separator), the separator, then the value; arrays print their
  element count first;
- wide (caget -a, camonitor): name, timestamp, value, status, severity --
  status and severity empty while there is no alarm;
- terse: the value alone;
- detailed (caget -d): one indented block per PV with the metadata of the
  requested DBR type;
- camonitor's connection lines: a PV not found within -w, and a PV whose
  server went away (``format_not_connected``, ``format_disconnected``).
Numbers: doubles and floats as C's %g unless a format is chosen; integers
in decimal or 0x/0o/binary.  `--format` takes a Python format string with
the fields listed in FORMAT_FIELDS.
"""
import datetime

from .._constants import EPICS_EPOCH
from .._dbr import AlarmSeverity, AlarmStatus, ChannelType, native_type

__all__ = ("parse_dbr_type", "type_name", "field_type_name", "ValueFormat",
           "format_values", "format_line", "format_detailed", "format_custom",
           "format_timestamp", "unix_stamp", "stamp_of", "TimeText",
           "alarm_names", "format_not_connected", "format_disconnected",
           "FORMAT_FIELDS")

NAME_WIDTH = 30
FORMAT_FIELDS = ("pv_name", "value", "count", "timestamp", "status",
                 "severity", "units", "precision", "data_type", "response")
_FLOATS = (ChannelType.DOUBLE, ChannelType.FLOAT)
_INTEGERS = (ChannelType.SHORT, ChannelType.LONG, ChannelType.CHAR,
             ChannelType.ENUM)


def type_name(data_type):
    """'DBR_TIME_DOUBLE'; the SHORT spelling for type 1 (as caget prints)."""
    name = ChannelType(data_type).name.replace("INT", "SHORT")
    return f"DBR_{name}"


def field_type_name(data_type):
    return "DBF_" + ChannelType(native_type(data_type)).name.replace("INT", "SHORT")


def parse_dbr_type(text):
    """A ChannelType from '20', 'DBR_TIME_DOUBLE', 'time_double' or 'INT'.

    Raises ValueError naming the text and how to list the valid names.
    """
    text = str(text).strip()
    try:
        return ChannelType(int(text))
    except ValueError:
        pass
    name = text.upper()
    if name.startswith("DBR_"):
        name = name[4:]
    try:
        return ChannelType[name]
    except KeyError:
        raise ValueError(
            f"{text!r} is not a DBR type: give a number 0..38 or a name such "
            "as DBR_DOUBLE, TIME_DOUBLE, CTRL_ENUM (see --list-types)") from None


def list_types():
    """Every DBR type as 'number  name' lines, for --list-types."""
    seen = []
    for member in ChannelType:
        seen.append(f"{int(member):2d}  {type_name(member)}")
    return "\n".join(seen)


class ValueFormat:
    """How numbers, enums and char arrays are turned into text.

    float_format: None (%g) or 'e'/'f'/'g' with `digits`; round_format: None
    or 'x'/'o'/'b' (round doubles to long, caget -lx/-lo/-lb);
    int_format: None or 'x'/'o'/'b' (caget -0x/-0o/-0b); char_as_string:
    caget -S (as caget, only for a -# count or more than one element);
    count_given: -# was given; separator: caget -F.
    """

    def __init__(self, float_format=None, digits=None, round_format=None,
                 int_format=None, char_as_string=False, separator=" ",
                 enum_strings=None, encoding="latin-1", count_given=False):
        self.float_format = float_format
        self.digits = digits
        self.round_format = round_format
        self.int_format = int_format
        self.char_as_string = char_as_string
        self.count_given = count_given
        self.separator = separator
        self.enum_strings = enum_strings
        self.encoding = encoding

    def number(self, value, data_type):
        native = native_type(data_type)
        if native in _FLOATS:
            if self.round_format:
                return _integer(int(round(float(value))), self.round_format)
            if self.float_format:
                return f"%.{self.digits}{self.float_format}" % float(value)
            return "%g" % float(value)
        if native == ChannelType.CHAR:
            value = int(value)
            value = value - 256 if value > 127 else value   # epicsInt8
        return _integer(int(value), self.int_format)


def _integer(value, style):
    if style == "x":
        return "0x%X" % value if value >= 0 else "-0x%X" % -value
    if style == "o":
        return "0o%o" % value if value >= 0 else "-0o%o" % -value
    if style == "b":
        return format(value, "b")
    return str(value)


def _text(item, encoding):
    if isinstance(item, (bytes, bytearray)):
        return bytes(item).split(b"\0", 1)[0].decode(encoding, "replace")
    return str(item)


def _char_string(data, data_type, fmt):
    """caget -S applies to a char array of several elements (or -# N)."""
    return (fmt.char_as_string and native_type(data_type) == ChannelType.CHAR
            and (fmt.count_given or len(data) > 1))


def format_values(data, data_type, fmt):
    """The elements of `data` (decoded payload) as a list of strings."""
    native = native_type(data_type)
    if native == ChannelType.STRING:
        return [_text(item, fmt.encoding) for item in data]
    if _char_string(data, data_type, fmt):
        raw = bytes(int(v) & 0xFF for v in data)
        return [raw.split(b"\0", 1)[0].decode(fmt.encoding, "replace")]
    if native == ChannelType.ENUM and fmt.enum_strings:
        out = []
        for value in data:
            index = int(value)
            strings = fmt.enum_strings
            out.append(_text(strings[index], fmt.encoding)
                       if 0 <= index < len(strings) else str(index))
        return out
    return [fmt.number(value, data_type) for value in data]


def format_value_field(data, data_type, fmt, count=None):
    """caget's value column: one element as is; arrays as 'count v1 v2 ...'."""
    items = format_values(data, data_type, fmt)
    as_string = _char_string(data, data_type, fmt)
    if count is None:
        count = len(data)
    if count <= 1 or as_string:
        return items[0] if items else ""
    return fmt.separator.join([str(count)] + items)


def _name_field(name, count, separator):
    if count <= 1 and separator == " ":
        return f"{name:<{NAME_WIDTH}}" + separator
    return name + separator


class Stamp(datetime.datetime):
    """A time stamp that formats as caget prints it unless given a spec
    (``{timestamp:%H:%M:%S}`` in --format works as for any datetime)."""

    def __format__(self, spec):
        if not spec:
            return self.strftime("%Y-%m-%d %H:%M:%S.%f")
        return super().__format__(spec)

    def __str__(self):
        return self.__format__("")


def unix_stamp(seconds, nanoseconds):
    """The local-time Stamp of Unix `seconds` + `nanoseconds`, microseconds
    rounded half up from the integers (exact, unlike a float timestamp)."""
    micro = (int(nanoseconds) + 500) // 1000
    when = datetime.datetime.fromtimestamp(int(seconds) + micro // 1000000)
    return Stamp(*when.timetuple()[:6], micro % 1000000)


def stamp_of(metadata):
    """The local-time Stamp of `metadata` (None if it has no time stamp)."""
    seconds = getattr(metadata, "secondsSinceEpoch", None)
    if seconds is None:
        return None
    return unix_stamp(int(seconds) + EPICS_EPOCH, metadata.nanoSeconds)


class TimeText(str):
    """A camonitor time column (``-t``) as text, for ``--format``.

    Formatted without a spec it is the column exactly as camonitor prints
    it (parentheses, elapsed seconds, empty for ``-t n``); a strftime spec
    (``{timestamp:%H:%M:%S}``) and attributes (``{timestamp.year}``) apply
    to `stamp`, the absolute time of the source -t chose (server if it has
    s, else client; None for -t n, which formats as '').
    """

    def __new__(cls, text, stamp=None):
        self = super().__new__(cls, text)
        self.stamp = stamp
        return self

    def __format__(self, spec):
        if not spec:
            return str(self)
        return "" if self.stamp is None else format(self.stamp, spec)

    def __getattr__(self, name):
        stamp = self.__dict__.get("stamp")
        if stamp is None:
            raise AttributeError(f"-t n prints no time stamp: no {name!r}")
        return getattr(stamp, name)


def format_timestamp(metadata):
    """Local time with microseconds, as caget -a prints it ('' if none;
    '<undefined>' for the all-zero stamp of a record never processed)."""
    stamp = stamp_of(metadata)
    if stamp is None:
        return ""
    if not metadata.secondsSinceEpoch and not metadata.nanoSeconds:
        return "<undefined>"
    return format(stamp)


def alarm_names(metadata):
    """(status, severity) names; both '' when there is no alarm."""
    status = int(getattr(metadata, "status", 0))
    severity = int(getattr(metadata, "severity", 0))
    if status == 0 and severity == 0:
        return "", ""
    return _status_name(status), _severity_name(severity)


def _status_name(status):
    try:
        return AlarmStatus(status).name
    except ValueError:
        return str(status)


def _severity_name(severity):
    try:
        name = AlarmSeverity(severity).name
    except ValueError:
        return str(severity)
    return name if severity == 0 else name.replace("_ALARM", "")


def format_line(name, response, fmt, mode="plain", stamp=None):
    """One caget/camonitor line for a ReadNotify/EventAdd response.

    mode: 'plain' (name value), 'terse' (value), 'wide' (name timestamp
    value status severity); `stamp` replaces the wide time column's text
    (camonitor -t).
    """
    count = len(response.data) if hasattr(response.data, "__len__") else 1
    value = format_value_field(response.data, response.data_type, fmt, count)
    if mode == "terse":
        return value
    sep = fmt.separator
    head = _name_field(name, count, sep)
    if mode == "plain":
        return head + value
    metadata = response.metadata
    status, severity = alarm_names(metadata) if metadata is not None else ("", "")
    if stamp is None:
        stamp = format_timestamp(metadata)
    # With no element there is no value field at all, not an empty one
    # (unless -S prints the empty string).
    values = [value] if count or _char_string(response.data,
                                              response.data_type, fmt) else []
    return head + sep.join([stamp, *values, status, severity])


NOT_CONNECTED = "*** Not connected (PV not found)"
DISCONNECTED = "*** disconnected"


def format_not_connected(name, fmt):
    """camonitor's line for a PV no server answered within -w."""
    return _name_field(name, 1, fmt.separator) + NOT_CONNECTED


def format_disconnected(name, count, fmt, stamp):
    """camonitor's line when the server of PV `name` goes away.

    camonitor pads the name as for its last update (`count` elements) and
    prints the local time of the loss (`stamp`, a Stamp) whatever -t asks,
    joined to the marker by a space even with -F.
    """
    return f"{_name_field(name, count, fmt.separator)}{stamp} {DISCONNECTED}"


def _limit(value, native):
    return "%g" % value if native in _FLOATS else "%8d" % int(value)


_LIMIT_LINES = (("Lo disp limit", "lower_disp_limit"),
                ("Hi disp limit", "upper_disp_limit"),
                ("Lo alarm limit", "lower_alarm_limit"),
                ("Lo warn limit", "lower_warning_limit"),
                ("Hi warn limit", "upper_warning_limit"),
                ("Hi alarm limit", "upper_alarm_limit"),
                ("Lo ctrl limit", "lower_ctrl_limit"),
                ("Hi ctrl limit", "upper_ctrl_limit"))


def _row(label, value):
    return f"    {label + ':':<18}{value}"


def format_detailed(name, native, response, fmt):
    """caget -d: the block describing one PV read as a chosen DBR type."""
    data_type = ChannelType(response.data_type)
    lines = [name, _row("Native data type", field_type_name(native)),
             _row("Request type", type_name(data_type))]
    if data_type == ChannelType.CLASS_NAME:
        lines.append(_row("Class Name", format_values(response.data,
                                                      ChannelType.STRING, fmt)[0]))
        return "\n".join(lines)
    metadata = response.metadata
    value_native = native_type(data_type)
    enum_fmt = fmt
    if value_native == ChannelType.ENUM and hasattr(metadata, "no_str"):
        enum_fmt = ValueFormat(**{**vars(fmt),
                                  "enum_strings": metadata.enum_strings})
    values = format_values(response.data, data_type, enum_fmt)
    lines.append(_row("Element count", len(response.data)))
    lines.append(_row("Value", " ".join(values)))
    if metadata is None:
        return "\n".join(lines)
    fields = dict(metadata._fields_)
    if "secondsSinceEpoch" in fields:
        lines.append(_row("Timestamp", format_timestamp(metadata)))
    if "status" in fields:
        lines.append(_row("Status", _status_name(metadata.status)))
        lines.append(_row("Severity", _severity_name(metadata.severity)))
    if "ackt" in fields:
        lines.append(_row("Ack transient?", "YES" if metadata.ackt else "NO"))
        lines.append(_row("Ack severity", _severity_name(metadata.acks)))
    if "no_str" in fields:
        lines.append(_row("Enums", "(%2d)" % metadata.no_str))
        lines += [" " * 22 + "[%2d] %s" % (i, _text(s, fmt.encoding))
                  for i, s in enumerate(metadata.enum_strings)]
    if "units" in fields:
        lines.append(_row("Units", _text(metadata.units, fmt.encoding)))
    if "precision" in fields:
        lines.append(_row("Precision", metadata.precision))
    for label, attr in _LIMIT_LINES:
        if attr in fields:
            lines.append(_row(label, _limit(getattr(metadata, attr), value_native)))
    return "\n".join(lines)


def format_custom(template, name, response, fmt, control=None, **extra):
    """--format: a Python format string over FORMAT_FIELDS.

    `control` is an optional CTRL-type response supplying units/precision.
    """
    metadata = response.metadata
    limits = control.metadata if control is not None else metadata
    status, severity = alarm_names(metadata) if metadata is not None else ("", "")
    fields = {
        "pv_name": name, "response": response,
        "value": format_value_field(response.data, response.data_type, fmt),
        "count": len(response.data),
        "timestamp": stamp_of(metadata) or "",
        "status": status, "severity": severity,
        "units": _text(getattr(limits, "units", b""), fmt.encoding),
        "precision": getattr(limits, "precision", ""),
        "data_type": type_name(response.data_type),
        **extra,
    }
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"--format {template!r}: {exc!r}; fields are "
                         f"{', '.join(FORMAT_FIELDS)}") from None

# Invariants:
# - This is the only module that knows how DBR payloads are laid out in bytes.
# - Metadata structures hold only the part *before* the value; their sizes are
#   the value offsets of epics-base's db_access.h (checked at import time).
# - decode_payload() reads peer bytes: short payloads raise RemoteProtocolError,
#   never IndexError/struct.error.  encode_payload() is fed by local code: bad
#   data raises CaprotoValueError/CaprotoTypeError naming the culprit.
# - Numeric values are never copied when they can be viewed: numpy arrays are
#   decoded with frombuffer and encoded as a memoryview when already big-endian.
"""DBR types: ChannelType and friends, metadata layouts, payload codec."""
import array
import ctypes
import enum
import math
import struct
import sys
from collections import namedtuple

from . import _backend
from ._constants import EPICS_EPOCH, MAX_ENUM_STATES, MAX_ENUM_STRING_SIZE
from ._constants import MAX_STRING_SIZE, MAX_UNITS_SIZE
from ._errors import CaprotoTypeError, CaprotoValueError, RemoteProtocolError

try:
    import numpy
except ImportError:  # pragma: no cover - exercised only without numpy
    numpy = None

__all__ = (
    "ChannelType", "AlarmSeverity", "AlarmStatus", "SubscriptionType",
    "AccessRights", "native_types", "native_type", "promote_type",
    "field_types", "DBR_TYPES", "EpicsTimeStamp", "timestamp_to_epics",
    "epics_timestamp_to_unix", "dbr_metadata_size", "dbr_value_size",
    "encode_payload", "decode_payload", "channel_type", "event_flags",
)


class ChannelType(enum.IntEnum):
    STRING = 0
    INT = 1
    SHORT = 1
    FLOAT = 2
    ENUM = 3
    CHAR = 4
    LONG = 5
    DOUBLE = 6

    STS_STRING = 7
    STS_INT = 8
    STS_SHORT = 8
    STS_FLOAT = 9
    STS_ENUM = 10
    STS_CHAR = 11
    STS_LONG = 12
    STS_DOUBLE = 13

    TIME_STRING = 14
    TIME_INT = 15
    TIME_SHORT = 15
    TIME_FLOAT = 16
    TIME_ENUM = 17
    TIME_CHAR = 18
    TIME_LONG = 19
    TIME_DOUBLE = 20

    GR_STRING = 21
    GR_INT = 22
    GR_SHORT = 22
    GR_FLOAT = 23
    GR_ENUM = 24
    GR_CHAR = 25
    GR_LONG = 26
    GR_DOUBLE = 27

    CTRL_STRING = 28
    CTRL_INT = 29
    CTRL_SHORT = 29
    CTRL_FLOAT = 30
    CTRL_ENUM = 31
    CTRL_CHAR = 32
    CTRL_LONG = 33
    CTRL_DOUBLE = 34

    PUT_ACKT = 35
    PUT_ACKS = 36
    STSACK_STRING = 37
    CLASS_NAME = 38


class AlarmSeverity(enum.IntEnum):
    NO_ALARM = 0
    MINOR_ALARM = 1
    MAJOR_ALARM = 2
    INVALID_ALARM = 3


class AlarmStatus(enum.IntEnum):
    """epicsAlarmCondition, in the order of epics-base's alarm.h."""
    NO_ALARM = 0
    READ = 1
    WRITE = 2
    HIHI = 3
    HIGH = 4
    LOLO = 5
    LOW = 6
    STATE = 7
    COS = 8
    COMM = 9
    TIMEOUT = 10
    HWLIMIT = 11
    CALC = 12
    SCAN = 13
    LINK = 14
    SOFT = 15
    BAD_SUB = 16
    UDF = 17
    DISABLE = 18
    SIMM = 19
    READ_ACCESS = 20
    WRITE_ACCESS = 21


class SubscriptionType(enum.IntFlag):
    DBE_VALUE = 1
    DBE_LOG = 2
    DBE_ALARM = 4
    DBE_PROPERTY = 8


class AccessRights(enum.IntFlag):
    NO_ACCESS = 0
    READ = 1
    WRITE = 2


# Members by value.  Calling an enum class costs microseconds and the server
# does it for every request, so hot paths look members up here instead.
_CHANNEL_TYPES = {int(t): t for t in ChannelType}
_EVENT_FLAGS = {bits: SubscriptionType(bits) for bits in range(16)}


def channel_type(value):
    """``ChannelType(value)``, as a dict lookup when `value` names a type."""
    try:
        return _CHANNEL_TYPES[value]
    except (KeyError, TypeError):
        return ChannelType(value)         # raises ValueError naming a bad type


def event_flags(bits):
    """``SubscriptionType(bits)``, as a dict lookup for the four DBE bits."""
    try:
        return _EVENT_FLAGS[bits]
    except (KeyError, TypeError):
        return SubscriptionType(bits)


_CT = ChannelType
native_types = (_CT.STRING, _CT.INT, _CT.FLOAT, _CT.ENUM, _CT.CHAR, _CT.LONG,
                _CT.DOUBLE)
field_types = {
    "native": native_types,
    "status": tuple(ChannelType(t + 7) for t in native_types),
    "time": tuple(ChannelType(t + 14) for t in native_types),
    "graphic": tuple(ChannelType(t + 21) for t in native_types),
    "control": tuple(ChannelType(t + 28) for t in native_types),
}
_SPECIAL_NATIVE = {_CT.PUT_ACKT: _CT.PUT_ACKT, _CT.PUT_ACKS: _CT.PUT_ACKS,
                   _CT.STSACK_STRING: _CT.STRING, _CT.CLASS_NAME: _CT.STRING}


def native_type(data_type):
    """The native (value) type of any DBR type: TIME_DOUBLE -> DOUBLE.

    PUT_ACKT/PUT_ACKS are their own value type (an unsigned short);
    STSACK_STRING and CLASS_NAME carry strings.
    """
    try:                                  # hot path: a dict lookup
        return _NATIVE_OF[data_type]
    except (KeyError, TypeError):
        pass
    data_type = ChannelType(data_type)    # raises ValueError naming a bad type
    if data_type in _SPECIAL_NATIVE:
        return _SPECIAL_NATIVE[data_type]
    return ChannelType(data_type % 7)


# Precomputed answers of native_type (enum calls dominated hot server paths).
_NATIVE_OF = {t: _SPECIAL_NATIVE[t] if t in _SPECIAL_NATIVE else ChannelType(t % 7)
              for t in ChannelType}


def promote_type(data_type, *, use_status=False, use_time=False,
                 use_ctrl=False, use_gr=False):
    """The STS/TIME/GR/CTRL variant of `data_type`'s native type.

    With no flag set the native type is returned.  If several flags are
    set the richest wins: ctrl, then gr, then time, then status.
    """
    native = native_type(data_type)
    if native not in native_types:
        raise CaprotoValueError(f"{ChannelType(data_type)!r} cannot be promoted")
    for flag, offset in ((use_ctrl, 28), (use_gr, 21), (use_time, 14),
                         (use_status, 7)):
        if flag:
            return ChannelType(native + offset)
    return native


# ---------------------------------------------------------------- timestamps

EpicsTimeStamp = namedtuple("EpicsTimeStamp", "secondsSinceEpoch nanoSeconds")


def timestamp_to_epics(ts):
    """Unix time (float seconds) -> (seconds, nanoseconds) past 1990-01-01 UTC."""
    whole = math.floor(ts)
    nsec = int(round((ts - whole) * 1e9))
    if nsec >= 1_000_000_000:
        whole, nsec = whole + 1, nsec - 1_000_000_000
    sec = int(whole) - EPICS_EPOCH
    if not 0 <= sec < 2 ** 32:
        raise CaprotoValueError(f"timestamp {ts!r} is outside the EPICS epoch range")
    return sec, nsec


def epics_timestamp_to_unix(seconds_since_epoch, nano_seconds):
    """(seconds, nanoseconds) past the EPICS epoch -> Unix time as a float."""
    return EPICS_EPOCH + seconds_since_epoch + nano_seconds * 1e-9


# ------------------------------------------------------ metadata structures

_i16, _u16, _i32, _u32 = ctypes.c_int16, ctypes.c_uint16, ctypes.c_int32, ctypes.c_uint32
_f32, _f64, _u8 = ctypes.c_float, ctypes.c_double, ctypes.c_uint8
_LIMITS = ("upper_disp_limit", "lower_disp_limit", "upper_alarm_limit",
           "upper_warning_limit", "lower_warning_limit", "lower_alarm_limit")
_CTRL_LIMITS = ("upper_ctrl_limit", "lower_ctrl_limit")
_ALARM = [("status", _i16), ("severity", _i16)]
_STAMP = [("secondsSinceEpoch", _u32), ("nanoSeconds", _u32)]
_UNITS = [("units", ctypes.c_char * MAX_UNITS_SIZE)]


class DbrMetadata(ctypes.BigEndianStructure):
    """Base of every metadata structure: conveniences shared by all."""
    _pack_ = 1
    _fields_ = []

    @property
    def stamp(self):
        return EpicsTimeStamp(self.secondsSinceEpoch, self.nanoSeconds)

    @property
    def timestamp(self):
        return epics_timestamp_to_unix(self.secondsSinceEpoch, self.nanoSeconds)

    @timestamp.setter
    def timestamp(self, ts):
        self.secondsSinceEpoch, self.nanoSeconds = timestamp_to_epics(ts)

    @property
    def enum_strings(self):
        return [bytes(self.strs[i].value) for i in range(self.no_str)]

    def to_dict(self):
        """Field name -> Python value (units bytes, enum strings as a list)."""
        out = {}
        for name, _ in self._fields_:
            if name.startswith("RISC_pad"):
                continue
            if name == "strs":
                out["enum_strings"] = self.enum_strings
                continue
            out[name] = getattr(self, name)
        if "secondsSinceEpoch" in out:
            out["timestamp"] = self.timestamp
        return out

    def __repr__(self):
        return f"{type(self).__name__}({self.to_dict()!r})"


def _struct(name, fields):
    return type(name, (DbrMetadata,), {"_pack_": 1, "_fields_": fields})


def _limits(ctype, names=_LIMITS):
    return [(n, ctype) for n in names]


_VALUE_CTYPE = {_CT.INT: _i16, _CT.FLOAT: _f32, _CT.CHAR: _u8, _CT.LONG: _i32,
                _CT.DOUBLE: _f64}
# per native type: extra fields after status/severity for STS, after the stamp
# for TIME (db_access.h's RISC padding that aligns the value)
_STS_PAD = {_CT.CHAR: [("RISC_pad", _u8)], _CT.DOUBLE: [("RISC_pad", _i32)]}
_TIME_PAD = {_CT.INT: [("RISC_pad", _i16)], _CT.ENUM: [("RISC_pad", _i16)],
             _CT.CHAR: [("RISC_pad0", _i16), ("RISC_pad1", _u8)],
             _CT.DOUBLE: [("RISC_pad", _i32)]}


def _gr_fields(native, ctrl):
    if native == _CT.ENUM:
        return _ALARM + [("no_str", _i16),
                         ("strs", (ctypes.c_char * MAX_ENUM_STRING_SIZE) * MAX_ENUM_STATES)]
    ctype = _VALUE_CTYPE[native]
    names = _LIMITS + (_CTRL_LIMITS if ctrl else ())
    head = list(_ALARM)
    if native in (_CT.FLOAT, _CT.DOUBLE):
        head += [("precision", _i16), ("RISC_pad0", _i16)]
    tail = [("RISC_pad", _u8)] if native == _CT.CHAR else []
    return head + _UNITS + _limits(ctype, names) + tail


_PREFIX_NAME = {"status": "STS", "time": "TIME", "graphic": "GR", "control": "CTRL"}
DBR_TYPES = {}
for _native in native_types:
    _nm = _native.name
    DBR_TYPES[ChannelType(_native + 7)] = _struct(
        f"DBR_STS_{_nm}", _ALARM + _STS_PAD.get(_native, []))
    DBR_TYPES[ChannelType(_native + 14)] = _struct(
        f"DBR_TIME_{_nm}", _ALARM + _STAMP + _TIME_PAD.get(_native, []))
    if _native == _CT.STRING:   # GR/CTRL_STRING are STS_STRING in db_access.h
        DBR_TYPES[_CT.GR_STRING] = _struct("DBR_GR_STRING", list(_ALARM))
        DBR_TYPES[_CT.CTRL_STRING] = _struct("DBR_CTRL_STRING", list(_ALARM))
        continue
    DBR_TYPES[ChannelType(_native + 21)] = _struct(
        f"DBR_GR_{_nm}", _gr_fields(_native, ctrl=False))
    DBR_TYPES[ChannelType(_native + 28)] = _struct(
        f"DBR_CTRL_{_nm}", _gr_fields(_native, ctrl=True))
DBR_TYPES[_CT.STSACK_STRING] = _struct(
    "DBR_STSACK_STRING", _ALARM + [("ackt", _u16), ("acks", _u16)])
for _plain in native_types + (_CT.PUT_ACKT, _CT.PUT_ACKS, _CT.CLASS_NAME):
    DBR_TYPES[_plain] = None

# expose DBR_TIME_DOUBLE & co. as module attributes (and public names)
for _cls in DBR_TYPES.values():
    if _cls is not None:
        globals()[_cls.__name__] = _cls
        __all__ += (_cls.__name__,)
# INT spelled SHORT too, as db_access.h does
for _prefix in ("STS", "TIME", "GR", "CTRL"):
    globals()[f"DBR_{_prefix}_SHORT"] = globals()[f"DBR_{_prefix}_INT"]
    __all__ += (f"DBR_{_prefix}_SHORT",)
del _native, _nm, _plain, _cls, _prefix

_METADATA_SIZE = {t: (0 if cls is None else ctypes.sizeof(cls))
                  for t, cls in DBR_TYPES.items()}
assert _METADATA_SIZE[_CT.TIME_DOUBLE] == 16 and _METADATA_SIZE[_CT.GR_ENUM] == 422
_VALUE_SIZE = {_CT.STRING: MAX_STRING_SIZE, _CT.INT: 2, _CT.FLOAT: 4, _CT.ENUM: 2,
               _CT.CHAR: 1, _CT.LONG: 4, _CT.DOUBLE: 8, _CT.PUT_ACKT: 2,
               _CT.PUT_ACKS: 2}


def dbr_metadata_size(data_type):
    """Bytes of metadata before the value (the value's offset)."""
    return _METADATA_SIZE[channel_type(data_type)]


def dbr_value_size(data_type):
    """Bytes of one value element of `data_type`."""
    return _VALUE_SIZE[native_type(data_type)]


# ------------------------------------------------------------ payload codec

def _encode_strings(data):
    if isinstance(data, (str, bytes, bytearray)):
        data = [data]
    out = bytearray()
    for item in data:
        if not isinstance(item, (str, bytes, bytearray)):
            raise CaprotoTypeError(f"STRING data must be str or bytes, not {item!r}")
        raw = item.encode("latin-1") if isinstance(item, str) else bytes(item)
        if len(raw) >= MAX_STRING_SIZE:
            raise CaprotoValueError(
                f"string {item!r} is {len(raw)} bytes; DBR_STRING holds at most "
                f"{MAX_STRING_SIZE - 1}")
        out += raw.ljust(MAX_STRING_SIZE, b"\0")
    return out, len(out) // MAX_STRING_SIZE


def _encode_numbers(native, data):
    code, dtype, typecode = _backend.VALUE_FORMATS[native]
    if numpy is not None and isinstance(data, numpy.ndarray):
        data = data.reshape(-1) if data.ndim != 1 else data
        if data.dtype != numpy.dtype(dtype) or not data.flags.c_contiguous:
            data = data.astype(dtype)
        return memoryview(data).cast("B"), len(data)
    if isinstance(data, array.array) and data.typecode == typecode:
        if sys.byteorder == "little":
            data = array.array(typecode, data)
            data.byteswap()
        return memoryview(data).cast("B"), len(data)
    if native == _CT.CHAR and isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        return view, len(view)
    if isinstance(data, (str, bytes, bytearray)):
        raise CaprotoTypeError(
            f"{ChannelType(native).name} data must be numbers, not {data!r}")
    if not hasattr(data, "__len__"):
        data = [data]
    try:
        return struct.pack(f">{len(data)}{code}", *data), len(data)
    except struct.error as ex:
        raise CaprotoValueError(
            f"cannot encode {data!r} as {ChannelType(native).name}: {ex}") from None


def encode_payload(data_type, data, metadata=None):
    """-> (buffers, nbytes, count): the payload without its 8-byte padding.

    `metadata` is an instance of DBR_TYPES[data_type] (or bytes of the same
    size); None gives zeroed metadata.  Plain types take no metadata.  A
    numpy array of another dtype is cast with numpy's C-cast semantics.
    """
    data_type = channel_type(data_type)
    md_size = _METADATA_SIZE[data_type]
    buffers = []
    if md_size:
        if metadata is None:
            md_bytes = bytes(md_size)
        else:
            md_bytes = bytes(metadata)
            if len(md_bytes) != md_size:
                raise CaprotoTypeError(
                    f"metadata {metadata!r} is {len(md_bytes)} bytes; "
                    f"{data_type.name} needs {md_size}")
        buffers.append(md_bytes)
    elif metadata is not None:
        raise CaprotoTypeError(f"{data_type.name} carries no metadata, got {metadata!r}")
    native = native_type(data_type)
    if native == _CT.STRING:
        value, count = _encode_strings(data)
    else:
        value, count = _encode_numbers(native, data)
    buffers.append(value)
    return buffers, md_size + memoryview(value).nbytes, count


def decode_payload(data_type, data_count, payload):
    """-> (data, metadata) from a payload received from the peer.

    A single string (count 1) may arrive trimmed to the string's length plus
    its NUL, padded to 8 (rsrv and libca's caput do this), so a short string
    is accepted there; every other short payload is the peer's error.
    """
    try:
        data_type = channel_type(data_type)
    except ValueError:
        raise RemoteProtocolError(f"unknown DBR type {data_type!r}") from None
    payload = memoryview(payload)
    if payload.format != "B" or payload.ndim != 1:
        payload = payload.cast("B")
    md_size = _METADATA_SIZE[data_type]
    native = native_type(data_type)
    item = _VALUE_SIZE[native]
    needed = md_size + item * data_count
    trimmed_string = native == _CT.STRING and data_count == 1
    if len(payload) < needed and not (trimmed_string and len(payload) > md_size):
        raise RemoteProtocolError(
            f"{data_type.name} payload of {len(payload)} bytes is too short for "
            f"{data_count} element(s) (needs {needed})")
    cls = DBR_TYPES[data_type]
    metadata = None if cls is None else cls.from_buffer_copy(payload[:md_size])
    body = payload[md_size:needed]
    if native == _CT.STRING:
        data = [bytes(body[i:i + item]).split(b"\0", 1)[0]
                for i in range(0, len(body), item)]
        return data, metadata
    return _backend.backend.frombuffer(native, body, data_count), metadata

# Invariants:
# - Every conversion here reproduces what an epics-base IOC answers when a
#   client asks for a type other than the field's native type (checked against
#   a real softIoc by tests/caproto/test_convert_vs_softioc.py).
# - Numeric -> numeric follows C casts: float -> integer truncates toward zero
#   through a 32-bit int (out of range or NaN gives INT32_MIN), then wraps to
#   the target width, exactly as x86-64 builds of epics-base behave.
# - A conversion epics-base refuses raises CaprotoConversionError naming the
#   value and both types; nothing is silently replaced by zero.
"""Value conversion between native DBR types, as epics-base does it.

Public to the rest of caproto (used by ChannelData and the clients):

``convert_values(values, from_type, to_type, *, string_encoding='latin-1',
enum_strings=None, precision=None, direction=None)``
    Convert the *native* part of a value (a sequence) between native types.
    Strings in are ``str`` or ``bytes``; strings out are ``str``, or ``bytes``
    encoded with `string_encoding` when ``direction=TO_WIRE``.  Numbers out
    come back as an array of the active backend.  `precision` (default 6,
    epics-base's default for records without one) drives DOUBLE/FLOAT ->
    STRING; `enum_strings` drives ENUM <-> STRING.

``format_double(value, precision)`` / ``format_float(value, precision)``
    epics-base's cvtDoubleToString / cvtFloatToString.
``match_integer(text)`` / ``parse_integer(text)`` / ``parse_float(text)``
    strtol(base 0) / strtod prefix parsing; raise on no digits.
``encode_string(text, encoding)`` / ``truncate_string(text, encoding)``
    A DBR_STRING element: refuse (or cut) beyond 39 bytes.
``char_array_to_string(values, encoding)`` / ``string_to_char_array(text,
encoding)``
    CHAR waveforms used as long strings: bytes up to the first NUL.
``build_metadata(data_type, values, *, string_encoding='latin-1')``
    A DBR_TYPES[data_type] instance filled from a dict (keys named like the
    structure fields, plus ``timestamp`` and ``enum_strings``); keys the type
    lacks are ignored, limits are cast to the type's value type.
"""
import ctypes
import math
import re

from . import _backend
from ._constants import MAX_ENUM_STRING_SIZE, MAX_STRING_SIZE, MAX_UNITS_SIZE
from ._dbr import DBR_TYPES, ChannelType, channel_type, native_type, native_types
from ._errors import CaprotoConversionError, CaprotoValueError

__all__ = ("convert_values", "TO_WIRE", "FROM_WIRE", "format_double",
           "format_float", "match_integer", "parse_integer", "parse_float", "encode_string",
           "truncate_string", "char_array_to_string", "string_to_char_array",
           "build_metadata")

TO_WIRE = "to_wire"
FROM_WIRE = "from_wire"
DEFAULT_PRECISION = 6
ILLEGAL_ENUM_STRING = "Illegal_Value"   # what bi/mbbi report for unknown states

_CT = ChannelType
_FLOATS = (_CT.FLOAT, _CT.DOUBLE)
# integer native types: (bits, signed) as carried on the wire
_INT_WIDTH = {_CT.INT: (16, True), _CT.ENUM: (16, False), _CT.CHAR: (8, False),
              _CT.LONG: (32, True)}
# string -> integer range accepted by epics-base (CHAR is an epicsInt8 field)
_PARSE_RANGE = {_CT.INT: (-2 ** 15, 2 ** 15 - 1), _CT.CHAR: (-2 ** 7, 2 ** 7 - 1),
                _CT.LONG: (-2 ** 31, 2 ** 31 - 1)}


# ------------------------------------------------------------- C numerics

def _wrap(n, bits, signed):
    n &= (1 << bits) - 1
    if signed and n >= 1 << (bits - 1):
        n -= 1 << bits
    return n


def _float_to_int32(x):
    """(epicsInt32)x on x86-64: truncation; NaN/out of range -> INT32_MIN."""
    if not math.isfinite(x) or not -2 ** 31 <= math.trunc(x) < 2 ** 31:
        return -2 ** 31
    return math.trunc(x)


def _to_float32(x):
    return ctypes.c_float(x).value


def _number_to(value, to_type):
    """One numeric value converted the way a C cast in dbConvert does."""
    if to_type == _CT.DOUBLE:
        return float(value)
    if to_type == _CT.FLOAT:
        return _to_float32(float(value))
    if isinstance(value, float):
        value = _float_to_int32(value)
    bits, signed = _INT_WIDTH[to_type]
    return _wrap(int(value), bits, signed)


# ------------------------------------------------------ number -> string

def format_double(value, precision=DEFAULT_PRECISION):
    """epics-base cvtDoubleToString: fixed point, %f or %e beyond 1e7/1e16."""
    precision = int(precision) & 0xFFFF
    if math.isnan(value) or precision > 8 or not -1e7 <= value <= 1e7:
        if precision > 8 or value > 1e16 or value < -1e16:
            precision = min(precision, 17)
            return "%*.*e" % (precision + 7, precision, value)
        return "%.*f" % (min(precision, 3), value)
    return _fixed_point(value, precision, float)


def format_float(value, precision=DEFAULT_PRECISION):
    """epics-base cvtFloatToString: like format_double, float arithmetic."""
    precision = int(precision) & 0xFFFF
    value = _to_float32(value)
    if math.isnan(value) or precision > 8 or not -1e7 <= value <= 1e7:
        if precision > 8 or value >= 1e8 or value <= -1e8:
            precision = min(precision, 12)
            return "%*.*e" % (precision + 6, precision, value)
        return "%.*f" % (min(precision, 3), value)
    return _fixed_point(value, precision, _to_float32)


def _fixed_point(value, precision, rnd):
    """The cvtFast digit loop: fraction*10^p*10 truncated, +5, /10."""
    sign = ""
    if value < 0:
        sign, value = "-", -value
    whole = int(value)
    frac = rnd(value - whole)
    place = 10 ** precision
    fraction = int(rnd(rnd(frac * place) * 10))
    fraction = (fraction + 5) // 10
    if fraction >= place:
        whole += 1
        fraction -= place
    text = f"{sign}{whole}"
    if precision:
        text += "." + str(fraction).rjust(precision, "0")
    return text


# ------------------------------------------------------ string -> number

C_SPACE = " \t\n\v\f\r"             # C's isspace(), narrower than str.isspace
_INT_RE = re.compile("[%s]*" % re.escape(C_SPACE)
                     + r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_FLOAT_RE = re.compile(
    r"\s*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
    r"(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|inf(?:inity)?|nan))", re.IGNORECASE)


def match_integer(text):
    """``(number, end)`` for the integer strtol(text, &end, 0) reads at the
    start of `text` (C whitespace, sign, 0x hex, 0 octal, decimal), or None."""
    match = _INT_RE.match(text)
    if not match:
        return None
    sign, digits = match.groups()
    if digits[:2].lower() == "0x":
        number = int(digits, 16)
    elif len(digits) > 1 and digits[0] == "0":
        number = int(digits, 8)
    else:
        number = int(digits)
    return (-number if sign == "-" else number), match.end()


def parse_integer(text):
    """strtol(text, &end, 0): leading number, trailing text ignored."""
    matched = match_integer(text)
    if matched is None:
        raise CaprotoConversionError(f"{text!r} is not an integer")
    return matched[0]


def parse_float(text):
    """strtod(text, &end): leading number, trailing text ignored."""
    match = _FLOAT_RE.match(text)
    if not match:
        raise CaprotoConversionError(f"{text!r} is not a number")
    literal = match.group(1)
    body = literal.lstrip("+-")
    if body[:2].lower() == "0x":
        if "p" not in body.lower():
            body += "p0"
        number = float.fromhex(body)
        return -number if literal.startswith("-") else number
    number = float(literal)
    if math.isinf(number) and "inf" not in literal.lower():
        raise CaprotoConversionError(f"{text!r} overflows a double")
    return number


def _string_to(text, to_type, enum_strings):
    if to_type == _CT.ENUM:
        if enum_strings is None:
            raise CaprotoConversionError(
                f"cannot convert {text!r} to ENUM: no enum strings")
        if text in enum_strings:
            return enum_strings.index(text)
        index = parse_integer(text)
        if not 0 <= index < len(enum_strings):
            raise CaprotoConversionError(
                f"{text!r} is neither one of {enum_strings} nor a state index")
        return index
    if text == "":
        return 0.0 if to_type in _FLOATS else 0
    if to_type in _FLOATS:
        number = parse_float(text)
        if to_type == _CT.FLOAT:
            if math.isfinite(number) and abs(number) > 3.4028234663852886e38:
                raise CaprotoConversionError(f"{text!r} overflows a FLOAT")
            return _to_float32(number)
        return number
    number = parse_integer(text)
    low, high = _PARSE_RANGE[to_type]
    if not low <= number <= high:
        raise CaprotoConversionError(
            f"{text!r} is out of range for {ChannelType(to_type).name}")
    return _wrap(number, *_INT_WIDTH[to_type])


# ------------------------------------------------------ strings & chars

def encode_string(text, encoding="latin-1"):
    """One DBR_STRING element as bytes; refuse anything beyond 39 bytes."""
    raw = text.encode(encoding) if isinstance(text, str) else bytes(text)
    if len(raw) >= MAX_STRING_SIZE:
        raise CaprotoValueError(
            f"string {text!r} is {len(raw)} bytes; at most {MAX_STRING_SIZE - 1} fit")
    return raw


def truncate_string(text, encoding="latin-1", size=MAX_STRING_SIZE):
    """`text` encoded and cut to size-1 bytes (room for the NUL)."""
    raw = text.encode(encoding) if isinstance(text, str) else bytes(text)
    return raw[:size - 1]


def char_array_to_string(values, encoding="latin-1"):
    """A CHAR array read as a long string: the bytes before the first NUL."""
    raw = bytes(bytearray(int(v) & 0xFF for v in values)) \
        if not isinstance(values, (bytes, bytearray)) else bytes(values)
    return raw.split(b"\0", 1)[0].decode(encoding)


def string_to_char_array(text, encoding="latin-1"):
    """A long string written to a CHAR array: its bytes plus a NUL."""
    raw = text.encode(encoding) if isinstance(text, str) else bytes(text)
    return raw + b"\0"


def _as_text(value, encoding):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).split(b"\0", 1)[0].decode(encoding)
    return str(value)


# ------------------------------------------------------------ conversion

def _to_string(value, from_type, precision, enum_strings, encoding):
    if from_type == _CT.STRING:
        return _as_text(value, encoding)
    if from_type == _CT.DOUBLE:
        return format_double(float(value), precision)
    if from_type == _CT.FLOAT:
        return format_float(float(value), precision)
    if from_type == _CT.ENUM and enum_strings is not None:
        index = int(value)
        return enum_strings[index] if index < len(enum_strings) else ILLEGAL_ENUM_STRING
    if from_type == _CT.CHAR:      # a DBF_CHAR field is signed in the IOC
        return str(_wrap(int(value), 8, True))
    return str(int(value))


def convert_values(values, from_type, to_type, *, string_encoding="latin-1",
                   enum_strings=None, precision=None, direction=None):
    """Convert native values `from_type` -> `to_type` as epics-base would."""
    from_type, to_type = native_type(from_type), native_type(to_type)
    if from_type not in native_types or to_type not in native_types:
        raise CaprotoConversionError(
            f"cannot convert {from_type.name} to {to_type.name}: not native types")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        values = [values]
    if enum_strings is not None:
        enum_strings = [_as_text(s, string_encoding) for s in enum_strings]
    if precision is None:
        precision = DEFAULT_PRECISION

    if to_type == _CT.STRING:
        out = [_to_string(v, from_type, precision, enum_strings, string_encoding)
               for v in values]
        if direction == TO_WIRE:
            return [encode_string(s, string_encoding) for s in out]
        return out
    if from_type == to_type:
        return values if _backend.backend.is_array(values) else \
            _backend.backend.array(to_type, list(values))
    if from_type == _CT.STRING:
        converted = []
        for v in values:
            text = _as_text(v, string_encoding)
            try:
                converted.append(_string_to(text, to_type, enum_strings))
            except CaprotoConversionError as ex:
                raise CaprotoConversionError(
                    f"cannot convert STRING {text!r} to {to_type.name}: {ex}") from None
        return _backend.backend.array(to_type, converted)
    if _backend.backend.name == "numpy" and _backend.backend.is_array(values):
        return _numpy_cast(_backend.backend.numpy, values, from_type, to_type)
    return _backend.backend.array(
        to_type, [_number_to(_python_number(v, from_type), to_type) for v in values])


def _numpy_cast(np, values, from_type, to_type):
    """_number_to for a whole numpy array at once (same C-cast semantics)."""
    dtype = _backend.VALUE_FORMATS[to_type][1]
    if to_type in _FLOATS:
        with np.errstate(over="ignore"):
            return values.astype(dtype)
    if from_type in _FLOATS:
        with np.errstate(invalid="ignore"):
            whole = np.trunc(values.astype("f8"))
            bad = ~np.isfinite(whole) | (whole < -2 ** 31) | (whole >= 2 ** 31)
            values = np.where(bad, -2 ** 31, whole).astype("i8")
    return values.astype("i8").astype(dtype)


def _python_number(value, from_type):
    return float(value) if from_type in _FLOATS else int(value)


# -------------------------------------------------------------- metadata

def build_metadata(data_type, values, *, string_encoding="latin-1"):
    """A DBR_TYPES[data_type] instance filled from the dict `values`.

    Recognised keys: status, severity, timestamp (Unix float) or
    secondsSinceEpoch/nanoSeconds, units, precision, the *_limit fields,
    enum_strings, ackt, acks.  Returns None for plain types.
    """
    cls = DBR_TYPES[channel_type(data_type)]
    if cls is None:
        return None
    md = cls()
    kinds = _METADATA_KINDS.get(cls) or _metadata_kinds(cls)
    value_type = native_type(data_type)
    for key, value in values.items():
        kind = kinds.get(key)
        if kind is None or value is None:
            continue
        if kind is _INT:
            setattr(md, key, int(value))
        elif kind is _TIMESTAMP:
            md.timestamp = value
        elif kind is _LIMIT:
            if value_type not in _FLOATS and value != value:
                value = 0           # dbAccess sends a NaN limit as 0 to integers
            setattr(md, key, _number_to(value, value_type))
        elif kind is _UNITS:
            md.units = truncate_string(value, string_encoding, MAX_UNITS_SIZE)
        else:                                           # enum_strings
            strings = list(value)[:len(md.strs)]
            md.no_str = len(strings)
            for i, text in enumerate(strings):
                md.strs[i].value = truncate_string(text, string_encoding,
                                                   MAX_ENUM_STRING_SIZE)
    return md


_INT, _TIMESTAMP, _LIMIT, _UNITS, _ENUM_STRINGS = (
    "int", "timestamp", "limit", "units", "enum_strings")
#: DBR structure -> {key of build_metadata's dict: how it is stored}
_METADATA_KINDS = {}


def _metadata_kinds(cls):
    """Which keys `cls` takes and how (made once per structure: every read
    and every event builds metadata)."""
    names = {name for name, _ in cls._fields_}
    kinds = {name: _LIMIT if name.endswith("_limit") else _INT
             for name in names if not name.startswith("RISC_pad")}
    if "secondsSinceEpoch" in names:
        kinds["timestamp"] = _TIMESTAMP
    if "units" in names:
        kinds["units"] = _UNITS
    if "strs" in names:
        kinds["enum_strings"] = _ENUM_STRINGS
    _METADATA_KINDS[cls] = kinds
    return kinds

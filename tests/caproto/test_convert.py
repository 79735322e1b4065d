"""convert_values and its helpers, without a network peer.

Expected strings are epics-base's answers, also checked live against a
softIoc in test_convert_vs_softioc.py.
"""
import math

import pytest

from caproto import ChannelType
from caproto._convert import (TO_WIRE, build_metadata, char_array_to_string,
                              convert_values, encode_string, format_double,
                              format_float, parse_float, parse_integer,
                              string_to_char_array, truncate_string)
from caproto._errors import CaprotoConversionError, CaprotoValueError

CT = ChannelType


@pytest.mark.parametrize("value,precision,expected", [
    (3.14159265, 3, "3.142"),
    (12345678.9, 3, "12345678.900"),        # beyond 1e7: %f, precision <= 3
    (12345678.9, 6, "12345678.900"),
    (1.5e17, 3, " 1.500e+17"),              # beyond 1e16: %*.*e
    (1.5e-20, 10, " 1.5000000000e-20"),     # precision > 8: %*.*e
    (0.00001234, 3, "0.000"),
    (-2.675, 2, "-2.67"),                   # binary value is below ...75
    (2.5, 0, "3"),                          # cvtFast rounds half up, printf does not
    (-99999.99999, 4, "-100000.0000"),
    (0.0, 2, "0.00"),
    (float("nan"), 2, "nan"),
])
def test_format_double_like_cvtDoubleToString(value, precision, expected):
    assert format_double(value, precision) == expected


@pytest.mark.parametrize("value,precision,expected", [
    (3.14159265, 3, "3.142"),
    (12345678.9, 3, "12345679.000"),         # float rounding first
    (1.5e8, 2, "1.50e+08"),                  # float switches at 1e8 with width p+6
    (1.5e-20, 10, "1.4999999524e-20"),
])
def test_format_float_like_cvtFloatToString(value, precision, expected):
    assert format_float(value, precision) == expected


@pytest.mark.parametrize("text,expected", [
    ("42", 42), (" -17 ", -17), ("0x10", 16), ("010", 8), ("42.5", 42), ("1e3", 1),
    ("+5", 5)])
def test_parse_integer_like_strtol_base0(text, expected):
    assert parse_integer(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("42.5", 42.5), (" 1e3", 1000.0), ("0x10", 16.0), ("-.5xyz", -0.5),
    ("3.", 3.0), ("1e", 1.0)])
def test_parse_float_like_strtod(text, expected):
    assert parse_float(text) == expected


@pytest.mark.parametrize("text", ["hello", "", " ", "-", "e5", "x1"])
def test_parsers_refuse_garbage(text):
    with pytest.raises(CaprotoConversionError, match=repr(text)):
        parse_integer(text)
    with pytest.raises(CaprotoConversionError, match=repr(text)):
        parse_float(text)


def test_parse_float_overflow_is_refused_but_inf_is_not():
    with pytest.raises(CaprotoConversionError, match="overflows"):
        parse_float("1e999")
    assert parse_float("-inf") == -math.inf


def test_numeric_casts_follow_c():
    assert list(convert_values([3.9, -3.9, 1.5e17, float("nan")], CT.DOUBLE, CT.LONG)) \
        == [3, -3, -2 ** 31, -2 ** 31]
    assert list(convert_values([12345678.9, -99999.9], CT.DOUBLE, CT.INT)) == [24910, 31073]
    assert list(convert_values([-2.0], CT.DOUBLE, CT.ENUM)) == [65534]
    assert list(convert_values([-123456], CT.LONG, CT.CHAR)) == [192]
    assert list(convert_values([70000], CT.LONG, CT.FLOAT)) == [70000.0]
    assert float(convert_values([0.1], CT.DOUBLE, CT.FLOAT)[0]) == 0.10000000149011612


def test_numbers_to_strings():
    assert convert_values([1.23456], CT.DOUBLE, CT.STRING, precision=2) == ["1.23"]
    assert convert_values([1.5], CT.DOUBLE, CT.STRING) == ["1.500000"]  # default 6
    assert convert_values([-5, 7], CT.LONG, CT.STRING) == ["-5", "7"]
    assert convert_values([200], CT.CHAR, CT.STRING) == ["-56"]   # DBF_CHAR is signed


def test_strings_to_numbers():
    assert list(convert_values([" 17 ", "", "0x10"], CT.STRING, CT.LONG)) == [17, 0, 16]
    assert list(convert_values([b"-3.7\0junk"], CT.STRING, CT.DOUBLE)) == [-3.7]
    assert list(convert_values(["-3"], CT.STRING, CT.CHAR)) == [253]


@pytest.mark.parametrize("text,to_type", [("hello", CT.DOUBLE), ("99999", CT.INT),
                                          ("200", CT.CHAR), ("3000000000", CT.LONG),
                                          ("1e39", CT.FLOAT), ("abc", CT.LONG)])
def test_refused_string_conversions_name_value_and_type(text, to_type):
    with pytest.raises(CaprotoConversionError, match=f"{text!r}.*{to_type.name}"):
        convert_values([text], CT.STRING, to_type)


def test_enum_and_strings():
    states = ["zero", "one", "two"]
    assert convert_values([1, 7], CT.ENUM, CT.STRING, enum_strings=states) \
        == ["one", "Illegal_Value"]
    assert convert_values([2], CT.ENUM, CT.STRING) == ["2"]
    assert list(convert_values(["two", "1"], CT.STRING, CT.ENUM, enum_strings=states)) == [2, 1]
    assert list(convert_values([2], CT.ENUM, CT.DOUBLE)) == [2.0]
    with pytest.raises(CaprotoConversionError, match="'three'"):
        convert_values(["three"], CT.STRING, CT.ENUM, enum_strings=states)
    with pytest.raises(CaprotoConversionError, match="no enum strings"):
        convert_values(["one"], CT.STRING, CT.ENUM)


def test_strings_to_the_wire_are_bytes_and_checked():
    assert convert_values(["é"], CT.STRING, CT.STRING, direction=TO_WIRE) == [b"\xe9"]
    assert convert_values([b"caf\xc3\xa9"], CT.STRING, CT.STRING,
                          string_encoding="utf-8") == ["café"]
    with pytest.raises(CaprotoValueError, match="'" + "z" * 45):
        convert_values(["z" * 45], CT.STRING, CT.STRING, direction=TO_WIRE)


def test_string_helpers():
    assert encode_string("abc") == b"abc"
    assert truncate_string("x" * 50) == b"x" * 39
    assert truncate_string("millimetre", size=8) == b"millime"
    assert char_array_to_string([104, 105, 0, 120]) == "hi"
    assert char_array_to_string(b"long string\0\0") == "long string"
    assert string_to_char_array("hi") == b"hi\0"


def test_not_native_types_are_refused():
    with pytest.raises(CaprotoConversionError, match="PUT_ACKT"):
        convert_values([1], CT.PUT_ACKT, CT.LONG)


def test_build_metadata_fills_what_the_type_has():
    values = {"status": 3, "severity": 1, "units": "millimetres", "precision": 3,
              "upper_disp_limit": 10.7, "lower_disp_limit": float("nan"),
              "upper_ctrl_limit": 70000.0, "timestamp": 1700000000.5,
              "enum_strings": ["a", "b"]}
    md = build_metadata(CT.CTRL_SHORT, values)
    assert (md.status, md.severity, md.units) == (3, 1, b"millime")
    assert md.upper_disp_limit == 10 and md.lower_disp_limit == 0
    assert md.upper_ctrl_limit == 70000 - 65536
    md = build_metadata(CT.CTRL_DOUBLE, values)
    assert md.precision == 3 and math.isnan(md.lower_disp_limit)
    md = build_metadata(CT.TIME_ENUM, values)
    assert md.timestamp == 1700000000.5 and md.severity == 1
    md = build_metadata(CT.GR_ENUM, values)
    assert md.no_str == 2 and md.enum_strings == [b"a", b"b"]
    assert build_metadata(CT.DOUBLE, values) is None



@pytest.mark.parametrize("from_type,to_type", [
    (f, t) for f in (CT.INT, CT.FLOAT, CT.ENUM, CT.CHAR, CT.LONG, CT.DOUBLE)
    for t in (CT.INT, CT.FLOAT, CT.ENUM, CT.CHAR, CT.LONG, CT.DOUBLE) if f != t],
    ids=lambda t: t.name)
def test_numpy_arrays_convert_like_scalars(from_type, to_type):
    np = pytest.importorskip("numpy")
    from caproto import _backend
    samples = {CT.INT: [-32768, -1, 0, 7, 32767], CT.ENUM: [0, 1, 65535],
               CT.CHAR: [0, 127, 128, 255], CT.LONG: [-2 ** 31, -70000, 70000, 2 ** 31 - 1],
               CT.FLOAT: [-3.75, 0.5, 3e9, float("nan"), float("inf")],
               CT.DOUBLE: [-2.5, 1e300, 12345678.9, -99999.9, float("-inf")]}[from_type]
    previous = _backend.backend.name
    _backend.select_backend("numpy")
    try:
        array_in = np.array(samples, dtype=_backend.VALUE_FORMATS[from_type][1])
        vectorised = convert_values(array_in, from_type, to_type)
        one_by_one = convert_values(list(array_in.tolist()), from_type, to_type)
    finally:
        _backend.select_backend(previous)
    assert vectorised.dtype == np.dtype(_backend.VALUE_FORMATS[to_type][1])
    np.testing.assert_array_equal(vectorised, one_by_one)

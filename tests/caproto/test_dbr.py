"""DBR types: layouts, type tables, timestamps and the payload codec."""
import array
import ctypes
import math

import pytest

import caproto
from caproto import _backend
from caproto._dbr import (DBR_TYPES, AccessRights, AlarmSeverity, AlarmStatus,
                          ChannelType, SubscriptionType, dbr_metadata_size,
                          dbr_value_size, decode_payload, encode_payload,
                          epics_timestamp_to_unix, field_types, native_type,
                          native_types, promote_type, timestamp_to_epics)
from caproto._errors import CaprotoTypeError, CaprotoValueError, RemoteProtocolError

try:
    import numpy
except ImportError:  # pragma: no cover
    numpy = None

CT = ChannelType

# value offsets from epics-base db_access.h
METADATA_SIZES = {
    "STRING": 0, "INT": 0, "FLOAT": 0, "ENUM": 0, "CHAR": 0, "LONG": 0, "DOUBLE": 0,
    "STS_STRING": 4, "STS_SHORT": 4, "STS_FLOAT": 4, "STS_ENUM": 4, "STS_CHAR": 5,
    "STS_LONG": 4, "STS_DOUBLE": 8,
    "TIME_STRING": 12, "TIME_SHORT": 14, "TIME_FLOAT": 12, "TIME_ENUM": 14,
    "TIME_CHAR": 15, "TIME_LONG": 12, "TIME_DOUBLE": 16,
    "GR_STRING": 4, "GR_SHORT": 24, "GR_FLOAT": 40, "GR_ENUM": 422, "GR_CHAR": 19,
    "GR_LONG": 36, "GR_DOUBLE": 64,
    "CTRL_STRING": 4, "CTRL_SHORT": 28, "CTRL_FLOAT": 48, "CTRL_ENUM": 422,
    "CTRL_CHAR": 21, "CTRL_LONG": 44, "CTRL_DOUBLE": 80,
    "PUT_ACKT": 0, "PUT_ACKS": 0, "STSACK_STRING": 8, "CLASS_NAME": 0,
}


def test_every_channel_type_has_a_size():
    assert {t.name for t in CT} | {"STS_SHORT", "TIME_SHORT", "GR_SHORT",
                                   "CTRL_SHORT", "INT"} >= set(METADATA_SIZES)
    assert len(set(CT)) == 39 == len({CT[n] for n in METADATA_SIZES})


@pytest.mark.parametrize("name,size", sorted(METADATA_SIZES.items()))
def test_metadata_size(name, size):
    assert dbr_metadata_size(CT[name]) == size
    cls = DBR_TYPES[CT[name]]
    assert (0 if cls is None else ctypes.sizeof(cls)) == size


def test_short_is_an_alias_of_int():
    assert CT.SHORT is CT.INT and CT.CTRL_SHORT is CT.CTRL_INT
    assert caproto.DBR_TIME_SHORT is caproto.DBR_TIME_INT


def test_classes_are_named_after_db_access():
    assert caproto.DBR_TIME_DOUBLE is DBR_TYPES[CT.TIME_DOUBLE]
    assert caproto.DBR_CTRL_ENUM.__name__ == "DBR_CTRL_ENUM"
    assert caproto.DBR_STSACK_STRING is DBR_TYPES[CT.STSACK_STRING]
    field_names = [f for f, _ in caproto.DBR_CTRL_DOUBLE._fields_]
    assert field_names[:4] == ["status", "severity", "precision", "RISC_pad0"]
    assert field_names[-2:] == ["upper_ctrl_limit", "lower_ctrl_limit"]


@pytest.mark.parametrize("name,size", [("STRING", 40), ("INT", 2), ("ENUM", 2),
                                       ("FLOAT", 4), ("LONG", 4), ("CHAR", 1),
                                       ("DOUBLE", 8), ("CTRL_DOUBLE", 8),
                                       ("TIME_STRING", 40), ("PUT_ACKT", 2),
                                       ("STSACK_STRING", 40), ("CLASS_NAME", 40)])
def test_value_size(name, size):
    assert dbr_value_size(CT[name]) == size


def test_enum_tables_follow_epics_base():
    assert len(AlarmStatus) == 22
    assert AlarmStatus.UDF == 17 and AlarmStatus.WRITE_ACCESS == 21
    assert [s.name for s in AlarmSeverity] == ["NO_ALARM", "MINOR_ALARM",
                                               "MAJOR_ALARM", "INVALID_ALARM"]
    assert SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM == 5
    assert SubscriptionType.DBE_PROPERTY == 8
    assert AccessRights.READ | AccessRights.WRITE == 3 and AccessRights.NO_ACCESS == 0


@pytest.mark.parametrize("data_type", list(CT))
def test_native_type_of_every_type(data_type):
    native = native_type(data_type)
    if data_type in (CT.PUT_ACKT, CT.PUT_ACKS):
        assert native is data_type
    elif data_type in (CT.STSACK_STRING, CT.CLASS_NAME):
        assert native is CT.STRING
    else:
        assert native in native_types
        assert data_type.name.split("_")[-1] in (native.name, "SHORT")


@pytest.mark.parametrize("native", native_types)
def test_promote_type_table(native):
    assert promote_type(native) is native
    assert promote_type(native, use_status=True) is CT[f"STS_{native.name}"]
    assert promote_type(native, use_time=True) is CT[f"TIME_{native.name}"]
    assert promote_type(native, use_gr=True) is CT[f"GR_{native.name}"]
    assert promote_type(native, use_ctrl=True) is CT[f"CTRL_{native.name}"]
    # promoting an already-promoted type starts from its native type
    assert promote_type(CT[f"GR_{native.name}"], use_time=True) is CT[f"TIME_{native.name}"]
    assert field_types["control"][native_types.index(native)] is CT[f"CTRL_{native.name}"]


def test_promote_type_refuses_special_types():
    with pytest.raises(CaprotoValueError, match="PUT_ACKT"):
        promote_type(CT.PUT_ACKT, use_time=True)


def test_timestamps_round_trip_with_nanoseconds():
    assert timestamp_to_epics(631152000.0) == (0, 0)
    sec, nsec = timestamp_to_epics(1700000000.123456789)
    assert sec == 1700000000 - 631152000
    assert abs(nsec - 123456789) < 1000
    assert epics_timestamp_to_unix(sec, nsec) == pytest.approx(1700000000.123456789)
    assert timestamp_to_epics(631152000.9999999999) == (1, 0)
    with pytest.raises(CaprotoValueError, match="epoch"):
        timestamp_to_epics(0.0)


def test_metadata_timestamp_property():
    md = caproto.DBR_TIME_DOUBLE()
    md.timestamp = 1600000000.5
    assert md.secondsSinceEpoch == 1600000000 - 631152000
    assert md.nanoSeconds == 500000000
    assert md.stamp == (md.secondsSinceEpoch, 500000000)
    assert md.timestamp == 1600000000.5


# ------------------------------------------------------------------ codec

VALUES = {
    CT.STRING: [b"abc", b"", b"x" * 39],
    CT.INT: [1, -2, 32767],
    CT.FLOAT: [1.5, -2.25, 0.0],
    CT.ENUM: [0, 3, 65535],
    CT.CHAR: [0, 65, 255],
    CT.LONG: [-2 ** 31, 0, 2 ** 31 - 1],
    CT.DOUBLE: [math.pi, -1e300, 5e-324],
}


@pytest.fixture(params=_backend.available_backends())
def backend_name(request):
    previous = _backend.backend.name
    _backend.select_backend(request.param)
    yield request.param
    _backend.select_backend(previous)


def _join(buffers):
    return memoryview(b"".join(bytes(b) for b in buffers))


def _metadata_for(data_type):
    cls = DBR_TYPES[data_type]
    if cls is None:
        return None
    md = cls(status=AlarmStatus.HIGH, severity=AlarmSeverity.MINOR_ALARM)
    if hasattr(md, "secondsSinceEpoch"):
        md.timestamp = 1700000000.25
    if hasattr(md, "units"):
        md.units = b"mm"
    return md


@pytest.mark.parametrize("data_type", [t for t in CT if native_type(t) in VALUES])
def test_round_trip_every_type(backend_name, data_type):
    values = VALUES[native_type(data_type)]
    metadata = _metadata_for(data_type)
    buffers, nbytes, count = encode_payload(data_type, values, metadata)
    assert count == 3
    assert nbytes == dbr_metadata_size(data_type) + 3 * dbr_value_size(data_type)
    data, md = decode_payload(data_type, count, _join(buffers))
    if native_type(data_type) is CT.STRING:
        assert data == values
    else:
        assert list(data) == values
        kind = numpy.ndarray if backend_name == "numpy" else array.array
        assert isinstance(data, kind)
    if metadata is None:
        assert md is None
    else:
        assert bytes(md) == bytes(metadata)
        assert md.severity == AlarmSeverity.MINOR_ALARM


def test_array_backend_gives_native_byte_order(backend_name):
    buffers, _, _ = encode_payload(CT.LONG, [1, 2])
    data, _ = decode_payload(CT.LONG, 2, _join(buffers))
    if backend_name == "array":
        assert data.tobytes() == array.array("i", [1, 2]).tobytes()
    else:
        assert data.dtype.str == ">i4"


@pytest.mark.skipif(numpy is None, reason="needs numpy")
def test_numpy_decode_is_a_view_of_the_payload():
    _backend.select_backend("numpy")
    payload = bytearray(numpy.arange(4, dtype=">f8").tobytes())
    data, _ = decode_payload(CT.DOUBLE, 4, memoryview(payload))
    payload[0:8] = numpy.array([42.0], dtype=">f8").tobytes()
    assert data[0] == 42.0


@pytest.mark.skipif(numpy is None, reason="needs numpy")
def test_numpy_encode_of_big_endian_array_does_not_copy():
    arr = numpy.arange(5, dtype=">i4")
    buffers, nbytes, count = encode_payload(CT.LONG, arr)
    arr[0] = 99                          # visible through the encoded buffer
    assert bytes(buffers[0])[:4] == (99).to_bytes(4, "big")
    assert (nbytes, count) == (20, 5)
    native = numpy.arange(3, dtype="<f4")
    buffers, _, _ = encode_payload(CT.FLOAT, native)
    assert bytes(buffers[0]) == numpy.arange(3, dtype=">f4").tobytes()


def test_encode_scalar_bytes_and_array_array():
    assert encode_payload(CT.DOUBLE, 2.5)[1:] == (8, 1)
    buffers, nbytes, count = encode_payload(CT.CHAR, b"hello\0")
    assert bytes(buffers[0]) == b"hello\0" and count == 6
    arr = array.array("h", [1, -1])
    buffers, _, _ = encode_payload(CT.INT, arr)
    assert bytes(buffers[0]) == b"\x00\x01\xff\xff"
    assert list(arr) == [1, -1]          # the caller's array is untouched


def test_strings_are_40_bytes_and_encoded_latin1():
    buffers, nbytes, count = encode_payload(CT.STRING, ["é", b"raw"])
    assert nbytes == 80 and count == 2
    assert bytes(buffers[0])[:2] == b"\xe9\0"
    assert bytes(buffers[0])[40:43] == b"raw"


def test_over_long_string_names_the_string():
    with pytest.raises(CaprotoValueError, match="'" + "y" * 40):
        encode_payload(CT.STRING, ["ok", "y" * 40])


def test_bad_numeric_data_is_refused():
    with pytest.raises(CaprotoValueError, match="INT"):
        encode_payload(CT.INT, [70000])
    with pytest.raises(CaprotoTypeError, match="DOUBLE"):
        encode_payload(CT.DOUBLE, "1.0")
    with pytest.raises(CaprotoTypeError, match="STRING data .* 5"):
        encode_payload(CT.STRING, [b"ok", 5])
    with pytest.raises(CaprotoTypeError, match="no metadata"):
        encode_payload(CT.DOUBLE, [1.0], caproto.DBR_TIME_DOUBLE())
    with pytest.raises(CaprotoTypeError, match="needs 16"):
        encode_payload(CT.TIME_DOUBLE, [1.0], b"\0" * 4)


@pytest.mark.parametrize("data_type,count,length", [
    (CT.DOUBLE, 2, 15), (CT.TIME_DOUBLE, 1, 20), (CT.CTRL_ENUM, 1, 423),
    (CT.STRING, 2, 79), (CT.TIME_STRING, 1, 12), (CT.LONG, 1, 0)])
def test_short_payload_is_a_remote_protocol_error(data_type, count, length):
    with pytest.raises(RemoteProtocolError, match=data_type.name):
        decode_payload(data_type, count, memoryview(bytes(length)))


def test_trimmed_single_string_is_accepted():
    # rsrv/cas send a lone DBR_STRING as strlen+1 bytes, padded to 8
    data, md = decode_payload(CT.STRING, 1, memoryview(b"hello\0\0\0"))
    assert data == [b"hello"] and md is None


def test_unknown_type_on_the_wire():
    with pytest.raises(RemoteProtocolError, match="99"):
        decode_payload(99, 1, memoryview(bytes(8)))


def test_select_backend_rejects_unknown_names():
    with pytest.raises(CaprotoValueError, match="nope"):
        _backend.select_backend("nope")
    assert caproto.backend.name in ("numpy", "array")

"""ChannelData family: reads in every DBR form, writes, verification, subscriptions."""
import array
import ast
import asyncio
import pathlib

import pytest

import caproto
from caproto import (AccessRights, AlarmSeverity, AlarmStatus, CannotExceedLimits,
                     CaprotoConversionError, CaprotoTypeError, CaprotoValueError, ChannelByte, ChannelChar,
                     ChannelData, ChannelDouble, ChannelEnum, ChannelFloat,
                     ChannelInteger, ChannelShort, ChannelString, ChannelType,
                     ChannelWriteError, DBR_TYPES, SkipWrite, SubscriptionSpec,
                     SubscriptionType, native_type)

DBE = SubscriptionType
CT = ChannelType
MAJOR = AlarmSeverity.MAJOR_ALARM
NATIVE = [CT.STRING, CT.INT, CT.FLOAT, CT.ENUM, CT.CHAR, CT.LONG, CT.DOUBLE]
REQUESTABLE = [t for t in CT if t not in (CT.PUT_ACKT, CT.PUT_ACKS)]


class ListQueue:
    """The smallest queue a server layer could hand in: records what is put."""

    def __init__(self):
        self.items = []

    async def put(self, item):
        self.items.append(item)


def run(coro):
    return asyncio.run(coro)


def read(channel, data_type):
    return run(channel.read(data_type))


def subscribe(channel, data_type, mask, sub="sub", queue=None):
    queue = queue or ListQueue()
    spec = SubscriptionSpec(channel, data_type, mask)
    run(channel.subscribe(queue, spec, sub))
    return queue, spec


@pytest.fixture(autouse=True, params=caproto.available_backends())
def array_backend(request):
    """Every test runs with each array backend (numpy and array.array)."""
    previous = caproto.backend.name
    caproto.select_backend(request.param)
    yield request.param
    caproto.select_backend(previous)


CHANNELS = {
    "double": lambda: ChannelDouble(value=42.0, precision=3, units="mm",
                                    upper_disp_limit=100, lower_disp_limit=-100,
                                    upper_ctrl_limit=90, lower_ctrl_limit=-90,
                                    timestamp=1_700_000_000.25),
    "long": lambda: ChannelInteger(value=42, units="cts", upper_disp_limit=1000,
                                   timestamp=1_700_000_000.5),
    "enum": lambda: ChannelEnum(value="on", enum_strings=["off", "on", "fault"],
                                timestamp=1_700_000_001.0),
    "string": lambda: ChannelString(value="12", timestamp=1_700_000_002.0),
    "char": lambda: ChannelChar(value="a long string", timestamp=1_700_000_003.0),
}


# -- reads: every requested form ------------------------------------------------

@pytest.mark.parametrize("kind", sorted(CHANNELS))
@pytest.mark.parametrize("data_type", REQUESTABLE, ids=lambda t: t.name)
def test_read_builds_the_requested_structure(kind, data_type):
    channel = CHANNELS[kind]()
    run(channel.alarm.write(status=AlarmStatus.STATE, severity=MAJOR))
    if kind == "string" and native_type(data_type) == CT.ENUM:
        # epics-base refuses DBF_STRING as DBR_ENUM ("read failed"), even for "12".
        with pytest.raises(CaprotoConversionError, match="'12'"):
            read(channel, data_type)
        return
    metadata, values = read(channel, data_type)
    if data_type in NATIVE or data_type == CT.CLASS_NAME:
        assert metadata is None
    else:
        assert isinstance(metadata, DBR_TYPES[data_type])
    if hasattr(metadata, "severity"):
        assert (metadata.status, metadata.severity) == (AlarmStatus.STATE, MAJOR)
    if hasattr(metadata, "secondsSinceEpoch"):
        assert (metadata.secondsSinceEpoch, metadata.nanoSeconds) == channel.epics_timestamp
    assert len(values) >= 1
    # Whatever form was asked for, the codec can put it on the wire.
    caproto._dbr.encode_payload(data_type, values, metadata)


def test_double_in_every_native_type():
    channel = CHANNELS["double"]()
    assert list(read(channel, CT.DOUBLE)[1]) == [42.0]
    assert list(read(channel, CT.FLOAT)[1]) == [42.0]
    assert list(read(channel, CT.LONG)[1]) == [42]
    assert list(read(channel, CT.INT)[1]) == [42]
    assert list(read(channel, CT.CHAR)[1]) == [42]
    assert list(read(channel, CT.STRING)[1]) == [b"42.000"]      # PREC=3, as ai does


def test_double_ctrl_metadata():
    channel = CHANNELS["double"]()
    md, _ = read(channel, CT.CTRL_DOUBLE)
    assert md.units == b"mm" and md.precision == 3
    assert (md.upper_disp_limit, md.lower_disp_limit) == (100.0, -100.0)
    assert (md.upper_ctrl_limit, md.lower_ctrl_limit) == (90.0, -90.0)
    md, _ = read(channel, CT.GR_LONG)                 # limits in the requested type
    assert (md.upper_disp_limit, md.lower_disp_limit) == (100, -100)
    assert md.units == b"mm"
    md, _ = read(channel, CT.CTRL_ENUM)               # a number has no states
    assert md.no_str == 0


def test_integer_metadata_and_conversions():
    channel = CHANNELS["long"]()
    md, values = read(channel, CT.CTRL_DOUBLE)
    assert md.units == b"cts" and md.precision == 0 and md.upper_disp_limit == 1000.0
    assert list(values) == [42.0]
    assert list(read(channel, CT.STRING)[1]) == [b"42"]


def test_enum_reads_as_index_string_and_states():
    channel = CHANNELS["enum"]()
    assert list(read(channel, CT.ENUM)[1]) == [1]
    assert list(read(channel, CT.STRING)[1]) == [b"on"]
    assert list(read(channel, CT.DOUBLE)[1]) == [1.0]
    md, _ = read(channel, CT.CTRL_ENUM)
    assert md.no_str == 3
    assert [bytes(md.strs[i]).rstrip(b"\0") for i in range(3)] == [b"off", b"on", b"fault"]
    md, _ = read(channel, CT.GR_DOUBLE)
    assert md.units == b"" and md.upper_disp_limit == 0


def test_string_reads():
    channel = ChannelString(value="2.5")
    assert list(read(channel, CT.STRING)[1]) == [b"2.5"]
    assert list(read(channel, CT.DOUBLE)[1]) == [2.5]
    assert bytes(read(channel, CT.CHAR)[1]).rstrip(b"\0") == b"2.5"   # long-string form


def test_long_string_is_whole_as_char_and_cut_as_string():
    text = "x" * 60
    channel = ChannelString(value=text, long_string_max_length=100)
    assert bytes(read(channel, CT.CHAR)[1]).rstrip(b"\0") == text.encode()
    (as_string,) = read(channel, CT.STRING)[1]
    assert as_string.rstrip(b"\0") == text.encode()[:39]


def test_char_array_is_a_long_string():
    channel = CHANNELS["char"]()
    assert bytes(read(channel, CT.CHAR)[1]).rstrip(b"\0") == b"a long string"
    assert len(channel) == len("a long string")
    assert channel.max_length >= len(channel)


def test_stsack_and_class_name():
    channel = ChannelDouble(value=1.5, precision=1, reported_record_type="ai")
    run(channel.alarm.write(status=AlarmStatus.HIGH, severity=AlarmSeverity.MINOR_ALARM))
    md, values = read(channel, CT.STSACK_STRING)
    assert (md.status, md.severity) == (AlarmStatus.HIGH, AlarmSeverity.MINOR_ALARM)
    assert md.ackt == 1 and md.acks == AlarmSeverity.MINOR_ALARM
    assert list(values) == [b"1.5"]
    _, values = read(channel, CT.CLASS_NAME)
    assert list(values) == [b"ai"]


def test_read_metadata_is_fresh_each_time():
    channel = ChannelDouble(value=1.0)
    first, _ = read(channel, CT.TIME_DOUBLE)
    run(channel.write(2.0, timestamp=1_800_000_000.0))
    second, _ = read(channel, CT.TIME_DOUBLE)
    assert first is not second
    assert first.secondsSinceEpoch != second.secondsSinceEpoch


# -- the classes -----------------------------------------------------------------

@pytest.mark.parametrize("cls, data_type, value", [
    (ChannelDouble, CT.DOUBLE, 1.5), (ChannelFloat, CT.FLOAT, 1.5),
    (ChannelInteger, CT.LONG, 7), (ChannelShort, CT.INT, 7), (ChannelByte, CT.CHAR, 7),
    (ChannelString, CT.STRING, "text"), (ChannelChar, CT.CHAR, "text"),
])
def test_classes_have_their_native_type_and_keep_the_value(cls, data_type, value):
    channel = cls(value=value)
    assert channel.data_type == data_type
    assert channel.value == value and type(channel.value) is type(value)
    assert native_type(channel.data_type) == data_type


def test_integer_types_reject_values_that_do_not_fit():
    with pytest.raises(CaprotoValueError, match="40000"):
        ChannelShort(value=40000)
    with pytest.raises(CaprotoValueError, match="300"):
        run(ChannelByte(value=1).write(300))
    with pytest.raises(CaprotoValueError, match="'abc'"):
        run(ChannelInteger(value=1).write("abc"))


def test_numeric_writes_are_coerced():
    channel = ChannelDouble(value=0.0)
    run(channel.write("2.5"))
    assert channel.value == 2.5
    integer = ChannelInteger(value=0)
    run(integer.write(3.0))
    assert integer.value == 3 and isinstance(integer.value, int)


def test_arrays_list_array_and_numpy():
    channel = ChannelDouble(value=[1, 2, 3])
    assert channel.max_length == 3 and channel.value == [1.0, 2.0, 3.0]
    assert list(read(channel, CT.LONG)[1]) == [1, 2, 3]
    with pytest.raises(CaprotoValueError, match="max_length is 3"):
        run(channel.write([1, 2, 3, 4]))
    run(channel.write(array.array("d", [4, 5])))
    assert list(read(channel, CT.DOUBLE)[1]) == [4.0, 5.0]
    numpy = pytest.importorskip("numpy")
    run(channel.write(numpy.arange(3.0)))
    assert list(read(channel, CT.DOUBLE)[1]) == [0.0, 1.0, 2.0]


def test_max_length_must_be_positive():
    with pytest.raises(CaprotoValueError, match="max_length"):
        ChannelDouble(value=1.0, max_length=0)


# -- definition-time validation --------------------------------------------------

def test_units_longer_than_seven_bytes_are_rejected():
    with pytest.raises(CaprotoValueError, match="'millimetres'.*at most 7"):
        ChannelDouble(value=1.0, units="millimetres")
    channel = ChannelDouble(value=1.0, units="mm")
    with pytest.raises(CaprotoValueError, match="at most 7"):
        run(channel.write_metadata(units="furlongs"))
    assert channel.units == "mm"


def test_enum_strings_are_validated_when_defined():
    with pytest.raises(CaprotoValueError, match="17 enum_strings.*at most 16"):
        ChannelEnum(enum_strings=[f"s{i}" for i in range(17)])
    with pytest.raises(CaprotoValueError, match="enum string #1.*at most 25"):
        ChannelEnum(enum_strings=["ok", "y" * 26])
    with pytest.raises(CaprotoValueError, match="'maybe' is not one of"):
        ChannelEnum(enum_strings=["no", "yes"], value="maybe")
    ChannelEnum(enum_strings=[f"s{i}" for i in range(16)])   # the maximum is fine


def test_unknown_metadata_is_named():
    with pytest.raises(CaprotoValueError, match="colour"):
        run(ChannelDouble(value=1.0).write_metadata(colour="red"))


# -- writes ------------------------------------------------------------------------

def test_enum_write_by_string_or_index_and_rejects_unknown():
    channel = ChannelEnum(enum_strings=["off", "on"], value="off")
    run(channel.write("on"))
    assert channel.value == "on"
    run(channel.write(0))
    assert channel.value == "off"
    with pytest.raises(CaprotoValueError, match="'bogus' is not one of"):
        run(channel.write("bogus"))
    with pytest.raises(CaprotoValueError, match="index 5"):
        run(channel.write(5))
    assert channel.value == "off"


def test_ctrl_limits_reject_writes_and_name_the_value():
    channel = ChannelDouble(value=0.0, upper_ctrl_limit=10, lower_ctrl_limit=-10)
    with pytest.raises(CannotExceedLimits, match="12.5"):
        run(channel.write(12.5))
    with pytest.raises(CannotExceedLimits, match="-11"):
        run(channel.write(-11))
    assert channel.value == 0.0
    run(channel.write(10))
    assert channel.value == 10.0
    unlimited = ChannelDouble(value=0.0)                 # 0, 0: no control limits
    run(unlimited.write(1e9))
    assert unlimited.value == 1e9


def test_string_too_long_is_rejected():
    channel = ChannelString(value="", long_string_max_length=40)
    with pytest.raises(CaprotoValueError, match="at most 39"):
        run(channel.write("z" * 40))
    char = ChannelChar(value="", max_length=8)
    with pytest.raises(CaprotoValueError, match="max_length is 8"):
        run(char.write("123456789"))


def test_verify_value_hook_can_modify_reject_or_skip():
    class Clamped(ChannelDouble):
        async def verify_value(self, value):
            if value < 0:
                raise SkipWrite()
            return min(value, 5.0)

    channel = Clamped(value=1.0)
    run(channel.write(9.0))
    assert channel.value == 5.0
    queue, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_VALUE)
    queue.items.clear()
    run(channel.write(-1.0))
    assert channel.value == 5.0 and queue.items == []


def test_write_with_metadata_and_timestamp():
    channel = ChannelDouble(value=0.0)
    run(channel.write(1.0, timestamp=1_600_000_000.0, units="V",
                      status=AlarmStatus.SOFT, severity=AlarmSeverity.INVALID_ALARM))
    assert channel.timestamp == 1_600_000_000.0
    assert channel.units == "V" and channel.status == AlarmStatus.SOFT


def test_write_from_dbr_converts_from_any_type():
    double = ChannelDouble(value=0.0)
    run(double.write_from_dbr([b"2.5"], CT.STRING, None))
    assert double.value == 2.5
    run(double.write_from_dbr([7], CT.TIME_LONG, None))
    assert double.value == 7.0
    enum = ChannelEnum(enum_strings=["a", "b"], value="a")
    run(enum.write_from_dbr([b"b"], CT.STRING, None))
    assert enum.value == "b"
    run(enum.write_from_dbr([0], CT.ENUM, None))
    assert enum.value == "a"
    with pytest.raises(CaprotoValueError, match="zzz"):
        run(enum.write_from_dbr([b"zzz"], CT.STRING, None))
    char = ChannelChar(value="")
    run(char.write_from_dbr(b"written\0", CT.CHAR, None))
    assert char.value == "written"
    string = ChannelString(value="")
    run(string.write_from_dbr(b"long form\0\0", CT.CHAR, None))
    assert string.value == "long form"


def test_client_acknowledges_alarms():
    channel = ChannelDouble(value=0.0)
    run(channel.alarm.write(status=AlarmStatus.HIHI, severity=MAJOR))
    run(channel.write_from_dbr([MAJOR], CT.PUT_ACKS, None))
    assert channel.alarm.severity_to_acknowledge == AlarmSeverity.NO_ALARM
    run(channel.write_from_dbr([0], CT.PUT_ACKT, None))
    assert channel.alarm.must_acknowledge_transient is False


# -- subscriptions -------------------------------------------------------------------

def test_subscribe_sends_current_value_at_once():
    channel = ChannelDouble(value=3.0)
    queue, spec = subscribe(channel, CT.TIME_DOUBLE, DBE.DBE_VALUE, sub=("circuit", 7))
    (update,) = queue.items
    assert update.sub_specs == (spec,) and update.subs == (("circuit", 7),)
    assert list(update.values) == [3.0]
    assert update.metadata.secondsSinceEpoch == channel.epics_timestamp[0]


def test_deadbands_and_masks():
    channel = ChannelDouble(value=0.0, value_atol=1.0, log_atol=5.0)
    value_q, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_VALUE)
    log_q, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_LOG)
    alarm_q, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_ALARM)
    for queue in (value_q, log_q, alarm_q):
        queue.items.clear()
    for value in (0.5, 1.5, 2.0, 3.0, 5.5, 5.5):
        run(channel.write(value))
    # MDEL=1: posts when |v - last posted| > 1  -> 1.5 (from 0), 3.0 (from 1.5), 5.5
    assert [list(u.values)[0] for u in value_q.items] == [1.5, 3.0, 5.5]
    # ADEL=5: 5.5 is the first more than 5 away from 0
    assert [list(u.values)[0] for u in log_q.items] == [5.5]
    assert alarm_q.items == []


def test_strings_and_enums_post_on_change_only():
    channel = ChannelEnum(enum_strings=["a", "b"], value="a")
    queue, _ = subscribe(channel, CT.STRING, DBE.DBE_VALUE)
    queue.items.clear()
    for value in ("a", "b", "b", "a"):
        run(channel.write(value))
    assert [list(u.values)[0] for u in queue.items] == [b"b", b"a"]


def test_property_changes_reach_property_subscribers_only():
    channel = ChannelDouble(value=0.0, units="mm")
    prop_q, _ = subscribe(channel, CT.CTRL_DOUBLE, DBE.DBE_PROPERTY)
    value_q, _ = subscribe(channel, CT.CTRL_DOUBLE, DBE.DBE_VALUE)
    prop_q.items.clear()
    value_q.items.clear()
    assert run(channel.write_metadata(units="um")) == DBE.DBE_PROPERTY
    assert run(channel.write_metadata(units="um")) == DBE(0)     # no change, no event
    (update,) = prop_q.items
    assert update.metadata.units == b"um"
    assert value_q.items == []


def test_publish_reads_once_per_data_type():
    class CountingDouble(ChannelDouble):
        reads = []

        async def read(self, data_type):
            self.reads.append(data_type)
            return await super().read(data_type)

    channel = CountingDouble(value=0.0)
    queues = [ListQueue(), ListQueue(), ListQueue()]
    subscribe(channel, CT.TIME_DOUBLE, DBE.DBE_VALUE, queue=queues[0], sub=1)
    subscribe(channel, CT.TIME_DOUBLE, DBE.DBE_VALUE, queue=queues[1], sub=2)
    subscribe(channel, CT.TIME_DOUBLE, DBE.DBE_VALUE, queue=queues[1], sub=3)
    subscribe(channel, CT.STRING, DBE.DBE_VALUE, queue=queues[2], sub=4)
    channel.reads.clear()
    run(channel.write(1.0))
    assert sorted(channel.reads) == sorted([CT.TIME_DOUBLE, CT.STRING])
    assert [u.subs for u in queues[1].items[-1:]] == [(2, 3)]    # one item, both subs


def test_unsubscribe_stops_updates():
    channel = ChannelInteger(value=0)
    queue, spec = subscribe(channel, CT.LONG, DBE.DBE_VALUE)
    run(channel.unsubscribe(queue, spec))
    queue.items.clear()
    run(channel.write(5))
    assert queue.items == []


def test_arrays_always_post():
    channel = ChannelDouble(value=[1.0, 2.0])
    queue, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_VALUE)
    queue.items.clear()
    run(channel.write([1.0, 2.0]))
    assert len(queue.items) == 1          # a waveform posts on every write


# -- access --------------------------------------------------------------------------

def test_access_rights_and_read_only():
    assert ChannelDouble(value=1.0).check_access("host", "user") == (
        AccessRights.READ | AccessRights.WRITE)
    ro = ChannelDouble(value=1.0, read_only=True)
    assert ro.check_access("host", "user") == AccessRights.READ
    with pytest.raises(ChannelWriteError, match="read-only"):
        run(ro.auth_write("host", "user", [2.0], CT.DOUBLE, None))
    assert ro.value == 1.0
    assert list(run(ro.auth_read("host", "user", CT.DOUBLE))[1]) == [1.0]
    run(ro.write(3.0))                    # the IOC itself may still update it
    assert ro.value == 3.0


def test_channel_data_modules_import_no_event_loop():
    here = pathlib.Path(caproto.__file__).parent
    for name in ("_data.py", "_alarm.py"):
        tree = ast.parse((here / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
        assert not imported & {"asyncio", "threading", "socket", "select", "trio",
                               "curio"}, name


def test_base_class_is_usable():
    channel = ChannelData(value=5)
    assert list(read(channel, CT.LONG)[1]) == [5]
    with pytest.raises(CaprotoTypeError):
        ChannelChar(value=12)


def test_rejected_write_changes_nothing():
    channel = ChannelDouble(value=1.0, units="mm")
    with pytest.raises(CaprotoValueError, match="severity=9"):
        run(channel.write(2.0, units="V", severity=9))
    assert (channel.value, channel.units) == (1.0, "mm")


def test_new_enum_strings_keep_the_state_index_and_fire_property():
    channel = ChannelEnum(enum_strings=["off", "on"], value="on")
    queue, _ = subscribe(channel, CT.CTRL_ENUM, DBE.DBE_PROPERTY)
    queue.items.clear()
    run(channel.write_metadata(enum_strings=["closed", "open", "moving"]))
    assert channel.value == "open"
    (update,) = queue.items
    assert update.metadata.no_str == 3
    with pytest.raises(CaprotoValueError, match="at most 25"):
        run(channel.write_metadata(enum_strings=["fine", "n" * 30]))
    assert channel.enum_strings == ("closed", "open", "moving")


def test_unconvertible_subscription_is_refused_and_does_not_block_others():
    channel = ChannelString(value="abc")
    bad = ListQueue()
    with pytest.raises(CaprotoConversionError, match="abc"):
        subscribe(channel, CT.TIME_DOUBLE, DBE.DBE_VALUE, queue=bad)
    assert bad.items == []
    run(channel.write("12"))
    good, _ = subscribe(channel, CT.DOUBLE, DBE.DBE_VALUE)
    text, _ = subscribe(channel, CT.STRING, DBE.DBE_VALUE)
    run(channel.write("not a number"))       # DOUBLE subscribers get nothing ...
    assert [list(u.values) for u in good.items] == [[12.0]]
    assert [list(u.values) for u in text.items] == [[b"12"], [b"not a number"]]

"""The read lane (_fastlane.serve_read_requests) answers exactly as the
general path does.

A client polling values sends runs of ReadNotifyRequests; the server takes
them straight from the bytes.  Each test feeds the same client stream to two
servers, one with the lane switched off, and compares every byte they send
back and the circuit's state afterwards.  The stream mixes what the lane
must leave to the general path: errors (unknown type, too many elements,
no read access, an unknown sid, an ioid in use), getter hooks, channel
filters, other commands.
"""
import asyncio
import itertools
import struct
import types

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import caproto as ca
from caproto._headers import MessageHeader, pack_header
from caproto import _channel_data
from caproto.server import circuit as server_circuit
from caproto.server import common

ADDRESS = ("127.0.0.1", 40002)


class _NoReads(ca.ChannelDouble):
    def check_access(self, hostname, username):
        return ca.AccessRights.NO_ACCESS


class _Hooked(ca.ChannelDouble):
    """A getter hook: its answers may differ per read and must not be cached."""
    reads = 0

    async def read(self, data_type):
        _Hooked.reads += 1
        await self.write(float(_Hooked.reads))
        return await super().read(data_type)


class _Wakeup:
    async def set(self):
        pass

    async def wait(self):
        pass


def _pvdb():
    return {
        "L:x": ca.ChannelDouble(value=1.5, units="mm", precision=3),
        "L:i": ca.ChannelInteger(value=7),
        "L:arr": ca.ChannelDouble(value=numpy.arange(10.0), max_length=10),
        "L:big": ca.ChannelDouble(value=numpy.arange(70000.0), max_length=70000),
        "L:s": ca.ChannelString(value="text"),
        "L:denied": _NoReads(value=2.0),
        "L:hook": _Hooked(value=0.0),
    }


NAMES = ["L:x", "L:i", "L:arr", "L:big", "L:s", "L:denied", "L:hook", "L:x.[1:3]"]


def _connect(handler, names):
    """Open `names` on `handler` from a sans-I/O client circuit; return it
    and its channels by name."""
    client = ca.VirtualCircuit(ca.CLIENT, ADDRESS, 0)
    channels = {name: ca.ClientChannel(name, client) for name in names}
    stream = client.send(ca.VersionRequest(0, 13), ca.HostNameRequest("host"),
                         ca.ClientNameRequest("user"),
                         *[channel.create() for channel in channels.values()])
    _feed(handler, b"".join(bytes(b) for b in stream))
    client.recv(_output(handler))
    assert all(channel.states[ca.CLIENT] is ca.CONNECTED for channel in channels.values())
    return client, channels


def _feed(handler, data):
    asyncio.run(handler.received(data))


def _output(handler):
    return b"".join(bytes(buffer) for buffer in handler.take_output())


def _read(sid, ioid, data_type, count):
    return pack_header(MessageHeader(15, 0, int(data_type), count, sid, ioid))


def _serve(stream_for, chunks, lane, max_array_bytes=None):
    """Bytes the server sends back for the requests made by `stream_for`
    (timestamps from a clock that runs the same in every call)."""
    clock = itertools.count(1_000_000_000.0, 0.25)
    saved_time = _channel_data.time
    _channel_data.time = types.SimpleNamespace(time=lambda: next(clock))
    try:
        return _serve_now(stream_for, chunks, lane, max_array_bytes)
    finally:
        _channel_data.time = saved_time


def _serve_now(stream_for, chunks, lane, max_array_bytes):
    context = common.Context(_pvdb(), interfaces=["127.0.0.1"])
    if max_array_bytes is not None:            # else EPICS_CA_MAX_ARRAY_BYTES
        context.max_array_bytes = max_array_bytes
    handler = context.new_circuit(ADDRESS, _Wakeup())
    _client, channels = _connect(handler, NAMES)
    sids = {name: channel.sid for name, channel in channels.items()}
    stream = stream_for(sids)
    answers = []
    original = server_circuit.serve_read_requests
    if not lane:
        server_circuit.serve_read_requests = lambda *args: ([], 0, 0)
    try:
        cuts = sorted({cut % (len(stream) + 1) for cut in chunks})
        for start, stop in zip([0] + cuts, cuts + [len(stream)]):
            if stop > start:
                _feed(handler, stream[start:stop])
                answers.append(_output(handler))
    finally:
        server_circuit.serve_read_requests = original
    state = (handler.circuit.states[ca.CLIENT], handler.circuit.states[ca.SERVER],
             dict(handler.circuit._ioids),
             {sid: ch.states.state for sid, ch in handler.circuit.channels_sid.items()})
    return b"".join(answers), state


def _same_with_and_without_lane(stream_for, chunks=(), max_array_bytes=None):
    _Hooked.reads = 0
    general = _serve(stream_for, chunks, False, max_array_bytes)
    _Hooked.reads = 0
    fast = _serve(stream_for, chunks, True, max_array_bytes)
    assert fast == general
    return fast[0]


TYPES = [ca.ChannelType.DOUBLE, ca.ChannelType.TIME_DOUBLE, ca.ChannelType.STS_DOUBLE,
         ca.ChannelType.CTRL_DOUBLE, ca.ChannelType.STRING, ca.ChannelType.LONG,
         ca.ChannelType.TIME_LONG, ca.ChannelType.ENUM, 99]

reads = st.lists(st.tuples(st.sampled_from(NAMES + ["nosuch"]), st.sampled_from(TYPES),
                           st.sampled_from([0, 1, 2, 10, 11, 70000, 70001])),
                 min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(reads, st.lists(st.integers(0, 10_000), max_size=6))
def test_runs_of_reads_are_answered_as_the_general_path_answers(requests, chunks):
    def stream_for(sids):
        return b"".join(_read(sids.get(name, 4242), ioid, data_type, count)
                        for ioid, (name, data_type, count) in enumerate(requests))
    answers = _same_with_and_without_lane(stream_for, chunks)
    assert answers                          # every request got an answer or an error


def test_a_polled_value_is_answered_with_the_current_value():
    def stream_for(sids):
        return b"".join(_read(sids["L:x"], ioid, ca.ChannelType.DOUBLE, 1)
                        for ioid in range(3))
    answers = _same_with_and_without_lane(stream_for)
    assert len(answers) == 3 * 24
    for ioid in range(3):
        answer = answers[24 * ioid:24 * (ioid + 1)]
        assert int.from_bytes(answer[12:16], "big") == ioid
        assert numpy.frombuffer(answer[16:], ">f8")[0] == 1.5


def test_large_answers_keep_their_extended_header():
    def stream_for(sids):
        return _read(sids["L:big"], 5, ca.ChannelType.DOUBLE, 0)
    answers = _same_with_and_without_lane(stream_for, max_array_bytes=1_000_000)
    header = ca.MessageHeader(*struct.unpack(">HHHHII", answers[:16]))
    assert header.payload_size == 0xFFFF and header.parameter2 == 5
    assert numpy.array_equal(numpy.frombuffer(answers[24:24 + 560000], ">f8"),
                             numpy.arange(70000.0))


def test_a_write_between_reads_is_seen_by_the_next_read():
    def stream_for(sids):
        write = ca.WriteNotifyRequest(data=[9.25], data_type=ca.ChannelType.DOUBLE,
                                      data_count=1, sid=sids["L:x"], ioid=50)
        return (_read(sids["L:x"], 1, ca.ChannelType.DOUBLE, 1) + bytes(write)
                + _read(sids["L:x"], 2, ca.ChannelType.DOUBLE, 1))
    answers = _same_with_and_without_lane(stream_for)
    values = [numpy.frombuffer(answers[start + 16:start + 24], ">f8")[0]
              for start in (0, len(answers) - 24)]
    assert values == [1.5, 9.25]


def test_an_ioid_in_use_is_left_to_the_general_path():
    """A second read reusing a pending ioid is a protocol error the general
    path reports; the lane must not answer it."""
    context = common.Context(_pvdb(), interfaces=["127.0.0.1"])
    handler = context.new_circuit(ADDRESS, _Wakeup())
    _client, channels = _connect(handler, ["L:x"])
    handler.circuit._ioids[7] = ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1,
                                                    channels["L:x"].sid, 7)
    handler.circuit._buffer.feed(_read(channels["L:x"].sid, 7, ca.ChannelType.DOUBLE, 1))
    answers, nbytes, taken = server_circuit.serve_read_requests(
        handler.circuit, handler._read_server(), 1 << 20)
    assert (answers, nbytes, taken) == ([], 0, 0)


def test_the_lane_is_only_for_servers():
    client = ca.VirtualCircuit(ca.CLIENT, ADDRESS, 0)
    with pytest.raises(ca.LocalProtocolError):
        server_circuit.serve_read_requests(client, lambda *args: None, 1)


def test_a_field_read_reports_its_records_current_alarm_and_time():
    """rec.HIHI answers with the record's timestamp and alarm, as an IOC
    does; a cached answer must not keep the old ones once the record
    changed (the field itself did not)."""
    from caproto.server import PVGroup, pvproperty

    class Group(PVGroup):
        x = pvproperty(value=1.0, record="ai")

    group = Group(prefix="R:")
    context = common.Context(dict(group.pvdb), interfaces=["127.0.0.1"])
    handler = context.new_circuit(ADDRESS, _Wakeup())
    _client, channels = _connect(handler, ["R:x.HIHI"])
    sid = channels["R:x.HIHI"].sid

    def read_time(ioid):
        _feed(handler, _read(sid, ioid, ca.ChannelType.TIME_DOUBLE, 1))
        answer = _output(handler)
        metadata = ca.DBR_TYPES[ca.ChannelType.TIME_DOUBLE].from_buffer_copy(answer[16:])
        return metadata.status, metadata.severity, metadata.timestamp

    async def record_changes():
        await group.x.write(2.0, timestamp=1_900_000_000.5,
                            status=ca.AlarmStatus.HIHI, severity=ca.AlarmSeverity.MAJOR_ALARM)

    before = read_time(1)
    asyncio.run(record_changes())
    after = read_time(2)
    assert before != after
    assert after == (ca.AlarmStatus.HIHI, ca.AlarmSeverity.MAJOR_ALARM, 1_900_000_000.5)


def _group_pvdb():
    from caproto.server import PVGroup, pvproperty

    class Group(PVGroup):
        plain = pvproperty(value=1.25, precision=2)
        polled = pvproperty(value=0.0)

        @polled.getter
        async def polled(self, instance):
            Group.getter_calls += 1
            return float(Group.getter_calls)

    Group.getter_calls = 0
    return Group, dict(Group(prefix="G:").pvdb)


def test_pvproperty_reads_take_the_lane_unless_a_getter_must_run(monkeypatch):
    """A pvproperty without a getter is answered from the cache like a plain
    channel; one with a getter runs it on every read, lane or not."""
    answers = {}
    for lane in (False, True):
        Group, pvdb = _group_pvdb()
        context = common.Context(pvdb, interfaces=["127.0.0.1"])
        handler = context.new_circuit(ADDRESS, _Wakeup())
        _client, channels = _connect(handler, ["G:plain", "G:polled"])
        if not lane:
            monkeypatch.setattr(server_circuit, "serve_read_requests",
                                lambda *args: ([], 0, 0))
        stream = b"".join(_read(channels[name].sid, ioid, ca.ChannelType.DOUBLE, 1)
                          for ioid, name in enumerate(["G:plain", "G:polled"] * 3))
        _feed(handler, stream)
        answers[lane] = (_output(handler), Group.getter_calls)
        monkeypatch.undo()
    assert answers[True] == answers[False]
    output, calls = answers[True]
    values = [numpy.frombuffer(output[start + 16:start + 24], ">f8")[0]
              for start in range(0, len(output), 24)]
    assert values == [1.25, 1.0, 1.25, 2.0, 1.25, 3.0] and calls == 3
    plain = pvdb["G:plain"]
    assert server_circuit._cacheable(plain, ca.ChannelType.DOUBLE)
    assert not server_circuit._cacheable(pvdb["G:polled"], ca.ChannelType.DOUBLE)

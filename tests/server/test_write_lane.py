"""The write lane (_fastlane.take_write_requests) writes exactly as the
general path does.

A client setting values (a GUI slider, a putter script, libca's ca_put)
sends runs of WriteRequests; the server takes them straight from the bytes.
Each test feeds the same client stream to two servers, one with the lane
switched off, and compares every byte they send back, the circuit's state
and every PV's value, alarm and timestamp afterwards.  The streams mix what
the lane must leave to the general path (an unknown sid or DBR type, a
read-only channel, libca's short form of one string, a count of 0, writes
with notify, reads) with what the shared write itself refuses (too many
elements, a value outside the control limits, a hook that raises).
"""
import asyncio
import itertools
import types

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import caproto as ca
from caproto import _channel_data
from caproto._headers import MessageHeader, pack_header
from caproto.server import circuit as server_circuit
from caproto.server import common

from .test_read_lane import _Wakeup

ADDRESS = ("127.0.0.1", 40003)


class _Refusing(ca.ChannelDouble):
    """A putter hook that raises: the client must get ECA_PUTFAIL."""

    async def verify_value(self, value):
        if value == 13.0:
            raise ValueError("13 is unlucky")
        return value


def _pvdb():
    return {
        "W:x": ca.ChannelDouble(value=1.5, upper_ctrl_limit=100.0, lower_ctrl_limit=-100.0),
        "W:i": ca.ChannelInteger(value=7),
        "W:arr": ca.ChannelDouble(value=numpy.arange(4.0), max_length=4),
        "W:s": ca.ChannelString(value="text"),
        "W:e": ca.ChannelEnum(value="b", enum_strings=["a", "b", "c"]),
        "W:ro": ca.ChannelDouble(value=2.0, read_only=True),
        "W:hook": _Refusing(value=0.0),
    }


NAMES = ["W:x", "W:i", "W:arr", "W:s", "W:e", "W:ro", "W:hook"]


def _connect(handler, names):
    client = ca.VirtualCircuit(ca.CLIENT, ADDRESS, 0)
    channels = {name: ca.ClientChannel(name, client) for name in names}
    stream = client.send(ca.VersionRequest(0, 13), ca.HostNameRequest("host"),
                         ca.ClientNameRequest("user"),
                         *[channel.create() for channel in channels.values()])
    asyncio.run(handler.received(b"".join(bytes(b) for b in stream)))
    client.recv(_output(handler))
    return channels


def _output(handler):
    return b"".join(bytes(buffer) for buffer in handler.take_output())


def _write(sid, data_type, values, ioid=0, notify=False):
    """A WriteRequest's bytes as libca sends them (short form of one string)."""
    cls = ca.WriteNotifyRequest if notify else ca.WriteRequest
    return bytes(cls(data=values, data_type=data_type, data_count=len(values),
                     sid=sid, ioid=ioid))


def _raw(command, data_type, count, sid, ioid, payload=b""):
    return pack_header(MessageHeader(command, len(payload), int(data_type), count,
                                     sid, ioid)) + payload


def _serve(stream_for, chunks, lane):
    """What the server sends back and leaves behind for `stream_for`'s
    requests, timestamps from a clock that runs the same in every call."""
    clock = itertools.count(1_000_000_000.0, 0.25)
    saved_time = _channel_data.time
    _channel_data.time = types.SimpleNamespace(time=lambda: next(clock))
    original = server_circuit.take_write_requests
    if not lane:
        server_circuit.take_write_requests = lambda *args: []
    try:
        pvdb = _pvdb()
        context = common.Context(pvdb, interfaces=["127.0.0.1"])
        handler = context.new_circuit(ADDRESS, _Wakeup())
        channels = _connect(handler, NAMES)
        # One subscription: every accepted write also sends an event.
        sub = channels["W:x"].subscribe(data_type=ca.ChannelType.TIME_DOUBLE)
        asyncio.run(handler.received(bytes(sub)))
        answers = [_output(handler)]
        stream = stream_for({name: ch.sid for name, ch in channels.items()})
        cuts = sorted({cut % (len(stream) + 1) for cut in chunks})
        for start, stop in zip([0] + cuts, cuts + [len(stream)]):
            if stop > start:
                asyncio.run(handler.received(stream[start:stop]))
                answers.append(_output(handler))
    finally:
        server_circuit.take_write_requests = original
        _channel_data.time = saved_time
    circuit = handler.circuit
    state = (circuit.states[ca.CLIENT], circuit.states[ca.SERVER], dict(circuit._ioids),
             {sid: ch.states.state for sid, ch in circuit.channels_sid.items()},
             circuit.pending_bytes)
    values = {name: (repr(data.value), data.timestamp, data.alarm.status,
                     data.alarm.severity) for name, data in pvdb.items()}
    return b"".join(answers), state, values


def _errors(answers):
    """The ErrorResponses in a server's answers, parsed as a client would."""
    errors = []
    while answers:
        answers, command, _ = ca.read_from_bytestream(answers, ca.SERVER)
        if isinstance(command, ca.ErrorResponse):
            errors.append(command)
    return errors


def _same_with_and_without_lane(stream_for, chunks=()):
    general = _serve(stream_for, chunks, False)
    fast = _serve(stream_for, chunks, True)
    assert fast == general
    return fast


D, L, S, E, TD = (ca.ChannelType.DOUBLE, ca.ChannelType.LONG, ca.ChannelType.STRING,
                  ca.ChannelType.ENUM, ca.ChannelType.TIME_DOUBLE)
WRITES = [
    ("W:x", D, [2.5]), ("W:x", L, [3]), ("W:x", S, [b"4.25"]), ("W:x", TD, [5.5]),
    ("W:x", D, [1e6]),                            # outside the control limits
    ("W:x", D, [1.0, 2.0]),                       # more than max_length
    ("W:i", D, [8.0]), ("W:i", D, [1e12]),        # does not fit a LONG
    ("W:arr", D, [1.0, 2.0, 3.0]), ("W:arr", L, [9, 8, 7, 6]),
    ("W:s", S, [b"hello"]), ("W:e", S, [b"c"]), ("W:e", E, [0]), ("W:e", S, [b"z"]),
    ("W:ro", D, [3.0]), ("W:hook", D, [12.0]), ("W:hook", D, [13.0]),
    ("nosuch", D, [1.0]),
]

requests = st.lists(st.tuples(st.sampled_from(range(len(WRITES))), st.booleans()),
                    min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(requests, st.lists(st.integers(0, 3000), max_size=5))
def test_runs_of_writes_are_applied_as_the_general_path_applies_them(picked, chunks):
    def stream_for(sids):
        return b"".join(
            _write(sids.get(WRITES[index][0], 4242), WRITES[index][1], WRITES[index][2],
                   ioid=ioid, notify=notify)
            for ioid, (index, notify) in enumerate(picked))
    _same_with_and_without_lane(stream_for, chunks)


def test_a_run_of_writes_lands_in_order_with_one_event_each():
    def stream_for(sids):
        return b"".join(_write(sids["W:x"], D, [float(v)]) for v in range(10, 15))
    answers, _state, values = _same_with_and_without_lane(stream_for)
    assert values["W:x"][0] == "14.0"
    events = [answers[start:start + 40] for start in range(0, len(answers), 40)]
    assert [numpy.frombuffer(event[32:40], ">f8")[0] for event in events] == [
        1.5, 10.0, 11.0, 12.0, 13.0, 14.0]          # the initial value, then each write


def test_refused_writes_answer_errors_that_echo_the_request():
    """A write the channel refuses (read-only) or the write itself fails
    (the hook) is answered with an ErrorResponse carrying the request's
    header and the channel's cid, lane or not."""
    def stream_for(sids):
        return (_write(sids["W:ro"], D, [3.0], ioid=1)
                + _write(sids["W:hook"], D, [13.0], ioid=2)
                + _write(sids["W:x"], D, [7.0], ioid=3))
    answers, _state, values = _same_with_and_without_lane(stream_for)
    errors = _errors(answers)
    assert [error.status for error in errors] == [ca.CAStatus.ECA_NOWTACCESS,
                                                  ca.CAStatus.ECA_PUTFAIL]
    assert [error.original_request.parameter2 for error in errors] == [1, 2]
    assert "unlucky" in errors[1].error_message
    assert values["W:ro"][0] == "2.0" and values["W:hook"][0] == "0.0"
    assert values["W:x"][0] == "7.0"


def test_what_the_lane_leaves_reaches_the_general_path():
    """An unknown DBR type, a payload too short for its count and libca's
    short single string are the general path's to refuse or pad."""
    def stream_for(sids):
        return (_raw(4, 99, 1, sids["W:x"], 1, bytes(8))        # unknown type
                + _raw(4, D, 2, sids["W:x"], 2, bytes(8))        # 8 bytes for 2
                + _raw(4, S, 1, sids["W:s"], 3, b"short\0\0\0")  # libca's short form
                + _raw(4, D, 0, sids["W:arr"], 4)                # count 0
                + _write(sids["W:x"], D, [6.0], ioid=5))
    answers, state, values = _same_with_and_without_lane(stream_for)
    assert [error.original_request.parameter2 for error in _errors(answers)][:2] == [1, 2]                        # both refused, nothing written
    assert values["W:s"][0] == "'short'" and values["W:x"][0] == "6.0"
    assert state[-1] == 0                              # every byte taken


def test_the_lane_takes_runs_of_plain_writes_only():
    context = common.Context(_pvdb(), interfaces=["127.0.0.1"])
    handler = context.new_circuit(ADDRESS, _Wakeup())
    channels = _connect(handler, NAMES)
    sid = channels["W:x"].sid
    circuit = handler.circuit
    assert server_circuit.take_write_requests(circuit) == []
    circuit.feed(_write(sid, D, [0.5]))
    # A channel the create lane opened is made by the general path first.
    assert server_circuit.take_write_requests(circuit) == []
    asyncio.run(handler.received(b""))
    assert circuit.pending_bytes == 0 and context.pvdb["W:x"].value == 0.5
    circuit.feed(_write(sid, D, [1.0]) + _write(sid, L, [2])
                 + _write(sid, D, [3.0], ioid=9, notify=True) + _write(sid, D, [4.0]))
    taken = server_circuit.take_write_requests(circuit)
    assert [(header[4], data_type, list(data)) for header, data_type, data, _m in taken] == [
        (sid, D, [1.0]), (sid, L, [2])]                 # stopped before the notify
    assert circuit.next_command_id() == ca.WriteNotifyRequest.ID
    assert context.pvdb["W:x"].value == 0.5             # the caller writes them


def test_the_lane_is_only_for_servers():
    client = ca.VirtualCircuit(ca.CLIENT, ADDRESS, 0)
    with pytest.raises(ca.LocalProtocolError):
        server_circuit.take_write_requests(client)


def test_a_putter_flushing_small_pieces_still_hands_the_loop_over():
    """libca flushes a putter's writes every few kB, so a layer often reads
    less than RECV_CHUNK while more is already waiting.  It must still let
    the others run (the subscribers' senders, other clients) after each
    RECV_CHUNK handled, counted across reads: yielding only after a full
    chunk, it kept reading until the putter paused, and the subscribers'
    updates were coalesced away meanwhile."""
    context = common.Context(_pvdb(), interfaces=["127.0.0.1"])
    handler = context.new_circuit(ADDRESS, _Wakeup())
    channels = _connect(handler, NAMES)
    handler.turn_over()
    flush = b"".join(_write(channels["W:x"].sid, D, [float(i)]) for i in range(100))
    assert len(flush) < common.RECV_CHUNK // 4
    turns = []
    for _ in range(40):
        asyncio.run(handler.received(flush))
        turns.append(handler.turn_over())
    assert 5 <= sum(turns) <= 6                 # 96,000 bytes: one per 16 kB
    assert not any(turns[:6])                   # not before a chunk's worth
    assert context.pvdb["W:x"].value == 99.0

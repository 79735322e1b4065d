"""Writes whose payload cannot be decoded get an answer, as from rsrv.

A write naming an unknown DBR type, or carrying fewer bytes than its count
needs, is a bad request, not a broken stream: the header says how long it
is.  epics-base's softIoc answers an unknown type with ECA_BADTYPE (an
ErrorResponse for a plain write, a WriteNotifyResponse for a put-callback);
we answer the same way, keep the circuit, and write nothing.  A short
payload gets ECA_BADCOUNT from us (rsrv writes what it finds there).
"""
import struct
import time

import pytest

import caproto as ca
from caproto import CAStatus, ErrorResponse, ReadNotifyResponse, WriteNotifyResponse

from . import LAYERS, ServerThread
from .test_server_faults import RawClient, raw_header

pytestmark = pytest.mark.timeout(60)


def _replies(client, kind, timeout=5):
    """The next command of class `kind` off the socket, parsed without the
    client circuit's bookkeeping (it never sent the raw requests)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        client.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = client.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
        while True:
            data, command, _needed = ca.read_from_bytestream(data, ca.SERVER)
            if command is ca.NEED_DATA:
                break
            if isinstance(command, kind):
                return command
    raise TimeoutError(f"no {kind.__name__}")


def _bad_type(command, sid, ioid):
    return raw_header(command, 8, 99, 1, sid, ioid) + struct.pack(">d", 5.0)


@pytest.fixture
def softioc_channel(softioc):
    ioc = softioc('record(ao, "U:x") { field(VAL, "1") }\n')

    def connect():
        client = RawClient(ioc.port)
        return client, client.channel("U:x")
    return connect


def test_softioc_answers_an_unknown_type_with_badtype(softioc_channel):
    """What we match: epics-base's answers, measured here, not assumed.
    (After the plain write's ErrorResponse rsrv also closes the circuit;
    we keep serving.)"""
    client, x = softioc_channel()
    client.send_raw(_bad_type(19, x.sid, 201))
    reply = _replies(client, WriteNotifyResponse)
    assert (reply.ioid, reply.status) == (201, CAStatus.ECA_BADTYPE)
    client.close()
    client, x = softioc_channel()
    client.send_raw(_bad_type(4, x.sid, 202))
    error = _replies(client, ErrorResponse)
    assert error.status == CAStatus.ECA_BADTYPE
    assert error.original_request.data_type == 99
    client.close()


@pytest.mark.parametrize("layer", LAYERS)
def test_we_answer_undecodable_writes_and_keep_serving(layer):
    pvdb = {"U:x": ca.ChannelDouble(value=1.0)}
    with ServerThread(layer, pvdb) as context:
        client = RawClient(context.port)
        x = client.channel("U:x")
        client.send_raw(_bad_type(19, x.sid, 201))
        reply = _replies(client, WriteNotifyResponse)
        assert (reply.ioid, reply.status) == (201, CAStatus.ECA_BADTYPE)
        client.send_raw(_bad_type(4, x.sid, 202))
        error = _replies(client, ErrorResponse)
        assert error.status == CAStatus.ECA_BADTYPE
        assert error.original_request.data_type == 99
        # three doubles announced, one carried
        client.send_raw(raw_header(19, 8, 6, 3, x.sid, 203) + struct.pack(">d", 5.0))
        reply = _replies(client, WriteNotifyResponse)
        assert (reply.ioid, reply.status) == (203, CAStatus.ECA_BADCOUNT)
        # Still serving, and nothing was written.
        client.send(x.read(data_type=6, ioid=300))
        assert list(_replies(client, ReadNotifyResponse).data) == [1.0]
        client.close()
    assert pvdb["U:x"].value == 1.0


def _write_text(client, channel, ioid):
    client.send(channel.write(["not a number"], data_type=0, notify=True, ioid=ioid))
    reply = client.next(WriteNotifyResponse)
    assert reply.ioid == ioid
    return reply.status


@pytest.mark.parametrize("layer", LAYERS)
def test_text_that_is_no_number_fails_the_put_as_on_a_softioc(layer, softioc_channel):
    """A DBR_STRING put of "not a number" to a DOUBLE: rsrv answers
    ECA_PUTFAIL (its dbPutField failed), not a conversion error code."""
    client, x = softioc_channel()
    theirs = _write_text(client, x, 401)
    client.close()
    pvdb = {"U:x": ca.ChannelDouble(value=1.0)}
    with ServerThread(layer, pvdb) as context:
        client = RawClient(context.port)
        ours = _write_text(client, client.channel("U:x"), 401)
        client.close()
    assert theirs == CAStatus.ECA_PUTFAIL
    assert ours == theirs
    assert pvdb["U:x"].value == 1.0

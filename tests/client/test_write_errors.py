"""A server's refusal of a request nobody waits for reaches the user.

A plain write (WriteRequest, ``PV.write(..., wait=False)``) has no answer
unless the server refuses it with an ErrorResponse.  The core hands such
refusals to the face as ``ServerError``; the threading and asyncio faces
log them at ERROR naming the PV and the ECA status, the sync client raises
them.  rsrv refuses a write to a record's RTYP field (ECA_PUTFAIL).
"""
import asyncio
import logging

import pytest

import caproto as ca
from caproto.client import core
from caproto.sync.client import read_write_read, write
from caproto.threading.client import Context
from tests.client.test_client_core import Pair, of

DB = """
record(ai, "werr:ai") { field(VAL, "1.5") }
record(ao, "werr:ao") { field(VAL, "0") }
"""


# -- the core, in memory --------------------------------------------------------

def _refuse(pair, request, cid, status=ca.CAStatus.ECA_PUTFAIL):
    return pair.to_client(ca.ErrorResponse(request, cid, status, "pv"))


def test_refused_plain_write_becomes_a_server_error():
    pair = Pair(names=("plain",))
    entry = pair.entries[0]
    request, effects = pair.core.write(entry, [2.0])
    assert request is None                        # nobody waits for it
    (sent,) = pair.to_server(effects)
    effects = _refuse(pair, sent, entry.channel.cid)
    (error,) = of(effects, core.ServerError)
    assert error.entry is entry and error.command.original_request == sent.header
    assert "'plain'" in str(error.error) and "ECA_PUTFAIL" in str(error.error)
    assert not of(effects, core.RequestFailed)


def test_refused_notify_write_fails_its_request_only():
    pair = Pair(names=("notify",))
    entry = pair.entries[0]
    request, effects = pair.core.write(entry, [2.0], owner="me", notify=True)
    (sent,) = pair.to_server(effects)
    effects = _refuse(pair, sent, entry.channel.cid)
    (failed,) = of(effects, core.RequestFailed)
    assert failed.request is request and "ECA_PUTFAIL" in str(failed.error)
    assert not of(effects, core.ServerError)


def test_refusal_of_a_plain_write_leaves_a_read_with_its_ioid_alone():
    # A WriteRequest's ioid may equal a pending read's: the refusal of the
    # write must not complete (fail) the read.
    pair = Pair(names=("shared",))
    entry = pair.entries[0]
    read, effects = pair.core.read(entry, owner="reader")
    pair.to_server(effects)
    fake_write = ca.WriteRequest([1.0], ca.ChannelType.DOUBLE, 1,
                                 entry.channel.sid, read.ioid)
    effects = _refuse(pair, fake_write, entry.channel.cid)
    assert of(effects, core.ServerError) and not of(effects, core.RequestFailed)
    assert pair.core.circuits[pair.key].requests[read.ioid] is read


def test_refused_subscription_is_reported_too():
    pair = Pair(names=("sub",))
    entry = pair.entries[0]
    _sub, effects = pair.core.subscribe(entry, owner="cb")
    (sent,) = pair.to_server(effects)
    effects = _refuse(pair, sent, entry.channel.cid, ca.CAStatus.ECA_BADTYPE)
    (error,) = of(effects, core.ServerError)
    assert "subscribe of 'sub'" in str(error.error)
    assert "ECA_BADTYPE" in str(error.error)


# -- the faces, against a softIoc -----------------------------------------------

def _errors(caplog, logger_name):
    return [r.getMessage() for r in caplog.records
            if r.name == logger_name and r.levelno == logging.ERROR]


def test_threading_logs_a_refused_plain_write(softioc, caplog):
    softioc(DB)
    caplog.set_level(logging.ERROR, logger="caproto.threading.client")
    with Context(timeout=5) as context:
        rtyp, ao = context.get_pvs("werr:ai.RTYP", "werr:ao")
        rtyp.write("calc", wait=False)
        # The refusal travels ahead of this read's answer on the circuit.
        assert rtyp.read().data == [b"ai"]
        ao.write(3.0, wait=False)
        assert ao.read().data[0] == 3.0
    (message,) = _errors(caplog, "caproto.threading.client")
    assert "'werr:ai.RTYP'" in message and "ECA_PUTFAIL" in message
    assert "Channel write request failed" in message


def test_asyncio_logs_a_refused_plain_write(softioc, caplog):
    from caproto.asyncio.client import Context as AsyncContext
    softioc(DB)
    caplog.set_level(logging.ERROR, logger="caproto.asyncio.client")

    async def main():
        context = AsyncContext(timeout=5)
        try:
            [rtyp] = await context.get_pvs("werr:ai.RTYP")
            await rtyp.write(["calc"], wait=False,
                             data_type=ca.ChannelType.STRING)
            return (await rtyp.read()).data
        finally:
            await context.disconnect()

    assert asyncio.run(main()) == [b"ai"]
    (message,) = _errors(caplog, "caproto.asyncio.client")
    assert "'werr:ai.RTYP'" in message and "ECA_PUTFAIL" in message


def test_sync_write_raises_the_refusal(softioc):
    softioc(DB)
    with pytest.raises(ca.ErrorResponseReceived) as info:
        write("werr:ai.RTYP", "calc", timeout=5)
    assert "'werr:ai.RTYP'" in str(info.value)
    assert "ECA_PUTFAIL" in str(info.value)
    with pytest.raises(ca.ErrorResponseReceived, match="werr:ai.RTYP"):
        read_write_read("werr:ai.RTYP", "calc", timeout=5)
    write("werr:ao", 4.5, timeout=5)              # an accepted write is quiet
    assert read_write_read("werr:ao", 5.5, timeout=5)[2].data[0] == 5.5

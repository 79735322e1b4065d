"""caproto.asyncio.client against a real epics-base softIoc, checked with pyepics."""
import asyncio

import pytest

from caproto import ChannelType, CaprotoTimeoutError, ErrorResponseReceived
from caproto.asyncio.client import Context

pytestmark = pytest.mark.network


DB = """
record(ai, "AIO:ai") { field(VAL, "1.25") field(EGU, "V") field(PREC, "2") field(PINI, "YES") }
record(ao, "AIO:ao") { field(VAL, "0") field(PINI, "YES") }
record(mbbo, "AIO:mbbo") { field(ZRST, "Off") field(ONST, "On") field(VAL, "0") field(PINI, "YES") }
record(calc, "AIO:counter") {
    field(SCAN, ".1 second") field(INPA, "AIO:counter NPP") field(CALC, "A+1")
}
"""


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 25))


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    # One softIoc for the module: pyepics caches channels per process, and a
    # restarted IOC would leave it reconnecting while a test reads.
    import os
    from tests.peers import SoftIoc
    tmp = tmp_path_factory.mktemp("asyncio-client")
    (tmp / "aio.db").write_text(DB)
    ioc = SoftIoc(tmp / "aio.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  tmp / "ioc.log")
    yield ioc
    ioc.stop()


def test_read_and_metadata(ioc):
    async def main():
        ctx = Context(timeout=5)
        try:
            ai, mbbo = await ctx.get_pvs("AIO:ai", "AIO:mbbo")
            plain = await ai.read()
            ctrl = await ai.read(data_type="control")
            enum = await mbbo.read(data_type=ChannelType.CTRL_ENUM)
            return ai.native_data_type, plain, ctrl, enum
        finally:
            await ctx.disconnect()

    native, plain, ctrl, enum = run(main())
    assert list(plain.data) == [1.25]
    assert ctrl.metadata.units == b"V" and ctrl.metadata.precision == 2
    assert enum.metadata.enum_strings == [b"Off", b"On"]
    assert native == ChannelType.DOUBLE


def test_write_is_seen_by_pyepics(ioc):
    epics = pytest.importorskip("epics")

    async def main():
        ctx = Context(timeout=5)
        try:
            [ao] = await ctx.get_pvs("AIO:ao")
            return await ao.write(17.5)
        finally:
            await ctx.disconnect()

    response = run(main())
    assert response.status.success
    assert epics.caget("AIO:ao", timeout=5, use_monitor=False) == 17.5


def test_refused_write_raises(ioc):
    async def main():
        ctx = Context(timeout=5)
        try:
            [rtyp] = await ctx.get_pvs("AIO:ai.RTYP")
            await rtyp.write(["calc"], data_type=ChannelType.STRING)
        finally:
            await ctx.disconnect()

    with pytest.raises(ErrorResponseReceived, match="AIO:ai.RTYP"):
        run(main())


def test_subscription_callbacks_and_async_iteration(ioc):
    async def main():
        ctx = Context(timeout=5)
        try:
            [counter] = await ctx.get_pvs("AIO:counter")
            sub = counter.subscribe(data_type="time")
            from_callback = []
            sub.add_callback(lambda s, r: from_callback.append(float(r.data[0])))
            iterated = []
            async for response in sub:
                iterated.append(float(response.data[0]))
                if len(iterated) == 3:
                    break
            await sub.clear()
            return from_callback, iterated
        finally:
            await ctx.disconnect()

    from_callback, iterated = run(main())
    assert len(iterated) == 3 and iterated == sorted(iterated)
    assert set(iterated) <= set(from_callback)


def test_connection_callbacks_and_reconnect_after_restart(softioc, free_port):
    # Its own IOC on its own port, restarted in the middle of the test.
    import os
    ioc = softioc(DB, port=free_port)
    env = dict(os.environ, EPICS_CA_SERVER_PORT=str(free_port))

    async def main():
        states = []
        ctx = Context(timeout=10, env=env)
        try:
            [ai] = await ctx.get_pvs(
                "AIO:ai", connection_state_callback=lambda pv, s: states.append(s))
            await ai.wait_for_connection()
            first = await ai.read()
            ioc.stop()
            while "disconnected" not in states:
                await asyncio.sleep(0.05)
            softioc(DB.replace('"1.25"', '"7.75"'), port=free_port)
            await ai.wait_for_connection(timeout=15)
            second = await ai.read()
            return states, first, second
        finally:
            await ctx.disconnect()

    states, first, second = run(main())
    assert states[:3] == ["connected", "disconnected", "connected"]
    assert list(first.data) == [1.25] and list(second.data) == [7.75]


def test_unknown_pv_times_out_with_its_name(ioc):
    async def main():
        ctx = Context()
        try:
            [pv] = await ctx.get_pvs("AIO:nothing_here")
            await pv.read(timeout=0.5)
        finally:
            await ctx.disconnect()

    with pytest.raises(CaprotoTimeoutError, match="AIO:nothing_here"):
        run(main())


def test_pvs_are_cached_and_access_rights_reported(ioc):
    async def main():
        rights = []
        async with Context(timeout=5) as ctx:
            [a] = await ctx.get_pvs("AIO:ao", access_rights_callback=lambda pv, r: rights.append(r))
            [b] = await ctx.get_pvs("AIO:ao")
            await a.wait_for_connection()
            await asyncio.sleep(0)
            return a is b, rights, a.access_rights

    same, rights, current = run(main())
    assert same
    assert rights and int(rights[-1]) == 3 and int(current) == 3   # READ | WRITE


def test_write_callback_without_waiting(ioc):
    epics = pytest.importorskip("epics")

    async def main():
        async with Context(timeout=5) as ctx:
            [ao] = await ctx.get_pvs("AIO:ao")
            done = asyncio.Event()
            results = []

            def finished(response):
                results.append(response)
                done.set()

            assert await ao.write(3.5, wait=False, callback=finished) is None
            await asyncio.wait_for(done.wait(), 5)
            return results

    [response] = run(main())
    assert response.status.success
    assert epics.caget("AIO:ao", timeout=5, use_monitor=False) == 3.5

"""The async-library objects IOC hooks receive, and the hook life cycle, per layer."""
import logging
import threading
import time

import pytest

import caproto as ca
from caproto.server.typing import AsyncLibraryLayer

from . import LAYERS, ServerThread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=LAYERS)
def layer(request):
    return request.param


def test_async_lib_tools_work_from_hooks_and_threads(layer):
    server = ServerThread(layer, {"L:x": ca.ChannelDouble()})
    with server:
        async_lib = server.async_lib
        assert isinstance(async_lib, AsyncLibraryLayer)
        assert async_lib.name == layer and async_lib.library.__name__ == layer

        async def tools():
            await async_lib.sleep(0.001)
            queue = async_lib.ThreadsafeQueue()
            # A plain thread feeds the queue; a task on the loop receives.
            threading.Thread(target=queue.put, args=("from thread",)).start()
            received = await queue.async_get()
            answer = await async_lib.run_in_thread(lambda a, b: a + b, 2, 3)
            event = async_lib.Event()
            return received, answer, event.is_set()
        assert server.call(tools) == ("from thread", 5, False)

        async def make_queue():
            queue = async_lib.ThreadsafeQueue()
            await queue.async_put("to thread")
            return queue
        assert server.call(make_queue).get(timeout=5) == "to thread"


class Hooked(ca.ChannelDouble):
    """A ChannelData with the hooks pvproperty gives its instances."""

    def __init__(self, log, **kwargs):
        super().__init__(**kwargs)
        self.log = log

    async def server_startup(self, async_lib):
        self.log.append(("startup", async_lib.name))
        await self.write(1.0)

    async def server_scan(self, async_lib):
        for _ in range(3):
            await async_lib.sleep(0.001)
            await self.write(self.value + 1)
        self.log.append(("scanned", self.value))

    async def server_shutdown(self, async_lib):
        self.log.append(("shutdown", async_lib.name))


class Broken(ca.ChannelDouble):
    async def server_startup(self, async_lib):
        raise RuntimeError("this hook is broken")


def test_startup_scan_and_shutdown_hooks(layer, caplog):
    log = []
    pvdb = {"L:hooked": Hooked(log, value=0.0), "L:broken": Broken()}
    server = ServerThread(layer, pvdb)
    with caplog.at_level(logging.ERROR, logger="caproto.ctx"):
        with server:
            deadline = time.monotonic() + 10
            while ("scanned", 4.0) not in log and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ("startup", layer) in log and ("scanned", 4.0) in log
        assert log[-1] == ("shutdown", layer)
    assert any("this hook is broken" in (r.exc_text or "") or
               "this hook is broken" in str(r.exc_info) for r in caplog.records)


def test_wakeup_is_level_triggered(layer):
    module = __import__(f"caproto.{layer}.server", fromlist=["_Wakeup"])
    server = ServerThread(layer, {"L:x": ca.ChannelDouble()})
    with server:
        async def check():
            wakeup = module._Wakeup()
            await wakeup.set()
            await wakeup.set()
            await wakeup.wait()              # set before: returns at once
            results = []

            async def waiter():
                await wakeup.wait()
                results.append("woken")
            await spawn(waiter)
            await server.async_lib.sleep(0.01)
            assert results == []              # cleared by the first wait
            await wakeup.set()
            for _ in range(100):
                if results:
                    break
                await server.async_lib.sleep(0.001)
            return results

        async def spawn(function):
            if layer == "asyncio":
                import asyncio
                asyncio.ensure_future(function())
            elif layer == "curio":
                import curio
                await curio.spawn(function, daemon=True)
            else:
                import trio
                trio.lowlevel.spawn_system_task(function)
        assert server.call(check) == ["woken"]

"""curio layer of the CA server: sockets, tasks, queues and events only.

All protocol behaviour is in caproto.server.common.
"""
import logging
import sys

import curio
import curio.io
from curio.traps import _read_wait, _write_wait

from ..server import common, sockets
from ..server.typing import AsyncLibraryLayer, ThreadsafeQueueBase, Wakeup

__all__ = ("Context", "VirtualCircuit", "CurioAsyncLayer", "CurioQueue",
           "start_server", "run")

log = logging.getLogger("caproto.ctx")
VirtualCircuit = common.CircuitHandler


class CurioQueue(ThreadsafeQueueBase):
    """A FIFO shared between threads and curio tasks (curio.UniversalQueue)."""

    def __init__(self, maxsize=0):
        self._queue = curio.UniversalQueue(maxsize=maxsize)

    def put(self, item):
        self._queue.put(item)          # called from a plain frame: the sync form

    def get(self, timeout=None):
        return self._queue.get()

    async def async_put(self, item):
        await self._queue.put(item)

    async def async_get(self):
        return await self._queue.get()


class _Wakeup(Wakeup):
    __slots__ = ("_event",)

    def __init__(self):
        self._event = curio.Event()

    async def set(self):
        if not self._event.is_set():
            await self._event.set()

    async def wait(self):
        await self._event.wait()
        self._event.clear()


class CurioAsyncLayer(AsyncLibraryLayer):
    name = "curio"
    library = curio
    ThreadsafeQueue = CurioQueue
    Event = curio.Event
    sleep = staticmethod(curio.sleep)

    @staticmethod
    async def run_in_thread(func, *args):
        return await curio.run_in_thread(func, *args)


class Context(common.Context):
    """A CA server on curio: ``await ctx.run()``; ``ctx.stop()`` from any thread."""

    async_layer = CurioAsyncLayer

    def __init__(self, pvdb, interfaces=None):
        super().__init__(pvdb, interfaces)
        self._stopping = curio.UniversalEvent()
        self._clients = set()

    def stop(self):
        """Ask `run` to finish (thread-safe)."""
        self._stopping.set()

    async def run(self, *, log_pv_names=False, startup_hook=None):
        udp_sockets = sockets.bind_udp_sockets(self)
        tcp_sockets = sockets.bind_tcp_sockets(self)
        beacon_socket = sockets.make_beacon_socket()
        tasks = []
        try:
            for sock, reply_socket, interface in sockets.search_endpoints(udp_sockets):
                tasks.append(await curio.spawn(
                    self._udp_loop(sock, interface, reply_socket), daemon=True))
            for sock in tcp_sockets:
                tasks.append(await curio.spawn(self._accept_loop(sock), daemon=True))
            self.log_serving("curio")
            if log_pv_names:
                log.info(self.pv_names_text())
            tasks.append(await curio.spawn(self._beacons(beacon_socket), daemon=True))
            async_lib = CurioAsyncLayer()
            for hook in sockets.start_hooks(self, startup_hook):
                tasks.append(await curio.spawn(self._guard(hook(async_lib), hook),
                                               daemon=True))
            self.freeze_startup_heap()
            await self._stopping.wait()
        finally:
            for task in tasks:
                await task.cancel()
            for client in list(self._clients):
                await client.close()
            for sock in tcp_sockets + [s for s, _ in udp_sockets] + [beacon_socket]:
                sock.close()
            for hook in self.hooks("server_shutdown"):
                await self._guard(hook(CurioAsyncLayer()), hook)

    @staticmethod
    async def _guard(coro, what):
        try:
            await coro
        except curio.CancelledError:
            raise
        except Exception:
            log.exception("hook %r failed", what)

    async def _udp_loop(self, sock, interface, reply_socket):
        """A burst of search datagrams answered per wakeup, as on asyncio."""
        while True:
            await _read_wait(sock.fileno())
            sockets.answer_waiting_datagrams(self, sock, reply_socket, interface)

    async def _beacons(self, sock):
        for interval in self.beacon_intervals():
            sockets.send_beacons(self, sock)
            await curio.sleep(interval)

    async def _accept_loop(self, sock):
        listener = curio.io.Socket(sock)
        while True:
            client, address = await listener.accept()
            await curio.spawn(self._serve_circuit(client, address), daemon=True)

    async def _serve_circuit(self, client, address):
        sockets.configure_client_socket(client)
        handler = self.new_circuit(address[:2], _Wakeup())
        self._clients.add(client)
        lock = curio.Lock()
        handler.drain = lambda: self._flush(handler, client, lock)
        sender = await curio.spawn(self._send_events(handler, client, lock),
                                   daemon=True)
        error = None
        try:
            while True:
                data = await client.recv(handler.recv_size)
                if not data:
                    break
                await handler.received(data)
                await self._flush(handler, client, lock)
                if handler.turn_over():
                    await curio.sleep(0)     # a flooding client must not starve others
        except common.DroppedCircuit as exc:
            error = exc
        except (ConnectionError, OSError):
            pass
        finally:
            await sender.cancel()
            self._clients.discard(client)
            await self.circuit_closed(handler, error)
            await client.close()

    @staticmethod
    async def _flush(handler, client, lock):
        """Write everything `handler` has queued: one sendmsg per socketful,
        so a header and its array go in one call and the array is never
        copied (``_write_wait`` is curio's documented low-level I/O trap)."""
        async with lock:
            buffers = handler.take_output()
            if buffers:
                await sockets.send_all(client.sendmsg,
                                       lambda: _write_wait(client.fileno()), buffers)

    async def _send_events(self, handler, client, lock):
        try:
            while True:
                await handler.wakeup.wait()
                await self._flush(handler, client, lock)
        except (ConnectionError, OSError):
            pass


async def start_server(pvdb, *, interfaces=None, log_pv_names=False,
                       startup_hook=None):
    """Serve `pvdb` until cancelled."""
    context = Context(pvdb, interfaces)
    await context.run(log_pv_names=log_pv_names, startup_hook=startup_hook)


def run(pvdb, *, interfaces=None, log_pv_names=False, startup_hook=None):
    """Serve `pvdb` on a new curio kernel until Ctrl-C."""
    try:
        curio.run(start_server(pvdb, interfaces=interfaces,
                               log_pv_names=log_pv_names, startup_hook=startup_hook))
    except KeyboardInterrupt:
        print("caproto server stopped", file=sys.stderr)

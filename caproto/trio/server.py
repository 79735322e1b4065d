"""trio layer of the CA server: sockets, tasks, queues and events only.

All protocol behaviour is in caproto.server.common.
"""
import functools
import logging
import math
import sys

import trio

from ..server import common, sockets
from ..server.typing import AsyncLibraryLayer, ThreadsafeQueueBase, Wakeup

__all__ = ("Context", "VirtualCircuit", "TrioAsyncLayer", "TrioQueue",
           "start_server", "run")

log = logging.getLogger("caproto.ctx")
VirtualCircuit = common.CircuitHandler


def _token_or_none():
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


class TrioQueue(ThreadsafeQueueBase):
    """A FIFO shared between threads and trio tasks (a memory channel)."""

    def __init__(self, maxsize=0):
        self._send, self._receive = trio.open_memory_channel(maxsize or math.inf)
        self._token = _token_or_none()

    def put(self, item):
        if self._token is None or _token_or_none() is self._token:
            self._send.send_nowait(item)
        else:
            self._token.run_sync_soon(self._send.send_nowait, item)

    def get(self, timeout=None):
        return trio.from_thread.run(self._receive.receive, trio_token=self._token)

    async def async_put(self, item):
        self._token = self._token or trio.lowlevel.current_trio_token()
        await self._send.send(item)

    async def async_get(self):
        self._token = self._token or trio.lowlevel.current_trio_token()
        return await self._receive.receive()


class _Wakeup(Wakeup):
    __slots__ = ("_flag", "_lot")

    def __init__(self):
        self._flag = False
        self._lot = trio.lowlevel.ParkingLot()

    async def set(self):
        self._flag = True
        self._lot.unpark_all()

    async def wait(self):
        while not self._flag:
            await self._lot.park()
        self._flag = False


class TrioAsyncLayer(AsyncLibraryLayer):
    name = "trio"
    library = trio
    ThreadsafeQueue = TrioQueue
    Event = trio.Event
    sleep = staticmethod(trio.sleep)

    @staticmethod
    async def run_in_thread(func, *args):
        return await trio.to_thread.run_sync(func, *args)


class Context(common.Context):
    """A CA server on trio: ``await ctx.run()``; ``ctx.stop()`` from any thread."""

    async_layer = TrioAsyncLayer

    def __init__(self, pvdb, interfaces=None):
        super().__init__(pvdb, interfaces)
        self._token = None
        self._stopping = None

    def stop(self):
        """Ask `run` to finish (thread-safe)."""
        if self._token is not None and self._stopping is not None:
            self._token.run_sync_soon(self._stopping.set)

    async def run(self, *, log_pv_names=False, startup_hook=None):
        # Before binding: once ``port`` is set, ``stop`` must work.
        self._stopping = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        udp_sockets = sockets.bind_udp_sockets(self)
        tcp_sockets = sockets.bind_tcp_sockets(self)
        beacon_socket = sockets.make_beacon_socket()
        replies = {}
        for sock, interface in udp_sockets:
            replies.setdefault(interface, sock)
        try:
            async with trio.open_nursery() as nursery:
                for sock, interface in udp_sockets:
                    nursery.start_soon(self._udp_loop, sock, interface,
                                       replies[interface])
                listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s))
                             for s in tcp_sockets]
                nursery.start_soon(trio.serve_listeners, self._serve_circuit,
                                   listeners)
                self.log_serving("trio")
                if log_pv_names:
                    log.info(self.pv_names_text())
                nursery.start_soon(self._beacons, beacon_socket)
                async_lib = TrioAsyncLayer()
                for hook in sockets.start_hooks(self, startup_hook):
                    nursery.start_soon(self._guard, functools.partial(hook, async_lib))
                self.freeze_startup_heap()
                await self._stopping.wait()
                nursery.cancel_scope.cancel()
        finally:
            for sock in [s for s, _ in udp_sockets] + [beacon_socket]:
                sock.close()
            with trio.CancelScope(shield=True):
                for hook in self.hooks("server_shutdown"):
                    await self._guard(functools.partial(hook, TrioAsyncLayer()))

    @staticmethod
    async def _guard(hook):
        try:
            await hook()
        except Exception:
            log.exception("hook %r failed", hook)

    async def _udp_loop(self, sock, interface, reply_socket):
        """A burst of search datagrams answered per wakeup, as on asyncio."""
        while True:
            await trio.lowlevel.wait_readable(sock)
            sockets.answer_waiting_datagrams(self, sock, reply_socket, interface)

    async def _beacons(self, sock):
        for interval in self.beacon_intervals():
            sockets.send_beacons(self, sock)
            await trio.sleep(interval)

    async def _serve_circuit(self, stream):
        sockets.configure_client_socket(stream.socket)
        handler = self.new_circuit(stream.socket.getpeername()[:2], _Wakeup())
        lock = trio.Lock()
        handler.drain = lambda: self._flush(handler, stream, lock)
        error = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_events, handler, stream, lock)
                try:
                    while True:
                        data = await stream.receive_some(handler.recv_size)
                        if not data:
                            break
                        await handler.received(data)
                        await self._flush(handler, stream, lock)
                except common.DroppedCircuit as exc:
                    error = exc
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.circuit_closed(handler, error)
                await stream.aclose()

    @staticmethod
    async def _flush(handler, stream, lock):
        """Write everything `handler` has queued: sendmsg on the stream's
        socket (it waits while the socket is full), so a header and its
        array go in one call and the array is never copied."""
        async with lock:
            buffers = handler.take_output()
            if buffers:
                await sockets.send_all(
                    stream.socket.sendmsg,
                    functools.partial(trio.lowlevel.wait_writable, stream.socket),
                    buffers)

    async def _send_events(self, handler, stream, lock):
        try:
            while True:
                await handler.wakeup.wait()
                await self._flush(handler, stream, lock)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def start_server(pvdb, *, interfaces=None, log_pv_names=False,
                       startup_hook=None):
    """Serve `pvdb` until cancelled."""
    context = Context(pvdb, interfaces)
    await context.run(log_pv_names=log_pv_names, startup_hook=startup_hook)


def run(pvdb, *, interfaces=None, log_pv_names=False, startup_hook=None):
    """Serve `pvdb` on a new trio run until Ctrl-C."""
    try:
        trio.run(functools.partial(start_server, pvdb, interfaces=interfaces,
                                   log_pv_names=log_pv_names,
                                   startup_hook=startup_hook))
    except KeyboardInterrupt:
        print("caproto server stopped", file=sys.stderr)

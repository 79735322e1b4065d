"""asyncio layer of the CA server: sockets, tasks, queues and events only.

All protocol behaviour is in caproto.server.common; this module binds the
sockets it describes, feeds them to the core and writes what comes back.
"""
import asyncio
import functools
import logging
import sys

from ..server import common, sockets
from ..server.typing import AsyncLibraryLayer, ThreadsafeQueueBase, Wakeup

__all__ = ("Context", "VirtualCircuit", "AsyncioAsyncLayer", "AsyncioQueue",
           "start_server", "run")

log = logging.getLogger("caproto.ctx")
RECV_SIZE = 1 << 18
VirtualCircuit = common.CircuitHandler


class AsyncioQueue(ThreadsafeQueueBase):
    """A FIFO shared between threads and the server's event loop."""

    def __init__(self, maxsize=0):
        self._queue = asyncio.Queue(maxsize)
        self._loop = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

    def _on_loop(self):
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def put(self, item):
        if self._loop is None or self._on_loop():
            self._queue.put_nowait(item)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def get(self, timeout=None):
        if self._loop is None:
            raise RuntimeError("AsyncioQueue.get from a thread needs the queue to "
                               "be made on the server's loop")
        future = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
        return future.result(timeout)

    async def async_put(self, item):
        self._loop = self._loop or asyncio.get_running_loop()
        await self._queue.put(item)

    async def async_get(self):
        self._loop = self._loop or asyncio.get_running_loop()
        return await self._queue.get()


class _Wakeup(Wakeup):
    __slots__ = ("_event",)

    def __init__(self):
        self._event = asyncio.Event()

    async def set(self):
        self._event.set()

    async def wait(self):
        await self._event.wait()
        self._event.clear()


class AsyncioAsyncLayer(AsyncLibraryLayer):
    name = "asyncio"
    library = asyncio
    ThreadsafeQueue = AsyncioQueue
    Event = asyncio.Event
    sleep = staticmethod(asyncio.sleep)

    @staticmethod
    async def run_in_thread(func, *args):
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)


class _CircuitSender:
    """A circuit's write side: sendmsg straight from our buffers.

    asyncio's transport would copy whatever the kernel does not take at once
    (most of an 8 MB array) into its own buffer, and it refuses ``add_writer``
    on its descriptor; so we write through a duplicate of the descriptor and
    wait for writability on that, leaving the transport only the reading.
    `lock` keeps writes whole and in order (replies and events are written
    by two tasks).  Closing it closes the duplicate: the peer sees the
    connection end only once both descriptors are closed.
    """

    def __init__(self, loop, transport_socket):
        self._loop = loop
        self._sock = transport_socket.dup()
        self._waiter = None
        self.lock = asyncio.Lock()

    async def sendmsg(self, views):
        try:
            return self._sock.sendmsg(views)
        except (BlockingIOError, InterruptedError):
            return 0

    async def wait_writable(self):
        fd = self._sock.fileno()
        if fd < 0:
            raise ConnectionResetError("circuit closed")
        self._waiter = waiter = self._loop.create_future()
        self._loop.add_writer(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if self._sock.fileno() == fd:
                self._loop.remove_writer(fd)

    async def flush(self, handler):
        """Write everything `handler` has queued; return once the kernel has it."""
        async with self.lock:
            buffers = handler.take_output()
            if buffers:
                await sockets.send_all(self.sendmsg, self.wait_writable, buffers)

    def close(self):
        if self._sock.fileno() >= 0:
            self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("circuit closed"))


def _wake(waiter):
    if not waiter.done():
        waiter.set_result(None)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, context, interface, reply_socket):
        self.context, self.interface, self.reply_socket = (context, interface,
                                                           reply_socket)

    def datagram_received(self, data, address):
        sockets.answer_datagram(self.context, self.reply_socket, data, address,
                                self.interface)


class Context(common.Context):
    """A CA server on asyncio: ``await ctx.run()``; ``ctx.stop()`` from any thread."""

    async_layer = AsyncioAsyncLayer

    def __init__(self, pvdb, interfaces=None):
        super().__init__(pvdb, interfaces)
        self._loop = None
        self._stopping = None
        self._writers = {}
        self._senders = {}
        self._tasks = set()

    def stop(self):
        """Ask `run` to finish (thread-safe)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def _spawn(self, coro, what):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(task):
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", what, exc_info=task.exception())
        task.add_done_callback(done)
        return task

    async def run(self, *, log_pv_names=False, startup_hook=None):
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        udp_sockets = sockets.bind_udp_sockets(self)
        tcp_sockets = sockets.bind_tcp_sockets(self)
        beacon_socket = sockets.make_beacon_socket()
        replies = {}
        for sock, interface in udp_sockets:
            replies.setdefault(interface, sock)
        transports, servers = [], []
        try:
            for sock, interface in udp_sockets:
                transport, _ = await self._loop.create_datagram_endpoint(
                    lambda i=interface: _UdpProtocol(self, i, replies[i]), sock=sock)
                transports.append(transport)
            for sock in tcp_sockets:
                servers.append(await asyncio.start_server(
                    self._serve_circuit, sock=sock, limit=RECV_SIZE))
            log.info("server on %s port %d (asyncio)", self.interfaces, self.port)
            if log_pv_names:
                log.info(self.pv_names_text())
            self._spawn(self._beacons(beacon_socket), "beacons")
            async_lib = AsyncioAsyncLayer()
            for hook in sockets.start_hooks(self, startup_hook):
                self._spawn(hook(async_lib), f"hook {hook!r}")
            self.freeze_startup_heap()
            await self._stopping.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            for server in servers:
                server.close()
            for transport in transports:
                transport.close()
            for sender in list(self._senders.values()):
                sender.close()
            for writer in list(self._writers.values()):
                writer.close()
            beacon_socket.close()
            for hook in self.hooks("server_shutdown"):
                try:
                    await hook(AsyncioAsyncLayer())
                except Exception:
                    log.exception("shutdown hook %r failed", hook)
            self._stopping = None

    async def _beacons(self, sock):
        for interval in self.beacon_intervals():
            sockets.send_beacons(self, sock)
            await asyncio.sleep(interval)

    async def _serve_circuit(self, reader, writer):
        transport_socket = writer.get_extra_info("socket")
        sockets.configure_client_socket(transport_socket)
        sender = _CircuitSender(self._loop, transport_socket)
        wakeup = _Wakeup()
        handler = self.new_circuit(writer.get_extra_info("peername")[:2], wakeup)
        self._writers[handler] = writer
        self._senders[handler] = sender
        handler.drain = functools.partial(sender.flush, handler)
        events = asyncio.ensure_future(self._send_events(handler, sender))
        error = None
        try:
            while True:
                data = await reader.read(handler.recv_size)
                if not data:
                    break
                await handler.received(data)
                await sender.flush(handler)
                if len(data) >= common.RECV_CHUNK:
                    await asyncio.sleep(0)   # a flooding client must not starve others
        except common.DroppedCircuit as exc:
            error = exc
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass          # (a cancelled stream task upsets asyncio's callback)
        finally:
            events.cancel()
            self._writers.pop(handler, None)
            self._senders.pop(handler, None)
            await self.circuit_closed(handler, error)
            sender.close()
            writer.close()

    async def _send_events(self, handler, sender):
        try:
            while True:
                await handler.wakeup.wait()
                await sender.flush(handler)
        except (ConnectionError, OSError):
            pass


async def start_server(pvdb, *, interfaces=None, log_pv_names=False,
                       startup_hook=None):
    """Serve `pvdb` until cancelled."""
    context = Context(pvdb, interfaces)
    await context.run(log_pv_names=log_pv_names, startup_hook=startup_hook)


def run(pvdb, *, interfaces=None, log_pv_names=False, startup_hook=None):
    """Serve `pvdb` on a new asyncio loop until Ctrl-C."""
    try:
        asyncio.run(start_server(pvdb, interfaces=interfaces,
                                 log_pv_names=log_pv_names,
                                 startup_hook=startup_hook))
    except KeyboardInterrupt:
        print("caproto server stopped", file=sys.stderr)

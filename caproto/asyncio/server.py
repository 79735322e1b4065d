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


class _CircuitReader:
    """A circuit's socket, read with one reader registration while it idles.

    ``loop.sock_recv`` adds a reader for each wait and removes it after:
    two epoll_ctl calls and a callback handle per message from an idle
    client (without them, the server's CPU per put fell by ~15%).  Here the
    reader stays registered while the circuit waits for its client.  Data arriving while
    nobody waits (the circuit busy, or suspended writing to a slow client)
    unregisters it, so the level-triggered selector does not spin.
    """

    def __init__(self, loop, sock):
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._waiter = None
        self._watching = False

    async def recv(self, size):
        while True:
            try:
                return self._sock.recv(size)
            except (BlockingIOError, InterruptedError):
                pass
            if not self._watching:
                self._loop.add_reader(self._fd, self._readable)
                self._watching = True
            self._waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _readable(self):
        waiter = self._waiter
        if waiter is None:
            self.unwatch()
        elif not waiter.done():
            waiter.set_result(None)

    def unwatch(self):
        if self._watching:
            self._watching = False
            if self._sock.fileno() == self._fd:
                self._loop.remove_reader(self._fd)


class _CircuitSender:
    """A circuit's socket, written with sendmsg straight from our buffers.

    The layer owns its circuit sockets (no asyncio transport, which would
    copy whatever the kernel does not take at once -- most of an 8 MB
    array -- into its own buffer); a partial send waits for writability.
    `lock` keeps writes whole and in order (replies and events are written
    by two tasks).  ``close`` closes the socket.
    """

    def __init__(self, loop, sock):
        self._loop = loop
        self._sock = sock
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
            self._loop.remove_reader(self._sock.fileno())    # (_CircuitReader's)
            self._sock.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("circuit closed"))


def _wake(waiter):
    if not waiter.done():
        waiter.set_result(None)


class Context(common.Context):
    """A CA server on asyncio: ``await ctx.run()``; ``ctx.stop()`` from any thread."""

    async_layer = AsyncioAsyncLayer

    def __init__(self, pvdb, interfaces=None):
        super().__init__(pvdb, interfaces)
        self._loop = None
        self._stopping = None
        self._senders = {}              # CircuitHandler -> _CircuitSender
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
        try:
            # Our own readiness callback rather than a datagram transport:
            # a burst of searches is answered in one wakeup of the loop.
            for sock, reply_socket, interface in sockets.search_endpoints(udp_sockets):
                self._loop.add_reader(sock.fileno(), sockets.answer_waiting_datagrams,
                                      self, sock, reply_socket, interface)
            for sock in tcp_sockets:
                self._spawn(self._accept(sock), "accepting circuits")
            self.log_serving("asyncio")
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
            for sock in tcp_sockets:
                sock.close()
            for sock, _interface in udp_sockets:
                self._loop.remove_reader(sock.fileno())
                sock.close()
            for sender in list(self._senders.values()):
                sender.close()
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

    async def _accept(self, listener):
        while True:
            client, address = await self._loop.sock_accept(listener)
            self._spawn(self._serve_circuit(client, address), f"circuit {address}")

    async def _serve_circuit(self, client, address):
        """One circuit: read with _CircuitReader (no stream buffer in
        between) and hand each chunk to the core, then write what it queued."""
        client.setblocking(False)
        sockets.configure_client_socket(client)
        sender = _CircuitSender(self._loop, client)
        handler = self.new_circuit(address[:2], _Wakeup())
        self._senders[handler] = sender
        handler.drain = functools.partial(sender.flush, handler)
        events = asyncio.ensure_future(self._send_events(handler, sender))
        reader = _CircuitReader(self._loop, client)
        error = None
        try:
            while True:
                data = await reader.recv(handler.recv_size)
                if not data:
                    break
                await handler.received(data)
                await sender.flush(handler)
                if handler.turn_over():
                    await asyncio.sleep(0)   # a flooding client must not starve others
        except common.DroppedCircuit as exc:
            error = exc
        except (ConnectionError, OSError):
            pass
        finally:
            reader.unwatch()
            events.cancel()
            self._senders.pop(handler, None)
            await self.circuit_closed(handler, error)
            sender.close()

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

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
        try:
            async with trio.open_nursery() as nursery:
                for sock, reply_socket, interface in sockets.search_endpoints(udp_sockets):
                    nursery.start_soon(self._udp_loop, sock, interface, reply_socket)
                for sock in tcp_sockets:
                    nursery.start_soon(self._accept, sock, nursery)
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
            for sock in ([s for s, _ in udp_sockets] + [beacon_socket]
                         + tcp_sockets):
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

    async def _accept(self, listener, nursery):
        """Accept circuits on a plain socket (a trio SocketStream would put a
        scheduler trip into every recv and send of every circuit)."""
        listener.setblocking(False)
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                client, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:      # out of file descriptors: wait, retry
                log.error("cannot accept a circuit: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._serve_circuit, client, address)

    async def _serve_circuit(self, client, address):
        client.setblocking(False)
        sockets.configure_client_socket(client)
        sender = _CircuitSocket(client)
        handler = self.new_circuit(address[:2], _Wakeup())
        handler.drain = functools.partial(sender.flush, handler)
        error = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_events, handler, sender)
                try:
                    while True:
                        data = await sender.recv(handler.recv_size)
                        if not data:
                            break
                        await handler.received(data)
                        await sender.flush(handler)
                        if handler.turn_over():
                            await _let_woken_tasks_run()
                except common.DroppedCircuit as exc:
                    error = exc
                except OSError:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.circuit_closed(handler, error)
            client.close()

    @staticmethod
    async def _send_events(handler, sender):
        try:
            while True:
                await handler.wakeup.wait()
                await sender.flush(handler)
        except OSError:
            pass


async def _let_woken_tasks_run():
    """Yield until every task woken so far has run once.

    A flooding client must not starve the others.  trio runs a task woken
    now (an event sender, the search loop) in its next batch, in random
    order with us.  After one checkpoint this circuit would take its next
    chunk first half the time: its subscribers lost a third of their
    updates to coalescing (events/s -25% against asyncio), and a client
    connecting thousands of channels waited for its search answers.  After
    two checkpoints, every task woken before them has run.
    """
    await trio.lowlevel.checkpoint()
    await trio.lowlevel.checkpoint()


class _CircuitSocket:
    """A circuit's plain socket: recv and sendmsg are tried at once and only
    wait (``wait_readable``/``wait_writable``) when the kernel says so.

    trio's own socket methods pass through the scheduler on every call even
    when data is there, which for a client doing one get at a time is most
    of the cost of answering it.  The loop in ``_serve_circuit`` yields
    after every full chunk instead, as the other layers do.
    """

    def __init__(self, sock):
        self._sock = sock
        self._held = False                    # the write lock (see flush)
        self._lot = trio.lowlevel.ParkingLot()

    async def recv(self, size):
        while True:
            try:
                return self._sock.recv(size)
            except (BlockingIOError, InterruptedError):
                await trio.lowlevel.wait_readable(self._sock)

    async def _sendmsg(self, views):
        try:
            return self._sock.sendmsg(views)
        except (BlockingIOError, InterruptedError):
            return 0

    async def _wait_writable(self):
        await trio.lowlevel.wait_writable(self._sock)

    async def flush(self, handler):
        """Write everything `handler` has queued: header and array in one
        sendmsg, the array never copied.  Replies and events are written by
        two tasks; the lock keeps each write whole (taken without a
        scheduler trip when free, unlike trio.Lock)."""
        while self._held:
            await self._lot.park()
        self._held = True
        try:
            buffers = handler.take_output()
            if buffers:
                await sockets.send_all(self._sendmsg, self._wait_writable, buffers)
        finally:
            self._held = False
            self._lot.unpark()


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
    except BaseException as exc:
        if not _only_interrupts(exc):
            raise
        print("caproto server stopped", file=sys.stderr)


def _only_interrupts(exc):
    """Whether `exc` is a KeyboardInterrupt or a group holding nothing else:
    trio 0.25 and later hand on what a nursery raised in an exception group,
    so Ctrl-C arrives as a KeyboardInterrupt inside one (or two)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    inner = getattr(exc, "exceptions", None)
    return bool(inner) and all(_only_interrupts(each) for each in inner)

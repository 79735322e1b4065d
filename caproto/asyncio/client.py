"""asyncio Channel Access client: caproto's async Context / PV / Subscription.

Invariants:
- All protocol bookkeeping is ``caproto.client.core.ClientCore``; this
  module owns only asyncio transports, one timer task and user objects.
  Everything runs on the loop the Context was created in (create it inside
  a coroutine), so the core needs no lock.
- Effects are carried out in the order the core returns them; a TCP
  connection being opened holds back nothing else (the core queues channel
  creation until ``circuit_connected``).
- Callbacks receive ``(subscription, response)`` (or ``(pv, state)`` for
  connection changes); coroutine functions are scheduled as tasks, plain
  functions called directly on the loop.  ``async for response in sub``
  works too.
- A request the server refuses with no one waiting for the answer (a plain
  write, a subscription) is logged at ERROR on ``caproto.asyncio.client``
  with the PV, server and ECA status, since nothing else would report it.
"""
import asyncio
import logging
import time

from .._dbr import SubscriptionType
from .._errors import ErrorResponseReceived
from ..client import core as _core
from ..client.faces import ContextDisconnectedError, PVConnectionState

__all__ = ("Context", "SharedBroadcaster", "PV", "Subscription",
           "ContextDisconnectedError")

logger = logging.getLogger("caproto.asyncio.client")
#: Events kept for an ``async for`` consumer that falls behind.
ITERATOR_QUEUE = 1000


def _call(func, *args):
    """Run a user callback: a coroutine function becomes a task."""
    try:
        result = func(*args)
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(result)
    except Exception:
        logger.exception("callback %r raised", func)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, broadcaster):
        self.broadcaster = broadcaster

    def datagram_received(self, data, address):
        engine = self.broadcaster
        engine.apply(engine.core.datagram_received(data, address, time.monotonic()))

    def error_received(self, exc):       # ICMP refusals: harmless for CA
        logger.debug("UDP error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, broadcaster, key):
        self.broadcaster, self.key = broadcaster, key
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        engine = self.broadcaster
        engine.apply(engine.core.bytes_received(self.key, data, time.monotonic()))

    def connection_lost(self, exc):
        engine = self.broadcaster
        if engine.transports.pop(self.key, None) is not None:
            reason = str(exc) if exc else "server closed the connection"
            engine.apply(engine.core.circuit_lost(self.key, time.monotonic(),
                                                  reason))


class SharedBroadcaster:
    """The I/O engine under a Context: one UDP endpoint, TCP circuits, a timer."""

    def __init__(self, *, env=None, repeater=True, host_name=None,
                 client_name=None):
        self.loop = asyncio.get_running_loop()
        self.core = _core.ClientCore(env=env, host_name=host_name,
                                     client_name=client_name)
        self.repeater = repeater
        self.udp = None
        self.transports = {}           # CircuitKey -> TCP transport
        self._wake = asyncio.Event()
        self._timer = None
        self._started = None
        self.closed = False

    async def start(self):
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started

    async def _start(self):
        self.udp, _ = await self.loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=("0.0.0.0", 0),
            allow_broadcast=True)
        if self.repeater:
            self.apply([self.core.repeater_registration(time.monotonic())])
        self._timer = asyncio.ensure_future(self._run_timers())

    async def _run_timers(self):
        while not self.closed:
            self.apply(self.core.poll(time.monotonic()))
            self._wake.clear()          # apply() set it; we are awake anyway
            deadline = self.core.next_deadline()
            delay = None if deadline is None else deadline - time.monotonic()
            if delay is not None and delay <= 0:
                await asyncio.sleep(0)  # a backlog: let I/O run, then go on
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    # -- effects ---------------------------------------------------------

    def apply(self, effects):
        for effect in effects:
            handler = self._HANDLERS.get(type(effect))
            if handler is not None:
                handler(self, effect)
        self._wake.set()

    def _send_datagram(self, effect):
        if self.udp is not None:
            self.udp.sendto(effect.data, effect.address)

    def _send_buffers(self, effect):
        transport = self.transports.get(effect.key)
        if transport is not None:
            transport.writelines([bytes(b) for b in effect.buffers])

    def _open(self, effect):
        asyncio.ensure_future(self._connect(effect.key))

    async def _connect(self, key):
        host, port = key.address
        try:
            transport, _ = await self.loop.create_connection(
                lambda: _TcpProtocol(self, key), host, port)
        except OSError as exc:
            self.apply(self.core.circuit_lost(key, time.monotonic(),
                                              f"connect failed: {exc}"))
            return
        if self.closed:
            transport.close()
            return
        self.transports[key] = transport
        self.apply(self.core.circuit_connected(key, time.monotonic()))

    def _close(self, effect):
        transport = self.transports.pop(effect.key, None)
        if transport is not None:
            transport.close()

    def _done(self, effect):
        future = effect.request.owner
        if future is not None and not future.done():
            future.set_result(effect.command)

    def _failed(self, effect):
        future = effect.request.owner
        if future is not None and not future.done():
            future.set_exception(effect.error)

    def _event(self, effect):
        effect.subscription.owner._process(effect.command)

    def _server_error(self, effect):
        logger.error("%s", effect.error)

    def _channel(self, effect):
        pv = effect.entry.owner
        if pv is not None:
            pv._core_event(effect)

    _HANDLERS = {
        _core.SendDatagram: _send_datagram, _core.SendBuffers: _send_buffers,
        _core.OpenCircuit: _open, _core.CloseCircuit: _close,
        _core.ReadDone: _done, _core.WriteDone: _done,
        _core.RequestFailed: _failed, _core.SubscriptionData: _event,
        _core.ChannelConnected: _channel, _core.ChannelDisconnected: _channel,
        _core.AccessRightsChanged: _channel,
        _core.ServerError: _server_error,
    }

    async def disconnect(self):
        if self.closed:
            return
        self.closed = True
        self.apply(self.core.close())
        for transport in list(self.transports.values()):
            transport.close()
        self.transports.clear()
        if self.udp is not None:
            self.udp.close()
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass


class Context:
    """``ctx = Context()`` inside a coroutine; ``await ctx.get_pvs(...)``.

    PVs are cached by (name, priority).  ``timeout`` is the default for
    every PV operation (seconds).
    """

    def __init__(self, broadcaster=None, *, timeout=2.0, repeater=True,
                 env=None, host_name=None, client_name=None):
        if broadcaster is None:
            broadcaster = SharedBroadcaster(env=env, repeater=repeater,
                                            host_name=host_name,
                                            client_name=client_name)
        self.broadcaster = broadcaster
        self.timeout = timeout
        self.pvs = {}
        self._disconnected = False

    def __repr__(self):
        return f"<asyncio Context pvs={len(self.pvs)}>"

    async def get_pvs(self, *names, priority=0, connection_state_callback=None,
                      access_rights_callback=None, timeout=None):
        """PV objects for `names`, searched for together (not yet connected)."""
        if self._disconnected:
            raise ContextDisconnectedError("this Context was disconnected")
        await self.broadcaster.start()
        pvs, effects, now = [], [], time.monotonic()
        for name in names:
            pv = self.pvs.get((name, priority))
            if pv is None:
                pv = self.pvs[(name, priority)] = PV(name, priority, self, timeout)
                pv._entry, found = self.broadcaster.core.add_channel(
                    name, priority, pv, now)
                effects.extend(found)
            if connection_state_callback is not None:
                pv.connection_state_callbacks.append(connection_state_callback)
            if access_rights_callback is not None:
                pv.access_rights_callbacks.append(access_rights_callback)
            pvs.append(pv)
        self.broadcaster.apply(effects)
        return pvs

    async def disconnect(self):
        self._disconnected = True
        for pv in list(self.pvs.values()):
            await pv.go_idle()
        self.pvs.clear()
        await self.broadcaster.disconnect()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.disconnect()


class PV(PVConnectionState):
    """One channel; every operation is a coroutine."""

    def __init__(self, name, priority, context, timeout=None):
        self.name, self.priority, self.context = name, priority, context
        self.timeout = timeout
        self.connection_state_callbacks = []
        self.access_rights_callbacks = []
        self.subscriptions = []
        self._entry = None
        self._connected = asyncio.Event()

    def _core_event(self, effect):
        kind = type(effect)
        if kind is _core.ChannelConnected:
            self._connected.set()
            for func in list(self.access_rights_callbacks):
                _call(func, self, self._entry.access_rights)
            for func in list(self.connection_state_callbacks):
                _call(func, self, "connected")
        elif kind is _core.ChannelDisconnected:
            self._connected.clear()
            for func in list(self.connection_state_callbacks):
                _call(func, self, "disconnected")
        else:
            for func in list(self.access_rights_callbacks):
                _call(func, self, effect.rights)

    async def wait_for_connection(self, *, timeout=None):
        """Wait until connected; CaprotoTimeoutError names the PV and servers."""
        timeout = self._timeout(timeout)
        if self._entry is None:
            raise ContextDisconnectedError(f"{self.name!r} is disconnected")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            raise self._engine.core.timeout_error(
                self._entry, "connecting to", timeout) from None

    async def _request(self, action, method, callback, wait, timeout, **kwargs):
        timeout = self._timeout(timeout)
        start = time.monotonic()
        await self.wait_for_connection(timeout=timeout)
        future = self._engine.loop.create_future() if (wait or callback) else None
        request, effects = method(self._entry, owner=future, **kwargs)
        self._engine.apply(effects)
        if future is None:
            return None
        if callback is not None:
            future.add_done_callback(
                lambda f: f.cancelled() or f.exception() or _call(callback, f.result()))
        if not wait:
            return None
        remaining = max(0.0, timeout - (time.monotonic() - start))
        try:
            command = await asyncio.wait_for(asyncio.shield(future), remaining)
        except asyncio.TimeoutError:
            self._engine.core.forget_request(request)
            raise self._engine.core.timeout_error(self._entry, action,
                                                  timeout) from None
        if not _core.status_ok(command):
            raise ErrorResponseReceived(
                f"{action} {self.name!r} on "
                f"{_core.describe_address(self._entry.server)} failed: "
                f"{getattr(command.status, 'description', command.status)}")
        return command

    async def read(self, *, wait=True, callback=None, timeout=None,
                   data_type=None, data_count=None, notify=True):
        """ReadNotifyResponse; data_type may be a ChannelType or 'time',
        'control', 'graphic', 'status', 'native'."""
        form = None
        if isinstance(data_type, str):
            form, data_type = data_type.lower(), None
        return await self._request(
            "reading", self._engine.core.read, callback, wait, timeout,
            data_type=data_type, data_count=data_count, notify=notify,
            form=form)

    async def write(self, data, *, wait=True, callback=None, timeout=None,
                    notify=None, data_type=None, data_count=None,
                    metadata=None):
        """Write `data`; with wait (or a callback) WriteNotify confirms it."""
        if notify is None:
            notify = bool(wait or callback)
        if not notify:
            wait, callback = False, None
        return await self._request(
            "writing to", self._engine.core.write, callback, wait, timeout,
            data=data, data_type=data_type, data_count=data_count,
            notify=notify, metadata=metadata)

    def subscribe(self, data_type=None, data_count=None, low=0.0, high=0.0,
                  to=0.0, mask=None):
        """A Subscription; it is sent when a callback is added or on iteration."""
        sub = Subscription(self, data_type, data_count, low, high, to, mask)
        self.subscriptions.append(sub)
        return sub

    async def unsubscribe_all(self):
        for sub in list(self.subscriptions):
            await sub.clear()

    async def go_idle(self):
        """Stop using this PV: subscriptions end and the channel is cleared."""
        await self.unsubscribe_all()
        entry, self._entry = self._entry, None
        self._connected.clear()
        if entry is not None and not self._engine.closed:
            self._engine.apply(self._engine.core.remove_channel(entry))


class Subscription:
    """Updates of one PV: callbacks ``f(sub, response)`` or ``async for``."""

    def __init__(self, pv, data_type=None, data_count=None, low=0.0,
                 high=0.0, to=0.0, mask=None):
        self.pv = pv
        self.form = None
        if isinstance(data_type, str):
            self.form, data_type = data_type.lower(), None
        self.data_type, self.data_count = data_type, data_count
        self.low, self.high, self.to = low, high, to
        self.mask = (SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM
                     if mask is None else SubscriptionType(int(mask)))
        self.callbacks = {}
        self.most_recent_response = None
        self._queues = []
        self._entry = None
        self._next_id = 0

    def __repr__(self):
        return (f"<Subscription to {self.pv.name!r} mask={self.mask!r} "
                f"active={self._entry is not None}>")

    def _activate(self):
        if self._entry is None:
            engine = self.pv._engine
            if self.pv._entry is None:
                raise ContextDisconnectedError(f"{self.pv.name!r} is disconnected")
            self._entry, effects = engine.core.subscribe(
                self.pv._entry, owner=self, data_type=self.data_type,
                data_count=self.data_count, mask=self.mask, low=self.low,
                high=self.high, to=self.to, form=self.form)
            engine.apply(effects)

    def add_callback(self, func):
        """Call ``func(sub, response)`` on every update; returns an id."""
        cb_id = self._next_id
        self._next_id += 1
        self.callbacks[cb_id] = func
        if self._entry is None:
            self._activate()
        elif self.most_recent_response is not None:
            _call(func, self, self.most_recent_response)
        return cb_id

    def remove_callback(self, cb_id):
        self.callbacks.pop(cb_id, None)
        if not self.callbacks and not self._queues:
            self._cancel()

    def _cancel(self):
        entry, self._entry = self._entry, None
        engine = self.pv._engine
        if entry is not None and not engine.closed:
            engine.apply(engine.core.unsubscribe(entry))
        self.most_recent_response = None

    async def clear(self):
        """Remove every callback, end iterations, cancel the subscription."""
        self.callbacks.clear()
        for queue in self._queues:
            queue.put_nowait(None)
        self._cancel()

    def _process(self, command):
        if self._entry is None:
            return
        self.most_recent_response = command
        for func in list(self.callbacks.values()):
            _call(func, self, command)
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()          # keep the newest updates
            queue.put_nowait(command)

    async def __aiter__(self):
        queue = asyncio.Queue(ITERATOR_QUEUE)
        self._queues.append(queue)
        try:
            if self._entry is None:
                self._activate()
            elif self.most_recent_response is not None:
                queue.put_nowait(self.most_recent_response)
            while True:
                command = await queue.get()
                if command is None:
                    return
                yield command
        finally:
            self._queues.remove(queue)
            if not self.callbacks and not self._queues:
                self._cancel()

"""Threaded Channel Access client: caproto's Context/PV/Subscription API.

Invariants:
- All protocol bookkeeping is ``caproto.client.core.ClientCore``; this
  module only owns sockets, threads and user-facing objects.  Every core
  call happens under ``SharedBroadcaster._lock``, and socket sends for the
  effects it returns happen under that same lock, so bytes leave in the
  order the core produced them.
- Threads are created lazily: one network thread (a selector over the UDP
  socket, every TCP circuit and a wake-up pipe; it sleeps until I/O or the
  core's next deadline, never polls) and one callback thread started the
  first time a user callback must run.  User callbacks never run on the
  network thread, so a slow callback cannot stall reads.
- When more than FLOW_CONTROL_HIGH events wait for the callback thread, or
  a circuit's socket holds more than SOCKET_BACKLOG unparsed bytes, servers
  are asked to pause events (EventsOff) until the backlog drains; servers
  then keep only each subscription's latest value (libca does the same), so
  reads keep flowing and the newest value always arrives.
- A request the server refuses with no one waiting for the answer (a plain
  write, ``PV.write(..., wait=False)``; a subscription) is logged at ERROR
  on ``caproto.threading.client``, naming the PV, server and ECA status:
  caproto documents no callback for it, and it must not pass silently.
"""
import collections
import logging
import os
import selectors
import socket
import threading
import time

from ..client import core as _core
from ..client.faces import ContextDisconnectedError, PVConnectionState
from .._dbr import SubscriptionType
from .._errors import (CaprotoValueError,
                       ErrorResponseReceived)

__all__ = ("Context", "SharedBroadcaster", "PV", "Subscription",
           "CallbackHandler", "ContextDisconnectedError", "default_timeout")

logger = logging.getLogger("caproto.threading.client")

FLOW_CONTROL_HIGH = 10000
FLOW_CONTROL_LOW = 1000
RECV_CHUNK = 1 << 20
#: A read this big that holds many commands (not one large payload) means
#: the circuit's stream is ahead of us: ask servers to pause events.
SOCKET_BACKLOG = 1 << 17
UDP_RECV_BUFFER = 4 << 20


def default_timeout():
    """CAPROTO_DEFAULT_TIMEOUT (seconds, default 2.0), parsed as a number."""
    text = os.environ.get("CAPROTO_DEFAULT_TIMEOUT", "").strip()
    if not text:
        return 2.0
    try:
        return float(text)
    except ValueError:
        raise CaprotoValueError(
            f"CAPROTO_DEFAULT_TIMEOUT={text!r} is not a number of seconds") from None


class CallbackHandler:
    """An ordered set of callbacks; ``add_callback`` returns a token."""

    def __init__(self, owner=None):
        self.owner = owner
        self.callbacks = {}
        self._snapshot = ()           # callbacks as of the last change
        self._tokens = 0
        self._lock = threading.Lock()

    def add_callback(self, func):
        if not callable(func):
            raise CaprotoValueError(f"callback {func!r} is not callable")
        with self._lock:
            self._tokens += 1
            self.callbacks[self._tokens] = func
            self._snapshot = tuple(self.callbacks.values())
            return self._tokens

    def remove_callback(self, token):
        with self._lock:
            self.callbacks.pop(token, None)
            self._snapshot = tuple(self.callbacks.values())

    def clear_callbacks(self):
        with self._lock:
            self.callbacks.clear()
            self._snapshot = ()

    def process(self, *args, **kwargs):
        for func in self._snapshot:   # a tuple: safe against changes
            try:
                func(*args, **kwargs)
            except Exception:
                logger.exception("callback %r raised", func)


class _Pending:
    """A read or write a user thread waits on (or a callback awaits)."""
    __slots__ = ("event", "command", "error", "callback")

    def __init__(self, callback=None):
        self.event = threading.Event()
        self.command = self.error = None
        self.callback = callback


class _CallbackThread:
    """Runs user callbacks in order on one lazily started thread."""

    def __init__(self, on_backlog):
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._thread = None
        self._on_backlog = on_backlog     # called with True/False
        self._paused = False
        self.pending = 0                  # queued and not yet run

    def put(self, func, *args):
        self.put_many([(func, args)])

    def put_many(self, calls):
        """Queue ``[(func, args), ...]`` with one lock round-trip."""
        with self._cond:
            self._queue.extend(calls)
            self.pending += len(calls)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="caproto-callbacks", daemon=True)
                self._thread.start()
            self._cond.notify()
            backlog = self.pending
        if not self._paused and backlog > FLOW_CONTROL_HIGH:
            self._paused = True
            self._on_backlog(True)

    def _run(self):
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, collections.deque()
            for func, args in batch:
                if func is None:
                    return
                try:
                    func(*args)
                except Exception:
                    logger.exception("callback %r raised", func)
            with self._cond:
                self.pending -= len(batch)
            if self._paused and self.pending < FLOW_CONTROL_LOW:
                self._paused = False
                self._on_backlog(False)

    def stop(self):
        with self._cond:
            if self._thread is not None:
                self._queue.append((None, ()))
                self._cond.notify()


class SharedBroadcaster:
    """The engine: one ClientCore, its UDP socket, circuits and threads.

    Several Contexts may share one (as in caproto); they then share
    searches and circuits.  Nothing starts until the first PV is created.
    """

    def __init__(self, *, registration_retry_time=10.0, env=None,
                 auto_addresses=None, host_name=None, client_name=None):
        self.core = _core.ClientCore(env=env, auto_addresses=auto_addresses,
                                     host_name=host_name,
                                     client_name=client_name)
        self.registration_retry_time = registration_retry_time
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread = None
        self._selector = None
        self._udp = None
        self._wake_r = self._wake_w = None
        self._sockets = {}            # CircuitKey -> socket
        self._keys = {}               # socket -> CircuitKey
        self._connecting = set()
        self._running = False
        self._wake_pending = False
        self._busy = set()            # reasons events are paused
        self._recv_buffer = bytearray(RECV_CHUNK)
        self.callbacks = _CallbackThread(self._flow_control)

    def __repr__(self):
        return f"<SharedBroadcaster circuits={len(self.core.circuits)}>"

    @property
    def search_addresses(self):
        return list(self.core.search_addresses)

    # -- running the core ------------------------------------------------

    def call(self, method, *args, **kwargs):
        """Run a core method under the lock; carry out its effects.

        The method returns effects or ``(result, effects)``.
        """
        self._ensure_started()
        with self._lock:
            outcome = method(*args, **kwargs)
            if isinstance(outcome, tuple):
                result, effects = outcome
            else:
                result, effects = None, outcome
            later = self._apply_io(effects)
        self._wake()
        self._deliver(later)
        return result

    def _apply_io(self, effects):
        """Socket effects now (lock held); user-level ones returned."""
        later = []
        for effect in effects:
            kind = type(effect)
            if kind is _core.SendBuffers:
                sock = self._sockets.get(effect.key)
                if sock is not None:
                    self._send(effect.key, sock, effect.buffers)
            elif kind is _core.SendDatagram:
                try:
                    self._udp.sendto(effect.data, effect.address)
                except OSError as exc:    # unreachable network: not fatal
                    logger.debug("search to %s failed: %s", effect.address, exc)
            elif kind is _core.OpenCircuit:
                self._open(effect.key)
            elif kind is _core.CloseCircuit:
                self._close_socket(effect.key)
            else:
                later.append(effect)
        return later

    def _send(self, key, sock, buffers):
        try:
            if len(buffers) == 1 or sum(len(b) for b in buffers) < 65536:
                sock.sendall(b"".join(buffers))
            else:
                for buffer in buffers:
                    sock.sendall(buffer)
        except OSError as exc:
            logger.debug("send to %s failed: %s", key.address, exc)

    def _deliver(self, effects):
        """User-level effects: wake waiters, queue callbacks."""
        events = []
        for effect in effects:
            kind = type(effect)
            if kind is _core.ReadDone or kind is _core.WriteDone:
                self._finish(effect.request.owner, effect.command, None)
            elif kind is _core.RequestFailed:
                self._finish(effect.request.owner, None, effect.error)
            elif kind is _core.SubscriptionData:
                sub = effect.subscription.owner
                if sub is not None:
                    events.append((sub._process, (effect.command,)))
            elif kind in (_core.ChannelConnected, _core.ChannelDisconnected,
                          _core.AccessRightsChanged):
                pv = effect.entry.owner
                if pv is not None:
                    pv._core_event(effect)
            elif kind is _core.ServerError:
                logger.error("%s", effect.error)
            elif kind is _core.BeaconAnomaly:
                logger.debug("beacon anomaly from %s: searching again",
                             effect.address)
        if events:
            self.callbacks.put_many(events)

    def _finish(self, pending, command, error):
        if pending is None:
            return
        pending.command, pending.error = command, error
        pending.event.set()
        if pending.callback is not None and command is not None:
            self.callbacks.put(pending.callback, command)

    def _flow_control(self, busy, reason="callbacks"):
        """Pause server events while any consumer (the callback thread, or
        parsing of a circuit's byte stream) has a backlog; resume after."""
        with self._lock:
            was = bool(self._busy)
            if busy:
                self._busy.add(reason)
            else:
                self._busy.discard(reason)
            if was != bool(self._busy):
                self._apply_io(self.core.pause_events(bool(self._busy)))

    # -- sockets and the network thread ------------------------------------

    def _ensure_started(self):
        if self._running:
            return
        with self._start_lock:
            if self._running:
                return
            self._selector = selectors.DefaultSelector()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                               UDP_RECV_BUFFER)
            except OSError:
                pass
            udp.bind(("", 0))
            udp.setblocking(False)
            self._udp = udp
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(udp, selectors.EVENT_READ, "udp")
            self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self._running = True
            with self._lock:
                self._apply_io([self.core.repeater_registration(
                    time.monotonic())])
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="caproto-network")
            self._thread.start()

    def _wake(self):
        """Make the network thread re-read the core's deadline (once)."""
        if threading.current_thread() is self._thread or self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass                          # full: a wake-up is pending anyway

    def _open(self, key):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sockets[key] = sock
        self._keys[sock] = key
        # Non-blocking connect: the loop sees the socket writable when the
        # connection succeeds or fails and reads SO_ERROR then.
        sock.connect_ex(key.address)
        self._selector.register(sock, selectors.EVENT_WRITE, "tcp")
        self._connecting.add(sock)

    def _close_socket(self, key):
        sock = self._sockets.pop(key, None)
        if sock is None:
            return
        self._keys.pop(sock, None)
        self._connecting.discard(sock)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _run(self):
        while self._running:
            with self._lock:
                deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(
                0.0, deadline - time.monotonic())
            try:
                ready = self._selector.select(timeout)
            except (OSError, ValueError):
                if not self._running:
                    return
                raise
            for selector_key, _mask in ready:
                tag, sock = selector_key.data, selector_key.fileobj
                if tag == "wake":
                    try:
                        sock.recv(4096)
                    except OSError:
                        pass
                    # Cleared after draining: a wake-up sent in between
                    # leaves a byte behind, so none is ever lost.
                    self._wake_pending = False
                elif tag == "udp":
                    self._read_udp()
                elif sock in self._connecting:
                    self._connected(sock)
                else:
                    self._read_tcp(sock)
            self._step(self.core.poll, time.monotonic())

    def _step(self, method, *args):
        with self._lock:
            effects = method(*args)
            later = self._apply_io(effects)
        self._deliver(later)

    def _read_udp(self):
        batch = []
        for _ in range(256):               # bounded: then give TCP a turn
            try:
                batch.append(self._udp.recvfrom(65536))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:                # ICMP unreachable echoes: ignore
                continue
        if batch:
            self._step(self._datagrams, batch, time.monotonic())

    def _datagrams(self, batch, now):
        effects = []
        for data, address in batch:
            effects.extend(self.core.datagram_received(data, address, now))
        return effects

    def _connected(self, sock):
        key = self._keys.get(sock)
        self._connecting.discard(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if key is None:
            return
        if error:
            self._lost(key, os.strerror(error))
            return
        sock.setblocking(True)
        self._selector.modify(sock, selectors.EVENT_READ, "tcp")
        self._step(self.core.circuit_connected, key, time.monotonic())

    def _read_tcp(self, sock):
        key = self._keys.get(sock)
        if key is None:
            return
        try:
            count = sock.recv_into(self._recv_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(key, str(exc))
            return
        if not count:
            self._lost(key, "closed by the server")
            return
        self._step(self.core.bytes_received, key,
                   memoryview(self._recv_buffer)[:count], time.monotonic())
        backlog = count >= SOCKET_BACKLOG and self.core.bytes_needed(key) < count
        if backlog or ("socket", key) in self._busy:
            self._flow_control(backlog, ("socket", key))

    def _lost(self, key, reason):
        with self._lock:
            self._close_socket(key)
            effects = self.core.circuit_lost(key, time.monotonic(), reason)
            later = self._apply_io(effects)
        self._deliver(later)

    def disconnect(self):
        """Close every socket and stop the threads."""
        if not self._running:
            return
        with self._lock:
            self._apply_io(self.core.close())
            self._running = False
        self._wake_pending = False
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.callbacks.stop()
        for sock in (self._udp, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()


class Context:
    """Entry point: ``Context().get_pvs('a', 'b')`` -> PV objects.

    PVs are cached by (name, priority); asking again returns the same PV.
    """

    def __init__(self, broadcaster=None, *, timeout=None, host_name=None,
                 client_name=None, max_workers=1, env=None):
        self._owns_broadcaster = broadcaster is None
        if broadcaster is None:
            broadcaster = SharedBroadcaster(env=env, host_name=host_name,
                                            client_name=client_name)
        self.broadcaster = broadcaster
        self.timeout = default_timeout() if timeout is None else timeout
        self.max_workers = max_workers
        self.pvs = {}
        self._lock = threading.Lock()
        self._disconnected = False

    def __repr__(self):
        return f"<Context pvs={len(self.pvs)}>"

    def get_pvs(self, *names, priority=0, connection_state_callback=None,
                access_rights_callback=None, timeout=None):
        """PV objects for `names`; searches for all of them go out together."""
        if self._disconnected:
            raise ContextDisconnectedError("this Context was disconnected")
        pvs, new = [], []
        with self._lock:
            for name in names:
                pv = self.pvs.get((name, priority))
                if pv is None:
                    pv = PV(name, priority, self, timeout)
                    self.pvs[(name, priority)] = pv
                    new.append(pv)
                if connection_state_callback is not None:
                    pv.connection_state_callback.add_callback(
                        connection_state_callback)
                if access_rights_callback is not None:
                    pv.access_rights_callback.add_callback(
                        access_rights_callback)
                pvs.append(pv)
        if new:
            self.broadcaster.call(self._add, new, time.monotonic())
        return pvs

    def _add(self, pvs, now):
        effects = []
        for pv in pvs:
            pv._entry, found = self.broadcaster.core.add_channel(
                pv.name, pv.priority, pv, now)
            effects.extend(found)
        effects.extend(self.broadcaster.core.poll(now))
        return effects

    def disconnect(self, *, wait=True):
        """Disconnect every PV of this Context (and the engine if it made it)."""
        self._disconnected = True
        with self._lock:
            pvs, self.pvs = list(self.pvs.values()), {}
        if self._owns_broadcaster:
            self.broadcaster.disconnect()     # closes every channel at once
            for pv in pvs:
                pv._entry = None
                pv._connected.clear()
            return
        for pv in pvs:
            pv.disconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()


class PV(PVConnectionState):
    """One channel.  Reads and writes block (``wait=True``) or call back."""

    def __init__(self, name, priority, context, timeout=None):
        self.name = name
        self.priority = priority
        self.context = context
        self.timeout = timeout
        self.connection_state_callback = CallbackHandler(self)
        self.access_rights_callback = CallbackHandler(self)
        self.subscriptions = []
        self._entry = None
        self._connected = threading.Event()
        self._lock = threading.Lock()

    def _core_event(self, effect):
        """Called on the network thread for connection and rights changes."""
        kind = type(effect)
        put = self._engine.callbacks.put
        rights, state = (self.access_rights_callback,
                         self.connection_state_callback)
        if kind is _core.ChannelConnected:
            self._connected.set()
            if rights.callbacks:
                put(rights.process, self, effect.entry.access_rights)
            if state.callbacks:
                put(state.process, self, "connected")
        elif kind is _core.ChannelDisconnected:
            self._connected.clear()
            if state.callbacks:
                put(state.process, self, "disconnected")
        elif rights.callbacks:
            put(rights.process, self, effect.rights)

    def wait_for_connection(self, *, timeout=None):
        """Block until connected; CaprotoTimeoutError names PV and servers."""
        timeout = self._timeout(timeout)
        if self._entry is None:
            raise ContextDisconnectedError(f"{self.name!r} is disconnected")
        if not self._connected.wait(timeout):
            raise self._engine.core.timeout_error(self._entry, "connecting to",
                                                  timeout)

    def _request(self, action, method, callback, wait, timeout, **kwargs):
        timeout = self._timeout(timeout)
        start = time.monotonic()
        self.wait_for_connection(timeout=timeout)
        pending = _Pending(callback) if (wait or callback) else None
        request = self._engine.call(method, self._entry, owner=pending,
                                    **kwargs)
        if not wait or pending is None:
            return None
        remaining = None if timeout is None else max(
            0.0, timeout - (time.monotonic() - start))
        if not pending.event.wait(remaining):
            with self._engine._lock:
                self._engine.core.forget_request(request)
            raise self._engine.core.timeout_error(self._entry, action, timeout)
        if pending.error is not None:
            raise pending.error
        if not _core.status_ok(pending.command):
            status = pending.command.status
            raise ErrorResponseReceived(
                f"{action} {self.name!r} on "
                f"{_core.describe_address(self._entry.server)} failed: "
                f"{getattr(status, 'name', status)} "
                f"({getattr(status, 'description', 'unknown status')})")
        return pending.command

    def read(self, *, wait=True, callback=None, timeout=None, data_type=None,
             data_count=None, notify=True, form=None):
        """ReadNotifyResponse (``.data``, ``.metadata``); or None with a callback."""
        return self._request("reading", self._engine.core.read, callback,
                             wait, timeout, data_type=data_type,
                             data_count=data_count, notify=notify, form=form)

    def write(self, data, *, wait=True, callback=None, timeout=None,
              notify=None, data_type=None, data_count=None):
        """Write `data`; with wait (or a callback) use WriteNotify and confirm."""
        if notify is None:
            notify = bool(wait or callback)
        if not notify:
            wait = False
            callback = None
        return self._request("writing to", self._engine.core.write, callback,
                             wait, timeout, data=data, data_type=data_type,
                             data_count=data_count, notify=notify)

    def subscribe(self, data_type=None, data_count=None, low=0.0, high=0.0,
                  to=0.0, mask=None, form=None):
        """A Subscription; it goes to the server when a callback is added."""
        sub = Subscription(self, data_type=data_type, data_count=data_count,
                           low=low, high=high, to=to, mask=mask, form=form)
        self.subscriptions.append(sub)
        return sub

    def unsubscribe_all(self):
        for sub in list(self.subscriptions):
            sub.clear()

    def disconnect(self, *, wait=True):
        """Stop using this PV: subscriptions end, the channel is cleared."""
        entry, self._entry = self._entry, None
        self._connected.clear()
        if entry is not None:
            self._engine.call(self._engine.core.remove_channel, entry)
        with self.context._lock:
            if self.context.pvs.get((self.name, self.priority)) is self:
                del self.context.pvs[(self.name, self.priority)]


class Subscription(CallbackHandler):
    """Events from one EventAdd; re-established after every reconnect.

    The request is sent when the first callback is added and cancelled when
    the last one is removed.  Callbacks receive ``(subscription, response)``.
    """

    def __init__(self, pv, data_type=None, data_count=None, low=0.0,
                 high=0.0, to=0.0, mask=None, form=None):
        super().__init__(pv)
        self.pv = pv
        self.data_type, self.data_count, self.form = data_type, data_count, form
        self.low, self.high, self.to = low, high, to
        self.mask = (SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM
                     if mask is None else SubscriptionType(int(mask)))
        self.most_recent_response = None
        self._entry = None
        self._active = False

    def __repr__(self):
        return (f"<Subscription to {self.pv.name!r} mask={self.mask!r} "
                f"active={self._entry is not None}>")

    @property
    def subscriptionid(self):
        return None if self._entry is None else self._entry.subscriptionid

    def add_callback(self, func):
        token = super().add_callback(func)
        engine = self.pv._engine
        if self._entry is None:
            if self.pv._entry is None:
                raise ContextDisconnectedError(f"{self.pv.name!r} is disconnected")
            self._active = True       # events may arrive before call returns
            self._entry = engine.call(
                engine.core.subscribe, self.pv._entry, owner=self,
                data_type=self.data_type, data_count=self.data_count,
                mask=self.mask, low=self.low, high=self.high, to=self.to,
                form=self.form)
        elif self.most_recent_response is not None:
            engine.callbacks.put(func, self, self.most_recent_response)
        return token

    def remove_callback(self, token):
        super().remove_callback(token)
        if not self.callbacks:
            self._cancel()

    def _cancel(self):
        self._active = False
        entry, self._entry = self._entry, None
        if entry is not None:
            engine = self.pv._engine
            engine.call(engine.core.unsubscribe, entry)
        self.most_recent_response = None

    def clear(self):
        """Remove every callback and cancel the subscription."""
        self.clear_callbacks()
        self._cancel()

    def _process(self, command):
        if not self._active:
            return
        self.most_recent_response = command
        self.process(self, command)

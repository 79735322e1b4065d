"""The synchronous client: one blocking call per operation, no threads.

Each call (``read``, ``write``, ``read_write_read``) opens its own UDP
socket and circuits, does its work and closes them again; ``block`` runs
subscriptions until their duration ends or one of them is interrupted.
Simplicity over speed: for many PVs use the threading client.

All Channel Access logic is ``caproto.client.core.ClientCore``; this module
only carries out the core's effects with blocking sockets and a selector.
The logger ``caproto.sync.wire`` records every command sent and received
(at DEBUG), which is what ``caproto-get -v`` shows.

Beyond caproto's documented functions, ``Session`` (several PVs on one set
of sockets, used by the command-line tools) with ``read_entry`` and
``write_entry`` is available for callers that need more than one call.

A plain write (``notify=False``) has no answer unless the server refuses
it: ``write`` and ``read_write_read`` wait one read round trip and raise
the refusal (ErrorResponseReceived naming PV, server and ECA status);
``block`` logs a refused subscription at ERROR.
"""
import logging
import selectors
import socket
import time

from .._commands import read_datagram, read_from_bytestream
from .._buffer import ReceiveBuffer
from .._constants import CLIENT, NEED_DATA, SERVER
from .._dbr import AccessRights, ChannelType, native_type
from .._errors import CaprotoError, CaprotoValueError, ErrorResponseReceived
from ..client import core as _core

__all__ = ("read", "write", "subscribe", "block", "read_write_read",
           "Subscription")

logger = logging.getLogger("caproto.sync")
wire_logger = logging.getLogger("caproto.sync.wire")

#: Longest wait in one select, so ``interrupt()`` from a signal handler or
#: another thread is noticed promptly.
MAX_SELECT = 0.2
_ENUM_AS_STRING = {ChannelType.ENUM: ChannelType.STRING,
                   ChannelType.STS_ENUM: ChannelType.STS_STRING,
                   ChannelType.TIME_ENUM: ChannelType.TIME_STRING}


class _Pending:
    """Owner object for one read/write: the answer or the error lands here."""
    __slots__ = ("command", "error")

    def __init__(self):
        self.command = None
        self.error = None

    @property
    def done(self):
        return self.command is not None or self.error is not None


class _WireLog:
    """Decodes what goes over the wire again, for the DEBUG log only."""

    def __init__(self):
        self.streams = {}

    def sent(self, where, buffers):
        data = b"".join(bytes(b) for b in buffers)
        while data:
            data, command, _ = read_from_bytestream(data, CLIENT)
            if command is NEED_DATA:
                break
            wire_logger.debug("-> %s %r", where, command)

    def received(self, key, data):
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = ReceiveBuffer(SERVER, 2 ** 32)
        stream.feed(data)
        while True:
            command = stream.next_command()
            if command is NEED_DATA:
                break
            wire_logger.debug("<- %s %r", _core.describe_address(key.address),
                              command)

    def datagram(self, data, address):
        try:
            commands = read_datagram(data, address, SERVER)
        except CaprotoError:
            return
        for command in commands:
            wire_logger.debug("<- %s %r", _core.describe_address(address),
                              command)


class Session:
    """One ClientCore driven by blocking sockets, for the length of a call."""

    def __init__(self, repeater=True):
        self.core = _core.ClientCore()
        self.selector = selectors.DefaultSelector()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.bind(("", 0))
        self.udp.setblocking(False)
        self.selector.register(self.udp, selectors.EVENT_READ, None)
        self.sockets = {}             # CircuitKey -> socket
        #: ServerError effects (refused plain writes...) not yet taken;
        #: with ``on_server_error`` set, each is passed to it instead.
        self.server_errors = []
        self.on_server_error = None
        self.wire = _WireLog() if wire_logger.isEnabledFor(logging.DEBUG) else None
        if repeater:
            self.apply([self.core.repeater_registration(time.monotonic())])

    def close(self):
        self.apply(self.core.close())
        self.selector.close()
        self.udp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- effects -----------------------------------------------------------

    def apply(self, effects):
        for effect in effects:
            handler = self._HANDLERS.get(type(effect))
            if handler is not None:
                handler(self, effect)

    def _send_datagram(self, effect):
        if self.wire:
            self.wire.sent(_core.describe_address(effect.address), [effect.data])
        try:
            self.udp.sendto(effect.data, effect.address)
        except OSError as exc:        # unreachable network: the search fails
            logger.debug("cannot send to %s: %s", effect.address, exc)

    def _send_buffers(self, effect):
        sock = self.sockets.get(effect.key)
        if sock is None:
            return
        if self.wire:
            self.wire.sent(_core.describe_address(effect.key.address),
                           effect.buffers)
        try:
            sock.setblocking(True)
            sock.sendall(b"".join(effect.buffers))
        except OSError as exc:
            self._lost(effect.key, f"send failed: {exc}")
        finally:
            if effect.key in self.sockets:
                sock.setblocking(False)

    def _open(self, effect):
        key = effect.key
        timeout = max(1.0, min(self.core.conn_timeout, 5.0))
        try:
            sock = socket.create_connection(key.address, timeout=timeout)
        except OSError as exc:
            self.apply(self.core.circuit_lost(key, time.monotonic(),
                                               f"connect failed: {exc}"))
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sockets[key] = sock
        self.selector.register(sock, selectors.EVENT_READ, key)
        self.apply(self.core.circuit_connected(key, time.monotonic()))

    def _close_socket(self, effect):
        sock = self.sockets.pop(effect.key, None)
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()

    def _lost(self, key, reason):
        self._close_socket(_core.CloseCircuit(key, reason))
        self.apply(self.core.circuit_lost(key, time.monotonic(), reason))

    def _done(self, effect):
        effect.request.owner.command = effect.command

    def _failed(self, effect):
        effect.request.owner.error = effect.error

    def _server_error(self, effect):
        if self.on_server_error is not None:
            self.on_server_error(effect)
        else:
            self.server_errors.append(effect)

    def take_server_errors(self, entry):
        """The refusals of requests on `entry` no one waited for, oldest
        first (a plain write's); they are removed from the session."""
        mine = [e for e in self.server_errors if e.entry is entry]
        self.server_errors = [e for e in self.server_errors
                              if e.entry is not entry]
        return mine

    def _event(self, effect):
        effect.subscription.owner._process(effect.command)

    _HANDLERS = {
        _core.SendDatagram: _send_datagram, _core.SendBuffers: _send_buffers,
        _core.OpenCircuit: _open, _core.CloseCircuit: _close_socket,
        _core.ReadDone: _done, _core.WriteDone: _done,
        _core.RequestFailed: _failed, _core.SubscriptionData: _event,
        _core.ServerError: _server_error,
    }

    # -- the loop ----------------------------------------------------------

    def run_until(self, finished, deadline):
        """Serve I/O until ``finished()`` is true; False when `deadline` passed."""
        while not finished():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            self.apply(self.core.poll(now))
            if finished():
                return True
            wake = self.core.next_deadline()
            limits = [MAX_SELECT]
            if wake is not None:
                limits.append(wake - now)
            if deadline is not None:
                limits.append(deadline - now)
            for key, _ in self.selector.select(max(0.0, min(limits))):
                if key.data is None:
                    self._read_udp()
                else:
                    self._read_tcp(key.data)
        return True

    def _read_udp(self):
        for _ in range(64):
            try:
                data, address = self.udp.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:           # ICMP refusals from earlier sends
                continue
            if self.wire:
                self.wire.datagram(data, address)
            self.apply(self.core.datagram_received(data, address,
                                                    time.monotonic()))

    def _read_tcp(self, key):
        sock = self.sockets.get(key)
        if sock is None:
            return
        try:
            data = sock.recv(max(65536, self.core.bytes_needed(key)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(key, str(exc))
            return
        if not data:
            self._lost(key, "server closed the connection")
            return
        if self.wire:
            self.wire.received(key, data)
        self.apply(self.core.bytes_received(key, data, time.monotonic()))

    # -- operations ----------------------------------------------------------

    def connect(self, name, priority, timeout):
        entry, effects = self.core.add_channel(name, priority, None,
                                               time.monotonic())
        self.apply(effects)
        deadline = time.monotonic() + timeout
        if not self.run_until(lambda: entry.connected, deadline):
            raise self.core.timeout_error(entry, "connecting to", timeout)
        return entry

    def connect_all(self, names, priority, timeout):
        """Entries for every name, searched together; after `timeout` some
        may still be unconnected (``entry.connected`` says which)."""
        now = time.monotonic()
        entries = []
        for name in names:
            entry, effects = self.core.add_channel(name, priority, None, now)
            self.apply(effects)
            entries.append(entry)
        self.run_until(lambda: all(e.connected for e in entries),
                       time.monotonic() + timeout)
        return entries

    def wait(self, entry, request_effects, action, timeout):
        request, effects = request_effects
        self.apply(effects)
        owner = request.owner
        if not self.run_until(lambda: owner.done, time.monotonic() + timeout):
            self.core.forget_request(request)
            raise self.core.timeout_error(entry, action, timeout)
        if owner.error is not None:
            raise owner.error
        return owner.command


def _request_type(entry, data_type, force_int_enums):
    """The DBR type to ask for: `data_type` may be a form name ('time',
    'control', ...); enums become strings unless `force_int_enums`."""
    form = None
    if isinstance(data_type, str):
        form, data_type = data_type.lower(), None
    resolved = _core.resolve_data_type(entry.native_data_type, data_type, form)
    if not force_int_enums:
        resolved = _ENUM_AS_STRING.get(resolved, resolved)
    return resolved


def _check_status(entry, command, action):
    if not _core.status_ok(command):
        status = getattr(command, "status", None)
        description = getattr(status, "description", status)
        raise ErrorResponseReceived(
            f"{action} {entry.name!r} on {_core.describe_address(entry.server)}"
            f" failed: {description}")
    return command


def read_refusal(entry):
    """Why a connected entry cannot be read or monitored (no read access),
    or None."""
    if entry.access_rights is not None and \
            not entry.access_rights & AccessRights.READ:
        return (f"no read access to {entry.name!r} on "
                f"{_core.describe_address(entry.server)}")
    return None


def read_entry(session, entry, data_type=None, data_count=None, timeout=1,
               notify=True, force_int_enums=False):
    """Read a connected entry of `session`; the response, or an exception."""
    refusal = read_refusal(entry)
    if refusal is not None:
        raise CaprotoError(refusal)
    data_type = _request_type(entry, data_type, force_int_enums)
    command = session.wait(entry, session.core.read(
        entry, _Pending(), data_type=data_type, data_count=data_count,
        notify=notify), "reading", timeout)
    return _check_status(entry, command, "reading")


def write_entry(session, entry, data, notify=False, data_type=None,
                metadata=None, timeout=1):
    """Write to a connected entry of `session` (see ``write``)."""
    if entry.access_rights is not None and \
            not entry.access_rights & AccessRights.WRITE:
        raise CaprotoError(
            f"no write access to {entry.name!r} on "
            f"{_core.describe_address(entry.server)} (it is read-only for us)")
    if isinstance(data_type, str):
        data_type = _core.resolve_data_type(entry.native_data_type, None,
                                            data_type.lower())
    if isinstance(data, (str, bytes)) and data_type is None:
        data = [data]
        if native_type(entry.native_data_type) != ChannelType.CHAR:
            data_type = ChannelType.STRING
    elif isinstance(data, (int, float)):
        data = [data]
    request, effects = session.core.write(
        entry, data, _Pending(), data_type=data_type, notify=notify,
        metadata=metadata)
    if not notify:
        session.apply(effects)
        return None
    command = session.wait(entry, (request, effects), "writing to", timeout)
    return _check_status(entry, command, "writing to")


def read(pv_name, data_type=None, data_count=None, timeout=1, priority=0,
         notify=True, force_int_enums=False, repeater=True):
    """Read one PV; returns the ReadNotifyResponse.

    data_type: a ChannelType, or 'native', 'status', 'time', 'graphic',
    'control' to promote the native type.  Enums come back as strings
    unless `force_int_enums`.  Raises CaprotoTimeoutError (naming the PV
    and where it was searched for) when no answer comes within `timeout`
    seconds, for the connection and again for the read.
    """
    with Session(repeater) as session:
        entry = session.connect(pv_name, priority, timeout)
        return read_entry(session, entry, data_type, data_count, timeout, notify,
                     force_int_enums)


def write(pv_name, data, notify=False, data_type=None, metadata=None,
          timeout=1, priority=0, repeater=True):
    """Write `data` to one PV; with `notify`, wait for and return the
    WriteNotifyResponse (the put completed, e.g. the record processed)."""
    with Session(repeater) as session:
        entry = session.connect(pv_name, priority, timeout)
        result = write_entry(session, entry, data, notify, data_type, metadata,
                        timeout)
        if not notify:
            # A plain write has no answer: a read round trip makes sure the
            # server has handled it (and any refusal has arrived) before
            # the circuit closes.
            _flush(session, entry, timeout)
            _raise_refusal(session, entry)
        return result


def _flush(session, entry, timeout):
    try:
        session.wait(entry, session.core.read(entry, _Pending()), "reading",
                     timeout)
    except CaprotoError:
        pass


def _raise_refusal(session, entry):
    """Raise the server's refusal of a plain write on `entry`, if any."""
    refused = session.take_server_errors(entry)
    if refused:
        raise refused[0].error


def read_write_read(pv_name, data, notify=False, data_type=None,
                    metadata=None, timeout=1, priority=0,
                    force_int_enums=False, repeater=True):
    """Read, write, read again on one circuit; returns (initial, write, final).

    The reads use `data_type` as ``read`` does (time stamps etc. when asked).
    """
    with Session(repeater) as session:
        entry = session.connect(pv_name, priority, timeout)
        initial = read_entry(session, entry, data_type, None, timeout, True,
                        force_int_enums)
        written = write_entry(session, entry, data, notify, None, metadata, timeout)
        final = read_entry(session, entry, data_type, None, timeout, True,
                      force_int_enums)
        _raise_refusal(session, entry)
        return initial, written, final


class Subscription:
    """A subscription to one PV; nothing is sent until ``block`` runs it.

    Callbacks are called as ``callback(sub, response)`` with each
    EventAddResponse, in the thread that called ``block``.
    """

    def __init__(self, pv_name, priority=0, data_type=None, data_count=None,
                 low=0.0, high=0.0, to=0.0, mask=None):
        self.pv_name = pv_name
        self.priority = priority
        self.data_type = data_type
        self.data_count = data_count
        self.low, self.high, self.to, self.mask = low, high, to, mask
        self.callbacks = {}
        self._next_cb_id = 0
        self.interrupted = False

    def __repr__(self):
        return f"<Subscription to {self.pv_name!r}>"

    def add_callback(self, func):
        """Call ``func(sub, response)`` for every update; returns an id."""
        cb_id = self._next_cb_id
        self._next_cb_id += 1
        self.callbacks[cb_id] = func
        return cb_id

    def remove_callback(self, cb_id):
        self.callbacks.pop(cb_id, None)

    def clear(self):
        """Remove every callback."""
        self.callbacks.clear()

    def interrupt(self):
        """Make ``block`` return (safe from callbacks and signal handlers)."""
        self.interrupted = True

    def block(self, duration=None, timeout=1, force_int_enums=False,
              repeater=True):
        """Run this subscription; see the module-level ``block``."""
        block(self, duration=duration, timeout=timeout,
              force_int_enums=force_int_enums, repeater=repeater)

    def _process(self, command):
        for func in list(self.callbacks.values()):
            try:
                func(self, command)
            except Exception:
                logger.exception("callback %r for %r raised", func, self.pv_name)


def subscribe(pv_name, priority=0, data_type=None, data_count=None, low=0.0,
              high=0.0, to=0.0, mask=None):
    """A Subscription; add callbacks, then ``block`` to receive updates."""
    return Subscription(pv_name, priority, data_type, data_count, low, high,
                        to, mask)


def block(*subscriptions, duration=None, timeout=1, force_int_enums=False,
          repeater=True):
    """Serve `subscriptions` until `duration` seconds pass (None: forever)
    or one of them is interrupted.  Each PV must connect within `timeout`."""
    if not subscriptions:
        raise CaprotoValueError("block() needs at least one Subscription")
    for sub in subscriptions:
        sub.interrupted = False
    with Session(repeater) as session:
        session.on_server_error = lambda effect: logger.error("%s", effect.error)
        now = time.monotonic()
        entries = []
        for sub in subscriptions:
            entry, effects = session.core.add_channel(sub.pv_name,
                                                      sub.priority, None, now)
            session.apply(effects)
            entries.append(entry)
        deadline = time.monotonic() + timeout
        if not session.run_until(lambda: all(e.connected for e in entries),
                                 deadline):
            missing = next(e for e in entries if not e.connected)
            raise session.core.timeout_error(missing, "connecting to", timeout)
        for sub, entry in zip(subscriptions, entries):
            data_type = _request_type(entry, sub.data_type, force_int_enums)
            _sub, effects = session.core.subscribe(
                entry, sub, data_type=data_type, data_count=sub.data_count,
                mask=sub.mask, low=sub.low, high=sub.high, to=sub.to)
            session.apply(effects)
        end = None if duration is None else time.monotonic() + duration
        try:
            session.run_until(
                lambda: any(sub.interrupted for sub in subscriptions), end)
        except KeyboardInterrupt:
            pass



"""One client's TCP circuit on the server: commands in, buffers out.

Invariants:
- All protocol behaviour of a circuit lives here; a layer (asyncio/curio/
  trio) only moves bytes between its socket and ``CircuitHandler.received``
  / ``take_output`` and supplies a ``Wakeup`` (see typing.py).
- A bad request gets an ErrorResponse (or a failed WriteNotifyResponse) with
  the ECA code rsrv uses and changes nothing; only bytes that cannot be
  parsed drop the circuit, with one log line.
- Memory per circuit is bounded: replies wait in ``_outbox`` (over
  OUTBOX_LIMIT, processing waits for the layer's ``drain``), updates in
  ``_events``, where a subscription never holds more than
  PENDING_PER_SUBSCRIPTION entries, only one while the queue is over
  EVENT_QUEUE_BYTES or the client said EventsOff; the newest value replaces
  the newest pending one, so the last value is never lost.
- Nothing waits on a timer to batch: ``take_output`` returns everything
  queued whenever the layer's sender runs.

Channel filters (names.py) are objects with ``apply(metadata, values,
state, flags) -> (metadata, values) | None`` (None: drop this event; state
is a per-subscription dict, None for reads and flags) and optionally
``native_count(count) -> count``.
"""
import collections
import logging

from .. import _dbr
from .._buffer import payload_limit
from .._circuit import VirtualCircuit
from .._commands import (
    AccessRightsResponse, ClearChannelRequest, ClearChannelResponse,
    ClientNameRequest, CreateChanRequest, CreateChanResponse, EchoRequest,
    EchoResponse, ErrorResponse, EventAddRequest, EventAddResponse,
    EventCancelRequest, EventsOffRequest, EventsOnRequest, HostNameRequest,
    MessageHeader, ReadNotifyRequest, ReadRequest, VersionRequest,
    VersionResponse, WriteNotifyRequest, WriteRequest, bytelen,
)
from .._constants import DEFAULT_PROTOCOL_VERSION, SERVER
from .._data import ChannelData, SubscriptionSpec
from .._errors import (CaprotoConversionError, LocalProtocolError,
                       RemoteProtocolError)
from .._fastlane import (READ_NOTIFY, WRITE, serve_clear_requests,
                         serve_create_requests, serve_read_requests,
                         take_write_requests)
from .._headers import pack_header
from .._status import CAStatus
from .access import begin_trapwrite
from .names import ResolvedName

__all__ = ("CircuitHandler", "Subscription", "DroppedCircuit", "RECV_CHUNK",
           "OUTBOX_LIMIT", "EVENT_QUEUE_BYTES", "PENDING_PER_SUBSCRIPTION")

RECV_CHUNK = 1 << 14               # bytes handled per turn of the loop, unless a
                                   # large payload needs more (fairness to others)
OUTBOX_LIMIT = 1 << 20             # replies queued before the layer stops reading
LARGE_ANSWER = 1 << 16             # an answer this large is sent from its own buffers
EVENT_QUEUE_BYTES = 1 << 20        # pending updates before each sub keeps only its newest
PENDING_PER_SUBSCRIPTION = 8
_UNKNOWN_CID = 0xFFFFFFFF
_READ, _WRITE = int(_dbr.AccessRights.READ), int(_dbr.AccessRights.WRITE)
# AccessRights by int: enum construction costs microseconds per channel created.
_RIGHTS = {int(rights): _dbr.AccessRights(rights) for rights in range(4)}
_ANY_EVENT = 0xF                   # DBE_VALUE | DBE_LOG | DBE_ALARM | DBE_PROPERTY

circuit_log = logging.getLogger("caproto.circ")


class DroppedCircuit(Exception):
    """The client sent bytes we cannot parse; the layer closes its socket."""


class Subscription:
    """One EventAdd on one circuit: what to send and what is pending for it."""
    __slots__ = ("subscriptionid", "entry", "spec", "data_type", "data_count",
                 "value_size", "pending", "last", "active", "filter_state")

    def __init__(self, subscriptionid, entry, spec):
        self.subscriptionid = subscriptionid
        self.entry = entry
        self.spec = spec
        self.data_type = spec.data_type
        self.data_count = spec.data_count
        self.value_size = _dbr.dbr_value_size(spec.data_type)
        self.pending = 0          # entries in the circuit's event queue
        self.last = None          # the newest of them (a list, see _queue_update)
        self.active = True
        self.filter_state = {}

    def __repr__(self):
        return (f"<Subscription {self.subscriptionid} on "
                f"{self.entry.channel.name!r} {self.data_type!r}>")


class _ChannelEntry:
    """What a connected channel serves: its data, filter and access rights."""
    __slots__ = ("channel", "data", "channel_filter", "rights", "allowed",
                 "subs", "read_cache")

    def __init__(self, channel, data, channel_filter, rights):
        self.channel, self.data = channel, data
        self.channel_filter = channel_filter
        self.set_rights(rights)
        self.subs = {}
        self.read_cache = {}       # (data_type, count) -> (state, response, wire)

    def set_rights(self, rights):
        """`rights` (AccessRights), and as an int for every request's check."""
        self.rights, self.allowed = rights, int(rights)


class _EventQueue:
    """The queue ChannelData.subscribe/publish put SubscriptionUpdates on."""
    __slots__ = ("_handler",)

    def __init__(self, handler):
        self._handler = handler

    async def put(self, update):
        if self._handler._queue_update(update):
            await self._handler.wakeup.set()


_TYPES = {int(t): t for t in _dbr.ChannelType}
# Native numeric types whose plain/STS/TIME reads depend only on value,
# timestamp and alarm (the alarm source's): their encoded answers may be
# reused (see _read_answer).
_CACHED_NATIVE = {_dbr.ChannelType.DOUBLE, _dbr.ChannelType.FLOAT,
                  _dbr.ChannelType.LONG, _dbr.ChannelType.INT,
                  _dbr.ChannelType.CHAR}


def _derive(template, **fields):
    """A copy of `template` with some integer header fields changed.

    `fields` are the command's attribute names (cid, sid, ioid, ...), mapped
    to header fields through the command's generated layout; payload buffers
    are shared, so one encoding serves every copy.  Much cheaper than
    constructing the command again.
    """
    cls = type(template)
    index = _HEADER_FIELDS.get(cls)
    if index is None:
        index = _HEADER_FIELDS[cls] = {
            attr: MessageHeader._fields.index(field) for attr, field, _kind in cls._LAYOUT}
    values = list(template.header)
    for name, value in fields.items():
        values[index[name]] = int(value)
    header = tuple.__new__(MessageHeader, values)
    message = object.__new__(cls)
    message.__dict__.update(template.__dict__)
    message.header = header
    message.buffers = (pack_header(header), *template.buffers[1:])
    return message


_HEADER_FIELDS = {}
_RIGHTS_TEMPLATE = AccessRightsResponse(0, 0)
_CREATED_TEMPLATE = CreateChanResponse(0, 1, 0, 0)
_CLEARED_TEMPLATE = ClearChannelResponse(0, 0)


def _cacheable(data, data_type):
    """Whether reads of `data` as `data_type` may reuse an earlier encoding."""
    return (data.data_type in _CACHED_NATIVE
            and data_type in (data.data_type, data.data_type + 7,
                              data.data_type + 14)
            and type(data)._native_values is ChannelData._native_values
            and data._reads_stored_state())


def _run_now(coro):
    """Result of a coroutine that never suspends (ChannelData.read's own)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("ChannelData.read suspended; it must not")


def _zero(data_type):
    return b"" if _dbr.native_type(data_type) == _dbr.ChannelType.STRING else 0


def _fit_count(values, count, data_type):
    """`values` cut or zero-padded to `count` elements (0: as they are)."""
    length = len(values)
    if count == 0 or count == length:
        return values, length
    if count < length:
        return values[:count], count
    missing = count - length
    if isinstance(values, (bytes, bytearray)):
        return bytes(values) + bytes(missing), count
    if hasattr(values, "dtype"):                # numpy, imported by the backend
        import numpy
        padded = numpy.zeros(count, dtype=values.dtype)
        padded[:length] = values
        return padded, count
    return list(values) + [_zero(data_type)] * missing, count


def _answer_bytes(data_type, count):
    return _dbr.dbr_metadata_size(data_type) + _dbr.dbr_value_size(data_type) * count


def _answer_exceeds(data_type, count, max_array_bytes):
    """Whether an answer of `count` elements is over EPICS_CA_MAX_ARRAY_BYTES."""
    return count > 1 and _answer_bytes(data_type, count) > payload_limit(max_array_bytes)


def _max_count(data, data_type):
    """Most elements a request for `data_type` may ask of `data`."""
    count = data.max_length
    if _dbr.native_type(data_type) == _dbr.ChannelType.CHAR:
        count = max(count, getattr(data, "long_string_max_length", 0) or 0)
    return count


class CircuitHandler:
    """Serve one client's TCP circuit: commands in, buffers out.

    The layer calls ``await received(data)`` with each chunk it reads and
    writes ``take_output()`` after each ``received`` and whenever ``wakeup``
    is set (by what happens between reads: updates, hooks).  It sets
    ``drain`` to a coroutine function that writes ``take_output()`` and
    waits until the socket took it: ``received`` calls it whenever the
    replies it queued pass OUTBOX_LIMIT (a client pipelining reads of large
    arrays).  ``close()`` when the socket is gone.
    """

    def __init__(self, context, address, wakeup):
        self.context = context
        self.address = address
        self.wakeup = wakeup
        self.circuit = VirtualCircuit(
            SERVER, address, None,
            max_payload_size=payload_limit(context.max_array_bytes))
        self.event_queue = _EventQueue(self)
        self._entries = {}                   # sid -> _ChannelEntry (see _entry)
        self._serve_channel = None           # see _channel_server
        self._answer_read = self._read_server()
        self._subs = {}                      # subscriptionid -> Subscription
        self._outbox = []
        self._outbox_bytes = 0
        self._events = collections.deque()   # [sub, metadata, values, nbytes]
        self._event_bytes = 0
        self._needed = 0
        self._unyielded = 0                  # bytes handled since the layer last yielded
        self.drain = None
        self.closed = False

    def __repr__(self):
        return (f"<CircuitHandler {self.address} "
                f"channels={self.circuit.channel_count()}>")

    @property
    def recv_size(self):
        """How much the layer should read next: a small chunk, so one flooding
        client yields the loop often, or all of a large pending payload."""
        return max(RECV_CHUNK, self._needed)

    def turn_over(self):
        """Whether the layer should now let other tasks run (the other
        circuits, this circuit's event sender) before reading on: it has
        handled RECV_CHUNK bytes since it last did.  Counted across reads,
        not per read: a client putting as fast as it can (libca flushing
        every few kB) keeps a little data waiting at every read, and a
        layer that only yielded after full chunks then never yielded, while
        the subscribers' updates piled up and were coalesced away."""
        if self._unyielded < RECV_CHUNK:
            return False
        self._unyielded = 0
        return True

    @property
    def client_hostname(self):
        return self.circuit.host_name or self.address[0]

    @property
    def client_username(self):
        return self.circuit.client_name or ""

    # -- input ------------------------------------------------------------

    async def received(self, data):
        """Process every complete command in `data` (a bytes-like chunk)."""
        circuit = self.circuit
        circuit.feed(data)
        self._unyielded += len(data)
        while circuit.pending_bytes:
            if self._outbox_bytes >= OUTBOX_LIMIT and self.drain is not None:
                await self.drain()
            lane = self._LANES.get(circuit.next_command_id())
            if lane is not None and await lane(self):
                continue                 # it took a run of them
            try:
                commands, self._needed = circuit.recv(stop_before=self._LANES)
            except RemoteProtocolError as exc:
                refused = getattr(exc, "command", None)
                if refused is None:          # unparseable: the stream is lost
                    raise DroppedCircuit(str(exc)) from None
                for command in exc.commands:
                    await self._dispatch(command)
                self._refused(refused, exc)
                continue
            for command in commands:
                await self._dispatch(command)
                if self._outbox_bytes > OUTBOX_LIMIT and self.drain is not None:
                    await self.drain()
            if not commands:
                return                       # a partial command: wait for the rest
        self._needed = 0

    # The fast lanes (_fastlane), by the command they take runs of; each
    # returns how many it took (0: the general path takes the next one).

    async def _lane_create(self):            # connect floods
        # _channel_server() each time: a HostNameRequest just processed
        # changes the rights of the channels after it.
        reply, created = serve_create_requests(self.circuit, self._channel_server())
        if created:
            self._outbox.append(reply)
            self._outbox_bytes += len(reply)
        return created

    async def _lane_read(self):              # polling clients
        answers, nbytes, read = serve_read_requests(
            self.circuit, self._answer_read, OUTBOX_LIMIT - self._outbox_bytes)
        if read:
            self._outbox.extend(answers)
            self._outbox_bytes += nbytes
        return read

    async def _lane_clear(self):             # leaving clients
        reply, cleared = serve_clear_requests(self.circuit)
        if cleared:
            self._outbox.append(reply)
            self._outbox_bytes += len(reply)
        return cleared

    async def _lane_write(self):             # setters
        writes = take_write_requests(self.circuit)
        for header, data_type, data, metadata in writes:
            await self._on_taken_write(header, data_type, data, metadata)
        return len(writes)

    async def _dispatch(self, command):
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            return
        try:
            await handler(self, command)
        except CaprotoConversionError as exc:
            circuit_log.info("%s: %r refused: %s", self.address, command, exc)
            self._error(command, CAStatus.ECA_NOCONVERT, str(exc))
        except Exception as exc:     # a bug or a hostile hook: refuse, keep serving
            circuit_log.exception("%s: %r failed", self.address, command)
            self._error(command, CAStatus.ECA_INTERNAL, f"{type(exc).__name__}: {exc}")

    def _refused(self, command, exc):
        """A command the circuit's state refused (e.g. a sid already cleared)."""
        circuit_log.debug("%s: refused %r: %s", self.address, command, exc)
        if hasattr(command, "sid") or hasattr(command, "subscriptionid"):
            self._error(command, CAStatus.ECA_BADCHID, str(exc), _UNKNOWN_CID)

    # -- output -----------------------------------------------------------

    def _send(self, *commands):
        try:
            buffers = self.circuit.send(*commands)
        except LocalProtocolError as exc:    # e.g. the channel vanished meanwhile
            circuit_log.warning("%s: could not send %r: %s", self.address,
                                commands, exc)
            return
        self._outbox.extend(buffers)
        self._outbox_bytes += bytelen(buffers)

    def _error(self, command, status, message, cid=None):
        if cid is None:
            entry = self._entry(getattr(command, "sid", None))
            cid = entry.channel.cid if entry is not None else _UNKNOWN_CID
        self._send(ErrorResponse(command, cid, status, message))

    def take_output(self):
        """Every buffer ready to write now (replies first, then updates)."""
        buffers = self._outbox
        self._outbox = []
        self._outbox_bytes = 0
        if self._events and self.circuit.events_on:
            events, self._events = self._events, collections.deque()
            self._event_bytes = 0
            encoded = {}      # one encoding per update, type and count
            for item in events:
                sub = item[0]
                sub.pending -= 1
                if sub.last is item:
                    sub.last = None
                if sub.active:
                    buffers.extend(self._encode_event(sub, item[1], item[2],
                                                      encoded))
        return buffers

    def _encode_event(self, sub, metadata, values, encoded):
        """An EventAddResponse's buffers; subscriptions sharing an update share
        its payload.  (Sent without circuit.send: it would only re-check that
        the subscription is active, which ``sub.active`` already says.)"""
        key = (id(values), id(metadata), sub.data_type, sub.data_count)
        template = encoded.get(key)
        if template is None:
            fitted, count = _fit_count(values, sub.data_count, sub.data_type)
            try:
                template = EventAddResponse(fitted, metadata, sub.data_type, count,
                                            CAStatus.ECA_NORMAL, sub.subscriptionid)
            except LocalProtocolError as exc:
                circuit_log.warning("%s: dropped an update for %r: %s",
                                    self.address, sub, exc)
                return ()
            encoded[key] = template
            return template.buffers
        return _derive(template, subscriptionid=sub.subscriptionid).buffers

    def _queue_update(self, update):
        """Take a SubscriptionUpdate, coalescing per subscription when needed.

        Returns whether the sender should be woken."""
        for sub in update.subs:
            if not sub.active:
                continue
            metadata, values = update.metadata, update.values
            channel_filter = sub.entry.channel_filter
            if channel_filter is not None:
                result = channel_filter.apply(metadata, values, sub.filter_state,
                                              update.flags)
                if result is None:
                    continue
                metadata, values = result
            size = 16 + sub.value_size * (len(values) if hasattr(values, "__len__")
                                          else 1)
            last = sub.last
            if last is not None and (sub.pending >= PENDING_PER_SUBSCRIPTION
                                     or not self.circuit.events_on
                                     or self._event_bytes > EVENT_QUEUE_BYTES):
                self._event_bytes += size - last[3]
                last[1], last[2], last[3] = metadata, values, size
                continue
            item = [sub, metadata, values, size]
            self._events.append(item)
            self._event_bytes += size
            sub.pending += 1
            sub.last = item
        return self.circuit.events_on

    # -- channels and rights ------------------------------------------------

    def _rights(self, data, host=None, user=None):
        """The channel's own rights (``check_access``), ANDed with those of an
        access-security file attached as ``data.access_security`` (access.py),
        for this client (or `host`/`user`, its names looked up once)."""
        if host is None:
            host, user = self.client_hostname, self.client_username
        rights = data.check_access(host, user)
        security = getattr(data, "access_security", None)
        if security is not None:
            rights = int(rights) & int(security.rights_for(data, host, user, self.context))
        # (an AccessRights hashes as its int: no int() needed to look it up)
        return _RIGHTS.get(rights) or _dbr.AccessRights(int(rights))

    def _entry(self, sid):
        """The _ChannelEntry of channel `sid`, or None.  The create lane
        only records what an entry needs, as the channel's ``served`` (see
        _channel_server): a client connecting 10,000 channels may use few of
        them, and making each entry and ServerChannel at once was a third of
        the cost of a connect."""
        entry = self._entries.get(sid)
        if entry is None:
            channel = self.circuit.channel_by_sid(sid)
            served = channel.served if channel is not None else None
            if served is not None:
                if type(served) is ResolvedName:
                    data, channel_filter = served.data, served.channel_filter
                else:
                    data, channel_filter = served, None
                entry = self._entries[sid] = _ChannelEntry(
                    channel, data, channel_filter, channel.access_rights)
                channel.served = None
        return entry

    def _all_entries(self):
        """Every channel's entry, made now where it was not yet."""
        for sid in list(self.circuit.channels_sid):
            self._entry(sid)
        return self._entries

    async def refresh_access_rights(self):
        """Re-check every channel's rights; send AccessRights where they changed."""
        for entry in self._all_entries().values():
            rights = self._rights(entry.data)
            if rights != entry.rights:
                entry.set_rights(rights)
                self._send(entry.channel.access_rights_response(rights))
        if self._outbox:
            await self.wakeup.set()

    async def _drop_subscriptions(self, entry):
        for sub in list(entry.subs.values()):
            await self._drop_subscription(sub)

    async def _drop_subscription(self, sub):
        sub.active = False
        sub.entry.subs.pop(sub.subscriptionid, None)
        self._subs.pop(sub.subscriptionid, None)
        await sub.entry.data.unsubscribe(self.event_queue, sub.spec, sub)

    async def disconnect_data(self, data):
        """Tell the client every channel served by `data` is gone (ServerDisconn)."""
        for sid, entry in list(self._all_entries().items()):
            # (a filter's view of `data`, e.g. ts num, names it as its source)
            if entry.data is data or getattr(entry.data, "source", None) is data:
                await self._drop_subscriptions(entry)
                del self._entries[sid]
                self._send(entry.channel.disconnect())
        if self._outbox:
            await self.wakeup.set()

    async def close(self):
        """The socket is gone: unsubscribe everything, forget every channel."""
        if self.closed:
            return
        self.closed = True
        for entry in self._entries.values():
            await self._drop_subscriptions(entry)
        self._entries.clear()
        self._events.clear()
        self._outbox = []
        self.circuit.disconnect()

    # -- command handlers ----------------------------------------------------

    async def _on_version(self, command):
        self._send(VersionResponse(DEFAULT_PROTOCOL_VERSION))

    async def _on_names(self, command):
        self._serve_channel = None           # it knows the old names
        await self.refresh_access_rights()

    async def _on_echo(self, command):
        self._send(EchoResponse())

    async def _on_events_off(self, command):
        pass                                  # the circuit tracks events_on

    async def _on_events_on(self, command):
        await self.wakeup.set()

    async def _on_create_chan(self, command):
        channel = self.circuit.channel_by_cid(command.cid)
        answer = self._channel_server()(channel.name)
        if answer is None:
            self._send(channel.create_fail())
        else:
            rights, data_type, data_count, channel.served = answer
            self._send(channel.access_rights_response(rights),
                       channel.create(data_type, data_count, self.circuit.new_channel_id()))

    def _channel_server(self):
        """``serve(name)`` answering the channels this client creates: its
        ``(rights, native type, native count, served)``, or None when we do
        not serve the name.  `served`, what the channel's _ChannelEntry is
        made of (see _entry), is its ChannelData, or the ResolvedName of a
        name with a field or filter: one object, as every tuple made per
        channel is one more for the cyclic GC to walk during a connect.

        Made once, and again after the client sent its host or user name: a
        client connecting thousands of channels sends nothing else, and
        per-call lookups add up, as would making it per message.
        """
        if self._serve_channel is not None:
            return self._serve_channel
        context, resolve_name = self.context, self.context.resolve
        rights_of = self._rights
        host, user, address = self.client_hostname, self.client_username, self.address

        def serve(name):
            try:
                data = served = context.pvdb.get(name)
                channel_filter = None
                if data is None:
                    served = resolve_name(name)
                    if served is None:
                        return None
                    data, channel_filter = served.data, served.channel_filter
                count = data.max_length
                if channel_filter is not None:
                    native_count = getattr(channel_filter, "native_count", None)
                    if native_count is not None:
                        count = native_count(count)
                rights = rights_of(data, host, user)
            except Exception:      # e.g. a user's check_access: refuse, keep serving
                circuit_log.exception("%s: cannot open channel %r", address, name)
                return None
            return rights, data.data_type, count, served
        self._serve_channel = serve
        return serve

    async def _on_clear_channel(self, command):
        entry = self._entries.pop(command.sid, None)
        if entry is not None:
            await self._drop_subscriptions(entry)
        channel = self.circuit.channel_by_sid(command.sid)
        self._send(_derive(_CLEARED_TEMPLATE, sid=channel.sid, cid=channel.cid))

    def _check_request(self, command, right, denied):
        """The channel entry and data type, or None after answering an error."""
        entry = self._entry(command.sid)
        if entry is None:
            self._error(command, CAStatus.ECA_BADCHID,
                        f"sid {command.sid} is not a channel of this server")
            return None, None
        data_type = _TYPES.get(command.header.data_type)
        if data_type is None:
            self._error(command, CAStatus.ECA_BADTYPE,
                        f"DBR type {command.header.data_type} does not exist")
            return None, None
        if not entry.allowed & right:
            self._error(command, denied,
                        f"{self.client_username}@{self.client_hostname} may "
                        f"not access {entry.channel.name!r}")
            return None, None
        count = command.header.data_count
        if count > 1 and count > _max_count(entry.data, data_type):
            self._error(command, CAStatus.ECA_BADCOUNT,
                        f"{count} elements requested of {entry.channel.name!r}, "
                        f"which has at most {entry.data.max_length}")
            return None, None
        return entry, data_type

    def _too_large(self, command, entry, data_type, count):
        if _answer_exceeds(data_type, count, self.context.max_array_bytes):
            self._error(command, CAStatus.ECA_TOLARGE,
                        f"{entry.channel.name!r}: {_answer_bytes(data_type, count)} "
                        f"bytes exceed EPICS_CA_MAX_ARRAY_BYTES="
                        f"{self.context.max_array_bytes}")
            return True
        return False

    def _read_server(self):
        """``answer(sid, data_type, count)`` for the read lane (made once per
        circuit): the wire form
        of a ReadNotifyResponse the general path would send from
        ``_cached_read``, or None wherever it would do anything else (an
        error, a getter hook, a filter)."""
        entries, max_array_bytes = self._entries, self.context.max_array_bytes

        def answer(sid, data_type, count):
            entry = entries.get(sid)
            if entry is None or not entry.allowed & _READ or entry.channel_filter is not None:
                return None
            data, data_type = entry.data, _TYPES.get(data_type)
            if data_type is None or not _cacheable(data, data_type):
                return None
            if count > 1 and count > _max_count(data, data_type):
                return None
            if _answer_exceeds(data_type, count or len(data), max_array_bytes):
                return None
            return self._read_answer(entry, data_type, count)[2]
        return answer

    async def _on_read(self, command):
        entry, data_type = self._check_request(command, _READ,
                                               CAStatus.ECA_NORDACCESS)
        if entry is None:
            return
        notify = type(command) is ReadNotifyRequest
        if notify and entry.channel_filter is None and _cacheable(entry.data, data_type):
            count = command.header.data_count or len(entry.data)
            if not self._too_large(command, entry, data_type, count):
                self._send(self._cached_read(entry, data_type, command))
            return
        try:
            metadata, values = await entry.data.read(data_type)
            if entry.channel_filter is not None:
                metadata, values = entry.channel_filter.apply(metadata, values,
                                                              None, None)
        except CaprotoConversionError as exc:
            self._error(command, CAStatus.ECA_NOCONVERT, str(exc))
            return
        except Exception as exc:
            circuit_log.exception("%s: read of %r failed", self.address,
                                  entry.channel.name)
            self._error(command, CAStatus.ECA_GETFAIL, str(exc))
            return
        values, count = _fit_count(values, command.header.data_count, data_type)
        if self._too_large(command, entry, data_type, count):
            return
        self._send(entry.channel.read(values, command.ioid, data_type, count,
                                      metadata=metadata, notify=notify))

    def _cached_read(self, entry, data_type, command):
        """The answer to a numeric read, encoded once per value/timestamp/alarm."""
        return _derive(self._read_answer(entry, data_type,
                                         command.header.data_count)[1],
                       ioid=command.ioid)

    @staticmethod
    def _read_answer(entry, data_type, count):
        """``(state, response, wire)`` for a read of `count` elements, made
        again when the value, timestamp or alarm changed.

        Only for channels whose read is ChannelData's own (no getter hook),
        so the answer depends on nothing else (see _cacheable).  `response`
        has ioid 0; `wire` is it as the read lane sends it (see
        serve_read_requests): first 12 header bytes, what follows the
        ioid, size."""
        data = entry.data
        source = data.alarm_source()     # a record's field: the record's alarm, time
        state = (data.value, source.timestamp, source.alarm.status, source.alarm.severity)
        key = (data_type, count)
        cached = entry.read_cache.get(key)
        if cached is None or cached[0][0] is not state[0] or cached[0][1:] != state[1:]:
            metadata, values = _run_now(data.read(data_type))
            values, count = _fit_count(values, count, data_type)
            response = entry.channel.read(values, 0, data_type, count,
                                          metadata=metadata)
            header, *payload = response.buffers
            header = bytes(header)
            tail = [header[16:], *payload]
            if bytelen(tail) < LARGE_ANSWER:
                tail = [b"".join(tail)]
            wire = (header[:12], tail, len(header) + bytelen(payload))
            entry.read_cache[key] = cached = (state, response, wire)
        return cached

    async def _on_write(self, command):
        notify = type(command) is WriteNotifyRequest
        entry, status, message = await self._write(
            command.sid, command.data, command.data_type, command.metadata,
            command.refusal)
        if not notify:
            if status is not None:
                self._error(command, status, message)
        elif entry is None:
            self._error(command, status, message)
        else:
            # An unknown requested type cannot be echoed: answer in the native one.
            answer_type = (entry.data.data_type if status == CAStatus.ECA_BADTYPE
                           else None)
            self._send(entry.channel.write(command.ioid, data_type=answer_type,
                                           status=status or CAStatus.ECA_NORMAL))

    async def _write(self, sid, data, data_type, metadata, refusal=None):
        """Write a client's decoded values to channel `sid`, unless refused
        (`refusal`: the request's own, a payload that did not decode).
        Returns ``(entry, status, message)``: status and message are None
        when written, else the refusal to answer."""
        entry = self._entry(sid)
        if entry is None:
            return None, CAStatus.ECA_BADCHID, f"sid {sid} unknown"
        if not entry.allowed & _WRITE:
            return (entry, CAStatus.ECA_NOWTACCESS,
                    f"{entry.channel.name!r} is not writable by this client")
        if refusal is not None:
            return (entry, *refusal)
        trap = begin_trapwrite(entry.data, entry.channel.name, self.client_hostname,
                               self.client_username, data)
        status = message = None
        try:
            await entry.data.write_from_dbr(data, data_type, metadata)
        except Exception as exc:   # conversion too: rsrv says PUTFAIL for any
            status, message = CAStatus.ECA_PUTFAIL, str(exc)
            circuit_log.info("%s: write to %r refused: %s", self.address,
                             entry.channel.name, exc)
        if trap is not None:
            trap.finish(ok=status is None)
        return entry, status, message

    async def _on_taken_write(self, header, data_type, data, metadata):
        """A WriteRequest the write lane took (`header`: its header fields),
        done as _on_write does it; an error echoes the request's header."""
        entry, status, message = await self._write(header[4], data, data_type, metadata)
        if status is not None:
            self._error(MessageHeader._make(header), status, message,
                        entry.channel.cid if entry is not None else None)

    async def _on_event_add(self, command):
        entry, data_type = self._check_request(command, _READ,
                                               CAStatus.ECA_NORDACCESS)
        if entry is None:
            return
        if not command.mask & _ANY_EVENT:
            self._error(command, CAStatus.ECA_BADMASK,
                        f"event mask {command.mask:#x} selects no events")
            return
        count = command.data_count or entry.data.max_length
        if self._too_large(command, entry, data_type, count):
            return
        spec = SubscriptionSpec(db_entry=entry.data, data_type=data_type,
                                mask=command.mask & _ANY_EVENT,
                                channel_filter=entry.channel_filter,
                                data_count=command.data_count)
        sub = Subscription(command.subscriptionid, entry, spec)
        entry.subs[sub.subscriptionid] = sub
        self._subs[sub.subscriptionid] = sub
        try:
            await entry.data.subscribe(self.event_queue, spec, sub)
        except Exception:
            await self._drop_subscription(sub)
            raise

    async def _on_event_cancel(self, command):
        sub = self._subs.get(command.subscriptionid)
        if sub is not None:
            await self._drop_subscription(sub)
        channel = self.circuit.channel_by_sid(command.sid)
        self._send(channel.unsubscribe(command.subscriptionid))

    _HANDLERS = {
        VersionRequest: _on_version,
        HostNameRequest: _on_names,
        ClientNameRequest: _on_names,
        EchoRequest: _on_echo,
        EventsOffRequest: _on_events_off,
        EventsOnRequest: _on_events_on,
        CreateChanRequest: _on_create_chan,
        ClearChannelRequest: _on_clear_channel,
        ReadNotifyRequest: _on_read,
        ReadRequest: _on_read,
        WriteRequest: _on_write,
        WriteNotifyRequest: _on_write,
        EventAddRequest: _on_event_add,
        EventCancelRequest: _on_event_cancel,
    }
    #: Command ID -> fast lane (circuit.recv stops before these commands).
    _LANES = {
        CreateChanRequest.ID: _lane_create,
        READ_NOTIFY: _lane_read,
        ClearChannelRequest.ID: _lane_clear,
        WRITE: _lane_write,
    }

"""Virtual circuits (one TCP connection) and the channels that live on them.

Invariants:
- ``send`` and ``recv`` are the only ways state changes; both run every
  command through the same ``_process(sender, command)``: the circuit and
  channel tables of _state.py first, then one bookkeeping handler picked
  from ``_HANDLERS`` by command class.  Handlers check everything before
  they change anything, so a refused command leaves the circuit untouched.
- A refused command raises LocalProtocolError when we were sending it and
  RemoteProtocolError when the peer sent it.  Either way the circuit stays
  usable: a received command's bytes are consumed before it is checked, so
  the next ``recv()`` continues with the command after it.
- Ids handed out by ``new_*`` are unique among the live ones and wrap at
  2**32.  No I/O, no clocks, no threads.
- A server's channels opened by the create lane (_fastlane) are kept as
  plain records until something names them: a 10,000-channel connect would
  otherwise make 10,000 ServerChannels nobody may ever use.  ``channels``,
  ``channels_sid`` and every lookup make the ServerChannel first, exactly
  as the general path would have left it, so nothing outside can tell.
"""
import os

from . import _dbr
from ._buffer import ReceiveBuffer
from ._commands import (
    AccessRightsResponse, ClearChannelRequest, ClearChannelResponse,
    ClientNameRequest, CreateChanRequest, CreateChanResponse,
    CreateChFailResponse, EchoRequest, EchoResponse, ErrorResponse,
    EventAddRequest, EventAddResponse, EventCancelRequest, EventCancelResponse,
    EventsOffRequest, EventsOnRequest, HostNameRequest, ReadNotifyRequest,
    ReadNotifyResponse, ReadRequest, ReadResponse, ServerDisconnResponse,
    VersionRequest, VersionResponse, WriteNotifyRequest, WriteNotifyResponse,
    WriteRequest,
)
from ._constants import (CLIENT, DEFAULT_PROTOCOL_VERSION, MAX_ID, NEED_DATA,
                         SERVER)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._state import (CHANNEL_TRANSITIONS, CONNECTED, ChannelState,
                     CircuitState, StateRefused)
from ._status import CAStatus

__all__ = ("VirtualCircuit", "ClientChannel", "ServerChannel",
           "MAX_PRIORITY")

MAX_PRIORITY = 99                  # CA_PROTO_PRIORITY_MAX
_ID_SPACE = MAX_ID + 1


def _after(state, *commands):
    """The channel state after `commands` from `state` (per the tables), or None."""
    for command in commands:
        state = CHANNEL_TRANSITIONS.get(state, {}).get(command)
        if state is None:
            return None
    return state


#: A server channel's state once the client's CreateChanRequest is in...
REQUESTED = _after(ChannelState().state, CreateChanRequest)
#: ... and once the server has sent AccessRightsResponse + CreateChanResponse.
OPENED = _after(REQUESTED, AccessRightsResponse, CreateChanResponse)
_OTHER = {CLIENT: SERVER, SERVER: CLIENT}
# Requests whose answer is matched by ioid, and the answer's class.
_IOID_ANSWERS = {ReadRequest: ReadResponse,
                 ReadNotifyRequest: ReadNotifyResponse,
                 WriteNotifyRequest: WriteNotifyResponse}
_IOID_REQUESTS = {answer: request for request, answer in _IOID_ANSWERS.items()}
_IOID_REQUEST_IDS = {cls.ID: cls for cls in _IOID_ANSWERS}


class VirtualCircuit:
    """One CA TCP connection between a client and a server, sans I/O.

    Parameters
    ----------
    our_role : CLIENT or SERVER
    address : (host, port) of the peer
    priority : int 0..99 for a client; a server passes None and learns it
        from the client's VersionRequest.
    protocol_version : our CA minor version (13 for CA 4.13).
    max_payload_size : largest payload accepted from the peer (see
        _buffer.payload_limit and EPICS_CA_MAX_ARRAY_BYTES).

    Unknown ids (a response for an ioid or subscription we never issued, a
    request naming a sid we never assigned) are RemoteProtocolError on both
    sides.  A client can be strict because a server answers a circuit's
    requests in order, so no honest race produces them; libca ignores them
    silently, which hides server bugs.  A server will meet them honestly
    when a client's request crosses the server's own ServerDisconnResponse;
    it should do what rsrv does -- catch the error, answer with an
    ErrorResponse (ECA_BADCHID) and call ``recv()`` again to go on.
    The exception carries ``.command`` (the refused command) and
    ``.commands`` (the ones processed before it in that call).
    """

    def __init__(self, our_role, address, priority,
                 protocol_version=DEFAULT_PROTOCOL_VERSION, *,
                 max_payload_size=None):
        if our_role not in (CLIENT, SERVER):
            raise LocalProtocolError(
                f"our_role must be CLIENT or SERVER, not {our_role!r}")
        if our_role is CLIENT:
            _check_priority(priority, LocalProtocolError)
        elif priority is not None:
            _check_priority(priority, LocalProtocolError)
        self.our_role = our_role
        self.their_role = _OTHER[our_role]
        self.address = address
        self.priority = priority
        self.protocol_version = protocol_version
        self.their_protocol_version = None
        self.host_name = None
        self.client_name = None
        self.events_on = True
        self.states = CircuitState()
        self._channels = {}         # cid -> channel
        self._channels_sid = {}     # sid -> channel
        # Server: sid -> (cid, name, native type, native count, rights,
        # served) of channels the create lane (_fastlane) opened and
        # answered but did not make (see _make), and cid -> sid.
        self._unmade = {}
        self._unmade_cids = {}
        self.event_add_commands = {}  # subscriptionid -> EventAddRequest
        self._ioids = {}            # ioid -> pending request
        # sid -> ioids / subscriptionids on that channel, so closing one of
        # 10,000 channels does not scan every pending request (it did: a
        # client clearing 10,000 monitored channels stalled a server ~7 s).
        self._ioids_of = {}
        self._subs_of = {}
        self._cancelling = set()    # subscriptionids with EventCancel sent
        self._echoes_pending = 0
        self._counters = {"cid": 0, "ioid": 0, "subscriptionid": 0}
        self._buffer = ReceiveBuffer(self.their_role, max_payload_size)

    def __repr__(self):
        return (f"<VirtualCircuit {self.our_role} address={self.address} "
                f"priority={self.priority} {self.states!r}>")

    @property
    def channels(self):
        """cid -> channel, every open channel."""
        if self._unmade:
            self._make_all()
        return self._channels

    @property
    def channels_sid(self):
        """sid -> channel, every channel the server has given a sid."""
        if self._unmade:
            self._make_all()
        return self._channels_sid

    @property
    def pending_bytes(self):
        """Bytes received but not yet taken as commands (a partial command,
        or what ``recv(stop_before=...)`` left)."""
        return len(self._buffer)

    def channel_count(self):
        """How many channels have a sid (without making the unmade ones)."""
        return len(self._channels_sid) + len(self._unmade)

    def channel_by_cid(self, cid):
        """The channel with this cid, or None."""
        channel = self._channels.get(cid)
        if channel is None and cid in self._unmade_cids:
            channel = self._make(self._unmade_cids[cid])
        return channel

    def channel_by_sid(self, sid):
        """The channel with this sid, or None."""
        channel = self._channels_sid.get(sid)
        if channel is None and sid in self._unmade:
            channel = self._make(sid)
        return channel

    def _make(self, sid):
        cid, name, data_type, data_count, access_rights, served = self._unmade.pop(sid)
        del self._unmade_cids[cid]
        channel = ServerChannel(name, self, cid)
        channel.served = served
        channel.states.state = OPENED
        channel.access_rights = access_rights
        channel.sid = sid
        channel.native_data_type = data_type
        channel.native_data_count = data_count
        self._channels_sid[sid] = channel
        return channel

    def _make_all(self):
        for sid in list(self._unmade):
            self._make(sid)

    def cid_in_use(self, cid):
        return cid in self._channels or cid in self._unmade_cids

    @property
    def key(self):
        """(address, priority): what identifies a circuit in CA."""
        return (self.address, self.priority)

    # -- the two entry points --------------------------------------------

    def send(self, *commands):
        """Validate `commands` (in order) and return the buffers to write.

        A refused command raises LocalProtocolError; commands before it were
        accepted and their buffers are on the exception as ``.buffers``.
        """
        buffers = []
        for command in commands:
            try:
                self._process(self.our_role, command)
            except LocalProtocolError as exc:
                exc.buffers = buffers
                raise
            buffers.extend(command.buffers)
        return buffers

    def feed(self, *buffers):
        """Take bytes from the peer without parsing them yet (``recv()``
        with no arguments, or a fast lane, then takes the commands)."""
        for data in buffers:
            self._buffer.feed(data)

    def next_command_id(self):
        """The command ID of the next pending command, complete or not; None
        when fewer than two bytes are pending or a large payload is arriving."""
        pending = self._buffer.pending_small()
        if pending is None or pending[2] - pending[1] < 2:
            return None
        data, start, _end = pending
        return data[start] << 8 | data[start + 1]

    def recv(self, *buffers, stop_before=None):
        """Take bytes from the peer; return ``(commands, num_bytes_needed)``.

        Every command is parsed, validated and processed before it is
        returned.  ``num_bytes_needed`` is how many more bytes would complete
        the next command (0 means nothing is pending).  Call with no
        arguments to continue after a RemoteProtocolError.  `stop_before`
        (a command ID or a collection of them) leaves the commands from the
        next one of those kinds on in the buffer, for a caller with a faster
        way to take them; at least one command is always taken.
        """
        if isinstance(stop_before, int):
            stop_before = (stop_before,)
        for data in buffers:
            self._buffer.feed(data)
        commands = []
        while True:
            command = None
            if stop_before is not None and commands:
                pending = self._buffer.pending_small()
                if (pending is not None and pending[2] - pending[1] >= 2
                        and pending[0][pending[1] + 1] in stop_before
                        and not pending[0][pending[1]]):
                    break
            try:
                command = self._buffer.next_command()
                if command is NEED_DATA:
                    break
                self._process(self.their_role, command)
            except RemoteProtocolError as exc:
                # command is None when the bytes themselves were bad: then
                # the stream is out of sync for good (see _buffer.py).
                exc.command, exc.commands = command, commands
                raise
            command._processed_by = self     # see process_command
            commands.append(command)
        needed = self._buffer.bytes_needed if len(self._buffer) else 0
        return commands, needed

    def process_command(self, command):
        """Process `command` as sent by the peer (caproto compatibility).

        Commands returned by ``recv`` were already processed; for them this
        is a no-op.
        """
        if getattr(command, "_processed_by", None) is self:
            return
        self._process(self.their_role, command)

    def disconnect(self):
        """The connection is gone: close every channel, forget every request."""
        self.states.disconnect()
        for channel in list(self._channels.values()):
            channel.states.disconnect()
        self._channels.clear()
        self._channels_sid.clear()
        self._unmade.clear()           # no one holds them: nothing to close
        self._unmade_cids.clear()
        self.event_add_commands.clear()
        self._cancelling.clear()
        self._ioids.clear()
        self._ioids_of.clear()
        self._subs_of.clear()

    # -- ids -------------------------------------------------------------

    def new_channel_id(self):
        """A fresh cid (client) or sid (server) unused on this circuit."""
        if self.our_role is CLIENT:
            return self._next_id("cid", self._channels)
        return self._next_id("cid", self._channels_sid, self._unmade)

    def new_subscriptionid(self):
        return self._next_id("subscriptionid", self.event_add_commands)

    def new_ioid(self):
        return self._next_id("ioid", self._ioids)

    def _next_id(self, name, live, also=()):
        # At most len(live) + len(also) + 1 candidates: one of them must be
        # free.  The first almost always is, so no range() is made for it (a
        # connect flood asks for thousands).
        counters, tried = self._counters, 0
        while True:
            candidate = counters[name]
            counters[name] = (candidate + 1) % _ID_SPACE
            if candidate not in live and candidate not in also:
                return candidate
            tried += 1
            if tried > len(live) + len(also):
                raise LocalProtocolError(f"every {name} is in use")   # pragma: no cover

    def pending_request(self, ioid):
        """The ReadRequest/ReadNotifyRequest/WriteNotifyRequest with this ioid."""
        return self._ioids.get(ioid)

    # -- processing ------------------------------------------------------

    def _process(self, sender, command):
        error = LocalProtocolError if sender is self.our_role else RemoteProtocolError
        try:
            next_state = self.states.check(sender, type(command))
            handler = self._HANDLERS.get(type(command))
            if handler is not None:
                handler(self, sender, command)
        except StateRefused as exc:
            raise error(f"{self._describe()}: {exc} ({command!r})") from None
        self.states.advance(sender, next_state)

    def _describe(self):
        who = "client" if self.our_role is CLIENT else "server"
        return f"{who} circuit to {self.address}"

    def _channel_by_cid(self, cid, command):
        channel = self.channel_by_cid(cid)
        if channel is None:
            raise StateRefused(f"{type(command).__name__} names cid={cid}, "
                               "which is not an open channel on this circuit")
        return channel

    def _channel_by_sid(self, sid, command):
        channel = self.channel_by_sid(sid)
        if channel is None:
            raise StateRefused(f"{type(command).__name__} names sid={sid}, "
                               "which is not a connected channel on this circuit")
        return channel

    def _close(self, channel, next_state):
        """Apply a closing transition and drop everything tied to the channel."""
        channel.states.advance(next_state)
        self._channels.pop(channel.cid, None)
        if channel.sid is not None and self._channels_sid.get(channel.sid) is channel:
            del self._channels_sid[channel.sid]
        for ioid in self._ioids_of.pop(channel.sid, ()):
            del self._ioids[ioid]
        for subid in self._subs_of.pop(channel.sid, ()):
            del self.event_add_commands[subid]
            self._cancelling.discard(subid)

    # pending requests and subscriptions, indexed by sid as well

    def _add_ioid(self, request):
        self._ioids[request.ioid] = request
        self._ioids_of.setdefault(request.sid, set()).add(request.ioid)

    def _pop_ioid(self, ioid):
        request = self._ioids.pop(ioid)
        _discard(self._ioids_of, request.sid, ioid)
        return request

    def _add_subscription(self, request):
        self.event_add_commands[request.subscriptionid] = request
        self._subs_of.setdefault(request.sid, set()).add(request.subscriptionid)

    def _pop_subscription(self, subid):
        request = self.event_add_commands.pop(subid)
        self._cancelling.discard(subid)
        _discard(self._subs_of, request.sid, subid)
        return request

    # circuit-level handlers

    def _on_version_request(self, sender, command):
        _check_priority(command.priority, StateRefused)
        if self.our_role is CLIENT and command.priority != self.priority:
            raise StateRefused(f"VersionRequest priority {command.priority} "
                               f"differs from the circuit's {self.priority}")
        self.priority = command.priority
        if sender is not self.our_role:
            self.their_protocol_version = command.version

    def _on_version_response(self, sender, command):
        if sender is not self.our_role:
            self.their_protocol_version = command.version

    def _on_echo_request(self, sender, command):
        self._echoes_pending += 1

    def _on_echo_response(self, sender, command):
        if not self._echoes_pending:
            raise StateRefused("EchoResponse without an EchoRequest")
        self._echoes_pending -= 1

    def _on_host_name(self, sender, command):
        self.host_name = command.name

    def _on_client_name(self, sender, command):
        self.client_name = command.name

    def _on_events_off(self, sender, command):
        self.events_on = False

    def _on_events_on(self, sender, command):
        self.events_on = True

    # channel creation and teardown

    def _on_create_chan_request(self, sender, command):
        if self.our_role is SERVER:
            channel = self.channel_by_cid(command.cid)
            if channel is not None:
                raise StateRefused(f"CreateChanRequest reuses cid={command.cid}"
                                   f" of the open channel {channel.name!r}")
            self._new_server_channel(command.name, command.cid)
            return
        else:
            channel = self._channels.get(command.cid)
            if channel is None:
                raise StateRefused(
                    f"CreateChanRequest for cid={command.cid}: make a "
                    "ClientChannel first (it reserves the cid)")
            if channel.name != command.name:
                raise StateRefused(
                    f"CreateChanRequest names {command.name!r} but cid="
                    f"{command.cid} belongs to {channel.name!r}")
            next_state = channel.states.check(CreateChanRequest)
        channel.states.advance(next_state)

    def _new_server_channel(self, name, cid):
        """The ServerChannel a client's CreateChanRequest opens (cid unused)."""
        channel = ServerChannel(name, self, cid)
        # ServerChannel registered itself; undo if the table refuses.
        try:
            channel.states.advance(channel.states.check(CreateChanRequest))
        except StateRefused:
            del self._channels[cid]
            raise
        return channel

    def _on_create_chan_response(self, sender, command):
        channel = self._channel_by_cid(command.cid, command)
        next_state = channel.states.check(CreateChanResponse)
        other = self.channel_by_sid(command.sid)
        if other is not None:
            raise StateRefused(f"CreateChanResponse gives sid={command.sid}, "
                               f"already used by channel {other.name!r}")
        channel.sid = command.sid
        channel.native_data_type = command.data_type
        channel.native_data_count = command.data_count
        self._channels_sid[command.sid] = channel
        channel.states.advance(next_state)

    def _on_create_fail(self, sender, command):
        channel = self._channel_by_cid(command.cid, command)
        self._close(channel, channel.states.check(CreateChFailResponse))

    def _on_access_rights(self, sender, command):
        channel = self._channel_by_cid(command.cid, command)
        channel.states.advance(channel.states.check(AccessRightsResponse))
        channel.access_rights = command.access_rights

    def _on_server_disconn(self, sender, command):
        channel = self._channel_by_cid(command.cid, command)
        self._close(channel, channel.states.check(ServerDisconnResponse))

    def _on_clear_request(self, sender, command):
        channel = self._channel_by_sid(command.sid, command)
        if channel.cid != command.cid:
            raise StateRefused(f"ClearChannelRequest pairs sid={command.sid} "
                               f"with cid={command.cid}; the channel's cid is "
                               f"{channel.cid}")
        channel.states.advance(channel.states.check(ClearChannelRequest))

    def _on_clear_response(self, sender, command):
        channel = self._channel_by_cid(command.cid, command)
        if channel.sid != command.sid:
            raise StateRefused(f"ClearChannelResponse pairs cid={command.cid} "
                               f"with sid={command.sid}; the channel's sid is "
                               f"{channel.sid}")
        self._close(channel, channel.states.check(ClearChannelResponse))

    # requests and their answers

    def _on_ioid_request(self, sender, command):
        channel = self._channel_by_sid(command.sid, command)
        next_state = channel.states.check(type(command))
        if self.our_role is CLIENT:
            _check_access(channel, command)
        if command.ioid in self._ioids:
            raise StateRefused(f"ioid={command.ioid} is already pending "
                               f"({self._ioids[command.ioid]!r})")
        self._add_ioid(command)
        channel.states.advance(next_state)

    def _on_write_request(self, sender, command):
        channel = self._channel_by_sid(command.sid, command)
        next_state = channel.states.check(WriteRequest)
        if self.our_role is CLIENT:
            _check_access(channel, command)
        channel.states.advance(next_state)

    def _on_ioid_answer(self, sender, command):
        request = self._ioids.get(command.ioid)
        expected = _IOID_REQUESTS[type(command)]
        if not isinstance(request, expected):
            raise StateRefused(f"{type(command).__name__} for ioid="
                               f"{command.ioid}, but no {expected.__name__} "
                               "with that ioid is pending")
        channel = self._channel_by_sid(request.sid, command)
        channel.states.advance(channel.states.check(type(command)))
        self._pop_ioid(command.ioid)

    def _on_event_add_request(self, sender, command):
        channel = self._channel_by_sid(command.sid, command)
        next_state = channel.states.check(EventAddRequest)
        if command.subscriptionid in self.event_add_commands:
            raise StateRefused(
                f"subscriptionid={command.subscriptionid} is already in use")
        if self.our_role is CLIENT:
            _check_access(channel, command)
        self._add_subscription(command)
        channel.states.advance(next_state)

    def _subscription(self, command):
        request = self.event_add_commands.get(command.subscriptionid)
        if request is None:
            raise StateRefused(f"{type(command).__name__} for subscriptionid="
                               f"{command.subscriptionid}, which is not active")
        return request, self._channel_by_sid(request.sid, command)

    def _on_event_add_response(self, sender, command):
        _request, channel = self._subscription(command)
        channel.states.advance(channel.states.check(EventAddResponse))

    def _on_event_cancel_request(self, sender, command):
        request, channel = self._subscription(command)
        next_state = channel.states.check(EventCancelRequest)
        if command.sid != request.sid:
            raise StateRefused(f"EventCancelRequest for subscriptionid="
                               f"{command.subscriptionid} names sid={command.sid}"
                               f"; the subscription is on sid={request.sid}")
        if command.subscriptionid in self._cancelling:
            raise StateRefused(f"subscriptionid={command.subscriptionid} is "
                               "already being cancelled")
        self._cancelling.add(command.subscriptionid)
        channel.states.advance(next_state)

    def _on_event_cancel_response(self, sender, command):
        _request, channel = self._subscription(command)
        channel.states.advance(channel.states.check(EventCancelResponse))
        self._pop_subscription(command.subscriptionid)

    def _on_error_response(self, sender, command):
        """Route an ErrorResponse: it ends the request it names.

        Tolerant by design: the cid may name a channel that closed while
        the refused request was in flight.
        """
        original = command.original_request
        request_cls = _IOID_REQUEST_IDS.get(original.command)
        if request_cls is not None:
            pending = self._ioids.get(original.parameter2)
            if isinstance(pending, request_cls):
                self._pop_ioid(original.parameter2)
        elif original.command == EventAddRequest.ID:
            subid = original.parameter2
            request = self.event_add_commands.get(subid)
            if request is not None and request.sid == original.parameter1:
                self._pop_subscription(subid)
        channel = self.channel_by_cid(command.cid)
        if channel is not None:
            channel.last_error = command
            try:
                channel.states.advance(channel.states.check(ErrorResponse))
            except StateRefused:     # a closing channel: nothing to advance
                pass

    _HANDLERS = {
        VersionRequest: _on_version_request,
        VersionResponse: _on_version_response,
        EchoRequest: _on_echo_request,
        EchoResponse: _on_echo_response,
        HostNameRequest: _on_host_name,
        ClientNameRequest: _on_client_name,
        EventsOffRequest: _on_events_off,
        EventsOnRequest: _on_events_on,
        CreateChanRequest: _on_create_chan_request,
        CreateChanResponse: _on_create_chan_response,
        CreateChFailResponse: _on_create_fail,
        AccessRightsResponse: _on_access_rights,
        ServerDisconnResponse: _on_server_disconn,
        ClearChannelRequest: _on_clear_request,
        ClearChannelResponse: _on_clear_response,
        ReadRequest: _on_ioid_request,
        ReadNotifyRequest: _on_ioid_request,
        WriteNotifyRequest: _on_ioid_request,
        WriteRequest: _on_write_request,
        ReadResponse: _on_ioid_answer,
        ReadNotifyResponse: _on_ioid_answer,
        WriteNotifyResponse: _on_ioid_answer,
        EventAddRequest: _on_event_add_request,
        EventAddResponse: _on_event_add_response,
        EventCancelRequest: _on_event_cancel_request,
        EventCancelResponse: _on_event_cancel_response,
        ErrorResponse: _on_error_response,
    }


def _discard(index, sid, item):
    """Remove `item` from index[sid], and the sid once it has nothing left."""
    items = index.get(sid)
    if items is not None:
        items.discard(item)
        if not items:
            del index[sid]


def _check_priority(priority, error):
    if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise error(f"circuit priority must be an int 0..{MAX_PRIORITY}, "
                    f"not {priority!r}")


def _check_access(channel, command):
    """Refuse, as libca does, a request the access rights already forbid."""
    rights = channel.access_rights
    if rights is None:          # no AccessRightsResponse yet (pre-4.1 server)
        return
    needs_write = isinstance(command, (WriteRequest, WriteNotifyRequest))
    bit = _dbr.AccessRights.WRITE if needs_write else _dbr.AccessRights.READ
    if not int(rights) & int(bit):
        raise StateRefused(f"channel {channel.name!r} has access rights "
                           f"{rights!r}; {type(command).__name__} needs {bit!r}")


def _element_count(data, data_type):
    """How many elements `data` holds, for a write's default data_count."""
    if isinstance(data, str):
        return 1
    if isinstance(data, (bytes, bytearray, memoryview)):
        is_char = _dbr.native_type(data_type) == _dbr.ChannelType.CHAR
        return len(data) if is_char else 1
    try:
        return len(data)
    except TypeError:
        return 1


class _BaseChannel:
    """State shared by both sides' view of one channel."""

    def __init__(self, name, circuit, cid=None):
        if cid is None:
            if circuit.our_role is not CLIENT:
                raise LocalProtocolError("a server channel needs the client's cid")
            cid = circuit.new_channel_id()
        elif circuit.cid_in_use(cid):
            raise LocalProtocolError(
                f"cid={cid} is already used by {circuit.channels[cid].name!r}")
        self.name = name
        self.circuit = circuit
        self.cid = cid
        self.sid = None
        self.native_data_type = None
        self.native_data_count = None
        self.access_rights = None
        self.last_error = None
        self.states = ChannelState()
        circuit._channels[cid] = self

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r} cid={self.cid} "
                f"sid={self.sid} {self.states!r}>")

    @property
    def protocol_version(self):
        return self.circuit.protocol_version

    @property
    def subscriptions(self):
        """subscriptionid -> EventAddRequest for this channel's subscriptions."""
        if self.sid is None:
            return {}
        requests = self.circuit.event_add_commands
        return {subid: requests[subid]
                for subid in sorted(self.circuit._subs_of.get(self.sid, ()))}

    def _require(self, role_state, verb):
        if self.states[self.circuit.our_role] is not role_state:
            raise LocalProtocolError(
                f"cannot {verb} channel {self.name!r}: it is "
                f"{self.states[self.circuit.our_role]}, not {role_state}")


class ClientChannel(_BaseChannel):
    """A client's handle on one PV; every verb returns a command to send."""

    def __init__(self, name, circuit, cid=None, string_encoding="latin-1"):
        if circuit.our_role is not CLIENT:
            raise LocalProtocolError("ClientChannel needs a CLIENT circuit")
        super().__init__(name, circuit, cid)
        self.string_encoding = string_encoding

    def version(self):
        return VersionRequest(priority=self.circuit.priority,
                              version=self.protocol_version)

    def host_name(self, host_name=None):
        if host_name is None:
            host_name = _local_host_name()
        return HostNameRequest(host_name)

    def client_name(self, client_name=None):
        if client_name is None:
            client_name = _local_user_name()
        return ClientNameRequest(client_name)

    def create(self):
        return CreateChanRequest(self.name, self.cid, self.protocol_version)

    def clear(self):
        self._require(CONNECTED, "clear")
        return ClearChannelRequest(self.sid, self.cid)

    def read(self, data_type=None, data_count=None, notify=True, ioid=None):
        """ReadNotifyRequest (or the old ReadRequest when notify=False).

        Defaults: the channel's native type and native count.
        """
        self._require(CONNECTED, "read")
        data_type = self.native_data_type if data_type is None else data_type
        if data_count is None:
            data_count = self.native_data_count
        ioid = self.circuit.new_ioid() if ioid is None else ioid
        cls = ReadNotifyRequest if notify else ReadRequest
        return cls(data_type, data_count, self.sid, ioid)

    def write(self, data, data_type=None, data_count=None, metadata=None,
              notify=False, ioid=None):
        """WriteRequest, or WriteNotifyRequest when notify=True.

        Defaults: the native type, and as many elements as `data` holds.
        """
        self._require(CONNECTED, "write")
        data_type = self.native_data_type if data_type is None else data_type
        if data_count is None:
            data_count = _element_count(data, data_type)
        ioid = self.circuit.new_ioid() if ioid is None else ioid
        cls = WriteNotifyRequest if notify else WriteRequest
        return cls(data, data_type, data_count, self.sid, ioid,
                   metadata=metadata)

    def subscribe(self, data_type=None, data_count=None, subscriptionid=None,
                  low=0.0, high=0.0, to=0.0, mask=None):
        """EventAddRequest; mask defaults to DBE_VALUE | DBE_ALARM (camonitor)."""
        self._require(CONNECTED, "subscribe to")
        data_type = self.native_data_type if data_type is None else data_type
        if data_count is None:
            data_count = self.native_data_count
        if subscriptionid is None:
            subscriptionid = self.circuit.new_subscriptionid()
        if mask is None:
            mask = (_dbr.SubscriptionType.DBE_VALUE
                    | _dbr.SubscriptionType.DBE_ALARM)
        return EventAddRequest(data_type, data_count, self.sid, subscriptionid,
                               low, high, to, int(mask))

    def unsubscribe(self, subscriptionid):
        request = self.circuit.event_add_commands.get(subscriptionid)
        if request is None or request.sid != self.sid:
            raise LocalProtocolError(
                f"channel {self.name!r} has no subscription {subscriptionid}")
        return EventCancelRequest(request.data_type, request.data_count,
                                  self.sid, subscriptionid)


class ServerChannel(_BaseChannel):
    """A server's view of a channel a client created.

    The circuit makes one when it receives a CreateChanRequest.  To accept
    it, send what rsrv sends: ``access_rights_response(rights)`` and then
    ``create(native_data_type, native_data_count, sid)``.
    """

    #: What the server attached when it accepted the channel in the create
    #: lane (_fastlane.serve_create_requests); the circuit only carries it.
    served = None

    def version(self):
        return VersionResponse(self.protocol_version)

    def create(self, native_data_type, native_data_count, sid):
        return CreateChanResponse(native_data_type, native_data_count,
                                  self.cid, sid)

    def create_fail(self):
        return CreateChFailResponse(self.cid)

    def access_rights_response(self, access_rights):
        return AccessRightsResponse(self.cid, access_rights)

    def _answer_type(self, request, data_type):
        """An answer's type defaults to what the request asked for."""
        if data_type is not None:
            return data_type
        if request is not None:
            return request.data_type
        return self.native_data_type

    def read(self, data, ioid, data_type=None, data_count=None,
             status=CAStatus.ECA_NORMAL, *, metadata=None, notify=True):
        """ReadNotifyResponse (ReadResponse if notify=False).

        data_count defaults to the number of elements in `data`.
        """
        data_type = self._answer_type(self.circuit.pending_request(ioid),
                                      data_type)
        if notify:
            return ReadNotifyResponse(data, metadata, data_type, data_count,
                                      status, ioid)
        return ReadResponse(data, metadata, data_type, data_count, self.sid,
                            ioid)

    def write(self, ioid, data_type=None, data_count=None,
              status=CAStatus.ECA_NORMAL):
        request = self.circuit.pending_request(ioid)
        data_type = self._answer_type(request, data_type)
        if data_count is None:
            data_count = (request.data_count if request is not None
                          else self.native_data_count)
        return WriteNotifyResponse(data_type, data_count, status, ioid)

    def subscribe(self, data, subscriptionid, data_type=None, data_count=None,
                  status_code=CAStatus.ECA_NORMAL, metadata=None):
        data_type = self._answer_type(
            self.circuit.event_add_commands.get(subscriptionid), data_type)
        return EventAddResponse(data, metadata, data_type, data_count,
                                status_code, subscriptionid)

    def unsubscribe(self, subscriptionid, data_type=None):
        data_type = self._answer_type(
            self.circuit.event_add_commands.get(subscriptionid), data_type)
        return EventCancelResponse(data_type, self.sid, subscriptionid, 0)

    def clear(self):
        return ClearChannelResponse(self.sid, self.cid)

    def disconnect(self):
        return ServerDisconnResponse(self.cid)


def _local_host_name():
    """This machine's name, without importing socket (os.uname / env)."""
    try:
        return os.uname().nodename
    except AttributeError:                       # Windows
        return os.environ.get("COMPUTERNAME", "localhost")


def _local_user_name():
    import getpass
    try:
        return getpass.getuser()
    except Exception:                            # no passwd entry, no env
        return "unknown"

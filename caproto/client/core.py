"""The client core shared by every client face (threading, asyncio, sync).

Invariants:
- No sockets, threads, event loops or sleeps here: faces own the I/O and
  the clock.  Every entry point takes ``now`` (a monotonic time in seconds)
  when time matters and returns a list of *effects* (the classes below)
  that the face must carry out in order.  The core is not thread-safe: a
  face that calls it from several threads holds one lock around each call.
- Search, circuit and channel bookkeeping live only here.  A face never
  builds a CA command itself; it sends the buffers the core hands it.
- A channel entry (``ChannelEntry``) lives from ``add_channel`` until
  ``remove_channel``.  Its server may come and go: when a circuit is lost
  every entry on it goes back to searching, its subscriptions stay
  registered and are re-sent when it connects again.
- Every pending request fails (``RequestFailed``) or completes exactly
  once; a request the face gave up on (``forget_request``) completes never.

How a face drives it
--------------------
1. ``core = ClientCore()`` reads the EPICS_CA_* environment.  The face opens
   one UDP socket, sends ``core.repeater_registration()`` if it wants
   beacons, and then loops:
2. ``core.add_channel(name, priority, owner)`` -> ``(entry, effects)``;
   then ``core.poll(now)`` (at the latest at ``core.next_deadline()``)
   yields ``SendDatagram`` effects with batched searches, retried with
   back-off up to EPICS_CA_MAX_SEARCH_PERIOD, echoes for idle circuits, and
   name-server searches over TCP.
3. Every datagram received goes to ``core.datagram_received(data, addr,
   now)``; a search answer yields ``OpenCircuit(key)`` for a new server.
   The face connects TCP to ``key.address`` and calls
   ``core.circuit_connected(key, now)`` (or ``circuit_lost(key, now,
   reason)`` on failure).  Bytes from that socket go to
   ``core.bytes_received(key, data, now)``.
4. ``read``/``write``/``subscribe``/``unsubscribe`` return
   ``(handle, effects)``; answers come back as ``ReadDone``, ``WriteDone``,
   ``SubscriptionData`` or ``RequestFailed`` effects carrying the face's
   ``owner`` object (a Future, an Event, a callback holder: the core never
   looks at it).

Effects: ``SendDatagram(data, address)``, ``SendBuffers(key, buffers)``,
``OpenCircuit(key)``, ``CloseCircuit(key, reason)``,
``ChannelConnected(entry)``, ``ChannelDisconnected(entry, reason)``,
``AccessRightsChanged(entry, rights)``, ``ReadDone(request, command)``,
``WriteDone(request, command)``, ``RequestFailed(request, error)``,
``SubscriptionData(subscription, command)``, ``BeaconAnomaly(address)``,
``ServerError(entry, command, error)`` (an ErrorResponse that no pending
request waits for, e.g. a refused plain write: faces must report it, since
the user has nothing else to learn it from).
"""

from .._broadcaster import Broadcaster
from .._buffer import payload_limit
from .._circuit import (ClientChannel, VirtualCircuit, _local_host_name,
                        _local_user_name)
from .._commands import (
    AccessRightsResponse, ClearChannelResponse, ClientNameRequest,
    CreateChanResponse, HostNameRequest,
    CreateChFailResponse, EchoRequest, EchoResponse, ErrorResponse,
    EventAddResponse, EventCancelResponse, EventsOffRequest, EventsOnRequest,
    NotFoundResponse, ReadNotifyRequest, ReadRequest,
    ReadNotifyResponse, ReadResponse, RepeaterConfirmResponse,
    RsrvIsUpResponse, SearchResponse, ServerDisconnResponse,
    VersionRequest, WriteNotifyRequest, WriteNotifyResponse, WriteRequest,
    EventAddRequest,
)
from .._constants import CLIENT, DEFAULT_PROTOCOL_VERSION
from .._dbr import (AccessRights, ChannelType, SubscriptionType,
                    dbr_value_size, native_type)
from .._env import (get_client_address_list, get_environment_variables,
                    get_name_server_list)
from .._errors import (CaprotoError, CaprotoTimeoutError, CaprotoValueError,
                       ErrorResponseReceived, ProtocolError)
from .._state import CONNECTED
from .search import BeaconWatcher, SearchScheduler
from .effects import *      # noqa: F401,F403  (re-exported: faces use core.X)
from .effects import (
    CLOSED, CONNECTING, AccessRightsChanged, BeaconAnomaly,
    ChannelConnected, ChannelDisconnected, ChannelEntry, CircuitKey,
    CloseCircuit, DisconnectedError, OpenCircuit, ReadDone, Request,
    RequestFailed, SendBuffers, SendDatagram, ServerError, SubscriptionData,
    SubscriptionEntry, WriteDone, describe_address, resolve_data_type,
)

from . import effects as _effects

__all__ = ("ClientCore",) + _effects.__all__   # faces reach the effects as core.X

#: An echo unanswered for this long means the circuit is dead (libca: 5 s).
ECHO_TIMEOUT = 5.0
#: Repeater registration is retried with back-off up to this period.
REPEATER_RETRY_MAX = 60.0
#: Name-server circuits lost are reopened after this delay.
NAME_SERVER_RETRY = 2.0
#: Received payloads when EPICS_CA_MAX_ARRAY_BYTES is not enforced.
UNLIMITED_PAYLOAD = 2 ** 32
#: What a refused request was, by command id; the first three wait for an
#: answer under their ioid (header parameter2).
_REFUSED = {ReadNotifyRequest.ID: "read", ReadRequest.ID: "read",
            WriteNotifyRequest.ID: "write", WriteRequest.ID: "write",
            EventAddRequest.ID: "subscribe"}
_AWAITED = (ReadNotifyRequest.ID, ReadRequest.ID, WriteNotifyRequest.ID)

class _Circuit:
    """Per-circuit bookkeeping around a VirtualCircuit."""

    def __init__(self, key, max_payload):
        self.key = key
        self.circuit = VirtualCircuit(CLIENT, key.address, key.priority,
                                      max_payload_size=max_payload)
        self.open = False             # TCP connected and handshake sent
        self.waiting = []             # entries to create once open
        self.entries = {}             # cid -> ChannelEntry
        self.requests = {}            # ioid -> Request
        self.subscriptions = {}       # subscriptionid -> SubscriptionEntry
        self.last_receive = 0.0
        self.echo_sent = None         # time of the unanswered EchoRequest
        self.events_paused = False    # we sent EventsOffRequest

    @property
    def peer(self):
        return describe_address(self.key.address)


class ClientCore:
    """Search, circuits, channels, requests and subscriptions for one client.

    Parameters
    ----------
    env : mapping, optional
        Where to read EPICS_CA_* from (default ``os.environ``).
    auto_addresses : list of str, optional
        Broadcast addresses used when EPICS_CA_AUTO_ADDR_LIST is YES; by
        default every up interface's (``caproto._netifaces``).
    host_name, client_name : str, optional
        Announced on every circuit (default: this host, this user).
    """

    def __init__(self, env=None, auto_addresses=None, host_name=None,
                 client_name=None):
        import os
        raw_env = os.environ if env is None else env
        self.environment = get_environment_variables(raw_env)
        if (auto_addresses is None
                and self.environment["EPICS_CA_AUTO_ADDR_LIST"] == "YES"):
            from .._netifaces import get_broadcast_addresses
            auto_addresses = get_broadcast_addresses(include_loopback=True)
        self.search_addresses = get_client_address_list(raw_env, auto_addresses)
        self.name_servers = get_name_server_list(raw_env)
        self.conn_timeout = self.environment["EPICS_CA_CONN_TMO"]
        self.max_search_period = self.environment["EPICS_CA_MAX_SEARCH_PERIOD"]
        self.repeater_port = self.environment["EPICS_CA_REPEATER_PORT"]
        # EPICS 7 sizes buffers on demand (EPICS_CA_AUTO_ARRAY_BYTES=YES);
        # the limit applies when the user sets it or turns auto-sizing off.
        explicit = str(raw_env.get("EPICS_CA_MAX_ARRAY_BYTES", "")).strip()
        if explicit or self.environment["EPICS_CA_AUTO_ARRAY_BYTES"] == "NO":
            self.max_array_bytes = self.environment["EPICS_CA_MAX_ARRAY_BYTES"]
            self._max_payload = payload_limit(self.max_array_bytes)
        else:
            self.max_array_bytes = None
            self._max_payload = UNLIMITED_PAYLOAD
        self.host_name = host_name
        self.client_name = client_name
        self.broadcaster = Broadcaster(CLIENT)
        self.circuits = {}            # CircuitKey -> _Circuit
        self.entries = set()
        self.search = SearchScheduler(self.broadcaster, self.max_search_period)
        self.beacons = BeaconWatcher()
        self._repeater_next = None
        self._repeater_interval = 0.5
        self._name_server_retry = {}  # CircuitKey -> time to reopen
        self._found_on_open = set()   # open circuits with entries to create
        self._started_name_servers = False

    # -- channels ------------------------------------------------------

    def add_channel(self, name, priority=0, owner=None, now=0.0):
        """Start looking for `name`; returns ``(entry, effects)``.

        The search itself goes out from the next ``poll(now)``, batched
        with every other name added before it.
        """
        if not isinstance(name, str) or not name or len(name.encode()) > 4000:
            raise CaprotoValueError(f"PV name {name!r} must be a non-empty str")
        if not isinstance(priority, int) or not 0 <= priority <= 99:
            raise CaprotoValueError(f"priority {priority!r} of {name!r} must "
                                    "be an int 0..99")
        entry = ChannelEntry(name, priority, owner)
        self.entries.add(entry)
        self.search.schedule(entry, now, reset=True)
        return entry, self._start_name_servers()

    def remove_channel(self, entry):
        """Forget `entry`: clear it on its server; fail its requests."""
        effects = []
        if entry not in self.entries:
            return effects
        self.entries.discard(entry)
        self.search.stop(entry)
        for sub in entry.subscriptions:
            sub.cancelled = True
        circ = self.circuits.get(entry.circuit_key)
        if circ is not None:
            if entry in circ.waiting:
                circ.waiting.remove(entry)
            channel = entry.channel
            if channel is not None and circ.open:
                for subid, sub in list(circ.subscriptions.items()):
                    if sub.entry is entry:
                        del circ.subscriptions[subid]
                self._fail_requests(circ, effects, DisconnectedError(
                    f"{entry.name!r} was disconnected by the user"), entry)
                if channel.states[CLIENT] is CONNECTED:
                    effects.append(SendBuffers(circ.key, circ.circuit.send(
                        channel.clear())))
        entry.state = CLOSED
        entry.channel = None
        return effects

    # -- timers ----------------------------------------------------------

    def poll(self, now):
        """Everything due by `now`: searches, echoes, dead circuits, retries."""
        effects = self._start_name_servers()
        self._send_due_searches(now, effects)
        for circ in list(self.circuits.values()):
            if not circ.open:
                continue
            if circ.echo_sent is not None:
                if now - circ.echo_sent >= ECHO_TIMEOUT:
                    effects.extend(self.circuit_lost(
                        circ.key, now, f"no echo reply from {circ.peer} "
                        f"within {ECHO_TIMEOUT} s"))
                    effects.append(CloseCircuit(circ.key, "unresponsive"))
            elif now - circ.last_receive >= self.conn_timeout:
                circ.echo_sent = now
                effects.append(SendBuffers(circ.key,
                                           circ.circuit.send(EchoRequest())))
        for key, when in list(self._name_server_retry.items()):
            if now >= when:
                del self._name_server_retry[key]
                self._open_name_server(key, effects)
        if self._repeater_next is not None and now >= self._repeater_next:
            effects.append(self._register(now))
        return effects

    def next_deadline(self):
        """The time by which ``poll`` must next run (None: nothing timed)."""
        search = self.search.next_deadline()
        times = [] if search is None else [search]
        for circ in self.circuits.values():
            if circ.open:
                times.append(circ.echo_sent + ECHO_TIMEOUT
                             if circ.echo_sent is not None
                             else circ.last_receive + self.conn_timeout)
        times.extend(self._name_server_retry.values())
        if self._repeater_next is not None:
            times.append(self._repeater_next)
        return min(times) if times else None

    # -- search ----------------------------------------------------------

    def _send_due_searches(self, now, effects):
        requests = self.search.due(now)
        if not requests:
            return
        for data in self.search.datagrams(requests):
            for address in self.search_addresses:
                effects.append(SendDatagram(data, address))
        for circ in self.circuits.values():
            if circ.key.name_server and circ.open:
                effects.append(SendBuffers(circ.key, circ.circuit.send(
                    *requests)))

    def reset_search_backoff(self, now):
        """Search again now for every name not found (beacon anomaly)."""
        self.search.reset_backoff(now)

    def _found(self, cid, address, version, now, effects):
        entry = self.search.answered(cid)
        if entry is None:             # a duplicate answer, or from a 2nd server
            return
        entry.state = CONNECTING
        entry.server = address
        entry.server_protocol_version = version
        key = CircuitKey(address, entry.priority)
        entry.circuit_key = key
        circ = self.circuits.get(key)
        if circ is None:
            circ = self.circuits[key] = _Circuit(key, self._max_payload)
            effects.append(OpenCircuit(key))
        # Channels are created in one batch per circuit by _flush_found.
        circ.waiting.append(entry)
        if circ.open:
            self._found_on_open.add(key)

    def _flush_found(self, effects):
        """Create the channels found on open circuits (one send per circuit)."""
        for key in self._found_on_open:
            circ = self.circuits.get(key)
            if circ is not None and circ.open:
                waiting, circ.waiting = circ.waiting, []
                self._create_channels(circ, waiting, effects)
        self._found_on_open.clear()

    # -- UDP -------------------------------------------------------------

    def repeater_registration(self, now=0.0):
        """``SendDatagram`` registering with the repeater (for beacons)."""
        self._repeater_interval = 0.5
        return self._register(now)

    def _register(self, now):
        self._repeater_next = now + self._repeater_interval
        self._repeater_interval = min(self._repeater_interval * 2,
                                      REPEATER_RETRY_MAX)
        data = self.broadcaster.send(self.broadcaster.register("127.0.0.1"))
        return SendDatagram(data, ("127.0.0.1", self.repeater_port))

    def datagram_received(self, data, address, now):
        """Handle one UDP datagram (search answers, beacons, repeater)."""
        effects = []
        try:
            commands = self.broadcaster.recv(data, address)
        except ProtocolError:
            return effects            # not CA, or garbled: libca drops it too
        version = None
        for command in commands:
            if isinstance(command, SearchResponse):
                host = command.ip
                if host in ("255.255.255.255", "0.0.0.0"):
                    host = address[0]
                self._found(command.cid, (host, command.port),
                            version or command.version, now, effects)
            elif isinstance(command, RsrvIsUpResponse):
                self._beacon(command, address, now, effects)
            elif isinstance(command, RepeaterConfirmResponse):
                self._repeater_next = None
            elif hasattr(command, "version") and not isinstance(
                    command, NotFoundResponse):
                version = command.version
        self._flush_found(effects)
        return effects

    def _beacon(self, command, address, now, effects):
        server, anomaly = self.beacons.beacon(command, address, now)
        for circ in self.circuits.values():
            if circ.key.address == server:
                circ.last_receive = now       # a beacon proves it is alive
        if anomaly and self.search.searching:
            self.search.reset_backoff(now)
            effects.append(BeaconAnomaly(server))

    # -- circuits ----------------------------------------------------------

    def circuit_connected(self, key, now):
        """The face's TCP connect to ``key.address`` succeeded."""
        circ = self.circuits.get(key)
        effects = []
        if circ is None:
            return effects
        circ.open = True
        circ.last_receive = now
        circuit = circ.circuit
        commands = [VersionRequest(key.priority, DEFAULT_PROTOCOL_VERSION)]
        if not key.name_server:
            commands += [HostNameRequest(self.host_name or _local_host_name()),
                         ClientNameRequest(self.client_name
                                           or _local_user_name())]
        effects.append(SendBuffers(key, circuit.send(*commands)))
        if key.name_server:
            # Searches travel only in rounds (``_send_due_searches``), so a
            # name goes over this circuit once per round; the round it
            # missed while connecting is brought forward to now.
            self.search.bring_forward(now)
            self._send_due_searches(now, effects)
        waiting, circ.waiting = circ.waiting, []
        self._create_channels(circ, waiting, effects)
        return effects

    def _create_channels(self, circ, entries, effects):
        commands = []
        for entry in entries:
            if entry not in self.entries:
                continue
            channel = ClientChannel(entry.name, circ.circuit)
            entry.channel = channel
            circ.entries[channel.cid] = entry
            commands.append(channel.create())
        if commands:
            effects.append(SendBuffers(circ.key, circ.circuit.send(*commands)))

    def circuit_lost(self, key, now, reason="connection closed"):
        """The circuit's socket closed or failed; everything on it re-searches."""
        circ = self.circuits.pop(key, None)
        effects = []
        if circ is None:
            return effects
        circ.circuit.disconnect()
        why = f"circuit to {circ.peer} lost: {reason}"
        self._fail_requests(circ, effects, DisconnectedError(why))
        # A circuit that never opened is not a restart: keep the back-off.
        for entry in list(circ.entries.values()) + circ.waiting:
            self._entry_lost(entry, now, why, effects, reset=circ.open)
        if key.name_server:
            self._name_server_retry[key] = now + NAME_SERVER_RETRY
        return effects

    def _entry_lost(self, entry, now, reason, effects, reset=True):
        if entry not in self.entries:
            return
        was_connected = entry.state is CONNECTED
        entry.channel = None
        entry.circuit_key = None
        entry.access_rights = None
        for sub in entry.subscriptions:
            sub.subscriptionid = sub.key = None
        self.search.schedule(entry, now, reset=reset)
        if was_connected:
            effects.append(ChannelDisconnected(entry, reason))

    def _fail_requests(self, circ, effects, error, entry=None):
        for ioid, request in list(circ.requests.items()):
            if entry is None or request.entry is entry:
                del circ.requests[ioid]
                effects.append(RequestFailed(request, error))

    def _start_name_servers(self):
        effects = []
        if not self._started_name_servers:
            self._started_name_servers = True
            for address in self.name_servers:
                self._open_name_server(CircuitKey(address, 0, True), effects)
        return effects

    def _open_name_server(self, key, effects):
        if key not in self.circuits:
            self.circuits[key] = _Circuit(key, self._max_payload)
            effects.append(OpenCircuit(key))

    def bytes_received(self, key, data, now):
        """Bytes from circuit `key`'s socket; returns effects."""
        circ = self.circuits.get(key)
        if circ is None:
            return []
        circ.last_receive = now
        circ.echo_sent = None
        effects = []
        try:
            commands, _needed = circ.circuit.recv(data)
        except ProtocolError as exc:
            commands = getattr(exc, "commands", [])
            self._dispatch(circ, commands, now, effects)
            effects.extend(self.circuit_lost(key, now, f"protocol error: {exc}"))
            effects.append(CloseCircuit(key, str(exc)))
            return effects
        self._dispatch(circ, commands, now, effects)
        self._flush_found(effects)
        return effects

    def bytes_needed(self, key):
        """A good size for the next recv on circuit `key`."""
        circ = self.circuits.get(key)
        return 0 if circ is None else circ.circuit._buffer.bytes_needed

    def _dispatch(self, circ, commands, now, effects):
        handlers = self._RECEIVED
        for command in commands:
            handler = handlers.get(type(command))
            if handler is not None:
                handler(self, circ, command, now, effects)

    def _on_read(self, circ, command, now, effects):
        request = circ.requests.pop(command.ioid, None)
        if request is not None:
            effects.append(ReadDone(request, command))

    def _on_write(self, circ, command, now, effects):
        request = circ.requests.pop(command.ioid, None)
        if request is not None:
            effects.append(WriteDone(request, command))

    def _on_event(self, circ, command, now, effects):
        sub = circ.subscriptions.get(command.subscriptionid)
        if sub is not None and not sub.cancelled:
            effects.append(SubscriptionData(sub, command))

    def _on_event_cancel(self, circ, command, now, effects):
        circ.subscriptions.pop(command.subscriptionid, None)

    def _on_create(self, circ, command, now, effects):
        entry = circ.entries.get(command.cid)
        if entry is None or entry not in self.entries:
            return
        entry.state = CONNECTED
        entry.native_data_type = ChannelType(command.data_type)
        entry.native_data_count = command.data_count
        if entry.access_rights is None:
            entry.access_rights = entry.channel.access_rights
        effects.append(ChannelConnected(entry))
        commands = []
        for sub in entry.subscriptions:
            if not sub.cancelled:
                commands.append(self._event_add(circ, sub))
        if commands:
            effects.append(SendBuffers(circ.key, circ.circuit.send(*commands)))

    def _on_access_rights(self, circ, command, now, effects):
        entry = circ.entries.get(command.cid)
        if entry is not None:
            entry.access_rights = AccessRights(command.access_rights)
            if entry.state is CONNECTED:
                effects.append(AccessRightsChanged(entry, entry.access_rights))

    def _on_channel_gone(self, circ, command, now, effects):
        entry = circ.entries.pop(command.cid, None)
        if entry is None:
            return
        why = (f"{entry.name!r} removed by server {circ.peer}"
               if not isinstance(command, CreateChFailResponse)
               else f"server {circ.peer} refused to create {entry.name!r}")
        self._fail_requests(circ, effects, DisconnectedError(why), entry)
        for subid, sub in list(circ.subscriptions.items()):
            if sub.entry is entry:
                del circ.subscriptions[subid]
        self._entry_lost(entry, now, why, effects)

    def _on_clear(self, circ, command, now, effects):
        circ.entries.pop(command.cid, None)

    def _on_error(self, circ, command, now, effects):
        """A refused request: fail the request waiting for it, if any; else
        (a plain write, a subscription) hand the error to the face."""
        original = command.original_request
        kind = _REFUSED.get(original.command, f"command {original.command}")
        request = None
        if original.command in _AWAITED:
            request = circ.requests.get(original.parameter2)
            if request is not None and request.kind != kind:
                request = None           # an ioid of another kind: not ours
        entry = request.entry if request is not None else \
            circ.entries.get(command.cid)
        name = repr(entry.name) if entry is not None else \
            f"channel cid={command.cid}"
        status = command.status
        error = ErrorResponseReceived(
            f"{kind} of {name} refused by {circ.peer}: "
            f"{getattr(status, 'description', status)} "
            f"({getattr(status, 'name', status)}; server context "
            f"{command.error_message!r})")
        error.status = status
        if request is not None:
            del circ.requests[original.parameter2]
            effects.append(RequestFailed(request, error))
        else:
            effects.append(ServerError(entry, command, error))

    def _on_echo(self, circ, command, now, effects):
        circ.echo_sent = None

    def _on_search(self, circ, command, now, effects):
        host = command.ip
        if host in ("255.255.255.255", "0.0.0.0"):
            host = circ.key.address[0]
        self._found(command.cid, (host, command.port), command.version, now,
                    effects)

    _RECEIVED = {
        ReadNotifyResponse: _on_read, ReadResponse: _on_read,
        WriteNotifyResponse: _on_write, EventAddResponse: _on_event,
        EventCancelResponse: _on_event_cancel, CreateChanResponse: _on_create,
        AccessRightsResponse: _on_access_rights,
        ServerDisconnResponse: _on_channel_gone,
        CreateChFailResponse: _on_channel_gone,
        ClearChannelResponse: _on_clear, ErrorResponse: _on_error,
        EchoResponse: _on_echo, SearchResponse: _on_search,
    }

    # -- requests ----------------------------------------------------------

    def _connected_circuit(self, entry, action):
        if entry.state is not CONNECTED:
            raise DisconnectedError(
                f"cannot {action} {entry.name!r}: it is {entry.state} "
                f"(server {describe_address(entry.server)})")
        return self.circuits[entry.circuit_key]

    def _check_size(self, entry, data_type, data_count, action):
        # A dynamic count (0) is bounded by the server's current length, not
        # known here; the circuit's receive limit guards that case.
        if self.max_array_bytes is None or not data_count:
            return
        count = data_count
        size = dbr_value_size(native_type(data_type)) * count
        if size > self.max_array_bytes:
            raise CaprotoValueError(
                f"cannot {action} {count} element(s) of "
                f"{ChannelType(data_type).name} ({size} bytes) "
                f"{'to' if action == 'write' else 'from'} {entry.name!r} on "
                f"{describe_address(entry.server)}: larger than "
                f"EPICS_CA_MAX_ARRAY_BYTES={self.max_array_bytes} "
                "(ECA_TOLARGE); raise EPICS_CA_MAX_ARRAY_BYTES on both sides")

    def read(self, entry, owner=None, data_type=None, data_count=None,
             notify=True, form=None):
        """Read `entry`: returns ``(request, effects)``.

        data_count None or 0 asks for the current ("dynamic") count, as
        caget does; the answer arrives as ``ReadDone``.
        """
        circ = self._connected_circuit(entry, "read")
        data_type = resolve_data_type(entry.native_data_type, data_type, form)
        count = self._count(entry, data_count)
        self._check_size(entry, data_type, count, "read")
        command = entry.channel.read(data_type, count, notify=notify)
        request = Request(entry, "read", owner, circ.key, command.ioid,
                          data_type)
        buffers = circ.circuit.send(command)
        circ.requests[command.ioid] = request
        return request, [SendBuffers(circ.key, buffers)]

    def _count(self, entry, data_count):
        if data_count:
            return int(data_count)
        if (entry.server_protocol_version or 0) >= 13 or \
                (entry.channel.circuit.their_protocol_version or 0) >= 13:
            return 0
        return entry.native_data_count

    def write(self, entry, data, owner=None, data_type=None, data_count=None,
              notify=False, metadata=None):
        """Write `data`; with notify the answer arrives as ``WriteDone``.

        Returns ``(request or None, effects)``.
        """
        circ = self._connected_circuit(entry, "write to")
        if data_type is None:
            data_type = entry.native_data_type
        data_type = ChannelType(data_type)
        try:
            command = entry.channel.write(data, data_type, data_count,
                                          metadata=metadata, notify=notify)
        except (CaprotoValueError, TypeError) as exc:
            raise CaprotoValueError(
                f"cannot write {data!r} to {entry.name!r} as "
                f"{data_type.name}: {exc}") from None
        self._check_size(entry, data_type, command.data_count, "write")
        buffers = circ.circuit.send(command)
        request = None
        if notify:
            request = Request(entry, "write", owner, circ.key, command.ioid,
                              data_type)
            circ.requests[command.ioid] = request
        return request, [SendBuffers(circ.key, buffers)]

    def pause_events(self, paused):
        """Flow control: ask every server to hold (True) or resume events.

        A face whose consumers fall behind pauses; servers then keep only
        the latest value per subscription instead of flooding us.
        """
        effects = []
        for circ in self.circuits.values():
            if circ.open and not circ.key.name_server \
                    and circ.events_paused != paused:
                circ.events_paused = paused
                command = EventsOffRequest() if paused else EventsOnRequest()
                effects.append(SendBuffers(circ.key, circ.circuit.send(command)))
        return effects

    def forget_request(self, request):
        """The face stopped waiting (timeout): drop any late answer."""
        circ = self.circuits.get(request.key)
        if circ is not None and circ.requests.get(request.ioid) is request:
            del circ.requests[request.ioid]

    def subscribe(self, entry, owner=None, data_type=None, data_count=None,
                  mask=None, low=0.0, high=0.0, to=0.0, form=None):
        """Subscribe now or as soon as `entry` connects (and on every reconnect).

        Returns ``(subscription, effects)``; events arrive as
        ``SubscriptionData``.  mask defaults to DBE_VALUE | DBE_ALARM.
        """
        if mask is None:
            mask = SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM
        mask = SubscriptionType(int(mask))
        if not int(mask):
            raise CaprotoValueError(f"subscription to {entry.name!r} with an "
                                    "empty event mask would never fire")
        sub = SubscriptionEntry(entry, owner, data_type, data_count, mask,
                                low, high, to, form)
        entry.subscriptions.append(sub)
        effects = []
        if entry.state is CONNECTED:
            circ = self.circuits[entry.circuit_key]
            try:
                command = self._event_add(circ, sub)
            except CaprotoError:
                entry.subscriptions.remove(sub)
                raise
            effects.append(SendBuffers(circ.key, circ.circuit.send(command)))
        return sub, effects

    def _event_add(self, circ, sub):
        entry = sub.entry
        data_type = resolve_data_type(entry.native_data_type, sub.data_type,
                                      sub.form)
        count = self._count(entry, sub.data_count)
        self._check_size(entry, data_type, count, "subscribe to")
        command = entry.channel.subscribe(data_type, count, low=sub.low,
                                          high=sub.high, to=sub.to,
                                          mask=sub.mask)
        sub.subscriptionid, sub.key = command.subscriptionid, circ.key
        circ.subscriptions[command.subscriptionid] = sub
        return command

    def unsubscribe(self, sub):
        """Stop `sub` (also across reconnects); returns effects."""
        sub.cancelled = True
        if sub in sub.entry.subscriptions:
            sub.entry.subscriptions.remove(sub)
        circ = self.circuits.get(sub.key)
        effects = []
        if circ is not None and sub.subscriptionid in circ.subscriptions \
                and sub.entry.channel is not None and sub.entry.state is CONNECTED:
            command = sub.entry.channel.unsubscribe(sub.subscriptionid)
            effects.append(SendBuffers(circ.key, circ.circuit.send(command)))
        sub.subscriptionid = sub.key = None
        return effects

    # -- errors and teardown ---------------------------------------------

    def timeout_error(self, entry, action, timeout):
        """CaprotoTimeoutError naming the PV and its server (or the search)."""
        if entry.state is CONNECTED or entry.server is not None:
            where = f"server {describe_address(entry.server)}"
        else:
            targets = [describe_address(a) for a in self.search_addresses]
            targets += [f"name server {describe_address(a)}"
                        for a in self.name_servers]
            where = ("no server answered searches sent to "
                     + (", ".join(targets) or "nowhere (empty address list)"))
        return CaprotoTimeoutError(
            f"{action} {entry.name!r} timed out after {timeout} s ({where})")

    def close(self):
        """Forget everything; returns CloseCircuit effects for open circuits."""
        effects = [CloseCircuit(key, "client closed")
                   for key in list(self.circuits)]
        for entry in list(self.entries):
            entry.state = CLOSED
        self.entries.clear()
        self.circuits.clear()
        self.search.clear()
        self._name_server_retry.clear()
        self._repeater_next = None
        return effects


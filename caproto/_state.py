"""Channel Access state machines, written as transition tables.

Invariants:
- Every rule about *which command may travel when* lives in the tables of
  this module; _circuit.py and _broadcaster.py only look them up.  The tables
  are data (dicts keyed by command class), never isinstance chains.
- A virtual circuit holds two half-machines, one per sender role.  Each
  command is checked against the table of the role that *sends* it, so the
  same tables serve a client circuit and a server circuit (role-agnostic,
  as in h11).  The client half becomes CONNECTED by a state-triggered rule:
  it has sent its VersionRequest and the server has sent its VersionResponse,
  in whichever order the bytes happened to cross.
- A channel holds one machine; ``states[SERVER]`` is the same state under
  the server's names (IDLE, SEND_CREATE_CHAN_RESPONSE) so both views agree.
- Nothing here mutates anything but ChannelState / CircuitState objects, and
  a refused command leaves them unchanged.
"""
from ._commands import (
    AccessRightsResponse, ClearChannelRequest, ClearChannelResponse,
    ClientNameRequest, CreateChanRequest, CreateChanResponse,
    CreateChFailResponse, EchoRequest, EchoResponse, ErrorResponse,
    EventAddRequest, EventAddResponse, EventCancelRequest, EventCancelResponse,
    EventsOffRequest, EventsOnRequest, HostNameRequest, NotFoundResponse,
    ReadNotifyRequest, ReadNotifyResponse, ReadRequest, ReadResponse,
    ReadSyncRequest, RepeaterConfirmResponse, RepeaterRegisterRequest,
    RsrvIsUpResponse, SearchRequest, SearchResponse, ServerDisconnResponse,
    VersionRequest, VersionResponse, WriteNotifyRequest, WriteNotifyResponse,
    WriteRequest,
)
from ._constants import CLIENT, DISCONNECTED, SERVER, _Sentinel

__all__ = (
    "ChannelState", "CircuitState", "StateRefused",
    "SEND_VERSION_REQUEST", "AWAIT_VERSION_RESPONSE", "SEND_VERSION_RESPONSE",
    "SEND_CREATE_CHAN_REQUEST", "AWAIT_CREATE_CHAN_RESPONSE",
    "SEND_CREATE_CHAN_RESPONSE", "IDLE", "CONNECTED", "MUST_CLOSE", "CLOSED",
    "FAILED", "DISCONNECTED",
    "CIRCUIT_TRANSITIONS", "CHANNEL_TRANSITIONS", "COMMAND_SENDER",
    "BROADCAST_COMMANDS",
)

# Circuit states.  DISCONNECTED is shared with _constants (caproto uses the
# same sentinel as state and as "the socket went away").
SEND_VERSION_REQUEST = _Sentinel("SEND_VERSION_REQUEST")
AWAIT_VERSION_RESPONSE = _Sentinel("AWAIT_VERSION_RESPONSE")
SEND_VERSION_RESPONSE = _Sentinel("SEND_VERSION_RESPONSE")
CONNECTED = _Sentinel("CONNECTED")

# Channel states (client names, then the server's names for the first two).
SEND_CREATE_CHAN_REQUEST = _Sentinel("SEND_CREATE_CHAN_REQUEST")
AWAIT_CREATE_CHAN_RESPONSE = _Sentinel("AWAIT_CREATE_CHAN_RESPONSE")
MUST_CLOSE = _Sentinel("MUST_CLOSE")
CLOSED = _Sentinel("CLOSED")
FAILED = _Sentinel("FAILED")
IDLE = _Sentinel("IDLE")
SEND_CREATE_CHAN_RESPONSE = _Sentinel("SEND_CREATE_CHAN_RESPONSE")


class StateRefused(Exception):
    """Internal: a table refused a command.

    The circuit turns it into LocalProtocolError or RemoteProtocolError
    depending on who sent the command; nothing outside the core sees it.
    """


# --------------------------------------------------------------------------
# Circuit half-machines, keyed by the role that SENDS the command.

# What a client may send once it has announced its version.  libca pipelines
# HostName/ClientName/CreateChan right behind the VersionRequest without
# waiting for the server's answer, so these are legal before CONNECTED.
# SearchRequest travels over TCP to name servers (EPICS_CA_NAME_SERVERS).
_CLIENT_SENDS = (
    SearchRequest, EchoRequest, CreateChanRequest, ClearChannelRequest,
    HostNameRequest, ClientNameRequest, ReadRequest, ReadNotifyRequest,
    WriteRequest, WriteNotifyRequest, EventAddRequest, EventCancelRequest,
    EventsOffRequest, EventsOnRequest, ReadSyncRequest,
)
_SERVER_SENDS = (
    SearchResponse, NotFoundResponse, EchoResponse, CreateChanResponse,
    CreateChFailResponse, AccessRightsResponse, ClearChannelResponse,
    ServerDisconnResponse, ReadResponse, ReadNotifyResponse,
    WriteNotifyResponse, EventAddResponse, EventCancelResponse, ErrorResponse,
)


def _self_loops(state, commands):
    return {command: state for command in commands}


CIRCUIT_TRANSITIONS = {
    CLIENT: {
        # The CA specification: VersionRequest is the client's first message.
        SEND_VERSION_REQUEST: {VersionRequest: AWAIT_VERSION_RESPONSE},
        AWAIT_VERSION_RESPONSE: _self_loops(AWAIT_VERSION_RESPONSE,
                                            _CLIENT_SENDS),
        CONNECTED: _self_loops(CONNECTED, _CLIENT_SENDS),
        DISCONNECTED: {},
    },
    SERVER: {
        # rsrv sends its VersionResponse as soon as it accepts the socket,
        # before or after the client's request arrives; either is legal.
        SEND_VERSION_RESPONSE: {VersionResponse: CONNECTED},
        CONNECTED: _self_loops(CONNECTED, _SERVER_SENDS),
        DISCONNECTED: {},
    },
}

# command class -> the only role allowed to send it on a circuit (derived
# from the tables above, so there is one source of truth).
COMMAND_SENDER = {}
for _role, _states in CIRCUIT_TRANSITIONS.items():
    for _table in _states.values():
        for _command in _table:
            # Disjoint roles: CircuitState.check relies on it.
            assert COMMAND_SENDER.get(_command, _role) is _role, _command
            COMMAND_SENDER[_command] = _role
del _role, _states, _table, _command

# UDP: which commands each role may put in a datagram.  There is no state
# on UDP.  A repeater acts as a SERVER (it confirms and forwards beacons).
BROADCAST_COMMANDS = {
    CLIENT: frozenset({VersionRequest, SearchRequest, RepeaterRegisterRequest}),
    SERVER: frozenset({VersionResponse, SearchResponse, NotFoundResponse,
                       RsrvIsUpResponse, RepeaterConfirmResponse}),
}


class CircuitState:
    """Both half-machines of one virtual circuit.

    ``states[CLIENT]`` is SEND_VERSION_REQUEST -> AWAIT_VERSION_RESPONSE ->
    CONNECTED; ``states[SERVER]`` is SEND_VERSION_RESPONSE -> CONNECTED
    (meaning: the server has announced its version).
    """

    def __init__(self):
        self.states = {CLIENT: SEND_VERSION_REQUEST,
                       SERVER: SEND_VERSION_RESPONSE}

    def __getitem__(self, role):
        return self.states[role]

    def __repr__(self):
        return "<CircuitState client={} server={}>".format(
            self.states[CLIENT], self.states[SERVER])

    def check(self, sender, command_type):
        """Return the sender's next state, or raise StateRefused.

        A command is in a role's table only if that role sends it (the
        tables are disjoint), so the table lookup alone decides; the checks
        after it only explain a refusal."""
        next_state = CIRCUIT_TRANSITIONS[sender][self.states[sender]].get(command_type)
        if next_state is not None:
            return next_state
        allowed_sender = COMMAND_SENDER.get(command_type)
        if allowed_sender is None:
            raise StateRefused("{} does not travel on a virtual circuit"
                               .format(command_type.__name__))
        if allowed_sender is not sender:
            raise StateRefused("{} is sent only by the {}, not the {}".format(
                command_type.__name__, allowed_sender, sender))
        raise StateRefused("{} may not send {} while its circuit state is "
                           "{}".format(sender, command_type.__name__,
                                       self.states[sender]))

    def advance(self, sender, next_state):
        states = self.states
        if states[sender] is next_state:
            return            # a self-loop: the rule below already holds
        states[sender] = next_state
        # State-triggered rule: the handshake completes when both versions
        # have been exchanged, whatever order they crossed in.
        if (states[CLIENT] is AWAIT_VERSION_RESPONSE
                and states[SERVER] is CONNECTED):
            states[CLIENT] = CONNECTED

    def disconnect(self):
        self.states[CLIENT] = self.states[SERVER] = DISCONNECTED


# --------------------------------------------------------------------------
# Channel machine (one table; the server's view renames two states).

_REQUESTS_ON_OPEN_CHANNEL = (ReadRequest, ReadNotifyRequest, WriteRequest,
                             WriteNotifyRequest, EventAddRequest,
                             EventCancelRequest)
# Answers to requests made earlier may still arrive after ClearChannelRequest
# has been sent: the server handles a circuit's requests in order.
_ANSWERS = (ReadResponse, ReadNotifyResponse, WriteNotifyResponse,
            EventAddResponse, EventCancelResponse, AccessRightsResponse,
            ErrorResponse)

CHANNEL_TRANSITIONS = {
    SEND_CREATE_CHAN_REQUEST: {CreateChanRequest: AWAIT_CREATE_CHAN_RESPONSE},
    AWAIT_CREATE_CHAN_RESPONSE: {
        # rsrv sends AccessRights just before CreateChanResponse.
        AccessRightsResponse: AWAIT_CREATE_CHAN_RESPONSE,
        ErrorResponse: AWAIT_CREATE_CHAN_RESPONSE,
        CreateChanResponse: CONNECTED,
        CreateChFailResponse: FAILED,
        ServerDisconnResponse: CLOSED,
    },
    CONNECTED: {
        **_self_loops(CONNECTED, _REQUESTS_ON_OPEN_CHANNEL + _ANSWERS),
        ClearChannelRequest: MUST_CLOSE, ServerDisconnResponse: CLOSED},
    MUST_CLOSE: {
        **_self_loops(MUST_CLOSE, _ANSWERS),
        ClearChannelResponse: CLOSED, ServerDisconnResponse: CLOSED},
    CLOSED: {},
    FAILED: {},
}

_SERVER_NAMES = {SEND_CREATE_CHAN_REQUEST: IDLE,
                 AWAIT_CREATE_CHAN_RESPONSE: SEND_CREATE_CHAN_RESPONSE}


class _ChannelStateView:
    """``states[role]`` mapping of a ChannelState (read-only)."""

    __slots__ = ("_owner",)

    def __init__(self, owner):
        self._owner = owner

    def __getitem__(self, role):
        state = self._owner.state
        if role is SERVER:
            return _SERVER_NAMES.get(state, state)
        if role is CLIENT:
            return state
        raise KeyError(role)


class ChannelState:
    """The life of one channel: created, connected, closed or failed.

    ``state`` is the client-side name; ``states[CLIENT]`` and
    ``states[SERVER]`` give each side's name for it, as caproto does.
    """

    __slots__ = ("state",)

    def __init__(self):
        self.state = SEND_CREATE_CHAN_REQUEST

    @property
    def states(self):
        """Each side's name for the state (made on demand: one per channel
        would be one more object per channel for the cyclic GC to track)."""
        return _ChannelStateView(self)

    def __getitem__(self, role):
        return self.states[role]

    def __repr__(self):
        return "<ChannelState {}>".format(self.state)

    def check(self, command_type):
        """Return the next state, or raise StateRefused."""
        next_state = CHANNEL_TRANSITIONS[self.state].get(command_type)
        if next_state is None:
            raise StateRefused("{} is not allowed while the channel is {}"
                               .format(command_type.__name__, self.state))
        return next_state

    def advance(self, next_state):
        self.state = next_state

    def disconnect(self):
        """The circuit went away: every channel on it is closed."""
        if self.state is not FAILED:
            self.state = CLOSED

    @property
    def is_open(self):
        return self.state not in (CLOSED, FAILED)

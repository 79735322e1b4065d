"""What the client core and its faces exchange: effects and records.

Invariants: plain data only.  Effects are namedtuples the core returns and
a face carries out; ChannelEntry / Request / SubscriptionEntry are the
core's records, which faces may read (state, native type, server) and tag
with their own ``owner`` object but never modify.  Nothing here does I/O.
"""
import collections

from .._dbr import ChannelType, promote_type
from .._errors import CaprotoError, CaprotoValueError
from .._state import CONNECTED

__all__ = (
    "ChannelEntry", "Request", "SubscriptionEntry", "CircuitKey",
    "SendDatagram", "SendBuffers", "OpenCircuit", "CloseCircuit",
    "ChannelConnected", "ChannelDisconnected", "AccessRightsChanged",
    "ReadDone", "WriteDone", "RequestFailed", "SubscriptionData",
    "BeaconAnomaly", "ServerError", "DisconnectedError", "resolve_data_type",
    "describe_address", "status_ok",
    "SEARCHING", "CONNECTING", "CONNECTED", "CLOSED",
)

# ChannelEntry.state values (CONNECTED is the _state sentinel).
SEARCHING, CONNECTING, CLOSED = "searching", "connecting", "closed"

CircuitKey = collections.namedtuple("CircuitKey",
                                    "address priority name_server")
CircuitKey.__new__.__defaults__ = (False,)


def _effect(name, fields):
    cls = collections.namedtuple(name, fields)
    cls.__doc__ = f"Effect: {name}({', '.join(fields.split())})"
    return cls


SendDatagram = _effect("SendDatagram", "data address")
SendBuffers = _effect("SendBuffers", "key buffers")
OpenCircuit = _effect("OpenCircuit", "key")
CloseCircuit = _effect("CloseCircuit", "key reason")
ChannelConnected = _effect("ChannelConnected", "entry")
ChannelDisconnected = _effect("ChannelDisconnected", "entry reason")
AccessRightsChanged = _effect("AccessRightsChanged", "entry rights")
ReadDone = _effect("ReadDone", "request command")
WriteDone = _effect("WriteDone", "request command")
RequestFailed = _effect("RequestFailed", "request error")
SubscriptionData = _effect("SubscriptionData", "subscription command")
BeaconAnomaly = _effect("BeaconAnomaly", "address")
#: An ErrorResponse no pending request waits for: the server refused a plain
#: write (WriteRequest has no answer otherwise) or a subscription.  `entry`
#: is None when the channel is no longer known; `error` is an
#: ErrorResponseReceived naming the PV, the server and the ECA status.
ServerError = _effect("ServerError", "entry command error")


class DisconnectedError(CaprotoError):
    """A request was pending when its channel or circuit went away."""


def describe_address(address):
    return "unknown server" if address is None else f"{address[0]}:{address[1]}"


_FORMS = {"native": {}, "sts": {"use_status": True},
          "status": {"use_status": True}, "time": {"use_time": True},
          "gr": {"use_gr": True}, "graphic": {"use_gr": True},
          "ctrl": {"use_ctrl": True}, "control": {"use_ctrl": True}}


def resolve_data_type(native, data_type=None, form=None):
    """The DBR type to request: `data_type` if given, else `native` promoted.

    `form` is 'native', 'status'/'sts', 'time', 'gr'/'graphic' or
    'ctrl'/'control' (pyepics and caproto spellings).
    """
    if data_type is not None:
        try:
            return ChannelType(data_type)
        except ValueError:
            raise CaprotoValueError(f"{data_type!r} is not a DBR type") from None
    if form is None or form == "native":
        return ChannelType(native)
    try:
        flags = _FORMS[form]
    except KeyError:
        raise CaprotoValueError(
            f"form={form!r}: expected one of {sorted(_FORMS)}") from None
    return promote_type(native, **flags)


class ChannelEntry:
    """The core's record of one PV the face asked for."""

    def __init__(self, name, priority, owner):
        self.name = name
        self.priority = priority
        self.owner = owner
        self.state = SEARCHING
        self.server = None            # (host, port) once found
        self.circuit_key = None
        self.channel = None           # ClientChannel while on a circuit
        self.access_rights = None
        self.native_data_type = None
        self.native_data_count = None
        self.subscriptions = []       # SubscriptionEntry, re-sent on connect
        self.search_cid = None
        self.search_request = None    # SearchRequest for search_cid, reused
        self.search_interval = 0.0
        self.next_search = 0.0
        self.search_attempts = 0
        self.server_protocol_version = None

    def __repr__(self):
        return (f"<ChannelEntry {self.name!r} {self.state} "
                f"server={describe_address(self.server)}>")

    @property
    def connected(self):
        return self.state is CONNECTED


class Request:
    """One read or write awaiting its answer (keyed by ioid)."""
    __slots__ = ("entry", "kind", "owner", "key", "ioid", "data_type")

    def __init__(self, entry, kind, owner, key, ioid, data_type):
        self.entry, self.kind, self.owner = entry, kind, owner
        self.key, self.ioid, self.data_type = key, ioid, data_type

    def __repr__(self):
        return f"<Request {self.kind} {self.entry.name!r} ioid={self.ioid}>"


class SubscriptionEntry:
    """A subscription that survives reconnects (new subscriptionid each time)."""

    def __init__(self, entry, owner, data_type, data_count, mask, low, high, to,
                 form=None):
        self.entry, self.owner = entry, owner
        self.data_type, self.data_count, self.form = data_type, data_count, form
        self.mask, self.low, self.high, self.to = mask, low, high, to
        self.subscriptionid = None    # on the current circuit, when active
        self.key = None
        self.cancelled = False

    def __repr__(self):
        return (f"<SubscriptionEntry {self.entry.name!r} mask={self.mask!r} "
                f"subscriptionid={self.subscriptionid}>")


def status_ok(command):
    """True when a ReadNotify/WriteNotify/EventAdd answer reports success."""
    status = getattr(command, "status", None)
    if status is None:
        status = getattr(command, "status_code", None)
    if status is None:
        return True
    return bool(getattr(status, "success", 1))

"""One Message class per Channel Access command, and the parsers.

Invariants:
- A Message is immutable wire data: ``.header`` (MessageHeader with the true
  sizes) and ``.buffers`` (header bytes first, then payload buffers, padded
  to a multiple of 8 bytes).  ``==`` compares wire bytes.
- Attributes that live in the header are read from it through the layout
  table generated into _headers.py; nothing here restates a header layout.
- Decoding is keyed by (sender role, command id).  Bad bytes from a peer
  raise only RemoteProtocolError; bad arguments from our caller raise only
  LocalProtocolError.  DBR payload bytes are the business of _dbr.py.
"""
import ipaddress
import operator
import struct

from . import _dbr
from ._constants import (CLIENT, DEFAULT_PROTOCOL_VERSION, NEED_DATA,
                         NO_REPLY, REQUEST, RESPONSE,
                         SEARCH_MAX_DATAGRAM_BYTES, SERVER)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._headers import (COMMAND_LAYOUTS, HEADER_SIZE, SHORT_HEADER,
                       MessageHeader, pack_header, unpack_header)
from . import _headers
from ._status import CAStatus, CAStatusCode, eca_value_to_status

__all__ = (
    "Message", "MessageHeader", "VersionRequest", "VersionResponse",
    "SearchRequest", "SearchResponse", "NotFoundResponse", "EchoRequest",
    "EchoResponse", "RsrvIsUpResponse", "RepeaterRegisterRequest",
    "RepeaterConfirmResponse", "CreateChanRequest", "CreateChanResponse",
    "CreateChFailResponse", "AccessRightsResponse", "ClearChannelRequest",
    "ClearChannelResponse", "ServerDisconnResponse", "ClientNameRequest",
    "HostNameRequest", "ReadRequest", "ReadResponse", "ReadNotifyRequest",
    "ReadNotifyResponse", "WriteRequest", "WriteNotifyRequest",
    "WriteNotifyResponse", "EventAddRequest", "EventAddResponse",
    "EventCancelRequest", "EventCancelResponse", "EventsOffRequest",
    "EventsOnRequest", "ReadSyncRequest", "ErrorResponse", "read_datagram",
    "read_from_bytestream", "bytelen", "extract_address",
)

#: Longest name (without its NUL) we will put in a search or create request:
#: it must fit one search datagram next to the version and search headers.
MAX_NAME_BYTES = SEARCH_MAX_DATAGRAM_BYTES - 2 * HEADER_SIZE - 1
_PADDING = bytes(8)
_EVENT_ADD_PAYLOAD = struct.Struct(">fffHxx")
_SEARCH_RESPONSE_PAYLOAD = struct.Struct(">H6x")


def padded_size(nbytes):
    """Size of an nbytes payload on the wire (CA aligns payloads to 8)."""
    return (nbytes + 7) & ~7


def bytelen(buffers):
    """Total length in bytes of a sequence of bytes-like objects.

    A plain loop with a fast case for ``bytes``: this runs for every command
    sent, and len() of a non-bytes buffer (an array) counts elements."""
    total = 0
    for buffer in buffers:
        total += len(buffer) if type(buffer) is bytes else memoryview(buffer).nbytes
    return total


# -- attribute kinds: header int <-> what users see -------------------------

def _ip_to_int(ip):
    if isinstance(ip, int):
        return ip
    try:
        return int(ipaddress.IPv4Address(ip))
    except ValueError:
        raise LocalProtocolError(f"{ip!r} is not an IPv4 address") from None


def _int_to_ip(value):
    return str(ipaddress.IPv4Address(value))


def _status_to_int(status):
    if isinstance(status, (CAStatus, CAStatusCode)):
        return status.code_with_severity
    if isinstance(status, str):
        try:
            return CAStatus[status].code_with_severity
        except KeyError:
            raise LocalProtocolError(f"unknown CA status {status!r}") from None
    return status


_TYPES_BY_VALUE = {int(t): t for t in _dbr.ChannelType}


def _type_from_int(value):
    """The ChannelType of a header value; the int itself if it names none
    (a request may).  A dict lookup: this runs for every data command."""
    return _TYPES_BY_VALUE.get(value, value)


def _type_to_int(data_type):
    return int(_dbr.channel_type(data_type))


_ENCODE_KIND = {"int": lambda v: v, "type": _type_to_int, "ip": _ip_to_int,
                "status": _status_to_int}
_DECODE_KIND = {"int": lambda v: v, "type": _type_from_int, "ip": _int_to_ip,
                "status": lambda v: eca_value_to_status.get(v, v)}


def _encode_fields(message, fields):
    """Convert user values (enums, dotted IPs) to header integers."""
    out = {}
    for attr, _field, kind in message._LAYOUT:
        value = fields[attr]
        try:
            out[attr] = _ENCODE_KIND[kind](value)
        except (TypeError, ValueError):
            raise LocalProtocolError(
                f"{type(message).__name__}: {attr}={value!r} is not valid"
            ) from None
    return out


def _header_property(field, kind):
    """A read-only attribute decoded from a header field.  Plain integers use a
    C-level attrgetter: these run several times for every command handled."""
    if kind == "int":
        return property(operator.attrgetter("header." + field))
    decode = _DECODE_KIND[kind]
    return property(lambda self: decode(getattr(self.header, field)))


# -- the base class ---------------------------------------------------------

class Message:
    """A CA command: header plus (padded) payload, as sent on the wire."""
    ID = None            # command id
    SENDER = None        # CLIENT or SERVER
    DIRECTION = None     # REQUEST (client -> server) or RESPONSE
    _LAYOUT = ()         # ((attribute, header field, kind), ...) from _headers
    _SHOWN = ()          # extra attributes for repr

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__ not in COMMAND_LAYOUTS:     # an intermediate base
            return
        command_id, sender, variable, layout = COMMAND_LAYOUTS[cls.__name__]
        cls.ID, cls.SENDER, cls._LAYOUT = command_id, sender, layout
        cls._VARIABLE_PAYLOAD = variable
        cls.DIRECTION = REQUEST if sender is CLIENT else RESPONSE
        cls._make_header = staticmethod(getattr(_headers, cls.__name__ + "Header"))
        for attr, field, kind in layout:
            if attr not in cls.__dict__:
                setattr(cls, attr, _header_property(field, kind))

    def _set(self, payload_buffers=(), payload_nbytes=0, **fields):
        """Build header and buffers from header fields and payload parts."""
        fields = _encode_fields(self, fields)
        size = padded_size(payload_nbytes)
        if self._VARIABLE_PAYLOAD:
            fields["payload_size"] = size
        self.header = self._make_header(**fields)
        buffers = [pack_header(self.header), *payload_buffers]
        if size != payload_nbytes:
            buffers.append(_PADDING[:size - payload_nbytes])
        self.buffers = tuple(buffers)

    @classmethod
    def from_wire(cls, header, header_bytes, payload):
        """Rebuild a command a peer sent; payload is a memoryview (padded)."""
        self = cls.__new__(cls)
        self.header = header
        self.buffers = (header_bytes, payload) if len(payload) else (header_bytes,)
        self._decode_payload(payload)
        return self

    def _decode_payload(self, payload):
        pass

    @property
    def nbytes(self):
        return bytelen(self.buffers)

    def __len__(self):
        return self.nbytes

    def __bytes__(self):
        return b"".join(self.buffers)

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and bytes(self) == bytes(other)

    def __hash__(self):
        return hash((type(self), bytes(self)))

    def __repr__(self):
        names = [attr for attr, _f, _k in self._LAYOUT] + list(self._SHOWN)
        shown = []
        for name in names:
            value = getattr(self, name)
            text = repr(value)
            if len(text) > 60:
                text = text[:57] + "..."
            shown.append(f"{name}={text}")
        return f"{type(self).__name__}({', '.join(shown)})"


# -- commands without payload ------------------------------------------------

class VersionRequest(Message):
    def __init__(self, priority, version=DEFAULT_PROTOCOL_VERSION):
        self._set(priority=priority, version=version)


class VersionResponse(Message):
    def __init__(self, version=DEFAULT_PROTOCOL_VERSION):
        self._set(version=version)


class NotFoundResponse(Message):
    def __init__(self, version, cid):
        self._set(version=version, cid=cid)


class EchoRequest(Message):
    def __init__(self):
        self._set()


class EchoResponse(Message):
    def __init__(self):
        self._set()


class EventsOffRequest(Message):
    def __init__(self):
        self._set()


class EventsOnRequest(Message):
    def __init__(self):
        self._set()


class ReadSyncRequest(Message):
    def __init__(self):
        self._set()


class RsrvIsUpResponse(Message):
    def __init__(self, version, server_port, beacon_id, address):
        self._set(version=version, server_port=server_port,
                  beacon_id=beacon_id, address=address)


class RepeaterRegisterRequest(Message):
    def __init__(self, client_address="0.0.0.0"):
        self._set(client_address=client_address)


class RepeaterConfirmResponse(Message):
    def __init__(self, repeater_address):
        self._set(repeater_address=repeater_address)


class CreateChanResponse(Message):
    def __init__(self, data_type, data_count, cid, sid):
        self._set(data_type=data_type, data_count=data_count, cid=cid, sid=sid)


class CreateChFailResponse(Message):
    def __init__(self, cid):
        self._set(cid=cid)


class AccessRightsResponse(Message):
    def __init__(self, cid, access_rights):
        self._set(cid=cid, access_rights=access_rights)


class ClearChannelRequest(Message):
    def __init__(self, sid, cid):
        self._set(sid=sid, cid=cid)


class ClearChannelResponse(Message):
    def __init__(self, sid, cid):
        self._set(sid=sid, cid=cid)


class ServerDisconnResponse(Message):
    def __init__(self, cid):
        self._set(cid=cid)


class ReadRequest(Message):
    """Deprecated CA_PROTO_READ; kept so old peers can be understood."""
    def __init__(self, data_type, data_count, sid, ioid):
        self._set(data_type=data_type, data_count=data_count, sid=sid, ioid=ioid)


class ReadNotifyRequest(Message):
    def __init__(self, data_type, data_count, sid, ioid):
        self._set(data_type=data_type, data_count=data_count, sid=sid, ioid=ioid)


class WriteNotifyResponse(Message):
    def __init__(self, data_type, data_count, status, ioid):
        self._set(data_type=data_type, data_count=data_count, status=status,
                  ioid=ioid)


class EventCancelRequest(Message):
    def __init__(self, data_type, data_count, sid, subscriptionid):
        self._set(data_type=data_type, data_count=data_count, sid=sid,
                  subscriptionid=subscriptionid)


class EventCancelResponse(Message):
    """Command 1 with an empty payload: the server confirms a cancel."""
    def __init__(self, data_type, sid, subscriptionid, data_count=0):
        self._set(data_type=data_type, data_count=data_count, sid=sid,
                  subscriptionid=subscriptionid)


# -- commands carrying a name ---------------------------------------------------

def _encode_name(cls, name):
    """NUL-terminated latin-1 bytes of a channel/host/user name."""
    if isinstance(name, str):
        try:
            name = name.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"{cls.__name__}: name {name!r} is not latin-1") from None
    if not isinstance(name, (bytes, bytearray)):
        raise LocalProtocolError(f"{cls.__name__}: name must be str, got {name!r}")
    if b"\0" in name:
        raise LocalProtocolError(f"{cls.__name__}: name {name!r} contains NUL")
    if len(name) > MAX_NAME_BYTES:
        raise LocalProtocolError(
            f"{cls.__name__}: name is {len(name)} bytes, longer than the "
            f"{MAX_NAME_BYTES} that fit in a search datagram")
    return bytes(name) + b"\0"


def _decode_name(payload):
    raw = bytes(payload)
    return raw.split(b"\0", 1)[0].decode("latin-1")


class _NamedMessage(Message):
    _SHOWN = ("name",)
    _ALLOW_EMPTY = True

    def _set_name(self, name, **fields):
        encoded = _encode_name(type(self), name)
        if len(encoded) == 1 and not self._ALLOW_EMPTY:
            raise LocalProtocolError(f"{type(self).__name__}: empty name")
        self.name = encoded[:-1].decode("latin-1")
        self._set((encoded,), len(encoded), **fields)

    def _decode_payload(self, payload):
        self.name = _decode_name(payload)


class SearchRequest(_NamedMessage):
    _ALLOW_EMPTY = False

    def __init__(self, name, cid, version=DEFAULT_PROTOCOL_VERSION,
                 reply=NO_REPLY):
        self._set_name(name, cid=cid, version=version, reply=reply)


class CreateChanRequest(_NamedMessage):
    _ALLOW_EMPTY = False

    def __init__(self, name, cid, version=DEFAULT_PROTOCOL_VERSION):
        self._set_name(name, cid=cid, version=version)


class ClientNameRequest(_NamedMessage):
    def __init__(self, name):
        self._set_name(name)


class HostNameRequest(_NamedMessage):
    def __init__(self, name):
        self._set_name(name)


# -- commands with a fixed-layout payload -------------------------------------

class SearchResponse(Message):
    """A server has the channel.  ip 255.255.255.255 means "my sender address"."""
    _SHOWN = ("version",)

    def __init__(self, port, ip, cid, version=DEFAULT_PROTOCOL_VERSION):
        self.version = version
        try:
            payload = _SEARCH_RESPONSE_PAYLOAD.pack(version)
        except struct.error:
            raise LocalProtocolError(f"SearchResponse: bad version {version!r}") from None
        self._set((payload,), len(payload), port=port, ip=ip, cid=cid)

    def _decode_payload(self, payload):
        if len(payload) == 0:
            # Over TCP (EPICS_CA_NAME_SERVERS) rsrv sends no payload: the
            # minor version is not carried, so assume the one we speak.
            self.version = DEFAULT_PROTOCOL_VERSION
            return
        if len(payload) < 2:
            raise RemoteProtocolError(
                f"SearchResponse payload is {len(payload)} bytes; needs 2 (version)")
        self.version = struct.unpack_from(">H", payload)[0]


class EventAddRequest(Message):
    _SHOWN = ("low", "high", "to", "mask")

    def __init__(self, data_type, data_count, sid, subscriptionid, low, high,
                 to, mask):
        try:
            payload = _EVENT_ADD_PAYLOAD.pack(low, high, to, mask)
        except struct.error as exc:
            raise LocalProtocolError(f"EventAddRequest: {exc}") from None
        self._set((payload,), len(payload), data_type=data_type,
                  data_count=data_count, sid=sid, subscriptionid=subscriptionid)
        self._decode_payload(payload)

    def _decode_payload(self, payload):
        if len(payload) < 14:
            raise RemoteProtocolError(
                f"EventAddRequest payload is {len(payload)} bytes; needs 14 "
                "(low, high, to, mask)")
        self.low, self.high, self.to, self.mask = _EVENT_ADD_PAYLOAD.unpack_from(
            bytes(payload[:14]) + b"\0\0")


class ErrorResponse(Message):
    """The server refused a request: payload = that request's header + text."""
    _SHOWN = ("original_request", "error_message")

    def __init__(self, original_request, cid, status, error_message):
        header = getattr(original_request, "header", original_request)
        if not isinstance(header, MessageHeader):
            raise LocalProtocolError(
                f"ErrorResponse: original_request must be a Message or "
                f"MessageHeader, got {original_request!r}")
        self.original_request = header
        self.error_message = str(error_message)
        text = self.error_message.encode("latin-1", "replace") + b"\0"
        head = pack_header(header)[:HEADER_SIZE]
        self._set((head, text), len(head) + len(text), cid=cid, status=status)

    def _decode_payload(self, payload):
        if len(payload) < HEADER_SIZE:
            raise RemoteProtocolError(
                f"ErrorResponse payload is {len(payload)} bytes; needs at least "
                f"{HEADER_SIZE} (the refused request's header)")
        # Always the 16-byte form: libca copies just that much of the request.
        self.original_request = MessageHeader._make(
            SHORT_HEADER.unpack_from(payload))
        self.error_message = _decode_name(payload[HEADER_SIZE:])


# -- commands carrying DBR data ------------------------------------------------

_DBR_SIZES = {}


def _dbr_sizes(data_type):
    """(ChannelType, metadata size, value size), cached: hot on every update."""
    try:
        return _DBR_SIZES[data_type]
    except KeyError:
        channel_type = _dbr.ChannelType(data_type)
        sizes = (channel_type, _dbr.dbr_metadata_size(channel_type),
                 _dbr.dbr_value_size(channel_type))
        _DBR_SIZES[data_type] = sizes
        return sizes


class _DataMessage(Message):
    """Payload = DBR metadata + values, encoded by _dbr."""
    _SHOWN = ("data", "metadata")
    _MIN_PAYLOAD = 0
    # Writes of one DBR_STRING carry only the text and its NUL, as libca
    # sends them (rsrv accepts both forms; responses always carry 40 bytes).
    _SHORT_SINGLE_STRING = False

    def _set_data(self, data, metadata, data_type, data_count, **fields):
        name = type(self).__name__
        try:
            data_type = _dbr.channel_type(data_type)
            buffers, nbytes, count = _dbr.encode_payload(data_type, data,
                                                         metadata)
        except (TypeError, ValueError, KeyError, OverflowError,
                struct.error) as exc:
            raise LocalProtocolError(
                f"{name}: cannot encode {data!r} as {data_type!r}: {exc}") from None
        if data_count is not None and data_count != count:
            raise LocalProtocolError(
                f"{name}: data_count={data_count} but the data has {count} "
                "element(s)")
        self.data, self.metadata = data, metadata
        if self._SHORT_SINGLE_STRING and data_type == 0 and count == 1:
            value = b"".join(buffers)
            nbytes = value.find(b"\0") + 1 or len(value)
            buffers = (value[:nbytes],)
        if nbytes < self._MIN_PAYLOAD:
            buffers = (*buffers, _PADDING[:self._MIN_PAYLOAD - nbytes])
            nbytes = self._MIN_PAYLOAD
        self._set(tuple(buffers), nbytes, data_type=data_type,
                  data_count=count, **fields)

    def _decode_payload(self, payload):
        data_type, count = self.header.data_type, self.header.data_count
        name = type(self).__name__
        try:
            data_type, metadata_size, value_size = _dbr_sizes(data_type)
        except (ValueError, KeyError, TypeError):
            raise RemoteProtocolError(
                f"{name} carries unknown DBR type {data_type}") from None
        needed = metadata_size + value_size * count
        if (needed > len(payload) and data_type == 0 and count == 1
                and len(payload)):
            # libca sends a single DBR_STRING as just its text and NUL.
            payload = memoryview(bytes(payload) + bytes(needed - len(payload)))
        if needed > len(payload):
            raise RemoteProtocolError(
                f"{name} says {count} element(s) of {data_type.name} "
                f"({needed} bytes) but its payload is {len(payload)} bytes")
        self.data, self.metadata = _dbr.decode_payload(data_type, count,
                                                       payload[:needed])


class ReadResponse(_DataMessage):
    """Answer to the deprecated ReadRequest."""
    def __init__(self, data, metadata, data_type, data_count, sid, ioid):
        self._set_data(data, metadata, data_type, data_count, sid=sid, ioid=ioid)


class ReadNotifyResponse(_DataMessage):
    def __init__(self, data, metadata, data_type, data_count, status, ioid):
        self._set_data(data, metadata, data_type, data_count, status=status,
                       ioid=ioid)


class _WriteMessage(_DataMessage):
    """A client's write.  A payload we cannot decode (unknown DBR type, fewer
    bytes than the count needs) is a refused request, not a broken stream:
    its size is in the header, so the stream stays in step.  ``refusal`` is
    then ``(CAStatus, message)`` for the server's answer (rsrv answers
    ECA_BADTYPE too) and ``data``/``metadata`` are None."""
    _SHORT_SINGLE_STRING = True
    refusal = None

    def __init__(self, data, data_type, data_count, sid, ioid, metadata=None):
        self._set_data(data, metadata, data_type, data_count, sid=sid, ioid=ioid)

    def _decode_payload(self, payload):
        try:
            super()._decode_payload(payload)
        except RemoteProtocolError as exc:
            try:
                _dbr_sizes(self.header.data_type)
                status = CAStatus.ECA_BADCOUNT
            except (ValueError, KeyError, TypeError):
                status = CAStatus.ECA_BADTYPE
            self.data = self.metadata = None
            self.refusal = (status, str(exc))


class WriteRequest(_WriteMessage):
    pass


class WriteNotifyRequest(_WriteMessage):
    pass


class EventAddResponse(_DataMessage):
    # An empty payload would read as EventCancelResponse (same command id),
    # so even an empty update carries 8 bytes.
    _MIN_PAYLOAD = 8

    def __init__(self, data, metadata, data_type, data_count, status_code,
                 subscriptionid):
        self._set_data(data, metadata, data_type, data_count,
                       status_code=status_code, subscriptionid=subscriptionid)


# -- parsing ----------------------------------------------------------------------

_CLASSES = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and _cls.__name__ in COMMAND_LAYOUTS:
        _CLASSES[(_cls.SENDER, _cls.ID)] = _cls
_CLASSES[(SERVER, 1)] = EventAddResponse     # or EventCancelResponse, see below
del _cls


def command_class(header, role):
    """The Message class for a header sent by a peer in `role`."""
    if role is SERVER and header.command == 1 and header.payload_size == 0:
        return EventCancelResponse
    try:
        return _CLASSES[(role, header.command)]
    except KeyError:
        sender = "client" if role is CLIENT else "server"
        raise RemoteProtocolError(
            f"command id {header.command} is not a command a {sender} sends "
            f"(header {header})") from None


def parse_header(data, offset, role, max_payload_size=None):
    """Parse and vet the header at data[offset:].

    Returns (cls, header, header_nbytes), or (None, None, bytes_needed).
    Checks everything knowable from the header alone, so a buffer can refuse
    a hostile size before storing any payload.
    """
    header, size = unpack_header(data, offset)
    if header is None:
        return None, None, size
    cls = command_class(header, role)
    if max_payload_size is not None and header.payload_size > max_payload_size:
        raise RemoteProtocolError(
            f"{cls.__name__} announces a {header.payload_size}-byte payload, "
            f"above the {max_payload_size}-byte limit (EPICS_CA_MAX_ARRAY_BYTES)")
    return cls, header, size


def build_command(cls, header, header_bytes, payload):
    """The command from its parsed header and its whole payload memoryview."""
    return cls.from_wire(header, header_bytes, payload)


def _stable_view(data, view):
    """A payload view that stays valid: zero-copy only for immutable input."""
    return view if isinstance(data, bytes) else memoryview(bytes(view))


def read_from_bytestream(data, role):
    """Parse one command from the front of a TCP byte stream.

    `role` is the role of the peer that sent `data`.  Returns
    ``(remaining_data, command, 0)`` or ``(data, NEED_DATA, bytes_needed)``.
    """
    view = memoryview(data)
    cls, header, size = parse_header(view, 0, role)
    if header is None:
        return data, NEED_DATA, size
    total = size + header.payload_size
    if len(view) < total:
        return data, NEED_DATA, total - len(view)
    command = build_command(cls, header, bytes(view[:size]),
                            _stable_view(data, view[size:total]))
    return data[total:], command, 0


def read_datagram(data, address, role):
    """Parse every command in a UDP datagram sent by a peer in `role`.

    Each command gets ``sender_address`` = `address`.  A datagram whose last
    command is cut short raises RemoteProtocolError.
    """
    view = memoryview(data)
    commands = []
    offset = 0
    while offset < len(view):
        cls, header, size = parse_header(view, offset, role)
        if header is None:
            raise RemoteProtocolError(
                f"datagram from {address} ends with {len(view) - offset} "
                "byte(s), too few for a header")
        start = offset + size
        end = start + header.payload_size
        if end > len(view):
            raise RemoteProtocolError(
                f"datagram from {address}: {cls.__name__} announces "
                f"{header.payload_size} payload bytes, only {len(view) - start} left")
        command = build_command(cls, header, bytes(view[offset:start]),
                                _stable_view(data, view[start:end]))
        command.sender_address = address
        commands.append(command)
        offset = end
    return commands


def extract_address(search_response):
    """(host, port) to connect to for a SearchResponse.

    An ip of 255.255.255.255 means "the address this datagram came from"
    (``sender_address``, set by read_datagram).
    """
    ip = search_response.ip
    if ip == "255.255.255.255":
        sender = getattr(search_response, "sender_address", None)
        if sender is None:
            raise LocalProtocolError(
                "SearchResponse asks for its sender's address but has no "
                "sender_address (was it parsed with read_datagram?)")
        ip = sender[0]
    return ip, search_response.port

"""Generate caproto/_headers.py from the table of CA 4.13 command layouts.

Run ``python caproto/_generate_headers.py`` after editing COMMANDS (it imports
nothing from caproto, so it works even when _headers.py is broken); a test
checks the checked-in _headers.py equals this script's output, so the two
cannot drift.  Each row says, for one command as sent by one role, which
argument (or constant) fills each of the five fixed header fields.  The
layouts are the facts of the CA protocol specification (CA_PROTO_* messages).
"""
import sys
from pathlib import Path

FIELDS = ("payload_size", "data_type", "data_count", "parameter1", "parameter2")

# name, command id, sender, {header field: constant int or (argument, kind)}.
# Fields left out are 0.  Kinds tell _commands.py how to show the value:
# 'int' plain, 'ip' dotted IPv4 (u32 on the wire), 'status' a CAStatus,
# 'type' a ChannelType.  'payload_size' as an argument means the message
# carries a variable payload that _commands.py builds.
_P = ("payload_size", "int")
_DT = ("data_type", "type")
_DC = ("data_count", "int")
COMMANDS = (
    ("VersionRequest", 0, "CLIENT",
     dict(data_type=("priority", "int"), data_count=("version", "int"))),
    ("VersionResponse", 0, "SERVER", dict(data_count=("version", "int"))),
    ("EventAddRequest", 1, "CLIENT",
     dict(payload_size=16, data_type=_DT, data_count=_DC,
          parameter1=("sid", "int"), parameter2=("subscriptionid", "int"))),
    ("EventAddResponse", 1, "SERVER",
     dict(payload_size=_P, data_type=_DT, data_count=_DC,
          parameter1=("status_code", "status"),
          parameter2=("subscriptionid", "int"))),
    ("EventCancelResponse", 1, "SERVER",
     dict(data_type=_DT, data_count=_DC, parameter1=("sid", "int"),
          parameter2=("subscriptionid", "int"))),
    ("EventCancelRequest", 2, "CLIENT",
     dict(data_type=_DT, data_count=_DC, parameter1=("sid", "int"),
          parameter2=("subscriptionid", "int"))),
    ("ReadRequest", 3, "CLIENT",
     dict(data_type=_DT, data_count=_DC, parameter1=("sid", "int"),
          parameter2=("ioid", "int"))),
    ("ReadResponse", 3, "SERVER",
     dict(payload_size=_P, data_type=_DT, data_count=_DC,
          parameter1=("sid", "int"), parameter2=("ioid", "int"))),
    ("WriteRequest", 4, "CLIENT",
     dict(payload_size=_P, data_type=_DT, data_count=_DC,
          parameter1=("sid", "int"), parameter2=("ioid", "int"))),
    ("SearchRequest", 6, "CLIENT",
     dict(payload_size=_P, data_type=("reply", "int"),
          data_count=("version", "int"), parameter1=("cid", "int"),
          parameter2=("cid", "int"))),
    ("SearchResponse", 6, "SERVER",
     dict(payload_size=8, data_type=("port", "int"), parameter1=("ip", "ip"),
          parameter2=("cid", "int"))),
    ("EventsOffRequest", 8, "CLIENT", {}),
    ("EventsOnRequest", 9, "CLIENT", {}),
    ("ReadSyncRequest", 10, "CLIENT", {}),
    ("ErrorResponse", 11, "SERVER",
     dict(payload_size=_P, parameter1=("cid", "int"),
          parameter2=("status", "status"))),
    ("ClearChannelRequest", 12, "CLIENT",
     dict(parameter1=("sid", "int"), parameter2=("cid", "int"))),
    ("ClearChannelResponse", 12, "SERVER",
     dict(parameter1=("sid", "int"), parameter2=("cid", "int"))),
    ("RsrvIsUpResponse", 13, "SERVER",
     dict(data_type=("version", "int"), data_count=("server_port", "int"),
          parameter1=("beacon_id", "int"), parameter2=("address", "ip"))),
    ("NotFoundResponse", 14, "SERVER",
     dict(data_type=10, data_count=("version", "int"),   # 10 == DO_REPLY
          parameter1=("cid", "int"), parameter2=("cid", "int"))),
    ("ReadNotifyRequest", 15, "CLIENT",
     dict(data_type=_DT, data_count=_DC, parameter1=("sid", "int"),
          parameter2=("ioid", "int"))),
    ("ReadNotifyResponse", 15, "SERVER",
     dict(payload_size=_P, data_type=_DT, data_count=_DC,
          parameter1=("status", "status"), parameter2=("ioid", "int"))),
    ("RepeaterConfirmResponse", 17, "SERVER",
     dict(parameter2=("repeater_address", "ip"))),
    ("CreateChanRequest", 18, "CLIENT",
     dict(payload_size=_P, parameter1=("cid", "int"),
          parameter2=("version", "int"))),
    ("CreateChanResponse", 18, "SERVER",
     dict(data_type=_DT, data_count=_DC, parameter1=("cid", "int"),
          parameter2=("sid", "int"))),
    ("WriteNotifyRequest", 19, "CLIENT",
     dict(payload_size=_P, data_type=_DT, data_count=_DC,
          parameter1=("sid", "int"), parameter2=("ioid", "int"))),
    ("WriteNotifyResponse", 19, "SERVER",
     dict(data_type=_DT, data_count=_DC, parameter1=("status", "status"),
          parameter2=("ioid", "int"))),
    ("ClientNameRequest", 20, "CLIENT", dict(payload_size=_P)),
    ("HostNameRequest", 21, "CLIENT", dict(payload_size=_P)),
    ("AccessRightsResponse", 22, "SERVER",
     dict(parameter1=("cid", "int"), parameter2=("access_rights", "int"))),
    ("EchoRequest", 23, "CLIENT", {}),
    ("EchoResponse", 23, "SERVER", {}),
    ("RepeaterRegisterRequest", 24, "CLIENT",
     dict(parameter2=("client_address", "ip"))),
    ("CreateChFailResponse", 26, "SERVER", dict(parameter1=("cid", "int"))),
    ("ServerDisconnResponse", 27, "SERVER", dict(parameter1=("cid", "int"))),
)

PREAMBLE = '''\
# auto-generated by caproto/_generate_headers.py -- do not edit.
"""Header layouts of every CA 4.13 command (generated; see _generate_headers.py).

Invariants: a header is 16 bytes big-endian (command u16, payload_size u16,
data_type u16, data_count u16, parameter1 u32, parameter2 u32).  When the
payload size or count does not fit 16 bits (>= 0xFFFF) the extended form is
used: payload_size field 0xFFFF, data_count field 0, then u32 payload size and
u32 count.  MessageHeader always holds the true sizes, whichever form.
"""
import struct
from collections import namedtuple

from ._constants import CLIENT, SERVER
from ._errors import LocalProtocolError

MessageHeader = namedtuple(
    "MessageHeader",
    "command payload_size data_type data_count parameter1 parameter2")

SHORT_HEADER = struct.Struct(">HHHHII")
_EXTENDED = struct.Struct(">HHHHIIII")
HEADER_SIZE = SHORT_HEADER.size
EXTENDED_HEADER_SIZE = _EXTENDED.size


def pack_header(header):
    """Wire bytes of a MessageHeader, choosing the extended form when needed."""
    command, payload_size, data_type, data_count, p1, p2 = header
    try:
        if payload_size >= 0xFFFF or data_count >= 0xFFFF:
            return _EXTENDED.pack(command, 0xFFFF, data_type, 0, p1, p2,
                                  payload_size, data_count)
        return SHORT_HEADER.pack(command, payload_size, data_type, data_count, p1, p2)
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(
            f"header field out of range or not an integer in {header!r}: {exc}"
        ) from None


def unpack_header(data, offset=0):
    """Parse the header at data[offset:]: (MessageHeader, header_nbytes).

    Returns (None, bytes_still_needed) when fewer bytes than the header are
    available, so callers never need to know about the extended form.
    """
    available = len(data) - offset
    if available < HEADER_SIZE:
        return None, HEADER_SIZE - available
    header = MessageHeader._make(SHORT_HEADER.unpack_from(data, offset))
    if header.payload_size != 0xFFFF or header.data_count != 0:
        return header, HEADER_SIZE
    if available < EXTENDED_HEADER_SIZE:
        return None, EXTENDED_HEADER_SIZE - available
    fields = _EXTENDED.unpack_from(data, offset)
    return MessageHeader(fields[0], fields[6], fields[2], fields[7],
                         fields[4], fields[5]), EXTENDED_HEADER_SIZE
'''


def _header_function(name, command_id, sender, layout):
    args = []
    for field in FIELDS:
        spec = layout.get(field, 0)
        if isinstance(spec, tuple) and spec[0] not in args:
            args.append(spec[0])
    values = [str(command_id)]
    for field in FIELDS:
        spec = layout.get(field, 0)
        values.append(spec[0] if isinstance(spec, tuple) else str(spec))
    return (f"\n\ndef {name}Header({', '.join(args)}):\n"
            f'    """Header of {name} (command {command_id}, sent by {sender})."""\n'
            f"    return MessageHeader({', '.join(values)})\n")


def _layout_entry(name, command_id, sender, layout):
    attrs = tuple((spec[0], field, spec[1]) for field, spec in layout.items()
                  if isinstance(spec, tuple) and field != "payload_size")
    unique = []
    for attr in attrs:                       # cid appears twice in searches
        if attr[0] not in [a[0] for a in unique]:
            unique.append(attr)
    variable = isinstance(layout.get("payload_size"), tuple)
    return (f"    {name!r}: ({command_id}, {sender}, {variable!r},\n"
            f"        {tuple(unique)!r}),\n")


def generate():
    """The full text of _headers.py."""
    parts = [PREAMBLE]
    for row in COMMANDS:
        parts.append(_header_function(*row))
    parts.append(
        "\n\n# name -> (command id, sender role, variable payload?,\n"
        "#          ((attribute, header field, kind), ...))\n"
        "COMMAND_LAYOUTS = {\n")
    for row in COMMANDS:
        parts.append(_layout_entry(*row))
    parts.append("}\n")
    return "".join(parts)


def main(argv=None):
    target = Path(__file__).with_name("_headers.py")
    target.write_text(generate())
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()

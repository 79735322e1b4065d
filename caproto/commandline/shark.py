"""caproto-shark: print the Channel Access commands held in a packet capture.

    tcpdump -i lo -w - port 5064 | caproto-shark
    caproto-shark capture.pcap

Reads classic pcap (any byte order, micro- or nanosecond stamps) and
pcapng, over Ethernet, Linux cooked (SLL, SLL2), BSD loopback or raw IP
links; IPv4 and IPv6; UDP and TCP.  TCP is reassembled per connection and
direction (retransmissions dropped, out-of-order segments held back) and
parsed with caproto's own receive buffer, so a command split over many
segments prints once, when complete.  The client side of a connection is
the one that sent the SYN (or, without a SYN, the one not on a CA port).
Each line: time, source -> destination, transport, command repr.
"""
import argparse
import datetime
import os
import struct
import sys

from .._buffer import ReceiveBuffer
from .._commands import read_datagram
from .._constants import CLIENT, NEED_DATA, SERVER
from .._env import get_environment_variables
from .._errors import ProtocolError

__all__ = ("read_packets", "decode", "main")

TOOL = "caproto-shark"
_PCAP_MAGIC = {b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
               b"\xa1\xb2\x3c\x4d": (">", 1e-9), b"\x4d\x3c\xb2\xa1": ("<", 1e-9)}
_PCAPNG_SHB = 0x0A0D0D0A
_TCP_SYN, _TCP_FIN, _TCP_RST = 0x02, 0x01, 0x04


# -- capture files ------------------------------------------------------------

def read_packets(stream):
    """Yield ``(timestamp, linktype, frame bytes)`` from a pcap/pcapng stream."""
    head = stream.read(4)
    if len(head) < 4:
        return
    if head in _PCAP_MAGIC:
        yield from _read_pcap(stream, head)
    elif struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        yield from _read_pcapng(stream, head)
    else:
        raise ValueError(f"not a pcap or pcapng capture (starts {head.hex()})")


def _read_exact(stream, size, what):
    data = stream.read(size)
    if len(data) < size:
        if data:
            print(f"{TOOL}: capture ends inside a {what}", file=sys.stderr)
        return None
    return data


def _read_pcap(stream, magic):
    order, unit = _PCAP_MAGIC[magic]
    rest = _read_exact(stream, 20, "file header")
    if rest is None:
        return
    linktype = struct.unpack(order + "HHiIII", rest)[5] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:
        header = _read_exact(stream, record.size, "packet header")
        if header is None:
            return
        seconds, fraction, included, _original = record.unpack(header)
        frame = _read_exact(stream, included, "packet")
        if frame is None:
            return
        yield seconds + fraction * unit, linktype, frame


def _read_pcapng(stream, first):
    interfaces = []                 # (linktype, seconds per tick)
    order = "<"
    block_type_bytes = first
    while True:
        length_bytes = _read_exact(stream, 4, "block")
        if length_bytes is None:
            return
        if struct.unpack("<I", block_type_bytes)[0] == _PCAPNG_SHB:
            body_start = _read_exact(stream, 4, "section header")
            order = "<" if body_start == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(order + "I", length_bytes)[0]
            body = body_start + _read_exact(stream, length - 12, "block")
            interfaces = []
        else:
            length = struct.unpack(order + "I", length_bytes)[0]
            body = _read_exact(stream, length - 8, "block")
            if body is None:
                return
        block_type = struct.unpack(order + "I", block_type_bytes)[0]
        if block_type == 1:                       # interface description
            linktype = struct.unpack(order + "H", body[:2])[0]
            interfaces.append((linktype, _pcapng_resolution(body[8:-4], order)))
        elif block_type == 6 and interfaces:      # enhanced packet
            iface, high, low, captured = struct.unpack(order + "IIII", body[:16])
            linktype, tick = interfaces[iface]
            yield ((high << 32) | low) * tick, linktype, body[20:20 + captured]
        elif block_type == 3 and interfaces:      # simple packet
            captured = struct.unpack(order + "I", body[:4])[0]
            yield 0.0, interfaces[0][0], body[4:4 + captured]
        block_type_bytes = _read_exact(stream, 4, "block")
        if block_type_bytes is None:
            return


def _pcapng_resolution(options, order):
    offset = 0
    while offset + 4 <= len(options):
        code, size = struct.unpack(order + "HH", options[offset:offset + 4])
        if code == 0:
            break
        if code == 9 and size >= 1:               # if_tsresol
            value = options[offset + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        offset += 4 + ((size + 3) & ~3)
    return 1e-6


# -- link, network and transport layers ---------------------------------------

def _network_payload(linktype, frame):
    """(ethertype-ish family, IP packet) for the link types tcpdump writes."""
    if linktype == 1:                              # Ethernet
        ethertype, offset = struct.unpack(">H", frame[12:14])[0], 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= offset + 4:
            ethertype = struct.unpack(">H", frame[offset + 2:offset + 4])[0]
            offset += 4
        return ethertype, frame[offset:]
    if linktype == 113:                            # Linux cooked v1
        return struct.unpack(">H", frame[14:16])[0], frame[16:]
    if linktype == 276:                            # Linux cooked v2
        return struct.unpack(">H", frame[0:2])[0], frame[20:]
    if linktype in (0, 108):                       # BSD loopback / OpenBSD
        family = struct.unpack("=I", frame[:4])[0]
        return (0x0800 if family == 2 else 0x86DD), frame[4:]
    if linktype in (12, 14, 101, 228, 229):        # raw IP
        version = frame[0] >> 4 if frame else 0
        return (0x0800 if version == 4 else 0x86DD), frame
    return None, b""


def _transport(frame, linktype):
    """(protocol, src, dst, segment) with addresses as (host, port)."""
    family, packet = _network_payload(linktype, frame)
    if family == 0x0800 and len(packet) >= 20:
        header_len = (packet[0] & 0x0F) * 4
        total = struct.unpack(">H", packet[2:4])[0] or len(packet)
        fragment = struct.unpack(">H", packet[6:8])[0]
        if fragment & 0x3FFF:                      # fragments: not handled
            return None
        protocol = packet[9]
        src, dst = _ipv4(packet[12:16]), _ipv4(packet[16:20])
        body = packet[header_len:total]
    elif family == 0x86DD and len(packet) >= 40:
        protocol = packet[6]
        src, dst = _ipv6(packet[8:24]), _ipv6(packet[24:40])
        body = packet[40:40 + struct.unpack(">H", packet[4:6])[0]]
    else:
        return None
    if protocol == 17 and len(body) >= 8:
        sport, dport = struct.unpack(">HH", body[:4])
        return "udp", (src, sport), (dst, dport), body[8:], None
    if protocol == 6 and len(body) >= 20:
        sport, dport, seq = struct.unpack(">HHI", body[:8])
        offset = (body[12] >> 4) * 4
        flags = body[13]
        return "tcp", (src, sport), (dst, dport), body[offset:], (seq, flags)
    return None


def _ipv4(raw):
    return ".".join(str(b) for b in raw)


def _ipv6(raw):
    import ipaddress
    return str(ipaddress.IPv6Address(raw))


class _Direction:
    """One direction of a TCP connection: in-order bytes into a parser."""

    def __init__(self):
        self.next_seq = None
        self.held = {}              # seq -> payload arriving early
        self.parser = None

    def accept(self, seq, flags, payload):
        """In-order payload bytes made available by this segment."""
        if flags & _TCP_SYN:
            self.next_seq = (seq + 1) & 0xFFFFFFFF
            return b""
        if self.next_seq is None:
            self.next_seq = seq
        if payload:
            self.held.setdefault(seq, payload)
        out = bytearray()
        while True:
            for start, data in list(self.held.items()):
                delta = (self.next_seq - start) & 0xFFFFFFFF
                if delta < len(data):                 # covers next_seq
                    out += data[delta:]
                    self.next_seq = (start + len(data)) & 0xFFFFFFFF
                    del self.held[start]
                    break
                if 0 < delta < 0x80000000:           # entirely old: a resend
                    del self.held[start]
                    break
            else:
                return bytes(out)


class Decoder:
    """Turns captured packets into (timestamp, src, dst, transport, command).

    `ports` are the CA ports (server and repeater) used to recognise UDP
    traffic and to tell client from server without a SYN.
    """

    def __init__(self, ports):
        self.ports = set(ports)
        self.connections = {}       # (src, dst) -> _Direction
        self.clients = {}           # frozenset({a, b}) -> client address

    def packet(self, timestamp, linktype, frame):
        parsed = _transport(frame, linktype)
        if parsed is None:
            return []
        protocol, src, dst, payload, tcp = parsed
        if protocol == "udp":
            return self._udp(timestamp, src, dst, payload)
        return self._tcp(timestamp, src, dst, payload, *tcp)

    def _udp(self, timestamp, src, dst, payload):
        if src[1] not in self.ports and dst[1] not in self.ports:
            return []
        roles = (SERVER, CLIENT) if src[1] in self.ports else (CLIENT, SERVER)
        for role in roles:
            try:
                commands = read_datagram(payload, src, role)
            except ProtocolError:
                continue
            return [(timestamp, src, dst, "udp", c) for c in commands]
        return [(timestamp, src, dst, "udp", f"<{len(payload)} bytes: not CA>")]

    def _tcp(self, timestamp, src, dst, payload, seq, flags):
        pair = frozenset((src, dst))
        if flags & _TCP_SYN and not flags & 0x10:      # SYN without ACK
            self.clients[pair] = src
            self.connections.pop((src, dst), None)
            self.connections.pop((dst, src), None)
        client = self.clients.get(pair)
        if client is None:
            if src[1] not in self.ports and dst[1] not in self.ports:
                return []
            client = dst if src[1] in self.ports else src
            self.clients[pair] = client
        direction = self.connections.get((src, dst))
        if direction is None:
            direction = self.connections[(src, dst)] = _Direction()
            role = CLIENT if src == client else SERVER
            direction.parser = ReceiveBuffer(role, 2 ** 32)
        data = direction.accept(seq, flags, payload)
        out = []
        if data and direction.parser is not None:
            try:
                direction.parser.feed(data)
                while True:
                    command = direction.parser.next_command()
                    if command is NEED_DATA:
                        break
                    out.append((timestamp, src, dst, "tcp", command))
            except ProtocolError as exc:
                out.append((timestamp, src, dst, "tcp",
                            f"<stream not CA, decoding stopped: {exc}>"))
                direction.parser = None
        if flags & (_TCP_FIN | _TCP_RST):
            self.connections.pop((src, dst), None)
        return out


def decode(stream, ports):
    """Every CA command in the capture, as (time, src, dst, transport, cmd)."""
    decoder = Decoder(ports)
    for timestamp, linktype, frame in read_packets(stream):
        yield from decoder.packet(timestamp, linktype, frame)


def _address(address):
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_record(timestamp, src, dst, transport, command):
    when = datetime.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S.%f")
    return f"{when} {_address(src)} -> {_address(dst)} {transport} {command!r}" \
        if not isinstance(command, str) else \
        f"{when} {_address(src)} -> {_address(dst)} {transport} {command}"


def default_ports():
    values = get_environment_variables()
    return sorted({5064, 5065, values["EPICS_CA_SERVER_PORT"],
                   values["EPICS_CA_REPEATER_PORT"]})


def build_parser():
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Print the Channel Access commands in a packet "
        "capture (pcap or pcapng, from a file or stdin).")
    parser.add_argument("capture", nargs="?", default="-",
                        help="capture file; '-' or nothing reads stdin "
                        "(e.g. tcpdump -w - | caproto-shark)")
    parser.add_argument("--port", type=int, action="append", dest="ports",
                        help="a CA port (repeatable; default 5064, 5065 and "
                        "EPICS_CA_SERVER_PORT / EPICS_CA_REPEATER_PORT)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ports = args.ports or default_ports()
    try:
        if args.capture == "-":
            stream = sys.stdin.buffer
        else:
            stream = open(args.capture, "rb")
        with stream:
            for record in decode(stream, ports):
                print(format_record(*record), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as exc:
        print(f"{TOOL}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

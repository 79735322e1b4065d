"""IPv4 interfaces of this host and their broadcast addresses, stdlib only.

Not part of the sans-I/O core: it asks the kernel (ioctl SIOCGIFCONF /
SIOCGIFNETMASK / SIOCGIFFLAGS on Linux).  Where that is unavailable it
falls back to what can be known without asking: the loopback network.

Invariants: nothing here sends a packet; results are plain tuples; a
loopback interface (which has no broadcast flag) gets ``address | ~netmask``
as its broadcast address (127.0.0.1/8 -> 127.255.255.255), the address
epics-base binds to receive loopback broadcasts.
"""
import array
import ipaddress
import socket
import struct
from collections import namedtuple

__all__ = ("Interface", "get_interfaces", "get_broadcast_addresses",
           "broadcast_address_of")

Interface = namedtuple("Interface", "name address netmask broadcast loopback up")

_SIOCGIFCONF = 0x8912
_SIOCGIFFLAGS = 0x8913
_SIOCGIFNETMASK = 0x891B
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFREQ_SIZE = 40              # struct ifreq on 64-bit Linux
_LOOPBACK_FALLBACK = Interface("lo", "127.0.0.1", "255.0.0.0",
                               "127.255.255.255", True, True)


def _ioctl_interfaces():
    import fcntl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        size = 64 * _IFREQ_SIZE
        buffer = array.array("B", bytes(size))
        address, _length = buffer.buffer_info()
        request = struct.pack("iL", size, address)
        used = struct.unpack("iL", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF,
                                               request))[0]
        raw = buffer.tobytes()[:used]
        result = []
        for offset in range(0, used, _IFREQ_SIZE):
            name = raw[offset:offset + 16].split(b"\0", 1)[0]
            ip = socket.inet_ntoa(raw[offset + 20:offset + 24])
            ifreq = struct.pack("16s24x", name)
            flags = struct.unpack_from(
                "H", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq), 16)[0]
            mask = socket.inet_ntoa(
                fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, ifreq)[20:24])
            network = ipaddress.IPv4Network(f"{ip}/{mask}", strict=False)
            result.append(Interface(name.decode(), ip, mask,
                                    str(network.broadcast_address),
                                    bool(flags & _IFF_LOOPBACK),
                                    bool(flags & _IFF_UP)))
        return result


def get_interfaces():
    """Every IPv4 interface as ``Interface(name, address, netmask, broadcast,
    loopback, up)``; just loopback where the kernel cannot be asked."""
    try:
        found = _ioctl_interfaces()
    except (ImportError, OSError, struct.error, ValueError):
        found = []
    return found or [_LOOPBACK_FALLBACK]


def get_broadcast_addresses(include_loopback=False):
    """Broadcast addresses of the interfaces that are up (auto address lists)."""
    addresses = []
    for interface in get_interfaces():
        if not interface.up or (interface.loopback and not include_loopback):
            continue
        if interface.broadcast not in addresses:
            addresses.append(interface.broadcast)
    return addresses


def broadcast_address_of(ip):
    """Broadcast address of the interface holding `ip`; None for 0.0.0.0 or unknown.

    A 127.x address is always on the loopback network, even when the
    kernel lists only 127.0.0.1.
    """
    if ip in ("0.0.0.0", ""):
        return None
    for interface in get_interfaces():
        if interface.address == ip:
            return interface.broadcast
    if ip.startswith("127."):
        return "127.255.255.255"
    return None

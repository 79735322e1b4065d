"""Plain stdlib sockets for the server layers: binding, beacons, client
options, and how outgoing buffers are grouped into writes.

Invariants: every socket returned is non-blocking and configured as rsrv
configures its own (SO_REUSEADDR, plus SO_REUSEPORT for UDP so several
servers share a host's CA port); nothing here knows an async library; the
layers wrap these sockets in their own socket objects.
"""
import logging
import socket

from .._netifaces import broadcast_address_of

__all__ = ("bind_udp_sockets", "bind_tcp_sockets", "make_beacon_socket",
           "send_beacons", "answer_datagram", "start_hooks", "configure_client_socket",
           "coalesce", "CLIENT_RCVBUF")

log = logging.getLogger("caproto.ctx")

#: Kernel receive buffer per client: bounds what a flooding client can queue
#: ahead of everyone (it would be applied long after the client left).
CLIENT_RCVBUF = 1 << 17


def _reuse(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError:
            pass


def bind_udp_sockets(context):
    """[(socket, interface)]: one per interface, plus its broadcast address.

    A socket bound to 127.0.0.1 does not see datagrams sent to
    127.255.255.255, so (as rsrv does) a specific interface also gets a
    socket bound to its broadcast address; answers go out of the first.
    """
    result = []
    for interface in context.interfaces:
        hosts = [interface]
        broadcast = broadcast_address_of(interface)
        if broadcast is not None and broadcast != interface:
            hosts.append(broadcast)
        for host in hosts:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            _reuse(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                sock.bind((host, context.ca_server_port))
            except OSError:
                sock.close()
                if host == interface:
                    raise
                log.warning("cannot bind %s:%d; broadcast searches on %s will "
                            "go unanswered", host, context.ca_server_port, interface)
                continue
            sock.setblocking(False)
            result.append((sock, interface))
    return result


def bind_tcp_sockets(context, backlog=128):
    """Listening sockets on every interface, all on one port (set as context.port).

    EPICS_CAS_SERVER_PORT when free, else one the kernel picks, as rsrv does
    when another server holds the port (clients learn it from the search).
    """
    sockets, port = [], context.ca_server_port
    for index, interface in enumerate(context.interfaces):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set before listen() so accepted sockets advertise the bounded window.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        try:
            sock.bind((interface, port))
        except OSError:
            if index:
                sock.close()
                raise
            sock.bind((interface, 0))
            port = sock.getsockname()[1]
            log.info("TCP port %d is in use; serving on %d",
                     context.ca_server_port, port)
        sock.listen(backlog)
        sock.setblocking(False)
        sockets.append(sock)
    context.port = port
    return sockets


def make_beacon_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setblocking(False)
    return sock


def send_beacons(context, sock):
    """Send one beacon to every EPICS_CAS_BEACON_ADDR_LIST address (never raises)."""
    for interface in context.interfaces[:1]:
        datagram = context.beacon_datagram(interface)
        for address in context.beacon_addresses:
            try:
                sock.sendto(datagram, address)
            except OSError as exc:
                log.debug("beacon to %s failed: %s", address, exc)


def answer_datagram(context, reply_socket, data, address, interface):
    """Send the context's answers to one received datagram; a reply that
    cannot be sent (the searcher went away) is not an error of ours."""
    for datagram, destination in context.handle_datagram(data, address, interface):
        try:
            reply_socket.sendto(datagram, destination)
        except OSError as exc:
            log.debug("search reply to %s failed: %s", destination, exc)


def start_hooks(context, startup_hook=None):
    """What a layer starts as tasks once serving: the caller's hook, then
    every PV's startup and scan hooks (each called with the async layer)."""
    hooks = [startup_hook] if startup_hook is not None else []
    return hooks + context.hooks("server_startup") + context.hooks("server_scan")


def configure_client_socket(sock):
    """TCP_NODELAY: replies must not wait for Nagle / delayed ACKs.  (The
    bounded receive buffer, CLIENT_RCVBUF, is inherited from the listener.)"""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def coalesce(buffers, large=1 << 16):
    """Buffers joined into few writes; a large one (an array payload) is
    passed on by itself instead of being copied into a join."""
    small = []
    for buffer in buffers:
        if memoryview(buffer).nbytes >= large:
            if small:
                yield b"".join(small)
                small = []
            yield buffer
        else:
            small.append(buffer)
    if small:
        yield b"".join(small)

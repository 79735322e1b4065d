"""Plain stdlib sockets for the server layers: binding, beacons, client
options, and how a circuit's outgoing buffers reach its socket.

Invariants: every socket returned is non-blocking and configured as rsrv
configures its own (SO_REUSEADDR, plus SO_REUSEPORT for UDP so several
servers share a host's CA port); nothing here knows an async library; the
layers wrap these sockets in their own socket objects.  ``send_all`` writes
a circuit's buffers whole and in order and never copies a large one.
"""
import logging
import socket

from .._netifaces import broadcast_address_of

__all__ = ("bind_udp_sockets", "bind_tcp_sockets", "make_beacon_socket",
           "send_beacons", "send_answers", "answer_waiting_datagrams",
           "start_hooks", "configure_client_socket", "gather", "send_all",
           "CLIENT_RCVBUF")

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


def send_answers(reply_socket, answers):
    """Send ``[(datagram, address)]``; a reply that cannot be sent (the
    searcher went away) is not an error of ours."""
    for datagram, destination in answers:
        try:
            reply_socket.sendto(datagram, destination)
        except OSError as exc:
            log.debug("search reply to %s failed: %s", destination, exc)


def search_endpoints(udp_sockets):
    """[(socket, reply socket, interface)] for `udp_sockets` (from
    bind_udp_sockets): answers go out of the interface's own socket, so a
    search received on its broadcast address is answered from the
    interface's address."""
    replies = {}
    for sock, interface in udp_sockets:
        replies.setdefault(interface, sock)
    return [(sock, replies[interface], interface) for sock, interface in udp_sockets]


def answer_waiting_datagrams(context, sock, reply_socket, interface, limit=64):
    """Answer up to `limit` datagrams already waiting on non-blocking `sock`:
    the work of one readiness callback, so a burst of search datagrams costs
    one wakeup of the loop, not one each, and its answers share datagrams."""
    received = []
    for _ in range(limit):
        try:
            received.append(sock.recvfrom(65536))
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:         # e.g. an ICMP error queued on the socket
            log.debug("UDP receive on %s failed: %s", interface, exc)
            break
    if received:
        send_answers(reply_socket, context.handle_datagrams(received, interface))


def start_hooks(context, startup_hook=None):
    """What a layer starts as tasks once serving: the caller's hook, then
    every PV's startup and scan hooks (each called with the async layer)."""
    hooks = [startup_hook] if startup_hook is not None else []
    return hooks + context.hooks("server_startup") + context.hooks("server_scan")


def configure_client_socket(sock):
    """Options for an accepted circuit's socket (`sock`: any object with
    ``setsockopt``); the bounded receive buffer, CLIENT_RCVBUF, is inherited
    from the listener.

    - TCP_NODELAY: replies must not wait for Nagle / delayed ACKs.
    - TCP_NOTSENT_LOWAT 0 (the system default), whatever a library set:
      trio's SocketStream sets 16 kB, which would cut an 8 MB array into
      ~200 kB writes, one wakeup each.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_NOTSENT_LOWAT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 0)


#: Buffers passed to one sendmsg call at most (Linux's IOV_MAX).
IOV_MAX = 1024
#: A buffer this large (an array payload) is sent from where it is, never joined.
LARGE = 1 << 16


def gather(buffers, large=LARGE):
    """`buffers` as a list for one sendmsg: each run of small buffers joined
    (one copy of a few kB beats many iovecs), each large one a byte view of
    itself, so an 8 MB payload goes from its array to the kernel uncopied and
    in the same call as the header before it."""
    views, small = [], []
    for buffer in buffers:
        view = memoryview(buffer)
        if view.nbytes >= large:
            if small:
                views.append(b"".join(small))
                small = []
            views.append(view.cast("B") if view.format != "B" or view.ndim != 1
                         else view)
        elif view.nbytes:
            small.append(buffer)
    if small:
        views.append(b"".join(small))
    return views


def _skip(views, sent):
    """Drop the first `sent` bytes of `views` (a list of bytes-likes, in place)."""
    while sent:
        first = views[0]
        if sent < len(first):
            views[0] = memoryview(first)[sent:]
            return
        sent -= len(first)
        del views[0]


async def send_all(sendmsg, wait_writable, buffers):
    """Write every byte of `buffers`, in order, with the layer's ``await
    sendmsg(views) -> bytes sent`` and ``await wait_writable()``.

    After a partial send the socket is full: waiting for writability before
    the next call (rather than retrying at once) sends in few large calls
    instead of many slivers.  The caller holds its circuit's write lock:
    nothing else may write to the socket until this returns, or bytes of two
    messages would interleave.
    """
    views = gather(buffers)
    while True:
        _skip(views, await sendmsg(views[:IOV_MAX]))
        if not views:
            return
        await wait_writable()

"""A Channel Access repeater: one UDP port on a host that fans beacons out.

Servers send beacons (RsrvIsUpResponse) to the repeater port; only one
process per host can own that port, so every client on the host registers
with the repeater (RepeaterRegisterRequest from its own UDP port) and the
repeater forwards each datagram it receives to every registered client.

Behaviour, as epics-base's caRepeater has it:
- A registration (or an empty datagram, which old clients send) is answered
  with RepeaterConfirmResponse carrying the address the request came from;
  every other client then gets a 16-byte no-op (a version header), and
  clients whose port is free again (their process is gone) are dropped.
- Any other datagram is forwarded unchanged to every client except its
  sender.  A beacon whose address field is 0 gets the sender's address.
- Each client has its own *connected* UDP socket, so an ICMP "port
  unreachable" shows up as ConnectionRefusedError on the next send and the
  client is dropped then.

`RepeaterState` is the bookkeeping (no sockets); `run()` is the I/O loop.
"""
import logging
import socket
import struct
import time

from ._commands import (RepeaterConfirmResponse, RsrvIsUpResponse,
                        VersionRequest, read_datagram)
from ._constants import CLIENT, SERVER
from ._env import get_environment_variables
from ._errors import RemoteProtocolError

__all__ = ("RepeaterState", "run")

logger = logging.getLogger("caproto.repeater")

_HEADER = struct.Struct(">HHHHII")
_REPEATER_REGISTER = 24
_RSRV_IS_UP = 13
#: What a registered client gets whenever another client registers.
NOOP = bytes(VersionRequest(priority=0, version=0))


class RepeaterState:
    """Who is registered, and what to send for each datagram received.

    ``receive(data, address)`` returns ``[(bytes, destination), ...]``; the
    caller sends them and reports unreachable clients with ``drop(address)``.
    """

    def __init__(self):
        self.clients = []            # (host, port), in registration order

    def receive(self, data, address):
        if len(data) == 0:
            return self._register(address)
        if len(data) >= _HEADER.size:
            command = _HEADER.unpack_from(data)[0]
            if command == _REPEATER_REGISTER:
                return self._register(address)
            if command == _RSRV_IS_UP:
                data = _fill_beacon_address(data, address)
        return [(data, client) for client in self.clients if client != address]

    def _register(self, address):
        out = [(bytes(RepeaterConfirmResponse(address[0])), address)]
        if address not in self.clients:
            self.clients.append(address)
            logger.info("client %s:%d registered (%d in all)", *address,
                         len(self.clients))
        out += [(NOOP, client) for client in self.clients if client != address]
        return out

    def drop(self, address):
        if address in self.clients:
            self.clients.remove(address)
            logger.info("client %s:%d is gone", *address)


def _fill_beacon_address(data, address):
    """A beacon saying address 0 means "where I come from": say so."""
    try:
        commands = read_datagram(data, address, SERVER)
    except RemoteProtocolError:
        return data
    out = []
    for command in commands:
        if isinstance(command, RsrvIsUpResponse) and command.address == "0.0.0.0":
            command = RsrvIsUpResponse(command.version, command.server_port,
                                       command.beacon_id, address[0])
        out.append(bytes(command))
    return b"".join(out)


def describe(data, address):
    """Readable summary of a datagram for the debug log."""
    for role in (SERVER, CLIENT):
        try:
            return ", ".join(repr(c) for c in read_datagram(data, address, role))
        except RemoteProtocolError:
            continue
    return f"{len(data)} unparsed bytes"


def _port_is_free(address):
    """True when nobody holds UDP `address` any more (its client exited)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class _Outbox:
    """One connected UDP socket per client, so refusals name the client."""

    def __init__(self, state):
        self.state = state
        self.sockets = {}

    def send(self, data, address):
        sock = self.sockets.get(address)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                self.forget(address)
                return
            self.sockets[address] = sock
        try:
            sock.send(data)
        except OSError:                  # ECONNREFUSED: nobody listens there
            self.forget(address)

    def forget(self, address):
        self.state.drop(address)
        sock = self.sockets.pop(address, None)
        if sock is not None:
            sock.close()

    def prune(self, keep):
        """Drop clients (except `keep`) whose UDP port has been released."""
        for address in list(self.state.clients):
            if address != keep and address[0].startswith("127.") and _port_is_free(address):
                self.forget(address)

    def close(self):
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()


def run(host="0.0.0.0", port=None, *, duration=None, ready=None):
    """Serve as the host's repeater until interrupted (or `duration` s pass).

    `port` defaults to EPICS_CA_REPEATER_PORT.  Raises OSError (EADDRINUSE)
    when another repeater already owns the port.  `ready`, if given, is
    called with the bound (host, port) once datagrams can arrive.
    """
    if port is None:
        port = get_environment_variables()["EPICS_CA_REPEATER_PORT"]
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.settimeout(0.5)
    state = RepeaterState()
    outbox = _Outbox(state)
    deadline = None if duration is None else time.monotonic() + duration
    logger.info("repeater listening on %s:%d", host, port)
    if ready is not None:
        ready(listener.getsockname())
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                data, address = listener.recvfrom(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:  # Windows reports ICMP refusals here
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s:%d -> %s", *address, describe(data, address))
            registering = len(data) == 0 or (
                len(data) >= _HEADER.size
                and _HEADER.unpack_from(data)[0] == _REPEATER_REGISTER)
            if registering:
                outbox.prune(keep=address)
            for payload, destination in state.receive(data, address):
                outbox.send(payload, destination)
    finally:
        outbox.close()
        listener.close()

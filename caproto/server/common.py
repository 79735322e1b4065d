"""The library-agnostic CA server: the pvdb, UDP answers, beacons and circuits.

Invariants:
- All protocol behaviour lives in this package; a layer (asyncio/curio/trio)
  only binds the sockets sockets.py describes, feeds datagrams to
  ``Context.handle_datagrams`` and each accepted TCP connection to a
  CircuitHandler from ``Context.new_circuit`` (circuit.py), runs tasks and
  supplies a ``Wakeup`` (see typing.py).
- A datagram we cannot parse is ignored (logged at debug level); a search
  for a name we do not serve gets an answer only when the client asked for
  one (DO_REPLY), as rsrv does.
"""
import gc
import logging
import weakref

from .._broadcaster import Broadcaster
from .._commands import RsrvIsUpResponse, SearchRequest, VersionRequest
from .._constants import DEFAULT_PROTOCOL_VERSION, SERVER
from .._env import (get_beacon_address_list, get_environment_variables,
                    get_server_address_list, get_server_ignore_list)
from .._errors import RemoteProtocolError
from .._fastlane import SearchAnswers, scan_search_datagram
from .._netifaces import get_broadcast_addresses
from .circuit import (  # noqa: F401  (re-exported: the layers' names for them)
    EVENT_QUEUE_BYTES, OUTBOX_LIMIT, PENDING_PER_SUBSCRIPTION, RECV_CHUNK,
    CircuitHandler, DroppedCircuit, Subscription)
from .names import resolve

__all__ = ("Context", "CircuitHandler", "Subscription", "DroppedCircuit",
           "OUTBOX_LIMIT", "EVENT_QUEUE_BYTES", "PENDING_PER_SUBSCRIPTION")

BEACON_START = 0.02                # first beacon interval; doubles up to the period
log = logging.getLogger("caproto.ctx")
circuit_log = logging.getLogger("caproto.circ")
_contexts = weakref.WeakSet()      # every Context made, for contexts_serving


def contexts_serving_now():
    """Every live Context that has bound its port (is serving or about to)."""
    return [context for context in list(_contexts) if context.port is not None]


def contexts_serving(data):
    """The live Contexts whose pvdb holds ChannelData `data` (stats.py counts
    their clients and channels)."""
    return [context for context in list(_contexts)
            if any(item is data for item in context.pvdb.values())]


class Context:
    """What every layer's server Context shares: the pvdb, UDP logic, circuits.

    A layer subclass adds ``async run(...)``; it binds with the helpers in
    sockets.py (which set ``port`` to the TCP port it got), and feeds sockets to
    ``handle_datagram`` / ``new_circuit``.
    """

    def __init__(self, pvdb, interfaces=None):
        self.pvdb = pvdb
        _contexts.add(self)
        if interfaces is None:
            interfaces = get_server_address_list()
        elif isinstance(interfaces, str):
            interfaces = interfaces.split()
        self.interfaces = list(interfaces)
        self.environ = get_environment_variables()
        self.ca_server_port = self.environ["EPICS_CAS_SERVER_PORT"]
        self.max_array_bytes = self.environ["EPICS_CA_MAX_ARRAY_BYTES"]
        self.beacon_period = self.environ["EPICS_CAS_BEACON_PERIOD"]
        self.ignore_addresses = frozenset(get_server_ignore_list())
        self.beacon_addresses = get_beacon_address_list(
            auto_addresses=get_broadcast_addresses())
        self.broadcaster = Broadcaster(SERVER)
        self.circuits = set()
        self.port = None
        self.log = log
        self._beacon_id = 0
        self._search_answers = {}         # interface -> SearchAnswers

    #: ``freeze_startup_heap`` freezes when the pvdb holds at least this many
    #: PVs (None: never); a class attribute so an application can change it.
    freeze_heap_from = 1000

    def freeze_startup_heap(self):
        """Exempt what exists when serving starts from the cyclic collector.

        A layer's ``run`` calls this once it serves.  The pvdb lives as long
        as the server, yet every full collection would walk all of it: with
        10,000 PVs that is a ~55 ms pause in the middle of serving (measured
        during a 10,000-channel connect).  ``gc.freeze`` moves the objects
        alive now to a generation the collector skips; reference counting
        still frees them.  Cyclic garbage among them is kept until
        ``gc.unfreeze()``: a PV removed later with cycles is not reclaimed.
        A small pvdb costs little to walk, and the collection before the
        freeze is not free, so only a large one is frozen.
        """
        if self.freeze_heap_from is not None and len(self.pvdb) >= self.freeze_heap_from:
            gc.collect()           # garbage would be frozen too
            gc.freeze()

    def log_serving(self, layer):
        """The startup log line: where we listen and where beacons go, which
        is what someone whose client cannot find the server needs to see."""
        log.info("server on %s port %d (%s); beacons to %s%s", self.interfaces,
                 self.port, layer,
                 ", ".join(f"{host}:{port}" for host, port in self.beacon_addresses)
                 or "nowhere",
                 f"; ignoring searches from {', '.join(sorted(self.ignore_addresses))}"
                 if self.ignore_addresses else "")

    def __repr__(self):
        return (f"<{type(self).__name__} interfaces={self.interfaces} "
                f"port={self.port} pvs={len(self.pvdb)}>")

    def resolve(self, name):
        """ResolvedName for a client's channel name, or None (names.resolve)."""
        return resolve(self.pvdb, name)

    # -- UDP --------------------------------------------------------------

    def handle_datagram(self, data, address, interface="0.0.0.0"):
        """Answers to one datagram received on `interface`: [(bytes, address)]."""
        return self.handle_datagrams([(data, address)], interface)

    def handle_datagrams(self, received, interface="0.0.0.0"):
        """Answers to datagrams received together on `interface`, given as
        ``[(data, address)]``: ``[(bytes, address)]``.  The answers to
        consecutive datagrams from one address share reply datagrams
        (SearchAnswers.datagrams): a client's burst of 64 searches is
        answered in about half as many."""
        replies = self._search_answers.get(interface)
        if replies is None or replies.port != self.port:
            reply_ip = "255.255.255.255" if interface in ("0.0.0.0", "") else interface
            replies = self._search_answers[interface] = SearchAnswers(self.port, reply_ip)
        out, destination, runs = [], None, []
        for data, address in received:
            if address[0] in self.ignore_addresses:
                continue
            version, answers = self._answers(data, address, replies)
            if not answers:
                continue
            if address != destination:
                out.extend((datagram, destination) for datagram in replies.datagrams(*runs))
                destination, runs = address, []
            runs.append((version, answers))
        out.extend((datagram, destination) for datagram in replies.datagrams(*runs))
        return out

    def _answers(self, data, address, replies):
        """(version echo, [answer bytes]) for one datagram's searches."""
        scanned = scan_search_datagram(data)       # the fast lane: searches only
        if scanned is None:
            try:
                commands = self.broadcaster.recv(data, address)
            except RemoteProtocolError as exc:
                log.debug("ignoring a bad datagram from %s: %s", address, exc)
                return None, ()
            scanned = (None, [])
            for command in commands:
                if type(command) is VersionRequest:
                    header = command.header
                    scanned = ((header.data_type, header.parameter1), scanned[1])
                elif type(command) is SearchRequest:
                    scanned[1].append((command.cid, command.name, command.reply))
        version, searches = scanned
        return version, replies.answers(searches, self.pvdb, self.resolve)

    def beacon_datagram(self, interface="0.0.0.0"):
        """One RsrvIsUp beacon (the id increases with every call)."""
        address = "0.0.0.0" if interface in ("", "0.0.0.0") else interface
        beacon = RsrvIsUpResponse(DEFAULT_PROTOCOL_VERSION, self.port,
                                  self._beacon_id, address)
        self._beacon_id = (self._beacon_id + 1) % (1 << 32)
        return self.broadcaster.send(beacon)

    def beacon_intervals(self):
        """Seconds to wait between beacons: 0.02 doubling up to the period."""
        interval = min(BEACON_START, self.beacon_period)
        while True:
            yield interval
            interval = min(interval * 2, self.beacon_period)

    # -- TCP and the pvdb ----------------------------------------------------

    def new_circuit(self, address, wakeup):
        handler = CircuitHandler(self, address, wakeup)
        self.circuits.add(handler)
        circuit_log.debug("connection from %s", address)
        return handler

    async def circuit_closed(self, handler, error=None):
        """The layer lost `handler`'s socket (error: why it dropped it)."""
        self.circuits.discard(handler)
        if error is not None:
            circuit_log.warning(
                "dropped client %s (host %r, user %r): %s", handler.address,
                handler.circuit.host_name, handler.circuit.client_name, error)
        await handler.close()

    async def remove_pvs(self, *names):
        """Take PVs out of the pvdb; clients connected to them get ServerDisconn."""
        for name in names:
            data = self.pvdb.pop(name)
            for handler in list(self.circuits):
                await handler.disconnect_data(data)

    async def refresh_access_rights(self):
        """Recompute rights on every circuit (e.g. after an ACF file changed)."""
        for handler in list(self.circuits):
            await handler.refresh_access_rights()

    def hooks(self, attribute):
        """Each distinct non-None `attribute` (server_startup/_scan/_shutdown) of
        the pvdb's values, called by the layer as ``await hook(async_lib)``."""
        found, seen = [], set()
        for data in self.pvdb.values():
            hook = getattr(data, attribute, None)
            if hook is not None and id(data) not in seen:
                seen.add(id(data))
                found.append(hook)
        return found

    def pv_names_text(self):
        return "PVs available:\n" + "\n".join(f"    {name}" for name in self.pvdb)

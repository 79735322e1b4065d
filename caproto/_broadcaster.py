"""UDP side of Channel Access: searches, beacons and the repeater, sans I/O.

Invariants:
- UDP has no connection state: a command is legal when its sender's role
  may put it in a datagram (_state.BROADCAST_COMMANDS); that is all
  ``send`` and ``recv`` check.  A refused command raises LocalProtocolError
  when we send it and RemoteProtocolError when a peer did.
- Every datagram carrying searches (or search answers) starts with a
  version message, as libca and rsrv write them; ``send`` adds one when the
  caller did not.  One call to ``send`` is one datagram, never larger than
  SEARCH_MAX_DATAGRAM_BYTES.
"""
from ._commands import (
    NotFoundResponse, RepeaterConfirmResponse, RepeaterRegisterRequest,
    SearchRequest, SearchResponse, VersionRequest, VersionResponse,
    bytelen, read_datagram,
)
from ._constants import (CLIENT, DEFAULT_PROTOCOL_VERSION, MAX_ID,
                         SEARCH_MAX_DATAGRAM_BYTES, SERVER)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._state import BROADCAST_COMMANDS

__all__ = ("Broadcaster",)

_OTHER = {CLIENT: SERVER, SERVER: CLIENT}
# Commands that must follow a version message in the same datagram, and the
# version message each sender uses.
_NEEDS_VERSION = {CLIENT: (SearchRequest,),
                  SERVER: (SearchResponse, NotFoundResponse)}


class Broadcaster:
    """Serialise and parse CA datagrams for a client, server or repeater.

    A client calls ``search(name)`` (or ``search_datagrams`` for many names),
    ``register()`` for the repeater, and ``recv`` for what comes back.
    A server answers each search with ``send(SearchResponse(...))``, which
    comes out as VersionResponse + SearchResponse, the pair libca expects:
    the SearchResponse echoes the request's cid, and its ip may be
    255.255.255.255 for "the address this datagram came from".
    """

    def __init__(self, our_role, protocol_version=DEFAULT_PROTOCOL_VERSION):
        if our_role not in (CLIENT, SERVER):
            raise LocalProtocolError(
                f"our_role must be CLIENT or SERVER, not {our_role!r}")
        self.our_role = our_role
        self.their_role = _OTHER[our_role]
        self.protocol_version = protocol_version
        self.unanswered_searches = {}     # search id -> name
        self.registered = False           # a RepeaterConfirmResponse arrived
        self._search_id = 0

    def __repr__(self):
        return f"<Broadcaster {self.our_role}>"

    # -- commands ----------------------------------------------------------

    def new_search_id(self):
        """A search id (the cid of a SearchRequest) not awaiting an answer."""
        for _ in range(len(self.unanswered_searches) + 1):
            candidate = self._search_id
            self._search_id = (candidate + 1) % (MAX_ID + 1)
            if candidate not in self.unanswered_searches:
                return candidate
        raise LocalProtocolError("every search id is in use")  # pragma: no cover

    def _version_command(self):
        if self.our_role is CLIENT:
            return VersionRequest(priority=0, version=self.protocol_version)
        return VersionResponse(self.protocol_version)

    def search(self, name, cid=None):
        """(VersionRequest, SearchRequest) asking who serves `name`.

        The id is remembered in ``unanswered_searches`` until ``recv`` sees
        a SearchResponse for it (or the caller calls ``forget_search``).
        """
        if self.our_role is not CLIENT:
            raise LocalProtocolError("only a client searches")
        if cid is None:
            cid = self.new_search_id()
        request = SearchRequest(name, cid, self.protocol_version)
        self.unanswered_searches[cid] = name
        return (self._version_command(), request)

    def forget_search(self, cid):
        """Stop expecting an answer for search id `cid` (e.g. timed out)."""
        self.unanswered_searches.pop(cid, None)

    def search_datagrams(self, names):
        """Datagrams searching for every name, packed as libca packs them.

        Returns ``[(datagram_bytes, {cid: name, ...}), ...]``: each datagram
        starts with a VersionRequest and holds as many SearchRequests as fit
        in SEARCH_MAX_DATAGRAM_BYTES.
        """
        datagrams = []
        version = self._version_command()
        batch, ids = [], {}
        for name in names:
            _version, request = self.search(name)
            if batch and (bytelen(version.buffers) + sum(
                    len(c) for c in batch) + len(request)
                    > SEARCH_MAX_DATAGRAM_BYTES):
                datagrams.append((self.send(version, *batch), ids))
                batch, ids = [], {}
            batch.append(request)
            ids[request.cid] = name
        if batch:
            datagrams.append((self.send(version, *batch), ids))
        return datagrams

    def register(self, ip="0.0.0.0"):
        """RepeaterRegisterRequest announcing our address to the repeater."""
        if self.our_role is not CLIENT:
            raise LocalProtocolError("only a client registers with a repeater")
        return RepeaterRegisterRequest(ip)

    # -- bytes -------------------------------------------------------------

    def send(self, *commands):
        """One datagram holding `commands` (bytes).

        A version message is put first when the datagram carries searches or
        search answers without one.
        """
        commands = list(commands)
        self._check(self.our_role, commands, LocalProtocolError)
        needs_version = _NEEDS_VERSION[self.our_role]
        if (any(isinstance(c, needs_version) for c in commands)
                and not isinstance(commands[0], (VersionRequest, VersionResponse))):
            commands.insert(0, self._version_command())
        buffers = [buf for command in commands for buf in command.buffers]
        if bytelen(buffers) > SEARCH_MAX_DATAGRAM_BYTES:
            raise LocalProtocolError(
                f"{len(commands)} commands make a {bytelen(buffers)}-byte "
                f"datagram, above SEARCH_MAX_DATAGRAM_BYTES="
                f"{SEARCH_MAX_DATAGRAM_BYTES}; use search_datagrams() or send "
                "fewer per call")
        return b"".join(buffers)

    def recv(self, data, address):
        """Parse and validate one datagram from `address`; return its commands.

        Commands carry ``sender_address``.  SearchResponses settle the
        search ids they answer; a RepeaterConfirmResponse marks us
        registered.
        """
        commands = read_datagram(data, address, self.their_role)
        self._check(self.their_role, commands, RemoteProtocolError, address)
        self.process_commands(commands)
        return commands

    def process_commands(self, commands):
        """Update bookkeeping for received commands (``recv`` does this)."""
        for command in commands:
            if isinstance(command, SearchResponse):
                self.unanswered_searches.pop(command.cid, None)
            elif isinstance(command, RepeaterConfirmResponse):
                self.registered = True

    def _check(self, sender, commands, error, address=None):
        allowed = BROADCAST_COMMANDS[sender]
        for command in commands:
            if type(command) in allowed:
                continue
            origin = f" from {address}" if address is not None else ""
            raise error(f"a {sender} does not send {type(command).__name__} "
                        f"over UDP{origin} ({command!r})")

"""Server fast lanes for a client connecting thousands of channels, sans I/O.

A connect flood is two kinds of message repeated: SearchRequests packed
forty to a datagram, then CreateChanRequests back to back on the circuit.
The general path builds, checks and dispatches a command object for each
and one for each answer; that costs several times what epics-base spends
on the whole connect.  These functions do the same work straight on the
bytes.

Invariants:
- Each lane gives exactly what the general path gives (the same answer
  bytes, the same channel states; tests/caproto/test_fastlane.py compares
  them) or declines, leaving everything untouched, so the caller takes the
  general path.  A lane declines -- or stops before -- anything unusual:
  another command, an extended header, a partial message, a name the
  general path would refuse, a cid already in use.
- No I/O, no clocks, no threads.
"""
import struct

from ._commands import (MAX_NAME_BYTES, AccessRightsResponse,
                        CreateChanRequest, CreateChanResponse, NotFoundResponse,
                        SearchRequest, SearchResponse, VersionRequest)
from ._constants import (CLIENT, DEFAULT_PROTOCOL_VERSION,
                         SEARCH_MAX_DATAGRAM_BYTES, SERVER)
from ._errors import LocalProtocolError
from ._headers import HEADER_SIZE, SHORT_HEADER
from ._state import CHANNEL_TRANSITIONS, CIRCUIT_TRANSITIONS, CONNECTED

__all__ = ("scan_search_datagram", "SearchAnswers", "recv_create_requests",
           "accept_channels")

_unpack_header = SHORT_HEADER.unpack_from
_FOUND = struct.Struct(">12sI8s").pack           # SearchResponse: cid in parameter2
_NOT_FOUND = struct.Struct(">8sII0s").pack       # NotFoundResponse: cid twice
_SEARCH, _VERSION, _CREATE = SearchRequest.ID, VersionRequest.ID, CreateChanRequest.ID
_ACCEPT = struct.Struct(">HHHHII HHHHII").pack
_ACCESS_RIGHTS, _CREATED = AccessRightsResponse.ID, CreateChanResponse.ID


def _name(data, start, stop):
    """The NUL-terminated latin-1 name in data[start:stop] (bytes or
    bytearray), as _commands decodes it; None for an empty one, which the
    general path handles."""
    end = data.find(0, start, stop)
    if end < 0:
        end = stop
    return data[start:end].decode("latin-1") if end > start else None


# -- UDP: search datagrams --------------------------------------------------

def scan_search_datagram(data):
    """The searches in a datagram of a VersionRequest and SearchRequests.

    Returns ``(version, searches)``: `version` is ``(data_type, parameter1)``
    of the datagram's VersionRequest (the flag and sequence number a reply
    must echo) or None; `searches` is ``[(cid, name, reply), ...]``.  Returns
    None for any other datagram: the caller parses it in full.
    """
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    end, limit = len(data), MAX_NAME_BYTES + 8
    offset, version, searches = 0, None, []
    append = searches.append
    while offset < end:
        if end - offset < HEADER_SIZE:
            return None
        command, size, data_type, _count, parameter1, parameter2 = _unpack_header(
            data, offset)
        start = offset + HEADER_SIZE
        offset = start + size
        if (command == _SEARCH and offset <= end and size <= limit
                and parameter1 == parameter2):
            # The name, as _commands decodes it (_name, inlined: the hot loop).
            nul = data.find(0, start, offset)
            if nul < 0:
                nul = offset
            if nul == start:
                return None                  # empty: the general path decides
            append((parameter1, data[start:nul].decode("latin-1"), data_type))
        elif command == _VERSION and size == 0 and version is None:
            version = (data_type, parameter1)
        else:
            return None
    return version, searches


class SearchAnswers:
    """Datagrams answering searches, as a server on one interface sends them.

    Each datagram starts with a VersionResponse echoing the search's flag
    and sequence number (libca speeds its searches up only when it does)
    and holds as many answers as fit in SEARCH_MAX_DATAGRAM_BYTES.  The
    answers are SearchResponse / NotFoundResponse encoded once by their
    classes here; only the cid changes from one to the next.
    """

    def __init__(self, port, ip, version=DEFAULT_PROTOCOL_VERSION):
        self.port, self.ip, self.version = port, ip, version
        found = bytes(SearchResponse(port, ip, 0, version))
        not_found = bytes(NotFoundResponse(version, 0))
        self._found = (found[:12], found[16:])                # cid: parameter2
        self._not_found = (not_found[:8], not_found[16:])     # cid: p1 and p2

    def found(self, cid):
        head, tail = self._found
        return _FOUND(head, cid, tail)

    def not_found(self, cid):
        head, tail = self._not_found
        return _NOT_FOUND(head, cid, cid, tail)

    def datagrams(self, version, answers):
        """``[bytes]`` holding `answers` (``found()``/``not_found()`` bytes)
        behind the echo of `version` (``(data_type, parameter1)`` or None)."""
        flag, seq = version if version is not None else (0, 0)
        echo = SHORT_HEADER.pack(_VERSION, 0, flag, self.version, seq, 0)
        room = SEARCH_MAX_DATAGRAM_BYTES - len(echo)
        datagrams, batch, used = [], [echo], 0
        for answer in answers:
            if used and used + len(answer) > room:
                datagrams.append(b"".join(batch))
                batch, used = [echo], 0
            batch.append(answer)
            used += len(answer)
        if used:
            datagrams.append(b"".join(batch))
        return datagrams


# -- TCP: runs of CreateChanRequest ---------------------------------------

def recv_create_requests(circuit, *buffers):
    """Take the CreateChanRequests at the front of a server circuit's input.

    Feeds `buffers` to the circuit like ``recv`` and returns the
    ServerChannels it made, each exactly as ``recv`` leaves a channel after
    a CreateChanRequest (awaiting our answer).  Stops before anything else,
    which ``circuit.recv()`` (no arguments) then handles.
    """
    if circuit.our_role is not SERVER:
        raise LocalProtocolError("only a server receives CreateChanRequests")
    buffer = circuit._buffer
    for data in buffers:
        buffer.feed(data)
    pending = buffer.pending_small()
    if (pending is None or pending[2] - pending[1] < HEADER_SIZE
            or pending[0][pending[1] + 1] != _CREATE or pending[0][pending[1]]):
        return []                      # not a CreateChanRequest next: cheap way out
    client_state = circuit.states[CLIENT]
    if CIRCUIT_TRANSITIONS[CLIENT][client_state].get(CreateChanRequest) is not client_state:
        return []                      # before the VersionRequest: refuse there
    data, offset, end = pending
    limit = min(buffer.max_payload_size, MAX_NAME_BYTES + 8)
    channels, copied = [], 0
    channels_by_cid = circuit.channels
    while offset + HEADER_SIZE <= end:
        command, size, _type, _count, cid, _version = _unpack_header(data, offset)
        stop = offset + HEADER_SIZE + size
        if (command != _CREATE or size > limit or stop > end
                or cid in channels_by_cid):
            break
        name = _name(data, offset + HEADER_SIZE, stop)
        if name is None:
            break
        channel = circuit._new_server_channel(name, cid)
        channels.append(channel)
        copied += size
        offset = stop
    buffer.skip_to(offset, copied)
    return channels


def _after(state, *commands):
    """The channel state after `commands` from `state` (per the tables), or None."""
    for command in commands:
        state = CHANNEL_TRANSITIONS.get(state, {}).get(command)
        if state is None:
            return None
    return state


#: channel state -> state after AccessRightsResponse + CreateChanResponse
_ACCEPTED = {state: _after(state, AccessRightsResponse, CreateChanResponse)
             for state in CHANNEL_TRANSITIONS}


def accept_channels(circuit, answers):
    """Bytes accepting or refusing channels, sent through `circuit`.

    `answers` is ``[(channel, access_rights, data_type, data_count, sid), ...]``
    (sids from ``circuit.new_channel_id()``); ``access_rights`` None refuses
    the channel (CreateChFailResponse).  Each accepted channel gets what
    ``circuit.send`` of ``channel.access_rights_response(access_rights)`` and
    ``channel.create(data_type, data_count, sid)`` would give: the same
    bytes, checks and state changes.
    """
    chunks = []
    connected = circuit.states[SERVER] is CONNECTED
    channels, channels_sid = circuit.channels, circuit.channels_sid
    for channel, rights, data_type, data_count, sid in answers:
        if rights is None:
            chunks.extend(circuit.send(channel.create_fail()))
            continue
        state = channel.states.state
        if (not connected or data_count >= 0xFFFF or sid in channels_sid
                or _ACCEPTED.get(state) is None
                or channels.get(channel.cid) is not channel):
            # Anything unusual: the general path checks it and explains a refusal.
            chunks.extend(circuit.send(channel.access_rights_response(rights),
                                       channel.create(data_type, data_count, sid)))
            continue
        channel.states.state = _ACCEPTED[state]
        channel.access_rights = rights
        channel.sid = sid
        channel.native_data_type = data_type
        channel.native_data_count = data_count
        channels_sid[sid] = channel
        chunks.append(_ACCEPT(_ACCESS_RIGHTS, 0, 0, 0, channel.cid, rights,
                              _CREATED, 0, data_type, data_count, channel.cid, sid))
    return b"".join(chunks)

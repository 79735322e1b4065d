"""Server fast lanes for the messages clients send by the thousand, sans I/O.

A connect flood is two kinds of message repeated: SearchRequests packed
forty to a datagram, then CreateChanRequests back to back on the circuit;
a client polling values sends runs of ReadNotifyRequests, one setting
values runs of WriteRequests; a client leaving closes its channels with a
run of ClearChannelRequests.  The general path builds, checks and
dispatches a command object for each and one for each answer; that costs
several times what epics-base spends on the same work.  These functions
do it straight on the bytes.

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

from . import _dbr
from ._commands import (MAX_NAME_BYTES, AccessRightsResponse,
                        ClearChannelRequest, ClearChannelResponse,
                        CreateChanRequest, CreateChanResponse, NotFoundResponse,
                        ReadNotifyRequest, ReadNotifyResponse, SearchRequest,
                        SearchResponse, VersionRequest, WriteRequest, _dbr_sizes)
from ._constants import (CLIENT, DEFAULT_PROTOCOL_VERSION, DO_REPLY,
                         SEARCH_MAX_DATAGRAM_BYTES, SERVER)
from ._errors import LocalProtocolError
from ._headers import HEADER_SIZE, SHORT_HEADER
from ._circuit import _ID_SPACE, REQUESTED, ServerChannel
from ._state import CIRCUIT_TRANSITIONS, CONNECTED

__all__ = ("scan_search_datagram", "SearchAnswers", "serve_create_requests",
           "serve_clear_requests", "serve_read_requests", "take_write_requests",
           "READ_NOTIFY", "WRITE")

_unpack_header = SHORT_HEADER.unpack_from
_FOUND = struct.Struct(">12sI8s").pack           # SearchResponse: cid in parameter2
_NOT_FOUND = struct.Struct(">8sII0s").pack       # NotFoundResponse: cid twice
_SEARCH, _VERSION, _CREATE = SearchRequest.ID, VersionRequest.ID, CreateChanRequest.ID
_ACCEPT = struct.Struct(">HHHHII HHHHII").pack
_ACCESS_RIGHTS, _CREATED = AccessRightsResponse.ID, CreateChanResponse.ID
READ_NOTIFY = ReadNotifyRequest.ID
_CLEAR = ClearChannelRequest.ID
_CLEARED = SHORT_HEADER.pack
_IOID = struct.Struct(">I").pack
WRITE = WriteRequest.ID


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
            # The name, as _commands decodes it: NUL-terminated latin-1 (an
            # empty one goes to the general path).  Inlined, as in the create
            # lane: the hot loop.
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

    Each datagram starts with a VersionResponse echoing the flag and
    sequence number of the search datagram answered (libca speeds its
    searches up only when it does) and holds as many answers as fit in
    SEARCH_MAX_DATAGRAM_BYTES.  The answers are SearchResponse /
    NotFoundResponse encoded once by their classes here; only the cid
    changes from one to the next.
    """

    def __init__(self, port, ip, version=DEFAULT_PROTOCOL_VERSION):
        self.port, self.ip, self.version = port, ip, version
        found = bytes(SearchResponse(port, ip, 0, version))
        not_found = bytes(NotFoundResponse(version, 0))
        self._found = (found[:12], found[16:])                # cid: parameter2
        self._not_found = (not_found[:8], not_found[16:])     # cid: p1 and p2

    def answers(self, searches, pvdb, resolve):
        """SearchResponse / NotFoundResponse bytes for `searches` (``[(cid,
        name, reply)]``, as scan_search_datagram gives them): found where
        `name` is in `pvdb` or ``resolve(name)`` is not None; not found only
        where the client asked for a reply (DO_REPLY), as rsrv does."""
        (head, tail), (missing_head, missing_tail) = self._found, self._not_found
        answers = []
        append = answers.append
        for cid, name, reply in searches:
            if name in pvdb or resolve(name) is not None:
                append(_FOUND(head, cid, tail))
            elif reply == DO_REPLY:
                append(_NOT_FOUND(missing_head, cid, cid, missing_tail))
        return answers

    def datagrams(self, *runs):
        """``[bytes]`` holding the answers of every ``(version, answers)`` in
        `runs`, in order, for one destination.

        `version` is the search datagram's ``(data_type, parameter1)`` (None:
        it had no VersionRequest) and `answers` are ``answers()`` bytes.
        Answers to several search datagrams share a reply datagram, as
        rsrv packs them: on loopback each sendto costs
        more than the Python that fills it.  A VersionResponse opens every
        datagram and stands before the answers of every run whose echo
        differs from the one before, so libca credits each answer to the
        search datagram (and pass) that asked for it.
        """
        datagrams, batch, used, echoed = [], [], 0, None
        for version, answers in runs:
            flag, seq = version if version is not None else (0, 0)
            echo = SHORT_HEADER.pack(_VERSION, 0, flag, self.version, seq, 0)
            new_echo = echo != echoed
            for answer in answers:
                if new_echo:
                    if used and used + HEADER_SIZE + len(answer) > SEARCH_MAX_DATAGRAM_BYTES:
                        datagrams.append(b"".join(batch))
                        batch, used = [], 0
                    batch.append(echo)
                    used += HEADER_SIZE
                    echoed, new_echo = echo, False
                elif used + len(answer) > SEARCH_MAX_DATAGRAM_BYTES:
                    datagrams.append(b"".join(batch))
                    batch, used = [echo], HEADER_SIZE
                batch.append(answer)
                used += len(answer)
        if batch:
            datagrams.append(b"".join(batch))
        return datagrams


# -- TCP ------------------------------------------------------------------

def _pending_run(circuit, command_id, request, answer=None):
    """``(data, offset, end)`` of a server circuit's pending input (see
    ``pending_small``) when it starts with a `command_id` command and the
    circuit's state stays as it is through `request` from the client (and
    our `answer`), else None: the lanes' cheap way out."""
    pending = circuit._buffer.pending_small()
    if (pending is None or pending[2] - pending[1] < HEADER_SIZE
            or pending[0][pending[1] + 1] != command_id or pending[0][pending[1]]):
        return None
    client, server = circuit.states[CLIENT], circuit.states[SERVER]
    if (CIRCUIT_TRANSITIONS[CLIENT][client].get(request) is not client
            or (answer is not None
                and CIRCUIT_TRANSITIONS[SERVER][server].get(answer) is not server)):
        return None
    return pending


# -- TCP: runs of CreateChanRequest ---------------------------------------

def serve_create_requests(circuit, serve, *buffers):
    """Take the CreateChanRequests at the front of a server circuit's input
    and answer them, in one pass.

    Feeds `buffers` to the circuit like ``recv``.  For each request it calls
    ``serve(name)``: ``(access_rights, data_type, data_count, served)``
    accepts the channel, None refuses it; it must not raise (the answers to
    the run's earlier channels would be lost with the exception).  The lane
    gives an accepted channel a sid from ``circuit.new_channel_id()`` and
    records it in the circuit's unmade table (its ServerChannel is made when
    first named, with `served` as its ``served``); the answer bytes and the
    channel's state are what ``circuit.send`` of
    ``access_rights_response(access_rights)`` and ``create(data_type,
    data_count, sid)`` (or ``create_fail()``) would give.  Anything unusual
    goes through ``circuit.send``, which checks it and explains a refusal.

    Returns ``(answers, taken)``: the bytes to send and how many requests
    were taken.  Stops before anything but a CreateChanRequest, which
    ``circuit.recv()`` (no arguments) then handles.
    """
    if circuit.our_role is not SERVER:
        raise LocalProtocolError("only a server receives CreateChanRequests")
    buffer = circuit._buffer
    for data in buffers:
        buffer.feed(data)
    # (None also before the VersionRequest: the general path refuses it.)
    pending = _pending_run(circuit, _CREATE, CreateChanRequest)
    if pending is None:
        return b"", 0
    data, offset, end = pending
    largest = min(buffer.max_payload_size, MAX_NAME_BYTES + 8)
    channels, unmade, unmade_cids = circuit._channels, circuit._unmade, circuit._unmade_cids
    channels_sid, counters = circuit._channels_sid, circuit._counters
    new_sid = circuit.new_channel_id
    connected = circuit.states[SERVER] is CONNECTED
    chunks, taken, copied = [], 0, 0
    append = chunks.append
    try:
        while offset + HEADER_SIZE <= end:
            command, size, _type, _count, cid, _version = _unpack_header(data, offset)
            start = offset + HEADER_SIZE
            stop = start + size
            if (command != _CREATE or size > largest or stop > end
                    or cid in channels or cid in unmade_cids):
                break
            # The name, as in scan_search_datagram.
            nul = data.find(0, start, stop)
            if nul < 0:
                nul = stop
            if nul == start:
                break
            name = data[start:nul].decode("latin-1")
            # Taken: from here on the request is ours, even if serve() raises.
            offset, copied, taken = stop, copied + size, taken + 1
            answer = serve(name)
            if answer is not None:
                rights, data_type, data_count, served = answer
                if connected and data_count < 0xFFFF:
                    # new_sid()'s first try, inlined; it takes over if taken.
                    sid = counters["cid"]
                    if sid in channels_sid or sid in unmade:
                        sid = new_sid()
                    else:
                        counters["cid"] = (sid + 1) % _ID_SPACE
                    unmade[sid] = (cid, name, data_type, data_count, rights, served)
                    unmade_cids[cid] = sid       # (the records VirtualCircuit._make reads)
                    append(_ACCEPT(_ACCESS_RIGHTS, 0, 0, 0, cid, rights,
                                   _CREATED, 0, data_type, data_count, cid, sid))
                    continue
            channel = ServerChannel(name, circuit, cid)
            channel.states.state = REQUESTED
            if answer is None:
                chunks.extend(circuit.send(channel.create_fail()))
            else:
                channel.served = served
                chunks.extend(circuit.send(channel.access_rights_response(rights),
                                           channel.create(data_type, data_count, new_sid())))
    finally:
        buffer.skip_to(offset, copied)
    return b"".join(chunks), taken


# -- TCP: runs of ClearChannelRequest --------------------------------------

def serve_clear_requests(circuit, *buffers):
    """Take the ClearChannelRequests at the front of a server circuit's input
    (after feeding it `buffers`, like ``recv``) that close channels the
    create lane opened and nothing has named since, and answer them, in one
    pass.

    Such a channel has no request pending and no subscription (anything
    naming it would have made its ServerChannel), so closing it is
    forgetting its record; the answer is the ClearChannelResponse the
    general path would send.  Stops before anything else, a clear of a made
    channel included, which ``circuit.recv()`` then handles.  Returns
    ``(answers, taken)``.
    """
    if circuit.our_role is not SERVER:
        raise LocalProtocolError("only a server receives ClearChannelRequests")
    for data in buffers:
        circuit._buffer.feed(data)
    pending = _pending_run(circuit, _CLEAR, ClearChannelRequest, ClearChannelResponse)
    if pending is None:
        return b"", 0
    data, offset, end = pending
    unmade, unmade_cids = circuit._unmade, circuit._unmade_cids
    answers, taken = [], 0
    append = answers.append
    try:
        while offset + HEADER_SIZE <= end:
            command, size, data_type, count, sid, cid = _unpack_header(data, offset)
            if (command != _CLEAR or size or data_type or count
                    or unmade_cids.get(cid) != sid):
                break
            del unmade[sid], unmade_cids[cid]
            append(_CLEARED(_CLEAR, 0, 0, 0, sid, cid))
            offset += HEADER_SIZE
            taken += 1
    finally:
        circuit._buffer.skip_to(offset)
    return b"".join(answers), taken


# -- TCP: runs of ReadNotifyRequest -----------------------------------------

def serve_read_requests(circuit, answer, limit):
    """Take the ReadNotifyRequests at the front of a server circuit's input
    that `answer` can answer at once, and answer them, in one pass.

    ``answer(sid, data_type, data_count)`` gives the ReadNotifyResponse for
    the channel as ``(head, tail, nbytes)``: its first 12 bytes, the buffers
    after the ioid (the rest of the header, the payload) and its size; or
    None, and the lane stops before that request for the general path
    (which answers errors, getter hooks, filters).  `answer` must not raise.
    The lane also stops before a request the circuit would refuse (an
    unknown or unconnected sid, an ioid in use): there the general path
    raises the protocol error.  A read answered at once leaves every state
    as it was, so the lane changes none.

    Returns ``(buffers, nbytes, taken)``; stops once `nbytes` reaches
    `limit` so that a client pipelining reads of a large array is answered
    at the pace the socket takes them.
    """
    if circuit.our_role is not SERVER:
        raise LocalProtocolError("only a server receives ReadNotifyRequests")
    buffer = circuit._buffer
    pending = _pending_run(circuit, READ_NOTIFY, ReadNotifyRequest, ReadNotifyResponse)
    if pending is None:
        return [], 0, 0
    data, offset, end = pending
    channels_sid, ioids = circuit._channels_sid, circuit._ioids   # unmade: decline
    out, nbytes, taken = [], 0, 0
    append, extend = out.append, out.extend
    try:
        while offset + HEADER_SIZE <= end and nbytes < limit:
            command, size, data_type, count, sid, ioid = _unpack_header(data, offset)
            if command != READ_NOTIFY or size or ioid in ioids:
                break
            channel = channels_sid.get(sid)
            if channel is None or channel.states.state is not CONNECTED:
                break
            answered = answer(sid, data_type, count)
            if answered is None:
                break
            head, tail, size = answered
            append(head)
            append(_IOID(ioid))
            extend(tail)
            nbytes += size
            offset += HEADER_SIZE
            taken += 1
    finally:
        buffer.skip_to(offset)
    return out, nbytes, taken


# -- TCP: runs of WriteRequest ----------------------------------------------

def take_write_requests(circuit):
    """Take the WriteRequests (without notify) at the front of a server
    circuit's input, decoded, in one pass: what they do is the caller's,
    refusing one included (no access, a failed write), as for the
    WriteRequest the general path would have parsed.

    Stops before anything the general path must see: another command, an
    extended header, a sid that is not a connected channel (the protocol
    error), a DBR type it does not know or a payload shorter than the type
    and count need (its refusal, or libca's short form of one string).  A
    plain write is answered with nothing and leaves every state as it
    was, so the lane changes none.

    Returns ``[(header, data_type, data, metadata)]``: the request's
    header fields (command, payload size, data type, count, sid, ioid; an
    error answer echoes them), its ChannelType, and its values and
    metadata decoded as the general path decodes them.
    """
    if circuit.our_role is not SERVER:
        raise LocalProtocolError("only a server receives WriteRequests")
    buffer = circuit._buffer
    pending = _pending_run(circuit, WRITE, WriteRequest)
    if pending is None:
        return []
    data, offset, end = pending
    channels_sid = circuit._channels_sid             # unmade: decline
    decode, copied, writes = _dbr.decode_payload, 0, []
    try:
        while offset + HEADER_SIZE <= end:
            header = _unpack_header(data, offset)
            command, size, data_type, count, sid, _ioid = header
            start = offset + HEADER_SIZE
            stop = start + size
            if command != WRITE or size == 0xFFFF or stop > end:
                break
            channel = channels_sid.get(sid)
            if channel is None or channel.states.state is not CONNECTED:
                break
            try:
                channel_type, metadata_size, value_size = _dbr_sizes(data_type)
            except (ValueError, KeyError, TypeError):
                break                               # the general path refuses it
            needed = metadata_size + value_size * count
            if needed > size:
                break
            # The payload copied out, as the general path copies it.
            payload = memoryview(bytes(data[start:stop]))
            values, metadata = decode(channel_type, count, payload[:needed])
            writes.append((header, channel_type, values, metadata))
            offset, copied = stop, copied + size
    finally:
        buffer.skip_to(offset, copied)
    return writes

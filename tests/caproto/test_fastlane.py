"""The server's fast lanes give exactly what the general path gives.

A client connecting thousands of channels is served by _fastlane.py straight
from the bytes; every test here runs the same input through the general path
(Broadcaster.recv, VirtualCircuit.recv/send) and compares the answers, the
channel states and the bytes.  A lane must decline, or stop before, anything
it does not handle, leaving it to the general path.
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import caproto as ca
from caproto import _fastlane
from caproto.server import Context
from caproto._constants import DO_REPLY, NO_REPLY, SEARCH_MAX_DATAGRAM_BYTES
from caproto._headers import MessageHeader, pack_header

CLIENT_ADDRESS = ("127.0.0.1", 40001)
SERVER_ADDRESS = ("127.0.0.1", 5064)
RW = ca.AccessRights.READ | ca.AccessRights.WRITE

names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=255),
                min_size=1, max_size=60)


def _general_searches(datagram):
    commands = ca.Broadcaster(ca.SERVER).recv(datagram, CLIENT_ADDRESS)
    version = None
    searches = []
    for command in commands:
        if isinstance(command, ca.VersionRequest):
            version = (command.header.data_type, command.header.parameter1)
        elif isinstance(command, ca.SearchRequest):
            searches.append((command.cid, command.name, command.reply))
    return version, searches


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, st.sampled_from([DO_REPLY, NO_REPLY])),
                min_size=1, max_size=120))
def test_search_datagrams_scan_like_the_general_parser(searches):
    client = ca.Broadcaster(ca.CLIENT)
    requests = [ca.SearchRequest(name, client.new_search_id(), reply=reply)
                for name, reply in searches]
    # Pack as libca does: a version first, then as many searches as fit.
    batch, used = [], 16
    datagrams = []
    for request in requests:
        if batch and used + len(request) > SEARCH_MAX_DATAGRAM_BYTES:
            datagrams.append(client.send(*batch))
            batch, used = [], 16
        batch.append(request)
        used += len(request)
    datagrams.append(client.send(*batch))
    seen = []
    for datagram in datagrams:
        scanned = _fastlane.scan_search_datagram(datagram)
        assert scanned == _general_searches(datagram)
        seen.extend(scanned[1])
    assert [(name, reply) for _cid, name, reply in seen] == searches


def test_search_scan_reads_libca_sequence_numbers():
    header = MessageHeader(0, 0, 1, 13, 4711, 0)          # flag 1, sequence 4711
    datagram = pack_header(header) + bytes(ca.SearchRequest("X:1", 9))
    assert _fastlane.scan_search_datagram(datagram) == ((1, 4711),
                                                        [(9, "X:1", NO_REPLY)])
    assert _fastlane.scan_search_datagram(memoryview(datagram)) == ((1, 4711),
                                                                    [(9, "X:1", NO_REPLY)])


@pytest.mark.parametrize("datagram", [
    bytes(ca.RepeaterRegisterRequest("127.0.0.1")),                 # another command
    bytes(ca.VersionRequest(0, 13)) + bytes(ca.SearchRequest("A", 1))[:20],  # cut short
    bytes(ca.VersionRequest(0, 13)) + bytes(ca.SearchRequest("A", 1))[:10],  # half a header
    bytes(ca.VersionRequest(0, 13)) + struct.pack(">HHHHII", 6, 8, 5, 13, 1, 1)
    + b"\0" * 8,                                                    # empty name
    bytes(ca.VersionRequest(0, 13)) + struct.pack(">HHHHII", 6, 8, 5, 13, 1, 2)
    + b"A\0" + b"\0" * 6,                                           # cids differ
    bytes(ca.VersionRequest(0, 13)) * 2 + bytes(ca.SearchRequest("A", 1)),  # two versions
    bytes(ca.VersionRequest(0, 13)) + bytes(ca.EchoRequest()),
])
def test_search_scan_declines_what_it_does_not_handle(datagram):
    assert _fastlane.scan_search_datagram(datagram) is None


@pytest.mark.parametrize("ip", ["255.255.255.255", "127.0.0.1"])
def test_search_answers_are_the_commands_bytes(ip):
    """Found: a pvdb name or one resolve() knows (a field, a filter); not
    found: answered only when the client asked (DO_REPLY), as rsrv does."""
    answers = _fastlane.SearchAnswers(5064, ip)
    for cid in (0, 1, 77, 2 ** 32 - 1):
        searches = [(cid, "ours", NO_REPLY), (cid, "ours.EGU", NO_REPLY),
                    (cid, "other", DO_REPLY), (cid, "other", NO_REPLY)]
        got = answers.answers(searches, {"ours": object()},
                              lambda name: name if name == "ours.EGU" else None)
        found = bytes(ca.SearchResponse(5064, ip, cid, 13))
        assert got == [found, found, bytes(ca.NotFoundResponse(13, cid))]


@given(st.lists(st.tuples(st.sampled_from([None, (1, 7), (1, 8), (0, 2 ** 32 - 1)]),
                          st.lists(st.booleans(), max_size=100)), max_size=8))
@settings(max_examples=60, deadline=None)
def test_search_answer_datagrams_match_the_broadcaster(runs):
    """Answers to several search datagrams (runs) share reply datagrams;
    read in order as libca reads them (each VersionResponse sets the
    sequence number the answers after it are credited to), every answer
    is credited to its own search datagram."""
    answers = _fastlane.SearchAnswers(5064, "255.255.255.255")
    expected, packed = [], []
    for version, found in runs:
        searches = []
        for hit in found:
            cid = len(expected)
            searches.append((cid, "ours" if hit else "other", DO_REPLY))
            expected.append((cid, hit, version or (0, 0)))
        packed.append((version, answers.answers(searches, {"ours": object()},
                                                lambda name: None)))
    datagrams = answers.datagrams(*packed)
    if not expected:
        assert datagrams == []
        return
    server = ca.Broadcaster(ca.SERVER)
    client = ca.Broadcaster(ca.CLIENT)
    got = []
    for datagram in datagrams:
        assert len(datagram) <= SEARCH_MAX_DATAGRAM_BYTES
        commands = client.recv(datagram, SERVER_ADDRESS)
        assert isinstance(commands[0], ca.VersionResponse)
        for command in commands:
            if isinstance(command, ca.VersionResponse):
                credited = (command.header.data_type, command.header.parameter1)
            else:
                got.append((command.cid, isinstance(command, ca.SearchResponse), credited))
        # The same commands sent by the general path give the same bytes.
        assert server.send(*commands) == datagram
    assert got == expected
    # Full: no datagram but the last had room for the next answer and its echo.
    assert all(len(d) > SEARCH_MAX_DATAGRAM_BYTES - 24 - 16 for d in datagrams[:-1])


def test_one_clients_search_burst_is_answered_in_fewer_datagrams():
    """libca sends 31 searches a datagram; the answers (24 bytes each) to
    four of its datagrams fit three 1472-byte replies, each answer behind
    the sequence number of the datagram that asked."""
    context = Context({f"P:{i}": ca.ChannelDouble() for i in range(124)},
                                ["127.0.0.1"])
    context.port = 5064
    client = ca.Broadcaster(ca.CLIENT)
    received = []
    for seq in range(4):
        searches = [ca.SearchRequest(f"P:{i}", i, 13) for i in range(31 * seq, 31 * seq + 31)]
        version = pack_header(MessageHeader(0, 0, 1, 13, seq, 0))
        received.append((version + b"".join(bytes(r) for r in searches), CLIENT_ADDRESS))
    other = ("127.0.0.1", 40002)
    received.append((received[0][0], other))
    replies = context.handle_datagrams(received, "127.0.0.1")
    assert [address for _, address in replies] == [CLIENT_ADDRESS] * 3 + [other]
    credited = {}
    for datagram, _ in replies[:3]:
        for command in client.recv(datagram, SERVER_ADDRESS):
            if isinstance(command, ca.VersionResponse):
                seq = command.header.parameter1
            else:
                credited[command.cid] = seq
    assert credited == {cid: cid // 31 for cid in range(124)}


# -- circuits ---------------------------------------------------------------

def _client_stream(names, extra=()):
    client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 0)
    opening = client.send(ca.VersionRequest(0, 13), ca.HostNameRequest("host"),
                          ca.ClientNameRequest("user"))
    channels = [ca.ClientChannel(name, client) for name in names]
    creates = b"".join(bytes(b) for ch in channels for b in client.send(ch.create()))
    rest = b"".join(bytes(c) for c in extra)
    return b"".join(bytes(b) for b in opening), creates, rest


def _state(circuit):
    return sorted((ch.cid, ch.name, ch.states.state is not None and str(ch.states.state))
                  for ch in circuit.channels.values())


def _server(count=1):
    """serve(name) as a server answers: names starting with "X" are not
    ours; the rest are DOUBLEs of `count` elements."""
    def serve(name):
        if name.startswith("X"):
            return None
        return RW, 6, count, ("served", name)
    return serve


def _answer_generally(circuit, commands, serve):
    """What the general path sends for the CreateChanRequests in `commands`."""
    sent = []
    for command in commands:
        if isinstance(command, ca.CreateChanRequest):
            channel = circuit.channels[command.cid]
            answer = serve(channel.name)
            if answer is None:
                sent.extend(circuit.send(channel.create_fail()))
            else:
                rights, data_type, data_count, channel.served = answer
                sid = circuit.new_channel_id()
                sent.extend(circuit.send(channel.access_rights_response(rights),
                                         channel.create(data_type, data_count, sid)))
    return b"".join(bytes(b) for b in sent)


def _same_channels(fast, general):
    assert _state(fast) == _state(general)
    assert sorted(fast.channels_sid) == sorted(general.channels_sid)
    for sid, channel in fast.channels_sid.items():
        twin = general.channels_sid[sid]
        assert (channel.cid, channel.native_data_type, channel.native_data_count,
                channel.access_rights, channel.served) == (
                    twin.cid, twin.native_data_type, twin.native_data_count,
                    twin.access_rights, twin.served)


@settings(max_examples=50, deadline=None)
@given(st.lists(names, min_size=1, max_size=40),
       st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_create_runs_are_answered_as_the_general_path_answers(channel_names, cuts):
    opening, creates, rest = _client_stream(channel_names, [ca.EchoRequest()])
    general = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    general_commands, _ = general.recv(opening)
    general.send(ca.VersionResponse(13))
    more, _ = general.recv(creates + rest)
    general_commands += more
    general_bytes = _answer_generally(general, general_commands, _server())

    fast = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    fast_commands, _ = fast.recv(opening)
    fast.send(ca.VersionResponse(13))
    stream, sent, taken, position = creates + rest, [], 0, 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        if position >= len(stream):
            break
        chunk = stream[position:position + cut]
        position += len(chunk)
        reply, n = _fastlane.serve_create_requests(fast, _server(), chunk)
        sent.append(reply)
        taken += n
        got, _needed = fast.recv()
        fast_commands.extend(got)
        sent.append(_answer_generally(fast, got, _server()))
    creates_seen = [c for c in fast_commands if isinstance(c, ca.CreateChanRequest)]
    # Every request was taken exactly once, by the lane or by recv().
    assert taken + len(creates_seen) == len(channel_names)
    assert b"".join(sent) == general_bytes
    _same_channels(fast, general)
    assert isinstance(fast_commands[-1], ca.EchoRequest)
    assert len(fast._buffer) == 0


@pytest.mark.parametrize("count", [1, 10, 0xFFFE, 0xFFFF, 1_000_000])
def test_created_channels_get_what_send_sends(count):
    """Counts that need an extended header go through circuit.send: same bytes."""
    opening, creates, _ = _client_stream(["A", "XB", "C"])
    fast, general = (ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None) for _ in "ab")
    for circuit in fast, general:
        circuit.recv(opening)
        circuit.send(ca.VersionResponse(13))
    reply, taken = _fastlane.serve_create_requests(fast, _server(count), creates)
    commands, _ = general.recv(creates)
    assert taken == 3
    assert reply == _answer_generally(general, commands, _server(count))
    _same_channels(fast, general)


def test_recv_can_stop_before_a_create_run():
    opening, creates, _ = _client_stream(["A", "B"])
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    commands, _ = server.recv(opening + creates,
                              stop_before=ca.CreateChanRequest.ID)
    assert [type(c) for c in commands] == [ca.VersionRequest, ca.HostNameRequest,
                                           ca.ClientNameRequest]
    server.send(ca.VersionResponse(13))
    _reply, taken = _fastlane.serve_create_requests(server, _server())
    assert taken == 2 and len(server._buffer) == 0


def test_create_lane_stops_before_a_reused_cid():
    opening, creates, _ = _client_stream(["A", "B"])
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    server.recv(opening)
    server.send(ca.VersionResponse(13))
    _reply, taken = _fastlane.serve_create_requests(server, _server(), creates)
    assert taken == 2
    again = bytes(ca.CreateChanRequest("C", 0))             # cid 0 is "A"'s
    assert _fastlane.serve_create_requests(server, _server(), again) == (b"", 0)
    with pytest.raises(ca.RemoteProtocolError) as refused:
        server.recv()
    assert refused.value.command.name == "C"


def _lane_opened(names):
    """A server circuit whose channels `names` the create lane opened, and
    the client circuit that asked for them."""
    client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 0)
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    server.recv(b"".join(bytes(b) for b in client.send(
        ca.VersionRequest(0, 13), ca.HostNameRequest("h"), ca.ClientNameRequest("u"))))
    client.recv(b"".join(bytes(b) for b in server.send(ca.VersionResponse(13))))
    channels = [ca.ClientChannel(name, client) for name in names]
    creates = b"".join(bytes(b) for ch in channels for b in client.send(ch.create()))
    reply, taken = _fastlane.serve_create_requests(server, _server(), creates)
    assert taken == len(names)
    client.recv(reply)
    return client, server, channels


def test_lane_channels_are_made_when_first_named():
    """The lane records channels without making their ServerChannels; a
    request naming one makes it, in the state the general path leaves."""
    client, server, (a, b, c) = _lane_opened(["A", "B", "C"])
    assert server.channel_count() == 3 and len(server._unmade) == 3
    assert all(ch.states[ca.CLIENT] is ca.CONNECTED for ch in (a, b, c))
    server.recv(b"".join(bytes(x) for x in client.send(a.read(data_type=6, ioid=5))))
    assert len(server._unmade) == 2
    made = server.channel_by_sid(a.sid)
    assert (made.name, made.cid, made.native_data_count, made.access_rights,
            made.served) == ("A", a.cid, 1, RW, ("served", "A"))
    server.send(made.read([1.0], 5, data_type=6))        # (made A only)
    server.recv(b"".join(bytes(x) for x in client.send(b.clear())))   # makes B, closes it
    (cleared,) = server.send(ca.ClearChannelResponse(b.sid, b.cid))
    client.recv(bytes(cleared))
    assert b.states[ca.CLIENT] is ca.CLOSED
    assert server.channel_count() == 2 and server.channel_by_sid(b.sid) is None
    # A new channel never gets the sid or cid of one still unmade (C).
    with pytest.raises(ca.RemoteProtocolError):          # C's cid, reused
        server.recv(bytes(ca.CreateChanRequest("E", c.cid)))
    assert server.new_channel_id() not in (a.sid, c.sid)
    # Reading the tables makes everything: nothing outside can tell.
    assert sorted(server.channels_sid) == sorted([a.sid, c.sid])
    assert server._unmade == {} and server.channels[c.cid].name == "C"


def test_lane_sids_skip_those_in_use():
    """After the sid counter wraps round onto live channels, the lane skips
    the sids still in use, made (B) or not (A)."""
    client, server, (a, b, c) = _lane_opened(["A", "B", "C"])
    server.channel_by_sid(b.sid)                          # B made, A and C not
    channels = [a, b, c]
    for name, counter in (("D", b.sid), ("E", a.sid)):
        server._counters["cid"] = counter                 # as after a wrap-around
        channel = ca.ClientChannel(name, client)
        channels.append(channel)
        reply, taken = _fastlane.serve_create_requests(
            server, _server(), b"".join(bytes(x) for x in client.send(channel.create())))
        assert taken == 1
        client.recv(reply)
    assert len({ch.sid for ch in channels}) == 5 and server.channel_count() == 5


def test_unmade_channels_close_with_the_circuit():
    _client, server, _channels = _lane_opened(["A", "B"])
    server.disconnect()
    assert server.channel_count() == 0 and server.channels == {}


def _clears(client, channels):
    return b"".join(bytes(b) for ch in channels for b in client.send(ch.clear()))


def test_clear_runs_are_answered_as_the_general_path_answers():
    """Clears of channels nothing named since the create lane opened them
    are answered by the clear lane with the general path's bytes; it stops
    before a clear of a made channel, which the general path then takes."""
    names = ["A", "B", "C", "D", "E"]
    client, fast, channels = _lane_opened(names)
    _client2, general, _ = _lane_opened(names)
    general.channels                   # makes all of general's channels
    c = channels[2]
    read = b"".join(bytes(x) for x in client.send(c.read(data_type=6, ioid=1)))
    for server in fast, general:       # C is named: made on both
        server.recv(read)
        server.send(server.channel_by_sid(c.sid).read([1.0], 1, data_type=6))
    assert len(fast._unmade) == 4 and not general._unmade
    stream = _clears(client, channels)
    reply, taken = _fastlane.serve_clear_requests(fast, stream)
    assert taken == 2 and len(fast._unmade) == 2              # A, B; stops at C
    commands, _needed = fast.recv()
    rest = b"".join(bytes(b) for command in commands
                    for b in fast.send(ca.ClearChannelResponse(command.sid, command.cid)))
    got, _needed = general.recv(stream)
    expected = b"".join(bytes(b) for command in got
                        for b in general.send(ca.ClearChannelResponse(command.sid, command.cid)))
    assert [type(x) for x in commands] == [ca.ClearChannelRequest] * 3
    assert reply + rest == expected
    assert fast.channels == {} and general.channels == {} and fast.channel_count() == 0
    client.recv(reply + rest)
    assert all(ch.states[ca.CLIENT] is ca.CLOSED for ch in channels)


def test_clear_lane_leaves_a_mismatched_pair_to_the_general_path():
    client, server, (a, b) = _lane_opened(["A", "B"])
    wrong = bytes(ca.ClearChannelRequest(a.sid, b.cid))
    assert _fastlane.serve_clear_requests(server, wrong) == (b"", 0)
    with pytest.raises(ca.RemoteProtocolError):
        server.recv()
    assert server.channel_count() == 2


def test_create_lane_waits_for_the_version_request():
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    early = bytes(ca.CreateChanRequest("A", 1))
    assert _fastlane.serve_create_requests(server, _server(), early) == (b"", 0)
    with pytest.raises(ca.RemoteProtocolError):
        server.recv()           # the general path refuses it, as before


def test_create_lane_is_only_for_servers():
    client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 0)
    with pytest.raises(ca.LocalProtocolError):
        _fastlane.serve_create_requests(client, _server(), b"")


def test_a_failing_serve_loses_no_bytes_of_the_stream():
    """serve() raising: the request it was answering is taken (and opens
    nothing), the next ones stay in the buffer for the next call."""
    opening, creates, _ = _client_stream(["A", "B", "C"])
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    server.recv(opening)
    server.send(ca.VersionResponse(13))

    def serve(name):
        if name == "B":
            raise RuntimeError("broken hook")
        return _server()(name)
    with pytest.raises(RuntimeError):
        _fastlane.serve_create_requests(server, serve, creates)
    assert sorted(ch.name for ch in server.channels.values()) == ["A"]
    _reply, taken = _fastlane.serve_create_requests(server, _server())
    assert taken == 1 and len(server._buffer) == 0
    assert server.channels[2].name == "C"

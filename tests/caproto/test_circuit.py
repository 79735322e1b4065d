"""A client circuit and a server circuit talking through memory (h11 style).

Every byte the client sends goes through the server's recv() and vice versa,
cut whole, byte by byte, or in odd-sized chunks: the commands that come out,
and the states they leave behind, must be the same.
"""
import pytest

import caproto as ca
from caproto._constants import MAX_ID

SERVER_ADDRESS = ("127.0.0.1", 5064)
CLIENT_ADDRESS = ("127.0.0.1", 40001)
RW = ca.AccessRights.READ | ca.AccessRights.WRITE


def _chunks(data, mode):
    if mode == "whole":
        return [data]
    if mode == "bytewise":
        return [data[i:i + 1] for i in range(len(data))]
    return [data[i:i + 7] for i in range(0, len(data), 7)]   # odd chunks


class CircuitPair:
    """An in-memory client/server circuit pair (h11's ConnectionPair)."""

    def __init__(self, chunking="whole", priority=1):
        self.chunking = chunking
        self.client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, priority)
        self.server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)

    def _deliver(self, sender, receiver, commands):
        data = b"".join(bytes(b) for b in sender.send(*commands))
        received = []
        for chunk in _chunks(data, self.chunking):
            got, needed = receiver.recv(chunk)
            received.extend(got)
        assert needed == 0, "a whole message left bytes pending"
        assert received == list(commands)
        return received

    def c2s(self, *commands):
        return self._deliver(self.client, self.server, commands)

    def s2c(self, *commands):
        return self._deliver(self.server, self.client, commands)

    def handshake(self):
        chan = ca.ClientChannel("PV:one", self.client)
        self.c2s(chan.version(), chan.host_name("host-a"),
                 chan.client_name("user-a"))
        self.s2c(ca.VersionResponse(13))
        return chan

    def connect(self, name="PV:one", data_type=ca.ChannelType.DOUBLE,
                count=1, rights=RW):
        """Handshake (if needed) and create one channel; return both ends."""
        if self.client.states[ca.CLIENT] is ca.SEND_VERSION_REQUEST:
            self.handshake()
        chan = ca.ClientChannel(name, self.client)
        (request,) = self.c2s(chan.create())
        server_chan = self.server.channels[request.cid]
        sid = self.server.new_channel_id()
        self.s2c(server_chan.access_rights_response(rights),
                 server_chan.create(data_type, count, sid))
        return chan, server_chan


@pytest.fixture(params=["whole", "bytewise", "odd"])
def pair(request):
    return CircuitPair(request.param)


def test_handshake_records_versions_names_and_priority(pair):
    chan = pair.handshake()
    assert pair.client.states[ca.CLIENT] is ca.CONNECTED
    assert pair.server.states[ca.CLIENT] is ca.CONNECTED
    assert pair.server.states[ca.SERVER] is ca.CONNECTED
    assert pair.server.priority == 1
    assert pair.server.key == (CLIENT_ADDRESS, 1)
    assert pair.server.host_name == "host-a"
    assert pair.server.client_name == "user-a"
    assert pair.client.their_protocol_version == 13
    assert pair.server.their_protocol_version == 13
    assert chan.states[ca.CLIENT] is ca.SEND_CREATE_CHAN_REQUEST


def test_server_may_announce_its_version_first():
    pair = CircuitPair()
    client_bytes = pair.client.send(ca.VersionRequest(priority=1, version=13))
    server_bytes = pair.server.send(ca.VersionResponse(13))
    assert pair.server.states[ca.SERVER] is ca.CONNECTED
    assert pair.server.states[ca.CLIENT] is ca.SEND_VERSION_REQUEST
    pair.server.recv(*client_bytes)
    pair.client.recv(*server_bytes)
    for circuit in (pair.client, pair.server):
        assert circuit.states[ca.CLIENT] is ca.CONNECTED


def test_create_channel_assigns_sid_type_count_and_rights(pair):
    chan, server_chan = pair.connect(data_type=ca.ChannelType.LONG, count=3,
                                     rights=ca.AccessRights.READ)
    assert server_chan.name == "PV:one"
    assert chan.states[ca.CLIENT] is ca.CONNECTED
    assert server_chan.states[ca.SERVER] is ca.CONNECTED
    assert chan.sid == server_chan.sid is not None
    assert chan.native_data_type == ca.ChannelType.LONG
    assert chan.native_data_count == 3
    assert chan.access_rights == ca.AccessRights.READ
    assert pair.client.channels_sid[chan.sid] is chan
    assert pair.server.channels_sid[chan.sid] is server_chan


def test_channel_creation_is_pipelined_behind_the_version_request():
    """libca sends CreateChan before the server's version arrives."""
    pair = CircuitPair()
    chan = ca.ClientChannel("PV:early", pair.client)
    pair.c2s(chan.version(), chan.create())
    assert pair.client.states[ca.CLIENT] is ca.AWAIT_VERSION_RESPONSE
    assert chan.states[ca.CLIENT] is ca.AWAIT_CREATE_CHAN_RESPONSE
    server_chan = pair.server.channels[chan.cid]
    assert server_chan.states[ca.SERVER] is ca.SEND_CREATE_CHAN_RESPONSE
    with pytest.raises(ca.LocalProtocolError):      # version must come first
        pair.server.send(server_chan.create(ca.ChannelType.DOUBLE, 1, 7))
    pair.s2c(ca.VersionResponse(13), server_chan.create(ca.ChannelType.DOUBLE, 1, 7))
    assert chan.states[ca.CLIENT] is ca.CONNECTED and chan.sid == 7


def test_read_notify_and_old_read_use_native_type_and_count(pair):
    chan, server_chan = pair.connect(count=2)
    (request,) = pair.c2s(chan.read())
    assert (request.data_type, request.data_count) == (ca.ChannelType.DOUBLE, 2)
    assert pair.server.pending_request(request.ioid) == request
    (response,) = pair.s2c(server_chan.read([1.5, 2.5], request.ioid))
    assert list(response.data) == [1.5, 2.5]
    assert pair.client.pending_request(request.ioid) is None

    (old,) = pair.c2s(chan.read(data_type=ca.ChannelType.LONG, notify=False))
    assert isinstance(old, ca.ReadRequest)
    (answer,) = pair.s2c(server_chan.read([4, 5], old.ioid, notify=False))
    assert isinstance(answer, ca.ReadResponse)
    assert answer.data_type == ca.ChannelType.LONG     # what was asked for
    assert list(answer.data) == [4, 5]


def test_write_and_write_notify(pair):
    chan, server_chan = pair.connect()
    (plain,) = pair.c2s(chan.write([3.25]))
    assert isinstance(plain, ca.WriteRequest) and list(plain.data) == [3.25]
    assert pair.server.pending_request(plain.ioid) is None   # no answer due
    (notify,) = pair.c2s(chan.write([4.0], notify=True))
    assert isinstance(notify, ca.WriteNotifyRequest)
    (done,) = pair.s2c(server_chan.write(notify.ioid))
    assert done.ioid == notify.ioid and done.data_count == 1
    assert pair.client.pending_request(notify.ioid) is None
    with pytest.raises(ca.RemoteProtocolError):      # answered already
        pair.client.recv(bytes(server_chan.write(notify.ioid)))


def test_subscription_life(pair):
    chan, server_chan = pair.connect()
    (add,) = pair.c2s(chan.subscribe(mask=ca.SubscriptionType.DBE_VALUE))
    subid = add.subscriptionid
    assert add.mask == ca.SubscriptionType.DBE_VALUE
    assert set(chan.subscriptions) == {subid}
    assert set(server_chan.subscriptions) == {subid}
    for value in (1.0, 2.0, 3.0):
        (event,) = pair.s2c(server_chan.subscribe([value], subid))
        assert list(event.data) == [value]
    (cancel,) = pair.c2s(chan.unsubscribe(subid))
    assert (cancel.sid, cancel.subscriptionid) == (chan.sid, subid)
    # An event already in flight when the cancel was sent is still legal.
    pair.s2c(server_chan.subscribe([4.0], subid))
    pair.s2c(server_chan.unsubscribe(subid))
    assert chan.subscriptions == {} and server_chan.subscriptions == {}
    with pytest.raises(ca.RemoteProtocolError):
        pair.client.recv(bytes(server_chan.subscribe([5.0], subid)))


def test_subscribe_default_mask_is_value_and_alarm(pair):
    chan, _ = pair.connect()
    assert chan.subscribe().mask == (ca.SubscriptionType.DBE_VALUE
                                     | ca.SubscriptionType.DBE_ALARM)


def test_events_off_and_on_reach_the_server(pair):
    pair.connect()
    assert pair.server.events_on
    pair.c2s(ca.EventsOffRequest())
    assert not pair.server.events_on and not pair.client.events_on
    pair.c2s(ca.EventsOnRequest())
    assert pair.server.events_on


def test_echo_is_answered_once(pair):
    pair.handshake()
    pair.c2s(ca.EchoRequest())
    pair.s2c(ca.EchoResponse())
    with pytest.raises(ca.LocalProtocolError):
        pair.server.send(ca.EchoResponse())
    with pytest.raises(ca.RemoteProtocolError):
        pair.client.recv(bytes(ca.EchoResponse()))


def test_clear_channel_closes_both_ends(pair):
    chan, server_chan = pair.connect()
    pair.c2s(chan.clear())
    assert chan.states[ca.CLIENT] is ca.MUST_CLOSE
    assert server_chan.states[ca.SERVER] is ca.MUST_CLOSE
    with pytest.raises(ca.LocalProtocolError):
        chan.read()
    pair.s2c(server_chan.clear())
    assert chan.states[ca.CLIENT] is ca.CLOSED
    assert chan.cid not in pair.client.channels
    assert chan.sid not in pair.server.channels_sid


def test_server_disconnect_closes_channel_and_drops_its_requests(pair):
    chan, server_chan = pair.connect()
    (read,) = pair.c2s(chan.read())
    (sub,) = pair.c2s(chan.subscribe())
    pair.s2c(server_chan.disconnect())
    assert chan.states[ca.CLIENT] is ca.CLOSED
    assert server_chan.states[ca.SERVER] is ca.CLOSED
    assert pair.client.pending_request(read.ioid) is None
    assert sub.subscriptionid not in pair.client.event_add_commands
    with pytest.raises(ca.LocalProtocolError):
        chan.read()


def test_create_failure(pair):
    pair.handshake()
    chan = ca.ClientChannel("PV:missing", pair.client)
    pair.c2s(chan.create())
    pair.s2c(pair.server.channels[chan.cid].create_fail())
    assert chan.states[ca.CLIENT] is ca.FAILED
    assert chan.cid not in pair.client.channels


def test_error_response_ends_the_request_it_names(pair):
    chan, server_chan = pair.connect()
    (read,) = pair.c2s(chan.read())
    error = ca.ErrorResponse(read, chan.cid, ca.CAStatus.ECA_GETFAIL, "no data")
    (got,) = pair.s2c(error)
    assert got.error_message == "no data"
    assert chan.last_error == got
    assert pair.client.pending_request(read.ioid) is None
    with pytest.raises(ca.RemoteProtocolError):
        pair.client.recv(bytes(server_chan.read([1.0], read.ioid)))


def test_error_for_failed_subscription_ends_it(pair):
    chan, _ = pair.connect()
    (sub,) = pair.c2s(chan.subscribe())
    pair.s2c(ca.ErrorResponse(sub, chan.cid, ca.CAStatus.ECA_BADMASK, "mask"))
    assert sub.subscriptionid not in pair.client.event_add_commands


# -- misuse: LocalProtocolError ------------------------------------------------

def test_client_must_send_version_first():
    pair = CircuitPair()
    chan = ca.ClientChannel("PV", pair.client)
    with pytest.raises(ca.LocalProtocolError, match="SEND_VERSION_REQUEST"):
        pair.client.send(chan.create())
    assert chan.states[ca.CLIENT] is ca.SEND_CREATE_CHAN_REQUEST   # unchanged


def test_verbs_refuse_unconnected_channels():
    pair = CircuitPair()
    pair.handshake()
    chan = ca.ClientChannel("PV", pair.client)
    for verb in (chan.read, chan.subscribe, chan.clear,
                 lambda: chan.write([1.0])):
        with pytest.raises(ca.LocalProtocolError, match="PV"):
            verb()


def test_send_refuses_unknown_sid_and_reused_ids(pair):
    chan, _ = pair.connect()
    with pytest.raises(ca.LocalProtocolError, match="sid=999"):
        pair.client.send(ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1, 999, 5))
    read = chan.read()
    pair.c2s(read)
    with pytest.raises(ca.LocalProtocolError, match="already pending"):
        pair.client.send(chan.read(ioid=read.ioid))
    with pytest.raises(ca.LocalProtocolError):
        chan.unsubscribe(12345)


def test_send_refuses_commands_of_the_other_role(pair):
    chan, server_chan = pair.connect()
    with pytest.raises(ca.LocalProtocolError, match="sent only by"):
        pair.server.send(ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1, chan.sid, 1))
    with pytest.raises(ca.LocalProtocolError, match="sent only by"):
        pair.client.send(server_chan.disconnect())
    with pytest.raises(ca.LocalProtocolError, match="virtual circuit"):
        pair.client.send(ca.RepeaterRegisterRequest("127.0.0.1"))
    with pytest.raises(ca.LocalProtocolError):
        pair.client.send(ca.VersionRequest(priority=1, version=13))  # twice


def test_access_rights_are_enforced_before_sending(pair):
    chan, _ = pair.connect(rights=ca.AccessRights.READ)
    with pytest.raises(ca.LocalProtocolError, match="access rights"):
        pair.client.send(chan.write([1.0]))
    pair.c2s(chan.read())                              # reading is fine


def test_refused_command_in_a_batch_keeps_earlier_buffers(pair):
    chan, _ = pair.connect()
    good = chan.read()
    bad = ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1, 999, 77)
    with pytest.raises(ca.LocalProtocolError) as info:
        pair.client.send(good, bad)
    assert b"".join(bytes(b) for b in info.value.buffers) == bytes(good)


def test_bad_construction_arguments():
    with pytest.raises(ca.LocalProtocolError, match="priority"):
        ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 100)
    with pytest.raises(ca.LocalProtocolError, match="our_role"):
        ca.VirtualCircuit("client", SERVER_ADDRESS, 0)
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    with pytest.raises(ca.LocalProtocolError, match="CLIENT circuit"):
        ca.ClientChannel("PV", server)
    client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 0)
    ca.ClientChannel("PV", client, cid=4)
    with pytest.raises(ca.LocalProtocolError, match="cid=4"):
        ca.ClientChannel("PV2", client, cid=4)


# -- peer misbehaviour: RemoteProtocolError -------------------------------------

def test_server_rejects_requests_before_the_version_request():
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)
    with pytest.raises(ca.RemoteProtocolError, match="SEND_VERSION_REQUEST"):
        server.recv(bytes(ca.CreateChanRequest("PV", 1, 13)))
    assert server.channels == {}


def test_server_recovers_after_a_request_for_an_unknown_sid(pair):
    """As rsrv does: refuse that one request and go on with the next."""
    chan, _ = pair.connect()
    stale = ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1, 4242, 90)
    good = ca.ReadNotifyRequest(ca.ChannelType.DOUBLE, 1, chan.sid, 91)
    echo = ca.EchoRequest()
    with pytest.raises(ca.RemoteProtocolError, match="sid=4242") as info:
        pair.server.recv(bytes(echo) + bytes(stale) + bytes(good))
    assert info.value.command == stale
    assert info.value.commands == [echo]
    commands, needed = pair.server.recv()
    assert commands == [good] and needed == 0
    assert pair.server.pending_request(91) == good


def test_client_rejects_unsolicited_answers(pair):
    chan, server_chan = pair.connect()
    junk = [
        ca.ReadNotifyResponse([1.0], None, ca.ChannelType.DOUBLE, 1, 1, 555),
        ca.WriteNotifyResponse(ca.ChannelType.DOUBLE, 1, 1, 556),
        ca.EventAddResponse([1.0], None, ca.ChannelType.DOUBLE, 1, 1, 557),
        ca.CreateChanResponse(ca.ChannelType.DOUBLE, 1, 9999, 3),
        ca.AccessRightsResponse(9999, 3),
    ]
    for command in junk:
        with pytest.raises(ca.RemoteProtocolError):
            pair.client.recv(bytes(command))
    assert chan.states[ca.CLIENT] is ca.CONNECTED


def test_reused_sid_is_refused(pair):
    chan, server_chan = pair.connect()
    other = ca.ClientChannel("PV:two", pair.client)
    pair.c2s(other.create())
    with pytest.raises(ca.RemoteProtocolError, match="already used"):
        pair.client.recv(bytes(ca.CreateChanResponse(ca.ChannelType.DOUBLE, 1,
                                                     other.cid, chan.sid)))
    assert other.states[ca.CLIENT] is ca.AWAIT_CREATE_CHAN_RESPONSE


def test_garbage_bytes_are_a_remote_error_after_the_good_commands(pair):
    pair.handshake()
    pair.c2s(ca.EchoRequest())
    with pytest.raises(ca.RemoteProtocolError) as info:
        pair.client.recv(bytes(ca.EchoResponse()) + b"\xff\xff" + bytes(14))
    assert info.value.commands == [ca.EchoResponse()]   # processed, reported
    assert info.value.command is None                   # the bytes were bad
    with pytest.raises(ca.RemoteProtocolError):         # out of sync for good
        pair.client.recv(bytes(ca.EchoResponse()))


# -- ids, process_command, disconnect -------------------------------------------

def test_ids_are_unique_among_live_ones_and_wrap():
    pair = CircuitPair()
    chan, _ = pair.connect()
    first = chan.read()
    pair.c2s(first)
    pair.client._counters["ioid"] = first.ioid       # force a collision
    assert pair.client.new_ioid() != first.ioid
    pair.client._counters["ioid"] = MAX_ID
    assert pair.client.new_ioid() == MAX_ID
    assert first.ioid == 0                           # still pending
    assert pair.client.new_ioid() == 1               # wrapped, skipping it
    cids = {ca.ClientChannel(f"PV{i}", pair.client).cid for i in range(50)}
    assert len(cids) == 50 and chan.cid not in cids


def test_process_command_is_a_no_op_for_received_commands(pair):
    chan, server_chan = pair.connect()
    (request,) = pair.c2s(chan.read())
    (response,) = pair.s2c(server_chan.read([1.0], request.ioid))
    pair.client.process_command(response)          # must not raise "unknown ioid"
    assert pair.client.pending_request(request.ioid) is None
    # A command it has not seen is processed as coming from the peer.
    pair.client.process_command(server_chan.disconnect())
    assert chan.states[ca.CLIENT] is ca.CLOSED


def test_disconnect_closes_everything(pair):
    chan, server_chan = pair.connect()
    pair.client.disconnect()
    assert pair.client.states[ca.CLIENT] is ca.DISCONNECTED
    assert chan.states[ca.CLIENT] is ca.CLOSED
    assert pair.client.channels == {}
    with pytest.raises(ca.LocalProtocolError):
        pair.client.send(ca.EchoRequest())


# -- the one test with a socket: our client circuit against epics-base rsrv -----

class _SocketPeer:
    """Feed a circuit from a loopback TCP socket until a condition holds."""

    def __init__(self, circuit, port):
        import socket
        self.circuit = circuit
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, *commands):
        self.sock.sendall(b"".join(bytes(b) for b in self.circuit.send(*commands)))

    def until(self, predicate, limit=50):
        received = []
        for _ in range(limit):                   # bounded; each recv <= 5 s
            if predicate(received):
                return received
            data = self.sock.recv(65536)
            assert data, "softIoc closed the circuit"
            received.extend(self.circuit.recv(data)[0])
        raise AssertionError(f"condition not met; got {received}")


@pytest.mark.network
def test_client_circuit_against_softioc(softioc):
    ioc = softioc('record(ao, "CIRC:ao") { field(VAL, "1.5") }\n'
                  'record(waveform, "CIRC:wf") { field(FTVL, "LONG") '
                  'field(NELM, "4") }\n')
    circuit = ca.VirtualCircuit(ca.CLIENT, ("127.0.0.1", ioc.port), 0)
    peer = _SocketPeer(circuit, ioc.port)
    try:
        ao = ca.ClientChannel("CIRC:ao", circuit)
        wf = ca.ClientChannel("CIRC:wf", circuit)
        peer.send(ao.version(), ao.host_name("testhost"), ao.client_name("tester"),
                  ao.create(), wf.create())
        peer.until(lambda _: ao.states[ca.CLIENT] is ca.CONNECTED
                   and wf.states[ca.CLIENT] is ca.CONNECTED)
        assert circuit.states[ca.CLIENT] is ca.CONNECTED
        assert ao.native_data_type == ca.ChannelType.DOUBLE
        assert (wf.native_data_type, wf.native_data_count) == (ca.ChannelType.LONG, 4)
        assert ao.access_rights == ca.AccessRights.READ | ca.AccessRights.WRITE

        read = ao.read()
        peer.send(read)
        got = peer.until(lambda r: any(isinstance(c, ca.ReadNotifyResponse) for c in r))
        assert list(got[-1].data) == [1.5]

        sub = ao.subscribe()
        peer.send(sub)
        peer.until(lambda r: any(isinstance(c, ca.EventAddResponse) for c in r))
        write = ao.write([7.25], notify=True)
        peer.send(write)
        got = peer.until(lambda r: any(isinstance(c, ca.EventAddResponse)
                                       and list(c.data) == [7.25] for c in r)
                         and any(isinstance(c, ca.WriteNotifyResponse) for c in r))
        peer.send(ao.unsubscribe(sub.subscriptionid))
        peer.until(lambda r: sub.subscriptionid not in circuit.event_add_commands)

        peer.send(ca.EchoRequest())
        peer.until(lambda r: any(isinstance(c, ca.EchoResponse) for c in r))
        peer.send(ao.clear())
        peer.until(lambda r: ao.states[ca.CLIENT] is ca.CLOSED)
        assert ao.cid not in circuit.channels
    finally:
        peer.sock.close()


def test_clearing_channels_drops_exactly_their_requests_and_subscriptions():
    """Each channel's pending reads and subscriptions go with it, and only
    they (the circuit finds them by sid, not by scanning every request)."""
    client = ca.VirtualCircuit(ca.CLIENT, SERVER_ADDRESS, 0)
    server = ca.VirtualCircuit(ca.SERVER, CLIENT_ADDRESS, None)

    def deliver(sender, receiver, *commands):
        receiver.recv(b"".join(bytes(b) for b in sender.send(*commands)))

    deliver(client, server, ca.VersionRequest(0, 13))
    deliver(server, client, ca.VersionResponse(13))
    channels = [ca.ClientChannel(f"PV{i}", client) for i in range(40)]
    deliver(client, server, *[ch.create() for ch in channels])
    for ch in channels:
        twin = server.channels[ch.cid]
        deliver(server, client, twin.access_rights_response(RW),
                twin.create(6, 1, 1000 + ch.cid))
    deliver(client, server, *[ch.subscribe(data_type=6) for ch in channels])
    deliver(client, server, *[ch.read(data_type=6) for ch in channels])
    for circuit in (client, server):
        assert len(circuit.event_add_commands) == 40 and len(circuit._ioids) == 40
    cleared, kept = channels[::2], channels[1::2]
    deliver(client, server, *[ch.clear() for ch in cleared])
    deliver(server, client, *[server.channels[ch.cid].clear() for ch in cleared])
    for circuit in (client, server):
        assert sorted(r.sid for r in circuit.event_add_commands.values()) == \
            sorted(ch.sid for ch in kept)
        assert sorted(r.sid for r in circuit._ioids.values()) == \
            sorted(ch.sid for ch in kept)
    for ch in kept:
        [(subid, request)] = ch.subscriptions.items()
        assert request.sid == ch.sid
        deliver(client, server, ch.unsubscribe(subid))
        deliver(server, client, server.channels[ch.cid].unsubscribe(subid))
        assert ch.subscriptions == {}
    assert client.event_add_commands == {} == server.event_add_commands

"""Misbehaving clients and bad requests: the server answers with the right ECA
code, drops only a client that sends garbage (one log line), and a slow or
vanished client never stalls anybody else or grows memory without bound."""
import logging
import socket
import struct
import threading
import time

import pytest

import caproto as ca
from caproto import (CLIENT, AccessRightsResponse, CAStatus, ClientChannel,
                     CreateChanResponse, ErrorResponse, EventAddResponse,
                     EventsOffRequest, EventsOnRequest, HostNameRequest,
                     ReadNotifyResponse, ServerDisconnResponse, VirtualCircuit,
                     WriteNotifyResponse)
from caproto.server import common

from . import LAYERS, ServerThread, run_client

pytestmark = pytest.mark.timeout(60)


class RawClient:
    """A blocking CA client over our core, for sending exactly what a test wants."""

    def __init__(self, port, host_name="tester", user="me", max_payload_size=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.circuit = VirtualCircuit(CLIENT, ("127.0.0.1", port), 0,
                                      max_payload_size=max_payload_size)
        self.pending = []
        self.send(self.circuit_version(), HostNameRequest(host_name),
                  ca.ClientNameRequest(user))

    def circuit_version(self):
        return ca.VersionRequest(priority=0, version=13)

    def send(self, *commands):
        self.sock.sendall(b"".join(bytes(b) for b in self.circuit.send(*commands)))

    def send_raw(self, data):
        self.sock.sendall(data)

    def next(self, kind=None, timeout=10):
        """The next received command (of class `kind`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                command = self.pending.pop(0)
                if kind is None or isinstance(command, kind):
                    return command
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            commands, _ = self.circuit.recv(data)
            self.pending.extend(commands)

    def channel(self, name):
        channel = ClientChannel(name, self.circuit)
        self.send(channel.create())
        self.next(CreateChanResponse)
        return channel

    def close(self):
        self.sock.close()


def raw_header(command, payload_size, data_type, data_count, p1, p2):
    return struct.pack(">HHHHII", command, payload_size, data_type, data_count, p1, p2)


@pytest.fixture(params=LAYERS)
def layer(request):
    return request.param


def pvdb():
    return {
        "F:x": ca.ChannelDouble(value=1.0, upper_ctrl_limit=10, lower_ctrl_limit=-10),
        "F:ro": ca.ChannelDouble(value=2.0, read_only=True),
        "F:big": ca.ChannelDouble(value=[0.0] * 10000),
        "F:wave": ca.ChannelDouble(value=[0.0] * 1000),
        "F:text": ca.ChannelString(value="not a number"),
    }


def test_bad_requests_get_error_responses_and_change_nothing(layer):
    db = pvdb()
    with ServerThread(layer, db) as context:
        client = RawClient(context.port)
        x, ro, big = client.channel("F:x"), client.channel("F:ro"), client.channel("F:big")
        # Unknown DBR type (built by hand: our command classes refuse it).
        client.send_raw(raw_header(15, 0, 99, 1, x.sid, 101))
        error = client.next(ErrorResponse)
        assert error.status == CAStatus.ECA_BADTYPE and error.original_request.parameter2 == 101
        # More elements than the channel has.
        client.send(x.read(data_type=6, data_count=5, ioid=102))
        assert client.next(ErrorResponse).status == CAStatus.ECA_BADCOUNT
        # Larger than EPICS_CA_MAX_ARRAY_BYTES (default 16384; 10000 doubles).
        client.send(big.read(ioid=103))
        assert client.next(ErrorResponse).status == CAStatus.ECA_TOLARGE
        # Put-callback to a read-only channel, and outside the control limits.
        assert client.circuit.channels[ro.cid].access_rights == ca.AccessRights.READ
        ro.access_rights = None            # let our client send what libca would refuse
        client.send(ro.write([5.0], data_type=6, notify=True, ioid=104))
        reply = client.next(WriteNotifyResponse)
        assert (reply.ioid, reply.status) == (104, CAStatus.ECA_NOWTACCESS)
        client.send(ro.write([5.0], data_type=6, ioid=105))
        assert client.next(ErrorResponse).status == CAStatus.ECA_NOWTACCESS
        client.send(x.write([50.0], data_type=6, notify=True, ioid=106))
        reply = client.next(WriteNotifyResponse)
        assert (reply.ioid, reply.status) == (106, CAStatus.ECA_PUTFAIL)
        # Text that is no number, read or subscribed to as DOUBLE.
        text = client.channel("F:text")
        client.send(text.read(data_type=6, ioid=108))
        assert client.next(ErrorResponse).status == CAStatus.ECA_NOCONVERT
        client.send(text.subscribe(data_type=6, subscriptionid=7))
        error = client.next(ErrorResponse)
        assert error.status == CAStatus.ECA_NOCONVERT and error.original_request.parameter2 == 7
        # The circuit still works and nothing changed.
        client.send(x.read(data_type=6, ioid=107))
        assert list(client.next(ReadNotifyResponse).data) == [1.0]
        client.send(text.read(data_type=0, ioid=109))
        assert client.next(ReadNotifyResponse).data == [b"not a number"]
        client.close()
    assert db["F:ro"].value == 2.0 and db["F:x"].value == 1.0


def test_garbage_drops_only_that_client_with_one_log_line(layer, caplog):
    with ServerThread(layer, pvdb()) as context:
        good = RawClient(context.port)
        x = good.channel("F:x")
        bad = RawClient(context.port)
        bad.channel("F:x")
        with caplog.at_level(logging.WARNING, logger="caproto.circ"):
            bad.send_raw(b"\xff" * 64)
            with pytest.raises((ConnectionError, OSError)):
                bad.next(timeout=10)
            deadline = time.monotonic() + 10
            while len(context.circuits) != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        lines = [r for r in caplog.records if r.name == "caproto.circ"]
        assert len(lines) == 1 and "dropped client" in lines[0].getMessage()
        good.send(x.read(data_type=6, ioid=1))
        assert list(good.next(ReadNotifyResponse).data) == [1.0]
        good.close()
        bad.close()


def test_client_vanishing_mid_message_is_cleaned_up(layer, caplog):
    with ServerThread(layer, pvdb()) as context:
        gone = RawClient(context.port)
        gone.channel("F:x")
        gone.send_raw(raw_header(15, 0, 6, 1, 0, 0)[:7])
        gone.close()
        deadline = time.monotonic() + 10
        while context.circuits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not context.circuits
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        other = RawClient(context.port)
        channel = other.channel("F:x")
        other.send(channel.read(data_type=6, ioid=1))
        assert list(other.next(ReadNotifyResponse).data) == [1.0]
        other.close()


def test_slow_client_is_bounded_and_never_stalls_others(layer):
    db = pvdb()
    wave = db["F:wave"]
    server = ServerThread(layer, db)
    with server as context:
        slow = RawClient(context.port)
        channel = slow.channel("F:wave")
        slow.send(channel.subscribe(data_type=6, mask=1))
        n_updates = 3000                     # 8 kB each: 24 MB if nothing coalesced

        async def flood():
            for i in range(n_updates):
                await wave.write([float(i)] * 1000)
                if i % 50 == 0:
                    await server.async_lib.sleep(0)
            return max(handler._event_bytes for handler in context.circuits)
        largest_backlog = server.call(flood, timeout=60)
        assert largest_backlog <= common.EVENT_QUEUE_BYTES + 16 * 8016
        # Another client is served promptly meanwhile.
        result = run_client("""
            from epics import ca
            chid = ca.create_channel('F:x', connect=False, auto_cb=False)
            ca.connect_channel(chid, timeout=10)
            emit(ca.get(chid, timeout=5))
        """)
        assert result == 1.0
        # The slow client finally reads: it ends with the last value, having
        # received far fewer updates than were posted.
        received = []
        while not received or received[-1] != n_updates - 1:
            received.append(slow.next(EventAddResponse, timeout=20).data[0])
        assert len(received) < n_updates
        slow.close()


def test_a_flooding_putter_leaves_its_subscribers_every_update(layer):
    """A client putting as fast as it can to 100 PVs fills every chunk the
    server reads; the server must send the events those puts fired between
    one chunk and the next.  Were it to take the next chunk first, each
    subscription's pending updates would pass PENDING_PER_SUBSCRIPTION and be
    coalesced away, although the subscriber keeps up (this happened on trio,
    which runs woken tasks in random order with the circuit's own)."""
    names = [f"Q:{i:02d}" for i in range(100)]
    rounds = 120                                 # 12,000 puts of 24 bytes: ~18 chunks
    db = {name: ca.ChannelDouble(value=0.0) for name in names}
    with ServerThread(layer, db) as context:
        subscriber, putter = RawClient(context.port), RawClient(context.port)
        for channel in [subscriber.channel(name) for name in names]:
            subscriber.send(channel.subscribe(data_type=6, mask=1))
        initial = [subscriber.next(EventAddResponse).data[0] for _ in names]
        assert initial == [0.0] * len(names)
        channels = [putter.channel(name) for name in names]
        flood = b"".join(
            bytes(buffer) for value in range(1, rounds + 1) for channel in channels
            for buffer in putter.circuit.send(channel.write([float(value)], data_type=6)))
        assert len(flood) > 5 * common.RECV_CHUNK
        received = {}                            # read while the flood goes in
        reader = threading.Thread(target=lambda: _read_events_until(
            subscriber, received, float(rounds), len(names)))
        reader.start()
        putter.send_raw(flood)
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert all(values[-1] == rounds for values in received.values())
        delivered = sum(len(values) for values in received.values())
        assert delivered >= 0.95 * rounds * len(names), delivered
        subscriber.close()
        putter.close()


def _read_events_until(client, received, last, how_many):
    """Collect EventAddResponse values per subscription id until `how_many`
    subscriptions have reported `last` (or 20 s pass without an event)."""
    done = set()
    while len(done) < how_many:
        event = client.next(EventAddResponse, timeout=20)
        received.setdefault(event.subscriptionid, []).append(event.data[0])
        if event.data[0] == last:
            done.add(event.subscriptionid)


def test_pipelined_large_reads_wait_for_the_socket(layer, monkeypatch):
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", "2000000")
    server = ServerThread(layer, {"F:mb": ca.ChannelDouble(value=[1.0] * 131072)})
    with server as context:
        greedy = RawClient(context.port, max_payload_size=2_100_000)
        channel = greedy.channel("F:mb")
        greedy.send(*[channel.read(data_type=6, ioid=i) for i in range(40)])  # 40 MB
        time.sleep(1.0)                     # the server writes until the socket is full
        # What waits in the server is about OUTBOX_LIMIT, not 40 MB: reading
        # stops until the socket takes the replies already queued.
        [handler] = [h for h in context.circuits if h.address[1] == greedy.sock.getsockname()[1]]
        assert handler._outbox_bytes < 4 * common.OUTBOX_LIMIT
        other = RawClient(context.port)
        x = other.channel("F:mb")
        other.send(x.read(data_type=6, data_count=1, ioid=99))
        assert list(other.next(ReadNotifyResponse).data) == [1.0]
        got = [greedy.next(ReadNotifyResponse, timeout=20).ioid for _ in range(40)]
        assert got == list(range(40))
        greedy.close()
        other.close()


def test_events_off_coalesces_to_the_latest_value(layer):
    db = pvdb()
    server = ServerThread(layer, db)
    with server as context:
        client = RawClient(context.port)
        channel = client.channel("F:x")
        client.send(channel.subscribe(data_type=6, mask=1))
        assert list(client.next(EventAddResponse).data) == [1.0]
        client.send(EventsOffRequest())
        client.send(channel.read(data_type=6, ioid=1))      # a round trip:
        client.next(ReadNotifyResponse)                     # EventsOff is in

        async def updates():
            for value in range(2, 9):
                await db["F:x"].write(float(value))
        server.call(updates)
        client.send(EventsOnRequest())
        client.send(channel.read(data_type=6, ioid=2))
        events = []
        while True:
            command = client.next()
            if isinstance(command, ReadNotifyResponse):
                break
            if isinstance(command, EventAddResponse):
                events.append(command.data[0])
        assert events == [8.0]
        client.close()


def test_removed_pv_disconnects_its_channels(layer):
    server = ServerThread(layer, pvdb())
    with server as context:
        client = RawClient(context.port)
        channel = client.channel("F:x")
        client.send(channel.subscribe(data_type=6, mask=1))
        client.next(EventAddResponse)
        server.call(lambda: context.remove_pvs("F:x"))
        assert client.next(ServerDisconnResponse).cid == channel.cid
        assert "F:x" not in context.pvdb
        client.close()


class HostLimited(ca.ChannelDouble):
    def check_access(self, hostname, username):
        if hostname == "control-room":
            return ca.AccessRights.READ | ca.AccessRights.WRITE
        return ca.AccessRights.READ


def test_access_rights_follow_the_host_name(layer):
    with ServerThread(layer, {"F:limited": HostLimited(value=0.0)}) as context:
        client = RawClient(context.port, host_name="elsewhere")
        channel = client.channel("F:limited")
        assert channel.access_rights == ca.AccessRights.READ
        client.send(HostNameRequest("control-room"))
        rights = client.next(AccessRightsResponse)
        assert rights.access_rights == ca.AccessRights.READ | ca.AccessRights.WRITE
        client.close()


class BrokenAccess(ca.ChannelDouble):
    def check_access(self, hostname, username):
        raise RuntimeError("a bug in a user's access hook")


def test_a_failing_access_hook_refuses_its_channel_only(layer, caplog):
    """One request run creating three channels, the middle one's hook
    raising: the client hears about each one, the others connect."""
    pvs = {"F:a": ca.ChannelDouble(value=1.0), "F:broken": BrokenAccess(value=2.0),
           "F:c": ca.ChannelDouble(value=3.0)}
    with ServerThread(layer, pvs) as context, caplog.at_level(logging.ERROR):
        client = RawClient(context.port)
        channels = [ClientChannel(name, client.circuit) for name in pvs]
        client.send(*(channel.create() for channel in channels))
        answers = {}
        while len(answers) < 3:
            command = client.next((CreateChanResponse, ca.CreateChFailResponse))
            answers[command.cid] = type(command)
        assert [answers[channel.cid] for channel in channels] == [
            CreateChanResponse, ca.CreateChFailResponse, CreateChanResponse]
        client.send(channels[2].read(data_type=6))
        assert list(client.next(ReadNotifyResponse).data) == [3.0]
        client.close()
    assert any("F:broken" in record.getMessage() for record in caplog.records)

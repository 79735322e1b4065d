"""caproto.client.core: the sans-I/O client core.

Most tests drive the core in memory against a server-side VirtualCircuit
(bytes pass between them, as in h11's ConnectionPair) with a fake clock;
the last ones drive it through the threading face against a softIoc.
"""
import os
import signal

import pytest

import caproto as ca
from caproto.client import core
from caproto.threading.client import Context
from tests.client import CLIENT_DB, wait_until
from tests.peers import SoftIoc

LOOPBACK = {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": "5064"}
SERVER = ("127.0.0.1", 5064)


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def searches(effects):
    """{name: cid} for every SearchRequest in SendDatagram effects."""
    found = {}
    for effect in of(effects, core.SendDatagram):
        for command in ca.read_datagram(effect.data, effect.address, ca.CLIENT):
            if isinstance(command, ca.SearchRequest):
                found[command.name] = command.cid
    return found


def answer(names_to_cids, server=SERVER):
    """A server's datagram answering the searches."""
    responder = ca.Broadcaster(ca.SERVER)
    return responder.send(*[ca.SearchResponse(server[1], "255.255.255.255", cid, 13)
                            for cid in names_to_cids.values()])


class Pair:
    """A ClientCore connected in memory to a server-side VirtualCircuit."""

    def __init__(self, env=None, names=("pv",), data_type=ca.ChannelType.DOUBLE,
                 count=1):
        self.core = core.ClientCore(env=dict(LOOPBACK, **(env or {})))
        self.now = 0.0
        self.entries = [self.core.add_channel(n, now=self.now)[0] for n in names]
        effects = self.core.poll(self.now)
        opened = of(self.core.datagram_received(answer(searches(effects)),
                                                SERVER, self.now),
                    core.OpenCircuit)
        assert len(opened) == 1
        self.key = opened[0].key
        self.server = ca.VirtualCircuit(ca.SERVER, ("127.0.0.1", 40000), None)
        self.to_server(self.core.circuit_connected(self.key, self.now))
        commands = self.last
        replies = [ca.VersionResponse(13)]
        for command in commands:
            if isinstance(command, ca.CreateChanRequest):
                channel = self.server.channels[command.cid]
                replies += [channel.access_rights_response(3),
                            channel.create(data_type, count, command.cid + 100)]
        self.effects = self.to_client(*replies)

    def to_server(self, effects):
        data = b"".join(b for e in of(effects, core.SendBuffers)
                        for b in e.buffers)
        self.last, _ = self.server.recv(data)
        return self.last

    def to_client(self, *commands):
        data = b"".join(bytes(b) for b in self.server.send(*commands))
        return self.core.bytes_received(self.key, data, self.now)


def test_searches_are_batched_into_datagrams_within_the_mtu():
    client = core.ClientCore(env=LOOPBACK)
    names = [f"batch:{i:04d}:with-a-longish-name" for i in range(500)]
    for name in names:
        client.add_channel(name)
    effects = client.poll(0.0)
    datagrams = of(effects, core.SendDatagram)
    assert all(len(d.data) <= ca.SEARCH_MAX_DATAGRAM_BYTES for d in datagrams)
    assert {d.address for d in datagrams} == {SERVER}
    assert len(datagrams) < len(names) / 10          # many names per datagram
    assert sorted(searches(effects)) == sorted(names)


def test_search_retries_back_off_up_to_max_search_period():
    client = core.ClientCore(env=dict(LOOPBACK, EPICS_CA_MAX_SEARCH_PERIOD="60"))
    client.add_channel("nobody:home")
    sent_at, now = [], 0.0
    for _ in range(40):
        if searches(client.poll(now)):
            sent_at.append(now)
        now = client.next_deadline()
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert gaps[0] < 0.2
    assert all(b >= a - 1e-6 for a, b in zip(gaps, gaps[1:]))   # never faster
    assert max(gaps) == pytest.approx(60.0)                # capped


def test_address_lists_follow_the_environment():
    env = {"EPICS_CA_ADDR_LIST": "127.0.0.1 127.0.0.2:6000",
           "EPICS_CA_AUTO_ADDR_LIST": "YES", "EPICS_CA_SERVER_PORT": "5070"}
    client = core.ClientCore(env=env, auto_addresses=["127.255.255.255"])
    assert client.search_addresses == [("127.0.0.1", 5070), ("127.0.0.2", 6000),
                                       ("127.255.255.255", 5070)]
    # Automatic list from the interfaces (loopback's broadcast is among them).
    auto = core.ClientCore(env={"EPICS_CA_AUTO_ADDR_LIST": "YES"})
    assert ("127.255.255.255", 5064) in auto.search_addresses
    off = core.ClientCore(env={"EPICS_CA_AUTO_ADDR_LIST": "NO"})
    assert off.search_addresses == []


def test_name_servers_get_a_tcp_circuit_and_the_searches():
    env = {"EPICS_CA_ADDR_LIST": "", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CA_NAME_SERVERS": "127.0.0.1:5999"}
    client = core.ClientCore(env=env)
    _entry, effects = client.add_channel("via:nameserver")
    (opened,) = of(effects, core.OpenCircuit)
    assert opened.key.name_server and opened.key.address == ("127.0.0.1", 5999)
    assert not of(client.poll(0.0), core.SendDatagram)      # no UDP at all
    sent = of(client.circuit_connected(opened.key, 0.0), core.SendBuffers)
    commands = ca.VirtualCircuit(ca.SERVER, ("x", 1), None).recv(
        b"".join(b for e in sent for b in e.buffers))[0]
    assert [type(c) for c in commands] == [ca.VersionRequest, ca.SearchRequest]
    assert commands[1].name == "via:nameserver"


def test_connect_read_write_subscribe_in_memory():
    pair = Pair()
    (connected,) = of(pair.effects, core.ChannelConnected)
    entry = connected.entry
    assert entry.connected and entry.access_rights == ca.AccessRights(3)
    request, effects = pair.core.read(entry, owner="mine")
    (read,) = pair.to_server(effects)
    chan = pair.server.channels_sid[read.sid]
    (done,) = of(pair.to_client(chan.read([4.5], read.ioid, data_count=1)),
                 core.ReadDone)
    assert done.request.owner == "mine" and list(done.command.data) == [4.5]

    request, effects = pair.core.write(entry, [7.0], notify=True)
    (write,) = pair.to_server(effects)
    assert list(write.data) == [7.0]
    assert of(pair.to_client(chan.write(write.ioid)), core.WriteDone)

    sub, effects = pair.core.subscribe(entry, owner="sub")
    (add,) = pair.to_server(effects)
    event = chan.subscribe([1.0], add.subscriptionid, data_count=1)
    (data,) = of(pair.to_client(event), core.SubscriptionData)
    assert data.subscription is sub
    (cancel,) = pair.to_server(pair.core.unsubscribe(sub))
    assert isinstance(cancel, ca.EventCancelRequest)


def test_lost_circuit_fails_requests_and_resubscribes_after_reconnect():
    pair = Pair()
    entry = pair.entries[0]
    sub, effects = pair.core.subscribe(entry, mask=ca.SubscriptionType.DBE_LOG)
    pair.to_server(effects)
    request, effects = pair.core.read(entry)
    pair.to_server(effects)
    lost = pair.core.circuit_lost(pair.key, 1.0, "server went away")
    (failed,) = of(lost, core.RequestFailed)
    assert failed.request is request and "server went away" in str(failed.error)
    assert of(lost, core.ChannelDisconnected)
    assert entry.state == core.SEARCHING
    # Found again: the subscription is re-sent with the same mask.
    cids = searches(pair.core.poll(1.0))
    opened = of(pair.core.datagram_received(answer(cids), SERVER, 1.0),
                core.OpenCircuit)
    server = ca.VirtualCircuit(ca.SERVER, ("127.0.0.1", 40001), None)
    commands = server.recv(b"".join(
        b for e in pair.core.circuit_connected(opened[0].key, 1.0)
        if isinstance(e, core.SendBuffers) for b in e.buffers))[0]
    create = [c for c in commands if isinstance(c, ca.CreateChanRequest)][0]
    channel = server.channels[create.cid]
    data = b"".join(bytes(b) for b in server.send(
        ca.VersionResponse(13), channel.access_rights_response(3),
        channel.create(ca.ChannelType.DOUBLE, 1, 7)))
    effects = pair.core.bytes_received(opened[0].key, data, 1.0)
    assert of(effects, core.ChannelConnected)
    resent = server.recv(b"".join(b for e in of(effects, core.SendBuffers)
                                  for b in e.buffers))[0]
    assert [c.mask for c in resent] == [int(ca.SubscriptionType.DBE_LOG)]


def test_idle_circuit_is_echoed_then_dropped_when_silent():
    pair = Pair(env={"EPICS_CA_CONN_TMO": "2"})
    pair.now = 2.5
    sent = pair.to_server(pair.core.poll(pair.now))
    assert [type(c) for c in sent] == [ca.EchoRequest]
    assert not of(pair.core.poll(3.0), core.CloseCircuit)   # still waiting
    effects = pair.core.poll(2.5 + core.ECHO_TIMEOUT)
    assert of(effects, core.CloseCircuit) and of(effects, core.ChannelDisconnected)


def test_echo_reply_keeps_the_circuit():
    pair = Pair(env={"EPICS_CA_CONN_TMO": "2"})
    pair.now = 2.5
    pair.to_server(pair.core.poll(pair.now))
    pair.to_client(ca.EchoResponse())
    assert not of(pair.core.poll(2.5 + core.ECHO_TIMEOUT), core.CloseCircuit)


def test_beacon_anomaly_resets_search_backoff():
    client = core.ClientCore(env=LOOPBACK)
    client.add_channel("late:server")
    now = 0.0
    for _ in range(8):                       # let the back-off grow
        now = client.next_deadline()
        client.poll(now)
    waiting_until = client.next_deadline()
    now += 0.01
    beacon = ca.Broadcaster(ca.SERVER).send(
        ca.RsrvIsUpResponse(13, 5064, 0, "127.0.0.1"))
    effects = client.datagram_received(beacon, ("127.0.0.1", 5065), now)
    assert of(effects, core.BeaconAnomaly)
    assert client.next_deadline() <= now < waiting_until
    assert "late:server" in searches(client.poll(now))
    # The next beacon in sequence is no anomaly.
    beacon = ca.Broadcaster(ca.SERVER).send(
        ca.RsrvIsUpResponse(13, 5064, 1, "127.0.0.1"))
    assert not of(client.datagram_received(beacon, ("127.0.0.1", 5065),
                                           now + 15), core.BeaconAnomaly)


def test_requests_above_max_array_bytes_are_refused_with_names():
    pair = Pair(env={"EPICS_CA_MAX_ARRAY_BYTES": "16384"}, count=5000)
    entry = pair.entries[0]
    with pytest.raises(ca.CaprotoValueError) as info:
        pair.core.read(entry, data_count=5000)
    message = str(info.value)
    assert "pv" in message and "EPICS_CA_MAX_ARRAY_BYTES=16384" in message
    assert "127.0.0.1:5064" in message
    with pytest.raises(ca.CaprotoValueError):
        pair.core.write(entry, list(range(3000)))
    pair.core.read(entry, data_count=100)          # small enough: allowed


def test_timeout_error_names_pv_and_where_it_looked():
    client = core.ClientCore(env=LOOPBACK)
    entry, _ = client.add_channel("missing:pv")
    error = client.timeout_error(entry, "connecting to", 1.0)
    assert isinstance(error, ca.CaprotoTimeoutError)
    assert "missing:pv" in str(error) and "127.0.0.1:5064" in str(error)


def test_bad_names_and_priorities_are_refused():
    client = core.ClientCore(env=LOOPBACK)
    with pytest.raises(ca.CaprotoValueError, match="PV name"):
        client.add_channel("")
    with pytest.raises(ca.CaprotoValueError, match="priority"):
        client.add_channel("x", priority=100)


# ---------------------------------------------------------------- softIoc

@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    where = tmp_path_factory.mktemp("core-ioc")
    (where / "client.db").write_text(CLIENT_DB)
    ioc = SoftIoc(where / "client.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  where / "ioc.log")
    yield ioc
    ioc.stop()


def test_name_server_resolution_against_softioc(ioc):
    env = dict(os.environ, EPICS_CA_ADDR_LIST="", EPICS_CA_AUTO_ADDR_LIST="NO",
               EPICS_CA_NAME_SERVERS=f"127.0.0.1:{ioc.port}")
    with Context(env=env) as context:
        assert context.broadcaster.core.search_addresses == []
        ai, text = context.get_pvs("cl:ai", "cl:stringin")
        assert ai.read(timeout=3).data[0] == 1.5
        assert text.read(timeout=3).data == [b"hello"]


def test_max_array_bytes_against_softioc(ioc):
    env = dict(os.environ, EPICS_CA_MAX_ARRAY_BYTES="16384")
    with Context(env=env) as context:
        (wave,) = context.get_pvs("cl:bigwf")
        wave.wait_for_connection(timeout=10)
        with pytest.raises(ca.CaprotoValueError, match="cl:bigwf"):
            wave.read(data_count=5000)
        with pytest.raises(ca.CaprotoValueError, match="EPICS_CA_MAX_ARRAY"):
            wave.write(list(range(5000)))
        wave.write(list(range(100)), wait=True, timeout=10)
        assert list(wave.read(timeout=10).data) == list(range(100))


def _all_threads_stopped(pid):
    """SIGSTOP is asynchronous: true once every thread of `pid` is stopped."""
    tasks = os.listdir(f"/proc/{pid}/task")
    states = []
    for task in tasks:
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return all(state in "Tt" for state in states)


def test_timeout_names_pv_and_server_when_server_is_stopped(ioc):
    with Context() as context:
        (ai,) = context.get_pvs("cl:ai")
        ai.wait_for_connection(timeout=10)
        os.kill(ioc.proc.pid, signal.SIGSTOP)
        try:
            assert wait_until(lambda: _all_threads_stopped(ioc.proc.pid))
            with pytest.raises(ca.CaprotoTimeoutError) as info:
                ai.read(timeout=0.5)
        finally:
            os.kill(ioc.proc.pid, signal.SIGCONT)
        assert "cl:ai" in str(info.value)
        assert f"127.0.0.1:{ioc.port}" in str(info.value)
        assert wait_until(lambda: ai.read(timeout=5).data[0] == 1.5)


def test_unknown_pv_times_out_naming_search_targets(ioc):
    with Context() as context:
        (missing,) = context.get_pvs("cl:does-not-exist")
        with pytest.raises(ca.CaprotoTimeoutError) as info:
            missing.read(timeout=0.5)
        assert "cl:does-not-exist" in str(info.value)
        assert f"127.0.0.1:{ioc.port}" in str(info.value)


def test_flow_control_pauses_and_resumes_events_once():
    pair = Pair()
    sent = pair.to_server(pair.core.pause_events(True))
    assert [type(c) for c in sent] == [ca.EventsOffRequest]
    assert pair.core.pause_events(True) == []            # already paused
    sent = pair.to_server(pair.core.pause_events(False))
    assert [type(c) for c in sent] == [ca.EventsOnRequest]


def test_core_modules_import_no_io_library():
    import ast
    import pathlib
    banned = {"socket", "asyncio", "threading", "select", "selectors"}
    for path in pathlib.Path(core.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom)
                     and node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in banned, (path.name, name)

"""A name server (EPICS_CA_NAME_SERVERS) gets each search once per round.

Searches go out only in rounds, each round once to every destination.
The name-server circuit used to get every pending name when it opened and
again in the round that was due at the same moment, so a client whose
connect completes at once (the sync client) searched twice.  Now opening
the circuit brings the next round forward instead.  Checked in memory and
with a real softIoc as the name server (rsrv answers searches over TCP),
counting what arrives at it through a recording TCP proxy.
"""
import struct

import caproto as ca
from caproto.client import core
from caproto.sync.client import Session
from caproto.threading.client import Context
from tests.recording_proxy import RecordingProxy

DB = """
record(ai, "ns:one") { field(VAL, "1") }
record(ai, "ns:two") { field(VAL, "2") }
"""
HEADER = struct.Struct(">HHHHII")
SEARCH = 6


def tcp_searches(effects, key):
    """SearchRequests in the SendBuffers effects for circuit `key`."""
    data = b"".join(bytes(b) for e in effects
                    if isinstance(e, core.SendBuffers) and e.key == key
                    for b in e.buffers)
    names = []
    while data:
        data, command, _ = ca.read_from_bytestream(data, ca.CLIENT)
        if isinstance(command, ca.SearchRequest):
            names.append(command.name)
    return names


def name_server_core():
    client = core.ClientCore(env={"EPICS_CA_ADDR_LIST": "",
                                  "EPICS_CA_AUTO_ADDR_LIST": "NO",
                                  "EPICS_CA_NAME_SERVERS": "127.0.0.1:5999"})
    entry, effects = client.add_channel("far:away", now=0.0)
    (opened,) = [e for e in effects if isinstance(e, core.OpenCircuit)]
    return client, entry, opened.key


def test_circuit_open_before_the_first_round_searches_once():
    client, entry, key = name_server_core()
    effects = client.circuit_connected(key, 0.0) + client.poll(0.0)
    assert tcp_searches(effects, key) == ["far:away"]
    assert entry.search_attempts == 1


def test_circuit_open_after_a_round_catches_up_once():
    client, entry, key = name_server_core()
    assert tcp_searches(client.poll(0.0), key) == []     # not connected yet
    effects = client.circuit_connected(key, 0.01) + client.poll(0.01)
    assert tcp_searches(effects, key) == ["far:away"]
    # The next retry is a new round, not sooner than the back-off says.
    assert tcp_searches(client.poll(0.02), key) == []
    later = client.next_deadline()
    assert later > 0.02
    assert tcp_searches(client.poll(later), key) == ["far:away"]


def _names_searched(proxy):
    """Names in every SearchRequest the clients sent through `proxy`."""
    names = []
    streams = {}
    for record in proxy.records:
        if record["transport"] == "tcp" and record["sender"] == "client":
            streams[record["stream"]] = streams.get(record["stream"], b"") + \
                bytes.fromhex(record["hex"])
    for data in streams.values():
        offset = 0
        while offset + HEADER.size <= len(data):
            command, size = HEADER.unpack_from(data, offset)[:2]
            body = data[offset + HEADER.size:offset + HEADER.size + size]
            if command == SEARCH:
                names.append(body.split(b"\0", 1)[0].decode())
            offset += HEADER.size + size
    return names


def _name_server_env(monkeypatch, proxy):
    monkeypatch.setenv("EPICS_CA_ADDR_LIST", "")
    monkeypatch.setenv("EPICS_CA_AUTO_ADDR_LIST", "NO")
    monkeypatch.setenv("EPICS_CA_NAME_SERVERS", f"127.0.0.1:{proxy.port}")


def count_rounds(client_core):
    """{name: number of search rounds that included it}, kept up to date."""
    rounds = {}
    scheduler = client_core.search
    due = scheduler.due

    def counting(now):
        requests = due(now)
        for request in requests:
            rounds[request.name] = rounds.get(request.name, 0) + 1
        return requests

    scheduler.due = counting
    return rounds


def test_sync_client_searches_a_softioc_name_server_once_per_round(
        softioc, monkeypatch):
    ioc = softioc(DB)
    with RecordingProxy(ioc.port) as proxy:
        _name_server_env(monkeypatch, proxy)
        with Session(repeater=False) as session:
            rounds = count_rounds(session.core)
            entries = session.connect_all(["ns:one", "ns:two"], 0, 5)
            assert all(entry.connected for entry in entries)
        assert proxy.wait_idle()
    searched = _names_searched(proxy)
    # The circuit opens before the first round, so every round reaches it,
    # and nothing else does.
    assert searched.count("ns:one") == rounds["ns:one"] >= 1
    assert searched.count("ns:two") == rounds["ns:two"] >= 1


def test_threading_client_searches_a_softioc_name_server_once_per_round(
        softioc, monkeypatch):
    ioc = softioc(DB)
    with RecordingProxy(ioc.port) as proxy:
        _name_server_env(monkeypatch, proxy)
        with Context(timeout=5) as context:
            rounds = count_rounds(context.broadcaster.core)
            pvs = context.get_pvs("ns:one", "ns:two")
            assert [pv.read().data[0] for pv in pvs] == [1.0, 2.0]
        assert proxy.wait_idle()
    searched = _names_searched(proxy)
    # The first round goes out before the circuit is open: it is made up
    # when the circuit opens, by bringing the next round forward.
    assert 1 <= searched.count("ns:one") <= rounds["ns:one"]
    assert 1 <= searched.count("ns:two") <= rounds["ns:two"]

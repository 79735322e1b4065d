"""UDP side of our server: searches (unicast and broadcast), beacons, ignore list.

Raw datagrams are built and parsed with the core (our client's view); the
server runs in a thread on loopback.
"""
import logging
import os
import socket

import pytest

import caproto as ca
from caproto import (DO_REPLY, NO_REPLY, SERVER, NotFoundResponse,
                     RsrvIsUpResponse, SearchRequest, SearchResponse,
                     VersionResponse, read_datagram)
from caproto._commands import MessageHeader
from caproto._headers import pack_header
from caproto._netifaces import broadcast_address_of, get_interfaces
from caproto.server.common import BEACON_START

from . import LAYERS, ServerThread, run_client
from tests.conftest import _free_port

pytestmark = pytest.mark.timeout(60)


def search_datagram(*requests, sequence=1234):
    """VersionRequest carrying a valid sequence number, then the searches."""
    header = MessageHeader(0, 0, 1, 13, sequence, 0)     # data_type 1: seq valid
    return pack_header(header) + b"".join(bytes(r) for r in requests)


def udp_socket(broadcast=False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if broadcast:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def answers(sock):
    data, address = sock.recvfrom(65536)
    return read_datagram(data, address, SERVER)


@pytest.fixture
def server():
    pvdb = {"U:a": ca.ChannelDouble(value=1.0), "U:b": ca.ChannelInteger(value=2)}
    with ServerThread("asyncio", pvdb) as context:
        yield context


def test_search_reply_echoes_the_sequence_number(server):
    port = int(os.environ["EPICS_CA_SERVER_PORT"])
    with udp_socket() as sock:
        sock.sendto(search_datagram(SearchRequest("U:a", 77, 13),
                                    SearchRequest("U:b", 78, 13), sequence=4321),
                    ("127.0.0.1", port))
        replies = answers(sock)
    version, first, second = replies
    assert isinstance(version, VersionResponse)
    assert (version.header.data_type, version.header.parameter1) == (1, 4321)
    assert isinstance(first, SearchResponse) and isinstance(second, SearchResponse)
    assert (first.cid, second.cid) == (77, 78)
    assert first.port == server.port
    assert ca.extract_address(first) == ("127.0.0.1", server.port)


def test_broadcast_search_is_answered_by_a_loopback_bound_server(server):
    port = int(os.environ["EPICS_CA_SERVER_PORT"])
    with udp_socket(broadcast=True) as sock:
        sock.sendto(search_datagram(SearchRequest("U:b", 5, 13)),
                    ("127.255.255.255", port))
        replies = answers(sock)
    assert [type(r) for r in replies] == [VersionResponse, SearchResponse]
    assert replies[1].cid == 5
    assert ca.extract_address(replies[1]) == ("127.0.0.1", server.port)


def test_libca_finds_the_server_by_broadcast(server):
    result = run_client("""
        from epics import ca
        chid = ca.create_channel('U:b', connect=False, auto_cb=False)
        emit({'connected': ca.connect_channel(chid, timeout=10), 'value': ca.get(chid)})
    """, env={"EPICS_CA_ADDR_LIST": "127.255.255.255"})
    assert result == {"connected": True, "value": 2}


def test_unknown_names(server):
    port = int(os.environ["EPICS_CA_SERVER_PORT"])
    with udp_socket() as sock:
        # NO_REPLY: silence.  The next datagram's answer comes first.
        sock.sendto(search_datagram(SearchRequest("U:nope", 1, 13, NO_REPLY)),
                    ("127.0.0.1", port))
        sock.sendto(search_datagram(SearchRequest("U:nope", 2, 13, DO_REPLY)),
                    ("127.0.0.1", port))
        replies = answers(sock)
    assert [type(r) for r in replies] == [VersionResponse, NotFoundResponse]
    assert replies[1].cid == 2


def test_ignore_list(monkeypatch):
    monkeypatch.setenv("EPICS_CAS_IGNORE_ADDR_LIST", "127.0.0.7")
    context = ca.server.Context({"U:a": ca.ChannelDouble()}, ["127.0.0.1"])
    context.port = 5000
    datagram = search_datagram(SearchRequest("U:a", 3, 13))
    assert context.handle_datagram(datagram, ("127.0.0.7", 5555)) == []
    [(reply, destination)] = context.handle_datagram(datagram, ("127.0.0.8", 5555))
    assert destination == ("127.0.0.8", 5555)
    assert read_datagram(reply, destination, SERVER)[1].cid == 3


def test_bad_datagrams_are_ignored_and_the_server_keeps_answering(server):
    port = int(os.environ["EPICS_CA_SERVER_PORT"])
    with udp_socket() as sock:
        sock.sendto(b"\x00\x06\xff\xff garbage", ("127.0.0.1", port))
        sock.sendto(search_datagram(SearchRequest("U:a", 9, 13)), ("127.0.0.1", port))
        replies = answers(sock)
    assert replies[1].cid == 9


def test_beacons_start_fast_and_back_off(monkeypatch):
    beacon_port = _free_port()
    monkeypatch.setenv("EPICS_CAS_BEACON_PORT", str(beacon_port))
    monkeypatch.setenv("EPICS_CAS_BEACON_ADDR_LIST", "127.0.0.1")
    monkeypatch.setenv("EPICS_CAS_BEACON_PERIOD", "0.5")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", beacon_port))
        sock.settimeout(5)
        with ServerThread("asyncio", {"U:a": ca.ChannelDouble()}) as context:
            beacons = []
            for _ in range(4):
                data, address = sock.recvfrom(1024)
                beacons.extend(read_datagram(data, address, SERVER))
            intervals = context.beacon_intervals()
            schedule = [next(intervals) for _ in range(7)]
    assert all(isinstance(b, RsrvIsUpResponse) for b in beacons)
    assert [b.beacon_id for b in beacons] == [0, 1, 2, 3]
    assert {b.server_port for b in beacons} == {context.port}
    assert schedule == [BEACON_START, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]


def test_two_servers_share_the_udp_port():
    first = ServerThread("asyncio", {"S:one": ca.ChannelDouble()})
    second = ServerThread("curio", {"S:two": ca.ChannelDouble()})
    port = int(os.environ["EPICS_CA_SERVER_PORT"])
    with first as one, second as two:
        assert one.port != two.port          # the second got its own TCP port
        with udp_socket(broadcast=True) as sock:
            sock.sendto(search_datagram(SearchRequest("S:one", 1, 13),
                                        SearchRequest("S:two", 2, 13)),
                        ("127.255.255.255", port))
            found = {}
            for _ in range(2):
                reply = answers(sock)[1]
                found[reply.cid] = reply.port
    assert found == {1: one.port, 2: two.port}


def test_loopback_broadcast_address_is_found():
    assert broadcast_address_of("127.0.0.1") == "127.255.255.255"
    assert broadcast_address_of("0.0.0.0") is None
    loopback = [i for i in get_interfaces() if i.address == "127.0.0.1"]
    assert loopback and loopback[0].loopback and loopback[0].netmask == "255.0.0.0"


@pytest.mark.parametrize("layer", LAYERS)
def test_startup_log_says_where_beacons_go_and_whom_we_ignore(layer, monkeypatch, caplog):
    """A user whose client cannot find the server reads the startup line."""
    beacon_port = _free_port()
    monkeypatch.setenv("EPICS_CAS_BEACON_PORT", str(beacon_port))
    monkeypatch.setenv("EPICS_CAS_BEACON_ADDR_LIST", "127.0.0.1 127.0.0.2")
    monkeypatch.setenv("EPICS_CAS_IGNORE_ADDR_LIST", "127.0.0.9")
    with caplog.at_level(logging.INFO, logger="caproto.ctx"):
        with ServerThread(layer, {"U:a": ca.ChannelDouble()}) as context:
            port = context.port
    [line] = [r.getMessage() for r in caplog.records if "server on" in r.getMessage()]
    assert f"port {port} ({layer})" in line
    assert f"beacons to 127.0.0.1:{beacon_port}, 127.0.0.2:{beacon_port}" in line
    assert "ignoring searches from 127.0.0.9" in line

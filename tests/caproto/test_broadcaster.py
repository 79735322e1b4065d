"""UDP: searches, their answers, beacons and repeater registration, in memory."""
import pytest

import caproto as ca
from caproto._constants import SEARCH_MAX_DATAGRAM_BYTES

CLIENT_ADDR = ("127.0.0.1", 40002)
SERVER_ADDR = ("127.0.0.1", 5064)


@pytest.fixture
def client():
    return ca.Broadcaster(ca.CLIENT)


@pytest.fixture
def server():
    return ca.Broadcaster(ca.SERVER)


def test_search_round_trip(client, server):
    version, request = client.search("PV:one")
    assert isinstance(version, ca.VersionRequest) and version.priority == 0
    assert request.name == "PV:one" and request.version == 13
    assert client.unanswered_searches == {request.cid: "PV:one"}

    datagram = client.send(request)            # version added automatically
    received = server.recv(datagram, CLIENT_ADDR)
    assert received == [version, request]
    assert received[1].sender_address == CLIENT_ADDR

    answer = ca.SearchResponse(5064, "255.255.255.255", request.cid, 13)
    reply = server.send(answer)
    commands = client.recv(reply, SERVER_ADDR)
    assert [type(c) for c in commands] == [ca.VersionResponse, ca.SearchResponse]
    assert commands[1].cid == request.cid
    assert ca.extract_address(commands[1]) == SERVER_ADDR
    assert client.unanswered_searches == {}


def test_search_ids_are_distinct_until_answered(client):
    ids = [client.search(f"PV{i}")[1].cid for i in range(20)]
    assert len(set(ids)) == 20
    client.forget_search(ids[0])
    assert ids[0] not in client.unanswered_searches


def test_many_searches_are_packed_into_bounded_datagrams(client, server):
    names = [f"SOME:LONGISH:PV:NAME:{i:04d}" for i in range(200)]
    datagrams = client.search_datagrams(names)
    assert 1 < len(datagrams) < len(names)
    seen = []
    for data, ids in datagrams:
        assert len(data) <= SEARCH_MAX_DATAGRAM_BYTES
        commands = server.recv(data, CLIENT_ADDR)
        assert isinstance(commands[0], ca.VersionRequest)
        assert all(isinstance(c, ca.SearchRequest) for c in commands[1:])
        assert {c.cid: c.name for c in commands[1:]} == ids
        seen.extend(c.name for c in commands[1:])
    assert seen == names


def test_oversized_datagram_is_refused(client):
    requests = [client.search(f"PV:{i:040d}")[1] for i in range(40)]
    with pytest.raises(ca.LocalProtocolError, match="SEARCH_MAX_DATAGRAM_BYTES"):
        client.send(*requests)


def test_not_found_reply_carries_a_version(server, client):
    data = server.send(ca.NotFoundResponse(13, 7))
    commands = client.recv(data, SERVER_ADDR)
    assert [type(c) for c in commands] == [ca.VersionResponse, ca.NotFoundResponse]


def test_beacons_and_repeater_registration(client, server):
    beacon = ca.RsrvIsUpResponse(13, 5064, 3, "127.0.0.1")
    (got,) = client.recv(server.send(beacon), SERVER_ADDR)
    assert (got.server_port, got.beacon_id) == (5064, 3)

    register = client.register("127.0.0.1")
    (request,) = server.recv(client.send(register), CLIENT_ADDR)
    assert isinstance(request, ca.RepeaterRegisterRequest)
    assert not client.registered
    client.recv(server.send(ca.RepeaterConfirmResponse("127.0.0.1")), SERVER_ADDR)
    assert client.registered


def test_role_checks(client, server):
    with pytest.raises(ca.LocalProtocolError, match="does not send"):
        client.send(ca.SearchResponse(5064, "127.0.0.1", 1, 13))
    with pytest.raises(ca.LocalProtocolError, match="does not send"):
        server.send(ca.EchoResponse())
    with pytest.raises(ca.LocalProtocolError):
        server.search("PV")
    with pytest.raises(ca.LocalProtocolError):
        server.register()
    with pytest.raises(ca.RemoteProtocolError, match="EventsOffRequest"):
        server.recv(bytes(ca.EventsOffRequest()), CLIENT_ADDR)
    with pytest.raises(ca.RemoteProtocolError):
        client.recv(b"\x00\x06\x00", SERVER_ADDR)     # cut short
    with pytest.raises(ca.LocalProtocolError, match="our_role"):
        ca.Broadcaster("client")

"""caproto-repeater registers clients and fans beacons out to them.

Each test starts its own repeater on a free port (the session's caRepeater
keeps EPICS_CA_REPEATER_PORT) and talks to it with plain UDP sockets built
from caproto's commands, and with caproto-get.
"""
import os
import socket
import subprocess
import sys

import pytest

import caproto as ca
from tests.commandline import REPO, run_tool

pytestmark = pytest.mark.network


@pytest.fixture
def repeater(free_port):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "caproto.commandline.repeater", "--host",
         "127.0.0.1", "--port", str(free_port), "--duration", "25", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()                 # printed once bound
    assert "listening on 127.0.0.1" in line, proc.stderr.read()
    yield proc, free_port
    proc.kill()
    proc.communicate(timeout=10)


def _client(port=0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(5)
    return sock


def _register(sock, repeater_port):
    sock.sendto(bytes(ca.RepeaterRegisterRequest("127.0.0.1")),
                ("127.0.0.1", repeater_port))
    commands = ca.read_datagram(sock.recv(1024), None, ca.SERVER)
    assert commands == [ca.RepeaterConfirmResponse("127.0.0.1")]


def _beacon(port, address="0.0.0.0"):
    return bytes(ca.RsrvIsUpResponse(13, port, 7, address))


def test_registered_clients_receive_beacons_with_sender_address(repeater):
    _proc, port = repeater
    first, second, server = _client(), _client(), _client()
    _register(first, port)
    _register(second, port)
    noop = first.recv(1024)                 # told someone else registered
    assert ca.read_datagram(noop, None, ca.SERVER)[0].version == 0
    server.sendto(_beacon(5077), ("127.0.0.1", port))
    for client in (first, second):
        [beacon] = ca.read_datagram(client.recv(1024), None, ca.SERVER)
        assert beacon.server_port == 5077
        assert beacon.address == "127.0.0.1"     # filled in: it said 0.0.0.0
    for sock in (first, second, server):
        sock.close()


def test_sender_does_not_get_its_own_datagram(repeater):
    _proc, port = repeater
    client, other = _client(), _client()
    _register(client, port)
    _register(other, port)
    client.recv(1024)                       # the no-op for `other`
    client.sendto(_beacon(5078, "127.0.0.5"), ("127.0.0.1", port))
    [beacon] = ca.read_datagram(other.recv(1024), None, ca.SERVER)
    assert beacon.address == "127.0.0.5"   # a real address is kept
    client.settimeout(0.5)
    with pytest.raises(socket.timeout):
        client.recv(1024)
    client.close()
    other.close()


def test_clients_that_went_away_are_dropped(repeater):
    _proc, port = repeater
    gone, staying = _client(), _client()
    _register(gone, port)
    gone_port = gone.getsockname()[1]
    _register(staying, port)
    gone.close()
    newcomer = _client()
    _register(newcomer, port)               # the repeater checks its clients
    staying.recv(1024)                      # no-op announcing the newcomer
    reborn = _client(gone_port)             # same port, never registered
    reborn.settimeout(0.5)
    _client().sendto(_beacon(5079), ("127.0.0.1", port))
    assert ca.read_datagram(newcomer.recv(1024), None, ca.SERVER)[0].server_port == 5079
    with pytest.raises(socket.timeout):
        reborn.recv(1024)
    for sock in (staying, newcomer, reborn):
        sock.close()


def test_our_client_registers_and_is_confirmed(repeater, softioc):
    proc, port = repeater
    softioc('record(ai, "REP:ai") { field(VAL, "1") }\n')
    result = run_tool("get", "-w", "5", "-v", "REP:ai", env={"EPICS_CA_REPEATER_PORT": str(port)})
    assert result.stdout.split() == ["REP:ai", "1"]
    assert "RepeaterConfirmResponse(repeater_address='127.0.0.1')" in result.stderr
    proc.kill()
    _out, err = proc.communicate(timeout=10)
    assert "registered" in err


def test_second_repeater_on_the_port_exits_with_one_line(repeater):
    _proc, port = repeater
    result = run_tool("repeater", "--host", "127.0.0.1", "--port", str(port),
                      "--duration", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0]

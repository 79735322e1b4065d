"""Large arrays leave the server whole and in order while small replies and
subscription updates share the circuit, on every layer: a slow reader gets
every byte of each 8 MB array, and every message after it, in the order the
server queued them (the layers write large payloads straight from the array
to the socket, waiting for room themselves)."""
import socket
import threading
import time

import pytest

import caproto as ca
from caproto import EventAddResponse, ReadNotifyResponse

from . import LAYERS, ClientProcess, ServerThread
from .test_server_faults import RawClient

numpy = pytest.importorskip("numpy")
pytestmark = pytest.mark.timeout(60)

N = 1_000_000                      # DOUBLEs: 8 MB per read
MAX_ARRAY_BYTES = str(8 * N + 4096)


@pytest.fixture(params=LAYERS)
def layer(request):
    return request.param


def serve(layer, monkeypatch):
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", MAX_ARRAY_BYTES)
    pvdb = {"W:big": ca.ChannelDouble(value=numpy.arange(N, dtype=float),
                                      max_length=N),
            "W:x": ca.ChannelDouble(value=0.0)}
    return ServerThread(layer, pvdb), pvdb


def updater(server, pvdb, count):
    """A thread writing 1..count to W:x on the server's loop, a few ms apart."""
    async def updates():
        for value in range(1, count + 1):
            await pvdb["W:x"].write(float(value))
            await server.async_lib.sleep(0.003)
    thread = threading.Thread(target=server.call, args=(updates,),
                              kwargs={"timeout": 30}, daemon=True)
    thread.start()
    return thread


def read_slowly(client, until, chunk=1 << 16, pause=0.001):
    """Commands received in small chunks with pauses (a client slower than
    the server) until ``until(commands)`` holds."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    commands = []
    deadline = time.monotonic() + 40
    while not until(commands):
        assert time.monotonic() < deadline, f"stuck after {len(commands)} commands"
        data = client.sock.recv(chunk)
        if not data:
            raise ConnectionError("server closed the connection")
        received, _ = client.circuit.recv(data)
        commands.extend(received)
        time.sleep(pause)
    return commands


def test_slow_reader_gets_arrays_and_interleaved_replies_in_order(layer, monkeypatch):
    server, pvdb = serve(layer, monkeypatch)
    n_updates = 150
    with server as context:
        client = RawClient(context.port, max_payload_size=8 * N + 4096)
        big, x = client.channel("W:big"), client.channel("W:x")
        client.send(x.subscribe(data_type=6, mask=1))
        assert list(client.next(EventAddResponse).data) == [0.0]
        thread = updater(server, pvdb, n_updates)
        client.send(big.read(data_type=6, ioid=1), x.read(data_type=6, ioid=2),
                    big.read(data_type=6, ioid=3), x.read(data_type=6, ioid=4),
                    big.read(data_type=6, data_count=10, ioid=5))

        def done(commands):
            return (len([c for c in commands if isinstance(c, ReadNotifyResponse)]) == 5
                    and any(isinstance(c, EventAddResponse) and c.data[0] == n_updates
                            for c in commands))
        commands = read_slowly(client, done)
        thread.join(30)
        client.close()
    replies = [c for c in commands if isinstance(c, ReadNotifyResponse)]
    assert [r.ioid for r in replies] == [1, 2, 3, 4, 5]
    for reply in (replies[0], replies[2]):
        assert reply.data_count == N
        assert numpy.array_equal(numpy.asarray(reply.data, dtype=float),
                                 numpy.arange(N, dtype=float))
    assert list(replies[4].data) == [float(i) for i in range(10)]
    # Updates arrive in the order they were made, ending with the last one,
    # and each read of W:x answers a value at least as new as the updates
    # already delivered before it.
    events = [c.data[0] for c in commands if isinstance(c, EventAddResponse)]
    assert events == sorted(events) and events[-1] == n_updates
    seen = 0.0
    for command in commands:
        if isinstance(command, EventAddResponse):
            seen = command.data[0]
        elif isinstance(command, ReadNotifyResponse) and command.ioid in (2, 4):
            assert command.data[0] >= seen


LIBCA_READS = """
import numpy, time
from epics import ca
big = ca.create_channel('W:big', connect=False, auto_cb=False)
x = ca.create_channel('W:x', connect=False, auto_cb=False)
assert ca.connect_channel(big, timeout=10) and ca.connect_channel(x, timeout=10)
events = []
def on_update(value=None, **kw):
    events.append(float(value))
_, _, evid = ca.create_subscription(x, callback=on_update)
ca.poll(0.2)
emit('ready')
wait_go()
expected = numpy.arange({n}, dtype=float)
intact = []
for _ in range(4):
    value = ca.get(big, timeout=30)
    intact.append(bool(len(value) == {n} and numpy.array_equal(value, expected)))
during = len(events)
deadline = time.monotonic() + 20
while (not events or events[-1] != {last}) and time.monotonic() < deadline:
    ca.poll(0.05)
emit({{'intact': intact, 'ordered': events == sorted(events),
       'last': events[-1] if events else None, 'during': during}})
"""


def test_libca_reads_arrays_while_updates_flow(layer, monkeypatch):
    server, pvdb = serve(layer, monkeypatch)
    n_updates = 200
    with server:
        with ClientProcess(LIBCA_READS.format(n=N, last=float(n_updates)),
                           env={"EPICS_CA_MAX_ARRAY_BYTES": MAX_ARRAY_BYTES}) as client:
            assert client.expect() == "ready"
            thread = updater(server, pvdb, n_updates)
            client.go()
            result = client.expect(timeout=50)
        thread.join(30)
    assert result["intact"] == [True] * 4
    assert result["ordered"] and result["last"] == float(n_updates)
    assert result["during"] > 1          # updates did arrive between the reads


def test_client_vanishing_mid_array_leaves_the_server_serving(layer, monkeypatch):
    server, pvdb = serve(layer, monkeypatch)
    with server as context:
        gone = RawClient(context.port, max_payload_size=8 * N + 4096)
        big = gone.channel("W:big")
        gone.send(*[big.read(data_type=6, ioid=i) for i in range(3)])
        gone.sock.recv(1 << 16)             # the server is mid-array now
        gone.close()
        other = RawClient(context.port, max_payload_size=8 * N + 4096)
        x = other.channel("W:x")
        other.send(x.read(data_type=6, ioid=7))
        assert list(other.next(ReadNotifyResponse).data) == [0.0]
        deadline = time.monotonic() + 10
        while len(context.circuits) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(context.circuits) == 1      # the vanished circuit was closed
        other.close()

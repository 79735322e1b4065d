"""ReceiveBuffer: chunking-independence, bounded memory, linear copying."""
import itertools
import random

import pytest

from caproto import _commands as cmd
from caproto._buffer import ReceiveBuffer, payload_limit
from caproto._constants import CLIENT, DEFAULT_MAX_ARRAY_BYTES, NEED_DATA, SERVER
from caproto._errors import RemoteProtocolError

from .helpers import check_parses, parse_in_chunks
from .test_commands import CLIENT_COMMANDS

STREAM = b"".join(map(bytes, CLIENT_COMMANDS))


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_same_commands(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 40) for _ in range(len(STREAM))]
    commands, buffer = parse_in_chunks(STREAM, CLIENT, sizes, large_payload=16)
    assert commands == CLIENT_COMMANDS
    assert len(buffer) == 0


def test_bytes_needed_counts_down_to_the_next_command():
    wire = bytes(cmd.CreateChanRequest("a-long-channel-name", cid=1, version=13))
    buffer = ReceiveBuffer(CLIENT)
    assert buffer.next_command() is NEED_DATA and buffer.bytes_needed == 16
    buffer.feed(wire[:5])
    assert buffer.next_command() is NEED_DATA and buffer.bytes_needed == 11
    buffer.feed(wire[5:20])
    assert buffer.next_command() is NEED_DATA
    assert buffer.bytes_needed == len(wire) - 20
    buffer.feed(wire[20:])
    assert buffer.next_command() == cmd.CreateChanRequest("a-long-channel-name",
                                                          cid=1, version=13)


def test_oversized_payload_is_refused_before_it_is_stored():
    limit = payload_limit(DEFAULT_MAX_ARRAY_BYTES)
    assert limit > DEFAULT_MAX_ARRAY_BYTES
    name = "n" * (limit + 10)          # a peer may send any name it likes
    header = cmd.pack_header(cmd.MessageHeader(20, len(name) + 6, 0, 0, 0, 0))
    buffer = ReceiveBuffer(CLIENT)
    buffer.feed(header)
    with pytest.raises(RemoteProtocolError, match="limit"):
        buffer.next_command()
    assert len(buffer) == 16
    # the stream is out of sync now: every later call fails too
    with pytest.raises(RemoteProtocolError, match="already failed"):
        buffer.feed(b"more")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        buffer.next_command()


def test_limit_is_a_constructor_parameter():
    big = cmd.ClientNameRequest("u" * 1000)
    with pytest.raises(RemoteProtocolError, match="1008-byte payload"):
        parse_in_chunks(bytes(big), CLIENT, [7] * 200, max_payload_size=1000)
    commands, _ = parse_in_chunks(bytes(big), CLIENT, [7] * 200,
                                  max_payload_size=1008, large_payload=64)
    assert commands == [big]


def test_large_payload_goes_to_its_own_buffer_in_linear_copies():
    name = "x" * (8 * 1024 * 1024)          # an 8 MB message, fed in 1 KB chunks
    # built by hand: we refuse to *send* such a name, but a peer may.
    payload = name.encode() + bytes(8)
    header = cmd.MessageHeader(21, len(payload), 0, 0, 0, 0)
    wire = cmd.pack_header(header) + payload + bytes(cmd.EchoRequest())
    commands, buffer = parse_in_chunks(wire, CLIENT, itertools.repeat(1024),
                                       max_payload_size=len(payload))
    assert [type(c) for c in commands] == [cmd.HostNameRequest, cmd.EchoRequest]
    assert commands[0].name == name
    # Each byte is stored once (plus a little for the small messages around
    # it); a buffer re-copied per chunk would move ~8000x more.
    assert buffer.bytes_moved <= len(wire) + 2048


def test_large_numeric_array_is_decoded_without_copying():
    np = pytest.importorskip("numpy")
    values = np.arange(1_000_000, dtype=">f8")
    response = cmd.ReadNotifyResponse(values, None, data_type=6,
                                      data_count=len(values), status=1, ioid=3)
    wire = bytes(response)
    commands, buffer = parse_in_chunks(wire, SERVER, itertools.repeat(1024),
                                       max_payload_size=payload_limit(8_000_000))
    [parsed] = commands
    assert np.array_equal(parsed.data, values)
    assert buffer.bytes_moved <= len(wire) + 2048      # + the first chunk, moved once
    # the values are a view of the payload buffer the bytes were received into
    payload = np.frombuffer(parsed.buffers[1], dtype=np.uint8)
    assert np.shares_memory(parsed.data, payload)


def test_data_commands_parse_every_way_through_the_buffer():
    pytest.importorskip("numpy")
    response = cmd.ReadNotifyResponse([1.5, 2.5, -3.0], None, data_type=6,
                                      data_count=3, status=1, ioid=3)
    check_parses(bytes(response) * 2, SERVER, [response, response])

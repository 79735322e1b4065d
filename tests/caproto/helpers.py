"""Parser test helper: every wire message is fed whole, byte by byte, and
followed by trailing data, through every parser we have (h11's `tr` idea)."""
from caproto._buffer import ReceiveBuffer
from caproto._commands import read_datagram, read_from_bytestream
from caproto._constants import NEED_DATA

# The start of another command (an EchoRequest header cut short).
TRAILING = b"\x00\x17\x00\x00\x00"


def parse_all_from_bytestream(data, role):
    """Commands from read_from_bytestream, and the bytes it left over."""
    commands = []
    while True:
        data, command, needed = read_from_bytestream(data, role)
        if command is NEED_DATA:
            assert needed > 0
            return commands, bytes(data)
        commands.append(command)


def parse_in_chunks(data, role, chunk_sizes, **buffer_options):
    """Commands from a ReceiveBuffer fed `data` cut at the given sizes
    (then the rest in one piece)."""
    buffer = ReceiveBuffer(role, **buffer_options)
    commands = []
    offset = 0
    sizes = iter(chunk_sizes)
    while offset < len(data):
        size = next(sizes, len(data))
        buffer.feed(data[offset:offset + size])
        offset += size
        commands.extend(buffer.drain())
    return commands, buffer


def check_parses(data, role, expected, *, datagram=True):
    """Assert `data` (bytes sent by `role`) parses to `expected` every way."""
    expected = list(expected)
    # whole
    assert parse_all_from_bytestream(data, role) == (expected, b"")
    commands, buffer = parse_in_chunks(data, role, [len(data)])
    assert commands == expected and len(buffer) == 0
    if datagram:
        assert read_datagram(data, ("127.0.0.1", 5064), role) == expected
    # byte by byte
    commands, buffer = parse_in_chunks(data, role, [1] * len(data))
    assert commands == expected and len(buffer) == 0
    # with trailing data: the partial command stays buffered
    assert parse_all_from_bytestream(data + TRAILING, role) == (expected, TRAILING)
    commands, buffer = parse_in_chunks(data + TRAILING, role, [len(data) + 2])
    assert commands == expected and len(buffer) == len(TRAILING)
    assert buffer.bytes_needed == 16 - len(TRAILING)
    return expected

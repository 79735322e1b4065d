"""Property tests: garbage raises only RemoteProtocolError; valid commands
round-trip through every parser in any chunking."""
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caproto import _commands as cmd
from caproto._buffer import ReceiveBuffer
from caproto._constants import CLIENT, NEED_DATA, SERVER
from caproto._errors import RemoteProtocolError

from .helpers import parse_all_from_bytestream, parse_in_chunks

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2 ** 32 - 1)
dbr_type = st.integers(0, 38)
name = st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=1,
               max_size=80)
ip = st.ip_addresses(v=4).map(str)
f32 = st.floats(width=32, allow_nan=False)
status = st.sampled_from([1, 80, 114, 160, 376, 2 ** 32 - 1])

CLIENT_STRATEGIES = st.one_of(
    st.builds(cmd.VersionRequest, u16, u16),
    st.builds(cmd.SearchRequest, name, u32, u16, st.sampled_from([5, 10])),
    st.builds(cmd.CreateChanRequest, name, u32, u32),
    st.builds(cmd.ClientNameRequest, name),
    st.builds(cmd.HostNameRequest, name),
    st.builds(cmd.EchoRequest),
    st.builds(cmd.EventsOffRequest), st.builds(cmd.EventsOnRequest),
    st.builds(cmd.ReadSyncRequest),
    st.builds(cmd.RepeaterRegisterRequest, ip),
    st.builds(cmd.ClearChannelRequest, u32, u32),
    st.builds(cmd.ReadRequest, dbr_type, u32, u32, u32),
    st.builds(cmd.ReadNotifyRequest, dbr_type, u32, u32, u32),
    st.builds(cmd.EventCancelRequest, dbr_type, u32, u32, u32),
    st.builds(cmd.EventAddRequest, dbr_type, u32, u32, u32, f32, f32, f32, u16),
)
SERVER_STRATEGIES = st.one_of(
    st.builds(cmd.VersionResponse, u16),
    st.builds(cmd.SearchResponse, u16, ip, u32, u16),
    st.builds(cmd.NotFoundResponse, u16, u32),
    st.builds(cmd.EchoResponse),
    st.builds(cmd.RsrvIsUpResponse, u16, u16, u32, ip),
    st.builds(cmd.RepeaterConfirmResponse, ip),
    st.builds(cmd.CreateChanResponse, dbr_type, u32, u32, u32),
    st.builds(cmd.CreateChFailResponse, u32),
    st.builds(cmd.AccessRightsResponse, u32, st.integers(0, 3)),
    st.builds(cmd.ClearChannelResponse, u32, u32),
    st.builds(cmd.ServerDisconnResponse, u32),
    st.builds(cmd.WriteNotifyResponse, dbr_type, u32, status, u32),
    st.builds(cmd.EventCancelResponse, dbr_type, u32, u32, u32),
    st.builds(cmd.ErrorResponse,
              st.builds(cmd.ReadNotifyRequest, dbr_type, u16, u32, u32),
              u32, status, st.text(max_size=50)),
)

# Plain numeric/string data commands, through the DBR codec.
_PLAIN_DATA = st.one_of(
    st.tuples(st.just(6), st.lists(st.floats(allow_nan=False), min_size=1,
                                   max_size=20)),
    st.tuples(st.just(5), st.lists(st.integers(-2 ** 31, 2 ** 31 - 1),
                                   min_size=1, max_size=20)),
    st.tuples(st.just(1), st.lists(st.integers(-2 ** 15, 2 ** 15 - 1),
                                   min_size=1, max_size=20)),
    st.tuples(st.just(0), st.lists(st.binary(max_size=39).map(
        lambda b: b.replace(b"\0", b"x")), min_size=1, max_size=5)),
)


@st.composite
def data_commands(draw):
    data_type, data = draw(_PLAIN_DATA)
    kind = draw(st.sampled_from(["read", "readnotify", "event", "write",
                                 "writenotify"]))
    a, b = draw(u32), draw(u32)
    if kind == "read":
        return SERVER, cmd.ReadResponse(data, None, data_type, len(data), a, b)
    if kind == "readnotify":
        return SERVER, cmd.ReadNotifyResponse(data, None, data_type, len(data),
                                              1, b)
    if kind == "event":
        return SERVER, cmd.EventAddResponse(data, None, data_type, len(data),
                                            1, b)
    cls = cmd.WriteRequest if kind == "write" else cmd.WriteNotifyRequest
    return CLIENT, cls(data, data_type, len(data), a, b)


chunkings = st.lists(st.integers(1, 64), min_size=1, max_size=200)


def _check_round_trip(role, commands, sizes):
    wire = b"".join(map(bytes, commands))
    assert parse_all_from_bytestream(wire, role) == (commands, b"")
    assert cmd.read_datagram(wire, ("127.0.0.1", 5064), role) == commands
    parsed, buffer = parse_in_chunks(wire, role, sizes, large_payload=32)
    assert parsed == commands and len(buffer) == 0
    for original, again in zip(commands, parsed):
        for attr, _field, _kind in original._LAYOUT:
            assert getattr(again, attr) == getattr(original, attr), attr


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CLIENT_STRATEGIES, min_size=1, max_size=10), chunkings)
def test_client_commands_round_trip(commands, sizes):
    _check_round_trip(CLIENT, commands, sizes)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SERVER_STRATEGIES, min_size=1, max_size=10), chunkings)
def test_server_commands_round_trip(commands, sizes):
    _check_round_trip(SERVER, commands, sizes)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data_commands(), chunkings)
def test_data_commands_round_trip(role_and_command, sizes):
    role, command = role_and_command
    _check_round_trip(role, [command], sizes)
    [parsed] = cmd.read_datagram(bytes(command), ("127.0.0.1", 5064), role)
    assert parsed.data_count == command.data_count
    assert list(parsed.data) == list(command.data)


# -- garbage ---------------------------------------------------------------------

@st.composite
def plausible_message(draw):
    """A header with a real command id and arbitrary fields, and some payload."""
    command = draw(st.integers(0, 28))
    payload = draw(st.binary(max_size=48))
    declared = draw(st.one_of(st.just(len(payload)), st.integers(0, 64)))
    data_type, count = draw(st.integers(0, 45)), draw(st.integers(0, 12))
    p1, p2 = draw(u32), draw(u32)
    if draw(st.booleans()):
        header = struct.pack(">HHHHII", command, declared, data_type, count,
                             p1, p2)
    else:      # extended form, sizes anywhere up to the 32-bit maximum
        header = struct.pack(">HHHHIIII", command, 0xFFFF, data_type, 0, p1,
                             p2, draw(st.one_of(st.just(declared), u32)),
                             draw(st.one_of(st.just(count), u32)))
    return header + payload


garbage = st.lists(st.one_of(st.binary(max_size=40), plausible_message()),
                   max_size=8).map(b"".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(garbage, chunkings, st.sampled_from([CLIENT, SERVER]))
def test_garbage_raises_only_remote_protocol_error(data, sizes, role):
    try:
        parse_in_chunks(data, role, sizes, max_payload_size=4096,
                        large_payload=16)
    except RemoteProtocolError:
        pass
    try:
        parse_all_from_bytestream(data, role)
    except RemoteProtocolError:
        pass
    try:
        commands = cmd.read_datagram(data, ("127.0.0.1", 5064), role)
    except RemoteProtocolError:
        pass
    else:
        for command in commands:          # what parsed must re-serialise
            assert bytes(command) and repr(command)


@settings(max_examples=200)
@given(garbage, st.sampled_from([CLIENT, SERVER]))
def test_chunking_never_changes_the_outcome(data, role):
    def outcome(sizes):
        try:
            return parse_in_chunks(data, role, sizes, max_payload_size=4096,
                                   large_payload=16)[0]
        except RemoteProtocolError:
            return "error"
    whole = outcome([len(data) or 1])
    assert outcome([1] * len(data)) == whole
    assert outcome([7] * len(data)) == whole


def test_need_data_for_every_prefix():
    wire = bytes(cmd.CreateChanRequest("a" * 30, cid=1, version=13))
    for cut in range(len(wire)):
        remaining, command, needed = cmd.read_from_bytestream(wire[:cut], CLIENT)
        assert command is NEED_DATA and remaining == wire[:cut]
        assert 0 < needed <= len(wire) - cut
    buffer = ReceiveBuffer(CLIENT)
    buffer.feed(wire)
    assert buffer.next_command() == cmd.CreateChanRequest("a" * 30, cid=1,
                                                          version=13)

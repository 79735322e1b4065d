"""Commands: wire bytes by hand, role-dependent decoding, errors, statuses."""
import ctypes
import struct

import pytest

import caproto as ca
from caproto import _buffer as cmd_buffer
from caproto import _commands as cmd
from caproto._constants import CLIENT, DO_REPLY, SERVER
from caproto._errors import LocalProtocolError, RemoteProtocolError
from caproto._status import CAStatus, ensure_eca_value

from .helpers import check_parses

ADDRESS = ("127.0.0.1", 5064)

# Commands without DBR payloads, as each role sends them.
CLIENT_COMMANDS = [
    cmd.VersionRequest(priority=0, version=13),
    cmd.SearchRequest("abc", cid=5, version=13),
    cmd.SearchRequest("XF:31IDA-OP{Tbl-Ax:X1}Mtr.RBV", cid=2 ** 32 - 1,
                      version=13, reply=DO_REPLY),
    cmd.EchoRequest(),
    cmd.RepeaterRegisterRequest("127.0.0.1"),
    cmd.CreateChanRequest("abcdefg", cid=1, version=13),   # 7 chars + NUL = 8
    cmd.ClearChannelRequest(sid=3, cid=4),
    cmd.ClientNameRequest("operator"),
    cmd.HostNameRequest("beamline-ws1"),
    cmd.ReadRequest(data_type=6, data_count=1, sid=1, ioid=2),
    cmd.ReadNotifyRequest(data_type=20, data_count=0, sid=1, ioid=3),
    cmd.EventAddRequest(data_type=6, data_count=1, sid=1, subscriptionid=9,
                        low=0.0, high=0.0, to=0.0, mask=5),
    cmd.EventCancelRequest(data_type=6, data_count=1, sid=1, subscriptionid=9),
    cmd.EventsOffRequest(),
    cmd.EventsOnRequest(),
    cmd.ReadSyncRequest(),
]
SERVER_COMMANDS = [
    cmd.VersionResponse(13),
    cmd.SearchResponse(port=5064, ip="255.255.255.255", cid=5, version=13),
    cmd.NotFoundResponse(version=13, cid=5),
    cmd.EchoResponse(),
    cmd.RsrvIsUpResponse(version=13, server_port=5064, beacon_id=7,
                         address="127.0.0.1"),
    cmd.RepeaterConfirmResponse("127.0.0.1"),
    cmd.CreateChanResponse(data_type=6, data_count=1, cid=1, sid=2),
    cmd.CreateChFailResponse(cid=1),
    cmd.AccessRightsResponse(cid=1, access_rights=3),
    cmd.ClearChannelResponse(sid=3, cid=4),
    cmd.ServerDisconnResponse(cid=1),
    cmd.WriteNotifyResponse(data_type=6, data_count=1, status=1, ioid=3),
    cmd.EventCancelResponse(data_type=6, sid=1, subscriptionid=9, data_count=1),
    cmd.ErrorResponse(cmd.ReadNotifyRequest(6, 1, 1, 3), cid=1,
                      status=CAStatus.ECA_BADTYPE, error_message="bad type"),
]


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=repr)
def test_client_commands_parse_every_way(command):
    check_parses(bytes(command), CLIENT, [command])
    assert len(command) == len(bytes(command)) and len(command) % 8 == 0


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=repr)
def test_server_commands_parse_every_way(command):
    check_parses(bytes(command), SERVER, [command])
    assert len(command) == len(bytes(command)) and len(command) % 8 == 0


def test_streams_of_many_commands_parse_every_way():
    check_parses(b"".join(map(bytes, CLIENT_COMMANDS)), CLIENT, CLIENT_COMMANDS)
    check_parses(b"".join(map(bytes, SERVER_COMMANDS)), SERVER, SERVER_COMMANDS)


def test_search_request_bytes_by_hand():
    # CA_PROTO_SEARCH (6): payload "abc\0" padded to 8; data_type = reply flag
    # NO_REPLY (5); data_count = minor version 13; parameter1 = parameter2 = cid.
    command = cmd.SearchRequest("abc", cid=5, version=13)
    assert bytes(command).hex() == ("0006" "0008" "0005" "000d" "00000005"
                                    "00000005" "6162630000000000")


def test_name_of_exactly_eight_bytes_gets_a_second_block():
    # 8 characters + NUL = 9 bytes -> padded to 16.
    command = cmd.CreateChanRequest("ABCDEFGH", cid=1, version=13)
    assert command.header.payload_size == 16
    assert bytes(command)[16:].hex() == "4142434445464748" + "00" * 8


def test_beacon_bytes_by_hand():
    # CA_PROTO_RSRV_IS_UP (13): data_type = version 13, data_count = server
    # port 5064 (0x13c8), parameter1 = beacon id 7, parameter2 = 127.0.0.1.
    command = cmd.RsrvIsUpResponse(13, 5064, 7, "127.0.0.1")
    assert bytes(command).hex() == ("000d" "0000" "000d" "13c8" "00000007"
                                    "7f000001")
    assert command.address == "127.0.0.1"


def test_search_response_bytes_by_hand_and_address():
    # CA_PROTO_SEARCH reply: payload 8 = u16 minor version + 6 pad bytes;
    # data_type = TCP port 5064; parameter1 = ip (ffffffff: "use my address");
    # parameter2 = cid 5.
    command = cmd.SearchResponse(port=5064, ip="255.255.255.255", cid=5,
                                 version=13)
    assert bytes(command).hex() == ("0006" "0008" "13c8" "0000" "ffffffff"
                                    "00000005" "000d000000000000")
    [parsed] = cmd.read_datagram(bytes(command), ("127.0.0.9", 5064), SERVER)
    assert parsed.version == 13 and parsed.cid == 5
    assert cmd.extract_address(parsed) == ("127.0.0.9", 5064)
    explicit = cmd.SearchResponse(port=5070, ip="127.0.0.5", cid=5, version=13)
    [parsed] = cmd.read_datagram(bytes(explicit), ("127.0.0.9", 5064), SERVER)
    assert cmd.extract_address(parsed) == ("127.0.0.5", 5070)
    with pytest.raises(LocalProtocolError, match="sender_address"):
        cmd.extract_address(command)


def test_error_response_carries_request_header_and_message():
    request = cmd.ReadNotifyRequest(data_type=6, data_count=1, sid=1, ioid=3)
    error = cmd.ErrorResponse(request, cid=1, status="ECA_BADTYPE",
                              error_message="bad type")
    # payload = the request's 16 header bytes + "bad type\0" padded to 32
    assert error.header.payload_size == 32
    assert bytes(error)[16:32] == bytes(request)
    [parsed] = cmd.read_datagram(bytes(error), ADDRESS, SERVER)
    assert parsed.original_request == request.header
    assert parsed.error_message == "bad type"
    assert parsed.status is CAStatus.ECA_BADTYPE
    assert parsed.header.parameter2 == 114       # (14 << 3) | CA_K_ERROR


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=repr)
def test_same_ids_decode_by_sender_role(command):
    wire = bytes(command)
    as_server = {0: cmd.VersionResponse, 6: None, 12: cmd.ClearChannelResponse,
                 23: cmd.EchoResponse, 3: None, 15: None, 18: None, 1: None}
    if command.ID not in as_server:
        with pytest.raises(RemoteProtocolError, match="not a command a server sends"):
            cmd.read_datagram(wire, ADDRESS, SERVER)
    elif as_server[command.ID] is not None:
        [parsed] = cmd.read_datagram(wire, ADDRESS, SERVER)
        assert type(parsed) is as_server[command.ID]
        assert bytes(parsed) == wire


def test_command_one_from_server_depends_on_payload():
    cancel = cmd.EventCancelResponse(data_type=6, sid=1, subscriptionid=9,
                                     data_count=1)
    assert cancel.ID == 1 and cancel.header.payload_size == 0
    [parsed] = cmd.read_datagram(bytes(cancel), ADDRESS, SERVER)
    assert type(parsed) is cmd.EventCancelResponse
    assert (parsed.sid, parsed.subscriptionid) == (1, 9)


def test_search_response_without_version_payload():
    """rsrv answers a search over TCP (EPICS_CA_NAME_SERVERS) with no payload,
    and libca accepts that from old servers over UDP too."""
    wire = struct.pack(">HHHHII", 6, 0, 5064, 0, 0xFFFFFFFF, 7)
    [parsed] = cmd.read_datagram(wire, ADDRESS, SERVER)
    assert type(parsed) is cmd.SearchResponse
    assert (parsed.port, parsed.cid) == (5064, 7)
    assert parsed.version == ca.DEFAULT_PROTOCOL_VERSION


@pytest.mark.parametrize("wire, role, message", [
    (struct.pack(">HHHHII", 99, 0, 0, 0, 0, 0), CLIENT, "command id 99"),
    (struct.pack(">HHHHII", 5, 0, 0, 0, 0, 0), CLIENT, "command id 5"),
    (struct.pack(">HHHHII", 11, 0, 0, 0, 0, 0), CLIENT, "command id 11"),
    (struct.pack(">HHHHII", 24, 0, 0, 0, 0, 0), SERVER, "command id 24"),
    (struct.pack(">HHHHII", 23, 0, 0, 0, 0, 0)[:10], CLIENT, "too few"),
    (struct.pack(">HHHHII", 6, 16, 5, 13, 1, 1) + b"abc\0", CLIENT, "only 4"),
    (struct.pack(">HHHHII", 6, 8, 5064, 0, 1, 1) + b"\x00" * 1, SERVER, "only 1"),
    (struct.pack(">HHHHII", 11, 8, 0, 0, 1, 1) + bytes(8), SERVER, "needs at least 16"),
    (struct.pack(">HHHHII", 1, 8, 0, 0, 1, 1) + bytes(8), CLIENT, "needs 14"),
    (struct.pack(">HHHHII", 15, 8, 99, 1, 1, 1) + bytes(8), SERVER, "DBR type 99"),
])
def test_bad_datagrams_are_remote_errors(wire, role, message):
    with pytest.raises(RemoteProtocolError, match=message):
        cmd.read_datagram(wire, ADDRESS, role)


@pytest.mark.parametrize("make, message", [
    (lambda: cmd.SearchRequest("x" * 2000, cid=1), "longer than"),
    (lambda: cmd.SearchRequest("", cid=1), "empty name"),
    (lambda: cmd.CreateChanRequest("a\0b", cid=1), "contains NUL"),
    (lambda: cmd.HostNameRequest("\u20ac"), "not latin-1"),
    (lambda: cmd.ClientNameRequest(42), "must be str"),
    (lambda: cmd.RepeaterRegisterRequest("not-an-ip"), "not an IPv4"),
    (lambda: cmd.ClearChannelRequest(sid=-1, cid=1), "header field"),
    (lambda: cmd.ClearChannelRequest(sid=2 ** 32, cid=1), "header field"),
    (lambda: cmd.ReadNotifyRequest("DOUBLE", 1, 1, 1), "data_type"),
    (lambda: cmd.WriteNotifyResponse(6, 1, "ECA_NOPE", 1), "unknown CA status"),
    (lambda: cmd.ErrorResponse("req", 1, 1, "x"), "original_request"),
    (lambda: cmd.EventAddRequest(6, 1, 1, 1, 0.0, 0.0, 0.0, -1), "EventAddRequest"),
])
def test_misuse_is_a_local_error(make, message):
    with pytest.raises(LocalProtocolError, match=message):
        make()


def test_repr_names_the_fields():
    text = repr(cmd.ReadNotifyRequest(data_type=6, data_count=1, sid=1, ioid=3))
    assert text.startswith("ReadNotifyRequest(") and "sid=1" in text and "ioid=3" in text


def test_exports_are_public():
    for name in cmd.__all__:
        assert getattr(ca, name) is getattr(cmd, name)


# -- status codes ----------------------------------------------------------

def test_status_values_by_hand():
    # DEFMSG(severity, n) = (n << 3) | severity (caerr.h)
    assert CAStatus.ECA_NORMAL.code_with_severity == 1          # (0 << 3) | SUCCESS
    assert CAStatus.ECA_NOWTACCESS.code == 47
    assert CAStatus.ECA_NOWTACCESS.code_with_severity == 376    # (47 << 3) | WARNING
    assert CAStatus.ECA_BADTYPE.code_with_severity == 114       # (14 << 3) | ERROR
    assert CAStatus.ECA_INTERNAL.code_with_severity == 142      # (17 << 3) | FATAL
    assert CAStatus.ECA_IODONE.code_with_severity == 339        # (42 << 3) | INFO
    assert ensure_eca_value("ECA_TIMEOUT") == 80
    assert ensure_eca_value(CAStatus.ECA_PUTFAIL) == 160
    assert ca.eca_value_to_status[376] is CAStatus.ECA_NOWTACCESS
    with pytest.raises(ca.CaprotoValueError, match="12345"):
        ensure_eca_value(12345)


def test_status_table_matches_libca():
    """Every code and description agrees with the C library's ca_message()."""
    epics_ca = pytest.importorskip("epics.ca")
    libca = epics_ca.initialize_libca()
    libca.ca_message.restype = ctypes.c_char_p
    assert len(CAStatus) == 61
    for status in CAStatus:
        text = libca.ca_message(status.code_with_severity).decode()
        assert text == status.description, status
        assert status.success == (status.code_with_severity & 1)


# -- commands with DBR payloads (through caproto._dbr) ---------------------

def test_read_notify_response_double_bytes_by_hand():
    # CA_PROTO_READ_NOTIFY (15) reply: payload = one big-endian double 3.5
    # (sign 0, exponent 1024 -> 0x400, mantissa 0.75 -> 0xc000000000000) =
    # 400c000000000000, 8 bytes so no padding; data_type DOUBLE (6), count 1,
    # parameter1 = status ECA_NORMAL (1), parameter2 = ioid 3.
    command = cmd.ReadNotifyResponse(3.5, None, data_type=6, data_count=1,
                                     status=CAStatus.ECA_NORMAL, ioid=3)
    assert bytes(command).hex() == ("000f" "0008" "0006" "0001" "00000001"
                                    "00000003" "400c000000000000")
    check_parses(bytes(command), SERVER, [command])
    [parsed] = cmd.read_datagram(bytes(command), ADDRESS, SERVER)
    assert list(parsed.data) == [3.5] and parsed.metadata is None
    assert parsed.data_type == ca.ChannelType.DOUBLE and parsed.data_count == 1
    assert parsed.status is CAStatus.ECA_NORMAL


def test_time_double_bytes_by_hand():
    # DBR_TIME_DOUBLE (20): status u16 0, severity u16 0, seconds u32 1,
    # nanoseconds u32 2, RISC pad u32 0, then the double 3.5: 24 bytes.
    metadata = ca.DBR_TIME_DOUBLE(status=0, severity=0, secondsSinceEpoch=1,
                                  nanoSeconds=2)
    command = cmd.ReadNotifyResponse([3.5], metadata, data_type=20,
                                     data_count=1, status=1, ioid=3)
    assert bytes(command).hex() == (
        "000f" "0018" "0014" "0001" "00000001" "00000003"
        "0000" "0000" "00000001" "00000002" "00000000" "400c000000000000")
    [parsed] = cmd.read_datagram(bytes(command), ADDRESS, SERVER)
    assert parsed.metadata.secondsSinceEpoch == 1
    assert parsed.metadata.nanoSeconds == 2
    assert list(parsed.data) == [3.5]


def test_string_write_bytes_by_hand():
    # CA_PROTO_WRITE_NOTIFY (19) of one DBR_STRING: like libca, only the text
    # and its NUL are sent, "abc\0" padded to 8.  sid 1, ioid 2.
    command = cmd.WriteNotifyRequest(["abc"], data_type=0, data_count=1,
                                     sid=1, ioid=2)
    assert bytes(command).hex() == ("0013" "0008" "0000" "0001" "00000001"
                                    "00000002" "6162630000000000")
    [parsed] = cmd.read_datagram(bytes(command), ADDRESS, CLIENT)
    assert parsed.data == [b"abc"]
    # Two strings, and every response, carry the full 40 bytes per element.
    pair = cmd.WriteNotifyRequest(["abc", "d"], data_type=0, data_count=2,
                                  sid=1, ioid=2)
    assert pair.header.payload_size == 80
    reply = cmd.ReadNotifyResponse(["abc"], None, 0, 1, 1, 2)
    assert reply.header.payload_size == 40
    [parsed] = cmd.read_datagram(bytes(reply), ADDRESS, SERVER)
    assert parsed.data == [b"abc"]


@pytest.mark.parametrize("wire, status, message", [
    (struct.pack(">HHHHII", 19, 0, 0, 1, 1, 2), "ECA_BADCOUNT", "payload is 0 bytes"),
    (struct.pack(">HHHHII", 4, 8, 6, 3, 1, 2) + bytes(8), "ECA_BADCOUNT", "3 element"),
    (struct.pack(">HHHHII", 19, 8, 99, 1, 1, 2) + bytes(8), "ECA_BADTYPE", "DBR type 99"),
])
def test_undecodable_write_is_a_refused_request_not_a_broken_stream(wire, status, message):
    # The header gives the payload size, so the stream stays in step; the
    # server answers with the refusal's status (as rsrv answers ECA_BADTYPE).
    [parsed] = cmd.read_datagram(wire + bytes(cmd.EchoRequest()), ADDRESS, CLIENT)[:1]
    assert parsed.data is None and parsed.metadata is None
    assert parsed.refusal[0].name == status and message in parsed.refusal[1]
    good = cmd.WriteRequest([1.0], 6, 1, sid=1, ioid=2)
    assert good.refusal is None
    assert cmd.read_datagram(bytes(good), ADDRESS, CLIENT)[0].refusal is None


def test_char_payload_is_padded_to_eight():
    # DBR_CHAR (4), two elements "hi" = 6869, padded with six NULs to 8.
    command = cmd.WriteRequest(b"hi", data_type=4, data_count=2, sid=1, ioid=2)
    assert bytes(command).hex() == ("0004" "0008" "0004" "0002" "00000001"
                                    "00000002" "6869000000000000")
    [parsed] = cmd.read_datagram(bytes(command), ADDRESS, CLIENT)
    assert bytes(parsed.data) == b"hi"


def test_empty_subscription_update_is_not_a_cancel():
    update = cmd.EventAddResponse([], None, data_type=6, data_count=0,
                                  status_code=1, subscriptionid=9)
    assert update.header.payload_size == 8
    [parsed] = cmd.read_datagram(bytes(update), ADDRESS, SERVER)
    assert type(parsed) is cmd.EventAddResponse and len(parsed.data) == 0


def test_extended_header_for_large_arrays():
    values = [float(i) for i in range(70000)]    # count > 0xffff
    command = cmd.ReadNotifyResponse(values, None, data_type=6,
                                     data_count=70000, status=1, ioid=1)
    wire = bytes(command)
    assert wire[2:4] == b"\xff\xff" and wire[6:8] == b"\x00\x00"
    assert struct.unpack(">II", wire[16:24]) == (560000, 70000)
    [parsed] = cmd.read_datagram(wire, ADDRESS, SERVER)
    assert parsed.data_count == 70000 and list(parsed.data) == values


@pytest.mark.parametrize("make, message", [
    (lambda: cmd.ReadNotifyResponse([1.0, 2.0], None, 6, 3, 1, 1), "data_count=3"),
    (lambda: cmd.WriteRequest([1.0], 99, 1, 1, 1), "99"),
    (lambda: cmd.WriteRequest(["x" * 50], 0, 1, 1, 1), "WriteRequest"),
])
def test_data_misuse_is_a_local_error(make, message):
    with pytest.raises(LocalProtocolError, match=message):
        make()


def test_payload_shorter_than_count_is_a_remote_error():
    # says 4 doubles (32 bytes) but carries 8
    wire = struct.pack(">HHHHII", 15, 8, 6, 4, 1, 1) + bytes(8)
    with pytest.raises(RemoteProtocolError, match="4 element"):
        cmd.read_datagram(wire, ADDRESS, SERVER)


# -- against a real server: epics-base rsrv (softIoc) ----------------------

IOC_DB = """
record(ai, "wire:x") { field(VAL, "3.5") field(PREC, "2") field(EGU, "mm") }
record(waveform, "wire:wf") { field(FTVL, "DOUBLE") field(NELM, "70000") }
"""


class _Conversation:
    """Send our commands to a real server over TCP; parse what it answers."""

    def __init__(self, port, max_payload_size):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = cmd_buffer.ReceiveBuffer(SERVER, max_payload_size)

    def send(self, *commands):
        self.sock.sendall(b"".join(bytes(c) for c in commands))

    def expect(self, cls):
        """The next command of type `cls`, skipping others (bounded)."""
        for _ in range(10000):
            command = self.buffer.next_command()
            if command is ca.NEED_DATA:
                chunk = self.sock.recv(65536)
                assert chunk, f"server closed the circuit waiting for {cls.__name__}"
                self.buffer.feed(chunk)
            elif isinstance(command, cls):
                return command
        raise AssertionError(f"no {cls.__name__} from the server")


def test_conversation_with_softioc(softioc, monkeypatch):
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", "1000000")
    ioc = softioc(IOC_DB)
    talk = _Conversation(ioc.port, cmd_buffer.payload_limit(1_000_000))
    try:
        talk.send(cmd.VersionRequest(priority=0, version=13),
                  cmd.HostNameRequest("localhost"),
                  cmd.ClientNameRequest("wire-test"),
                  cmd.CreateChanRequest("wire:x", cid=7, version=13),
                  cmd.CreateChanRequest("wire:wf", cid=8, version=13))
        assert talk.expect(cmd.VersionResponse).version >= 11
        assert talk.expect(cmd.AccessRightsResponse).access_rights == 3
        created = talk.expect(cmd.CreateChanResponse)
        assert (created.cid, created.data_type, created.data_count) == (
            7, ca.ChannelType.DOUBLE, 1)
        sid = created.sid
        wf_sid = talk.expect(cmd.CreateChanResponse).sid

        talk.send(cmd.ReadNotifyRequest(ca.ChannelType.CTRL_DOUBLE, 1, sid, 1))
        reading = talk.expect(cmd.ReadNotifyResponse)
        assert list(reading.data) == [3.5] and reading.ioid == 1
        assert reading.metadata.units == b"mm" and reading.metadata.precision == 2

        talk.send(cmd.WriteNotifyRequest([4.25], 6, 1, sid, 2))
        written = talk.expect(cmd.WriteNotifyResponse)
        assert written.status is CAStatus.ECA_NORMAL and written.ioid == 2

        talk.send(cmd.EventAddRequest(6, 1, sid, 11, 0.0, 0.0, 0.0, 1))
        update = talk.expect(cmd.EventAddResponse)
        assert list(update.data) == [4.25] and update.subscriptionid == 11
        talk.send(cmd.EventCancelRequest(6, 1, sid, 11))
        cancelled = talk.expect(cmd.EventCancelResponse)   # command 1, empty
        assert cancelled.subscriptionid == 11

        # 70000 elements: count > 0xffff, so both directions use the
        # extended header.
        values = [i / 4 for i in range(70000)]
        talk.send(cmd.WriteNotifyRequest(values, 6, 70000, wf_sid, 3))
        assert talk.expect(cmd.WriteNotifyResponse).status is CAStatus.ECA_NORMAL
        talk.send(cmd.ReadNotifyRequest(6, 0, wf_sid, 4))     # 0: native count
        array = talk.expect(cmd.ReadNotifyResponse)
        assert array.data_count == 70000 and list(array.data) == values

        talk.send(cmd.WriteNotifyRequest(["abc"], 0, 1, sid, 5))  # not a number
        refused = talk.expect(cmd.WriteNotifyResponse)
        assert refused.status is CAStatus.ECA_PUTFAIL and refused.ioid == 5
        talk.send(cmd.CreateChanRequest("wire:no-such-record", cid=9, version=13))
        assert talk.expect(cmd.CreateChFailResponse).cid == 9

        talk.send(cmd.ClearChannelRequest(sid, 7))
        assert talk.expect(cmd.ClearChannelResponse).cid == 7
    finally:
        talk.sock.close()


def test_udp_search_of_softioc(softioc):
    import socket
    ioc = softioc(IOC_DB)
    request = (bytes(cmd.VersionRequest(0, 13))
               + bytes(cmd.SearchRequest("wire:x", cid=21, version=13,
                                         reply=DO_REPLY)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(2)
        udp.bind(("127.0.0.1", 0))
        for _attempt in range(5):          # UDP: retry a few times, bounded
            udp.sendto(request, ("127.0.0.1", ioc.port))
            try:
                data, address = udp.recvfrom(65536)
                break
            except socket.timeout:
                continue
        else:
            pytest.fail("softIoc never answered the search")
    commands = cmd.read_datagram(data, address, SERVER)
    [found] = [c for c in commands if isinstance(c, cmd.SearchResponse)]
    assert found.cid == 21 and found.version >= 11
    assert cmd.extract_address(found) == ("127.0.0.1", ioc.port)

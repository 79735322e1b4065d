"""caproto-shark decodes a capture of real CA traffic taken on loopback.

tcpdump is not assumed: a RecordingProxy (tests/recording_proxy.py) sits
between our command-line tools and a softIoc, and the bytes it passed on
are written out here as a pcap (and pcapng) file with synthetic Ethernet,
IPv4, TCP and UDP headers.  TCP payloads are cut into small segments, one
is sent twice and two arrive swapped, so shark's reassembly is exercised.
"""
import os
import struct

import pytest

from tests.commandline import run_tool
from tests.recording_proxy import RecordingProxy

pytestmark = pytest.mark.network

DB = """
record(ai, "SHARK:ai") { field(VAL, "3.5") field(PINI, "YES") }
record(ao, "SHARK:ao") { field(VAL, "0") field(PINI, "YES") }
record(waveform, "SHARK:wf") { field(FTVL, "DOUBLE") field(NELM, "500") }
"""
SEGMENT = 7


# -- a small pcap writer (test tooling) -------------------------------------------

def _host_port(text):
    host, port = text.rsplit(":", 1)
    return bytes(int(x) for x in host.split(".")), int(port)


def _ipv4(src, dst, protocol, body, ident):
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident & 0xFFFF,
                         0x4000, 64, protocol, 0, src, dst)
    return header + body


def _ethernet(packet):
    return bytes(12) + b"\x08\x00" + packet


class PacketBuilder:
    """Turns RecordingProxy records into (time, Ethernet frame) pairs."""

    def __init__(self, t0):
        self.t0 = t0
        self.frames = []
        self.streams = {}         # stream -> {sender: next seq}
        self.ident = 0

    def _add(self, t, src, dst, protocol, body):
        self.ident += 1
        packet = _ipv4(src[0], dst[0], protocol, body, self.ident)
        self.frames.append((self.t0 + t, _ethernet(packet)))

    def _tcp(self, t, src, dst, seq, flags, payload=b""):
        body = struct.pack(">HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, 0,
                           5 << 4, flags, 65535, 0, 0) + payload
        self._add(t, src, dst, 6, body)

    def record(self, rec):
        src, dst = _host_port(rec["src"]), _host_port(rec["dst"])
        data = bytes.fromhex(rec["hex"])
        if rec["transport"] == "udp":
            body = struct.pack(">HHHH", src[1], dst[1], 8 + len(data), 0) + data
            self._add(rec["t"], src, dst, 17, body)
            return
        seqs = self.streams.get(rec["stream"])
        if seqs is None:                          # open with a handshake
            client, server = (src, dst) if rec["sender"] == "client" else (dst, src)
            seqs = self.streams[rec["stream"]] = {"client": 1000, "server": 90000}
            self._tcp(rec["t"], client, server, 999, 0x02)             # SYN
            self._tcp(rec["t"], server, client, 89999, 0x12)           # SYN+ACK
        seq = seqs[rec["sender"]]
        pieces = [(seq + i, data[i:i + SEGMENT]) for i in range(0, len(data), SEGMENT)]
        if len(pieces) >= 3:
            pieces[1], pieces[2] = pieces[2], pieces[1]     # out of order
            pieces.insert(1, pieces[0])                      # a retransmission
        for piece_seq, piece in pieces:
            self._tcp(rec["t"], src, dst, piece_seq, 0x18, piece)
        seqs[rec["sender"]] = seq + len(data)


def relink(frame, linktype):
    """An Ethernet frame re-wrapped for another link type tcpdump writes."""
    packet = frame[14:]
    if linktype == 276:       # Linux cooked v2 (tcpdump -i any)
        return struct.pack(">HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, bytes(8)) + packet
    if linktype == 113:       # Linux cooked v1
        return struct.pack(">HHH8sH", 0, 772, 6, bytes(8), 0x0800) + packet
    if linktype == 101:       # raw IP
        return packet
    return frame


def write_pcap(path, frames, linktype=1, big_endian=False):
    order = ">" if big_endian else "<"
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for t, frame in frames:
            frame = relink(frame, linktype)
            seconds = int(t)
            f.write(struct.pack(order + "IIII", seconds, int((t - seconds) * 1e6),
                                len(frame), len(frame)))
            f.write(frame)


def _block(block_type, body):
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def write_pcapng(path, frames):
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(_block(1, struct.pack("<HHI", 1, 0, 65535)))
        for t, frame in frames:
            ticks = int(t * 1e6)
            f.write(_block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                          len(frame), len(frame)) + frame))


# -- the tests ----------------------------------------------------------------

@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Frames of: caproto-get of two PVs, caproto-put -c, one 500-double read."""
    import time
    from tests.peers import SoftIoc
    tmp = tmp_path_factory.mktemp("shark")
    (tmp / "shark.db").write_text(DB)
    ioc = SoftIoc(tmp / "shark.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  tmp / "ioc.log")
    try:
        with RecordingProxy(ioc.port) as proxy:
            env = {"EPICS_CA_SERVER_PORT": str(proxy.port)}
            for args in (["get", "SHARK:ai", "SHARK:ao"],
                         ["put", "-c", "SHARK:ao", "12.5"],
                         ["get", "-#", "500", "SHARK:wf"]):
                result = run_tool(args[0], "-w", "5", *args[1:], env=env)
                assert result.returncode == 0, result.stderr
            assert proxy.wait_idle()
            records = list(proxy.records)
            port = proxy.port
    finally:
        ioc.stop()
    builder = PacketBuilder(time.time())
    for rec in records:
        if rec["stream"] != "beacon":
            builder.record(rec)
    return tmp, builder.frames, port


def _lines_with(lines, text):
    return [line for line in lines if text in line]


def _check(lines):
    assert len(_lines_with(lines, "SearchRequest")) >= 4
    assert _lines_with(lines, "name='SHARK:ai'")
    assert len(_lines_with(lines, "CreateChanRequest")) == 4
    assert len(_lines_with(lines, "CreateChanResponse")) == 4
    assert len(_lines_with(lines, "WriteNotifyRequest")) == 1
    assert len(_lines_with(lines, "WriteNotifyResponse")) == 1
    reads = _lines_with(lines, "ReadNotifyResponse")
    # get: 2; put: enum-free, so old + new reads = 2; waveform get: 1.
    assert len(reads) == 5
    assert any("3.5" in line for line in reads)
    assert any("12.5" in line for line in reads)
    assert any("data_count=500" in line for line in reads)
    # Client-sent commands go towards the proxy's port, answers come back.
    for line in _lines_with(lines, "ReadNotifyRequest"):
        assert "tcp" in line.split()


@pytest.mark.parametrize("linktype,big_endian", [(1, False), (276, False),
                                                 (113, True), (101, False)],
                         ids=["ethernet", "linux-sll2", "linux-sll-big-endian",
                              "raw-ip"])
def test_shark_reads_pcap_file(capture, linktype, big_endian):
    tmp, frames, port = capture
    path = tmp / f"capture-{linktype}.pcap"
    write_pcap(path, frames, linktype, big_endian)
    result = run_tool("shark", str(path), "--port", str(port))
    assert result.returncode == 0, result.stderr
    _check(result.stdout.splitlines())


def test_shark_reads_pcapng_from_stdin(capture):
    tmp, frames, port = capture
    write_pcapng(tmp / "capture.pcapng", frames)
    data = (tmp / "capture.pcapng").read_bytes()
    result = run_tool("shark", "--port", str(port), input=data)
    assert result.returncode == 0, result.stderr
    _check(result.stdout.decode().splitlines())


def test_shark_finds_tcp_streams_by_syn_on_unknown_ports(capture):
    # Without --port, UDP is not recognised but TCP circuits are, from the SYN.
    tmp, frames, _port = capture
    write_pcap(tmp / "noport.pcap", frames)
    result = run_tool("shark", str(tmp / "noport.pcap"), "--port", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not _lines_with(lines, "SearchRequest")
    assert len(_lines_with(lines, "ReadNotifyResponse")) == 5


def test_shark_refuses_what_is_not_a_capture(tmp_path):
    path = tmp_path / "not.pcap"
    path.write_bytes(b"hello, this is text\n")
    result = run_tool("shark", str(path))
    assert result.returncode == 1
    assert "not a pcap" in result.stderr

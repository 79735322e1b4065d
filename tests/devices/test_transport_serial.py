"""SerialTransport over pyserial URLs: loop://, socket:// (our simulator) and a pty."""
import socket

import pytest

from devices.errors import ConfigError, DeviceDisconnected, DeviceReplyError, DeviceTimeout
from devices.simulators.instrument import InstrumentSimulator
from devices.transport import Terminators, Timeouts, parse_terminator
from devices.transports import transport_from_config
from devices.transports.serial import SerialTransport

FAST = Timeouts(lock=0.2, write=0.5, reply=0.3, read=0.1)


@pytest.fixture
def loop():
    transport = SerialTransport("loop://", timeouts=FAST, terminators=Terminators(b"\n", b"\n"))
    transport.open()
    yield transport
    transport.close()


@pytest.fixture
def sim():
    with InstrumentSimulator("temperature_controller") as simulator:
        simulator.serve_tcp()
        yield simulator


def test_loop_roundtrip_strips_terminator(loop):
    assert loop.query(b"hello") == b"hello"


def test_two_messages_in_one_chunk_are_read_separately_and_flush_drops_rest(loop):
    loop.write(b"one\ntwo\nthree")
    assert loop.read() == b"one"
    assert loop.read() == b"two"
    loop.flush_input()
    with pytest.raises(DeviceTimeout):
        loop.read()


def test_no_reply_is_a_timeout_with_timeout_alarm(loop):
    with pytest.raises(DeviceTimeout) as info:
        loop.read()
    assert info.value.alarm_status == "TIMEOUT"
    assert "reply timeout" in str(info.value)


def test_reply_without_terminator_is_incomplete(loop):
    loop.terminators = Terminators(input=b"\n", output=b"")
    loop.write(b"partial")
    with pytest.raises(DeviceReplyError) as info:
        loop.read()
    assert info.value.alarm_status == "READ"
    assert b"partial" in str(info.value).encode()


def test_empty_in_terminator_means_a_pause_ends_the_message(loop):
    loop.terminators = Terminators(input=b"", output=b"")
    loop.write(b"fixed-length-reply")
    assert loop.read() == b"fixed-length-reply"


def test_lock_timeout_when_device_is_busy(loop):
    with loop.locked():
        with pytest.raises(DeviceTimeout) as info:
            loop.query(b"x")
    assert "lock timeout" in str(info.value)


def test_separate_in_and_out_terminators_over_socket(sim):
    transport = SerialTransport(sim.url, timeouts=FAST, terminators=Terminators(b"\r\n", b"\r"))
    transport.open()
    try:
        assert transport.query(b"*IDN?") == b"CAPROTO-BRIDGE,TC-100,SIM0001,1.0"
        assert sim.received == ["*IDN?"]
    finally:
        transport.close()
    assert not transport.is_open


def test_wrong_in_terminator_leaves_the_cr_in_the_reply(sim):
    transport = SerialTransport(sim.url, timeouts=FAST, terminators=Terminators(b"\n", b"\r"))
    transport.open()
    try:
        assert transport.query(b"SP?") == b"25.00\r"
    finally:
        transport.close()


def test_pty_with_line_settings(sim):
    path = sim.serve_pty()
    transport = transport_from_config(
        {"kind": "serial", "port": path, "baudrate": 19200, "stopbits": 2},
        timeouts=FAST, terminators=Terminators(b"\r\n", b"\r"))
    transport.open()
    try:
        assert transport.query(b"HEAT?") == b"OFF"
    finally:
        transport.close()


def test_refused_connection_is_disconnected():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = SerialTransport("socket://127.0.0.1:%d" % port, timeouts=FAST)
    with pytest.raises(DeviceDisconnected) as info:
        transport.open()
    assert info.value.alarm_status == "COMM"
    assert str(port) in str(info.value)
    with pytest.raises(DeviceDisconnected):
        transport.write(b"x")


def test_peer_closing_is_detected_on_read(sim):
    transport = SerialTransport(sim.url, timeouts=FAST, terminators=Terminators(b"\r\n", b"\r"))
    transport.open()
    try:
        sim.inject("disconnect")
        with pytest.raises(DeviceDisconnected):
            transport.query(b"SP?")
        assert not transport.is_open
    finally:
        transport.close()


@pytest.mark.parametrize("config, where, text", [
    ({"kind": "serial"}, ("dev", "port"), "needs a 'port'"),
    ({"kind": "serial", "port": "loop://", "baud": 9600}, ("dev", "baud"), "did you mean 'baudrate'"),
    ({"kind": "serial", "port": "loop://", "parity": "weird"}, ("dev", "parity"), "unknown parity"),
    ({"kind": "serial", "port": "loop://", "stopbits": 3}, ("dev", "stopbits"), "stopbits"),
    ({"kind": "serial", "port": "loop://", "baudrate": "fast"}, ("dev", "baudrate"), "positive integer"),
    ({"kind": "usb", "port": "loop://"}, ("dev", "kind"), "unknown transport kind"),
])
def test_bad_serial_config_names_the_key(config, where, text):
    with pytest.raises(ConfigError) as info:
        transport_from_config(config, timeouts=FAST, terminators=Terminators(), path=("dev",))
    assert info.value.path == where
    assert text in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("CR LF", b"\r\n"), ("cr", b"\r"), ("\\r\\n", b"\r\n"), ("\r\n", b"\r\n"),
    ("0x03", b"\x03"), ("ETX", b"\x03"), ("", b""), (";", b";"),
])
def test_terminator_spellings(text, expected):
    assert parse_terminator(text, ()) == expected


def test_terminator_and_in_terminator_together_is_an_error():
    with pytest.raises(ConfigError) as info:
        Terminators.from_settings({"terminator": "CR", "in_terminator": "LF"}, ("devices", 0))
    assert info.value.path == ("devices", 0, "terminator")


def test_timeouts_from_durations():
    timeouts = Timeouts.from_config({"reply": "500 ms", "lock": 2, "read": "0.05 s"}, ())
    assert (timeouts.reply, timeouts.lock, timeouts.read, timeouts.write) == (0.5, 2.0, 0.05, Timeouts().write)
    with pytest.raises(ConfigError) as info:
        Timeouts.from_config({"reply": "soon"}, ("d",))
    assert info.value.path == ("d", "reply")
    with pytest.raises(ConfigError, match="did you mean 'reply'"):
        Timeouts.from_config({"replay": 1}, ("d",))

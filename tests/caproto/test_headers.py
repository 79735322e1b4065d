"""Header layer: generated file in sync, short/extended forms, ranges."""
from pathlib import Path

import pytest

import caproto._generate_headers as generator
from caproto import _headers
from caproto._errors import LocalProtocolError
from caproto._headers import MessageHeader, pack_header, unpack_header


def test_generated_file_is_up_to_date():
    checked_in = Path(_headers.__file__).read_text()
    assert checked_in == generator.generate(), (
        "caproto/_headers.py is stale: run python caproto/_generate_headers.py")
    assert "auto-generated" in checked_in.splitlines()[0]


def test_short_header_bytes_by_hand():
    # CA_PROTO_VERSION (0) from a client, priority 1, minor version 13:
    # command 0000 | payload 0000 | data_type=priority 0001 | count=version 000d
    # | parameter1 00000000 | parameter2 00000000
    header = _headers.VersionRequestHeader(priority=1, version=13)
    assert pack_header(header).hex() == "0000" "0000" "0001" "000d" "00000000" "00000000"


def test_extended_header_bytes_by_hand():
    # EventAdd response (1) with 65536 payload bytes, DOUBLE (6), 8192 elements:
    # the payload does not fit 16 bits, so payload field = ffff, count field =
    # 0000, and the true sizes follow as u32: 00010000 and 00002000.
    header = MessageHeader(1, 0x10000, 6, 0x2000, 1, 2)
    wire = pack_header(header)
    assert wire.hex() == ("0001" "ffff" "0006" "0000" "00000001" "00000002"
                          "00010000" "00002000")
    assert unpack_header(wire) == (header, 24)


@pytest.mark.parametrize("payload_size, data_count, size", [
    (0xFFF8, 0xFFFE, 16),      # both still fit the short form
    (0xFFFF, 1, 24),           # 0xffff is the extended-form marker
    (8, 0xFFFF, 24),
    (2 ** 32 - 8, 2 ** 32 - 1, 24),
])
def test_header_round_trip(payload_size, data_count, size):
    header = MessageHeader(15, payload_size, 6, data_count, 2 ** 32 - 1, 7)
    wire = pack_header(header)
    assert len(wire) == size
    assert unpack_header(wire) == (header, size)
    # an offset into a larger buffer works too
    assert unpack_header(b"xyz" + wire, 3) == (header, size)


def test_partial_header_reports_bytes_needed():
    wire = pack_header(MessageHeader(1, 0x10000, 6, 0x2000, 1, 2))
    assert unpack_header(wire[:10]) == (None, 6)
    assert unpack_header(wire[:16]) == (None, 8)     # extended: 8 more
    assert unpack_header(wire[:23]) == (None, 1)


@pytest.mark.parametrize("bad", [
    MessageHeader(0, 0, 0x10000, 0, 0, 0),     # data_type is 16 bits
    MessageHeader(0, 0, 0, 0, 2 ** 32, 0),     # parameter1 is 32 bits
    MessageHeader(0, 0, 0, 0, 0, -1),
    MessageHeader(0, 2 ** 32, 0, 0, 0, 0),
    MessageHeader(0, 0, "6", 0, 0, 0),
])
def test_out_of_range_fields_are_local_errors(bad):
    with pytest.raises(LocalProtocolError, match="header field"):
        pack_header(bad)


def test_every_layout_has_a_header_function():
    for name, (command_id, _sender, _variable, layout) in \
            _headers.COMMAND_LAYOUTS.items():
        function = getattr(_headers, name + "Header")
        args = {attr: index + 1 for index, (attr, _f, _k) in enumerate(layout)}
        if _variable:
            args["payload_size"] = 8
        header = function(**args)
        assert header.command == command_id
        for attr, field, _kind in layout:
            assert getattr(header, field) == args[attr], (name, attr)

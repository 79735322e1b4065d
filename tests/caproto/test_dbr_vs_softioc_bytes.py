"""ChannelData must produce the very payload bytes an epics-base softIoc sends.

tests/data/e_dbr_matrix.jsonl holds the ReadNotifyResponses a softIoc sent
when libca asked each of seven records -- one per native type -- for its
value as plain, STS, TIME, GR and CTRL (regenerate with
`python -m tests.capture_sessions`).  Here a ChannelData configured like
that record answers `read(data_type)`, the payload codec encodes it, and the
bytes must equal the softIoc's, except for

- the timestamp (secondsSinceEpoch, nanoSeconds) of TIME types, and
- the RISC_pad alignment fields and the padding after the values (to a
  multiple of 8 bytes), which the softIoc leaves uninitialised (see
  tests/data/README.md); the pad offsets below come from db_access.h.
"""
import asyncio
import ctypes
import math

import pytest

import caproto as ca
from caproto import _dbr
from tests import capture_sessions
from tests.capture_sessions import NATIVE_RECORDS, RECORDS, SETUP_VALUES
from tests.caproto.test_real_traffic import client_info, reads_in_order

CT = ca.ChannelType
NAN = math.nan

# (offset, size) of bytes the protocol leaves undefined, per DBR type.
PADDING = {
    CT.STS_CHAR: [(4, 1)], CT.STS_DOUBLE: [(4, 4)],
    CT.TIME_INT: [(12, 2)], CT.TIME_ENUM: [(12, 2)], CT.TIME_CHAR: [(12, 3)],
    CT.TIME_DOUBLE: [(12, 4)],
    CT.GR_FLOAT: [(6, 2)], CT.GR_CHAR: [(18, 1)], CT.GR_DOUBLE: [(6, 2)],
    CT.CTRL_FLOAT: [(6, 2)], CT.CTRL_CHAR: [(20, 1)], CT.CTRL_DOUBLE: [(6, 2)],
}
TIMESTAMP = (4, 8)        # secondsSinceEpoch + nanoSeconds in every TIME type


def field(name, key, cast=float):
    return cast(RECORDS[name][1][key])


def limits(name, *, ctrl=("HOPR", "LOPR"), alarms=True, missing=NAN):
    """ChannelNumeric limit kwargs as epics-base reports a record's fields.

    Display limits are HOPR/LOPR; control limits are HOPR/LOPR for ai,
    longin and waveform; alarm limits are HIHI/HIGH/LOW/LOLO when the record
    has them, else `missing` (waveforms have none: epics-base reports NaN,
    which arrives as 0 in integer DBR types, so integer channels say 0).
    """
    kw = {"upper_disp_limit": field(name, "HOPR"), "lower_disp_limit": field(name, "LOPR"),
          "upper_ctrl_limit": field(name, ctrl[0]), "lower_ctrl_limit": field(name, ctrl[1])}
    keys = {"upper_alarm_limit": "HIHI", "upper_warning_limit": "HIGH",
            "lower_warning_limit": "LOW", "lower_alarm_limit": "LOLO"}
    for kwarg, key in keys.items():
        kw[kwarg] = field(name, key) if alarms else missing
    return kw


def channel_data(type_name):
    """A ChannelData configured with the record's value and metadata."""
    name = NATIVE_RECORDS[type_name]
    fields = RECORDS[name][1]
    if type_name == "STRING":
        return ca.ChannelString(value=fields["VAL"])
    if type_name == "ENUM":
        states = [fields[k] for k in ("ZRST", "ONST", "TWST", "THST")]
        return ca.ChannelEnum(value=states[int(fields["VAL"])], enum_strings=states)
    if type_name == "LONG":
        # VAL 42 is above HIGH (40): the record is in a HIGH / MINOR alarm.
        return ca.ChannelInteger(
            value=int(fields["VAL"]), units=fields["EGU"], **limits(name),
            alarm=ca.ChannelAlarm(status=ca.AlarmStatus.HIGH,
                                  severity=ca.AlarmSeverity.MINOR_ALARM))
    if type_name == "DOUBLE":
        return ca.ChannelDouble(value=float(fields["VAL"]), units=fields["EGU"],
                                precision=int(fields["PREC"]), **limits(name))
    if type_name == "FLOAT":
        return ca.ChannelFloat(value=SETUP_VALUES[name][0], units=fields["EGU"],
                               precision=int(fields["PREC"]), **limits(name, alarms=False))
    if type_name == "SHORT":
        return ca.ChannelShort(value=SETUP_VALUES[name][0], units=fields["EGU"],
                               **limits(name, alarms=False, missing=0))
    if type_name == "CHAR":
        # A CHAR waveform read as numbers: every byte, the NUL included.
        return ca.ChannelByte(value=SETUP_VALUES[name], units=fields["EGU"],
                              max_length=int(fields["NELM"]))
    raise AssertionError(type_name)


def masked(payload, data_type, count):
    """Payload with the undefined bytes zeroed: pads, timestamp, and the
    alignment padding after the values (rsrv leaves buffer leftovers there)."""
    end = _dbr.dbr_metadata_size(data_type) + _dbr.dbr_value_size(data_type) * count
    out = bytearray(payload[:end]) + bytes(len(payload) - end)
    spans = list(PADDING.get(data_type, []))
    if "TIME" in data_type.name:
        spans.append(TIMESTAMP)
    for offset, size in spans:
        out[offset:offset + size] = bytes(size)
    return bytes(out)


def matrix():
    reads = client_info("e_dbr_matrix")["reads"]
    return [(want["native"], response)
            for want, (_req, response) in zip(reads, reads_in_order("e_dbr_matrix"))]


MATRIX = matrix()


@pytest.mark.parametrize("type_name,captured", MATRIX,
                         ids=[r.data_type.name for _t, r in MATRIX])
def test_channel_data_payload_equals_softioc(type_name, captured):
    check_payload(type_name, captured)


def check_payload(type_name, captured):
    data = channel_data(type_name)
    data_type = captured.data_type
    metadata, values = asyncio.run(data.read(data_type))
    ours = ca.ReadNotifyResponse(values, metadata, data_type, captured.data_count,
                                 status=1, ioid=captured.ioid)
    header = len(bytes(captured)) - captured.header.payload_size
    count = captured.data_count
    theirs = masked(bytes(captured)[header:], data_type, count)
    mine = masked(bytes(ours)[header:], data_type, count)
    assert len(mine) == len(theirs)
    assert mine == theirs, (f"{type_name} as {data_type.name}:\n ours    {mine.hex()}"
                            f"\n softIoc {theirs.hex()}")


@pytest.fixture
def live_ioc(softioc, ca_repeater):
    """A softIoc with the capture records and values (the session's caRepeater serves it)."""
    ioc = softioc(capture_sessions.db_text())
    capture_sessions.run_client("setup", ioc.port)
    return ioc


@pytest.mark.timeout(60)
def test_live_softioc_payloads_equal_channel_data(live_ioc):
    """The same comparison against a softIoc started now, through the proxy."""
    records, result = capture_sessions.record_session(live_ioc.port, "e_dbr_matrix")
    pairs = reads_in_order(records)
    assert len(pairs) == len(result["reads"]) == 35
    for want, (_request, captured) in zip(result["reads"], pairs):
        assert int(captured.data_type) == want["ftype"]
        check_payload(want["native"], captured)


def test_every_type_and_form_was_captured():
    seen = {(t, r.data_type) for t, r in MATRIX}
    assert len(seen) == 35
    assert {ca.native_type(r.data_type) for _t, r in MATRIX} == set(ca.native_types)


def test_padding_table_matches_the_metadata_layouts():
    """The RISC_pad fields of DBR_TYPES are exactly the spans masked here."""
    for data_type in sorted({r.data_type for _t, r in MATRIX}):
        structure = ca.DBR_TYPES.get(data_type)
        spans = []
        if structure is not None:
            assert ctypes.sizeof(structure) == _dbr.dbr_metadata_size(data_type)
            for name, *_rest in structure._fields_:
                if name.startswith("RISC_pad"):
                    desc = getattr(structure, name)
                    spans.append((desc.offset, desc.size))
        merged = []
        for offset, size in sorted(spans):
            if merged and merged[-1][0] + merged[-1][1] == offset:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((offset, size))
        assert merged == PADDING.get(data_type, []), data_type.name

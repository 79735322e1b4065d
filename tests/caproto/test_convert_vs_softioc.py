"""Our conversions give what a real epics-base IOC gives.

One softIoc serves records of every native type.  libca (pyepics) reads each
record natively and as every other native type; convert_values applied to
the native value must give the IOC's answer, and must refuse exactly where
the IOC refuses.  Metadata built by build_metadata from the native CTRL
metadata must match what the IOC sends for the promoted requested type.
"""
import os

import pytest

from caproto import ChannelType
from caproto._convert import build_metadata, char_array_to_string, convert_values
from caproto._errors import CaprotoConversionError
from tests.peers import SoftIoc

epics = pytest.importorskip("epics")
from epics import ca  # noqa: E402

pytestmark = pytest.mark.network

NATIVE = [ChannelType.STRING, ChannelType.INT, ChannelType.FLOAT, ChannelType.ENUM,
          ChannelType.CHAR, ChannelType.LONG, ChannelType.DOUBLE]

AI = {  # record suffix -> (VAL, PREC)
    "pi": ("3.14159265", 3), "big": ("12345678.9", 3), "huge": ("1.5e17", 3),
    "tiny": ("0.00001234", 3), "neg": ("-2.675", 2), "half": ("2.5", 0),
    "round": ("-99999.99999", 4), "seventy": ("70000.7", 2), "exp": ("1.5e-20", 10),
}
STRINGIN = {"num": "42.5", "text": "hello", "spaced": " 17 ", "exp": "1e3",
            "hex": "0x10", "octal": "010", "empty": "", "negf": "-3.7",
            "wide": "99999", "state": "one"}
WAVEFORMS = {  # record suffix -> (FTVL, values written before the test)
    "wfshort": ("SHORT", [1, -2, 300, 32767]),
    "wffloat": ("FLOAT", [1.5, -2.25, 3e10, 1.234e-5]),
    "wfdouble": ("DOUBLE", [0.5, -7.125, 1e17, 123.456789]),
    "wflong": ("LONG", [100000, -70000, 5, 0]),
}
LONG_STRING = "a long string held in a CHAR waveform, over 40 chars"


def _db():
    lines = []
    for name, (val, prec) in AI.items():
        lines.append(f'record(ai, "CV:ai:{name}") {{ field(VAL, "{val}") '
                     f'field(PREC, "{prec}") field(EGU, "mm") field(HOPR, "100") '
                     f'field(LOPR, "-100.7") field(HIGH, "50") field(LOW, "-50") '
                     f'field(HSV, "MINOR") field(LSV, "MINOR") field(PINI, "YES") }}')
    for name, val in STRINGIN.items():
        lines.append(f'record(stringin, "CV:si:{name}") {{ field(VAL, "{val}") }}')
    lines.append('record(longin, "CV:li") { field(VAL, "-123456") field(EGU, "cts") '
                 'field(HOPR, "1000") field(LOPR, "-1000") }')
    lines.append('record(longin, "CV:li2") { field(VAL, "42") }')
    lines.append('record(mbbi, "CV:mbbi") { field(VAL, "1") field(ZRST, "zero") '
                 'field(ONST, "one") field(TWST, "two") }')
    lines.append('record(bi, "CV:bi") { field(VAL, "1") field(ZNAM, "Off") '
                 'field(ONAM, "On") }')
    for name, (ftvl, values) in WAVEFORMS.items():
        lines.append(f'record(waveform, "CV:{name}") {{ field(FTVL, "{ftvl}") '
                     f'field(NELM, "{len(values)}") field(PREC, "2") }}')
    lines.append('record(waveform, "CV:wfchar") { field(FTVL, "CHAR") field(NELM, "80") }')
    return "\n".join(lines) + "\n"


SCALARS = ([f"CV:ai:{n}" for n in AI] + [f"CV:si:{n}" for n in STRINGIN]
           + ["CV:li", "CV:li2", "CV:mbbi", "CV:bi"])
ARRAYS = [f"CV:{n}" for n in WAVEFORMS] + ["CV:wfchar"]


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convert_ioc")
    (tmp / "cv.db").write_text(_db())
    proc = SoftIoc(tmp / "cv.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                   tmp / "cv.log")
    try:
        chids = {}
        for name in SCALARS + ARRAYS:
            chid = ca.create_channel(name, connect=False, auto_cb=False)
            chids[name] = chid
        for name, chid in chids.items():
            assert ca.connect_channel(chid, timeout=10), name
        for name, (_, values) in WAVEFORMS.items():
            ca.put(chids[f"CV:{name}"], values, wait=True)
        ca.put(chids["CV:wfchar"], LONG_STRING, wait=True)
        yield chids
        for chid in chids.values():
            ca.clear_channel(chid)
    finally:
        proc.stop()


def _native_read(chids, name):
    chid = chids[name]
    ftype = ChannelType(ca.field_type(chid))
    info = ca.get_with_metadata(chid, ftype=ftype + 28, as_string=False,
                                as_numpy=False, timeout=5)
    return ftype, _as_list(info["value"]), info


def _as_list(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return [value]
    return list(value)


def _ioc_read(chid, to_type):
    """The IOC's answer for `to_type`, or None when it refuses."""
    try:
        value = ca.get(chid, ftype=int(to_type), as_string=False, as_numpy=False,
                       timeout=5)
    except ca.ChannelAccessGetFailure:
        return None
    return _as_list(value)


def _ours(values, from_type, to_type, info):
    enum_strings = list(info["enum_strs"]) if "enum_strs" in info else None
    return list(convert_values(values, from_type, to_type,
                               enum_strings=enum_strings,
                               precision=info.get("precision")))


def _same(ours, theirs, to_type):
    if to_type in (ChannelType.FLOAT, ChannelType.DOUBLE):
        return len(ours) == len(theirs) and all(
            a == b or (a != a and b != b) for a, b in zip(ours, theirs))
    return ours == theirs


@pytest.mark.parametrize("to_type", NATIVE, ids=lambda t: t.name)
@pytest.mark.parametrize("name", SCALARS + ARRAYS)
def test_value_conversion_matches_ioc(ioc, name, to_type):
    from_type, native_values, info = _native_read(ioc, name)
    theirs = _ioc_read(ioc[name], to_type)
    if to_type == ChannelType.CHAR and theirs is not None:
        theirs = [v & 0xFF for v in theirs]     # pyepics may show CHAR signed
    if theirs is None:
        with pytest.raises(CaprotoConversionError):
            _ours(native_values, from_type, to_type, info)
        return
    ours = _ours(native_values, from_type, to_type, info)
    assert _same(ours, theirs, to_type), (name, from_type.name, to_type.name,
                                          native_values, ours, theirs)


def test_char_waveform_reads_as_long_string(ioc):
    values = _ioc_read(ioc["CV:wfchar"], ChannelType.CHAR)
    assert char_array_to_string([v & 0xFF for v in values]) == LONG_STRING


PROMOTED_FIELDS = ("units", "upper_disp_limit", "lower_disp_limit",
                   "upper_alarm_limit", "upper_warning_limit", "lower_warning_limit",
                   "lower_alarm_limit", "upper_ctrl_limit", "lower_ctrl_limit",
                   "precision", "severity", "status")


@pytest.mark.parametrize("to_type", [t for t in NATIVE if t != ChannelType.STRING],
                         ids=lambda t: t.name)
@pytest.mark.parametrize("name", ["CV:ai:pi", "CV:ai:neg", "CV:li", "CV:mbbi",
                                  "CV:bi", "CV:wfdouble"])
def test_ctrl_metadata_matches_ioc(ioc, name, to_type):
    # the richest description of the record: its metadata read as CTRL_DOUBLE
    richest = ca.get_with_metadata(ioc[name], ftype=int(ChannelType.CTRL_DOUBLE),
                                   as_numpy=False, timeout=5)
    source = {k: v for k, v in richest.items() if k in PROMOTED_FIELDS}
    _, _, native_info = _native_read(ioc, name)
    if "enum_strs" in native_info:
        source["enum_strings"] = list(native_info["enum_strs"])
    requested = ChannelType(to_type + 28)
    theirs = ca.get_with_metadata(ioc[name], ftype=int(requested), as_numpy=False,
                                  timeout=5)
    ours = build_metadata(requested, source).to_dict()
    compared = 0
    for key in PROMOTED_FIELDS:
        if key not in theirs:
            continue
        mine, expected = ours[key], theirs[key]
        if key == "units":
            mine = mine.decode()
        elif to_type == ChannelType.CHAR and key.endswith("_limit"):
            mine, expected = mine & 0xFF, expected & 0xFF   # pyepics shows signed
        assert mine == pytest.approx(expected, nan_ok=True), (key, mine, expected)
        compared += 1
    if "enum_strs" in theirs:
        assert [s.decode() for s in ours["enum_strings"]] == list(theirs["enum_strs"])
        compared += 1
    assert compared >= 2      # status and severity at least


@pytest.mark.parametrize("name,severity", [("CV:ai:pi", 0), ("CV:ai:huge", 1),
                                           ("CV:ai:neg", 0), ("CV:ai:half", 0)])
def test_time_metadata_alarm_and_timestamp(ioc, name, severity):
    info = ca.get_with_metadata(ioc[name], ftype=int(ChannelType.TIME_DOUBLE),
                                timeout=5)
    md = build_metadata(ChannelType.TIME_LONG,
                        {"status": info["status"], "severity": info["severity"],
                         "timestamp": info["timestamp"]})
    assert md.severity == info["severity"] == severity
    assert md.timestamp == pytest.approx(info["timestamp"], abs=1e-6)

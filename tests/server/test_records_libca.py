"""Record fields through libca, compared with the epics-base softIoc.

The softIoc serves the same record types; a pyepics client reads every field
we serve from both and compares the DBF types, element counts and menu
choices.  Then field writes are checked for their effect on the record.
"""
import pytest

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from . import ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(90)

RECORD_TYPES = ("ai", "ao", "bi", "bo", "mbbi", "mbbo", "longin", "longout",
                "stringin", "stringout", "waveform", "calc")
SOFTIOC_DB = """
record(ai, "{p}ai") {{}}
record(ao, "{p}ao") {{}}
record(bi, "{p}bi") {{ field(ZNAM, "Off") field(ONAM, "On") }}
record(bo, "{p}bo") {{ field(ZNAM, "Off") field(ONAM, "On") }}
record(mbbi, "{p}mbbi") {{ field(ZRST, "zero") field(ONST, "one") }}
record(mbbo, "{p}mbbo") {{ field(ZRST, "zero") field(ONST, "one") }}
record(longin, "{p}longin") {{}}
record(longout, "{p}longout") {{}}
record(stringin, "{p}stringin") {{}}
record(stringout, "{p}stringout") {{}}
record(waveform, "{p}waveform") {{ field(NELM, "10") field(FTVL, "DOUBLE") }}
record(calc, "{p}calc") {{ field(CALC, "A+B") }}
"""
# Device supports and breakpoint tables depend on what the IOC loaded.
SITE_MENUS = {"DTYP", "LINR"}
# The fields the issue names, served by every record type that has them.
REQUIRED = {"DESC", "EGU", "PREC", "HOPR", "LOPR", "HIHI", "HIGH", "LOW", "LOLO",
            "HHSV", "HSV", "LSV", "LLSV", "HYST", "DRVH", "DRVL", "MDEL", "ADEL",
            "SCAN", "PROC", "NAME", "RTYP", "VAL", "SEVR", "STAT", "UDF", "TSE",
            "ZNAM", "ONAM", "NELM", "NORD", "FTVL"} | {
    f"{state}ST" for state in ("ZR", "ON", "TW", "TH", "FR", "FV", "SX", "SV",
                               "EI", "NI", "TE", "EL", "TV", "TT", "FT", "FF")}


class Records(PVGroup):
    """One PV per record type, as the softIoc's database above."""

    ai = pvproperty(value=0.0, record="ai")
    ao = pvproperty(value=0.0, record="ao")
    bi = pvproperty(value=False, record="bi")
    bo = pvproperty(value=False, record="bo")
    mbbi = pvproperty(value="zero", enum_strings=["zero", "one"],
                      dtype=ChannelType.ENUM, record="mbbi")
    mbbo = pvproperty(value="zero", enum_strings=["zero", "one"],
                      dtype=ChannelType.ENUM, record="mbbo")
    longin = pvproperty(value=0, record="longin")
    longout = pvproperty(value=0, record="longout")
    stringin = pvproperty(value="", dtype=str, record="stringin")
    stringout = pvproperty(value="", dtype=str, record="stringout")
    waveform = pvproperty(value=[0.0], max_length=10, record="waveform")
    calc = pvproperty(value=0.0, record="calc")


PROBE = """
import time
from epics import ca
names = {names!r}
chids = {{key: ca.create_channel(name, connect=False, auto_cb=False)
         for key, name in names.items()}}
deadline = time.time() + 5        # fields a server lacks never connect
while time.time() < deadline and not all(ca.isConnected(c) for c in chids.values()):
    ca.poll(0.05)
out = {{}}
for key, chid in chids.items():
    if not ca.isConnected(chid):
        continue
    entry = {{'type': ca.field_type(chid), 'count': ca.element_count(chid)}}
    if entry['type'] == 3:
        md = ca.get_with_metadata(chid, ftype=31, timeout=5)
        entry['strs'] = [s.decode() if isinstance(s, bytes) else s
                         for s in md.get('enum_strs', ())]
    out[key] = entry
emit(out)
"""


def probe(names, env=None):
    return run_client(PROBE.format(names=names), env=env, timeout=90)


def test_field_types_match_the_softioc(softioc, free_port):
    records = Records("R:")
    ours_fields = {rtype: sorted(getattr(records, rtype).fields) + ["VAL"]
                   for rtype in RECORD_TYPES}
    names = {f"{rtype}.{field}": f"{{p}}{rtype}.{field}"
             for rtype, fields in ours_fields.items() for field in fields}
    ioc = softioc(SOFTIOC_DB.format(p="S:"), port=free_port)
    theirs = probe({key: name.format(p="S:") for key, name in names.items()},
                   env={"EPICS_CA_SERVER_PORT": str(ioc.port)})
    ioc.stop()
    with ServerThread("asyncio", records.pvdb):
        ours = probe({key: name.format(p="R:") for key, name in names.items()})
    mismatches = []
    for key in names:
        if key not in theirs:
            continue                 # a field this softIoc does not serve
        got, want = ours.get(key), theirs[key]
        if got is None or (got["type"], got["count"]) != (want["type"], want["count"]):
            mismatches.append((key, got, want))
        elif want["type"] == ChannelType.ENUM and key.split(".")[1] not in SITE_MENUS:
            if got["strs"] != want["strs"]:
                mismatches.append((key, got["strs"], want["strs"]))
    assert mismatches == []
    for rtype in RECORD_TYPES:
        served_by_softioc = {key.split(".")[1] for key in theirs
                             if key.startswith(rtype + ".")}
        missing = (REQUIRED & served_by_softioc) - set(ours_fields[rtype])
        assert not missing, (rtype, missing)
    assert len(theirs) > 600         # the comparison really covered the fields


class Fields(PVGroup):
    """Records whose fields are written by the tests below."""

    temp = pvproperty(value=20.0, record="ai", units="degC", precision=2,
                      doc="Temperature of the sample stage")
    out = pvproperty(value=0.0, record="ao", upper_ctrl_limit=50.0,
                     lower_ctrl_limit=-50.0)
    valve = pvproperty(value=False, record="bo")
    mode = pvproperty(value="Idle", enum_strings=["Idle", "Run"], dtype=ChannelType.ENUM,
                      record="mbbo")
    total = pvproperty(value=0.0, record="calc")
    trace = pvproperty(value=[1.0, 2.0], max_length=16, record="waveform")
    polled = pvproperty(value=0, record="longin")
    scanned = pvproperty(value=0, record="longin")

    @polled.getter
    async def polled(self, instance):
        return instance.value + 1

    @scanned.scan(period=0.1, use_scan_field=True)
    async def scanned(self, instance, async_lib):
        await instance.write(instance.value + 1)


FIELD_CLIENT = """
import time
from epics import ca
p = {prefix!r}
chids = {{}}
def text(value):
    return value.decode() if isinstance(value, bytes) else value
def chid(name):
    if name not in chids:
        chids[name] = ca.create_channel(p + name, connect=False, auto_cb=False)
        assert ca.connect_channel(chids[name], timeout=10), name
    return chids[name]
def get(name, as_string=False):
    value = ca.get(chid(name), timeout=10, ftype=0 if as_string else None)
    return value.tolist() if hasattr(value, 'tolist') else text(value)
def put(name, value):
    kw = {{'ftype': 0}} if isinstance(value, str) else {{}}   # strings as DBR_STRING
    ca.put(chid(name), value, wait=True, timeout=10, **kw)
out = {{}}
# a PROPERTY subscription on VAL sees the EGU change
events = []
def on_event(pvname=None, value=None, **kw):
    events.append(text(kw.get('units')))
handler, _, _ = ca.create_subscription(chid('temp'), mask=8, use_time=False,
                                       use_ctrl=True, callback=on_event)
deadline = time.time() + 10
while not events and time.time() < deadline:
    ca.poll(0.01)
put('temp.EGU', 'K')
while len(events) < 2 and time.time() < deadline:
    ca.poll(0.01)
out['property_events'] = events[:2]
out['units'] = text(ca.get_with_metadata(chid('temp'), ftype=34)['units'])
out['desc'] = get('temp.DESC')
out['name'] = get('temp.NAME')
out['rtyp'] = get('temp.RTYP')
out['stat_writable'] = bool(ca.write_access(chid('temp.STAT')))
# alarm limits take effect at once
put('temp.HIHI', 15.0)
out['sevr_after_hihi'] = get('temp.SEVR', as_string=True)
out['stat_after_hihi'] = get('temp.STAT', as_string=True)
put('temp.HHSV', 'NO_ALARM')
out['sevr_after_hhsv'] = get('temp.SEVR', as_string=True)
# drive limits clamp ao writes
put('out.DRVH', 10.0)
put('out', 25.0)
out['clamped'] = get('out')
out['ctrl_high'] = ca.get_with_metadata(chid('out'), ftype=34)['upper_ctrl_limit']
# state names
put('valve.ZNAM', 'Closed')
put('valve.ONAM', 'Open')
out['valve_strs'] = [text(s) for s in ca.get_with_metadata(chid('valve'), ftype=31)['enum_strs']]
put('mode.TWST', 'Fault')
out['mode_strs'] = [text(s) for s in ca.get_with_metadata(chid('mode'), ftype=31)['enum_strs']]
# calc
put('total.CALC', 'A*B+1')
put('total.A', 3)
put('total.B', 4)
out['calc'] = get('total')
# waveform length fields
put('trace', [1.0, 2.0, 3.0, 4.0, 5.0])
out['nord'] = get('trace.NORD')
out['nelm'] = get('trace.NELM')
out['ftvl'] = get('trace.FTVL', as_string=True)
# PROC processes the record: the getter runs
before = get('polled.VAL')
put('polled.PROC', 1)
out['proc_ran'] = [before, get('polled.VAL')]
# SCAN: Passive stops the scan, '.1 second' restarts it
put('scanned.SCAN', 'Passive')
time.sleep(0.3)
first = get('scanned')
time.sleep(0.5)
out['passive_still'] = get('scanned') == first
put('scanned.SCAN', '.1 second')
deadline = time.time() + 10
while get('scanned') < first + 3 and time.time() < deadline:
    time.sleep(0.05)
out['rescanned'] = get('scanned') >= first + 3
emit(out)
"""


def refused(caput):
    """Did caput report that the server refused the write?"""
    said = (caput.stdout + caput.stderr).lower()
    return caput.returncode != 0 or any(word in said for word in
                                        ("error", "failed", "denied", "no write"))


@pytest.mark.parametrize("layer", ["asyncio", "curio", "trio"])
def test_writing_fields_takes_effect(layer):
    prefix = f"F{layer}:"
    group = Fields(prefix)
    with ServerThread(layer, group.pvdb):
        result = run_client(FIELD_CLIENT.format(prefix=prefix))
        bad_calc = run_tool("caput", "-c", "-w", "5", f"{prefix}total.CALC", "A+*")
        stat = run_tool("caput", "-c", "-w", "5", f"{prefix}temp.STAT", "HIHI")
    assert result["property_events"] == ["degC", "K"]
    assert result["units"] == "K" and group.temp.units == "K"
    assert result["desc"] == "Temperature of the sample stage"
    assert result["name"] == f"{prefix}temp" and result["rtyp"] == "ai"
    assert result["stat_writable"] is False
    assert (result["sevr_after_hihi"], result["stat_after_hihi"]) == ("MAJOR", "HIHI")
    assert result["sevr_after_hhsv"] == "NO_ALARM"
    assert result["clamped"] == 10.0 and result["ctrl_high"] == 10.0
    assert result["valve_strs"] == ["Closed", "Open"]
    assert result["mode_strs"] == ["Idle", "Run", "Fault"]
    assert result["calc"] == 13.0
    assert (result["nord"], result["nelm"], result["ftvl"]) == (5, 16, "DOUBLE")
    # the getter runs once for PROC and once for the read that follows it
    assert result["proc_ran"][1] == result["proc_ran"][0] + 2
    assert result["passive_still"] and result["rescanned"]
    assert group.temp.fields["DESC"].value == "Temperature of the sample stage"
    assert group.total.fields["CALC"].value == "A*B+1"
    assert refused(bad_calc)
    assert group.temp.fields["STAT"].value == "NO_ALARM"
    assert refused(stat)


def test_desc_takes_forty_characters():
    """DESC holds 40 bytes (epics-base's DESC[41]); DBR_STRING carries 39 of them."""
    import asyncio
    group = Fields("D:")
    desc = group.temp.fields["DESC"]
    asyncio.run(desc.write("y" * 40))
    assert desc.value == "y" * 40
    with pytest.raises(ValueError, match="at most 40"):
        asyncio.run(desc.write("z" * 41))
    assert desc.value == "y" * 40
    with ServerThread("asyncio", group.pvdb):
        shown = run_tool("caget", "-w", "5", "D:temp.DESC")
    assert shown.stdout.split()[-1] == "y" * 39


# -- in-process: the record side of the mirroring, and calc ------------------------

def test_record_side_changes_reach_the_fields():
    import asyncio
    from caproto import AlarmSeverity, AlarmStatus

    group = Fields("M:")
    temp, fields = group.temp, group.temp.fields
    posted = []

    class Queue:
        async def put(self, update):
            posted.append(update.values)

    async def scenario():
        from caproto._data import SubscriptionSpec
        spec = SubscriptionSpec(db_entry=fields["EGU"], data_type=ChannelType.STRING,
                                mask=1)
        await fields["EGU"].subscribe(Queue(), spec, "sub")
        await temp.write_metadata(units="mm", upper_alarm_limit=5.0)
        await temp.alarm.write(status=AlarmStatus.LOLO,
                               severity=AlarmSeverity.MINOR_ALARM)
    asyncio.run(scenario())
    assert fields["EGU"].value == "mm" and fields["HIHI"].value == 5.0
    assert [list(values) for values in posted] == [[b"degC"], [b"mm"]]
    assert (fields["STAT"].value, fields["SEVR"].value) == ("LOLO", "MINOR")
    assert temp.field_inst.engineering_units is fields["EGU"]
    assert temp.get_field("EGU") is fields["EGU"] and temp.get_field("VAL") is None
    with pytest.raises(AttributeError, match="no field called 'nonsense'"):
        temp.field_inst.nonsense


def test_state_strings_follow_mbbo_fields():
    import asyncio
    group = Fields("S:")
    fields = group.mode.fields
    assert (fields["ZRST"].value, fields["ONST"].value, fields["TWST"].value) == (
        "Idle", "Run", "")
    asyncio.run(fields["THST"].write("Parked"))
    assert group.mode.enum_strings == ("Idle", "Run", "", "Parked")
    asyncio.run(fields["THST"].write(""))
    assert group.mode.enum_strings == ("Idle", "Run")
    asyncio.run(group.mode.write("Run"))
    asyncio.run(fields["ONST"].write("Running"))
    assert group.mode.value == "Running"          # the state index stays put


@pytest.mark.parametrize("expression, expected", [
    ("A+B*C", 7.0), ("(A+B)*C", 9.0), ("A^C^B", 1.0), ("C**2", 9.0),
    ("-A+ABS(-4)", 3.0), ("A<B?10:20", 10.0), ("A#1 || B=2", 1.0),
    ("MAX(A,B,C)+MIN(C,B)", 5.0), ("NINT(2.5)+FLOOR(1.9)", 4.0), ("7%4", 3.0),
    ("A/0", float("inf")), ("!A && 1", 0.0), ("B<<2 | 1", 9.0), ("PI>3", 1.0),
    ("sqrt(16)+d", 4.0),
])
def test_calc_expressions(expression, expected):
    from caproto.server.records.calc import evaluate
    assert evaluate(expression, {"A": 1.0, "B": 2.0, "C": 3.0}) == expected


@pytest.mark.parametrize("expression, where", [
    ("A+", "end"), ("A+*B", "character 3"), ("FOO(1)", "unknown name 'FOO'"),
    ("(A", "expected ')'"), ("A B", "unexpected 'B'"), ("", "empty"),
    ("A;", "unexpected character"),
])
def test_bad_calc_expressions_name_the_problem(expression, where):
    from caproto.server.records.calc import evaluate
    import re
    with pytest.raises(ValueError, match=re.escape(where)):
        evaluate(expression, {})

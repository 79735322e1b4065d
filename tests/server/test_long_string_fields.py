"""``PV.FIELD$``: string and link fields as CHAR arrays, compared with a softIoc.

The same client script runs against the epics-base softIoc and against our
server serving the same records; what libca (pyepics) and the epics-base
tools see must be the same.
"""
import asyncio

import pytest

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty
from caproto.server.names import resolve

from . import CHANNELS, ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(120)

RECORD_TYPES = ("ai", "ao", "bi", "bo", "mbbi", "mbbo", "longin", "longout",
                "stringin", "stringout", "waveform", "calc")
SOFTIOC_DB = "".join(
    f'record({rtype}, "{{p}}{rtype}") {{{{ field(DESC, "a description") }}}}\n'
    for rtype in RECORD_TYPES if rtype != "waveform") + (
    'record(waveform, "{p}waveform") {{ field(DESC, "a description") '
    'field(NELM, "10") field(FTVL, "DOUBLE") }}\n')


class Records(PVGroup):
    """One PV per record type, each with the DESC of the database above."""

    ai = pvproperty(value=0.0, record="ai", doc="a description")
    ao = pvproperty(value=0.0, record="ao", doc="a description")
    bi = pvproperty(value=False, record="bi", doc="a description")
    bo = pvproperty(value=False, record="bo", doc="a description")
    mbbi = pvproperty(value="zero", enum_strings=["zero"], dtype=ChannelType.ENUM,
                      record="mbbi", doc="a description")
    mbbo = pvproperty(value="zero", enum_strings=["zero"], dtype=ChannelType.ENUM,
                      record="mbbo", doc="a description")
    longin = pvproperty(value=0, record="longin", doc="a description")
    longout = pvproperty(value=0, record="longout", doc="a description")
    stringin = pvproperty(value="", dtype=str, record="stringin", doc="a description")
    stringout = pvproperty(value="", dtype=str, record="stringout", doc="a description")
    waveform = pvproperty(value=[0.0], max_length=10, record="waveform",
                          doc="a description")
    calc = pvproperty(value=0.0, record="calc", doc="a description")


PROBE = """
import time
from epics import ca
names = {names!r}
chids = {{key: ca.create_channel(name, connect=False, auto_cb=False)
         for key, name in names.items()}}
deadline = time.time() + 2        # names a server does not serve never connect
while time.time() < deadline and not all(ca.isConnected(c) for c in chids.values()):
    ca.poll(0.05)
emit({{key: [ca.field_type(chid), ca.element_count(chid)]
      for key, chid in chids.items() if ca.isConnected(chid)}})
"""


def test_long_string_channels_match_the_softioc(softioc, free_port):
    """Every string/link field's ``$`` channel: DBF_CHAR with epics-base's
    size; non-string fields have none (on both servers)."""
    records = Records("L:")
    names = {}
    for rtype in RECORD_TYPES:
        for field in list(getattr(records, rtype).fields) + ["VAL"]:
            names[f"{rtype}.{field}$"] = f"{{p}}{rtype}.{field}$"
    ioc = softioc(SOFTIOC_DB.format(p="S:"), port=free_port)
    theirs = run_client(PROBE.format(names={k: n.format(p="S:") for k, n in names.items()}),
                        env={"EPICS_CA_SERVER_PORT": str(ioc.port)}, timeout=90)
    ioc.stop()
    with ServerThread("asyncio", records.pvdb):
        ours = run_client(PROBE.format(names={k: n.format(p="L:")
                                              for k, n in names.items()}), timeout=90)
    assert ours == theirs
    char = int(ChannelType.CHAR)
    assert theirs["ai.DESC$"] == [char, 41] and theirs["ai.INP$"] == [char, 1024]
    assert theirs["stringin.VAL$"] == [char, 40] and "ai.PREC$" not in theirs
    assert len(theirs) > 100          # the comparison really covered the fields


SCENARIO = r"""
import time
from epics import ca
p = {prefix!r}
{channels}
def text(values):
    return bytes(int(v) & 0xFF for v in values).split(b'\0')[0].decode()
out = {{}}
events = []
def on_event(value=None, **kw):
    events.append(text(value))
handler, _, _ = ca.create_subscription(chid('bi.DESC$'), mask=1, use_time=True,
                                       callback=on_event)
start = time.time()
while not events and time.time() < start + 10:
    ca.poll(0.01)
# dynamic (count 0) read: the text and its NUL; a native-count read: all 41
out['dynamic'] = [int(v) for v in ca.get(chid('bi.DESC$'), count=0)]
out['full'] = [int(v) for v in ca.get(chid('bi.DESC$'), count=41)]
out['as_strings'] = [v.decode() if isinstance(v, bytes) else v
                     for v in ca.get(chid('bi.DESC$'), ftype=0, count=0)]
# 40 characters through DESC$; DESC (DBR_STRING) shows 39 of them
forty = 'x' * 20 + 'y' * 20
ca.put(chid('bi.DESC$'), [ord(c) for c in forty] + [0], wait=True)
out['desc_after_forty'] = ca.get(chid('bi.DESC'))
out['desc_long_after_forty'] = text(ca.get(chid('bi.DESC$')))
# three elements without a NUL overwrite the first three bytes only
ca.put(chid('bi.DESC$'), [72, 105, 33], wait=True)
out['after_partial'] = text(ca.get(chid('bi.DESC$')))
# a DBR_STRING write of the plain field shows up in the $ channel and its monitor
ca.put(chid('bi.DESC'), 'short one', wait=True)
out['after_plain'] = text(ca.get(chid('bi.DESC$')))
# EGU$ holds 15 characters; a string link and CALC longer than 39
ca.put(chid('ai.EGU$'), [ord(c) for c in 'ABCDEFGHIJKLMNO'] + [0], wait=True)
out['egu'] = text(ca.get(chid('ai.EGU$')))
calc = 'A+' * 60 + '1'
ca.put(chid('calc.CALC$'), [ord(c) for c in calc] + [0], wait=True)
out['calc'] = text(ca.get(chid('calc.CALC$')))
out['calc_plain'] = ca.get(chid('calc.CALC'))
ca.put(chid('stringout.VAL$'), [ord(c) for c in 'through VAL$'] + [0], wait=True)
out['stringout'] = ca.get(chid('stringout'))
out['name'] = text(ca.get(chid('ai.NAME$')))
out['name_writable'] = bool(ca.write_access(chid('ai.NAME$')))
deadline = time.time() + 10
while len(events) < 4 and time.time() < deadline:
    ca.poll(0.01)
out['events'] = events
emit(out)
"""


def test_reading_and_writing_long_strings_as_the_softioc(softioc, free_port):
    records = Records("W:")
    ioc = softioc(SOFTIOC_DB.format(p="S:"), port=free_port)
    env = {"EPICS_CA_SERVER_PORT": str(ioc.port)}
    theirs = run_client(SCENARIO.format(prefix="S:", channels=CHANNELS), env=env)
    theirs["too_long"] = run_tool("caput", "-S", "-w", "5", "S:bi.DESC$", "z" * 45,
                                  env=env).stdout + "\n"
    ioc.stop()
    with ServerThread("asyncio", records.pvdb):
        ours = run_client(SCENARIO.format(prefix="W:", channels=CHANNELS))
        ours["too_long"] = run_tool("caput", "-S", "-w", "5", "W:bi.DESC$",
                                    "z" * 45).stdout + "\n"
    # the two servers' record names differ in their prefix only
    theirs["too_long"] = theirs["too_long"].replace("S:", "W:")
    assert ours.pop("name") == "W:ai" and theirs.pop("name") == "S:ai"
    assert ours == theirs
    # and the values are the ones a user expects
    assert ours["dynamic"] == list(b"a description\0")
    assert ours["full"] == list(b"a description") + [0] * 28
    assert ours["as_strings"][:2] == ["97", "32"]
    assert ours["desc_long_after_forty"] == "x" * 20 + "y" * 20
    assert ours["desc_after_forty"] == "x" * 20 + "y" * 19
    assert ours["after_partial"] == "Hi!" + "x" * 17 + "y" * 20
    assert ours["calc"] == "A+" * 60 + "1" == records.calc.fields["CALC"].value
    assert ours["calc_plain"] == ours["calc"][:39]
    assert "Invalid element count" in ours["too_long"]
    assert ours["stringout"] == "through VAL$" and records.stringout.value == "through VAL$"
    assert ours["events"][0] == "a description" and ours["events"][-1] == "short one"
    assert not ours["name_writable"]
    assert records.bi.fields["DESC"].value == "short one"


def test_a_link_field_takes_a_long_target():
    """Links hold what epics-base's 1024-byte link text holds; DBR_STRING
    readers see the first 39 bytes."""
    records = Records("K:")
    target = "K:" + "t" * 200 + " CP"
    with ServerThread("asyncio", records.pvdb):
        put = run_tool("caput", "-S", "-w", "5", "K:ai.INP$", target)
        long_form = run_tool("caget", "-S", "-w", "5", "K:ai.INP$")
        short_form = run_tool("caget", "-w", "5", "K:ai.INP")
    assert put.returncode == 0, put.stderr
    assert records.ai.fields["INP"].value == target
    assert long_form.stdout.split(None, 1)[1].strip() == target
    assert short_form.stdout.split()[-1] == target[:39]


def test_long_string_names_resolve_only_for_string_fields():
    records = Records("N:")
    pvdb = records.pvdb
    desc = resolve(pvdb, "N:ai.DESC$")
    assert desc.field == "DESC$" and desc.data.data_type == ChannelType.CHAR
    assert desc.data is resolve(pvdb, "N:ai.DESC$").data      # one channel per field
    assert resolve(pvdb, "N:ai.PREC$") is None
    assert resolve(pvdb, "N:ai.VAL$") is None                 # ai's VAL is no string
    assert resolve(pvdb, "N:ai.NOPE$") is None
    assert resolve(pvdb, "N:ai.DE$C") is None
    assert resolve(pvdb, "N:stringin.VAL$").data.max_length == 40
    # the $ channels are not listed among the fields
    assert not any(name.endswith("$") for name in records.ai.fields)

    async def write_through_ioc_code():
        await desc.data.write("set by IOC code")
        return records.ai.fields["DESC"].value, desc.data.value

    assert asyncio.run(write_through_ioc_code()) == ("set by IOC code",) * 2

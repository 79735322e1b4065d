"""Our server on each async layer, driven by the real C client (libca).

pyepics runs in subprocesses (libca reads EPICS_CA_* once per context);
epics-base's caget/caput/camonitor run as command-line tools.  The server
runs in a thread of the test process, so tests read its ChannelData directly.
"""
import os
import time

import pytest

import caproto as ca

from . import LAYERS, ClientProcess, ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(120)

LIMITS = dict(upper_disp_limit=10, lower_disp_limit=-10, upper_alarm_limit=9,
              upper_warning_limit=8, lower_warning_limit=-8, lower_alarm_limit=-9,
              upper_ctrl_limit=10, lower_ctrl_limit=-10)


@pytest.fixture(params=LAYERS)
def layer(request):
    return request.param


def typed_pvdb(prefix):
    return {
        f"{prefix}double": ca.ChannelDouble(value=3.125, units="mm", precision=3,
                                            **LIMITS),
        f"{prefix}float": ca.ChannelFloat(value=2.5, units="V", precision=2,
                                          **LIMITS),
        f"{prefix}long": ca.ChannelInteger(value=-7, units="cts", **LIMITS),
        f"{prefix}short": ca.ChannelShort(value=-5, units="cts", **LIMITS),
        f"{prefix}char": ca.ChannelByte(value=5, units="b", **LIMITS),
        f"{prefix}enum": ca.ChannelEnum(value="two", enum_strings=["zero", "one", "two"]),
        f"{prefix}string": ca.ChannelString(value="hello world"),
    }


NATIVE = {"double": 6, "float": 2, "long": 5, "short": 1, "char": 4, "enum": 3,
          "string": 0}
# pyepics knows plain, TIME and CTRL; caget -d asks for STS and GR.
FORMS = {"plain": 0, "time": 14, "ctrl": 28}
TOOL_FORMS = {"sts": 7, "gr": 21}


def caget_form(name, data_type):
    """``caget -d <type>`` output as {field: text}."""
    got = run_tool("caget", "-w", "5", "-d", str(data_type), name)
    assert got.returncode == 0, got.stderr
    fields = {}
    for line in got.stdout.splitlines()[1:]:
        key, _, value = line.strip().partition(":")
        fields[key.strip()] = value.strip()
    return fields

GET_ALL = """
import epics
from epics import ca
names = {names!r}
forms = {forms!r}
native = {native!r}
chids = {{}}
for key in names:
    chids[key] = ca.create_channel(names[key], connect=False, auto_cb=False)
for key in names:
    assert ca.connect_channel(chids[key], timeout=10), key
def clean(obj):
    if hasattr(obj, 'tolist'):
        obj = obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode('latin-1')
    if isinstance(obj, (list, tuple)):
        return [clean(x) for x in obj]
    return obj
out = {{}}
for key, chid in chids.items():
    out[key] = {{'field_type': ca.field_type(chid), 'count': ca.element_count(chid),
                'write': bool(ca.write_access(chid))}}
    for form, offset in forms.items():
        md = ca.get_with_metadata(chid, ftype=native[key] + offset, as_numpy=False,
                                  timeout=10)
        out[key][form] = {{k: clean(v) for k, v in md.items()}}
    out[key]['as_string'] = clean(ca.get(chid, ftype=0, timeout=10))
    if key != 'string':
        out[key]['as_double'] = clean(ca.get(chid, ftype=6, timeout=10))
emit(out)
"""


def test_get_every_type_in_every_dbr_form(layer):
    pvdb = typed_pvdb("G:")
    with ServerThread(layer, pvdb):
        names = {key: f"G:{key}" for key in NATIVE}
        result = run_client(GET_ALL.format(names=names, forms=FORMS, native=NATIVE))
        tool = {(key, form): caget_form(names[key], native + offset)
                for key, native in NATIVE.items()
                for form, offset in TOOL_FORMS.items()}
    expected_value = {"double": 3.125, "float": 2.5, "long": -7, "short": -5,
                      "char": 5, "enum": 2, "string": "hello world"}
    for key, native in NATIVE.items():
        got = result[key]
        data = pvdb[f"G:{key}"]
        assert got["field_type"] == native, key
        assert got["count"] == 1 and got["write"], key
        for form in FORMS:
            assert got[form]["value"] == expected_value[key], (key, form)
        for form in ("time", "ctrl"):
            assert got[form]["status"] == 0 and got[form]["severity"] == 0, (key, form)
        for form in TOOL_FORMS:
            fields = tool[key, form]
            assert fields["Status"] == "NO_ALARM" and fields["Severity"] == "NO_ALARM"
            shown = fields["Value"]
            if key == "enum":       # caget shows STS_ENUM as the index
                assert shown in ("2", "two"), (form, shown)
            elif key == "string":
                assert shown == data.value
            else:
                assert float(shown) == data.value, (key, form, shown)
        assert got["time"]["timestamp"] == pytest.approx(data.timestamp, abs=1e-5)
        if key in ("double", "float", "long", "short", "char"):
            assert got["ctrl"]["units"] == data.units, key
            assert got["ctrl"]["upper_disp_limit"] == 10
            assert got["ctrl"]["lower_alarm_limit"] == -9
            assert got["ctrl"]["upper_warning_limit"] == 8
            assert got["ctrl"]["upper_ctrl_limit"] == 10
            assert got["ctrl"]["lower_ctrl_limit"] == -10
            gr = tool[key, "gr"]
            assert gr["Units"] == data.units
            assert float(gr["Hi disp limit"]) == 10 and float(gr["Lo alarm limit"]) == -9
            assert "Lo ctrl limit" not in gr
        if key in ("double", "float"):
            assert got["ctrl"]["precision"] == data.precision
            assert int(tool[key, "gr"]["Precision"]) == data.precision
    assert tool["enum", "gr"]["Enums"] == "( 3)"
    assert tool["enum", "gr"]["Value"] == "two"
    assert result["enum"]["ctrl"]["enum_strs"] == ["zero", "one", "two"]
    assert result["enum"]["as_string"] == "two"
    assert result["double"]["as_string"] == "3.125"
    assert result["long"]["as_string"] == "-7"
    assert result["enum"]["as_double"] == 2.0
    assert result["short"]["as_double"] == -5.0


PUTS = """
import time
from epics import ca
chids = {{n: ca.create_channel(n, connect=False, auto_cb=False) for n in {names!r}}}
for chid in chids.values():
    assert ca.connect_channel(chid, timeout=10)
done = []
def on_done(pvname=None, **kw):
    done.append(pvname)
out = {{}}
ca.put(chids['P:double'], 4.5, wait=True)
out['double_wait'] = ca.get(chids['P:double'])
ca.put(chids['P:long'], 42, callback=on_done)
deadline = time.time() + 10
while not done and time.time() < deadline:
    ca.poll(0.01)
out['callback'] = done
ca.put(chids['P:short'], 17)            # no callback, no wait
ca.flush_io()
out['short_get'] = ca.get(chids['P:short'])
ca.put(chids['P:enum'], 'one', wait=True, ftype=0)   # by string
out['enum'] = ca.get(chids['P:enum'], ftype=0)
ca.put(chids['P:enum'], 2, wait=True)       # by index
out['enum_index'] = ca.get(chids['P:enum'])
ca.put(chids['P:string'], 'new text', wait=True)
out['string'] = ca.get(chids['P:string'])
out['ro_write_access'] = bool(ca.write_access(chids['P:ro']))
out['ro_read_access'] = bool(ca.read_access(chids['P:ro']))
emit(out)
"""


def test_put_with_and_without_callback(layer):
    pvdb = {
        "P:double": ca.ChannelDouble(value=0.0),
        "P:long": ca.ChannelInteger(value=0),
        "P:short": ca.ChannelShort(value=0),
        "P:enum": ca.ChannelEnum(value="zero", enum_strings=["zero", "one", "two"]),
        "P:string": ca.ChannelString(value="old"),
        "P:ro": ca.ChannelDouble(value=1.0, read_only=True),
    }
    with ServerThread(layer, pvdb):
        result = run_client(PUTS.format(names=list(pvdb)))
    assert result["double_wait"] == 4.5 and pvdb["P:double"].value == 4.5
    assert result["callback"] == ["P:long"] and pvdb["P:long"].value == 42
    assert result["short_get"] == 17
    assert result["enum"] == "one"
    assert result["enum_index"] == 2 and pvdb["P:enum"].value == "two"
    assert result["string"] == "new text" and pvdb["P:string"].value == "new text"
    assert result["ro_write_access"] is False and result["ro_read_access"] is True
    assert pvdb["P:ro"].value == 1.0


MONITOR = """
import time
from epics import ca, dbr
chid = ca.create_channel({name!r}, connect=False, auto_cb=False)
assert ca.connect_channel(chid, timeout=10)
events = {{}}
subs = []
for mask in ('VALUE', 'LOG', 'ALARM', 'PROPERTY'):
    events[mask] = []
    def cb(value=None, severity=None, units=None, _mask=mask, **kw):
        events[_mask].append([float(value), severity, units])
    subs.append(ca.create_subscription(chid, use_ctrl=True, callback=cb,
                                       mask=getattr(dbr, 'DBE_' + mask)))
def settle(seconds=0.5):
    deadline = time.time() + seconds
    while time.time() < deadline:
        ca.poll(0.01)
settle()
emit('subscribed')
wait_go()
settle(1.0)
emit(events)
"""


def test_monitor_masks(layer):
    data = ca.ChannelDouble(value=1.0, units="mm", value_atol=0.5, log_atol=2.0,
                            upper_alarm_limit=100, lower_alarm_limit=-100)
    server = ServerThread(layer, {"M:x": data})
    with server, ClientProcess(MONITOR.format(name="M:x")) as client:
        assert client.expect() == "subscribed"

        async def change():
            await data.write(1.2)          # inside MDEL: nothing but ... nothing
            await data.write(2.0)          # VALUE (|2-1| > 0.5), not LOG
            await data.write(3.5)          # VALUE and LOG (|3.5-1| > 2)
            await data.write(150.0)        # VALUE, LOG and ALARM (HIHI)
            await data.write_metadata(units="cm")   # PROPERTY
        server.call(change)
        client.go()
        events = client.expect()
    # Each subscription first gets the current value.
    assert [e[0] for e in events["VALUE"]] == [1.0, 2.0, 3.5, 150.0]
    assert [e[0] for e in events["LOG"]] == [1.0, 3.5, 150.0]
    assert [e[0] for e in events["ALARM"]] == [1.0, 150.0]
    assert events["ALARM"][-1][1] == 2                      # MAJOR
    assert [e[2] for e in events["PROPERTY"]] == ["mm", "cm"]


BIG = """
import numpy
from epics import ca
chid = ca.create_channel('W:big', connect=False, auto_cb=False)
assert ca.connect_channel(chid, timeout=10)
value = ca.get(chid, timeout=30)
ca.put(chid, numpy.arange({n}, dtype=float)[::-1].copy(), wait=True, timeout=30)
emit({{'count': ca.element_count(chid), 'len': len(value), 'first': float(value[0]),
       'last': float(value[-1]), 'sum': float(value.sum())}})
"""


def test_million_double_waveform(layer):
    n = 1_000_000
    numpy = pytest.importorskip("numpy")
    data = ca.ChannelDouble(value=numpy.arange(n, dtype=float), max_length=n)
    env = {"EPICS_CA_MAX_ARRAY_BYTES": str(8 * n + 1000)}
    old = os.environ.get("EPICS_CA_MAX_ARRAY_BYTES")
    os.environ["EPICS_CA_MAX_ARRAY_BYTES"] = env["EPICS_CA_MAX_ARRAY_BYTES"]
    try:
        server = ServerThread(layer, {"W:big": data})
    finally:
        if old is None:
            del os.environ["EPICS_CA_MAX_ARRAY_BYTES"]
        else:
            os.environ["EPICS_CA_MAX_ARRAY_BYTES"] = old
    with server:
        result = run_client(BIG.format(n=n), env=env)
    assert result == {"count": n, "len": n, "first": 0.0, "last": n - 1.0,
                      "sum": float(n * (n - 1) // 2)}
    assert data.value[0] == n - 1 and data.value[-1] == 0


MANY = """
from epics import ca
names = ['N:%04d' % i for i in range({n})]
chids = [ca.create_channel(name, connect=False, auto_cb=False) for name in names]
connected = sum(bool(ca.connect_channel(c, timeout=20)) for c in chids)
values = [ca.get(c, timeout=10) for c in chids]
emit({{'connected': connected, 'ok': sum(v == i for i, v in enumerate(values))}})
"""


def test_many_channels_and_clients(layer):
    n = 1000
    pvdb = {f"N:{i:04d}": ca.ChannelInteger(value=i) for i in range(n)}
    with ServerThread(layer, pvdb):
        clients = [ClientProcess(MANY.format(n=n)) for _ in range(3)]
        try:
            results = [client.expect(timeout=60) for client in clients]
        finally:
            for client in clients:
                client.close()
        assert results == [{"connected": n, "ok": n}] * 3


CLOSE_HALF = """
from epics import ca
names = ['N:%04d' % i for i in range({n})]
chids = [ca.create_channel(name, connect=False, auto_cb=False) for name in names]
connected = sum(bool(ca.connect_channel(c, timeout=20)) for c in chids)
closing, kept = chids[:{n} // 2], chids[{n} // 2:]
read = [ca.get(c, timeout=10) for c in closing[::100]]    # a few used first
for c in closing:
    ca.clear_channel(c)
ca.flush_io()
emit({{'connected': connected, 'read': read}})
wait_go()
values = [ca.get(c, timeout=10) for c in kept]
emit({{'ok': sum(v == i + {n} // 2 for i, v in enumerate(values))}})
"""


def _open_channels(context):
    return sum(handler.circuit.channel_count() for handler in list(context.circuits))


def test_channels_a_client_closes_are_forgotten(layer):
    """A client closing half of 2,000 channels, most never used (a display
    closing a screen), leaves the server holding the other half, which it
    still serves; a new client finds every name."""
    n = 2000
    pvdb = {f"N:{i:04d}": ca.ChannelInteger(value=i) for i in range(n)}
    with ServerThread(layer, pvdb) as context:
        with ClientProcess(CLOSE_HALF.format(n=n)) as client:
            assert client.expect(timeout=60) == {"connected": n,
                                                 "read": list(range(0, n // 2, 100))}
            deadline = time.monotonic() + 10
            while _open_channels(context) != n // 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _open_channels(context) == n // 2
            client.go()
            assert client.expect(timeout=60) == {"ok": n - n // 2}
        assert run_client(MANY.format(n=n)) == {"connected": n, "ok": n}


RECONNECT = """
import time
from epics import ca
states = []
def on_conn(pvname=None, chid=None, conn=None):
    states.append(bool(conn))
chid = ca.create_channel('R:x', connect=False, auto_cb=False, callback=on_conn)
assert ca.connect_channel(chid, timeout=10)
emit({'first': ca.get(chid)})
wait_go()
deadline = time.time() + 30
while time.time() < deadline and states[-2:] != [False, True]:
    ca.poll(0.05)
emit({'states': states, 'second': ca.get(chid, timeout=5)})
"""


def test_reconnect_after_server_restart(layer):
    first = ServerThread(layer, {"R:x": ca.ChannelInteger(value=1)})
    first.start()
    with ClientProcess(RECONNECT) as client:
        assert client.expect() == {"first": 1}
        first.stop()
        with ServerThread(layer, {"R:x": ca.ChannelInteger(value=2)}):
            client.go()
            result = client.expect(timeout=40)
    assert result["states"][-2:] == [False, True]
    assert result["second"] == 2


def test_command_line_tools(layer):
    pvdb = typed_pvdb("C:")
    pvdb["C:wave"] = ca.ChannelDouble(value=[1.5, 2.5, 3.5])
    with ServerThread(layer, pvdb):
        got = run_tool("caget", "-w", "5", "C:double", "C:enum", "C:string", "C:wave")
        assert got.returncode == 0, got.stderr
        lines = [line.split() for line in got.stdout.splitlines()]
        assert lines == [["C:double", "3.125"], ["C:enum", "two"],
                         ["C:string", "hello", "world"],
                         ["C:wave", "3", "1.5", "2.5", "3.5"]]
        put = run_tool("caput", "-c", "-w", "5", "C:long", "9")
        assert put.returncode == 0, put.stderr
        assert pvdb["C:long"].value == 9
        put = run_tool("caput", "-w", "5", "C:string", "via caput")
        assert put.returncode == 0, put.stderr
        assert pvdb["C:string"].value == "via caput"
        monitor = run_tool("camonitor", "-w", "5", "C:double", timeout=3.0,
                           allow_timeout=True)
        assert "C:double" in monitor.stdout and "3.125" in monitor.stdout

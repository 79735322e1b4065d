"""Channel filters: parsing, each filter's rules, and libca against our server
and the epics-base softIoc with the same names, compared result for result."""
import asyncio
import ctypes
import time

import pytest

import caproto as ca
from caproto import ChannelType
from caproto._dbr import DBR_TYPES, timestamp_to_epics
from caproto.server import names
from caproto.server.filters import (FilterError, parse_filter, states)

from . import ServerThread, client_env, on_softioc_and_ours, run_client

DBE = ca.SubscriptionType
VALUE = DBE.DBE_VALUE | DBE.DBE_LOG
ALARM = DBE.DBE_ALARM


def test_the_server_resolves_filtered_names_with_this_parser():
    assert names.get_filter_parser() is parse_filter


# -- parsing ----------------------------------------------------------------------

class _Array:
    max_length = 10


class _Scalar:
    max_length = 1


def slice_of(text, values, data=_Array):
    """A subscription's view (reads are also padded to the native count)."""
    return parse_filter(text, data).apply(None, values, {}, VALUE)[1]


@pytest.mark.parametrize("text, expected", [
    ("[2:4]", [2, 3, 4]),
    ("[2:2:8]", [2, 4]),            # only 6 elements present (NORD)
    ("[-3:-1]", [3, 4, 5]),
    ("[3]", [3]),
    ("[8:2]", []),
    ("[:3]", [0, 1, 2, 3]),
    ("[::3]", [0, 1, 2, 3]),        # [start:incr:end]: 3 is the end
    ("[0x2:4]", [2, 3, 4]),
    ("[1:2:]", [1, 3, 5]),
    ("[-100:1]", [0, 1]),
    ('{"arr":{"s":2,"e":4}}', [2, 3, 4]),
    ("{arr:{s:1,i:0}}", [1, 2, 3, 4, 5]),     # JSON5 keys; incr < 1 means 1
])
def test_array_slices_follow_epics_index_rules(text, expected):
    assert slice_of(text, list(range(6))) == expected


def test_native_count_is_the_slice_of_max_length():
    assert parse_filter("[2:2:8]", _Array).native_count(10) == 4
    assert parse_filter("[-3:-1]", _Array).native_count(10) == 3
    assert parse_filter("[8:2]", _Array).native_count(10) == 0
    assert parse_filter("[1]", _Scalar).native_count(1) == 1
    # One-element channels are never sliced, as epics-base skips arr on them.
    assert slice_of("[1]", [7.5], _Scalar) == [7.5]


@pytest.mark.parametrize("text, message", [
    ('{"bogus":{}}', "no filter named 'bogus'"),
    ('{"dbnd":{"abs":1,"zz":2}}', "no option 'zz'"),
    ('{"dbnd":{"m":"sideways"}}', "'abs' or 'rel'"),
    ('{"dbnd":{"abs":"x"}}', "must be a number"),
    ("[a]", "'a' is not an integer"),
    ("[1:2", "closing ']'"),
    ("[]", "[start:incr:end]"),
    ("[1:2:3:4]", "[start:incr:end]"),
    ('{"sync":{"m":"while","s":"no-such-state"}}', "does not exist"),
    ('{"sync":{"s":"x"}}', "needs a mode"),
    ('{"ts":{"time":"x"}}', "no option 'time'"),
    ("[2:4]junk", "unexpected 'junk'"),
    ('{"ts":', "not valid filter JSON"),
])
def test_bad_filter_text_is_refused_naming_the_problem(text, message):
    with pytest.raises(FilterError) as info:
        parse_filter(text, _Scalar)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_a_bad_filter_makes_the_name_unresolvable():
    pvdb = {"x": ca.ChannelDouble(value=1.0)}
    assert names.resolve(pvdb, 'x.{"bogus":{}}') is None
    resolved = names.resolve(pvdb, 'x.{"ts":{}}')
    assert resolved.data is pvdb["x"] and resolved.channel_filter is not None


# -- the filters' rules (in-process) ----------------------------------------------

def run_events(chain, events):
    """Feed (value, flags) events through one subscription; return what passed."""
    state, passed = {}, []
    for value, flags in events:
        result = chain.apply(None, [value], state, flags)
        if result is not None:
            passed.append(result[1][0])
    return passed


def test_dbnd_abs_passes_moves_beyond_the_deadband_and_every_alarm():
    chain = parse_filter('{"dbnd":{"abs":1}}', _Scalar)
    events = [(1.5, VALUE), (2.0, VALUE), (2.6, VALUE), (3.0, VALUE), (1.6, VALUE),
              (1.6, ALARM), (-4, VALUE), (-5, VALUE), (0, VALUE)]
    assert run_events(chain, events) == [1.5, 2.6, 1.6, -4, 0]


def test_dbnd_rel_is_a_percentage_of_the_last_value_sent():
    chain = parse_filter('{"dbnd":{"rel":10}}', _Scalar)
    events = [(10.0, VALUE), (10.5, VALUE), (11.01, VALUE), (11.5, VALUE),
              (12.2, VALUE)]
    assert run_events(chain, events) == [10.0, 11.01, 12.2]


def test_dbnd_leaves_arrays_and_text_alone():
    chain = parse_filter('{"dbnd":{"abs":100}}', _Array)
    state = {}
    for values in ([1, 2], [1, 3]):
        assert chain.apply(None, values, state, VALUE) == (None, values)
    chain = parse_filter('{"dbnd":{"abs":100}}', _Scalar)
    state = {}
    for values in ([b"abc"], [b"abd"]):
        assert chain.apply(None, values, state, VALUE) == (None, values)


def test_ts_stamps_a_copy_with_the_time_of_sending():
    metadata = DBR_TYPES[ChannelType.TIME_DOUBLE]()
    metadata.secondsSinceEpoch, metadata.nanoSeconds = 1000, 5
    before = timestamp_to_epics(time.time())[0]
    stamped, values = parse_filter('{"ts":{}}', _Scalar).apply(metadata, [1.0],
                                                                None, None)
    assert values == [1.0]
    assert stamped.secondsSinceEpoch >= before
    assert (metadata.secondsSinceEpoch, metadata.nanoSeconds) == (1000, 5)
    assert ctypes.addressof(stamped) != ctypes.addressof(metadata)


@pytest.mark.parametrize("mode, expected", [
    ("while", [2, 3, 6]),
    ("unless", [1, 4, 5]),
    ("first", [2, 6]),
    ("after", [4]),
    ("before", [1, 5]),
    ("last", [3]),
])
def test_sync_modes(mode, expected):
    states.create("unit-gate")
    states["unit-gate"] = False
    chain = parse_filter(f'{{"sync":{{"m":"{mode}","s":"unit-gate"}}}}', _Scalar)
    state, passed = {}, []
    # gate: off for 1, on for 2 and 3, off for 4 and 5, on for 6
    for value, gate in [(1, False), (2, True), (3, True), (4, False), (5, False),
                        (6, True)]:
        states["unit-gate"] = gate
        result = chain.apply(None, [value], state, VALUE)
        if result is not None:
            passed.append(result[1][0])
    assert passed == expected
    # Reads are never gated.
    states["unit-gate"] = False
    assert parse_filter('{"sync":{"while":"unit-gate"}}',
                        _Scalar).apply(None, [9], None, None) == (None, [9])


# -- against epics-base, through libca ------------------------------------------

SOFTIOC_DB = """
record(waveform, "F:wf") { field(NELM, "10") field(FTVL, "DOUBLE") }
record(ao, "F:x") { field(VAL, "1.5") field(PINI, "YES") field(PREC, "3") }
"""


def our_pvdb():
    return {"F:wf": ca.ChannelDouble(value=[0.0] * 10, max_length=10),
            "F:x": ca.ChannelDouble(value=1.5, precision=3)}


READ_NAMES = ["F:wf", "F:wf.[2:4]", "F:wf.[2:2:8]", "F:wf.[-3:-1]", "F:wf.[3]",
              "F:wf.[7:9]", "F:wf.[:3]", "F:wf.[::3]", 'F:wf.{"arr":{"s":2,"e":4}}',
              "F:wf.{arr:{s:1}}", 'F:wf.{"arr":{"s":2},"ts":{}}', "F:x.[1]",
              'F:wf.{"ts":{}}', 'F:wf.[1:2:9]{"ts":{}}',
              'F:x.{"arr":{"s":2}}', 'F:wf.{"bogus":{}}', 'F:x.{"dbnd":{"abs":1,"zz":2}}']

READS = """
import time, epics
epics.caput('F:wf', [0, 1, 2, 3, 4, 5], wait=True, timeout=5)
out = {}
pvs = {name: epics.PV(name, auto_monitor=False) for name in %r}
deadline = time.time() + 3      # one wait for all: names not served never connect
for name, pv in pvs.items():
    if not pv.wait_for_connection(max(0.01, deadline - time.time())):
        out[name] = 'not found'
        continue
    value = pv.get(use_monitor=False, timeout=5)
    out[name] = [pv.nelm, [float(v) for v in value] if pv.nelm != 1 else float(value)]
before = time.time()
plain = epics.PV('F:x', auto_monitor=False, form='time')
stamped = epics.PV('F:x.{"ts":{}}', auto_monitor=False, form='time')
plain.get(use_monitor=False); stamped.get(use_monitor=False)
out['ts'] = [plain.timestamp < before - 0.5, stamped.timestamp >= before - 0.5,
             stamped.timestamp - time.time() < 5]
emit(out)
"""

MONITORS = """
import time, epics
names = ['F:x.{"dbnd":{"abs":1}}', 'F:x.{"dbnd":{"rel":10}}',
         'F:x.{dbnd:{d:0.5,m:"rel"}}', 'F:x']
seen = {name: [] for name in names}
pvs = [epics.PV(n, callback=lambda pvname=None, value=None, **kw: seen[pvname].append(value))
       for n in names]
for pv in pvs:
    assert pv.wait_for_connection(5), pv.pvname
deadline = time.time() + 10
while any(not seen[n] for n in names) and time.time() < deadline:
    epics.ca.poll(0.01)   # flushes: libca may hold the subscription unsent
for value in [2.0, 2.6, 3.0, 1.6, -4, -4.3, -4.5, -4.45, -5.0, 0, 100]:
    epics.caput('F:x', value, wait=True, timeout=5)
deadline = time.time() + 10
while any(not seen[n] or seen[n][-1] != 100 for n in names) and time.time() < deadline:
    time.sleep(0.01)
emit(seen)
"""


def on_both(softioc, free_port, script):
    """Run `script` against the softIoc and our asyncio server; both results."""
    return on_softioc_and_ours(softioc, free_port, SOFTIOC_DB, our_pvdb(), script)


@pytest.mark.timeout(90)
def test_slices_counts_and_ts_match_the_softioc(softioc, free_port):
    theirs, ours = on_both(softioc, free_port, READS % (READ_NAMES,))
    assert theirs["F:wf.[2:4]"] == [3, [2, 3, 4]]
    assert theirs["F:wf.[-3:-1]"] == [3, [3, 4, 5]]
    assert theirs['F:wf.{"bogus":{}}'] == "not found"
    assert theirs["ts"] == [True, True, True]
    for name in READ_NAMES + ["ts"]:
        assert ours[name] == theirs[name], name


@pytest.mark.timeout(90)
def test_deadband_monitors_match_the_softioc(softioc, free_port):
    theirs, ours = on_both(softioc, free_port, MONITORS)
    assert theirs['F:x.{"dbnd":{"abs":1}}'] == [1.5, 2.6, -4, 0, 100]
    for name, values in theirs.items():
        assert ours[name] == values, name


SYNC_NAMES = ['F:x.{"sync":{"m":"while","s":"on"}}', 'F:x.{"sync":{"m":"while","s":"off"}}',
              'F:x.{"sync":{"unless":"on"}}', 'F:x.{"sync":{"unless":"off"}}',
              'F:x.{"sync":{"m":"first","s":"on"}}', 'F:x.{"sync":{"m":"after","s":"on"}}',
              'F:x']

SYNC_MONITORS = """
import time, epics
names = %r
seen = {name: [] for name in names}
pvs = [epics.PV(n, callback=lambda pvname=None, value=None, **kw: seen[pvname].append(value))
       for n in names]
for pv in pvs:
    assert pv.wait_for_connection(10), pv.pvname
deadline = time.time() + 10
while not seen['F:x'] and time.time() < deadline:
    epics.ca.poll(0.01)   # flushes: libca may hold the subscription unsent
for value in [2.0, 3.0, 100]:
    epics.caput('F:x', value, wait=True, timeout=5)
deadline = time.time() + 10
while seen['F:x'][-1] != 100 and time.time() < deadline:
    time.sleep(0.01)
time.sleep(0.2)     # the last events of the other channels come before F:x's
emit(seen)
""" % (SYNC_NAMES,)


@pytest.mark.timeout(90)
def test_sync_monitors_match_the_softioc(softioc, free_port):
    ioc = softioc(SOFTIOC_DB, port=free_port)
    # epicscorelibs.ioc reads Python; ioc() runs an iocsh command.
    ioc.proc.stdin.write(b'ioc("dbStateCreate on")\nioc("dbStateSet on")\n'
                         b'ioc("dbStateCreate off")\n')
    ioc.proc.stdin.flush()
    theirs = run_client(SYNC_MONITORS, env=client_env(ioc.port))
    ioc.stop()
    states.create("on")
    states["on"] = True
    states.create("off")
    states["off"] = False
    with ServerThread("asyncio", our_pvdb()) as context:
        ours = run_client(SYNC_MONITORS, env=client_env(context.port))
    assert theirs[SYNC_NAMES[0]] == [1.5, 2.0, 3.0, 100]
    assert theirs[SYNC_NAMES[1]] == []
    assert theirs[SYNC_NAMES[4]] == [1.5]
    assert ours == theirs


ARRAY_MONITORS = """
import time, epics
names = ['F:wf.[1:2:9]', 'F:wf.[2:4]', 'F:wf.[-2:]', 'F:wf.{"ts":{}}', 'F:wf']
seen = {name: [] for name in names}
def keep(pvname=None, value=None, **kw):
    values = value.tolist() if hasattr(value, 'tolist') else value
    seen[pvname].append([float(v) for v in values] if isinstance(values, list)
                        else [float(values)])
pvs = [epics.PV(n, callback=keep) for n in names]
for pv in pvs:
    assert pv.wait_for_connection(5), pv.pvname
for values in ([1, 2, 3, 4, 5, 6, 7], [9, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]):
    epics.caput('F:wf', values, wait=True, timeout=5)
deadline = time.time() + 10
while len(seen['F:wf']) < 4 and time.time() < deadline:
    time.sleep(0.01)
time.sleep(0.2)
emit({name: got[1:] for name, got in seen.items()})    # after the initial update
"""


@pytest.mark.timeout(90)
def test_sliced_array_monitors_match_the_softioc(softioc, free_port):
    theirs, ours = on_both(softioc, free_port, ARRAY_MONITORS)
    assert theirs["F:wf.[1:2:9]"] == [[2, 4, 6], [8], [1, 3, 5, 7, 9]]
    assert theirs["F:wf.[-2:]"] == [[6, 7], [9, 8], [8, 9]]
    assert ours == theirs


def test_dbnd_compares_the_channels_own_value_not_the_subscribers_type():
    """An enum subscribed as DBR_STRING is deadbanded on its state index."""
    data = ca.ChannelEnum(value="a", enum_strings=["a", "b", "c"])
    chain = parse_filter('{"dbnd":{"abs":1}}', data)
    state, passed = {}, []
    for value in ("a", "b", "c"):
        asyncio.run(data.write(value))
        if chain.apply(None, [value.encode()], state, VALUE) is not None:
            passed.append(value)
    assert passed == ["a", "c"]

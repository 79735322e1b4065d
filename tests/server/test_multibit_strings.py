"""mbbi/mbbo VAL written and read as strings, step by step against a softIoc.

A client's DBR_STRING put picks a state the way epics-base does: with states
defined, the first of the 16 slots whose string is the text (so "" picks an
empty slot), else the text as a state number below the number of strings
(strtoul base 0: "0x1", "-65535" wrap to 1; an mbbo ignores text after the
number, an mbbi refuses it).  Anything else fails with ECA_PUTFAIL and
changes nothing.  Writing ZRST..FFST posts DBE_PROPERTY when the strings
change, and DBE_VALUE when VAL is that state (even when the text is the
same).  Every put goes out as a real DBR_STRING: libca's
ca_array_put_callback from a pyepics client, and the real ``caput -s``.
"""
import asyncio

import pytest

from caproto import CaprotoValueError, ChannelType
from caproto.server import PVGroup, pvproperty

from . import CHANNELS, on_softioc_and_ours

pytestmark = pytest.mark.timeout(120)

STATES = ["zero", "", "two", "three"]          # state 1 has no string
REPEATED = ["a", "a", "", "z"]
DB = """
record(mbbo, "{p}mbbo") {{ field(ZRST, "zero") field(TWST, "two") field(THST, "three")
                           field(ONSV, "MINOR") }}
record(mbbi, "{p}mbbi") {{ field(ZRST, "zero") field(TWST, "two") field(THST, "three")
                           field(ONSV, "MINOR") }}
record(mbbo, "{p}rep") {{ field(ZRST, "a") field(ONST, "a") field(THST, "z") }}
"""


def _multibit(record, strings):
    return pvproperty(value=strings[0], enum_strings=strings, dtype=ChannelType.ENUM,
                      record=record)


class Multibit(PVGroup):
    mbbo = _multibit("mbbo", STATES)
    mbbi = _multibit("mbbi", STATES)
    rep = _multibit("mbbo", REPEATED)


def ours(prefix):
    group = Multibit(prefix)
    for record in (group.mbbo, group.mbbi):    # the db's ONSV
        asyncio.run(record.fields["ONSV"].write("MINOR"))
    return group.pvdb


# Client prologue: put_string(name, text) sends one DBR_STRING with
# ca_array_put_callback and returns the status the server answered.
PROLOGUE = r"""
import time
from epics import ca, dbr
p = {prefix!r}
{channels}
answers = []
ON_PUT = dbr.make_callback(lambda args: answers.append(args.status), dbr.event_handler_args)
def put_string(name, text):
    c = chid(name)
    data = (dbr.Map[dbr.STRING] * 1)()
    data[0].value = text.encode('latin-1')
    del answers[:]
    assert ca.libca.ca_array_put_callback(dbr.STRING, 1, c, data, ON_PUT, None) == 1
    deadline = time.monotonic() + 10
    while not answers and time.monotonic() < deadline:
        ca.pend_event(0.01)
    return answers[0] if answers else 'no answer'
def text(name):
    value = ca.get(chid(name), ftype=dbr.STRING, timeout=10)
    return value.decode() if isinstance(value, bytes) else value
def state(record):
    c = chid(record)
    ctrl = ca.get_with_metadata(c, ftype=ca.promote_type(c, use_ctrl=True), timeout=10)
    return [text(record), int(ca.get(c, ftype=dbr.ENUM, timeout=10)),
            list(ctrl.get('enum_strs', ())), text(record + '.STAT'), text(record + '.SEVR')]
"""

TEXTS = ["two", "2", "1", "5", "three", "4", "16", "bogus", "", "three", "0x1",
         "010", " 2", "2 ", "1abc", "+2", "-1", "-65535", "1.9", "0x", "two"]

WRITES = PROLOGUE + r"""
out = {{}}
for record in ('mbbo', 'mbbi', 'rep'):
    ca.put(chid(record), 3, wait=True, timeout=10)             # out of UDF
    out[record] = [[t, put_string(record, t)] + state(record) for t in {texts!r}]
emit(out)
"""


def _compare(theirs, ours_):
    for record, steps in theirs.items():
        assert len(ours_[record]) == len(steps), record
        for step_ours, step_theirs in zip(ours_[record], steps):
            assert step_ours == step_theirs, record


def test_string_writes_pick_the_state_the_softioc_picks(softioc, free_port):
    script = WRITES.format(prefix="W:", channels=CHANNELS, texts=TEXTS)
    theirs, ours_ = on_softioc_and_ours(softioc, free_port, DB.format(p="W:"),
                                        ours("W:"), script)
    mbbo = {step[0]: step[1:] for step in theirs["mbbo"]}
    mbbi = {step[0]: step[1:] for step in theirs["mbbi"]}
    ok, putfail = 1, 160
    # what the softIoc does, so the comparison means something
    assert mbbo["1"] == [ok, "", 1, STATES, "STATE", "MINOR"]    # number, no string
    assert mbbo["5"][:3] == [putfail, "", 1]                        # past the strings
    assert mbbo["bogus"][:3] == [putfail, "three", 3]
    assert mbbo[""][:3] == [ok, "", 1]                              # the empty slot
    assert mbbo["1abc"][:3] == [ok, "", 1] and mbbi["1abc"][0] == putfail
    assert mbbo["-65535"][:3] == [ok, "", 1]
    _compare(theirs, ours_)
    rep = theirs["rep"]
    assert [step[1:4] for step in rep[:3]] == [
        [putfail, "z", 3], [ok, "", 2], [ok, "a", 1]]           # "a" twice: index kept


EVENTS = PROLOGUE + r"""
events = []
def on_event(pvname=None, value=None, enum_strs=None, **kw):
    events.append([pvname[len(p):], int(value), list(enum_strs or ())])
subs = []
out = {{}}
for record in ('mbbo', 'mbbi'):
    ca.put(chid(record), 2, wait=True, timeout=10)
    del events[:]
    for mask in (dbr.DBE_PROPERTY, dbr.DBE_VALUE):
        subs.append(ca.create_subscription(chid(record), use_ctrl=True, mask=mask,
                                           callback=on_event))
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        ca.pend_event(0.05)
    steps = []
    for field, new in {writes!r}:
        del events[:]
        status = put_string(record + '.' + field, new)
        put_string(record + '.DESC', field)       # a round trip: earlier events are in
        ca.pend_event(0.2)
        steps.append([field, new, status, sorted(events)] + state(record))
    out[record] = steps
    for sub in subs:
        ca.clear_subscription(sub[2])
    del subs[:]
emit(out)
"""

STRING_WRITES = [("TWST", "deux"), ("TWST", "deux"), ("FVST", "five"), ("ONST", ""),
                 ("TWST", ""), ("TWST", "two"), ("FVST", "")]


def test_state_string_writes_post_what_the_softioc_posts(softioc, free_port):
    script = EVENTS.format(prefix="E:", channels=CHANNELS, writes=STRING_WRITES)
    theirs, ours_ = on_softioc_and_ours(softioc, free_port, DB.format(p="E:"),
                                        ours("E:"), script)
    steps = theirs["mbbo"]
    renamed = ["zero", "", "deux", "three"]
    # VAL is 2: renaming it posts both (the property and the value monitor) ...
    assert steps[0][3] == [["mbbo", 2, renamed], ["mbbo", 2, renamed]]
    # ... writing the same text again only the value monitor; naming state 5
    # only the property monitor; writing the empty ONST again, nothing.
    assert steps[1][3] == [["mbbo", 2, renamed]]
    assert steps[2][3] == [["mbbo", 2, renamed + ["", "five"]]]
    assert steps[3][3] == []
    assert steps[4][4:6] == ["", 2]                 # VAL stays 2 with no string
    _compare(theirs, ours_)


TOOLS = r"""
import subprocess
def tool(*args):
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    return [done.returncode] + [line.strip() for line in done.stdout.splitlines()]
p = {prefix!r}
out = {{}}
for record in ('mbbo', 'mbbi'):
    pv = p + record
    tool('caput', '-c', '-w', '5', pv, '3')
    for text in ('two', '', 'bogus', 'zero'):
        out[record + ' ' + text] = [tool('caput', '-s', '-c', '-w', '5', pv, text),
                                    tool('caget', '-w', '5', '-d', 'DBR_CTRL_ENUM', pv),
                                    tool('caget', '-w', '5', '-n', '-t', pv)]
emit(out)
"""


def test_caput_s_and_caget_print_the_same_on_both(softioc, free_port):
    script = TOOLS.format(prefix="T:")
    theirs, ours_ = on_softioc_and_ours(softioc, free_port, DB.format(p="T:"),
                                        ours("T:"), script)
    caput, ctrl, number = theirs["mbbo "]
    assert caput[-1].split() == ["New", ":", "T:mbbo"]       # "" picked empty state 1
    assert number == [0, "1"]
    assert ["Value:", "Status:           STATE", "Severity:         MINOR"] == ctrl[5:8]
    # caput -s checks the text against the states itself: "bogus" never leaves it
    assert "'bogus' invalid" in theirs["mbbi bogus"][0][1]
    assert theirs["mbbi bogus"][2] == [0, "1"]
    assert ours_ == theirs


NO_STATES_DB = 'record(mbbi, "{p}bare") {{ }}\n'


class Bare(PVGroup):
    bare = pvproperty(value=0, enum_strings=[], dtype=ChannelType.ENUM, record="mbbi")


def test_an_mbbi_without_states_refuses_every_string(softioc, free_port):
    script = PROLOGUE + r"""
ca.put(chid('bare'), 0, wait=True, timeout=10)
emit([[t, put_string('bare', t)] + state('bare') for t in ('', '0', 'x')])
"""
    theirs, ours_ = on_softioc_and_ours(
        softioc, free_port, NO_STATES_DB.format(p="N:"), Bare("N:").pvdb,
        script.format(prefix="N:", channels=CHANNELS))
    assert [step[1] for step in theirs] == [160, 160, 160]
    assert ours_ == theirs


def test_a_refused_string_names_it_and_changes_nothing():
    group = Multibit("R:")

    async def scenario():
        await group.mbbo.write(2)
        with pytest.raises(CaprotoValueError, match="'bogus' is neither"):
            await group.mbbo.write_from_dbr([b"bogus"], ChannelType.STRING, None)
        with pytest.raises(CaprotoValueError, match="'1abc'"):
            await group.mbbi.write_from_dbr([b"1abc"], ChannelType.STRING, None)
        await group.rep.write(1)                  # "a" again: held as its index
        await group.rep.fields["THST"].write("")  # strings change, index stays
        return group.mbbo.value, group.rep.value, group.rep.state_index()

    assert asyncio.run(scenario()) == ("two", 1, 1)

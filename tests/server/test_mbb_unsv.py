"""mbbi/mbbo VAL past the last named state, compared with a softIoc.

epics-base stores any index 0..65535 in an mbbi/mbbo VAL.  DBR_STRING
reads "" for an index 0..15 without a string and "Illegal Value" above 15.
An mbbi raises STATE with UNSV above 15 (with the slot's severity, e.g.
FVSV, for 5); an mbbo whose states are defined raises SOFT/INVALID above
15 (its convert step finds no raw value), which UNSV can never beat.
A plain ChannelEnum (no record=) keeps refusing such an index.
"""
import asyncio

import pytest

from caproto import AlarmSeverity, AlarmStatus, ChannelType, CaprotoValueError
from caproto.server import PVGroup, pvproperty

from . import CHANNELS, on_softioc_and_ours

pytestmark = pytest.mark.timeout(90)

STATES = ["zero", "one", "two"]
DB = """
record(mbbi, "{p}mbbi") {{ field(ZRST, "zero") field(ONST, "one") field(TWST, "two") }}
record(mbbo, "{p}mbbo") {{ field(ZRST, "zero") field(ONST, "one") field(TWST, "two") }}
"""


class Multibit(PVGroup):
    mbbi = pvproperty(value="zero", enum_strings=STATES, dtype=ChannelType.ENUM,
                      record="mbbi")
    mbbo = pvproperty(value="zero", enum_strings=STATES, dtype=ChannelType.ENUM,
                      record="mbbo")
    plain = pvproperty(value="zero", enum_strings=STATES, dtype=ChannelType.ENUM)


INDICES = [2, 5, 15, 16, 65535, 16, 1, 0]

SCRIPT = r"""
from epics import ca
p = {prefix!r}
{channels}
def text(name):
    value = ca.get(chid(name), ftype=0, timeout=10)
    return value.decode() if isinstance(value, bytes) else value
def state(record):
    c = chid(record)
    md = ca.get_with_metadata(c, ftype=ca.promote_type(c, use_time=True), timeout=10)
    ctrl = ca.get_with_metadata(c, ftype=ca.promote_type(c, use_ctrl=True), timeout=10)
    return [int(md['value']), int(md['status']), int(md['severity']), text(record),
            int(ca.get(c, ftype=5, timeout=10)), list(ctrl['enum_strs']),
            text(record + '.STAT'), text(record + '.SEVR')]
out = {{}}
for record in ('mbbi', 'mbbo'):
    ca.put(chid(record), 0, wait=True, timeout=10)             # out of UDF
    ca.put(chid(record + '.UNSV'), 'MAJOR', wait=True, timeout=10, ftype=0)
    ca.put(chid(record + '.FVSV'), 'MINOR', wait=True, timeout=10, ftype=0)
    steps = []
    for index in {indices!r}:
        ca.put(chid(record), index, wait=True, timeout=10)
        steps.append([index] + state(record))
    ca.put(chid(record), 5, wait=True, timeout=10)
    ca.put(chid(record + '.FVST'), 'five', wait=True, timeout=10)   # names state 5
    steps.append(['FVST=five'] + state(record))
    ca.put(chid(record + '.FVST'), '', wait=True, timeout=10)       # and unnames it
    steps.append(['FVST='] + state(record))
    out[record] = steps
emit(out)
"""


def test_unnamed_states_match_the_softioc(softioc, free_port):
    script = SCRIPT.format(prefix="U:", indices=INDICES, channels=CHANNELS)
    theirs, ours = on_softioc_and_ours(softioc, free_port, DB.format(p="U:"),
                                       Multibit("U:").pvdb, script)
    state, soft = int(AlarmStatus.STATE), int(AlarmStatus.SOFT)
    minor, major = int(AlarmSeverity.MINOR_ALARM), int(AlarmSeverity.MAJOR_ALARM)
    invalid = int(AlarmSeverity.INVALID_ALARM)
    mbbi = {str(step[0]): step[1:] for step in theirs["mbbi"]}
    mbbo = {str(step[0]): step[1:] for step in theirs["mbbo"]}
    # what the softIoc does, so the comparison means something
    assert mbbi["5"][:5] == [5, state, minor, "", 5]               # FVSV, empty slot
    assert mbbi["15"][:5] == [15, 0, 0, "", 15]
    assert mbbi["16"][:5] == [16, state, major, "Illegal Value", 16]   # UNSV
    assert mbbi["65535"][:4] == [65535, state, major, "Illegal Value"]
    assert mbbi["16"][5:] == [STATES, "STATE", "MAJOR"]
    assert mbbo["16"][:4] == [16, soft, invalid, "Illegal Value"]
    assert mbbo["FVST=five"][:4] == [5, state, minor, "five"]
    assert mbbo["FVST="][:4] == [5, state, minor, ""]
    for record in ("mbbi", "mbbo"):
        for step_ours, step_theirs in zip(ours[record], theirs[record]):
            assert step_ours == step_theirs, record
        assert len(ours[record]) == len(theirs[record])


def test_out_of_range_indices_are_refused_with_the_value_named():
    group = Multibit("R:")

    async def scenario():
        await group.mbbo.write(300)
        held = group.mbbo.value
        with pytest.raises(CaprotoValueError, match="65536"):
            await group.mbbo.write(65536)
        with pytest.raises(CaprotoValueError, match="-1"):
            await group.mbbi.write(-1)
        # a plain enum pvproperty keeps refusing an index it has no state for
        with pytest.raises(CaprotoValueError, match="enum index 3 is out of range"):
            await group.plain.write(3)
        return held, group.mbbo.value, group.plain.value

    held, after, plain = asyncio.run(scenario())
    assert held == 300 and after == 300          # a refused write changes nothing
    assert plain == "zero"

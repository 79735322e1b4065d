"""A record's fields report the record's alarm and timestamp, compared with a softIoc.

epics-base serves ``rec.DESC``, ``rec.EGU``, ``rec.HIHI``, ``rec.DESC$``
with rec's STAT/SEVR and rec's TIME (dbGet fills the alarm and time part
from the record, whatever the field).  The same client steps run against a
softIoc and our server; the test compares what the client saw, and checks
the softIoc really behaves as described so the comparison means something.
"""
import pytest

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty

from . import CHANNELS, on_softioc_and_ours

pytestmark = pytest.mark.timeout(90)

DB = """
record(ai, "{p}ai") {{ field(DESC, "hello") field(EGU, "mm") field(HIHI, "10")
                      field(HHSV, "MAJOR") field(LOLO, "-10") field(LLSV, "MAJOR") }}
record(stringin, "{p}si") {{ field(DESC, "text") }}
"""


class Records(PVGroup):
    ai = pvproperty(value=0.0, record="ai", doc="hello", units="mm",
                    upper_alarm_limit=10.0, lower_alarm_limit=-10.0)
    si = pvproperty(value="", record="stringin", doc="text")


FIELDS = ["DESC", "EGU", "HIHI", "SEVR", "DESC$"]

SCRIPT = r"""
import time
from epics import ca
p = {prefix!r}
{channels}
def time_read(name):
    md = ca.get_with_metadata(chid(name), ftype=ca.promote_type(chid(name), use_time=True),
                              timeout=10)
    return [int(md['status']), int(md['severity']), md['timestamp']]
def ctrl_read(name):
    md = ca.get_with_metadata(chid(name), ftype=ca.promote_type(chid(name), use_ctrl=True),
                              timeout=10)
    return [int(md['status']), int(md['severity'])]
def snapshot(record, fields):
    rec_status, rec_severity, rec_time = time_read(record)
    out = {{'record': [rec_status, rec_severity]}}
    for field in fields:
        status, severity, stamp = time_read(record + '.' + field)
        out[field] = {{'time': [status, severity], 'same_time': stamp == rec_time,
                       'ctrl': ctrl_read(record + '.' + field)}}
    return out, rec_time
steps = {{}}
ca.put(chid('ai'), 0.0, wait=True, timeout=10)           # out of UDF
ca.put(chid('si'), 'x', wait=True, timeout=10)
ca.put(chid('ai'), 12.0, wait=True, timeout=10)          # HIHI MAJOR
steps['hihi'], t_hihi = snapshot('ai', {fields!r})
# DESC's monitor: a write of DESC posts it with the record's alarm and time
events = []
def on_desc(status=None, severity=None, timestamp=None, **kw):
    events.append([int(status), int(severity), timestamp])
handler, _, _ = ca.create_subscription(chid('ai.DESC'), use_time=True, callback=on_desc)
deadline = time.time() + 10
while not events and time.time() < deadline:
    ca.poll(0.01)
time.sleep(0.05)
ca.put(chid('ai.DESC'), 'changed', wait=True, timeout=10)  # no processing
deadline = time.time() + 10
while len(events) < 2 and time.time() < deadline:
    ca.poll(0.01)
steps['desc_events'] = [[s, v, stamp == t_hihi] for s, v, stamp in events]
steps['after_desc'], t_same = snapshot('ai', ['DESC', 'EGU'])
steps['desc_kept_record_time'] = t_same == t_hihi
time.sleep(0.05)
ca.put(chid('ai.HIHI'), 20.0, wait=True, timeout=10)     # pp(TRUE): processes, clears
steps['cleared'], t_cleared = snapshot('ai', {fields!r})
steps['processing_moved_time'] = t_cleared > t_hihi
ca.put(chid('ai'), -11.0, wait=True, timeout=10)         # LOLO MAJOR
steps['lolo'], _ = snapshot('ai', ['DESC', 'EGU', 'LOLO'])
steps['string'], _ = snapshot('si', ['DESC', 'DESC$', 'VAL$'])
emit(steps)
"""


def test_fields_report_the_records_alarm_and_timestamp(softioc, free_port):
    script = SCRIPT.format(prefix="F:", fields=FIELDS, channels=CHANNELS)
    theirs, ours = on_softioc_and_ours(softioc, free_port, DB.format(p="F:"),
                                       Records("F:").pvdb, script)
    hihi = [int(AlarmStatus.HIHI), int(AlarmSeverity.MAJOR_ALARM)]
    lolo = [int(AlarmStatus.LOLO), int(AlarmSeverity.MAJOR_ALARM)]
    # what an IOC does, so the comparison below means something
    for field in FIELDS:
        assert theirs["hihi"][field] == {"time": hihi, "same_time": True, "ctrl": hihi}
        assert theirs["cleared"][field] == {"time": [0, 0], "same_time": True,
                                            "ctrl": [0, 0]}
    assert theirs["lolo"]["LOLO"]["ctrl"] == lolo
    assert theirs["desc_events"][-1] == [*hihi, True]
    assert theirs["desc_kept_record_time"] and theirs["processing_moved_time"]
    # and ours does the same, step by step
    for step in theirs:
        assert ours[step] == theirs[step], step


def test_ack_of_a_field_acknowledges_the_record():
    """PUT_ACKS through ``rec.EGU`` acknowledges rec's alarm (dbPut of
    DBR_PUT_ACKS acts on the record whatever the field)."""
    import asyncio

    group = Records("K:")
    ai, egu = group.ai, group.ai.fields["EGU"]

    async def scenario():
        await ai.write(12.0)                   # HIHI MAJOR, to be acknowledged
        before = ai.alarm.severity_to_acknowledge
        await egu.write_from_dbr([int(AlarmSeverity.MAJOR_ALARM)],
                                 ChannelType.PUT_ACKS, None)
        metadata, _ = await egu.read(ChannelType.STSACK_STRING)
        return before, ai.alarm.severity_to_acknowledge, metadata

    before, after, metadata = asyncio.run(scenario())
    assert before == AlarmSeverity.MAJOR_ALARM
    assert after == AlarmSeverity.NO_ALARM
    assert (metadata.status, metadata.severity) == (AlarmStatus.HIHI,
                                                    AlarmSeverity.MAJOR_ALARM)

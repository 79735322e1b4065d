"""State and change-of-state alarms of bi/bo/mbbi/mbbo, compared with a softIoc.

The same steps (writes of VAL and of the severity fields over CA) run
against the epics-base softIoc and against our server; after each step the
client reads VAL's DBR_TIME status/severity, the SEVR/STAT fields and LALM,
and an alarm-only (DBE_ALARM) subscription and ``camonitor -m a`` record
every alarm event.  Both servers must agree on all of it.
"""
import asyncio
import os
import signal
import subprocess
import tempfile
import time

import pytest

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty

from . import CHANNELS, ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(120)

SOFTIOC_DB = """
record(bi, "{p}bi") {{ field(ZNAM, "Off") field(ONAM, "On") }}
record(bo, "{p}bo") {{ field(ZNAM, "Off") field(ONAM, "On") }}
record(mbbi, "{p}mbbi") {{ field(ZRST, "zero") field(ONST, "one") field(TWST, "two")
                         field(THST, "three") }}
record(mbbo, "{p}mbbo") {{ field(ZRST, "zero") field(ONST, "one") field(TWST, "two")
                         field(THST, "three") }}
"""
STATES = ["zero", "one", "two", "three"]


class States(PVGroup):
    """The records of the database above."""

    bi = pvproperty(value=False, record="bi", enum_strings=["Off", "On"])
    bo = pvproperty(value=False, record="bo", enum_strings=["Off", "On"])
    mbbi = pvproperty(value="zero", enum_strings=STATES, dtype=ChannelType.ENUM,
                      record="mbbi")
    mbbo = pvproperty(value="zero", enum_strings=STATES, dtype=ChannelType.ENUM,
                      record="mbbo")


# (field, value): '' is VAL.  The first step processes the softIoc's records
# once (they start UDF); everything after it is compared.
BINARY_STEPS = [
    ("", 0), ("ZSV", "MAJOR"), ("COSV", "MINOR"), ("", 1), ("", 1), ("", 0),
    ("", 1), ("OSV", "MAJOR"), ("COSV", "INVALID"), ("", 0), ("", 0),
    ("OSV", "MINOR"), ("", 1), ("ZSV", "NO_ALARM"), ("OSV", "NO_ALARM"),
    ("COSV", "NO_ALARM"), ("", 0),
]
MULTIBIT_STEPS = [
    ("", 0), ("ONSV", "MINOR"), ("TWSV", "MAJOR"), ("COSV", "MINOR"), ("", 1),
    ("", 1), ("", 2), ("", 0), ("", 0), ("", 3), ("", 2), ("ZRSV", "MAJOR"),
    ("", 0), ("COSV", "INVALID"), ("", 1), ("", 1), ("", 0), ("UNSV", "MINOR"),
    ("", 3), ("ZRSV", "NO_ALARM"), ("ONSV", "NO_ALARM"), ("TWSV", "NO_ALARM"),
    ("COSV", "NO_ALARM"), ("UNSV", "NO_ALARM"), ("", 1),
]
STEPS = {"bi": BINARY_STEPS, "bo": BINARY_STEPS, "mbbi": MULTIBIT_STEPS,
         "mbbo": MULTIBIT_STEPS}

SCENARIO = r"""
import time
from epics import ca
p = {prefix!r}
steps = {steps!r}
{channels}
def as_text(name):
    value = ca.get(chid(name), ftype=0, timeout=10)
    return value.decode() if isinstance(value, bytes) else value
out = {{}}
for record, record_steps in steps.items():
    events = []
    def on_event(value=None, status=None, severity=None, **kw):
        events.append([int(value), int(status), int(severity)])
    seen = []
    for index, (field, value) in enumerate(record_steps):
        name = record + ('.' + field if field else '')
        ca.put(chid(name), value, wait=True, timeout=10,
               **({{'ftype': 0}} if isinstance(value, str) else {{}}))
        if index == 0:
            handler, _, _ = ca.create_subscription(chid(record), mask=4, use_time=True,
                                                   callback=on_event)
            deadline = time.time() + 10
            while not events and time.time() < deadline:
                ca.poll(0.01)
            del events[:]          # the current state, sent on subscribing
            continue
        md = ca.get_with_metadata(chid(record), ftype=ca.promote_type(chid(record),
                                                                      use_time=True))
        seen.append([field, value, int(md['value']), int(md['status']),
                     int(md['severity']), as_text(record + '.STAT'),
                     as_text(record + '.SEVR'), int(ca.get(chid(record + '.LALM')))])
    deadline = time.time() + 0.5      # events still on their way (rsrv: its own thread)
    while time.time() < deadline:
        ca.poll(0.05)
    out[record] = {{'steps': seen, 'events': events}}
emit(out)
"""


def run_scenario(prefix, env=None):
    return run_client(SCENARIO.format(prefix=prefix, steps=STEPS, channels=CHANNELS), env=env, timeout=90)


def test_state_alarms_match_the_softioc(softioc, free_port):
    ioc = softioc(SOFTIOC_DB.format(p="S:"), port=free_port)
    theirs = run_scenario("S:", env={"EPICS_CA_SERVER_PORT": str(ioc.port)})
    ioc.stop()
    group = States("A:")
    with ServerThread("asyncio", group.pvdb):
        ours = run_scenario("A:")
    for record in STEPS:
        for step_ours, step_theirs in zip(ours[record]["steps"], theirs[record]["steps"]):
            assert step_ours == step_theirs, record
        assert ours[record] == theirs[record], record
    # and the softIoc's behaviour is the one the test means to check
    state, cos = int(AlarmStatus.STATE), int(AlarmStatus.COS)
    major, minor = int(AlarmSeverity.MAJOR_ALARM), int(AlarmSeverity.MINOR_ALARM)
    bi = {tuple(step[:2]): step[2:] for step in theirs["bi"]["steps"]}
    assert bi[("ZSV", "MAJOR")][:3] == [0, state, major]        # ZSV processes at once
    assert bi[("COSV", "MINOR")][:3] == [0, state, major]
    first_one = theirs["bi"]["steps"][2]
    assert first_one[:5] == ["", 1, 1, cos, minor] and first_one[5:7] == ["COS", "MINOR"]
    mbbi = theirs["mbbi"]["steps"]
    # COS of an mbbi holds while the value differs from LALM (here 2)
    assert [step[2:5] for step in mbbi[6:8]] == [[0, cos, minor]] * 2
    assert mbbi[6][7] == 2
    assert len(theirs["mbbi"]["events"]) > 5


def test_state_alarm_reaches_camonitor_once_per_change(softioc, free_port):
    """``camonitor -m a`` (DBE_ALARM only) prints the same lines for both."""
    steps = [("", 1), ("OSV", "MAJOR"), ("", 0), ("", 1), ("", 1), ("OSV", "NO_ALARM")]

    def monitor(prefix, env):
        env = dict(os.environ, **env)
        with tempfile.TemporaryFile() as out:
            # its own session: the camonitor on PATH is a launcher whose child
            # is the real tool, and both must go at the end
            proc = subprocess.Popen(["camonitor", "-t", "n", "-m", "a", prefix + "bo"],
                                    stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                deadline = time.monotonic() + 10
                while out.tell() == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)        # until camonitor printed the current state
                for field, value in steps:
                    name = prefix + "bo" + ("." + field if field else "")
                    run_tool("caput", "-c", "-w", "5", name, str(value), env=env)
                time.sleep(1)
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            out.seek(0)
            lines = out.read().decode().replace(prefix, "P:").splitlines()
        return [" ".join(line.split()) for line in lines[1:]]   # after the initial one

    ioc = softioc(SOFTIOC_DB.format(p="S:"), port=free_port)
    run_tool("caput", "-c", "-w", "5", "S:bo", "0",
             env={"EPICS_CA_SERVER_PORT": str(ioc.port)})     # leave UDF
    theirs = monitor("S:", {"EPICS_CA_SERVER_PORT": str(ioc.port)})
    ioc.stop()
    group = States("C:")
    with ServerThread("asyncio", group.pvdb):
        ours = monitor("C:", {})
    assert ours == theirs
    assert theirs == ["P:bo On STATE MAJOR", "P:bo Off", "P:bo On STATE MAJOR", "P:bo On"]


def test_ioc_code_alarm_stays_while_no_state_severity_is_set():
    """Without severities a write leaves IOC code's alarm alone; once a
    severity is set the record's own alarm takes over, as each processing
    of an epics-base record recomputes it."""
    group = States("I:")
    bo = group.bo

    async def scenario():
        await bo.alarm.write(status=AlarmStatus.COMM, severity=AlarmSeverity.MAJOR_ALARM)
        await bo.write(True)
        kept = (bo.alarm.status, bo.alarm.severity)
        await bo.fields["ZSV"].write("MINOR")
        await bo.write(False)
        return kept, (bo.alarm.status, bo.alarm.severity), bo.fields["SEVR"].value

    kept, computed, sevr = asyncio.run(scenario())
    assert kept == (AlarmStatus.COMM, AlarmSeverity.MAJOR_ALARM)
    assert computed == (AlarmStatus.STATE, AlarmSeverity.MINOR_ALARM)
    assert sevr == "MINOR"

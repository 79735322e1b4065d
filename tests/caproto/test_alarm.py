"""ChannelAlarm, limit alarms with hysteresis, and monitor deadbands."""
import asyncio
import math

import pytest

from caproto import (AlarmSeverity, AlarmStatus, CaprotoValueError, ChannelAlarm,
                     ChannelDouble, ChannelInteger, ChannelType, SubscriptionSpec,
                     SubscriptionType)
from caproto._alarm import exceeds_deadband, limit_alarm

DBE = SubscriptionType
MAJOR, MINOR, NO = (AlarmSeverity.MAJOR_ALARM, AlarmSeverity.MINOR_ALARM,
                    AlarmSeverity.NO_ALARM)


class ListQueue:
    """The smallest queue a server layer could hand in: records what is put."""

    def __init__(self):
        self.items = []

    async def put(self, item):
        self.items.append(item)


def run(coro):
    return asyncio.run(coro)


def limits(**overrides):
    fields = dict(upper_alarm_limit=10.0, lower_alarm_limit=-10.0,
                  upper_warning_limit=5.0, lower_warning_limit=-5.0,
                  upper_alarm_severity=MAJOR, lower_alarm_severity=MAJOR,
                  upper_warning_severity=MINOR, lower_warning_severity=MINOR,
                  alarm_hysteresis=0.0)
    fields.update(overrides)
    return fields


def walk(fields, values):
    """Feed values through limit_alarm as a record would, keeping LALM."""
    latched, seen = None, []
    for value in values:
        status, severity, latched = limit_alarm(fields, value, latched)
        seen.append((status, severity))
    return seen


# -- ChannelAlarm --------------------------------------------------------------

def test_alarm_defaults_and_bad_values_name_the_field():
    alarm = ChannelAlarm()
    assert (alarm.status, alarm.severity) == (AlarmStatus.NO_ALARM, NO)
    assert alarm.must_acknowledge_transient is True
    with pytest.raises(CaprotoValueError, match="severity=7"):
        ChannelAlarm(severity=7)
    with pytest.raises(CaprotoValueError, match="status=99"):
        run(alarm.write(status=99))


def test_invalid_write_changes_nothing():
    alarm = ChannelAlarm(status=AlarmStatus.HIGH, severity=MINOR)
    with pytest.raises(CaprotoValueError):
        run(alarm.write(status=AlarmStatus.HIHI, severity=42))
    assert (alarm.status, alarm.severity) == (AlarmStatus.HIGH, MINOR)


def test_write_reports_dbe_alarm_only_on_change():
    alarm = ChannelAlarm()
    assert run(alarm.write(status=AlarmStatus.HIHI, severity=MAJOR)) == DBE.DBE_ALARM
    assert run(alarm.write(status=AlarmStatus.HIHI, severity=MAJOR)) == DBE(0)
    assert run(alarm.write(alarm_string="over temperature")) == DBE.DBE_ALARM


def test_transient_alarms_stay_pending_until_acknowledged():
    alarm = ChannelAlarm(must_acknowledge_transient=True)
    run(alarm.write(status=AlarmStatus.HIHI, severity=MAJOR))
    assert alarm.severity_to_acknowledge == MAJOR
    run(alarm.write(status=AlarmStatus.NO_ALARM, severity=NO))
    assert alarm.severity_to_acknowledge == MAJOR       # the transient is remembered
    run(alarm.acknowledge(MINOR))                        # too low to cover MAJOR
    assert alarm.severity_to_acknowledge == MAJOR
    assert run(alarm.acknowledge(MAJOR)) == DBE.DBE_ALARM
    assert alarm.severity_to_acknowledge == NO


def test_without_ackt_pending_severity_follows_the_alarm():
    alarm = ChannelAlarm(must_acknowledge_transient=False)
    run(alarm.write(status=AlarmStatus.HIHI, severity=MAJOR))
    run(alarm.write(status=AlarmStatus.HIGH, severity=MINOR))
    assert alarm.severity_to_acknowledge == MINOR
    latched = ChannelAlarm(must_acknowledge_transient=True)
    run(latched.write(status=AlarmStatus.HIHI, severity=MAJOR))
    run(latched.write(status=AlarmStatus.NO_ALARM, severity=NO))
    run(latched.write(must_acknowledge_transient=False))  # dropping ACKT lowers ACKS
    assert latched.severity_to_acknowledge == NO


def test_shared_alarm_publishes_to_every_channel():
    alarm = ChannelAlarm()
    channels = [ChannelDouble(value=1.0, alarm=alarm), ChannelInteger(value=2, alarm=alarm)]
    queues = [ListQueue(), ListQueue()]
    for channel, queue in zip(channels, queues):
        spec = SubscriptionSpec(channel, ChannelType.TIME_DOUBLE, DBE.DBE_ALARM)
        run(channel.subscribe(queue, spec, "sub"))
        queue.items.clear()                              # drop the initial update
    run(alarm.write(status=AlarmStatus.STATE, severity=MAJOR))
    for queue in queues:
        (update,) = queue.items
        assert update.flags & DBE.DBE_ALARM
        assert update.metadata.severity == MAJOR
        assert update.metadata.status == AlarmStatus.STATE
    assert all(channel.severity == MAJOR for channel in channels)


def test_limit_alarm_from_one_channel_reaches_the_others():
    alarm = ChannelAlarm()
    source = ChannelDouble(value=0.0, alarm=alarm, upper_alarm_limit=10,
                           lower_alarm_limit=-10)
    other = ChannelDouble(value=5.0, alarm=alarm)
    queue = ListQueue()
    spec = SubscriptionSpec(other, ChannelType.STS_DOUBLE, DBE.DBE_ALARM)
    run(other.subscribe(queue, spec, "sub"))
    queue.items.clear()
    run(source.write(11.0))
    (update,) = queue.items
    assert update.metadata.status == AlarmStatus.HIHI
    assert other.severity == MAJOR


def test_source_channel_gets_one_update_for_value_and_alarm():
    channel = ChannelDouble(value=0.0, upper_alarm_limit=10, lower_alarm_limit=-10)
    queue = ListQueue()
    spec = SubscriptionSpec(channel, ChannelType.TIME_DOUBLE,
                            DBE.DBE_VALUE | DBE.DBE_ALARM)
    run(channel.subscribe(queue, spec, "sub"))
    queue.items.clear()
    run(channel.write(20.0))
    (update,) = queue.items
    assert update.flags == DBE.DBE_VALUE | DBE.DBE_LOG | DBE.DBE_ALARM
    assert list(update.values) == [20.0]
    assert update.metadata.severity == MAJOR


# -- limit alarms ----------------------------------------------------------------

def test_limits_are_inclusive_and_checked_in_ai_order():
    seen = walk(limits(), [0, 5, 9.9, 10, 100, -5, -10, -100])
    assert seen == [(AlarmStatus.NO_ALARM, NO), (AlarmStatus.HIGH, MINOR),
                    (AlarmStatus.HIGH, MINOR), (AlarmStatus.HIHI, MAJOR),
                    (AlarmStatus.HIHI, MAJOR), (AlarmStatus.LOW, MINOR),
                    (AlarmStatus.LOLO, MAJOR), (AlarmStatus.LOLO, MAJOR)]


def test_hysteresis_delays_clearing_and_downgrading():
    fields = limits(alarm_hysteresis=2.0)
    seen = walk(fields, [11, 9, 8.5, 7.9, 4, 3.5, 2.9])
    assert [status for status, _ in seen] == [
        AlarmStatus.HIHI,        # raised
        AlarmStatus.HIHI,        # 9 >= 10 - 2: held
        AlarmStatus.HIHI,        # still within HYST
        AlarmStatus.HIGH,        # more than HYST below HIHI: downgrade
        AlarmStatus.HIGH,        # 4 >= 5 - 2: held
        AlarmStatus.HIGH,
        AlarmStatus.NO_ALARM,    # more than HYST below HIGH: cleared
    ]
    # Without a previous HIHI, hysteresis does not raise one early.
    assert walk(fields, [9])[0][0] == AlarmStatus.HIGH
    assert walk(fields, [4])[0][0] == AlarmStatus.NO_ALARM


def test_hysteresis_on_the_low_side():
    seen = walk(limits(alarm_hysteresis=1.0), [-12, -9.5, -8.9])
    assert [status for status, _ in seen] == [AlarmStatus.LOLO, AlarmStatus.LOLO,
                                              AlarmStatus.LOW]


def test_severity_no_alarm_disables_one_limit_and_equal_pair_disables_both():
    seen = walk(limits(upper_alarm_severity=NO), [20])
    assert seen == [(AlarmStatus.HIGH, MINOR)]          # falls through to HIGH
    fields = limits(upper_warning_limit=0.0, lower_warning_limit=0.0)
    assert walk(fields, [7])[0] == (AlarmStatus.NO_ALARM, NO)
    off = limits(upper_warning_limit=1.0, lower_warning_limit=1.0,
                 upper_alarm_limit=2.0, lower_alarm_limit=2.0)
    assert limit_alarm(off, 100, None) is None


def test_channel_without_limits_keeps_alarm_set_by_hand():
    channel = ChannelDouble(value=1.0)
    run(channel.write_metadata(status=AlarmStatus.COMM, severity=AlarmSeverity.INVALID_ALARM))
    run(channel.write(2.0))
    assert channel.status == AlarmStatus.COMM


def test_initial_value_outside_limits_starts_in_alarm():
    channel = ChannelDouble(value=50.0, upper_alarm_limit=10, lower_alarm_limit=-10)
    assert (channel.status, channel.severity) == (AlarmStatus.HIHI, MAJOR)


# -- deadbands -------------------------------------------------------------------

@pytest.mark.parametrize("last, value, deadband, posts", [
    (None, 1.0, 100.0, True),          # first update always posts
    (1.0, 1.0, 0.0, False),            # no change
    (1.0, 1.5, 0.0, True),             # any change with MDEL=0
    (1.0, 1.5, 0.5, False),            # |change| must exceed the deadband
    (1.0, 1.6, 0.5, True),
    (1.0, 1.0, -1.0, True),            # negative deadband posts always
    (math.nan, math.nan, 0.0, False),
    (1.0, math.nan, 1e9, True),
    (math.inf, -math.inf, 1e9, True),
])
def test_deadband(last, value, deadband, posts):
    assert exceeds_deadband(last, value, deadband) is posts


@pytest.mark.network
def test_limit_alarms_match_an_epics_ai_record(softioc):
    """The same limits, severities and HYST give the same STAT/SEVR as epics-base."""
    epics = pytest.importorskip("epics")
    softioc('record(ai, "DATA:ai") {\n'
            ' field(HIHI, "10") field(HIGH, "5") field(LOW, "-5") field(LOLO, "-10")\n'
            ' field(HHSV, "MAJOR") field(HSV, "MINOR") field(LSV, "MINOR")\n'
            ' field(LLSV, "MAJOR") field(HYST, "2")\n}\n')
    ours = ChannelDouble(value=0.0, upper_alarm_limit=10, upper_warning_limit=5,
                         lower_warning_limit=-5, lower_alarm_limit=-10,
                         alarm_hysteresis=2)
    sequence = [0, 11, 9, 8.5, 7, 4, 2, -6, -11, -8.5, -7.5, -4, 0, 10, 5]
    pv = epics.PV("DATA:ai", auto_monitor=False)
    assert pv.wait_for_connection(timeout=10)
    theirs, mine = [], []
    for value in sequence:
        assert pv.put(value, wait=True, timeout=5) == 1
        # One DBR_TIME read, straight from the IOC: status and severity together.
        answer = pv.get_with_metadata(form="time", use_monitor=False, timeout=5)
        theirs.append((answer["status"], answer["severity"]))
        run(ours.write(value))
        mine.append((int(ours.status), int(ours.severity)))
    assert mine == theirs


def test_a_given_alarm_is_not_overwritten_at_definition():
    shared = ChannelAlarm(status=AlarmStatus.COMM, severity=AlarmSeverity.INVALID_ALARM)
    ChannelDouble(value=0.0, alarm=shared, upper_alarm_limit=10, lower_alarm_limit=-10)
    assert shared.status == AlarmStatus.COMM

"""caproto.threading.client against a real epics-base softIoc (and libca)."""
import os
import threading
import time

import epics
import pytest

import caproto as ca
from caproto.threading.client import Context, SharedBroadcaster
from tests.client import CLIENT_DB, wait_until
from tests.conftest import _free_port
from tests.peers import SoftIoc

CT = ca.ChannelType
MASK = ca.SubscriptionType


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    where = tmp_path_factory.mktemp("threading-ioc")
    (where / "client.db").write_text(CLIENT_DB)
    ioc = SoftIoc(where / "client.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  where / "ioc.log")
    yield ioc
    ioc.stop()


@pytest.fixture
def context(ioc):
    context = Context(timeout=10)
    yield context
    context.disconnect()


def collect(pv, **kwargs):
    """Subscribe; returns (subscription, list that fills with responses)."""
    events = []
    sub = pv.subscribe(**kwargs)
    sub.add_callback(lambda sub, response: events.append(response))
    return sub, events


@pytest.mark.parametrize("name", ["cl:ai", "cl:ao", "cl:bo", "cl:mbbi",
                                  "cl:longin", "cl:stringin", "cl:calc"])
def test_native_values_match_libca(context, name):
    (pv,) = context.get_pvs(name)
    ours = pv.read().data
    theirs = epics.caget(name, use_monitor=False, timeout=10)
    if pv.native_data_type == CT.STRING:
        assert ours == [theirs.encode()]
    elif name == "cl:calc":              # counts up by itself
        assert abs(ours[0] - theirs) < 100
    else:
        assert ours[0] == theirs


def test_each_dbr_form_carries_its_metadata(context):
    ai, calc = context.get_pvs("cl:ai", "cl:calc")
    time_form = calc.read(data_type=CT.TIME_DOUBLE)     # calc scans itself
    assert abs(time_form.metadata.timestamp - time.time()) < 60
    assert time_form.metadata.severity == 0
    never_processed = ai.read(form="time").metadata
    assert never_processed.status == ca.AlarmStatus.UDF
    ctrl = ai.read(form="ctrl").metadata
    assert ctrl.units == b"mm" and ctrl.precision == 3
    assert (ctrl.upper_disp_limit, ctrl.lower_disp_limit) == (10.0, -10.0)
    assert ctrl.upper_alarm_limit == 8.0
    gr = ai.read(data_type=CT.GR_DOUBLE).metadata
    assert gr.units == b"mm" and gr.upper_disp_limit == 10.0
    sts = ai.read(data_type=CT.STS_DOUBLE).metadata
    assert sts.severity == 0
    # The same value in another type, converted by the server.
    assert ai.read(data_type=CT.STRING).data == [b"1.500"]
    assert ai.read(data_type=CT.LONG).data[0] == 1      # truncated by dbConvert


def test_enum_strings_and_enum_by_name(context):
    mbbi, bo = context.get_pvs("cl:mbbi", "cl:bo")
    assert mbbi.read(form="ctrl").metadata.enum_strings == [b"zero", b"one", b"two"]
    assert mbbi.read(data_type=CT.STRING).data == [b"one"]
    bo.write("On", data_type=CT.STRING, wait=True)
    assert bo.read().data[0] == 1
    assert epics.caget("cl:bo", as_string=True, use_monitor=False) == "On"
    bo.write([0], wait=True)
    assert bo.read(data_type=CT.STRING).data == [b"Off"]


def test_write_wait_and_write_callback(context):
    (ao,) = context.get_pvs("cl:ao")
    response = ao.write([12.5], wait=True)
    assert isinstance(response, ca.WriteNotifyResponse)
    assert epics.caget("cl:ao", use_monitor=False) == 12.5
    done = threading.Event()
    ao.write([13.5], wait=False, callback=lambda response: done.set())
    assert done.wait(10)
    assert ao.read().data[0] == 13.5


def test_put_callback_waits_for_processing_to_finish(context):
    # cl:slow forwards to a calcout with a 0.3 s output delay; the put
    # completes only once that chain has finished processing.
    (slow,) = context.get_pvs("cl:slow")
    finished = []
    slow.write([5], wait=False,
               callback=lambda response: finished.append(time.monotonic()))
    started = time.monotonic()
    assert wait_until(lambda: finished, timeout=10)
    assert finished[0] - started >= 0.25


def test_waveform_and_char_waveform_round_trip(context):
    wave, text = context.get_pvs("cl:wf", "cl:text")
    wave.write([1, 2, 3], wait=True)
    assert list(wave.read().data) == [1.0, 2.0, 3.0]          # dynamic count
    assert len(wave.read(data_count=10).data) == 10
    assert list(epics.caget("cl:wf", use_monitor=False)) == [1.0, 2.0, 3.0]
    text.write(b"some text\0", wait=True)
    assert bytes(text.read().data).rstrip(b"\0") == b"some text"


def test_subscription_masks(context):
    (ao,) = context.get_pvs("cl:ao")
    ao.write([0], wait=True)
    _, value_events = collect(ao, mask=MASK.DBE_VALUE)
    _, log_events = collect(ao, mask=MASK.DBE_LOG)
    _, alarm_events = collect(ao, mask=MASK.DBE_ALARM, data_type=CT.TIME_DOUBLE)
    assert wait_until(lambda: value_events and log_events and alarm_events)
    for value in (1, 2, 3, 10, 60):      # ADEL=5: only 10 and 60 are logged
        ao.write([value], wait=True)
    assert wait_until(lambda: len(value_events) >= 6)
    assert [e.data[0] for e in value_events] == [0, 1, 2, 3, 10, 60]
    assert wait_until(lambda: len(log_events) >= 3)
    assert [e.data[0] for e in log_events] == [0, 10, 60]
    assert wait_until(lambda: len(alarm_events) >= 2)    # 60 > HIHI=50
    assert alarm_events[-1].metadata.severity == ca.AlarmSeverity.MAJOR_ALARM
    ao.write([0], wait=True)


def test_add_callback_gets_latest_value_and_remove_stops_events(context):
    (calc,) = context.get_pvs("cl:calc")
    sub, first = collect(calc)
    assert wait_until(lambda: len(first) >= 2)
    late = []
    token = sub.add_callback(lambda sub, response: late.append(response))
    assert wait_until(lambda: late)      # the most recent one, at once
    sub.remove_callback(token)
    sub.clear()
    time.sleep(0.3)
    count = len(first)
    time.sleep(0.5)
    assert len(first) == count           # cancelled: no more events


def test_connection_and_access_rights_callbacks(ioc):
    states, rights = [], []
    with Context(timeout=10) as context:
        (pv,) = context.get_pvs(
            "cl:ai", connection_state_callback=lambda pv, s: states.append(s),
            access_rights_callback=lambda pv, r: rights.append(r))
        pv.wait_for_connection()
        assert wait_until(lambda: states and rights)
        assert states == ["connected"]
        assert rights[-1] == ca.AccessRights.READ | ca.AccessRights.WRITE


def test_get_pvs_batches_many_names(context):
    names = [f"cl:ai.{field}" for field in ("VAL", "EGU", "PREC", "HOPR",
                                           "LOPR", "HIHI", "DESC", "NAME")]
    names += ["cl:ao", "cl:bo", "cl:mbbi", "cl:longin", "cl:stringin"] * 1
    pvs = context.get_pvs(*names)
    assert context.get_pvs(names[0])[0] is pvs[0]        # cached
    for pv in pvs:
        pv.wait_for_connection()
    assert pvs[names.index("cl:ai.EGU")].read().data == [b"mm"]
    assert pvs[names.index("cl:ai.NAME")].read().data == [b"cl:ai"]


def test_threads_are_lazy_and_idle_is_quiet(ioc):
    before = threading.active_count()
    context = Context(timeout=10)
    assert threading.active_count() == before            # nothing started
    (ai,) = context.get_pvs("cl:ai")
    ai.wait_for_connection()
    assert threading.active_count() <= before + 2
    cpu = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.2               # no busy loop
    context.disconnect()


def test_timeouts_name_pv_and_server(context):
    (missing,) = context.get_pvs("cl:nothing-here")
    with pytest.raises(ca.CaprotoTimeoutError, match="cl:nothing-here"):
        missing.read(timeout=0.3)


def test_shared_broadcaster_serves_two_contexts(ioc):
    broadcaster = SharedBroadcaster()
    first, second = Context(broadcaster, timeout=10), Context(broadcaster,
                                                              timeout=10)
    (a,) = first.get_pvs("cl:longin")
    (b,) = second.get_pvs("cl:longin")
    assert a.read().data[0] == b.read().data[0] == 42
    broadcaster.disconnect()


def test_reconnects_and_resubscribes_after_server_restart(tmp_path):
    port = _free_port()
    db = tmp_path / "restart.db"
    db.write_text('record(ao, "rs:ao") { field(VAL, "1") }\n')
    env = dict(os.environ, EPICS_CA_ADDR_LIST=f"127.0.0.1:{port}",
               EPICS_CA_AUTO_ADDR_LIST="NO")
    first = SoftIoc(db, port, tmp_path / "first.log")
    states = []
    context = Context(timeout=10, env=env)
    try:
        (pv,) = context.get_pvs(
            "rs:ao", connection_state_callback=lambda pv, s: states.append(s))
        _, events = collect(pv)
        assert wait_until(lambda: events)
        first.stop()
        assert wait_until(lambda: states[-1:] == ["disconnected"])
        second = SoftIoc(db, port, tmp_path / "second.log")
        try:
            assert wait_until(lambda: states[-1:] == ["connected"], timeout=20)
            pv.write([7], wait=True)
            assert wait_until(lambda: events[-1].data[0] == 7)
            assert pv.read().data[0] == 7
        finally:
            second.stop()
    finally:
        context.disconnect()



def test_refused_put_raises_naming_the_pv(context):
    (rtyp,) = context.get_pvs("cl:ai.RTYP")        # a field dbPut refuses
    with pytest.raises(ca.ErrorResponseReceived, match=r"cl:ai\.RTYP"):
        rtyp.write("ao", data_type=CT.STRING, wait=True)
    assert rtyp.read().data == [b"ai"]


def test_remove_and_recreate_a_pv(context):
    (pv,) = context.get_pvs("cl:longin")
    assert pv.read().data[0] == 42
    pv.disconnect()
    assert not pv.connected
    with pytest.raises(ca.CaprotoError):
        pv.read(timeout=0.2)
    (again,) = context.get_pvs("cl:longin")
    assert again is not pv and again.read().data[0] == 42

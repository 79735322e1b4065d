"""caproto.threading.pyepics_compat side by side with real pyepics (libca).

pyepics' documented behaviour is the specification: each test does the
same thing through both and compares what a user would see.
"""
import ctypes
import os
import threading
import time

import epics
import numpy
import pytest

from caproto.threading import pyepics_compat as compat
from tests.client import CLIENT_DB, wait_until
from tests.peers import SoftIoc

RECORDS = ["cl:ai", "cl:ao", "cl:bo", "cl:mbbi", "cl:longin", "cl:stringin"]
CTRL_KEYS = ("precision", "units", "enum_strs", "upper_disp_limit",
             "lower_disp_limit", "upper_ctrl_limit", "lower_ctrl_limit",
             "upper_alarm_limit")


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    where = tmp_path_factory.mktemp("compat-ioc")
    (where / "client.db").write_text(CLIENT_DB)
    ioc = SoftIoc(where / "client.db", int(os.environ["EPICS_CA_SERVER_PORT"]),
                  where / "ioc.log")
    epics.caput("cl:wf", [1.0, 2.0, 3.0], wait=True, connection_timeout=10)
    yield ioc
    ioc.stop()


def same(ours, theirs):
    if isinstance(theirs, ctypes.Array):     # as_numpy=False: we give a list
        return isinstance(ours, list) and ours == list(theirs)
    if isinstance(theirs, numpy.ndarray):
        return (isinstance(ours, numpy.ndarray) and ours.dtype == theirs.dtype
                and list(ours) == list(theirs))
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("name", RECORDS + ["cl:wf"])
@pytest.mark.parametrize("kwargs", [{}, {"as_string": True},
                                    {"as_numpy": False}, {"count": 2}])
def test_caget_matches_pyepics(ioc, name, kwargs):
    ours = compat.caget(name, timeout=10, **kwargs)
    theirs = epics.caget(name, timeout=10, use_monitor=False, **kwargs)
    assert same(ours, theirs), (ours, theirs)


def test_caget_of_missing_pv_is_none(ioc):
    assert compat.caget("cl:missing", connection_timeout=0.3) is None


def test_pv_attributes_match_pyepics(ioc):
    for name in RECORDS + ["cl:wf", "cl:text"]:
        ours, theirs = compat.PV(name), epics.PV(name)
        assert ours.wait_for_connection(10) and theirs.wait_for_connection(10)
        ours.get_ctrlvars()
        theirs.get_ctrlvars()
        # count is the element count until the first value arrives, then
        # that value's (0 for an empty waveform), in both.  A get makes both
        # have a value: pyepics' first monitor event may be held by libca
        # (tests/server/test_first_event.py).
        ours.get()
        theirs.get()
        for attribute in ("type", "count", "nelm", "access", "read_access",
                          "write_access", "enum_strs", "units", "precision",
                          "severity", "status"):
            mine, libca = getattr(ours, attribute), getattr(theirs, attribute)
            assert mine == libca, (name, attribute, mine, libca)
        assert ours.host.endswith(f":{ioc.port}")
        assert same(ours.value, theirs.get(use_monitor=False)), name
        assert ours.char_value == theirs.get(as_string=True, use_monitor=False)


def test_get_ctrlvars_and_ctrl_form_match_pyepics(ioc):
    ours = compat.PV("cl:ai", form="ctrl")
    theirs = epics.PV("cl:ai", form="ctrl")
    assert ours.wait_for_connection(10) and theirs.wait_for_connection(10)
    assert ours.type == theirs.type == "ctrl_double"
    mine, libca = ours.get_ctrlvars(), theirs.get_ctrlvars()
    for key in CTRL_KEYS:
        if isinstance(libca.get(key), float) and libca[key] != libca[key]:
            assert mine[key] != mine[key]           # both NaN
        else:
            assert mine.get(key) == libca.get(key), key


def test_time_form_timestamps(ioc):
    ours, theirs = compat.PV("cl:calc"), epics.PV("cl:calc")
    assert ours.wait_for_connection(10) and theirs.wait_for_connection(10)
    ours.get(use_monitor=False)
    assert abs(ours.timestamp - time.time()) < 60
    assert ours.posixseconds == int(ours.timestamp)
    assert 0 <= ours.nanoseconds < 1e9
    assert ours.type == theirs.type == "time_double"


def test_caput_wait_and_put_callback(ioc):
    assert compat.caput("cl:ao", 7.25, wait=True) == 1
    assert epics.caget("cl:ao", use_monitor=False) == 7.25
    epics.caput("cl:ao", 3.5, wait=True)
    assert compat.caget("cl:ao") == 3.5
    done = threading.Event()
    seen = {}

    def on_done(pvname=None, data=None, **kw):
        seen.update(pvname=pvname, data=data)
        done.set()
    pv = compat.PV("cl:slow")
    assert pv.wait_for_connection(10)
    pv.put(1, callback=on_done, callback_data="token")
    assert not pv.put_complete or done.is_set()
    assert done.wait(10) and pv.put_complete
    assert seen == {"pvname": "cl:slow", "data": "token"}


def test_put_strings_enums_and_char_waveforms(ioc):
    compat.caput("cl:bo", "On", wait=True)
    assert epics.caget("cl:bo", use_monitor=False) == 1
    compat.caput("cl:mbbi", "two", wait=True)
    assert epics.caget("cl:mbbi", as_string=True, use_monitor=False) == "two"
    compat.caput("cl:text", "compat text", wait=True)
    assert epics.caget("cl:text", as_string=True, use_monitor=False) == \
        "compat text"
    assert compat.caget("cl:text", as_string=True) == "compat text"
    compat.caput("cl:stringin", "written", wait=True)
    assert epics.caget("cl:stringin", use_monitor=False) == "written"
    compat.caput("cl:bo", 0, wait=True)


def test_callback_keywords_match_pyepics(ioc):
    ours_seen, theirs_seen = [], []
    ours = compat.PV("cl:calc", callback=lambda **kw: ours_seen.append(kw))
    theirs = epics.PV("cl:calc", callback=lambda **kw: theirs_seen.append(kw))
    assert wait_until(lambda: len(ours_seen) >= 2 and len(theirs_seen) >= 2)
    mine, libca = ours_seen[-1], theirs_seen[-1]
    assert set(libca) - set(mine) <= {"monitor_delta"}
    for key in ("pvname", "type", "count", "ftype", "access", "severity",
                "read_access", "write_access", "nelm"):
        assert mine[key] == libca[key], key
    assert type(mine["value"]) is type(libca["value"])
    assert mine["cb_info"][1] is ours and mine["cb_info"][0] == 0
    assert isinstance(mine["posixseconds"], float)
    ours.clear_callbacks()
    theirs.clear_callbacks()


def test_add_callback_kwargs_run_now_and_remove(ioc):
    seen = []
    pv = compat.PV("cl:longin")
    assert pv.wait_for_connection(10)
    index = pv.add_callback(lambda **kw: seen.append(kw), run_now=True,
                            extra="mine")
    assert seen and seen[-1]["extra"] == "mine" and seen[-1]["value"] == 42
    assert seen[-1]["cb_info"] == (index, pv)
    pv.remove_callback(index)
    count = len(seen)
    epics.caput("cl:longin", 43, wait=True)
    time.sleep(0.3)
    assert len(seen) == count
    epics.caput("cl:longin", 42, wait=True)


def test_auto_monitor(ioc):
    monitored = compat.PV("cl:ao", auto_monitor=True)
    unmonitored = compat.PV("cl:ao", auto_monitor=False)
    assert monitored.wait_for_connection(10)
    assert unmonitored.wait_for_connection(10)
    assert monitored._monitor is not None and unmonitored._monitor is None
    epics.caput("cl:ao", 4.0, wait=True)
    assert wait_until(lambda: monitored.get() == 4.0)   # from the monitor
    assert unmonitored.get() == 4.0                     # a fresh read
    epics.caput("cl:ao", 2.5, wait=True)


def test_camonitor_writes_one_line_per_update(ioc):
    lines = []
    compat.camonitor("cl:calc", writer=lines.append)
    assert wait_until(lambda: len(lines) >= 3)
    compat.camonitor_clear("cl:calc")
    name, date, clock, value = lines[-1].split()
    assert name == "cl:calc" and len(date) == 10 and float(value) > 0
    count = len(lines)
    time.sleep(0.4)
    assert len(lines) == count


def test_caget_many_and_caput_many(ioc):
    names = ["cl:ai", "cl:longin", "cl:missing", "cl:stringin"]
    ours = compat.caget_many(names, connection_timeout=1)
    theirs = epics.caget_many(names, connection_timeout=1)
    assert ours == theirs
    # As strings: the same text, except that we format numbers with the
    # record's precision where pyepics' caget_many skips fetching it.
    as_text = compat.caget_many(names, as_string=True, connection_timeout=1)
    libca_text = epics.caget_many(names, as_string=True, connection_timeout=1)
    assert as_text[1:] == libca_text[1:]
    assert as_text[0] == "1.500" and float(libca_text[0]) == 1.5
    assert compat.caput_many(["cl:ao", "cl:longin"], [9.0, 44], wait=True) == \
        [1, 1]
    assert epics.caget("cl:ao", use_monitor=False) == 9.0
    assert epics.caget("cl:longin", use_monitor=False) == 44
    assert compat.caput_many(["cl:ao", "cl:missing"], [2.5, 1],
                             connection_timeout=0.3) == [1, -1]
    epics.caput("cl:longin", 42, wait=True)


def test_get_pv_is_cached_and_connection_callback_fires(ioc):
    events = []
    pv = compat.get_pv("cl:bo", connect=True,
                       connection_callback=lambda **kw: events.append(kw))
    assert compat.get_pv("cl:bo") is pv
    other = compat.PV("cl:bo", connection_callback=lambda **kw: events.append(kw))
    assert wait_until(lambda: any(e["conn"] for e in events))
    assert events[-1]["pvname"] == "cl:bo" and events[-1]["pv"] is other


def test_monitored_waveform_char_value_matches_pyepics(ioc, caplog):
    """Monitor updates of an array must refresh char_value without errors."""
    ours = compat.PV("cl:wf", auto_monitor=True)
    updates = []
    ours.add_callback(lambda **kw: updates.append(kw["char_value"]))
    assert ours.wait_for_connection(10)
    for value in ([4.0, 5.0], [7.0]):        # a one-element update too
        updates.clear()
        epics.caput("cl:wf", value, wait=True, connection_timeout=10)
        deadline = time.monotonic() + 10
        while not updates and time.monotonic() < deadline:
            time.sleep(0.05)
    theirs = epics.PV("cl:wf", auto_monitor=False)
    assert theirs.wait_for_connection(10)
    assert ours.char_value == theirs.get(as_string=True, use_monitor=False)
    assert updates and updates[-1] == ours.char_value
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text

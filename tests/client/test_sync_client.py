"""caproto.sync.client against a real epics-base softIoc, checked with pyepics."""

import pytest

from caproto import ChannelType, CaprotoTimeoutError, ErrorResponseReceived
from caproto.sync.client import (Subscription, block, read, read_write_read,
                                 subscribe, write)

pytestmark = pytest.mark.network


DB = """
record(ai, "SYNC:ai") {
    field(VAL, "2.5") field(EGU, "mm") field(PREC, "3")
    field(HOPR, "10") field(LOPR, "-10") field(HIGH, "2") field(HSV, "MINOR")
    field(PINI, "YES")
}
record(ao, "SYNC:ao") { field(VAL, "1") field(DRVH, "100") field(DRVL, "-100") field(PINI, "YES") }
record(mbbi, "SYNC:mbbi") {
    field(ZRST, "Zero") field(ONST, "One") field(TWST, "Two") field(VAL, "2") field(PINI, "YES")
}
record(stringout, "SYNC:so") { field(VAL, "initial") field(PINI, "YES") }
record(waveform, "SYNC:wf") { field(FTVL, "LONG") field(NELM, "8") }
record(calc, "SYNC:counter") {
    field(SCAN, ".1 second") field(INPA, "SYNC:counter NPP") field(CALC, "A+1")
}
"""


@pytest.fixture(scope="module")
def ioc(request):
    # One softIoc for the module (the fixture in tests/peers is per test).
    from tests.peers import SoftIoc
    import os
    import tempfile
    tmp = tempfile.mkdtemp(prefix="sync-client-")
    db = os.path.join(tmp, "sync.db")
    with open(db, "w") as f:
        f.write(DB)
    ioc = SoftIoc(db, int(os.environ["EPICS_CA_SERVER_PORT"]),
                  os.path.join(tmp, "ioc.log"))
    yield ioc
    ioc.stop()


@pytest.fixture(scope="module")
def epics():
    return pytest.importorskip("epics")


def test_read_matches_pyepics(ioc, epics):
    ours = read("SYNC:ai", data_type="time", timeout=5)
    theirs = epics.caget("SYNC:ai", timeout=5)
    assert ours.data_type == ChannelType.TIME_DOUBLE
    assert list(ours.data) == [theirs]
    pv = epics.PV("SYNC:ai", form="time")
    pv.wait_for_connection(5)
    pv.get(timeout=5)
    assert ours.metadata.timestamp == pytest.approx(pv.timestamp, abs=1e-6)
    assert ours.metadata.severity == pv.severity == 1     # HIGH -> MINOR


def test_read_control_metadata(ioc):
    response = read("SYNC:ai", data_type="control", timeout=5)
    assert response.metadata.units == b"mm"
    assert response.metadata.precision == 3
    assert response.metadata.upper_disp_limit == 10.0
    assert response.metadata.lower_disp_limit == -10.0


def test_enum_reads_as_string_unless_forced(ioc):
    assert read("SYNC:mbbi", timeout=5).data == [b"Two"]
    assert list(read("SYNC:mbbi", timeout=5, force_int_enums=True).data) == [2]


def test_write_with_notify_is_seen_by_pyepics(ioc, epics):
    response = write("SYNC:ao", 42.25, notify=True, timeout=5)
    assert response.status.success
    assert epics.caget("SYNC:ao", timeout=5, use_monitor=False) == 42.25


def test_write_without_notify_arrives(ioc, epics):
    assert write("SYNC:so", "plain write", timeout=5) is None
    assert epics.caget("SYNC:so", timeout=5, use_monitor=False) == "plain write"


def test_array_write_and_read(ioc):
    write("SYNC:wf", [5, -6, 7], notify=True, timeout=5)
    assert list(read("SYNC:wf", timeout=5).data) == [5, -6, 7]


def test_read_write_read(ioc):
    write("SYNC:so", "before", notify=True, timeout=5)
    initial, written, final = read_write_read("SYNC:so", "after", notify=True,
                                              timeout=5)
    assert initial.data == [b"before"]
    assert written.status.success
    assert final.data == [b"after"]


def test_put_to_read_only_field_fails_clearly(ioc):
    with pytest.raises(ErrorResponseReceived, match="SYNC:ai.RTYP"):
        write("SYNC:ai.RTYP", "ao", notify=True, timeout=5)


def test_timeout_names_pv_and_search_targets(ioc):
    with pytest.raises(CaprotoTimeoutError) as info:
        read("SYNC:does_not_exist", timeout=0.5)
    assert "SYNC:does_not_exist" in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_subscription_blocks_until_interrupted(ioc):
    values = []
    sub = subscribe("SYNC:counter", data_type="time")

    def collect(sub, response):
        values.append(float(response.data[0]))
        if len(values) == 4:
            sub.interrupt()

    sub.add_callback(collect)
    sub.block(timeout=5)
    assert len(values) == 4
    assert values == sorted(values) and len(set(values)) == 4


def test_block_serves_several_and_removed_callbacks_stop(ioc):
    seen = {"SYNC:counter": 0, "SYNC:ai": 0}
    subs = [Subscription(name) for name in seen]
    removed = []

    def count(sub, response):
        seen[sub.pv_name] += 1
        if seen["SYNC:counter"] >= 3:
            for s in subs:
                s.interrupt()

    for s in subs:
        s.add_callback(count)
    cb_id = subs[0].add_callback(lambda sub, response: removed.append(1))
    subs[0].remove_callback(cb_id)
    block(*subs, timeout=5, duration=10)
    assert seen["SYNC:counter"] >= 3
    assert seen["SYNC:ai"] == 1            # a static PV: its initial value only
    assert removed == []


def test_block_duration_ends(ioc):
    sub = subscribe("SYNC:ai")
    sub.add_callback(lambda s, r: None)
    sub.block(duration=0.3, timeout=5)


def test_name_server_without_broadcast_search(ioc, monkeypatch):
    monkeypatch.setenv("EPICS_CA_ADDR_LIST", "")
    monkeypatch.setenv("EPICS_CA_AUTO_ADDR_LIST", "NO")
    monkeypatch.setenv("EPICS_CA_NAME_SERVERS", f"127.0.0.1:{ioc.port}")
    assert list(read("SYNC:ai", timeout=5).data) == [2.5]


def test_array_larger_than_max_array_bytes_is_refused(ioc, monkeypatch):
    write("SYNC:wf", [1, 2, 3, 4, 5, 6, 7, 8], notify=True, timeout=5)
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", "16")
    with pytest.raises(ValueError, match="EPICS_CA_MAX_ARRAY_BYTES"):
        read("SYNC:wf", data_count=8, timeout=5)

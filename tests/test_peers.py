"""The reference peers the suite relies on are installed and stay on loopback."""
import os

import pytest


def test_loopback_environment_is_pinned():
    assert os.environ["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert os.environ["EPICS_CA_ADDR_LIST"] == "127.0.0.1"
    assert os.environ["EPICS_CAS_INTF_ADDR_LIST"] == "127.0.0.1"
    assert os.environ["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert os.environ["EPICS_CAS_BEACON_ADDR_LIST"] == "127.255.255.255"
    assert os.environ["EPICS_CA_SERVER_PORT"] != "5064"


@pytest.mark.network
def test_softioc_serves_libca(softioc):
    epics = pytest.importorskip("epics")
    softioc('record(ai, "PEER:ai") { field(VAL, "2.5") field(EGU, "mm") }\n')
    pv = epics.PV("PEER:ai", form="ctrl")
    assert pv.wait_for_connection(timeout=10)
    assert pv.get(timeout=5) == 2.5
    assert pv.units == "mm"

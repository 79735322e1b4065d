"""Test-session set-up: keep every CA packet on this machine.

This runs before any test module is imported, so libca (pyepics), our own
servers and clients, and every subprocess we start inherit loopback-only
address lists and free random ports.  Nothing here may broadcast off-host.
"""
import os
import socket


def _free_port():
    """A port free for both TCP and UDP on 127.0.0.1 (CA uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found on 127.0.0.1")


LOOPBACK_ENV = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255",
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVA_ADDR_LIST": "127.255.255.255",
}
os.environ.update(LOOPBACK_ENV)
# Fresh ports per test session, so parallel sessions never meet.
os.environ["EPICS_CA_SERVER_PORT"] = str(_free_port())
os.environ["EPICS_CA_REPEATER_PORT"] = str(_free_port())
os.environ["EPICS_CAS_BEACON_PORT"] = os.environ["EPICS_CA_REPEATER_PORT"]
os.environ.pop("EPICS_CAS_SERVER_PORT", None)
os.environ.pop("EPICS_CA_NAME_SERVERS", None)

pytest_plugins = ["tests.peers"]

"""Fixtures that start real peers: the epics-base softIoc from epicscorelibs.

Every process started here is killed by its own PID at teardown, and every
wait is bounded in time.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import _free_port


def wait_for_tcp(port, host="127.0.0.1", timeout=15.0, proc=None):
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class SoftIoc:
    """A running epics-base softIoc; `.port` is its CA server port."""

    def __init__(self, db_path, port, log_path):
        self.port = port
        self.db_path = db_path
        env = dict(os.environ, EPICS_CA_SERVER_PORT=str(port))
        self._log = open(log_path, "wb")
        # The ioc module runs an interactive shell: keep stdin open or it exits.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "epicscorelibs.ioc", "-d", str(db_path)],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
            env=env)
        self.log_path = log_path
        wait_for_tcp(port, proc=self.proc)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


class Repeater:
    """Our own caRepeater on EPICS_CA_REPEATER_PORT, so libca never spawns one
    that outlives the test session.  Stopped by its own PID (process group)."""

    def __init__(self, timeout=10.0):
        port = int(os.environ["EPICS_CA_REPEATER_PORT"])
        self.proc = subprocess.Popen(["caRepeater"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return          # the repeater holds the port: it is up
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"caRepeater did not bind port {port}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def ca_repeater():
    """One repeater for the whole session (None if caRepeater is not installed)."""
    try:
        repeater = Repeater()
    except (OSError, TimeoutError):
        yield None
        return
    yield repeater
    repeater.stop()


@pytest.fixture(scope="module", autouse=True)
def _fresh_libca_context():
    """Give each test module its own libca (pyepics) context.

    Modules restart softIocs on the same 127.0.0.1:EPICS_CA_SERVER_PORT, and
    pyepics caches one libca channel per PV name for the whole process.  When
    a module's IOC is killed, libca parks that channel in its disconnect
    governor, which re-searches only every 10 s -- longer than pyepics'
    default 5 s connection timeout -- so a later module's epics.caget() of
    the same name would time out against a perfectly good new IOC.  A new
    context has no channels, so its first search goes out at once.  The old
    context is detached, not destroyed: PV objects from earlier modules stay
    valid (clearing their channels could crash libca).
    """
    ca = getattr(sys.modules.get("epics"), "ca", None)
    if ca is not None and ca.libca not in (None, ca._LIBCA_FINALIZED):
        ca.detach_context()
        ca.create_context()
    yield


def _environment_restored():
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


# libca (pyepics) writes EPICS_CA_MAX_ARRAY_BYTES into os.environ when it
# starts, and tests change the environment: nothing may leak into the next
# test, nor (for changes made while a module's fixtures start) the next module.
_restore_environment = pytest.fixture(autouse=True)(_environment_restored)
_restore_module_environment = pytest.fixture(scope="module", autouse=True)(
    _environment_restored)


@pytest.fixture
def free_port():
    return _free_port()


@pytest.fixture
def softioc(tmp_path):
    """Factory: softioc(db_text, port=None) -> SoftIoc (stopped at teardown).

    With port=None the session's EPICS_CA_SERVER_PORT is used, so libca and
    our clients find it through the default loopback address list.
    """
    started = []

    def start(db_text, port=None):
        port = int(port or os.environ["EPICS_CA_SERVER_PORT"])
        db = tmp_path / f"ioc{len(started)}.db"
        db.write_text(db_text)
        ioc = SoftIoc(db, port, tmp_path / f"ioc{len(started)}.log")
        started.append(ioc)
        return ioc

    yield start
    for ioc in started:
        ioc.stop()

"""Fixtures that start real peers: the epics-base softIoc from epicscorelibs.

Every process started here is killed by its own PID at teardown, and every
wait is bounded in time.
"""
import os
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

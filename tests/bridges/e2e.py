"""Run a bridge for real and talk to it over Channel Access.

Two ways, both with real sockets and real clients (pyepics/libca, epics-base
tools, our caproto.commandline tools):
- ``BridgeProcess``: ``python -m bridges CONFIG`` as a subprocess, stopped
  with SIGTERM (what a user or systemd does).  Faults are then injected from
  outside the process: a simulator served by the test process, pointed at by
  the config's ``transport.port: socket://127.0.0.1:PORT``.
- ``InProcessBridge``: ``build_ioc`` + the asyncio server in a thread of the
  test process, so a test can reach ``group.runner.driver.simulator`` and
  inject faults that only exist inside a driver (pyvisa-sim sessions, the
  DHT22's sysfs opener, gpiozero mock pins).

Every wait is bounded; every process is killed by its own PID.
"""
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "configs")
_serial = itertools.count(1)


def unique_prefix(tag):
    """A PV prefix no earlier bridge of this session used (libca caches names)."""
    return "E2E%d%s%d:" % (os.getpid() % 10000, tag, next(_serial))


def wait_until(predicate, timeout, interval=0.1):
    """Poll ``predicate`` until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


class BridgeProcess:
    """``python -m bridges CONFIG ARGS`` with its stdout+stderr in ``log_path``."""

    def __init__(self, config, *args, log_path, env=None, cwd=REPO):
        self.log_path = str(log_path)
        environment = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
        environment.update(env or {})
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridges", str(config), *args],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=environment, cwd=cwd)

    @property
    def log(self):
        with open(self.log_path) as handle:
            return handle.read()

    def wait_serving(self, timeout=15.0):
        """Wait for the server's "server on" line; fail with the log if the process died."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("bridge exited with %s:\n%s" % (self.proc.returncode, self.log))
            return "server on" in self.log
        assert wait_until(ready, timeout), "bridge not serving after %s s:\n%s" % (timeout, self.log)
        return self

    def wait_log(self, text, timeout=10.0):
        assert wait_until(lambda: text in self.log, timeout), \
            "%r not logged within %s s:\n%s" % (text, timeout, self.log)

    def terminate(self, timeout=15.0):
        """SIGTERM, then wait; returns (exit code, log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("bridge ignored SIGTERM for %s s:\n%s" % (timeout, self.log))
        self._log.close()
        return code, self.log

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run_bridge(config, *args, timeout=30, env=None):
    """Run ``python -m bridges`` to completion (for --check and failures)."""
    environment = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-m", "bridges", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=environment,
                          cwd=REPO, stdin=subprocess.DEVNULL)


class InProcessBridge:
    """A validated config served by the asyncio server in a thread of this process."""

    def __init__(self, config_path, *, prefix, sim=True, autosave=None):
        from bridges.loader import load_config
        from bridges.mapping import build_ioc
        self.config = load_config(str(config_path), sim=sim, overrides={("ioc", "prefix"): prefix})
        self.ioc = build_ioc(self.config, sim=sim, autosave=autosave)
        self.prefix = prefix
        self._context = None
        self._thread = None
        self._started = threading.Event()
        self._error = None

    def group(self, device_name):
        """The PVGroup of the device called ``device_name`` in the config."""
        for group in self.ioc.groups.values():
            if group.device.name == device_name:
                return group
        raise KeyError(device_name)

    def simulator(self, device_name):
        return self.group(device_name).runner.driver.simulator

    def start(self, timeout=15.0):
        from caproto.asyncio.server import Context

        def serve():
            async def main():
                self._context = Context(self.ioc.pvdb)
                self._started.set()
                await self._context.run()
            try:
                asyncio.run(main())
            except BaseException as exc:   # reported by stop()/start()
                self._error = exc
                self._started.set()
        self._thread = threading.Thread(target=serve, name="in-process-bridge", daemon=True)
        self._thread.start()
        assert self._started.wait(timeout), "in-process server did not start"
        assert self._error is None, self._error
        return self

    def stop(self, timeout=15.0):
        if self._context is not None:
            wait_until(lambda: self._context._stopping is not None, 5.0)
            self._context.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "in-process server did not stop"
        for runner in self.ioc.runners:    # the shutdown hooks did this; idempotent
            runner.close()
        assert self._error is None, self._error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- pyepics (libca) ------------------------------------------------------------

def ca_get(name, *, timeout=5.0, as_string=False):
    """Value through libca, or an AssertionError naming the PV."""
    import epics
    value = epics.caget(name, timeout=timeout, as_string=as_string,
                        connection_timeout=timeout, use_monitor=False)
    assert value is not None, "libca could not read %s" % name
    return value


def _pv(name, timeout):
    import epics
    pv = epics.get_pv(name, timeout=timeout)
    assert pv.wait_for_connection(timeout), "libca could not connect to %s" % name
    return pv


def ca_info(name, *, timeout=5.0):
    """A dict of the CTRL metadata, alarm state and timestamp, through libca."""
    pv = _pv(name, timeout)
    info = pv.get_with_metadata(form="ctrl", use_monitor=False, timeout=timeout)
    assert info is not None, "no CTRL data for %s" % name
    timed = pv.get_with_metadata(form="time", use_monitor=False, timeout=timeout)
    assert timed is not None, "no TIME data for %s" % name
    info.update(timestamp=timed["timestamp"])
    return info


def ca_alarm(name, *, timeout=5.0):
    """(status name, severity number, value) through libca's DBR_TIME."""
    from epics import dbr
    timed = _pv(name, timeout).get_with_metadata(form="time", use_monitor=False, timeout=timeout)
    assert timed is not None, "no TIME data for %s" % name
    return dbr.AlarmStatus(timed["status"]).name, timed["severity"], timed["value"]


def ca_put(name, value, *, timeout=5.0):
    """caput through libca with a completion callback; returns pyepics' result (1 = done)."""
    import epics
    return epics.caput(name, value, wait=True, timeout=timeout, connection_timeout=timeout)


def wait_alarm(name, statuses, timeout, severity=3):
    """Wait until ``name`` has one of ``statuses`` with ``severity``; return the last reading."""
    last = [None]

    def check():
        last[0] = ca_alarm(name)
        return last[0][0] in statuses and last[0][1] == severity
    assert wait_until(check, timeout, 0.1), "%s alarm %r, wanted %s/%s within %s s" % (
        name, last[0], statuses, severity, timeout)
    return last[0]


def wait_no_alarm(name, timeout):
    last = [None]

    def check():
        last[0] = ca_alarm(name)
        return last[0][1] == 0
    assert wait_until(check, timeout, 0.1), "%s still in alarm %r after %s s" % (name, last[0], timeout)
    return last[0]

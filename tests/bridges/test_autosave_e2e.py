"""Autosaved setpoints survive a bridge restart, including a ``kill -9`` in
the middle of a save: the file is replaced atomically, so the old or the new
value comes back, never a half-written file.

The controller simulator runs in THIS process (the bridge subprocess reaches
it through ``TC_PORT=socket://...``), so it outlives the bridge like a real
instrument, and its ``.received`` shows what the restarted bridge sent it.
"""
import os
import signal

import pytest

from tests.bridges.e2e import CONFIGS, BridgeProcess, unique_prefix, wait_until
from tests.commandline import run_epics

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]
CONFIG = os.path.join(CONFIGS, "temperature_controller.yaml")
SAVE_FILE = "temperature_controller.sav"

# Loaded by the bridge subprocess only (its PYTHONPATH starts with the hook's
# directory): every file replace done by the autosave module is announced in
# a marker file and then held for HOLD seconds -- first before, then after
# the rename -- so the test can kill -9 at a known moment of a save.
SLOW_SAVE_HOOK = r'''
import os, sys, time
_MARK = os.environ["SLOW_SAVE_MARK"]
_HOLD = float(os.environ.get("SLOW_SAVE_HOLD", "2"))


def _slow(original, name):
    def wrapper(src, dst, *args, **kwargs):
        if not str(dst).endswith(".sav"):
            return original(src, dst, *args, **kwargs)
        with open(_MARK, "a") as mark:
            mark.write("before %s\n" % name)
        time.sleep(_HOLD)
        result = original(src, dst, *args, **kwargs)
        with open(_MARK, "a") as mark:
            mark.write("after %s\n" % name)
        time.sleep(_HOLD)
        return result
    return wrapper


os.replace = _slow(os.replace, "replace")
os.rename = _slow(os.rename, "rename")
'''


def caget(name):
    """A fresh caget process (libca) each time: a restarted bridge serves the
    same names, which a long-lived libca context would only find again after
    its search back-off."""
    result = run_epics("caget", "-t", "-w", "5", name)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def caput(name, value):
    result = run_epics("caput", "-c", "-w", "5", name, str(value))
    assert result.returncode == 0 and "failed" not in result.stdout + result.stderr, \
        result.stdout + result.stderr


@pytest.fixture
def controller():
    from devices.simulators.instrument import InstrumentSimulator
    sim = InstrumentSimulator("temperature_controller")
    sim.serve_tcp()
    yield sim
    sim.close()


class Bridges:
    """Starts bridges for one autosave directory; kills leftovers by PID."""

    def __init__(self, tmp_path, sim):
        self.tmp_path, self.sim, self.started = tmp_path, sim, []
        self.autosave_dir = tmp_path / "autosave"
        # Saved values are keyed by full PV name, so every restart keeps the prefix.
        self.prefix = unique_prefix("A")

    def start(self, env=None):
        prefix = self.prefix
        proc = BridgeProcess(CONFIG, "--prefix", prefix,
                             log_path=self.tmp_path / ("bridge-%d.log" % len(self.started)),
                             env=dict({"TC_PORT": self.sim.url,
                                       "AUTOSAVE_DIR": str(self.autosave_dir)}, **(env or {})))
        self.started.append(proc)
        proc.wait_serving()
        tc = prefix + "TC1:"
        assert wait_until(lambda: caget(tc + "CONNECTED") == "Yes", 10), proc.log
        return proc, tc

    def kill_all(self):
        for proc in self.started:
            proc.kill()


@pytest.fixture
def bridges(tmp_path, controller):
    made = Bridges(tmp_path, controller)
    yield made
    made.kill_all()


def _saved_text(bridges):
    path = bridges.autosave_dir / SAVE_FILE
    return path.read_text() if path.exists() else ""


def test_setpoints_come_back_after_a_restart(bridges):
    sim = bridges.sim
    proc, tc = bridges.start()
    caput(tc + "MODE", "MANUAL")
    caput(tc + "SP", 42.5)
    assert sim.get("mode") == "MANUAL" and sim.get("setpoint") == 42.5
    code, log = proc.terminate()          # SIGTERM saves what changed
    assert code == 0 and "Traceback" not in log, log
    assert _saved_text(bridges)

    sim.set("mode", "AUTO")               # the controller was power-cycled meanwhile
    sim.set("setpoint", 30.0)
    before = len(sim.received)
    proc, tc = bridges.start()
    # MODE is restored and written back to the controller at start-up...
    assert wait_until(lambda: "MODE MANUAL" in sim.received[before:], 5), sim.received[before:]
    assert sim.get("mode") == "MANUAL"
    assert wait_until(lambda: caget(tc + "MODE") == "MANUAL", 5)
    # ...while SP is `init_from_device`: the controller's own setpoint wins
    assert not any(c.startswith("SP ") for c in sim.received[before:]), sim.received[before:]
    assert wait_until(lambda: caget(tc + "SP") == "30", 5)
    code, log = proc.terminate()
    assert code == 0, log


def test_periodic_save_without_a_clean_shutdown(bridges):
    """The 5 s autosave period writes the file; a kill -9 afterwards loses nothing."""
    sim = bridges.sim
    proc, tc = bridges.start()
    saved = _saved_text(bridges)
    caput(tc + "MODE", "STANDBY")
    assert wait_until(lambda: _saved_text(bridges) != saved, 8)     # period: 5 s
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)
    sim.set("mode", "AUTO")
    before = len(sim.received)
    proc, tc = bridges.start()
    assert wait_until(lambda: "MODE STANDBY" in sim.received[before:], 5), sim.received[before:]
    assert wait_until(lambda: caget(tc + "MODE") == "STANDBY", 5)
    code, log = proc.terminate()
    assert code == 0, log


@pytest.mark.parametrize("moment, expected", [("before", "MANUAL"), ("after", "STANDBY")])
def test_kill_9_in_the_middle_of_a_save(bridges, tmp_path, moment, expected):
    """kill -9 while a save holds just before / just after its rename: the
    restarted bridge gets the old / the new value, and the file always parses."""
    sim = bridges.sim
    proc, tc = bridges.start()
    caput(tc + "MODE", "MANUAL")
    code, log = proc.terminate()                       # saves MANUAL cleanly
    assert code == 0, log

    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SLOW_SAVE_HOOK)
    mark = tmp_path / "save-mark"
    from tests.bridges.e2e import REPO
    proc, tc = bridges.start(env={"PYTHONPATH": os.pathsep.join([str(hook_dir), REPO]),
                                  "SLOW_SAVE_MARK": str(mark), "SLOW_SAVE_HOLD": "3"})
    caput(tc + "MODE", "STANDBY")
    assert wait_until(lambda: mark.exists() and moment in mark.read_text(), 12), \
        (mark.read_text() if mark.exists() else "no save started", proc.log)
    os.kill(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
    assert moment in mark.read_text()

    sim.set("mode", "AUTO")
    before = len(sim.received)
    proc, tc = bridges.start()
    assert wait_until(lambda: caget(tc + "MODE") == expected, 5), proc.log
    assert wait_until(lambda: "MODE " + expected in sim.received[before:], 5)
    assert "unusable" not in proc.log, proc.log
    code, log = proc.terminate()
    assert code == 0, log


def test_a_corrupt_autosave_file_is_reported_not_fatal(bridges):
    sim = bridges.sim
    bridges.autosave_dir.mkdir()
    (bridges.autosave_dir / SAVE_FILE).write_bytes(b"\x00\xff{{{ half a fi")
    proc, tc = bridges.start()
    assert caget(tc + "MODE") in ("AUTO", "MANUAL", "STANDBY")
    assert "autosave" in proc.log and "unusable" in proc.log, proc.log
    caput(tc + "MODE", "MANUAL")
    code, log = proc.terminate()
    assert code == 0 and "Traceback" not in log, log
    sim.set("mode", "AUTO")
    proc, tc = bridges.start()            # the rewritten file is good again
    assert wait_until(lambda: caget(tc + "MODE") == "MANUAL", 5)
    assert "unusable" not in proc.log
    assert proc.terminate()[0] == 0

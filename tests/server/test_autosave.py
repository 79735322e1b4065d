"""Autosave: atomic rotated files, restore before serving, and surviving kill -9."""
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty
from caproto.server.autosave import (AutosaveFile, AutosaveHelper, autosaved,
                                     restore_before_serving)

from . import ServerThread, run_client


def test_save_then_load_round_trips_and_rotates_backups(tmp_path):
    path = tmp_path / "ioc.json"
    store = AutosaveFile(path, backups=2)
    for generation in range(4):
        store.save({"gain": generation, "name": f"run{generation}", "wf": [1.5, 2.5]})
    assert store.load() == {"gain": 3, "name": "run3", "wf": [1.5, 2.5]}
    assert json.loads((tmp_path / "ioc.json.1").read_text())["values"] == {
        "gain": 2, "name": "run2", "wf": [1.5, 2.5]}
    assert json.loads((tmp_path / "ioc.json.2").read_text())["values"]["gain"] == 1
    assert not (tmp_path / "ioc.json.3").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ioc.json", "ioc.json.1",
                                                          "ioc.json.2"]


def test_numpy_and_bytes_values_are_saved_as_lists(tmp_path):
    numpy = pytest.importorskip("numpy")
    store = AutosaveFile(tmp_path / "a.json")
    store.save({"wf": numpy.arange(3.0), "raw": b"\x01\x02"})
    assert store.load() == {"wf": [0.0, 1.0, 2.0], "raw": [1, 2]}


def test_missing_file_gives_nothing_and_one_log_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "caproto.autosave"):
        assert AutosaveFile(tmp_path / "none.json").load() == {}
    assert len(caplog.records) == 1
    assert "none.json does not exist" in caplog.records[0].getMessage()


def test_a_corrupt_file_falls_back_to_the_newest_good_backup(tmp_path, caplog):
    path = tmp_path / "ioc.json"
    store = AutosaveFile(path)
    store.save({"gain": 1})
    store.save({"gain": 2})
    path.write_text('{"format": "caproto-autosave", "values": {"gain": 3')   # torn
    with caplog.at_level(logging.WARNING, "caproto.autosave"):
        assert store.load() == {"gain": 1}
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "ioc.json is unusable" in message and "ioc.json.1" in message
    (tmp_path / "ioc.json.1").write_text("garbage")
    assert store.load() == {}


KILLED_WRITER = r"""
import os, sys, time
from caproto.server.autosave import AutosaveFile
store = AutosaveFile(sys.argv[1])
store.save({"generation": 1, "payload": ["x" * 100] * 1000})
real_fsync = os.fsync
def stall(fd):
    real_fsync(fd)
    print("IN_SAVE", flush=True)     # the new data sits in the temporary file
    time.sleep(60)
os.fsync = stall
store.save({"generation": 2, "payload": ["y" * 100] * 1000})
"""


@pytest.mark.timeout(60)
def test_kill_9_in_the_middle_of_a_save_leaves_the_previous_good_file(tmp_path):
    path = tmp_path / "ioc.json"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
    try:
        assert proc.stdout.readline().strip() == "IN_SAVE"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the writer was killed before writing its temporary file"
    values = AutosaveFile(path).load()
    assert values["generation"] == 1 and len(values["payload"]) == 1000
    # The next save works despite the stale temporary file.
    AutosaveFile(path).save({"generation": 3})
    assert AutosaveFile(path).load() == {"generation": 3}


# -- the pvproperty integration --------------------------------------------------------

class Settings(PVGroup):
    gain = autosaved(pvproperty(value=1.0, precision=3))
    mode = autosaved(pvproperty(value="slow", enum_strings=["slow", "fast"],
                                dtype=ChannelType.ENUM))
    label = autosaved(pvproperty(value="none", max_length=40))
    counts = pvproperty(value=0)                      # not autosaved
    puts = []

    @gain.putter
    async def gain(self, instance, value):
        Settings.puts.append(value)
        return value


def make_ioc(path, prefix="AUTO:"):
    class IOC(PVGroup):
        settings = SubGroup(Settings, prefix="set:")
        autosave = SubGroup(AutosaveHelper, filename=str(path), period=0.2)
    return IOC(prefix=prefix)


READ_BACK = """
import epics
emit({name: epics.caget(name, as_string=True, timeout=5)
      for name in ['AUTO:set:gain', 'AUTO:set:mode', 'AUTO:set:label', 'AUTO:set:counts']})
"""


@pytest.mark.timeout(90)
def test_values_survive_a_restart_and_are_restored_before_serving(tmp_path):
    path = tmp_path / "ioc.json"
    ioc = make_ioc(path)
    assert restore_before_serving(ioc.pvdb)                 # nothing saved yet
    server = ServerThread("asyncio", ioc.pvdb)
    with server as ctx:
        run_client("""
import epics
epics.caput('AUTO:set:gain', 2.5, wait=True)
epics.caput('AUTO:set:mode', 'fast', wait=True)
epics.caput('AUTO:set:label', 'tuned', wait=True)
epics.caput('AUTO:set:counts', 7, wait=True)
emit(True)
""", env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
        helper = ioc.autosave
        assert server.call(lambda: helper.save(force=True)) is True
    saved = AutosaveFile(path).load()
    assert saved == {"AUTO:set:gain": 2.5, "AUTO:set:mode": "fast",
                     "AUTO:set:label": "tuned"}

    Settings.puts.clear()
    again = make_ioc(path)
    restore_before_serving(again.pvdb)
    assert Settings.puts == []                         # restored without the putter
    with ServerThread("asyncio", again.pvdb) as ctx:
        seen = run_client(READ_BACK, env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
    assert seen == {"AUTO:set:gain": "2.500", "AUTO:set:mode": "fast",
                    "AUTO:set:label": "tuned", "AUTO:set:counts": "0"}


@pytest.mark.timeout(90)
def test_the_helper_saves_changes_periodically(tmp_path):
    path = tmp_path / "ioc.json"
    ioc = make_ioc(path)
    server = ServerThread("asyncio", ioc.pvdb)
    with server as ctx:
        run_client("""
import epics, json, os, sys, time
epics.caput('AUTO:set:gain', 4.25, wait=True)
deadline = time.time() + 10
found = None
while time.time() < deadline:
    try:
        found = json.load(open(%r))['values'].get('AUTO:set:gain')
    except (OSError, ValueError):
        pass
    if found == 4.25:
        break
    time.sleep(0.05)
emit(found)
""" % str(path), env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
    assert AutosaveFile(path).load()["AUTO:set:gain"] == 4.25


@pytest.mark.timeout(60)
def test_a_corrupt_file_never_stops_the_ioc(tmp_path, caplog):
    path = tmp_path / "ioc.json"
    path.write_text("{ this is not json")
    ioc = make_ioc(path)
    with caplog.at_level(logging.WARNING, "caproto.autosave"):
        restore_before_serving(ioc.pvdb)
    assert [r for r in caplog.records if "ioc.json is unusable" in r.getMessage()]
    with ServerThread("asyncio", ioc.pvdb) as ctx:
        seen = run_client(READ_BACK, env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
    assert seen["AUTO:set:gain"] == "1.000" and seen["AUTO:set:mode"] == "slow"


def test_a_saved_value_the_pv_refuses_is_skipped_by_name(tmp_path, caplog):
    path = tmp_path / "ioc.json"
    AutosaveFile(path).save({"AUTO:set:mode": "sideways", "AUTO:set:gain": 3.0})
    ioc = make_ioc(path)
    with caplog.at_level(logging.WARNING, "caproto.autosave"):
        (helper,) = restore_before_serving(ioc.pvdb)
    assert helper.restored == ["AUTO:set:gain"]
    assert ioc.settings.mode.value == "slow" and ioc.settings.gain.value == 3.0
    assert "AUTO:set:mode not restored" in caplog.text


IOC_SCRIPT = """
import sys
from caproto.server import PVGroup, SubGroup, ioc_arg_parser, pvproperty, run
from caproto.server.autosave import AutosaveHelper

class Tuned(PVGroup):
    gain = pvproperty(value=1.0, autosave=True)
    offset = pvproperty(value=0.0)
    autosave = SubGroup(AutosaveHelper, filename=sys.argv.pop(1), period=0.2)

if __name__ == "__main__":
    ioc_options, run_options = ioc_arg_parser(default_prefix="T:", desc="autosave")
    run(Tuned(**ioc_options).pvdb, **run_options)
"""


@pytest.mark.timeout(60)
def test_run_restores_before_the_first_client_connects(tmp_path, free_port):
    from tests.peers import wait_for_tcp
    path = tmp_path / "tuned.json"
    AutosaveFile(path).save({"T:gain": 8.5, "T:offset": 3.0})
    script = tmp_path / "tuned_ioc.py"
    script.write_text(IOC_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, EPICS_CA_SERVER_PORT=str(free_port),
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(tmp_path / "ioc.log", "wb") as log:
        ioc = subprocess.Popen([sys.executable, str(script), str(path)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_tcp(free_port, proc=ioc)
        seen = run_client("import epics\nemit([epics.caget('T:gain', timeout=5), "
                          "epics.caget('T:offset', timeout=5)])",
                          env={"EPICS_CA_SERVER_PORT": str(free_port)})
    finally:
        ioc.kill()
        ioc.wait(10)
    assert seen == [8.5, 0.0]          # offset is not marked: never restored

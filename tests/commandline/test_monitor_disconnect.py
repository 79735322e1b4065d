"""caproto-monitor reports connections as camonitor does, and -t reaches --format.

camonitor and caproto-monitor run side by side on the same softIoc; the
IOC is killed (by PID) and started again on the same port, and the lines
each tool printed are compared with time stamps and elapsed seconds masked
(name, padding, separators, marker text and values must be the same).

The camonitor on PATH is a launcher that merges the real tool's stderr
into its stdout, so libca's "Virtual circuit disconnect" report can be
spliced into camonitor's lines: its lines are picked out of the text by
PV name.
"""
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.commandline import REPO, run_camonitor, run_epics, run_tool

pytestmark = pytest.mark.network

DB = """
record(ai, "DISC:ai") {
    field(VAL, "3.5") field(HIGH, "3") field(HSV, "MINOR") field(PINI, "YES")
}
record(stringin, "DISC:str") { field(VAL, "hello") field(PINI, "YES") }
record(waveform, "DISC:wf") {
    field(FTVL, "LONG") field(NELM, "6") field(INP, {const:[1, 2, 3]})
    field(PINI, "YES")
}
record(calc, "DISC:counter") {
    field(SCAN, ".2 second") field(INPA, "DISC:counter NPP") field(CALC, "A+1")
}
"""
LATE_DB = 'record(ai, "DISC:late") { field(VAL, "7") field(PINI, "YES") }\n'

STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
ELAPSED = re.compile(r"[+-]\d+\.\d{6}")
WAIT = 15.0


class Running:
    """A monitoring tool whose stdout is collected line by line."""

    def __init__(self, argv, env=None, session=False):
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})), cwd=REPO,
            start_new_session=session)
        self.session = session
        self.lines = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.lines)):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.proc.args[0]}: no {what} within "
                             f"{timeout} s; printed {self.lines!r}")

    def stop(self):
        """SIGINT (to the whole launcher session for camonitor); its
        exit status."""
        if self.proc.poll() is None:
            if self.session:
                os.killpg(self.proc.pid, signal.SIGINT)
            else:
                self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            if self.session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode


def camonitor(*args):
    return Running(["camonitor", *args], session=True)


def ours(*args):
    return Running([sys.executable, "-m", "caproto.commandline.monitor", *args],
                   env={"PYTHONPATH": REPO})


def by_pv(lines, names, separator=" "):
    """{name: [line from the name on, ...]} for the lines that report one
    of `names`, wherever the line starts: camonitor's may follow libca
    text, even mid-word (one was spliced into 'Context: "localhost:50811"'
    right after the port).  No name here ends another or appears in
    libca's reports."""
    pattern = re.compile(r"(%s)(?=%s)" % (
        "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)),
        re.escape(separator)))
    found = {name: [] for name in names}
    for line in lines:
        match = pattern.search(line)
        if match:
            found[match.group(1)].append(line[match.start():])
    return found


def masked(line):
    return ELAPSED.sub("<dt>", STAMP.sub("<time>", line))


def shape(lines, names, separator=" "):
    return {name: [masked(line) for line in found]
            for name, found in by_pv(lines, names, separator).items()}


def counted(names, separator, values, disconnects=0):
    """A wait predicate: every PV printed `values` value lines and
    `disconnects` disconnect lines (at least)."""
    def enough(lines):
        found = by_pv(lines, names, separator)
        return all(
            sum("*** disconnected" in line for line in found[name]) >= disconnects
            and sum("***" not in line for line in found[name]) >= values
            for name in names)
    return enough


def local_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


STATIC = ["DISC:ai", "DISC:str", "DISC:wf"]


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("args,separator", [
    ([], " "), (["-t", "n", "-F", ","], ","), (["-t", "sI"], " "),
], ids=["default", "-tn -F,", "-tsI"])
def test_disconnect_and_reconnect_print_what_camonitor_prints(
        softioc, args, separator):
    ioc = softioc(DB)
    tools = [camonitor("-w", "5", *args, *STATIC), ours("-w", "5", *args, *STATIC)]
    try:
        for tool in tools:
            tool.wait_for(counted(STATIC, separator, 1), "first values")
        lost_at = time.time()
        ioc.stop()                              # kill by PID
        for tool in tools:
            tool.wait_for(counted(STATIC, separator, 1, 1), "disconnect lines")
        noticed = time.time()
        softioc(DB, port=ioc.port)              # the same port again
        for tool in tools:
            tool.wait_for(counted(STATIC, separator, 2, 1), "values after "
                          "the server came back")
    finally:
        statuses = [tool.stop() for tool in tools]
    theirs, mine = (shape(tool.lines, STATIC, separator) for tool in tools)
    assert statuses[1] == 0, tools[1].stderr
    assert mine == theirs
    pad = " " if separator == " " else ""
    assert mine["DISC:ai"][1] == (
        f"DISC:ai{pad * 23}{separator}<time> *** disconnected")
    # an array's name is not padded, for its disconnect line too
    assert mine["DISC:wf"][1] == f"DISC:wf{separator}<time> *** disconnected"
    # whatever -t says, the disconnect line carries the local time of the loss
    for name in STATIC:
        line = by_pv(tools[1].lines, [name], separator)[name][1]
        when = local_time(STAMP.search(line).group())
        assert lost_at - 0.001 <= when <= noticed + 0.001


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_pv_not_found_within_w_is_reported_and_still_searched_for(softioc):
    names = ["DISC:late", "DISC:never"]
    tools = [camonitor("-w", "1", *names), ours("-w", "1", *names)]
    try:
        for tool in tools:
            tool.wait_for(lambda lines: all(
                len(found) == 1 for found in by_pv(lines, names).values()),
                "not-connected lines")
        softioc(LATE_DB)
        for tool in tools:
            tool.wait_for(lambda lines: len(
                by_pv(lines, names)["DISC:late"]) == 2, "the late PV's value")
    finally:
        statuses = [tool.stop() for tool in tools]
    theirs, mine = (shape(tool.lines, names) for tool in tools)
    assert mine == theirs
    assert mine == {
        "DISC:late": [f"{'DISC:late':<30} *** Not connected (PV not found)",
                      f"{'DISC:late':<30} <time> 7  "],
        "DISC:never": [f"{'DISC:never':<30} *** Not connected (PV not found)"]}
    # a PV that never connected fails the run, naming it (and only it)
    assert statuses[1] == 1
    assert "DISC:never" in tools[1].stderr and "DISC:late" not in tools[1].stderr


def test_not_connected_line_uses_the_separator():
    theirs = run_camonitor("-w", "0.5", "-F", "|", "DISC:absent", seconds=2.0)
    result = run_tool("monitor", "-w", "0.5", "--duration", "0.5", "-F", "|",
                      "DISC:absent")
    assert result.stdout.splitlines() == theirs == [
        "DISC:absent|*** Not connected (PV not found)"]
    assert result.returncode == 1 and "DISC:absent" in result.stderr


# -- -t with --format ------------------------------------------------------------

def counted_up(value, timeout=10.0):
    """Wait until DISC:counter has counted to `value` (it has processed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = run_epics("caget", "-t", "-w", "2", "DISC:counter").stdout.split()
        if got and float(got[0]) >= value:
            return
        time.sleep(0.1)
    raise AssertionError(f"DISC:counter did not reach {value} in {timeout} s")


CAMONITOR_LAYOUT = "{pv_name:<30} {timestamp} {value} {status} {severity}"


@pytest.mark.parametrize("key", ["s", "n", "c", "sc", "sI", "cr", "si"])
def test_format_timestamp_is_the_t_column_camonitor_prints(softioc, key):
    softioc(DB)
    counted_up(2)       # both tools see the counter processed, never UDF
    names = ["DISC:ai", "DISC:counter"]
    theirs = run_camonitor("-w", "5", "-t", key, *names, seconds=1.5)
    result = run_tool("monitor", "-w", "5", "--duration", "1.5", "-t", key,
                      "--format", CAMONITOR_LAYOUT, *names)
    assert result.returncode == 0, result.stderr
    mine = shape(result.stdout.splitlines(), names)
    expected = shape(theirs, names)
    assert len(mine["DISC:counter"]) >= 3 and len(expected["DISC:counter"]) >= 3
    for name in names:
        # the counter's value changes; its first line and the set of later
        # line shapes do not
        strip = (lambda line: re.sub(r" \d+  $", " <n>  ", line))
        assert strip(mine[name][0]) == strip(expected[name][0])
        assert ({strip(line) for line in mine[name][1:]}
                == {strip(line) for line in expected[name][1:]})


def test_format_strftime_spec_reads_the_clock_t_chose(softioc):
    softioc(DB)
    time.sleep(1.5)             # the PINI stamp is now well in the past
    spec = "{timestamp:%Y-%m-%d %H:%M:%S.%f}"

    def stamp(key):
        result = run_tool("monitor", "-w", "5", "--maximum", "1", "-t", key,
                          "--format", spec, "DISC:ai")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    server = stamp("s")
    (camonitor_line,) = run_camonitor("-w", "5", "DISC:ai", seconds=1.0)
    assert server == STAMP.search(camonitor_line).group()
    before = time.time()
    client = local_time(stamp("c"))
    assert before - 0.001 <= client <= time.time()
    assert local_time(server) < before - 1.0
    # -t n: no time at all, with or without a spec
    result = run_tool("monitor", "-w", "5", "--maximum", "1", "-t", "n",
                      "--format", "[{timestamp}] [" + spec + "] {value}",
                      "DISC:ai")
    assert result.stdout.splitlines() == ["[] [] 3.5"]

"""Helpers for the command-line tool tests: a database and subprocess runners.

Tools are run as ``python -m caproto.commandline.<tool>`` so the tests work
before the package is installed; the epics-base tools (caget, caput,
camonitor) come from PATH.  Every run is bounded in time.
"""
import os
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Records whose values and time stamps stay put once the IOC is up (PINI),
# so two tools reading them one after the other must print the same text.
STATIC_DB = """
record(ai, "CLI:ai") {
    field(VAL, "3.14159") field(EGU, "mm") field(PREC, "3")
    field(HOPR, "10") field(LOPR, "-10") field(HIGH, "3") field(HSV, "MINOR")
    field(PINI, "YES")
}
record(longin, "CLI:longin") { field(VAL, "42") field(EGU, "cts") field(HOPR, "100") field(PINI, "YES") }
record(mbbi, "CLI:mbbi") {
    field(ZRST, "Zero") field(ONST, "One") field(TWST, "Two") field(VAL, "2") field(PINI, "YES")
}
record(bo, "CLI:bo") { field(ZNAM, "Off") field(ONAM, "On") field(VAL, "1") field(PINI, "YES") }
record(stringin, "CLI:stringin") { field(VAL, "hello world") field(PINI, "YES") }
record(waveform, "CLI:wf") { field(FTVL, "LONG") field(NELM, "6") }
record(waveform, "CLI:chars") { field(FTVL, "CHAR") field(NELM, "32") }
record(calc, "CLI:calc") { field(CALC, "A*B") field(A, "6") field(B, "7") field(PREC, "1") field(PINI, "YES") }
record(ao, "CLI:ao") { field(VAL, "0") field(PREC, "2") field(DRVH, "100") field(DRVL, "-100") field(PINI, "YES") }
record(longout, "CLI:longout") { field(VAL, "0") field(PINI, "YES") }
record(mbbo, "CLI:mbbo") { field(ZRST, "Zero") field(ONST, "One") field(TWST, "Two") field(VAL, "0") field(PINI, "YES") }
record(stringout, "CLI:stringout") { field(VAL, "initial") field(PINI, "YES") }
record(waveform, "CLI:wf_put") { field(FTVL, "LONG") field(NELM, "5") }
record(calc, "CLI:counter") {
    field(SCAN, ".1 second") field(INPA, "CLI:counter NPP") field(CALC, "A+1")
}
"""


def run_tool(tool, *args, timeout=20, env=None, input=None):
    """Run caproto-<tool> as a module; returns the CompletedProcess (text)."""
    environment = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", f"caproto.commandline.{tool}", *args],
        capture_output=True, text=input is None or isinstance(input, str),
        timeout=timeout, env=environment, input=input, cwd=REPO)


def run_epics(program, *args, timeout=20, env=None):
    """Run an epics-base tool (caget, caput, camonitor) from PATH."""
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([program, *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def run_interrupted(argv, seconds, env=None):
    """Run a monitor until Ctrl-C after `seconds` (or its own exit):
    ``(stdout lines, stderr, exit status)``."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, **(env or {})))
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return out.splitlines(), err, proc.returncode


def run_camonitor(*args, seconds=3.0):
    """camonitor runs until interrupted: its stdout lines after `seconds`."""
    return run_interrupted(["camonitor", *args], seconds)[0]


def start_ioc(where, db_text=STATIC_DB):
    """A softIoc serving `db_text` on the session's EPICS_CA_SERVER_PORT
    (for module-scoped fixtures; the caller stops it)."""
    from tests.peers import SoftIoc
    db = os.path.join(str(where), "cli.db")
    with open(db, "w") as f:
        f.write(db_text)
    return SoftIoc(db, int(os.environ["EPICS_CA_SERVER_PORT"]),
                   os.path.join(str(where), "ioc.log"))

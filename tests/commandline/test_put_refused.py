"""caproto-put reports a refused put as caput does, -c or not.

Without -c both tools send a plain write; the server refuses a write to a
record's RTYP field with an ErrorResponse, which libca shows as a
"CA.Client.Exception" block between caput's "Old :" and "New :" lines.
A field the server grants read access only (.NAME) is refused before
anything is sent ("Write access denied").  caproto-put prints the same
"Old :"/"New :" lines on stdout, the same ECA message in one line on
stderr, and exits 1.
"""
import re

import pytest

from tests.commandline import run_epics, run_tool, start_ioc

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    ioc = start_ioc(tmp_path_factory.mktemp("put-refused"))
    yield ioc
    ioc.stop()


def caput_report(*args):
    """caput's stdout split into its value lines and its error text."""
    result = run_epics("caput", "-w", "5", *args)
    lines = (result.stdout + result.stderr).splitlines()
    values = [line for line in lines if line.startswith(("Old :", "New :"))]
    text = "\n".join(lines)
    warning = re.search(r'Warning: "([^"]+)"', text)
    error = re.search(r"(?:from put operation|writing data): (.+)$", text, re.M)
    message = (warning or error).group(1)
    return values, message


@pytest.mark.parametrize("args", [
    ["CLI:ai.RTYP", "calc"],              # ErrorResponse to a plain write
    ["-c", "CLI:ai.RTYP", "calc"],        # refused WriteNotify
    ["CLI:ao.NAME", "other"],             # no write access
    ["-l", "CLI:ai.RTYP", "calc"],
], ids=" ".join)
def test_refused_put_prints_what_caput_prints(ioc, args):
    values, message = caput_report(*args)
    ours = run_tool("put", "-w", "5", *args)
    assert ours.returncode == 1
    assert ours.stdout.splitlines() == values
    (error,) = ours.stderr.splitlines()
    assert error.startswith("caproto-put: ")
    assert message in error and args[-2] in error


def test_refused_plain_write_is_heard_without_a_notify(ioc):
    result = run_tool("put", "-w", "5", "-v", "CLI:ai.RTYP", "calc")
    assert result.returncode == 1
    sent = [line for line in result.stderr.splitlines() if " -> " in line]
    assert any("WriteRequest(" in line for line in sent)
    assert not any("WriteNotifyRequest" in line for line in sent)
    assert "ECA_PUTFAIL" in result.stderr.splitlines()[-1]


def test_accepted_plain_put_still_matches_caput(ioc):
    theirs = run_epics("caput", "-w", "5", "CLI:ao", "7")
    run_epics("caput", "-w", "5", "CLI:ao", "0")
    ours = run_tool("put", "-w", "5", "CLI:ao", "7")
    assert ours.returncode == 0 and ours.stderr == ""
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()

"""caproto-get -c reads as caget -c does (ca_get_callback, then wait).

caget -c asks for the channel's current element count (count 0, CA 4.13
dynamic arrays) where a plain caget asks for the full count: a waveform
holding fewer than NELM elements prints differently.  Each case runs both
tools on the same softIoc records and compares the output line by line.
"""
import pytest

from tests.commandline import run_epics, run_tool, start_ioc

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    ioc = start_ioc(tmp_path_factory.mktemp("get-callback"))
    # 4 of the waveform's 6 elements, 3 of the char array's 32 ("hi" + NUL).
    run_epics("caput", "-a", "CLI:wf", "4", "1", "-2", "30", "400")
    run_epics("caput", "-S", "CLI:chars", "hi")
    yield ioc
    ioc.stop()


CASES = [
    ["CLI:wf"], ["-# 2", "CLI:wf"], ["-# 9", "CLI:wf"], ["-a", "CLI:wf"],
    ["-t", "CLI:ai", "CLI:wf", "CLI:stringin"], ["CLI:chars"], ["-S", "CLI:chars"],
    ["-S", "-# 1", "CLI:chars"], ["-d", "TIME_LONG", "CLI:wf"],
    ["-d", "CTRL_DOUBLE", "CLI:ai"], ["-F", ",", "CLI:ai", "CLI:wf"],
    ["CLI:ai", "CLI:mbbi", "CLI:bo", "CLI:calc"], ["-n", "CLI:mbbi"],
]


def _args(case):
    return [part for item in case for part in item.split(" ", 1)]


@pytest.mark.parametrize("case", CASES, ids=" ".join)
def test_callback_get_matches_caget_c(ioc, case):
    args = _args(case)
    theirs = run_epics("caget", "-w", "5", "-c", *args)
    ours = run_tool("get", "-w", "5", "-c", *args)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()


@pytest.mark.parametrize("case", [["CLI:wf"], ["CLI:chars"], ["-a", "CLI:wf"]],
                         ids=" ".join)
def test_callback_get_differs_from_plain_get_as_caget_does(ioc, case):
    plain = run_tool("get", "-w", "5", *case)
    callback = run_tool("get", "-w", "5", "-c", *case)
    assert plain.stdout.splitlines() == run_epics("caget", "-w", "5",
                                                  *case).stdout.splitlines()
    assert callback.stdout != plain.stdout


def test_callback_get_asks_for_the_current_count(ioc):
    result = run_tool("get", "-w", "5", "-v", "-c", "CLI:wf")
    assert result.returncode == 0, result.stderr
    requests = [line for line in result.stderr.splitlines()
                if "ReadNotifyRequest" in line]
    assert len(requests) == 1 and "data_count=0" in requests[0]
    assert result.stdout.split() == ["CLI:wf", "4", "1", "-2", "30", "400"]


def test_callback_get_of_unknown_pv_fails_like_a_plain_get(ioc):
    result = run_tool("get", "-w", "0.5", "-c", "CLI:nothing_here", "CLI:ai")
    assert result.returncode == 1
    assert "CLI:nothing_here" in result.stderr
    assert result.stdout.split() == ["CLI:ai", "3.14159"]

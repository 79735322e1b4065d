"""caproto-get/-put/-monitor print what caget/caput/camonitor print.

Every comparison runs the epics-base tool and ours against the same softIoc
records and compares the output line by line; values are also checked
against pyepics (libca) where it reads the same thing.
"""
import os

import pytest

from tests.commandline import STATIC_DB, run_camonitor, run_epics, run_tool

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def ioc():
    import tempfile
    from tests.peers import SoftIoc
    tmp = tempfile.mkdtemp(prefix="cli-")
    db = os.path.join(tmp, "cli.db")
    with open(db, "w") as f:
        f.write(STATIC_DB)
    ioc = SoftIoc(db, int(os.environ["EPICS_CA_SERVER_PORT"]),
                  os.path.join(tmp, "ioc.log"))
    # Arrays start empty; give them contents (with caput, not our tool).
    run_epics("caput", "-a", "CLI:wf", "4", "1", "-2", "30", "400")
    run_epics("caput", "-S", "CLI:chars", "hi there")
    yield ioc
    ioc.stop()


GET_CASES = [
    ["CLI:ai", "CLI:longin", "CLI:mbbi", "CLI:bo", "CLI:stringin", "CLI:wf",
     "CLI:calc"],
    ["-a", "CLI:ai", "CLI:longin", "CLI:mbbi", "CLI:wf"],
    ["-t", "CLI:ai", "CLI:wf", "CLI:stringin"],
    ["-n", "CLI:mbbi", "CLI:bo"],
    ["-d", "DBR_CTRL_DOUBLE", "CLI:ai"],
    ["-d", "31", "CLI:mbbi"],
    ["-d", "GR_LONG", "CLI:longin"],
    ["-d", "CTRL_SHORT", "CLI:longin"],
    ["-d", "TIME_STRING", "CLI:wf"],
    ["-d", "STSACK_STRING", "CLI:ai"],
    ["-d", "CLASS_NAME", "CLI:calc"],
    ["-d", "DOUBLE", "CLI:mbbi"],
    ["-F", ",", "CLI:ai", "CLI:wf"],
    ["-s", "CLI:ai", "CLI:calc"],
    ["-s", "-0x", "CLI:longin"], ["-n", "-s", "CLI:mbbi"], ["-s", "CLI:wf"],
    ["-f3", "CLI:ai"], ["-e2", "CLI:ai"], ["-g", "2", "CLI:ai"],
    ["-lx", "CLI:ai"], ["-0x", "CLI:longin"], ["-0o", "CLI:longin"],
    ["-0b", "CLI:longin"],
    ["-S", "CLI:chars"], ["-#", "2", "CLI:wf"],
]


@pytest.mark.parametrize("args", GET_CASES, ids=lambda a: " ".join(a))
def test_get_matches_caget(ioc, args):
    # A generous -w: a loaded machine must not turn into a different output.
    theirs = run_epics("caget", "-w", "5", *args)
    ours = run_tool("get", "-w", "5", *args)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()


def test_get_values_match_pyepics(ioc):
    epics = pytest.importorskip("epics")
    names = ["CLI:ai", "CLI:longin", "CLI:mbbi", "CLI:stringin", "CLI:calc"]
    ours = run_tool("get", "-w", "5", "-s", "-t", *names)
    assert ours.returncode == 0, ours.stderr
    expected = [epics.caget(name, as_string=True, timeout=5) for name in names]
    assert ours.stdout.splitlines() == expected


def test_get_wide_status_comes_from_the_record(ioc):
    line = run_tool("get", "-w", "5", "-a", "CLI:ai").stdout.split()
    assert line[-2:] == ["HIGH", "MINOR"]       # 3.14 > HIGH=3: a MINOR alarm


def test_get_custom_format(ioc):
    result = run_tool("get", "-w", "5", "--format", "{pv_name}={value} {units} [{severity}]",
                      "CLI:ai", "CLI:longin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["CLI:ai=3.14159 mm [MINOR]",
                                          "CLI:longin=42 cts []"]
    bad = run_tool("get", "--format", "{nonsense}", "CLI:ai")
    assert bad.returncode == 1 and "nonsense" in bad.stderr


def test_get_verbose_logs_every_command(ioc):
    result = run_tool("get", "-w", "5", "-v", "CLI:ai")
    assert result.returncode == 0
    for command in ("SearchRequest", "SearchResponse", "CreateChanRequest",
                    "CreateChanResponse", "ReadNotifyRequest",
                    "ReadNotifyResponse"):
        assert command in result.stderr
    assert result.stdout.split() == ["CLI:ai", "3.14159"]


def test_get_unknown_pv_one_line_and_failure(ioc):
    result = run_tool("get", "-w", "0.5", "CLI:nothing_here", "CLI:ai")
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "CLI:nothing_here" in errors[0]
    assert "timed out" in errors[0]
    assert result.stdout.split() == ["CLI:ai", "3.14159"]   # the others still print


def test_get_bad_type_name_is_refused(ioc):
    result = run_tool("get", "-d", "DBR_NONSENSE", "CLI:ai")
    assert result.returncode != 0
    assert "DBR_NONSENSE" in result.stderr.splitlines()[-1]


# -- caproto-put ---------------------------------------------------------------

PUT_CASES = [  # (reset arguments for caput, arguments of the put under test)
    (["CLI:ao", "1"], ["CLI:ao", "2.5"]),
    (["CLI:ao", "1"], ["-c", "CLI:ao", "-7.25"]),
    (["CLI:ao", "1"], ["-t", "CLI:ao", "3"]),
    (["CLI:ao", "1"], ["-l", "CLI:ao", "4"]),
    (["CLI:longout", "0"], ["CLI:longout", "77"]),
    (["CLI:mbbo", "0"], ["CLI:mbbo", "Two"]),
    (["CLI:mbbo", "0"], ["CLI:mbbo", "1"]),
    (["CLI:mbbo", "0"], ["-n", "CLI:mbbo", "2"]),
    (["CLI:stringout", "x"], ["CLI:stringout", "hello", "world"]),
    (["-a", "CLI:wf_put", "1", "0"], ["-a", "CLI:wf_put", "3", "4", "5", "6"]),
    (["-S", "CLI:chars", "hi there"], ["-S", "CLI:chars", "long string!"]),
]


@pytest.mark.parametrize("reset,args", PUT_CASES, ids=lambda a: " ".join(a))
def test_put_matches_caput(ioc, reset, args):
    assert run_epics("caput", "-w", "5", *reset).returncode == 0
    theirs = run_epics("caput", "-w", "5", *args)
    assert run_epics("caput", "-w", "5", *reset).returncode == 0
    ours = run_tool("put", "-w", "5", *args)
    assert ours.returncode == 0, ours.stderr
    # -l prints time stamps: each tool's own put makes its own.
    strip = (lambda line: line.split()[:3] + line.split()[5:]) if "-l" in args \
        else (lambda line: line)
    assert [strip(l) for l in ours.stdout.splitlines()] == \
        [strip(l) for l in theirs.stdout.splitlines()]


def test_put_result_seen_by_pyepics(ioc):
    epics = pytest.importorskip("epics")
    assert run_tool("put", "-w", "5", "CLI:ao", "12.5").returncode == 0
    assert epics.caget("CLI:ao", timeout=5, use_monitor=False) == 12.5
    assert run_tool("put", "-w", "5", "CLI:mbbo", "One").returncode == 0
    assert epics.caget("CLI:mbbo", timeout=5, use_monitor=False) == 1


@pytest.mark.parametrize("args,names", [
    (["CLI:ao", "not-a-number"], ["not-a-number", "CLI:ao"]),
    (["CLI:mbbo", "Bogus"], ["Bogus", "Zero"]),
    (["CLI:ai.RTYP", "calc"], ["CLI:ai.RTYP", "failed"]),
    (["-w", "0.5", "CLI:nothing_here", "1"], ["CLI:nothing_here", "timed out"]),
    (["-a", "CLI:wf_put", "3", "1"], ["count 3"]),
], ids=["wrong type", "bad enum", "read-only field", "no server", "bad array"])
def test_put_errors_one_line_and_failure(ioc, args, names):
    result = run_tool("put", *args)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    for name in names:
        assert name in errors[0]


# -- caproto-monitor -----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["CLI:ai", "CLI:mbbi", "CLI:wf", "CLI:stringin"],
    ["-n", "CLI:mbbi"], ["-F", "|", "CLI:ai", "CLI:wf"], ["-S", "CLI:chars"],
    ["-s", "CLI:ai", "CLI:calc", "CLI:longin", "CLI:mbbi", "CLI:wf"],
], ids=lambda a: " ".join(a))
def test_monitor_first_updates_match_camonitor(ioc, args):
    # Static records: one update each, printed as soon as connected.
    theirs = run_camonitor("-w", "5", *args, seconds=1.5)
    ours = run_tool("monitor", "-w", "5", "--duration", "1.5", *args)
    assert ours.returncode == 0, ours.stderr
    assert sorted(ours.stdout.splitlines()) == sorted(theirs)


def _values(lines):
    return [float(line.split()[-1]) for line in lines]


def test_monitor_maximum_counts_updates(ioc):
    result = run_tool("monitor", "-w", "5", "--maximum", "4", "CLI:counter")
    assert result.returncode == 0, result.stderr
    values = _values(result.stdout.splitlines())
    assert len(values) == 4
    assert [b - a for a, b in zip(values, values[1:])] == [1, 1, 1]


def test_monitor_channel_filter_is_applied_by_the_server(ioc):
    result = run_tool("monitor", "-w", "5", "--maximum", "4", 'CLI:counter.{"dbnd":{"abs":3.5}}')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith('CLI:counter.{"dbnd":{"abs":3.5}} ') for line in lines)
    values = _values(lines)
    assert len(values) == 4 and all(b - a >= 4 for a, b in zip(values, values[1:]))


def test_monitor_alarm_mask_gets_no_value_updates(ioc):
    # With -m a only alarm changes (and the initial value) arrive.
    result = run_tool("monitor", "-w", "5", "-m", "a", "--duration", "1.0", "CLI:counter")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_monitor_errors(ioc):
    bad_mask = run_tool("monitor", "-m", "vz", "CLI:ai")
    assert bad_mask.returncode != 0 and "'z'" in bad_mask.stderr
    missing = run_tool("monitor", "-w", "0.5", "--duration", "1", "CLI:nothing_here")
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "CLI:nothing_here" in missing.stderr


def test_get_array_above_max_array_bytes_is_one_clear_error(ioc):
    result = run_tool("get", "-w", "5", "CLI:wf", env={"EPICS_CA_MAX_ARRAY_BYTES": "8"})
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1
    assert "CLI:wf" in errors[0] and "EPICS_CA_MAX_ARRAY_BYTES" in errors[0]


def test_timestamps_round_to_the_microsecond_like_caget():
    from caproto import ChannelType, build_metadata
    from caproto.commandline._format import format_timestamp

    def stamp(seconds, ns):
        return format_timestamp(build_metadata(
            ChannelType.TIME_DOUBLE, {"secondsSinceEpoch": seconds, "nanoSeconds": ns}))

    assert stamp(1000, 952092531).endswith(".952093")   # pairs seen from caget
    assert stamp(1000, 463392999).endswith(".463393")
    assert stamp(1000, 999999600) == stamp(1001, 0)     # rounds into the next second

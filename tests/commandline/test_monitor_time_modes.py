"""caproto-monitor -t KEY prints camonitor's time column, line by line.

Both tools watch the same softIoc records with the same -t key.  Server
time stamps of records that do not change are deterministic and compared
as they are; client clocks and elapsed seconds are masked (their layout --
width, sign, parentheses, which line is absolute -- is still compared).
The arithmetic of relative and incremental times is checked on the
TimeColumn itself with made-up stamps.
"""
import re

import pytest

from caproto import ChannelType, build_metadata
from caproto.commandline.monitor import TimeColumn, parse_time_key
from tests.commandline import run_camonitor, run_tool, start_ioc

pytestmark = pytest.mark.network

STATIC = ["CLI:ai", "CLI:mbbi", "CLI:wf", "CLI:stringin"]


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    ioc = start_ioc(tmp_path_factory.mktemp("monitor-time"))
    yield ioc
    ioc.stop()


def both(*args, seconds=1.5):
    theirs = run_camonitor("-w", "5", *args, seconds=seconds)
    ours = run_tool("monitor", "-w", "5", "--duration", str(seconds), *args)
    assert ours.returncode == 0, ours.stderr
    return ours.stdout.splitlines(), theirs


@pytest.mark.parametrize("key", ["n", "s", "sn", "sr", "si", "sI"])
def test_static_records_match_camonitor_exactly(ioc, key):
    # One update per record: each is its first line, printed absolute.
    ours, theirs = both(f"-t{key}", *STATIC)
    assert len(theirs) == len(STATIC)
    assert sorted(ours) == sorted(theirs)


def test_no_timestamp_leaves_an_empty_column(ioc):
    ours, theirs = both("-t", "n", "CLI:ai")
    assert ours == theirs == [f"{'CLI:ai':<30}  3.14159 HIGH MINOR"]


STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
ELAPSED = re.compile(r"[+-]\d+\.\d{6}")


def shapes(lines):
    """{pv: (first line masked, {later lines masked})}: what is the same
    in every run whatever the clock says."""
    first, later = {}, {}
    for line in lines:
        name = line.split()[0]
        masked = ELAPSED.sub("<dt>", STAMP.sub("<time>", line))
        masked = re.sub(r" \d+  $", " <n>  ", masked)       # counter values
        if name in first:
            later.setdefault(name, set()).add(masked)
        else:
            first[name] = masked
    return {name: (first[name], later.get(name, set())) for name in first}


@pytest.mark.parametrize("key", ["c", "sc", "sr", "cr", "si", "sci", "cI",
                                 "scI"])
def test_changing_record_layout_matches_camonitor(ioc, key):
    ours, theirs = both(f"-t{key}", "CLI:counter", "CLI:ai", seconds=1.5)
    assert sum(line.startswith("CLI:counter") for line in theirs) >= 3
    assert sum(line.startswith("CLI:counter") for line in ours) >= 3
    assert shapes(ours) == shapes(theirs)


def test_bad_keys_are_refused_naming_the_letter(ioc):
    wrong = run_tool("monitor", "-t", "sx", "CLI:ai")
    assert wrong.returncode == 2 and "'x'" in wrong.stderr
    sourceless = run_tool("monitor", "-t", "r", "CLI:ai")
    assert sourceless.returncode == 2
    assert "need s (server) or c (client)" in sourceless.stderr


# -- the arithmetic, with made-up stamps ----------------------------------------

def meta(seconds, nanoseconds=0):
    """DBR_TIME metadata `seconds` after the EPICS epoch."""
    return build_metadata(ChannelType.TIME_DOUBLE, {
        "secondsSinceEpoch": seconds, "nanoSeconds": nanoseconds})


def ns(seconds):
    return int(round(seconds * 1e9))


def column(key, start):
    return TimeColumn(parse_time_key(key), ns(start))


def test_relative_server_times_count_from_the_first_update():
    times = column("sr", start=2000.0)
    first = times.text("a", meta(1000, 250000000), ns(2001))
    assert first == column("s", 0).text("a", meta(1000, 250000000), 0)
    assert times.text("b", meta(1000, 750000000), ns(2002)) != first   # absolute
    assert times.text("a", meta(1003, 0), ns(2003)) == " " * 14 + "   +2.750000"
    assert times.text("b", meta(999, 0), ns(2004)) == " " * 14 + "   -1.250000"


def test_relative_client_times_count_from_the_start():
    times = column("cr", start=2000.0)
    assert times.text("a", meta(1), ns(2000.5)).startswith("(")
    assert times.text("a", meta(2), ns(2012.25)) == " " * 14 + "(  +12.250000)"


def test_incremental_times_follow_any_or_the_same_channel():
    anyone, same = column("sci", start=0), column("scI", start=0)
    for times in (anyone, same):
        times.text("a", meta(100), ns(10))
        times.text("b", meta(105), ns(11))
    assert anyone.text("a", meta(107), ns(15)) == (
        " " * 14 + "   +2.000000" + " " * 14 + "(   +4.000000)")
    assert same.text("a", meta(107), ns(15)) == (
        " " * 14 + "   +7.000000" + " " * 14 + "(   +5.000000)")


def test_absolute_server_and_client_are_joined_as_camonitor_does():
    text = column("sc", start=0).text("a", meta(10, 123456789),
                                      ns(1.7e9))
    server, client = text.split("(")
    assert STAMP.fullmatch(server) and STAMP.fullmatch(client.rstrip(")"))
    assert server.endswith(".123457")        # rounded as caget rounds

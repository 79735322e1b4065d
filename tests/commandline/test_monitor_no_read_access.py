"""caproto-monitor with a PV it may not read: camonitor prints nothing for
that PV and goes on monitoring the others.  So does caproto-monitor, after
one stderr line naming the PV (it used to stop with a protocol error and
monitor nothing); it exits 1 at the end, as caproto-get does."""
import sys

import pytest

import caproto as ca
from tests.commandline import REPO, run_interrupted
from tests.server import ServerThread

pytestmark = pytest.mark.network


class Unreadable(ca.ChannelDouble):
    def check_access(self, hostname, username):
        return ca.AccessRights.NO_ACCESS


def monitor(command, port, seconds=2.0):
    """Run a monitor against `port` for `seconds`, then Ctrl-C."""
    return run_interrupted(command, seconds,
                           env={"PYTHONPATH": REPO, "EPICS_CA_SERVER_PORT": str(port)})


def test_a_pv_without_read_access_does_not_stop_the_others():
    db = {"NRA:secret": Unreadable(value=1.0), "NRA:open": ca.ChannelDouble(value=2.0)}
    with ServerThread("asyncio", db) as context:
        theirs, _, _ = monitor(["camonitor", "-t", "n", "NRA:secret", "NRA:open"],
                               context.port)
        ours, err, code = monitor(
            [sys.executable, "-m", "caproto.commandline.monitor", "-t", "n",
             "NRA:secret", "NRA:open"], context.port)
    assert [line.split() for line in theirs] == [["NRA:open", "2"]]
    assert [line.split() for line in ours] == [["NRA:open", "2"]]
    assert "no read access to 'NRA:secret'" in err
    assert "NRA:open" not in err and "Traceback" not in err
    assert code == 1

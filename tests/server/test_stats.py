"""IOC health PVs (devIocStats names) read through libca."""
import os
import re
import socket

import pytest

from caproto.server import PVGroup, SubGroup, pvproperty
from caproto.server.stats import IocStats, format_uptime, open_files, system_memory

from . import LAYERS, ServerThread, run_client


def test_uptime_text_is_devIocStats_format():
    assert format_uptime(0) == "0 days, 00:00:00"
    assert format_uptime(93784.9) == "1 days, 02:03:04"


def test_host_measurements_are_plausible():
    available, total = system_memory()
    assert 0 < available <= total
    count, limit = open_files()
    with open(__file__):
        assert open_files()[0] == count + 1
    assert limit == 0 or count < limit


def test_update_period_must_be_positive():
    class IOC(PVGroup):
        stats = SubGroup(IocStats, update_period=0)
    with pytest.raises(ValueError, match="update_period must be > 0"):
        IOC(prefix="bad:")


class StatsIOC(PVGroup):
    value = pvproperty(value=1.0)
    stats = SubGroup(IocStats, prefix="stats:", update_period=0.1)


CLIENT = """
import time, epics
from epics import ca
names = ['S:stats:' + n for n in ('HEARTBEAT', 'CA_CLNT_CNT', 'CA_CONN_CNT')]
chids = [ca.create_channel(n, connect=False, auto_cb=False) for n in names]
for chid in chids:
    assert ca.connect_channel(chid, timeout=10)
first = ca.get(chids[0])
deadline = time.time() + 10
while ca.get(chids[0]) < first + 2 and time.time() < deadline:   # two refreshes later
    time.sleep(0.05)
out = {n: ca.get(c) for n, c in zip(names, chids)}
for name in ('UPTIME', 'HOSTNAME', 'PROCESS_ID', 'MEM_USED', 'MEM_MAX', 'FD_CNT',
             'FD_MAX', 'IOC_CPU_LOAD', 'SYS_CPU_LOAD', 'RECORD_CNT', 'START_CNT',
             'EPICS_VERS', 'STARTTOD', 'TOD'):
    out[name] = epics.caget('S:stats:' + name, timeout=5)
out['writable'] = bool(ca.write_access(chids[0]))
out['heartbeat_moves'] = ca.get(chids[0]) > first
emit(out)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layer", LAYERS)
def test_health_pvs_through_libca(layer, tmp_path):
    ioc = StatsIOC(prefix="S:")
    with ServerThread(layer, ioc.pvdb) as ctx:
        seen = run_client(CLIENT, env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
    assert seen["S:stats:CA_CLNT_CNT"] == 1          # this client's one circuit
    assert seen["S:stats:CA_CONN_CNT"] == 3          # its three channels
    assert seen["heartbeat_moves"] and not seen["writable"]
    assert re.fullmatch(r"\d+ days, \d\d:\d\d:\d\d", seen["UPTIME"])
    assert seen["HOSTNAME"] == socket.gethostname()[:39]
    assert seen["PROCESS_ID"] == os.getpid()          # the server runs in this process
    assert 0 < seen["MEM_USED"] < seen["MEM_MAX"]
    assert 0 < seen["FD_CNT"] and (seen["FD_MAX"] == 0 or seen["FD_CNT"] < seen["FD_MAX"])
    assert 0 <= seen["IOC_CPU_LOAD"] <= 100 and 0 <= seen["SYS_CPU_LOAD"] <= 100
    assert seen["RECORD_CNT"] == len(ioc.pvdb)
    assert seen["START_CNT"] == 1
    assert seen["EPICS_VERS"].startswith("caproto")
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", seen["STARTTOD"])


@pytest.mark.timeout(60)
def test_start_count_persists_across_starts(tmp_path):
    counts = []
    for _ in range(2):
        class IOC(PVGroup):
            stats = SubGroup(IocStats, prefix="stats:", update_period=0.1,
                             start_count_file=str(tmp_path / "starts.json"))
        ioc = IOC(prefix="C:")
        with ServerThread("asyncio", ioc.pvdb) as ctx:
            counts.append(run_client("""
import time, epics
deadline = time.time() + 10
value = None
while time.time() < deadline:
    value = epics.caget('C:stats:START_CNT', timeout=5)
    if epics.caget('C:stats:HEARTBEAT', timeout=5):
        break
    time.sleep(0.05)
emit(epics.caget('C:stats:START_CNT', timeout=5))
""", env={"EPICS_CA_SERVER_PORT": str(ctx.port)}))
    assert counts == [1, 2]

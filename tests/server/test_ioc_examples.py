"""Every caproto/ioc_examples IOC, run as ``python -m`` and used through libca.

Each IOC runs in its own process on its own port, started with --list-pvs;
clients (epics-base tools, pyepics) get that port through the environment.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import _free_port
from tests.peers import wait_for_tcp

from . import run_client, run_tool

pytestmark = pytest.mark.timeout(90)


class ExampleIOC:
    """``python -m caproto.ioc_examples.<module> --list-pvs ...`` on a fresh port."""

    def __init__(self, module, args, layer, tmp_path):
        self.port = _free_port()
        self.env = {"EPICS_CA_SERVER_PORT": str(self.port)}
        self._out = open(tmp_path / f"{module}.out", "w+b")
        self._err = open(tmp_path / f"{module}.err", "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"caproto.ioc_examples.{module}", "--list-pvs",
             "--async-lib", layer, *args],
            stdout=self._out, stderr=self._err, env=dict(os.environ, **self.env))
        wait_for_tcp(self.port, proc=self.proc)

    def log(self):
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def stdout(self):
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def listed_pvs(self, timeout=10.0):
        """The names logged under 'PVs available:'."""
        deadline = time.monotonic() + timeout
        while "PVs available:" not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = self.log()
        assert "PVs available:" in text, text
        lines = text.split("PVs available:", 1)[1].splitlines()[1:]
        names = []
        for line in lines:
            if not line.startswith("    "):
                break
            names.append(line.strip())
        return names

    def get(self, *names):
        """{name: value text} from caget (-t: values only; arrays as 'n v1 v2')."""
        got = run_tool("caget", "-w", "5", "-t", *names, env=self.env)
        assert got.returncode == 0, got.stdout + got.stderr
        return dict(zip(names, got.stdout.splitlines()))

    def put(self, name, *values, array=False):
        args = ["caput", "-c", "-w", "5"] + (["-a"] if array else [])
        return run_tool(*args, name, *values, env=self.env)

    def wait_for(self, name, predicate, timeout=15.0):
        """Poll caget until predicate(value text) holds; return the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.get(name)[name]
            if predicate(value) or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self):
        self.stop()
        self._out.close()
        self._err.close()


@pytest.fixture
def example(tmp_path):
    started = []

    def start(module, *args, layer="asyncio"):
        ioc = ExampleIOC(module, args, layer, tmp_path)
        started.append(ioc)
        return ioc

    yield start
    for ioc in started:
        ioc.close()


def refused(caput):
    said = (caput.stdout + caput.stderr).lower()
    return caput.returncode != 0 or any(word in said for word in
                                        ("error", "failed", "denied", "no write"))


@pytest.mark.parametrize("layer", ["asyncio", "curio", "trio"])
def test_simple(example, layer):
    ioc = example("simple", "--prefix", "ex1:", layer=layer)
    assert ioc.listed_pvs() == ["ex1:A", "ex1:B", "ex1:C"]
    assert ioc.get("ex1:A", "ex1:B") == {"ex1:A": "1", "ex1:B": "2"}
    assert not refused(ioc.put("ex1:B", "5.5"))
    assert not refused(ioc.put("ex1:C", "3", "4", "5", "6", array=True))
    assert ioc.get("ex1:B", "ex1:C") == {"ex1:B": "5.5", "ex1:C": "3 4 5 6"}


def test_setpoint_rbv_pair(example):
    ioc = example("setpoint_rbv_pair", "--prefix", "ex2:")
    assert ioc.listed_pvs() == ["ex2:pair", "ex2:pair_RBV", "ex2:gain", "ex2:gain_RBV"]
    assert not refused(ioc.put("ex2:pair", "7"))
    assert not refused(ioc.put("ex2:gain", "2.25"))
    assert ioc.get("ex2:pair_RBV", "ex2:gain_RBV") == {"ex2:pair_RBV": "7",
                                                       "ex2:gain_RBV": "2.25"}
    assert refused(ioc.put("ex2:pair_RBV", "1"))
    assert ioc.get("ex2:pair_RBV")["ex2:pair_RBV"] == "7"


def test_records(example):
    ioc = example("records", "--prefix", "ex3:")
    assert ioc.listed_pvs() == ["ex3:temperature", "ex3:heater", "ex3:valve",
                                "ex3:mode", "ex3:sum", "ex3:checked"]
    fields = ioc.get("ex3:temperature.EGU", "ex3:temperature.DESC",
                     "ex3:temperature.RTYP", "ex3:temperature.HIHI", "ex3:valve")
    assert fields == {"ex3:temperature.EGU": "degC",
                      "ex3:temperature.DESC": "Room temperature",
                      "ex3:temperature.RTYP": "ai", "ex3:temperature.HIHI": "40",
                      "ex3:valve": "Closed"}
    assert not refused(ioc.put("ex3:heater", "500"))        # clamped to DRVH 100
    after = ioc.get("ex3:heater", "ex3:temperature", "ex3:temperature.SEVR",
                    "ex3:temperature.STAT")
    assert after == {"ex3:heater": "100", "ex3:temperature": "70",
                     "ex3:temperature.SEVR": "MAJOR", "ex3:temperature.STAT": "HIHI"}
    assert refused(ioc.put("ex3:checked", "13"))
    assert not refused(ioc.put("ex3:checked", "12"))
    assert not refused(ioc.put("ex3:sum.CALC", "A*2+B"))
    assert not refused(ioc.put("ex3:sum.A", "4"))
    assert not refused(ioc.put("ex3:sum.B", "1"))
    assert ioc.get("ex3:checked", "ex3:sum") == {"ex3:checked": "12", "ex3:sum": "9"}


def test_subgroups(example):
    ioc = example("subgroups", "--prefix", "ex4:")
    assert ioc.listed_pvs() == [
        "ex4:random", "ex4:group1:random", "ex4:group2-random", "ex4:det1:exposure",
        "ex4:det1:source:random", "ex4:det2:exposure", "ex4:det2:source:random",
        "ex4:inline:count"]
    values = ioc.get("ex4:group1:random", "ex4:group2-random",
                     "ex4:det2:source:random")
    assert all(1 <= int(value) <= 100 for value in values.values())
    assert not refused(ioc.put("ex4:det1:exposure", "0.25"))
    assert ioc.get("ex4:det1:exposure", "ex4:det2:exposure") == {
        "ex4:det1:exposure": "0.25", "ex4:det2:exposure": "1"}


def test_rpc_function(example):
    ioc = example("rpc_function", "--prefix", "ex5:")
    assert ioc.listed_pvs() == [
        "ex5:fixed_random", "ex5:get_random:low", "ex5:get_random:high",
        "ex5:get_random:Retval", "ex5:get_random:Status", "ex5:get_random:Process",
        "ex5:scale:value", "ex5:scale:factor", "ex5:scale:Retval", "ex5:scale:Status",
        "ex5:scale:Process"]
    for name, value in (("low", "5"), ("high", "5"), ("Process", "1")):
        assert not refused(ioc.put(f"ex5:get_random:{name}", value))
    assert ioc.get("ex5:get_random:Retval", "ex5:get_random:Status") == {
        "ex5:get_random:Retval": "5", "ex5:get_random:Status": "Success"}
    assert not refused(ioc.put("ex5:get_random:low", "50"))
    assert refused(ioc.put("ex5:get_random:Process", "1"))
    status = ioc.get("ex5:get_random:Status")["ex5:get_random:Status"]
    assert status.startswith("Error: low=50 > high=5")
    assert ioc.get("ex5:get_random:Retval")["ex5:get_random:Retval"] == "5"
    assert not refused(ioc.put("ex5:scale:value", "1.5"))
    assert not refused(ioc.put("ex5:scale:Process", "1"))
    assert ioc.get("ex5:scale:Retval")["ex5:scale:Retval"] == "3"


@pytest.mark.parametrize("layer", ["asyncio", "trio"])
def test_scan_rate(example, layer):
    ioc = example("scan_rate", "--prefix", "ex6:", layer=layer)
    assert ioc.listed_pvs() == ["ex6:ticks", "ex6:period", "ex6:scanned"]
    assert ioc.get("ex6:scanned.SCAN")["ex6:scanned.SCAN"] == "1 second"
    first = int(ioc.get("ex6:ticks")["ex6:ticks"])
    assert int(ioc.wait_for("ex6:ticks", lambda v: int(v) >= first + 2)) >= first + 2
    assert not refused(ioc.put("ex6:scanned.SCAN", ".1 second"))
    start = int(ioc.get("ex6:scanned")["ex6:scanned"])
    assert int(ioc.wait_for("ex6:scanned", lambda v: int(v) >= start + 10)) >= start + 10
    period = float(ioc.get("ex6:period")["ex6:period"])
    assert 0.05 < period < 0.5            # scans now follow '.1 second', not 1 s
    assert not refused(ioc.put("ex6:scanned.SCAN", "Passive"))
    time.sleep(0.3)
    held = ioc.get("ex6:scanned")["ex6:scanned"]
    time.sleep(0.5)
    assert ioc.get("ex6:scanned")["ex6:scanned"] == held


def test_macros(example):
    ioc = example("macros", "--prefix", "ex7:", "--beamline", "BL7", "--thing", "det")
    assert ioc.listed_pvs() == ["ex7:BL7:det.VAL", "ex7:BL7:det.RBV"]
    assert not refused(ioc.put("ex7:BL7:det.VAL", "3.5"))
    assert ioc.get("ex7:BL7:det.RBV")["ex7:BL7:det.RBV"] == "3.5"


def test_macros_from_the_generic_option_and_help(example):
    ioc = example("macros", "--prefix", "ex8:", "--macro", "beamline=X,thing=Y")
    assert ioc.listed_pvs() == ["ex8:X:Y.VAL", "ex8:X:Y.RBV"]
    helped = subprocess.run([sys.executable, "-m", "caproto.ioc_examples.macros", "-h"],
                            capture_output=True, text=True, timeout=30)
    assert "--beamline" in helped.stdout and "--thing" in helped.stdout
    assert "--async-lib" in helped.stdout and "--interfaces" in helped.stdout


ENUM_CLIENT = """
from epics import ca
out = {}
for key in ('enabled', 'state', 'color', 'readonly_state'):
    chid = ca.create_channel('ex9:' + key, connect=False, auto_cb=False)
    assert ca.connect_channel(chid, timeout=10)
    md = ca.get_with_metadata(chid, ftype=31, timeout=10)
    out[key] = {'type': ca.field_type(chid), 'value': int(md['value']),
                'strs': [s.decode() if isinstance(s, bytes) else s for s in md['enum_strs']],
                'write': bool(ca.write_access(chid))}
emit(out)
"""


def test_enums(example):
    ioc = example("enums", "--prefix", "ex9:")
    assert ioc.listed_pvs() == ["ex9:enabled", "ex9:state", "ex9:color",
                                "ex9:readonly_state", "ex9:last_change"]
    result = run_client(ENUM_CLIENT, env=ioc.env)
    assert {key: (v["type"], v["value"], v["strs"]) for key, v in result.items()} == {
        "enabled": (3, 0, ["Off", "On"]),
        "state": (3, 0, ["Idle", "Busy", "Fault"]),
        "color": (3, 1, ["red", "green", "blue"]),
        "readonly_state": (3, 1, ["Off", "On"])}
    assert result["readonly_state"]["write"] is False
    assert not refused(ioc.put("ex9:color", "blue"))
    assert not refused(ioc.put("ex9:enabled", "1"))
    assert ioc.get("ex9:color", "ex9:enabled", "ex9:last_change") == {
        "ex9:color": "blue", "ex9:enabled": "On", "ex9:last_change": "color=blue"}
    assert refused(ioc.put("ex9:state", "7"))          # no state 7: the IOC refuses
    assert ioc.get("ex9:state")["ex9:state"] == "Idle"


@pytest.mark.parametrize("layer", ["asyncio", "curio"])
def test_mock_device(example, layer):
    ioc = example("mock_device", "--prefix", "ex10:", layer=layer)
    assert ioc.listed_pvs() == ["ex10:setpoint", "ex10:readback", "ex10:ramp_rate",
                                "ex10:moving", "ex10:status", "ex10:started"]
    assert ioc.wait_for("ex10:status", lambda v: v == "Ready") == "Ready"
    assert ioc.get("ex10:started")["ex10:started"] == "1"
    assert not refused(ioc.put("ex10:ramp_rate", "4"))      # 0.4 degC per tick
    assert not refused(ioc.put("ex10:setpoint", "25"))
    assert ioc.wait_for("ex10:moving", lambda v: v == "On") == "On"
    assert float(ioc.wait_for("ex10:readback", lambda v: float(v) == 25)) == 25
    assert ioc.wait_for("ex10:moving", lambda v: v == "Off") == "Off"
    assert not refused(ioc.put("ex10:setpoint", "500"))      # ao: clamped to 100
    assert ioc.get("ex10:setpoint")["ex10:setpoint"] == "100"
    ioc.stop()
    if layer == "asyncio":
        assert "mock device shutting down" in ioc.stdout()


def test_ioc_arg_parser_options():
    from caproto.server import ioc_arg_parser, template_arg_parser
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="dflt:", desc="d", macros={"sys": "S1"},
        argv=["--prefix", "p:", "--async-lib", "trio", "--list-pvs",
              "--interfaces", "127.0.0.1", "--macro", "dev=D,x=1", "--sys", "S2"])
    assert ioc_options == {"prefix": "p:", "macros": {"sys": "S2", "dev": "D", "x": "1"}}
    assert run_options == {"module_name": "caproto.trio.server", "log_pv_names": True,
                           "interfaces": ["127.0.0.1"]}
    defaults = ioc_arg_parser(default_prefix="dflt:", desc="d", argv=[])
    assert defaults == ({"prefix": "dflt:", "macros": {}},
                        {"module_name": "caproto.asyncio.server", "log_pv_names": False,
                         "interfaces": None})
    parser, split_args = template_arg_parser(default_prefix="t:", desc="d",
                                             supported_async_libs=["curio"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--async-lib", "asyncio"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--macro", "novalue"])
    assert split_args(parser.parse_args([]))[1]["module_name"] == "caproto.curio.server"

"""Access security: ACF parsing, rights, and the server enforcing them for
libca (compared with the epics-base softIoc) and for a client that renames
itself mid-connection."""
import getpass
import os
import socket
import subprocess
import sys
import time

import pytest

import caproto as ca
from caproto import AccessRights
from caproto import ChannelType
from caproto._commands import (AccessRightsResponse, ClientNameRequest,
                               CreateChanResponse, ErrorResponse,
                               WriteNotifyResponse, read_from_bytestream)
from caproto._constants import NEED_DATA, SERVER
from caproto._status import CAStatus
from caproto.server.access import ACFError, AccessSecurity

from tests.peers import wait_for_tcp

from . import ServerThread, run_client

R, W = AccessRights.READ, AccessRights.WRITE
NONE = AccessRights.NO_ACCESS

SAMPLE = """
# operators may write setpoints from the consoles
UAG(ops) {alice, "bob"}
UAG(admins) {root}
HAG(consoles) {Console1, console2}
ASG(DEFAULT) {
    RULE(1, READ)
}
ASG(SETPOINTS) {
    RULE(1, READ)
    RULE(0, WRITE, TRAPWRITE) { UAG(ops) HAG(consoles) }
    RULE(1, WRITE) { UAG(admins) }
}
ASG(HIDDEN) {
    RULE(1, NONE)
}
ASG(CALCULATED) {
    INPA(beam:on)
    RULE(1, READ)
    RULE(1, WRITE) { CALC("A=1") }
}
"""


def test_rights_follow_the_rules():
    security = AccessSecurity(SAMPLE, "sample.acf")
    assert security.rights("SETPOINTS", "console1", "alice") == R | W
    assert security.rights("SETPOINTS", "CONSOLE2", "bob") == R | W  # host: any case
    assert security.rights("SETPOINTS", "laptop", "alice") == R      # wrong host
    assert security.rights("SETPOINTS", "console1", "Alice") == R    # user: exact
    assert security.rights("SETPOINTS", "laptop", "root") == R | W
    # a level-0 rule does not reach level-1 (configuration) fields
    assert security.rights("SETPOINTS", "console1", "alice", asl=1) == R
    assert security.rights("HIDDEN", "console1", "root") == NONE
    assert security.rights("NO-SUCH-GROUP", "console1", "root") == R  # -> DEFAULT
    assert security.rights("CALCULATED", "console1", "root") == R     # CALC: never


def test_a_file_without_default_gives_unknown_groups_no_access():
    security = AccessSecurity("ASG(OPEN) { RULE(1, WRITE) }")
    assert security.rights("OPEN", "h", "u") == R | W
    assert security.rights("OTHER", "h", "u") == NONE


def test_unsupported_inp_and_calc_are_reported(caplog):
    AccessSecurity(SAMPLE, "sample.acf")
    text = caplog.text
    assert "sample.acf" in text and "INPA(beam:on)" in text and "CALC" in text


@pytest.mark.parametrize("text, line, message", [
    ("ASG(DEFAULT) {\n  RULE(1, EXECUTE)\n}", 2, "NONE, READ, WRITE or RPC"),
    ("UAG(a) {x}\nUAG(a) {y}", 2, "UAG(a) is defined twice"),
    ("ASG(G) {\n RULE(1, READ) {\n  UAG(nobody)\n }\n}", 3, "UAG(nobody) is used"),
    ("\n\nFOO(x)", 3, "unknown keyword 'FOO'"),
    ("ASG(G) {\n RULE(x, READ)\n}", 2, "non-negative integer"),
    ("ASG(G) {\n RULE(1, READ, LOUDLY)\n}", 2, "TRAPWRITE or NOTRAPWRITE"),
    ("ASG(G) {\n RULE(1, READ)\n", 3, "end of file"),
    ("UAG(a) {x}\n\nASG(G) { RULE(1 READ) }", 3, "expected ','"),
    ("UAG(a) {x ~}", 1, "unexpected character '~'"),
])
def test_bad_files_name_file_line_and_problem(tmp_path, text, line, message):
    path = tmp_path / "bad.acf"
    path.write_text(text)
    with pytest.raises(ACFError) as info:
        AccessSecurity.from_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_reload_keeps_old_rules_when_the_new_file_is_bad(tmp_path, caplog):
    path = tmp_path / "site.acf"
    path.write_text("ASG(DEFAULT) { RULE(1, WRITE) }")
    security = AccessSecurity.from_file(path)
    path.write_text("ASG(DEFAULT) { RULE(1, WRITE }")
    assert security.reload() is False
    assert "site.acf:1" in caplog.text
    assert security.rights("DEFAULT", "h", "u") == R | W
    path.write_text("ASG(DEFAULT) { RULE(1, READ) }")
    assert security.reload() is True
    assert security.rights("DEFAULT", "h", "u") == R


def test_apply_to_maps_names_to_groups():
    pvdb = {"SP:x": ca.ChannelDouble(value=1.0), "RB:x": ca.ChannelDouble(value=1.0)}
    security = AccessSecurity(SAMPLE).apply_to(pvdb, groups={"SP:*": "SETPOINTS"})
    assert pvdb["SP:x"].asg == "SETPOINTS"
    assert getattr(pvdb["RB:x"], "asg", None) is None
    assert all(data.access_security is security for data in pvdb.values())


def test_record_fields_share_the_records_group_at_level_1():
    from caproto.server import PVGroup, pvproperty

    class IOC(PVGroup):
        x = pvproperty(value=1.0, record="ao")
    ioc = IOC(prefix="SP:")
    AccessSecurity(SAMPLE).apply_to(ioc.pvdb, groups={"SP:*": "SETPOINTS"})
    value, units = ioc.x, ioc.x.get_field("EGU")
    security = units.access_security
    assert security.rights_for(value, "console1", "alice") == R | W
    assert security.rights_for(units, "console1", "alice") == R   # level-0 rule
    assert security.rights_for(units, "anywhere", "root") == R | W


# -- libca, compared with the softIoc ------------------------------------------------

def site_acf():
    """An ACF naming this machine's host and user, as libca reports them."""
    return f"""
UAG(me) {{{getpass.getuser()}}}
UAG(others) {{nobody-here}}
HAG(here) {{{socket.gethostname()}}}
ASG(DEFAULT) {{ RULE(1, READ) }}
ASG(MINE) {{ RULE(1, WRITE) {{ UAG(me) HAG(here) }} }}
ASG(THEIRS) {{ RULE(1, READ) RULE(1, WRITE) {{ UAG(others) }} }}
ASG(SECRET) {{ RULE(1, NONE) }}
"""


ACCESS_DB = """
record(ao, "AS:mine") { field(ASG, "MINE") field(VAL, "1") field(PINI, "YES") }
record(ao, "AS:theirs") { field(ASG, "THEIRS") field(VAL, "1") field(PINI, "YES") }
record(ao, "AS:secret") { field(ASG, "SECRET") field(VAL, "1") field(PINI, "YES") }
record(ao, "AS:default") { field(VAL, "1") field(PINI, "YES") }
"""

ACCESS_CLIENT = """
import epics
from epics import ca
out = {}
for name in ['AS:mine', 'AS:theirs', 'AS:secret', 'AS:default']:
    chid = ca.create_channel(name, connect=False, auto_cb=False)
    ca.connect_channel(chid, timeout=10)
    ca.poll(0.2)
    out[name] = [bool(ca.read_access(chid)), bool(ca.write_access(chid))]
    try:
        ca.put(chid, 7.0, wait=True, timeout=5)
        out[name].append('put ok')
    except Exception as exc:
        out[name].append(type(exc).__name__)
    value = ca.get(chid, timeout=3) if ca.read_access(chid) else None
    out[name].append(None if value is None else float(value))
emit(out)
"""


def our_access_pvdb(security):
    pvdb = {name: ca.ChannelDouble(value=1.0) for name in
            ("AS:mine", "AS:theirs", "AS:secret", "AS:default")}
    for name, asg in (("AS:mine", "MINE"), ("AS:theirs", "THEIRS"),
                      ("AS:secret", "SECRET")):
        pvdb[name].asg = asg
    security.apply_to(pvdb)
    return pvdb


def client_env(port):
    return {"EPICS_CA_SERVER_PORT": str(port)}


SECURE_SOFTIOC = """
import ctypes, sys
from epicscorelibs import ioc
ioc.dbCore.asSetFilename.argtypes = [ctypes.c_char_p]
ioc.dbCore.asSetFilename(sys.argv[1].encode())     # must precede iocInit
ioc.start_ioc(database=sys.argv[2])
sys.stdin.read()
"""


def secure_softioc(acf, db, port, log_path):
    """An epics-base softIoc with access security from `acf` (killed by PID)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SECURE_SOFTIOC, str(acf), str(db)],
                                stdin=subprocess.PIPE, stdout=log,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ, EPICS_CA_SERVER_PORT=str(port)))
    try:
        wait_for_tcp(port, proc=proc)
    except Exception:
        proc.kill()
        proc.wait(10)
        raise
    return proc


@pytest.mark.timeout(90)
def test_libca_rights_and_puts_match_the_softioc(free_port, tmp_path):
    acf = tmp_path / "site.acf"
    acf.write_text(site_acf())
    db = tmp_path / "access.db"
    db.write_text(ACCESS_DB)
    ioc = secure_softioc(acf, db, free_port, tmp_path / "ioc.log")
    try:
        theirs = run_client(ACCESS_CLIENT, env=client_env(free_port))
    finally:
        ioc.kill()
        ioc.wait(10)
    with ServerThread("asyncio", our_access_pvdb(AccessSecurity.from_file(acf))) as ctx:
        ours = run_client(ACCESS_CLIENT, env=client_env(ctx.port))
    assert theirs["AS:mine"] == [True, True, "put ok", 7.0]
    assert theirs["AS:theirs"][:2] == [True, False]
    assert theirs["AS:theirs"][3] == 1.0         # the refused put changed nothing
    assert theirs["AS:secret"][:2] == [False, False]
    assert ours == theirs


WATCH_RIGHTS = """
import time, epics
from epics import ca
changes = []
chid = ca.create_channel('AS:mine', connect=False, auto_cb=False)
ca.connect_channel(chid, timeout=10)
ca.replace_access_rights_event(
    chid, lambda read_access, write_access, **kw: changes.append(
        [bool(read_access), bool(write_access)]))
deadline = time.time() + 10
while not changes and time.time() < deadline:
    ca.poll(0.05)
print('CONNECTED', flush=True)
import sys; sys.stdin.readline()
deadline = time.time() + 10
while len(changes) < 2 and time.time() < deadline:
    ca.poll(0.05)
emit(changes)
"""


@pytest.mark.timeout(60)
def test_reloading_the_file_resends_rights_to_libca(tmp_path):
    acf = tmp_path / "site.acf"
    acf.write_text(site_acf())
    security = AccessSecurity.from_file(acf)
    server = ServerThread("asyncio", our_access_pvdb(security))
    with server as ctx:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import json\ndef emit(o): print('RESULT ' + "
             "json.dumps(o), flush=True)\n" + WATCH_RIGHTS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, **client_env(ctx.port)))
        try:
            assert proc.stdout.readline().strip() == "CONNECTED"
            acf.write_text(site_acf().replace("ASG(MINE) { RULE(1, WRITE)",
                                              "ASG(MINE) { RULE(1, READ)"))
            assert server.call(security.reload_and_refresh)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    result = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert result and result[-1] == "RESULT [[true, true], [true, false]]"


# -- a client that renames itself ------------------------------------------------

class RawClient:
    """A CA client speaking raw commands, so the test chooses host and user
    names and can send requests a well-behaved client would refuse to send."""

    def __init__(self, port, host, user):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.received = []
        self.sid = None
        self.ioid = 0
        self.send(ca.VersionRequest(0, 13), ca.HostNameRequest(host),
                  ca.ClientNameRequest(user))

    def send(self, *commands):
        self.sock.sendall(b"".join(bytes(command) for command in commands))

    def wait_for(self, kind, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, command in enumerate(self.received):
                if isinstance(command, kind):
                    return self.received.pop(index)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the circuit")
            self.buffer += data
            while True:
                self.buffer, command, _ = read_from_bytestream(self.buffer, SERVER)
                if command is NEED_DATA:
                    break
                self.received.append(command)
        raise TimeoutError(f"no {kind.__name__} within {timeout} s")

    def connect(self, name):
        self.send(ca.CreateChanRequest(name, 1, 13))
        rights = self.wait_for(AccessRightsResponse)
        self.sid = self.wait_for(CreateChanResponse).sid
        return AccessRights(rights.access_rights)

    def write(self, value, notify):
        self.ioid += 1
        cls = ca.WriteNotifyRequest if notify else ca.WriteRequest
        self.send(cls([value], ChannelType.DOUBLE, 1, self.sid, self.ioid))

    def close(self):
        self.sock.close()


def test_rights_are_resent_when_the_client_renames_itself_and_enforced():
    security = AccessSecurity(SAMPLE)
    data = ca.ChannelDouble(value=1.0)
    data.asg = "SETPOINTS"
    security.apply_to({"SP:x": data})
    with ServerThread("asyncio", {"SP:x": data}) as ctx:
        client = RawClient(ctx.port, "console1", "mallory")
        try:
            assert client.connect("SP:x") == R
            client.write(5.0, notify=True)
            refused = client.wait_for(WriteNotifyResponse)
            assert refused.status == CAStatus.ECA_NOWTACCESS
            client.write(6.0, notify=False)
            error = client.wait_for(ErrorResponse)
            assert error.status == CAStatus.ECA_NOWTACCESS
            assert data.value == 1.0
            client.send(ClientNameRequest("alice"))
            assert client.wait_for(AccessRightsResponse).access_rights == R | W
            client.write(5.0, notify=True)
            assert client.wait_for(WriteNotifyResponse).status == CAStatus.ECA_NORMAL
            assert data.value == 5.0
            client.send(ca.HostNameRequest("laptop"))
            assert client.wait_for(AccessRightsResponse).access_rights == R
        finally:
            client.close()


IOC_SCRIPT = """
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run

class Guarded(PVGroup):
    mine = pvproperty(value=1.0, asg="MINE")
    open_ = pvproperty(name="open", value=1.0)

if __name__ == "__main__":
    ioc_options, run_options = ioc_arg_parser(default_prefix="AS:", desc="acf test")
    run(Guarded(**ioc_options).pvdb, **run_options)
"""


@pytest.mark.timeout(60)
def test_acf_option_protects_an_ioc_and_follows_file_changes(tmp_path, free_port):
    acf = tmp_path / "site.acf"
    acf.write_text(site_acf())
    script = tmp_path / "guarded_ioc.py"
    script.write_text(IOC_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, EPICS_CA_SERVER_PORT=str(free_port),
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(tmp_path / "ioc.log", "wb") as log:
        ioc = subprocess.Popen([sys.executable, str(script), "--acf", str(acf)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_tcp(free_port, proc=ioc)
        client = subprocess.Popen(
            [sys.executable, "-c", "import json\ndef emit(o): print('RESULT ' + "
             "json.dumps(o), flush=True)\n" + WATCH_RIGHTS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, **client_env(free_port)))
        try:
            assert client.stdout.readline().strip() == "CONNECTED"
            acf.write_text(site_acf().replace("ASG(MINE) { RULE(1, WRITE)",
                                              "ASG(MINE) { RULE(1, READ)"))
            client.stdin.write("go\n")        # the IOC notices within its 2 s poll
            client.stdin.flush()
            out, _ = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
        default = run_client("import epics\npv = epics.PV('AS:open')\n"
                             "pv.wait_for_connection(10)\n"
                             "emit([pv.read_access, pv.write_access])",
                             env=client_env(free_port))
    finally:
        ioc.kill()
        ioc.wait(10)
    assert "RESULT [[true, true], [true, false]]" in out
    assert default == [True, False]        # no asg=: the DEFAULT group, READ only

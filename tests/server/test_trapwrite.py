"""TRAPWRITE: writes granted by a ``RULE(..., WRITE, TRAPWRITE)`` are logged
(who, PV, old and new value) and handed to listeners, as epics-base's
asTrapWrite hook does for caPutLog.  The hook is checked directly, then end
to end with libca (pyepics) writing to our server."""
import asyncio
import getpass
import logging
import socket

import pytest

import caproto as ca
from caproto.server.access import AccessSecurity, TrapWrite, begin_trapwrite

from . import ServerThread, run_client

ACF = """
UAG(ops) {alice}
UAG(admins) {root}
ASG(DEFAULT) { RULE(1, READ) }
ASG(SETPOINTS) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) { UAG(ops) }
    RULE(1, WRITE) { UAG(admins) }
}
ASG(FIRST_RULE_WINS) {
    RULE(1, WRITE) { UAG(ops) }
    RULE(1, WRITE, TRAPWRITE)
}
ASG(CALCULATED) {
    INPA(beam:on)
    RULE(1, READ)
    RULE(1, WRITE) { CALC("A=1") }
}
"""


def protected(value=1.0, asg="SETPOINTS", **kwargs):
    security = AccessSecurity(ACF, "site.acf")
    data = ca.ChannelDouble(value=value, **kwargs)
    data.asg = asg
    security.apply_to({"SP": data})
    return security, data


def trapped_write(data, value, host="console1", user="alice", ok=True):
    """What the server does around a client's write: begin, write, finish."""
    trap = begin_trapwrite(data, "SP", host, user, [value])
    if trap is None:
        return None
    if ok:
        asyncio.run(data.write(value))
    return trap.finish(ok)


def test_the_rule_that_granted_write_decides_as_aslib_does():
    security, data = protected()
    assert security.trapwrite_rule(data, "h", "alice").line == 7
    assert security.trapwrite_rule(data, "h", "root") is None      # plain WRITE
    assert security.trapwrite_rule(data, "h", "nobody") is None    # no WRITE at all
    data.asg = "FIRST_RULE_WINS"
    # rules count in file order, only when they raise the access reached
    assert security.trapwrite_rule(data, "h", "alice") is None
    assert security.trapwrite_rule(data, "h", "bob").trap_write


def test_a_trapped_write_is_logged_and_reaches_listeners(caplog):
    security, data = protected()
    heard = []
    listener = heard.append
    assert security.add_trapwrite_listener(listener) is listener
    caplog.set_level(logging.INFO, logger="caproto.access")
    trap = trapped_write(data, 2.5)
    assert heard == [trap]
    assert isinstance(trap, TrapWrite)
    assert (trap.pvname, trap.user, trap.host, trap.old_value, trap.new_value,
            trap.ok, trap.rule.line) == ("SP", "alice", "console1", 1.0, 2.5, True, 7)
    (record,) = [r for r in caplog.records if "TRAPWRITE" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "TRAPWRITE alice@console1 wrote 'SP': 1.0 -> 2.5" in record.getMessage()
    assert "site.acf:7" in record.getMessage()


def test_writes_outside_trapwrite_rules_are_silent(caplog):
    security, data = protected()
    heard = []
    security.add_trapwrite_listener(heard.append)
    caplog.set_level(logging.INFO, logger="caproto.access")
    assert trapped_write(data, 3.0, user="root") is None
    assert begin_trapwrite(ca.ChannelDouble(value=1.0), "plain", "h", "alice") is None
    assert heard == [] and "TRAPWRITE" not in caplog.text


def test_a_refused_write_is_reported_with_what_was_asked(caplog):
    _, data = protected()
    caplog.set_level(logging.INFO, logger="caproto.access")
    trap = trapped_write(data, 99.0, ok=False)
    assert (trap.ok, trap.old_value, trap.new_value, trap.requested) == \
        (False, 1.0, 1.0, [99.0])
    assert "alice@console1 failed to write 'SP': [99.0] requested, 1.0 kept" \
        in caplog.text


def test_a_failing_listener_is_logged_and_the_others_still_run(caplog):
    security, data = protected()
    heard = []

    @security.add_trapwrite_listener
    def broken(trap):
        raise RuntimeError("listener bug")

    security.add_trapwrite_listener(heard.append)
    trapped_write(data, 4.0)
    assert len(heard) == 1 and "listener bug" in caplog.text
    security.remove_trapwrite_listener(broken)
    trapped_write(data, 5.0)
    assert len(heard) == 2


def test_array_old_values_are_kept_as_they_were():
    security, data = protected(value=[1.0, 2.0, 3.0], max_length=3)
    heard = []
    security.add_trapwrite_listener(heard.append)
    trapped_write(data, [7.0, 8.0, 9.0])
    assert list(heard[0].old_value) == [1.0, 2.0, 3.0]
    assert list(heard[0].new_value) == [7.0, 8.0, 9.0]


def test_unsupported_inp_and_calc_warnings_name_file_line_and_asg(caplog):
    AccessSecurity(ACF, "site.acf")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("site.acf:15: ASG(CALCULATED): INPA(beam:on)")
               for m in warnings), warnings
    assert any(m.startswith("site.acf:17: ASG(CALCULATED): CALC('A=1')") and
               "grants nothing" in m for m in warnings), warnings


# -- end to end: libca writes to our server -------------------------------------------

def e2e_acf():
    """Writes by this machine's user (as libca announces it) are trapped."""
    return f"""
UAG(me) {{{getpass.getuser()}}}
ASG(DEFAULT) {{ RULE(1, READ) }}
ASG(TRAPPED) {{ RULE(1, READ) RULE(1, WRITE, TRAPWRITE) {{ UAG(me) }} }}
ASG(OPEN) {{ RULE(1, WRITE) }}
"""


PUTS = """
import epics
emit([epics.caput('TW:trapped', 7.0, wait=True, timeout=5),
      epics.caput('TW:open', 8.0, wait=True, timeout=5),
      epics.caget('TW:trapped', timeout=5)])
"""

@pytest.mark.timeout(60)
def test_libca_puts_through_a_trapwrite_rule_are_logged_and_heard(caplog):
    security = AccessSecurity(e2e_acf(), "e2e.acf")
    pvdb = {"TW:trapped": ca.ChannelDouble(value=1.0),
            "TW:open": ca.ChannelDouble(value=1.0)}
    pvdb["TW:trapped"].asg, pvdb["TW:open"].asg = "TRAPPED", "OPEN"
    security.apply_to(pvdb)
    heard = []
    security.add_trapwrite_listener(heard.append)
    caplog.set_level(logging.INFO, logger="caproto.access")
    with ServerThread("asyncio", pvdb) as ctx:
        result = run_client(PUTS, env={"EPICS_CA_SERVER_PORT": str(ctx.port)})
    assert result == [1, 1, 7.0]
    (trap,) = heard                               # the OPEN write is not trapped
    user, host = getpass.getuser(), socket.gethostname()
    assert (trap.pvname, trap.user, trap.host.lower(), trap.old_value,
            trap.new_value, trap.ok) == ("TW:trapped", user, host.lower(), 1.0, 7.0,
                                         True)
    assert f"TRAPWRITE {user}@{trap.host} wrote 'TW:trapped': 1.0 -> 7.0" \
        in caplog.text

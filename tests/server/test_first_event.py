"""Every subscription gets its first event, whatever else the server is doing.

A CA server answers each EventAddRequest with the channel's current value
at once (rsrv does; clients rely on it to show a value that never changes).
Here libca (pyepics' low-level ``epics.ca``, in a subprocess) subscribes to
many channels whose values never change while the server publishes another
channel as fast as it can: half of the subscriptions are made before their
channel is connected (libca sends each EventAdd right behind the channel's
CreateChanResponse), half after. Each subscription must get exactly one
event, carrying the channel's value.

The subscriptions are made from the client's main thread, where pyepics
flushes each request as it makes it. (``epics.PV(auto_monitor=True)``
subscribes from libca's connection callback, where pyepics cannot flush:
libca may hold that request until the program next calls into CA. See
test_dht22_monitors_fire_at_the_scan_rate in tests/bridges/test_e2e.py.)
"""
import threading
import time

import pytest

import caproto as ca

from . import LAYERS, ServerThread, client_env, run_client

pytestmark = pytest.mark.timeout(120)

QUIET = 120            # channels whose value never changes (half early, half late)
BUSY_SECONDS = 60.0    # upper bound on the publishing loop; it stops with the client
DOUBLE = 6             # DBR_DOUBLE; subscribed as DBR_TIME_DOUBLE

CLIENT = """
import time
from epics import ca
quiet, busy = {quiet!r}, {busy!r}
events = {{name: [] for name in quiet}}
busy_events = [0]
keep = []

def on_quiet(pvname=None, value=None, **kw):
    events[pvname].append(value)

def on_busy(pvname=None, value=None, **kw):
    busy_events[0] += 1

busy_chid = ca.create_channel(busy, connect=False, auto_cb=False)
assert ca.connect_channel(busy_chid, timeout=10), busy
keep.append(ca.create_subscription(busy_chid, use_time=True, callback=on_busy))
deadline = time.time() + 10
while not busy_events[0] and time.time() < deadline:
    time.sleep(0.01)
busy_before = busy_events[0]

half = len(quiet) // 2
early, late = quiet[:half], quiet[half:]
for name in early:       # subscribed before the channel is connected
    chid = ca.create_channel(name, connect=False, auto_cb=False)
    keep.append(ca.create_subscription(chid, ftype={double}, use_time=True,
                                       callback=on_quiet))
late_chids = [ca.create_channel(name, connect=False, auto_cb=False) for name in late]
for name, chid in zip(late, late_chids):
    assert ca.connect_channel(chid, timeout=10), name
for chid in late_chids:  # subscribed once connected
    keep.append(ca.create_subscription(chid, use_time=True, callback=on_quiet))

deadline = time.time() + 20
while any(not got for got in events.values()) and time.time() < deadline:
    time.sleep(0.01)
time.sleep(0.3)          # a duplicate first event would have come by now
emit({{'events': events, 'busy_during': busy_events[0] - busy_before}})
"""


def quiet_pvdb(prefix):
    return {f"{prefix}q{index}": ca.ChannelDouble(value=index + 0.25)
            for index in range(QUIET)}


def run_busy(server, busy, stop):
    """Publish `busy` on the server's loop as fast as it goes until `stop` is set
    (bounded by BUSY_SECONDS); return how many writes were made."""
    async def publish():
        deadline = time.monotonic() + BUSY_SECONDS
        count = 0
        while not stop.is_set() and time.monotonic() < deadline:
            count += 1
            await busy.write(float(count))
            await server.async_lib.sleep(0)
        return count

    result = {}
    thread = threading.Thread(
        target=lambda: result.update(count=server.call(publish, timeout=BUSY_SECONDS + 10)),
        daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("layer", LAYERS)
def test_every_subscription_gets_its_first_event_while_the_server_is_busy(layer):
    prefix = f"FE{layer}:"
    pvdb = quiet_pvdb(prefix)
    busy = pvdb[f"{prefix}busy"] = ca.ChannelDouble(value=0.0)
    quiet = [name for name in pvdb if name != f"{prefix}busy"]
    server = ServerThread(layer, pvdb)
    context = server.start()
    stop = threading.Event()
    try:
        publisher, published = run_busy(server, busy, stop)
        result = run_client(CLIENT.format(quiet=quiet, busy=f"{prefix}busy", double=DOUBLE),
                            env=client_env(context.port))
        stop.set()
        publisher.join(BUSY_SECONDS + 15)
    finally:
        stop.set()
        server.stop()
    assert published.get("count", 0) > 0, "the publishing loop never ran"
    assert result["busy_during"] > 0, "the server was not publishing while the client subscribed"
    missing = sorted(name for name, got in result["events"].items() if not got)
    assert not missing, f"{len(missing)} of {len(quiet)} subscriptions got no first event: {missing}"
    for name, got in result["events"].items():
        assert got == [pvdb[name].value], (name, got)


def test_the_softioc_sends_the_same_first_events(softioc, free_port):
    """The same client against epics-base: what the test above asks of our server."""
    records = "".join(f'record(ai, "SI:q{index}") {{ field(VAL, "{index + 0.25}") '
                      f'field(PINI, "YES") }}\n' for index in range(QUIET))
    records += 'record(calc, "SI:busy") { field(SCAN, ".1 second") field(CALC, "A+1") ' \
               'field(INPA, "SI:busy") }\n'
    ioc = softioc(records, port=free_port)
    quiet = [f"SI:q{index}" for index in range(QUIET)]
    result = run_client(CLIENT.format(quiet=quiet, busy="SI:busy", double=DOUBLE),
                        env=client_env(ioc.port))
    assert result["busy_during"] > 0
    for index, name in enumerate(quiet):
        assert result["events"][name] == [index + 0.25], name

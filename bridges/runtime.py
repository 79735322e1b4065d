"""Device runtime, independent of Channel Access: poll, write, reconnect, publish.

Invariants:
- ``DeviceMachine`` is the whole policy and holds no threads and no clock: every
  event carries ``now``. ``DeviceRunner`` is a thin wrapper that performs the
  machine's actions on the driver, one exchange at a time, in one control thread.
- Every driver call has a hard timeout (``retry.call_timeout``). A call that
  overruns marks the device lost; the driver is not touched again until that
  call has returned, so the driver never sees two callers.
- Published status/severity follow StreamDevice: UDF/INVALID before the first
  good value; TIMEOUT/COMM/READ/WRITE + INVALID on failure; INVALID once the
  newest value is older than ``stale_after`` periods. A failed or stale PV keeps
  its last value *and its acquisition timestamp*; nothing old is re-stamped.
- Writes are checked (``values.check_write``) before the driver sees them;
  an autosaved value is restored through the same check, sent once after the
  first connect unless the PV is ``init_from_device`` (then the device wins).
- Reconnecting calls ``driver.open()`` again (the Driver contract); ``close()``
  is called only at shutdown.
- ``on_update(pv_name, value, status, severity, timestamp)`` is called from the
  runner's thread (marshal it to your event loop). ``value`` None means "no
  value yet"; ``timestamp`` None means "never acquired". Health values use the
  names in ``schema.HEALTH_PVS``.
"""
import concurrent.futures
import logging
import threading
import time
from collections import deque

from bridges.values import ReadValueError, WriteRejected, check_write, coerce_read, limit_alarm
from devices.errors import DeviceDisconnected, DeviceError, DeviceTimeout

log = logging.getLogger("bridges.runtime")
# Consecutive exchanges that time out before the connection is re-opened.
RECONNECT_AFTER_TIMEOUTS = 3
INVALID = "INVALID"


class _Track:
    """What the machine knows about one PV."""

    def __init__(self, pv, period):
        self.pv = pv
        self.period = period          # effective poll period, None if never polled
        self.next_due = None          # time of the next read, None if none pending
        self.value = None
        self.timestamp = None         # acquisition time of ``value``
        self.status = "UDF"
        self.severity = INVALID
        self.stale = False
        self.last_failure = None      # alarm status of the newest failure since a good value


class DeviceMachine:
    """Scheduling, alarm and health policy for one device (sans-I/O)."""

    def __init__(self, device, on_update, *, min_period=0.0, describe="", sim=False):
        self.device = device
        self.on_update = on_update
        self.describe = describe or device.driver
        self.sim = sim
        self.connected = False
        self.wedged = False           # a call overran its hard timeout and has not returned
        self.ever_connected = False
        self.next_open = 0.0
        self.backoff = device.retry.initial
        self.failed_opens = 0
        self.down_since = None
        self.consecutive_timeouts = 0
        self.err_cnt = 0
        self.last_err = ""
        self.last_update = None
        self._published = {}
        self.pending_restores = {}    # pv -> autosaved value to send once connected
        self.tracks = {}
        for pv in device.pvs.values():
            period = max(pv.scan, min_period) if pv.scan is not None else None
            self.tracks[pv.name] = _Track(pv, period)

    # -- publishing ------------------------------------------------------------
    def _publish(self, name, value, status, severity, timestamp, *, new_stamp_is_news=True):
        key = (value, status, severity, timestamp if new_stamp_is_news else None)
        if self._published.get(name) == key:
            return
        self._published[name] = key
        self.on_update(name, value, status, severity, timestamp)

    def _publish_track(self, track):
        self._publish(track.pv.name, track.value, track.status, track.severity, track.timestamp)

    def _publish_health(self, now):
        ok = ("NO_ALARM", "NO_ALARM")
        values = (("CONNECTED", int(self.connected)) + (ok if self.connected else ("COMM", "MAJOR")),
                  ("LAST_UPDATE", self.last_update) + ok, ("ERR_CNT", self.err_cnt) + ok,
                  ("LAST_ERR", self.last_err) + ok)
        for name, value, status, severity in values:
            self._publish(name, value, status, severity, now, new_stamp_is_news=False)

    def start(self, now):
        """Publish the initial state: every PV UDF/INVALID, device not connected."""
        for track in self.tracks.values():
            self._publish_track(track)
        self._publish_health(now)

    # -- scheduling ------------------------------------------------------------
    def next_action(self, now):
        """``("open", None, t)`` or ``("read", pv_name, t)`` or ``("idle", None, t|None)``."""
        if self.wedged:
            return ("idle", None, None)
        if not self.connected:
            return ("open", None, self.next_open)
        due = [(t.next_due, name) for name, t in self.tracks.items() if t.next_due is not None]
        if not due:
            return ("idle", None, None)
        when, name = min(due)
        return ("read", name, when)

    def next_stale_check(self):
        """When the earliest fresh value goes stale (None if none can)."""
        times = [t.timestamp + self._stale_age(t) for t in self.tracks.values()
                 if t.timestamp is not None and t.period is not None and not t.stale]
        return min(times) if times else None

    def _stale_age(self, track):
        return self.device.stale_after * track.period

    def _is_stale(self, track, now):
        """True once the value is ``stale_after`` periods old (the moment
        ``next_stale_check`` names, so a runner woken then sees it)."""
        return (track.timestamp is not None and track.period is not None
                and now - track.timestamp >= self._stale_age(track))

    # -- connection events -------------------------------------------------------
    def opened(self, now):
        self.connected = True
        self.consecutive_timeouts = 0
        self.backoff = self.device.retry.initial
        if not self.ever_connected:
            log.info("%s: connected (%s)", self.device.name, self.describe)
        else:
            log.info("%s: recovered (down %.1f s, %d failed reconnect(s)) (%s)", self.device.name,
                     now - (self.down_since or now), self.failed_opens, self.describe)
        self.ever_connected = True
        self.failed_opens = 0
        self.down_since = None
        for track in self.tracks.values():
            if track.period is not None or track.pv.init_from_device:
                track.next_due = now
        self._publish_health(now)

    def open_failed(self, error, now):
        self._count_error(error)
        delay = self.backoff
        self.backoff = min(self.backoff * 2, self.device.retry.max)
        self.next_open = now + delay
        if self.failed_opens == 0 and not self.ever_connected and self.down_since is None:
            hint = "" if self.sim else " (no hardware here? run with --sim)"
            log.warning("%s: cannot connect to %s: %s; retrying with back-off%s",
                        self.device.name, self.describe, error, hint)
            self.down_since = now
        else:
            log.debug("%s: reconnect failed: %s; next attempt in %.3g s", self.device.name, error, delay)
        self.failed_opens += 1
        self._mark_all(getattr(error, "alarm_status", "COMM"), now)
        self._publish_health(now)

    def lost(self, error, now):
        """The connection is unusable; it will be closed and re-opened with back-off."""
        if not self.connected and not self.wedged:
            return
        self.connected = False
        self.wedged = False
        self.down_since = now
        self.next_open = now + self.backoff
        log.warning("%s: connection lost: %s; reconnecting with back-off", self.device.name, error)
        for track in self.tracks.values():
            track.next_due = None
        self._mark_all(getattr(error, "alarm_status", "COMM"), now)
        self._publish_health(now)

    def call_timed_out(self, pv_name, timeout, now):
        """A driver call overran its hard timeout; wait for it before touching the driver."""
        message = "no answer within %.3g s (hard timeout)" % timeout
        self._count_error(message)
        if pv_name in self.tracks:
            self._fail_track(self.tracks[pv_name], "TIMEOUT", now)
        self.wedged = True
        self._publish_health(now)

    def call_returned(self, now):
        """The overrunning call finally returned: reconnect from scratch."""
        if self.wedged:
            self.lost(DeviceTimeout("a call overran its hard timeout"), now)

    # -- read events -------------------------------------------------------------
    def read_ok(self, pv_name, reading, now):
        track = self.tracks[pv_name]
        self._advance(track, now)
        try:
            value = coerce_read(track.pv, reading.value)
        except ReadValueError as exc:
            self.read_failed(pv_name, exc, now, advanced=True)
            return
        self.consecutive_timeouts = 0
        track.value = value
        track.timestamp = reading.timestamp
        track.last_failure = None
        track.stale = False
        track.status, track.severity = limit_alarm(track.pv, value, track.status)
        self.last_update = max(self.last_update or 0.0, reading.timestamp)
        if self._is_stale(track, now):
            self._go_stale(track, now)   # the driver handed back an old value
        self._publish_track(track)
        self._publish_health(now)

    def read_failed(self, pv_name, error, now, advanced=False):
        track = self.tracks[pv_name]
        if not advanced:
            self._advance(track, now)
        self._count_error(error)
        status = getattr(error, "alarm_status", "COMM")
        log.debug("%s: %s read failed: %s", self.device.name, pv_name, error)
        self._fail_track(track, status, now)
        if track.period is None and track.value is None:
            track.next_due = now + self.device.retry.initial   # retry a failed init read
        self._publish_health(now)
        if isinstance(error, DeviceDisconnected):
            self.lost(error, now)
        elif status == "TIMEOUT":
            self.consecutive_timeouts += 1
            if self.consecutive_timeouts >= RECONNECT_AFTER_TIMEOUTS:
                self.lost(DeviceTimeout("%d timeouts in a row" % self.consecutive_timeouts), now)

    def check_stale(self, now):
        for track in self.tracks.values():
            if not track.stale and self._is_stale(track, now):
                self._go_stale(track, now)
                self._publish_track(track)

    # -- autosave restore ----------------------------------------------------------
    def restore(self, pv_name, value, now):
        """Show an autosaved ``value`` at start-up and, unless the PV reads its value
        from the device at connect (``init_from_device``, where the device wins),
        send it to the device once connected. False (and a log line) if unusable."""
        track = self.tracks.get(pv_name)
        try:
            if track is None:
                raise WriteRejected("no PV %r on device %s" % (pv_name, self.device.name))
            value = check_write(track.pv, value)
        except WriteRejected as exc:
            log.warning("%s: autosaved value for %s ignored: %s", self.device.name, pv_name, exc)
            return False
        if track.value is None:
            track.value, track.timestamp = value, now
            track.status, track.severity = limit_alarm(track.pv, value, track.status)
            self._publish_track(track)
        if not track.pv.init_from_device:
            self.pending_restores[pv_name] = value
        return True

    # -- write events ------------------------------------------------------------
    def check_write(self, pv_name, value, now):
        """The value to send, or WriteRejected (the PV shows a WRITE alarm, a line is logged)."""
        try:
            if pv_name not in self.tracks:
                raise WriteRejected("no PV %r on device %s" % (pv_name, self.device.name))
            if not self.connected:
                raise WriteRejected("%s: device %s is not connected" % (pv_name, self.device.name),
                                    "COMM")
            return check_write(self.tracks[pv_name].pv, value)
        except WriteRejected as exc:
            self.write_failed(pv_name, exc, now, sent=False)
            raise

    def write_ok(self, pv_name, value, now):
        track = self.tracks[pv_name]
        self.consecutive_timeouts = 0
        track.value = value
        track.timestamp = now
        track.stale = False
        track.last_failure = None
        track.status, track.severity = limit_alarm(track.pv, value, track.status)
        self._publish_track(track)

    def write_failed(self, pv_name, error, now, sent=True):
        status = getattr(error, "alarm_status", "WRITE")
        if sent:
            self._count_error(error)
        log.warning("%s: write to %s refused%s: %s", self.device.name, pv_name,
                    "" if sent else " before reaching the device", error)
        if pv_name in self.tracks:
            self._fail_track(self.tracks[pv_name], status, now)
        self._publish_health(now)
        if isinstance(error, DeviceDisconnected):
            self.lost(error, now)

    # -- helpers -----------------------------------------------------------------
    def _advance(self, track, now):
        if track.period is None:
            track.next_due = None
        else:   # keep the cadence; after an overrun start again from now
            track.next_due = max(track.next_due + track.period, now) if track.next_due else now + track.period

    def _count_error(self, error):
        self.err_cnt += 1
        self.last_err = str(error)

    def _fail_track(self, track, status, now):
        track.last_failure = status
        if track.value is not None:   # before the first value the PV stays UDF
            track.status, track.severity = status, INVALID
        self._publish_track(track)

    def _mark_all(self, status, now):
        for track in self.tracks.values():
            if track.pv.read is not None or track.pv.init_from_device:
                self._fail_track(track, status, now)

    def _go_stale(self, track, now):
        track.stale = True
        track.status, track.severity = (track.last_failure or "TIMEOUT"), INVALID
        log.debug("%s: %s is stale (last value acquired %.1f s ago)", self.device.name,
                  track.pv.name, now - track.timestamp)


class DeviceRunner:
    """Runs one device: a control thread executing the machine's actions on the driver.

    ``step()`` does one unit of work in the caller's thread, which is how tests
    drive it without threads (pass ``clock=`` and ``call_timeout=None``).
    """

    def __init__(self, device, driver, on_update, *, clock=time.time, call_timeout="config", path=None):
        self.device = device
        self.driver = driver
        self.clock = clock
        self.call_timeout = device.retry.call_timeout if call_timeout == "config" else call_timeout
        self.machine = DeviceMachine(device, on_update, min_period=getattr(driver, "min_period", 0.0),
                                     describe=_describe(driver), sim=getattr(driver, "sim", False))
        base = tuple(path) if path is not None else ("devices", device.name)
        self.handles = {name: driver.channel(name, pv.driver_spec(), base + ("pvs", name))
                        for name, pv in device.pvs.items()}
        self._writes = deque()
        self._wake = threading.Condition()
        self._stop = False
        self._closed = False
        self._thread = None
        self._executor = None
        self._stuck = None            # the future of a call that overran its timeout
        self.machine.start(self.clock())

    # -- public API ----------------------------------------------------------------
    def start(self):
        """Start the control thread (idempotent)."""
        if self._thread is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="bridge-%s-io" % self.device.name)
            self._thread = threading.Thread(target=self._run, name="bridge-%s" % self.device.name,
                                            daemon=True)
            self._thread.start()
        return self

    def submit_write(self, pv_name, value):
        """Queue a write; the Future resolves to the value sent (after clamping) or raises
        WriteRejected / a DeviceError. Safe to call from any thread or event loop
        (``asyncio.wrap_future`` it)."""
        future = concurrent.futures.Future()
        with self._wake:
            if self._stop:
                future.set_exception(WriteRejected("%s: the bridge is shutting down" % pv_name, "COMM"))
                return future
            self._writes.append((pv_name, value, future))
            self._wake.notify()
        return future

    def restore(self, pv_name, value):
        """Autosave restore (call before ``start()``): see ``DeviceMachine.restore``."""
        with self._wake:
            return self.machine.restore(pv_name, value, self.clock())

    def close(self, timeout=5.0):
        """Stop polling, fail queued writes, close the hardware. Idempotent."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._stop = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._fail_pending_writes()
        try:
            if self._executor is not None and (self._stuck is None or self._stuck.done()):
                self._executor.submit(self.driver.close).result(timeout)
            else:   # no worker, or it is stuck in the driver: closing may be what unblocks it
                self.driver.close()
        except Exception as exc:   # closing must not raise at shutdown
            log.warning("%s: error while closing: %s", self.device.name, exc)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- one unit of work ----------------------------------------------------------
    def step(self):
        """Do what is due now; return seconds until something else is due (None: nothing)."""
        now = self.clock()
        self.machine.check_stale(now)
        if self._stuck is not None:
            if not self._stuck.done():
                self._reject_writes_while_stuck(now)
                return 0.05
            self._stuck = None
            self.machine.call_returned(now)
        if self._writes:
            self._do_write(*self._writes.popleft())
            return 0.0
        if self.machine.connected and self.machine.pending_restores:
            pv_name, value = self.machine.pending_restores.popitem()
            self._do_write(pv_name, value, concurrent.futures.Future())
            return 0.0
        kind, pv_name, when = self.machine.next_action(now)
        if when is not None and when > now:
            return self._until(when, now)
        if kind == "open":
            self._call_into(self._reopen, None)   # first connect or reconnect
            return 0.0
        if kind == "read":
            self._call_into(self.driver.read, pv_name, self.handles[pv_name])
            return 0.0
        return self._until(None, now)

    def _until(self, when, now):
        stale = self.machine.next_stale_check()
        times = [t for t in (when, stale) if t is not None]
        return max(min(times) - now, 0.0) if times else None

    def _reopen(self):
        # The Driver contract: open() is called again to reconnect (it closes
        # what is left of the old connection itself); close() is for shutdown.
        self.driver.open()

    def _call_into(self, func, pv_name, *args):
        """Run ``func`` with the hard timeout and feed the outcome to the machine."""
        try:
            result = self._call(func, *args)
        except _Overran:
            return
        except DeviceError as exc:
            self._failed(pv_name, exc)
            return
        except Exception as exc:   # a driver bug must not kill the runner
            log.exception("%s: driver raised an unexpected error", self.device.name)
            self._failed(pv_name, DeviceError("driver error: %s: %s" % (type(exc).__name__, exc)))
            return
        now = self.clock()
        if pv_name is None:
            self.machine.opened(now)
        else:
            self.machine.read_ok(pv_name, result, now)

    def _failed(self, pv_name, exc):
        if pv_name is None:
            self.machine.open_failed(exc, self.clock())
        else:
            self.machine.read_failed(pv_name, exc, self.clock())

    def _do_write(self, pv_name, value, future):
        if not future.set_running_or_notify_cancel():
            return
        try:
            to_send = self.machine.check_write(pv_name, value, self.clock())
        except WriteRejected as exc:
            future.set_exception(exc)
            return
        try:
            self._call(self.driver.write, self.handles[pv_name], to_send)
        except _Overran as exc:
            future.set_exception(WriteRejected("%s: %s" % (pv_name, exc), "TIMEOUT"))
            return
        except Exception as exc:
            if not isinstance(exc, DeviceError):
                log.exception("%s: driver raised an unexpected error", self.device.name)
            self.machine.write_failed(pv_name, exc, self.clock())
            future.set_exception(exc)
            return
        self.machine.write_ok(pv_name, to_send, self.clock())
        future.set_result(to_send)

    def _call(self, func, *args):
        if self.call_timeout is None or self._executor is None:
            return func(*args)
        future = self._executor.submit(func, *args)
        try:
            return future.result(timeout=self.call_timeout)
        except concurrent.futures.TimeoutError:
            self._stuck = future
            pv_name = next((n for n, h in self.handles.items() if args and h is args[0]), None)
            self.machine.call_timed_out(pv_name, self.call_timeout, self.clock())
            raise _Overran("no answer within %.3g s" % self.call_timeout) from None

    def _reject_writes_while_stuck(self, now):
        while self._writes:
            pv_name, _value, future = self._writes.popleft()
            if future.set_running_or_notify_cancel():
                exc = WriteRejected("%s: device %s is not answering" % (pv_name, self.device.name),
                                    "TIMEOUT")
                self.machine.write_failed(pv_name, exc, now, sent=False)
                future.set_exception(exc)

    def _fail_pending_writes(self):
        with self._wake:
            pending, self._writes = list(self._writes), deque()
        for pv_name, _value, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(WriteRejected("%s: the bridge is shutting down" % pv_name, "COMM"))

    # -- the thread ----------------------------------------------------------------
    def _run(self):
        while True:
            with self._wake:
                if self._stop:
                    return
            try:
                delay = self.step()
            except Exception:   # pragma: no cover - a bug here must be loud, not silent
                log.exception("%s: runtime error; continuing", self.device.name)
                delay = 1.0
            with self._wake:
                if self._stop:
                    return
                if delay is None or delay > 0:
                    if not self._writes:
                        self._wake.wait(delay if delay is not None else 1.0)


class _Overran(Exception):
    """A driver call overran the hard timeout (already reported to the machine)."""


def _describe(driver):
    try:
        return driver.describe()
    except Exception:   # describe() is only for logs
        return type(driver).__name__


def create_runner(device, on_update, *, sim=False, index=None, registry=None):
    """A DeviceRunner (not started) for ``device`` with its driver from the registry."""
    if registry is None:
        from devices.registry import registry
    path = ("devices", index if index is not None else device.name)
    driver = registry.create(device.driver, device.settings, sim=sim, path=path)
    return DeviceRunner(device, driver, on_update, path=path)

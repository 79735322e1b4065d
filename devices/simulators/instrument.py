"""A stateful ASCII instrument simulator driven by pyvisa-sim-style YAML.

Three layers, so tests and drivers share one behaviour:
- ``InstrumentModel``: sans-I/O. ``handle(command) -> reply or None`` from the
  YAML's dialogues/properties/error rules, plus our extensions ``x-evolve``
  (values relaxing toward a target over time) and ``x-reset`` (*RST).
- ``FaultInjector``: the side channel (Lewis's "backdoor"): ``inject(fault)``,
  ``.received`` (every command the instrument actually got).
- ``InstrumentSimulator``: serves a model on 127.0.0.1 TCP (pyserial
  ``socket://``, pyvisa-py ``TCPIP::...::SOCKET``) or on a pty pair.
  ``VisaFaultLayer`` applies the same faults to a pyvisa-sim session.

Invariants:
- Loopback only; every thread polls a stop event at least every 0.1 s and is
  joined by close(); at most ``max_clients`` connections are served at once.
- The model is guarded by one lock, so the test thread can read/set properties
  while a client is talking.
- A command appears in ``.received`` only if it reached the instrument whole.
"""
import contextlib
import math
import os
import re
import select
import socket
import threading
import time

import yaml

from devices.driver import FAULTS

HERE = os.path.dirname(os.path.abspath(__file__))
GARBAGE = "\x15#?%\xff!garbage"
POLL = 0.1


def definition_path(name):
    """A bare name like ``"multimeter"`` means ``devices/simulators/multimeter.yaml``."""
    if os.path.sep in name or (name.endswith((".yaml", ".yml")) and os.path.exists(name)):
        return os.path.abspath(name)
    candidate = os.path.join(HERE, name if name.endswith((".yaml", ".yml")) else name + ".yaml")
    if os.path.exists(candidate):
        return candidate
    raise FileNotFoundError("no simulator definition %r (looked in %s)" % (name, HERE))


def load_definition(name, device=None):
    """Return ``(device_name, device_dict, path)`` from a pyvisa-sim-style YAML file."""
    path = definition_path(name)
    with open(path, encoding="utf-8") as stream:
        data = yaml.safe_load(stream)
    devices = (data or {}).get("devices") or {}
    if not devices:
        raise ValueError("%s: no 'devices' mapping" % path)
    if device is None:
        if len(devices) != 1:
            raise ValueError("%s defines %d devices; say which: %s" % (path, len(devices), sorted(devices)))
        device = next(iter(devices))
    if device not in devices:
        raise ValueError("%s: no device %r (has %s)" % (path, device, sorted(devices)))
    return device, devices[device], path


# -- the sans-I/O model ---------------------------------------------------------

_FIELD = re.compile(r"\{(?::([^{}]*))?\}")
_VALUE_PATTERNS = {
    "f": r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
    "d": r"\s*([-+]?\d+)",
    "s": r"(.*?)",
}
_TYPES = {"float": float, "int": int, "str": str}


def _setter_regex(template):
    """pyvisa-sim setter ``"SP {:f}"`` -> compiled regex capturing the value."""
    match = _FIELD.search(template)
    if match is None:
        return re.compile(re.escape(template) + r"\Z"), None
    spec = match.group(1) or ""
    kind = {"e": "f", "g": "f", "f": "f", "d": "d", "x": "d"}.get(spec[-1:], "s")
    pattern = re.escape(template[:match.start()]) + _VALUE_PATTERNS[kind] + re.escape(template[match.end():])
    return re.compile(pattern + r"\Z", re.DOTALL), kind


class _Property:
    def __init__(self, name, spec):
        self.name = name
        self.default = spec.get("default", "")
        specs = spec.get("specs") or {}
        type_name = specs.get("type") or type(self.default).__name__
        self.type = _TYPES.get(type_name, str)
        self.min, self.max, self.valid = specs.get("min"), specs.get("max"), specs.get("valid")
        getter, setter = spec.get("getter") or {}, spec.get("setter") or {}
        self.get_query, self.get_reply = getter.get("q"), getter.get("r", "{}")
        self.set_regex, _ = _setter_regex(setter["q"]) if "q" in setter else (None, None)
        self.set_reply, self.set_error = setter.get("r"), setter.get("e")
        self.value = self.convert(self.default)

    def convert(self, text):
        """Parse/validate a new value; ValueError if it breaks the specs."""
        value = self.type(text)
        if self.type is float and not math.isfinite(value):
            raise ValueError("not finite")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ValueError("out of range")
        if self.valid is not None and value not in [self.type(v) for v in self.valid]:
            raise ValueError("not one of %s" % (self.valid,))
        return value


class InstrumentModel:
    """One simulated instrument's state and command handling (no I/O, thread-safe)."""

    def __init__(self, name, definition, *, eom_class="ASRL INSTR", clock=time.monotonic):
        self.name = name
        eoms = definition.get("eom") or {}
        eom = eoms.get(eom_class) or (next(iter(eoms.values())) if eoms else {"q": "\n", "r": "\n"})
        self.query_eom, self.reply_eom = eom["q"], eom["r"]
        self._dialogues = {d["q"]: d.get("r") for d in definition.get("dialogues") or ()}
        self._properties = {n: _Property(n, s) for n, s in (definition.get("properties") or {}).items()}
        self._evolve = definition.get("x-evolve") or {}
        self._resets = set(definition.get("x-reset") or ())
        self._setup_errors(definition.get("error"))
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()
        self._last = self._now()

    def _setup_errors(self, error):
        self._error_queue_query, self._error_queue, self._error_default = None, [], None
        if isinstance(error, dict) and error.get("error_queue"):
            queue = error["error_queue"][0]
            self._error_queue_query = queue["q"]
            self._error_default = queue.get("default", "")
            self._error_texts = {k: queue.get(k) for k in ("command_error", "query_error")}
            self._error_replies = {}
        elif isinstance(error, dict):
            self._error_texts = {}
            self._error_replies = {k: error.get(k) for k in ("command_error", "query_error")}
        else:
            self._error_texts = {}
            self._error_replies = {"command_error": error, "query_error": error}

    def _now(self):
        return self._clock() + self._offset

    def advance(self, seconds):
        """Move simulated time forward (x-evolve properties relax accordingly)."""
        with self._lock:
            self._offset += float(seconds)

    def get(self, name):
        with self._lock:
            self._relax()
            return self._properties[name].value

    def set(self, name, value):
        """Backdoor: set a property without the wire protocol (bypasses specs)."""
        with self._lock:
            self._relax()
            self._properties[name].value = self._properties[name].type(value)

    def reset(self):
        with self._lock:
            for prop in self._properties.values():
                prop.value = prop.convert(prop.default)
            self._error_queue.clear()
            self._last = self._now()

    def _relax(self):
        now = self._now()
        dt, self._last = max(0.0, now - self._last), now
        for name, rule in self._evolve.items():
            active = all(self._properties[k].value == v for k, v in (rule.get("while") or {}).items())
            target = rule.get("toward") if active else rule.get("otherwise", rule.get("toward"))
            target = self._properties[target].value if isinstance(target, str) else float(target)
            prop = self._properties[name]
            prop.value = target + (prop.value - target) * math.exp(-dt / float(rule.get("time_constant", 1.0)))

    def _error(self, kind):
        if self._error_queue_query is not None:
            if self._error_texts.get(kind):
                self._error_queue.append(self._error_texts[kind])
            return None
        return self._error_replies.get(kind)

    def handle(self, command):
        """Reply text (without eom) to one command, or None if the instrument stays silent."""
        command = command.strip()
        with self._lock:
            self._relax()
            if command in self._resets:
                self.reset()
            if command in self._dialogues:
                return self._dialogues[command]
            if self._error_queue_query is not None and command == self._error_queue_query:
                return self._error_queue.pop(0) if self._error_queue else self._error_default
            for prop in self._properties.values():
                if prop.get_query is not None and command == prop.get_query:
                    return prop.get_reply.format(prop.value)
                match = prop.set_regex.match(command) if prop.set_regex is not None else None
                if match:
                    try:
                        prop.value = prop.convert(match.group(1)) if match.groups() else prop.value
                    except ValueError:
                        return prop.set_error if prop.set_error is not None else self._error("command_error")
                    return prop.set_reply
            return self._error("query_error" if command.endswith("?") else "command_error")


# -- faults ---------------------------------------------------------------------

class FaultInjector:
    """Current fault, the received-command log, and pending slow replies."""

    def __init__(self):
        self.fault = "none"
        self.slow_delay = 2.0
        self.received = []
        self._changed = threading.Condition()
        self._pending = 0
        self.on_change = None  # called with the new fault name (servers react to disconnect)

    def inject(self, fault, *, delay=None):
        """Switch to ``fault`` (one of devices.driver.FAULTS); "none" clears it.

        ``delay`` (seconds) sets how late "slow" replies come. Clearing a fault
        discards slow replies still pending, like a device that aborted them.
        """
        if fault not in FAULTS:
            raise ValueError("unknown fault %r; known: %s" % (fault, ", ".join(FAULTS)))
        with self._changed:
            self.fault = fault
            if delay is not None:
                self.slow_delay = float(delay)
            self._changed.notify_all()
        if self.on_change is not None:
            self.on_change(fault)

    def record(self, command):
        with self._changed:
            self.received.append(command)

    @contextlib.contextmanager
    def pending(self):
        """Mark a slow reply as under way (until it is sent or dropped)."""
        with self._changed:
            self._pending += 1
        try:
            yield
        finally:
            with self._changed:
                self._pending -= 1
                self._changed.notify_all()

    def wait_slow(self, stop):
        """Block like a slow device; True if the reply should still be sent."""
        with self._changed:
            deadline = time.monotonic() + self.slow_delay
            while self.fault == "slow" and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self._changed.wait(min(remaining, POLL))
            return False

    def wait_idle(self, timeout=5.0):
        """Wait until no slow reply is pending; True if idle."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def shape(self, reply):
        """Apply no_reply/garbage to a reply (None = silence)."""
        if reply is None or self.fault == "no_reply":
            return None
        if self.fault == "garbage":
            return GARBAGE
        return reply


# -- serving over TCP / pty -----------------------------------------------------

class InstrumentSimulator:
    """A model served over loopback TCP or a pty, with fault injection.

    ``with InstrumentSimulator("temperature_controller") as sim: sim.url`` gives
    ``socket://127.0.0.1:PORT`` for pyserial; ``serve_pty()`` a ``/dev/pts/N`` path.
    """

    def __init__(self, definitions="temperature_controller", device=None, *,
                 eom_class="ASRL INSTR", max_clients=4, clock=time.monotonic):
        name, definition, self.definition_path = load_definition(definitions, device)
        self.model = InstrumentModel(name, definition, eom_class=eom_class, clock=clock)
        self.faults = FaultInjector()
        self.faults.on_change = self._fault_changed
        self.max_clients = max_clients
        self.port = None
        self.pty_path = None
        self._stop = threading.Event()
        self._threads = []
        self._links = set()
        self._links_lock = threading.Lock()
        self._listener = None
        self._pty_fds = None

    # side channel ------------------------------------------------------------
    @property
    def received(self):
        return self.faults.received

    def inject(self, fault, *, delay=None):
        self.faults.inject(fault, delay=delay)

    def get(self, name):
        return self.model.get(name)

    def set(self, name, value):
        self.model.set(name, value)

    def advance(self, seconds):
        self.model.advance(seconds)

    def wait_idle(self, timeout=5.0):
        return self.faults.wait_idle(timeout)

    @property
    def url(self):
        """What to give pyserial: ``socket://127.0.0.1:PORT`` or the pty path."""
        if self.port is not None:
            return "socket://127.0.0.1:%d" % self.port
        if self.pty_path is not None:
            return self.pty_path
        raise RuntimeError("simulator is not serving; call serve_tcp() or serve_pty()")

    # serving -----------------------------------------------------------------
    def serve_tcp(self, port=0):
        """Listen on 127.0.0.1 (port 0 = pick a free one); return the port."""
        self._restart_if_closed()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(self.max_clients)
        listener.settimeout(POLL)
        self._listener, self.port = listener, listener.getsockname()[1]
        self._start(self._accept_loop, listener)
        return self.port

    def serve_pty(self):
        """Serve on a new pty pair; return the slave path to open with pyserial."""
        import tty
        self._restart_if_closed()
        master, slave = os.openpty()
        tty.setraw(slave)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._start(self._serve_link, _PtyLink(master))
        return self.pty_path

    def close(self):
        """Stop every thread and close every socket/fd. Idempotent."""
        self._stop.set()
        self._drop_connections()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads = []
        if self._pty_fds is not None:
            for fd in self._pty_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._pty_fds = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # internals ---------------------------------------------------------------
    def _restart_if_closed(self):
        if self._stop.is_set():  # serving again after close(): old threads keep the old event
            self._stop = threading.Event()
            self.port = self.pty_path = None

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name="sim-%s-%s" % (self.model.name, target.__name__))
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _fault_changed(self, fault):
        if fault == "disconnect":
            self._drop_connections()
        elif self._listener is None and self.port is not None and not self._stop.is_set():
            self.serve_tcp(self.port)  # "cable plugged back in": same port again

    def _drop_connections(self):
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # stop listening *now*, even mid-accept()
            except OSError:
                pass
            listener.close()
        with self._links_lock:
            links, self._links = list(self._links), set()
        for link in links:
            link.close()

    def _accept_loop(self, listener):
        while not self._stop.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # listener closed
            if self.faults.fault == "disconnect":
                conn.close()
                return
            link = _SocketLink(conn)
            with self._links_lock:
                full = len(self._links) >= self.max_clients
                if not full:
                    self._links.add(link)
            if full:
                link.close()
                continue
            self._start(self._serve_link, link)

    def _serve_link(self, link):
        with self._links_lock:
            self._links.add(link)
        eom_in = self.model.query_eom.encode("latin-1")
        buffer = b""
        try:
            while not self._stop.is_set():
                chunk = link.recv(POLL)
                if chunk is None:
                    return  # peer closed
                if self.faults.fault == "disconnect":
                    continue  # a pulled cable: bytes go nowhere (a pty cannot hang up)
                buffer += chunk
                while eom_in in buffer:
                    raw, _, buffer = buffer.partition(eom_in)
                    command = raw.decode("latin-1").strip()
                    if command:
                        self._answer(link, command)
        except (OSError, ValueError):  # socket closed under us by disconnect/close()
            return
        finally:
            with self._links_lock:
                self._links.discard(link)
            link.close()

    def _answer(self, link, command):
        self.faults.record(command)
        reply = self.faults.shape(self.model.handle(command))
        if reply is None:
            return
        data = (reply + self.model.reply_eom).encode("latin-1", "replace")
        if self.faults.fault != "slow":
            link.send(data)
            return
        with self.faults.pending():
            if self.faults.wait_slow(self._stop):
                link.send(data)


class _SocketLink:
    def __init__(self, conn):
        self.conn = conn

    def recv(self, timeout):
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if not ready:
            return b""
        data = self.conn.recv(4096)
        return data or None

    def send(self, data):
        self.conn.sendall(data)

    def close(self):
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class _PtyLink:
    def __init__(self, master):
        self.master = master

    def recv(self, timeout):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096) or None
        except OSError:  # EIO: no slave open at the moment; keep serving
            time.sleep(timeout)
            return b""

    def send(self, data):
        os.write(self.master, data)

    def close(self):
        pass  # the fds belong to the simulator and are closed by its close()


# -- the same faults for a pyvisa-sim session -----------------------------------

class VisaFaultLayer:
    """Wraps pyvisa-sim sessions so ``inject()`` faults reach the VisaTransport.

    pyvisa-sim has no delays or disconnects (see FIELD-NOTES 2.7), so the
    faults are applied at the session boundary, raising the VisaIOErrors a real
    VISA library raises; the instrument itself stays pyvisa-sim's.
    """

    def __init__(self):
        self.faults = FaultInjector()

    @property
    def received(self):
        return self.faults.received

    def inject(self, fault, *, delay=None):
        self.faults.inject(fault, delay=delay)

    def wait_idle(self, timeout=5.0):
        return self.faults.wait_idle(timeout)

    def wrap(self, session):
        """Session wrapper for VisaTransport(session_wrapper=...)."""
        if self.faults.fault == "disconnect":
            session.close()
            raise _visa_error("error_resource_not_found")
        return _FaultySession(session, self.faults)


def _visa_error(name):
    import pyvisa
    return pyvisa.errors.VisaIOError(getattr(pyvisa.constants.StatusCode, name))


class _FaultySession:
    def __init__(self, session, faults):
        self._session = session
        self._faults = faults
        self._stop = threading.Event()

    timeout = property(lambda self: self._session.timeout,
                       lambda self, ms: setattr(self._session, "timeout", ms))

    def write_raw(self, data):
        if self._faults.fault == "disconnect":
            raise _visa_error("error_connection_lost")
        self._faults.record(bytes(data).decode("latin-1").strip())
        return self._session.write_raw(data)

    def read(self):
        fault = self._faults.fault
        if fault == "disconnect":
            raise _visa_error("error_connection_lost")
        reply = self._session.read()  # raises VI_ERROR_TMO itself if the device is silent
        if fault == "slow":
            budget = self._session.timeout / 1000.0
            if self._faults.slow_delay > budget:
                self._stop.wait(budget)
                raise _visa_error("error_timeout")  # the late reply is lost with the session buffer
            self._stop.wait(self._faults.slow_delay)
        shaped = self._faults.shape(reply)
        if shaped is None:
            raise _visa_error("error_timeout")
        return shaped

    def flush(self, mask):
        return self._session.flush(mask)

    def close(self):
        self._stop.set()
        self._session.close()

"""The Transport ABC: a message-oriented byte channel with StreamDevice's timeouts.

Invariants:
- A transport moves whole *messages*: ``write()`` appends the out-terminator,
  ``read()`` returns one message with the in-terminator stripped.
- All calls block with hard timeouts (``Timeouts``); failures are DeviceError
  subclasses, never library exceptions (pyserial/pyvisa errors are mapped).
- ``query()`` holds the transport lock for the whole exchange, so a reply always
  pairs with its request (StreamDevice's exclusive device lock).
- Third-party libraries are imported lazily by the concrete transports only.
"""
import abc
import contextlib
import re
import threading
from dataclasses import dataclass

from devices.errors import ConfigError, DeviceTimeout, expect_mapping, parse_duration, reject_unknown

# StreamDevice/ASCII names usable in terminator strings ("CR LF").
CONTROL_NAMES = {
    "NUL": 0x00, "SOH": 0x01, "STX": 0x02, "ETX": 0x03, "EOT": 0x04, "ENQ": 0x05,
    "ACK": 0x06, "BEL": 0x07, "BS": 0x08, "HT": 0x09, "TAB": 0x09, "LF": 0x0A,
    "NL": 0x0A, "VT": 0x0B, "FF": 0x0C, "NP": 0x0C, "CR": 0x0D, "SO": 0x0E,
    "SI": 0x0F, "NAK": 0x15, "SYN": 0x16, "CAN": 0x18, "ESC": 0x1B, "DEL": 0x7F,
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|[rnt0abfve\\])")
_SIMPLE_ESCAPES = {"r": 13, "n": 10, "t": 9, "0": 0, "a": 7, "b": 8, "f": 12, "v": 11,
                   "e": 27, "\\": 92}


def _decode_token(token, path):
    if token.upper() in CONTROL_NAMES:
        return bytes([CONTROL_NAMES[token.upper()]])
    if re.fullmatch(r"0x[0-9a-fA-F]{1,2}", token):
        return bytes([int(token, 16)])
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(token):
        out += token[pos:match.start()].encode("latin-1")
        code = match.group(1)
        if code[0] == "x":
            out.append(int(code[1:], 16))
        elif code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
        else:
            out.append(int(code, 8) & 0xFF)
        pos = match.end()
    rest = token[pos:]
    if "\\" in rest:
        raise ConfigError(path, "bad escape in terminator %r" % (token,))
    out += rest.encode("latin-1")
    return bytes(out)


def parse_terminator(value, path):
    """``"CR LF"``, ``"\\r\\n"`` (escapes or real control chars), ``"0x03"`` or ``""`` -> bytes."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ConfigError(path, "terminator must be a string like 'CR LF', got %r" % (value,))
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return value.encode("latin-1")  # YAML already decoded "\r\n"
    try:
        return b"".join(_decode_token(token, path) for token in value.split())
    except UnicodeEncodeError:
        raise ConfigError(path, "terminator %r is not 8-bit text" % (value,)) from None


@dataclass(frozen=True)
class Terminators:
    """Message terminators; ``b""`` on input means "a message ends when input pauses"."""

    input: bytes = b"\n"
    output: bytes = b"\n"

    @classmethod
    def from_settings(cls, settings, path, default=b"\n"):
        """Read ``terminator`` or ``in_terminator``/``out_terminator`` from device settings."""
        both = settings.get("terminator")
        if both is not None and ("in_terminator" in settings or "out_terminator" in settings):
            raise ConfigError(tuple(path) + ("terminator",),
                              "give either 'terminator' or 'in_terminator'/'out_terminator', not both")
        common = parse_terminator(both, tuple(path) + ("terminator",)) if both is not None else default
        inp = settings.get("in_terminator")
        out = settings.get("out_terminator")
        return cls(
            input=parse_terminator(inp, tuple(path) + ("in_terminator",)) if inp is not None else common,
            output=parse_terminator(out, tuple(path) + ("out_terminator",)) if out is not None else common,
        )


@dataclass(frozen=True)
class Timeouts:
    """StreamDevice's four timeouts, in seconds.

    lock:  wait for exclusive use of the device.
    write: wait for output to be accepted.
    reply: wait for the *first* byte of a reply.
    read:  wait for each *further* byte; with no in-terminator, a pause this long
           ends the message.
    """

    lock: float = 5.0
    write: float = 0.1
    reply: float = 1.0
    read: float = 0.1

    @classmethod
    def from_config(cls, value, path):
        if value is None:
            return cls()
        expect_mapping(value, path)
        reject_unknown(value, ("lock", "write", "reply", "read"), path)
        return cls(**{key: parse_duration(val, tuple(path) + (key,)) for key, val in value.items()})


class Transport(abc.ABC):
    """A message channel to one device. Blocking, one exchange at a time."""

    kind = "abstract"

    def __init__(self, *, timeouts=None, terminators=None):
        self.timeouts = timeouts or Timeouts()
        self.terminators = terminators or Terminators()
        self._lock = threading.Lock()

    @abc.abstractmethod
    def open(self):
        """Connect; DeviceDisconnected if impossible. Calling again reconnects."""

    @abc.abstractmethod
    def close(self):
        """Release the port/socket/session. Idempotent."""

    @property
    @abc.abstractmethod
    def is_open(self):
        """True between a successful open() and close() (or a detected disconnect)."""

    @abc.abstractmethod
    def write(self, message):
        """Send ``message`` (bytes) plus the out-terminator. DeviceTimeout/DeviceDisconnected."""

    @abc.abstractmethod
    def read(self):
        """Return one message without its in-terminator; DeviceTimeout if none arrives."""

    @abc.abstractmethod
    def describe(self):
        """Short human text for logs, e.g. ``serial socket://127.0.0.1:5555``."""

    def flush_input(self):
        """Discard stale input (a late reply to an earlier, timed-out request)."""

    @contextlib.contextmanager
    def locked(self):
        """Hold exclusive use of the device; DeviceTimeout after ``timeouts.lock``."""
        if not self._lock.acquire(timeout=self.timeouts.lock):
            raise DeviceTimeout("%s: device busy for more than %gs (lock timeout)"
                                % (self.describe(), self.timeouts.lock))
        try:
            yield self
        finally:
            self._lock.release()

    def query(self, message):
        """Write ``message`` and return the reply, as one locked exchange."""
        with self.locked():
            self.flush_input()
            self.write(message)
            return self.read()

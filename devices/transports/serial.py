"""Serial transport over pyserial's ``serial_for_url``.

One code path for real ports (``/dev/ttyUSB0``, ``COM3``), pty slaves, terminal
servers (``socket://host:port``, ``rfc2217://``) and ``loop://``. Line settings
(baud, parity, ...) are applied where the backend has them and ignored by
socket/loop backends, as pyserial does.

Invariants:
- pyserial is imported in open() only; a missing package is a DeviceDisconnected
  naming it, and construction stays free of I/O.
- read() implements StreamDevice's reply/read timeouts on top of pyserial's
  single ``timeout``: the deadline is ``reply`` until the first byte, then
  ``read`` after each further byte. pyserial's own timeout is a fixed short poll
  (changing it reconfigures a POSIX port on every call). Bytes after a terminator are kept for the
  next read(); flush_input() drops them.
- Any SerialException/OSError closes the port and becomes DeviceDisconnected.
"""
import time

from devices.errors import (ConfigError, DeviceDisconnected, DeviceReplyError, DeviceTimeout,
                            reject_unknown)
from devices.transport import Transport

PARITIES = {"N": "N", "NONE": "N", "E": "E", "EVEN": "E", "O": "O", "ODD": "O",
            "M": "M", "MARK": "M", "S": "S", "SPACE": "S"}
STOPBITS = (1, 1.5, 2)
BYTESIZES = (5, 6, 7, 8)
SETTINGS = ("kind", "port", "baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff")


class SerialTransport(Transport):
    """A pyserial port opened from a URL or device path."""

    kind = "serial"

    def __init__(self, port, *, baudrate=9600, bytesize=8, parity="N", stopbits=1,
                 rtscts=False, xonxoff=False, timeouts=None, terminators=None):
        super().__init__(timeouts=timeouts, terminators=terminators)
        self.port = port
        self.line_settings = dict(baudrate=baudrate, bytesize=bytesize, parity=parity,
                                  stopbits=stopbits, rtscts=rtscts, xonxoff=xonxoff)
        self._serial = None
        self._pending = b""

    @classmethod
    def from_config(cls, config, *, timeouts=None, terminators=None, path=()):
        """Validate a ``{kind: serial, port: ..., baudrate: ...}`` mapping."""
        path = tuple(path)
        reject_unknown(config, SETTINGS, path)
        port = config.get("port")
        if not isinstance(port, str) or not port:
            raise ConfigError(path + ("port",), "serial transport needs a 'port' string",
                              "e.g. /dev/ttyUSB0 or socket://127.0.0.1:5555")
        baudrate = config.get("baudrate", 9600)
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ConfigError(path + ("baudrate",), "baudrate must be a positive integer, got %r" % (baudrate,))
        bytesize = config.get("bytesize", 8)
        if bytesize not in BYTESIZES:
            raise ConfigError(path + ("bytesize",), "bytesize must be one of %s, got %r" % (BYTESIZES, bytesize))
        parity = str(config.get("parity", "N")).upper()
        if parity not in PARITIES:
            raise ConfigError(path + ("parity",), "unknown parity %r" % (config.get("parity"),),
                              "use none, even, odd, mark or space")
        stopbits = config.get("stopbits", 1)
        if stopbits not in STOPBITS or isinstance(stopbits, bool):
            raise ConfigError(path + ("stopbits",), "stopbits must be 1, 1.5 or 2, got %r" % (stopbits,))
        flags = {}
        for key in ("rtscts", "xonxoff"):
            flags[key] = config.get(key, False)
            if not isinstance(flags[key], bool):
                raise ConfigError(path + (key,), "%s must be true or false" % key)
        return cls(port, baudrate=baudrate, bytesize=bytesize, parity=PARITIES[parity],
                   stopbits=stopbits, timeouts=timeouts, terminators=terminators, **flags)

    # -- Transport API ---------------------------------------------------------

    def open(self):
        self.close()
        try:
            import serial
        except ImportError:
            raise DeviceDisconnected("pyserial is not installed (pip install pyserial)") from None
        try:
            port = serial.serial_for_url(self.port, do_not_open=True)
            port.baudrate = self.line_settings["baudrate"]
            port.bytesize = self.line_settings["bytesize"]
            port.parity = self.line_settings["parity"]
            port.stopbits = self.line_settings["stopbits"]
            port.rtscts = self.line_settings["rtscts"]
            port.xonxoff = self.line_settings["xonxoff"]
            port.timeout = min(self.timeouts.reply, self.timeouts.read, 0.05)
            port.write_timeout = self.timeouts.write
            port.open()
        except Exception as exc:  # SerialException, OSError, termios.error (e.g. parity on a pty)
            raise DeviceDisconnected("%s: cannot open: %s" % (self.describe(), exc)) from exc
        self._serial = port
        self._pending = b""

    def close(self):
        port, self._serial = self._serial, None
        self._pending = b""
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a dead port must not hide the original error
                pass

    @property
    def is_open(self):
        return self._serial is not None and self._serial.is_open

    def write(self, message):
        port = self._require_open()
        import serial
        try:
            port.write(bytes(message) + self.terminators.output)
            port.flush()
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeout("%s: write not accepted within %gs" % (self.describe(), self.timeouts.write),
                                alarm_status="WRITE") from exc
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise DeviceDisconnected("%s: write failed: %s" % (self.describe(), exc)) from exc

    def read(self):
        port = self._require_open()
        import serial
        terminator = self.terminators.input
        buffer = bytearray(self._pending)
        self._pending = b""
        deadline = time.monotonic() + self.timeouts.reply
        while True:
            if terminator and terminator in buffer:
                message, _, rest = bytes(buffer).partition(terminator)
                self._pending = rest
                return message
            if time.monotonic() >= deadline:
                return self._timed_out(buffer)
            try:
                chunk = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self.close()
                raise DeviceDisconnected("%s: read failed: %s" % (self.describe(), exc)) from exc
            if chunk:
                buffer += chunk
                deadline = time.monotonic() + self.timeouts.read

    def flush_input(self):
        self._pending = b""
        if self.is_open:
            import serial
            try:
                self._serial.reset_input_buffer()
            except (serial.SerialException, OSError) as exc:
                self.close()
                raise DeviceDisconnected("%s: %s" % (self.describe(), exc)) from exc

    def describe(self):
        return "serial %s" % self.port

    # -- helpers ---------------------------------------------------------------

    def _require_open(self):
        if not self.is_open:
            raise DeviceDisconnected("%s: not connected" % self.describe())
        return self._serial

    def _timed_out(self, buffer):
        if not buffer:
            raise DeviceTimeout("%s: no reply within %gs (reply timeout)"
                                % (self.describe(), self.timeouts.reply))
        if not self.terminators.input:
            return bytes(buffer)  # no terminator: a pause of `read` seconds ends the message
        raise DeviceReplyError("%s: reply %r incomplete, no terminator %r within %gs (read timeout)"
                               % (self.describe(), bytes(buffer[:80]), self.terminators.input,
                                  self.timeouts.read))

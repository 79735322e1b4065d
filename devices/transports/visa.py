"""VISA transport over pyvisa: any resource string, any backend library.

``library`` is what pyvisa's ResourceManager takes: ``""`` (system VISA),
``"@py"`` (pyvisa-py), ``"@sim"`` (pyvisa-sim's bundled devices) or
``"file.yaml@sim"`` (our own simulated instruments, e.g. multimeter.yaml).

Invariants:
- pyvisa is imported in open() only.
- VISA has a single timeout, so reply + read (StreamDevice's budget for a whole
  reply) is used for reads and ``write`` for writes.
- VisaIOError is mapped: timeout -> DeviceTimeout, lost/invalid connection ->
  DeviceDisconnected (and the session is closed), anything else -> DeviceError.
- ``session_wrapper`` (if given) wraps each opened resource; the simulator's
  fault layer uses it, so the same transport code runs under faults.
"""
import os

from devices.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceTimeout, reject_unknown
from devices.transport import Transport

SETTINGS = ("kind", "resource", "library")
_DISCONNECT_CODES = ("VI_ERROR_CONN_LOST", "VI_ERROR_INV_OBJECT", "VI_ERROR_RSRC_NFOUND",
                     "VI_ERROR_IO", "VI_ERROR_CLOSING_FAILED")


class VisaTransport(Transport):
    """A pyvisa message-based resource."""

    kind = "visa"

    def __init__(self, resource, *, library="", timeouts=None, terminators=None,
                 session_wrapper=None):
        super().__init__(timeouts=timeouts, terminators=terminators)
        self.resource = resource
        self.library = library
        self.session_wrapper = session_wrapper
        self._manager = None
        self._session = None

    @classmethod
    def from_config(cls, config, *, timeouts=None, terminators=None, path=()):
        """Validate a ``{kind: visa, resource: ..., library: ...}`` mapping."""
        path = tuple(path)
        reject_unknown(config, SETTINGS, path)
        resource = config.get("resource")
        if not isinstance(resource, str) or not resource:
            raise ConfigError(path + ("resource",), "visa transport needs a 'resource' string",
                              "e.g. TCPIP::192.168.0.5::INSTR or ASRL1::INSTR")
        library = config.get("library", "")
        if not isinstance(library, str):
            raise ConfigError(path + ("library",), "library must be a string like '@py' or '@sim'")
        yaml_part, at, _backend = library.rpartition("@")
        if at and yaml_part and not os.path.isfile(yaml_part):
            raise ConfigError(path + ("library",), "simulation file %r does not exist" % yaml_part)
        return cls(resource, library=library, timeouts=timeouts, terminators=terminators)

    def open(self):
        self.close()
        try:
            import pyvisa
        except ImportError:
            raise DeviceDisconnected("pyvisa is not installed (pip install pyvisa)") from None
        try:
            if self._manager is None:
                self._manager = pyvisa.ResourceManager(self.library)
            if self.library.endswith("@sim"):
                self._check_simulated(self._manager)
            session = self._manager.open_resource(
                self.resource,
                read_termination=self.terminators.input.decode("latin-1") or None,
                write_termination="",
                encoding="latin-1",
            )
        except pyvisa.errors.VisaIOError as exc:
            raise self._map_error(exc, "cannot open") from exc
        except (OSError, ValueError, pyvisa.errors.Error) as exc:  # bad library, missing backend
            raise DeviceDisconnected("%s: cannot open: %s" % (self.describe(), exc)) from exc
        if self.session_wrapper is not None:
            try:
                session = self.session_wrapper(session)
            except pyvisa.errors.VisaIOError as exc:
                raise self._map_error(exc, "cannot open") from exc
        self._session = session

    def close(self):
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # closing a dead session must not hide the original error
                pass

    @property
    def is_open(self):
        return self._session is not None

    def write(self, message):
        session = self._require_open()
        import pyvisa
        try:
            session.timeout = self._ms(self.timeouts.write)
            session.write_raw(bytes(message) + self.terminators.output)
        except pyvisa.errors.VisaIOError as exc:
            raise self._map_error(exc, "write failed", timeout_status="WRITE") from exc

    def read(self):
        session = self._require_open()
        import pyvisa
        try:
            session.timeout = self._ms(self.timeouts.reply + self.timeouts.read)
            return session.read().encode("latin-1")
        except pyvisa.errors.VisaIOError as exc:
            raise self._map_error(exc, "read failed") from exc

    def flush_input(self):
        session = self._session
        if session is None:
            return
        import pyvisa
        try:
            session.flush(pyvisa.constants.BufferOperation.discard_read_buffer_no_io)
        except (pyvisa.errors.Error, NotImplementedError, AttributeError):
            pass  # not every backend/session type can flush; stale input then stays

    def describe(self):
        return "visa %s%s" % (self.resource, (" " + self.library) if self.library else "")

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _ms(seconds):
        return max(1, int(round(seconds * 1000)))

    def _require_open(self):
        if self._session is None:
            raise DeviceDisconnected("%s: not connected" % self.describe())
        return self._session

    def _check_simulated(self, manager):
        """pyvisa-sim "opens" any resource and then reads nothing; refuse undefined ones."""
        known = manager.list_resources()
        if manager.resource_info(self.resource).resource_name not in known:
            raise DeviceDisconnected("%s: no such simulated resource (defined: %s)"
                                     % (self.describe(), ", ".join(known)))

    def _map_error(self, exc, doing, timeout_status=None):
        import pyvisa
        text = "%s: %s: %s" % (self.describe(), doing, exc.description)
        if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
            return DeviceTimeout(text, alarm_status=timeout_status)
        if exc.abbreviation in _DISCONNECT_CODES:
            self.close()
            return DeviceDisconnected(text)
        return DeviceError(text)

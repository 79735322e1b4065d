"""Small sysfs attribute files, and Linux IIO devices found by their name.

Invariants:
- Every read opens, reads and closes the file again: sysfs attributes are
  regenerated on each read (the IIO DHT driver even samples the sensor then),
  so nothing is cached here.
- Every OSError becomes a DeviceError subclass chosen by errno (see
  ``device_error_from_os_error``); no OSError or ValueError escapes.
- An IIO device is located by the content of its ``name`` file, never by its
  index N, which depends on probe order and changes after a driver reload.
- Files are opened only through ``opener`` (default: the builtin ``open``). That
  is the one seam a simulator uses to make a read fail with a real errno, so
  the simulated and the real path share everything else.

This is not a ``devices.transport.Transport``: that ABC moves terminated
messages, while sysfs is "one small file = one value".
"""
import errno
import os
import re

from devices.errors import DeviceDisconnected, DeviceError, DeviceReplyError, DeviceTimeout

IIO_ROOT = "/sys/bus/iio/devices"

# errno -> (DeviceError subclass, what it usually means for a sysfs attribute)
_ERRNO_ERRORS = {
    errno.EIO: (DeviceReplyError, "bad checksum or undecodable data"),
    errno.ETIMEDOUT: (DeviceTimeout, "the device did not answer in time"),
    errno.EAGAIN: (DeviceTimeout, "the device is busy, try again"),
    errno.EBUSY: (DeviceTimeout, "the device is busy"),
    errno.ENOENT: (DeviceDisconnected, "the file or device is gone"),
    errno.ENODEV: (DeviceDisconnected, "the device is gone"),
    errno.ENXIO: (DeviceDisconnected, "the device is gone"),
    errno.EACCES: (DeviceError, "check the file's permissions and your groups"),
    errno.EPERM: (DeviceError, "check the file's permissions and your groups"),
}


def device_error_from_os_error(exc, path, action="read"):
    """The DeviceError for an OSError raised while accessing ``path``."""
    cls, meaning = _ERRNO_ERRORS.get(exc.errno, (DeviceError, "unexpected error"))
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return cls("cannot %s %s: %s [%s] (%s)" % (action, path, exc.strerror or exc, name, meaning))


def read_attribute(path, opener=open):
    """The text of one sysfs attribute, surrounding whitespace stripped."""
    try:
        with opener(path, "r") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise device_error_from_os_error(exc, path, "read") from exc
    except UnicodeDecodeError as exc:
        raise DeviceReplyError("cannot read %s: not text (%s)" % (path, exc)) from exc


def write_attribute(path, value, opener=open):
    """Write ``value`` (str or number) to one sysfs attribute, as a single write."""
    text = str(value)
    try:
        with opener(path, "w") as handle:
            handle.write(text)
    except OSError as exc:
        raise device_error_from_os_error(exc, path, "write %r to" % (text,)) from exc


def parse_number(text, path):
    """sysfs numbers are decimal text ("23400", "0.001000"); anything else is garbage."""
    try:
        return float(text)
    except ValueError:
        raise DeviceReplyError("%s: expected a number, read %r" % (path, text[:40])) from None


def _device_index(entry):
    match = re.fullmatch(r"iio:device(\d+)", entry)
    return int(match.group(1)) if match else None


def list_iio_devices(root=IIO_ROOT, opener=open):
    """``[(dir_path, name)]`` for every ``iio:deviceN`` under ``root``, in N order."""
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    found = []
    for entry in sorted((e for e in entries if _device_index(e) is not None), key=_device_index):
        directory = os.path.join(root, entry)
        try:
            name = read_attribute(os.path.join(directory, "name"), opener)
        except DeviceError:
            name = None  # half-probed or vanishing device: not ours to judge
        found.append((directory, name))
    return found


def find_iio_device(name, root=IIO_ROOT, *, hint=None, opener=open):
    """The directory of the IIO device whose ``name`` file says ``name``.

    DeviceDisconnected if there is none; its message says what was looked for,
    where, what else was found, and ``hint`` (how to make it appear).
    """
    devices = list_iio_devices(root, opener)
    for directory, found_name in devices:
        if found_name == name:
            return directory
    if not os.path.isdir(root):
        seen = "%s does not exist" % root
    elif devices:
        seen = "found only " + ", ".join(
            "%s (%s)" % (os.path.basename(d), n) for d, n in devices)
    else:
        seen = "no IIO devices at all"
    message = "no IIO device named %r under %s; %s" % (name, root, seen)
    if hint:
        message += " (%s)" % hint
    raise DeviceDisconnected(message)


class IIODevice:
    """One IIO device, located by name on open(), read channel by channel.

    ``read_channel("temp")`` returns the processed value in IIO units (milli-°C
    for temp, milli-%RH for humidityrelative): ``in_<ch>_input`` if the driver
    provides it, else ``(in_<ch>_raw + in_<ch>_offset) * in_<ch>_scale``.
    """

    def __init__(self, name, root=IIO_ROOT, *, hint=None, opener=None):
        self.name = name
        self.root = root
        self.hint = hint
        self.opener = opener or open
        self.directory = None

    @property
    def is_open(self):
        return self.directory is not None

    def open(self):
        """Locate the device (again: N may have changed since last time)."""
        self.directory = None
        self.directory = find_iio_device(self.name, self.root, hint=self.hint, opener=self.opener)

    def close(self):
        self.directory = None

    def _attribute_path(self, attribute):
        if self.directory is None:
            raise DeviceDisconnected("IIO device %r is not open" % (self.name,))
        return os.path.join(self.directory, attribute)

    def read_attribute(self, attribute):
        path = self._attribute_path(attribute)
        try:
            return read_attribute(path, self.opener)
        except DeviceDisconnected:
            if not os.path.isdir(self.directory):
                self.directory = None
                raise DeviceDisconnected("IIO device %r disappeared from %s (was %s)"
                                         % (self.name, self.root, os.path.dirname(path))) from None
            raise

    def write_attribute(self, attribute, value):
        write_attribute(self._attribute_path(attribute), value, self.opener)

    def read_channel(self, channel):
        """Processed value of ``in_<channel>_input`` (or raw/offset/scale)."""
        processed = "in_%s_input" % channel
        path = self._attribute_path(processed)
        if os.path.exists(path) or not os.path.exists(self._attribute_path("in_%s_raw" % channel)):
            return parse_number(self.read_attribute(processed), path)
        raw = parse_number(self.read_attribute("in_%s_raw" % channel), path)
        offset = self._optional_number("in_%s_offset" % channel, 0.0)
        scale = self._optional_number("in_%s_scale" % channel, 1.0)
        return (raw + offset) * scale

    def _optional_number(self, attribute, default):
        path = self._attribute_path(attribute)
        if not os.path.exists(path):
            return default
        return parse_number(self.read_attribute(attribute), path)

    def describe(self):
        where = self.directory or ("%s/iio:device? (not found yet)" % self.root)
        return "iio %r at %s" % (self.name, where)

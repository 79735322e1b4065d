"""A fake ``/sys/bus/iio/devices`` tree on disk, with a sensor model and faults.

Invariants:
- Values live in real files under a directory of the caller's choice; code under
  test reads them with the same ``open()`` calls it uses on a real Pi.
- Faults act only through real effects: ``disconnect`` removes the device
  directory, ``frozen`` stops the files changing, ``spike`` writes one
  implausible value, and ``eio``/``etimedout``/``slow`` act in ``opener``, the
  file-opening function the sysfs transport is given: it raises a genuine
  OSError with that errno (or waits) when a channel file is opened.
- The sensor samples on read, not in a thread: opening an ``in_*`` file refreshes
  all channel files if the last sample is older than ``cache_period`` (the
  kernel DHT driver caches a reading for about 2 s the same way).
- Time comes from ``clock`` (anything with time/monotonic/sleep; default the
  ``time`` module), so tests can drive it with FakeClock instead of sleeping.
"""
import errno
import os
import re
import shutil
import time

FAULTS = ("none", "eio", "etimedout", "slow", "frozen", "spike", "disconnect")


class FakeClock:
    """A clock for tests: time stands still until ``sleep``/``advance`` moves it."""

    def __init__(self, start=1_700_000_000.0):
        self._monotonic = 1000.0
        self._offset = start - self._monotonic

    def time(self):
        return self._offset + self._monotonic

    def monotonic(self):
        return self._monotonic

    def sleep(self, seconds):
        self._monotonic += max(0.0, float(seconds))

    advance = sleep


class FakeIIOTree:
    """Creates and removes ``iio:deviceN`` directories with attribute files."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)

    def indices(self):
        found = []
        for entry in os.listdir(self.root):
            match = re.fullmatch(r"iio:device(\d+)", entry)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def add_device(self, name, attributes=(), index=None):
        """Create ``iio:deviceN`` (N = ``index`` or the next free one); return its path."""
        if index is None:
            used = self.indices()
            index = used[-1] + 1 if used else 0
        directory = os.path.join(self.root, "iio:device%d" % index)
        os.makedirs(directory)
        self.write(directory, "name", name)
        for attribute, value in dict(attributes).items():
            self.write(directory, attribute, value)
        return directory

    @staticmethod
    def write(directory, attribute, value):
        """Replace one attribute atomically, newline-terminated like sysfs."""
        path = os.path.join(directory, attribute)
        temporary = path + ".new"
        with open(temporary, "w") as handle:
            handle.write("%s\n" % (value,))
        os.replace(temporary, path)

    @staticmethod
    def remove_device(directory):
        shutil.rmtree(directory, ignore_errors=True)


class SimulatedIIOSensor:
    """One IIO device whose channel files follow a model of time, with faults.

    ``channels`` maps an attribute (``in_temp_input``) to ``f(wall_time)``
    returning the value to write, already in IIO units. Inject faults with
    ``inject(name, **params)``; ``received`` lists the attributes read
    successfully, i.e. what the "device" actually served.
    """

    def __init__(self, tree, name, channels, *, clock=None, cache_period=2.0,
                 slow_delay=3.0, first_index=None):
        self.tree = tree
        self.name = name
        self.channels = dict(channels)
        self.clock = clock or time
        self.cache_period = cache_period
        self.slow_delay = slow_delay
        self.first_index = first_index
        self.directory = None
        self.fault = "none"
        self.received = []
        self._spike = None          # (attribute, value) for the next sample only
        self._sampled_at = None
        self._last_index = None

    # -- lifecycle -------------------------------------------------------
    def connect(self):
        """Create the device directory (a new N each time, like a re-probe)."""
        if self.directory is not None:
            return self.directory
        used = self.tree.indices()
        index = max(used + [self._last_index if self._last_index is not None else -1]) + 1
        if self._last_index is None and self.first_index is not None and self.first_index not in used:
            index = self.first_index
        self.directory = self.tree.add_device(self.name, index=index)
        self._last_index = index
        self._sampled_at = None
        self._sample()
        return self.directory

    def disconnect(self):
        if self.directory is not None:
            self.tree.remove_device(self.directory)
            self.directory = None

    # -- faults ----------------------------------------------------------
    def inject(self, fault, **params):
        """Set the active fault; ``none`` clears it (and reconnects after ``disconnect``).

        ``spike`` is one-shot: the next sample carries ``value`` in ``attribute``
        (both required here; the DHT22 simulator supplies defaults).
        ``slow`` accepts ``delay`` (seconds each channel file takes to open).
        """
        if fault not in FAULTS:
            raise ValueError("unknown fault %r for the IIO simulator; choose from %s"
                             % (fault, ", ".join(FAULTS)))
        if fault == "spike":
            self._spike = (params["attribute"], params["value"])
            self._sampled_at = None   # the spike is the very next acquisition
            return
        if fault == "slow" and "delay" in params:
            self.slow_delay = float(params["delay"])
        self.fault = fault
        if fault == "disconnect":
            self.disconnect()
        elif fault == "none" and self.directory is None and self.tree is not None:
            self.connect()

    # -- the seam used by the sysfs transport ------------------------------
    def opener(self, path, mode="r"):
        """``open()`` for the transport: faults first, then the real file."""
        attribute = os.path.basename(str(path))
        mine = (self.directory is not None
                and os.path.dirname(os.path.abspath(str(path))) == os.path.abspath(self.directory))
        if mine and attribute.startswith("in_") and "r" in mode:
            if self.fault == "slow":
                self.clock.sleep(self.slow_delay)
            elif self.fault in ("eio", "etimedout"):
                code = errno.EIO if self.fault == "eio" else errno.ETIMEDOUT
                raise OSError(code, os.strerror(code), str(path))
            if self.fault != "frozen":
                self._refresh()
            handle = open(path, mode)
            self.received.append(attribute)
            return handle
        return open(path, mode)

    # -- the model ---------------------------------------------------------
    def _refresh(self):
        now = self.clock.monotonic()
        if self._sampled_at is None or now - self._sampled_at >= self.cache_period:
            self._sample()

    def _sample(self):
        if self.directory is None:
            return
        wall = self.clock.time()
        for attribute, model in self.channels.items():
            value = model(wall)
            if self._spike is not None and self._spike[0] == attribute:
                value = self._spike[1]
            self.tree.write(self.directory, attribute, value)
        self._spike = None
        self._sampled_at = self.clock.monotonic()

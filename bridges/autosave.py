"""Autosaved setpoints of a bridge: PV name -> value, persisted atomically.

The file format and the atomic write (temp file, fsync, rename, rotated
backups) belong to caproto.server.autosave; this is only the bridge's
bookkeeping: what changed since the last save, and when to save.
A missing or corrupt file never stops the bridge: it is reported in one log
line and the bridge starts with the device's own values.
"""
import logging
import os
import threading

from caproto.server.autosave import AutosaveFile

log = logging.getLogger("bridges.autosave")


class AutosaveStore:
    def __init__(self, path, *, period=10.0):
        self.file = AutosaveFile(path)
        self.period = period
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._values = dict(self.file.load())
        except Exception as exc:     # reported, never fatal
            log.warning("autosave %s not restored: %s", path, exc)
            self._values = {}

    def get(self, pvname):
        return self._values.get(pvname)

    def set(self, pvname, value):
        with self._lock:
            if self._values.get(pvname) != value:
                self._values[pvname] = value
                self._dirty = True

    @property
    def dirty(self):
        return self._dirty

    def flush(self):
        """Write the file now if anything changed (atomic; safe from any thread)."""
        with self._lock:
            if not self._dirty:
                return
            values, self._dirty = dict(self._values), False
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.file.path)), exist_ok=True)
            self.file.save(values)
        except OSError as exc:
            with self._lock:
                self._dirty = True
            log.error("autosave %s could not be written: %s", self.file.path, exc)

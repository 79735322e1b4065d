"""Autosave: keep chosen PV values in a file across IOC restarts.

Two layers:
- ``AutosaveFile(path, backups=3)``: ``load() -> dict`` and ``save(dict)``,
  usable without any PVGroup (the bridge uses it directly).
- ``autosaved(pvproperty(...))`` marks a pvproperty; an ``AutosaveHelper``
  SubGroup in the IOC restores the marked values before the server serves
  and saves them every ``period`` seconds (when they changed) and at exit:

      class MyIOC(PVGroup):
          gain = autosaved(pvproperty(value=1.0))
          autosave = SubGroup(AutosaveHelper, filename='myioc.json')

Invariants:
- ``save`` is atomic: the data goes to a temporary file in the same
  directory, is fsync'ed, and replaces the file with one rename (then the
  directory is fsync'ed).  The previous file is kept as ``path.1`` (older
  ones ``path.2`` ...), hard-linked before the rename, so at every instant
  ``path`` is a complete old or a complete new file; a process killed at
  any point leaves the previous good file.
- ``load`` never raises for a missing, unreadable or corrupt file: it
  logs one line and falls back to the newest good backup, else ``{}``.
- Restoring writes values without the putter (``verify_value=False``), as
  epics autosave's pass-0 restore sets fields without processing; a value
  the PV no longer accepts is skipped with one log line naming it.
"""
import contextlib
import datetime
import json
import logging
import os
import tempfile

from .group import PVGroup
from .pvproperty import pvproperty

__all__ = ("AutosaveFile", "AutosaveHelper", "autosaved", "restore_values",
           "autosaved_data", "restore_before_serving")

log = logging.getLogger("caproto.autosave")
FORMAT = "caproto-autosave"
VERSION = 1


def _plain(value):
    """`value` as JSON can hold it (numpy / array.array -> list, bytes -> list)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class AutosaveFile:
    """One autosave file and its rotated backups (see the module docstring)."""

    def __init__(self, path, backups=3):
        if backups < 1:
            raise ValueError(f"AutosaveFile {path!r}: keep at least one backup, "
                             f"not {backups!r}")
        self.path = os.fspath(path)
        self.backups = int(backups)

    def __repr__(self):
        return f"<AutosaveFile {self.path!r} backups={self.backups}>"

    def backup_path(self, number):
        return f"{self.path}.{number}"

    def _read(self, path):
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
        if (not isinstance(document, dict) or document.get("format") != FORMAT
                or not isinstance(document.get("values"), dict)):
            raise ValueError("not a caproto autosave file")
        return document["values"]

    def load(self):
        """The saved {name: value}; {} when nothing usable exists (never raises)."""
        problems = []
        for path in [self.path] + [self.backup_path(n) for n in range(1, self.backups + 1)]:
            try:
                values = self._read(path)
            except FileNotFoundError:
                if path == self.path:
                    problems.append(f"{path} does not exist")
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"{path} is unusable ({exc})")
                continue
            if problems:
                log.warning("autosave: %s; restored %d values from %s",
                            "; ".join(problems), len(values), path)
            return values
        log.warning("autosave: %s; starting from the IOC's defaults",
                    "; ".join(problems) or f"no file at {self.path}")
        return {}

    def save(self, values):
        """Write {name: value} atomically, keeping the previous file as ``.1``."""
        document = {"format": FORMAT, "version": VERSION,
                    "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "values": {name: _plain(value) for name, value in values.items()}}
        text = json.dumps(document, indent=1, sort_keys=True, allow_nan=True)
        directory = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(
            prefix=os.path.basename(self.path) + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            self._rotate()
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(directory)

    def _rotate(self):
        """Shift backups up by one; hard-link the current file as ``.1``."""
        if not os.path.exists(self.path):
            return
        for number in range(self.backups - 1, 0, -1):
            older = self.backup_path(number)
            if os.path.exists(older):
                os.replace(older, self.backup_path(number + 1))
        link = self.backup_path(1) + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        try:
            os.link(self.path, link)
        except OSError:                       # no hard links here: copy instead
            with open(self.path, "rb") as source, open(link, "wb") as target:
                target.write(source.read())
                target.flush()
                os.fsync(target.fileno())
        os.replace(link, self.backup_path(1))


def _fsync_directory(directory):
    """Make the rename durable (not possible on every platform)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- restoring into ChannelData ---------------------------------------------------------

def _run_now(coroutine):
    """Run a loop-free coroutine (ChannelData.write before serving) to completion."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("restoring a value awaited something that needs an event "
                       "loop; restore only before the server runs")


def restore_values(pvdb, values, names=None):
    """Write saved `values` into the ChannelData of `pvdb` (only `names`, if
    given) without putters; returns the names restored.  Call before serving."""
    restored = []
    for name, value in values.items():
        if (names is not None and name not in names) or name not in pvdb:
            continue
        try:
            _run_now(pvdb[name].write(value, verify_value=False))
        except Exception as exc:
            log.warning("autosave: %s not restored: %s", name, exc)
            continue
        restored.append(name)
    return restored


def autosaved(prop):
    """Mark a pvproperty for autosave; returns it (``x = autosaved(pvproperty(...))``)."""
    if not isinstance(prop, pvproperty):
        raise TypeError(f"autosaved() takes a pvproperty, not {prop!r}")
    prop.autosave = True
    return prop


def _is_marked(data):
    """``pvproperty(..., autosave=True)`` or ``autosaved(pvproperty(...))``."""
    if getattr(data, "autosave", False):
        return True
    group, attr = getattr(data, "group", None), getattr(data, "attr_name", None)
    prop = getattr(type(group), attr, None) if group is not None and attr else None
    return bool(getattr(prop, "autosave", False))


def autosaved_data(group):
    """{pvname: data} of the marked pvproperties of `group` and its subgroups."""
    return {name: data for name, data in group.pvdb.items() if _is_marked(data)}


class AutosaveHelper(PVGroup):
    """SubGroup restoring and saving the root group's ``autosaved`` PVs.

    ``SubGroup(AutosaveHelper, filename='ioc.json', period=30.0, backups=3)``;
    the ``filename`` and ``period`` PVs may be changed at run time.
    """

    filename = pvproperty(value="autosave.json", max_length=255,
                          doc="autosave file name")
    period = pvproperty(value=30.0, units="s", precision=1,
                        doc="seconds between saves")

    def __init__(self, *args, filename=None, period=None, backups=3, **kwargs):
        super().__init__(*args, **kwargs)
        if filename is not None:
            _run_now(self.filename.write(os.fspath(filename), verify_value=False))
        if period is not None:
            _run_now(self.period.write(float(period), verify_value=False))
        self.backups = backups
        self.restored = None           # names restored, once restore() ran
        self._last_saved = None

    @property
    def root(self):
        group = self
        while group.parent is not None:
            group = group.parent
        return group

    @property
    def file(self):
        return AutosaveFile(self.filename.value, self.backups)

    def targets(self):
        return autosaved_data(self.root)

    def restore(self):
        """Restore the marked PVs from the file now (once); returns their names."""
        if self.restored is None:
            values = self.file.load()
            self.restored = restore_values(self.root.pvdb, values, self.targets())
            self._last_saved = {name: _plain(data.value)
                                for name, data in self.targets().items()}
            log.info("autosave: restored %d of %d PVs from %s", len(self.restored),
                     len(self._last_saved), self.filename.value)
        return self.restored

    def current_values(self):
        return {name: _plain(data.value) for name, data in self.targets().items()}

    async def save(self, async_lib=None, force=False):
        """Save the marked PVs if they changed (or `force`); True if written."""
        values = self.current_values()
        if not force and values == self._last_saved:
            return False
        autosave_file = self.file
        if async_lib is not None:
            await async_lib.run_in_thread(autosave_file.save, values)
        else:
            autosave_file.save(values)
        self._last_saved = values
        return True

    async def __ainit__(self, async_lib):
        self.restore()              # no-op when restore_before_serving ran
        while True:
            await async_lib.sleep(max(float(self.period.value), 0.1))
            try:
                await self.save(async_lib)
            except OSError as exc:
                log.error("autosave: could not write %s: %s", self.filename.value, exc)

    async def __ashutdown__(self, async_lib):
        try:
            await self.save()
        except OSError as exc:
            log.error("autosave: could not write %s at exit: %s",
                      self.filename.value, exc)


def restore_before_serving(pvdb):
    """Run every AutosaveHelper's restore found in `pvdb` (args.run calls this)."""
    helpers = {}
    for data in pvdb.values():
        group = getattr(data, "group", None)
        if isinstance(group, AutosaveHelper):
            helpers[id(group)] = group
    for helper in helpers.values():
        helper.restore()
    return list(helpers.values())

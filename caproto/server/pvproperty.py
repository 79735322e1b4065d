"""pvproperty: a PV declared on a PVGroup class, and the ChannelData it becomes.

Invariants:
- A ``pvproperty`` is only a description (its ``pvspec``, an immutable
  PVSpec).  Each PVGroup instance turns every spec into one PvpropertyData
  (``PVSpec.create``); decorators (``getter``, ``putter``, ``startup``,
  ``shutdown``, ``scan``) return the same descriptor with a new spec, so
  ``@x.putter async def x(...)`` leaves ``x`` the descriptor.
- Hooks are plain functions called exactly as caproto documents:
  ``get(group, instance)``, ``put(group, instance, value)``,
  ``startup/shutdown/scan(group, instance, async_lib)``.  A putter's return
  value replaces the written value (None keeps it); raising rejects the
  write and nothing changes.  A getter's non-None return is stored (without
  the putter) before the read is answered.
- Reads made while publishing (subscription updates) never call the getter:
  only a client's read or a record's processing does.
- Scans are drift-free: deadline(n+1) = deadline(n) + period.  A scan that
  overruns its period is counted and logged (as dbScan does) and restarts
  its schedule from now instead of bursting to catch up.
"""
import collections
import enum
import functools
import inspect
import logging
import time

from .._data import (ChannelByte, ChannelChar, ChannelDouble, ChannelEnum,
                     ChannelFloat, ChannelInteger, ChannelShort, ChannelString)
from .._dbr import AlarmSeverity, AlarmStatus, ChannelType
from .._errors import CaprotoTypeError, CaprotoValueError

__all__ = (
    "PVSpec", "ScanSpec", "pvproperty", "scan_wrapper", "data_class_for",
    "PvpropertyData", "PvpropertyReadOnlyData",
    "PvpropertyBoolEnum", "PvpropertyBoolEnumRO", "PvpropertyByte", "PvpropertyByteRO",
    "PvpropertyChar", "PvpropertyCharRO", "PvpropertyDouble", "PvpropertyDoubleRO",
    "PvpropertyEnum", "PvpropertyEnumRO", "PvpropertyFloat", "PvpropertyFloatRO",
    "PvpropertyInteger", "PvpropertyIntegerRO", "PvpropertyShort", "PvpropertyShortRO",
    "PvpropertyString", "PvpropertyStringRO",
)

log = logging.getLogger("caproto.ioc")
_SCAN_POLL = 0.05          # how often a SCAN-field-driven scan looks for a new period
_DESC_BYTES = 40


class PVSpec(collections.namedtuple(
        "PVSpec", "get put startup shutdown name value dtype max_length "
                  "alarm_group read_only doc fields scan record cls_kwargs",
        defaults=(None,) * 15)):
    """Everything a pvproperty declares; immutable, shared by every group instance.

    ``cls_kwargs`` are passed on to the data class (precision, units,
    limits, enum_strings, ...); ``scan`` is a ScanSpec.
    """

    __slots__ = ()

    def new_names(self, **changes):
        """A copy with `changes` applied (e.g. a new name or hook)."""
        return self._replace(**changes)

    def get_data_class(self, group=None):
        """The PvpropertyData subclass this spec creates (with a record's own
        value rules, e.g. mbbi/mbbo holding unnamed states)."""
        cls = data_class_for(self.value, self.dtype, self.read_only,
                             self.cls_kwargs or {})
        if self.record:
            from .records import record_data_class
            cls = record_data_class(self.record, cls)
        return cls

    def create(self, group, *, pvname, attr_name=None, alarm=None):
        """The PvpropertyData serving this spec in `group` under `pvname`."""
        cls = self.get_data_class(group)
        kwargs = dict(self.cls_kwargs or {})
        value = self.value
        if isinstance(value, enum.Enum):
            value = value.name
        if isinstance(self.dtype, type) and issubclass(self.dtype, enum.Enum):
            kwargs.setdefault("enum_strings", [member.name for member in self.dtype])
        if (self.max_length is not None and issubclass(cls, ChannelString)
                and not isinstance(value, (list, tuple))):
            kwargs.setdefault("long_string_max_length", self.max_length + 1)
        elif self.max_length is not None:
            kwargs["max_length"] = self.max_length
        if self.read_only is not None:
            kwargs["read_only"] = self.read_only
        # asg/asl (access.py) and autosave (autosave.py) mark the data itself.
        marks = {key: kwargs.pop(key) for key in ("asg", "asl", "autosave")
                 if key in kwargs}
        try:
            data = cls(pvname=pvname, group=group, pvspec=self, attr_name=attr_name,
                       value=value, alarm=alarm, **kwargs)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"pvproperty {attr_name!r} ({pvname}): {exc}") from None
        for key, mark in marks.items():
            setattr(data, key, mark)
        return data


ScanSpec = collections.namedtuple(
    "ScanSpec", "func period subtract_elapsed stop_on_error failure_severity "
                "use_scan_field")
ScanSpec.__doc__ = "A periodic hook: ``func(group, instance, async_lib)`` every `period` s."


class PvpropertyData:
    """Mixin making a ChannelData class serve one pvproperty of one group.

    ``group``, ``pvspec``, ``pvname``, ``attr_name`` (``name``) identify it;
    ``fields`` maps record field names (DESC, EGU, ...) to their ChannelData
    when the spec has ``record=``; ``field_inst`` is the RecordFields object.
    """

    def __init__(self, *, pvname, group, pvspec, attr_name=None, alarm=None,
                 doc=None, **kwargs):
        self.pvname = pvname
        self.group = group
        self.pvspec = pvspec
        self.attr_name = attr_name
        self.name = attr_name
        self.doc = doc if doc is not None else pvspec.doc
        self.scan_overruns = 0
        self._quiet = 0                  # > 0 while publishing: reads skip the getter
        self._group_inits = []           # groups whose __ainit__ this data hosts
        self._group_shutdowns = []
        kwargs.setdefault("reported_record_type", pvspec.record or "caproto")
        if alarm is not None:
            kwargs["alarm"] = alarm
        super().__init__(**kwargs)
        self.field_inst = None
        self.fields = {}
        if pvspec.record:
            from .records import make_record_fields
            self.field_inst = make_record_fields(pvspec.record, self)
            self.fields = self.field_inst.fields

    def __repr__(self):
        return f"<{type(self).__name__} {self.pvname!r} value={self.value!r}>"

    def get_field(self, field):
        """The ChannelData serving ``PV.FIELD`` (names.py calls this), or None."""
        return self.fields.get(field)

    # -- reads and writes ---------------------------------------------------

    def preprocess_value(self, value):
        if isinstance(value, enum.Enum) and self.data_type == ChannelType.ENUM:
            value = value.name            # an enum.Enum member is its state name
        return super().preprocess_value(value)

    def _reads_stored_state(self):
        # No getter and nothing overriding read or group_read: then a read
        # is ChannelData's (see ChannelData._reads_stored_state).
        return (type(self).read is PvpropertyData.read and self.pvspec.get is None
                and getattr(type(self.group).group_read, "calls_getter_only", False))

    async def read(self, data_type):
        if not self._quiet:
            value = await self.group.group_read(self)
            if value is not None:
                await self.write(value, verify_value=False)
        return await super().read(data_type)

    async def publish(self, flags):
        self._quiet += 1
        try:
            await super().publish(flags)
        finally:
            self._quiet -= 1
        if self.field_inst is not None and flags:
            await self.field_inst.sync(flags)

    async def subscribe(self, queue, sub_spec, sub):
        self._quiet += 1
        try:
            await super().subscribe(queue, sub_spec, sub)
        finally:
            self._quiet -= 1

    async def verify_value(self, value):
        """Limits (or a record's own rules), then the group's putter."""
        if self.field_inst is not None:
            value = self.field_inst.check_value(value)
        else:
            value = await super().verify_value(value)
        replaced = await self.group.group_write(self, value)
        return value if replaced is None else replaced

    async def update_fields(self, value):
        if self.field_inst is not None:
            await self.field_inst.value_written(value)

    async def process(self):
        """What writing PROC does: run the getter (input) or the putter (output)."""
        if self.pvspec.get is not None:
            value = await self.group.group_read(self)
            await self.write(self.value if value is None else value, verify_value=False)
        else:
            await self.write(self.value)

    # -- hooks the server layer runs (common.Context.hooks) -------------------

    @property
    def server_startup(self):
        if self.pvspec.startup is None and not self._group_inits:
            return None
        return self._startup

    @property
    def server_shutdown(self):
        if self.pvspec.shutdown is None and not self._group_shutdowns:
            return None
        return self._shutdown

    @property
    def server_scan(self):
        return None if self.pvspec.scan is None else self._scan

    async def _startup(self, async_lib):
        hooks = [group.__ainit__(async_lib) for group in self._group_inits]
        if self.pvspec.startup is not None:
            hooks.append(self.pvspec.startup(self.group, self, async_lib))
        await run_concurrently(async_lib, hooks)

    async def _shutdown(self, async_lib):
        if self.pvspec.shutdown is not None:
            await self.pvspec.shutdown(self.group, self, async_lib)
        for group in self._group_shutdowns:
            await group.__ashutdown__(async_lib)

    @property
    def scan_period(self):
        """Seconds between scans now: the SCAN field's when the scan follows it."""
        spec = self.pvspec.scan
        if spec.use_scan_field and self.field_inst is not None:
            return self.field_inst.scan_period
        return spec.period

    async def _scan(self, async_lib):
        await run_scan(self.group, self, async_lib, self.pvspec.scan,
                       lambda: self.scan_period)


class PvpropertyReadOnlyData(PvpropertyData):
    """Clients may read but never write it (IOC code still can)."""

    read_only = True


async def run_concurrently(async_lib, coroutines):
    """Await every coroutine at once, on whichever library is running."""
    if len(coroutines) <= 1:
        for coroutine in coroutines:
            await coroutine
        return
    name = getattr(async_lib, "name", "asyncio")
    if name == "trio":
        import trio
        async with trio.open_nursery() as nursery:
            for coroutine in coroutines:
                nursery.start_soon(_await, coroutine)
    elif name == "curio":
        import curio
        async with curio.TaskGroup(wait=all) as tasks:
            for coroutine in coroutines:
                await tasks.spawn(coroutine)
    else:
        import asyncio
        await asyncio.gather(*coroutines)


async def _await(coroutine):
    await coroutine


# -- scanning -------------------------------------------------------------------

def _log_overrun(instance, in_a_row, took, period):
    """dbScan-style: log the first overrun, then at 10, 100, 1000 ... in a row."""
    if in_a_row == 1 or (in_a_row >= 10 and str(in_a_row).rstrip("0") == "1"):
        log.warning("scan of %s took %.3f s, longer than its %.3f s period; "
                    "over-runs have now happened %d times in a row "
                    "(%d in total)", getattr(instance, "pvname", instance), took,
                    period, in_a_row, instance.scan_overruns)


async def run_scan(group, instance, async_lib, spec, get_period,
                   clock=time.monotonic):
    """Call ``spec.func(group, instance, async_lib)`` every period, drift-free.

    `get_period()` is asked before each run; None (Passive/Event/I/O Intr)
    pauses the scan until it returns a number again.  With
    ``spec.use_scan_field`` a new period also applies to the wait under way.
    `clock` is the monotonic clock the schedule follows.
    """
    scheduled = clock()
    in_a_row = 0
    while True:
        period = get_period()
        if period is None:
            await async_lib.sleep(_SCAN_POLL)
            scheduled = clock()
            continue
        started = clock()
        try:
            await spec.func(group, instance, async_lib)
        except Exception as exc:
            log.exception("scan of %s failed", getattr(instance, "pvname", instance))
            if spec.failure_severity is not None:
                await instance.alarm.write(status=AlarmStatus.SCAN,
                                           severity=spec.failure_severity,
                                           alarm_string=str(exc)[:39])
            if spec.stop_on_error:
                return
        if not spec.subtract_elapsed:
            scheduled = clock()
        now = clock()
        if now > scheduled + period:
            instance.scan_overruns += 1
            in_a_row += 1
            _log_overrun(instance, in_a_row, now - started, period)
            scheduled = now
            await async_lib.sleep(0)
            continue
        in_a_row = 0
        if spec.use_scan_field:
            scheduled = await _wait_following(scheduled, period, get_period, async_lib,
                                              clock)
        else:
            scheduled += period
            await _wait_until(scheduled, async_lib, clock)


async def _wait_until(deadline, async_lib, clock):
    remaining = deadline - clock()
    if remaining > 0:
        await async_lib.sleep(remaining)


async def _wait_following(scheduled, period, get_period, async_lib, clock):
    """Wait for scheduled + period, re-reading the period every _SCAN_POLL s;
    returns the time the next run is scheduled for."""
    changed = False
    while True:
        deadline = scheduled + period
        remaining = deadline - clock()
        if remaining <= 0:       # a shortened period that already passed runs now
            return max(deadline, clock()) if changed else deadline
        await async_lib.sleep(min(remaining, _SCAN_POLL))
        new = get_period()
        if new is None:
            return clock()
        changed = changed or new != period
        period = new


def scan_wrapper(scan_function, period, *, subtract_elapsed=True, stop_on_error=False,
                 failure_severity=AlarmSeverity.MAJOR_ALARM, use_scan_field=False):
    """A startup hook running ``scan_function(group, instance, async_lib)`` periodically."""
    spec = ScanSpec(scan_function, float(period), subtract_elapsed, stop_on_error,
                    failure_severity, use_scan_field)

    @functools.wraps(scan_function)
    async def scanned_startup(group, instance, async_lib):
        if use_scan_field and getattr(instance, "field_inst", None) is not None:
            get_period = lambda: instance.field_inst.scan_period  # noqa: E731
        else:
            get_period = lambda: spec.period  # noqa: E731
        await run_scan(group, instance, async_lib, spec, get_period)
    return scanned_startup


# -- the descriptor -----------------------------------------------------------------

_HOOKS = ("get", "put", "startup", "shutdown")


def _check_hook(func, what, arity):
    if not inspect.iscoroutinefunction(func):
        raise CaprotoTypeError(f"{what} hook {func!r} must be an async def function")
    try:
        inspect.signature(func).bind(*range(arity))
    except TypeError:
        raise CaprotoTypeError(f"{what} hook {func.__qualname__} must accept "
                               f"{arity} positional arguments") from None
    return func


class pvproperty:
    """Declare a PV on a PVGroup: ``x = pvproperty(value=1.0, units='mm')``.

    The data class is inferred from `dtype` or `value` (str -> STRING, bool
    -> ENUM Off/On, int -> LONG, float -> DOUBLE, bytes -> CHAR array, an
    enum.Enum -> ENUM of its names, a list -> an array of its element type,
    `max_length` elements).  `name` is the PV name after the group prefix
    (default: the attribute name; macros allowed).  `doc` becomes the
    record's DESC; `record` ('ai', 'ao', ...) adds the record's fields.
    Any other keyword (precision, units, upper_ctrl_limit, enum_strings,
    value_atol, ...) goes to the data class.
    """

    def __init__(self, get=None, put=None, startup=None, shutdown=None, *,
                 name=None, value=None, dtype=None, max_length=None,
                 alarm_group=None, doc=None, read_only=None, record=None,
                 mock_record=None, fields=None, scan=None, **cls_kwargs):
        record = record or mock_record
        if record is not None:
            from .records import get_record_class
            get_record_class(record)        # unknown record types fail here
        if doc is None and get is not None:
            doc = inspect.getdoc(get)
        self.attr_name = None
        self.pvspec = PVSpec(None, None, None, None, name, value, dtype, max_length,
                             alarm_group, read_only, doc, fields, scan, record,
                             cls_kwargs)
        for kind, func in zip(_HOOKS, (get, put, startup, shutdown)):
            if func is not None:
                self._set_hook(kind, func)
        data_class_for(value, dtype, read_only, cls_kwargs)   # fail at class creation

    def __set_name__(self, owner, name):
        self.attr_name = name
        if self.pvspec.name is None:
            self.pvspec = self.pvspec.new_names(name=name)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return instance.attr_pvdb[self.attr_name]

    def __set__(self, instance, value):
        raise AttributeError(f"pvproperty {self.attr_name!r} cannot be replaced; "
                             f"use 'await group.{self.attr_name}.write(value)'")

    def __call__(self, get):
        """``@pvproperty(...)`` on an async function: it becomes the getter."""
        self._set_hook("get", get)
        if self.pvspec.doc is None:
            self.pvspec = self.pvspec.new_names(doc=inspect.getdoc(get))
        return self

    def __repr__(self):
        return f"<pvproperty {self.attr_name!r} {self.pvspec.name!r}>"

    def _set_hook(self, kind, func):
        arity = {"get": 2, "put": 3}.get(kind, 3)
        _check_hook(func, kind, arity)
        self.pvspec = self.pvspec.new_names(**{kind: func})
        return self

    def getter(self, get):
        """``async def get(group, instance) -> value or None``, run on each client read."""
        return self._set_hook("get", get)

    def putter(self, put):
        """``async def put(group, instance, value) -> value or None``, run on each write."""
        return self._set_hook("put", put)

    def startup(self, startup):
        """``async def startup(group, instance, async_lib)``, run as a task at start."""
        return self._set_hook("startup", startup)

    def shutdown(self, shutdown):
        """``async def shutdown(group, instance, async_lib)``, awaited at exit."""
        return self._set_hook("shutdown", shutdown)

    def scan(self, period, *, subtract_elapsed=True, stop_on_error=False,
             failure_severity=AlarmSeverity.MAJOR_ALARM, use_scan_field=False):
        """Decorate ``async def scan(group, instance, async_lib)`` to run every `period` s.

        With ``use_scan_field=True`` (needs ``record=``) the record's SCAN
        field sets the period and writing SCAN changes it; Passive stops it.
        """
        if not period or period <= 0:
            raise CaprotoValueError(f"scan period must be > 0 seconds, not {period!r}")
        if use_scan_field and self.pvspec.record is None:
            raise CaprotoValueError("use_scan_field=True needs a record= (the SCAN "
                                    "field lives on the record)")

        def wrapper(func):
            _check_hook(func, "scan", 3)
            self.pvspec = self.pvspec.new_names(scan=ScanSpec(
                func, float(period), subtract_elapsed, stop_on_error,
                failure_severity, use_scan_field))
            return self
        return wrapper


# -- data classes ---------------------------------------------------------------------

class PvpropertyBoolEnumMixin:
    """An ENUM of two states (default Off/On) that also takes Python bools."""

    def __init__(self, *, enum_strings=None, value=None, **kwargs):
        strings = tuple(enum_strings) if enum_strings else ("Off", "On")
        if isinstance(value, bool):
            value = strings[int(value)]
        super().__init__(enum_strings=strings, value=value, **kwargs)

    def preprocess_value(self, value):
        if isinstance(value, bool):
            value = int(value)
        return super().preprocess_value(value)


def _make(name, *bases, doc=None, **attrs):
    return type(name, bases, dict(attrs, __doc__=doc, __module__=__name__))


PvpropertyDouble = _make("PvpropertyDouble", PvpropertyData, ChannelDouble)
PvpropertyFloat = _make("PvpropertyFloat", PvpropertyData, ChannelFloat)
PvpropertyInteger = _make("PvpropertyInteger", PvpropertyData, ChannelInteger)
PvpropertyShort = _make("PvpropertyShort", PvpropertyData, ChannelShort)
PvpropertyByte = _make("PvpropertyByte", PvpropertyData, ChannelByte)
PvpropertyChar = _make("PvpropertyChar", PvpropertyData, ChannelChar)
PvpropertyEnum = _make("PvpropertyEnum", PvpropertyData, ChannelEnum)
PvpropertyBoolEnum = _make("PvpropertyBoolEnum", PvpropertyBoolEnumMixin,
                           PvpropertyData, ChannelEnum)
PvpropertyString = _make("PvpropertyString", PvpropertyData, ChannelString)

_READ_ONLY = {}
for _cls in (PvpropertyDouble, PvpropertyFloat, PvpropertyInteger, PvpropertyShort,
             PvpropertyByte, PvpropertyChar, PvpropertyEnum, PvpropertyBoolEnum,
             PvpropertyString):
    _READ_ONLY[_cls] = _make(_cls.__name__ + "RO", *(
        PvpropertyReadOnlyData if base is PvpropertyData else base
        for base in _cls.__bases__))
    globals()[_cls.__name__ + "RO"] = _READ_ONLY[_cls]
del _cls

_BY_PYTHON_TYPE = {str: PvpropertyString, bool: PvpropertyBoolEnum,
                   int: PvpropertyInteger, float: PvpropertyDouble,
                   bytes: PvpropertyByte, bytearray: PvpropertyByte}
_BY_CHANNEL_TYPE = {ChannelType.STRING: PvpropertyString, ChannelType.INT: PvpropertyShort,
                    ChannelType.FLOAT: PvpropertyFloat, ChannelType.ENUM: PvpropertyEnum,
                    ChannelType.CHAR: PvpropertyChar, ChannelType.LONG: PvpropertyInteger,
                    ChannelType.DOUBLE: PvpropertyDouble}
_BY_NUMPY_KIND = {("f", 8): PvpropertyDouble, ("f", 4): PvpropertyFloat,
                  ("i", 4): PvpropertyInteger, ("i", 8): PvpropertyInteger,
                  ("i", 2): PvpropertyShort, ("u", 1): PvpropertyByte,
                  ("i", 1): PvpropertyShort, ("u", 2): PvpropertyInteger,
                  ("b", 1): PvpropertyBoolEnum}


def _class_of_dtype(dtype):
    if isinstance(dtype, type) and issubclass(dtype, PvpropertyData):
        return dtype
    if isinstance(dtype, type) and issubclass(dtype, enum.Enum):
        return PvpropertyEnum
    if isinstance(dtype, ChannelType) or (isinstance(dtype, int)
                                          and not isinstance(dtype, bool)
                                          and not isinstance(dtype, type)):
        return _BY_CHANNEL_TYPE.get(ChannelType(dtype))
    if dtype in _BY_PYTHON_TYPE:
        return _BY_PYTHON_TYPE[dtype]
    kind = getattr(dtype, "kind", None)
    if kind is None and isinstance(dtype, type) and dtype.__module__ == "numpy":
        import numpy
        dtype = numpy.dtype(dtype)
        kind = dtype.kind
    if kind is not None:
        return _BY_NUMPY_KIND.get((kind, dtype.itemsize))
    return None


def _class_of_value(value, kwargs):
    if value is None:
        return PvpropertyEnum if kwargs.get("enum_strings") else PvpropertyInteger
    if isinstance(value, enum.Enum):
        return PvpropertyEnum
    if hasattr(value, "dtype") and getattr(value, "ndim", 0) >= 1:
        return _class_of_dtype(value.dtype)
    if isinstance(value, (list, tuple)):
        if not value:
            raise CaprotoValueError("cannot infer a type from an empty list; "
                                    "give dtype=")
        return _class_of_value(value[0], kwargs)
    if isinstance(value, str) and kwargs.get("enum_strings"):
        return PvpropertyEnum
    for python_type in (bool, str, int, float, bytes, bytearray):
        if isinstance(value, python_type):
            return _BY_PYTHON_TYPE[python_type]
    if hasattr(value, "dtype"):                     # numpy scalar
        return _class_of_dtype(value.dtype)
    return None


def data_class_for(value, dtype=None, read_only=None, cls_kwargs=None):
    """The PvpropertyData class for a value/dtype pair (RO variant if read_only)."""
    cls = (_class_of_dtype(dtype) if dtype is not None
           else _class_of_value(value, cls_kwargs or {}))
    if cls is None:
        raise CaprotoTypeError(f"cannot serve dtype={dtype!r} / value={value!r}: "
                               f"use str, bool, int, float, bytes, an enum.Enum, a "
                               f"ChannelType or a Pvproperty* class")
    if read_only and cls in _READ_ONLY:
        cls = _READ_ONLY[cls]
    return cls

"""pyepics-style API (PV, get_pv, caget, caput, camonitor, *_many) on our client.

pyepics' documented behaviour is the specification: values come back as
Python scalars (or native-endian numpy arrays), strings as ``str``, enums
as their index with ``char_value``/``as_string`` giving the label.

Invariants: every network operation goes through caproto.threading.client
(which drives the shared client core); this module only converts between
CA responses and pyepics' keyword-argument world.  PV state (``_args``) is
written only from the callback thread or under ``PV._lock``.
"""
import math
import threading
import time

from .._constants import EPICS_EPOCH
from .._dbr import ChannelType, SubscriptionType, native_type
from .._errors import CaprotoError, CaprotoTimeoutError
from .client import Context

__all__ = ("PV", "get_pv", "caget", "caput", "camonitor", "camonitor_clear",
           "caget_many", "caput_many", "AUTOMONITOR_MAXLENGTH",
           "get_default_context", "set_default_context")

AUTOMONITOR_MAXLENGTH = 65536
STRING_ENCODING = "latin-1"
_FIELDS = ("pvname", "value", "char_value", "status", "ftype", "chid", "host",
           "count", "access", "write_access", "read_access", "severity",
           "timestamp", "posixseconds", "nanoseconds", "precision", "units",
           "enum_strs", "upper_disp_limit", "lower_disp_limit",
           "upper_alarm_limit", "lower_alarm_limit", "lower_warning_limit",
           "upper_warning_limit", "upper_ctrl_limit", "lower_ctrl_limit",
           "type", "typefull", "nelm")
_CTRL_KEYS = ("precision", "units", "enum_strs", "upper_disp_limit",
              "lower_disp_limit", "upper_alarm_limit", "lower_alarm_limit",
              "lower_warning_limit", "upper_warning_limit",
              "upper_ctrl_limit", "lower_ctrl_limit")
_TYPE_NAMES = {ChannelType.INT: "short", ChannelType.FLOAT: "float",
               ChannelType.ENUM: "enum", ChannelType.CHAR: "char",
               ChannelType.LONG: "long", ChannelType.DOUBLE: "double",
               ChannelType.STRING: "string"}
_PREFIX = {"native": "", "time": "time_", "ctrl": "ctrl_"}

_default_context = None
_context_lock = threading.Lock()
_pv_cache = {}
_monitors = {}


def get_default_context():
    """The Context shared by every PV made without one (created on demand)."""
    global _default_context
    with _context_lock:
        if _default_context is None:
            _default_context = Context()
        return _default_context


def set_default_context(context):
    global _default_context
    with _context_lock:
        _default_context = context


def _decode(text):
    return text.decode(STRING_ENCODING) if isinstance(text, bytes) else text


def _native_array(data):
    """Numeric data in native byte order (pyepics hands out native arrays)."""
    dtype = getattr(data, "dtype", None)
    if dtype is not None and not dtype.isnative:
        return data.astype(dtype.newbyteorder("="))
    return data


def _python_scalar(item):
    return item.item() if hasattr(item, "item") else item


class PV:
    """A pyepics-compatible PV: ``value``, ``get``, ``put``, callbacks.

    form is 'time' (default), 'ctrl' or 'native'.  auto_monitor None means
    "monitor unless the array is longer than AUTOMONITOR_MAXLENGTH";
    an int is used as the event mask.
    """

    def __init__(self, pvname, callback=None, form="time", verbose=False,
                 auto_monitor=None, count=None, connection_callback=None,
                 connection_timeout=None, access_callback=None, context=None):
        if form not in _PREFIX:
            raise CaprotoError(f"PV {pvname!r}: form={form!r} must be one of "
                               f"{sorted(_PREFIX)}")
        self.pvname = pvname.strip()
        self.form = form
        self.verbose = verbose
        self.auto_monitor = auto_monitor
        self.request_count = count
        self.connection_timeout = connection_timeout
        self.callbacks = {}
        self.connection_callbacks = ([connection_callback]
                                     if connection_callback else [])
        self.access_callbacks = [access_callback] if access_callback else []
        self.put_complete = False
        self._args = dict.fromkeys(_FIELDS)
        self._args["pvname"] = self.pvname
        self._lock = threading.RLock()
        self._ctrl_fetched = False
        self._monitor = None
        self._connected_once = threading.Event()
        self._caproto_pv = None
        if callable(callback):
            callback = [callback]
        for index, func in enumerate(callback or ()):
            self.add_callback(func, index=index, with_ctrlvars=False)
        self.context = context or get_default_context()
        caproto_pv, = self.context.get_pvs(self.pvname)
        with self._lock:
            self._caproto_pv = caproto_pv
            caproto_pv.connection_state_callback.add_callback(
                self._on_connection)
            caproto_pv.access_rights_callback.add_callback(self._on_access)
            if caproto_pv.connected:       # a shared PV connected earlier
                self._on_connection(caproto_pv, "connected")
                self._on_access(caproto_pv, caproto_pv.access_rights)

    def __repr__(self):
        state = "connected" if self.connected else "unconnected"
        return f"<PV {self.pvname!r}, {state}>"

    # -- connection ------------------------------------------------------

    @property
    def connected(self):
        return self._caproto_pv is not None and self._caproto_pv.connected

    def _on_connection(self, caproto_pv, state):
        conn = state == "connected"
        if conn:
            with self._lock:
                if self._caproto_pv is None:
                    return                 # __init__ will call again
                self._connected(caproto_pv)
        for func in self.connection_callbacks:
            func(pvname=self.pvname, conn=conn, pv=self)

    def _connected(self, caproto_pv):
        with self._lock:
            self._args["ftype"] = int(self._data_type())
            self._args["type"] = self._args["typefull"] = self.type
            self._args["count"] = self._args["nelm"] = \
                caproto_pv.native_data_count
            self._args["host"] = "%s:%d" % caproto_pv.server_address
            self._args["chid"] = caproto_pv.channel.cid
        self._connected_once.set()
        if self._wants_monitor() and self._monitor is None:
            self._start_monitor()
        if not self._ctrl_fetched:
            caproto_pv.read(wait=False, callback=self._on_ctrl, form="ctrl")

    def _on_access(self, caproto_pv, rights):
        if rights is None:
            return
        read, write = bool(int(rights) & 1), bool(int(rights) & 2)
        with self._lock:
            self._args["read_access"], self._args["write_access"] = read, write
            self._args["access"] = {(True, True): "read/write",
                                    (True, False): "read-only",
                                    (False, True): "write-only",
                                    (False, False): "no access"}[(read, write)]
        for func in self.access_callbacks:
            func(read, write, pv=self)

    def wait_for_connection(self, timeout=None):
        """True once connected; False if `timeout` (s) passes first."""
        if timeout is None:
            timeout = self.connection_timeout or 5.0
        deadline = time.monotonic() + timeout
        # First our own connection handling (type, count, monitor), then
        # the channel itself, which may have dropped again since.
        if not self._connected_once.wait(timeout):
            return False
        remaining = max(0.0, deadline - time.monotonic())
        return self._caproto_pv._connected.wait(remaining)

    connect = wait_for_connection

    def disconnect(self):
        self.clear_callbacks()
        if self._monitor is not None:
            self._monitor.clear()
            self._monitor = None

    # -- type and metadata -------------------------------------------------

    def _wants_monitor(self):
        if self.auto_monitor is None:
            count = self._caproto_pv.native_data_count or 1
            return count <= AUTOMONITOR_MAXLENGTH
        return bool(self.auto_monitor)

    def _data_type(self, form=None):
        native = native_type(self._caproto_pv.native_data_type)
        form = form or self.form
        offset = {"native": 0, "time": 14, "ctrl": 28}[form]
        return ChannelType(native + offset)

    def _start_monitor(self):
        mask = self.auto_monitor
        if mask is None or mask is True:
            mask = SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM
            if self.form == "ctrl":
                mask |= SubscriptionType.DBE_PROPERTY
        self._monitor = self._caproto_pv.subscribe(
            data_type=self._data_type(), data_count=self.request_count,
            mask=int(mask))
        self._monitor.add_callback(self._on_monitor)

    def _store_metadata(self, metadata):
        if metadata is None:
            return
        fields = metadata.to_dict()
        args = self._args
        for key in ("status", "severity", "precision"):
            if key in fields:
                args[key] = int(fields[key])
        if "units" in fields:
            args["units"] = _decode(fields["units"])
        if "enum_strings" in fields:
            args["enum_strs"] = tuple(_decode(s) for s in fields["enum_strings"])
        for key in _CTRL_KEYS[3:]:
            if key in fields:
                args[key] = fields[key]
        if "secondsSinceEpoch" in fields:
            args["posixseconds"] = float(fields["secondsSinceEpoch"]
                                         + EPICS_EPOCH)
            args["nanoseconds"] = fields["nanoSeconds"]
            args["timestamp"] = fields["timestamp"]

    def _on_ctrl(self, response):
        with self._lock:
            self._store_metadata(response.metadata)
            self._ctrl_fetched = True

    def get_ctrlvars(self, timeout=5.0, warn=True):
        """Control metadata (units, limits, precision, enum_strs) as a dict."""
        if not self.wait_for_connection(timeout):
            return None
        response = self._caproto_pv.read(form="ctrl", timeout=timeout)
        with self._lock:
            self._store_metadata(response.metadata)
            self._ctrl_fetched = True
            return {key: self._args[key] for key in
                    ("status", "severity") + _CTRL_KEYS
                    if self._args[key] is not None}

    def get_timevars(self, timeout=5.0, warn=True):
        if not self.wait_for_connection(timeout):
            return None
        response = self._caproto_pv.read(form="time", timeout=timeout)
        with self._lock:
            self._store_metadata(response.metadata)
            return {key: self._args[key] for key in
                    ("status", "severity", "timestamp", "posixseconds",
                     "nanoseconds")}

    # -- values ------------------------------------------------------------

    def _value_from(self, response, as_numpy=True):
        data = response.data
        native = native_type(response.data_type)
        if native == ChannelType.STRING:
            strings = [_decode(item) for item in data]
            return strings[0] if len(strings) == 1 else strings
        count = len(data)
        if count == 1 and (self._args["nelm"] or 1) == 1:
            return _python_scalar(data[0])
        data = _native_array(data)
        if not as_numpy and hasattr(data, "tolist"):
            return data.tolist()
        return data

    def _update(self, response):
        value = self._value_from(response)
        with self._lock:
            self._store_metadata(response.metadata)
            self._args["value"] = value
            self._args["count"] = response.data_count
            self._args["char_value"] = self._char_value(value)
        return value

    def _count(self, count):
        """pyepics clamps a requested count to the native element count."""
        count = count or self.request_count
        nelm = self._caproto_pv.native_data_count
        return min(count, nelm) if count and nelm else count

    def _char_value(self, value):
        ftype = native_type(self._args["ftype"])
        count = self._args["count"] or 1
        if value is None:
            return "None"
        if ftype == ChannelType.STRING:
            return value if isinstance(value, str) else " ".join(value)
        if ftype == ChannelType.CHAR and count < AUTOMONITOR_MAXLENGTH:
            items = list(value) if hasattr(value, "__len__") else [value]
            items = [int(i) for i in items]
            end = items.index(0) if 0 in items else len(items)
            return "".join(chr(i) for i in items[:end]).rstrip()
        length = len(value) if hasattr(value, "__len__") else 1
        nelm = self._caproto_pv.native_data_count or 1
        if count > 1 or length > 1 or nelm > 1:   # pyepics: a waveform is an array
            return f"<array size={length}, type={self.type}>"
        if hasattr(value, "__len__"):       # a scalar served as a one-element array
            if not length:
                return ""
            value = value[0]
        if ftype in (ChannelType.FLOAT, ChannelType.DOUBLE):
            precision = self._args["precision"]
            if precision is None:
                return str(value)
            fmt = "%.{}f".format(precision)
            if math.isfinite(value) and abs(value) > 0 and \
                    4 < abs(int(math.log10(abs(value + 1e-9)))):
                fmt = "%.{}g".format(precision)
            return fmt % value
        if ftype == ChannelType.ENUM:
            strs = self._args["enum_strs"]
            if strs and 0 <= value < len(strs):
                return strs[value]
        return str(value)

    def _on_monitor(self, sub, response):
        self._update(response)
        self.run_callbacks()

    def get(self, count=None, as_string=False, as_numpy=True, timeout=None,
            with_ctrlvars=False, use_monitor=True):
        """The value (None when the PV cannot be reached in `timeout`)."""
        info = self.get_with_metadata(count=count, as_string=as_string,
                                      as_numpy=as_numpy, timeout=timeout,
                                      with_ctrlvars=with_ctrlvars,
                                      use_monitor=use_monitor)
        return None if info is None else info["value"]

    def get_with_metadata(self, count=None, as_string=False, as_numpy=True,
                          timeout=None, with_ctrlvars=False, use_monitor=True,
                          form=None, as_namespace=False):
        """``{'value': ..., 'status': ..., ...}`` (pyepics' dict form)."""
        if timeout is None:
            timeout = self.connection_timeout or 5.0
        if not self.wait_for_connection(timeout):
            return None
        if with_ctrlvars and not self._ctrl_fetched:
            self.get_ctrlvars(timeout=timeout)
        if not (use_monitor and self._monitor is not None
                and self._args["value"] is not None and form is None):
            try:
                response = self._caproto_pv.read(
                    data_type=self._data_type(form), timeout=timeout,
                    data_count=self._count(count))
            except CaprotoTimeoutError:
                return None
            value = self._update(response)
        else:
            value = self._args["value"]
        if as_string and self._args["enum_strs"] is None and \
                native_type(self._args["ftype"]) == ChannelType.ENUM:
            self.get_ctrlvars(timeout=timeout)
        with self._lock:
            info = dict(self._args)
        if count is not None and hasattr(value, "__len__") \
                and not isinstance(value, str):
            value = value[:count]
        if as_string:
            value = self._char_value(value)
        elif not as_numpy and hasattr(value, "tolist"):
            value = value.tolist()
        info["value"] = value
        return info

    def put(self, value, wait=False, timeout=30.0, use_complete=False,
            callback=None, callback_data=None):
        """Write; wait=True blocks until processing completes (put-callback)."""
        if not self.wait_for_connection(self.connection_timeout or 5.0):
            raise CaprotoTimeoutError(f"PV {self.pvname!r} is not connected")
        data, data_type = self._encode_put(value)
        notify = bool(wait or callback or use_complete)
        self.put_complete = not notify
        done = None
        if notify:
            def done(response):
                self.put_complete = True
                if callback is not None:
                    callback(pvname=self.pvname, data=callback_data)
        try:
            self._caproto_pv.write(data, wait=bool(wait), callback=done,
                                   notify=notify, timeout=timeout,
                                   data_type=data_type)
        except CaprotoTimeoutError:
            return -1
        return 1

    def _encode_put(self, value):
        native = native_type(self._caproto_pv.native_data_type)
        if native == ChannelType.CHAR and isinstance(value, str):
            return value.encode(STRING_ENCODING) + b"\0", ChannelType.CHAR
        if isinstance(value, str):
            if native == ChannelType.ENUM and self._args["enum_strs"] and \
                    value in self._args["enum_strs"]:
                return [self._args["enum_strs"].index(value)], ChannelType.ENUM
            return [value], ChannelType.STRING
        if isinstance(value, bytes) and native != ChannelType.CHAR:
            return [value], ChannelType.STRING
        if native == ChannelType.STRING:
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value], ChannelType.STRING
            return [str(value)], ChannelType.STRING
        if not hasattr(value, "__len__"):
            value = [value]
        return value, None

    # -- callbacks ---------------------------------------------------------

    def add_callback(self, callback=None, index=None, run_now=False,
                     with_ctrlvars=True, **kw):
        """Register callback(pvname=, value=, char_value=, ..., **kw); -> index."""
        if not callable(callback):
            return None
        with self._lock:
            if index is None:
                index = 1 + max(self.callbacks, default=0)
            self.callbacks[index] = (callback, kw)
        if with_ctrlvars and self.connected and not self._ctrl_fetched:
            self.get_ctrlvars()
        if run_now and self.connected:
            self.get(as_string=True)
            self.run_callback(index)
        return index

    def remove_callback(self, index=None):
        with self._lock:
            self.callbacks.pop(index, None)

    def clear_callbacks(self):
        with self._lock:
            self.callbacks.clear()

    def run_callback(self, index):
        with self._lock:
            entry = self.callbacks.get(index)
            kwds = dict(self._args)
        if entry is None:
            return
        func, kw = entry
        kwds.update(kw)
        kwds["cb_info"] = (index, self)
        func(**kwds)

    def run_callbacks(self):
        for index in sorted(self.callbacks):
            self.run_callback(index)

    # -- read-only attributes ----------------------------------------------

    @property
    def value(self):
        return self.get()

    @value.setter
    def value(self, val):
        self.put(val)

    @property
    def char_value(self):
        return self.get(as_string=True)

    @property
    def type(self):
        ftype = self._args["ftype"]
        if ftype is None:
            return None
        return _PREFIX[self.form] + _TYPE_NAMES[native_type(ftype)]

    @property
    def info(self):
        lines = [f"== {self.pvname}  ({self.type}) =="]
        for key in ("value", "char_value", "count", "host", "access",
                    "status", "severity", "timestamp", "units", "precision"):
            lines.append(f"   {key:<12}= {self._args[key]!r}")
        return "\n".join(lines)

    def fmt_time(self, tstamp=None):
        """'YYYY-mm-dd HH:MM:SS.ffffff' of the last timestamp (local time)."""
        if tstamp is None:
            tstamp = self._args["timestamp"] or time.time()
        whole = int(tstamp)
        return "%s.%06d" % (time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(whole)),
                            int(round((tstamp - whole) * 1e6)) % 1000000)


def _make_getter(key):
    def getter(self):
        if self._args[key] is None and key in _CTRL_KEYS and self.connected:
            self.get_ctrlvars()
        elif self._args[key] is None and key in ("timestamp", "posixseconds",
                                                 "nanoseconds", "status",
                                                 "severity"):
            self.get_timevars()
        return self._args[key]
    getter.__name__ = key
    return property(getter, doc=f"pyepics PV.{key}")


for _key in ("status", "severity", "timestamp", "posixseconds", "nanoseconds",
             "precision", "units", "enum_strs", "host", "count", "ftype",
             "chid", "access", "read_access", "write_access") + _CTRL_KEYS[3:]:
    setattr(PV, _key, _make_getter(_key))
del _key
PV.nelm = property(lambda self: self._caproto_pv.native_data_count)


def get_pv(pvname, form="time", connect=False, context=None, timeout=5.0,
           connection_callback=None, access_callback=None, callback=None,
           **kws):
    """A cached PV for (pvname, form, context); connect=True waits for it."""
    key = (pvname, form, id(context))
    pv = _pv_cache.get(key)
    if pv is None:
        pv = PV(pvname, form=form, context=context, callback=callback,
                connection_callback=connection_callback,
                access_callback=access_callback, **kws)
        _pv_cache[key] = pv
    else:
        if connection_callback:
            pv.connection_callbacks.append(connection_callback)
        if access_callback:
            pv.access_callbacks.append(access_callback)
        if callback:
            pv.add_callback(callback)
    if connect:
        pv.wait_for_connection(timeout)
    return pv


def caget(pvname, as_string=False, count=None, as_numpy=True,
          use_monitor=False, timeout=5.0, connection_timeout=5.0):
    """The value of `pvname`, or None if it does not connect."""
    pv = get_pv(pvname, connect=False)
    if not pv.wait_for_connection(connection_timeout):
        return None
    if as_string:
        pv.get_ctrlvars(timeout=timeout)
    return pv.get(count=count, as_string=as_string, as_numpy=as_numpy,
                  timeout=timeout, use_monitor=use_monitor)


def caput(pvname, value, wait=False, timeout=60.0, connection_timeout=5.0):
    """Write `value`; 1 on success, None if `pvname` does not connect."""
    pv = get_pv(pvname, connect=False)
    if not pv.wait_for_connection(connection_timeout):
        return None
    return pv.put(value, wait=wait, timeout=timeout)


def camonitor(pvname, writer=None, callback=None, connection_timeout=5.0):
    """Print (or pass to `writer`/`callback`) every update of `pvname`."""
    if writer is None:
        writer = print

    def default_callback(pvname=None, char_value=None, **kw):
        pv = kw["cb_info"][1]
        writer(f"{pvname:.32s} {pv.fmt_time()} {char_value}")

    pv = get_pv(pvname, connect=True, timeout=connection_timeout)
    camonitor_clear(pvname)
    index = pv.add_callback(callback or default_callback, with_ctrlvars=True)
    _monitors[pvname] = (pv, index)
    return pv


def camonitor_clear(pvname):
    """Stop a camonitor() started for `pvname`."""
    found = _monitors.pop(pvname, None)
    if found is not None:
        pv, index = found
        pv.remove_callback(index)


def caget_many(pvlist, as_string=False, as_numpy=True, count=None,
               timeout=1.0, connection_timeout=5.0, conn_timeout=None):
    """Values of many PVs, read in parallel; None for any that fail."""
    if conn_timeout is not None:
        connection_timeout = conn_timeout
    pvs = [get_pv(name, connect=False) for name in pvlist]
    deadline = time.monotonic() + connection_timeout
    for pv in pvs:
        pv.wait_for_connection(max(0.0, deadline - time.monotonic()))
    pending = []
    for pv in pvs:
        if not pv.connected:
            pending.append(None)
            continue
        holder = {"event": threading.Event()}

        def done(response, holder=holder):
            holder["response"] = response
            holder["event"].set()
        pv._caproto_pv.read(wait=False, callback=done,
                            data_type=pv._data_type(),
                            data_count=pv._count(count))
        pending.append(holder)
    deadline = time.monotonic() + timeout
    values = []
    for pv, holder in zip(pvs, pending):
        if holder is None or not holder["event"].wait(
                max(0.0, deadline - time.monotonic())):
            values.append(None)
            continue
        value = pv._update(holder["response"])
        if as_string:
            value = pv._char_value(value)
        elif not as_numpy and hasattr(value, "tolist"):
            value = value.tolist()
        values.append(value)
    return values


def caput_many(pvlist, values, wait=False, connection_timeout=5.0,
               put_timeout=60):
    """Write many PVs; a list of 1 (success) or -1 (failure) per PV.

    wait=False: fire all puts; wait=True or 'all': all at once and wait
    for every completion; wait='each': one after another.
    """
    if len(pvlist) != len(values):
        raise CaprotoError(f"caput_many: {len(pvlist)} PVs but "
                           f"{len(values)} values")
    pvs = [get_pv(name, connect=False) for name in pvlist]
    deadline = time.monotonic() + connection_timeout
    connected = [pv.wait_for_connection(max(0.0, deadline - time.monotonic()))
                 for pv in pvs]
    if wait == "each":
        return [pv.put(v, wait=True, timeout=put_timeout) if ok else -1
                for pv, v, ok in zip(pvs, values, connected)]
    results = [pv.put(v, use_complete=bool(wait)) if ok else -1
               for pv, v, ok in zip(pvs, values, connected)]
    if wait:
        deadline = time.monotonic() + put_timeout
        while time.monotonic() < deadline and not all(
                pv.put_complete for pv, ok in zip(pvs, connected) if ok):
            time.sleep(0.001)
        results = [(1 if pv.put_complete else -1) if ok else -1
                   for pv, ok in zip(pvs, connected)]
    return results



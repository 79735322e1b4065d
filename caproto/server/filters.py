"""Channel filters as epics-base 3.15+/7.0 defines them: ts, dbnd, arr, sync.

A client names a filtered channel by appending filter text to the PV name:
``pv.{"ts":{}}``, ``pv.{"dbnd":{"abs":0.5}}``, ``pv.[2:4]`` (array slice,
``[start:incr:end]``, ``[start:end]`` or ``[i]``), ``pv.{"arr":{"s":2,"e":4}}``,
``pv.{"sync":{"m":"while","s":"state"}}``, or several at once:
``pv.[1:5]{"ts":{},"dbnd":{"rel":5}}``.  ``parse_filter(text, data)`` turns
that text into a ``FilterChain``, the object names.py hands to the engine.

Invariants:
- Semantics are epics-base's (checked against a softIoc in
  tests/server/test_filters.py and test_ts_filter_options.py): slice indices may be negative (counted from
  the end), the end is inclusive and clipped, ``incr < 1`` means 1; the
  native count a sliced channel reports is the slice of ``max_length``
  (NELM) while a read slices the current value (NORD); channels of one
  element are never sliced.  ``dbnd`` passes ALARM/PROPERTY events always and
  VALUE/LOG events only when the value moved more than the deadband
  (strictly) since the last one sent; ``rel`` is a percentage of the last
  value sent (epics-base quirk kept: negative values pass every change).
  ``ts`` stamps events and reads with the time the server sends them (and,
  as epics-base does, pads arrays to their max_length); with ``num``/``str``
  it replaces the value by the time stamp (type and count change, so the
  channel is served by a TimestampView; dbnd/sync still see the source).
  ``sync`` gates events (never reads) on a named state (``states``).
- Filter text is refused with FilterError (a ValueError naming the text and
  the problem), so the channel does not resolve, as epics-base answers
  "not found" for a bad filter.
- ``apply`` never mutates the metadata it is given (one read is shared by
  every subscriber of a data type): it copies before changing it.
- Filter objects hold only their parameters; memory (dbnd's last value,
  sync's held event) lives in the ``state`` dict the engine keeps per
  subscription.  epics-base keeps it per channel, which differs only when
  one client puts several subscriptions on one filtered channel.  A
  TimestampView (one per resolved channel) keeps only the relays its
  subscriptions registered on the source, removed when they unsubscribe.

JSON is read as epics-base 7.0 reads it: plain JSON plus unquoted keys and
single-quoted strings (the JSON5 subset filter names use).  The 7.0.7+ ``ts``
options (``num``: dbl/sec/nsec/ts, ``epoch``: epics/unix, ``str``:
epics/iso) serve the channel's time stamp as its value through a
TimestampView (``FilterChain.served_data``), which the server's name
resolution must use as the channel's data.  Reads pass dbnd and sync
untouched, as in epics-base.
"""
import json
import math
import re
import time

from .._constants import EPICS_EPOCH
from .._convert import TO_WIRE, build_metadata, convert_values, match_integer
from .._data import SubscriptionUpdate
from .._dbr import (
    ChannelType,
    SubscriptionType,
    native_type,
    promote_type,
    timestamp_to_epics,
)
from .circuit import _fit_count

__all__ = ("FilterError", "FilterChain", "parse_filter", "states",
           "TimestampFilter", "TimestampView", "DeadbandFilter", "ArrayFilter",
           "SyncFilter")

_DBE = SubscriptionType
_VALUE_BITS = _DBE.DBE_VALUE | _DBE.DBE_LOG


class FilterError(ValueError):
    """Filter text epics-base would refuse; the message names text and problem."""


class NamedStates:
    """Boolean states the ``sync`` filter follows (epics-base's dbState).

    ``states.create('beam')``; ``states['beam'] = True``; a sync filter on
    a state that was never created is refused, as in epics-base.
    """

    def __init__(self):
        self._values = {}

    def create(self, name, value=False):
        self._values.setdefault(str(name), bool(value))

    def __contains__(self, name):
        return name in self._values

    def __getitem__(self, name):
        return self._values[name]

    def __setitem__(self, name, value):
        if name not in self._values:
            raise KeyError(f"sync state {name!r} does not exist; create it first")
        self._values[name] = bool(value)

    def __repr__(self):
        return f"<NamedStates {self._values!r}>"


states = NamedStates()


def _copy_metadata(metadata):
    return type(metadata).from_buffer_copy(metadata)


# -- the filters ------------------------------------------------------------------
# Each has ``pre`` (runs before the event queue: ts, dbnd, sync) or not (arr),
# ``apply(metadata, values, state, flags)`` like the chain (state None = a read),
# and ``from_options(options, text)`` raising FilterError.


def _options(options, text, name, allowed):
    if not isinstance(options, list):
        raise FilterError(f"{text!r}: the {name!r} filter takes an object, "
                          f"not {options!r}")
    for key, _ in options:
        if key not in allowed:
            raise FilterError(f"{text!r}: the {name!r} filter has no option {key!r}; "
                              f"it takes {sorted(allowed)}")
    return options


def _number(value, text, what, integer=False):
    if isinstance(value, bool) or value is None:
        raise FilterError(f"{text!r}: {what} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FilterError(f"{text!r}: {what} must be a number, not {value!r}") from None
    if integer:
        if not -2 ** 31 <= number < 2 ** 31:
            raise FilterError(f"{text!r}: {what} {value!r} does not fit a 32-bit int")
        return int(number)
    return number


_TS_NUM = ("dbl", "sec", "nsec", "ts")
_TS_EPOCH = ("epics", "unix")
_TS_STR = ("epics", "iso")


class TimestampFilter:
    """``{"ts":{}}``: the timestamp becomes the time the server reads the value.

    As in epics-base, an array is copied whole (NELM elements, zero-padded
    past the current length) to keep data and time coherent, so clients
    see ``max_length`` elements even when they ask for the dynamic count.

    The epics-base 7.0.7+ options make the *value* the channel's timestamp
    instead (``mode`` not None): ``{"num":"dbl"}`` seconds as a double,
    ``"sec"``/``"nsec"`` the two parts, ``"ts"`` both as a 2-element array
    (all DOUBLE over CA, as epics-base serves DBF_ULONG), ``"epoch":"unix"``
    counting from 1970 instead of 1990; ``{"str":"epics"}`` /
    ``{"str":"iso"}`` a local-time string (``str`` wins over ``num``).  The
    channel is then served by a TimestampView (``FilterChain.served_data``).
    """

    name = "ts"
    max_length = 1              # the channel's; set by parse_filter
    stamp = True                # False when a TimestampView stamps instead

    def __init__(self, mode=None, epoch="epics"):
        self.mode, self.epoch = mode, epoch
        self.pre = mode is None          # epics-base: value modes run post-queue

    @classmethod
    def from_options(cls, options, text):
        chosen = {}
        for key, value in _options(options, text, cls.name, ("num", "epoch", "str")):
            allowed = {"num": _TS_NUM, "epoch": _TS_EPOCH, "str": _TS_STR}[key]
            if value not in allowed:
                raise FilterError(f"{text!r}: ts {key!r} must be one of "
                                  f"{list(allowed)}, not {value!r}")
            chosen[key] = value
        if "str" in chosen:
            return cls("str-" + chosen["str"])
        return cls(chosen.get("num"), chosen.get("epoch", "epics"))

    def apply(self, metadata, values, state, flags):
        if self.mode is not None:
            return metadata, values           # the TimestampView made the value
        if self.stamp and metadata is not None and \
                hasattr(type(metadata), "secondsSinceEpoch"):
            metadata = _copy_metadata(metadata)
            metadata.secondsSinceEpoch, metadata.nanoSeconds = timestamp_to_epics(
                time.time())
        if self.max_length > 1:
            text = bool(len(values)) and isinstance(values[0], (bytes, str))
            values, _ = _fit_count(values, self.max_length,
                                   ChannelType.STRING if text else ChannelType.DOUBLE)
        return metadata, values

    def values(self, sec, nsec):
        """The channel's value for an EPICS time stamp (sec, nsec), in the
        view's native type: floats, or one str."""
        if self.mode.startswith("str-"):
            return [_format_stamp(sec, nsec, iso=self.mode == "str-iso")]
        if self.epoch == "unix":
            sec = (sec + EPICS_EPOCH) & 0xFFFFFFFF       # epicsUInt32, as the C
        return {"dbl": [sec + nsec * 1e-9], "sec": [float(sec)],
                "nsec": [float(nsec)], "ts": [float(sec), float(nsec)]}[self.mode]

    def __repr__(self):
        if self.mode is None:
            return "ts"
        return f"ts({self.mode}" + (", unix)" if self.epoch == "unix" else ")")


def _format_stamp(sec, nsec, iso):
    """epicsTimeToStrftime with "%Y-%m-%d %H:%M:%S.%06f" (iso: 'T' and "%z"):
    local time, microseconds rounded without carrying into the seconds."""
    if sec == 0 and nsec == 0:
        return "<undefined>"
    local = time.localtime(sec + EPICS_EPOCH)
    micro = min(nsec + 500, 999_999_999) // 1000
    if iso:
        return (time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{micro:06d}"
                + time.strftime("%z", local))
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{micro:06d}"


class TimestampView:
    """What a channel with a value-mode ``ts`` filter serves (epics-base's
    filtered dbChannel): the source's time stamp as the value, native DOUBLE
    (1 or 2 elements) or STRING; the source's alarm, time stamp, units and
    limits as metadata (precision only for ``dbl``, as dbAccess gives it
    only to floating-point fields).

    Reads and subscriptions are the view's; everything else (writes,
    access rights and security, fields, ``value``) is the source's, reached
    through ``__getattr__``, so a put on the filtered name writes the record.
    Subscriptions ride on the source's own: each (queue, spec) registers a
    relay with the source, which re-reads the view when the source posts.
    """

    long_string_max_length = 0

    def __init__(self, source, ts_filter, use_now=False):
        self.source = source
        self.ts_filter = ts_filter
        self.use_now = use_now            # a plain {"ts":{}} came too: time = now
        text = ts_filter.mode.startswith("str-")
        self.data_type = ChannelType.STRING if text else ChannelType.DOUBLE
        self.max_length = 2 if ts_filter.mode == "ts" else 1
        self._relays = {}                 # (queue, spec) -> _Relay

    def __getattr__(self, name):
        if name == "source":              # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def __len__(self):
        return self.max_length

    def __repr__(self):
        return f"<TimestampView {self.ts_filter!r} of {self.source!r}>"

    async def read(self, data_type):
        data_type = ChannelType(data_type)
        source = self.source
        if data_type in _SOURCE_TYPES:
            return await source.read(data_type)
        ctrl, _ = await source.read(promote_type(source.data_type, use_ctrl=True))
        carried = {key: value for key, value in ctrl.to_dict().items()
                   if key in _CARRIED}
        if self.ts_filter.mode != "dbl":
            carried["precision"] = 0
        stamp = time.time() if self.use_now else source.timestamp
        sec, nsec = timestamp_to_epics(stamp)
        alarm = getattr(source, "alarm", None)
        fields = dict(carried, status=ctrl.status, severity=ctrl.severity,
                      secondsSinceEpoch=sec, nanoSeconds=nsec,
                      ackt=int(getattr(alarm, "must_acknowledge_transient", 0)),
                      acks=int(getattr(alarm, "severity_to_acknowledge", 0)))
        encoding = getattr(source, "string_encoding", "latin-1")
        values = convert_values(self.ts_filter.values(sec, nsec), self.data_type,
                                native_type(data_type), string_encoding=encoding,
                                precision=carried.get("precision", 0),
                                direction=TO_WIRE)
        return build_metadata(data_type, fields, string_encoding=encoding), values

    async def subscribe(self, queue, sub_spec, sub):
        relay = self._relays.get((queue, sub_spec))
        if relay is None:
            relay = self._relays[(queue, sub_spec)] = _Relay(self, queue, sub_spec)
        relay.subs.add(sub)
        await self.source.subscribe(relay, relay.source_spec, sub)

    async def unsubscribe(self, queue, sub_spec, sub=None):
        relay = self._relays.get((queue, sub_spec))
        if relay is None:
            return
        await self.source.unsubscribe(relay, relay.source_spec, sub)
        if sub is None:
            relay.subs.clear()
        else:
            relay.subs.discard(sub)
        if not relay.subs:
            del self._relays[(queue, sub_spec)]


_SOURCE_TYPES = (ChannelType.CLASS_NAME, ChannelType.PUT_ACKT, ChannelType.PUT_ACKS)
_CARRIED = frozenset(("units", "precision", "upper_disp_limit", "lower_disp_limit",
                      "upper_alarm_limit", "upper_warning_limit",
                      "lower_warning_limit", "lower_alarm_limit",
                      "upper_ctrl_limit", "lower_ctrl_limit"))


class _Relay:
    """Stands in for a server queue on the source: turns each update the
    source posts into the view's value for one subscription spec."""

    __slots__ = ("queue", "source_spec", "spec", "subs", "view")

    def __init__(self, view, queue, spec):
        self.view, self.queue, self.spec = view, queue, spec
        # the source's own type always converts; the read itself is unused
        self.source_spec = spec._replace(db_entry=view.source,
                                         data_type=view.source.data_type)
        self.subs = set()

    async def put(self, update):
        metadata, values = await self.view.read(self.spec.data_type)
        await self.queue.put(SubscriptionUpdate((self.spec,), metadata, values,
                                                update.flags, update.subs))


def _exceeds(last, new, deadband):
    """recGblCheckDeadband's test: a NaN/inf appearing or flipping always counts."""
    if math.isfinite(last) and math.isfinite(new):
        delta = abs(last - new)
    elif math.isnan(new) != math.isnan(last) or math.isinf(new) != math.isinf(last):
        delta = math.inf
    elif math.isinf(new) and new != last:
        delta = math.inf
    else:
        delta = 0.0
    return delta > deadband


class DeadbandFilter:
    """``{"dbnd":{"abs":d}}`` / ``{"rel":percent}`` / ``{"d":x,"m":"abs|rel"}``."""

    name, pre = "dbnd", True

    def __init__(self, delta=0.0, relative=False):
        self.delta, self.relative = float(delta), bool(relative)
        self.active = True      # False on array channels (set by parse_filter)
        self.source = None      # the channel's ChannelData (set by parse_filter)

    @classmethod
    def from_options(cls, options, text):
        delta, relative = 0.0, False
        for key, value in _options(options, text, cls.name, ("d", "m", "abs", "rel")):
            if key == "m":
                if value not in ("abs", "rel"):
                    raise FilterError(f"{text!r}: dbnd mode must be 'abs' or 'rel', "
                                      f"not {value!r}")
                relative = value == "rel"
            else:
                delta = _number(value, text, f"dbnd {key!r}")
                if key in ("abs", "rel"):
                    relative = key == "rel"
        return cls(delta, relative)

    def apply(self, metadata, values, state, flags):
        if state is None or not self.active:
            return metadata, values
        number = self._scalar(values if self.source is None else self._native())
        if number is None:                 # arrays, text: passed on, as epics-base
            return metadata, values
        if not state:
            state.update(last=float("nan"), hyst=self.delta)
        send = _DBE(flags or 0) & ~_VALUE_BITS
        if _exceeds(state["last"], number, state["hyst"]):
            state["last"] = number
            send |= _DBE(flags or 0) & _VALUE_BITS
            if self.relative:
                state["hyst"] = number * self.delta / 100.0
        return (metadata, values) if send else None

    def _native(self):
        """The channel's own value, as epics-base converts the field (not the
        subscriber's DBR type) to double: an enum by its index."""
        value = self.source.value
        strings = getattr(self.source, "enum_strings", None)
        if strings is not None and isinstance(value, str):
            return [strings.index(value)] if value in strings else [value]
        return [value]

    @staticmethod
    def _scalar(values):
        try:
            if len(values) != 1:
                return None
            value = values[0]
        except TypeError:
            value = values
        if isinstance(value, (bytes, str)):
            try:
                return float(value)
            except ValueError:
                return None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def __repr__(self):
        return f"dbnd({'rel' if self.relative else 'abs'}={self.delta})"


def _wrap(start, incr, end, count):
    """epics-base wrapArrayIndices: (start, number of elements) within `count`."""
    if start < 0:
        start += count
    start = min(max(start, 0), count)
    if end < 0:
        end += count
    end = min(max(end, 0), count - 1)
    return start, (1 + (end - start) // incr if end >= start else 0)


class ArrayFilter:
    """``[start:incr:end]`` / ``{"arr":{"s":..,"i":..,"e":..}}``: an array slice."""

    name, pre = "arr", False

    def __init__(self, start=0, incr=1, end=-1):
        self.start, self.end = int(start), int(end)
        self.incr = int(incr) if incr >= 1 else 1
        self.active = True      # False on one-element channels (set by parse_filter)

    @classmethod
    def from_options(cls, options, text):
        values = {"s": 0, "i": 1, "e": -1}
        for key, value in _options(options, text, cls.name, values):
            values[key] = _number(value, text, f"arr {key!r}", integer=True)
        return cls(values["s"], values["i"], values["e"])

    @classmethod
    def from_brackets(cls, text):
        """``'[s:i:e]'``, ``'[s:e]'``, ``'[i]'`` (parts may be empty; C integer
        syntax) -> (ArrayFilter, rest of text)."""
        match = re.match(r"\[([^\]]*)\]", text)
        if match is None:
            raise FilterError(f"{text!r}: an array slice needs a closing ']'")
        parts = match.group(1).split(":")
        if len(parts) > 3 or (len(parts) == 1 and not parts[0].strip()):
            raise FilterError(f"{text!r}: an array slice is [start:incr:end], "
                              f"[start:end] or [index]")
        numbers = [_c_integer(part, text) for part in parts]
        if len(numbers) == 1:
            found = cls(numbers[0], 1, numbers[0])
        elif len(numbers) == 2:
            start, end = numbers
            found = cls(0 if start is None else start, 1, -1 if end is None else end)
        else:
            start, incr, end = numbers
            found = cls(0 if start is None else start, 1 if incr is None else incr,
                        -1 if end is None else end)
        return found, text[match.end():]

    def native_count(self, count):
        if count <= 1 or not self.active:
            return count
        return _wrap(self.start, self.incr, self.end, count)[1]

    def apply(self, metadata, values, state, flags):
        try:
            length = len(values)
        except TypeError:
            return metadata, values
        if not self.active:
            return metadata, values
        start, count = _wrap(self.start, self.incr, self.end, length)
        return metadata, values[start:start + count * self.incr:self.incr] \
            if count else values[:0]

    def __repr__(self):
        return f"arr[{self.start}:{self.incr}:{self.end}]"


def _c_integer(part, text):
    """strtol(part, 0): '' -> None; decimal, 0x hex, 0 octal."""
    part = part.strip()
    if not part:
        return None
    matched = match_integer(part)
    if matched is None or matched[1] != len(part):
        raise FilterError(f"{text!r}: {part!r} is not an integer array index")
    return matched[0]


_SYNC_MODES = ("before", "first", "last", "after", "while", "unless")


class SyncFilter:
    """``{"sync":{"m":mode,"s":state}}`` (or ``{"sync":{mode:state}}``).

    while/unless: pass events while the state is true/false; first/after:
    pass the first event after the state became true/false; before/last:
    when the state becomes true/false, pass the last event seen before it
    (sent on the first event after the change, as epics-base does).
    Reads are never gated.
    """

    name, pre = "sync", True

    def __init__(self, mode, state_name):
        self.mode, self.state_name = mode, state_name

    @classmethod
    def from_options(cls, options, text):
        mode = state_name = None
        for key, value in _options(options, text, cls.name, ("m", "s") + _SYNC_MODES):
            if key == "m":
                if value not in _SYNC_MODES:
                    raise FilterError(f"{text!r}: sync mode must be one of "
                                      f"{list(_SYNC_MODES)}, not {value!r}")
                mode = value
            else:
                if not isinstance(value, str):
                    raise FilterError(f"{text!r}: sync state must be a string, "
                                      f"not {value!r}")
                state_name = value
                if key != "s":
                    mode = key
        if mode is None or state_name is None:
            raise FilterError(f"{text!r}: the sync filter needs a mode 'm' and "
                              f"a state 's'")
        if state_name not in states:
            raise FilterError(f"{text!r}: sync state {state_name!r} does not exist "
                              f"(create it with filters.states.create)")
        return cls(mode, state_name)

    def apply(self, metadata, values, state, flags):
        if state is None:
            return metadata, values
        active = states[self.state_name]
        was = state.get("was", False)
        event = (metadata, values)
        mode = self.mode
        if mode == "while":
            return event if active else None
        if mode == "unless":
            return None if active else event
        state["was"] = active
        if mode == "first":
            return event if active and not was else None
        if mode == "after":
            return event if was and not active else None
        held = state.pop("held", None)
        state["held"] = event
        if (mode == "before" and active and not was) or \
                (mode == "last" and was and not active):
            return held
        return None

    def __repr__(self):
        return f"sync({self.mode}={self.state_name})"


_PLUGINS = {cls.name: cls for cls in (TimestampFilter, DeadbandFilter, ArrayFilter,
                                      SyncFilter)}


class FilterChain:
    """The filters of one channel, run as epics-base runs them.

    ``apply(metadata, values, state, flags)`` -> ``(metadata, values)`` or
    None (drop this event); `state` is the engine's per-subscription dict,
    None for a read (then the result is never None).  ``native_count(n)``
    is the element count CreateChanResponse reports for ``max_length`` n.
    ``served_data`` is None, or the TimestampView that serves the channel
    instead of the named ChannelData (a value-mode ``ts`` filter): the
    server's name resolution uses it as the channel's data.
    """

    served_data = None

    def __init__(self, filters, text=""):
        # Pre-event-queue filters first, then the post ones (arr, ts value
        # modes), each group in the order the name gave them: dbChannelOpen's
        # two chains.
        self.filters = tuple([f for f in filters if f.pre]
                             + [f for f in filters if not f.pre])
        self.text = text

    def native_count(self, count):
        for item in self.filters:
            native = getattr(item, "native_count", None)
            if native is not None:
                count = native(count)
        return count

    def apply(self, metadata, values, state, flags):
        result = (metadata, values)
        for index, item in enumerate(self.filters):
            own = None if state is None else state.setdefault(index, {})
            result = item.apply(result[0], result[1], own, flags)
            if result is None:
                return None
        return result

    def __repr__(self):
        return f"<FilterChain {self.text!r} {list(self.filters)}>"


# -- parsing ----------------------------------------------------------------------

_BARE_KEY = re.compile(r"""("(?:[^"\\]|\\.)*")|'((?:[^'\\]|\\.)*)'|([A-Za-z_$][\w$]*)(\s*:)""")


def _relaxed_json(text):
    """JSON, or the JSON5 subset epics-base accepts (bare keys, 'strings')."""
    try:
        return json.loads(text, object_pairs_hook=list)
    except ValueError:
        pass

    def fix(match):
        if match.group(1) is not None:
            return match.group(1)
        if match.group(2) is not None:
            return json.dumps(match.group(2))
        return json.dumps(match.group(3)) + match.group(4)
    try:
        return json.loads(_BARE_KEY.sub(fix, text), object_pairs_hook=list)
    except ValueError as exc:
        raise FilterError(f"{text!r} is not valid filter JSON: {exc}") from None


def parse_filter(text, data=None):
    """FilterChain for filter `text` (from its ``[`` or ``{`` on), or FilterError.

    `data` (the ChannelData, may be None) decides, as a record's NELM does
    in epics-base, whether the channel is an array: only arrays are sliced,
    only scalars are deadbanded.
    """
    rest, filters = text, []
    if rest.startswith("["):
        found, rest = ArrayFilter.from_brackets(rest)
        filters.append(found)
    if rest.startswith("{"):
        decoded = _relaxed_json(rest)
        if not isinstance(decoded, list):
            raise FilterError(f"{text!r}: filters must be a JSON object")
        for name, options in decoded:
            plugin = _PLUGINS.get(name)
            if plugin is None:
                raise FilterError(f"{text!r}: no filter named {name!r}; this server "
                                  f"has {sorted(_PLUGINS)}")
            filters.append(plugin.from_options(options, text))
        rest = ""
    if rest or not filters:
        raise FilterError(f"{text!r}: unexpected {rest or text!r} after the PV name")
    is_array = getattr(data, "max_length", 2 if data is None else 1) > 1
    for item in filters:
        if isinstance(item, ArrayFilter):
            item.active = is_array
        elif isinstance(item, DeadbandFilter):
            item.active = not is_array
            item.source = data if hasattr(data, "value") else None
        elif isinstance(item, TimestampFilter):
            item.max_length = getattr(data, "max_length", 1)
    chain = FilterChain(filters, text)
    valued = [item for item in chain.filters
              if isinstance(item, TimestampFilter) and item.mode is not None]
    if valued and data is not None:
        _serve_timestamp(chain, data, valued[-1])
    return chain


def _serve_timestamp(chain, data, last):
    """Give `chain` a TimestampView of `data` for its last value-mode ts
    filter: post filters before it act on a value it replaces (no-ops),
    those after it on the view's 1 or 2 elements; a plain ``ts`` makes the
    view use the time of the read instead of the channel's."""
    generated = [item for item in chain.filters
                 if isinstance(item, TimestampFilter) and item.mode is None]
    view = TimestampView(data, last, use_now=bool(generated))
    for item in generated:
        item.stamp, item.max_length = False, view.max_length
    after = False
    for item in chain.filters:
        if item is last:
            after = True
        elif isinstance(item, ArrayFilter):
            item.active = after and view.max_length > 1
    chain.served_data = view


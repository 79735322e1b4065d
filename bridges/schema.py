"""Typed, versioned bridge configuration: plain data (from YAML) -> frozen models.

Invariants:
- ``build_config(data)`` either returns a fully valid ``BridgeConfig`` or raises
  ``ConfigErrors`` holding *every* problem it found, each a
  ``devices.errors.ConfigError`` whose ``path`` points at the offending key.
- Bridge-owned keys are validated here; driver-owned ones (a device's other keys,
  a PV's ``read``/``write``) are passed through untouched for the driver to check.
- EPICS limits are enforced where clients would otherwise truncate silently:
  PV names (charset, <= 60 chars), EGU <= 7, DESC <= 40, enum <= 16 x 25.
- Durations go through ``devices.errors.parse_duration`` only.
- No I/O, no CA imports.
"""
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from devices.errors import ConfigError, format_path, parse_duration, reject_unknown

SCHEMA_VERSION = 1
ASYNC_LIBS = ("asyncio", "curio", "trio")
PV_TYPES = ("float", "int", "enum", "string", "bool")
SEVERITIES = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")
DRIVE_LIMIT_POLICIES = ("clamp", "reject")
# (input record, output record) per PV type, as a database author would choose.
RECORDS_BY_TYPE = {
    "float": ("ai", "ao"),
    "int": ("longin", "longout"),
    "enum": ("mbbi", "mbbo"),
    "bool": ("bi", "bo"),
    "string": ("stringin", "stringout"),
}
OUTPUT_RECORDS = frozenset(pair[1] for pair in RECORDS_BY_TYPE.values())
# Per-device health PVs the runtime publishes; user PVs may not reuse these names.
HEALTH_PVS = {"CONNECTED": "bool", "LAST_UPDATE": "float", "ERR_CNT": "int", "LAST_ERR": "string"}
NUMERIC_TYPES = ("float", "int")
MAX_PV_NAME = 60
MAX_UNITS = 7
MAX_DESC = 40
MAX_ENUM_STATES = 16
MAX_ENUM_CHARS = 25
MAX_STRING_VALUE = 39  # stringin/stringout VAL is char[40]
PV_NAME_CHARS = re.compile(r"^[A-Za-z0-9_\-:\[\]<>;]*$")
DEVICE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_BOOL_STATES = ("Off", "On")
DEFAULT_ALARM_SEVERITY = {"hhsv": "MAJOR", "hsv": "MINOR", "lsv": "MINOR", "llsv": "MAJOR"}


class ConfigErrors(Exception):
    """Every ConfigError found in one config, in document order."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class AutosaveSection:
    file: str
    period: float = 10.0


@dataclass(frozen=True)
class IocSection:
    prefix: str
    interfaces: Tuple[str, ...] = ()      # empty: from EPICS_CAS_INTF_ADDR_LIST
    async_lib: str = "asyncio"
    autosave: Optional[AutosaveSection] = None


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnect back-off (doubles from ``initial`` up to ``max``) and the hard
    limit on any single driver call, after which the exchange counts as lost."""

    initial: float = 1.0
    max: float = 60.0
    call_timeout: float = 10.0


@dataclass(frozen=True)
class AlarmLimits:
    """HIHI/HIGH/LOW/LOLO with severities; a limit left out is not checked."""

    hihi: Optional[float] = None
    high: Optional[float] = None
    low: Optional[float] = None
    lolo: Optional[float] = None
    hhsv: str = "MAJOR"
    hsv: str = "MINOR"
    lsv: str = "MINOR"
    llsv: str = "MAJOR"
    hyst: float = 0.0


@dataclass(frozen=True)
class Deadband:
    monitor: float = 0.0   # MDEL: DBE_VALUE events
    archive: float = 0.0   # ADEL: DBE_LOG events


@dataclass(frozen=True)
class PVConfig:
    name: str
    type: str
    record: str
    read: Any = None
    write: Any = None
    scan: Optional[float] = None
    units: str = ""
    precision: Optional[int] = None
    desc: str = ""
    enum: Tuple[str, ...] = ()
    display_limits: Optional[Tuple[float, float]] = None
    drive_limits: Optional[Tuple[float, float]] = None
    on_drive_limit: str = "clamp"
    alarm: Optional[AlarmLimits] = None
    deadband: Deadband = field(default_factory=Deadband)
    autosave: bool = False
    init_from_device: bool = False

    @property
    def readable(self):
        return self.read is not None

    @property
    def writable(self):
        return self.write is not None

    def driver_spec(self):
        """What ``Driver.channel()`` receives."""
        return {"read": self.read, "write": self.write}


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    driver: str
    prefix: str
    pvs: Dict[str, PVConfig]
    settings: Dict[str, Any] = field(default_factory=dict)
    stale_after: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class BridgeConfig:
    ioc: IocSection
    devices: Tuple[DeviceConfig, ...]
    version: int = SCHEMA_VERSION
    source: str = "<config>"

    def pv_names(self):
        """``[(device, pv, full PV name)]`` for user PVs, in config order."""
        return [(dev, pv, self.ioc.prefix + dev.prefix + pv.name)
                for dev in self.devices for pv in dev.pvs.values()]

    def health_pv_names(self, device):
        return [self.ioc.prefix + device.prefix + name for name in HEALTH_PVS]


# --- building -------------------------------------------------------------------

class _Collector:
    """Accumulates ConfigErrors so one pass reports them all."""

    def __init__(self):
        self.errors = []

    def add(self, path, message, hint=None):
        self.errors.append(ConfigError(path, message, hint))

    def capture(self, func, *args, default=None):
        """Call ``func``; on ConfigError record it and return ``default``."""
        try:
            return func(*args)
        except ConfigError as exc:
            self.errors.append(exc)
            return default

    def section(self, value, path, allowed, what):
        """``value`` as a dict (None -> {}), unknown keys reported; None if not a mapping."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, "expected %s (a mapping), got %s" % (what, _describe(value)))
            return None
        for key in value:
            self.capture(reject_unknown, {key: None}, allowed, path)
        return value

    @staticmethod
    def misspelt(section, allowed):
        """Allowed keys that an unknown key of ``section`` probably meant; a
        "missing X" error for these would only repeat the typo report."""
        meant = set()
        for key in section:
            if key not in allowed:
                meant.update(difflib.get_close_matches(str(key), list(allowed), n=1))
        return meant


def _describe(value):
    if isinstance(value, (dict, list)):
        return "a %s" % ("mapping" if isinstance(value, dict) else "list")
    return repr(value)


def _number(value, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, "expected a number, got %s" % _describe(value))
    return float(value)


def _integer(value, path, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "expected an integer, got %s" % _describe(value))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(path, "expected an integer in [%s, %s], got %r" % (lo, hi, value))
    return value


def _boolean(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, "expected true or false, got %s" % _describe(value))
    return value


def _text(value, path, max_len=None, what="a string"):
    if not isinstance(value, str):
        raise ConfigError(path, "expected %s, got %s" % (what, _describe(value)))
    if max_len is not None and len(value) > max_len:
        raise ConfigError(path, "at most %d characters (EPICS limit), got %d: %r"
                          % (max_len, len(value), value))
    return value


def _address(value, path):
    try:
        return str(ipaddress.IPv4Address(_text(value, path)))
    except ipaddress.AddressValueError:
        raise ConfigError(path, "expected an IPv4 address like 127.0.0.1, got %r" % (value,)) from None


def _choice(value, path, choices):
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        raise ConfigError(path, "expected one of %s, got %r" % ("|".join(choices), value),
                          ("did you mean %r?" % close[0]) if close else None)
    return value


def _period(value, path):
    """A scan period: a positive duration; the message speaks of periods."""
    try:
        seconds = parse_duration(value, path)
    except ConfigError:
        raise ConfigError(path, "expected a period like '2 s' or '500 ms', got %r" % (value,)) from None
    if seconds <= 0:
        raise ConfigError(path, "a scan period must be positive, got %r" % (value,))
    return seconds


def _pair(value, path):
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(path, "expected [low, high], got %s" % _describe(value))
    lo, hi = (_number(v, path + (i,)) for i, v in enumerate(value))
    if not lo < hi:
        raise ConfigError(path, "low must be below high, got [%g, %g]" % (lo, hi))
    return (lo, hi)


def pv_name_problem(name):
    """Why ``name`` cannot be an EPICS record name, or None."""
    if not name:
        return "a PV name cannot be empty"
    if not PV_NAME_CHARS.match(name):
        bad = sorted(set(c for c in name if not PV_NAME_CHARS.match(c)))
        return "PV name %r has characters EPICS does not allow: %s (allowed: A-Z a-z 0-9 _ - : [ ] < > ;)" % (
            name, " ".join(repr(c) for c in bad))
    if len(name) > MAX_PV_NAME:
        return "PV name %r is %d characters; EPICS record names are at most %d" % (
            name, len(name), MAX_PV_NAME)
    return None


def build_config(data, *, source="<config>", base_dir=None):
    """Plain data (as from YAML) -> BridgeConfig, or ConfigErrors with all problems."""
    errs = _Collector()
    if isinstance(data, dict):   # "x-..." keys hold YAML anchors for reuse; they are not read
        data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    top = errs.section(data, (), ("version", "ioc", "devices"), "a bridge configuration")
    if top is None:
        raise ConfigErrors(errs.errors)
    if "version" not in top:
        errs.add(("version",), "missing 'version: %d' (the schema version this file is written for)"
                 % SCHEMA_VERSION)
    elif top["version"] != SCHEMA_VERSION:
        errs.add(("version",), "unsupported schema version %r; this bridge reads version %d"
                 % (top["version"], SCHEMA_VERSION))
    ioc = _build_ioc(top.get("ioc"), errs, base_dir)
    devices = []
    raw_devices = top.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        errs.add(("devices",), "expected a non-empty list of devices, got %s" % _describe(raw_devices))
        raw_devices = []
    seen_names, seen_pvs = {}, {}
    for index, raw in enumerate(raw_devices):
        device = _build_device(raw, ("devices", index), errs)
        if device is None:
            continue
        if device.name in seen_names:
            errs.add(("devices", index, "name"), "device name %r is already used by devices[%d]"
                     % (device.name, seen_names[device.name]))
        seen_names.setdefault(device.name, index)
        if ioc is not None:
            _check_full_names(ioc, device, index, errs, seen_pvs)
        devices.append(device)
    if errs.errors:
        raise ConfigErrors(errs.errors)
    return BridgeConfig(ioc=ioc, devices=tuple(devices), source=source)


def _build_ioc(raw, errs, base_dir):
    path = ("ioc",)
    if raw is None:
        errs.add(path, "missing 'ioc:' section (at least 'prefix:')")
        return None
    sec = errs.section(raw, path, ("prefix", "interfaces", "async_lib", "autosave"), "the ioc section")
    if sec is None:
        return None
    if "prefix" not in sec:
        errs.add(path, "missing 'prefix' (the start of every PV name, e.g. 'LAB:')")
        return None
    prefix = errs.capture(_text, sec["prefix"], path + ("prefix",))
    if prefix is not None and pv_name_problem(prefix or "x"):
        errs.add(path + ("prefix",), pv_name_problem(prefix))
    interfaces = ()
    if "interfaces" in sec:
        raw_if = sec["interfaces"]
        if isinstance(raw_if, str):
            raw_if = raw_if.split()
        if not isinstance(raw_if, list):
            errs.add(path + ("interfaces",), "expected a list of addresses, got %s" % _describe(raw_if))
        else:
            interfaces = tuple(x for x in (errs.capture(_address, v, path + ("interfaces", i))
                                           for i, v in enumerate(raw_if)) if x)
    async_lib = errs.capture(_choice, sec.get("async_lib", "asyncio"), path + ("async_lib",), ASYNC_LIBS)
    autosave = None
    if sec.get("autosave") is not None:
        apath = path + ("autosave",)
        asec = errs.section(sec["autosave"], apath, ("file", "period"), "the autosave section")
        if asec is not None:
            if "file" not in asec:
                errs.add(apath, "missing 'file' (where saved values are kept)")
            else:
                fname = errs.capture(_text, asec["file"], apath + ("file",))
                period = errs.capture(_period, asec.get("period", 10.0), apath + ("period",))
                if fname is not None and period is not None:
                    if base_dir and not os.path.isabs(fname):
                        fname = os.path.join(base_dir, fname)
                    autosave = AutosaveSection(file=fname, period=period)
    if prefix is None or async_lib is None:
        return None
    return IocSection(prefix=prefix, interfaces=interfaces, async_lib=async_lib, autosave=autosave)


DEVICE_KEYS = ("name", "driver", "prefix", "stale_after", "retry", "pvs")


def _build_device(raw, path, errs):
    if not isinstance(raw, dict):
        errs.add(path, "expected a device (a mapping with name, driver, pvs), got %s" % _describe(raw))
        return None
    ok = True
    for key in ("name", "driver", "pvs"):
        if key not in raw:
            errs.add(path, "missing %r" % key)
            ok = False
    name = errs.capture(_text, raw.get("name", ""), path + ("name",))
    if name and not DEVICE_NAME.match(name):
        errs.add(path + ("name",), "device name %r must be letters, digits and _ (not starting with a digit)"
                 % name)
    driver = errs.capture(_text, raw.get("driver", ""), path + ("driver",))
    prefix = raw.get("prefix", (name or "") + ":")
    prefix = errs.capture(_text, prefix, path + ("prefix",))
    if prefix and pv_name_problem(prefix):
        errs.add(path + ("prefix",), pv_name_problem(prefix))
    stale_after = errs.capture(_integer, raw.get("stale_after", 3), path + ("stale_after",), 1, 1000)
    retry = _build_retry(raw.get("retry"), path + ("retry",), errs)
    settings = driver_settings(raw)
    for key in raw:
        if key not in DEVICE_KEYS and key not in settings:
            errs.add(path + (key,), "unknown key %r" % (key,), "did you mean %r?" % _near_device_key(key))
    pvs = {}
    raw_pvs = raw.get("pvs")
    if "pvs" in raw and (not isinstance(raw_pvs, dict) or not raw_pvs):
        errs.add(path + ("pvs",), "expected a mapping of PV name -> settings, got %s" % _describe(raw_pvs))
    elif isinstance(raw_pvs, dict):
        for pv_name, pv_raw in raw_pvs.items():
            pv = _build_pv(str(pv_name), pv_raw, path + ("pvs", pv_name), errs)
            if pv is not None:
                pvs[pv.name] = pv
    if not ok or None in (name, driver, prefix, stale_after, retry):
        return None
    return DeviceConfig(name=name, driver=driver, prefix=prefix, pvs=pvs, settings=settings,
                        stale_after=stale_after, retry=retry)


def _near_device_key(key):
    close = difflib.get_close_matches(str(key), DEVICE_KEYS, n=1, cutoff=0.85)
    return close[0] if close else None


def driver_settings(raw_device):
    """The keys of a device mapping that belong to its driver.

    A near-miss of a bridge key (``stale_afer``) is held back: passed on, the
    driver would reject it without being able to suggest the right name.
    """
    return {k: v for k, v in raw_device.items()
            if k not in DEVICE_KEYS and _near_device_key(k) is None}


def _build_retry(raw, path, errs):
    sec = errs.section(raw, path, ("initial", "max", "call_timeout"), "the retry section")
    if sec is None:
        return None
    defaults = RetryPolicy()
    values = {}
    for key in ("initial", "max", "call_timeout"):
        values[key] = errs.capture(_period, sec.get(key, getattr(defaults, key)), path + (key,))
    if None in values.values():
        return None
    if values["max"] < values["initial"]:
        errs.add(path + ("max",), "max back-off (%g s) is below initial (%g s)" % (values["max"], values["initial"]))
        return None
    return RetryPolicy(**values)


PV_KEYS = ("type", "record", "read", "write", "scan", "units", "precision", "desc", "enum",
           "display_limits", "drive_limits", "on_drive_limit", "alarm", "deadband",
           "autosave", "init_from_device")


def _build_pv(name, raw, path, errs):
    start = len(errs.errors)
    problem = pv_name_problem(name)
    if problem:
        errs.add(path, problem)
    if name in HEALTH_PVS:
        errs.add(path, "%r is a health PV the bridge publishes for every device; choose another name" % name)
    sec = errs.section(raw, path, PV_KEYS, "PV settings")
    if sec is None:
        return None
    misspelt = errs.misspelt(sec, PV_KEYS)
    if "type" not in sec:
        if "type" not in misspelt:
            errs.add(path, "missing 'type' (one of %s)" % "|".join(PV_TYPES))
        return None
    pv_type = errs.capture(_choice, sec["type"], path + ("type",), PV_TYPES)
    if pv_type is None:
        return None
    read, write = sec.get("read"), sec.get("write")
    if read is None and write is None and not misspelt & {"read", "write"}:
        errs.add(path, "a PV needs 'read', 'write' or both (how to talk to the device)")
    kw = {"read": read, "write": write}
    if sec.get("scan") is not None:
        kw["scan"] = errs.capture(_period, sec["scan"], path + ("scan",))
        if read is None:
            errs.add(path + ("scan",), "'scan' only applies to PVs with 'read'")
    init = errs.capture(_boolean, sec.get("init_from_device", False), path + ("init_from_device",))
    kw["init_from_device"] = bool(init)
    if read is not None and sec.get("scan") is None and not init and not misspelt & {"scan", "init_from_device"}:
        errs.add(path, "a PV with 'read' needs 'scan' (e.g. '2 s'), or 'init_from_device: true' "
                 "to read it once at connect")
    if init and (read is None or write is None):
        errs.add(path + ("init_from_device",), "init_from_device needs both 'read' and 'write' "
                 "(it reads a setpoint back from the device at connect)")
    kw["autosave"] = bool(errs.capture(_boolean, sec.get("autosave", False), path + ("autosave",)))
    if kw["autosave"] and write is None:
        errs.add(path + ("autosave",), "autosave only applies to PVs with 'write' (setpoints)")
    kw["units"] = errs.capture(_text, sec.get("units", ""), path + ("units",), MAX_UNITS) or ""
    kw["desc"] = errs.capture(_text, sec.get("desc", ""), path + ("desc",), MAX_DESC) or ""
    if "precision" in sec:
        kw["precision"] = errs.capture(_integer, sec["precision"], path + ("precision",), 0, 17)
        if pv_type != "float":
            errs.add(path + ("precision",), "precision only applies to type float")
    kw["enum"] = _build_enum(pv_type, sec.get("enum"), path + ("enum",), errs)
    numeric_only = ("display_limits", "drive_limits", "alarm", "deadband", "on_drive_limit")
    for key in numeric_only:
        if key in sec and pv_type not in NUMERIC_TYPES:
            errs.add(path + (key,), "%s only applies to numeric PVs (type float or int), not %s" % (key, pv_type))
    if "display_limits" in sec:
        kw["display_limits"] = errs.capture(_pair, sec["display_limits"], path + ("display_limits",))
    if "drive_limits" in sec:
        kw["drive_limits"] = errs.capture(_pair, sec["drive_limits"], path + ("drive_limits",))
        if write is None:
            errs.add(path + ("drive_limits",), "drive_limits only apply to PVs with 'write'")
    kw["on_drive_limit"] = errs.capture(_choice, sec.get("on_drive_limit", "clamp"),
                                        path + ("on_drive_limit",), DRIVE_LIMIT_POLICIES) or "clamp"
    if "alarm" in sec:
        kw["alarm"] = _build_alarm(sec["alarm"], path + ("alarm",), errs)
    if "deadband" in sec:
        kw["deadband"] = _build_deadband(sec["deadband"], path + ("deadband",), errs)
    kw["record"] = _build_record(pv_type, sec.get("record"), write is not None, path + ("record",), errs)
    if len(errs.errors) > start:
        return None
    kw = {k: v for k, v in kw.items() if v is not None}
    return PVConfig(name=name, type=pv_type, **kw)


def _build_enum(pv_type, raw, path, errs):
    if raw is None:
        if pv_type == "enum":
            errs.add(path[:-1], "type enum needs 'enum: [STATE0, STATE1, ...]'")
        return DEFAULT_BOOL_STATES if pv_type == "bool" else ()
    if pv_type not in ("enum", "bool"):
        errs.add(path, "enum states only apply to type enum or bool, not %s" % pv_type)
        return ()
    if not isinstance(raw, list) or not raw:
        errs.add(path, "expected a list of state names, got %s" % _describe(raw))
        return ()
    limit = 2 if pv_type == "bool" else MAX_ENUM_STATES
    if len(raw) > limit or (pv_type == "bool" and len(raw) != 2):
        errs.add(path, "%s has %d states; %s" % (pv_type, len(raw),
                 "a bool has exactly 2 (false, true)" if pv_type == "bool"
                 else "EPICS enums hold at most %d" % MAX_ENUM_STATES))
        return ()
    states = []
    for i, state in enumerate(raw):
        if isinstance(state, bool):
            errs.add(path + (i,), "state %d is the boolean %r, not a name" % (i, state),
                     "YAML reads bare OFF/ON/yes/no as booleans; quote it: \"%s\"" % ("ON" if state else "OFF"))
            continue
        if isinstance(state, (int, float)):
            state = str(state)
        text = errs.capture(_text, state, path + (i,), MAX_ENUM_CHARS)
        if text is not None:
            if text in states:
                errs.add(path + (i,), "duplicate state %r" % text)
            states.append(text)
    return tuple(states)


def _build_alarm(raw, path, errs):
    keys = ("hihi", "high", "low", "lolo", "hhsv", "hsv", "lsv", "llsv", "hyst")
    sec = errs.section(raw, path, keys, "alarm limits")
    if sec is None:
        return None
    kw = {}
    for key in ("hihi", "high", "low", "lolo"):
        if sec.get(key) is not None:
            kw[key] = errs.capture(_number, sec[key], path + (key,))
    for key in ("hhsv", "hsv", "lsv", "llsv"):
        if key in sec:
            kw[key] = errs.capture(_choice, sec[key], path + (key,), SEVERITIES)
    if "hyst" in sec:
        kw["hyst"] = errs.capture(_number, sec["hyst"], path + ("hyst",))
        if kw["hyst"] is not None and kw["hyst"] < 0:
            errs.add(path + ("hyst",), "hysteresis must not be negative")
    if None in kw.values():
        return None
    ordered = [(k, kw[k]) for k in ("lolo", "low", "high", "hihi") if k in kw]
    for (k1, v1), (k2, v2) in zip(ordered, ordered[1:]):
        if v1 > v2:
            errs.add(path + (k2,), "%s (%g) is below %s (%g)" % (k2, v2, k1, v1))
            return None
    return AlarmLimits(**kw)


def _build_deadband(raw, path, errs):
    sec = errs.section(raw, path, ("monitor", "archive"), "deadbands")
    if sec is None:
        return None
    kw = {}
    for key in ("monitor", "archive"):
        if key in sec:
            kw[key] = errs.capture(_number, sec[key], path + (key,))
            if kw[key] is not None and kw[key] < 0:
                errs.add(path + (key,), "a deadband must not be negative")
                kw[key] = None
    if None in kw.values():
        return None
    return Deadband(**kw)


def _build_record(pv_type, raw, writable, path, errs):
    inferred = RECORDS_BY_TYPE[pv_type][1 if writable else 0]
    if raw is None:
        return inferred
    all_records = sorted(r for pair in RECORDS_BY_TYPE.values() for r in pair)
    record = errs.capture(_choice, raw, path, all_records)
    if record is None:
        return None
    if record not in RECORDS_BY_TYPE[pv_type]:
        errs.add(path, "record %s does not hold a %s; use %s" % (record, pv_type, inferred))
        return None
    if (record in OUTPUT_RECORDS) != writable:
        errs.add(path, "record %s is an %s record but this PV %s 'write'; use %s" % (
            record, "output" if record in OUTPUT_RECORDS else "input",
            "has no" if not writable else "has", inferred))
        return None
    return record


def _check_full_names(ioc, device, index, errs, seen):
    dev_path = ("devices", index)
    longest_health = ioc.prefix + device.prefix + max(HEALTH_PVS, key=len)
    if len(longest_health) > MAX_PV_NAME:
        errs.add(dev_path + ("prefix",), "health PV %r would be %d characters; EPICS record names "
                 "are at most %d (shorten the prefix)" % (longest_health, len(longest_health), MAX_PV_NAME))
    health = ioc.prefix + device.prefix + "CONNECTED"
    if health in seen:
        errs.add(dev_path + ("prefix",), "prefix %r is already used by %s; each device needs its own"
                 % (device.prefix, seen[health]))
    seen.setdefault(health, format_path(dev_path))
    for pv in device.pvs.values():
        path, full = dev_path + ("pvs", pv.name), ioc.prefix + device.prefix + pv.name
        if len(full) > MAX_PV_NAME:
            errs.add(path, "full PV name %r is %d characters; EPICS record names are at most %d "
                     "(shorten the prefix or the name)" % (full, len(full), MAX_PV_NAME))
        elif full in seen:
            errs.add(path, "PV %r is defined twice (also at %s)" % (full, seen[full]))
        else:
            seen[full] = format_path(path)

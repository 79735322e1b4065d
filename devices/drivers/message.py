"""The generic message-based (SCPI/ASCII) driver, configured entirely from YAML.

StreamDevice's vocabulary: a PV reads with ``{query: "TEMP?", format: "T=%f C"}``
and writes with ``{command: "SP %.2f"}``; formats are printf/scanf-like
(``%f %e %g %d %i %x %o %s``, flags, width/precision, ``%*d`` to skip input,
``%%``, enum maps ``%{OFF|ON}``).

Invariants:
- Every template, query and init command is checked at config time; every
  value is formatted through its typed template and the *complete* outgoing
  message is checked for control characters and terminators before any I/O.
  A refused value raises UnsafeValueError and nothing is sent.
- A read template has exactly one value conversion; a write template exactly
  one; replies to writes (``reply:``) may have none.
- All I/O goes through a Transport; this module never imports pyserial/pyvisa.
"""
import math
import re
from dataclasses import dataclass, field
from typing import Optional

from devices.driver import Driver, Reading
from devices.errors import (ConfigError, DeviceReplyError, UnsafeValueError, expect_mapping,
                            reject_unknown)
from devices.transport import Terminators, Timeouts
from devices.transports import transport_from_config

_CONVERSION = re.compile(r"%(?P<flags>[-+ 0#*]*)(?P<width>\d+)?(?:\.(?P<precision>\d+))?"
                         r"(?P<conv>[feEgGdixXos]|\{[^{}]*\}|\[\^?\]?[^\]]*\])")
_FLOAT = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:inf|nan))"
_INPUT_PATTERNS = {
    "f": _FLOAT, "e": _FLOAT, "E": _FLOAT, "g": _FLOAT, "G": _FLOAT,
    "d": r"[-+]?\d+",
    "i": r"[-+]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)",
    "x": r"[-+]?(?:0[xX])?[0-9a-fA-F]+", "X": r"[-+]?(?:0[xX])?[0-9a-fA-F]+",
    "o": r"[-+]?[0-7]+",
}
_INT_CONVERSIONS = "dixXo"
_FLOAT_CONVERSIONS = "feEgG"


def _unsafe_chars(text):
    """Characters a message must never carry: C0/C1 controls and DEL."""
    return sorted({ch for ch in text if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F})


def _parse_int(text, conv):
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if conv == "i":
        base = 16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" else 10
    else:
        base = {"d": 10, "x": 16, "X": 16, "o": 8}[conv]
    return sign * int(digits, base)


@dataclass(frozen=True)
class Conversion:
    """One ``%...`` item of a template."""

    flags: str
    width: Optional[int]
    precision: Optional[int]
    conv: str                      # f e E g G d i x X o s, "enum" or "charset"
    choices: tuple = ()

    @property
    def skip(self):
        return "*" in self.flags

    def input_pattern(self):
        if self.conv == "enum":
            return "(?:%s)" % "|".join(re.escape(c) for c in sorted(self.choices, key=len, reverse=True))
        if self.conv in ("s", "charset"):
            chars = self.choices[0] if self.conv == "charset" else r"\S"
            return chars + ("{1,%d}" % self.width if self.width else "+")
        return r"\s*" + _INPUT_PATTERNS[self.conv]

    def convert_input(self, text):
        if self.conv == "enum":
            return self.choices.index(text)
        if self.conv in ("s", "charset"):
            return text
        if self.conv in _INT_CONVERSIONS:
            return _parse_int(text.strip(), self.conv)
        return float(text)

    def render(self, value):
        """Format one value already coerced by coerce()."""
        if self.conv == "enum":
            return self.choices[value]
        spec = "%" + self.flags + (str(self.width) if self.width else "") + (
            ".%d" % self.precision if self.precision is not None else "")
        return (spec + ("d" if self.conv == "i" else self.conv)) % (value,)

    def coerce(self, value, where):
        """User value -> the type this conversion formats, or UnsafeValueError."""
        if self.conv == "enum":
            if isinstance(value, str) and value in self.choices:
                return self.choices.index(value)
            index = _as_integer(value, where)
            if not 0 <= index < len(self.choices):
                raise UnsafeValueError("%s: %r is not one of %s" % (where, value, "|".join(self.choices)))
            return index
        if self.conv == "s":
            if isinstance(value, (bytes, bytearray)):
                return bytes(value).decode("latin-1")
            return value if isinstance(value, str) else str(value)
        number = _as_number(value, where)
        if self.conv in _INT_CONVERSIONS:
            return int(round(number))
        return number


def _as_number(value, where):
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnsafeValueError("%s: %r is not a number" % (where, value)) from None
    if not math.isfinite(number):
        raise UnsafeValueError("%s: %r is not a finite number" % (where, value))
    return number


def _as_integer(value, where):
    number = _as_number(value, where)
    if number != int(number):
        raise UnsafeValueError("%s: %r is not an integer" % (where, value))
    return int(number)


class Template:
    """A printf/scanf-like template: literal text around ``%`` conversions."""

    def __init__(self, text, path, *, values=(1,)):
        if not isinstance(text, str):
            raise ConfigError(path, "expected a template string, got %r" % (text,))
        bad = _unsafe_chars(text)
        if bad:
            raise ConfigError(path, "template %r contains control characters %r" % (text, bad),
                              "terminators are added by the transport; do not put them in templates")
        self.text = text
        self.parts = []
        pos = 0
        for match in _CONVERSION.finditer(text):
            self._add_literal(text[pos:match.start()], path)
            self.parts.append(self._conversion(match, path))
            pos = match.end()
        self._add_literal(text[pos:], path)
        self.values = [p for p in self.parts if isinstance(p, Conversion) and not p.skip]
        if len(self.values) not in values:
            raise ConfigError(path, "template %r has %d value conversions, expected %s"
                              % (text, len(self.values), " or ".join(str(v) for v in values)))
        pattern = "".join(re.escape(p) if isinstance(p, str) else
                          "(%s)" % p.input_pattern() if not p.skip else p.input_pattern()
                          for p in self.parts)
        self._regex = re.compile(pattern, re.DOTALL)

    def _add_literal(self, literal, path):
        if "%" in literal.replace("%%", ""):
            raise ConfigError(path, "bad conversion near %r in %r" % (literal[literal.replace("%%", "  ").index("%"):], self.text),
                              "supported: %f %e %g %d %i %x %o %s %{A|B}, %% for a literal %")
        if literal:
            self.parts.append(literal.replace("%%", "%"))

    @staticmethod
    def _conversion(match, path):
        conv = match.group("conv")
        choices = ()
        if conv.startswith("{"):
            choices = tuple(conv[1:-1].split("|"))
            if len(choices) < 2 or any(not c for c in choices) or len(set(choices)) != len(choices):
                raise ConfigError(path, "enum %s needs two or more distinct, non-empty choices" % conv)
            conv = "enum"
        elif conv.startswith("["):
            choices = (conv,)
            conv = "charset"
        return Conversion(match.group("flags"), int(match.group("width")) if match.group("width") else None,
                          int(match.group("precision")) if match.group("precision") is not None else None,
                          conv, choices)

    def parse(self, text, *, extra_input="error"):
        """The value of the single conversion in ``text`` (None if there is none); ValueError if no match."""
        match = (self._regex.fullmatch if extra_input == "error" else self._regex.match)(text)
        if match is None:
            raise ValueError("reply %r does not match %r" % (text, self.text))
        if not self.values:
            return None
        return self.values[0].convert_input(match.group(1))

    def render(self, value, where):
        """The template with ``value`` formatted in; UnsafeValueError if it does not fit."""
        if not self.values:  # a fixed command ("*TRG"): the value only triggers it
            return "".join(self.parts)
        conversion = self.values[0]
        rendered = conversion.render(conversion.coerce(value, where))
        return "".join(p if isinstance(p, str) else rendered for p in self.parts)


def _scaling(spec, path):
    scale, offset = spec.get("scale", 1.0), spec.get("offset", 0.0)
    for key, number in (("scale", scale), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ConfigError(tuple(path) + (key,), "%s must be a finite number, got %r" % (key, number))
    if scale == 0:
        raise ConfigError(tuple(path) + ("scale",), "scale must not be 0")
    return float(scale), float(offset)


def _choice(spec, key, allowed, default, path):
    value = spec.get(key, default)
    if value not in allowed:
        raise ConfigError(tuple(path) + (key,), "%s must be one of %s, got %r" % (key, "|".join(allowed), value))
    return value


@dataclass
class ReadSpec:
    query: Optional[str]
    template: Template
    scale: float = 1.0
    offset: float = 0.0
    on_mismatch: str = "error"
    extra_input: str = "error"

    KEYS = ("query", "format", "scale", "offset", "on_mismatch", "extra_input")

    @classmethod
    def from_config(cls, spec, path):
        if isinstance(spec, str):
            spec = {"query": spec}
        expect_mapping(spec, path, "a mapping like {query: 'TEMP?', format: '%f'}")
        reject_unknown(spec, cls.KEYS, path)
        query = spec.get("query")
        if query is not None:
            Template(query, tuple(path) + ("query",), values=(0,))
        scale, offset = _scaling(spec, path)
        return cls(query=query, template=Template(spec.get("format", "%f"), tuple(path) + ("format",)),
                   scale=scale, offset=offset,
                   on_mismatch=_choice(spec, "on_mismatch", ("error", "ignore"), "error", path),
                   extra_input=_choice(spec, "extra_input", ("error", "ignore"), "error", path))


@dataclass
class WriteSpec:
    template: Template
    reply: Optional[Template] = None
    scale: float = 1.0
    offset: float = 0.0
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    max_length: Optional[int] = None

    KEYS = ("command", "reply", "scale", "offset", "min", "max", "max_length")

    @classmethod
    def from_config(cls, spec, path):
        if isinstance(spec, str):
            spec = {"command": spec}
        path = tuple(path)
        expect_mapping(spec, path, "a mapping like {command: 'SP %.2f'}")
        reject_unknown(spec, cls.KEYS, path)
        if "command" not in spec:
            raise ConfigError(path, "write needs a 'command' template", "e.g. command: 'SP %.2f'")
        template = Template(spec["command"], path + ("command",), values=(0, 1))
        if any(isinstance(p, Conversion) and (p.skip or p.conv == "charset") for p in template.parts):
            raise ConfigError(path + ("command",), "%%* and %%[...] are input-only conversions")
        reply = Template(spec["reply"], path + ("reply",), values=(0, 1)) if "reply" in spec else None
        scale, offset = _scaling(spec, path)
        bounds = {}
        for key in ("min", "max"):
            if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], (int, float))):
                raise ConfigError(path + (key,), "%s must be a number, got %r" % (key, spec[key]))
            bounds[key] = spec.get(key)
        max_length = spec.get("max_length")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
            raise ConfigError(path + ("max_length",), "max_length must be a positive integer")
        return cls(template, reply, scale, offset, bounds["min"], bounds["max"], max_length)

    def check(self, value, where):
        """Apply limits and scaling to a user value before formatting."""
        if not self.template.values:
            return value
        conversion = self.template.values[0]
        if conversion.conv in ("s", "enum"):
            if self.max_length is not None and len(str(value)) > self.max_length:
                raise UnsafeValueError("%s: %d characters, more than max_length %d"
                                       % (where, len(str(value)), self.max_length))
            return value
        number = _as_number(value, where)
        if self.minimum is not None and number < self.minimum or self.maximum is not None and number > self.maximum:
            raise UnsafeValueError("%s: %r outside [%s, %s]" % (where, value, self.minimum, self.maximum))
        return (number - self.offset) / self.scale


@dataclass
class MessageChannel:
    name: str
    read: Optional[ReadSpec]
    write: Optional[WriteSpec]
    last: Optional[Reading] = field(default=None, repr=False)


class MessageDriver(Driver):
    """SCPI/ASCII instruments over any message Transport (serial, VISA)."""

    name = "message"
    SETTINGS = ("transport", "terminator", "in_terminator", "out_terminator", "timeouts", "init", "sim")
    SIM_SETTINGS = ("definitions", "device", "link")

    def __init__(self, settings, *, sim=False, path=()):
        super().__init__(settings, sim=sim, path=path)
        settings, path = self.settings, self.path
        reject_unknown(settings, self.SETTINGS, path)
        if "transport" not in settings:
            raise ConfigError(path, "driver 'message' needs a 'transport'",
                              "e.g. transport: {kind: serial, port: /dev/ttyUSB0}")
        self.terminators = Terminators.from_settings(settings, path)
        self.timeouts = Timeouts.from_config(settings.get("timeouts"), path + ("timeouts",))
        self.transport = transport_from_config(settings["transport"], timeouts=self.timeouts,
                                               terminators=self.terminators, path=path + ("transport",))
        self.init = self._init_commands(settings.get("init") or [], path + ("init",))
        self._sim_link = None
        if sim:
            self._setup_sim(settings.get("sim"), path + ("sim",))

    @staticmethod
    def _init_commands(items, path):
        if not isinstance(items, list):
            raise ConfigError(path, "init must be a list of commands")
        commands = []
        for index, item in enumerate(items):
            spec = WriteSpec.from_config(item, path + (index,))
            if spec.template.values:
                raise ConfigError(path + (index,), "init command %r must not contain a %% conversion"
                                  % spec.template.text, "write %% for a literal percent sign")
            commands.append(spec)
        return commands

    def _setup_sim(self, sim, path):
        """Build the simulator object now (validates its YAML); serve it in open()."""
        from devices.simulators.instrument import InstrumentSimulator, VisaFaultLayer
        if sim is None:
            raise ConfigError(path, "running with --sim needs a 'sim' block",
                              "e.g. sim: {definitions: temperature_controller}")
        expect_mapping(sim, path)
        reject_unknown(sim, self.SIM_SETTINGS, path)
        if "definitions" not in sim:
            raise ConfigError(path, "sim needs 'definitions' (a simulator YAML name or path)")
        kind = self.transport.kind
        links = ("tcp", "pty") if kind == "serial" else ("visa-sim", "tcp")
        self._sim_link = _choice(sim, "link", links, links[0], path)
        try:
            if self._sim_link == "visa-sim":
                from devices.simulators.instrument import definition_path
                self.transport.library = definition_path(sim["definitions"]) + "@sim"
                self.simulator = VisaFaultLayer()
                self.transport.session_wrapper = self.simulator.wrap
            else:
                self.simulator = InstrumentSimulator(sim["definitions"], sim.get("device"))
        except (OSError, ValueError) as exc:
            raise ConfigError(path + ("definitions",), str(exc)) from exc

    def channel(self, name, spec, path):
        path = tuple(path)
        expect_mapping(spec, path)
        reject_unknown(spec, ("read", "write"), path)
        read = ReadSpec.from_config(spec["read"], path + ("read",)) if spec.get("read") is not None else None
        write = WriteSpec.from_config(spec["write"], path + ("write",)) if spec.get("write") is not None else None
        if read is None and write is None:
            raise ConfigError(path, "channel %r needs 'read' and/or 'write'" % name)
        if read is not None and read.query is None:
            raise ConfigError(path + ("read",), "read needs a 'query' (unsolicited input is not supported yet)")
        if read is not None:
            try:
                self._encode(read.query, name)
            except UnsafeValueError as exc:
                raise ConfigError(path + ("read", "query"), str(exc)) from None
        return MessageChannel(name, read, write)

    # -- I/O ---------------------------------------------------------------------

    def open(self):
        self._serve_sim()
        self.transport.open()
        for spec in self.init:
            self._send(spec, spec.template.text, "%s: init" % self.describe())

    def close(self):
        self.transport.close()
        if self._sim_link in ("tcp", "pty"):
            self.simulator.close()

    def read(self, handle):
        spec = self._spec(handle, "read")
        query = self._encode(spec.query, "%s: %s query" % (self.describe(), handle.name))
        reply = self.transport.query(query).decode("latin-1")
        try:
            raw = spec.template.parse(reply, extra_input=spec.extra_input)
        except ValueError as exc:
            if spec.on_mismatch == "ignore" and handle.last is not None:
                return handle.last
            raise DeviceReplyError("%s: %s: %s" % (self.describe(), handle.name, exc)) from None
        unscaled = isinstance(raw, str) or (spec.scale == 1.0 and spec.offset == 0.0)
        value = raw if unscaled else raw * spec.scale + spec.offset
        handle.last = Reading(value)
        return handle.last

    def write(self, handle, value):
        spec = self._spec(handle, "write")
        where = "%s: %s write" % (self.describe(), handle.name)
        text = spec.template.render(spec.check(value, where), where)
        self._send(spec, text, where)

    def describe(self):
        return "message %s%s" % (self.transport.describe(), " (sim)" if self.sim else "")

    # -- helpers -----------------------------------------------------------------

    def _serve_sim(self):
        sim = self.simulator
        if self._sim_link in ("tcp", "pty") and sim.port is None and sim.pty_path is None:
            if self._sim_link == "pty":
                sim.serve_pty()
            else:
                sim.serve_tcp()
        if self._sim_link == "tcp" and self.transport.kind == "visa":
            self.transport.library = "@py"
            self.transport.resource = "TCPIP::127.0.0.1::%d::SOCKET" % sim.port
        elif self._sim_link in ("tcp", "pty"):
            self.transport.port = sim.url

    def _spec(self, handle, kind):
        if not isinstance(handle, MessageChannel):
            raise TypeError("expected a handle from MessageDriver.channel(), got %r" % (handle,))
        spec = getattr(handle, kind)
        if spec is None:
            raise ValueError("channel %r has no %r spec" % (handle.name, kind))
        return spec

    def _encode(self, text, where):
        """The bytes of one outgoing message, or UnsafeValueError (nothing sent)."""
        bad = _unsafe_chars(text)
        if bad:
            raise UnsafeValueError("%s: refusing %r: contains control characters %r" % (where, text, bad))
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            raise UnsafeValueError("%s: refusing %r: not 8-bit text" % (where, text)) from None
        for terminator in (self.terminators.input, self.terminators.output):
            if terminator and terminator in data:
                raise UnsafeValueError("%s: refusing %r: contains the terminator %r" % (where, text, terminator))
        return data

    def _send(self, spec, text, where):
        data = self._encode(text, where)
        if spec.reply is None:
            with self.transport.locked():
                self.transport.write(data)
            return
        reply = self.transport.query(data).decode("latin-1")
        try:
            spec.reply.parse(reply)
        except ValueError as exc:
            raise DeviceReplyError("%s: %s" % (where, exc),
                                   alarm_status="WRITE") from None

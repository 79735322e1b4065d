"""YAML file -> BridgeConfig, with macros, line numbers and driver-level checks.

Invariants:
- The YAML is *composed* (not loaded) so every key and item keeps its line; the
  plain data handed to ``schema.build_config`` is paired with a path -> line map.
- Macros ``${VAR}``, ``$(VAR)``, ``${VAR=default}``, ``$(VAR=default)`` and ``$$``
  are expanded in scalar values only (never keys), then the plain scalar is
  re-typed, so ``period: ${P=2}`` is the number 2.
- Every problem becomes a ``devices.errors.ConfigError``; ``load_config`` raises
  ``InvalidConfig`` listing all of them as ``file:line: path: message`` lines.
- Driver settings and PV read/write specs are checked by the driver itself
  (constructor + ``channel()``); drivers promise no I/O there, so this is safe
  on a machine without the hardware.
"""
import os
import re

import yaml

from bridges import schema
from devices.errors import ConfigError

_MACRO = re.compile(r"\$\$|\$\{(?P<b>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<bd>[^}]*))?\}"
                    r"|\$\((?P<p>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<pd>[^)]*))?\)")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class InvalidConfig(Exception):
    """A config file has problems; ``errors`` are ConfigErrors, ``lines`` their rendering."""

    def __init__(self, source, errors, lines):
        self.source = source
        self.errors = list(errors)
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def expand_macros(text, macros):
    """Expand macros in ``text``; ValueError naming the first undefined one."""
    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group("b") or match.group("p")
        default = match.group("bd") if match.group("b") else match.group("pd")
        if name in macros:
            return macros[name]
        if default is not None:
            return default
        raise ValueError("macro %r is not defined; set the environment variable or give a "
                         "default like ${%s=value}" % (name, name))
    return _MACRO.sub(substitute, text)


class _Composer:
    """Node tree -> plain data, recording the line of every path."""

    def __init__(self, macros):
        self.macros = macros
        self.lines = {}
        self.errors = []
        self._yaml = yaml.SafeLoader("")   # only its resolver and constructor are used

    def convert(self, node, path):
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path, expand=True)

    def _mapping(self, node, path):
        result = {}
        explicit = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = self.convert(value_node, path)
                for part in merged if isinstance(merged, list) else [merged]:
                    if isinstance(part, dict):
                        for k, v in part.items():
                            if k not in explicit:
                                result[k] = v
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(ConfigError(path, "a key must be a plain name, not a %s"
                                               % key_node.id))
                continue
            key = self._scalar(key_node, path, expand=False)
            key_path = path + (key,)
            if key in explicit:
                self.errors.append(ConfigError(key_path, "key %r appears twice (line %d and %d)"
                                               % (key, self.lines[key_path], key_node.start_mark.line + 1)))
                continue
            explicit.add(key)
            self.lines[key_path] = key_node.start_mark.line + 1
            result[key] = self.convert(value_node, key_path)
        return result

    def _scalar(self, node, path, expand):
        if expand and node.tag == "tag:yaml.org,2002:str" and "$" in node.value:
            try:
                value = expand_macros(node.value, self.macros)
            except ValueError as exc:
                self.errors.append(ConfigError(path, str(exc)))
                return None
            tag = node.tag
            if node.style is None:   # plain scalar: type it after expansion
                tag = self._yaml.resolve(yaml.ScalarNode, value, (True, False))
            node = yaml.ScalarNode(tag, value, node.start_mark, node.end_mark, node.style)
        try:
            return self._yaml.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.errors.append(ConfigError(path, "cannot read this value: %s" % getattr(exc, "problem", exc)))
            return None


def line_of(lines, path):
    """The line of ``path``, or of its nearest ancestor that exists in the file."""
    path = tuple(path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path)


def render(source, lines, error):
    """``configs/x.yaml:14: devices[0].pvs.temp.scan: message (hint)``."""
    line = line_of(lines, error.path)
    return "%s:%s %s" % (source, ("%d:" % line) if line else "", error)


def _sort_key(lines):
    return lambda err: (line_of(lines, err.path) or 0)


def check_drivers(data, *, sim=False, registry=None):
    """Instantiate each device's driver and validate every PV's spec; return ConfigErrors.

    Works on the plain data, so driver problems are reported even when the
    bridge-level schema has problems elsewhere in the same file.
    """
    if registry is None:
        from devices.registry import registry
    errors = []
    devices = data.get("devices") if isinstance(data, dict) else None
    for index, raw in enumerate(devices if isinstance(devices, list) else []):
        if not isinstance(raw, dict) or not isinstance(raw.get("driver"), str):
            continue
        path = ("devices", index)
        try:
            driver = registry.get(raw["driver"], path + ("driver",))(
                schema.driver_settings(raw), sim=sim, path=path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        pvs = raw.get("pvs")
        for name, pv in (pvs.items() if isinstance(pvs, dict) else ()):
            if not isinstance(pv, dict) or (pv.get("read") is None and pv.get("write") is None):
                continue
            try:
                driver.channel(str(name), {"read": pv.get("read"), "write": pv.get("write")},
                               path + ("pvs", name))
            except ConfigError as exc:
                errors.append(exc)
    return errors


def parse_config(text, *, source="<config>", macros=None, sim=False, base_dir=None, registry=None,
                 overrides=None):
    """YAML text -> BridgeConfig; InvalidConfig with every problem found.

    ``overrides`` maps paths to values applied before validation, e.g.
    ``{("ioc", "prefix"): "TEST:"}`` for ``--prefix``, so they are checked too.
    """
    env = dict(os.environ)
    env.update(macros or {})
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = "%s:%d:" % (source, mark.line + 1) if mark else "%s:" % source
        raise InvalidConfig(source, [ConfigError((), "not valid YAML: %s" % exc.problem)],
                            ["%s not valid YAML: %s" % (where, exc.problem)]) from None
    except yaml.YAMLError as exc:
        raise InvalidConfig(source, [ConfigError((), str(exc))], ["%s: %s" % (source, exc)]) from None
    if node is None:
        err = ConfigError((), "the file is empty; expected 'version: 1', 'ioc:' and 'devices:'")
        raise InvalidConfig(source, [err], ["%s: %s" % (source, err)])
    composer = _Composer(env)
    data = composer.convert(node, ())
    errors = list(composer.errors)
    for path, value in (overrides or {}).items():
        _override(data, path, value)
    config = None
    try:
        config = schema.build_config(data, source=source, base_dir=base_dir)
    except schema.ConfigErrors as exc:
        errors.extend(exc.errors)
    errors.extend(check_drivers(data, sim=sim, registry=registry))
    if errors:
        errors = _dedupe(errors, composer.errors)
        errors.sort(key=_sort_key(composer.lines))
        raise InvalidConfig(source, errors, [render(source, composer.lines, e) for e in errors])
    return config


def _override(data, path, value):
    target = data
    for key in path[:-1]:
        if not isinstance(target, dict):
            return
        target = target.setdefault(key, {})
    if isinstance(target, dict):
        target[path[-1]] = value


def _dedupe(errors, reading_errors):
    """Drop repeats, and later errors about a value that could not be read at all
    (an undefined macro would otherwise also be "expected a string, got None")."""
    unreadable = [e.path for e in reading_errors]
    seen, unique = set(), []
    for err in errors:
        key = (err.path, err.message)
        derived = err not in reading_errors and any(err.path[:len(p)] == p for p in unreadable)
        if key not in seen and not derived:
            seen.add(key)
            unique.append(err)
    return unique


def load_config(filename, *, macros=None, sim=False, registry=None, overrides=None):
    """Read and validate a config file (see ``parse_config``)."""
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidConfig(filename, [ConfigError((), reason)],
                            ["%s: cannot read config: %s" % (filename, reason)]) from None
    return parse_config(text, source=str(filename), macros=macros, sim=sim,
                        base_dir=os.path.dirname(os.path.abspath(filename)), registry=registry,
                        overrides=overrides)


__all__ = ["InvalidConfig", "load_config", "parse_config", "expand_macros", "check_drivers",
           "line_of", "render"]

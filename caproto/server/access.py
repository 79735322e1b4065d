"""Access security: epics-base ACF files (UAG, HAG, ASG, RULE) and per-client rights.

    UAG(ops) {alice, bob}
    HAG(consoles) {console1, "console2"}
    ASG(DEFAULT) { RULE(1, READ) }
    ASG(SETPOINTS) {
        RULE(1, READ)
        RULE(1, WRITE, TRAPWRITE) { UAG(ops) HAG(consoles) }
    }

Invariants:
- Rights are computed as epics-base asLib does: a channel belongs to one ASG
  (its ``asg`` attribute, else DEFAULT; an ASG the file lacks means
  DEFAULT, and a file without DEFAULT gives DEFAULT no rules, i.e. no
  access); a RULE applies when its level is >= the channel's access
  security level (``asl``, 0 for values, 1 for record fields), every
  UAG/HAG/CALC condition it lists is met (any listed group may match), and
  the best applicable rule wins (WRITE implies READ; RPC implies WRITE).
- User names match exactly; host names case-insensitively (asLib lowercases).
- Bad files raise ACFError naming the file, line and problem; ``reload``
  keeps the previous rules when the new text is bad.
- The rule that decides is found as asLib finds it: rules are taken in
  file order and one counts only when it raises the access reached so far;
  a write is *trapped* when the rule that granted WRITE says TRAPWRITE.
  Trapped writes are logged at INFO on ``caproto.access`` (who, PV, old and
  new value) and handed to the listeners of ``add_trapwrite_listener``.
- Not supported (parsed, then reported once with a warning naming file,
  line and ASG): INP links and CALC conditions -- a rule with a CALC never
  grants anything, the safe reading when its inputs are unavailable.

Wiring: ``security.apply_to(pvdb)`` marks every ChannelData (and its
record fields) with ``access_security``; the server's circuits then AND
``rights_for(data, host, user)`` into the channel's own rights, re-send
AccessRights when a client's host/user name changes, and ``await
security.reload_and_refresh()`` (or the ``watch`` startup hook) re-sends them
to every client after the file changed.  For TRAPWRITE the server calls
``begin_trapwrite(data, pvname, host, user, requested)`` before it applies
a client's write and ``.finish(ok)`` on what that returned (None when the
write is not trapped) once the write is done.
"""
import copy
import fnmatch
import logging
import os
import re
import reprlib
import weakref
from collections import namedtuple

from .._dbr import AccessRights

__all__ = ("ACFError", "AccessSecurity", "Rule", "TrapWrite", "begin_trapwrite",
           "read_acf")

log = logging.getLogger("caproto.access")

_READ, _WRITE = AccessRights.READ, AccessRights.WRITE
_LEVELS = {"NONE": AccessRights.NO_ACCESS, "READ": _READ, "WRITE": _READ | _WRITE,
           "RPC": _READ | _WRITE}


class ACFError(ValueError):
    """An access-security file epics-base would refuse: says where and why."""

    def __init__(self, filename, line, message):
        super().__init__(f"{filename}:{line}: {message}")
        self.filename, self.line = filename, line


Rule = namedtuple("Rule", "level access trap_write uags hags calc line")
Rule.__doc__ = """One RULE: level, access (AccessRights), trap_write, the UAG
and HAG names it requires (empty: anyone), the CALC text (or None), and its
line in the file."""

TrapWrite = namedtuple("TrapWrite", "pvname user host old_value new_value requested "
                                    "ok rule")
TrapWrite.__doc__ = """One write through a TRAPWRITE rule, as listeners get it:
the channel name the client used, who wrote (``user``@``host`` as the client
announced them), the value before and after the write, what the client
sent (``requested``), whether the write was applied (``ok``), and the Rule
that granted it (``rule.line`` is its line in the ACF)."""


# -- reading the file -------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<word>[A-Za-z0-9_\-+:.\[\]<>;*/@$]+)
  | (?P<punct>[{}(),])
""", re.VERBOSE)


def _tokens(text, filename):
    """[(kind, text, line)] with kind 'word' (quoted strings too) or the punctuation."""
    found, line, position = [], 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ACFError(filename, line, f"unexpected character {text[position]!r}")
        kind = match.lastgroup
        if kind == "newline":
            line += 1
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", match.group()[1:-1])
            found.append(("word", value, line))
        elif kind == "word":
            found.append(("word", match.group(), line))
        elif kind == "punct":
            found.append((match.group(), match.group(), line))
        position = match.end()
    found.append(("end", "end of file", line))
    return found


class _Parser:
    """Recursive descent over the tokens; fills uags, hags, asgs."""

    def __init__(self, text, filename):
        self.filename = filename
        self.tokens = _tokens(text, filename)
        self.index = 0
        self.uags, self.hags, self.asgs, self.inputs = {}, {}, {}, {}
        self.unsupported = []

    def error(self, message, token=None):
        token = token or self.tokens[self.index]
        return ACFError(self.filename, token[2], message)

    def peek(self):
        return self.tokens[self.index]

    def take(self, kind, what):
        token = self.tokens[self.index]
        if token[0] != kind:
            raise self.error(f"expected {what}, found {token[1]!r}")
        self.index += 1
        return token

    def names_in_parens(self, what):
        self.take("(", f"'(' after {what}")
        names = [self.take("word", f"a name in {what}(...)")[1]]
        while self.peek()[0] == ",":
            self.index += 1
            names.append(self.take("word", f"a name in {what}(...)")[1])
        self.take(")", f"')' closing {what}(...)")
        return names

    def optional_block(self):
        if self.peek()[0] == "{":
            self.index += 1
            return True
        return False

    def parse(self):
        while self.peek()[0] != "end":
            token = self.take("word", "UAG, HAG or ASG")
            keyword = token[1].upper()
            if keyword in ("UAG", "HAG"):
                self.group(keyword, token)
            elif keyword == "ASG":
                self.asg(token)
            else:
                raise self.error(f"unknown keyword {token[1]!r}; an access security "
                                 f"file holds UAG, HAG and ASG definitions", token)
        return self

    def group(self, keyword, token):
        (name,) = self.names_in_parens(keyword)
        table = self.uags if keyword == "UAG" else self.hags
        if name in table:
            raise self.error(f"{keyword}({name}) is defined twice", token)
        members = []
        if self.optional_block():
            while self.peek()[0] != "}":
                members.append(self.take("word", f"a member of {keyword}({name})")[1])
                if self.peek()[0] == ",":
                    self.index += 1
            self.index += 1
        if keyword == "HAG":
            members = [member.lower() for member in members]
        table[name] = frozenset(members)

    def asg(self, token):
        (name,) = self.names_in_parens("ASG")
        if name in self.asgs:
            raise self.error(f"ASG({name}) is defined twice", token)
        rules = []
        if self.optional_block():
            while self.peek()[0] != "}":
                item = self.take("word", f"RULE or INPx inside ASG({name})")
                keyword = item[1].upper()
                if keyword == "RULE":
                    rules.append(self.rule(name, item))
                elif re.fullmatch(r"INP[A-L]", keyword):
                    (link,) = self.names_in_parens(keyword)
                    self.inputs[(name, keyword)] = link
                    self.unsupported.append((item[2], name, f"{keyword}({link})",
                                             "its value is never read"))
                else:
                    raise self.error(f"unknown {item[1]!r} inside ASG({name}); "
                                     f"expected RULE or INPA..INPL", item)
            self.index += 1
        self.asgs[name] = tuple(rules)

    def rule(self, asg, token):
        self.take("(", "'(' after RULE")
        level_token = self.take("word", "the RULE's level (0 or 1)")
        if not level_token[1].isdigit():
            raise self.error(f"RULE level must be a non-negative integer, not "
                             f"{level_token[1]!r}", level_token)
        self.take(",", "',' after the RULE's level")
        access_token = self.take("word", "NONE, READ, WRITE or RPC")
        access = _LEVELS.get(access_token[1].upper())
        if access is None:
            raise self.error(f"RULE access must be NONE, READ, WRITE or RPC, not "
                             f"{access_token[1]!r}", access_token)
        trap = False
        if self.peek()[0] == ",":
            self.index += 1
            trap_token = self.take("word", "TRAPWRITE or NOTRAPWRITE")
            if trap_token[1].upper() not in ("TRAPWRITE", "NOTRAPWRITE"):
                raise self.error(f"expected TRAPWRITE or NOTRAPWRITE, not "
                                 f"{trap_token[1]!r}", trap_token)
            trap = trap_token[1].upper() == "TRAPWRITE"
        self.take(")", "')' closing RULE(...)")
        uags, hags, calc = [], [], None
        if self.optional_block():
            while self.peek()[0] != "}":
                item = self.take("word", "UAG, HAG or CALC inside RULE")
                keyword = item[1].upper()
                if keyword in ("UAG", "HAG"):
                    names = self.names_in_parens(keyword)
                    table = self.uags if keyword == "UAG" else self.hags
                    for group in names:
                        if group not in table:
                            raise self.error(f"{keyword}({group}) is used in ASG({asg}) "
                                             f"but not defined above it", item)
                    (uags if keyword == "UAG" else hags).extend(names)
                elif keyword == "CALC":
                    (calc,) = self.names_in_parens("CALC")
                    self.unsupported.append((item[2], asg, f"CALC({calc!r})",
                                             "this rule grants nothing"))
                else:
                    raise self.error(f"unknown {item[1]!r} inside RULE; expected UAG, "
                                     f"HAG or CALC", item)
            self.index += 1
        return Rule(int(level_token[1]), access, trap, tuple(uags), tuple(hags), calc,
                    token[2])


def read_acf(text, filename="<string>"):
    """Parse ACF `text` -> (uags, hags, asgs, unsupported); ACFError if bad.

    `unsupported` lists ``(line, asg, what, consequence)`` for INP links and
    CALC conditions, which this server parses but does not evaluate."""
    parser = _Parser(text, filename).parse()
    return parser.uags, parser.hags, parser.asgs, parser.unsupported


# -- rights -------------------------------------------------------------------------

class AccessSecurity:
    """The rules of one ACF and the rights they give (see the module docstring)."""

    def __init__(self, text="", filename="<string>"):
        self.filename = filename
        self._contexts = weakref.WeakSet()
        self._trapwrite_listeners = []
        self._mtime = None
        self._load(text)

    @classmethod
    def from_file(cls, path):
        """Read `path`; OSError / ACFError (with file and line) when unusable."""
        with open(path, encoding="utf-8") as file:
            text = file.read()
        security = cls(text, os.fspath(path))
        security._mtime = _mtime(path)
        return security

    def _load(self, text):
        uags, hags, asgs, unsupported = read_acf(text, self.filename)
        self.uags, self.hags, self.asgs = uags, hags, asgs
        for line, asg, what, consequence in unsupported:
            log.warning("%s:%d: ASG(%s): %s is not supported by this server; %s",
                        self.filename, line, asg, what, consequence)

    def __repr__(self):
        return f"<AccessSecurity {self.filename!r} ASGs={sorted(self.asgs)}>"

    def rights(self, asg, host, user, asl=0):
        """AccessRights a client `user`@`host` has on a channel of `asg` at level `asl`."""
        return self._decide(asg, host, user, asl)[0]

    def _decide(self, asg, host, user, asl):
        """(access, the Rule that granted it or None), walking the rules as
        asLib's asComputePvt does."""
        rules = self.asgs.get(asg)
        if rules is None:
            rules = self.asgs.get("DEFAULT", ())
        host = (host or "").lower()
        access, granted = AccessRights.NO_ACCESS, None
        for rule in rules:
            if access & _WRITE:
                break
            if int(rule.access) <= int(access) or rule.level < asl \
                    or rule.calc is not None:
                continue
            if rule.uags and not any(user in self.uags[name] for name in rule.uags):
                continue
            if rule.hags and not any(host in self.hags[name] for name in rule.hags):
                continue
            access, granted = rule.access, rule
        return access, granted

    @staticmethod
    def _group_and_level(data):
        """A channel's ``asg`` (a record field: its record's) and ``asl``
        (default 0 for a PV, 1 for a record field, as epics-base's VAL is
        ASL0 and other fields ASL1)."""
        record = getattr(getattr(data, "record_fields", None), "data", None)
        asg = getattr(data, "asg", None) or getattr(record, "asg", None) or "DEFAULT"
        asl = getattr(data, "asl", None)
        if asl is None:
            asl = 0 if record is None else 1
        return asg, asl

    def rights_for(self, data, host, user, context=None):
        """Rights on ChannelData `data` (see ``_group_and_level``).

        The server passes its `context`, remembered so ``refresh`` can re-send
        rights to its clients."""
        if context is not None:
            self._contexts.add(context)
        asg, asl = self._group_and_level(data)
        return self.rights(asg, host, user, asl)

    # -- TRAPWRITE ----------------------------------------------------------------

    def trapwrite_rule(self, data, host, user):
        """The TRAPWRITE Rule that lets `user`@`host` write `data`, or None
        (no write access, or the granting rule does not trap)."""
        asg, asl = self._group_and_level(data)
        access, rule = self._decide(asg, host, user, asl)
        if rule is not None and rule.trap_write and access & _WRITE:
            return rule
        return None

    def add_trapwrite_listener(self, listener):
        """Call ``listener(trap)`` (a TrapWrite) after every trapped write.

        Listeners run on the server's event loop, after the write: they must
        not block (hand slow work to a thread).  An exception in one is
        logged and does not affect the write or the other listeners.
        Returns `listener`, so this works as a decorator."""
        self._trapwrite_listeners.append(listener)
        return listener

    def remove_trapwrite_listener(self, listener):
        self._trapwrite_listeners.remove(listener)

    def _trapwrite_done(self, trap):
        if trap.ok:
            log.info("TRAPWRITE %s@%s wrote %r: %s -> %s (rule at %s:%d)",
                     trap.user, trap.host, trap.pvname, _short(trap.old_value),
                     _short(trap.new_value), self.filename, trap.rule.line)
        else:
            log.info("TRAPWRITE %s@%s failed to write %r: %s requested, %s kept "
                     "(rule at %s:%d)", trap.user, trap.host, trap.pvname,
                     _short(trap.requested), _short(trap.new_value),
                     self.filename, trap.rule.line)
        for listener in list(self._trapwrite_listeners):
            try:
                listener(trap)
            except Exception:
                log.exception("TRAPWRITE listener %r failed on %r", listener,
                              trap.pvname)

    # -- attaching and reloading ------------------------------------------------------

    def apply_to(self, pvdb, groups=None):
        """Protect every channel of `pvdb` (and each record's fields) with these rules.

        `groups` optionally maps PV-name glob patterns to ASG names, for
        channels that were not given ``asg=`` (first matching pattern wins).
        """
        for name, data in pvdb.items():
            for channel in _with_fields(data):
                channel.access_security = self
            if groups and getattr(data, "asg", None) in (None, "", "DEFAULT"):
                for pattern, asg in groups.items():
                    if fnmatch.fnmatchcase(name, pattern):
                        data.asg = asg
                        break
        return self

    def reload(self):
        """Re-read the file; True if the rules changed.  A bad file is logged
        (one line, naming file and line) and the previous rules stay."""
        try:
            with open(self.filename, encoding="utf-8") as file:
                text = file.read()
            self._mtime = _mtime(self.filename)
            old = (self.uags, self.hags, self.asgs)
            self._load(text)
        except (OSError, ACFError) as exc:
            log.error("access security file not reloaded, keeping the previous "
                      "rules: %s", exc)
            return False
        return old != (self.uags, self.hags, self.asgs)

    async def refresh(self):
        """Re-send AccessRights wherever they changed, on every server using us."""
        for context in list(self._contexts):
            await context.refresh_access_rights()

    async def reload_and_refresh(self):
        changed = self.reload()
        if changed:
            await self.refresh()
        return changed

    def file_changed(self):
        return self._mtime is not None and _mtime(self.filename) != self._mtime

    def watch(self, period=2.0):
        """A startup hook (``hook(async_lib)``) reloading the file when it changes."""
        async def watch_acf(async_lib):
            while True:
                await async_lib.sleep(period)
                if self.file_changed():
                    log.info("access security file %s changed; reloading",
                             self.filename)
                    await self.reload_and_refresh()
        return watch_acf


class _PendingTrapWrite:
    """A trapped write the server is applying: the old value is kept until
    ``finish`` reports the outcome (see ``begin_trapwrite``)."""

    __slots__ = ("data", "host", "old_value", "pvname", "requested", "rule",
                 "security", "user")

    def __init__(self, security, rule, data, pvname, host, user, requested):
        self.security, self.rule, self.data = security, rule, data
        self.pvname, self.host, self.user = pvname, host, user
        self.requested = _snapshot(requested)
        self.old_value = _snapshot(getattr(data, "value", None))

    def finish(self, ok=True):
        """The write was applied (`ok`) or refused: log it, tell the listeners."""
        trap = TrapWrite(self.pvname, self.user, self.host, self.old_value,
                         _snapshot(getattr(self.data, "value", None)),
                         self.requested, bool(ok), self.rule)
        self.security._trapwrite_done(trap)
        return trap


def begin_trapwrite(data, pvname, host, user, requested=None):
    """Called by the server just before it applies a client's write to `data`.

    Returns None unless `data` is protected by an AccessSecurity whose rule
    granting `user`@`host` WRITE says TRAPWRITE; otherwise an object whose
    ``finish(ok)`` the server calls once the write is done (applied or not),
    which logs the write and calls the listeners with a TrapWrite."""
    security = getattr(data, "access_security", None)
    if security is None:
        return None
    rule = security.trapwrite_rule(data, host, user)
    if rule is None:
        return None
    return _PendingTrapWrite(security, rule, data, pvname, host, user, requested)


def _snapshot(value):
    """A copy of `value` that later writes cannot change (arrays are mutable)."""
    return copy.copy(value)


def _short(value):
    """A one-line, bounded repr for the log (arrays can be huge)."""
    if hasattr(value, "tolist"):            # numpy and array.array
        value = value.tolist()
    return reprlib.repr(value)


def _mtime(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _with_fields(data):
    """`data` and the ChannelData of its record fields, if it has any."""
    yield data
    fields = getattr(data, "fields", None)
    if isinstance(fields, dict):
        for field in fields.values():
            if field is not data:
                yield field

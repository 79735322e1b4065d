"""PVGroup and its composition tools: SubGroup, pvfunction, setpoint/readback pairs.

Invariants:
- A PVGroup class is plain Python: its pvproperty and SubGroup attributes
  are found by walking the MRO (definition order, a subclass's
  redefinition keeping the base's position); no metaclass.  A PV attribute
  that would shadow PVGroup's own state is refused when the class is made.
- ``pvdb`` maps each full PV name (prefix + name, macros expanded) to its
  PvpropertyData, subgroups' PVs included, in declaration order.  Two
  properties resolving to one PV name is an error naming both.
- Properties sharing an ``alarm_group`` share one ChannelAlarm per
  top-level group (subgroups use their root's alarms).
- Group hooks: ``__ainit__(async_lib)`` runs as a task at server start
  (hosted by the group's first PV, concurrently with that PV's startup
  hook); ``__ashutdown__(async_lib)`` is awaited at server exit.
"""
import inspect
import logging

from .._alarm import ChannelAlarm
from .._dbr import ChannelType
from .._errors import CaprotoKeyError, CaprotoTypeError, CaprotoValueError
from .pvproperty import pvproperty

__all__ = ("PVGroup", "SubGroup", "pvfunction", "get_pv_pair_wrapper",
           "expand_macros")

# What PVGroup itself keeps on each instance; a PV needs another attribute name.
RESERVED = frozenset(("macros", "prefix", "parent", "name", "log", "alarms", "pvdb",
                      "attr_pvdb", "attr_to_pvname", "groups", "group_read",
                      "group_write"))


def expand_macros(pv, macros):
    """``'{beamline}:{thing}.VAL'`` with ``{'beamline': 'XF31', 'thing': 'det'}``.

    A macro missing from `macros` raises an error naming it and the PV.
    """
    if "{" not in pv:
        return pv
    try:
        return pv.format(**(macros or {}))
    except KeyError as exc:
        raise CaprotoKeyError(f"PV name {pv!r} uses macro {exc.args[0]!r}, which is "
                              f"not among the macros {sorted(macros or ())}") from None
    except (IndexError, ValueError) as exc:
        raise CaprotoValueError(f"PV name {pv!r}: bad macro syntax ({exc})") from None


def _members(cls):
    """{attr: pvproperty | SubGroup} in declaration order along the MRO."""
    found = {}
    for base in reversed(cls.__mro__):
        for attr, obj in vars(base).items():
            if isinstance(obj, (pvproperty, SubGroup)):
                if attr in RESERVED:
                    raise CaprotoValueError(
                        f"{cls.__name__}.{attr}: {attr!r} is a PVGroup attribute; "
                        f"use another attribute name (pvproperty(name={attr!r}) "
                        f"keeps the PV name)")
                found[attr] = obj
            elif attr in found:
                del found[attr]             # overridden by something else
    return found


class PVGroup:
    """A set of PVs (pvproperty attributes) and nested groups (SubGroup).

    ``ioc = MyIOC(prefix='abc:', macros={...})``; serve ``ioc.pvdb``.
    Attribute access gives the PvpropertyData (``ioc.x.value``,
    ``await ioc.x.write(...)``) or the subgroup instance.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _members(cls)                   # bad attribute names fail at class creation

    def __init__(self, prefix="", *, macros=None, parent=None, name=None):
        members = _members(type(self))
        self.macros = dict(macros or {})
        self.prefix = expand_macros(prefix, self.macros)
        self.parent = parent
        self.name = name or type(self).__name__
        self.log = logging.getLogger(f"caproto.ioc.{self.name}")
        root = self
        while root.parent is not None:
            root = root.parent
        self.alarms = root.alarms if root is not self else {}
        self.pvdb = {}
        self.attr_pvdb = {}
        self.attr_to_pvname = {}
        self.groups = {}
        for attr, member in members.items():
            if isinstance(member, SubGroup):
                self._add_subgroup(attr, member)
            else:
                self._add_property(attr, member)
        if type(self).__ainit__ is not PVGroup.__ainit__ and self.pvdb:
            next(iter(self.pvdb.values()))._group_inits.append(self)
        if type(self).__ashutdown__ is not PVGroup.__ashutdown__ and self.pvdb:
            next(iter(self.pvdb.values()))._group_shutdowns.append(self)

    def __repr__(self):
        return f"<{type(self).__name__} prefix={self.prefix!r} pvs={len(self.pvdb)}>"

    def _register(self, pvname, data, what):
        if pvname in self.pvdb:
            raise CaprotoValueError(f"{type(self).__name__}: {what} and "
                                    f"{self.pvdb[pvname]!r} both are PV {pvname!r}")
        self.pvdb[pvname] = data

    def _add_property(self, attr, prop):
        spec = prop.pvspec
        pvname = expand_macros(self.prefix + spec.name, self.macros)
        alarm = None
        if spec.alarm_group is not None:
            alarm = self.alarms.setdefault(spec.alarm_group, ChannelAlarm())
        data = spec.create(self, pvname=pvname, attr_name=attr, alarm=alarm)
        self._register(pvname, data, f"pvproperty {attr!r}")
        self.attr_pvdb[attr] = data
        self.attr_to_pvname[attr] = pvname

    def _add_subgroup(self, attr, sub):
        group = sub.create(self, attr)
        self.groups[attr] = group
        for pvname, data in group.pvdb.items():
            self._register(pvname, data, f"subgroup {attr!r}")

    # -- hooks (override in subclasses) ------------------------------------------

    async def group_read(self, instance):
        """Every client read of `instance` comes here; default: its getter."""
        get = instance.pvspec.get
        return None if get is None else await get(self, instance)

    group_read.calls_getter_only = True    # see PvpropertyData._reads_stored_state

    async def group_write(self, instance, value):
        """Every write to `instance` comes here; default: its putter."""
        put = instance.pvspec.put
        return None if put is None else await put(self, instance, value)

    async def __ainit__(self, async_lib):
        """Group start-up hook, run as a task when the server starts."""

    async def __ashutdown__(self, async_lib):
        """Group shut-down hook, awaited when the server stops."""


class SubGroup:
    """Nest a PVGroup class: ``motors = SubGroup(MotorGroup, prefix='mtr:')``.

    Also a class decorator (``@SubGroup(prefix='x:')`` or bare
    ``@SubGroup``) on a class defined inside a PVGroup; a class that is not
    a PVGroup gets PVGroup (or `base`) added as a base.  The default prefix
    is the attribute name plus ':'.  Extra keywords go to the subgroup's
    ``__init__``.
    """

    separator = ":"

    def __init__(self, group_cls=None, *, prefix=None, macros=None, doc=None,
                 base=None, **init_kwargs):
        self.prefix = prefix
        self.macros = dict(macros or {})
        self.doc = doc
        self.base = tuple(base) if base else (PVGroup,)
        self.init_kwargs = init_kwargs
        self.attr_name = None
        self.group_cls = None
        if group_cls is not None:
            self(group_cls)

    def __call__(self, group_cls):
        if not isinstance(group_cls, type):
            raise CaprotoTypeError(f"SubGroup needs a class, not {group_cls!r}")
        if not issubclass(group_cls, PVGroup):
            group_cls = type(group_cls.__name__, (group_cls,) + self.base,
                             {"__module__": group_cls.__module__,
                              "__qualname__": group_cls.__qualname__})
        self.group_cls = group_cls
        if self.doc is None:
            self.doc = group_cls.__doc__
        return self

    def __set_name__(self, owner, name):
        self.attr_name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return instance.groups[self.attr_name]

    def __repr__(self):
        return f"<SubGroup {self.attr_name!r} of {self.group_cls!r}>"

    def create(self, parent, attr):
        """Instantiate the subgroup under `parent` (prefixes concatenate)."""
        if self.group_cls is None:
            raise CaprotoTypeError(f"SubGroup {attr!r} has no group class")
        prefix = self.prefix if self.prefix is not None else attr + self.separator
        macros = dict(parent.macros, **self.macros)
        return self.group_cls(prefix=parent.prefix + prefix, macros=macros,
                              parent=parent, name=attr, **self.init_kwargs)


# -- setpoint / readback pairs ------------------------------------------------------------

def get_pv_pair_wrapper(setpoint_suffix="", readback_suffix="_RBV"):
    """A pvproperty-like factory giving two PVs: ``{attr}{setpoint_suffix}`` and
    the read-only ``{attr}{readback_suffix}``, which follows each accepted write.

    ``pair = wrapper(value=0, doc='...')`` in a PVGroup; ``group.pair.setpoint``
    and ``group.pair.readback`` are the data.  Keywords go to both PVs.
    """
    def wrapper(*, value, dtype=None, doc=None, **kwargs):
        class PVPair(PVGroup):
            __doc__ = doc
            setpoint = pvproperty(name=setpoint_suffix, value=value, dtype=dtype,
                                  doc=doc, **kwargs)
            readback = pvproperty(name=readback_suffix, value=value, dtype=dtype,
                                  doc=doc, read_only=True, **kwargs)

            @setpoint.putter
            async def setpoint(self, instance, value):
                await self.readback.write(value, verify_value=False)
                return value

        sub = SubGroup(PVPair, doc=doc)
        sub.separator = ""
        return sub
    return wrapper


# -- RPC: pvfunction --------------------------------------------------------------

_RETURN_TYPES = {int: int, float: float, str: str, bool: bool}


class pvfunction(SubGroup):
    """Serve an async function as PVs: one per parameter, ``Process``, ``Retval``
    and ``Status`` (prefix: ``{function name}:``).

    Writing 1 (any non-zero value) to Process calls the function with the
    parameter PVs' values (``await func(group, **params)``, `group` being
    the PVGroup declaring it); Retval gets the result and Status
    'Success' or the error.  Parameters and the return value need type
    annotations (int, float, str, bool) and parameters need defaults.
    """

    def __init__(self, func=None, *, default=None, names=None, alarm_group=None,
                 prefix=None, **kwargs):
        self.default = default
        self.names = dict(names or {})
        self.alarm_group = alarm_group
        super().__init__(prefix=prefix, **kwargs)
        self.func = None
        if func is not None:
            self(func)

    def __call__(self, func):
        if not inspect.iscoroutinefunction(func):
            raise CaprotoTypeError(f"pvfunction needs an async def function, "
                                   f"not {func!r}")
        self.func = func
        if self.prefix is None:
            self.prefix = func.__name__ + ":"
        self.doc = self.doc or inspect.getdoc(func)
        self.group_cls = self._build_group(func)
        return self

    def __set_name__(self, owner, name):
        self.attr_name = name

    def _build_group(self, func):
        signature = inspect.signature(func)
        params = list(signature.parameters.values())[1:]       # skip the group
        body = {"__doc__": inspect.getdoc(func)}
        attrs = {}                          # parameter -> attribute holding it
        for param in params:
            if param.default is inspect.Parameter.empty:
                raise CaprotoValueError(f"pvfunction {func.__name__}: parameter "
                                        f"{param.name!r} needs a default value")
            dtype = param.annotation
            if dtype is inspect.Parameter.empty:
                dtype = type(param.default)
            attr = param.name + "_" if param.name in RESERVED else param.name
            attrs[param.name] = attr
            body[attr] = pvproperty(
                name=self.names.get(param.name, param.name), value=param.default,
                dtype=dtype, alarm_group=self.alarm_group)
        ret = signature.return_annotation
        if ret is inspect.Signature.empty:
            raise CaprotoValueError(f"pvfunction {func.__name__}: annotate the "
                                    f"return type (int, float, str or bool)")
        default = self.default
        if isinstance(default, (list, tuple)) and len(default) == 1:
            default = default[0]
        if default is None:
            default = _RETURN_TYPES.get(ret, int)()
        body["Retval"] = pvproperty(name=self.names.get("Retval", "Retval"),
                                    value=default, dtype=ret, read_only=True,
                                    alarm_group=self.alarm_group)
        body["Status"] = pvproperty(name=self.names.get("Status", "Status"),
                                    value="Init", dtype=ChannelType.STRING,
                                    read_only=True, alarm_group=self.alarm_group)
        process = pvproperty(name=self.names.get("Process", "Process"), value=0,
                             alarm_group=self.alarm_group)
        async def call(group, instance, value):
            if not value:
                return value
            kwargs = {name: group.attr_pvdb[attr].value for name, attr in attrs.items()}
            try:
                result = await func(group.parent, **kwargs)
            except Exception as exc:
                await group.Status.write(f"Error: {exc}"[:39], verify_value=False)
                raise
            await group.Retval.write(result, verify_value=False)
            await group.Status.write("Success", verify_value=False)
            return value

        body["Process"] = process.putter(call)
        return type(func.__name__, (PVGroup,), body)

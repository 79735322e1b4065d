"""PVGroup composition: SubGroup, pvfunction, pairs, macros, alarm groups, group hooks."""
import asyncio

import pytest

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import (PVGroup, SubGroup, expand_macros, get_pv_pair_wrapper,
                            pvfunction, pvproperty)

from . import ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(coro)


class Leaf(PVGroup):
    value = pvproperty(value=0)


class Middle(PVGroup):
    own = pvproperty(value=1.0)
    leaf = SubGroup(Leaf, prefix="leaf:")


class Tree(PVGroup):
    top = pvproperty(value="t")
    default = SubGroup(Leaf)
    dashed = SubGroup(Leaf, prefix="dash-")
    middle = SubGroup(Middle, prefix="mid:")

    @SubGroup(prefix="inline:")
    class inline(PVGroup):
        x = pvproperty(value=2)

    @SubGroup(prefix="plain:")
    class plain:                       # not a PVGroup: PVGroup is added
        y = pvproperty(value=3)


def test_subgroup_prefixes_concatenate_in_declaration_order():
    tree = Tree("T:")
    assert list(tree.pvdb) == ["T:top", "T:default:value", "T:dash-value",
                               "T:mid:own", "T:mid:leaf:value", "T:inline:x",
                               "T:plain:y"]
    assert tree.middle.leaf.value.pvname == "T:mid:leaf:value"
    assert tree.middle.leaf.parent is tree.middle and tree.middle.parent is tree
    assert isinstance(tree.plain, PVGroup) and tree.plain.y.value == 3
    assert tree.groups["dashed"] is tree.dashed
    assert tree.attr_pvdb["top"] is tree.top and tree.attr_to_pvname["top"] == "T:top"


def test_subclass_redefinition_keeps_position():
    class Base(PVGroup):
        a = pvproperty(value=1)
        b = pvproperty(value=2)

    class Derived(Base):
        a = pvproperty(value=10)
        c = pvproperty(value=3)

    group = Derived("D:")
    assert list(group.pvdb) == ["D:a", "D:b", "D:c"] and group.a.value == 10


def test_duplicate_pv_names_are_an_error_naming_both():
    class Clash(PVGroup):
        a = pvproperty(value=1, name="same")
        b = pvproperty(value=2, name="same")

    with pytest.raises(ValueError, match="'b'.*C:same"):
        Clash("C:")


def test_macros_expand_and_missing_ones_are_named():
    assert expand_macros("{a}:{b}.VAL", {"a": "X", "b": "Y"}) == "X:Y.VAL"

    class Macro(PVGroup):
        pv = pvproperty(value=0, name="{sys}:{dev}")

    assert list(Macro("M:", macros={"sys": "S", "dev": "D"}).pvdb) == ["M:S:D"]
    with pytest.raises(KeyError, match="dev"):
        Macro("M:", macros={"sys": "S"})
    assert list(Macro("{p}:", macros={"p": "P", "sys": "s", "dev": "d"}).pvdb) == ["P:s:d"]


def test_alarm_group_shares_one_alarm():
    class Shared(PVGroup):
        a = pvproperty(value=1.0, alarm_group="motor")
        b = pvproperty(value=2.0, alarm_group="motor")
        c = pvproperty(value=3.0)

    group = Shared("S:")
    assert group.a.alarm is group.b.alarm and group.c.alarm is not group.a.alarm
    run(group.a.alarm.write(status=AlarmStatus.HIHI, severity=AlarmSeverity.MAJOR_ALARM))
    assert group.b.severity == AlarmSeverity.MAJOR_ALARM
    assert group.c.severity == AlarmSeverity.NO_ALARM


pair = get_pv_pair_wrapper(setpoint_suffix=":SP", readback_suffix=":RBV")


class Pairs(PVGroup):
    motor = pair(value=1.0, precision=2, doc="motor position")
    count = get_pv_pair_wrapper()(value=0)


def test_pv_pair_readback_follows_setpoint():
    group = Pairs("P:")
    assert list(group.pvdb) == ["P:motor:SP", "P:motor:RBV", "P:count", "P:count_RBV"]
    assert group.motor.readback.read_only and not group.motor.setpoint.read_only
    run(group.motor.setpoint.write(2.5))
    assert group.motor.readback.value == 2.5
    assert group.motor.readback.precision == 2


class Rpc(PVGroup):
    offset = pvproperty(value=100)

    @pvfunction(default=[0])
    async def add(self, a: int = 1, b: int = 2) -> int:
        """a + b + the group's offset."""
        if a < 0:
            raise ValueError("a must not be negative")
        return a + b + self.offset.value

    @pvfunction(prefix="greet:")
    async def hello(self, name: str = "world") -> str:
        return f"hello {name}"


def test_pvfunction_makes_a_subgroup_of_arguments_and_results():
    group = Rpc("R:")
    assert list(group.pvdb) == ["R:offset", "R:add:a", "R:add:b", "R:add:Retval",
                                "R:add:Status", "R:add:Process", "R:greet:name",
                                "R:greet:Retval", "R:greet:Status", "R:greet:Process"]
    assert group.add.Retval.read_only and group.add.Status.read_only
    run(group.add.a.write(5))
    run(group.add.Process.write(1))
    assert group.add.Retval.value == 107 and group.add.Status.value == "Success"
    run(group.add.a.write(-1))
    with pytest.raises(ValueError, match="negative"):
        run(group.add.Process.write(1))
    assert group.add.Retval.value == 107
    assert group.add.Status.value.startswith("Error: a must not be negative")
    run(group.hello.Process.write(1))
    assert group.hello.Retval.value == "hello world"


def test_pvfunction_needs_annotations_and_defaults():
    with pytest.raises(ValueError, match="return type"):
        class NoReturn(PVGroup):
            @pvfunction
            async def f(self, a: int = 1):
                return a
    with pytest.raises(ValueError, match="'a' needs a default"):
        class NoDefault(PVGroup):
            @pvfunction
            async def f(self, a: int) -> int:
                return a


class Hooks(PVGroup):
    """Group-level hooks, recorded in class attributes the test reads."""

    ready = pvproperty(value="no", dtype=str)
    events = []

    async def __ainit__(self, async_lib):
        # runs alongside ready's own startup hook (both hosted by 'ready'):
        # waiting for it here would never end if they ran one after the other
        for _ in range(500):
            if ("startup", async_lib.name) in self.events:
                break
            await async_lib.sleep(0.01)
        self.events.append(("ainit", async_lib.name))
        await self.ready.write("yes")

    @ready.startup
    async def ready(self, instance, async_lib):
        self.events.append(("startup", async_lib.name))

    async def __ashutdown__(self, async_lib):
        self.events.append(("ashutdown", async_lib.name))

    @SubGroup(prefix="sub:")
    class sub(PVGroup):
        level = pvproperty(value=0)

        async def __ainit__(self, async_lib):
            await self.level.write(5)


GET = """
from epics import ca
out = {{}}
for name in {names!r}:
    chid = ca.create_channel(name, connect=False, auto_cb=False)
    assert ca.connect_channel(chid, timeout=10), name
    value = ca.get(chid, timeout=10)
    out[name] = value.tolist() if hasattr(value, 'tolist') else value
emit(out)
"""


@pytest.mark.parametrize("layer", ["asyncio", "curio", "trio"])
def test_group_hooks_and_subgroups_through_libca(layer):
    Hooks.events.clear()
    hooks = Hooks(f"GH{layer}:")
    tree = Tree(f"GT{layer}:")
    rpc = Rpc(f"GR{layer}:")
    pvdb = dict(hooks.pvdb, **tree.pvdb, **rpc.pvdb)
    with ServerThread(layer, pvdb):
        put = run_tool("caput", "-c", "-w", "5", f"GR{layer}:add:a", "7")
        assert put.returncode == 0, put.stderr
        process = run_tool("caput", "-c", "-w", "5", f"GR{layer}:add:Process", "1")
        assert process.returncode == 0, process.stderr
        names = [f"GH{layer}:ready", f"GH{layer}:sub:level", f"GT{layer}:mid:leaf:value",
                 f"GT{layer}:dash-value", f"GR{layer}:add:Retval",
                 f"GR{layer}:add:Status"]
        result = run_client(GET.format(names=names))
    assert result[f"GH{layer}:ready"] == "yes"
    assert result[f"GH{layer}:sub:level"] == 5
    assert result[f"GT{layer}:mid:leaf:value"] == 0
    assert result[f"GR{layer}:add:Retval"] == 109
    assert result[f"GR{layer}:add:Status"] == "Success"
    assert Hooks.events == [("startup", layer), ("ainit", layer), ("ashutdown", layer)]


def test_pv_attribute_names_may_not_shadow_the_group():
    with pytest.raises(ValueError, match="'prefix' is a PVGroup attribute"):
        class Shadow(PVGroup):
            prefix = pvproperty(value=1)
        Shadow("S:")

    class Renamed(PVGroup):
        prefix_ = pvproperty(value=1, name="prefix")

    assert list(Renamed("S:").pvdb) == ["S:prefix"]

"""pvproperty: type inference, hooks, scanning; checked in-process and through libca."""
import asyncio
import enum
import logging

import pytest

from caproto import AccessRights, AlarmSeverity, ChannelType
from caproto.server import (PVGroup, PVSpec, PvpropertyBoolEnum, PvpropertyByte,
                            PvpropertyChar, PvpropertyDouble, PvpropertyDoubleRO,
                            PvpropertyEnum, PvpropertyInteger, PvpropertyShort,
                            PvpropertyString, PvpropertyStringRO, pvproperty,
                            scan_wrapper)
from caproto.server.pvproperty import ScanSpec, run_scan

from . import ServerThread, run_client, run_tool

pytestmark = pytest.mark.timeout(60)


class Color(enum.Enum):
    red = 1
    green = 2


class Typed(PVGroup):
    text = pvproperty(value="hello")
    flag = pvproperty(value=True)
    count = pvproperty(value=7)
    ratio = pvproperty(value=0.5, precision=3, units="mm")
    waveform = pvproperty(value=[1.0, 2.0], max_length=10)
    raw = pvproperty(value=b"\x01\x02", max_length=8)
    color = pvproperty(value=Color.green, dtype=Color)
    short = pvproperty(value=3, dtype=ChannelType.INT)
    char = pvproperty(value="long text", dtype=ChannelType.CHAR, max_length=100)
    state = pvproperty(value="b", enum_strings=["a", "b", "c"], dtype=ChannelType.ENUM)
    fixed = pvproperty(value=1.5, read_only=True)
    renamed = pvproperty(value=1, name="other:name")
    long_text = pvproperty(value="x", dtype=str, max_length=120)


def run(coro):
    return asyncio.run(coro)


def test_types_are_inferred_from_value_and_dtype():
    group = Typed("T:")
    expected = {
        "text": (PvpropertyString, ChannelType.STRING, 1),
        "flag": (PvpropertyBoolEnum, ChannelType.ENUM, 1),
        "count": (PvpropertyInteger, ChannelType.LONG, 1),
        "ratio": (PvpropertyDouble, ChannelType.DOUBLE, 1),
        "waveform": (PvpropertyDouble, ChannelType.DOUBLE, 10),
        "raw": (PvpropertyByte, ChannelType.CHAR, 8),
        "color": (PvpropertyEnum, ChannelType.ENUM, 1),
        "short": (PvpropertyShort, ChannelType.INT, 1),
        "char": (PvpropertyChar, ChannelType.CHAR, 100),
        "state": (PvpropertyEnum, ChannelType.ENUM, 1),
        "fixed": (PvpropertyDoubleRO, ChannelType.DOUBLE, 1),
    }
    for attr, (cls, native, count) in expected.items():
        data = getattr(group, attr)
        assert type(data) is cls, attr
        assert data.data_type == native, attr
        assert data.max_length == count, attr
    assert group.flag.enum_strings == ("Off", "On") and group.flag.value == "On"
    assert group.color.enum_strings == ("red", "green") and group.color.value == "green"
    run(group.color.write(Color.red))
    assert group.color.value == "red"
    assert group.ratio.precision == 3 and group.ratio.units == "mm"
    assert "T:other:name" in group.pvdb and group.renamed.pvname == "T:other:name"
    assert group.long_text.long_string_max_length == 121


def test_read_only_and_access_rights():
    group = Typed("T:")
    assert group.fixed.check_access("host", "user") == AccessRights.READ
    assert group.count.check_access("host", "user") == AccessRights.READ | AccessRights.WRITE
    ro = pvproperty(value="x", read_only=True).pvspec.get_data_class()
    assert ro is PvpropertyStringRO


def test_bad_declarations_fail_at_class_creation_naming_the_problem():
    with pytest.raises(TypeError, match="cannot serve dtype"):
        pvproperty(value=object())
    with pytest.raises(ValueError, match="empty list"):
        pvproperty(value=[])
    with pytest.raises(TypeError, match="async def"):
        pvproperty(value=1).putter(lambda group, instance, value: value)
    with pytest.raises(TypeError, match="3 positional"):
        async def too_few(group, instance):
            pass
        pvproperty(value=1).putter(too_few)
    with pytest.raises(ValueError, match="unknown record type 'aix'"):
        pvproperty(value=1.0, record="aix")
    with pytest.raises(ValueError, match="needs a record"):
        pvproperty(value=1.0).scan(1.0, use_scan_field=True)


def test_bad_value_names_the_property():
    class Bad(PVGroup):
        level = pvproperty(value="x", enum_strings=["a", "b"], dtype=ChannelType.ENUM)
    with pytest.raises(ValueError, match="level"):
        Bad("B:")


class Hooked(PVGroup):
    doubled = pvproperty(value=0)
    guarded = pvproperty(value=1.0)
    computed = pvproperty(value=0.0)
    calls = []

    @doubled.putter
    async def doubled(self, instance, value):
        self.calls.append(("put", instance.pvname, value))
        return value * 2

    @guarded.putter
    async def guarded(self, instance, value):
        if value < 0:
            raise ValueError("negative values are refused")

    @computed.getter
    async def computed(self, instance):
        return 42.5


def test_putter_replaces_value_and_raising_rejects():
    group = Hooked("H:")
    run(group.doubled.write(5))
    assert group.doubled.value == 10
    assert group.calls[-1] == ("put", "H:doubled", 5)
    run(group.guarded.write(3.0))
    assert group.guarded.value == 3.0             # None keeps the written value
    with pytest.raises(ValueError, match="negative"):
        run(group.guarded.write(-1.0))
    assert group.guarded.value == 3.0


def test_getter_value_is_stored_on_read_but_not_while_publishing():
    group = Hooked("H:")
    _, values = run(group.computed.read(ChannelType.DOUBLE))
    assert list(values) == [42.5] and group.computed.value == 42.5
    calls = []

    async def counting(grp, instance):
        calls.append(1)
        return None

    group.computed.pvspec = group.computed.pvspec.new_names(get=counting)
    run(group.computed.write(1.0, verify_value=False))
    assert calls == []                           # a publish is not a client read


def test_pvspec_is_immutable_and_shared():
    spec = Hooked.doubled.pvspec
    assert isinstance(spec, PVSpec) and spec.put is not None
    one, two = Hooked("A:"), Hooked("B:")
    assert one.doubled.pvspec is two.doubled.pvspec
    assert one.doubled is not two.doubled


# -- scanning with a simulated clock (no real time involved) ------------------------

class FakeClock:
    """async_lib stand-in whose sleep advances a clock instead of waiting."""

    name = "asyncio"

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    async def sleep(self, seconds):
        self.now += max(seconds, 0)
        await asyncio.sleep(0)


class _Stop(Exception):
    pass


def scan_with_fake_clock(durations, period=1.0, subtract_elapsed=True,
                         on_call=None, get_period=None, use_scan_field=False):
    clock = FakeClock()
    starts = []
    instance = Hooked("S:").computed

    async def func(group, inst, async_lib):
        starts.append(clock.now)
        if len(starts) > len(durations):
            raise _Stop()
        if on_call is not None:
            on_call(len(starts))
        clock.now += durations[len(starts) - 1]

    spec = ScanSpec(func, period, subtract_elapsed, True, None, use_scan_field)
    run(run_scan(None, instance, clock, spec, get_period or (lambda: period),
                 clock.monotonic))
    return [round(t - starts[0], 9) for t in starts], instance


def test_scan_is_drift_free():
    starts, instance = scan_with_fake_clock([0.3, 0.05, 0.9, 0.0] * 25)
    assert starts == [float(n) for n in range(101)]
    assert instance.scan_overruns == 0


def test_scan_without_subtract_elapsed_waits_a_full_period():
    starts, _ = scan_with_fake_clock([0.5, 0.5, 0.5],
                                     subtract_elapsed=False)
    assert starts == [0.0, 1.5, 3.0, 4.5]


def test_scan_overruns_are_counted_logged_and_do_not_burst(caplog):
    with caplog.at_level(logging.WARNING, logger="caproto.ioc"):
        starts, instance = scan_with_fake_clock([2.5, 0.1, 0.1])
    # the overrun restarts the schedule from its end: no catch-up burst
    assert starts == [0.0, 2.5, 3.5, 4.5]
    assert instance.scan_overruns == 1
    assert any("over-runs have now happened 1 times" in r.getMessage()
               for r in caplog.records)


def test_scan_period_change_applies_to_the_wait_under_way():
    periods = {"now": 10.0}

    def on_call(n):
        if n == 2:
            periods["now"] = 0.5     # like caput PV.SCAN '.5 second' during a scan

    starts, _ = scan_with_fake_clock([0.0] * 4, period=10.0,
                                     on_call=on_call, use_scan_field=True,
                                     get_period=lambda: periods["now"])
    assert starts == [0.0, 10.0, 10.5, 11.0, 11.5]


def test_scan_wrapper_builds_a_startup_hook():
    clock = FakeClock()
    group = Hooked("W:")
    seen = []

    async def tick(grp, instance, async_lib):
        seen.append((grp, instance, async_lib))
        if len(seen) == 3:
            raise _Stop()

    hook = scan_wrapper(tick, 0.001, stop_on_error=True, failure_severity=None)
    run(hook(group, group.computed, clock))
    assert seen == [(group, group.computed, clock)] * 3


def test_scan_failure_sets_the_alarm():
    clock = FakeClock()
    instance = Hooked("F:").computed

    async def broken(group, inst, async_lib):
        raise RuntimeError("device unplugged")

    spec = ScanSpec(broken, 1.0, True, True, AlarmSeverity.MAJOR_ALARM, False)
    run(run_scan(None, instance, clock, spec, lambda: 1.0, clock.monotonic))
    assert instance.alarm.severity == AlarmSeverity.MAJOR_ALARM
    assert instance.alarm.alarm_string == "device unplugged"


# -- through libca -----------------------------------------------------------------

class Served(PVGroup):
    """Everything a client can notice about pvproperty, on one server."""

    text = pvproperty(value="hello", doc="a string")
    flag = pvproperty(value=False)
    count = pvproperty(value=7)
    ratio = pvproperty(value=0.5, precision=3, units="mm")
    waveform = pvproperty(value=[1.0, 2.0, 3.0], max_length=10)
    fixed = pvproperty(value=1.5, read_only=True)
    doubled = pvproperty(value=0)
    guarded = pvproperty(value=1.0)
    computed = pvproperty(value=0.0)
    started = pvproperty(value=0)
    ticks = pvproperty(value=0)
    stopped = []

    @doubled.putter
    async def doubled(self, instance, value):
        return value * 2

    @guarded.putter
    async def guarded(self, instance, value):
        if value < 0:
            raise ValueError("negative values are refused")

    @computed.getter
    async def computed(self, instance):
        return self.count.value * 1.5

    @started.startup
    async def started(self, instance, async_lib):
        assert async_lib.name in ("asyncio", "curio", "trio")
        await instance.write(instance.value + 1)

    @started.shutdown
    async def started(self, instance, async_lib):
        self.stopped.append(async_lib.name)

    @ticks.scan(period=0.05)
    async def ticks(self, instance, async_lib):
        await instance.write(instance.value + 1)


CLIENT = """
import time
from epics import ca
names = {names!r}
chids = {{k: ca.create_channel(v, connect=False, auto_cb=False) for k, v in names.items()}}
for key, chid in chids.items():
    assert ca.connect_channel(chid, timeout=10), key
out = {{'meta': {{}}}}
for key, chid in chids.items():
    out['meta'][key] = {{'type': ca.field_type(chid), 'count': ca.element_count(chid),
                 'write': bool(ca.write_access(chid))}}
ctrl = ca.get_with_metadata(chids['flag'], ftype=31)
out['flag_strs'] = [s.decode() if isinstance(s, bytes) else s for s in ctrl['enum_strs']]
ratio = ca.get_with_metadata(chids['ratio'], ftype=34)
out['ratio_units'] = ratio['units'].decode() if isinstance(ratio['units'], bytes) else ratio['units']
out['ratio_precision'] = ratio['precision']
out['text'] = ca.get(chids['text'])
out['waveform'] = list(ca.get(chids['waveform']))
ca.put(chids['doubled'], 21, wait=True)
out['doubled'] = int(ca.get(chids['doubled']))
ca.put(chids['count'], 4, wait=True)
out['computed'] = float(ca.get(chids['computed']))
out['started'] = int(ca.get(chids['started']))
first = int(ca.get(chids['ticks']))
deadline = time.time() + 10
while int(ca.get(chids['ticks'])) < first + 3 and time.time() < deadline:
    time.sleep(0.05)
out['ticks_advanced'] = int(ca.get(chids['ticks'])) >= first + 3
emit(out)
"""


def served_names(prefix):
    return {attr: f"{prefix}{attr}" for attr in
            ("text", "flag", "count", "ratio", "waveform", "fixed", "doubled",
             "guarded", "computed", "started", "ticks")}


def refused(caput):
    """Did caput report that the server refused the write?"""
    said = (caput.stdout + caput.stderr).lower()
    return caput.returncode != 0 or any(word in said for word in
                                        ("error", "failed", "denied", "no write"))


@pytest.mark.parametrize("layer", ["asyncio", "curio", "trio"])
def test_pvproperty_through_libca(layer):
    Served.stopped.clear()
    group = Served(f"PP{layer}:")
    with ServerThread(layer, group.pvdb):
        result = run_client(CLIENT.format(names=served_names(group.prefix)))
        rejected = run_tool("caput", "-c", "-w", "5", f"{group.prefix}guarded", "-4")
        read_only = run_tool("caput", "-c", "-w", "5", f"{group.prefix}fixed", "9")
    meta = result["meta"]
    types = {key: (value["type"], value["count"]) for key, value in meta.items()}
    assert types["text"] == (ChannelType.STRING, 1)
    assert types["flag"] == (ChannelType.ENUM, 1)
    assert types["count"] == (ChannelType.LONG, 1)
    assert types["ratio"] == (ChannelType.DOUBLE, 1)
    assert types["waveform"] == (ChannelType.DOUBLE, 10)
    assert meta["fixed"]["write"] is False and meta["count"]["write"] is True
    assert result["flag_strs"] == ["Off", "On"]
    assert result["ratio_units"] == "mm" and result["ratio_precision"] == 3
    assert result["text"] == "hello"
    assert result["waveform"] == [1.0, 2.0, 3.0]
    assert result["doubled"] == 42 and group.doubled.value == 42
    assert result["computed"] == 6.0            # the getter ran for the client's read
    assert result["started"] == 1
    assert result["ticks_advanced"]
    assert group.guarded.value == 1.0           # the putter refused -4
    assert refused(rejected)
    assert group.fixed.value == 1.5
    assert refused(read_only)
    assert Served.stopped == [layer]            # the shutdown hook ran at exit


def test_decorator_styles():
    class Styles(PVGroup):
        @pvproperty
        async def bare(self, instance):
            """Docstring becomes the doc."""
            return 5

        @pvproperty(value=1.5, precision=2)
        async def configured(self, instance):
            return 2.5

        legacy = pvproperty(value=[1.0], mock_record="ai")

    group = Styles("D:")
    assert type(group.bare) is PvpropertyInteger and group.bare.doc.startswith("Docstring")
    assert run(group.bare.read(ChannelType.LONG))[1][0] == 5
    assert group.configured.precision == 2
    assert run(group.configured.read(ChannelType.DOUBLE))[1][0] == 2.5
    assert group.legacy.value == 1.0 and group.legacy.fields["RTYP"].value == "ai"

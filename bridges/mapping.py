"""Config models -> PVGroups: the Channel Access face of a bridge.

Each device becomes a PVGroup, nested as a SubGroup under the IOC prefix, with
one pvproperty per configured PV plus the health PVs (schema.HEALTH_PVS).

Invariants:
- The device runtime (bridges.runtime) owns the hardware: it polls in its own
  thread, one exchange at a time, and reports every change through
  ``on_update``.  Those reports cross into the event loop through the async
  library's ThreadsafeQueue and are written with ``verify_value=False`` (they
  come from the device, not from a client) and with the runtime's alarm
  status/severity and acquisition timestamp, never re-stamped here.
- A client write goes through the putter to ``runner.submit_write``; the PV
  then shows the value the device was actually sent (clamped to the drive
  limits), or the put fails and the value is unchanged.  Drive limits and
  enum choices are enforced by the runtime with the configured policy, so the
  data classes below skip ChannelData's own control-limit rejection.
- Setpoints marked ``autosave`` are restored into the runtime before it starts
  and saved (atomically) whenever a write to them succeeds.
"""
import logging
import time

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import PVGroup, SubGroup, pvproperty
from caproto.server.pvproperty import (PvpropertyDouble, PvpropertyEnum,
                                       PvpropertyInteger, PvpropertyString)

from bridges.runtime import create_runner

log = logging.getLogger("bridges.mapping")

SEVERITIES = {"NO_ALARM": AlarmSeverity.NO_ALARM, "MINOR": AlarmSeverity.MINOR_ALARM,
              "MAJOR": AlarmSeverity.MAJOR_ALARM, "INVALID": AlarmSeverity.INVALID_ALARM}
LAST_ERR_LENGTH = 256     # LAST_ERR is a long string: CHAR readers see it all


class _DeviceChecked:
    """Writes skip ChannelData's limit rejection: the runtime clamps or rejects
    by the PV's ``on_drive_limit`` policy.  The putter (group_write) still runs."""

    async def verify_value(self, value):
        replaced = await self.group.group_write(self, value)
        return value if replaced is None else replaced


class BridgeDouble(_DeviceChecked, PvpropertyDouble):
    pass


class BridgeInteger(_DeviceChecked, PvpropertyInteger):
    pass


class BridgeEnum(_DeviceChecked, PvpropertyEnum):
    pass


class BridgeString(_DeviceChecked, PvpropertyString):
    pass


def _numeric_kwargs(pv):
    kwargs = {"units": pv.units, "value_atol": pv.deadband.monitor,
              "log_atol": pv.deadband.archive}
    if pv.precision is not None and pv.type == "float":
        kwargs["precision"] = pv.precision
    if pv.display_limits:
        kwargs["lower_disp_limit"], kwargs["upper_disp_limit"] = pv.display_limits
    if pv.drive_limits:
        kwargs["lower_ctrl_limit"], kwargs["upper_ctrl_limit"] = pv.drive_limits
    alarm = pv.alarm
    if alarm is not None:   # shown in GR/CTRL metadata; the runtime computes the alarm
        for key, limit in (("upper_alarm_limit", alarm.hihi), ("upper_warning_limit", alarm.high),
                           ("lower_warning_limit", alarm.low), ("lower_alarm_limit", alarm.lolo)):
            if limit is not None:
                kwargs[key] = limit
    return kwargs


def pvproperty_for(pv):
    """The pvproperty serving one configured PV (value undefined until the first read)."""
    common = {"name": pv.name, "doc": pv.desc or None, "read_only": not pv.writable}
    if pv.type == "float":
        return pvproperty(value=0.0, dtype=BridgeDouble, **common, **_numeric_kwargs(pv))
    if pv.type == "int":
        return pvproperty(value=0, dtype=BridgeInteger, **common, **_numeric_kwargs(pv))
    if pv.type in ("enum", "bool"):
        return pvproperty(value=pv.enum[0], dtype=BridgeEnum, enum_strings=list(pv.enum),
                          **common)
    return pvproperty(value="", dtype=BridgeString, **common)


def _health_properties():
    return {
        "CONNECTED": pvproperty(name="CONNECTED", value="No", dtype=PvpropertyEnum,
                                enum_strings=["No", "Yes"], read_only=True,
                                doc="Device connection state"),
        "LAST_UPDATE": pvproperty(name="LAST_UPDATE", value=0.0, read_only=True, units="s",
                                  precision=3, doc="POSIX time of the last good value"),
        "ERR_CNT": pvproperty(name="ERR_CNT", value=0, read_only=True,
                              doc="Failed exchanges since start"),
        "LAST_ERR": pvproperty(name="LAST_ERR", value="", dtype=PvpropertyString,
                               long_string_max_length=LAST_ERR_LENGTH, read_only=True,
                               doc="Last device error"),
    }


class DeviceGroup(PVGroup):
    """PVs of one device; subclasses are made by ``device_group_class``."""

    device = None           # DeviceConfig
    index = None            # its position in the config (for error paths)
    sim = False
    autosave = None         # AutosaveStore shared by the IOC, or None
    pv_attrs = {}           # config PV name -> attribute name

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.async_lib = None
        self._updates = None
        self._before_start = []   # the runtime's initial (UDF) state, published on construction
        self.runner = create_runner(self.device, self._on_update, sim=self.sim, index=self.index)
        if self.autosave is not None:
            for name, pv in self.device.pvs.items():
                saved = self.autosave.get(self.attr_to_pvname[self.pv_attrs[name]])
                if pv.autosave and saved is not None:
                    try:
                        self.runner.restore(name, saved)
                    except Exception as exc:     # a bad saved value must not stop the IOC
                        log.warning("%s: autosaved value %r not restored: %s",
                                    self.attr_to_pvname[self.pv_attrs[name]], saved, exc)

    def _on_update(self, name, value, status, severity, timestamp):
        """Called in the runner's thread: hand the update to the event loop."""
        item = (name, value, status, severity, timestamp)
        if self._updates is None:    # only before __ainit__, when no thread runs yet
            self._before_start.append(item)
        else:
            self._updates.put(item)

    async def __ainit__(self, async_lib):
        self.async_lib = async_lib
        self._updates = async_lib.ThreadsafeQueue()
        for item in self._before_start:
            await self._apply(*item)
        self._before_start.clear()
        self.runner.start()
        while True:
            await self._apply(*await self._updates.async_get())

    async def __ashutdown__(self, async_lib):
        await async_lib.run_in_thread(self.runner.close)

    async def _apply(self, name, value, status, severity, timestamp):
        data = self.attr_pvdb[self.pv_attrs.get(name, name)]
        alarm = {"status": AlarmStatus[status], "severity": SEVERITIES[severity]}
        if name == "CONNECTED":
            value = int(bool(value))
        elif name == "LAST_UPDATE" and value is None:
            value = 0.0
        elif name == "LAST_ERR" and value is not None:
            value = str(value)[:LAST_ERR_LENGTH - 1]
        if value is None:       # nothing acquired yet: only the alarm changes
            await data.write_metadata(**alarm)
            return
        await data.write(value, verify_value=False,
                         timestamp=time.time() if timestamp is None else timestamp, **alarm)

    async def group_write(self, instance, value):
        """A client's put: the device gets it first; the PV shows what was sent."""
        name = instance.pvspec.name
        future = self.runner.submit_write(name, value)
        limit = self.device.retry.call_timeout * 2 + 5.0   # queued behind one exchange at most
        sent = await self.async_lib.run_in_thread(future.result, limit)
        if self.autosave is not None and self.device.pvs[name].autosave:
            self.autosave.set(instance.pvname, sent)
        return sent


def _attribute(name, taken):
    attr = "pv_" + "".join(c if c.isalnum() else "_" for c in name)
    while attr in taken:
        attr += "_"
    return attr


def device_group_class(device, index, *, sim=False, autosave=None):
    """A PVGroup subclass serving `device` (its PVs and health PVs)."""
    attrs = {}
    pv_attrs = {}
    for name, pv in device.pvs.items():
        attr = _attribute(name, attrs)
        attrs[attr] = pvproperty_for(pv)
        pv_attrs[name] = attr
    for name, prop in _health_properties().items():
        attrs[name] = prop
    attrs.update(device=device, index=index, sim=sim, autosave=autosave, pv_attrs=pv_attrs,
                 __doc__="PVs of device %r (%s driver)" % (device.name, device.driver))
    return type("Device_" + _attribute(device.name, ()), (DeviceGroup,), attrs)


class BridgeIOC(PVGroup):
    """The whole IOC: one SubGroup per device; ``runners`` lists their runtimes."""

    autosave = None

    @property
    def runners(self):
        return [group.runner for group in self.groups.values()]

    async def __ainit__(self, async_lib):
        """Save changed autosave setpoints every period (synApps' rhythm)."""
        if self.autosave is None:
            return
        while True:
            await async_lib.sleep(self.autosave.period)
            if self.autosave.dirty:
                await async_lib.run_in_thread(self.autosave.flush)


def build_ioc(config, *, sim=False, autosave=None):
    """Instantiate the IOC for a validated BridgeConfig (no I/O happens here)."""
    attrs = {}
    for index, device in enumerate(config.devices):
        attrs[_attribute(device.name, attrs)] = SubGroup(
            device_group_class(device, index, sim=sim, autosave=autosave), prefix=device.prefix)
    attrs["autosave"] = autosave
    ioc_class = type("BridgeIOC_" + _attribute(config.source.stem if hasattr(config.source, "stem")
                                                else "config", ()), (BridgeIOC,), attrs)
    return ioc_class(prefix=config.ioc.prefix)

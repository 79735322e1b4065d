#!/usr/bin/env python3
"""PVs that look like EPICS records: ``temperature.EGU``, ``.HIHI``, ``.DESC`` ...

``temperature`` is an ai with alarm limits; ``heater`` an ao whose drive
limits clamp writes; ``valve`` a bo; ``mode`` an mbbo; ``sum`` a calc
record; ``checked`` refuses the value 13 in its putter.
"""
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run


class RecordIOC(PVGroup):
    """Record-like PVs whose fields are served as ``PV.FIELD``."""

    temperature = pvproperty(
        value=20.0, record="ai", units="degC", precision=2,
        doc="Room temperature", upper_alarm_limit=40.0, lower_alarm_limit=0.0,
        upper_warning_limit=30.0, lower_warning_limit=5.0)
    heater = pvproperty(value=0.0, record="ao", units="W", precision=1,
                        upper_ctrl_limit=100.0, lower_ctrl_limit=0.0,
                        doc="Heater power")
    valve = pvproperty(value=False, record="bo", enum_strings=["Closed", "Open"],
                       doc="Inlet valve")
    mode = pvproperty(value="Idle", record="mbbo",
                      enum_strings=["Idle", "Heating", "Cooling"], doc="Mode")
    sum = pvproperty(value=0.0, record="calc", doc="CALC of A..L")
    checked = pvproperty(value=0, record="longout", doc="Anything but 13")

    @checked.putter
    async def checked(self, instance, value):
        if value == 13:
            raise ValueError("13 is not allowed")
        return value

    @heater.putter
    async def heater(self, instance, value):
        # A heater drives the temperature toward 20 + value / 2.
        await self.temperature.write(20.0 + value / 2)
        return value


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="records:", desc="PVs with EPICS record fields.", argv=argv)
    ioc = RecordIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PV names with macros: ``--beamline BL --thing det`` serves
``macros:BL:det.VAL`` and ``macros:BL:det.RBV`` (or use ``--macro KEY=VALUE``)."""
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run


class MacroIOC(PVGroup):
    """PV names filled in from the command line."""

    value = pvproperty(value=0.0, name="{beamline}:{thing}.VAL")
    readback = pvproperty(value=0.0, name="{beamline}:{thing}.RBV", read_only=True)

    @value.putter
    async def value(self, instance, value):
        await self.readback.write(value)
        return value


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="macros:", desc="Run an IOC with macro-ified PV names.",
        macros=dict(beamline="my_beamline", thing="thing"), argv=argv)
    ioc = MacroIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Periodic scans: ``ticks`` counts once per second (drift-free), and
``scanned`` follows its record's SCAN field (``caput scan:scanned.SCAN '.1 second'``)."""
import time

from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run


class ScanIOC(PVGroup):
    """Scan hooks at a fixed period and at the SCAN field's period."""

    ticks = pvproperty(value=0, read_only=True, doc="Incremented every period")
    period = pvproperty(value=0.0, read_only=True, units="s", precision=3,
                        doc="Measured time between the last two scans of scanned")
    scanned = pvproperty(value=0, record="longin", doc="Counts at the SCAN rate")

    @ticks.scan(period=1.0)
    async def ticks(self, instance, async_lib):
        await instance.write(instance.value + 1)

    @scanned.scan(period=1.0, use_scan_field=True)
    async def scanned(self, instance, async_lib):
        now = time.monotonic()
        last = getattr(self, "_last_scan", None)
        if last is not None:
            await self.period.write(now - last)
        self._last_scan = now
        await instance.write(instance.value + 1)


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="scan:", desc="Periodic scan hooks.", argv=argv)
    ioc = ScanIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A mock temperature controller: a startup hook runs the simulation.

Write ``setpoint``; the startup task moves ``readback`` toward it by at
most ``ramp_rate`` per 0.1 s tick and sets ``moving`` while it does.
``__ainit__`` (the group start-up hook) marks the device ``Ready``.
"""
from caproto import ChannelType
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run

TICK = 0.1


class MockController(PVGroup):
    """A simulated device with a ramped readback."""

    setpoint = pvproperty(value=20.0, units="degC", precision=2, record="ao",
                          upper_ctrl_limit=100.0, lower_ctrl_limit=-20.0)
    readback = pvproperty(value=20.0, units="degC", precision=2, read_only=True,
                          record="ai")
    ramp_rate = pvproperty(value=5.0, units="degC/s", precision=1)
    moving = pvproperty(value=False, read_only=True)
    status = pvproperty(value="Starting", dtype=ChannelType.STRING, read_only=True)
    started = pvproperty(value=0, read_only=True, doc="Start-up hook runs")

    async def __ainit__(self, async_lib):
        await self.status.write("Ready")

    @readback.startup
    async def readback(self, instance, async_lib):
        await self.started.write(self.started.value + 1)
        while True:
            await async_lib.sleep(TICK)
            target, current = self.setpoint.value, instance.value
            step = self.ramp_rate.value * TICK
            if abs(target - current) <= step:
                if current != target:
                    await instance.write(target)
                if self.moving.value != "Off":
                    await self.moving.write(False)
                continue
            await instance.write(current + step if target > current else current - step)
            if self.moving.value != "On":
                await self.moving.write(True)

    @readback.shutdown
    async def readback(self, instance, async_lib):
        print("mock device shutting down", flush=True)


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="mock:", desc="A simulated temperature controller.",
        argv=argv)
    ioc = MockController(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

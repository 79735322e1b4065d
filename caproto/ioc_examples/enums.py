#!/usr/bin/env python3
"""ENUM PVs three ways: a bool, explicit enum_strings, and a Python enum."""
import enum

from caproto import ChannelType
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run


class Color(enum.IntEnum):
    red = 0
    green = 1
    blue = 2


class EnumIOC(PVGroup):
    """Enumerated PVs; ``last_change`` says which one was written last."""

    enabled = pvproperty(value=False, doc="A bool: Off/On")
    state = pvproperty(value="Idle", enum_strings=["Idle", "Busy", "Fault"],
                       dtype=ChannelType.ENUM, doc="Explicit states")
    color = pvproperty(value=Color.green, dtype=Color, doc="From an enum.Enum")
    readonly_state = pvproperty(value="On", enum_strings=["Off", "On"],
                                dtype=ChannelType.ENUM, read_only=True)
    last_change = pvproperty(value="", dtype=str, read_only=True)

    @state.putter
    async def state(self, instance, value):
        await self.last_change.write(f"state={value}")
        return value

    @color.putter
    async def color(self, instance, value):
        await self.last_change.write(f"color={value}")
        return value


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="enums:", desc="Enumerated PVs.", argv=argv)
    ioc = EnumIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A Python function served as PVs: set the arguments, write 1 to Process,
read Retval (and Status)."""
import random

from caproto.server import PVGroup, ioc_arg_parser, pvfunction, pvproperty, run


class RpcIOC(PVGroup):
    """``get_random`` and ``scale`` as remote procedure calls."""

    fixed_random = pvproperty(value=0, read_only=True)

    @fixed_random.getter
    async def fixed_random(self, instance):
        return random.randint(1, 100)

    @pvfunction(default=0, prefix="get_random:")
    async def get_random(self, low: int = 100, high: int = 1000) -> int:
        """A random integer in [low, high]."""
        if low > high:
            raise ValueError(f"low={low} > high={high}")
        return random.randint(low, high)

    @pvfunction
    async def scale(self, value: float = 1.0, factor: float = 2.0) -> float:
        """value * factor."""
        return value * factor


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="rpc:", desc="Functions served as PVs.", argv=argv)
    ioc = RpcIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Three PVs that only store what is written: an integer, a float, an array."""
from caproto.server import PVGroup, ioc_arg_parser, pvproperty, run


class SimpleIOC(PVGroup):
    """A, B and C keep whatever clients write to them."""

    A = pvproperty(value=1, doc="An integer")
    B = pvproperty(value=2.0, doc="A float")
    C = pvproperty(value=[1, 2, 3], doc="An array of integers (3 elements at most)")


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="simple:", desc="Serve three PVs that store values.",
        argv=argv)
    ioc = SimpleIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

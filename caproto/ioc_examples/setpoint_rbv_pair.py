#!/usr/bin/env python3
"""Setpoint/readback pairs: writing ``pair`` updates the read-only ``pair_RBV``."""
from caproto.server import PVGroup, get_pv_pair_wrapper, ioc_arg_parser, run

pvproperty_with_rbv = get_pv_pair_wrapper(setpoint_suffix="",
                                          readback_suffix="_RBV")


class PairIOC(PVGroup):
    """Two setpoint/readback pairs."""

    pair = pvproperty_with_rbv(value=0, doc="An integer pair")
    gain = pvproperty_with_rbv(value=1.5, doc="A float pair", precision=2,
                               units="dB")


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="pair:", desc="Setpoint and readback PV pairs.", argv=argv)
    ioc = PairIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

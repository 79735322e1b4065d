#!/usr/bin/env python3
"""Nested PVGroups: prefixes concatenate, and subgroups can be reused."""
import random

from caproto.server import PVGroup, SubGroup, ioc_arg_parser, pvproperty, run


class RandomGroup(PVGroup):
    """One PV answering a random integer on every read."""

    random = pvproperty(value=0, read_only=True, doc="A random integer 1..100")

    @random.getter
    async def random(self, instance):
        return random.randint(1, 100)


class Detector(PVGroup):
    """A detector with an exposure time and a nested random source."""

    exposure = pvproperty(value=1.0, units="s")
    source = SubGroup(RandomGroup, prefix="source:")


class SubgroupIOC(PVGroup):
    """Subgroups in every style: default prefix, explicit prefix, decorator."""

    random = pvproperty(value=0, read_only=True)
    group1 = SubGroup(RandomGroup)                         # prefix 'group1:'
    group2 = SubGroup(RandomGroup, prefix="group2-")
    det1 = SubGroup(Detector, prefix="det1:")
    det2 = SubGroup(Detector, prefix="det2:")

    @SubGroup(prefix="inline:")
    class inline(PVGroup):
        """A group declared in place."""
        count = pvproperty(value=0)

        @count.putter
        async def count(self, instance, value):
            await self.parent.random.write(value)
            return value

    @random.getter
    async def random(self, instance):
        return random.randint(1, 100)


def main(argv=None):
    ioc_options, run_options = ioc_arg_parser(
        default_prefix="subgroups:", desc="Nested PV groups.", argv=argv)
    ioc = SubgroupIOC(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()

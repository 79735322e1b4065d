"""A server with a large pvdb keeps it out of the cyclic collector's full
walks (gc.freeze once serving): 10,000 PVs otherwise cost a ~55 ms pause
in the middle of serving each time a full collection runs."""
import gc

import pytest

import caproto as ca

from . import ServerThread


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()      # give the test process its collector back


def test_a_large_pvdb_is_frozen_once_serving(unfrozen):
    pvdb = {f"H:{i:04d}": ca.ChannelDouble(value=float(i)) for i in range(1000)}
    before = gc.get_freeze_count()
    with ServerThread("asyncio", pvdb):
        frozen = gc.get_freeze_count() - before
    # every ChannelDouble (and its alarm) is now outside the collector's walks
    assert frozen >= 2 * len(pvdb)


def test_a_small_pvdb_is_left_alone(unfrozen):
    pvdb = {f"S:{i}": ca.ChannelDouble(value=1.0) for i in range(10)}
    with ServerThread("curio", pvdb):
        assert gc.get_freeze_count() == 0

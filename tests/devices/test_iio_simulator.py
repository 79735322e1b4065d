"""The fake IIO sysfs tree: real files, time-driven values, faults with real errnos."""
import errno
import os

import pytest

from devices.simulators.iio import FakeClock, FakeIIOTree, SimulatedIIOSensor
from devices.transports.sysfs import IIODevice, read_attribute


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sensor(tmp_path, clock):
    # The value is the whole seconds since the clock started: easy to follow.
    start = clock.time()
    sensor = SimulatedIIOSensor(FakeIIOTree(tmp_path), "dht11",
                                {"in_temp_input": lambda wall: int(wall - start) * 1000},
                                clock=clock, cache_period=2.0, slow_delay=1.5)
    sensor.connect()
    return sensor


def open_device(sensor):
    device = IIODevice(sensor.name, sensor.tree.root, opener=sensor.opener)
    device.open()
    return device


def test_tree_creates_numbered_device_directories_with_name_files(tmp_path):
    tree = FakeIIOTree(tmp_path)
    first = tree.add_device("mcp3008")
    second = tree.add_device("dht11", {"in_temp_input": 1})
    assert os.path.basename(first) == "iio:device0"
    assert os.path.basename(second) == "iio:device1"
    assert open(os.path.join(second, "name")).read() == "dht11\n"
    assert read_attribute(os.path.join(second, "in_temp_input")) == "1"


def test_values_follow_the_clock_but_are_cached_like_the_kernel_driver(sensor, clock):
    device = open_device(sensor)
    assert device.read_channel("temp") == 0.0
    clock.advance(1.0)
    assert device.read_channel("temp") == 0.0      # within the 2 s cache
    clock.advance(1.5)
    assert device.read_channel("temp") == 2000.0   # int(2.5 s) * 1000


@pytest.mark.parametrize("fault, code", [("eio", errno.EIO), ("etimedout", errno.ETIMEDOUT)])
def test_read_faults_raise_oserror_with_the_real_errno(sensor, fault, code):
    sensor.inject(fault)
    path = os.path.join(sensor.directory, "in_temp_input")
    with pytest.raises(OSError) as info:
        sensor.opener(path)
    assert info.value.errno == code
    # the name file still reads, so the device can still be found
    assert open_device(sensor).directory == sensor.directory


def test_disconnect_removes_the_directory_and_none_brings_it_back_renumbered(sensor):
    old = sensor.directory
    sensor.inject("disconnect")
    assert not os.path.exists(old)
    sensor.inject("none")
    assert os.path.isdir(sensor.directory)
    assert sensor.directory != old
    assert open_device(sensor).read_channel("temp") == 0.0


def test_frozen_stops_the_files_changing(sensor, clock):
    device = open_device(sensor)
    assert device.read_channel("temp") == 0.0
    sensor.inject("frozen")
    clock.advance(10.0)
    assert device.read_channel("temp") == 0.0
    sensor.inject("none")
    assert device.read_channel("temp") == 10000.0


def test_spike_affects_exactly_one_sample(sensor, clock):
    device = open_device(sensor)
    sensor.inject("spike", attribute="in_temp_input", value=3304000)
    assert device.read_channel("temp") == 3304000.0
    clock.advance(2.0)
    assert device.read_channel("temp") == 2000.0


def test_slow_makes_each_channel_read_take_the_delay(sensor, clock):
    device = open_device(sensor)
    sensor.inject("slow", delay=1.5)
    before = clock.monotonic()
    device.read_channel("temp")
    assert clock.monotonic() - before == 1.5


def test_received_lists_only_reads_that_were_served(sensor):
    device = open_device(sensor)
    device.read_channel("temp")
    sensor.inject("eio")
    with pytest.raises(Exception):
        device.read_channel("temp")
    assert sensor.received == ["in_temp_input"]


def test_unknown_fault_names_the_choices(sensor):
    with pytest.raises(ValueError, match="etimedout"):
        sensor.inject("melt")


def test_first_index_is_used_so_code_cannot_assume_device0(tmp_path, clock):
    sensor = SimulatedIIOSensor(FakeIIOTree(tmp_path), "dht11", {"in_temp_input": lambda t: 1},
                                clock=clock, first_index=4)
    assert sensor.connect().endswith("iio:device4")

"""sysfs attribute files and IIO device lookup, against real files under tmp_path."""
import errno
import os

import pytest

from devices.errors import DeviceDisconnected, DeviceError, DeviceReplyError, DeviceTimeout
from devices.transports.sysfs import (IIODevice, find_iio_device, read_attribute,
                                      write_attribute)


def make_device(root, index, name, **attributes):
    directory = root / ("iio:device%d" % index)
    directory.mkdir(parents=True)
    (directory / "name").write_text(name + "\n")
    for attribute, value in attributes.items():
        (directory / attribute).write_text("%s\n" % value)
    return directory


def failing_opener(code):
    """An opener that fails like a sysfs read whose driver returned -code."""
    def opener(path, mode="r"):
        raise OSError(code, os.strerror(code), str(path))
    return opener


def test_read_attribute_strips_the_trailing_newline(tmp_path):
    (tmp_path / "temp").write_text("45678\n")
    assert read_attribute(str(tmp_path / "temp")) == "45678"


def test_write_attribute_then_read_it_back(tmp_path):
    path = str(tmp_path / "value")
    write_attribute(path, 1)
    assert read_attribute(path) == "1"


def test_missing_file_is_a_disconnect_naming_the_path(tmp_path):
    missing = str(tmp_path / "gone")
    with pytest.raises(DeviceDisconnected) as info:
        read_attribute(missing)
    assert missing in str(info.value)
    assert info.value.alarm_status == "COMM"


@pytest.mark.parametrize("code, error, alarm", [
    (errno.EIO, DeviceReplyError, "READ"),
    (errno.ETIMEDOUT, DeviceTimeout, "TIMEOUT"),
    (errno.ENODEV, DeviceDisconnected, "COMM"),
    (errno.EACCES, DeviceError, "COMM"),
])
def test_errno_becomes_the_matching_device_error(tmp_path, code, error, alarm):
    path = str(tmp_path / "in_temp_input")
    with pytest.raises(error) as info:
        read_attribute(path, failing_opener(code))
    assert info.value.alarm_status == alarm
    assert errno.errorcode[code] in str(info.value)
    assert path in str(info.value)


def test_iio_device_is_found_by_name_not_by_index(tmp_path):
    make_device(tmp_path, 0, "mcp3008")
    wanted = make_device(tmp_path, 3, "dht11")
    assert find_iio_device("dht11", str(tmp_path)) == str(wanted)


def test_missing_iio_device_message_says_what_where_and_how(tmp_path):
    make_device(tmp_path, 0, "mcp3008")
    with pytest.raises(DeviceDisconnected) as info:
        find_iio_device("dht11", str(tmp_path), hint="is dtoverlay=dht11,gpiopin=4 set?")
    text = str(info.value)
    assert "'dht11'" in text and str(tmp_path) in text
    assert "iio:device0 (mcp3008)" in text
    assert "dtoverlay=dht11,gpiopin=4" in text


def test_missing_iio_root_is_reported_as_such(tmp_path):
    root = str(tmp_path / "no-iio-here")
    with pytest.raises(DeviceDisconnected, match="does not exist"):
        find_iio_device("dht11", root)


def test_read_channel_returns_processed_milli_units(tmp_path):
    make_device(tmp_path, 1, "dht11", in_temp_input=21300, in_humidityrelative_input=40200)
    device = IIODevice("dht11", str(tmp_path))
    device.open()
    assert device.read_channel("temp") == 21300.0
    assert device.read_channel("humidityrelative") == 40200.0


def test_read_channel_applies_raw_offset_and_scale_when_there_is_no_input_file(tmp_path):
    make_device(tmp_path, 0, "adc", in_voltage0_raw=512, in_voltage0_offset=-12,
                in_voltage0_scale="0.805664")
    device = IIODevice("adc", str(tmp_path))
    device.open()
    assert device.read_channel("voltage0") == pytest.approx(500 * 0.805664)


def test_garbage_in_a_channel_file_is_a_reply_error_naming_the_file(tmp_path):
    make_device(tmp_path, 0, "dht11", in_temp_input="oops")
    device = IIODevice("dht11", str(tmp_path))
    device.open()
    with pytest.raises(DeviceReplyError, match="in_temp_input.*'oops'"):
        device.read_channel("temp")


def test_vanished_device_is_a_disconnect_and_reopen_finds_its_new_index(tmp_path):
    old = make_device(tmp_path, 0, "dht11", in_temp_input=20000)
    device = IIODevice("dht11", str(tmp_path))
    device.open()
    for entry in os.listdir(old):
        os.unlink(os.path.join(old, entry))
    os.rmdir(old)
    with pytest.raises(DeviceDisconnected, match="disappeared"):
        device.read_channel("temp")
    assert not device.is_open
    make_device(tmp_path, 1, "dht11", in_temp_input=23000)
    device.open()
    assert device.directory.endswith("iio:device1")
    assert device.read_channel("temp") == 23000.0


def test_write_errors_name_the_value_and_path(tmp_path):
    with pytest.raises(DeviceTimeout, match=r"write '7' to .*sampling_frequency"):
        write_attribute(str(tmp_path / "sampling_frequency"), 7, failing_opener(errno.ETIMEDOUT))

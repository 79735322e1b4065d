"""bridges.schema: plain data -> typed models, EPICS limits, all errors at once."""
import copy

import pytest

from bridges.schema import (AlarmLimits, ConfigErrors, HEALTH_PVS, build_config, driver_settings,
                            pv_name_problem)


def base(**pv):
    pv = pv or {"type": "float", "read": "x", "scan": "1 s"}
    return {"version": 1, "ioc": {"prefix": "LAB:"},
            "devices": [{"name": "dev", "driver": "scripted", "pvs": {"SIG": pv}}]}


def errors_of(data):
    with pytest.raises(ConfigErrors) as info:
        build_config(data)
    return [(e.path, e.message + (" (%s)" % e.hint if e.hint else "")) for e in info.value.errors]


def one_error(data):
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


def test_minimal_config_builds_with_documented_defaults():
    config = build_config(base())
    (device,) = config.devices
    assert device.prefix == "dev:" and device.stale_after == 3
    assert device.retry.initial == 1.0 and device.retry.max == 60.0
    pv = device.pvs["SIG"]
    assert (pv.type, pv.record, pv.scan, pv.on_drive_limit) == ("float", "ai", 1.0, "clamp")
    assert config.ioc.async_lib == "asyncio" and config.ioc.interfaces == ()
    assert [full for _d, _p, full in config.pv_names()] == ["LAB:dev:SIG"]
    assert config.health_pv_names(device) == ["LAB:dev:" + h for h in HEALTH_PVS]


@pytest.mark.parametrize("pv_type, writable, record", [
    ("float", False, "ai"), ("float", True, "ao"), ("int", False, "longin"), ("int", True, "longout"),
    ("enum", False, "mbbi"), ("enum", True, "mbbo"), ("bool", False, "bi"), ("bool", True, "bo"),
    ("string", False, "stringin"), ("string", True, "stringout")])
def test_record_is_inferred_from_type_and_direction(pv_type, writable, record):
    pv = {"type": pv_type, "read": "x", "scan": 2}
    if pv_type == "enum":
        pv["enum"] = ["A", "B"]
    if writable:
        pv["write"] = "x"
    assert build_config(base(**pv)).devices[0].pvs["SIG"].record == record


def test_explicit_record_must_match_type_and_direction():
    path, message = one_error(base(type="float", read="x", scan=1, record="ao"))
    assert path == ("devices", 0, "pvs", "SIG", "record")
    assert "output record" in message and "use ai" in message
    assert "use longin" in one_error(base(type="int", read="x", scan=1, record="ai"))[1]


@pytest.mark.parametrize("text, seconds", [("2 s", 2.0), ("500 ms", 0.5), (3, 3.0), ("1.5", 1.5),
                                           ("1 min", 60.0)])
def test_scan_periods(text, seconds):
    assert build_config(base(type="float", read="x", scan=text)).devices[0].pvs["SIG"].scan == seconds


@pytest.mark.parametrize("bad", ["fast", "0 s", "-1", True])
def test_bad_scan_periods_are_named(bad):
    path, message = one_error(base(type="float", read="x", scan=bad))
    assert path == ("devices", 0, "pvs", "SIG", "scan")
    assert "period" in message


def test_epics_length_limits():
    data = base(type="float", read="x", scan=1, units="degreesC", desc="x" * 41)
    errors = dict(errors_of(data))
    assert "at most 7" in errors[("devices", 0, "pvs", "SIG", "units")]
    assert "at most 40" in errors[("devices", 0, "pvs", "SIG", "desc")]


def test_enum_limits():
    path, message = one_error(base(type="enum", read="x", scan=1, enum=["S%d" % i for i in range(17)]))
    assert "at most 16" in message
    path, message = one_error(base(type="enum", read="x", scan=1, enum=["A", "B" * 26]))
    assert path[-2:] == ("enum", 1) and "at most 25" in message
    assert "exactly 2" in one_error(base(type="bool", read="x", scan=1, enum=["a", "b", "c"]))[1]
    assert "needs 'enum" in one_error(base(type="enum", read="x", scan=1))[1]
    assert build_config(base(type="bool", read="x", scan=1)).devices[0].pvs["SIG"].enum == ("Off", "On")


def test_yaml_booleans_in_enum_get_a_quoting_hint():
    errors = errors_of(base(type="enum", read="x", scan=1, enum=[False, True]))
    assert [p[-2:] for p, _m in errors] == [("enum", 0), ("enum", 1)]
    assert all("quote it" in m for _p, m in errors)


def test_pv_name_rules():
    assert pv_name_problem("TEMP:SP_RBV") is None
    assert "characters EPICS does not allow" in pv_name_problem("temp sensor")
    assert "' '" in pv_name_problem("temp sensor")
    assert pv_name_problem("x" * 61).endswith("at most 60")
    data = base()
    data["devices"][0]["pvs"] = {"bad.name": {"type": "float", "read": "x", "scan": 1}}
    assert "'.'" in one_error(data)[1]


def test_full_name_longer_than_60_is_rejected_with_its_text():
    data = base()
    data["ioc"]["prefix"] = "A_VERY_LONG_FACILITY:BEAMLINE_NAME:"
    data["devices"][0]["prefix"] = "SOME_DEVICE:"
    data["devices"][0]["pvs"] = {"TEMPERATURE_READBACK_X": {"type": "float", "read": "x", "scan": 1}}
    path, message = one_error(data)
    assert path == ("devices", 0, "pvs", "TEMPERATURE_READBACK_X")
    assert "69 characters" in message


def test_health_pv_names_are_reserved():
    data = base()
    data["devices"][0]["pvs"] = {"CONNECTED": {"type": "bool", "read": "x", "scan": 1}}
    assert "health PV" in one_error(data)[1]


def test_same_pv_twice_across_devices():
    data = base()
    second = copy.deepcopy(data["devices"][0])
    second["name"] = "other"
    second["prefix"] = "dev:"
    data["devices"].append(second)
    errors = errors_of(data)
    assert errors[0][0] == ("devices", 1, "prefix") and "already used by devices[0]" in errors[0][1]
    assert errors[1][0] == ("devices", 1, "pvs", "SIG") and "defined twice" in errors[1][1]


def test_interfaces_are_ipv4_addresses():
    data = base()
    data["ioc"]["interfaces"] = ["127.0.0.1", "localhost"]
    path, message = one_error(data)
    assert path == ("ioc", "interfaces", 1) and "IPv4" in message
    data["ioc"]["interfaces"] = "127.0.0.1 127.0.0.2"
    assert build_config(data).ioc.interfaces == ("127.0.0.1", "127.0.0.2")


def test_drive_limits_rules():
    pv = {"type": "float", "write": "x", "drive_limits": [10, 0]}
    assert "below high" in one_error(base(**pv))[1]
    path, message = one_error(base(type="float", read="x", scan=1, drive_limits=[0, 1]))
    assert path[-1] == "drive_limits" and "write" in message
    path, message = one_error(base(type="string", write="x", drive_limits=[0, 1]))
    assert "numeric" in message
    assert "clamp|reject" in one_error(base(type="float", write="x", on_drive_limit="wrap"))[1]
    pv = build_config(base(type="float", write="x", drive_limits=[0, 5], on_drive_limit="reject"))
    assert pv.devices[0].pvs["SIG"].drive_limits == (0.0, 5.0)


def test_alarm_defaults_and_ordering():
    pv = build_config(base(type="float", read="x", scan=1, alarm={"high": 5, "hihi": 9}))
    alarm = pv.devices[0].pvs["SIG"].alarm
    assert alarm == AlarmLimits(high=5.0, hihi=9.0)
    assert (alarm.hsv, alarm.hhsv) == ("MINOR", "MAJOR")
    path, message = one_error(base(type="float", read="x", scan=1, alarm={"high": 9, "hihi": 5}))
    assert path[-1] == "hihi" and "below high" in message
    assert "did you mean 'MAJOR'" in one_error(base(type="float", read="x", scan=1,
                                                    alarm={"high": 1, "hsv": "MAJR"}))[1]


def test_read_needs_scan_or_init_and_init_needs_write():
    assert "needs 'scan'" in one_error(base(type="float", read="x"))[1]
    assert "init_from_device needs both" in one_error(
        base(type="float", read="x", scan=1, init_from_device=True))[1]
    assert "only applies to PVs with 'write'" in one_error(base(type="float", read="x", scan=1, autosave=True))[1]
    assert "'read', 'write' or both" in one_error(base(type="float"))[1]
    ok = build_config(base(type="float", read="x", write="x", init_from_device=True))
    assert ok.devices[0].pvs["SIG"].scan is None


def test_version_is_required_and_checked():
    data = base()
    del data["version"]
    assert "missing 'version: 1'" in one_error(data)[1]
    data["version"] = 2
    assert "unsupported schema version 2" in one_error(data)[1]


def test_all_errors_are_reported_together():
    data = base(type="float", read="x", scan="fast", units="kelvins!!", precision=-1)
    data["ioc"]["async_lib"] = "tornado"
    data["devices"][0]["stale_after"] = 0
    paths = [p for p, _m in errors_of(data)]
    assert ("ioc", "async_lib") in paths
    assert ("devices", 0, "stale_after") in paths
    for key in ("scan", "units", "precision"):
        assert ("devices", 0, "pvs", "SIG", key) in paths


def test_driver_settings_are_the_other_device_keys_minus_near_misses():
    raw = {"name": "d", "driver": "message", "pvs": {}, "transport": {"kind": "serial"},
           "timeouts": {}, "stale_afer": 2}
    assert driver_settings(raw) == {"transport": {"kind": "serial"}, "timeouts": {}}
    data = base()
    data["devices"][0]["stale_afer"] = 2
    path, message = one_error(data)
    assert path == ("devices", 0, "stale_afer") and "did you mean 'stale_after'" in message


def test_autosave_file_is_relative_to_config_dir(tmp_path):
    data = base()
    data["ioc"]["autosave"] = {"file": "save/x.sav", "period": "5 s"}
    config = build_config(data, base_dir=str(tmp_path))
    assert config.ioc.autosave.file == str(tmp_path / "save" / "x.sav")
    assert config.ioc.autosave.period == 5.0

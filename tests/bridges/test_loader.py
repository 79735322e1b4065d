"""bridges.loader: YAML -> config with file:line:path errors, macros, driver checks."""
import textwrap

import pytest

from bridges.loader import InvalidConfig, expand_macros, load_config, parse_config
from tests.bridges.helpers import scripted_registry

GOOD = """\
version: 1
ioc:
  prefix: "LAB:"
devices:
  - name: tc
    driver: scripted
    pvs:
      TEMP:
        type: float
        read: temp
        scan: 2 s
      SP:
        type: float
        write: sp
        drive_limits: [0, 100]
"""


def problems(text, **kw):
    kw.setdefault("registry", scripted_registry())
    with pytest.raises(InvalidConfig) as info:
        parse_config(text, source="configs/x.yaml", **kw)
    return info.value.lines


def edit(old, new, text=GOOD):
    assert old in text
    return text.replace(old, new, 1)


# (what a user got wrong, edited config, expected exact start of the one error line)
MISTAKES = [
    ("scan word instead of period", edit("scan: 2 s", "scan: fast"),
     "configs/x.yaml:11: devices[0].pvs.TEMP.scan: expected a period like '2 s' or '500 ms', got 'fast'"),
    ("typo in PV key", edit("        scan: 2 s", "        scna: 2 s"),
     "configs/x.yaml:11: devices[0].pvs.TEMP.scna: unknown key 'scna' (did you mean 'scan'?)"),
    ("typo in type value", edit("type: float\n        read", "type: flaot\n        read"),
     "configs/x.yaml:9: devices[0].pvs.TEMP.type: expected one of float|int|enum|string|bool, got 'flaot' "
     "(did you mean 'float'?)"),
    ("unknown driver", edit("driver: scripted", "driver: scriptd"),
     "configs/x.yaml:6: devices[0].driver: unknown driver 'scriptd' (did you mean 'scripted'?)"),
    ("units too long", edit("scan: 2 s", "scan: 2 s\n        units: millivolts"),
     "configs/x.yaml:12: devices[0].pvs.TEMP.units: at most 7 characters (EPICS limit), got 10"),
    ("drive limits reversed", edit("[0, 100]", "[100, 0]"),
     "configs/x.yaml:15: devices[0].pvs.SP.drive_limits: low must be below high, got [100, 0]"),
    ("missing type", edit("        type: float\n        read: temp", "        read: temp"),
     "configs/x.yaml:8: devices[0].pvs.TEMP: missing 'type'"),
    ("space in PV name", edit("      TEMP:", "      TEMP 1:"),
     "configs/x.yaml:8: devices[0].pvs.TEMP 1: PV name 'TEMP 1' has characters EPICS does not allow"),
    ("read-only PV without scan", edit("        scan: 2 s\n", ""),
     "configs/x.yaml:8: devices[0].pvs.TEMP: a PV with 'read' needs 'scan'"),
    ("wrong version", edit("version: 1", "version: 2"),
     "configs/x.yaml:1: version: unsupported schema version 2; this bridge reads version 1"),
    ("driver rejects its own setting", edit("driver: scripted", "driver: scripted\n    min_priod: 2"),
     "configs/x.yaml:7: devices[0].min_priod: unknown key 'min_priod'"),
    ("driver rejects a read spec", edit("read: temp", "read: {channel: temp}"),
     "configs/x.yaml:10: devices[0].pvs.TEMP.read: expected a channel name"),
    ("undefined macro", edit('"LAB:"', '"${BEAMLINE}:"'),
     "configs/x.yaml:3: ioc.prefix: macro 'BEAMLINE' is not defined"),
    ("duplicate key", edit("        scan: 2 s", "        scan: 2 s\n        scan: 5 s"),
     "configs/x.yaml:11: devices[0].pvs.TEMP.scan: key 'scan' appears twice (line 11 and 12)"),
    ("unquoted OFF in enum", edit("      SP:", "      MODE:\n        type: enum\n        enum: [OFF, ON]\n"
                                  "        write: mode\n      SP:"),
     "configs/x.yaml:14: devices[0].pvs.MODE.enum[0]: state 0 is the boolean False"),
]


@pytest.mark.parametrize("what, text, expected", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_realistic_mistake_is_reported_with_file_line_and_path(what, text, expected, monkeypatch):
    monkeypatch.delenv("BEAMLINE", raising=False)
    lines = problems(text)
    assert lines[0].startswith(expected), lines
    if what != "unquoted OFF in enum":   # that one reports each boolean state
        assert len(lines) == 1, lines


def test_good_config_loads():
    config = parse_config(GOOD, registry=scripted_registry())
    assert [full for _d, _p, full in config.pv_names()] == ["LAB:tc:TEMP", "LAB:tc:SP"]


def test_all_errors_in_a_file_are_reported_in_line_order():
    text = edit("scan: 2 s", "scan: fast")
    text = edit("driver: scripted", "driver: scripted\n    stale_afer: 2", text)
    text = edit("[0, 100]", "[0, 100]\n        on_drive_limit: wrap", text)
    text = edit('"LAB:"', '"LAB:"\n  async_lib: tornado', text)
    lines = problems(text)
    assert [line.split(":")[1] for line in lines] == ["4", "8", "13", "18"]
    assert "async_lib" in lines[0] and "stale_after" in lines[1]
    assert "scan" in lines[2] and "on_drive_limit" in lines[3]


def test_driver_errors_are_collected_alongside_schema_errors():
    text = edit("scan: 2 s", "scan: fast")
    text = edit("write: sp", "write: [sp]", text)
    lines = problems(text)
    assert len(lines) == 2
    assert "pvs.TEMP.scan" in lines[0] and "pvs.SP.write: expected a channel name" in lines[1]


def test_macros_expand_with_defaults_and_are_retyped(monkeypatch):
    monkeypatch.setenv("BL", "BL7")
    monkeypatch.delenv("PERIOD", raising=False)
    text = edit('"LAB:"', '"${BL}:$(AREA=HUTCH):"')
    text = edit("scan: 2 s", "scan: ${PERIOD=3}", text)
    config = parse_config(text, registry=scripted_registry())
    assert config.ioc.prefix == "BL7:HUTCH:"
    assert config.devices[0].pvs["TEMP"].scan == 3.0
    config = parse_config(text, registry=scripted_registry(), macros={"PERIOD": "500 ms", "AREA": "A"})
    assert config.ioc.prefix == "BL7:A:"
    assert config.devices[0].pvs["TEMP"].scan == 0.5


def test_quoted_macro_stays_a_string_and_dollar_escapes():
    assert expand_macros("$${X} costs $$5", {"X": "1"}) == "${X} costs $5"
    quoted = edit("scan: 2 s", 'scan: 2 s\n        desc: "${D=123}"')
    assert parse_config(quoted, registry=scripted_registry()).devices[0].pvs["TEMP"].desc == "123"
    plain = edit("scan: 2 s", "scan: 2 s\n        desc: ${D=123}")
    assert problems(plain) == ["configs/x.yaml:12: devices[0].pvs.TEMP.desc: expected a string, got 123"]


def test_macros_are_not_expanded_in_keys(monkeypatch):
    monkeypatch.setenv("K", "scan")
    lines = problems(edit("scan: 2 s", "${K}: 2 s"))
    assert any("unknown key '${K}'" in line for line in lines)


def test_anchors_and_merge_keys_share_settings():
    text = textwrap.dedent("""\
        version: 1
        ioc: {prefix: "LAB:"}
        x-common: &fast {type: float, scan: 500 ms}   # x-... keys only hold anchors
        devices:
          - name: tc
            driver: scripted
            pvs:
              A: {<<: *fast, read: a}
              B: {<<: *fast, read: b, scan: 2 s}
        """)
    pvs = parse_config(text, registry=scripted_registry()).devices[0].pvs
    assert (pvs["A"].scan, pvs["A"].read, pvs["B"].scan, pvs["B"].read) == (0.5, "a", 2.0, "b")
    lines = problems(text.replace("x-common", "common"))
    assert lines == ["configs/x.yaml:3: common: unknown key 'common' (allowed keys: devices, ioc, version)"]


def test_yaml_syntax_error_names_the_line():
    lines = problems(edit("    pvs:", "    pvs: [unclosed"))
    assert len(lines) == 1 and lines[0].startswith("configs/x.yaml:") and "not valid YAML" in lines[0]


def test_empty_file():
    assert "empty" in problems("")[0]


def test_overrides_are_validated_like_the_file():
    config = parse_config(GOOD, registry=scripted_registry(), overrides={("ioc", "prefix"): "TEST:"})
    assert config.ioc.prefix == "TEST:"
    lines = problems(GOOD, overrides={("ioc", "prefix"): "bad prefix:"})
    assert "ioc.prefix" in lines[0] and "does not allow" in lines[0]


def test_load_config_reads_files_and_reports_missing_ones(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(GOOD)
    assert load_config(str(path), registry=scripted_registry()).source == str(path)
    with pytest.raises(InvalidConfig) as info:
        load_config(str(tmp_path / "nope.yaml"))
    assert info.value.lines == ["%s: cannot read config: No such file or directory" % (tmp_path / "nope.yaml")]


def test_real_message_driver_errors_map_to_lines():
    pytest.importorskip("devices.drivers.message")
    text = textwrap.dedent("""\
        version: 1
        ioc: {prefix: "LAB:"}
        devices:
          - name: tc
            driver: message
            transport: {kind: serial, port: /dev/ttyUSB0, baudrat: 9600}
            pvs:
              TEMP:
                type: float
                scan: 1 s
                read:
                  query: "TEMP?"
                  fromat: "%f"
        """)
    lines = problems(text, registry=None)
    assert any(line.startswith("configs/x.yaml:6: devices[0].transport.baudrat:")
               and "baudrate" in line for line in lines), lines

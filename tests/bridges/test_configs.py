"""Every shipped config passes --check, in-process and as ``python -m bridges.cli``; CLI errors."""
import glob
import os
import subprocess
import sys

import pytest

from bridges.cli import main
from bridges.loader import load_config
from bridges.schema import HEALTH_PVS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
EXPECTED = {"dht22.yaml", "multimeter.yaml", "temperature_controller.yaml", "gpio_demo.yaml"}


@pytest.fixture(autouse=True)
def clean_macros(monkeypatch):
    """The shipped files must work with none of their macros set."""
    for name in ("IOC_HOST", "P", "TC_PORT", "DMM_RESOURCE", "AUTOSAVE_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_the_promised_configs_exist():
    assert EXPECTED <= {os.path.basename(p) for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("sim", [False, True], ids=["hardware", "sim"])
def test_check_passes_and_lists_every_pv(path, sim, capsys):
    argv = ["--check", path] + (["--sim"] if sim else [])
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    config = load_config(path, sim=sim)
    for _device, pv, full in config.pv_names():
        line = next(l for l in out.splitlines() if l.split() and l.split()[0] == full)
        assert pv.type in line.split() and pv.record in line.split()
        if pv.units:
            assert pv.units in line.split()


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_check_as_a_subprocess(path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "bridges.cli", "--check", path],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout.splitlines()[0]
    result = subprocess.run([sys.executable, "-m", "bridges", "--check", path],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout.splitlines()[0]


def test_list_pvs_prints_user_and_health_pvs(capsys):
    path = os.path.join(ROOT, "configs", "temperature_controller.yaml")
    assert main(["--list-pvs", "--prefix", "TEST:", path]) == 0
    names = capsys.readouterr().out.split()
    assert "TEST:TC1:SP" in names and "TEST:TC1:TEMP" in names
    assert all("TEST:TC1:" + h in names for h in HEALTH_PVS)
    assert len(names) == len(set(names))


def test_bad_config_exits_2_with_one_line_per_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(os.path.join(ROOT, "configs", "dht22.yaml")).read()
                   .replace("scan: 2 s", "scan: fast", 1)
                   .replace("units: degC", "unit: degC", 1))
    assert main(["--check", str(bad)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(str(bad) + ":") for line in lines)
    assert any("TEMP.scan: expected a period" in line for line in lines)
    assert any("TEMP.unit: unknown key 'unit' (did you mean 'units'?)" in line for line in lines)
    assert out == ""


def test_async_lib_override_is_checked(capsys):
    path = os.path.join(ROOT, "configs", "dht22.yaml")
    with pytest.raises(SystemExit):
        main(["--check", "--async-lib", "gevent", path])
    assert "invalid choice" in capsys.readouterr().err


def test_missing_hardware_gives_one_line_naming_what_and_sim(capsys):
    if os.path.isdir("/sys/bus/iio/devices") and any(
            open(os.path.join("/sys/bus/iio/devices", d, "name")).read().strip() == "dht11"
            for d in os.listdir("/sys/bus/iio/devices")
            if os.path.exists(os.path.join("/sys/bus/iio/devices", d, "name"))):
        pytest.skip("this machine has a DHT sensor")
    path = os.path.join(ROOT, "configs", "dht22.yaml")
    assert main([path]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "dht11" in lines[0] and "--sim" in lines[0]

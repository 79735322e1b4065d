"""The sans-I/O core stays sans I/O: no socket, asyncio, threading or select.

Checked two ways: the import statements of every caproto/_*.py (ast), and
what ``import caproto`` actually loads in a fresh interpreter started with
-S (no site hooks, no site-packages, so numpy -- optional, and itself a
threading user -- is absent and only the core's own imports count).
"""
import ast
import os
import pathlib
import subprocess
import sys

import pytest

BANNED = {"socket", "asyncio", "threading", "select"}
PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "caproto"
# Underscore modules that are deliberately outside the core, and why.
NOT_CORE = {
    "_netifaces.py": "enumerates interfaces with ioctl on a socket",
}
CORE_MODULES = sorted(p for p in PACKAGE.glob("_*.py") if p.name not in NOT_CORE)


def _imported_top_level_names(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def test_core_modules_exist():
    names = {path.name for path in CORE_MODULES}
    assert {"_state.py", "_circuit.py", "_broadcaster.py", "_env.py",
            "_commands.py"} <= names
    assert set(NOT_CORE) <= {path.name for path in PACKAGE.glob("_*.py")}


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path):
    offending = [f"{path.name}:{line} imports {name}"
                 for line, name in _imported_top_level_names(path)
                 if name in BANNED]
    assert not offending, offending


def test_importing_caproto_loads_no_io_library():
    code = ("import sys, caproto; "
            f"print(sorted(m for m in {sorted(BANNED)!r} if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    result = subprocess.run([sys.executable, "-S", "-c", code], env=env,
                            capture_output=True, text=True, timeout=25)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

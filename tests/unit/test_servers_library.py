"""tests/servers is a library the demo and bench/ use without pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers._process import ServerUnavailable, require_binary

ROOT = Path(__file__).resolve().parents[2]


def test_server_modules_import_without_pytest() -> None:
    """Every module of the package imports with pytest made unimportable."""
    code = "\n".join([
        "import importlib, pkgutil, sys",
        "sys.modules['pytest'] = sys.modules['_pytest'] = None  # import pytest now fails",
        "import tests.servers as package",
        "for module in pkgutil.iter_modules(package.__path__):",
        "    importlib.import_module('tests.servers.' + module.name)",
        "print(len(list(pkgutil.iter_modules(package.__path__))))",
    ])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert int(out.stdout) == len(list((ROOT / "tests" / "servers").glob("*.py"))) - 1


def test_a_missing_binary_names_the_package_to_install() -> None:
    with pytest.raises(ServerUnavailable) as info:
        require_binary("wb-no-such-server", "wb-no-such-package")
    assert "apt-get install wb-no-such-package" in str(info.value)

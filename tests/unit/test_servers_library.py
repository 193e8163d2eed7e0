"""tests/servers is a library the demo and bench/ use without pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers._process import ServerUnavailable, require_binary

ROOT = Path(__file__).resolve().parents[2]


def test_server_modules_import_without_pytest() -> None:
    code = (
        "import sys; import tests.servers.slapd, tests.servers.samba, tests.servers.relay; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_a_missing_binary_names_the_package_to_install() -> None:
    with pytest.raises(ServerUnavailable) as info:
        require_binary("wb-no-such-server", "wb-no-such-package")
    assert "apt-get install wb-no-such-package" in str(info.value)

"""The layers import downwards only: wire <- connectors <- agent; wire <- cloud.

Read from the source with ast (not by importing), so a lazy or conditional import
inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# package -> the top-level packages of ours it may import
ALLOWED = {
    "wire": {"wire"},
    "connectors": {"wire", "connectors"},
    "agent": {"wire", "connectors", "agent"},
    "cloud": {"wire", "cloud"},
}
OURS = set(ALLOWED) | {"tests", "bench", "scripts"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) - ALLOWED[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imports(path) - ALLOWED[package]
    }
    assert offenders == {}


def test_importing_a_status_loads_no_cryptography() -> None:
    code = (
        "import sys; import wire.status; "
        "print(any(m.split('.')[0] == 'cryptography' for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


def test_connectors_import_no_ldap3_above_them() -> None:
    """Only connectors/ speaks ldap3; the agent and cloud see our own exceptions."""
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("agent", "cloud", "wire")
        for path in sorted((ROOT / package).rglob("*.py"))
        if "ldap3" in {
            n.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            for n in (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
        }
    ]
    assert offenders == []



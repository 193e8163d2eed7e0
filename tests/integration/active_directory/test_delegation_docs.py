"""docs/operations.md's Samba delegation commands, run exactly as written (only the
five variables at the top are set to this DC) against a real Samba AD DC: before
them the agent's `check` says the bind account lacks the rights, after them it has
them and a reset goes through."""

from __future__ import annotations

import re
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.active_directory import ActiveDirectoryConnector
from connectors.base import LookupKind, UserQuery
from tests.servers.base import BindOutcome, unique_login
from tests.servers.samba import DOMAIN, DOMAIN_DN, UAC_NORMAL, SambaEnv

pytestmark = pytest.mark.samba

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
VARIABLES = ("DC", "DOMAIN", "OU", "SVC", "ADMIN")


def samba_block() -> list[str]:
    """The ```sh block of the Samba AD delegation section."""
    text = OPERATIONS.read_text(encoding="utf-8")
    match = re.search(r"```sh\n(DC=.*?)```", text, re.S)
    assert match, "no Samba delegation block in docs/operations.md"
    return match.group(1).splitlines()


def test_doc_block_sets_only_the_variables_first() -> None:
    lines = samba_block()
    assert [line.split("=", 1)[0] for line in lines[: len(VARIABLES)]] == list(VARIABLES)
    assert all("00299570-246d-11d0-a768-00aa006e0529" in line or "CR;" not in line
               for line in lines)


def test_samba_delegation_commands_as_documented(samba_env: SambaEnv, tmp_path: Path) -> None:
    ou = f"OU=docs{unique_login('o')},{DOMAIN_DN}"
    svc = unique_login("svc")
    svc_password = "Svc-Docs-Pass-1"
    conn = samba_env.admin()
    assert conn.add(ou, ["top", "organizationalUnit"]), conn.result
    svc_dn = f"CN={svc},CN=Users,{DOMAIN_DN}"
    assert conn.add(svc_dn, ["top", "person", "organizationalPerson", "user"], {
        "sAMAccountName": svc,
        "userAccountControl": str(UAC_NORMAL),
        "unicodePwd": f'"{svc_password}"'.encode("utf-16-le"),
    }), conn.result
    login = unique_login("d")
    user_dn = f"CN={login},{ou}"
    assert conn.add(user_dn, ["top", "person", "organizationalPerson", "user"], {
        "sAMAccountName": login,
        "userAccountControl": str(UAC_NORMAL),
        "unicodePwd": '"Initial-Pass-1"'.encode("utf-16-le"),
    }), conn.result
    settings = samba_env.settings.model_copy(update={
        "bind_dn": svc_dn, "bind_password": SecretStr(svc_password), "base_dns": [ou],
    })

    def rights_ok() -> bool:
        with closing(ActiveDirectoryConnector(settings)) as connector:
            report = connector.check()
        return next(i for i in report.items if i.name.startswith("rights")).ok

    assert not rights_ok()

    ours = {
        "DC": f"ldap://{samba_env.ip}",
        "DOMAIN": f'"{DOMAIN_DN}"',
        "OU": f'"{ou}"',
        "SVC": svc,
        "ADMIN": f"'{DOMAIN}\\Administrator%{samba_env._admin_password}'",
    }
    lines = samba_block()
    script = [f"{name}={ours[name]}" for name in VARIABLES] + lines[len(VARIABLES):]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    assert rights_ok()
    with closing(ActiveDirectoryConnector(settings)) as connector:
        user = connector.find_user(UserQuery(LookupKind.LOGIN, login))
        connector.reset_password(user, SecretStr("Delegated-Pass-2"))
    assert samba_env.bind(login, "Delegated-Pass-2") is BindOutcome.OK

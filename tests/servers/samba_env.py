"""The Samba AD DC as tests see it: the domain's constants and `SambaEnv`, the
`DirectoryEnv` that creates users and groups over LDAPS as Administrator.

tests/servers/samba.py provisions and runs the DC; this module only talks to it.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from connectors._ldap import ad_bind_data
from connectors.active_directory import ActiveDirectoryConnector
from connectors.base import DirectoryConnector, DirectorySettings
from tests.servers.base import BindOutcome

REALM = "WBTEST.LOCAL"
DOMAIN = "WBTEST"
DOMAIN_DN = "DC=wbtest,DC=local"
UPN_SUFFIX = REALM.lower()
PROVISION_DATA = Path("/usr/share/samba/setup")

# Schema GUIDs for the delegation ACEs.
USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"
RESET_PASSWORD = "00299570-246d-11d0-a768-00aa006e0529"
LOCKOUT_TIME = "28630ebf-41d5-11d1-a9c1-0000f80367c1"
PWD_LAST_SET = "bf967a0a-0de6-11d0-a285-00aa003049e2"

# The shared default policy (tests/servers/base.py). Intervals are negative 100-ns
# units; the int64 minimum means "never".
_MINUTE = 60 * 10**7
NEVER = str(-(2**63))
DOMAIN_POLICY = {
    "minPwdLength": "8",
    "pwdProperties": "1",  # DOMAIN_PASSWORD_COMPLEX
    "pwdHistoryLength": "3",
    "minPwdAge": "0",
    "maxPwdAge": NEVER,
    "lockoutThreshold": "3",
    "lockoutDuration": str(-30 * _MINUTE),
    "lockOutObservationWindow": str(-30 * _MINUTE),
}
# Users in group "young": the same, with a minimum age of one day.
YOUNG_PSO = {
    "msDS-PasswordSettingsPrecedence": "10",
    "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
    "msDS-PasswordComplexityEnabled": "TRUE",
    "msDS-MinimumPasswordLength": "8",
    "msDS-PasswordHistoryLength": "3",
    "msDS-MinimumPasswordAge": str(-24 * 60 * _MINUTE),
    "msDS-MaximumPasswordAge": NEVER,
    "msDS-LockoutThreshold": "3",
    "msDS-LockoutDuration": str(-30 * _MINUTE),
    "msDS-LockoutObservationWindow": str(-30 * _MINUTE),
}

# What `SambaEnv.add_pso` gives a test's own PSO unless the test says otherwise: the
# domain's rules, no lockout, precedence 5 (before "young", 10).
TEST_PSO = {
    **YOUNG_PSO,
    "msDS-PasswordSettingsPrecedence": "5",
    "msDS-MinimumPasswordAge": "0",
    "msDS-LockoutThreshold": "0",
}

UAC_NORMAL = 0x200
UAC_DISABLED = 0x2
GLOBAL_SECURITY_GROUP = -2147483646


def _password() -> str:
    """Meets the domain policy (length, 3-of-5) and contains no account name."""
    return f"Wb-{secrets.token_hex(6)}-Z9"


def _unbind(conn: ldap3.Connection) -> None:
    with contextlib.suppress(lexc.LDAPException, OSError):  # already closed
        conn.unbind()


class SambaEnv:
    """`DirectoryEnv` for Samba AD. Users are created as Administrator over LDAPS."""

    kind = "active_directory"

    def __init__(self, ip: str, ca_file: Path, passwords: dict[str, str]) -> None:
        self.ip = ip
        self.realm = REALM
        self.domain_dn = DOMAIN_DN
        self.base_dn = f"OU=People,{DOMAIN_DN}"
        self.outside_base_dn = f"OU=Outside,{DOMAIN_DN}"
        self.young_group_dn = f"CN=young,CN=Users,{DOMAIN_DN}"
        self.pso_dn = f"CN=young-pso,CN=Password Settings Container,CN=System,{DOMAIN_DN}"
        self.ca_file = ca_file
        self.url = f"ldaps://{ip}:636"
        self.plain_url = f"ldap://{ip}:389"
        self._admin_password = passwords["Administrator"]
        self.settings = DirectorySettings(
            name="samba",
            kind="active_directory",
            urls=[self.url],
            ca_file=ca_file,
            bind_dn=f"CN=svc-writeback,CN=Users,{DOMAIN_DN}",
            bind_password=SecretStr(passwords["svc-writeback"]),
            base_dns=[self.base_dn],
        )
        self.limited_settings = self.settings.model_copy(
            update={
                "bind_dn": f"CN=svc-limited,CN=Users,{DOMAIN_DN}",
                "bind_password": SecretStr(passwords["svc-limited"]),
            }
        )
        self._admin_conn: ldap3.Connection | None = None
        self._connectors: list[DirectoryConnector] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def _connection(self, user: str, password: str) -> ldap3.Connection:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                        ca_certs_file=str(self.ca_file))
        server = ldap3.Server(self.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=5)
        return ldap3.Connection(server, user=user, password=password, raise_exceptions=True,
                                receive_timeout=10, auto_referrals=False)

    def admin(self) -> ldap3.Connection:
        """One Administrator connection for the session, reopened if it died."""
        with self._lock:
            conn = self._admin_conn
            if conn is None or conn.closed or not conn.bound:
                conn = self._connection(f"Administrator@{UPN_SUFFIX}", self._admin_password)
                try:
                    conn.bind()
                except BaseException:
                    _unbind(conn)
                    raise
                self._admin_conn = conn
            return conn

    def close(self) -> None:
        for conn in self._connectors:
            conn.close()
        self._connectors.clear()
        if self._admin_conn is not None:
            _unbind(self._admin_conn)
            self._admin_conn = None

    def read(self, dn: str, attributes: list[str]) -> dict[str, Any]:
        """Attributes of one entry as Administrator (raw bytes under 'raw')."""
        conn = self.admin()
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
        entry = conn.response[0]
        return {**entry["attributes"], "raw": entry["raw_attributes"]}

    def dn_of(self, login: str) -> str:
        conn = self.admin()
        conn.search(DOMAIN_DN, f"(sAMAccountName={escape_filter_chars(login)})",
                    attributes=["objectGUID"])
        entries = [r for r in conn.response if r["type"] == "searchResEntry"]
        assert len(entries) == 1, f"{login}: {len(entries)} entries"
        return str(entries[0]["dn"])

    # ------------------------------------------------------------------ DirectoryEnv

    def connector(self, **overrides: Any) -> DirectoryConnector:
        """Connectors keep their connection open; the env closes them all at the end."""
        conn = ActiveDirectoryConnector(self.settings.model_copy(update=overrides))
        self._connectors.append(conn)
        return conn

    def create_user(
        self,
        login: str,
        password: str,
        *,
        given_name: str | None = None,
        surname: str | None = None,
        display_name: str | None = None,
        mail: str | None = None,
        disabled: bool = False,
        young: bool = False,
        protected: bool = False,
        outside_base: bool = False,
    ) -> str:
        dn = f"CN={login},{self.outside_base_dn if outside_base else self.base_dn}"
        attrs: dict[str, Any] = {
            "sAMAccountName": login,
            "userPrincipalName": f"{login}@{UPN_SUFFIX}",
            "unicodePwd": f'"{password}"'.encode("utf-16-le"),
            "userAccountControl": str(UAC_NORMAL | (UAC_DISABLED if disabled else 0)),
        }
        optional = {"givenName": given_name, "sn": surname, "displayName": display_name,
                    "mail": mail, "adminCount": "1" if protected else None}
        attrs.update({k: v for k, v in optional.items() if v is not None})
        conn = self.admin()
        conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs)
        if young:
            conn.modify(self.young_group_dn, {"member": [(ldap3.MODIFY_ADD, [dn])]})
        return dn

    def bind(self, login: str, password: str) -> BindOutcome:
        conn = self._connection(f"{login}@{UPN_SUFFIX}", password)
        try:
            conn.bind()
        except lexc.LDAPInvalidCredentialsResult as exc:
            data = ad_bind_data(getattr(exc, "message", None))
            return {
                0x52E: BindOutcome.INVALID_CREDENTIALS,
                0x773: BindOutcome.MUST_CHANGE,
                0x775: BindOutcome.LOCKED,
                0x533: BindOutcome.DISABLED,
            }.get(data or 0, BindOutcome.OTHER)
        except lexc.LDAPOperationResult:
            return BindOutcome.OTHER
        finally:
            _unbind(conn)
        return BindOutcome.OK

    def lock(self, login: str) -> None:
        for _ in range(6):  # threshold is 3; a few spare attempts
            if self.bind(login, "Not-The-Password-1") == BindOutcome.LOCKED:
                break
        computed = self.read(self.dn_of(login), ["msDS-User-Account-Control-Computed"])
        value = int(computed["msDS-User-Account-Control-Computed"][0])
        assert value & 0x10, f"{login} is not locked (computed UAC {value:#x})"

    def add_pso(self, name: str, applies_to: str, settings: dict[str, str] | None = None) -> str:
        """A password settings object applied to `applies_to` (a user or group DN):
        TEST_PSO with `settings` over it. Returns its DN."""
        dn = f"CN={name},CN=Password Settings Container,CN=System,{DOMAIN_DN}"
        self.admin().add(dn, ["top", "msDS-PasswordSettings"],
                         {**TEST_PSO, **(settings or {}), "msDS-PSOAppliesTo": applies_to})
        return dn

    def create_group(self, name: str, members: list[str]) -> str:
        dn = f"CN={name},{self.base_dn}"
        attrs: dict[str, Any] = {"sAMAccountName": name, "groupType": str(GLOBAL_SECURITY_GROUP)}
        if members:
            attrs["member"] = members
        self.admin().add(dn, ["top", "group"], attrs)
        return dn

    def add_member(self, group_dn: str, member_dn: str) -> None:
        self.admin().modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})

    def user_id(self, login: str) -> str:
        raw = self.read(self.dn_of(login), ["objectGUID"])["raw"]["objectGUID"][0]
        return str(uuid.UUID(bytes_le=raw))


# ---------------------------------------------------------------------- the server

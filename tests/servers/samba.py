"""A throwaway Samba AD DC for the session: the `samba_env` fixture.

Samba listens on fixed ports (389/636/88/464/3268/3269), so each instance gets its own
loopback address (127.0.0.N, added to `lo` and removed at exit) instead of a free port.
Everything that can be configured before the server starts is done offline against
`private/sam.ldb` with samba-tool (about 0.3 s per call; no network, no credentials);
users and groups for the tests are then created over LDAPS as Administrator, which
costs milliseconds per user instead of a samba-tool process each.

What the domain looks like (see tests/servers/base.py for the shared default policy):

- domain policy: min length 8, complexity on, history 3, min age 0, max age never,
  lockout after 3 bad passwords for 30 min (reset counter after 30 min);
- PSO `young-pso` (min age 1 day, otherwise the domain values) applied to group `young`;
- OU=People (the connector's base DN) and OU=Outside (outside it);
- `svc-writeback`: a plain Domain User with DELEGATED rights on user objects under
  OU=People only: the Reset Password extended right and write lockoutTime / pwdLastSet,
  plus read on the Password Settings Container (Windows and Samba let only admins read
  PSOs by default, but the connector needs their values);
- `svc-limited`: may read (also the PSOs) but has no delegated rights.

`old password allowed period = 0`: Samba otherwise keeps accepting the previous
password for simple binds for 60 minutes after a change (NTLM-style grace), which would
make "the old password no longer works" untestable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from connectors._ad_rights import sid_to_str
from connectors._ldap import ad_bind_data
from connectors.active_directory import ActiveDirectoryConnector
from connectors.base import DirectoryConnector, DirectorySettings
from tests.servers._process import (
    ServerUnavailable,
    port_open,
    require_binary,
    stop_process,
    wait_until,
)
from tests.servers.base import BindOutcome
from tests.servers.certs import make_server_cert

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

UAC_NORMAL = 0x200
UAC_DISABLED = 0x2
GLOBAL_SECURITY_GROUP = -2147483646

_started: list[str] = []  # startup timings for the terminal summary


def _password() -> str:
    """Meets the domain policy (length, 3-of-5) and contains no account name."""
    return f"Wb-{secrets.token_hex(6)}-Z9"


def _run(args: list[str], what: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{output}")
    return result.stdout


def _claim_loopback_address() -> str:
    """Add the first free 127.0.0.N (10..50) to lo. `ip addr add` is atomic: "File
    exists" / "already assigned" means another instance (or session) has it: next."""
    ip_bin = require_binary("ip", "iproute2")
    for n in range(10, 51):
        ip = f"127.0.0.{n}"
        result = subprocess.run(
            [ip_bin, "addr", "add", f"{ip}/32", "dev", "lo"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode == 0:
            if port_open(ip, 389) or port_open(ip, 636):  # something bound to 127/8 wildcard
                _release_loopback_address(ip)
                continue
            return ip
        if "File exists" in result.stderr or "already assigned" in result.stderr:
            continue
        raise SambaUnavailable(f"cannot add a loopback address for Samba (needs root/CAP_NET_ADMIN): "
                      f"{result.stderr.strip()}")
    raise RuntimeError("no free loopback address 127.0.0.10-50 for Samba")


def _release_loopback_address(ip: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], capture_output=True, check=False)


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


class _SambaProcess:
    """Provision, configure offline, start and stop one Samba AD DC."""

    def __init__(self, root: Path, ip: str) -> None:
        self.root = root
        self.ip = ip
        self.target = root / "dc"
        self.conf = self.target / "etc" / "smb.conf"
        self.log = self.target / "samba.log"
        accounts = ("Administrator", "svc-writeback", "svc-limited")
        self.passwords = {name: _password() for name in accounts}
        self.proc: subprocess.Popen[bytes] | None = None
        self.also_delegate: tuple[str, ...] = ()  # containers besides OU=People

    def _tool(self, *args: str) -> str:
        return _run(["samba-tool", *args, "-H", str(self.target / "private" / "sam.ldb")],
                    f"samba-tool {args[0]} {args[1] if len(args) > 1 else ''}")

    def provision(self, cert_file: Path, key_file: Path, ca_file: Path) -> None:
        options = {
            "interfaces": self.ip,
            "bind interfaces only": "yes",
            "netbios name": f"WBDC{self.ip.rsplit('.', 1)[1]}",
            "server services": "ldap kdc",
            "pid directory": str(self.target / "run"),
            "log file": str(self.log),
            "tls enabled": "yes",
            "tls keyfile": str(key_file),
            "tls certfile": str(cert_file),
            "tls cafile": str(ca_file),
        }
        _run(
            [
                "samba-tool", "domain", "provision", f"--targetdir={self.target}",
                f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc",
                "--dns-backend=NONE", f"--adminpass={self.passwords['Administrator']}",
                f"--host-ip={self.ip}",
                *(f"--option={k}={v}" for k, v in options.items()),
            ],
            "samba-tool domain provision",
        )
        (self.target / "run").mkdir(exist_ok=True)
        # provision does not carry every --option into smb.conf (this one is dropped)
        text = self.conf.read_text()
        extra = "\told password allowed period = 0\n"
        self.conf.write_text(text.replace("[global]\n", "[global]\n" + extra, 1))

    def configure(self, env: SambaEnv) -> None:
        """Policy, PSO, OUs and the two service accounts over LDAPS as Administrator
        (milliseconds each, where a samba-tool process costs ~0.3 s); only the ACEs go
        through samba-tool (offline on sam.ldb), because Samba's LDAP server takes an
        nTSecurityDescriptor in binary only and samba-tool speaks SDDL."""
        conn = env.admin()
        conn.modify(DOMAIN_DN, {name: [(ldap3.MODIFY_REPLACE, [value])]
                                for name, value in DOMAIN_POLICY.items()})
        for ou in (env.base_dn, env.outside_base_dn):
            conn.add(ou, ["top", "organizationalUnit"])
        conn.add(env.young_group_dn, ["top", "group"],
                 {"sAMAccountName": "young", "groupType": str(GLOBAL_SECURITY_GROUP)})
        conn.add(env.pso_dn, ["top", "msDS-PasswordSettings"],
                 {**YOUNG_PSO, "msDS-PSOAppliesTo": env.young_group_dn})
        sids = {}
        for name in ("svc-writeback", "svc-limited"):
            dn = f"CN={name},CN=Users,{DOMAIN_DN}"
            conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
                "sAMAccountName": name,
                "userAccountControl": str(UAC_NORMAL),
                "unicodePwd": f'"{self.passwords[name]}"'.encode("utf-16-le"),
            })
            sids[name] = sid_to_str(env.read(dn, ["objectSid"])["raw"]["objectSid"][0])
        svc = sids["svc-writeback"]
        # CIIO + inherited object type user: applies to user objects below the OU only.
        aces = "".join(f"(OA;CIIO;{right};{guid};{USER_CLASS};{svc})" for right, guid in
                       (("CR", RESET_PASSWORD), ("WP", LOCKOUT_TIME), ("WP", PWD_LAST_SET)))
        for dn in (env.base_dn, *self.also_delegate):
            self._tool("dsacl", "set", f"--objectdn={dn}", f"--sddl={aces}")
        readers = "".join(f"(A;CI;RPLCLORC;;;{sid})" for sid in sids.values())
        self._tool("dsacl", "set",
                   f"--objectdn=CN=Password Settings Container,CN=System,{DOMAIN_DN}",
                   f"--sddl={readers}")

    def start(self, env: SambaEnv) -> None:
        out = (self.target / "samba.out").open("wb")
        self.proc = subprocess.Popen(
            ["samba", "-F", "-s", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()

        def ready() -> bool:
            if not port_open(self.ip, 636):
                return False
            try:
                env.admin()
            except (lexc.LDAPException, OSError):
                env.close()
                return False
            return True

        wait_until(ready, timeout=60, what="samba AD DC", proc=self.proc, log=self.log)

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group we created, samba's workers
        stop_process(self.proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


class SambaUnavailable(ServerUnavailable):
    """This machine cannot run the throwaway DC; the message says what to install."""


def _preflight() -> None:
    for binary, package in (("samba", "samba-ad-dc"), ("samba-tool", "samba-common-bin")):
        if not any((Path(d) / binary).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            raise SambaUnavailable(f"{binary} not found: install the Debian package {package!r}")
    if not PROVISION_DATA.is_dir():
        raise SambaUnavailable("Samba provisioning data missing: install the Debian package "
                               "'samba-ad-provision' (apt-get install samba-ad-provision)")
    if os.geteuid() != 0:
        raise SambaUnavailable("the throwaway Samba AD DC needs root (loopback address, ports 389/636)")


@contextlib.contextmanager
def running_samba(root: Path, *, also_delegate: tuple[str, ...] = ()) -> Iterator[SambaEnv]:
    """A provisioned, configured Samba AD DC on its own loopback address, stopped and
    cleaned up on exit. Used by the `samba_env` fixture and by scripts/demo.py.
    `also_delegate`: containers (besides OU=People) where svc-writeback gets the
    reset rights, e.g. CN=Users for a demo whose scope is the whole domain."""
    _preflight()
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    ip = _claim_loopback_address()
    process = _SambaProcess(root, ip)
    process.also_delegate = also_delegate
    env: SambaEnv | None = None
    try:
        cert = make_server_cert(root / "tls", [ip])
        process.provision(cert.cert_file, cert.key_file, cert.ca_file)
        provisioned = time.monotonic()
        env = SambaEnv(ip, cert.ca_file, process.passwords)
        process.start(env)
        running = time.monotonic()
        process.configure(env)
        now = time.monotonic()
        _started.append(
            f"samba AD DC on {ip} ready in {now - started:.1f}s (provision "
            f"{provisioned - started:.1f}s, start {running - provisioned:.1f}s, "
            f"configure {now - running:.1f}s)"
        )
        yield env
    finally:
        if env is not None:
            env.close()
        process.stop()
        _release_loopback_address(ip)


def startup_timings() -> list[str]:
    """One line per DC started by this process (shown in pytest's terminal summary)."""
    return list(_started)

"""A throwaway slapd (OpenLDAP 2.5, back_mdb, ppolicy, TLS) for the integration tests.

One process per test session, in a temp dir, configured from a slapd.conf template
(read-only `-f` config: nothing needs to change cn=config at run time, and it is
the shortest readable form). Data is loaded offline with slapadd before the server
starts, so startup is a single fork-exec plus a port poll.

What the tree looks like, and why:

    dc=wb,dc=test
      ou=people     users; the only branch in settings.base_dns
      ou=outside    users outside the agent's scope
      ou=groups     groupOfNames; cn=protected marks protected accounts
      ou=policies   pwdPolicy entries (default, young, services)
      ou=services   the two service accounts
      ou=undelegated  an OU where the service account has no password rights

The full service account has `write` (not `manage`) on userPassword, pwdReset and
pwdAccountLockedTime of the users, so ppolicy quality checks apply to its writes
as they would to the agent's in production; and `manage` on pwdFailureTime only, so
an unlock can clear the recorded failures (NO-USER-MODIFICATION, Relax Rules).
Users whose uid starts with `nofollow` deny the service account pwdReset and
pwdAccountLockedTime (a fault between a reset's two writes, for the truthfulness
test). Service accounts get a policy without lockout, so a test that binds with a wrong
service password cannot lock them out for the rest of the session.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from connectors._ppolicy import decode_ppolicy_response
from connectors.base import DirectoryConnector, DirectorySettings
from connectors.openldap import OpenLdapConnector
from tests.servers._process import free_port, port_open, require_binary, stop_process, wait_until
from tests.servers.base import BindOutcome
from tests.servers.certs import make_server_cert

SUFFIX = "dc=wb,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
OUTSIDE = f"ou=outside,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
POLICIES = f"ou=policies,{SUFFIX}"
SERVICES = f"ou=services,{SUFFIX}"
UNDELEGATED = f"ou=undelegated,{SUFFIX}"
SERVICE_DN = f"cn=svc-writeback,{SERVICES}"
LIMITED_DN = f"cn=svc-readonly,{SERVICES}"
DEFAULT_POLICY = f"cn=default,{POLICIES}"
YOUNG_POLICY = f"cn=young,{POLICIES}"
SERVICE_POLICY = f"cn=services,{POLICIES}"
PROTECTED_GROUP = f"cn=protected,{GROUPS}"

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
DISABLED_LOCK_TIME = "000001010000Z"  # ppolicy: locked by an administrator, for good

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {run}/slapd.pid
argsfile {run}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 67108864
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {run}/data
index objectClass,uid,mail,cn,entryUUID,member,uniqueMember eq

overlay ppolicy
ppolicy_default "{default_policy}"
ppolicy_hash_cleartext
ppolicy_use_lockout

access to attrs=userPassword
  by self =wx
  by dn.exact="{service}" =wx
  by anonymous auth
  by * none
access to attrs=pwdFailureTime
  by dn.exact="{service}" manage
  by users read
  by * none
access to dn.subtree="{undelegated}" attrs=userPassword,pwdReset,pwdAccountLockedTime,pwdFailureTime
  by users read
  by * none
access to dn.regex="^uid=nofollow[^,]*,ou=people,{suffix}$" attrs=pwdReset,pwdAccountLockedTime
  by users read
  by * none
access to attrs=pwdReset,pwdAccountLockedTime
  by dn.exact="{service}" write
  by users read
  by * none
access to *
  by users read
  by * none
"""


def _ssha(password: str) -> str:
    """{SSHA} for the slapadd'ed service accounts (slapadd bypasses ppolicy's hashing)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - slapd's SSHA
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _policy_ldif(dn: str, name: str, **attrs: object) -> str:
    lines = [f"dn: {dn}", "objectClass: device", "objectClass: pwdPolicy", f"cn: {name}",
             "pwdAttribute: userPassword"]
    lines += [f"{key}: {value}" for key, value in attrs.items()]
    return "\n".join(lines) + "\n"


def _base_ldif(service_pw: str, limited_pw: str) -> str:
    def ou(dn: str) -> str:
        name = dn.split(",", maxsplit=1)[0].split("=")[1]
        return f"dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n"

    def service(dn: str, password: str) -> str:
        name = dn.split(",", maxsplit=1)[0].split("=")[1]
        return (f"dn: {dn}\nobjectClass: organizationalRole\n"
                f"objectClass: simpleSecurityObject\ncn: {name}\n"
                f"userPassword: {_ssha(password)}\npwdPolicySubentry: {SERVICE_POLICY}\n")

    common = {"pwdMinLength": 8, "pwdCheckQuality": 2, "pwdInHistory": 3, "pwdLockout": "TRUE",
              "pwdMaxFailure": 3, "pwdMustChange": "TRUE", "pwdAllowUserChange": "TRUE"}
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: wb\no: wb test\n",
        *(ou(dn) for dn in (PEOPLE, OUTSIDE, GROUPS, POLICIES, SERVICES, UNDELEGATED)),
        _policy_ldif(DEFAULT_POLICY, "default", pwdMinAge=0, **common),
        _policy_ldif(YOUNG_POLICY, "young", pwdMinAge=86400, **common),
        _policy_ldif(SERVICE_POLICY, "services", pwdLockout="FALSE"),
        f"dn: {PROTECTED_GROUP}\nobjectClass: groupOfNames\ncn: protected\nmember:\n",
        service(SERVICE_DN, service_pw),
        service(LIMITED_DN, limited_pw),
    ]
    return "\n".join(entries)


def _decode_ppolicy_error(result: dict[str, Any] | None) -> int | None:
    """The ppolicy response error code of the last operation, if the server sent one."""
    control = ((result or {}).get("controls") or {}).get(PPOLICY_OID)
    if not control:
        return None
    return decode_ppolicy_response(control.get("value")).error


@dataclass
class SlapdEnv:
    """`tests.servers.base.DirectoryEnv` for OpenLDAP: see the module docstring."""

    settings: DirectorySettings
    limited_settings: DirectorySettings
    plain_url: str
    root_password: str
    kind: str = "openldap"
    base_dn: str = PEOPLE
    outside_base_dn: str = OUTSIDE
    _plain_host: tuple[str, int] = field(default=("127.0.0.1", 389))
    _connectors: list[DirectoryConnector] = field(default_factory=list)

    # ----------------------------------------------------------------- plumbing

    def connector(self, **overrides: Any) -> DirectoryConnector:
        """Connectors keep their connection open; the env closes them all at the end."""
        conn = OpenLdapConnector(self.settings.model_copy(update=overrides))
        self._connectors.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._connectors:
            conn.close()
        self._connectors.clear()

    @contextlib.contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        """The rootdn over plain LDAP on loopback: test set-up only, never the agent."""
        server = ldap3.Server(self._plain_host[0], port=self._plain_host[1], get_info=ldap3.NONE)
        conn = ldap3.Connection(server, ROOT_DN, self.root_password, raise_exceptions=True,
                                receive_timeout=10)
        conn.bind()
        try:
            yield conn
        finally:
            conn.unbind()

    def user_dn(self, login: str) -> str:
        with self.admin() as conn:
            conn.search(SUFFIX, f"(uid={escape_filter_chars(login)})", attributes=["1.1"])
            (entry,) = conn.response
            return str(entry["dn"])

    def read(self, login: str, *attrs: str) -> dict[str, Any]:
        """Attributes (operational ones included) of a user, as the rootdn sees them."""
        with self.admin() as conn:
            conn.search(SUFFIX, f"(uid={escape_filter_chars(login)})", attributes=list(attrs))
            (entry,) = conn.response
            return dict(entry["attributes"])

    def first(self, login: str, attr: str) -> str | None:
        values = self.read(login, attr).get(attr) or []
        return str(values[0]) if isinstance(values, list) and values else (values or None)

    # ----------------------------------------------------------------- DirectoryEnv

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
        dn = f"uid={login},{OUTSIDE if outside_base else PEOPLE}"
        given = given_name or "Test"
        sn = surname or login
        attrs: dict[str, Any] = {
            "uid": login,
            "cn": f"{given} {sn}",
            "sn": sn,
            "givenName": given,
            "displayName": display_name or f"{given} {sn}",
            "mail": mail or f"{login}@wb.test",
            # Cleartext on purpose: ppolicy_hash_cleartext hashes it and sets pwdChangedTime.
            "userPassword": password,
        }
        if young:
            attrs["pwdPolicySubentry"] = YOUNG_POLICY
        if disabled:
            attrs["pwdAccountLockedTime"] = DISABLED_LOCK_TIME
        with self.admin() as conn:
            conn.add(dn, ["inetOrgPerson"], attrs)
            if protected:
                conn.modify(PROTECTED_GROUP, {"member": [(ldap3.MODIFY_ADD, [dn])]})
        return dn

    def bind(self, login: str, password: str) -> BindOutcome:
        """A TLS bind with the ppolicy request control, as an LDAP-aware client would."""
        dn = self.user_dn(login)
        url = self.settings.urls[0]
        host, port = url.split("://")[1].rsplit(":", 1)
        tls = ldap3.Tls(validate=2, ca_certs_file=str(self.settings.ca_file))  # CERT_REQUIRED
        server = ldap3.Server(host, port=int(port), use_ssl=True, tls=tls, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, dn, password, raise_exceptions=True, receive_timeout=10)
        try:
            conn.open()
            conn.bind(controls=[(PPOLICY_OID, False, None)])
        except lexc.LDAPInvalidCredentialsResult:
            error = _decode_ppolicy_error(conn.result)
            if error == 1:  # accountLocked: an administrator's lock (disabled) or lockout
                locked = self.first(login, "pwdAccountLockedTime")
                return BindOutcome.DISABLED if locked == DISABLED_LOCK_TIME else BindOutcome.LOCKED
            return BindOutcome.INVALID_CREDENTIALS
        except lexc.LDAPOperationResult:
            return BindOutcome.OTHER
        finally:
            conn.unbind()
        error = _decode_ppolicy_error(conn.result)
        if error == 2:  # changeAfterReset
            return BindOutcome.MUST_CHANGE
        if error is not None:
            return BindOutcome.OTHER
        return BindOutcome.OK

    def lock(self, login: str) -> None:
        for _ in range(3 + 1):  # pwdMaxFailure 3, plus one to be sure
            if self.bind(login, "Wrong-" + secrets.token_hex(6)) is BindOutcome.LOCKED:
                break
        locked = self.first(login, "pwdAccountLockedTime")
        assert locked, f"{login} is not locked after repeated wrong passwords"
        assert self.bind(login, "Wrong-again-1") is BindOutcome.LOCKED

    def create_group(self, name: str, members: list[str]) -> str:
        dn = f"cn={name},{GROUPS}"
        with self.admin() as conn:
            # groupOfNames requires a member; the empty DN stands for "nobody".
            conn.add(dn, ["groupOfNames"], {"cn": name, "member": members or [""]})
        return dn

    def add_member(self, group_dn: str, member_dn: str) -> None:
        with self.admin() as conn:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})

    def user_id(self, login: str) -> str:
        return str(self.first(login, "entryUUID"))


def _start(tmp: Path) -> tuple[SlapdEnv, subprocess.Popen[bytes]]:
    slapd = require_binary("slapd", "slapd")
    slapadd = require_binary("slapadd", "slapd")
    run = tmp / "run"
    (run / "data").mkdir(parents=True)
    cert = make_server_cert(tmp / "tls", ["127.0.0.1", "localhost"], rsa=True)
    root_pw, service_pw, limited_pw = (secrets.token_urlsafe(16) for _ in range(3))
    conf = tmp / "slapd.conf"
    conf.write_text(_CONF.format(
        run=run, ca=cert.ca_file, cert=cert.cert_file, key=cert.key_file, suffix=SUFFIX,
        root_dn=ROOT_DN, root_pw=root_pw, default_policy=DEFAULT_POLICY, service=SERVICE_DN,
        undelegated=UNDELEGATED,
    ))
    ldif = tmp / "base.ldif"
    ldif.write_text(_base_ldif(service_pw, limited_pw))
    loaded = subprocess.run([slapadd, "-q", "-f", str(conf), "-l", str(ldif)],
                            capture_output=True, timeout=30, check=False)
    if loaded.returncode:
        raise RuntimeError(f"slapadd failed ({loaded.returncode}):\n{loaded.stderr.decode()}")
    ldap_port, ldaps_port = free_port(), free_port()
    plain_url = f"ldap://127.0.0.1:{ldap_port}"
    ldaps_url = f"ldaps://127.0.0.1:{ldaps_port}"
    log = tmp / "slapd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [slapd, "-f", str(conf), "-h", f"{plain_url}/ {ldaps_url}/", "-d", "0"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open("127.0.0.1", ldaps_port) and port_open("127.0.0.1", ldap_port),
                   timeout=15, what="slapd", proc=proc, log=log)
    except BaseException:
        stop_process(proc)
        raise
    common: dict[str, Any] = {
        "kind": "openldap", "urls": [ldaps_url], "ca_file": cert.ca_file, "base_dns": [PEOPLE],
        "default_policy_dn": DEFAULT_POLICY,
        # ppolicy checks length only; the agent pre-validates AD-style complexity.
        "require_complexity": True,
    }
    env = SlapdEnv(
        settings=DirectorySettings(
            bind_dn=SERVICE_DN, bind_password=SecretStr(service_pw), **common
        ),
        limited_settings=DirectorySettings(
            name="limited", bind_dn=LIMITED_DN, bind_password=SecretStr(limited_pw), **common
        ),
        plain_url=plain_url,
        root_password=root_pw,
        _plain_host=("127.0.0.1", ldap_port),
    )
    return env, proc


@contextlib.contextmanager
def running_slapd() -> Iterator[SlapdEnv]:
    """A throwaway slapd (ppolicy, TLS with our own CA, free ports), stopped at exit."""
    with tempfile.TemporaryDirectory(prefix="wb-slapd-") as tmp:
        env, proc = _start(Path(tmp))
        try:
            yield env
        finally:
            env.close()
            stop_process(proc)

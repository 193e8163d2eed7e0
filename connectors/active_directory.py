"""Active Directory and Samba AD: unicodePwd, lockoutTime, pwdLastSet, PSOs.

Choices (verified against Samba 4.17; see DESIGN.md section 4):

- A reset is ONE modify: unicodePwd REPLACE, plus lockoutTime=0 (unlock) and
  pwdLastSet=0 (must change) in the same request, so nothing is ever half-applied.
  Samba 4.17 accepts the combined modify. Any password write sets pwdLastSet to "now",
  so a reset without must_change already clears an earlier must-change flag; we never
  send pwdLastSet=-1.
- The policy-hints control (history on resets) is sent, non-critical, only when the
  DC lists it in the rootDSE supportedControl. Samba 4.17 does not list it, and its
  resets skip the history; Windows 2008 R2+ lists it.
- A change (old + new) is DELETE old + ADD new on the SERVICE account's connection:
  the DC still verifies the old password and applies history and minimum age (it is a
  change, granted to Everyone by the Change Password right), and it also works for a
  user flagged must-change, who could not simple-bind (data 773) to change it herself.
- AD answers every policy failure with 0000052D without naming the rule, so we
  pre-validate (length, complexity, name tokens, minimum age); a 52D after that is
  the history (Samba's diagnostic text, when it names the rule, wins).
- One connection per connector (each worker thread owns its connector). Reads retry
  once on a fresh connection after DirectoryUnavailable; writes never retry (a write
  whose answer was lost is in doubt, the pipeline decides). Every write follows a read
  in the same call, so a stale connection is replaced before the write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import ldap3
from ldap3.protocol.microsoft import security_descriptor_control
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from pydantic import SecretStr

from connectors import _ad_policy as pol
from connectors._ad_rights import RESET_PASSWORD, has_extended_right, sid_to_str
from connectors._bind_as_user import bind_as_user
from connectors._ldap import (
    Context,
    close_quietly,
    first_value,
    open_connection,
    require_secure_for_writes,
    server_url,
    translate_errors,
)
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    AmbiguousUser,
    CheckItem,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    HealthReport,
    LookupKind,
    PasswordPolicy,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    UserRef,
    WriteOutcome,
)
from connectors.prevalidate import prevalidate
from wire.status import PolicyReason

POLICY_HINTS = ("1.2.840.113556.1.4.2239", "1.2.840.113556.1.4.2066")  # newest first
_POLICY_HINTS_VALUE = b"\x30\x03\x02\x01\x01"  # SEQUENCE { INTEGER 1 }: enforce policy

UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10  # in msDS-User-Account-Control-Computed
_USER_FILTER = "(&(objectCategory=person)(objectClass=user){})"
_USER_ATTRS = [
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "lockoutTime",
    "adminCount",
    "pwdLastSet",
    "objectGUID",
]

T = TypeVar("T")


def encode_password(password: SecretStr) -> bytes:
    """unicodePwd wants the password in double quotes, UTF-16LE."""
    return f'"{password.get_secret_value()}"'.encode("utf-16-le")


class ActiveDirectoryConnector:
    """DirectoryConnector for AD / Samba AD. Not thread-safe: one per worker thread."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self._conn: ldap3.Connection | None = None
        self._root: dict[str, Any] | None = None  # rootDSE, read once per instance

    def __repr__(self) -> str:  # never the bind password
        return f"ActiveDirectoryConnector(name={self.settings.name!r}, urls={self.settings.urls!r})"

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> ldap3.Connection:
        if self._conn is None or self._conn.closed:
            conn = open_connection(self.settings)
            # Subtree searches from a Windows domain head return continuation references
            # (DomainDnsZones, ...); chasing them opens connections to other hosts. We
            # only want entries of this naming context.
            conn.auto_referrals = False
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def _read(self, operation: Callable[[ldap3.Connection], T]) -> T:
        """Run a read; on a dead connection retry once on a fresh one (failover)."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with translate_errors("search", dc=server_url(conn)):
                    return operation(conn)
            except DirectoryUnavailable:
                self._drop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _search(
        self,
        base: str,
        filt: str,
        attrs: list[str],
        *,
        scope: str = ldap3.SUBTREE,
        controls: Any = None,
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        def run(conn: ldap3.Connection) -> list[dict[str, Any]]:
            conn.search(
                base, filt, scope, attributes=attrs, controls=controls, size_limit=size_limit
            )
            return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]

        return self._read(run)

    def _entry(self, dn: str, attrs: list[str], *, controls: Any = None) -> dict[str, Any]:
        entries = self._search(dn, "(objectClass=*)", attrs, scope=ldap3.BASE, controls=controls)
        if not entries:
            raise UserNotFound(f"{dn} not found or not readable")
        return entries[0]

    def _root_dse(self) -> dict[str, Any]:
        if self._root is None:
            attrs = ["defaultNamingContext", "supportedControl"]
            self._root = self._entry("", attrs)["attributes"]
        return self._root

    def _domain_dn(self) -> str:
        return str(first_value(self._root_dse(), "defaultNamingContext"))

    def _write_controls(self) -> list[tuple[str, bool, bytes]] | None:
        supported = set(self._root_dse().get("supportedControl") or [])
        for oid in POLICY_HINTS:
            if oid in supported:  # non-critical: Samba < 4.24 rejects it when critical
                return [(oid, False, _POLICY_HINTS_VALUE)]
        return None

    def _modify(self, user: UserRef, changes: dict[str, Any], context: Context) -> str:
        """One modify request; returns the URL of the DC that took it."""
        conn = self._connection()
        dc = server_url(conn)
        controls = self._write_controls()
        try:
            with translate_errors(context, dc=dc):
                conn.modify(user.dn, changes, controls=controls)
        finally:
            conn.request = None  # ldap3 keeps the last request (with unicodePwd) around
        return dc

    # ------------------------------------------------------------------ lookups

    def find_user(self, query: UserQuery) -> UserRef:
        value = query.value.strip()
        if not value:
            raise UserNotFound("empty user reference")
        if query.kind is LookupKind.LOGIN:
            clause = f"(sAMAccountName={escape_filter_chars(value)})"
        elif query.kind is LookupKind.UPN:
            v = escape_filter_chars(value)
            clause = f"(|(userPrincipalName={v})(mail={v}))"
        else:
            try:
                guid = uuid.UUID(value)
            except ValueError:
                raise UserNotFound("not an objectGUID") from None
            clause = f"(objectGUID={escape_bytes(guid.bytes_le)})"
        found: dict[str, dict[str, Any]] = {}
        for base in self.settings.base_dns:
            for entry in self._search(base, _USER_FILTER.format(clause), _USER_ATTRS):
                found[str(entry["dn"]).lower()] = entry
        if not found:
            raise UserNotFound(f"no user for {query.kind.value} lookup")
        if len(found) > 1:
            raise AmbiguousUser(f"{len(found)} users match the {query.kind.value} lookup")
        return self._user_ref(next(iter(found.values())))

    def _user_ref(self, entry: dict[str, Any]) -> UserRef:
        attrs = entry["attributes"]
        raw_guid = (entry["raw_attributes"].get("objectGUID") or [b""])[0]
        uac = int(first_value(attrs, "userAccountControl") or 0)
        computed = first_value(attrs, "msDS-User-Account-Control-Computed")
        if computed is not None and computed != "":
            locked = bool(int(computed) & UF_LOCKOUT)
        else:  # DCs that do not compute it: lockoutTime within the lockout duration
            locked_at = pol.filetime_to_datetime(first_value(attrs, "lockoutTime"))
            locked = self._locked_by_time(locked_at)
        return UserRef(
            dn=str(entry["dn"]),
            id=str(uuid.UUID(bytes_le=raw_guid)) if len(raw_guid) == 16 else "",
            login=str(first_value(attrs, "sAMAccountName") or ""),
            upn=first_value(attrs, "userPrincipalName"),
            mail=first_value(attrs, "mail"),
            display_name=first_value(attrs, "displayName"),
            disabled=bool(uac & UF_ACCOUNTDISABLE),
            locked=locked,
            protected=str(first_value(attrs, "adminCount") or "0") == "1",
            pwd_last_set=pol.filetime_to_datetime(first_value(attrs, "pwdLastSet")),
        )

    def _locked_by_time(self, locked_at: dt.datetime | None) -> bool:
        if locked_at is None:
            return False
        domain = self._entry(self._domain_dn(), ["lockoutDuration"])["attributes"]
        duration = pol.lockout_duration(domain, pso=False)
        return duration is None or dt.datetime.now(dt.UTC) < locked_at + duration

    def group_dns(self, user: UserRef) -> frozenset[str]:
        in_chain = f"(member:1.2.840.113556.1.4.1941:={escape_filter_chars(user.dn)})"
        filt = f"(&(objectClass=group){in_chain})"
        entries = self._search(self._domain_dn(), filt, ["1.1"])
        return frozenset(str(e["dn"]).lower() for e in entries)

    def password_policy(self, user: UserRef) -> PasswordPolicy:
        attrs = self._entry(user.dn, ["msDS-ResultantPSO"])["attributes"]
        pso_dn = first_value(attrs, "msDS-ResultantPSO")
        if pso_dn:
            try:
                pso = self._entry(str(pso_dn), pol.PSO_POLICY_ATTRS)["attributes"]
            except UserNotFound as exc:
                raise AccessDenied(
                    f"cannot read the password settings object {pso_dn}: grant the service "
                    "account read access to the Password Settings Container",
                    dc=exc.dc,
                ) from exc
            return pol.policy_from_pso(str(pso_dn), pso)
        domain = self._entry(self._domain_dn(), pol.DOMAIN_POLICY_ATTRS)["attributes"]
        return pol.policy_from_domain(domain)

    # ------------------------------------------------------------------ writes

    def _policy_error(self, exc: PolicyViolation, policy: PasswordPolicy) -> PolicyViolation:
        """A 52D after pre-validation passed: the rule pre-validation cannot see, history."""
        reason = exc.policy_reason
        if reason is PolicyReason.UNKNOWN:
            reason = PolicyReason.HISTORY
        return PolicyViolation(reason, exc.detail, dc=exc.dc, policy=policy)

    def reset_password(
        self,
        user: UserRef,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        require_secure_for_writes(self.settings)
        if user.disabled:
            raise AccountDisabled(f"{user.dn} is disabled")
        if user.locked and not unlock:
            raise AccountLocked(f"{user.dn} is locked out and unlock was not requested")
        policy = self.password_policy(user)
        prevalidate(new_password.get_secret_value(), policy, user, self_change=False)
        changes: dict[str, Any] = {
            "unicodePwd": [(ldap3.MODIFY_REPLACE, [encode_password(new_password)])],
        }
        applied = ["password"]
        if unlock:
            changes["lockoutTime"] = [(ldap3.MODIFY_REPLACE, ["0"])]
            applied.append("unlock")
        if must_change:
            changes["pwdLastSet"] = [(ldap3.MODIFY_REPLACE, ["0"])]
            applied.append("must_change")
        try:
            dc = self._modify(user, changes, "write")
        except PolicyViolation as exc:
            raise self._policy_error(exc, policy) from exc
        return WriteOutcome(dc=dc, applied=tuple(applied))

    def change_password(
        self, user: UserRef, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        require_secure_for_writes(self.settings)
        if user.disabled:
            raise AccountDisabled(f"{user.dn} is disabled")
        if user.locked:
            raise AccountLocked(f"{user.dn} is locked out")
        policy = self.password_policy(user)
        prevalidate(new_password.get_secret_value(), policy, user, self_change=True)
        changes = {
            "unicodePwd": [
                (ldap3.MODIFY_DELETE, [encode_password(old_password)]),
                (ldap3.MODIFY_ADD, [encode_password(new_password)]),
            ]
        }
        try:
            dc = self._modify(user, changes, "change")
        except PolicyViolation as exc:
            raise self._policy_error(exc, policy) from exc
        return WriteOutcome(dc=dc, applied=("password",))

    def authenticate(self, user: UserRef, password: SecretStr) -> None:
        bind_as_user(self.settings, user, password)

    def unlock(self, user: UserRef) -> WriteOutcome:
        require_secure_for_writes(self.settings)
        self._entry(user.dn, ["lockoutTime"])  # a real read first: replaces a dead connection
        dc = self._modify(user, {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]}, "write")
        return WriteOutcome(dc=dc, applied=("unlock",))

    # ------------------------------------------------------------------ health

    def check(self) -> HealthReport:
        """TLS + service bind, each base readable, and the delegated rights, verified by
        reading (allowedAttributesEffective for lockoutTime/pwdLastSet; the DACL of a
        user evaluated against our tokenGroups for Reset Password), never by writing."""
        items: list[CheckItem] = []
        name = self.settings.name
        try:
            conn = self._connection()
        except DirectoryUnavailable as exc:
            items.append(CheckItem("tls_connect", False, exc.detail))
            return HealthReport(name, tuple(items))
        except DirectoryError as exc:
            items.append(CheckItem("tls_connect", True, "certificate validated"))
            items.append(CheckItem("service_bind", False, exc.detail))
            return HealthReport(name, tuple(items))
        items.append(CheckItem("tls_connect", True, f"{server_url(conn)}: certificate validated"))
        items.append(CheckItem("service_bind", True, f"bound as {self.settings.bind_dn}"))
        for base in self.settings.base_dns:
            try:
                self._entry(base, ["1.1"])
                items.append(CheckItem(f"search_base {base}", True, "readable"))
                items.append(self._check_rights(base))
            except DirectoryError as exc:
                items.append(CheckItem(f"search_base {base}", False, exc.detail))
        return HealthReport(name, tuple(items))

    def _check_rights(self, base: str) -> CheckItem:
        label = f"rights {base}"
        try:
            sample = self._search(
                base,
                _USER_FILTER.format("(!(adminCount=1))"),
                ["allowedAttributesEffective", "sAMAccountName"],
                size_limit=1,
            )
            if not sample:
                return CheckItem(label, True, "not verified: no user under this base yet")
            entry = sample[0]
            effective = entry["attributes"].get("allowedAttributesEffective") or []
            writable = {a.lower() for a in effective}
            missing = [a for a in ("lockoutTime", "pwdLastSet") if a.lower() not in writable]
            sd_entry = self._entry(
                str(entry["dn"]),
                ["nTSecurityDescriptor"],
                controls=security_descriptor_control(sdflags=0x04),
            )
            sd = (sd_entry["raw_attributes"].get("nTSecurityDescriptor") or [b""])[0]
            token = self._entry("", ["tokenGroups"])["raw_attributes"].get("tokenGroups") or []
            sids = {sid_to_str(s) for s in token}
            if not has_extended_right(sd, sids, RESET_PASSWORD):
                missing.insert(0, "Reset Password")
        except DirectoryError as exc:
            return CheckItem(label, False, exc.detail)
        who = first_value(entry["attributes"], "sAMAccountName")
        if missing:
            return CheckItem(label, False, f"missing on {who}: {', '.join(missing)}")
        return CheckItem(label, True, f"Reset Password, write lockoutTime and pwdLastSet on {who}")

    def close(self) -> None:
        self._drop()

    def __del__(self) -> None:
        # A connector dropped without close() must not leak its socket. At interpreter
        # exit anything may already be torn down: never let that surface.
        try:
            self._drop()
        except Exception:  # noqa: BLE001, S110
            pass

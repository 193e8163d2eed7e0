"""Active Directory and Samba AD: unicodePwd, lockoutTime, pwdLastSet, PSOs.

Choices (verified against Samba 4.17; see docs/directories.md):

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
- One kept service connection per connector (connectors/_session.py; each worker
  thread owns its connector): a dead one is replaced before a write is sent, reads
  retry once, writes never (a write whose answer was lost is in doubt).
- The effective policy comes from msDS-ResultantPSO and the PSO / domain head, cached
  for `policy_cache_seconds` (re-read after any policy refusal): a reset is one search
  and one modify. msDS-ResultantPSO is constructed on each read (about 1 ms of DC time
  per lookup on Samba 4.17), and it only matters when a PSO has a stricter length or
  complexity rule than the domain: the PSOs are listed (cached like the policies), and
  only then does find_user ask for it. Otherwise a new password that meets the
  strictest rules of the domain and all its PSOs meets the user's own, and it is
  written without reading which PSO applies; a password that does not is checked
  against the user's own policy (msDS-ResultantPSO read then), and so is every
  refusal, preflight and 52D answer. The lockout flag
  (msDS-User-Account-Control-Computed, constructed on each read) is read only for an
  account whose lockoutTime is set: one more base read for those.
- `check` verifies the rights on every DN of the write scope by evaluating what that
  container's DACL passes down to user objects (connectors/_ad_rights.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from typing import Any

import ldap3
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from pydantic import SecretStr

from connectors import _ad_policy as pol
from connectors._ad_check import ScopeRights
from connectors._bind_as_user import bind_as_user
from connectors._cache import TtlCache
from connectors._checks import run_check
from connectors._ldap import (
    Context,
    first_value,
)
from connectors._session import LdapSession
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    AmbiguousUser,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    DirectoryUser,
    HealthReport,
    LookupKind,
    PasswordPolicy,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    WriteOutcome,
)
from connectors.prevalidate import prevalidate, prevalidate_fresh
from wire.status import PolicyReason

POLICY_HINTS = ("1.2.840.113556.1.4.2239", "1.2.840.113556.1.4.2066")  # newest first
_POLICY_HINTS_VALUE = b"\x30\x03\x02\x01\x01"  # SEQUENCE { INTEGER 1 }: enforce policy

UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10  # in msDS-User-Account-Control-Computed
# Constructed on every read that asks for it: about 0.4 ms of DC time per lookup on
# Samba 4.17. Read only for an account whose lockoutTime is set (see _locked).
_LOCK_COMPUTED = "msDS-User-Account-Control-Computed"
_USER_FILTER = "(&(objectCategory=person)(objectClass=user){})"
_USER_ATTRS = [
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "userAccountControl",
    "lockoutTime",
    "adminCount",
    "pwdLastSet",
    "objectGUID",
    "uSNChanged",
]
_RESULTANT_PSO = "msDS-ResultantPSO"  # constructed: asked for only when it can matter
_PSO_CONTAINER = "CN=Password Settings Container,CN=System,{}"


def encode_password(password: SecretStr) -> bytes:
    """unicodePwd wants the password in double quotes, UTF-16LE."""
    return f'"{password.get_secret_value()}"'.encode("utf-16-le")


def _no_referrals(conn: ldap3.Connection) -> None:
    # Subtree searches from a Windows domain head return continuation references
    # (DomainDnsZones, ...); chasing them opens connections to other hosts. We only
    # want entries of this naming context.
    conn.auto_referrals = False


class ActiveDirectoryConnector:
    """DirectoryConnector for AD / Samba AD. Not thread-safe: one per worker thread."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self._session = LdapSession(settings, prepare=_no_referrals)
        self._root: dict[str, Any] | None = None  # rootDSE, read once per instance
        self._policies: TtlCache[dict[str, Any]] = TtlCache(settings.policy_cache_seconds)
        # _strictest's answer and the two cached reads it came from (the same objects
        # until either is read again): asked by the lookup and again by the write.
        self._strictest_of: tuple[object, object, PasswordPolicy | None] | None = None

    def __repr__(self) -> str:  # never the bind password
        return f"ActiveDirectoryConnector(name={self.settings.name!r}, urls={self.settings.urls!r})"

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ plumbing

    def _entry(self, dn: str, attrs: list[str], *, controls: Any = None) -> dict[str, Any]:
        entry = self._session.entry(dn, attrs, controls=controls)
        if entry is None:
            raise UserNotFound(f"{dn} not found or not readable")
        return entry

    def _root_dse(self) -> dict[str, Any]:
        if self._root is None:
            attrs = ["defaultNamingContext", "schemaNamingContext", "supportedControl"]
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

    def _modify(self, user: DirectoryUser, changes: dict[str, Any], context: Context) -> str:
        """One modify request; returns the URL of the DC that took it."""
        controls = self._write_controls()
        return self._session.modify(
            user.dn, changes, controls=controls, context=context, guard=user
        )

    # ------------------------------------------------------------------ lookups

    def find_user(self, query: UserQuery) -> DirectoryUser:
        flt, attrs, with_pso = self._user_search(query)
        found: dict[str, dict[str, Any]] = {}
        for base in self.settings.base_dns:
            for entry in self._session.search(base, flt, attrs):
                found[str(entry["dn"]).lower()] = entry
        if not found:
            raise UserNotFound(f"no user for {query.kind.value} lookup")
        if len(found) > 1:
            raise AmbiguousUser(f"{len(found)} users match the {query.kind.value} lookup")
        return self._directory_user(next(iter(found.values())), policy_known=with_pso)

    def look_ahead(self, query: UserQuery) -> None:
        with contextlib.suppress(DirectoryError):
            flt, attrs, _ = self._user_search(query)
            for base in self.settings.base_dns[:1]:  # one search outstanding at most
                self._session.search_ahead(base, flt, attrs)

    def _user_search(self, query: UserQuery) -> tuple[str, list[str], bool]:
        """The filter and attributes of the lookup, and whether they include the PSO."""
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
        # Without a policy cache the PSO list would be read on every lookup: ask for it.
        with_pso = self.settings.policy_cache_seconds <= 0 or self._strictest() is None
        attrs = [*_USER_ATTRS, _RESULTANT_PSO] if with_pso else _USER_ATTRS
        return _USER_FILTER.format(clause), attrs, with_pso

    def _directory_user(self, entry: dict[str, Any], *, policy_known: bool) -> DirectoryUser:
        attrs = entry["attributes"]
        raw_guid = (entry["raw_attributes"].get("objectGUID") or [b""])[0]
        uac = int(first_value(attrs, "userAccountControl") or 0)
        locked = self._locked(str(entry["dn"]), first_value(attrs, "lockoutTime"))
        pso = first_value(attrs, _RESULTANT_PSO)
        return DirectoryUser(
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
            policy_dn=str(pso) if pso else None,
            policy_known=policy_known,
            server=self._session.server,
            change_stamp=str(first_value(attrs, "uSNChanged") or ""),
        )

    def _locked(self, dn: str, lockout_time: Any) -> bool:
        """Locked out now. lockoutTime 0 (or absent) means not locked; any other value
        may be a lockout that has run out, which the DC's computed flag tells (one more
        read, for those accounts only). DCs that do not compute it: lockoutTime within
        the lockout duration."""
        locked_at = pol.filetime_to_datetime(lockout_time)
        if locked_at is None:
            return False
        entry = self._session.entry(dn, [_LOCK_COMPUTED])
        computed = first_value(entry["attributes"], _LOCK_COMPUTED) if entry else None
        if computed is not None and computed != "":
            return bool(int(computed) & UF_LOCKOUT)
        return self._locked_by_time(locked_at)

    def _locked_by_time(self, locked_at: dt.datetime | None) -> bool:
        if locked_at is None:
            return False
        duration = pol.lockout_duration(self._domain_policy_attrs(), pso=False)
        return duration is None or dt.datetime.now(dt.UTC) < locked_at + duration

    def group_dns(self, user: DirectoryUser) -> frozenset[str]:
        in_chain = f"(member:1.2.840.113556.1.4.1941:={escape_filter_chars(user.dn)})"
        filt = f"(&(objectClass=group){in_chain})"
        entries = self._session.search(self._domain_dn(), filt, ["1.1"])
        return frozenset(str(e["dn"]).lower() for e in entries)

    # ------------------------------------------------------------------ policy

    def _domain_policy_attrs(self) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            return dict(self._entry(self._domain_dn(), pol.DOMAIN_POLICY_ATTRS)["attributes"])

        return self._policies.get("", load)

    def _pso_attrs(self, pso_dn: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            try:
                return dict(self._entry(pso_dn, pol.PSO_POLICY_ATTRS)["attributes"])
            except UserNotFound as exc:
                raise AccessDenied(
                    f"cannot read the password settings object {pso_dn}: grant the service "
                    "account read access to the Password Settings Container",
                    dc=exc.dc,
                ) from exc

        return self._policies.get(pso_dn.lower(), load)

    def _resultant_pso(self, user: DirectoryUser) -> str | None:
        """The DN of the PSO that applies to the user (None: the domain policy), as
        find_user read it, or read now when it did not."""
        if user.policy_known:
            return user.policy_dn
        pso = first_value(self._entry(user.dn, [_RESULTANT_PSO])["attributes"], _RESULTANT_PSO)
        return str(pso) if pso else None

    def password_policy(self, user: DirectoryUser) -> PasswordPolicy:
        """The user's PSO (msDS-ResultantPSO) or the domain policy; resets skip its
        history unless the DC honours the policy-hints control."""
        pso = self._resultant_pso(user)
        if pso:
            found = pol.policy_from_pso(pso, self._pso_attrs(pso))
        else:
            found = pol.policy_from_domain(self._domain_policy_attrs())
        return dataclasses.replace(found, history_on_reset=self._write_controls() is not None)

    def _pso_list(self) -> dict[str, Any]:
        """Every PSO the service account can read, {dn: policy attributes}, under
        "listed"; listed False when the container could not be searched."""

        def load() -> dict[str, Any]:
            base = _PSO_CONTAINER.format(self._domain_dn())
            try:
                entries = self._session.search(
                    base, "(objectClass=msDS-PasswordSettings)", pol.PSO_POLICY_ATTRS,
                    scope=ldap3.LEVEL,
                )
            except DirectoryUnavailable:
                raise
            except DirectoryError:  # no container (or not readable): ask per user
                return {"listed": False, "psos": {}}
            psos = {str(e["dn"]): dict(e["attributes"]) for e in entries}
            return {"listed": True, "psos": psos}

        return self._policies.get("*psos", load)

    def _strictest(self) -> PasswordPolicy | None:
        """The strictest length, complexity and minimum age of the domain policy and
        all its PSOs, when no PSO is stricter than the domain in length or complexity
        (so which PSO applies need not be read for a reset); None otherwise, and when
        the PSOs could not be listed."""
        listing = self._pso_list()
        if not listing["listed"]:
            return None
        try:
            attrs = self._domain_policy_attrs()
        except DirectoryUnavailable:
            raise
        except DirectoryError:  # the domain head not readable: never "user not found"
            return None
        memo = self._strictest_of
        if memo is not None and memo[0] is listing and memo[1] is attrs:
            return memo[2]
        domain = pol.policy_from_domain(attrs)
        psos = [pol.policy_from_pso(dn, a) for dn, a in listing["psos"].items()]
        strictest = None
        if not any(p.min_length > domain.min_length or p.complexity > domain.complexity
                   for p in psos):
            min_age = max([domain.min_age, *(p.min_age for p in psos)])
            strictest = dataclasses.replace(domain, min_age=min_age, source="strictest")
        self._strictest_of = (listing, attrs, strictest)
        return strictest

    # ------------------------------------------------------------------ writes

    def _prevalidated(
        self, user: DirectoryUser, password: SecretStr, *, self_change: bool
    ) -> PasswordPolicy | None:
        """Refuse, naming the rule, a password the user's policy refuses; returns the
        user's policy it was checked against. When find_user did not read which PSO
        applies, a password that meets the strictest rules of the domain and every PSO
        is not checked further (None)."""
        secret = password.get_secret_value()
        strictest = None if user.policy_known else self._strictest()
        if strictest is not None:
            try:
                prevalidate(secret, strictest, user, self_change=self_change)
                return None
            except PolicyViolation:
                pass  # it may still meet the user's own policy: decide on that
        return prevalidate_fresh(
            secret,
            user,
            lambda: self.password_policy(user),
            self._policies.clear,
            self_change=self_change,
        )

    def _policy_error(
        self,
        exc: PolicyViolation,
        user: DirectoryUser,
        password: SecretStr,
        checked: PasswordPolicy | None,
        *,
        self_change: bool,
    ) -> PolicyViolation:
        """A 52D after pre-validation passed. The cached policies may be what was out of
        date: the user's policy is read again (`checked`, the one pre-validation used,
        if that fails), and a rule of it that the password breaks is the answer; else
        it is the rule pre-validation cannot see, history."""
        self._policies.clear()
        policy = checked
        with contextlib.suppress(DirectoryError):
            policy = self.password_policy(user)
        if policy is None:
            return PolicyViolation(exc.policy_reason, exc.detail, dc=exc.dc)
        try:
            prevalidate(password.get_secret_value(), policy, user, self_change=self_change)
        except PolicyViolation as named:
            return PolicyViolation(named.policy_reason, named.detail, dc=exc.dc, policy=policy)
        reason = exc.policy_reason
        if reason is PolicyReason.UNKNOWN:
            reason = PolicyReason.HISTORY
        return PolicyViolation(reason, exc.detail, dc=exc.dc, policy=policy)

    def reset_password(
        self,
        user: DirectoryUser,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        if user.disabled:
            raise AccountDisabled(f"{user.dn} is disabled")
        if user.locked and not unlock:
            raise AccountLocked(f"{user.dn} is locked out and unlock was not requested")
        checked = self._prevalidated(user, new_password, self_change=False)
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
            raise self._policy_error(
                exc, user, new_password, checked, self_change=False
            ) from exc
        return WriteOutcome(dc=dc, applied=tuple(applied))

    def change_password(
        self, user: DirectoryUser, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        if user.disabled:
            raise AccountDisabled(f"{user.dn} is disabled")
        if user.locked:
            raise AccountLocked(f"{user.dn} is locked out")
        checked = self._prevalidated(user, new_password, self_change=True)
        changes = {
            "unicodePwd": [
                (ldap3.MODIFY_DELETE, [encode_password(old_password)]),
                (ldap3.MODIFY_ADD, [encode_password(new_password)]),
            ]
        }
        try:
            dc = self._modify(user, changes, "change")
        except PolicyViolation as exc:
            raise self._policy_error(
                exc, user, new_password, checked, self_change=True
            ) from exc
        return WriteOutcome(dc=dc, applied=("password",))

    def authenticate(self, user: DirectoryUser, password: SecretStr) -> None:
        bind_as_user(self.settings, user, password)

    def unlock(self, user: DirectoryUser) -> WriteOutcome:
        dc = self._modify(user, {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]}, "write")
        return WriteOutcome(dc=dc, applied=("unlock",))

    # ------------------------------------------------------------------ health

    def check(self) -> HealthReport:
        """Transport, bind, bases, the domain policy, and the delegated rights on every
        DN of the write scope, verified by reading, never by writing."""

        def policy() -> str:
            described = pol.policy_from_domain(self._domain_policy_attrs()).describe()
            return "domain: " + ", ".join(f"{k}={v}" for k, v in described.items())

        rights = ScopeRights(self._session, self._root_dse)
        return run_check(self.settings, self._session, policy=policy, rights=rights.check)

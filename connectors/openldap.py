"""OpenLDAP with the ppolicy overlay (slapd 2.5; the facts relied on: docs/directories.md).

Passwords are written with the RFC 3062 Password Modify extended operation and no
client-side hash, so slapd hashes them and ppolicy checks them (an identity with
`manage` on userPassword, and the rootdn, would bypass those checks: the service
account must have `write` only). Every password operation carries the ppolicy
request control, whose response names the failed rule (connectors/_ppolicy.py).

Account state lives in operational attributes:

- pwdAccountLockedTime = 000001010000Z: locked by an administrator for good; ppolicy
  never lifts it by itself, so we report it as *disabled* and unlock refuses it.
- any other pwdAccountLockedTime: locked out after failed binds, until unlocked or,
  when the policy has pwdLockoutDuration, until that many seconds have passed.
- pwdReset = TRUE: the user must change the password at next bind.

ppolicy has no complexity rule; with `settings.require_complexity` the agent
pre-validates AD-style complexity itself (connectors/prevalidate.py).

What slapd 2.5 enforces on a `write` (non-manage) identity's reset: length/quality,
history AND pwdMinAge (the latter is skipped only when pwdReset is already TRUE).

A reset is the exop, and a follow-up modify for pwdReset / pwdAccountLockedTime only
when the entry needs one: the exop carries the password only, and a plain modify of
userPassword would store it in clear on a server without `ppolicy_hash_cleartext`.
In the same write as the exop, ppolicy itself deletes pwdReset, pwdAccountLockedTime
and pwdFailureTime (it sets pwdReset instead when the policy has pwdMustChange and the
writer is a password administrator). So the follow-up is sent for must_change, for
unlocking a user found locked (belt and braces), and under a pwdMustChange policy or
one the connector does not know (no pwdPolicySubentry, no `default_policy_dn`). It
is idempotent, so it is retried (reconnecting) until done; if it still fails the reset
raises PartiallyApplied, which says the password WAS set and what was not applied.

Round trips per reset: the lookup (which reads the account state the write decides
on) and the exop, plus the follow-up when needed; the policy entry is cached
(`policy_cache_seconds`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from connectors import _ppolicy as pp
from connectors._bind_as_user import bind_as_user
from connectors._cache import TtlCache
from connectors._checks import run_check
from connectors._openldap_check import probe_rights
from connectors._openldap_groups import nested_groups
from connectors._session import LdapSession
from connectors.base import (
    AccountDisabled,
    AccountLocked,
    AmbiguousUser,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    DirectoryUser,
    HealthReport,
    LookupKind,
    PartiallyApplied,
    PasswordPolicy,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    WriteOutcome,
)
from connectors.prevalidate import prevalidate_fresh

Changes = dict[str, list[tuple[str, list[str]]]]

_PERSON = "(|(objectClass=person)(objectClass=posixAccount))"
# REPLACE with no value deletes the attribute and is a no-op when it is absent.
_RESET_TRUE: Changes = {"pwdReset": [(ldap3.MODIFY_REPLACE, ["TRUE"])]}
_RESET_NONE: Changes = {"pwdReset": [(ldap3.MODIFY_REPLACE, [])]}
_UNLOCK: Changes = {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [])]}
# pwdFailureTime is NO-USER-MODIFICATION: deleting it needs the Relax Rules control
# and `manage` on that attribute alone (which does not bypass any password check).
_CLEAR_FAILURES: Changes = {"pwdFailureTime": [(ldap3.MODIFY_REPLACE, [])]}
_RELAX = ("1.3.6.1.4.1.4203.666.5.12", True, None)
# Pauses before the follow-up modify's attempts after the exop (idempotent: REPLACE).
FOLLOW_UP_DELAYS = (0.0, 0.25, 0.5, 1.0)


class OpenLdapConnector:
    """`DirectoryConnector` for slapd + ppolicy. One per worker thread; its service
    connection is kept (connectors/_session.py)."""

    def __init__(
        self, settings: DirectorySettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.settings = settings
        self._session = LdapSession(settings, refine=pp.refine)
        self._policies: TtlCache[dict[str, Any]] = TtlCache(settings.policy_cache_seconds)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"OpenLdapConnector(name={self.settings.name!r}, urls={self.settings.urls!r})"

    def close(self) -> None:
        self._session.close()

    def _modify(
        self,
        dn: str,
        changes: Changes,
        *,
        relax: bool = False,
        guard: DirectoryUser | None = None,
    ) -> str:
        return self._session.modify(
            dn, changes, controls=[_RELAX] if relax else None, guard=guard
        )

    # ----------------------------------------------------------------- lookups

    def _user_filter(self, query: UserQuery) -> str:
        if query.kind is LookupKind.ID:
            try:
                value = str(uuid.UUID(query.value))
            except ValueError as exc:
                raise UserNotFound("not a valid entryUUID") from exc
            attr = "entryUUID"
        elif query.kind is LookupKind.LOGIN:
            attr, value = self.settings.login_attribute, query.value
        else:
            attr, value = self.settings.mail_attribute, query.value
        return f"(&{_PERSON}({attr}={escape_filter_chars(value)}))"

    def find_user(self, query: UserQuery) -> DirectoryUser:
        """The user with the account state a write decides on (lock, pwdReset, policy),
        so the write does not read it again."""
        s = self.settings
        flt, attrs = self._user_filter(query), self._user_attrs()
        found: dict[str, dict[str, Any]] = {}
        for base in s.base_dns:
            for entry in self._session.search(base, flt, attrs, size_limit=2):
                found.setdefault(str(entry["dn"]).lower(), entry)
        if not found:
            raise UserNotFound(f"no {query.kind.value} match under {'; '.join(s.base_dns)}")
        if len(found) > 1:
            raise AmbiguousUser(f"{len(found)} entries match the {query.kind.value} lookup")
        (entry,) = found.values()
        a = entry["attributes"]
        state = pp.AccountState.from_attrs(a)
        mail = pp.first(a, s.mail_attribute)
        return DirectoryUser(
            dn=str(entry["dn"]),
            id=pp.first(a, "entryUUID") or "",
            login=pp.first(a, s.login_attribute) or "",
            upn=mail,  # OpenLDAP has no UPN; LookupKind.UPN looks up the mail attribute
            mail=mail,
            display_name=pp.first(a, "displayName") or pp.first(a, "cn"),
            disabled=state.disabled,
            locked=self._locked(state),
            pwd_last_set=None if state.pwd_reset else state.changed,
            policy_dn=state.policy_dn,
            server=self._session.server,
            change_stamp=pp.first(a, "entryCSN") or "",
        )

    def look_ahead(self, query: UserQuery) -> None:
        with contextlib.suppress(DirectoryError):
            flt, attrs = self._user_filter(query), self._user_attrs()
            for base in self.settings.base_dns[:1]:  # one search outstanding at most
                self._session.search_ahead(base, flt, attrs, size_limit=2)

    def _user_attrs(self) -> list[str]:
        s = self.settings
        return [
            s.login_attribute,
            s.mail_attribute,
            "displayName",
            "cn",
            "entryUUID",
            "entryCSN",
            *pp.STATE_ATTRS,
        ]

    def _locked(self, state: pp.AccountState) -> bool:
        """Locked out (not disabled); honours pwdLockoutDuration when the policy sets one."""
        if state.locked_time is None or state.disabled:
            return False
        since = pp.parse_generalized_time(state.locked_time)
        seconds = pp.int_value(self._policy_attrs(state.policy_dn), "pwdLockoutDuration")
        if since is None or seconds <= 0:
            return True
        return dt.datetime.now(dt.UTC) < since + dt.timedelta(seconds=seconds)

    # ----------------------------------------------------------------- policy

    def _policy_attrs(self, policy_dn: str | None) -> dict[str, Any]:
        dn = policy_dn or self.settings.default_policy_dn
        if not dn:
            return {}

        def load() -> dict[str, Any]:
            try:
                entries = self._session.search(
                    dn, "(objectClass=pwdPolicy)", pp.POLICY_ATTRS, scope=ldap3.BASE
                )
            except UserNotFound as exc:  # noSuchObject: the policy entry is missing
                raise DirectoryError(f"password policy entry {dn} not found", dc=exc.dc) from exc
            if not entries:
                raise DirectoryError(f"{dn} is not a pwdPolicy entry")
            return {"dn": dn, **entries[0]["attributes"]}

        return self._policies.get(dn.lower(), load)

    def password_policy(self, user: DirectoryUser) -> PasswordPolicy:
        attrs = self._policy_attrs(user.policy_dn)
        return pp.policy_from_attrs(attrs, complexity=self.settings.require_complexity)

    # ----------------------------------------------------------------- writes

    @staticmethod
    def _usable(user: DirectoryUser) -> None:
        if user.disabled:
            raise AccountDisabled(
                f"{user.dn} is disabled (pwdAccountLockedTime {pp.DISABLED_LOCK_TIME})"
            )

    def _prevalidated(
        self, user: DirectoryUser, password: SecretStr, *, self_change: bool
    ) -> PasswordPolicy:
        return prevalidate_fresh(
            password.get_secret_value(),
            user,
            lambda: self.password_policy(user),
            self._policies.clear,
            self_change=self_change,
        )

    def _refused(self, exc: PolicyViolation, user: DirectoryUser, policy: PasswordPolicy) -> None:
        """slapd refused the password: the cached policy may be what was out of date,
        so the answer carries the policy read again."""
        self._policies.clear()
        with contextlib.suppress(DirectoryError):
            policy = self.password_policy(user)
        exc.policy = exc.policy or policy

    def reset_password(
        self,
        user: DirectoryUser,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        self._usable(user)
        if not unlock and user.locked:
            raise AccountLocked(f"{user.dn} is locked and unlock was not requested")
        policy = self._prevalidated(user, new_password, self_change=False)
        changed = user.pwd_last_set  # None when pwdReset is TRUE or it was never set
        young = changed is not None and dt.datetime.now(dt.UTC) < changed + policy.min_age
        dc = self._set_password(user, new_password, policy, young=young)
        if must_change or (unlock and user.locked) or self._may_force_change(user):
            # pwdReset is stated: the policy may have set it (pwdMustChange).
            changes = {
                **(_RESET_TRUE if must_change else _RESET_NONE),
                **(_UNLOCK if unlock else {}),
            }
            self._follow_up(user, changes, dc=dc, unlock=unlock, must_change=must_change)
        applied = (
            "password",
            *(("unlock",) if unlock else ()),
            *(("must_change",) if must_change else ()),
        )
        return WriteOutcome(dc=dc, applied=applied)

    def _may_force_change(self, user: DirectoryUser) -> bool:
        """Whether ppolicy may have set pwdReset on this change: it does when the policy
        has pwdMustChange and the writer is a password administrator (an identity with
        `manage`, against the advice above); then a reset without must_change has to
        delete it. Under a known policy without pwdMustChange the exop itself deletes
        pwdReset, pwdAccountLockedTime and pwdFailureTime (ppolicy_modify), in the same
        write, and no follow-up is needed. An unknown policy (no pwdPolicySubentry and
        no `default_policy_dn`: slapd may still apply its own default) may force it.
        The policy entry is cached (the pre-validation has just read it)."""
        attrs = self._policy_attrs(user.policy_dn)
        return not attrs or (pp.first(attrs, "pwdMustChange") or "").upper() == "TRUE"

    def _follow_up(
        self, user: DirectoryUser, changes: Changes, *, dc: str, unlock: bool, must_change: bool
    ) -> None:
        """The companion modify after the exop, retried while the directory is not
        reachable (it is idempotent). If it cannot be done, the entry is read back:
        when it already is as wanted (an administrator's reset clears the lock by
        itself) the reset is complete; otherwise PartiallyApplied names what is not."""
        failure = DirectoryError("the follow-up modify was not attempted")
        for delay in FOLLOW_UP_DELAYS:
            if delay:
                self._sleep(delay)
            try:
                self._modify(user.dn, changes)
                return
            except DirectoryUnavailable as exc:
                failure = exc
            except DirectoryError as exc:  # a server answer: asking again changes nothing
                failure = exc
                break
        not_applied = self._not_applied(user, unlock=unlock, must_change=must_change)
        if not not_applied:
            return
        raise PartiallyApplied(
            f"the new password WAS set on {dc}, but {', '.join(not_applied)} was not "
            f"applied: {type(failure).__name__}: {failure.detail}",
            applied=["password"],
            not_applied=not_applied,
            dc=dc,
        ) from failure

    def _not_applied(self, user: DirectoryUser, *, unlock: bool, must_change: bool) -> list[str]:
        """What of the follow-up the entry does not show (all of it when unreadable)."""
        wanted = [
            "must_change" if must_change else "clear must_change (pwdReset)",
            *(("unlock",) if unlock else ()),
        ]
        try:
            entry = self._session.entry(user.dn, ["pwdReset", "pwdAccountLockedTime"])
        except DirectoryError:
            return [f"{item} (unverified)" for item in wanted]
        attrs = entry["attributes"] if entry else {}
        reset = (pp.first(attrs, "pwdReset") or "").upper() == "TRUE"
        missing = [] if reset == must_change else [wanted[0]]
        if unlock and pp.first(attrs, "pwdAccountLockedTime"):
            missing.append("unlock")
        return missing

    def _set_password(
        self, user: DirectoryUser, new_password: SecretStr, policy: PasswordPolicy, *, young: bool
    ) -> str:
        """The Password Modify exop as the service account; the DC that took it.

        slapd 2.5 applies pwdMinAge to an administrator's change too, unless pwdReset
        is already TRUE. A forgotten password must be resettable the day after a change
        (as in AD), so a too-young password gets pwdReset first, undone on failure.
        """
        if young:
            self._modify(user.dn, _RESET_TRUE, guard=user)
        try:
            self._session.write(
                lambda conn: pp.password_modify(conn, user.dn, new_password), guard=user
            )
        except DirectoryError as exc:
            if young:
                self._undo_reset(user, exc)
            if isinstance(exc, PolicyViolation):
                self._refused(exc, user, policy)
            raise
        return self._session.dc

    def _undo_reset(self, user: DirectoryUser, failure: DirectoryError) -> None:
        """The password was NOT set: report the failure, noting a pwdReset left TRUE."""
        try:
            self._modify(user.dn, _RESET_NONE)
        except DirectoryError as exc:
            failure.detail += f" (and pwdReset was left TRUE: {exc.detail})"

    def change_password(
        self, user: DirectoryUser, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        self._usable(user)
        policy = self.password_policy(user)

        def prevalidate() -> None:
            nonlocal policy
            policy = self._prevalidated(user, new_password, self_change=True)

        try:
            dc = pp.change_as_user(
                self.settings, user, old_password, new_password, before_write=prevalidate
            )
        except PolicyViolation as exc:
            self._refused(exc, user, policy)
            raise
        return WriteOutcome(dc=dc, applied=("password",))

    def authenticate(self, user: DirectoryUser, password: SecretStr) -> None:
        # slapd answers an administrator's lock (our "disabled") as accountLocked.
        self._usable(user)
        bind_as_user(self.settings, user, password)

    def unlock(self, user: DirectoryUser) -> WriteOutcome:
        """Delete pwdAccountLockedTime and pwdFailureTime; a no-op when not locked.

        Left alone, the recorded failures stay until the next successful bind, and
        slapd 2.5 locks the account again at the very next wrong password. (A
        password change clears them itself, so reset(unlock=True) needs no relax.)
        """
        self._usable(user)
        dc = self._modify(user.dn, {**_UNLOCK, **_CLEAR_FAILURES}, relax=True, guard=user)
        return WriteOutcome(dc=dc, applied=("unlock",))

    # ----------------------------------------------------------------- groups

    def group_dns(self, user: DirectoryUser) -> frozenset[str]:
        return nested_groups(self._session, self.settings.base_dns, user.dn)

    # ----------------------------------------------------------------- health

    def check(self) -> HealthReport:
        def policy() -> str | None:
            if not self.settings.default_policy_dn:
                return None
            self._policy_attrs(None)
            return self.settings.default_policy_dn

        return run_check(
            self.settings,
            self._session,
            policy=policy,
            rights=lambda dn: probe_rights(self._session, dn, person=_PERSON),
        )

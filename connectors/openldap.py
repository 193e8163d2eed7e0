"""OpenLDAP with the ppolicy overlay (slapd 2.5).

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
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import ldap3
from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from connectors import _ppolicy as pp
from connectors._bind_as_user import bind_as_user
from connectors._ldap import (
    Context,
    close_quietly,
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
    PartiallyApplied,
    PasswordPolicy,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    UserRef,
    WriteOutcome,
)
from connectors.prevalidate import prevalidate

T = TypeVar("T")
Changes = dict[str, list[tuple[str, list[str]]]]

_MAX_GROUP_DEPTH = 16
_PERSON = "(|(objectClass=person)(objectClass=posixAccount))"
_GROUP = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
# REPLACE with no value deletes the attribute and is a no-op when it is absent.
_RESET_TRUE: Changes = {"pwdReset": [(ldap3.MODIFY_REPLACE, ["TRUE"])]}
_RESET_NONE: Changes = {"pwdReset": [(ldap3.MODIFY_REPLACE, [])]}
_UNLOCK: Changes = {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [])]}
# pwdFailureTime is NO-USER-MODIFICATION: deleting it needs the Relax Rules control
# and `manage` on that attribute alone (which does not bypass any password check).
_CLEAR_FAILURES: Changes = {"pwdFailureTime": [(ldap3.MODIFY_REPLACE, [])]}
_RELAX = ("1.3.6.1.4.1.4203.666.5.12", True, None)


class OpenLdapConnector:
    """`DirectoryConnector` for slapd + ppolicy. One per worker thread.

    The service connection is opened on first use and kept: a TLS handshake and a
    bind per call made a reset ~70x slower than the bare write (bench/). A connection
    that went stale while idle is replaced: a read that fails on a reused connection is
    retried once on a fresh one, and every write follows such a read, so a write never
    goes out on a dead socket. Failover across `settings.urls` is `open_connection`'s.
    """

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self._conn: ldap3.Connection | None = None

    def __repr__(self) -> str:
        return f"OpenLdapConnector(name={self.settings.name!r}, urls={self.settings.urls!r})"

    # ----------------------------------------------------------------- connections

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def __del__(self) -> None:
        # A connector dropped without close() must not leak its socket. At interpreter
        # exit anything may already be torn down: never let that surface.
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110
            pass

    def _service(self) -> ldap3.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = open_connection(self.settings, context="service_bind", refine=pp.refine)
        return self._conn

    def _dc(self) -> str:
        return server_url(self._conn) if self._conn is not None else ""

    def _run(self, context: Context, fn: Callable[[ldap3.Connection], T]) -> T:
        """`fn(conn)` on the service connection, ldap3 errors translated (with ppolicy).
        A read on a reused connection that turns out dead is retried once, fresh."""
        reused = self._conn is not None and not self._conn.closed
        try:
            return self._run_once(context, fn)
        except DirectoryUnavailable:
            if not (reused and context == "search"):
                raise
            return self._run_once(context, fn)

    def _run_once(self, context: Context, fn: Callable[[ldap3.Connection], T]) -> T:
        conn = self._service()
        dc = server_url(conn)
        try:
            with translate_errors(context, dc=dc, refine=pp.refine, conn=conn):
                return fn(conn)
        except DirectoryUnavailable:
            self.close()
            raise
        except DirectoryError as exc:
            exc.dc = exc.dc or dc
            raise

    def _search(
        self,
        base: str,
        flt: str,
        attrs: list[str],
        *,
        scope: str = ldap3.SUBTREE,
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        def search(conn: ldap3.Connection) -> list[dict[str, Any]]:
            conn.search(base, flt, search_scope=scope, attributes=attrs, size_limit=size_limit)
            return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]

        return self._run("search", search)

    def _modify(self, dn: str, changes: Changes, *, relax: bool = False) -> None:
        controls = [_RELAX] if relax else None
        self._run("write", lambda conn: conn.modify(dn, changes, controls=controls))

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

    def find_user(self, query: UserQuery) -> UserRef:
        s = self.settings
        flt = self._user_filter(query)
        attrs = [
            s.login_attribute,
            s.mail_attribute,
            "displayName",
            "cn",
            "entryUUID",
            *pp.STATE_ATTRS,
        ]
        found: dict[str, dict[str, Any]] = {}
        for base in s.base_dns:
            for entry in self._search(base, flt, attrs, size_limit=2):
                found.setdefault(str(entry["dn"]).lower(), entry)
        if not found:
            raise UserNotFound(f"no {query.kind.value} match under {'; '.join(s.base_dns)}")
        if len(found) > 1:
            raise AmbiguousUser(f"{len(found)} entries match the {query.kind.value} lookup")
        (entry,) = found.values()
        a = entry["attributes"]
        state = pp.AccountState.from_attrs(a)
        locked = self._locked(state)
        mail = pp.first(a, s.mail_attribute)
        return UserRef(
            dn=str(entry["dn"]),
            id=pp.first(a, "entryUUID") or "",
            login=pp.first(a, s.login_attribute) or "",
            upn=mail,  # OpenLDAP has no UPN; LookupKind.UPN looks up the mail attribute
            mail=mail,
            display_name=pp.first(a, "displayName") or pp.first(a, "cn"),
            disabled=state.disabled,
            locked=locked,
            pwd_last_set=None if state.pwd_reset else state.changed,
        )

    def _read_state(self, user: UserRef) -> pp.AccountState:
        entries = self._search(user.dn, "(objectClass=*)", pp.STATE_ATTRS, scope=ldap3.BASE)
        if not entries:
            raise UserNotFound(f"{user.dn} is gone")
        return pp.AccountState.from_attrs(entries[0]["attributes"])

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
        try:
            entries = self._search(dn, "(objectClass=pwdPolicy)", pp.POLICY_ATTRS, scope=ldap3.BASE)
        except UserNotFound as exc:  # noSuchObject: the policy entry, not a user, is missing
            raise DirectoryError(f"password policy entry {dn} not found", dc=exc.dc) from exc
        if not entries:
            raise DirectoryError(f"{dn} is not a pwdPolicy entry")
        return {"dn": dn, **entries[0]["attributes"]}

    def _policy_for(self, state: pp.AccountState) -> PasswordPolicy:
        attrs = self._policy_attrs(state.policy_dn)
        return pp.policy_from_attrs(attrs, complexity=self.settings.require_complexity)

    def password_policy(self, user: UserRef) -> PasswordPolicy:
        return self._policy_for(self._read_state(user))

    # ----------------------------------------------------------------- writes

    def _usable_state(self, user: UserRef) -> pp.AccountState:
        state = self._read_state(user)
        if state.disabled:
            raise AccountDisabled(
                f"{user.dn} is disabled (pwdAccountLockedTime {pp.DISABLED_LOCK_TIME})"
            )
        return state

    def reset_password(
        self,
        user: UserRef,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        require_secure_for_writes(self.settings)
        state = self._usable_state(user)
        if not unlock and self._locked(state):
            raise AccountLocked(f"{user.dn} is locked and unlock was not requested")
        policy = self._policy_for(state)
        prevalidate(new_password.get_secret_value(), policy, user, self_change=False)
        self._set_password(user, new_password, policy, young=state.too_young(policy.min_age))
        dc = self._dc()
        # The exop carries the password only, so the companions need a second modify.
        # pwdReset is always stated: ppolicy may set it on an administrator's change.
        changes = {
            **(_RESET_TRUE if must_change else _RESET_NONE),
            **(_UNLOCK if unlock else {}),
        }
        try:
            self._modify(user.dn, changes)
        except DirectoryError as exc:
            raise PartiallyApplied(
                f"password set, but writing {', '.join(changes)} failed: {exc.detail}",
                applied=["password"],
                dc=dc,
            ) from exc
        applied = (
            "password",
            *(("unlock",) if unlock else ()),
            *(("must_change",) if must_change else ()),
        )
        return WriteOutcome(dc=dc, applied=applied)

    def _set_password(
        self, user: UserRef, new_password: SecretStr, policy: PasswordPolicy, *, young: bool
    ) -> None:
        """The Password Modify exop as the service account.

        slapd 2.5 applies pwdMinAge to an administrator's change too, unless pwdReset
        is already TRUE. A forgotten password must be resettable the day after a change
        (as in AD), so a too-young password gets pwdReset first, undone on failure.
        """
        if young:
            self._modify(user.dn, _RESET_TRUE)

        try:
            self._run("write", lambda conn: pp.password_modify(conn, user.dn, new_password))
        except DirectoryError as exc:
            if isinstance(exc, PolicyViolation):
                exc.policy = exc.policy or policy
            if young:
                self._undo_reset(user, exc)
            raise

    def _undo_reset(self, user: UserRef, failure: DirectoryError) -> None:
        try:
            self._modify(user.dn, _RESET_NONE)
        except DirectoryError as exc:
            raise PartiallyApplied(
                f"password not set ({failure.detail}); pwdReset left TRUE: {exc.detail}",
                applied=["must_change"],
                dc=failure.dc,
            ) from failure

    def change_password(
        self, user: UserRef, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        require_secure_for_writes(self.settings)
        policy = self._policy_for(self._usable_state(user))
        # Bound as the user, with the ppolicy control: a wrong old password is
        # wrong_old_password, a locked account says accountLocked.
        conn = open_connection(
            self.settings,
            user=user.dn,
            password=old_password,
            context="user_bind",
            bind_controls=[pp.PPOLICY_REQUEST],
            refine=pp.refine,
        )
        dc = server_url(conn)
        try:
            prevalidate(new_password.get_secret_value(), policy, user, self_change=True)
            with translate_errors("change", dc=dc, refine=pp.refine, conn=conn):
                pp.password_modify(conn, user.dn, new_password, old_password)
        except PolicyViolation as exc:
            exc.policy = exc.policy or policy
            raise
        finally:
            pp.forget_secrets(conn)
            close_quietly(conn)
        return WriteOutcome(dc=dc, applied=("password",))

    def authenticate(self, user: UserRef, password: SecretStr) -> None:
        bind_as_user(self.settings, user, password)

    def unlock(self, user: UserRef) -> WriteOutcome:
        """Delete pwdAccountLockedTime and pwdFailureTime; a no-op when not locked.

        Left alone, the recorded failures stay until the next successful bind, and
        slapd 2.5 locks the account again at the very next wrong password. (A
        password change clears them itself, so reset(unlock=True) needs no relax.)
        """
        require_secure_for_writes(self.settings)
        self._usable_state(user)
        self._modify(user.dn, {**_UNLOCK, **_CLEAR_FAILURES}, relax=True)
        return WriteOutcome(dc=self._dc(), applied=("unlock",))

    # ----------------------------------------------------------------- groups

    def _group_bases(self) -> list[str]:
        """The naming contexts holding our base DNs: groups usually live outside them."""
        root = self._search("", "(objectClass=*)", ["namingContexts"], scope=ldap3.BASE)
        attrs = root[0]["attributes"] if root else {}
        contexts = [str(v) for v in pp.values(attrs, "namingContexts")]
        bases = [b.lower() for b in self.settings.base_dns]
        useful = [c for c in contexts if any(b.endswith(c.lower()) for b in bases)]
        return useful or list(self.settings.base_dns)

    def group_dns(self, user: UserRef) -> frozenset[str]:
        """Static groups, nested: member-of-member to a fixed point, depth capped."""
        seen: set[str] = set()
        frontier = {user.dn}
        bases = self._group_bases()
        for _ in range(_MAX_GROUP_DEPTH):
            if not frontier:
                break
            members = "".join(
                f"(member={escape_filter_chars(dn)})(uniqueMember={escape_filter_chars(dn)})"
                for dn in sorted(frontier)
            )
            found = {
                str(e["dn"])
                for base in bases
                for e in self._search(base, f"(&{_GROUP}(|{members}))", ["1.1"])
            }
            frontier = {dn for dn in found if dn.lower() not in seen}
            seen.update(dn.lower() for dn in found)
        return frozenset(seen)

    # ----------------------------------------------------------------- health

    def check(self) -> HealthReport:
        items = tuple(self._check_items())
        return HealthReport(directory=self.settings.name, items=items)

    def _check_items(self) -> Iterator[CheckItem]:
        try:
            require_secure_for_writes(self.settings)
            yield CheckItem("transport", True, "ldaps or StartTLS on every URL")
        except DirectoryError as exc:
            yield CheckItem("transport", False, exc.detail)
        try:
            conn = self._service()
        except DirectoryUnavailable as exc:
            yield CheckItem("connect", False, exc.detail)
            return
        except DirectoryError as exc:
            yield CheckItem("connect", True, "TLS handshake with certificate validation")
            yield CheckItem("service_bind", False, exc.detail)
            return
        yield CheckItem("connect", True, f"{server_url(conn)} (certificate validated)")
        yield CheckItem("service_bind", True, self.settings.bind_dn)
        probe: str | None = None
        for base in self.settings.base_dns:
            try:
                self._search(base, "(objectClass=*)", ["1.1"], scope=ldap3.BASE)
                users = self._search(base, _PERSON, ["1.1"], size_limit=1)
                probe = probe or (str(users[0]["dn"]) if users else None)
                yield CheckItem(f"search_base:{base}", True, "readable")
            except DirectoryError as exc:
                yield CheckItem(f"search_base:{base}", False, exc.detail)
        if self.settings.default_policy_dn:
            try:
                self._policy_attrs(None)
                yield CheckItem("default_policy", True, self.settings.default_policy_dn)
            except DirectoryError as exc:
                yield CheckItem("default_policy", False, exc.detail)
        yield from self._write_rights(probe)

    def _write_rights(self, probe: str | None) -> Iterator[CheckItem]:
        """Probe write access without changing data.

        slapd checks the ACLs of every modification of a modify (acl_check_modlist)
        before applying any, and a modify is atomic: deleting values that cannot
        exist (a random userPassword, a pre-epoch pwdAccountLockedTime) fails with
        noSuchAttribute when we may write, insufficientAccessRights when we may not,
        and changes nothing either way. pwdReset has the same ACL in a sane setup
        but no value that is safe to name, so it is not probed.
        """
        never = "19000101000000Z"
        yield self._probe(
            "write_rights",
            probe,
            {
                "pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [never])],
                "userPassword": [(ldap3.MODIFY_DELETE, ["{SSHA}" + uuid.uuid4().hex])],
            },
            relax=False,
        )
        yield self._probe(
            "unlock_rights",
            probe,
            {
                "pwdFailureTime": [(ldap3.MODIFY_DELETE, [never])],
            },
            relax=True,
        )

    def _probe(self, name: str, probe: str | None, changes: Changes, *, relax: bool) -> CheckItem:
        what = ", ".join(changes) + (" (manage, with Relax Rules)" if relax else " (write)")
        if probe is None:
            return CheckItem(name, True, "not probed: no user under the search bases")
        try:
            self._modify(probe, changes, relax=relax)
        except AccessDenied as exc:
            return CheckItem(name, False, f"cannot change {what}: {exc.detail}")
        except DirectoryError as exc:
            if isinstance(exc.__cause__, lexc.LDAPNoSuchAttributeResult):
                return CheckItem(name, True, f"may change {what}")
            return CheckItem(name, False, exc.detail)
        return CheckItem(name, False, "probe modify unexpectedly succeeded")

"""Search, modify and Password Modify through an ldap3 connection, with the request
encoded by connectors/_ber.py instead of pyasn1.

Everything else is ldap3's: the values that go into the request are prepared by
ldap3's own functions (filter parsing and escaping, attribute value conversion, SASLprep
of passwords, DN checks), the answer is read and decoded by the connection's strategy
(`post_send_search` / `post_send_single_response`), so results, controls, exceptions
(raise_exceptions) and `connection.result` / `connection.response` are what the
ldap3 method would have produced. The request dict ldap3 keeps for the answer
(`strategy._outstanding`: the attributes for empty-attribute filling, the request for
referral chasing) has the same keys as ldap3's `decode_request`.

Used only on what the agent opens (connectors/_ldap.py: SIMPLE bind, SYNC strategy,
not lazy); any other connection goes through the ldap3 method unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import ldap3
from ldap3 import SEQUENCE_TYPES
from ldap3.core import exceptions as lexc
from ldap3.operation.search import parse_filter
from ldap3.protocol.convert import (
    prepare_filter_for_sending,
    prepare_for_sending,
    validate_attribute_value,
)
from ldap3.protocol.rfc4511 import Control
from ldap3.protocol.sasl.sasl import validate_simple_password
from ldap3.utils.dn import safe_dn as _ldap3_safe_dn

from connectors import _ber

PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1"  # noqa: S105 - an OID
_SCOPES = {ldap3.BASE: 0, ldap3.LEVEL: 1, ldap3.SUBTREE: 2, 0: 0, 1: 1, 2: 2}
_DEREF_ALWAYS = 3  # ldap3.Connection.search's default
_OPERATIONS = {ldap3.MODIFY_ADD: 0, ldap3.MODIFY_DELETE: 1, ldap3.MODIFY_REPLACE: 2}
_OPERATIONS.update({ldap3.MODIFY_INCREMENT: 3, 0: 0, 1: 1, 2: 2, 3: 3})

# ldap3's DN check and normalisation (~45 us): a pure function of the string, and a
# reset names the same DNs again and again (the search base, the user's DN twice).
# A DN it refuses raises every time (exceptions are not cached).
safe_dn = functools.lru_cache(maxsize=4096)(_ldap3_safe_dn)

Controls = Sequence[tuple[str, bool, bytes | None]] | None
Checked = list[tuple[str, bool, bytes | None]] | None  # controls as _check_controls returns


def _direct(conn: ldap3.Connection, controls: Controls) -> bool:
    """A connection as connectors/_ldap.py opens it, and controls given as
    (oid, criticality, value) tuples (not ldap3's pyasn1 Control objects, such as
    ldap3.protocol.microsoft's): our bytes can go straight out."""
    return (
        all(not isinstance(c, Control) for c in controls or ())
        and conn.strategy_type == ldap3.SYNC
        and conn.sasl_mechanism is None
        and not conn.lazy
        and conn.strategy.sync
        and not conn.strategy.thread_safe
        and conn.fast_decoder
        and conn.server.schema is None  # no schema: ldap3 checks no names against one
    )


def _is_operation(value: Any) -> bool:
    try:
        return value in _OPERATIONS
    except TypeError:  # unhashable: a list, so not an operation
        return False


def _check_controls(controls: Controls) -> Checked:
    if not controls:
        return None
    checked = []
    for control in controls:
        if len(control) != 3 or not isinstance(control[1], bool):
            raise lexc.LDAPControlError(
                "control must be a sequence of 3 elements: controlType, criticality "
                "(boolean) and controlValue (None if not provided)"
            )
        checked.append((control[0], control[1], control[2]))
    return checked


def _send(
    conn: ldap3.Connection,
    op: bytes,
    controls: Checked,
    request: dict[str, Any],
) -> int:
    """Send one request as `BaseStrategy.send` + `sending` do; returns its message id."""
    conn.request = None
    if not conn.listening:
        conn.last_error = "unable to send message, socket is not open"
        raise lexc.LDAPSocketOpenError(conn.last_error)
    if conn.sasl_in_progress:
        conn.last_error = "cannot send operation requests while SASL bind is in progress"
        raise lexc.LDAPSASLBindInProgressError(conn.last_error)
    message_id: int = conn.server.next_message_id()
    data = _ber.message(message_id, op, controls)
    request["controls"] = controls
    conn.strategy._outstanding[message_id] = request
    try:
        conn.socket.sendall(data)
    except OSError as exc:
        conn.last_error = "socket sending error" + str(exc)
        raise lexc.communication_exception_factory(lexc.LDAPSocketSendError, type(exc)(str(exc)))(
            conn.last_error
        ) from None
    if conn.usage:
        conn._usage.update_transmitted_message(request, len(data))
    return message_id


def _single(
    conn: ldap3.Connection,
    op: bytes,
    controls: Checked,
    request: dict[str, Any],
) -> dict[str, Any]:
    """Send `op` and read its one answer, under the connection's lock as ldap3 does;
    returns `conn.result` (ldap3 has raised already if the connection raises)."""
    with conn.connection_lock:
        conn.strategy.post_send_single_response(_send(conn, op, controls, request))
        conn._entries = []
        result: dict[str, Any] = conn.result
        return result


def search(
    conn: ldap3.Connection,
    base: str,
    flt: str,
    attributes: list[str],
    *,
    scope: str | int = ldap3.SUBTREE,
    controls: Controls = None,
    size_limit: int = 0,
) -> list[dict[str, Any]]:
    """`conn.search(base, flt, scope, attributes=..., controls=..., size_limit=...)`;
    returns (and leaves in conn.response) ldap3's response list."""
    if not _direct(conn, controls):
        conn.search(
            base,
            flt,
            search_scope=scope,
            attributes=attributes,
            controls=controls,
            size_limit=size_limit,
        )
        return list(conn.response or [])
    with conn.connection_lock:
        message_id = _send_search(
            conn, base, flt, attributes, scope=scope, controls=controls, size_limit=size_limit
        )
        return receive_search(conn, message_id)


def send_search(
    conn: ldap3.Connection,
    base: str,
    flt: str,
    attributes: list[str],
    *,
    scope: str | int = ldap3.SUBTREE,
    size_limit: int = 0,
) -> int | None:
    """Send the search `search` would send and return its message id without waiting
    for the answer (`receive_search` reads it); None, and nothing sent, on a connection
    this module does not encode for (the caller then uses `search`)."""
    if not _direct(conn, None):
        return None
    with conn.connection_lock:
        return _send_search(
            conn, base, flt, attributes, scope=scope, controls=None, size_limit=size_limit
        )


def receive_search(conn: ldap3.Connection, message_id: int) -> list[dict[str, Any]]:
    """The answer to the search sent as `message_id`, as `search` returns it."""
    with conn.connection_lock:
        response = conn.strategy.post_send_search(message_id)
        conn._entries = []
        return list(response)


def _send_search(
    conn: ldap3.Connection,
    base: str,
    flt: str,
    attributes: list[str],
    *,
    scope: str | int,
    controls: Controls,
    size_limit: int,
) -> int:
    attrs = list(attributes) if attributes else [ldap3.NO_ATTRIBUTES]
    if scope not in _SCOPES:
        raise lexc.LDAPInvalidScopeError("invalid scope type")
    checked = _check_controls(controls)
    conn.last_error = None
    if conn.check_names and base:
        base = safe_dn(base)
    root = parse_filter(
        flt,
        None,
        conn.auto_escape,
        conn.auto_encode,
        conn.server.custom_validator,
        conn.check_names,
    )
    op = _ber.search_request(
        base,
        _ber.filter_bytes(root.elements[0], prepare_filter_for_sending),
        attrs,
        scope=_SCOPES[scope],
        deref=_DEREF_ALWAYS,
        size_limit=size_limit,
    )
    request = {
        "type": "searchRequest",
        "base": base,
        "scope": _SCOPES[scope],
        "dereferenceAlias": _DEREF_ALWAYS,
        "sizeLimit": size_limit,
        "timeLimit": 0,
        "typesOnly": False,
        "filter": flt,
        "attributes": attrs,
    }
    return _send(conn, op, checked, request)


def modify(
    conn: ldap3.Connection,
    dn: str,
    changes: dict[str, Any],
    *,
    controls: Controls = None,
) -> bool:
    """`conn.modify(dn, changes, controls)`: changes as ldap3 takes them,
    {attribute: (operation, values)} or {attribute: [(operation, values), ...]};
    True when the server said success."""
    if not _direct(conn, controls):
        return bool(conn.modify(dn, changes, controls=controls))
    if not changes:
        conn.last_error = "no changes in modify request"
        raise lexc.LDAPChangeError(conn.last_error)
    prepared: list[tuple[str, int, list[bytes]]] = []
    listed: list[dict[str, Any]] = []
    if not isinstance(changes, dict):
        conn.last_error = "changes must be a dictionary"
        raise lexc.LDAPChangeError(conn.last_error)
    validator = conn.server.custom_validator
    for attribute, change in changes.items():
        single = isinstance(change, SEQUENCE_TYPES) and _is_operation(change[0])
        if single and len(change) != 2:
            conn.last_error = "malformed change"
            raise lexc.LDAPChangeError(conn.last_error)
        for item in [change] if single else change:
            if len(item) != 2 or not _is_operation(item[0]):
                conn.last_error = "invalid change list"
                raise lexc.LDAPChangeError(conn.last_error)
            operation, values = item
            values = values if isinstance(values, SEQUENCE_TYPES) else [values]
            raw = [
                prepare_for_sending(
                    validate_attribute_value(
                        None, attribute, v, conn.auto_encode, validator, conn.check_names
                    )
                )
                for v in values
            ]
            prepared.append((attribute, _OPERATIONS[operation], raw))
            code = _OPERATIONS[operation]
            listed.append({"operation": code, "attribute": {"type": attribute, "value": raw}})
    checked = _check_controls(controls)
    conn.last_error = None
    if conn.check_names:
        dn = safe_dn(dn)
    request = {"type": "modifyRequest", "entry": dn, "changes": listed}
    result = _single(conn, _ber.modify_request(dn, prepared), checked, request)
    ok = bool(result["type"] == "modifyResponse" and result["result"] == 0)
    if not ok and not conn.last_error:
        conn.last_error = result["description"]
    return ok


def password_modify(
    conn: ldap3.Connection,
    user: str,
    new: str,
    old: str | None = None,
    *,
    controls: Controls = None,
) -> None:
    """`conn.extend.standard.modify_password(user, old, new, hash_algorithm=None,
    controls=...)`: RFC 3062, the server hashes. Raises as ldap3 does on failure."""
    if not _direct(conn, controls):
        conn.extend.standard.modify_password(
            user, old_password=old, new_password=new, hash_algorithm=None, controls=controls
        )
        return
    if conn.check_names:
        user = safe_dn(user)
    old_raw = validate_simple_password(old, True) if old else None
    new_raw = validate_simple_password(new, True) if new else None
    value = _ber.passwd_modify_value(user, old_raw, new_raw)
    checked = _check_controls(controls)
    request = {"type": "extendedReq", "name": PASSWORD_MODIFY_OID, "value": value}
    result = _single(conn, _ber.extended_request(PASSWORD_MODIFY_OID, value), checked, request)
    # ExtendedOperation.decode_response + ModifyPassword.populate_result: a result that
    # get_response did not raise on (a referral) is still a failure.
    if result["result"] != 0:
        raise lexc.LDAPExtensionError(
            "extended operation error: " + result["description"] + " - " + result["message"]
        )

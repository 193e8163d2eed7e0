"""Op authenticate without servers: the secret part it carries, and how a failed
bind's answer is named (AD's `data NNN` sub-codes, the ppolicy bind control)."""

from __future__ import annotations

import pytest
from ldap3.core import exceptions as lexc
from pydantic import SecretStr

from cloud.sdk import PortalSigner, SDKError, build_request
from connectors._bind_as_user import refine_ad, refine_openldap
from connectors.base import AccountDisabled, AccountLocked, InvalidCredentials, PasswordExpired
from wire.messages import OPS_WITH_SECRET, SecretPart


def test_secret_part_carries_the_current_password_only() -> None:
    assert "authenticate" in OPS_WITH_SECRET
    SecretPart(new_password=None, old_password=SecretStr("pw")).check_op("authenticate")
    with pytest.raises(ValueError, match="does not fit"):
        both = SecretPart(new_password=SecretStr("n"), old_password=SecretStr("o"))
        both.check_op("authenticate")
    with pytest.raises(SDKError):  # the SDK refuses to build one without the password
        build_request(PortalSigner.generate(), tenant="t", agent_group="g", agents=[],
                      op="authenticate", user_kind="upn", user_value="a@b")


def _ad(data: str) -> lexc.LDAPInvalidCredentialsResult:
    return lexc.LDAPInvalidCredentialsResult(
        result=49, description="invalidCredentials",
        message=f"80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, "
                f"data {data}, v3839")


@pytest.mark.parametrize(("data", "error", "reason"), [
    ("52e", InvalidCredentials, None),
    ("525", InvalidCredentials, None),
    ("775", AccountLocked, None),
    ("533", AccountDisabled, None),
    ("701", AccountDisabled, None),
    ("532", PasswordExpired, "expired"),
    ("773", PasswordExpired, "must_change"),
])
def test_ad_bind_data_codes(data: str, error: type, reason: str | None) -> None:
    refined = refine_ad(_ad(data), "user_bind", None)
    assert refined is not None
    assert isinstance(refined, error)
    assert refined.reason == reason


def test_ppolicy_bind_control() -> None:
    exc = lexc.LDAPInvalidCredentialsResult(result=49, description="invalidCredentials")
    locked = {"controls": {"1.3.6.1.4.1.42.2.27.8.5.1": {"value": b"\x30\x03\x81\x01\x01"}}}
    expired = {"controls": {"1.3.6.1.4.1.42.2.27.8.5.1": {"value": b"\x30\x03\x81\x01\x00"}}}
    assert isinstance(refine_openldap(exc, "user_bind", locked), AccountLocked)
    refined = refine_openldap(exc, "user_bind", expired)
    assert isinstance(refined, PasswordExpired) and refined.reason == "expired"
    assert isinstance(refine_openldap(exc, "user_bind", None), InvalidCredentials)

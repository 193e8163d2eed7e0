"""What a failed sign-in says. Unknown users read what a wrong password reads."""

from __future__ import annotations

from cloud.sdk import Status

SIGNIN_ERRORS: dict[Status, str] = {
    Status.INVALID_CREDENTIALS: "Your user ID or password is incorrect.",
    Status.USER_NOT_FOUND: "Your user ID or password is incorrect.",
    Status.AMBIGUOUS_USER: "Your user ID or password is incorrect.",
    Status.ACCOUNT_LOCKED: "Your account is locked. You can unlock it with the link below.",
    Status.ACCOUNT_DISABLED: "Your account is disabled. Contact your administrator.",
    Status.PASSWORD_EXPIRED: "Your password has expired or must be changed. Reset it with "
                             "the link below.",
}

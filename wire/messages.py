"""Message models: request header and envelope, secret part, result, heartbeat.

Why strict pydantic with ``extra="forbid"``: whatever the agent acts on must be exactly
what was signed; lax coercion ("1" -> 1) or ignored extra fields would let two
readers of one signed message disagree. Canonical bytes are always computed from
``model_dump(mode="json")`` of the validated model, so what we verify is what we use.
docs/protocol.md section 3 lists every field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from wire.canonical import canonical_json
from wire.errors import EncodingError
from wire.status import Status

PROTOCOL_VERSION = 1

Op = Literal["reset", "change", "unlock", "preflight", "authenticate"]
UserKind = Literal["login", "upn", "id"]
KemAlg = Literal["x25519", "mlkem768-x25519"]

OPS_WITH_SECRET: frozenset[str] = frozenset({"reset", "change", "authenticate"})
# Ops whose secret part carries the current password (authenticate: only that one).
OPS_WITH_OLD_PASSWORD: frozenset[str] = frozenset({"change", "authenticate"})
OPS_WITH_NEW_PASSWORD: frozenset[str] = frozenset({"reset", "change"})

# Key ids: "<kind>_" + first 22 chars of base64url(sha256(raw public key)); see keys.py.
KID_PATTERN = r"^(ed25519|x25519|mlkem768x25519)_[A-Za-z0-9_-]{22}$"
SIGN_KID_PATTERN = r"^ed25519_[A-Za-z0-9_-]{22}$"
KEM_KID_PATTERN = r"^(x25519|mlkem768x25519)_[A-Za-z0-9_-]{22}$"
UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
# Names that end up in logs and routing keys: printable ASCII, no spaces.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
B64URL_PATTERN = r"^[A-Za-z0-9_-]+$"
# No control characters: user values and texts are logged by operators.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"

MAX_SEALED_ENTRIES = 64
MAX_SEALED_CHARS = 4096  # an mlkem768-x25519 entry for a 1 KiB secret part is ~2.9 k chars

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
UnixTime = Annotated[int, Field(ge=0, le=2**53 - 1)]
SignKid = Annotated[str, Field(pattern=SIGN_KID_PATTERN)]
KemKid = Annotated[str, Field(pattern=KEM_KID_PATTERN)]
B64Sealed = Annotated[str, Field(min_length=1, max_length=MAX_SEALED_CHARS, pattern=B64URL_PATTERN)]
# Enum fields are validated lax so that the JSON string maps to the StrEnum member;
# every other field is strict.
StatusField = Annotated[Status, Field(strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def canonical(self) -> bytes:
        """Canonical bytes of this model (what signatures and hashes cover)."""
        return canonical_json(self.model_dump(mode="json"))


class UserRef(_Strict):
    kind: UserKind
    value: Annotated[str, Field(min_length=1, max_length=256, pattern=PRINTABLE_PATTERN)]


class Options(_Strict):
    unlock: bool
    must_change: bool


class RequestHeader(_Strict):
    """The plaintext, signed part of a request: the relay routes on id/tenant/group/exp."""

    v: Literal[1]
    type: Literal["request"]
    id: Annotated[str, Field(pattern=UUID4_PATTERN)]
    tenant: Name
    agent_group: Name
    op: Op
    user: UserRef
    options: Options
    iat: UnixTime
    exp: UnixTime
    kem: KemAlg


class Signature(_Strict):
    kid: Annotated[str, Field(pattern=SIGN_KID_PATTERN)]
    alg: Literal["ed25519"]
    value: Annotated[str, Field(min_length=86, max_length=86, pattern=B64URL_PATTERN)]


class RequestEnvelope(_Strict):
    """The whole request as it travels: header, per-agent sealed secret, signature."""

    header: RequestHeader
    sealed: Annotated[dict[KemKid, B64Sealed], Field(max_length=MAX_SEALED_ENTRIES)]
    sig: Signature

    @model_validator(mode="after")
    def _sealed_matches_op_and_kem(self) -> RequestEnvelope:
        # Why here and not at decryption: a request that carries a secret it should not
        # (or lacks one it needs) is malformed whoever reads it.
        needs_secret = self.header.op in OPS_WITH_SECRET
        if needs_secret and not self.sealed:
            raise ValueError("op needs a sealed secret part")
        if not needs_secret and self.sealed:
            raise ValueError("op carries no secret; sealed must be empty")
        prefix = self.header.kem.replace("-", "") + "_"
        if any(not kid.startswith(prefix) for kid in self.sealed):
            raise ValueError("sealed key id does not match header.kem")
        return self

    def signed_part(self) -> dict[str, Any]:
        """What the portal signs: header and sealed, not the signature itself."""
        dumped = self.model_dump(mode="json")
        return {"header": dumped["header"], "sealed": dumped["sealed"]}


class SecretPart(_Strict):
    """The HPKE plaintext. SecretStr keeps passwords out of repr, str and logs."""

    new_password: Annotated[SecretStr, Field(min_length=1, max_length=512)] | None
    old_password: Annotated[SecretStr, Field(min_length=1, max_length=512)] | None

    def check_op(self, op: str) -> None:
        """Raise ValueError when the secrets present do not fit ``op``."""
        want_old = op in OPS_WITH_OLD_PASSWORD
        want_new = op in OPS_WITH_NEW_PASSWORD
        if (self.new_password is not None) != want_new or (
            self.old_password is not None
        ) != want_old:
            raise ValueError(f"secret part does not fit op {op!r}")

    def plaintext(self) -> bytes:
        """Canonical plaintext; the only place the passwords are revealed for sealing."""
        return canonical_json(
            {
                "new_password": _reveal(self.new_password),
                "old_password": _reveal(self.old_password),
            }
        )


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


JsonObject = dict[str, Any]


def _canonical_or_error(value: JsonObject | None) -> JsonObject | None:
    if value is not None:
        try:
            canonical_json(value)
        except EncodingError as exc:
            raise ValueError(f"not canonical JSON: {exc}") from exc
    return value


class ResultBody(_Strict):
    """What the agent reports. Never a password: only statuses, names and texts."""

    v: Literal[1]
    type: Literal["result"]
    request_id: Annotated[str, Field(pattern=UUID4_PATTERN)]
    # None only for a rejection of an envelope too broken to hash canonically.
    request_hash: Annotated[str, Field(min_length=43, max_length=43, pattern=B64URL_PATTERN)] | None
    agent_id: Name
    tenant: Name | None
    status: StatusField
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None
    message: Annotated[str, Field(max_length=1000, pattern=PRINTABLE_PATTERN)]
    detail: Annotated[str, Field(max_length=2000)]
    dc: Annotated[str, Field(max_length=256, pattern=PRINTABLE_PATTERN)] | None
    policy: JsonObject | None
    received_at: UnixTime
    completed_at: UnixTime

    @field_validator("policy")
    @classmethod
    def _policy_canonical(cls, value: JsonObject | None) -> JsonObject | None:
        return _canonical_or_error(value)

    @model_validator(mode="after")
    def _hash_only_missing_for_rejections(self) -> ResultBody:
        if self.request_hash is None and self.status != Status.REJECTED:
            raise ValueError("request_hash may be null only for status rejected")
        return self


class ResultEnvelope(_Strict):
    result: ResultBody
    sig: Signature


class HeartbeatBody(_Strict):
    """Liveness and health, so the relay can answer "no agent online" at once."""

    v: Literal[1]
    type: Literal["heartbeat"]
    agent_id: Name
    version: Annotated[str, Field(max_length=64, pattern=PRINTABLE_PATTERN)]
    sent_at: UnixTime
    directories: JsonObject
    in_flight: Annotated[int, Field(ge=0, le=1_000_000)]

    @field_validator("directories")
    @classmethod
    def _directories_canonical(cls, value: JsonObject) -> JsonObject:
        _canonical_or_error(value)
        return value


class HeartbeatEnvelope(_Strict):
    heartbeat: HeartbeatBody
    sig: Signature

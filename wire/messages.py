"""Message models: request header and envelope, secret part, result, heartbeat.

Why strict pydantic with ``extra="forbid"``: whatever the agent acts on must be exactly
what was signed; lax coercion ("1" -> 1) or ignored extra fields would let two
readers of one signed message disagree. Canonical bytes are always computed from
``model_dump(mode="json")`` of the validated model, so what we verify is what we use.
docs/protocol.md section 4 lists every field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from wire.canonical import b64url_decode, canonical_json
from wire.errors import EncodingError, Rejected
from wire.status import RejectReason, Status

PROTOCOL_VERSION = 1

# authenticate: the portal's sign-in through the agent (the agent binds as the user with
# the current password, sealed in old_password; new_password is null).
Op = Literal["reset", "change", "unlock", "preflight", "authenticate"]
UserKind = Literal["login", "upn", "id"]
KemAlg = Literal["x25519", "mlkem768-x25519"]

# Which members of the secret part each op carries (the others are null); an op not
# listed carries no secret part and its request has an empty ``sealed``.
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "reset": frozenset({"new_password"}),
    "change": frozenset({"new_password", "old_password"}),
    "authenticate": frozenset({"old_password"}),
}
OPS_WITH_SECRET: frozenset[str] = frozenset(SECRET_FIELDS)
# The key-id kind that goes with each header.kem value (docs/protocol.md 7.1).
KEM_KID_KIND: dict[str, str] = {"x25519": "x25519", "mlkem768-x25519": "mlkem768x25519"}

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
MAX_PASSWORD_CHARS = 512  # code points
# The largest valid secret part (two 512-code-point passwords, each code point escaped
# as \u00xx: 6181 bytes) sealed with the hybrid (enc 1120 + tag 16) is 9756 characters.
MAX_SEALED_CHARS = 10240


def _strict_b64url(value: str) -> str:
    """Why at schema time: a padded or non-canonical value decodes, in a lenient
    decoder, to the same bytes as the canonical one, so it must fail as malformed
    everywhere rather than open in one implementation and not in another."""
    b64url_decode(value)
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
UnixTime = Annotated[int, Field(ge=0, le=2**53 - 1)]
SignKid = Annotated[str, Field(pattern=SIGN_KID_PATTERN)]
KemKid = Annotated[str, Field(pattern=KEM_KID_PATTERN)]
B64Sealed = Annotated[
    str,
    Field(min_length=1, max_length=MAX_SEALED_CHARS, pattern=B64URL_PATTERN),
    AfterValidator(_strict_b64url),
]
# Enum fields are validated lax so that the JSON string maps to the StrEnum member;
# every other field is strict.
StatusField = Annotated[Status, Field(strict=False)]


def check_version(doc: Any, member: str, *, request_id: str | None = None) -> None:
    """Rejected(UNSUPPORTED_VERSION) when ``doc[member]["v"]`` is an integer other than
    ``PROTOCOL_VERSION``; anything else is left to the schema (malformed)."""
    body = doc.get(member) if isinstance(doc, dict) else None
    v = body.get("v") if isinstance(body, dict) else None
    if isinstance(v, int) and not isinstance(v, bool) and v != PROTOCOL_VERSION:
        raise Rejected(
            RejectReason.UNSUPPORTED_VERSION,
            f"protocol version {v} (this implementation speaks {PROTOCOL_VERSION})",
            request_id=request_id,
        )


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
    value: Annotated[
        str,
        Field(min_length=86, max_length=86, pattern=B64URL_PATTERN),
        AfterValidator(_strict_b64url),
    ]


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
        prefix = KEM_KID_KIND[self.header.kem] + "_"
        if any(not kid.startswith(prefix) for kid in self.sealed):
            raise ValueError("sealed key id does not match header.kem")
        return self

    def signed_part(self) -> dict[str, Any]:
        """What the portal signs: header and sealed, not the signature itself."""
        dumped = self.model_dump(mode="json")
        return {"header": dumped["header"], "sealed": dumped["sealed"]}


class SecretPart(_Strict):
    """The HPKE plaintext. SecretStr keeps passwords out of repr, str and logs."""

    new_password: Annotated[SecretStr, Field(min_length=1, max_length=MAX_PASSWORD_CHARS)] | None
    old_password: Annotated[SecretStr, Field(min_length=1, max_length=MAX_PASSWORD_CHARS)] | None

    def check_op(self, op: str) -> None:
        """Raise ValueError when the secrets present do not fit ``op`` (SECRET_FIELDS:
        exactly the listed members are strings, the others null)."""
        want = SECRET_FIELDS.get(op, frozenset())
        have = {
            name
            for name, value in (
                ("new_password", self.new_password),
                ("old_password", self.old_password),
            )
            if value is not None
        }
        if have != want:
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

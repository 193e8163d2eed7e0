"""What a portal imports to talk to writeback agents. No HTTP here: hand the bytes to
the relay client of your choice.

Five-minute tour::

    from cloud.sdk import PortalSigner, build_request, verify_result

    signer = PortalSigner.generate()          # once; signer.save(path) / PortalSigner.load(path)
    keyring_entry = signer.trusted_key()      # give this to agents at enrollment

    req = build_request(
        signer, tenant="acme", agent_group="hq", agents=group_agents,  # AgentPublicKeys
        op="reset", user_kind="upn", user_value="alice@acme.example",
        new_password=new_pw, unlock=True,
    )
    raw_result = relay.submit_and_wait(req.to_bytes())  # the relay routes on req.header;
                                                        # it cannot read secrets
    result = verify_result(raw_result, request=req, trusted_agents=group_agents)
    show(result.status, result.message)      # Status enum + safe user text

Two answers are about ordering rather than the directory: ``Status.SUPERSEDED``
(a newer request for the same directory user, as the relay received them, was
permitted first; this one was never written, the newer one decides the password)
and ``Status.IN_DOUBT`` (a write was permitted and its agent died before it could
say how it went; the request is never written again). ``PortalClient.wait_result``
(and ``submit_and_wait``) raises ``RequestInDoubt`` when such a request expired with
no signed answer at all, and ``RequestExpired`` only when nothing was ever permitted
to write; ``submit_and_wait`` raises ``RequestMaybeQueued`` when it lost the relay
after its request was or may have been queued (tell the user as for in_doubt).
``password_may_have_changed(status)`` says which answers a portal must not report
as "nothing changed".

Many requests at once: ``PortalClient.wait_results(ids)`` waits for several in one
long-poll; ``cloud.relay.portal_calls.PortalCalls(client).send(envelope, request.id)``
lets each thread of a busy portal send its own request and get its result while the
threads share the calls (what ``submit_and_wait`` would return or raise, for far fewer
HTTP calls: a request alone goes over that one call).

Rotation: ``rotate_portal_key(signer, now=..., overlap=...)`` gives the new signer and
the keyring entries to push to agents (old key with not_after, new key).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import SecretStr, ValidationError

from wire.canonical import b64url_decode, b64url_encode, canonical_json, sha256_b64
from wire.errors import Rejected, validation_detail
from wire.keyring import TrustedPortalKey
from wire.keys import AgentPublicKeys, key_id
from wire.messages import (
    OPS_WITH_SECRET,
    KemAlg,
    Op,
    Options,
    RequestEnvelope,
    RequestHeader,
    ResultBody,
    SecretPart,
    UserKind,
    UserRef,
)
from wire.results import MAX_RESULT_BYTES, open_result
from wire.sealing import seal
from wire.signing import Domain, sign
from wire.status import USER_MESSAGES, Status

__all__ = [
    "USER_MESSAGES",
    "AgentPublicKeys",
    "PortalRotation",
    "PortalSigner",
    "Result",
    "ResultRejected",
    "SDKError",
    "SignedRequest",
    "Status",
    "build_request",
    "password_may_have_changed",
    "rotate_portal_key",
    "verify_result",
]

Result = ResultBody
DEFAULT_TTL = 120


class SDKError(Exception):
    """Base of SDK errors. Messages never contain a password."""


class ResultRejected(SDKError):
    """A result that must not be believed. ``reason`` is a stable string."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PortalSigner:
    """The portal's Ed25519 request-signing key."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> PortalSigner:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> PortalSigner:
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def load(cls, path: str | Path) -> PortalSigner:
        """Read a key file written by save() (same format as the agent's key files)."""
        path = Path(path)
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("v") != 1 or doc.get("alg") != "ed25519":
            raise SDKError(f"{path}: not a v1 ed25519 key file")
        return cls.from_private_bytes(b64url_decode(doc["private"]))

    def save(self, path: str | Path) -> None:
        """Write the private key with mode 0600 (created so, never widened)."""
        doc = {"v": 1, "alg": "ed25519", "private": b64url_encode(self._key.private_bytes_raw())}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.chmod(path, 0o600)

    @property
    def kid(self) -> str:
        return key_id("ed25519", self._key.public_key().public_bytes_raw())

    def trusted_key(
        self, *, not_before: int | None = None, not_after: int | None = None
    ) -> TrustedPortalKey:
        """The entry an agent's PortalKeyring needs to accept this signer's requests."""
        return TrustedPortalKey(
            kid=self.kid,
            key=b64url_encode(self._key.public_key().public_bytes_raw()),
            not_before=not_before,
            not_after=not_after,
        )

    def _sign_request(self, header: RequestHeader, sealed: dict[str, str]) -> RequestEnvelope:
        signed = {"header": header.model_dump(mode="json"), "sealed": sealed}
        return RequestEnvelope(
            header=header, sealed=sealed, sig=sign(self._key, Domain.REQUEST, signed)
        )

    def __repr__(self) -> str:
        return f"PortalSigner(kid={self.kid!r})"


def group_agents(listing: Sequence[dict[str, Any]]) -> list[AgentPublicKeys]:
    """The public keys to seal to, from the relay's agent list of one group
    (`PortalClient.agents(group)`: [{agent_id, public_keys, ...}])."""
    return [
        AgentPublicKeys.model_validate({**item["public_keys"], "agent_id": item["agent_id"]})
        for item in listing
    ]


@dataclass(frozen=True)
class PortalRotation:
    """Result of rotate_portal_key: sign with ``signer`` from now on, and push
    ``keyring_entries`` to every agent (old key retiring at its not_after, new key)."""

    signer: PortalSigner
    keyring_entries: list[TrustedPortalKey]


def rotate_portal_key(
    current: PortalSigner, *, overlap: int, now: int | None = None
) -> PortalRotation:
    """Start a rotation: the old key stays trusted for ``overlap`` seconds.

    Push the entries to agents *before* signing with the new key, so no agent sees a
    request signed by a key it does not know yet.
    """
    t = int(time.time()) if now is None else now
    new = PortalSigner.generate()
    return PortalRotation(
        new, [current.trusted_key(not_after=t + overlap), new.trusted_key(not_before=t)]
    )


@dataclass(frozen=True)
class SignedRequest:
    """A built request. Keep it until the result arrives: verify_result needs it."""

    envelope: RequestEnvelope

    @property
    def header(self) -> RequestHeader:
        return self.envelope.header

    @property
    def id(self) -> str:
        return self.envelope.header.id

    def to_bytes(self) -> bytes:
        """The wire bytes (canonical JSON). Contains no password in clear."""
        return canonical_json(self.envelope.model_dump(mode="json"))

    @property
    def request_hash(self) -> str:
        """base64url(sha256(wire bytes)); every result for this request echoes it."""
        return sha256_b64(self.to_bytes())


def build_request(
    signer: PortalSigner,
    *,
    tenant: str,
    agent_group: str,
    agents: Sequence[AgentPublicKeys],
    op: Op,
    user_kind: UserKind,
    user_value: str,
    new_password: str | SecretStr | None = None,
    old_password: str | SecretStr | None = None,
    unlock: bool = False,
    must_change: bool = False,
    ttl: int = DEFAULT_TTL,
    kem: KemAlg | None = None,
    now: int | None = None,
    request_id: str | None = None,
) -> SignedRequest:
    """Build, seal (to every agent of the group) and sign one request.

    ``agents`` are the group's enrolled public records as the relay returned them;
    all must use one KEM (``kem`` defaults to theirs). Raises SDKError on misuse.
    """
    t = int(time.time()) if now is None else now
    kems: set[KemAlg] = {a.kem for a in agents}
    if kem is None and len(kems) > 1:
        raise SDKError(f"agents of group {agent_group} use different KEMs {sorted(kems)}")
    chosen: KemAlg = "x25519"
    if kem is not None:
        chosen = kem
    elif kems:
        chosen = next(iter(kems))
    try:
        header = RequestHeader(
            v=1,
            type="request",
            id=request_id or str(uuid.uuid4()),
            tenant=tenant,
            agent_group=agent_group,
            op=op,
            user=UserRef(kind=user_kind, value=user_value),
            options=Options(unlock=unlock, must_change=must_change),
            iat=t,
            exp=t + ttl,
            kem=chosen,
        )
        secret = SecretPart(new_password=_secret(new_password), old_password=_secret(old_password))
        secret.check_op(op)
    except (ValidationError, ValueError) as exc:
        detail = validation_detail(exc) if isinstance(exc, ValidationError) else str(exc)
        raise SDKError(f"invalid request: {detail}") from None
    sealed: dict[str, str] = {}
    if op in OPS_WITH_SECRET:
        if not agents:
            raise SDKError(f"no enrolled agent in group {agent_group} to seal to")
        try:
            sealed = seal(header, secret.plaintext(), _unique(agents))
        except ValueError as exc:
            raise SDKError(str(exc)) from None
    return SignedRequest(signer._sign_request(header, sealed))


def verify_result(
    raw: bytes,
    *,
    request: SignedRequest,
    trusted_agents: Sequence[AgentPublicKeys],
    max_bytes: int = MAX_RESULT_BYTES,
) -> Result:
    """Check a result's signature (by one of ``trusted_agents``) and that it answers
    ``request``. Raises ResultRejected; a returned Result can be shown to the user."""
    try:
        result, _agent = open_result(raw, trusted_agents, max_bytes=max_bytes)
    except Rejected as exc:
        raise ResultRejected(exc.reason.value, exc.detail) from None
    if result.request_id != request.id:
        raise ResultRejected("wrong_request", f"result is for request {result.request_id}")
    if result.request_hash is None:
        if result.status != Status.REJECTED:  # model already enforces; kept for clarity
            raise ResultRejected("wrong_request", "result has no request_hash")
    elif result.request_hash != request.request_hash:
        raise ResultRejected("wrong_request", "request_hash does not match the request sent")
    if result.tenant is not None and result.tenant != request.header.tenant:
        raise ResultRejected("wrong_tenant", f"result is for tenant {result.tenant}")
    return result


def password_may_have_changed(status: Status) -> bool:
    """Whether the user's password may differ from before after this answer: True for
    succeeded and in_doubt; a portal should not say "nothing changed" for in_doubt."""
    return status in (Status.SUCCEEDED, Status.IN_DOUBT)


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def _unique(agents: Sequence[AgentPublicKeys]) -> list[AgentPublicKeys]:
    return list({a.kem_kid: a for a in agents}.values())

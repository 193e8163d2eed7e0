"""The agent's request verification, in the order docs/protocol.md section 6 fixes.

size cap (raw bytes) -> parse -> version -> schema -> known key id -> signature ->
tenant and agent group -> time window -> [journal, not here] -> decryption.

Why this order: each step only touches what earlier steps vouched for. Nothing is
parsed before the size is known to be sane, nothing is decrypted before the sender is
authenticated and the request is known to be ours and current, and the journal's
dedupe (agent/journal.py) sits between ``verify()`` and ``VerifiedRequest.open()`` so
a replay is refused without ever decrypting it again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from wire.canonical import canonical_json, parse_json, sha256_b64
from wire.errors import EncodingError, Rejected, validation_detail
from wire.keyring import PortalKeyring
from wire.keys import AgentKeys
from wire.messages import (
    OPS_WITH_SECRET,
    UUID4_PATTERN,
    RequestEnvelope,
    RequestHeader,
    SecretPart,
    check_version,
)
from wire.sealing import open_sealed
from wire.signing import Domain, verify
from wire.status import RejectReason

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_SKEW = 60
DEFAULT_MAX_LIFETIME = 900

Clock = Callable[[], float]
_UUID4_RE = re.compile(UUID4_PATTERN)


@dataclass(frozen=True, repr=False)
class VerifiedRequest:
    """A request that passed every check up to decryption.

    ``open()`` is the last step; the pipeline calls it after the journal has accepted
    the id. The secrets are never held here, only the sealed entries.
    """

    envelope: RequestEnvelope
    request_hash: str
    _keys: AgentKeys
    _clock: Clock

    @property
    def header(self) -> RequestHeader:
        return self.envelope.header

    @property
    def id(self) -> str:
        return self.envelope.header.id

    def open(self) -> SecretPart:
        """Decrypt the entry sealed to one of this agent's HPKE keys.

        Unlock and preflight carry no secret and return an empty SecretPart.
        """
        header = self.header
        if header.op not in OPS_WITH_SECRET:
            return SecretPart(new_password=None, old_password=None)
        usable = self._keys.kem_keys(int(self._clock()))
        kid = next((k for k in usable if k in self.envelope.sealed), None)
        if kid is None:
            raise self._rejected(
                RejectReason.NOT_FOR_THIS_AGENT,
                f"no sealed entry for this agent's keys {sorted(usable)}",
            )
        try:
            plaintext = open_sealed(header, self.envelope.sealed[kid], usable[kid])
        except ValueError:
            raise self._rejected(
                RejectReason.DECRYPT_FAILED, f"sealed entry for {kid} does not open"
            ) from None
        try:
            doc = parse_json(plaintext)
            # Canonical bytes only: the one spelling every portal produces, so a
            # decoder that mishandles escapes cannot read another password than was sent.
            if canonical_json(doc) != plaintext:
                raise ValueError("secret part is not canonical JSON")
            secret = SecretPart.model_validate(doc)
            secret.check_op(header.op)
        except (ValueError, ValidationError):
            # No detail from the exception: it could quote the plaintext.
            raise self._rejected(
                RejectReason.MALFORMED, "secret part is not valid for this op"
            ) from None
        return secret

    def _rejected(self, reason: RejectReason, detail: str) -> Rejected:
        return Rejected(reason, detail, request_id=self.id, request_hash=self.request_hash)

    def __repr__(self) -> str:
        h = self.header
        return f"VerifiedRequest(id={h.id!r}, op={h.op!r}, tenant={h.tenant!r})"


class RequestVerifier:
    """Checks raw request bytes for one agent; see the module docstring for the order."""

    def __init__(
        self,
        keyring: PortalKeyring,
        agent_keys: AgentKeys,
        *,
        tenant: str,
        agent_group: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_skew: int = DEFAULT_MAX_SKEW,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        clock: Clock = time.time,
    ) -> None:
        self._keyring = keyring
        self._keys = agent_keys
        self._tenant = tenant
        self._group = agent_group
        self._max_bytes = max_bytes
        self._max_skew = max_skew
        self._max_lifetime = max_lifetime
        self._clock = clock

    @property
    def keyring(self) -> PortalKeyring:
        return self._keyring

    def replace_keyring(self, keyring: PortalKeyring) -> None:
        """Portal key rotation while running: one attribute swap, so a concurrent
        verify() sees either the old or the new keyring, never a mix."""
        self._keyring = keyring

    @property
    def agent_keys(self) -> AgentKeys:
        return self._keys

    def replace_keys(self, agent_keys: AgentKeys) -> None:
        """Agent key rotation while running (a rotated HPKE key): one attribute swap."""
        self._keys = agent_keys

    def verify(self, raw: bytes) -> VerifiedRequest:
        """Every check except decryption; raises Rejected. Call ``.open()`` next."""
        # 1. Size cap, before anything looks inside.
        if not isinstance(raw, bytes | bytearray):
            raise Rejected(RejectReason.MALFORMED, "envelope is not bytes")
        if len(raw) > self._max_bytes:
            raise Rejected(
                RejectReason.TOO_LARGE, f"envelope is {len(raw)} bytes, limit {self._max_bytes}"
            )
        # 2. Parse and validate.
        env, request_hash = self._parse(bytes(raw))
        header = env.header

        def rejected(reason: RejectReason, detail: str) -> Rejected:
            return Rejected(reason, detail, request_id=header.id, request_hash=request_hash)

        now = int(self._clock())
        # 3. Known key id (and within its window).
        try:
            public_key = self._keyring.lookup(env.sig.kid, now)
        except Rejected as exc:
            raise rejected(exc.reason, exc.detail) from None
        # 4. Signature over header + sealed.
        if not verify(public_key, Domain.REQUEST, env.signed_part(), env.sig):
            raise rejected(
                RejectReason.BAD_SIGNATURE, f"signature by {env.sig.kid} does not verify"
            )
        # 5. Addressed to us.
        if header.tenant != self._tenant:
            raise rejected(RejectReason.WRONG_TENANT, f"request is for tenant {header.tenant}")
        if header.agent_group != self._group:
            raise rejected(
                RejectReason.WRONG_AGENT_GROUP, f"request is for agent group {header.agent_group}"
            )
        # 6. Time window.
        lifetime = header.exp - header.iat
        if lifetime <= 0 or lifetime > self._max_lifetime:
            raise rejected(
                RejectReason.BAD_LIFETIME,
                f"exp - iat = {lifetime} s, allowed 1..{self._max_lifetime}",
            )
        if header.iat > now + self._max_skew:
            raise rejected(
                RejectReason.NOT_YET_VALID, f"iat {header.iat} is after now {now} + skew"
            )
        if now > header.exp + self._max_skew:
            raise rejected(RejectReason.EXPIRED, f"exp {header.exp} is before now {now} - skew")
        # 7. Decryption: VerifiedRequest.open(), after the journal.
        return VerifiedRequest(env, request_hash, self._keys, self._clock)

    def verify_and_open(self, raw: bytes) -> tuple[VerifiedRequest, SecretPart]:
        """verify() then open(), for callers without a journal step in between."""
        verified = self.verify(raw)
        return verified, verified.open()

    @staticmethod
    def _parse(raw: bytes) -> tuple[RequestEnvelope, str]:
        try:
            doc = parse_json(raw)
        except ValueError as exc:
            raise Rejected(RejectReason.MALFORMED, f"not strict UTF-8 JSON ({exc})") from None
        _check_version(doc)
        try:
            env = RequestEnvelope.model_validate(doc)
        except ValidationError as exc:
            raise Rejected(
                RejectReason.MALFORMED, validation_detail(exc), request_id=_peek_id(doc)
            ) from None
        try:
            request_hash = sha256_b64(canonical_json(env.model_dump(mode="json")))
        except EncodingError as exc:
            raise Rejected(RejectReason.MALFORMED, str(exc), request_id=env.header.id) from None
        return env, request_hash


def _check_version(doc: Any) -> None:
    """A well-formed request from a newer protocol gets its own reason, not "malformed".

    Runs before the schema: a newer version may add or change fields, so its envelope
    would fail our schema and be misreported as malformed.
    """
    check_version(doc, "header", request_id=_peek_id(doc))


def _peek_id(doc: Any) -> str | None:
    """The request id of an invalid envelope, if it looks like one, so the pipeline can
    still answer it. Only a well-formed UUID is echoed (it ends up in logs)."""
    header = doc.get("header") if isinstance(doc, dict) else None
    rid = header.get("id") if isinstance(header, dict) else None
    return rid if isinstance(rid, str) and _UUID4_RE.fullmatch(rid) else None

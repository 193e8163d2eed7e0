"""The protocol's exceptions.

Exception tree::

    ProtocolError            base; never carries a secret in str() or repr()
    ├── Rejected             an inbound envelope failed a check (reason: RejectReason)
    ├── EncodingError        a value cannot be put in canonical form (float, bad string, ...)
    └── KeyFileError         a key file is missing, malformed or readable by others

Why one ``Rejected`` type: the agent pipeline turns every verification failure into a
signed ``rejected`` result with the same reason, so callers need one ``except`` and a
stable reason string, not a zoo of classes. ``detail`` is operator-facing text built
only from field locations, key ids and numbers, so it is safe to log.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from wire.status import RejectReason

# Dict keys appear in error locations; they come from the sender, so keep them loggable.
_SAFE_LOC = re.compile(r"[^A-Za-z0-9_.:@-]")


class ProtocolError(Exception):
    """Base class of everything this package raises on purpose."""


class Rejected(ProtocolError):
    """An envelope was refused. Safe to log: no secret ever reaches ``detail``.

    ``request_id`` and ``request_hash`` are filled in once the envelope parsed far
    enough to know them, so the pipeline can answer with a signed rejection.
    """

    def __init__(
        self,
        reason: RejectReason,
        detail: str,
        *,
        request_id: str | None = None,
        request_hash: str | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.request_id = request_id
        self.request_hash = request_hash

    def __repr__(self) -> str:
        return f"Rejected(reason={self.reason.value!r}, detail={self.detail!r})"


class EncodingError(ProtocolError, ValueError):
    """A value has no canonical encoding (floats, lone surrogates, huge integers...)."""


class KeyFileError(ProtocolError):
    """A key file cannot be used. The message names the path, never the key."""


def validation_detail(exc: ValidationError) -> str:
    """Field locations and error types only: pydantic's own text quotes the input,
    which may be a user name or, for the secret part, a password."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        loc = ".".join(_SAFE_LOC.sub("?", str(p))[:40] for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['type']}")
    return "; ".join(parts)

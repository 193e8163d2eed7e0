"""Redaction rules shared by every log setup (the agent's and the relay's).

Pure: no logging configuration, no I/O, only the rules for which keys are secret and
how free text is scrubbed, so the agent (agent/logging.py) and the relay
(cloud/relay/logs.py) redact exactly the same way without the relay importing the agent.
`redact_secrets` has structlog's processor signature but needs no structlog import.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from pydantic import SecretBytes, SecretStr

__all__ = ["REDACTED", "is_secret_key", "redact_secrets", "scrub_text"]

REDACTED = "[redacted]"

# Substrings that make a key secret, compared case-insensitively after "-" -> "_".
_SECRET_PARTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "private_key",
    "privatekey",
    "authorization",
    "api_key",
    "apikey",
    "credential",
)
# Directory attributes that contain "pwd" but hold policy metadata, never a password;
# operators need to see them when diagnosing policy failures.
_NOT_SECRET = frozenset(
    {
        "pwdlastset",
        "pwdreset",
        "pwdaccountlockedtime",
        "pwdchangedtime",
        "pwdfailuretime",
        "pwdpolicysubentry",
        "pwdproperties",
        "pwdhistorylength",
        "minpwdlength",
        "minpwdage",
        "maxpwdage",
        "pwdminlength",
        "pwdminage",
        "pwdmaxage",
        "pwdinhistory",
        # Samba's diagnostic prefix ("check_password_restrictions: the password is too
        # short"): a function name; hiding the text after it hides the useful reason.
        "check_password_restrictions",
    }
)
# "code" is secret on its own (enrollment codes) but these are plain numbers.
_HARMLESS_CODES = frozenset(
    {"status_code", "error_code", "exit_code", "result_code", "reason_code", "http_code"}
)


@functools.lru_cache(maxsize=4096)  # pure; log lines reuse a few dozen key names
def is_secret_key(key: str) -> bool:
    """True when a value stored under `key` must never be printed.

    Over-redaction is the intended failure mode: `password_policy` is hidden too.
    """
    k = key.lower().replace("-", "_")
    if k in _NOT_SECRET:
        return False
    if any(part in k for part in _SECRET_PARTS):
        return True
    return (k == "code" or k.endswith("_code")) and k not in _HARMLESS_CODES


# key=value / key: value / 'key': 'value' / "key": "value" inside free text (exception
# messages, tracebacks, library log messages, reprs). The value may be quoted, a
# bracketed list (ldap3 modify dumps), an HTTP auth scheme plus credentials, or a bare
# word up to a separator.
_TEXT_SECRET = re.compile(
    r"""
    (?<![\w-])
    (?P<key>[\w-]*(?:password|passwd|pwd|secret|token|private[_-]?key|authorization
                    |api[_-]?key|credential)[\w-]*
        |(?:[\w-]*_)?code)
    (?P<sep>["']?\s*[=:]\s*)
    (?P<value>
        (?:Bearer|Basic|Digest|Negotiate)\s+\S+
        |b?"(?:[^"\\\n]|\\.)*"
        |b?'(?:[^'\\\n]|\\.)*'
        |\[[^\]\n]*\]
        |[^\s,;&)}\]'"]+
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _scrub_match(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    return f"{match['key']}{match['sep']}{REDACTED}"


# Every match of _TEXT_SECRET holds a separator and one of these words, so text
# without them is returned unscanned (the full pattern is the costly part of a log line).
_KEY_WORD = re.compile(
    r"password|passwd|pwd|secret|token|private[_-]?key|authorization|api[_-]?key|credential"
    r"|code",
    re.IGNORECASE,
)


def scrub_text(text: str) -> str:
    """Replace the value of every secret-looking ``key=value`` pair in free text."""
    if ("=" not in text and ":" not in text) or _KEY_WORD.search(text) is None:
        return text
    return _TEXT_SECRET.sub(_scrub_match, text)


def _redact_value(value: Any) -> Any:  # one return per kind of value
    """Make one value safe to render. Primitives stay native so JSON keeps its types."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    # Anything else would be repr()'d by the renderer anyway; scrub that text now.
    return scrub_text(repr(value))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: secret keys become "[redacted]", every other value is scrubbed.

    Must run after `format_exc_info` (so the traceback is text) and before the renderer.
    """
    return {
        key: REDACTED if is_secret_key(key) else _redact_value(value)
        for key, value in event_dict.items()
    }

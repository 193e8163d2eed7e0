"""No password, code, security answer or TOTP secret in any log line of the portal,
the agent (debug level) or the relay, after every browser flow above has run.
Named to run last in this directory; it needs the other modules' flows to have run
(it fails on an empty log rather than pass)."""

from __future__ import annotations

import re

from tests.browser import test_change_phone_status, test_policies_and_no_js, test_reset
from tests.browser.conftest import Stack
from tests.browser.helpers import ANSWERS, INITIAL


def test_no_secret_in_any_log_line(stack: Stack) -> None:
    portal_and_agent = stack.log.getvalue()
    assert "portal.result" in portal_and_agent  # the flows ran and logged
    texts = {"portal+agent": portal_and_agent, "relay": stack.relay_log()}
    passwords = [INITIAL, test_reset.NEW, "Short1a", test_change_phone_status.NEW,
                 "Phone-Reset-Pass-9", "Not-The-Password-1", test_change_phone_status.IN_DOUBT_NEW,
                 test_policies_and_no_js.TOO_SHORT_FOR_PSO, test_policies_and_no_js.LONG_ENOUGH,
                 test_policies_and_no_js.WITHOUT_SCRIPT, test_policies_and_no_js.ONE_STEP_NEW]
    answers = list(ANSWERS.values())
    codes = set()
    for message in stack.smtp.mailbox.messages:
        body = message.get_payload(decode=True)
        codes.update(re.findall(r"\b\d{6}\b", body.decode() if isinstance(body, bytes) else ""))
    codes.update(m for sent in stack.sms.received for m in re.findall(r"\b\d{6}\b", sent["text"]))
    assert codes
    for name, text in texts.items():
        for value in passwords + answers:
            assert value not in text, f"{name} log contains a password or an answer"
        for code in codes:
            found = re.search(rf"(?<![0-9a-f.:]){code}(?![0-9a-f])", text)
            context = text[max(0, found.start() - 200):found.end() + 50] if found else ""
            assert found is None, f"{name} log contains a code: {context!r}"

"""How codes reach people: email over SMTP, and one small provider interface for
text messages and voice calls with a generic HTTP-webhook implementation.

    PhoneProvider.send_text(to, text)             "text me": a 6-digit code
    PhoneProvider.call(to, text, callback_url)    "call me": the callee presses #,
                                                  the provider POSTs {"digits": "#"}
                                                  to callback_url

The webhook body is JSON {kind: "sms"|"voice", to, text, callback_url?} with the
tenant's token as a Bearer header. `Outbox` keeps a copy of what was sent for the
development outbox page (demo only; off unless `dev_outbox = true`).
Nothing here logs a message body: bodies carry codes.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage

import httpx
from pydantic import SecretStr

from cloud.portal.settings import SmsSettings, SmtpSettings


class DeliveryError(Exception):
    """The message could not be handed to the mail server or the provider."""


@dataclass(frozen=True)
class Sent:
    at: float
    channel: str  # email | sms | voice
    to: str
    subject: str
    body: str


class Outbox:
    """The last messages, for the development outbox page only."""

    def __init__(self, size: int = 50) -> None:
        self._items: deque[Sent] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, item: Sent) -> None:
        with self._lock:
            self._items.appendleft(item)

    def items(self) -> list[Sent]:
        with self._lock:
            return list(self._items)


class Mailer:
    def __init__(
        self, settings: SmtpSettings, password: SecretStr | None, outbox: Outbox | None
    ) -> None:
        self._settings = settings
        self._password = password
        self._outbox = outbox

    def send(self, to: str, subject: str, body: str) -> None:
        s = self._settings
        if not s.host:
            if self._outbox is None:
                raise DeliveryError("no SMTP server is configured")
            self._outbox.add(Sent(time.time(), "email", to, subject, body))
            return  # demo without a mail server: the outbox is the delivery
        msg = EmailMessage()
        msg["From"] = s.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
                if s.tls
                else smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            )
            with smtp:
                if s.starttls and not s.tls:
                    smtp.starttls(context=context)
                if s.username and self._password is not None:
                    smtp.login(s.username, self._password.get_secret_value())
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"mail to the SMTP server {s.host}:{s.port} failed: "
                                f"{type(exc).__name__}") from None
        if self._outbox is not None:
            self._outbox.add(Sent(time.time(), "email", to, subject, body))


class PhoneProvider(ABC):
    @abstractmethod
    def send_text(self, to: str, text: str) -> None: ...

    @abstractmethod
    def call(self, to: str, text: str, callback_url: str) -> None: ...


class WebhookPhoneProvider(PhoneProvider):
    def __init__(
        self, settings: SmsSettings, token: SecretStr | None, outbox: Outbox | None
    ) -> None:
        self._settings = settings
        self._token = token
        self._outbox = outbox

    def _post(self, body: dict[str, str]) -> None:
        url = self._settings.webhook_url
        if self._outbox is not None:
            self._outbox.add(Sent(time.time(), body["kind"], body["to"], "", body["text"]))
        if not url:
            if self._outbox is not None:
                return  # demo without a provider: the outbox is the delivery
            raise DeliveryError("no SMS/voice provider is configured")
        headers = {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self._settings.timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS provider: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"SMS provider answered {response.status_code}")

    def send_text(self, to: str, text: str) -> None:
        self._post({"kind": "sms", "to": to, "text": text})

    def call(self, to: str, text: str, callback_url: str) -> None:
        self._post({"kind": "voice", "to": to, "text": text, "callback_url": callback_url})

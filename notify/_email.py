"""Email deliveries over SMTP (stdlib smtplib in a worker thread): plain text with the facts of the alarm."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

import orjson

from livinglab.notifications import DELIVERY_HEADER, EmailConfig, email_subject, email_text
from notify.errors import DeliveryError
from notify.settings import NotifySettings

log = logging.getLogger(__name__)


class EmailSender:
    """Sends one message per delivery through the configured SMTP server (`LIVINGLAB_SMTP_*`). The server's
    acceptance of the message (250 after DATA) is the receiver's acceptance."""

    def __init__(self, settings: NotifySettings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.sender = settings.smtp_from
        self.starttls = settings.smtp_starttls
        self.timeout_s = settings.smtp_timeout_s

    def message(self, config: EmailConfig, delivery_id: str, event: str, body: bytes) -> EmailMessage:
        payload = orjson.loads(body)
        alarm = payload.get("alarm") or {}
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(config.to)
        message["Subject"] = email_subject(event, alarm)
        message["Message-ID"] = make_msgid(idstring=delivery_id, domain="livinglab")
        message[DELIVERY_HEADER] = delivery_id
        message.set_content(email_text(delivery_id, event, alarm))
        return message

    async def send(self, config: EmailConfig, delivery_id: str, event: str, body: bytes) -> None:
        if not self.host:
            raise DeliveryError("no SMTP server: LIVINGLAB_SMTP_HOST is not set")
        message = self.message(config, delivery_id, event, body)
        try:
            await asyncio.to_thread(self._send, message, list(config.to))
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the SMTP server refused the recipients {sorted(exc.recipients)}") from exc
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(f"the SMTP server answered {exc.smtp_code} {text}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {exc or type(exc).__name__}") from exc

    def _send(self, message: EmailMessage, recipients: list[str]) -> None:
        assert self.host is not None
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
            refused = smtp.send_message(message, to_addrs=recipients)
        if refused:
            # Some recipients took it: sending again would repeat it to them for a day. Said in the log instead.
            log.warning("the SMTP server refused %s of %s (delivered to the others)", sorted(refused), recipients)

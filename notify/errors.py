"""The deliverer's exceptions.

    NotifyError
    └── DeliveryError      an attempt did not reach the receiver, or the receiver did not accept it (a non-2xx
                            answer, a refused connection, a timeout, an SMTP or MQTT error, an address the settings
                            do not allow); the delivery is retried later, and the message becomes its `last_error`

The third-party exceptions (httpx, aiomqtt, smtplib, OSError) are turned into `DeliveryError` where they are met,
in the sender of each channel type, with `raise ... from exc`.
"""

from __future__ import annotations


class NotifyError(Exception):
    """Base of the deliverer's exceptions."""


class DeliveryError(NotifyError):
    """The receiver did not accept this attempt; the message says why, in one line."""

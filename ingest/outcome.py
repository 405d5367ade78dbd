"""What the ingester decides about a message: accepted readings, or a `Rejection` with a reason code.

Text that came from a device (topic levels, member names, units, strings) is made safe with `safe_text` before it
goes into a rejection detail, a log line or a text column: PostgreSQL refuses NUL characters and lone surrogates in
text, and one such value would fail the whole batch's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from livinglab.domain import RejectionReason

#: Characters kept of one piece of device text in a detail (the payload itself is stored whole, as bytes).
SAFE_TEXT_LIMIT = 80


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message was rejected: a contract reason code and a human-readable detail (already safe text)."""

    reason: RejectionReason
    detail: str


def safe_text(text: str, limit: int = SAFE_TEXT_LIMIT) -> str:
    """`text` shortened to `limit` characters, with NUL and lone surrogates written as backslash escapes."""
    head = text[:limit]
    if not head.isascii():
        head = head.encode("utf-8", "backslashreplace").decode("utf-8")
    return head.replace("\x00", "\\x00") + ("..." if len(text) > limit else "")


def safe_bytes_text(data: bytes, limit: int = SAFE_TEXT_LIMIT) -> str:
    """Bytes that should be UTF-8 text (a topic, say), decoded leniently and made safe."""
    return safe_text(data.decode("utf-8", "backslashreplace"), limit)


def quoted(text: str, limit: int = SAFE_TEXT_LIMIT) -> str:
    """Device text in single quotes for a detail, made safe (see `safe_text`)."""
    return f"'{safe_text(text, limit)}'"

"""Opaque keyset cursors: the last item's sort key, base64-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from api.problems import ProblemError


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise ProblemError(400, "the cursor is not valid") from None
    if not isinstance(key, list) or len(key) != arity:
        raise ProblemError(400, "the cursor is not valid")
    return key

"""Strict JSON for device payloads: orjson on the fast path, the standard library to classify what orjson refuses.

orjson (RFC 8259, UTF-8 checked, nesting limited to 1024 levels) parses every well-formed payload. It refuses some
documents for reasons the contract names separately, so a refused payload is parsed again, slowly, to tell them
apart: invalid UTF-8 (`invalid_utf8`), NaN/Infinity tokens (`non_finite_value`, when the document is otherwise
well formed), numbers beyond the range of a double (well-formed JSON: parsed as +/-inf, so the value is later
`out_of_range`), lone surrogate escapes (`invalid_json`: I-JSON, RFC 7493, forbids them, and no text column could
hold them), duplicate member names (`duplicate_key`), and everything else (`invalid_json`).

orjson keeps the last of duplicate members silently; `find_duplicate_key` re-scans a document for them. The decoder
calls it only when a cheap count cannot rule duplicates out (see `ingest.decode`), and `classify_refused` only for
payloads orjson refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ingest.outcome import Rejection, quoted, safe_text
from livinglab.domain import RejectionReason

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed payload. `exact`: duplicate member names were already ruled out."""

    value: Any
    exact: bool


class _DuplicateKey(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def find_duplicate_key(payload: bytes) -> str | None:
    """The first member name repeated within one object of a well-formed document, else None."""
    try:
        json.loads(payload.decode("utf-8"), object_pairs_hook=_pairs_unique, parse_int=float, parse_constant=float)
    except _DuplicateKey as dup:
        return dup.key
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return None


class _Scan:
    """What the slow parse saw besides the document itself."""

    def __init__(self) -> None:
        self.non_finite: str | None = None
        self.duplicate: str | None = None

    def constant(self, token: str) -> float:
        if self.non_finite is None:
            self.non_finite = token
        return float("nan")

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs) and self.duplicate is None:
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.duplicate = key
                    break
                seen.add(key)
        return obj


def classify_refused(payload: bytes) -> Document | Rejection:
    """The slow path for a payload orjson refused: why it is bad, or its document (nothing repeats in it)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectionReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
    scan = _Scan()
    try:
        # parse_int=float: Python refuses to convert integers of more than 4300 digits; as floats they become inf.
        value = json.loads(text, object_pairs_hook=scan.pairs, parse_constant=scan.constant, parse_int=float)
    except RecursionError:
        return Rejection(RejectionReason.INVALID_JSON, "nested deeper than the parser allows (1024 levels)")
    except ValueError as exc:
        return Rejection(RejectionReason.INVALID_JSON, safe_text(str(exc), 160))
    if scan.non_finite is not None:
        return Rejection(RejectionReason.NON_FINITE_VALUE, f"non-finite number token {scan.non_finite}")
    surrogate = _find_lone_surrogate(value)
    if surrogate is not None:
        return Rejection(RejectionReason.INVALID_JSON, f"lone surrogate in string {quoted(surrogate)}")
    if scan.duplicate is not None:
        return Rejection(RejectionReason.DUPLICATE_KEY, f"member {quoted(scan.duplicate)} repeated in one object")
    return Document(value, exact=True)


def _find_lone_surrogate(value: Any) -> str | None:
    """A string (member name or value) holding a lone surrogate, searched without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None

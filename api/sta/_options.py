"""SensorThings query options: `$top`, `$skip`, `$count`, `$orderby`, `$select`, `$expand` (with nested options),
`$filter`, and `$skiptoken` (the keyset cursor this service puts in `@iot.nextLink`). Anything else is a 400."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from api.sta._filter import FilterError, Node, parse_filter

DEFAULT_TOP = 100
MAX_TOP = 1000
#: Deepest `$expand` nesting accepted.
MAX_EXPAND_DEPTH = 4

#: The options this service implements (the service root lists them).
SUPPORTED_OPTIONS = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter", "$skiptoken")
_NAME_RE = re.compile(r"\A[A-Za-z@][A-Za-z0-9_.@]*\Z")


class OptionError(ValueError):
    """A query option that is malformed or not supported; the message names it (answered 400)."""


@dataclass(frozen=True)
class Expand:
    relation: str
    options: Options


@dataclass(frozen=True)
class Options:
    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    orderby: tuple[tuple[tuple[str, ...], bool], ...] = ()  # (path, descending)
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    filter: Node | None = None
    filter_text: str | None = None
    skiptoken: str | None = None
    raw: tuple[tuple[str, str], ...] = field(default=())  # the options as given, for @iot.nextLink


def split_top_level(text: str, separators: str) -> list[str]:
    """`text` split at `separators` outside parentheses and quoted strings."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted  # '' inside a string toggles twice
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise OptionError(f"unbalanced ')' in {text!r}")
        elif ch in separators and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise OptionError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


def _integer(name: str, text: str, upper: int | None = None) -> int:
    if not text.isdigit() or len(text) > 12:
        raise OptionError(f"{name} must be a non-negative integer, not {text!r}")
    value = int(text)
    if upper is not None and value > upper:
        raise OptionError(f"{name} is at most {upper} (asked {value})")
    return value


def _names(option: str, text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if not _NAME_RE.match(name):
            raise OptionError(f"{option}: {name!r} is not a property name")
    return names


def _path(option: str, text: str) -> tuple[str, ...]:
    segments = tuple(text.split("/"))
    for segment in segments:
        if not _NAME_RE.match(segment):
            raise OptionError(f"{option}: {text!r} is not a property path")
    return segments


def _orderby(text: str) -> tuple[tuple[tuple[str, ...], bool], ...]:
    items = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise OptionError(f"$orderby: {part.strip()!r} is not `<property> [asc|desc]`")
        items.append((_path("$orderby", words[0]), len(words) == 2 and words[1].lower() == "desc"))
    return tuple(items)


def _expand(text: str, depth: int) -> tuple[Expand, ...]:
    if depth > MAX_EXPAND_DEPTH:
        raise OptionError(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
    found: list[Expand] = []
    for item in split_top_level(text, ","):
        item = item.strip()
        match = re.fullmatch(r"([A-Za-z/]+)(?:\((.*)\))?", item, re.DOTALL)
        if match is None:
            raise OptionError(f"$expand: {item!r} is not `<navigation>[(<options>)]`")
        path, inner = match.group(1).split("/"), match.group(2)
        pairs = []
        for option in split_top_level(inner, ";") if inner is not None and inner.strip() else []:
            name, eq, value = option.partition("=")
            if not eq:
                raise OptionError(f"$expand: {option.strip()!r} is not `$option=value`")
            pairs.append((name.strip(), value))
        options = parse_options(pairs, depth=depth + 1)
        # `A/B(opts)` is `A($expand=B(opts))`.
        for relation in reversed(path[1:]):
            options = Options(expand=(Expand(relation, options),))
        found.append(Expand(path[0], options))
    return tuple(found)


def parse_options(pairs: Iterable[tuple[str, str]], depth: int = 0) -> Options:
    """The options of a request (or of one `$expand` item); OptionError/FilterError name what is wrong."""
    seen: dict[str, str] = {}
    raw = []
    for name, value in pairs:
        if name not in SUPPORTED_OPTIONS:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise OptionError(
                f"the query option {shown!r} is not supported (supported: {', '.join(SUPPORTED_OPTIONS)})"
            )
        if name in seen:
            raise OptionError(f"{name} is given twice")
        if name == "$skiptoken" and depth:
            raise OptionError("$skiptoken is not valid inside $expand")
        seen[name] = value
        raw.append((name, value))
    values: dict[str, object] = {}
    if "$top" in seen:
        values["top"] = _integer("$top", seen["$top"], MAX_TOP)
    if "$skip" in seen:
        values["skip"] = _integer("$skip", seen["$skip"])
    if "$count" in seen:
        if seen["$count"] not in ("true", "false"):
            raise OptionError(f"$count is true or false, not {seen['$count']!r}")
        values["count"] = seen["$count"] == "true"
    if "$orderby" in seen:
        values["orderby"] = _orderby(seen["$orderby"])
    if "$select" in seen:
        values["select"] = _names("$select", seen["$select"])
    if "$expand" in seen:
        values["expand"] = _expand(seen["$expand"], depth)
    if "$filter" in seen:
        try:
            values["filter"] = parse_filter(seen["$filter"])
        except FilterError:
            raise
        values["filter_text"] = seen["$filter"]
    if "$skiptoken" in seen:
        values["skiptoken"] = seen["$skiptoken"]
    return Options(raw=tuple(raw), **values)  # type: ignore[arg-type]

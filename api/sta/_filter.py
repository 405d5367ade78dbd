"""`$filter` expressions of the SensorThings API: a tokenizer and a recursive-descent parser to an AST.

The grammar (OData 4 as SensorThings 1.1 uses it), loosest binding first:

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := additive (("eq" | "ne" | "gt" | "ge" | "lt" | "le") additive)?
    additive   := multiplicative (("add" | "sub") multiplicative)*
    multiplicative := unary (("mul" | "div" | "mod") unary)*
    unary      := "-" unary | primary
    primary    := literal | call | path | "(" expr ")"
    call       := name "(" (expr ("," expr)*)? ")"
    path       := name ("/" name)*

Literals: numbers (`42`, `-1.5`, `2e3`), strings (`'it''s'`), `true`, `false`, `null`, and date-times
(`2026-03-01T00:00:00Z`, with an offset or fractional seconds). The parser knows no entity: it accepts any path and
any function name; `api.sta._translate` checks them against allow-lists and answers 400 naming what it does not
support. Parse errors are `FilterError`s whose message says where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

#: Longest `$filter` accepted (characters) and deepest nesting: bounds on parsing work and on the SQL it makes.
MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 40

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
ARITHMETIC = frozenset({"add", "sub", "mul", "div", "mod"})
_KEYWORDS = COMPARISONS | ARITHMETIC | {"and", "or", "not", "true", "false", "null"}


class FilterError(ValueError):
    """A `$filter` that does not parse or names what is not supported; the message says what (answered 400)."""


Value = float | str | bool | datetime | None


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value


@dataclass(frozen=True, slots=True)
class Path:
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "not" or "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # a comparison, an arithmetic operator, "and" or "or"
    left: Node
    right: Node


Node = Literal | Path | Call | Unary | Binary


# ---- tokens ------------------------------------------------------------------------------------------------------

_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})"
_TOKEN_RE = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<datetime>{_DATETIME})(?![\w.:/-])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
  | (?P<typed>(?:geography|geometry|duration)'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_@][A-Za-z0-9_.@]*)
  | (?P<punct>[()/,-])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # datetime, number, string, name, punct, end
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"$filter is longer than {MAX_FILTER_LENGTH} characters")
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN_RE.match(text, at)
        if match is None:
            raise FilterError(f"$filter: unexpected character {text[at]!r} at position {at}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_datetime(text: str) -> datetime:
    """A date-time literal; fractional seconds beyond microseconds are cut (PostgreSQL keeps microseconds)."""
    head, dot, rest = text.partition(".")
    if dot:
        digits = re.match(r"\d+", rest)
        assert digits is not None
        rest = digits.group()[:6].ljust(6, "0") + rest[digits.end() :]
        text = f"{head}.{rest}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"$filter: {text!r} is not a valid date-time") from None


# ---- parser ------------------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek
        if token.kind == "name" and token.text in words:
            self.i += 1
            return token.text
        return None

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("punct",):
            found = "the end" if token.kind == "end" else repr(token.text)
            raise FilterError(f"$filter: expected {text!r} at position {token.at}, found {found}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"$filter nests deeper than {MAX_DEPTH} levels")

    def parse(self) -> Node:
        node = self.or_()
        if self.peek.kind != "end":
            raise FilterError(f"$filter: unexpected {self.peek.text!r} at position {self.peek.at}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.keyword("or"):
            node = Binary("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.keyword("and"):
            node = Binary("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.keyword("not"):
            self.nested()
            node = Unary("not", self.not_())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        op = self.keyword(*COMPARISONS)
        if op:
            node = Binary(op, node, self.additive())
            if self.peek.kind == "name" and self.peek.text in COMPARISONS:
                raise FilterError(f"$filter: comparisons do not chain (position {self.peek.at}); use and")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while op := self.keyword("add", "sub"):
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while op := self.keyword("mul", "div", "mod"):
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek.kind == "punct" and self.peek.text == "-":
            self.take()
            self.nested()
            operand = self.unary()
            self.depth -= 1
            if isinstance(operand, Literal) and isinstance(operand.value, float):
                return Literal(-operand.value)
            return Unary("-", operand)
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return Literal(float(token.text))
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "datetime":
            return Literal(parse_datetime(token.text))
        if token.kind == "typed":  # geography'POINT(...)': a call of a function that is not supported
            kind, _, rest = token.text.partition("'")
            return Call(kind, (Literal(rest[:-1].replace("''", "'")),))
        if token.kind == "punct" and token.text == "(":
            self.nested()
            node = self.or_()
            self.depth -= 1
            self.expect(")")
            return node
        if token.kind == "name":
            word = token.text
            if word in ("true", "false"):
                return Literal(word == "true")
            if word == "null":
                return Literal(None)
            if word in _KEYWORDS:
                raise FilterError(f"$filter: unexpected {word!r} at position {token.at}")
            if self.peek.kind == "punct" and self.peek.text == "(":
                return self.call(word)
            segments = [word]
            while self.peek.kind == "punct" and self.peek.text == "/":
                self.take()
                part = self.take()
                if part.kind != "name" or part.text in _KEYWORDS:
                    raise FilterError(f"$filter: expected a property name after '/' at position {part.at}")
                segments.append(part.text)
            return Path(tuple(segments))
        found = "the end" if token.kind == "end" else repr(token.text)
        raise FilterError(f"$filter: unexpected {found} at position {token.at}")

    def call(self, name: str) -> Node:
        self.expect("(")
        self.nested()
        args: list[Node] = []
        if not (self.peek.kind == "punct" and self.peek.text == ")"):
            args.append(self.or_())
            while self.peek.kind == "punct" and self.peek.text == ",":
                self.take()
                args.append(self.or_())
        self.depth -= 1
        self.expect(")")
        return Call(name, tuple(args))


def parse_filter(text: str) -> Node:
    """The AST of a `$filter` expression; FilterError when it does not parse."""
    if not text.strip():
        raise FilterError("$filter is empty")
    return _Parser(text).parse()


# ---- printing ----------------------------------------------------------------------------------------------------


def _literal_text(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(abs(value))
        if "inf" in text or "nan" in text:
            raise ValueError(f"no literal for {value!r}")
        return f"-{text}" if value < 0 or (value == 0 and str(value).startswith("-")) else text
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return "'" + value.replace("'", "''") + "'"


def render_filter(node: Node) -> str:
    """`$filter` text that parses back to `node` (every operation parenthesized)."""
    if isinstance(node, Literal):
        return _literal_text(node.value)
    if isinstance(node, Path):
        return "/".join(node.segments)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(render_filter(a) for a in node.args)})"
    if isinstance(node, Unary):
        operand = render_filter(node.operand)
        return f"(not {operand})" if node.op == "not" else f"(-{operand})"
    return f"({render_filter(node.left)} {node.op} {render_filter(node.right)})"

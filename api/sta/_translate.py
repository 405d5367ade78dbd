"""`$filter` ASTs to SQL: every path is looked up in an allow-list of columns, every literal becomes a bound
parameter, every operator and function is one of the tables below. Nothing from the request is spliced into SQL.

SQL follows OData's semantics where they differ from PostgreSQL's defaults:
- `x eq null` / `x ne null` are `IS NULL` / `IS NOT NULL`; any other comparison with null is unknown (false).
- `div` and `mod` by zero give null (not an error); `mod` is the remainder of truncated division, with the sign
  of the dividend, computed in double precision as `a - b * trunc(a / b)`.
- Text compares by code point (`COLLATE "C"`), whatever the database's collation.
- `round` rounds halves away from zero; `second` is the whole second.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.sta._filter import ARITHMETIC, COMPARISONS, Binary, Call, FilterError, Literal, Node, Path, Unary


class SqlType(enum.Enum):
    NUMBER = "number"
    TEXT = "text"
    TIME = "time"
    BOOL = "boolean"
    NULL = "null"


_CASTS = {SqlType.NUMBER: "float8", SqlType.TEXT: "text", SqlType.TIME: "timestamptz", SqlType.BOOL: "boolean"}
_COMPARE_SQL = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True, slots=True)
class Function:
    args: tuple[SqlType, ...]
    result: SqlType
    template: str  # with {0}, {1}: the arguments' SQL


#: The functions `$filter` supports (the service root lists them).
FUNCTIONS: dict[str, Function] = {
    "now": Function((), SqlType.TIME, "now()"),
    "startswith": Function((SqlType.TEXT, SqlType.TEXT), SqlType.BOOL, "starts_with({0}, {1})"),
    "endswith": Function((SqlType.TEXT, SqlType.TEXT), SqlType.BOOL, "(right({0}, char_length({1})) = {1})"),
    "substringof": Function((SqlType.TEXT, SqlType.TEXT), SqlType.BOOL, "(strpos({1}, {0}) > 0)"),
    "contains": Function((SqlType.TEXT, SqlType.TEXT), SqlType.BOOL, "(strpos({0}, {1}) > 0)"),
    "length": Function((SqlType.TEXT,), SqlType.NUMBER, "char_length({0})::float8"),
    "tolower": Function((SqlType.TEXT,), SqlType.TEXT, "lower({0})"),
    "toupper": Function((SqlType.TEXT,), SqlType.TEXT, "upper({0})"),
    "concat": Function((SqlType.TEXT, SqlType.TEXT), SqlType.TEXT, "({0} || {1})"),
    "round": Function((SqlType.NUMBER,), SqlType.NUMBER, "(sign({0}) * floor(abs({0}) + 0.5::float8))"),
    "floor": Function((SqlType.NUMBER,), SqlType.NUMBER, "floor({0})"),
    "ceiling": Function((SqlType.NUMBER,), SqlType.NUMBER, "ceil({0})"),
    **{
        part: Function((SqlType.TIME,), SqlType.NUMBER, f"extract({part} FROM {{0}} AT TIME ZONE 'UTC')::float8")
        for part in ("year", "month", "day", "hour", "minute")
    },
    "second": Function((SqlType.TIME,), SqlType.NUMBER, "floor(extract(second FROM {0} AT TIME ZONE 'UTC'))::float8"),
}


#: Resolves a property path of the entity being filtered to (SQL over allow-listed columns, its type); raises
#: FilterError for a path it does not know.
Resolver = Callable[[tuple[str, ...]], tuple[str, SqlType]]


@dataclass
class Translation:
    """The SQL of one expression and the parameters it binds (named `<prefix><n>`)."""

    prefix: str
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any, kind: SqlType) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"%({name})s::{_CASTS[kind]}"


def _literal_type(value: object) -> SqlType:
    if value is None:
        return SqlType.NULL
    if isinstance(value, bool):
        return SqlType.BOOL
    if isinstance(value, float):
        return SqlType.NUMBER
    if isinstance(value, datetime):
        return SqlType.TIME
    return SqlType.TEXT


def _describe(node: Node) -> str:
    if isinstance(node, Path):
        return "/".join(node.segments)
    if isinstance(node, Call):
        return f"{node.name}()"
    return type(node).__name__.lower()


class _Translator:
    def __init__(self, resolve: Resolver, out: Translation) -> None:
        self.resolve = resolve
        self.out = out

    def node(self, node: Node) -> tuple[str, SqlType]:
        if isinstance(node, Literal):
            kind = _literal_type(node.value)
            if kind is SqlType.NULL:
                return "NULL", kind
            return self.out.bind(node.value, kind), kind
        if isinstance(node, Path):
            return self.resolve(node.segments)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            sql, kind = self.node(node.operand)
            if node.op == "not":
                self.expect(kind, SqlType.BOOL, "not")
                return f"(NOT {sql})", SqlType.BOOL
            self.expect(kind, SqlType.NUMBER, "-")
            return f"(- {sql})", SqlType.NUMBER
        return self.binary(node)

    @staticmethod
    def expect(kind: SqlType, wanted: SqlType, where: str) -> None:
        if kind is not wanted and kind is not SqlType.NULL:
            raise FilterError(f"$filter: {where} takes a {wanted.value}, not a {kind.value}")

    def call(self, node: Call) -> tuple[str, SqlType]:
        function = FUNCTIONS.get(node.name)
        if function is None:
            raise FilterError(
                f"$filter: the function {node.name}() is not supported (supported: {', '.join(sorted(FUNCTIONS))})"
            )
        if len(node.args) != len(function.args):
            raise FilterError(f"$filter: {node.name}() takes {len(function.args)} arguments, not {len(node.args)}")
        parts = []
        for arg, wanted in zip(node.args, function.args, strict=True):
            sql, kind = self.node(arg)
            self.expect(kind, wanted, f"{node.name}()")
            parts.append(sql if kind is not SqlType.NULL else f"NULL::{_CASTS[wanted]}")
        return function.template.format(*parts), function.result

    def binary(self, node: Binary) -> tuple[str, SqlType]:
        left, lkind = self.node(node.left)
        right, rkind = self.node(node.right)
        op = node.op
        if op in ("and", "or"):
            self.expect(lkind, SqlType.BOOL, op)
            self.expect(rkind, SqlType.BOOL, op)
            return f"({left} {op.upper()} {right})", SqlType.BOOL
        if op in ARITHMETIC:
            self.expect(lkind, SqlType.NUMBER, op)
            self.expect(rkind, SqlType.NUMBER, op)
            if lkind is SqlType.NULL or rkind is SqlType.NULL:
                return "NULL::float8", SqlType.NUMBER
            if op == "div":
                return f"({left} / NULLIF({right}, 0::float8))", SqlType.NUMBER
            if op == "mod":
                return f"({left} - {right} * trunc({left} / NULLIF({right}, 0::float8)))", SqlType.NUMBER
            symbol = {"add": "+", "sub": "-", "mul": "*"}[op]
            return f"({left} {symbol} {right})", SqlType.NUMBER
        assert op in COMPARISONS
        if SqlType.NULL in (lkind, rkind):
            other = right if lkind is SqlType.NULL else left
            if lkind is rkind:
                return ("TRUE" if op == "eq" else "FALSE") if op in ("eq", "ne") else "NULL::boolean", SqlType.BOOL
            if op == "eq":
                return f"({other} IS NULL)", SqlType.BOOL
            if op == "ne":
                return f"({other} IS NOT NULL)", SqlType.BOOL
            return "NULL::boolean", SqlType.BOOL
        if lkind is not rkind:
            raise FilterError(
                f"$filter: {op} compares a {lkind.value} ({_describe(node.left)}) with a {rkind.value} "
                f"({_describe(node.right)})"
            )
        if lkind is SqlType.TEXT:
            left = f'({left} COLLATE "C")'
        return f"({left} {_COMPARE_SQL[op]} {right})", SqlType.BOOL


def translate_filter(node: Node, resolve: Resolver, out: Translation) -> str:
    """SQL for a `$filter` AST (a boolean condition); its parameters go into `out`."""
    sql, kind = _Translator(resolve, out).node(node)
    if kind not in (SqlType.BOOL, SqlType.NULL):
        raise FilterError(f"$filter must be a condition (true or false), not a {kind.value}")
    return f"({sql}) IS TRUE"

"""`$filter`: random expressions, parsed and translated to SQL and run in PostgreSQL, select exactly the rows an
obviously correct Python evaluator selects; injection attempts through every option answer 400 and touch nothing.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.access import Access
from api.sta._entities import OBSERVATIONS, scoped_observations
from api.sta._filter import Binary, Call, FilterError, Literal, Node, Path, Unary, parse_filter, render_filter
from api.sta._query import StaReader
from api.sta._translate import Translation, translate_filter
from livinglab.storage.keys import Scope
from tests.support import sensors
from tests.support.api import assert_problem, make_keys, serving

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)
#: Results chosen to meet the edges: zero of both signs, halves (rounding), negatives, tiny and large values.
RESULTS = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.25, 1e-3, 12345.678, -999.999, 100.0, 42.0, 0.1, 0.2]


# ---- the naive evaluator (SQL's three-valued logic, OData's operators) -------------------------------------------


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return {
        "eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b,
    }[op]  # fmt: skip


def _arith(op: str, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if b == 0:
        return None
    if op == "div":
        return a / b
    return a - b * float(math.trunc(a / b))


def _function(name: str, args: list[Any]) -> Any:
    if any(a is None for a in args):
        return None
    a = args[0] if args else None
    if name == "startswith":
        return args[0].startswith(args[1])
    if name == "endswith":
        return args[0].endswith(args[1])
    if name == "contains":
        return args[1] in args[0]
    if name == "substringof":
        return args[0] in args[1]
    if name == "length":
        return float(len(a))
    if name == "tolower":
        return a.lower()
    if name == "toupper":
        return a.upper()
    if name == "concat":
        return args[0] + args[1]
    if name == "round":
        sign = 1.0 if a > 0 else -1.0 if a < 0 else 0.0
        return sign * math.floor(abs(a) + 0.5)
    if name == "floor":
        return float(math.floor(a))
    if name == "ceiling":
        return float(math.ceil(a))
    if name in ("year", "month", "day", "hour", "minute", "second"):
        return float(getattr(a.astimezone(UTC), name))
    raise AssertionError(name)


def evaluate(node: Node, row: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        return row["/".join(node.segments)]
    if isinstance(node, Call):
        return _function(node.name, [evaluate(a, row) for a in node.args])
    if isinstance(node, Unary):
        value = evaluate(node.operand, row)
        if value is None:
            return None
        return (not value) if node.op == "not" else -value
    op = node.op
    if op == "and":
        a, b = evaluate(node.left, row), evaluate(node.right, row)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if op == "or":
        a, b = evaluate(node.left, row), evaluate(node.right, row)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if op in ("add", "sub", "mul", "div", "mod"):
        return _arith(op, evaluate(node.left, row), evaluate(node.right, row))
    nulls = [isinstance(side, Literal) and side.value is None for side in (node.left, node.right)]
    if any(nulls):  # `x eq null` is IS NULL, as OData has it
        if all(nulls):
            return {"eq": True, "ne": False}.get(op)
        other = evaluate(node.right if nulls[0] else node.left, row)
        return {"eq": other is None, "ne": other is not None}.get(op)
    return _compare(op, evaluate(node.left, row), evaluate(node.right, row))


# ---- random expressions -----------------------------------------------------------------------------------------

_numbers = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 10.0, 100.0, -1.0, -2.5]),
    st.integers(-1000, 1000).map(float),
    st.decimals(-1000, 1000, places=3, allow_nan=False).map(float),
)
_texts = st.text(alphabet=string.ascii_letters + string.digits + "-:'_ .é", max_size=8)
_times = st.integers(-3 * 86400, 3 * 86400).map(lambda s: T0 + timedelta(seconds=s, microseconds=(s * 7919) % 10**6))


def _number_leaf() -> st.SearchStrategy[Node]:
    return st.one_of(st.just(Path(("result",))), _numbers.map(Literal), st.just(Literal(None)))


def _text_leaf() -> st.SearchStrategy[Node]:
    return st.one_of(st.just(Path(("id",))), _texts.map(Literal))


def _time_leaf() -> st.SearchStrategy[Node]:
    return st.one_of(st.sampled_from([Path(("phenomenonTime",)), Path(("resultTime",))]), _times.map(Literal))


def _numbers_of(depth: int) -> st.SearchStrategy[Node]:
    if depth <= 0:
        return _number_leaf()
    inner = _numbers_of(depth - 1)
    return st.one_of(
        _number_leaf(),
        st.builds(Binary, st.sampled_from(["add", "sub", "mul", "div", "mod"]), inner, inner),
        # a negated literal folds into a negative literal when parsed: negate paths and operations only
        st.builds(Unary, st.just("-"), inner.filter(lambda n: not isinstance(n, Literal))),
        st.builds(lambda f, a: Call(f, (a,)), st.sampled_from(["round", "floor", "ceiling"]), inner),
        st.builds(lambda a: Call("length", (a,)), _text_leaf()),
        st.builds(
            lambda f, a: Call(f, (a,)),
            st.sampled_from(["year", "month", "day", "hour", "minute", "second"]),
            _time_leaf(),
        ),
    )


def _texts_of() -> st.SearchStrategy[Node]:
    leaf = _text_leaf()
    return st.one_of(
        leaf,
        st.builds(lambda f, a: Call(f, (a,)), st.sampled_from(["tolower", "toupper"]), leaf),
        st.builds(lambda a, b: Call("concat", (a, b)), leaf, leaf),
    )


def _conditions(depth: int) -> st.SearchStrategy[Node]:
    comparison = st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"])
    leaves = st.one_of(
        st.builds(Binary, comparison, _numbers_of(2), _numbers_of(2)),
        st.builds(Binary, comparison, _texts_of(), _texts_of()),
        st.builds(Binary, comparison, _time_leaf(), _time_leaf()),
        st.builds(
            lambda f, a, b: Call(f, (a, b)),
            st.sampled_from(["startswith", "endswith", "contains", "substringof"]),
            _texts_of(),
            _texts_of(),
        ),
        st.sampled_from([Literal(True), Literal(False)]),
        st.builds(lambda op, n: Binary(op, n, Literal(None)), st.sampled_from(["eq", "ne"]), _numbers_of(1)),
    )
    if depth <= 0:
        return leaves
    inner = _conditions(depth - 1)
    return st.one_of(
        leaves,
        st.builds(Binary, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(Unary, st.just("not"), inner),
    )


# ---- the database -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(api_database_url: str) -> Iterator[tuple[psycopg.Connection[Any], dict[str, Any], list[dict[str, Any]]]]:
    """A Datastream whose readings are `RESULTS`, spread over three days either side of T0."""
    ids = sensors.register(api_database_url, sensors.air("flt-1"))
    rows = []
    with psycopg.connect(api_database_url, autocommit=True) as conn:
        for i, value in enumerate(RESULTS * 3):
            ts = T0 + timedelta(hours=5 * i - 100, microseconds=i * 1013)
            conn.execute(
                "INSERT INTO readings (sensor_key, quantity, ts, value, received_at) VALUES (%s, 1, %s, %s, now())",
                (ids["flt-1"], ts, value),
            )
        params = {
            "ds_id": "flt-1:pm25", "ds_sensor": "flt-1", "ds_quantity": "pm25", "ds_city": "jakarta",
            "ds_key": ids["flt-1"], "ds_code": 1,
        }  # fmt: skip
        # The ids as the service spells them; the rest as stored.
        query = f"SELECT e.id, e.phenomenon_time, e.result FROM ({scoped_observations('raw')}) e"
        for entity_id, ts, value in conn.execute(query, params):
            rows.append({"id": entity_id, "phenomenonTime": ts, "resultTime": ts, "result": value})
        assert len(rows) == 3 * len(RESULTS)
        yield conn, params, rows


def _selected_in_postgres(stored: Any, node: Node) -> set[str] | None:
    conn, params, _ = stored
    out = Translation("f")
    resolve = StaReader(None, Access(Scope.READ, None), "").resolver(OBSERVATIONS)  # type: ignore[arg-type]
    condition = translate_filter(node, resolve, out)
    query = f"SELECT e.id FROM ({scoped_observations('raw')}) e WHERE {condition}"
    try:
        return {row[0] for row in conn.execute(query, {**params, **out.params})}
    except psycopg.errors.NumericValueOutOfRange:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(node=_conditions(3))
def test_filter_selects_what_the_naive_evaluator_selects(stored: Any, node: Node) -> None:
    text = render_filter(node)
    assert parse_filter(text) == node, text
    rows = stored[2]
    expected = {row["id"] for row in rows if evaluate(node, row) is True}
    selected = _selected_in_postgres(stored, parse_filter(text))
    if selected is None:  # PostgreSQL refuses a double overflow; Python makes it infinite
        assert any(math.isinf(v) for row in rows for v in _numbers_in(node, row))
        return
    assert selected == expected, text


def _numbers_in(node: Node, row: dict[str, Any]) -> Iterator[float]:
    if isinstance(node, Binary | Unary | Call):
        value = evaluate(node, row)
        if isinstance(value, float):
            yield value
        for child in (
            (node.left, node.right)
            if isinstance(node, Binary)
            else ((node.operand,) if isinstance(node, Unary) else node.args)
        ):
            yield from _numbers_in(child, row)


@given(text=st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    error = None
    try:
        parse_filter(text)
    except FilterError as exc:
        error = str(exc)
    assert error is None or error.startswith("$filter")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("result gt 1 add 2 mul 3", Binary("gt", Path(("result",)), Binary("add", Literal(1.0), Binary(
            "mul", Literal(2.0), Literal(3.0))))),
        ("not result eq 1 or id eq 'a''b'", Binary("or", Unary("not", Binary("eq", Path(("result",)), Literal(1.0))),
                                                   Binary("eq", Path(("id",)), Literal("a'b")))),
        ("Datastream/Thing/id eq 'x'", Binary("eq", Path(("Datastream", "Thing", "id")), Literal("x"))),
        ("phenomenonTime ge 2026-01-01T07:00:00+07:00", Binary("ge", Path(("phenomenonTime",)),
                                                               Literal(datetime(2026, 1, 1, tzinfo=UTC)))),
        ("result lt -2.5e1", Binary("lt", Path(("result",)), Literal(-25.0))),
    ],
)  # fmt: skip
def test_precedence_and_literals(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected


# ---- injection through every option ------------------------------------------------------------------------------

ATTEMPTS = {
    "$filter": [
        "id eq 'x'; DROP TABLE sensors; --",
        "id eq 'x' or 1 eq 1) UNION SELECT key_hash FROM api_keys --",
        "result gt 0; DELETE FROM readings",
        "pg_sleep(10) eq 1",
        'id eq "x"',
        "(((((((((((((((((((((((((((((((((((((((((((((result gt 1)))))))))))))))))))))))))))))))))))))))))))))",
        "sensors.sensor_key eq 1",
    ],
    "$orderby": ["id; DROP TABLE sensors", "id desc, (SELECT 1)", "1", "result desc nulls first"],
    "$select": ["id, (SELECT key_hash FROM api_keys)", "*", "id;DROP TABLE sensors"],
    "$expand": [
        "Datastreams($filter=1 eq 1) or 1=1",
        "Datastreams($top=1;DROP TABLE sensors)",
        "Things'--",
        "Datastreams($orderby=id;$skiptoken=x)",
    ],
    "$top": ["1; DROP TABLE sensors", "1e3", "0x10", "-1"],
    "$skip": ["1 OR 1=1", "-5", "1.5"],
    "$count": ["true; DROP TABLE sensors", "1"],
    "$skiptoken": ["WyJ4Jyk7IERST1AgVEFCTEUgc2Vuc29yczsgLS0iXQ", "' OR 1=1 --", "W10"],
    "$search": ["x"],
    "$id": ["1"],
}


def _fingerprint(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sensors), (SELECT count(*) FROM readings), (SELECT count(*) FROM api_keys),"
            " (SELECT md5(string_agg(sensor_id || name || city, ',' ORDER BY sensor_id)) FROM sensors),"
            " (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')"
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture(scope="module")
def served(api_database_url: str, stored: Any) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    keys = make_keys(api_database_url)
    with serving(api_database_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, keys.header()


@pytest.mark.parametrize(
    ("option", "value"), [(option, value) for option, values in ATTEMPTS.items() for value in values]
)
@pytest.mark.parametrize("path", ["/sta/v1.1/Observations", "/sta/v1.1/Datastreams('flt-1:pm25')/Observations"])
def test_injection_through_an_option_is_400_and_changes_nothing(
    served: tuple[httpx.Client, dict[str, str]], api_database_url: str, path: str, option: str, value: str
) -> None:
    client, headers = served
    before = _fingerprint(api_database_url)
    response = client.get(path, params={option: value}, headers=headers)
    assert_problem(response, 400)
    assert _fingerprint(api_database_url) == before


@pytest.mark.parametrize("entity_id", ["'x'' OR ''1''=''1'", "'flt-1''); DROP TABLE sensors; --'", "'flt-1:pm25'' --'"])
def test_quoted_ids_are_values_never_sql(
    served: tuple[httpx.Client, dict[str, str]], api_database_url: str, entity_id: str
) -> None:
    client, headers = served
    before = _fingerprint(api_database_url)
    for entity_set in ("Things", "Datastreams", "Observations"):
        assert_problem(client.get(f"/sta/v1.1/{entity_set}({entity_id})", headers=headers), 404)
    assert _fingerprint(api_database_url) == before
    # Inside a well-formed string literal, the same text is a value to compare with: no rows, nothing else.
    response = client.get(
        "/sta/v1.1/Things", params={"$filter": "id eq 'x'' OR ''1''=''1'"}, headers=headers
    )  # fmt: skip
    assert response.json()["value"] == []

"""SQL identifiers come only from allow-lists: an audit of every SQL text the packages build at run time.

Values always travel as parameters. Identifiers (tables, columns, functions, channels) cannot, so wherever a
package builds SQL text with an f-string, `str.format` or `+`, each interpolated piece must be one of:

- a module constant (an ALL_CAPS name, or an attribute of one), fixed when the code was written;
- a psycopg `sql.Identifier` / `sql.Literal` / `sql.SQL` composable (quoted by psycopg);
- an expression listed in `AUDITED` below, with the fixed set it is drawn from (checked by reading the code, and
  re-checked whenever the expression changes, because a change makes this test fail).

A new interpolation anywhere fails this test until someone audits it and adds it here. docs/security.md states the
rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("livinglab", "ingest", "processing", "api", "simulators", "notify")
_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|LISTEN|NOTIFY|COPY|TRUNCATE|GRANT|FROM|WHERE|VALUES)\b"
)

#: (file, interpolated expression) -> where its value comes from.
AUDITED: dict[tuple[str, str], str] = {
    ("livinglab/storage/policies.py", "kind"): "'compression' or 'retention', from the POLICY kinds of this module",
    ("processing/windows.py", "table"): "_WINDOWS[width].table: agg_1m, agg_1h or agg_1d (fixed Window table names)",
    ("processing/windows.py", "upsert"): "upsert_changed() over a fixed window table and the _VALUES column tuple",
    ("processing/_changes.py", "table"): "callers pass fixed table names (agg_*, ispu_hourly, aqi_hourly, ...)",
    ("processing/_changes.py", "columns"): "joined from the callers' fixed key and value column tuples",
    ("processing/_changes.py", "', '.join(keys)"): "the callers' fixed key column tuples",
    ("processing/_changes.py", "assignments"): "built from the callers' fixed value column tuples",
    ("processing/_changes.py", "old"): "built from the callers' fixed value column tuples",
    ("processing/_changes.py", "new"): "built from the callers' fixed value column tuples",
    ("processing/_changes.py", "select"): "the callers' constant SELECT texts",
    ("processing/claims.py", "query"): "one of the module's constant claim queries, passed by its callers",
    # Alarms: the rule columns are the module's RULE_FIELDS tuple; the series queries one of _SERIES's constants.
    ("livinglab/alarms/evaluator.py", "_SERIES[metric.source]"): "_SERIES: one constant query per metric Source",
    **{
        ("livinglab/alarms/store.py", expr): "column names from the constant RULE_FIELDS / _WRITTEN tuples"
        for expr in (
            "', '.join((f'%({c})s' for c in RULE_FIELDS))",
            "', '.join((f'{c} = %({c})s' for c in _WRITTEN))",
            "', '.join((f'{c} = excluded.{c}' for c in _WRITTEN))",
        )
    },
    # SensorThings: every source, column and relation comes from the entity sets defined in api/sta/_entities.py
    # (module constants); $filter is translated by api/sta/_translate.py, which binds every literal as a parameter
    # (Translation.bind) and resolves names only through the entity set's allow-listed columns; aliases are
    # generated (`e`, `t<n>`); $top and $skip are integers formatted with :d.
    ("api/sta/_entities.py", "', '.join((f's.{f}' for f in _ROAD_FIELDS))"): "the constant _ROAD_FIELDS tuple",
    ("api/sta/_entities.py", "source"): "a Datastream source built from the module's constant queries",
    ("api/sta/_translate.py", "part"): "'year', 'month', 'day', 'hour' or 'minute': FUNCTIONS' fixed date parts",
    **{
        ("api/sta/_query.py", expr): "entity set definitions, generated aliases, translated $filter, integers"
        for expr in (
            "f' OFFSET {offset:d}' if offset else ''",
            "source",
            "where_sql",
            "self._order_sql(keys)",
            "options.top + 1",
            "' AND '.join(where)",
            "inner",
            "target.source",
            "inner_alias",
            "relation.target_column",
            "alias",
            "relation.column",
            "' AND '.join(count_where) or 'TRUE'",
        )
    },
}


def _is_constant(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_").isupper() or _is_constant(node.value)
    if isinstance(node, ast.Call):
        owner = node.func.value if isinstance(node.func, ast.Attribute) else None
        if isinstance(owner, ast.Name) and owner.id == "sql":
            return True  # sql.Identifier(...), sql.Literal(...), sql.SQL(...): quoted or constant by psycopg
        # A function of constants only (upsert_changed("agg_1h", KEYS, ...), ISO_UTC.format("c.hour")).
        return all(_is_constant(a) for a in [*node.args, *(k.value for k in node.keywords)])
    if isinstance(node, ast.Tuple):
        return all(_is_constant(e) for e in node.elts)
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left) and _is_constant(node.right)
    return False


def _text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    return ""


def _string_constants(tree: ast.AST) -> dict[str, str]:
    """Module-level NAME = "text" assignments."""
    constants = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and _text(node.value):
                    constants[target.id] = _text(node.value)
    return constants


def _interpolations(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """(line, expression) for each piece put into SQL-looking text at run time."""
    found: list[tuple[int, ast.expr]] = []
    constants = _string_constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and _SQL.search(_text(node)):
            found += [(node.lineno, v.value) for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            owner = node.func.value
            text = constants.get(owner.id, "") if isinstance(owner, ast.Name) else _text(owner)
            if _SQL.search(text):
                found += [(node.lineno, a) for a in [*node.args, *(k.value for k in node.keywords)]]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _SQL.search(_text(node)):
            found += [(node.lineno, side) for side in (node.left, node.right) if not _text(side)]
    return found


def _sites() -> list[tuple[str, int, str]]:
    sites = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, expr in _interpolations(ast.parse(path.read_text(), filename=relative)):
                if not _is_constant(expr):
                    sites.append((relative, line, ast.unparse(expr)))
    return sites


def test_every_interpolated_sql_piece_is_a_constant_or_audited() -> None:
    unaudited = [f"{path}:{line}: {expr}" for path, line, expr in _sites() if (path, expr) not in AUDITED]
    assert not unaudited, "SQL text built from unaudited pieces:\n" + "\n".join(unaudited)


def test_the_audit_list_has_no_stale_entries() -> None:
    seen = {(path, expr) for path, _, expr in _sites()}
    assert set(AUDITED) <= seen, sorted(set(AUDITED) - seen)


def test_the_scanner_sees_an_interpolated_identifier() -> None:
    # The scanner itself must catch the thing it guards against, or the tests above prove nothing.
    tree = ast.parse('def f(conn, table):\n    conn.execute(f"SELECT * FROM {table} WHERE id = %s", (1,))\n')
    assert [ast.unparse(e) for _, e in _interpolations(tree)] == ["table"]
    tree = ast.parse('def f(conn, col):\n    conn.execute("SELECT " + col + " FROM t")\n')
    assert [ast.unparse(e) for _, e in _interpolations(tree) if not _is_constant(e)] == ["col"]

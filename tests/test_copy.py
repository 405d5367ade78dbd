"""Binary COPY encoding round-trips through a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from livinglab.storage.copy import encode_binary_copy


def test_binary_copy_round_trip(database_url: str) -> None:
    ts_us = np.array([0, 1_795_852_800_123_456, -86_400_000_000], dtype=np.int64)
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE t (a int2, b int4, c int8, d float8, e timestamptz)")
        with conn.cursor().copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(
                encode_binary_copy(
                    [
                        ("int2", np.array([1, -2, 32767], dtype=np.int16)),
                        ("int4", np.array([7, 8, -9], dtype=np.int32)),
                        ("int8", np.array([2**40, 0, -1], dtype=np.int64)),
                        ("float8", np.array([41.3, np.nan, -0.5])),
                        ("timestamptz", ts_us),
                    ]
                )
            )
        rows = conn.execute("SELECT a, b, c, d, e FROM t ORDER BY c DESC").fetchall()
    assert rows[0][:3] == (1, 7, 2**40)
    assert rows[0][3] == 41.3
    assert rows[0][4] == datetime(1970, 1, 1, tzinfo=UTC)
    assert rows[1][4] == datetime(2026, 11, 28, 8, 0, 0, 123456, tzinfo=UTC)
    assert np.isnan(rows[1][3])
    assert rows[2][4] == datetime(1969, 12, 31, tzinfo=UTC)

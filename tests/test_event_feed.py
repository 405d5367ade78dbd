"""The change-event feed in commit order: a cursor never passes an event still to be committed.

The scenario of the defect it fixes, step by step: a transaction publishes an event and stays open, a second one
publishes and commits, a reader reads and moves its cursor, then the first commits.
"""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from livinglab.events import EventType, latest_event_id, publish_event, read_events

pytestmark = pytest.mark.integration


def _publish(conn: psycopg.Connection[object], n: int, city: str = "jakarta") -> None:
    publish_event(conn, EventType.ISPU, {"items": [{"n": n}], "truncated": False}, city=city)


def _late_commit(url: str) -> tuple[list[int], list[int]]:
    """The reader's ids before and after the late commit, and every id in the table at the end."""
    with psycopg.connect(url) as late, psycopg.connect(url) as early, psycopg.connect(url, autocommit=True) as reader:
        cursor = start = latest_event_id(reader)
        _publish(late, 1)  # takes its id first, commits last
        _publish(early, 2)
        early.commit()
        seen = [e.id for e in read_events(reader, after=cursor)]
        cursor = seen[-1]
        late.commit()
        seen += [e.id for e in read_events(reader, after=cursor)]
        stored = [r[0] for r in reader.execute("SELECT id FROM events WHERE id > %s ORDER BY id", (start,))]
    return seen, stored


def test_a_late_commit_is_not_skipped(fresh_database_url: str) -> None:
    seen, stored = _late_commit(fresh_database_url)
    assert len(seen) == 2
    assert seen == stored  # each once, in id order


def test_without_commit_order_the_same_reader_skips_it(fresh_database_url: str) -> None:
    """The control: with ids taken at INSERT (the trigger dropped), the same steps lose the late event."""
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER events_commit_order ON events")
    seen, stored = _late_commit(fresh_database_url)
    assert len(seen) == 1
    assert len(stored) == 2


def test_filters_and_bounds(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        start = latest_event_id(conn)
        for n, city in enumerate(("jakarta", "bandung", "jakarta", "surabaya")):
            _publish(conn, n, city)
        publish_event(conn, EventType.AQI, {"items": [], "truncated": False}, city=None)
        conn.commit()
        events = read_events(conn, after=start)
        assert [e.city for e in events] == ["jakarta", "bandung", "jakarta", "surabaya", None]
        assert [e.payload["items"] for e in events[:2]] == [[{"n": 0}], [{"n": 1}]]
        assert [e.city for e in read_events(conn, after=start, cities={"jakarta", "surabaya"})] == [
            "jakarta",
            "jakarta",
            "surabaya",
        ]
        assert read_events(conn, after=start, cities=[]) == []  # a city list without a match gives nothing
        assert [e.type for e in read_events(conn, after=start, types={"aqi"})] == ["aqi"]
        assert read_events(conn, after=start, limit=2) == events[:2]
        assert read_events(conn, after=start, until=events[2].id) == events[:3]
        assert latest_event_id(conn) == events[-1].id


def test_concurrent_writers_and_a_following_reader(fresh_database_url: str) -> None:
    """Four writers commit transactions of 1-3 events at random moments; a reader follows the feed the way the
    alarm evaluation does (read after the cursor, move it to the last id) and must see every event once, in order."""
    url = fresh_database_url
    stop, written = threading.Event(), threading.Event()
    with psycopg.connect(url) as conn:
        start = latest_event_id(conn)

    def write(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(url) as conn:
            while not stop.is_set():
                for n in range(rng.randint(1, 3)):
                    _publish(conn, n)
                    time.sleep(rng.random() * 0.01)  # hold the transaction open a little
                conn.commit()

    seen: list[int] = []

    def follow() -> None:
        cursor = start
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                # Whether the writers were done before this read, not after it: an empty read that began before their
                # last commits says nothing about those.
                done = written.is_set()
                batch = read_events(conn, after=cursor, limit=50)
                seen.extend(e.id for e in batch)
                if batch:
                    cursor = batch[-1].id
                elif done:
                    return
                time.sleep(0.002)

    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    reader = threading.Thread(target=follow)
    for t in (*writers, reader):
        t.start()
    time.sleep(4)
    stop.set()
    for t in writers:
        t.join()
    written.set()
    reader.join()
    with psycopg.connect(url) as conn:
        stored = [r[0] for r in conn.execute("SELECT id FROM events WHERE id > %s ORDER BY id", (start,))]
    assert len(stored) > 200
    assert seen == stored

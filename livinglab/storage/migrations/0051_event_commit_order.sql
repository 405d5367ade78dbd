-- Event ids in commit order (see livinglab/events.py for why and for the proof).
--
-- An id taken from the sequence when the row is inserted orders events by insertion, and transactions commit in
-- another order: a reader that has seen id 14 would never see id 12 committed after it. So the id a row gets at
-- INSERT is provisional: at COMMIT, a deferred trigger takes a transaction-level advisory lock and renumbers the
-- transaction's events from the sequence. The lock is held from there to the end of the commit only (no round trip
-- to the client in between), and PostgreSQL releases it after the commit is visible, so final ids are handed out in
-- commit order and a reader needs only `id > cursor ORDER BY id`.
CREATE FUNCTION events_number_at_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- 0x4C4C4556 = 'LLEV': the event feed's lock, apart from the processors' sensor and district locks.
    PERFORM pg_advisory_xact_lock(1280066902, 0);
    UPDATE events SET id = DEFAULT WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER events_commit_order
AFTER INSERT ON events
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION events_number_at_commit();

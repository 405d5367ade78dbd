-- Retention bookkeeping, on every database. The retention job (`livinglab retention`, livinglab.storage.retention)
-- records each pass here, so operators can see what was dropped and when.
CREATE TABLE retention_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ran_at timestamptz NOT NULL DEFAULT now(),
    table_name text NOT NULL,
    cutoff timestamptz NOT NULL,
    rows_deleted bigint NOT NULL,
    duration_ms double precision NOT NULL
);
CREATE INDEX retention_runs_ran_at ON retention_runs (ran_at);

-- The retention job trims queued work whose readings are gone; without this it would scan the whole queue.
CREATE INDEX dirty_windows_window_start ON dirty_windows (window_start);

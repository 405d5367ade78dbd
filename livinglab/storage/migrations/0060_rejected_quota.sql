-- The quota of rejected payload bytes (ingest/quota.py). One row per quota key (a sensor, a city, or the rest),
-- holding what the current period kept and dropped; a new period starts the counts again.
CREATE TABLE rejected_quota (
    quota_key text PRIMARY KEY,
    period_start timestamptz NOT NULL,
    kept_bytes bigint NOT NULL DEFAULT 0,
    dropped_messages bigint NOT NULL DEFAULT 0,
    dropped_bytes bigint NOT NULL DEFAULT 0
);

-- Rejected messages stored without their payload because their sensor's quota was used up, per sensor and UTC
-- hour of receipt (the quality page's `payloads_dropped_24h`).
CREATE TABLE rejected_drops (
    sensor_key integer NOT NULL,
    hour timestamptz NOT NULL,
    messages bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (sensor_key, hour)
);

-- Whether a rejected message's payload was left out for the quota (its `payload` is then empty).
ALTER TABLE rejected ADD COLUMN payload_dropped boolean NOT NULL DEFAULT false;

-- Alarms and notifications (CONTRACT.md section 5): rules, alarm episodes with their history, notification
-- channels, and the durable outbox their deliveries go through.

-- A rule watches one metric of every sensor in its scope (a sensor, a district, a city, or every sensor the
-- metric applies to). `metric` is validated by the code that writes rules (livinglab.alarms), not here, so a new
-- metric needs no migration.
CREATE TABLE alarm_rules (
    rule_id text PRIMARY KEY CHECK (rule_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metric text NOT NULL,
    op text NOT NULL CHECK (op IN ('>', '>=', '<', '<=')),
    threshold double precision NOT NULL,
    clear_threshold double precision NOT NULL,
    for_s integer NOT NULL DEFAULT 0 CHECK (for_s >= 0),
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    channels text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    sensor_id text,
    district text,
    city text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarm_rules_metric ON alarm_rules (metric) WHERE enabled;

-- One row per (rule, sensor) episode. While an episode is open (active or acknowledged) no other may open for the
-- same rule and sensor: the partial unique index is what makes two racing evaluators raise it once.
CREATE TABLE alarms (
    alarm_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id text NOT NULL REFERENCES alarm_rules (rule_id) ON DELETE CASCADE,
    sensor_key integer NOT NULL REFERENCES sensors (sensor_key) ON DELETE CASCADE,
    city text NOT NULL,
    district text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state text NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared')),
    raised_at timestamptz NOT NULL,
    value double precision NOT NULL,
    last_value double precision NOT NULL,
    acknowledged_at timestamptz,
    note text,
    cleared_at timestamptz
);
CREATE UNIQUE INDEX alarms_one_open ON alarms (rule_id, sensor_key) WHERE state <> 'cleared';
CREATE INDEX alarms_raised ON alarms (raised_at DESC, alarm_id DESC);
CREATE INDEX alarms_city_raised ON alarms (city, raised_at DESC, alarm_id DESC);

-- What happened to each alarm, in order: raised, acknowledged (with the note), cleared.
CREATE TABLE alarm_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id bigint NOT NULL REFERENCES alarms (alarm_id) ON DELETE CASCADE,
    event text NOT NULL CHECK (event IN ('raised', 'acknowledged', 'cleared')),
    at timestamptz NOT NULL DEFAULT now(),
    value double precision,
    note text
);
CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, id);

-- Where notifications go. `config` holds the fields of the channel's type (webhook: url, secret; mqtt: topic;
-- email: to).
CREATE TABLE notification_channels (
    channel_id text PRIMARY KEY CHECK (channel_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    type text NOT NULL CHECK (type IN ('webhook', 'mqtt', 'email')),
    name text NOT NULL,
    config jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per (alarm event, channel), written in the transaction that changes the alarm, so an event
-- is either both recorded and queued for delivery or neither. Deliverers claim due rows with FOR UPDATE SKIP
-- LOCKED and NOTIFY `livinglab_deliveries` wakes them. `delivery_id` is the same on every attempt.
CREATE TABLE notification_deliveries (
    delivery_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id text NOT NULL REFERENCES notification_channels (channel_id) ON DELETE CASCADE,
    alarm_id bigint NOT NULL REFERENCES alarms (alarm_id) ON DELETE CASCADE,
    event text NOT NULL CHECK (event IN ('raised', 'acknowledged', 'cleared')),
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, created_at DESC);

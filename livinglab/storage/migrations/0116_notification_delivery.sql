-- Delivery of notifications (CONTRACT.md section 5): channels limited to cities, and the claims deliverers hold.

-- The cities whose alarms a channel may carry, and which keys see it; empty: every city (like a key's cities).
ALTER TABLE notification_channels ADD COLUMN cities text[] NOT NULL DEFAULT '{}';

-- The deliverer holding a pending row (its worker id) until `next_attempt_at`, the end of its lease. A deliverer
-- that restarts under the same id takes its rows back at once instead of waiting for the lease to run out.
ALTER TABLE notification_deliveries ADD COLUMN claimed_by text;

-- A channel's delivery log, newest first, a page at a time.
DROP INDEX notification_deliveries_channel;
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, created_at DESC, delivery_id DESC);

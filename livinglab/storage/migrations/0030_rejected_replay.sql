-- Replay of rejected messages, requested through the API and carried out by an ingester.
--
-- The API never decodes payloads itself (roles talk only through the database): POST /v1/rejected/{id}/replay
-- sets `replay_requested_at` and NOTIFYs `livinglab_replay` with the id. An ingester picks up rows where
-- `replay_requested_at IS NOT NULL AND (replayed_at IS NULL OR replayed_at < replay_requested_at)`, runs the stored
-- payload through the same decoding and validation rules as a live message (with the current registry and limits),
-- writes the readings it accepts like a live batch, and sets `replayed_at = now()` and `replay_outcome` to
-- `accepted` or to the rejection reason code, in the same transaction. A replay that is rejected again stays
-- listed with its new outcome and can be requested again.
ALTER TABLE rejected ADD COLUMN replay_requested_at timestamptz;
CREATE INDEX rejected_replay_pending ON rejected (replay_requested_at) WHERE replay_requested_at IS NOT NULL;

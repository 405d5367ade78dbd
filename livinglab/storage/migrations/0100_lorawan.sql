-- LoRaWAN network servers (CONTRACT.md section 6): sensors known by their DevEUI, codec output mapped by a field map,
-- and what the ingester counts of LoRaWAN uplinks.
--
-- `dev_eui` is stored lower-case (the API and imports normalise it; the check keeps other writers honest), so the
-- unique index makes it unique without regard to case. The API answers 409 when the index refuses a DevEUI.
ALTER TABLE sensors
    ADD COLUMN dev_eui text CONSTRAINT sensors_dev_eui_format CHECK (dev_eui ~ '^[0-9a-f]{16}$'),
    ADD COLUMN field_map jsonb CONSTRAINT sensors_field_map_object CHECK (jsonb_typeof(field_map) = 'object');
CREATE UNIQUE INDEX sensors_dev_eui ON sensors (dev_eui);

-- Per sensor and UTC hour of receipt: codec members that mapped to no quantity (battery, signal and the like), and
-- frame-counter gaps of uplinks (`fcnt_gaps` times a device's fCnt jumped, `frames_missed` frames skipped in all).
ALTER TABLE ingest_counters
    ADD COLUMN ignored_members bigint NOT NULL DEFAULT 0,
    ADD COLUMN fcnt_gaps bigint NOT NULL DEFAULT 0,
    ADD COLUMN frames_missed bigint NOT NULL DEFAULT 0;

-- The highest uplink frame counter seen per LoRaWAN sensor, updated in each batch's transaction, so gaps are counted
-- the same however many ingesters share the uplinks.
CREATE TABLE lorawan_frames (
    sensor_key integer PRIMARY KEY,
    fcnt bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

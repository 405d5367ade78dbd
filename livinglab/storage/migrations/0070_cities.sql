-- Cities (CONTRACT.md section 8): API keys limited to cities, and service-level targets per city.
--
-- `api_keys.cities` is the set of cities a key may see and change; an empty array means every city. A key made
-- through `POST /v1/keys` records the key that made it in `created_by` (keys made on the command line have none).
ALTER TABLE api_keys
    ADD COLUMN cities text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(cities, NULL) IS NULL AND cardinality(cities) <= 64),
    ADD COLUMN created_by integer REFERENCES api_keys (id);

-- Service-level targets set for one city; a service without a row here has the configured default target.
CREATE TABLE service_targets (
    city text NOT NULL,
    service text NOT NULL CHECK (service IN ('air', 'traffic', 'data')),
    target double precision NOT NULL CHECK (target >= 0 AND target <= 1),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, service)
);

-- A city-limited key lists rejected messages of its cities newest first (`city = ANY(...) ORDER BY id DESC`).
-- The other lists filter on `sensors.city` (indexed since 0001) or on tables whose keys lead with the city.
CREATE INDEX rejected_city_id ON rejected (city, id);

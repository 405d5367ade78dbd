-- ISO 8601 UTC text of a timestamp, as the API serves times: `2026-11-28T10:00:00Z`, with fractional seconds only
-- when there are any. The API builds the JSON of its busiest lists inside PostgreSQL with this. JSON output of a
-- timestamp is ISO 8601 whatever the DateStyle, and about eight times cheaper than to_char.
CREATE FUNCTION livinglab_iso(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (to_json(t AT TIME ZONE 'UTC') #>> '{}') || 'Z' $$;

-- livinglab_iso declared STABLE, as its body is (to_json of a timestamp is a stable function). PostgreSQL inlines a
-- SQL function into the query only when the declared volatility is no stricter than the body's, so the IMMUTABLE
-- declaration of 0032 made every call a separate SQL function call: in the ISPU list's query, about a tenth of
-- the server's time. The text it returns is unchanged.
CREATE OR REPLACE FUNCTION livinglab_iso(t timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT (to_json(t AT TIME ZONE 'UTC') #>> '{}') || 'Z' $$;

-- Indexes for the API's read paths.
-- /v1/service-levels reads whole days from service_daily and the partial days at the edges from service_hourly,
-- by time first and city second; the primary keys lead with city and district.
CREATE INDEX IF NOT EXISTS service_hourly_period ON service_hourly (period_start, city);
CREATE INDEX IF NOT EXISTS service_daily_period ON service_daily (period_start, city);
-- /v1/rejected lists newest first, filtered by sensor or reason, with an id cursor.
CREATE INDEX IF NOT EXISTS rejected_sensor_id ON rejected (sensor_id, id);
CREATE INDEX IF NOT EXISTS rejected_reason_id ON rejected (reason, id);

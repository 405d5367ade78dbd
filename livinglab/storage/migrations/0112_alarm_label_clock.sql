-- ISPU and AQI values are labelled by the end of the hour they include and computed ahead of it: the API serves a
-- new label the moment its hour ends, with no change event at that moment. The evaluator goes through the rules on
-- those metrics once per hour, as soon as the hour ends; this column says when it last did.
ALTER TABLE alarm_evaluator ADD COLUMN labels_checked_at timestamptz;
UPDATE alarm_evaluator SET labels_checked_at = now();

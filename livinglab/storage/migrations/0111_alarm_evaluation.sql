-- Alarm evaluation state (livinglab.alarms, processing.alarms).
--
-- `alarm_evaluator` holds the evaluators' one cursor on the change feed (`events`): the evaluator that holds the row
-- lock evaluates the events after it and moves it in the transaction that raises and clears the alarms they cause,
-- so an event is evaluated exactly once by whichever evaluator got there, and a crash loses nothing (the
-- transaction and its cursor move roll back together). Evaluators that find the row locked stand by.
CREATE TABLE alarm_evaluator (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    cursor bigint NOT NULL,
    silence_checked_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alarm_evaluator (cursor) SELECT coalesce(max(id), 0) FROM events;

-- A rule is evaluated against every sensor of its scope when it is created or changed (so a rule made while a
-- value already meets it raises without waiting for the next change): `revision` counts the writes of the rule,
-- `evaluated_revision` the last one an evaluator has gone through.
ALTER TABLE alarm_rules
    ADD COLUMN revision bigint NOT NULL DEFAULT 1,
    ADD COLUMN evaluated_revision bigint NOT NULL DEFAULT 0;
CREATE INDEX alarm_rules_unevaluated ON alarm_rules (rule_id) WHERE evaluated_revision < revision;
CREATE INDEX alarms_rule_open ON alarms (rule_id) WHERE state <> 'cleared';
CREATE INDEX alarms_sensor ON alarms (sensor_key);

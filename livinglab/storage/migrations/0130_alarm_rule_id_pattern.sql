-- Rule ids follow the pattern of a sensor id (CONTRACT.md section 5; livinglab.domain.IDENTIFIER_PATTERN), as
-- the API and the rules file validate them. 0110 checked the wider pattern of channel ids (upper case and dots),
-- so a rule written past the API could take an id that no path (`/v1/alarm-rules/{rule_id}`) can name.
-- NOT VALID: the check holds for every row written from now on, and a database that already holds such a row (it
-- can only have been written by hand) still upgrades; `ALTER TABLE alarm_rules VALIDATE CONSTRAINT
-- alarm_rules_rule_id_check` then names it.
ALTER TABLE alarm_rules DROP CONSTRAINT alarm_rules_rule_id_check;
ALTER TABLE alarm_rules ADD CONSTRAINT alarm_rules_rule_id_check
    CHECK (rule_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$') NOT VALID;

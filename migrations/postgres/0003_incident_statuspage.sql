-- The status page's own id for an incident, so updates and the resolution reach the same
-- public incident from whichever replica handles them.
ALTER TABLE incidents ADD COLUMN statuspage_id TEXT;

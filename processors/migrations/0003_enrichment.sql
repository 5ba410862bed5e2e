-- Enrichment: stored with each event; a profile keeps its last known geo and device, a
-- session the geo and device of its first event.

ALTER TABLE events ADD COLUMN enrichment jsonb;
ALTER TABLE profiles ADD COLUMN geo jsonb, ADD COLUMN device jsonb;
ALTER TABLE sessions ADD COLUMN geo jsonb, ADD COLUMN device jsonb;

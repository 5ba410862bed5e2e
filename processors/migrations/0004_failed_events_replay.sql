-- Failed events that were replayed are marked, so a second replay skips them (unless forced).

ALTER TABLE failed_events ADD COLUMN replayed_at timestamptz;
CREATE INDEX failed_events_failed_at ON failed_events (failed_at);

-- Profile-less events (?profile_less=true, /collect) are stored as events only: no
-- profile, session, identifier or identify state is created for them, and their
-- profile_id is NULL (the id the gateway keyed them by on Kafka names no profile).

ALTER TABLE events ALTER COLUMN profile_id DROP NOT NULL;

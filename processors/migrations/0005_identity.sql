-- Identity: a merged profile points at its canonical profile (merged_into always names a
-- root); aliases, identifiers claimed by profiles, one audit record per merge, the merges
-- that guardrails refused, and the identify stage's state per profile id as clients send it.
--
-- Events are never re-pointed: an event keeps the profile id the identify stage resolved
-- when it ran. Every read resolves through merged_into / profile_aliases (one step), e.g.
-- the canonical_events view below.

ALTER TABLE profiles
    ADD COLUMN merged_into   text,
    ADD COLUMN trait_times   jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN merge_history jsonb NOT NULL DEFAULT '[]'::jsonb;
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE profile_aliases (
    alias_id      text PRIMARY KEY,
    canonical_id  text NOT NULL,
    merged_at     timestamptz NOT NULL
);
CREATE INDEX profile_aliases_canonical_id ON profile_aliases (canonical_id);

CREATE TABLE identifiers (
    type           text NOT NULL,
    value          text NOT NULL,
    profile_id     text NOT NULL,
    hashed         boolean NOT NULL DEFAULT false,
    reason         text NOT NULL,
    event_id       text NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    PRIMARY KEY (type, value, profile_id)
);
CREATE INDEX identifiers_profile_id ON identifiers (profile_id);

CREATE TABLE merge_audit (
    loser_id          text PRIMARY KEY,  -- a profile is merged once
    id                text NOT NULL UNIQUE,
    winner_id         text NOT NULL,
    identifier_type   text NOT NULL,
    identifier_value  text NOT NULL,
    hashed            boolean NOT NULL,
    reason            text NOT NULL,
    event_id          text NOT NULL,
    decided_at        timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merge_audit_winner_id ON merge_audit (winner_id);
CREATE INDEX merge_audit_identifier ON merge_audit (identifier_type, identifier_value);

CREATE TABLE identity_conflicts (
    id                text PRIMARY KEY,
    identifier_type   text NOT NULL,
    identifier_value  text NOT NULL,
    hashed            boolean NOT NULL,
    profile_ids       text[] NOT NULL,
    reason            text NOT NULL,
    detail            text NOT NULL,
    event_id          text NOT NULL,
    detected_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_conflicts_profile_ids ON identity_conflicts USING gin (profile_ids);

CREATE TABLE identify_state (
    profile_id  text PRIMARY KEY,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Traits set at a time win over traits set earlier, key by key (trait_times holds when each
-- trait was set); used by the store's profile upsert.
CREATE FUNCTION trackflow_newer_traits(traits jsonb, times jsonb, new_traits jsonb, new_times jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT traits || coalesce(jsonb_object_agg(n.key, n.value), '{}'::jsonb)
    FROM jsonb_each(coalesce(new_traits, '{}'::jsonb)) AS n
    WHERE times->>n.key IS NULL
       OR (times->>n.key)::timestamptz <= (new_times->>n.key)::timestamptz
$$;

CREATE FUNCTION trackflow_newer_trait_times(times jsonb, new_times jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT times || coalesce(jsonb_object_agg(n.key, n.value), '{}'::jsonb)
    FROM jsonb_each(coalesce(new_times, '{}'::jsonb)) AS n
    WHERE times->>n.key IS NULL
       OR (times->>n.key)::timestamptz <= (n.value#>>'{}')::timestamptz
$$;

-- Every stored event with the canonical profile it belongs to.
CREATE VIEW canonical_events AS
SELECT coalesce(p.merged_into, e.profile_id) AS canonical_profile_id, e.*
FROM events e LEFT JOIN profiles p ON p.id = e.profile_id;

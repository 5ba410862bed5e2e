-- trackflow schema, version 1: events, profiles, sessions, failed events.

CREATE TABLE profiles (
    id             text PRIMARY KEY,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_event_at  timestamptz NOT NULL,
    event_count    bigint NOT NULL DEFAULT 0,
    traits         jsonb NOT NULL DEFAULT '{}'::jsonb,
    tags           text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE sessions (
    id             text PRIMARY KEY,
    profile_id     text NOT NULL,
    started_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    event_count    bigint NOT NULL DEFAULT 0
);
CREATE INDEX sessions_profile_id ON sessions (profile_id);

CREATE TABLE events (
    id             text PRIMARY KEY,
    type           text NOT NULL,
    source_id      text NOT NULL,
    profile_id     text NOT NULL,
    session_id     text,
    received_at    timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    protocol       text NOT NULL,
    properties     jsonb NOT NULL,
    context        jsonb NOT NULL,
    options        jsonb NOT NULL,
    tags           text[] NOT NULL,
    request        jsonb NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset   bigint NOT NULL
);
CREATE INDEX events_profile_id_received_at ON events (profile_id, received_at);
CREATE INDEX events_type_received_at ON events (type, received_at);

CREATE TABLE failed_events (
    id             bigserial PRIMARY KEY,
    stage          text NOT NULL,
    reason         text NOT NULL,
    topic          text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset   bigint NOT NULL,
    event_id       text,
    failed_at      timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    payload        text NOT NULL,
    UNIQUE (stage, topic, kafka_partition, kafka_offset)
);

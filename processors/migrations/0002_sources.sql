-- Event sources mirrored from the config topic, so they can be queried (and so that the
-- inline gateway, which runs without Kafka, can read them).

CREATE TABLE sources (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    enabled     boolean NOT NULL,
    config      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL
);

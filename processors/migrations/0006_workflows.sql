-- Workflows: rules mirrored from the config topic, what the workflow stage did for each
-- event, and every webhook delivery.

CREATE TABLE rules (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    enabled     boolean NOT NULL,
    priority    integer NOT NULL,
    definition  jsonb NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- One row per event the workflow stage evaluated (the replay guard: an event is run once).
CREATE TABLE workflow_runs (
    event_id       text PRIMARY KEY,
    profile_id     text NOT NULL,
    matched_rules  text[] NOT NULL,
    stopped_by     text,
    kafka_partition integer NOT NULL,
    kafka_offset   bigint NOT NULL,
    run_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_runs_profile_id ON workflow_runs (profile_id);

-- One row per action of every matched rule: planned, applied, failed or stopped.
CREATE TABLE action_outcomes (
    event_id        text NOT NULL,
    rule_id         text NOT NULL,
    action_index    integer NOT NULL,
    action          text NOT NULL,
    status          text NOT NULL,
    error           text,
    idempotency_key text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, rule_id, action_index)
);
CREATE INDEX action_outcomes_rule_id ON action_outcomes (rule_id, recorded_at);

-- One row per webhook call, keyed by its idempotency key (the same on every attempt).
CREATE TABLE webhook_deliveries (
    idempotency_key text PRIMARY KEY,
    event_id        text NOT NULL,
    rule_id         text NOT NULL,
    action_index    integer NOT NULL,
    method          text NOT NULL,
    url             text NOT NULL,
    status          text NOT NULL,   -- pending, retrying, delivered, dead_letter
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    last_status_code integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_event_id ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, updated_at);

"""The `trackflow` command against real services: idempotent set-up, clear errors."""

from __future__ import annotations

from tests.integration.conftest import Pipeline
from tests.integration.harness import cli


def test_migrate_and_topics_are_idempotent(pipeline: Pipeline) -> None:
    migrated = cli("migrate", env=pipeline.env)
    assert migrated.returncode == 0, migrated.stderr
    assert "database schema up to date (0 applied now)" in migrated.stdout
    topics = cli("topics", env=pipeline.env)
    assert topics.returncode == 0, topics.stderr
    assert "topics ready (0 created now)" in topics.stdout


def test_adding_an_existing_source_fails_naming_it(pipeline: Pipeline) -> None:
    result = cli("sources", "add", "Again", "--id", pipeline.source_id, env=pipeline.env)
    assert result.returncode == 1
    assert f"source '{pipeline.source_id}' already exists" in result.stderr


def test_disabling_an_unknown_source_fails_naming_it(pipeline: Pipeline) -> None:
    result = cli("sources", "disable", "no-such-source", env=pipeline.env)
    assert result.returncode == 1
    assert "no source with id 'no-such-source'" in result.stderr


def test_invalid_source_id_is_refused(pipeline: Pipeline) -> None:
    result = cli("sources", "add", "Bad", "--id", "has space", env=pipeline.env)
    assert result.returncode == 1
    assert "invalid source: id: String should match pattern" in result.stderr


def test_unreachable_kafka_is_named() -> None:
    result = cli("sources", "list", "--kafka", "127.0.0.1:1", timeout=120)
    assert result.returncode == 1
    assert "trackflow: error: cannot reach Kafka at 127.0.0.1:1" in result.stderr


def test_bad_setting_is_named() -> None:
    result = cli("topics", env={"TRACKFLOW_TOPIC_PARTITIONS": "many"})
    assert result.returncode == 1
    assert "TRACKFLOW_TOPIC_PARTITIONS" in result.stderr and "'many'" in result.stderr


def test_unreachable_database_is_named() -> None:
    result = cli("migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "trackflow: error: migration failed" in result.stderr


def test_status_summarises_the_running_stack(pipeline: Pipeline) -> None:
    result = cli(
        "status",
        "--gateway",
        pipeline.gateway_url,
        "--worker",
        pipeline.worker_url,
        "--interval",
        "1",
        env=pipeline.env,
    )
    assert result.returncode == 0, result.stderr
    assert "ready: gateway kafka yes, worker yes" in result.stdout
    assert "consumer lag" in result.stdout


def test_status_names_an_unreachable_component() -> None:
    result = cli("status", "--gateway", "http://127.0.0.1:1", "--interval", "0")
    assert result.returncode == 1
    assert "cannot read metrics from http://127.0.0.1:1" in result.stderr

"""trackflow's HTTP gateway: validate, check the source, assign ids, publish, answer."""

from ingest_gateway.app import create_app, inline_app, kafka_app

__all__ = ["create_app", "inline_app", "kafka_app"]

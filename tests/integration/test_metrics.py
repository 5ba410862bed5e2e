"""Every component's /metrics during an end-to-end run: counts match what was sent."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Pipeline
from tests.integration.harness import poll


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def lag_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "trackflow_consumer_lag")


def test_gateway_and_worker_metrics_count_the_events_sent(pipeline: Pipeline) -> None:
    gateway, worker = pipeline.gateway_url, pipeline.worker_url
    before_gw, before_wk = scrape(gateway), scrape(worker)
    profile = f"metrics-{uuid.uuid4()}"
    sent = 0
    for _ in range(5):
        response = httpx.post(
            f"{gateway}/track",
            json={
                "source": {"id": pipeline.source_id},
                "profile": {"id": profile},
                "events": [{"type": "page-view"}, {"type": "click"}],
            },
            timeout=10,
        )
        assert response.status_code == 200
        sent += 2

    def stored_delta() -> float:
        now = scrape(worker)
        return value(now, "trackflow_stage_events_total", stage="store", outcome="ok") - value(
            before_wk, "trackflow_stage_events_total", stage="store", outcome="ok"
        )

    poll(lambda: stored_delta() >= sent, 30, f"{sent} events counted as stored")
    after_gw, after_wk = scrape(gateway), scrape(worker)

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta(
            after_gw,
            before_gw,
            "trackflow_gateway_events_accepted_total",
            source=pipeline.source_id,
        )
        == sent
    )
    assert (
        delta(
            after_gw, before_gw, "trackflow_gateway_requests_total", endpoint="/track", status="200"
        )
        == 5
    )
    assert delta(after_gw, before_gw, "trackflow_gateway_produce_duration_seconds_count") == 5
    assert (
        delta(
            after_gw,
            before_gw,
            "trackflow_gateway_request_duration_seconds_count",
            endpoint="/track",
        )
        == 5
    )
    assert value(after_gw, "trackflow_gateway_kafka_ready") == 1
    assert stored_delta() == sent
    for stage in ("identify", "enrich"):  # every event passed every stage once
        assert (
            delta(after_wk, before_wk, "trackflow_stage_events_total", stage=stage, outcome="ok")
            == sent
        ), stage
        assert (
            delta(after_wk, before_wk, "trackflow_stage_duration_seconds_count", stage=stage) >= 1
        )
    assert delta(after_wk, before_wk, "trackflow_end_to_end_latency_seconds_count") == sent
    e2e_sum = delta(after_wk, before_wk, "trackflow_end_to_end_latency_seconds_sum")
    assert 0 < e2e_sum / sent < 10, "mean receipt-to-row latency should be plausible"
    assert delta(after_wk, before_wk, "trackflow_stage_duration_seconds_count", stage="store") >= 1
    assert delta(after_wk, before_wk, "trackflow_store_batch_size_sum") >= sent
    assert delta(after_wk, before_wk, "trackflow_store_write_duration_seconds_count") >= 1
    assert value(after_wk, "trackflow_worker_ready") == 1
    poll(
        lambda: any(n == "trackflow_consumer_lag" for (n, _) in scrape(worker)),
        30,
        "consumer lag to be exported",
    )
    poll(
        lambda: lag_total(scrape(worker)) == 0, 30, "consumer lag back to zero after draining", 0.5
    )

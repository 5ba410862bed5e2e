"""Every component's /metrics during an end-to-end run: counts match what was sent."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Pipeline
from tests.integration.harness import cli, poll


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


class _Receiver:
    """A webhook receiver on loopback that answers 200 and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                )
                receiver.calls += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _track(pipeline: Pipeline, profile: str, *events: dict[str, object]) -> list[str]:
    response = httpx.post(
        f"{pipeline.gateway_url}/track",
        json={"source": {"id": pipeline.source_id}, "profile": {"id": profile}, "events": events},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["events"]
    return ids


def test_merges_conflicts_rule_matches_and_webhook_deliveries_are_counted(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    worker = pipeline.worker_url
    receiver = _Receiver()
    tag = uuid.uuid4().hex[:8]
    rule_id, probe = f"metrics-{tag}", f"probe-{tag}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"rules:\n  - id: {rule_id}\n    name: Metrics probe\n"
        f"    when: {{event_types: [{probe}]}}\n"
        f"    then:\n      - action: webhook\n        url: {receiver.url}\n"
        "        body: {id: '{{ event.id }}'}\n"
    )
    applied = cli("rules", "apply", str(rules), env=pipeline.env)
    assert applied.returncode == 0, applied.stderr
    try:
        # the rule is live once a probe matches it (the workers follow the config topic)
        poll(
            lambda: (
                _track(pipeline, f"probe-{uuid.uuid4()}", {"type": probe}),
                value(scrape(worker), "trackflow_rule_matches_total", rule=rule_id) >= 1,
            )[1],
            30,
            f"rule {rule_id} matching",
            1.0,
        )
        poll(lambda: receiver.calls >= 1, 30, "the first webhook call")
        before = scrape(worker)
        email = f"metrics.{tag}@example.com"
        for profile in (f"m1-{tag}", f"m2-{tag}"):  # one email, two profiles: one merge
            _track(pipeline, profile, {"type": "identify", "context": {"traits": {"email": email}}})
        _track(
            pipeline, f"m3-{tag}", {"type": "identify", "context": {"traits": {"email": "null"}}}
        )
        [probed] = _track(pipeline, f"m4-{tag}", {"type": probe})

        def delta(name: str, **labels: str) -> float:
            return value(scrape(worker), name, **labels) - value(before, name, **labels)

        poll(lambda: delta("trackflow_merges_total") >= 1, 30, "a merge counted")
        poll(
            lambda: delta("trackflow_identity_conflicts_total", reason="blocked_identifier") >= 1,
            30,
            "a blocked identifier counted as a conflict",
        )
        poll(
            lambda: any(probed.encode() in body for body in receiver.bodies),
            30,
            "the probe's webhook call",
        )
        # warm-up probes may still be matched or delivered after the baseline, so the rule's
        # matches are compared with the calls this test's receiver got: one call per match
        poll(
            lambda: (
                value(scrape(worker), "trackflow_rule_matches_total", rule=rule_id)
                == receiver.calls
            ),
            30,
            "one webhook call per rule match",
        )
        assert delta("trackflow_rule_matches_total", rule=rule_id) >= 1
        assert delta("trackflow_webhook_deliveries_total", outcome="delivered", attempt="1") >= 1
        assert delta("trackflow_merges_total") == 1
        assert delta("trackflow_identity_conflicts_total", reason="blocked_identifier") == 1
        assert delta("trackflow_webhook_deliveries_total", outcome="dead_letter", attempt="1") == 0
    finally:
        cli("rules", "disable", rule_id, env=pipeline.env)
        receiver.server.shutdown()

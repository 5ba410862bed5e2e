"""`trackflow status`: rates and totals computed from two scrapes."""

from __future__ import annotations

from trackflow.status import parse, render, summarise

GW_BEFORE = """
trackflow_gateway_requests_total{endpoint="/track",status="200"} 10
trackflow_gateway_events_accepted_total{source="web"} 20
trackflow_gateway_kafka_ready 1
"""
GW_AFTER = """
trackflow_gateway_requests_total{endpoint="/track",status="200"} 30
trackflow_gateway_requests_total{endpoint="/track",status="422"} 2
trackflow_gateway_events_accepted_total{source="web"} 60
trackflow_gateway_kafka_ready 1
"""
WK_BEFORE = """
trackflow_stage_events_total{stage="store",outcome="ok"} 100
trackflow_end_to_end_latency_seconds_count 100
trackflow_end_to_end_latency_seconds_sum 10
"""
WK_AFTER = """
trackflow_stage_events_total{stage="store",outcome="ok"} 140
trackflow_stage_events_total{stage="store",outcome="failed"} 2
trackflow_failed_events_total{stage="store",reason="invalid_json"} 2
trackflow_consumer_lag{topic="trackflow.events.raw.v1",partition="0"} 3
trackflow_consumer_lag{topic="trackflow.events.raw.v1",partition="1"} 4
trackflow_end_to_end_latency_seconds_count 140
trackflow_end_to_end_latency_seconds_sum 14
trackflow_worker_ready 1
"""


def test_rates_lag_failures_and_latency() -> None:
    s = summarise(parse(GW_BEFORE), parse(GW_AFTER), parse(WK_BEFORE), parse(WK_AFTER), 2.0)
    assert s.gateway["requests/s"] == 11.0
    assert s.gateway["events accepted/s"] == 20.0
    assert s.stages[("store", "ok")] == 20.0 and s.stages[("store", "failed")] == 1.0
    assert s.lag == {"trackflow.events.raw.v1": 7.0}
    assert s.failures == {("store", "invalid_json"): 2.0}
    assert s.end_to_end_mean == 0.1
    text = render(s, "http://gw", ["http://wk"])
    assert "end-to-end mean latency: 100 ms" in text
    assert "ready: gateway kafka yes, worker yes" in text


def test_no_traffic_renders_placeholders() -> None:
    s = summarise({}, {}, {}, {}, 1.0)
    text = render(s, "http://gw", ["http://wk"])
    assert s.end_to_end_mean is None and "(not measured yet)" in text and "none" in text
    assert "worker NO" in text

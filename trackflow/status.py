"""``trackflow status``: a terminal summary of a running stack, read from its /metrics.

Two scrapes ``interval`` seconds apart give rates; gauges (lag, readiness) are read as is.
Parsing and summarising are pure; only ``scrape`` does I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "StatusError", "parse", "render", "scrape", "summarise"]

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


class StatusError(Exception):
    pass


def scrape(url: str, timeout: float = 5.0) -> Samples:
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StatusError(f"cannot read metrics from {url}: {exc}") from None
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sum(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )


def _by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, labels), v in samples.items():
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] += v
    return dict(out)


@dataclass(frozen=True)
class Summary:
    gateway: Mapping[str, float]
    stages: Mapping[tuple[str, str], float]  # (stage, outcome) -> events/s
    lag: Mapping[str, float]  # topic -> messages
    failures: Mapping[tuple[str, str], float]  # (stage, reason) -> total
    end_to_end_mean: float | None
    ready: Mapping[str, float]


def summarise(
    gw_before: Samples, gw_after: Samples, wk_before: Samples, wk_after: Samples, seconds: float
) -> Summary:
    def rate(before: Samples, after: Samples, name: str, **match: str) -> float:
        return max(0.0, _sum(after, name, **match) - _sum(before, name, **match)) / seconds

    gateway = {
        "requests/s": rate(gw_before, gw_after, "trackflow_gateway_requests_total"),
        "events accepted/s": rate(gw_before, gw_after, "trackflow_gateway_events_accepted_total"),
        "rejected/s": rate(gw_before, gw_after, "trackflow_gateway_events_rejected_total"),
        "in flight": _sum(gw_after, "trackflow_gateway_requests_in_flight"),
    }
    before, after = (
        _by(wk_before, "trackflow_stage_events_total", "stage", "outcome"),
        _by(wk_after, "trackflow_stage_events_total", "stage", "outcome"),
    )
    stages = {(k[0], k[1]): max(0.0, v - before.get(k, 0.0)) / seconds for k, v in after.items()}
    lag = {k[0]: v for k, v in _by(wk_after, "trackflow_consumer_lag", "topic").items()}
    failures = {
        (k[0], k[1]): v
        for k, v in _by(wk_after, "trackflow_failed_events_total", "stage", "reason").items()
    }
    count = _sum(wk_after, "trackflow_end_to_end_latency_seconds_count") - _sum(
        wk_before, "trackflow_end_to_end_latency_seconds_count"
    )
    total = _sum(wk_after, "trackflow_end_to_end_latency_seconds_sum") - _sum(
        wk_before, "trackflow_end_to_end_latency_seconds_sum"
    )
    ready = {
        "gateway kafka": _sum(gw_after, "trackflow_gateway_kafka_ready"),
        "worker": _sum(wk_after, "trackflow_worker_ready"),
    }
    return Summary(gateway, stages, lag, failures, total / count if count else None, ready)


def render(summary: Summary, gateway_url: str, worker_urls: Sequence[str]) -> str:
    lines = [f"gateway {gateway_url}"]
    lines += [f"  {name:<20} {value:>10.1f}" for name, value in summary.gateway.items()]
    lines.append(f"workers {', '.join(worker_urls)}")
    lines.append(f"  {'stage':<12} {'outcome':<10} {'events/s':>10}")
    for (stage, outcome), value in sorted(summary.stages.items()):
        lines.append(f"  {stage:<12} {outcome:<10} {value:>10.1f}")
    e2e = summary.end_to_end_mean
    lines.append(f"  end-to-end mean latency: {'-' if e2e is None else f'{e2e * 1000:.0f} ms'}")
    lines.append("consumer lag")
    lines += [f"  {topic:<32} {value:>10.0f}" for topic, value in sorted(summary.lag.items())] or [
        "  (not measured yet)"
    ]
    lines.append("failed events (total)")
    lines += [
        f"  {stage:<12} {reason:<24} {value:>8.0f}"
        for (stage, reason), value in sorted(summary.failures.items())
    ] or ["  none"]
    lines.append(
        "ready: "
        + ", ".join(
            f"{name} {'yes' if value >= 1 else 'NO'}" for name, value in summary.ready.items()
        )
    )
    return "\n".join(lines)

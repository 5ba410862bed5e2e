"""Targets judged against the results, and the results written as JSON and Markdown."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["evaluate_targets", "render_markdown", "write_results"]

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


def _dig(data: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        else:
            return None
    return data


def _at_rate(runs: Sequence[dict[str, Any]] | None, rate: int) -> dict[str, Any] | None:
    return next((r for r in runs or [] if r.get("offered_rate") == rate), None)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def _target(
    name: str, value: float | None, ok: bool | None, measured: str, reference: str = ""
) -> dict[str, Any]:
    status = NOT_MEASURED if value is None or ok is None else (MET if ok else NOT_MET)
    return {
        "target": name,
        "value": value,
        "measured": measured,
        "reference": reference,
        "status": status,
    }


def _errors_note(http: dict[str, Any] | None) -> str:
    if not http:
        return ""
    failed = http["scheduled"] - http["ok"]
    return f" ({failed:,} of {http['scheduled']:,} requests not sent or not 2xx)" if failed else ""


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    producer = _dig(r, "producer", "events_per_s")
    single = _dig(r, "gateway", "max_single")
    batch = _dig(r, "gateway", "max_batch20")
    best = max(
        (x for x in (_dig(single, "events_per_s"), _dig(batch, "events_per_s")) if x is not None),
        default=None,
    )
    targets.append(
        _target(
            "gateway >= 0.5 x raw producer events/s",
            best,
            None if best is None or producer is None else best >= 0.5 * producer,
            f"{_fmt(best, 'events/s')} = {best / producer:.2f} x" if best and producer else "—",
            f"raw producer {_fmt(producer, 'events/s')}",
        )
    )
    value = _dig(batch, "events_per_s")
    targets.append(
        _target(
            ">= 20,000 events/s in 20-event batches",
            value,
            None if value is None else value >= 20_000,
            f"{_fmt(value, 'events/s')} ({_fmt(_dig(batch, 'requests_per_s'), 'req/s')})"
            + _errors_note(batch),
        )
    )
    value = _dig(single, "requests_per_s")
    targets.append(
        _target(
            ">= 4,000 single-event requests/s",
            value,
            None if value is None else value >= 4_000,
            _fmt(value, "req/s") + _errors_note(single),
        )
    )
    run = _at_rate(_dig(r, "gateway", "fixed_rates"), 2000)
    value = _dig(run, "http", "latency_ms", "p99")
    complete = run is not None and run["http"]["ok"] == run["http"]["scheduled"]
    targets.append(
        _target(
            "p99 < 50 ms at 2,000 req/s (single events)",
            value,
            None if value is None else value < 50 and complete,
            f"p99 {_fmt(value, 'ms')}, p50 {_fmt(_dig(run, 'http', 'latency_ms', 'p50'), 'ms')}"
            + _errors_note(_dig(run, "http")),
        )
    )
    sustained = _dig(r, "end_to_end", "sustained")
    at_max = _dig(r, "end_to_end", "at_maximum", "stored_events_per_s_during_load")
    bounded = _dig(sustained, "lag_bounded")
    # with the lag bounded everything accepted was stored: the sustained rate is the accepted one
    value = _dig(
        sustained,
        "accepted_events_per_s_during_load" if bounded else "stored_events_per_s_during_load",
    )
    targets.append(
        _target(
            "end to end >= 5,000 events/s sustained, lag bounded",
            value,
            None if value is None else bool(bounded) and value >= 5_000,
            f"{_fmt(value, 'events/s')}, lag {'bounded' if bounded else 'NOT bounded'}"
            if value is not None
            else "—",
            f"pipeline at maximum: {_fmt(at_max, 'events/s')} stored",
        )
    )
    run = _dig(r, "end_to_end", "latency_at_rate")
    value = _dig(run, "receipt_to_row", "latency_ms", "p99")
    stored_all = _dig(run, "receipt_to_row", "all_stored")
    complete = run is not None and run["http"]["ok"] == run["http"]["scheduled"]
    rate = _dig(run, "offered_events_per_s")
    targets.append(
        _target(
            "p99 receipt-to-row < 1 s at 1,000 events/s",
            value if rate == 1000 else None,
            None if value is None else value < 1000 and bool(stored_all) and complete,
            f"p99 {_fmt(value, 'ms')}, p50 {_fmt(_dig(run, 'receipt_to_row', 'latency_ms', 'p50'))}"
            f" ms at {_fmt(rate)} events/s (20-event requests)"
            + _errors_note(_dig(run, "http"))
            + ("" if stored_all in (None, True) else ", NOT all rows stored"),
        )
    )
    store, copy = (
        _dig(r, "postgres", "store", "rows_per_s"),
        _dig(r, "postgres", "copy", "rows_per_s"),
    )
    targets.append(
        _target(
            "store >= 0.5 x raw COPY",
            store,
            None if store is None or copy is None else store >= 0.5 * copy,
            f"{_fmt(store, 'rows/s')} = {store / copy:.2f} x" if store and copy else "—",
            f"raw COPY {_fmt(copy, 'rows/s')}",
        )
    )
    targets.append(_inline_target(r))
    for key, limit, label in (("gateway", 200, "gateway"), ("worker", 400, "worker")):
        value = _dig(r, "memory", key, "rss_mb")
        targets.append(
            _target(
                f"{label} RSS < {limit} MB",
                value,
                None if value is None else value < limit,
                _fmt(value, "MB"),
                f"after {_dig(r, 'memory', key, 'after') or '—'}",
            )
        )
    return targets


def _inline_target(r: dict[str, Any]) -> dict[str, Any]:
    name = "streaming p99 <= 1/5 of inline p99 at the same load"
    if not _dig(r, "inline", "available"):
        return _target(name, None, None, "inline mode not available")
    pairs = []
    for run in _dig(r, "gateway", "fixed_rates") or []:
        other = _at_rate(_dig(r, "inline", "fixed_rates"), run["offered_rate"])
        # Only where the streaming gateway took the whole load: beyond that both queue.
        if other is not None and run["http"]["ok"] == run["http"]["scheduled"]:
            pairs.append(
                (
                    run["offered_rate"],
                    run["http"]["latency_ms"]["p99"],
                    other["http"]["latency_ms"]["p99"],
                )
            )
    if not pairs:
        return _target(name, None, None, "no rate that the streaming gateway fully served")
    ok = all(stream <= inline / 5 for _, stream, inline in pairs)
    worst = max(stream / inline for _, stream, inline in pairs)
    measured = "; ".join(f"{rate}/s: {s:.1f} vs {i:.1f} ms" for rate, s, i in pairs)
    return _target(name, round(worst, 3), ok, measured, f"worst ratio {worst:.2f} (needs <= 0.20)")


# -- Markdown ---------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if c is None else str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _lat(http: dict[str, Any] | None, key: str) -> str:
    value = _dig(http, "latency_ms", key)
    return "—" if value is None else f"{value:,.1f}"


def _rate_rows(runs: Sequence[dict[str, Any]] | None) -> list[list[Any]]:
    rows = []
    for run in runs or []:
        http, rows_ = run["http"], run["receipt_to_row"]
        rows.append(
            [
                f"{run['offered_rate']:,}",
                f"{http['requests_per_s']:,.0f}",
                f"{http['ok']:,}/{http['scheduled']:,}",
                _lat(http, "p50"),
                _lat(http, "p99"),
                _lat(http, "max"),
                _lat(rows_, "p50"),
                _lat(rows_, "p99"),
                f"{rows_['rows_found']:,}/{rows_['events_acknowledged']:,}",
                _cpu(http),
            ]
        )
    return rows


_RATE_HEADER = (
    "offered req/s",
    "2xx req/s",
    "2xx/scheduled",
    "HTTP p50 ms",
    "HTTP p99 ms",
    "HTTP max ms",
    "receipt-to-row p50 ms",
    "receipt-to-row p99 ms",
    "rows/acknowledged",
    "gateway CPU ms/req (share of a core)",
)


def _cpu(http: dict[str, Any]) -> str:
    per = http.get("gateway_cpu_ms_per_request")
    share = http.get("gateway_cpu_share_of_a_core")
    return "—" if per is None else f"{per:.2f} ({share:.0%})"


def _max_rows(section: dict[str, Any] | None, label: str) -> list[list[Any]]:
    rows = []
    for key, what in (("max_single", "1 event"), ("max_batch20", "20 events")):
        run = _dig(section, key)
        if run:
            rows.append(
                [
                    label,
                    what,
                    f"{run['requests_per_s']:,.0f}",
                    f"{run['events_per_s']:,.0f}",
                    _lat(run, "p50"),
                    _lat(run, "p99"),
                    f"{run['ok']:,}/{run['scheduled']:,}",
                    _cpu(run),
                ]
            )
    return rows


def render_markdown(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    smoke = r.get("mode") == "smoke"
    out = [f"# trackflow benchmark — {r.get('mode')} run, {m.get('date', '?')}", ""]
    if smoke:
        out += [
            "**Smoke run**: every step at tiny scale to prove the harness works; "
            "the figures are not measurements.",
            "",
        ]
    out += ["## Machine", ""]
    out += _table(
        ("", ""),
        [
            ("CPU", m.get("cpu_model")),
            ("cores", m.get("cores")),
            ("memory", f"{m.get('memory_gib')} GiB"),
            ("kernel", m.get("kernel")),
            ("OS", m.get("os")),
            ("Python", m.get("python")),
            ("Kafka", m.get("kafka")),
            ("PostgreSQL", m.get("postgresql")),
            ("Java", m.get("java")),
            ("Go (load generator)", m.get("go")),
            ("trackflow commit", m.get("git_commit")),
            (
                "load average (1/5/15 min) at start → end",
                f"{m.get('load_average_at_start')} → {r.get('load_average_at_end')}",
            ),
            ("run time", f"{r.get('duration_seconds')} s"),
        ],
    )
    out += [
        "Everything (broker, database, gateway, worker, load generator) shares this machine; "
        "a load average above the core count at the start means other work was running "
        "and the figures are noisy.",
        "",
    ]
    out += ["## Targets", ""]
    out += _table(
        ("target", "measured", "ceiling / reference", "status"),
        [
            (t["target"], t["measured"], t["reference"] or "", f"**{t['status']}**")
            for t in r.get("targets", [])
        ],
    )
    if r.get("errors"):
        out += ["## Steps that failed", ""]
        out += [f"- {e['step']}: `{e['error']}`" for e in r["errors"]] + [""]
    out += _details(r)
    return "\n".join(out)


def _details(r: dict[str, Any]) -> list[str]:
    out = ["## Ceilings", ""]
    p = r.get("producer") or {}
    rows = []
    if p:
        rows.append(
            (
                "Kafka producer, pipelined (gateway's KafkaPublisher, no HTTP)",
                f"{p['pipelined']['events_per_s']:,} events/s",
                "—",
            )
        )
        for key in ("publish_1", "publish_20"):
            x = p[key]
            rows.append(
                (
                    f"KafkaPublisher.publish({x['events_per_call']})"
                    f" by {x['concurrent_callers']} callers",
                    f"{x['events_per_s']:,} events/s",
                    f"ack p50 {x['ack_latency_ms'].get('p50')} / "
                    f"p99 {x['ack_latency_ms'].get('p99')} ms",
                )
            )
    pg = r.get("postgres") or {}
    if pg:
        rows.append(
            (
                f"PostgreSQL COPY of store rows, batches of {pg['copy']['batch_size']}",
                f"{pg['copy']['rows_per_s']:,} rows/s",
                "—",
            )
        )
        s = pg["store"]
        rows.append(
            (
                f"store stage alone (PostgresStore.write_events), batches of {s['batch_size']}",
                f"{s['rows_per_s']:,} rows/s",
                f"batch p50 {s['batch_latency_ms'].get('p50')} / p99 "
                f"{s['batch_latency_ms'].get('p99')} ms",
            )
        )
    out += _table(("what", "throughput", "latency"), rows)
    out += ["## Gateway (streaming) at fixed offered rates — worker running", ""]
    out += _table(_RATE_HEADER, _rate_rows(_dig(r, "gateway", "fixed_rates")))
    out += ["## Maximum throughput (closed loop) — worker stopped", ""]
    out += _table(
        (
            "gateway",
            "request",
            "req/s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "2xx/scheduled",
            "gateway CPU ms/req (share of a core)",
        ),
        _max_rows(r.get("gateway"), "streaming") + _max_rows(r.get("inline"), "inline"),
    )
    out += ["## End to end (gateway → Kafka → worker → PostgreSQL), 20-event requests", ""]
    e2e_rows: list[tuple[Any, ...]] = []
    e2e = r.get("end_to_end") or {}
    at_rate = e2e.get("latency_at_rate")
    if at_rate:
        out += _table(
            ("receipt-to-row at a fixed rate", *_RATE_HEADER[1:]),
            [[f"{at_rate['offered_events_per_s']:,} events/s (20-event requests)",
              *_rate_rows([{**at_rate, "offered_rate": 0}])[0][1:]]],
        )  # fmt: skip
    runs = [("at maximum (closed loop)", e2e.get("at_maximum"))] + [
        ("sustained try (open loop)", attempt) for attempt in e2e.get("sustained_attempts", [])
    ]
    for label, e in runs:
        if e:
            e2e_rows.append(
                (
                    label,
                    _fmt(e["offered_events_per_s"]),
                    _fmt(e["accepted_events_per_s_during_load"]),
                    _fmt(e["stored_events_per_s_during_load"]),
                    e["lag_events_at_end_of_load"],
                    _lag(e),
                    e["drained_seconds_after_load"],
                    _fmt(e.get("worker_drain_events_per_s")),
                    {True: "yes", False: "no", None: "—"}[e["lag_bounded"]],
                    e.get("worker_cpu_ms_per_event"),
                )
            )
    out += _table(
        (
            "run",
            "offered events/s",
            "accepted events/s",
            "stored events/s",
            "lag at end",
            "max lag",
            "drained after (s)",
            "worker drain events/s",
            "lag bounded",
            "worker CPU ms/event",
        ),
        e2e_rows,
    )
    out += ["## Inline mode (`trackflow gateway --inline`)", ""]
    if _dig(r, "inline", "available"):
        out += _table(_RATE_HEADER, _rate_rows(_dig(r, "inline", "fixed_rates")))
    else:
        out += [_dig(r, "inline", "note") or "not measured", ""]
    out += ["## Resident memory", ""]
    out += _table(
        ("process", "RSS MB", "notes"),
        [(name, v.get("rss_mb"), _memory_note(v)) for name, v in (r.get("memory") or {}).items()],
    )
    out += [
        "## How it was measured",
        "",
        "- Load comes from `bench/loadgen` (Go, a separate process, one core). Open loop sends "
        "at the offered rate whatever the answers do and counts latency from when each request "
        "was due, so queueing is not hidden; closed loop runs N clients back to back.",
        "- Receipt-to-row latency is `stored_at - received_at` of each stored row (gateway "
        "receipt to the worker's insert transaction), for exactly the events of that run.",
        "- End to end: accepted (gateway `trackflow_gateway_events_accepted_total`) and stored "
        '(worker `trackflow_stage_events_total{stage="store",outcome="ok"}`) sampled once a '
        "second; lag = accepted - stored. Bounded means never more than 2 s worth of offered "
        "events behind in the second half of the load, and caught up within 10 s after it. "
        "The sustained rate is tried at 90 % of what the pipeline took at maximum, then at 60 %.",
        "- The gateway maximum runs with the worker stopped; the fixed-rate and end-to-end runs "
        "with both running, as deployed.",
        "",
    ]
    return out


def _lag(e: dict[str, Any]) -> str:
    seconds = e.get("max_lag_seconds_of_load")
    return (
        f"{e['max_lag_events']} ({seconds} s of load)"
        if seconds is not None
        else str(e["max_lag_events"])
    )


def _memory_note(v: dict[str, Any]) -> str:
    notes = [f"after {v['after']}"] if v.get("after") else []
    if "pss_sum_mb" in v:
        notes.append(
            f"{v['processes']} processes: RSS sum {v['rss_sum_mb']} MB,"
            f" PSS sum {v['pss_sum_mb']} MB"
        )
    return "; ".join(notes)


def write_results(results: dict[str, Any], out: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md`` in ``out``, each written whole (tmp + rename)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{stem}.json", out / f"{stem}.md")
    texts = (json.dumps(results, indent=2, sort_keys=False) + "\n", render_markdown(results))
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths

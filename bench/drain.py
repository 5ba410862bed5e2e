"""``python -m bench.drain``: how fast one worker process drains a backlog, every stage on.

Produces ``--events`` raw events (as the gateway makes them, over ``PROFILES`` profiles, a
fifth of them identifying the visitor by email) straight to the raw topic, then starts one
worker and times it until every event is a row in PostgreSQL. Prints the rate, the worker's
CPU time per event, and (``--profile``) writes pyinstrument's call tree of the worker to
``bench/results/profile-drain.txt`` and its top functions to ``profile-drain.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer

from bench.payloads import raw_events, records
from bench.profile import ensure_pyinstrument, profile_section, profiled, render_text
from bench.run import say
from bench.stack import BenchStack, cpu_seconds
from schemas import RawEvent
from schemas.topics import EVENTS_RAW

__all__ = ["main"]

_RESULTS = Path(__file__).resolve().parent / "results"


def _events(count: int, run: str) -> list[RawEvent]:
    """Raw events; every fifth carries its profile's email, so identity claims flow too."""
    found = raw_events(count, run)
    for index, event in enumerate(found):
        if index % 5 == 0:
            traits = {"email": f"{event.profile_id}@shop.example"}
            found[index] = event.model_copy(update={"context": {**event.context, "traits": traits}})
    return found


async def _produce(bootstrap: str, topic: str, events: list[RawEvent]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, enable_idempotence=True
    )
    await producer.start()
    try:
        pending = [producer.send(r.topic, r.value, key=r.key) for r in records(events, topic)]
        await asyncio.gather(*[await p for p in pending])
    finally:
        await producer.stop()


def _timeline(database_url: str, run: str) -> tuple[datetime, datetime]:
    """When the first and the last of the run's events were stored."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT min(stored_at), max(stored_at) FROM events WHERE properties->>'bench_run' = %s",
            (run,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _stored(database_url: str, run: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE properties->>'bench_run' = %s", (run,)
        ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument("--profile", action="store_true", help="run the worker under pyinstrument")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    if args.profile:
        ensure_pyinstrument()
    stack = BenchStack(say, keep=args.keep)
    session = stack.state / "drain.pyisession"
    run = f"drain-{int(time.time())}"
    try:
        stack.start()
        say(f"producing {args.events:,} raw events straight to {EVENTS_RAW}")
        asyncio.run(_produce(stack.bootstrap, EVENTS_RAW, _events(args.events, run)))
        worker = stack.worker()
        if args.profile:
            worker = profiled(worker, session)
        say("starting one worker; waiting for every event to be stored")
        started, started_at = time.monotonic(), datetime.now(UTC)
        worker.start()
        stored, last_said = 0, started
        while stored < args.events:
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"{stored:,} of {args.events:,} stored after {args.timeout:g} s")
            time.sleep(0.5)
            stored = _stored(stack.database_url, run)
            if time.monotonic() - last_said >= 10:
                say(f"   {stored:,} of {args.events:,} stored")
                last_said = time.monotonic()
        took = time.monotonic() - started
        cpu = cpu_seconds(worker.pid)
        per_event = f", {cpu / args.events * 1000:.2f} ms of worker CPU per event" if cpu else ""
        say(f"drained {args.events:,} events in {took:.1f} s: {args.events / took:,.0f} events/s"
            f" (worker start included){per_event}")  # fmt: skip
        first, last = _timeline(stack.database_url, run)
        steady = args.events / max((last - first).total_seconds(), 0.001)
        say(f"   first event stored {(first - started_at).total_seconds():.1f} s after the worker"
            f" was started; from then on {steady:,.0f} events/s")  # fmt: skip
        worker.stop(sig=signal.SIGINT if args.profile else signal.SIGTERM)
        if args.profile:
            render_text(session, _RESULTS / "profile-drain.txt")
            lines = profile_section("worker draining a backlog", session, 25)
            (_RESULTS / "profile-drain.md").write_text("\n".join(lines))
            say(f"profile written to {_RESULTS / 'profile-drain.txt'} and profile-drain.md")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())

"""trackflow's ``/tracker.js`` in Debian's headless Chromium, against the real pipeline.

A test site on its own loopback origin loads the tracker from the gateway with the loader
snippet, as a customer's site would (so every send is cross-origin); what the browser sent is
checked in PostgreSQL. A flaky gateway, a small proxy in front of the real one, drops
connections and answers 503/429 on cue to exercise the retries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.integration.chromium import CHROMIUM, Browser, chromium
from tests.integration.conftest import Pipeline
from tests.integration.harness import cli, poll

PAGE = Path(__file__).with_name("pages") / "tracker.html"
RETRY_DELAY_MS = 200
MAX_RETRIES = 3
SEND_TIMEOUT_MS = 1000
LOADED = "document.readyState === 'complete' && !!(window.trackflow && trackflow.version)"
UUID_LENGTH = 36


@dataclass
class FlakyGateway:
    """What the proxy in front of the gateway does with the next POSTs, and what it saw."""

    target: str
    # per POST: "drop" (close without answering), "hold" (forward only once the next POST
    # has arrived, after the browser gave up on this one), an HTTP status, else forward
    faults: list[str | int] = field(default_factory=list)
    posts: list[tuple[float, bytes]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    forwarded: list[int] = field(default_factory=list)  # the gateway's answers
    next_post: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, *faults: str | int) -> None:
        with self.lock:
            self.faults, self.posts, self.methods, self.forwarded = list(faults), [], [], []
            self.next_post.clear()

    def event_ids(self) -> list[list[str]]:
        with self.lock:
            return [[e["id"] for e in json.loads(body)["events"]] for _, body in self.posts]


@dataclass(frozen=True)
class Site:
    url: str  # the test pages' origin
    flaky_url: str
    flaky: FlakyGateway
    gateway_url: str
    source_id: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: dict[str, Any]
    flaky: FlakyGateway


class _Pages(BaseHTTPRequestHandler):
    """``/any/path`` is a page whose tracker sends to the gateway, ``/flaky/...`` one whose
    tracker sends to the flaky gateway."""

    server: _Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path == "/favicon.ico":
            self.send_error(404)
            return
        site = self.server.site
        config: dict[str, Any] = {"gateway": site["gateway"], "source": site["source"]}
        if path.startswith("/flaky/"):
            config |= {
                "gateway": site["flaky"],
                "retryDelay": RETRY_DELAY_MS,
                "maxRetries": MAX_RETRIES,
                "timeout": SEND_TIMEOUT_MS,
            }
        if url.query == "quiet":
            config["pageView"] = False
        html = Template(PAGE.read_text()).substitute(
            title=f"Tracker test {path}", config=json.dumps(config), gateway=site["gateway"]
        )
        body = html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Flaky(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        flaky = self.server.flaky
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with flaky.lock:
            flaky.methods.append("POST")
            flaky.posts.append((time.monotonic(), body))
            fault = flaky.faults.pop(0) if flaky.faults else None
            flaky.next_post.set()
            if fault == "hold":
                flaky.next_post.clear()
        if fault == "hold":
            assert flaky.next_post.wait(30), "the browser did not retry"
        if fault == "drop":
            self.close_connection = True  # no answer at all: a network error in the browser
            return
        if isinstance(fault, int):
            self._answer(fault, b"", "application/json")
            return
        forwarded = httpx.post(
            f"{flaky.target}/track",
            content=body,
            headers={
                "content-type": self.headers.get("content-type", ""),
                "origin": self.headers.get("origin", ""),
            },
            timeout=10,
        )
        with flaky.lock:
            flaky.forwarded.append(forwarded.status_code)
        with contextlib.suppress(OSError):  # a held request's browser has stopped waiting
            self._answer(forwarded.status_code, forwarded.content, "application/json")

    def do_OPTIONS(self) -> None:
        with self.server.flaky.lock:
            self.server.flaky.methods.append("OPTIONS")
        self.send_error(405)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Access-Control-Allow-Origin", self.headers.get("origin", "*"))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _accepts_origin(gateway_url: str, source_id: str, origin: str) -> bool:
    """Whether the gateway has read the new source yet (it follows the config topic)."""
    probe = {"source": {"id": source_id}, "events": [{"type": "source-probe"}]}
    response = httpx.post(f"{gateway_url}/track", json=probe, headers={"origin": origin})
    return response.status_code == 200


@pytest.fixture(scope="module")
def site(pipeline: Pipeline) -> Iterator[Site]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `make test` installs Debian's"
    pages, proxy = _serve(_Pages), _serve(_Flaky)
    url = f"http://127.0.0.1:{pages.server_address[1]}"
    flaky_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    source_id = f"tracker-{uuid.uuid4().hex[:12]}"
    add = ("sources", "add", "Tracker test site", "--id", source_id, "--origin", url)
    added = cli(*add, env=pipeline.env)
    assert added.returncode == 0, added.stderr
    poll(
        lambda: _accepts_origin(pipeline.gateway_url, source_id, url),
        30,
        f"the gateway to know source {source_id}",
        0.2,
    )
    pages.site = {"gateway": pipeline.gateway_url, "source": source_id, "flaky": flaky_url}
    proxy.flaky = FlakyGateway(pipeline.gateway_url)
    try:
        yield Site(url, flaky_url, proxy.flaky, pipeline.gateway_url, source_id)
    finally:
        for server in (pages, proxy):
            server.shutdown()
            server.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _events(pipeline: Pipeline, where: str, *params: object) -> list[dict[str, Any]]:
    sql = (
        "SELECT id, type, source_id, profile_id, session_id, properties, context, tags"
        f" FROM events WHERE {where} ORDER BY kafka_offset"
    )
    with psycopg.connect(pipeline.database_url) as conn:
        cursor = conn.execute(sql, params)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _profile_events(pipeline: Pipeline, profile_id: str, count: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        rows = _events(pipeline, "profile_id = %s", profile_id)
        return rows if len(rows) >= count else None

    rows = poll(found, 30, f"{count} events of profile {profile_id} in PostgreSQL")
    assert isinstance(rows, list)
    return rows


def _profile_id(browser: Browser) -> str:
    """The profile id the tracker keeps, once the gateway has answered its first send."""
    profile_id = poll(lambda: browser.evaluate("trackflow.profileId()"), 30, "a profile id")
    assert isinstance(profile_id, str)
    return profile_id


def _no_warnings(browser: Browser) -> None:
    assert browser.console == [], browser.console


def _only_to(browser: Browser, *origins: str) -> None:
    """Every request the page made went to the test site or to the given origins."""
    strays = [u for u in browser.urls() if not u.startswith(origins) and u != "about:blank"]
    assert strays == []


def test_page_views_and_custom_events_land_and_the_profile_persists_across_loads(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    landing = f"{site.url}/shop/product?utm_source=newsletter&utm_medium=email&utm_campaign=fall"
    browser.open(landing, LOADED)
    browser.evaluate('trackflow("track", "add-to-cart", {sku: "A-1", price: 9.5})')
    profile_id = _profile_id(browser)
    session_id = browser.evaluate("trackflow.sessionId()")

    first = _profile_events(pipeline, profile_id, 2)
    assert [(e["type"], e["properties"]) for e in first] == [
        ("page-view", {}),
        ("add-to-cart", {"sku": "A-1", "price": 9.5}),
    ]
    view = first[0]
    assert len(view["id"]) == UUID_LENGTH  # the tracker's own event id
    assert (view["source_id"], view["session_id"]) == (site.source_id, session_id)
    context = view["context"]
    title = "Tracker test /shop/product"
    assert context["page"] == {"url": landing, "path": "/shop/product", "title": title}
    assert context["utm"] == {"source": "newsletter", "medium": "email", "campaign": "fall"}
    assert context["screen"]["width"] > 0 and context["screen"]["viewport"]["height"] > 0
    assert context["library"] == {"name": "trackflow.js", "version": "1.0.0"}
    assert context["language"] and context["time"]["local"].endswith("Z")

    browser.follow(f"{site.url}/shop/cart", LOADED)
    assert browser.evaluate("trackflow.profileId()") == profile_id  # from localStorage
    second = _profile_events(pipeline, profile_id, 3)[2]
    assert second["type"] == "page-view"
    assert second["context"]["page"]["path"] == "/shop/cart"
    assert second["context"]["page"]["referrer"] == landing
    assert second["session_id"] == session_id  # the cookie outlives the page
    assert "utm" not in second["context"]
    [cookie] = browser.call("Network.getCookies", urls=[site.url])["cookies"]
    assert (cookie["name"], cookie["value"]) == ("trackflow_session", session_id)
    assert 1700 < cookie["expires"] - time.time() <= 1800  # 30 minutes from the last event
    _no_warnings(browser)
    _only_to(browser, site.url, site.gateway_url)


def test_identify_puts_the_user_id_and_traits_on_the_event(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    user_id = f"user-{uuid.uuid4()}"
    browser.open(f"{site.url}/account", LOADED)
    browser.evaluate(
        f'trackflow("identify", "{user_id}", {{email: "ada@example.com", plan: "pro"}});'
        'trackflow.track("checkout", {total: 12})'
    )
    profile_id = _profile_id(browser)

    rows = _profile_events(pipeline, profile_id, 3)
    assert [e["type"] for e in rows] == ["page-view", "identify", "checkout"]
    identify, checkout = rows[1], rows[2]
    assert identify["context"]["user_id"] == user_id
    assert identify["context"]["traits"] == {"email": "ada@example.com", "plan": "pro"}
    assert identify["context"]["page"]["path"] == "/account"
    assert checkout["context"]["user_id"] == user_id  # later events carry the user id
    assert "traits" not in checkout["context"]
    assert "user_id" not in rows[0]["context"]

    def profile_traits() -> dict[str, Any] | None:
        with psycopg.connect(pipeline.database_url) as conn:
            row = conn.execute("SELECT traits FROM profiles WHERE id = %s", (profile_id,))
            found = row.fetchone()
        return found[0] if found and found[0] else None

    traits = poll(profile_traits, 30, f"traits on profile {profile_id}")
    assert isinstance(traits, dict)
    assert (traits.get("email"), traits.get("plan")) == ("ada@example.com", "pro"), traits
    _no_warnings(browser)


def test_the_automatic_page_view_can_be_turned_off_and_reset_forgets_the_ids(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    browser.open(f"{site.url}/quiet?quiet", LOADED)
    browser.evaluate('trackflow("identify", "someone", {}); trackflow("track", "first")')
    profile_id = _profile_id(browser)
    session_id = browser.evaluate("trackflow.sessionId()")
    assert [e["type"] for e in _profile_events(pipeline, profile_id, 2)] == ["identify", "first"]

    browser.evaluate('trackflow("reset")')
    assert browser.evaluate("trackflow.profileId()") is None
    browser.evaluate('trackflow("track", "after-reset")')
    other = _profile_id(browser)
    assert other != profile_id
    [row] = _profile_events(pipeline, other, 1)
    assert row["type"] == "after-reset"
    assert row["session_id"] != session_id
    assert "user_id" not in row["context"]
    assert [e["type"] for e in _events(pipeline, "profile_id = %s", profile_id)] == [
        "identify",
        "first",
    ]
    _no_warnings(browser)


def test_events_still_queued_when_the_page_goes_away_are_sent_with_send_beacon(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    browser.open(f"{site.url}/article", LOADED)
    profile_id = _profile_id(browser)  # the page view has been sent
    # queued for the next flush, then the page is left at once: pagehide hands it over
    browser.evaluate('trackflow("track", "outbound-click", {to: "/next"})')
    browser.follow(f"{site.url}/next", LOADED)
    # and on a tab that becomes hidden
    browser.evaluate(
        'trackflow("track", "tab-hidden");'
        'Object.defineProperty(document, "visibilityState", {value: "hidden"});'
        'document.dispatchEvent(new Event("visibilitychange"))'
    )

    rows = _profile_events(pipeline, profile_id, 4)
    assert [e["type"] for e in rows] == ["page-view", "outbound-click", "page-view", "tab-hidden"]
    sends = [
        (r["type"], r["documentURL"], r["request"]["url"])
        for r in browser.requests
        if r["request"]["method"] == "POST"
    ]
    # /article's page view went by fetch, everything after it by beacon (the beacon sent
    # while /article unloads does not show in the DevTools session of the page that follows)
    assert sends[0] == ("Fetch", f"{site.url}/article", f"{site.gateway_url}/track")
    assert ("Ping", f"{site.url}/next", f"{site.gateway_url}/track") in sends
    assert {kind for kind, _, _ in sends[1:]} == {"Ping"}
    _no_warnings(browser)


def test_a_failed_send_is_retried_with_backoff_and_stored_once(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    site.flaky.reset("drop", 503, 429)
    browser.open(f"{site.url}/flaky/retry", LOADED)
    profile_id = _profile_id(browser)

    [view] = _profile_events(pipeline, profile_id, 1)
    attempts = site.flaky.event_ids()
    assert attempts == [[view["id"]]] * 4  # the same event id every time
    assert view["type"] == "page-view"
    assert len(_events(pipeline, "id = %s", view["id"])) == 1
    times = [at for at, _ in site.flaky.posts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps, 1):  # backoff: at least half of delay * 2^(n-1)
        assert gap >= 0.9 * RETRY_DELAY_MS / 1000 * 2 ** (attempt - 1) / 2, gaps
    assert site.flaky.methods == ["POST"] * 4  # a text/plain body needs no CORS preflight
    _no_warnings(browser)
    _only_to(browser, site.url, f"{site.gateway_url}/tracker.js", site.flaky_url)


def test_a_send_that_times_out_is_sent_again_and_the_event_stored_once(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    site.flaky.reset("forward", "hold")
    browser.open(f"{site.url}/flaky/slow", LOADED)
    profile_id = _profile_id(browser)  # the page view went through
    browser.evaluate('trackflow("track", "slow-answer")')

    view, slow = _profile_events(pipeline, profile_id, 2)
    assert slow["type"] == "slow-answer"
    assert site.flaky.event_ids() == [[view["id"]], [slow["id"]], [slow["id"]]]
    poll(lambda: len(site.flaky.forwarded) == 3, 30, "the held send to reach the gateway")
    assert site.flaky.forwarded == [200, 200, 200]  # the gateway took the event twice,
    assert browser.evaluate("trackflow.profileId()") == profile_id
    # ...and once an event sent after both copies (same profile, same partition) is stored,
    # both copies have been through the store
    marker = {"type": "marker"}
    body = {"source": {"id": site.source_id}, "profile": {"id": profile_id}, "events": [marker]}
    assert httpx.post(f"{site.gateway_url}/track", json=body).status_code == 200
    _profile_events(pipeline, profile_id, 3)
    assert [e["id"] for e in _events(pipeline, "id = %s", slow["id"])] == [slow["id"]]  # once
    _no_warnings(browser)


def test_a_batch_that_keeps_failing_is_dropped_after_the_last_retry(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    site.flaky.reset(*[503] * (MAX_RETRIES + 1))
    browser.open(f"{site.url}/flaky/drop", LOADED)
    browser.wait_for_console(f"trackflow: dropped 1 event(s) after {MAX_RETRIES} retries")
    browser.evaluate('trackflow("track", "after-drop")')
    profile_id = _profile_id(browser)

    [row] = _profile_events(pipeline, profile_id, 1)
    assert row["type"] == "after-drop"
    [lost] = site.flaky.event_ids()[0]
    assert _events(pipeline, "id = %s", lost) == []
    assert len(site.flaky.posts) == MAX_RETRIES + 2


def test_bad_calls_are_refused_in_the_page_with_a_warning_and_the_rest_goes_on(
    site: Site, pipeline: Pipeline, browser: Browser
) -> None:
    browser.open(f"{site.url}/bad?quiet", LOADED)
    browser.evaluate(
        "var loop = {}; loop.self = loop;"
        'trackflow("track", "circular", loop); trackflow("track", ""); trackflow("nope");'
        'trackflow("track", "fine", {n: 1})'
    )
    profile_id = _profile_id(browser)

    [row] = _profile_events(pipeline, profile_id, 1)
    assert (row["type"], row["properties"]) == ("fine", {"n": 1})
    warnings = [line for line in browser.console if line.startswith("console.warning")]
    assert len(warnings) == 3, browser.console
    assert "circular cannot be sent as JSON" in warnings[0]
    assert "the event type must be a string" in warnings[1]
    assert "unknown command nope" in warnings[2]

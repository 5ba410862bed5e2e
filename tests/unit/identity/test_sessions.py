"""Session decisions at the timeout edges."""

from __future__ import annotations

from datetime import timedelta

from processors.identity import SessionDecision, decide_session, derived_session_id
from schemas.identity import SessionState
from tests.unit.identity.factories import at

TIMEOUT = timedelta(minutes=30)


def _session(last_seen: float = 10, client_id: str | None = "s1") -> SessionState:
    return SessionState(
        id=client_id or "sx",
        profile_id="p1",
        client_session_id=client_id,
        started_at=at(0),
        last_seen_at=at(last_seen),
        event_count=3,
    )


def _decide(
    last: SessionState | None,
    minutes: float,
    client_id: str | None = "s1",
    timeout: timedelta = TIMEOUT,
) -> SessionDecision:
    return decide_session(
        last,
        profile_id="p1",
        event_id="e9",
        client_session_id=client_id,
        at=at(minutes),
        timeout=timeout,
    )


def test_the_first_event_starts_a_session_with_the_client_id() -> None:
    decision = _decide(None, 0)
    assert (decision.change, decision.is_new, decision.session.id) == ("first", True, "s1")
    assert (decision.session.started_at, decision.session.event_count) == (at(0), 1)


def test_an_event_within_the_timeout_continues_the_session() -> None:
    decision = _decide(_session(), 39)
    assert (decision.change, decision.is_new) == ("continued", False)
    assert decision.session == _session().model_copy(
        update={"last_seen_at": at(39), "event_count": 4}
    )


def test_exactly_the_timeout_of_silence_starts_a_new_session() -> None:
    decision = _decide(_session(last_seen=10), 40)
    assert decision.change == "timeout"
    assert decision.session.id == derived_session_id("s1", "e9")
    assert decision.session.client_session_id == "s1"
    assert (decision.session.started_at, decision.session.event_count) == (at(40), 1)


def test_one_microsecond_before_the_timeout_continues() -> None:
    decision = _decide(_session(last_seen=10), 40 - 1e-6 / 60)
    assert decision.change == "continued"


def test_the_timeout_is_a_parameter() -> None:
    assert _decide(_session(last_seen=10), 15, timeout=timedelta(minutes=5)).change == "timeout"
    assert _decide(_session(last_seen=10), 60, timeout=timedelta(hours=1)).change == "continued"


def test_a_new_client_session_id_starts_a_session() -> None:
    decision = _decide(_session(), 11, client_id="s2")
    assert (decision.change, decision.session.id) == ("new_id", "s2")


def test_the_clock_going_backwards_continues_without_moving_last_seen_back() -> None:
    decision = _decide(_session(last_seen=10), 5)
    assert decision.change == "continued"
    assert (decision.session.last_seen_at, decision.session.event_count) == (at(10), 4)


def test_an_event_older_than_the_session_moves_its_start_back() -> None:
    decision = _decide(_session(last_seen=10), -45)
    assert decision.change == "continued"
    assert (decision.session.started_at, decision.session.last_seen_at) == (at(-45), at(10))


def test_events_without_a_session_id_share_a_derived_session_until_the_timeout() -> None:
    first = _decide(None, 0, client_id=None)
    assert first.session.id == derived_session_id(None, "e9") and first.session.id.startswith("s")
    assert _decide(first.session, 29, client_id=None).change == "continued"
    assert _decide(first.session, 30, client_id=None).change == "timeout"


def test_after_a_timeout_the_same_client_id_continues_the_derived_session() -> None:
    split = _decide(_session(last_seen=10), 60).session
    decision = decide_session(
        split, profile_id="p1", event_id="e10", client_session_id="s1", at=at(61), timeout=TIMEOUT
    )
    assert (decision.change, decision.session.id) == ("continued", split.id)


def test_another_profiles_session_is_never_continued() -> None:
    decision = decide_session(
        _session(),
        profile_id="p2",
        event_id="e9",
        client_session_id="s1",
        at=at(11),
        timeout=TIMEOUT,
    )
    assert (decision.change, decision.session.profile_id) == ("first", "p2")

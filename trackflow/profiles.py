"""``trackflow profile show ID``: a profile as PostgreSQL holds it, following merges.

An id that was merged away shows the profile it was merged into (``profiles.merged_into``
always names the canonical profile). Events are never re-pointed by a merge: a profile's
events are those stored under its id or under any of its aliases (``profile_aliases``),
which is what every read path uses (see also the ``canonical_events`` view).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import click

from trackflow.settings import SettingsError, load_settings

__all__ = ["ProfileView", "profile_group", "read_profile", "render_profile"]


@dataclass(frozen=True)
class ProfileView:
    id: str
    requested_id: str
    created_at: datetime
    last_event_at: datetime
    event_count: int
    events_stored: int
    traits: dict[str, Any]
    tags: list[str]
    aliases: list[str]
    identifiers: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    recent_events: list[dict[str, Any]]
    merges: list[dict[str, Any]]
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    geo: Any = None
    device: Any = None


def _rows(conn: Any, sql: str, *params: object) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_profile(conn: Any, profile_id: str, recent: int = 10) -> ProfileView | None:
    """The canonical profile of ``profile_id`` (itself unless merged); None when unknown."""
    found = _rows(
        conn, "SELECT coalesce(merged_into, id) AS id FROM profiles WHERE id = %s", profile_id
    )
    if not found:
        return None
    canonical = found[0]["id"]
    [p] = _rows(
        conn,
        "SELECT created_at, last_event_at, event_count, traits, tags, geo, device"
        " FROM profiles WHERE id = %s",
        canonical,
    )
    aliases = [
        r["alias_id"]
        for r in _rows(
            conn,
            "SELECT alias_id FROM profile_aliases WHERE canonical_id = %s ORDER BY alias_id",
            canonical,
        )
    ]
    ids = [canonical, *aliases]
    [counted] = _rows(conn, "SELECT count(*) AS n FROM events WHERE profile_id = ANY(%s)", ids)
    return ProfileView(
        id=canonical,
        requested_id=profile_id,
        created_at=p["created_at"],
        last_event_at=p["last_event_at"],
        event_count=int(p["event_count"]),
        events_stored=int(counted["n"]),
        traits=p["traits"],
        tags=list(p["tags"]),
        aliases=aliases,
        identifiers=_rows(
            conn,
            "SELECT type, value, hashed, profile_id, reason, first_seen_at FROM identifiers"
            " WHERE profile_id = ANY(%s) AND NOT (type = 'profile_id' AND value = profile_id)"
            " ORDER BY type, value, first_seen_at",
            ids,
        ),
        sessions=_rows(
            conn,
            "SELECT id, profile_id, started_at, last_seen_at, event_count FROM sessions"
            " WHERE profile_id = ANY(%s) ORDER BY started_at DESC LIMIT %s",
            ids,
            recent,
        ),
        recent_events=_rows(
            conn,
            "SELECT id, type, profile_id, session_id, received_at FROM events"
            " WHERE profile_id = ANY(%s) ORDER BY received_at DESC, id LIMIT %s",
            ids,
            recent,
        ),
        merges=_rows(
            conn,
            "SELECT loser_id, winner_id, identifier_type, identifier_value, hashed, reason,"
            " event_id, decided_at FROM merge_audit"
            " WHERE winner_id = ANY(%s) OR loser_id = ANY(%s) ORDER BY decided_at, loser_id",
            ids,
            ids,
        ),
        conflicts=_rows(
            conn,
            "SELECT identifier_type, identifier_value, profile_ids, reason, detail, detected_at"
            " FROM identity_conflicts WHERE profile_ids && %s::text[] ORDER BY detected_at",
            ids,
        ),
        geo=p["geo"],
        device=p["device"],
    )


def render_profile(view: ProfileView) -> str:
    lines = [f"profile {view.id}"]
    if view.requested_id != view.id:
        lines.append(f"  ({view.requested_id} was merged into {view.id})")
    lines += [
        f"  created        {view.created_at.isoformat()}",
        f"  last event     {view.last_event_at.isoformat()}",
        f"  events         {view.events_stored} stored ({view.event_count} counted)",
        f"  aliases        {', '.join(view.aliases) or '-'}",
        f"  tags           {', '.join(view.tags) or '-'}",
        "traits:",
        *_block(
            f"  {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(view.traits.items())
        ),
        "identifiers:",
        *_block(
            f"  {i['type']}: {'(hashed) ' if i['hashed'] else ''}{i['value']}"
            f"  via {i['profile_id']}"
            for i in view.identifiers
        ),
        "sessions (latest first):",
        *_block(
            f"  {s['id']}  {s['started_at'].isoformat()} .. {s['last_seen_at'].isoformat()}"
            f"  {s['event_count']} events"
            for s in view.sessions
        ),
        "recent events:",
        *_block(
            f"  {e['received_at'].isoformat()}  {e['type']:<20} {e['id']}  (as {e['profile_id']})"
            for e in view.recent_events
        ),
        "merge history:",
        *_block(
            f"  {m['decided_at'].isoformat()}  {m['loser_id']} -> {m['winner_id']}"
            f"  {m['reason']} via {m['identifier_type']}"
            for m in view.merges
        ),
        "identity conflicts:",
        *_block(
            f"  {c['detected_at'].isoformat()}  {c['reason']}: {c['detail']}"
            for c in view.conflicts
        ),
    ]
    return "\n".join(lines)


def _block(lines: Any) -> Sequence[str]:
    found = list(lines)
    return found or ["  -"]


class _Failure(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"trackflow: error: {self.format_message()}", err=True)


@click.group("profile")
def profile_group() -> None:
    """Show customer profiles, following merges."""


@profile_group.command("show")
@click.argument("profile_id")
@click.option("--database-url", help="[TRACKFLOW_DATABASE_URL]")
@click.option("--recent", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def profile_show(profile_id: str, database_url: str | None, recent: int, as_json: bool) -> None:
    """Traits, tags, identifiers, aliases, sessions, recent events and merge history of a
    profile; a merged-away id shows the profile it was merged into."""
    import psycopg

    try:
        settings = load_settings(**({"database_url": database_url} if database_url else {}))
    except SettingsError as exc:
        raise _Failure(str(exc)) from None
    try:
        with psycopg.connect(settings.dsn(), connect_timeout=10) as conn:
            view = read_profile(conn, profile_id, recent)
    except psycopg.Error as exc:
        raise _Failure(f"cannot read the profile from PostgreSQL: {exc}") from None
    if view is None:
        raise _Failure(f"no profile {profile_id!r}")
    if as_json:
        click.echo(json.dumps(asdict(view), default=str, ensure_ascii=False, indent=2))
    else:
        click.echo(render_profile(view))

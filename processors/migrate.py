"""Versioned schema migrations: ``migrations/NNNN_name.sql``, each applied once, in order."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

__all__ = ["Migration", "apply_migrations", "available_migrations"]

_LOCK_ID = 0x7472_6B66  # advisory lock: one migrator at a time


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("processors") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def apply_migrations(dsn: str) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            pending = [m for m in available_migrations() if m.version not in done]
            for migration in pending:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
            return pending
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))

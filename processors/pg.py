"""The workers' PostgreSQL connections: one pool per store, reset after an outage.

Connections are kept open between batches (connecting costs more than a small batch's
write). After PostgreSQL went away, the pool is not left to reconnect on its own: psycopg's
pool retries with a backoff that grows with the outage, so the first write after PostgreSQL
returned could wait for minutes. Instead, an unreachable database makes :class:`Database`
replace its pool; the caller's retry (``processors.retry``) then gets fresh connections the
moment PostgreSQL answers again.

Errors are mapped onto the stages' error tree (``processors.errors``): unreachable is the
retriable :class:`StoreUnavailable`, data PostgreSQL refuses is :class:`InvalidEvent`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from processors.errors import InvalidEvent, StoreUnavailable

__all__ = ["Connection", "Database"]

Connection = psycopg.AsyncConnection[Any]
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout)


class Database:
    """A small pool of connections to ``dsn`` (``autocommit`` for explicit transactions)."""

    def __init__(self, dsn: str, *, max_size: int = 4, autocommit: bool = False) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._kwargs = {"autocommit": autocommit}
        self._pool = self._new_pool()
        self._started = False

    def _new_pool(self) -> AsyncConnectionPool[Connection]:
        return AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._max_size,
            open=False,
            timeout=10.0,
            kwargs=self._kwargs,
        )

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._pool.open(wait=False)

    async def stop(self) -> None:
        self._started = False
        await self._pool.close()

    async def reset(self) -> None:
        """Drop every connection and start a fresh pool (after PostgreSQL went away)."""
        old, self._pool = self._pool, self._new_pool()
        if self._started:
            await self._pool.open(wait=False)
        with contextlib.suppress(Exception):
            await old.close(timeout=1.0)

    @asynccontextmanager
    async def connection(
        self, stage: str, timeout: float | None = None
    ) -> AsyncIterator[Connection]:
        """A connection from the pool; errors mapped for ``stage``."""
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                yield conn
        except _UNREACHABLE as exc:
            await self.reset()
            raise StoreUnavailable(stage, f"postgresql unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise InvalidEvent(stage, f"postgresql rejected the write: {exc}") from exc

    @asynccontextmanager
    async def transaction(self, stage: str) -> AsyncIterator[Connection]:
        """A connection inside one transaction, committed when the block ends."""
        async with self.connection(stage) as conn, conn.transaction():
            yield conn

    async def executemany(self, stage: str, sql: str, params: Sequence[Any]) -> None:
        """``sql`` once per parameter set, in one transaction (nothing to do for none)."""
        if not params:
            return
        async with self.transaction(stage) as conn, conn.cursor() as cursor:
            await cursor.executemany(sql, params)

    async def ping(self) -> tuple[bool, str]:
        try:
            async with self.connection("readiness", timeout=2.0) as conn:
                await conn.execute("SELECT 1")
        except StoreUnavailable as exc:
            return False, exc.reason
        return True, "ok"

"""Engines for the configured database URL, async for the application and sync for Alembic.

SQLite is opened in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` (see :meth:`Database.write`): with the default deferred BEGIN two
writers that both read first deadlock on the lock upgrade, which ``busy_timeout`` cannot
resolve.

Reads are the hot path (every manifest and blob request). Measured on 2 cores with one
indexed SELECT: aiosqlite through SQLAlchemy 1,800/s, the same query on a sync pysqlite
connection in the event-loop thread 11,000/s. WAL readers never wait for writers, so on
SQLite :meth:`Database.read` runs inline; writes keep aiosqlite's thread because BEGIN
IMMEDIATE may wait out ``busy_timeout``. On PostgreSQL reads skip the pool pre-ping and run in
autocommit: asyncpg's BEGIN and ROLLBACK were two round trips around every read (one-statement
reads, measured on 2 cores: 1,126-2,029/s → 1,997-3,386/s, 310-330 → 206-222 µs of CPU each);
a connection lost to a server restart is discarded by the pool on its first error.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Executable, Select, create_engine, event
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Database", "Reader", "async_url", "is_sqlite", "sync_url"]

#: (SQL text, bound parameter names in order, bind processors, result processors) of a statement.
_Prepared = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], tuple[Callable[[Any], Any] | None, ...]]


def _base(url: str) -> URL:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed


def is_sqlite(url: str) -> bool:
    return _base(url).get_backend_name() == "sqlite"


def async_url(url: str) -> URL:
    parsed = _base(url)
    driver = "aiosqlite" if parsed.get_backend_name() == "sqlite" else "asyncpg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def sync_url(url: str) -> URL:
    parsed = _base(url)
    driver = "pysqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def _sqlite_pragmas(busy_timeout_ms: int, foreign_keys: bool, synchronous: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" event below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    return on_connect


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def configure_sqlite(
    engine: Engine, *, busy_timeout_ms: int = 30_000, foreign_keys: bool = True, synchronous: str = "FULL"
) -> None:
    """Install WAL/busy-timeout pragmas and explicit BEGINs on a sync engine (or an async one's core).

    ``synchronous``: ``FULL`` (the default) syncs the WAL at every commit, so a transaction that
    committed before a push was acknowledged survives a power loss or kernel crash; ``NORMAL``
    survives a process crash only (~0.2 ms less per commit on the development VM's disk).

    ``foreign_keys=False`` is for migrations only: SQLite changes a table by copying it and
    dropping the original, and with enforcement on that DROP would run every ``ON DELETE
    CASCADE`` of the tables that reference it (see :mod:`moorage.db.migrate`).
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"SQLite synchronous must be FULL or NORMAL, not {synchronous!r}")
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms, foreign_keys, synchronous))
    event.listen(engine, "begin", _sqlite_begin)


class Reader(Protocol):
    """What read paths need of a connection: ``await execute(statement)`` → a buffered result."""

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...


class _Inline:
    """A sync SQLite connection behind :class:`AsyncConnection`'s calls (see the module docstring).

    Its awaits never yield to the event loop, so a transaction on it runs to the end without
    another coroutine interleaving; only ``execute``, ``scalar``, ``scalars``, ``dialect`` and
    ``run_sync`` are offered, which is what the services use.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Any:
        return self._conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self._conn.scalar(statement, parameters)

    async def scalars(self, statement: Executable, parameters: Any = None) -> Any:
        return self._conn.scalars(statement, parameters)

    async def run_sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(self._conn, *args, **kwargs)


def _prepare(statement: Select[Any], dialect: Dialect) -> _Prepared:
    """Compile ``statement`` once for a positional-parameter DBAPI (SQLite's ``?``), with its type processors."""
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        raise TypeError(f"{type(statement).__name__} does not compile to a positional SELECT")
    names = tuple(compiled.positiontup)
    binds = tuple(cast(Callable[[Any], Any] | None, compiled._bind_processors.get(name)) for name in names)
    results = tuple(
        column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
    )
    return compiled.string, names, binds, results


async def _nothing_to_reset(_connection: Any) -> None:
    """asyncpg's pool resets a released connection with a query (``RESET ALL``, ``UNLISTEN *``, …): a
    round trip per lookup, 6 % of a manifest GET's samples. :meth:`Database.first` only ever runs one
    SELECT in autocommit, which leaves no session state behind; asyncpg still rolls back a
    connection left in a transaction before this is called."""


#: How long an inline SQLite writer waits for another process's write lock before giving up.
_SQLITE_LOCK_WAIT = 30.0


class Database:
    """The application's engines with explicit read and write transactions."""

    def __init__(self, url: str, *, pool_size: int = 10, sqlite_synchronous: str = "full") -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        kwargs: dict[str, Any] = {}
        if not self.sqlite:
            kwargs = {"pool_size": pool_size, "max_overflow": pool_size, "pool_recycle": 1800}
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        self._inline: Engine | None = None
        self._inline_writer: Engine | None = None
        if self.sqlite:
            synchronous = sqlite_synchronous.upper()
            configure_sqlite(self.engine.sync_engine, synchronous=synchronous)
            self._inline = create_engine(sync_url(url))
            configure_sqlite(self._inline, synchronous=synchronous)
            # busy_timeout=0: BEGIN IMMEDIATE either takes the write lock at once or fails at
            # once, and the wait happens in asyncio.sleep instead of blocking the event loop.
            self._inline_writer = create_engine(sync_url(url))
            configure_sqlite(self._inline_writer, busy_timeout_ms=0, synchronous=synchronous)
        # One SQLite writer per process at a time (per event loop: a Lock belongs to one loop).
        self._writer_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        #: :meth:`first`'s statements compiled for this dialect, by ``id()`` (with the statement, kept alive).
        self._prepared: dict[int, tuple[Select[Any], _Prepared]] = {}
        #: :meth:`first`'s own SQLite connection and the thread it belongs to (sqlite3 checks the thread).
        self._first_conn: Any = None
        self._first_thread = 0
        #: PostgreSQL: :meth:`first`'s own asyncpg pool per event loop (asyncpg connections belong to
        #: the loop that opened them), opened on first use.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Any]] = (
            weakref.WeakKeyDictionary()
        )
        #: A lookup holds its connection for one round trip, so a few serve a worker's whole load.
        self._pool_size = min(pool_size, 4)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        """A connection for reads (one consistent snapshot on SQLite; autocommit on PostgreSQL).

        Nothing written through it is kept on SQLite (the transaction is a read snapshot) and
        nothing may be written through it on PostgreSQL: writes go through :meth:`write`.
        """
        if self._inline is not None:
            with self._inline.connect() as conn, conn.begin():
                yield _Inline(conn)
            return
        async with self.engine.connect() as async_conn:
            # Autocommit: no BEGIN and ROLLBACK round trips around the reads. Under READ COMMITTED
            # every statement takes its own snapshot anyway, so the transaction bought nothing.
            await async_conn.execution_options(isolation_level="AUTOCOMMIT")
            # AsyncConnection.execute is overloaded; it satisfies Reader at run time.
            yield cast(Reader, async_conn)

    async def first(self, statement: Select[Any], parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of one SELECT (``None``: no row), outside any transaction; for the hottest reads.

        One statement is its own snapshot, so the transaction :meth:`read` opens buys nothing here,
        and it was most of the cost: a manifest GET by tag spent ~40 % of its samples in
        SQLAlchemy's execution pipeline around a ~20 µs query (the explicit ``BEGIN`` and ``COMMIT``
        on SQLite; on PostgreSQL asyncpg's ``BEGIN`` and ``ROLLBACK``, two round trips per read).
        On SQLite the statement is compiled once and run on a raw connection kept for the event
        loop's thread (inline, as :meth:`read`: WAL readers never wait); the column types'
        processors are still applied, so rows hold what :meth:`read` would return. On PostgreSQL
        it runs on asyncpg itself, in autocommit, from a small pool of its own (at most 4
        connections, closed after a minute unused). Use it for statements built once
        (module constants): their compiled form is kept for the life of the process. Database
        failures raise SQLAlchemy's errors, as :meth:`read` does.
        """
        if not self.sqlite:
            return await self._first_postgres(statement, parameters)
        if self._inline is None or (threading.get_ident() != self._first_thread and self._first_conn is not None):
            async with self.read() as conn:  # another thread (a sync caller): sqlite3 refuses to share
                found = (await conn.execute(statement, dict(parameters))).first()
            return None if found is None else tuple(found)
        sql, names, binds, results = self._compiled(statement)
        if self._first_conn is None:
            # Checked out for good: the pool's connect event set WAL, busy_timeout and autocommit on it.
            self._first_conn = self._inline.raw_connection()
            self._first_thread = threading.get_ident()
        values = [parameters[name] if bind is None else bind(parameters[name]) for name, bind in zip(names, binds)]
        try:
            row = self._first_conn.driver_connection.execute(sql, values).fetchone()
        except sqlite3.Error as exc:
            # As SQLAlchemy would raise it (the API answers database failures 503, not 500), and on
            # a fresh connection next time.
            broken, self._first_conn = self._first_conn, None
            broken.invalidate()
            raise DBAPIError.instance(sql, values, exc, sqlite3.Error) from None
        if row is None:
            return None
        return tuple(value if process is None else process(value) for value, process in zip(row, results))

    def _compiled(self, statement: Select[Any]) -> _Prepared:
        entry = self._prepared.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = (statement, _prepare(statement, self.engine.dialect))
            self._prepared[id(statement)] = entry
        return entry[1]

    async def _first_postgres(self, statement: Select[Any], parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """:meth:`first` on asyncpg itself: autocommit, so no ``BEGIN``/``ROLLBACK`` round trips, and no
        SQLAlchemy pool checkout and greenlet hop (together ~60 % of a manifest GET's samples)."""
        sql, names, binds, results = self._compiled(statement)
        values = [parameters[name] if bind is None else bind(parameters[name]) for name, bind in zip(names, binds)]
        try:
            pool = await self._pool()
            async with pool.acquire() as conn:
                row = await conn.fetchrow(sql, *values)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # As SQLAlchemy would raise it: the API answers database failures 503, not 500.
            raise DBAPIError.instance(sql, values, exc, asyncpg.PostgresError) from None
        if row is None:
            return None
        return tuple(value if process is None else process(value) for value, process in zip(row, results))

    async def _pool(self) -> Any:
        """This loop's pool; one that failed to open is forgotten, so the next call tries again."""
        loop = asyncio.get_running_loop()
        opening = self._pools.get(loop)
        if opening is not None and opening.done() and not opening.cancelled() and opening.exception() is None:
            return opening.result()  # the usual case, without a shield's future per call
        if opening is None:
            # A task, so callers that arrive while it connects share the one pool.
            opening = self._pools[loop] = loop.create_task(self._open_pool())
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._pools.get(loop) is opening and (opening.cancelled() or opening.exception()):
                del self._pools[loop]
            raise

    async def _open_pool(self) -> Any:
        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        for option in ("prepared_statement_name_func", "async_creator_fn"):
            params.pop(option, None)  # SQLAlchemy's adapter options, not asyncpg's
        if "prepared_statement_cache_size" in params:
            # The URL's setting for SQLAlchemy's statement cache holds here too: 0 is what a pooler in
            # transaction mode (PgBouncer) needs, where a prepared statement may be on another backend.
            params["statement_cache_size"] = int(params.pop("prepared_statement_cache_size"))
        # Connections close after a minute unused, so an idle node holds none of them.
        return await asyncpg.create_pool(
            min_size=0, max_size=self._pool_size, max_inactive_connection_lifetime=60.0,
            reset=_nothing_to_reset, **params,
        )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed on success, rolled back on error.

        On SQLite it is an inline connection holding the database's write lock (see the module
        docstring); it offers the subset of :class:`AsyncConnection` that the services use.
        """
        if self._inline_writer is not None:
            # Writers of one process queue here before taking a pooled connection. SQLite has one
            # write lock, so a second writer of the same process could only spin on BEGIN
            # IMMEDIATE; each spinning one held a connection, and with more than the pool's 15
            # (64 concurrent upload POSTs on 2 workers) the next checkout blocked the event loop
            # for the pool's 30 s timeout and failed (QueuePool limit ... reached): every request
            # of the worker stalled. Queued, they use one connection and no event-loop wait.
            deadline = time.monotonic() + _SQLITE_LOCK_WAIT
            turn = self._writer_turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with asyncio.timeout(_SQLITE_LOCK_WAIT):
                await turn.acquire()
            try:
                with self._inline_writer.connect() as conn:
                    await self._begin_immediate(conn, deadline)
                    try:
                        yield cast(AsyncConnection, _Inline(conn))
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
            finally:
                turn.release()
            return
        async with self.engine.connect() as async_conn, async_conn.begin():
            yield async_conn

    @staticmethod
    async def _begin_immediate(conn: Connection, deadline: float) -> None:
        """Take SQLite's write lock, waiting without blocking the loop while another process holds it."""
        conn.execution_options(sqlite_begin="IMMEDIATE")
        delay = 0.0005
        while True:
            try:
                conn.begin()
                return
            except OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                conn.rollback()
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def dispose(self) -> None:
        if self._first_conn is not None:
            connection, self._first_conn = self._first_conn, None
            connection.close()
        opening = self._pools.pop(asyncio.get_running_loop(), None)
        self._pools.clear()  # other loops' pools (loops already closed) go with their loops
        if opening is not None:
            try:
                pool = await opening
            except Exception:  # noqa: BLE001 - it never opened: nothing to close
                pool = None
            if pool is not None:
                await pool.close()
        await self.engine.dispose()
        for engine in (self._inline, self._inline_writer):
            if engine is not None:
                engine.dispose()

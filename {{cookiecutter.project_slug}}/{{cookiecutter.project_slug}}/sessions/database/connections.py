"""The connections the store runs its statements on: the engine's pooled ones (engine.py),
each thread keeping the one it used, and the statements (statements.py) run on their
cursors.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from .engine import call_if_alive, make_engine, opened_the_file_at, sqlite_path
from .settings import DatabaseSettings
from .statements import compiled_for


def make_connections(settings: DatabaseSettings) -> Connections:
    """The connections ``settings`` describe: a kept connection is checked as the pool
    checks one it hands out (the SQLite file, the pre-ping)."""
    engine = make_engine(settings)
    checks = []
    if settings.dialect == "sqlite":
        checks.append(opened_the_file_at(sqlite_path(settings)))
    if settings.pool_pre_ping:
        checks.append(answers_a_ping(engine))
    # No more than the overflow: the connections not kept are always at least pool_size.
    keep = min(settings.pool_size, settings.max_overflow)
    connections = Connections(engine, keep, all_of(checks), settings.timeout)
    if settings.dialect == "sqlite":
        # Before a fork (gunicorn --preload), the threads' idle connections go back, so
        # that the pool can let go of the file (engine.py's close_pool_before_fork: run
        # after this, as fork runs its "before" handlers last registered first).
        before_fork = weakref.WeakMethod(connections.close_idle)
        os.register_at_fork(before=lambda: call_if_alive(before_fork))
    return connections


def all_of(checks: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """Whether a connection passes every one of ``checks`` (none: always; one: that one):
    called before every statement, so the common cases call no more than they must."""
    if not checks:
        return always_good
    if len(checks) == 1:
        return checks[0]
    return lambda connection: all(check(connection) for check in checks)


def always_good(_connection: Any) -> bool:
    """No check: every kept connection is good to use (PostgreSQL without pre-ping)."""
    return True


def answers_a_ping(engine: Engine) -> Callable[[Any], bool]:
    """Whether a connection answers the dialect's ping (``pool_pre_ping``)."""

    def still_good(connection: Any) -> bool:
        try:
            return bool(engine.dialect.do_ping(connection.dbapi_connection))
        except engine.dialect.loaded_dbapi.Error:
            return False

    return still_good


class Outcome(NamedTuple):
    """What a statement gave: its rows (all of them, so that SQLite's statement is done
    and committed before the connection goes back), and how many rows it changed."""

    rows: list[tuple]
    rowcount: int


class Kept(NamedTuple):
    """The connection a thread keeps between its statements, the pool it is of, and the
    registry of idle connections it was put in."""

    pool: Any
    connection: Any
    idle: dict[int, Any]

    def __del__(self) -> None:
        """The thread ended (its ``threading.local`` goes, and this with it): its
        connection leaves the registry, and SQLAlchemy gives it back to its pool once it
        is collected."""
        self.idle.pop(id(self.connection), None)


class Connections:
    """The engine's pooled connections, each thread keeping the one it has, and the
    statements run on their cursors (``run``).

    Checking a connection out of SQLAlchemy's pool and back in cost 18 µs a statement, as
    much as SQLite's own work for a counter page (BENCHMARKS.md): a thread keeps the
    connection it used if at most ``keep`` connections were out of the pool when it
    first kept it (no more than the overflow: the threads that keep none share
    ``pool_size`` connections at least, none of them idle in a thread's keeping; with no
    overflow, none is kept). Beyond that, a thread gives its connection back after each
    statement. A kept connection is given up when the engine's pool was replaced (a
    forked process, or the command's ``close``), or when ``still_good`` (the SQLite file
    check, or the pre-ping) says it must be; a lost connection closes those every thread
    keeps idle (``close_idle``).
    """

    def __init__(
        self,
        engine: Engine,
        keep: int,
        still_good: Callable[[Any], bool],
        cancel_timeout: float,
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.still_good = still_good
        self.cancel_timeout = cancel_timeout  # for an interrupted statement
        self.local = threading.local()
        self.start_afresh()
        after_fork = weakref.WeakMethod(self.start_afresh)
        os.register_at_fork(after_in_child=lambda: call_if_alive(after_fork))

    def start_afresh(self) -> None:
        """No connection kept idle: at first, and in a process forked from this one,
        whose kept connections are the parent's."""
        # Every thread's kept connection while it waits for the thread's next statement,
        # by its id. Whoever takes one out (dict.pop and popitem are atomic: no lock) has
        # it to itself: its thread, to use it, or close_idle, to close it.
        self.idle: dict[int, Any] = {}

    def take(self) -> tuple[Any, Any]:
        """The thread's kept connection, or one from the pool; and the pool it is of."""
        kept = getattr(self.local, "kept", None)
        if kept is not None:
            # None: close_idle closed it, or this is a forked process, which starts with
            # none (start_afresh) and leaves the parent's alone.
            connection = self.idle.pop(id(kept.connection), None)
            if connection is not None:
                try:
                    if kept.pool is self.engine.pool and self.still_good(connection):
                        return kept.pool, connection
                except BaseException:
                    self.local.kept = None
                    connection.invalidate()  # a ping interrupted midway: a reply may be due
                    raise
                # Closed now (its pool was replaced: left open, it would wait
                # for a garbage collection), and opened anew when the pool hands it out.
                throw_away(connection)
            self.local.kept = None
        pool = self.engine.pool
        return pool, self.engine.raw_connection()

    def give_back(self, pool: Any, connection: Any) -> None:
        """Keep ``connection`` (of ``pool``) for this thread's next statement, or return it
        to the pool; one of a pool replaced meanwhile is closed, neither kept nor left in
        the old pool."""
        kept = getattr(self.local, "kept", None)
        if connection.is_valid and pool is self.engine.pool:
            if kept is not None and kept.connection is connection:
                self.idle[id(connection)] = connection  # counted when it was first kept
                return
            if pool.checkedout() <= self.keep:
                self.local.kept = Kept(pool, connection, self.idle)
                self.idle[id(connection)] = connection
                return
        self.local.kept = None
        if connection.is_valid and pool is not self.engine.pool:
            throw_away(connection)
        else:
            connection.close()

    def run(self, name: str, values: Mapping[str, Any]) -> Outcome:
        """Run the statement ``name`` (statements.py) with ``values``, in autocommit.

        Only SQLAlchemy's execution layer is skipped (its cache look-up, execution context
        and result objects cost 55 µs a statement); what it does on an error is done here:
        the driver's error is raised as SQLAlchemy's (``DBAPIError.instance``, without the
        values: a session id is a credential), and a lost connection is thrown away with
        the others made before it, which lost theirs too (a restarted server), so that the
        next request connects anew.
        """
        dialect = self.engine.dialect
        driver_error = dialect.loaded_dbapi.Error
        try:
            pool, connection = self.take()
        except driver_error as error:  # connecting failed
            raise as_sqlalchemy_error(error, dialect, "connect") from error
        try:
            statement = compiled_for(dialect)[name]
            cursor = cursor_of(connection)
            cursor.execute(statement.sql, statement.values(values))
            rows = cursor.fetchall() if statement.returns_rows else []
            return Outcome(rows, cursor.rowcount)
        except driver_error as error:
            connection.info.pop(CURSOR, None)
            if dialect.is_disconnect(error, connection.dbapi_connection, None):
                connection.invalidate(error)
                # As SQLAlchemy does: the pool makes its connections from before this
                # one anew as it hands them out, within its limits (a new pool would
                # open its own beside the old one's still in use: past pool_size +
                # max_overflow at the server).
                self.engine.pool._invalidate(connection, error)
                self.close_idle()
            raise as_sqlalchemy_error(error, dialect, name) from error
        except BaseException:
            connection.info.pop(CURSOR, None)
            # Not the driver's (a gevent Timeout, a signal's): the statement may still be
            # in flight on the connection, which no later one could use, and run on in
            # the server (closing the socket does not stop one that waits for a lock):
            # stopped there, it never lands after the writes that come after it. (A
            # second interruption while it waits for the cancel still throws it away.)
            try:
                cancel(connection.dbapi_connection, self.cancel_timeout)
            finally:
                connection.invalidate()
            raise
        finally:
            self.give_back(pool, connection)

    def close_idle(self) -> None:
        """Close the connections every thread keeps idle: after a lost connection, those
        made before it, which lost theirs too (a restarted server), and which the pool
        cannot make anew while threads keep them; before a fork, so that the pool can let
        go of an SQLite file. A connection in use is not idle: its thread has it."""
        while (connection := self.any_idle()) is not None:
            throw_away(connection)

    def any_idle(self) -> Any:
        """One of the connections kept idle, taken out of the registry; None when none
        is left."""
        try:
            return self.idle.popitem()[1]
        except KeyError:
            return None

    def close(self) -> None:
        """Close every connection (a command's last step)."""
        self.close_idle()
        self.local.kept = None
        self.engine.dispose()


# Where a connection's pool record keeps the cursor the store's statements run on.
CURSOR = "store_cursor"


def cursor_of(connection: Any) -> Any:
    """The cursor ``connection``'s statements run on, made at its first one and kept (in
    its pool record's ``info``, which SQLAlchemy empties when the connection is replaced).

    A cursor looks up how to send each type of value and how to read each type of column
    once, then remembers: a new cursor for every statement made psycopg do that anew, a
    third of its work for a counter page's statement (46,000 instructions). After an
    error the cursor is dropped (``run``), and the next statement makes another.
    """
    cursor = connection.info.get(CURSOR)
    if cursor is None:
        cursor = connection.info[CURSOR] = connection.cursor()
    return cursor


def throw_away(connection: Any) -> None:
    """Close ``connection`` for good: its pool makes a new one in its place (closed alone,
    it would go back to the pool as it is)."""
    connection.invalidate()
    connection.close()


def cancel(connection: Any, timeout: float) -> None:
    """Ask the server to stop the statement ``connection`` runs, if any, waiting
    ``timeout`` seconds at most (psycopg's ``cancel_safe``; SQLite's statements run in the
    thread that asked, so none is still running by then)."""
    cancel_safe = getattr(connection, "cancel_safe", None)
    if cancel_safe is not None:
        with contextlib.suppress(Exception):  # a server out of reach: the socket closes
            cancel_safe(timeout=timeout)


def as_sqlalchemy_error(error: Exception, dialect: Any, statement: str) -> DBAPIError:
    """The driver's ``error`` as SQLAlchemy raises it (OperationalError, IntegrityError...:
    its ``orig`` is the driver's), naming the ``statement`` but none of its values."""
    return DBAPIError.instance(
        statement, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
    )

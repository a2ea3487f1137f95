"""The SQL store: what the session engine asks of a store, on the sessions table.

One statement per round trip (statements.py), on each thread's connection (connections.py).
The table is made at start-up when missing; if the database is down then, at the first
request that reaches it (schema.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..settings import SessionSettings, reissue_time
from .connections import Connections, Outcome, make_connections
from .schema import create_table, table_missing
from .settings import read_database_settings
from .statements import CLEAR_BATCH, counter_parameter, statements_for

log = logging.getLogger(__name__)

# Whatever SQLAlchemy or the driver beneath it raises: the database unreachable, locked,
# slow, read-only (a standby after a failover), corrupt (an SQLite file), its table dropped
# or a privilege revoked under the running app, or a connection lost in the middle of
# being used. The 503 page and a log line answer them all, as they answer Redis's errors:
# none of them is the visitor's doing.
STORE_ERRORS = (SQLAlchemyError,)


def error_reason(error: Exception) -> str:
    """What a log line may say of a store's error: the driver's first line, never the
    statement with its parameters nor PostgreSQL's DETAIL line, which can quote a key (a
    session id, a credential)."""
    return str(getattr(error, "orig", None) or error).partition("\n")[0]


class DatabaseStore:
    """The engine every request shares, how long sessions live, and the statements."""

    def __init__(
        self, connections: Connections, timeout: int, absolute_timeout: int, wait: float = 2.0
    ) -> None:
        self.connections = connections
        self.engine = connections.engine
        self.wait = wait
        self.timeout = timeout
        self.absolute_timeout = absolute_timeout
        self.renewal = reissue_time(timeout)
        self.dialect = self.engine.dialect.name
        # Built now (once per process): statements that cannot be built fail the app's
        # start, not its first request. Each is compiled for the driver at first use.
        statements_for(self.dialect)
        self.clear_batch = CLEAR_BATCH
        self.table_ready = False
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Make the table if it is missing (once per process).

        One thread tries; a thread that finds it at it waits for that try (``wait``
        seconds at most, as for a pooled connection) and shares its outcome, rather than
        trying again after it: against a database that does not answer, a request waits
        once, never for another thread's try and then for its own.
        """
        if self._lock.acquire(blocking=False):
            try:
                if not self.table_ready:
                    with self.engine.connect() as connection:
                        create_table(connection)
                    self.table_ready = True
            finally:
                self._lock.release()
            return
        if not self._lock.acquire(timeout=self.wait):
            raise PoolTimeoutError("another thread is still making the sessions table")
        self._lock.release()
        if not self.table_ready:
            raise PoolTimeoutError("another thread could not make the sessions table")

    def prepare_at_start_up(self) -> None:
        """Make the table now; if the database is down, the first request will."""
        try:
            self.prepare()
        except STORE_ERRORS as error:
            log.error(
                "session database unavailable at start-up (retried at the first request): %s: %s",
                type(error).__name__,
                error_reason(error),
            )

    def run(self, name: str, values: Mapping[str, Any]) -> Outcome:
        """Run the statement ``name`` with ``values`` (engine.py); the table made first if
        need be.

        A statement that finds no table (dropped, or a database restored empty) makes the
        next request make it again: no restart needed. Any other failure leaves the table
        be, so that a request during an outage waits for the database once, not once more
        to look for the table.
        """
        if not self.table_ready:
            self.prepare()
        try:
            return self.connections.run(name, values)
        except STORE_ERRORS as error:
            if table_missing(error):
                self.table_ready = False
            raise

    def parameters(self, session_id: str, **more: Any) -> dict[str, Any]:
        """The bound values every statement may use."""
        return {
            "session_id": session_id,
            "idle": self.timeout,
            "lifetime": self.absolute_timeout,
            "renewal": self.renewal,
            **more,
        }

    def renew(self, name: str, session_id: str, dead: str = "delete_dead", **more: Any) -> Any:
        """Run the statement ``name`` of a live session whose renewal is not due yet (the
        common case: one statement), else ``name``_renewing: its row. A session that is
        not live (expired, past its lifetime, corrupt) is deleted then, by the statement
        ``dead``. (No request can make it live again meanwhile: ids of new sessions are
        random.)"""
        parameters = self.parameters(session_id, **more)
        rows = self.run(name, parameters).rows or self.run(f"{name}_renewing", parameters).rows
        if not rows:
            self.run(dead, parameters)
            return None
        return rows[0]

    def counting(self, name: str, by: int) -> dict[str, Any]:
        """The bound values of a statement on the counter ``name`` with the step ``by``."""
        return {"counter": counter_parameter(self.dialect, name), "step": by}

    # The session store: one round trip each.
    def load(self, session_id: str) -> Any:
        """``(data, created)`` of the live session (its expiry renewed if due), or None."""
        return self.renew("load", session_id)

    def load_and_increment(self, session_id: str, name: str, by: int) -> Any:
        """``(data, created, value)`` after adding ``by`` to the counter ``name``, or None."""
        counting = self.counting(name, by)
        return self.renew("load_and_increment", session_id, "delete_dead_or_corrupt", **counting)

    def increment(self, session_id: str, name: str, by: int, new: bool) -> int | None:
        """The counter ``name`` plus ``by``; None when the session is gone. A new
        session's row is made here, with the counter at ``by``."""
        counting = self.counting(name, by)
        if new:
            [(value,)] = self.run("create", self.parameters(session_id, **counting)).rows
            return value
        row = self.renew("increment", session_id, "delete_dead_or_corrupt", **counting)
        return None if row is None else row[0]

    def save(
        self, session_id: str, data: bytes, new: bool, owner: tuple[str, str] | None = None
    ) -> None:
        """Store the session's JSON data, unless it was revoked meanwhile; with ``owner``
        (a sign-in's: the session exists already), its user and client record too."""
        statement = "save_new" if new else "save"
        parameters = self.parameters(session_id, new_data=data.decode())
        if owner is not None:
            statement = "save_bound"
            parameters.update(owner=owner[0], owner_client=owner[1] or None)
        self.run(statement, parameters)

    def delete(self, session_id: str) -> None:
        """Revoke the session."""
        self.run("delete", {"session_id": session_id})

    def reset_counter(self, session_id: str, name: str) -> None:
        """Set the counter ``name`` back to zero."""
        self.run("reset_counter", {"session_id": session_id, **self.counting(name, 0)})

    def move(self, old_id: str, new_id: str) -> bool:
        """Give the live session ``new_id``: one UPDATE of its primary key, so the old id
        is revoked in the same instant."""
        return self.run("move", self.parameters(old_id, new_id=new_id)).rowcount == 1

    # the user's sessions
    def bind(self, session_id: str, userid: str, created: int) -> None:
        """Nothing to do now: the sign-in's save writes the session's ``user_id``."""

    def user_sessions(self, userid: str) -> list[Any]:
        """``(id, created, expiry, client)`` of ``userid``'s live sessions: one SELECT on
        the user_id index."""
        return self.run("user_sessions", self.owned(userid)).rows

    def end_user_session(self, userid: str, session_id: str) -> bool:
        """Revoke the session if it is ``userid``'s."""
        ending = self.owned(userid, session_id=session_id)
        return self.run("end_user_session", ending).rowcount == 1

    def end_user_sessions(self, userid: str, keep: str | None = None) -> int:
        """Revoke every session of ``userid`` but ``keep``, in one DELETE; how many.

        A login that moves one of them meanwhile moves it under the DELETE (PostgreSQL
        checks the row again after the move, SQLite runs one writer at a time): it goes.
        """
        return self.run("end_user_sessions", self.owned(userid, keep=keep or "")).rowcount

    def owned(self, userid: str, session_id: str = "", **more: Any) -> dict[str, Any]:
        """The bound values of a statement on ``userid``'s sessions."""
        return self.parameters(session_id, owner=userid, **more)

    def clear_expired(self) -> int:
        """Delete the sessions past their idle or absolute timeout; how many there were."""
        cleared = 0
        while True:
            batch = self.run("clear_expired", self.parameters("", batch=self.clear_batch))
            cleared += batch.rowcount
            if batch.rowcount < self.clear_batch:
                return cleared

    def end_all_sessions(self) -> int:
        """Delete every session, live or not, at once; how many there were.

        One statement: about a second per three million rows (BENCHMARKS.md), during
        which requests that write a session wait for it. A session a login moves meanwhile
        is deleted under its new id (PostgreSQL follows a row updated under a waiting
        DELETE); a session made after it is new.
        """
        return self.run("end_all", {}).rowcount

    def close(self) -> None:
        """Close the connections (a command's last step)."""
        self.connections.close()

    # /readyz
    def ping(self) -> None:
        """``SELECT 1`` on a pooled connection, the cheapest round trip: bounded as every
        statement is, by the wait for a connection and the statement timeout. Raises the
        store's errors (the table is made first if need be: a store that cannot make it
        is not ready)."""
        self.run("select_one", {})


def make_database_store(
    settings: Mapping[str, str], environ: Mapping[str, str], timeout: int, absolute_timeout: int
) -> DatabaseStore:
    """The store the ``session.database_*`` settings and the environment describe."""
    database = read_database_settings(settings, environ)
    connections = make_connections(database)
    return DatabaseStore(connections, timeout, absolute_timeout, database.timeout)


def make_store(
    settings: Mapping[str, str], environ: Mapping[str, str], session: SessionSettings
) -> DatabaseStore:
    """The session factory's store, its table made now if the database answers."""
    store = make_database_store(settings, environ, session.timeout, session.absolute_timeout)
    store.prepare_at_start_up()
    return store

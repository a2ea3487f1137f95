"""The SQL side of the sessions: one table, and one statement per round trip.

SQLAlchemy Core on an SQLite file (WAL, a busy timeout) or PostgreSQL through psycopg 3
(statement and lock timeouts). Every statement that renews or writes a session carries
the condition that it is live (not expired, not past its absolute lifetime, of a sane
shape), so a session revoked or expired while a request used it is never brought back;
counting a visit is one atomic UPDATE ... RETURNING. The table is made at start-up when
missing; if the database is down then, at the first request that reaches it. An SQLite
connection follows the file at its path: one deleted or replaced under the running app is
noticed at the connection's next use (``watch_sqlite_file``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    inspect,
    not_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.schema import CreateIndex, CreateTable

from .database_settings import DatabaseSettings, read_database_settings
from .settings import SessionSettings

log = logging.getLogger(__name__)

# Whatever SQLAlchemy or the driver beneath it raises: the database unreachable, locked,
# slow, read-only (a standby after a failover), corrupt (an SQLite file), its table dropped
# or a privilege revoked under the running app, or a connection lost in the middle of
# being used. The 503 page and a log line answer them all, as they answer Redis's errors:
# none of them is the visitor's doing.
STORE_ERRORS = (SQLAlchemyError,)
TABLE_NAME = "{{ cookiecutter.project_slug }}_sessions"
# A counter this high is corrupt (a visit a microsecond for 30 years is 10**15): counting
# on would overflow a 64-bit integer.
MAX_COUNTER = 10**18
# A creation time further ahead of the database's clock than this is corrupt (a row
# restored from another server whose clock was ahead, say).
CLOCK_SKEW = 60
# Rows deleted per statement by clear-sessions: each batch is a range of an index, stays
# well inside the statement timeout, and SQLite's writers wait for one batch at most.
CLEAR_BATCH = 5000
# A statement the server's own timeouts should have ended gets this many times the
# timeout before the watchdog cuts its connection.
WATCHDOG_FACTOR = 1.5
# Serializes table creation across the processes that start at once (PostgreSQL).
SCHEMA_LOCK = 0x5E55_10_05
# PostgreSQL's code for "relation does not exist", and SQLite's message.
UNDEFINED_TABLE = "42P01"
NO_SUCH_TABLE = "no such table"
# What SQLite keeps beside a database file in WAL mode, and only while it exists.
WAL_FILES = ("-wal", "-shm")

metadata = MetaData()
sessions = Table(
    TABLE_NAME,
    metadata,
    Column("id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("counter", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Index(f"{TABLE_NAME}_expiry", "expiry"),
)
UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

# Bound per statement: the session's id, and the idle and absolute timeouts.
ID, IDLE, LIFETIME = bindparam("session_id"), bindparam("idle"), bindparam("lifetime")


def database_now(dialect: str) -> Any:
    """The database's clock, in whole seconds since the epoch: every machine that shares
    the database reads the same one (as Redis's clock serves the Redis store)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", "now"), BigInteger)
    return cast(func.floor(func.extract("epoch", func.now())), BigInteger)


def live(now: Any) -> Any:
    """The session's row, if it is live."""
    return and_(sessions.c.id == ID, alive(now))


def alive(now: Any) -> Any:
    """Whether a row is live: not expired, not past its absolute timeout, of a sane shape
    (whole numbers: SQLite keeps whatever another writer put in a column)."""
    return and_(
        sessions.c.expiry > now,
        sessions.c.created > now - LIFETIME,
        sessions.c.created <= now + CLOCK_SKEW,
        sessions.c.counter >= 0,
        sessions.c.counter < MAX_COUNTER,
        sessions.c.counter == cast(sessions.c.counter, BigInteger),
        sessions.c.created == cast(sessions.c.created, BigInteger),
    )


def next_expiry(now: Any) -> Any:
    """The idle timeout from now, but never past the absolute end."""
    end = sessions.c.created + LIFETIME
    return case((end < now + IDLE, end), else_=now + IDLE)


def data_as_bytes(dialect: str) -> Any:
    """The data column read as UTF-8 bytes: text that is not UTF-8 (only another writer
    can store it in SQLite) becomes a corrupt session, not an error on every request."""
    if dialect == "sqlite":
        return cast(sessions.c.data, LargeBinary)
    return func.convert_to(sessions.c.data, "UTF8")


class Statements:
    """The statements of one dialect, built once: SQLAlchemy caches their compiled form."""

    def __init__(self, dialect: str) -> None:
        data, now = data_as_bytes(dialect).label("data"), database_now(dialect)
        renew, renewed = update(sessions).where(live(now)), next_expiry(now)
        self.load = renew.values(expiry=renewed).returning(data, sessions.c.created)
        counting = renew.values(expiry=renewed, counter=sessions.c.counter + 1)
        self.load_and_count = counting.returning(data, sessions.c.created, sessions.c.counter)
        self.count = counting.returning(sessions.c.counter)
        self.save = renew.values(expiry=renewed, data=bindparam("new_data"))
        self.move = renew.values(id=bindparam("new_id"))
        # A new session's first count makes its row; a second count in the same request
        # finds it.
        first = UPSERT[dialect](sessions).values(
            id=ID, data="{}", counter=1, created=now, expiry=now + IDLE
        )
        self.create = first.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"counter": sessions.c.counter + 1}
        ).returning(sessions.c.counter)
        new = UPSERT[dialect](sessions).values(
            id=ID, data=bindparam("new_data"), counter=0, created=now, expiry=now + IDLE
        )
        self.save_new = new.on_conflict_do_update(
            index_elements=[sessions.c.id], set_={"data": new.excluded.data}
        )
        self.delete = delete(sessions).where(sessions.c.id == ID)
        # A DELETE of dead rows says so in its own WHERE: PostgreSQL checks that again on a
        # row another request renewed meanwhile, and leaves it (a subquery's pick or an
        # earlier statement's finding it would not check again).
        self.delete_dead = delete(sessions).where(sessions.c.id == ID, not_(alive(now)))
        self.reset_counter = update(sessions).where(sessions.c.id == ID).values(counter=0)
        # clear-sessions: a range of the expiry index. A row's expiry never lies past its
        # absolute end (next_expiry), so this finds every dead row; only after
        # session.absolute_timeout is shortened does a row past the new end wait for its
        # expiry (one idle timeout at most: no statement renews it meanwhile).
        expired = select(sessions.c.id).where(sessions.c.expiry <= now).limit(CLEAR_BATCH)
        self.clear_expired = delete(sessions).where(
            sessions.c.id.in_(expired.scalar_subquery()), not_(alive(now))
        )
        # clear-sessions --all: every row, in one statement (SQLite frees the table's pages
        # at once; PostgreSQL only marks each row deleted): every session ends at the same
        # instant, and no request can bring one back (all their writes check liveness).
        self.end_all = delete(sessions)


def table_missing(error: Exception) -> bool:
    """Whether ``error`` says the sessions table is not there."""
    reason = getattr(error, "orig", None)
    return getattr(reason, "sqlstate", None) == UNDEFINED_TABLE or NO_SUCH_TABLE in str(reason)


def error_reason(error: Exception) -> str:
    """What a log line may say of a store's error: the driver's first line, never the
    statement with its parameters nor PostgreSQL's DETAIL line, which can quote a key (a
    session id, a credential)."""
    return str(getattr(error, "orig", None) or error).partition("\n")[0]


def make_engine(settings: DatabaseSettings) -> Engine:
    """A pooled engine that gives up after ``settings.timeout`` seconds."""
    pool = {
        # Every statement commits by itself: a transaction around one statement would
        # cost a second round trip, for its COMMIT. (An engine that switched each
        # connection to autocommit and back on every use took twice as long per statement.)
        "isolation_level": "AUTOCOMMIT",
        "hide_parameters": True,  # an error never shows a session id (a credential)
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.timeout,
        "pool_pre_ping": settings.pool_pre_ping,
    }
    if settings.dialect == "sqlite":
        # The path made absolute once: every connection and every check names one file.
        path = os.path.abspath(settings.url.database)
        url = settings.url.set(database=path)
        engine = create_engine(url, connect_args={"timeout": settings.timeout}, **pool)
        event.listen(engine, "connect", sqlite_tuner(settings.timeout))
        watch_sqlite_file(engine, path)
        return engine
    milliseconds = max(1, round(settings.timeout * 1000))
    timeouts = f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
    connect_args = {
        # libpq counts whole seconds and takes nothing under 2.
        "connect_timeout": max(2, math.ceil(settings.timeout)),
        # After the URL's own options, if any: the last of a repeated setting wins.
        "options": f"{settings.url.query.get('options', '')} {timeouts}".strip(),
        "cursor_factory": watched_cursor(StatementWatchdog(WATCHDOG_FACTOR * settings.timeout)),
    }
    engine = create_engine(settings.url, connect_args=connect_args, **pool)
    # A process forked after connections were pooled (gunicorn --preload) must not talk
    # over its parent's sockets: it starts with a pool of its own (SQLAlchemy's recipe).
    forked = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: dispose_in_child(forked))
    return engine


def dispose_in_child(engine: weakref.ref) -> None:
    """Give a forked process's engine a new pool, leaving the parent's connections open."""
    alive_engine = engine()
    if alive_engine is not None:
        alive_engine.dispose(close=False)


class StatementWatchdog:
    """Ends a PostgreSQL statement that outlives its deadline by shutting its socket down.

    statement_timeout runs on the server: a server that is frozen, or cut off by the
    network after the connection was made, never applies it, and libpq has no deadline of
    its own. Without this, such a statement would hold its request, and a waitress thread,
    for TCP's retransmission timeout (a quarter of an hour). The connections' cursors
    start and stop the clock (``watched_cursor``: SQLAlchemy's statement events cost 25 µs a
    statement, this 1 µs); one thread per engine looks at the clocks a few times a second.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start_afresh()
        after_fork = weakref.WeakMethod(self.start_afresh)
        os.register_at_fork(after_in_child=lambda: call_if_alive(after_fork))

    def start_afresh(self) -> None:
        """No statement running, no thread yet: at first, and in a process forked from
        this one (gunicorn --preload), where neither the thread nor a lock it held exists."""
        self.running: dict[int, tuple[float, int]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self, cursor: Any) -> None:
        """Start the clock of the statement ``cursor`` runs."""
        with self.lock:
            deadline = time.monotonic() + self.seconds
            self.running[id(cursor)] = (deadline, cursor.connection.pgconn.socket)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.watch, name="statement-watchdog")
                self.thread.daemon = True
                self.thread.start()

    def stop(self, cursor: Any) -> None:
        """Stop the clock of the statement ``cursor`` ran, whatever its outcome."""
        with self.lock:
            self.running.pop(id(cursor), None)

    def watch(self) -> None:
        """Cut the connection of every statement past its deadline, forever."""
        while True:
            time.sleep(min(0.1, self.seconds / 4))
            self.cut_overdue(time.monotonic())

    def cut_overdue(self, now: float) -> None:
        """Shut down the sockets of the statements past their deadline: psycopg then
        fails the statement, and SQLAlchemy throws the connection away."""
        with self.lock:
            for key, (deadline, fileno) in list(self.running.items()):
                if now > deadline:
                    del self.running[key]
                    cut(fileno)


def watched_cursor(watchdog: StatementWatchdog) -> type:
    """A psycopg cursor class whose statements ``watchdog`` times."""
    import psycopg  # only PostgreSQL needs it

    class WatchedCursor(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            watchdog.start(self)
            try:
                return super().execute(query, params, **options)
            finally:
                watchdog.stop(self)

    return WatchedCursor


def cut(fileno: int) -> None:
    """Shut down the socket behind ``fileno``, without a descriptor of its own (psycopg
    owns it, and none may be left when they run out); a failure is logged, and the
    watchdog goes on with the others."""
    try:
        connection = socket.socket(fileno=fileno)
    except OSError as error:
        log.warning("statement watchdog could not cut a connection: %s", error)
        return
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError as error:
        log.warning("statement watchdog could not cut a connection: %s", error)
    finally:
        connection.detach()


def call_if_alive(method: weakref.WeakMethod) -> None:
    """Call ``method`` unless its object is gone (a fork handler must not keep it)."""
    bound = method()
    if bound is not None:
        bound()


# The table and its index, as SQLite's CREATE ... IF NOT EXISTS (no write when present).
SQLITE_SCHEMA = [
    str(create.compile(dialect=sqlite.dialect()))
    for create in (
        CreateTable(sessions, if_not_exists=True),
        *(CreateIndex(index, if_not_exists=True) for index in sessions.indexes),
    )
]
# Where a connection's record keeps the identity of the file it opened.
OPENED_FILE = "opened_file"


def sqlite_tuner(wait: float) -> Callable[[Any, object], None]:
    """What each new SQLite connection runs first (waiting ``wait`` seconds at most)."""

    def tune_sqlite_connection(connection: Any, _record: object) -> None:
        """WAL's readers never wait for the writer; in WAL, NORMAL sync cannot corrupt the
        file (a power cut may lose the last commits). A file new to this connection (the
        first one, or one made after the old one was deleted) gets WAL and the table
        here, so that its first request already finds them."""
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        switch_to_wal(cursor, time.monotonic() + wait)
        for statement in SQLITE_SCHEMA:
            cursor.execute(statement)
        cursor.close()

    return tune_sqlite_connection


def switch_to_wal(cursor: Any, deadline: float) -> None:
    """Put the file in WAL mode, unless it is already (it keeps the mode).

    SQLite answers "database is locked" at once, without its busy timeout, to a switch
    while another connection reads the file: processes starting together on a new file
    meet that, so the switch is tried again until ``deadline``.
    """
    import sqlite3  # only SQLite gets here

    while cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def file_identity(path: str) -> tuple[int, int, int] | None:
    """Which file ``path`` names now, and its permissions; None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_mode


def watch_sqlite_file(engine: Engine, path: str) -> None:
    """Let every pooled connection follow the file at ``path``.

    An SQLite connection keeps the file it opened, even once it is deleted or another
    is renamed in its place: without this, the running processes would go on with the old
    sessions while every process started later used the new file. Each check-out compares
    the file at the path with the one the connection opened (a stat: about two
    microseconds) and, if they differ, opens the path again (SQLAlchemy's reconnect on
    check-out). A change of permissions counts too, so that every process meets the
    file's new permissions, not only those started after the change.
    """

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: list, cparams: dict) -> Any:
        before = file_identity(path)
        if before is None:
            make_directory_of(path)
            refuse_leftovers(path)
        connection = dialect.connect(*cargs, **cparams)
        after = file_identity(path)
        # Replaced while it was being opened: unknown, so the next check-out opens it again.
        record.info[OPENED_FILE] = after if before in (None, after) else None
        return connection

    @event.listens_for(engine, "checkout")
    def check_out(_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get(OPENED_FILE) != file_identity(path):
            raise DisconnectionError("the SQLite file was deleted or replaced")


def make_directory_of(path: str) -> None:
    """Make the file's directory if it is missing (``sqlite:///data/sessions.db`` in a
    fresh checkout): SQLite makes a file, never a directory. If it cannot be made (a file
    in the way, no permission), opening the file fails next, and says so."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)


def refuse_leftovers(path: str) -> None:
    """Refuse to make a new database where the old one's -wal or -shm file is left.

    SQLite would take them for the new file's own (it cannot tell whose they are): the
    processes that still have the old file open share that -shm, and a new file beside
    it is unreadable ("disk I/O error") until every connection to either is closed.
    Deleting them too (the old file is deleted already) makes a clean new database.
    SQLite makes a file before its WAL files: they are leftovers only if the file is
    still missing once they were seen (not another process's new database).
    """
    left = [path + end for end in WAL_FILES if os.path.exists(path + end)]
    if left and file_identity(path) is None:
        import sqlite3  # only SQLite gets here

        raise sqlite3.OperationalError(
            f"{path} is gone but {' and '.join(left)} {'is' if len(left) == 1 else 'are'} "
            "not: delete the WAL files too, then a new, empty database is made"
        )


def create_table(connection: Connection) -> None:
    """Make the table and its index if missing, safely when processes start together.

    Only when missing: a role that may use the table but not create tables (the
    least privilege once it exists) runs the app too.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")  # kept in the file
    if inspect(connection).has_table(TABLE_NAME):
        return
    if connection.dialect.name == "postgresql":
        # Two concurrent CREATE TABLE IF NOT EXISTS can both try to create it.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
    try:
        connection.execute(CreateTable(sessions, if_not_exists=True))
        for index in sessions.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})


class DatabaseStore:
    """The engine every request shares, how long sessions live, and the statements."""

    def __init__(
        self, engine: Engine, timeout: int, absolute_timeout: int, wait: float = 2.0
    ) -> None:
        self.engine = engine
        self.wait = wait
        self.timeout = timeout
        self.absolute_timeout = absolute_timeout
        self.statements = Statements(engine.dialect.name)
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

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection (in autocommit mode); the table made first if need be.

        A statement that finds no table (dropped, or a database restored empty) makes the
        next request make it again: no restart needed. Any other failure leaves the table
        be, so that a request during an outage waits for the database once, not once more
        to look for the table.
        """
        if not self.table_ready:
            self.prepare()
        try:
            with self.engine.connect() as connection:
                yield connection
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
            **more,
        }

    def renew(self, statement: Any, session_id: str) -> Any:
        """Run an UPDATE ... RETURNING of a live session; a session that is not live
        (expired, past its lifetime, corrupt) is deleted then. (No request can make it
        live again meanwhile: ids of new sessions are random.)"""
        with self.connection() as connection:
            row = connection.execute(statement, self.parameters(session_id)).first()
            if row is None:
                connection.execute(self.statements.delete_dead, self.parameters(session_id))
            return row

    # The session store: one round trip each.
    def load(self, session_id: str) -> Any:
        """``(data, created)`` of the live session, its expiry renewed, or None."""
        return self.renew(self.statements.load, session_id)

    def load_and_count(self, session_id: str) -> Any:
        """``(data, created, counter)`` after counting one visit, or None."""
        return self.renew(self.statements.load_and_count, session_id)

    def count(self, session_id: str, new: bool) -> int | None:
        """The counter after one more visit; None when the session is gone. A new
        session's row is made here, with a count of one."""
        if new:
            with self.connection() as connection:
                return connection.execute(
                    self.statements.create, self.parameters(session_id)
                ).scalar_one()
        row = self.renew(self.statements.count, session_id)
        return None if row is None else row[0]

    def save(self, session_id: str, data: bytes, new: bool) -> None:
        """Store the session's JSON data, unless it was revoked meanwhile."""
        statement = self.statements.save_new if new else self.statements.save
        with self.connection() as connection:
            connection.execute(statement, self.parameters(session_id, new_data=data.decode()))

    def delete(self, session_id: str) -> None:
        """Revoke the session."""
        with self.connection() as connection:
            connection.execute(self.statements.delete, {"session_id": session_id})

    def reset_counter(self, session_id: str) -> None:
        """Set the visit counter back to zero."""
        with self.connection() as connection:
            connection.execute(self.statements.reset_counter, {"session_id": session_id})

    def move(self, old_id: str, new_id: str) -> bool:
        """Give the live session ``new_id``: one UPDATE of its primary key, so the old id
        is revoked in the same instant."""
        with self.connection() as connection:
            moved = connection.execute(
                self.statements.move, self.parameters(old_id, new_id=new_id)
            )
            return moved.rowcount == 1

    def clear_expired(self) -> int:
        """Delete the sessions past their idle or absolute timeout; how many there were."""
        cleared = 0
        while True:
            with self.connection() as connection:
                parameters = self.parameters("")
                batch = connection.execute(self.statements.clear_expired, parameters).rowcount
            cleared += batch
            if batch < CLEAR_BATCH:
                return cleared

    def end_all_sessions(self) -> int:
        """Delete every session, live or not, at once; how many there were.

        One statement: about a second per three million rows (BENCHMARKS.md), during
        which requests that write a session wait for it. A session a login moves meanwhile
        is deleted under its new id (PostgreSQL follows a row updated under a waiting
        DELETE); a session made after it is new.
        """
        with self.connection() as connection:
            return connection.execute(self.statements.end_all).rowcount

    def close(self) -> None:
        """Close the pooled connections (a command's last step)."""
        self.engine.dispose()


def make_database_store(
    settings: Mapping[str, str], environ: Mapping[str, str], timeout: int, absolute_timeout: int
) -> DatabaseStore:
    """The store the ``session.database_*`` settings and the environment describe."""
    database = read_database_settings(settings, environ)
    return DatabaseStore(make_engine(database), timeout, absolute_timeout, database.timeout)


def make_store(
    settings: Mapping[str, str], environ: Mapping[str, str], session: SessionSettings
) -> DatabaseStore:
    """The session factory's store, its table made now if the database answers."""
    store = make_database_store(settings, environ, session.timeout, session.absolute_timeout)
    store.prepare_at_start_up()
    return store

"""The engine: a pooled SQLAlchemy engine that gives up within the timeout.

On an SQLite file: WAL, a busy timeout, and a connection that follows the file at its
path (one deleted or replaced under the running app is noticed at the connection's next
use: ``watch_sqlite_file``). On PostgreSQL through psycopg 3: statement and lock
timeouts, and a watchdog for a server that stops answering (``StatementWatchdog``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Engine,
    create_engine,
    event,
)
from sqlalchemy.exc import DisconnectionError

from .schema import SQLITE_SCHEMA
from .settings import DatabaseSettings

log = logging.getLogger(__name__)

# A statement the server's own timeouts should have ended gets this many times the
# timeout before the watchdog cuts its connection.
WATCHDOG_FACTOR = 1.5
# Why a process forked while its parent had the SQLite file open cannot use it.
FORKED_WITH_THE_FILE_OPEN = (
    "this process was forked while its parent had the SQLite file open (a request in "
    "flight, or any other descriptor of the file), and SQLite cannot share an open file "
    "across a fork: fork before the app serves (as gunicorn --preload does), or start "
    "processes with spawn"
)
# Where this process's open descriptors are listed (Linux; else macOS's and the BSDs').
DESCRIPTORS = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
# What SQLite keeps beside a database file in WAL mode, and only while it exists.
WAL_FILES = ("-wal", "-shm")


def sqlite_path(settings: DatabaseSettings) -> str:
    """The SQLite file's path, made absolute once: every connection and check names one
    file."""
    return os.path.abspath(settings.url.database)


def make_engine(settings: DatabaseSettings) -> Engine:
    """A pooled engine that gives up after ``settings.timeout`` seconds."""
    pool = {
        # Every statement commits by itself: a transaction around one statement would
        # cost a second round trip, for its COMMIT. (An engine that switched each
        # connection to autocommit and back on every use took twice as long per statement.)
        "isolation_level": "AUTOCOMMIT",
        # No transaction is ever open, so there is none to roll back when a connection goes
        # back to the pool: the pool's reset (a rollback() and its bookkeeping) is skipped.
        "pool_reset_on_return": None,
        "hide_parameters": True,  # an error never shows a session id (a credential)
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.timeout,
        "pool_pre_ping": settings.pool_pre_ping,
    }
    if settings.dialect == "sqlite":
        path = sqlite_path(settings)
        url = settings.url.set(database=path)
        engine = create_engine(url, connect_args={"timeout": settings.timeout}, **pool)
        in_own_process_only(engine)  # first: a forked child may refuse to open the file
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
    event.listen(engine, "do_connect", connect_or_close_the_attempt)
    return in_own_process_only(engine)


def connect_or_close_the_attempt(dialect: Any, _record: object, cargs: list, cparams: dict) -> Any:
    """The ``do_connect`` event of a PostgreSQL engine: connect, and close at once an
    attempt that failed.

    psycopg leaves an attempt that timed out (a frozen server accepts connections and
    never answers) open in its frames, which the error's traceback keeps, in reference
    cycles once the error went through SQLAlchemy and Pyramid: each would hold a socket,
    and a process on the server, until a garbage collection, which may come much later
    (an outage makes one per request). Clearing the finished frames' variables closes it.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.Error as error:
        traceback.clear_frames(error.__traceback__)
        raise


def in_own_process_only(engine: Engine) -> Engine:
    """``engine``, whose connections serve only the process that opened them.

    A process forked after connections were pooled (gunicorn --preload) must not use its
    parent's: PostgreSQL's would be two processes on one socket, and SQLite's docs warn
    that a connection carried across a fork can corrupt the file. The child starts with a
    pool of its own (SQLAlchemy's recipe), and closes none of the parent's
    (OwnConnections).
    """
    forked = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: dispose_in_child(forked))
    own = OwnConnections(engine.dialect.do_close)
    event.listen(engine, "connect", own.note)
    engine.dialect.do_close = own.close
    if engine.dialect.name == "sqlite":
        # SQLite keeps the bookkeeping of its file locks per process: a child forked
        # while this process has the file open inherits it and takes no lock of its own,
        # and once this process closes the file (a reload) the child writes to a WAL
        # that is gone. The pool lets go of the file before a fork (after the store's
        # threads gave back the connections they keep idle: connections.py), tied to the
        # engine, which may outlive a store the app dropped without closing it; a child
        # forked while the file was open all the same refuses to use it.
        os.register_at_fork(before=lambda: close_pool_before_fork(forked))
        note_inherited_files_at_every_fork()
        path = engine.url.database
        event.listen(engine, "do_connect", lambda *_connecting: refuse_if_inherited(path))
    return engine


class OwnConnections:
    """Which process opened each driver connection, and a close that leaves another
    process's alone.

    A forked child has copies of its parent's connections (the pool's, the threads'
    kept ones); the child's pool may close one (a full pool given one more back), and
    psycopg's close() ends the server's session over the socket the parent still uses.
    Each connection's opening process is noted at connect; another process's connection
    is left for its socket to close when the child exits.
    """

    def __init__(self, close: Callable[[Any], None]) -> None:
        self.close_connection = close
        self.opened_in: dict[int, int] = {}

    def note(self, connection: Any, _record: object) -> None:
        """The ``connect`` event: ``connection`` is this process's."""
        self.opened_in[id(connection)] = os.getpid()

    def close(self, connection: Any) -> None:
        """The dialect's close, for this process's connections only."""
        if self.opened_in.pop(id(connection), os.getpid()) == os.getpid():
            self.close_connection(connection)


# The (device, inode) of every file this process inherited a descriptor of at a fork.
INHERITED_FILES: set[tuple[int, int]] = set()


@functools.cache
def note_inherited_files_at_every_fork() -> None:
    """Have every process forked from this one note the files it inherited descriptors
    of (once per process, at the first SQLite engine)."""
    os.register_at_fork(after_in_child=note_inherited_files)


def note_inherited_files() -> None:
    """In a forked child: the files of the descriptors it inherited, whichever connection,
    thread or engine of the parent opened them, and whenever (one that another thread was
    opening or closing while the fork happened counts as the fork found it). Linux lists a
    process's descriptors in /proc/self/fd, macOS and the BSDs in /dev/fd."""
    # A descriptor closed meanwhile (the listing's own) names no file.
    files = (file_identity(int(name)) for name in os.listdir(DESCRIPTORS))
    INHERITED_FILES.update(file[:2] for file in files if file is not None)


def refuse_if_inherited(path: str) -> None:
    """The ``do_connect`` event of an SQLite engine: refuse to open the file at ``path`` (or
    a file whose WAL files are those) in a process forked while its parent had it open (a
    process that forks while it serves: a request in flight).

    SQLite keeps its locks' bookkeeping per process and file: whatever such a child wrote
    would be lost once the parent closed the file, a sign-out among it. Every statement
    fails instead, and says why; it is asked at every new connection, so that an engine
    made in the child, or a file moved and put back meanwhile, is refused as well.
    """
    if not INHERITED_FILES:  # not forked, or forked with no descriptor open: no stat
        return
    ends = ("", *WAL_FILES)
    files = {identity[:2] for end in ends if (identity := file_identity(path + end))}
    if files & INHERITED_FILES:
        import sqlite3  # only SQLite gets here

        raise sqlite3.OperationalError(FORKED_WITH_THE_FILE_OPEN)


def close_pool_before_fork(engine: weakref.ref) -> None:
    """Close the pool's connections before a fork, unless one is in use (a process that
    forks while it serves: the pool's count of them would be upset, and the file stays
    open all the same); the pool opens them again at the next statement."""
    alive_engine = engine()
    if alive_engine is not None and alive_engine.pool.checkedout() == 0:
        alive_engine.pool.dispose()


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
        self.running: dict[int, tuple[float, Any, int]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self, cursor: Any) -> None:
        """Start the clock of the statement ``cursor`` runs."""
        connection = cursor.connection
        with self.lock:
            if self.thread is None:  # once: the thread never ends (``watch``)
                thread = threading.Thread(target=self.watch, name="statement-watchdog")
                thread.daemon = True
                thread.start()
                self.thread = thread  # once started: an interrupted start is tried again
            # Last: a start interrupted above leaves no clock running.
            deadline = time.monotonic() + self.seconds
            self.running[id(cursor)] = (deadline, connection, connection.pgconn.socket)

    def stop(self, cursor: Any) -> None:
        """Stop the clock of the statement ``cursor`` ran, whatever its outcome."""
        with self.lock:
            self.running.pop(id(cursor), None)

    def watch(self) -> None:
        """Cut the connection of every statement past its deadline, forever: an error it
        did not expect is logged, and the watch goes on (no statement asks whether the
        thread still runs: that cost 1 µs a statement)."""
        while True:
            time.sleep(min(0.1, self.seconds / 4))
            try:
                self.shut_down_overdue(time.monotonic())
            except Exception:
                log.exception("statement watchdog: unexpected error; it goes on watching")

    def shut_down_overdue(self, now: float) -> None:
        """Shut down the sockets of the statements past their deadline: psycopg then
        fails the statement, and SQLAlchemy throws the connection away."""
        with self.lock:
            for key, (deadline, connection, fileno) in list(self.running.items()):
                if now > deadline:
                    del self.running[key]
                    if still_its_socket(connection, fileno):
                        shut_down_socket(fileno)


def watched_cursor(watchdog: StatementWatchdog) -> type:
    """A psycopg cursor class whose statements ``watchdog`` times."""
    import psycopg  # only PostgreSQL needs it

    class WatchedCursor(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            try:
                watchdog.start(self)
                return super().execute(query, params, **options)
            finally:
                watchdog.stop(self)

    return WatchedCursor


def still_its_socket(connection: Any, fileno: int) -> bool:
    """Whether ``fileno`` is still ``connection``'s socket: one closed meanwhile may have
    left its descriptor's number to another connection (a clock that an interruption
    left running)."""
    import psycopg  # only PostgreSQL gets here

    try:
        return not connection.closed and connection.pgconn.socket == fileno
    except psycopg.Error:  # the connection is lost
        return False


def shut_down_socket(fileno: int) -> None:
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


# Where a connection's record keeps the identity of the file it opened.
OPENED_FILE = "opened_file"


def sqlite_tuner(wait: float) -> Callable[[Any, object], None]:
    """What each new SQLite connection runs first (waiting ``wait`` seconds at most)."""

    def tune_sqlite_connection(connection: Any, _record: object) -> None:
        """WAL's readers never wait for the writer; in WAL, NORMAL sync cannot corrupt the
        file (a power cut may lose the last commits). A file new to this connection (the
        first one, or one made after the old one was deleted) gets WAL and the table
        here, so that its first request already finds them. One that fails (the file
        locked) is closed here: SQLAlchemy before 2.0.53 would leave its file open until
        a garbage collection."""
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            switch_to_wal(cursor, time.monotonic() + wait)
            for statement in SQLITE_SCHEMA:
                cursor.execute(statement)
            cursor.close()
        except BaseException:
            connection.close()
            raise

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


def file_identity(path: str | int) -> tuple[int, int, int] | None:
    """Which file ``path`` (or an open descriptor) names now, and its permissions; None
    when there is none."""
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
    opened = opened_the_file_at(path)

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
        if not opened(record):
            raise DisconnectionError("the SQLite file was deleted or replaced")


def opened_the_file_at(path: str) -> Callable[[Any], bool]:
    """Whether a connection (or its pool record) opened the file that is at ``path`` now."""

    def opened(connection: Any) -> bool:
        return connection.info.get(OPENED_FILE) == file_identity(path)

    return opened


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

"""SQL sessions: a signed id in the cookie, a row in the database, revocable, atomic,
fault-tolerant; on SQLite and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import logging
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import sqlalchemy
import webtest
from database_servers import PostgresServer, admin_url, free_port, libpq_url
from helpers import (
    COUNTER,
    STORE_FAILURE_PAGES,
    TEST_VIEWS,
    CountedLock,
    app_with_test_views,
    assert_corruption_gives_a_fresh_session,
    assert_security_headers,
    counter,
    csrf_token,
    post_form,
    session_cookie,
    text,
    valid_cookie,
    visit_with,
)
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions import increment_counter
from {{ cookiecutter.project_slug }}.sessions.database import (
    connections as database_connections,
)
from {{ cookiecutter.project_slug }}.sessions.database import store as database_store
from {{ cookiecutter.project_slug }}.sessions.database.engine import (
    INHERITED_FILES,
    WATCHDOG_FACTOR,
    StatementWatchdog,
    call_if_alive,
    dispose_in_child,
    note_inherited_files,
    shut_down_socket,
    sqlite_tuner,
    switch_to_wal,
)
from {{ cookiecutter.project_slug }}.sessions.database.schema import (
    create_table,
    sessions,
)
from {{ cookiecutter.project_slug }}.sessions.database.statements import statements_for
from {{ cookiecutter.project_slug }}.sessions.database.store import (
    DatabaseStore,
    error_reason,
    make_database_store,
)
from {{ cookiecutter.project_slug }}.sessions.settings import session_settings


def test_the_table_and_its_index_keep_their_full_names(stored) -> None:
    """PostgreSQL cuts a longer name than 63 bytes without an error: the table would then
    not be found under the name the app looks for (names derive from the project's)."""
    with stored.engine.connect() as connection:
        database = sqlalchemy.inspect(connection)
        assert database.has_table(sessions.name)
        indexes = {index["name"] for index in database.get_indexes(sessions.name)}
    assert indexes == {index.name for index in sessions.indexes}


def test_counters_are_a_json_object_and_the_row_expires(testapp, stored, app_settings) -> None:
    """The row expires an idle timeout after the session was made or last renewed: the
    second page renews it only once renewal is due, so it is timed from the first."""
    before = int(time.time())
    testapp.get("/")
    testapp.get("/howdy")
    [session_id] = stored.ids()
    row = stored.row(session_id)
    timeout = int(app_settings["session.timeout"])
    assert stored.counters(session_id) == {"visits": 2}
    assert before + timeout <= row.expiry <= int(time.time()) + timeout


# Ways a session's row can be damaged (by hand, a bug, another program, a bad restore):
# the column and the value written there. Both databases take these.
CORRUPTIONS: dict[str, tuple[str, object]] = {
    "data-not-json": ("data", "not json"),
    "data-not-an-object": ("data", "[1, 2]"),
    "data-nested-too-deeply": ("data", "[" * 100_000 + "]" * 100_000),
    "data-with-a-lone-surrogate": ("data", '{"_f_messages": [["info", "\\udcff"]]}'),
    "created-in-the-future": ("created", 4_000_000_000),
    "created-past-the-absolute-timeout": ("created", 1_000_000_000),
    "counters-not-an-object": ("counters", "[1, 2]"),
    "counters-a-number": ("counters", "5"),
    "expired": ("expiry", 1_000_000_000),
}
# A counter's value damaged: the session is corrupt when that counter is counted (a page
# that only reads the session still reads it).
COUNTER_CORRUPTIONS: dict[str, str] = {
    "counter-a-float": '{"visits": 1.5}',
    "counter-a-string": '{"visits": "many"}',
    "counter-null": '{"visits": null}',
    "counter-about-to-overflow": json.dumps({"visits": 10**18 - 1}),
    "counter-past-18-digits": json.dumps({"visits": -(10**18)}),
    "counter-at-the-64-bit-minimum": json.dumps({"visits": -(2**63)}),  # SQLite's abs() fails
}
# Large counters, up to the last one allowed: counted exactly.
EXACT_COUNTS = {"past-float-precision": 2**53 + 2, "at-the-limit": 10**18 - 2}
# SQLite stores a value of any type in any column: these only it can hold (PostgreSQL's
# column types refuse them).
SQLITE_CORRUPTIONS: dict[str, tuple[str, object]] = {
    "data-not-utf8": ("data", b"\x80\x04not utf-8"),
    "created-not-a-number": ("created", "yesterday"),
    "counters-not-json": ("counters", "not json"),
    "counters-not-text": ("counters", 5),
}


FIRST_REQUESTS = ["counter-page", "form-post"]


@pytest.mark.parametrize("change", CORRUPTIONS.values(), ids=CORRUPTIONS)
@pytest.mark.parametrize("first_request", FIRST_REQUESTS)
def test_corrupt_rows_give_a_fresh_session(testapp, stored, change, first_request) -> None:
    assert_corruption_gives_a_fresh_session(
        testapp, stored, lambda session_id: stored.set(session_id, *change), first_request
    )


@pytest.mark.parametrize("counters", COUNTER_CORRUPTIONS.values(), ids=COUNTER_CORRUPTIONS)
def test_a_corrupt_counter_gives_a_fresh_session_when_counted(testapp, stored, counters) -> None:
    assert_corruption_gives_a_fresh_session(
        testapp, stored, lambda session_id: stored.set(session_id, "counters", counters)
    )


@pytest.mark.parametrize("before", EXACT_COUNTS.values(), ids=EXACT_COUNTS)
def test_a_large_counter_counts_exactly(testapp, stored, before: int) -> None:
    testapp.get("/")
    [session_id] = stored.ids()
    stored.set(session_id, "counters", json.dumps({"visits": before}))
    assert counter(testapp.get("/")) == before + 1
    assert stored.ids() == [session_id]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("change", SQLITE_CORRUPTIONS.values(), ids=SQLITE_CORRUPTIONS)
@pytest.mark.parametrize("first_request", FIRST_REQUESTS)
def test_values_only_sqlite_can_hold_give_a_fresh_session(
    testapp, stored, change, first_request
) -> None:
    assert_corruption_gives_a_fresh_session(
        testapp, stored, lambda session_id: stored.set(session_id, *change), first_request
    )


def test_no_log_line_names_a_session_id(testapp, stored, monkeypatch, caplog) -> None:
    """A session id is a bearer credential (with the secret, a cookie): never logged, not
    even in a database error, whose statement parameters hold it."""
    with caplog.at_level(logging.DEBUG):
        testapp.get("/")
        [session_id] = stored.ids()
        stored.set(session_id, "data", "not json")
        testapp.get("/")
        [fresh_id] = stored.ids()
        fail_statement(monkeypatch, app_store(testapp), "load_and_increment")
        testapp.get("/howdy", status=503)
    assert "fresh session" in caplog.text
    assert "session store unavailable" in caplog.text
    assert session_id not in caplog.text
    assert fresh_id not in caplog.text


def first_visit(store: DatabaseStore, session_id: str | None = None) -> int:
    """A new session's first visit counted in ``store``: its row made."""
    return store.increment(session_id or secrets.token_urlsafe(32), "visits", 1, new=True)


def app_store(testapp: webtest.TestApp) -> DatabaseStore:
    """The store of the app's session factory (inside the guard that turns its errors
    into SessionStoreUnavailable)."""
    return testapp.app.registry.getUtility(ISessionFactory).store.store


def test_a_counter_page_costs_one_statement(testapp, watch_statements) -> None:
    testapp.get("/")
    sent = watch_statements(app_store(testapp))
    assert counter(testapp.get("/howdy")) == 2
    assert sent == ["UPDATE"]


def test_a_new_visitor_costs_an_insert_and_a_save(testapp, watch_statements) -> None:
    testapp.get("/")  # the table is made
    sent = watch_statements(app_store(testapp))
    assert counter(webtest.TestApp(testapp.app).get("/")) == 1
    assert sent == ["INSERT", "INSERT"]  # the row with its count, then its data


def test_a_form_post_costs_a_load_and_a_save(testapp, watch_statements) -> None:
    token = csrf_token(testapp.get("/"))
    sent = watch_statements(app_store(testapp))
    post_form(testapp, "/flash", token, category="info", message="hello")
    assert sent == ["SELECT", "UPDATE"]  # its renewal not due: the load writes nothing


def fail_statement(monkeypatch: pytest.MonkeyPatch, store: DatabaseStore, name: str) -> None:
    """From now on, the store's statement ``name`` fails as a lost connection would."""
    run = store.connections.run

    def run_or_fail(statement: str, values: dict) -> Any:
        if statement == name:
            raise OperationalError(name, {}, ConnectionError(f"the database went away in {name}"))
        return run(statement, values)

    monkeypatch.setattr(store.connections, "run", run_or_fail)


# Which request fails, for a failure in each of the session's round trips.
FAILING_ROUND_TRIPS = {
    "load": ("post", "/flash"),  # the CSRF check loads the session
    "load_and_increment": ("get", "/howdy"),
    "save": ("post", "/flash"),  # after the view, outside Pyramid's exception views
    "move": ("get", f"{TEST_VIEWS}/login"),
    "delete": ("post", "/forget"),
}


@pytest.mark.parametrize("statement", FAILING_ROUND_TRIPS, ids=lambda name: f"{name}-fails")
def test_the_database_failing_in_any_round_trip_is_a_503(
    app_with_login, monkeypatch, caplog, statement
) -> None:
    token = csrf_token(app_with_login.get("/"))
    fail_statement(monkeypatch, app_store(app_with_login), statement)
    method, path = FAILING_ROUND_TRIPS[statement]
    form = {"csrf_token": token, "category": "info", "message": "hello"}
    options = {"params": form} if method == "post" else {}
    response = getattr(app_with_login, method)(path, status=503, **options)
    assert "Sessions are unavailable for a moment." in text(response)
    assert response.headers["Retry-After"] == "5"
    assert f"the database went away in {statement}" in caplog.text


def test_the_database_failing_for_a_new_visitor_is_a_503_without_a_write(
    testapp, monkeypatch, watch_statements
) -> None:
    testapp.get("/")
    store = app_store(testapp)
    sent = watch_statements(store)
    fail_statement(monkeypatch, store, "create")  # it fails before it is sent
    webtest.TestApp(testapp.app).get("/", status=503)
    assert sent == []  # no second wait for a database that just failed


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, apart from the one the others share."""
    server = PostgresServer().initialize()
    yield server
    server.destroy()


@pytest.fixture
def outage_postgres(private_postgres: PostgresServer) -> PostgresServer:
    """The module's server, running and empty, for a test that may stop, crash or freeze
    it (and start it again)."""
    if not private_postgres.running:
        private_postgres.start()
    with psycopg.connect(libpq_url(private_postgres.url), autocommit=True) as admin:
        admin.execute(f"DROP TABLE IF EXISTS {sessions.name}")
    return private_postgres


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("mode", ["fast", "immediate"], ids=["stopped", "crashed"])
def test_postgresql_stopped_is_a_503_page_and_recovers(
    app_settings, outage_postgres, caplog, mode
) -> None:
    settings = {**app_settings, "session.database_url": outage_postgres.url}
    testapp = webtest.TestApp(main({}, **settings))
    testapp.get("/")
    outage_postgres.stop(mode)
    with caplog.at_level(logging.ERROR):
        response = testapp.get("/howdy", status=503)
    assert "Sessions are unavailable for a moment." in text(response)
    assert "session store unavailable for GET /howdy: OperationalError" in caplog.text
    outage_postgres.start()
    # The failure threw the pool's dead connections away: the next request connects anew.
    assert [counter(testapp.get("/howdy")) for _ in range(3)] == [2, 3, 4]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_down_at_start_up_is_a_503_then_the_table_is_made(
    app_settings, outage_postgres, caplog
) -> None:
    outage_postgres.stop()
    settings = {**app_settings, "session.database_url": outage_postgres.url}
    with caplog.at_level(logging.ERROR):
        testapp = webtest.TestApp(main({}, **settings))
    assert "session database unavailable at start-up" in caplog.text
    testapp.get("/", status=503)
    outage_postgres.start()
    assert counter(testapp.get("/")) == 1
    assert counter(testapp.get("/")) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_file_unreachable_at_start_up_is_a_503_then_the_table_is_made(
    app_settings, tmp_path, caplog
) -> None:
    """The same start-up on SQLite (a file where its directory should be, as a volume not
    yet mounted): covered without PostgreSQL too."""
    in_the_way = tmp_path / "not-mounted-yet"
    in_the_way.write_text("")
    url = f"sqlite:///{in_the_way / 'sessions.sqlite'}"
    with caplog.at_level(logging.ERROR):
        testapp = webtest.TestApp(main({}, **{**app_settings, "session.database_url": url}))
    assert "session database unavailable at start-up" in caplog.text
    testapp.get("/", status=503)
    in_the_way.unlink()  # now the app can make the directory, and the file in it
    assert counter(testapp.get("/")) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_directory_of_a_new_sqlite_file_is_made(app_settings, tmp_path) -> None:
    """``sqlite:///data/sessions.db`` works in a fresh checkout, where data/ is missing."""
    url = f"sqlite:///{tmp_path / 'data' / 'deeper' / 'sessions.db'}"
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.database_url": url}))
    assert [counter(testapp.get("/")), counter(testapp.get("/"))] == [1, 2]
    assert (tmp_path / "data" / "deeper" / "sessions.db").is_file()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_thread_waiting_for_the_table_shares_the_failed_try(app_settings) -> None:
    """A request that finds another thread making the table waits for it and, when that
    try failed, fails too (a 503) rather than trying again after it."""
    store = store_of(app_settings)
    store._lock = CountedLock()
    store._lock.acquire()  # another thread is making the table...
    waiting = ThreadPoolExecutor(1).submit(store.prepare)
    store._lock.wait_for_tries(1 + 2)  # it found the lock taken, and waits for it
    store._lock.release()  # ...and gives up without it
    with pytest.raises(PoolTimeoutError, match="another thread could not make"):
        waiting.result(timeout=5)
    store.engine.dispose()


def hold_the_lock(url: str, session_id: str, seconds: float) -> threading.Thread:
    """Another program writes the session's row and keeps its transaction open."""
    started = threading.Event()

    def hold() -> None:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
        with engine.begin() as connection:
            touch = sessions.update().where(sessions.c.id == session_id)
            connection.execute(touch.values(counters=sessions.c.counters))
            started.set()
            time.sleep(seconds)
        engine.dispose()

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait(10)
    return holder


def test_a_lock_held_past_the_timeout_is_a_503_within_it(app_settings, stored) -> None:
    """SQLite's busy timeout, PostgreSQL's lock timeout: the same setting, the same page."""
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.database_timeout": "0.3"}))
    testapp.get("/")
    [session_id] = stored.ids()
    holder = hold_the_lock(app_settings["session.database_url"], session_id, seconds=1.5)
    try:
        started = time.monotonic()
        testapp.get("/howdy", status=503)
        waited = time.monotonic() - started
    finally:
        holder.join()
    assert 0.25 < waited < 1.2  # the timeout, well before the lock is released
    assert counter(testapp.get("/howdy")) == 2


def test_a_lock_released_within_the_timeout_only_delays(app_settings, stored) -> None:
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.database_timeout": "3"}))
    testapp.get("/")
    [session_id] = stored.ids()
    holder = hold_the_lock(app_settings["session.database_url"], session_id, seconds=0.3)
    try:
        assert counter(testapp.get("/howdy")) == 2
    finally:
        holder.join()


def test_processes_starting_together_make_the_table_once(app_settings) -> None:
    """Eight processes' first requests race to make the table on an empty database."""
    stores = [store_of(app_settings) for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def first_request(store: DatabaseStore) -> int | None:
        barrier.wait()
        return first_visit(store)

    with ThreadPoolExecutor(max_workers=len(stores)) as pool:
        assert list(pool.map(first_request, stores)) == [1] * len(stores)
    for store in stores:
        store.engine.dispose()


def test_the_threads_of_a_process_make_the_table_once(app_settings, monkeypatch) -> None:
    """The first requests of a process race to make the table: one makes it, the others
    wait for it and go on."""
    made = []

    def slow_create_table(connection: sqlalchemy.Connection) -> None:
        store._lock.wait_for_tries(1 + 3 * 2)  # the others tried, then wait for this one
        made.append(create_table(connection))

    monkeypatch.setattr(database_store, "create_table", slow_create_table)
    store = store_of(app_settings)
    store._lock = CountedLock()
    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(pool.map(lambda _: first_visit(store), range(4)))
    assert (counts, len(made)) == ([1, 1, 1, 1], 1)
    store.engine.dispose()


def reader_of_a_new_file(path: Path, seconds: float) -> threading.Timer:
    """Another program reads a new file (not yet in WAL mode) for ``seconds``."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("CREATE TABLE other (x)")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM other").fetchall()
    done = threading.Timer(seconds, lambda: (reader.execute("COMMIT"), reader.close()))
    done.start()
    return done


@pytest.mark.parametrize(("reading", "switched"), [(0.2, True), (1.0, False)])
def test_the_switch_to_wal_waits_for_a_reader_until_the_deadline(
    tmp_path, reading: float, switched: bool
) -> None:
    """SQLite refuses the switch at once while another connection reads (no busy
    timeout): processes starting together on a new file met that."""
    path = tmp_path / "new.sqlite"
    done = reader_of_a_new_file(path, reading)
    cursor = sqlite3.connect(path, timeout=0, isolation_level=None).cursor()
    try:
        switch_to_wal(cursor, time.monotonic() + 0.5)
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
    done.join()
    assert (cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal") == switched


def test_a_thread_that_finds_the_table_made_meanwhile_makes_it_no_second_time(
    app_settings, watch_statements
) -> None:
    """It saw the table missing, then another thread made it before this one's turn."""
    store = store_of(app_settings)
    store.prepare()
    sent = watch_statements(store)
    store.prepare()
    assert sent == []
    store.engine.dispose()


def test_a_table_lost_under_the_running_app_is_a_503_then_made_again(
    app_settings, stored, caplog
) -> None:
    testapp = webtest.TestApp(main({}, **app_settings))
    testapp.get("/")
    stored.run(sqlalchemy.text(f"DROP TABLE {sessions.name}"))
    with caplog.at_level(logging.ERROR):
        testapp.get("/howdy", status=503)
    assert "session store unavailable for GET /howdy" in caplog.text
    assert counter(testapp.get("/howdy")) == 1  # the session went with the table


def test_making_the_table_again_changes_nothing(app_settings, stored) -> None:
    testapp = webtest.TestApp(main({}, **app_settings))
    testapp.get("/")
    store = app_store(testapp)
    with store.engine.begin() as connection:
        create_table(connection)
    assert counter(testapp.get("/")) == 2


def test_the_pool_follows_the_settings(app_settings) -> None:
    settings = {
        **app_settings,
        "session.database_pool_size": "3",
        "session.database_max_overflow": "0",
        "session.database_timeout": "0.2",
        "session.database_pool_pre_ping": "true",
    }
    store = store_of(settings)
    pool = store.engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout, pool._pre_ping) == (3, 0, 0.2, True)
    held = [store.engine.connect() for _ in range(3)]
    try:
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.TimeoutError):
            store.load("anyone")
        assert time.monotonic() - started < 1
    finally:
        for connection in held:
            connection.close()
        store.engine.dispose()


def checkouts_of(store: DatabaseStore) -> list[object]:
    """The connections the store's pool hands out from now on."""
    handed_out: list[object] = []
    sqlalchemy.event.listen(
        store.engine, "checkout", lambda connection, *_: handed_out.append(connection)
    )
    return handed_out


def test_a_thread_keeps_its_connection_between_statements(app_settings) -> None:
    """A check-out and check-in per statement cost as much as SQLite's own work."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    handed_out = checkouts_of(store)
    counts = [store.increment(session_id, "visits", 1, new=False) for _ in range(3)]
    assert (counts, handed_out) == ([2, 3, 4], [])
    with ThreadPoolExecutor(1) as another_thread:  # another thread: a connection of its own
        assert another_thread.submit(store.load_and_increment, session_id, "visits", 1).result()
    assert len(handed_out) == 1
    store.close()


@pytest.mark.parametrize(
    ("pool_size", "max_overflow", "kept"),
    [(1, 0, 0), (2, 0, 0), (1, 1, 1), (3, 1, 1), (3, 9, 3)],
)
def test_threads_keep_connections_the_pool_can_spare(
    app_settings, pool_size: int, max_overflow: int, kept: int
) -> None:
    """A kept connection is idle between its thread's statements, and no other thread may
    use it: the threads keep no more than the overflow, so that the others always share
    pool_size connections at least (with no overflow, none is kept)."""
    settings = {
        **app_settings,
        "session.database_pool_size": str(pool_size),
        "session.database_max_overflow": str(max_overflow),
        "session.database_timeout": "0.2",
    }
    store = store_of(settings)
    first_visit(store)
    threads = pool_size + max_overflow + 2
    arrived, visited = threading.Barrier(threads), threading.Barrier(threads + 1)
    checked = threading.Event()
    one_at_a_time = threading.Lock()

    def visit() -> None:
        arrived.wait()
        first_visit(store)  # all at once: none waits 0.2 s for a connection merely kept
        with one_at_a_time:
            first_visit(store)  # one at a time: each keeps its connection if it may
        visited.wait()
        checked.wait()

    with ThreadPoolExecutor(threads) as pool:
        visits = [pool.submit(visit) for _ in range(threads)]
        visited.wait()
        kept_now = store.engine.pool.checkedout()
        checked.set()
        for done in visits:
            done.result()
    assert kept_now == kept
    store.engine.dispose()


# Another program holding a session's row (a batch job, a migration).
LOCK_ROW = "SELECT 1 FROM {} WHERE id = %s FOR UPDATE"


class GreenletTimeout(BaseException):
    """What gevent's Timeout is: a BaseException thrown into the code that waits."""


def interrupt(_signal: int, _frame: object) -> None:
    raise GreenletTimeout


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_statement_interrupted_midway_leaves_no_broken_connection_kept(
    app_settings, stored
) -> None:
    """A BaseException (a gevent Timeout, a signal's) leaves the statement in flight on
    its connection: kept, it would fail every later statement of the thread; left running
    on the server (closing the socket does not stop a statement waiting for a lock), it
    would land later, after writes that came after it."""
    store = store_of({**app_settings, "session.database_timeout": "5"})  # the lock's wait
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    with psycopg.connect(libpq_url(app_settings["session.database_url"])) as locker:
        locker.execute(LOCK_ROW.format(sessions.name), [session_id])
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(GreenletTimeout):
                store.increment(session_id, "visits", 1, new=False)  # waits for the lock
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        deadline = time.monotonic() + 1
        while locker.execute(waiting).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert locker.execute(waiting).fetchone() == (0,), "the statement still waits"
        locker.rollback()
    first, second = (store.increment(session_id, "visits", 1, new=False) for _ in range(2))
    assert (first, second) == (2, 3)  # the interrupted one never counted
    store.close()


def test_a_connection_lost_under_a_thread_is_a_store_error_then_replaced(app_settings) -> None:
    """The server restarted, or a proxy dropped the connection: that statement fails (a
    503), the pool's idle connections go with it, and the next one connects anew."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    kept = store.connections.local.kept.connection
    kept.dbapi_connection.close()
    with pytest.raises(sqlalchemy.exc.DBAPIError) as lost:
        store.increment(session_id, "visits", 1, new=False)
    assert "closed" in str(lost.value.orig) and not kept.is_valid
    assert store.increment(session_id, "visits", 1, new=False) == 2
    store.close()


def test_a_lost_connection_closes_the_connections_other_threads_keep(app_settings) -> None:
    """A lost connection replaces the pool, whose other connections are lost too (a
    restarted server): those idle in other threads' keeping are closed at once. Left
    until each thread's next statement, the new pool's connections would come on top of
    them, past pool_size + max_overflow at the server."""
    settings = {
        **app_settings,
        "session.database_pool_size": "2",
        "session.database_max_overflow": "2",
    }
    store = store_of(settings)
    with ThreadPoolExecutor(1) as idle_thread:
        idle_thread.submit(first_visit, store, "idle").result()
        kept_there = idle_thread.submit(lambda: store.connections.local.kept.connection).result()
        first_visit(store, "here")
        kept_here = store.connections.local.kept.connection
        kept_here.dbapi_connection.close()
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            store.increment("here", "visits", 1, new=False)
        assert not kept_there.is_valid
        counted = idle_thread.submit(store.increment, "idle", "visits", 1, new=False)
        assert counted.result() == 2
    store.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lost_connection_keeps_the_server_connections_in_the_limit(app_settings) -> None:
    """A connection lost while the server stays up (pg_terminate_backend, the watchdog
    cutting a socket): its statement fails, and the pool makes its connections from
    before anew as it hands them out, in the same pool. A new pool opened its own beside
    the old one's still in use: 3 server connections for a limit of 2."""
    setup = store_of(app_settings)
    first_visit(setup, "locked")
    setup.close()
    url = f"{app_settings['session.database_url']}?application_name=limited"
    limits = {"pool_size": "1", "max_overflow": "1", "timeout": "4"}
    settings = {f"session.database_{name}": value for name, value in limits.items()}
    store = store_of({**app_settings, **settings, "session.database_url": url})
    first_visit(store, "here")  # this thread keeps its connection
    with psycopg.connect(libpq_url(url).replace("limited", "locker")) as locker:
        locker.execute(LOCK_ROW.format(sessions.name), ["locked"])
        with ThreadPoolExecutor(3) as requests:
            waiting = [requests.submit(count_visit, store, "locked")]  # the other one
            time.sleep(0.3)
            kept = store.connections.local.kept.connection
            kept.dbapi_connection.close()  # lost
            with pytest.raises(sqlalchemy.exc.DBAPIError):
                count_visit(store, "here")
            waiting += [requests.submit(count_visit, store, "locked") for _ in range(2)]
            time.sleep(0.3)  # both connect, or wait for a connection
            most, count = 0, "SELECT pid FROM pg_stat_activity WHERE application_name = 'limited'"
            for _ in range(20):
                most = max(most, len(locker.execute(count).fetchall()))
                time.sleep(0.05)
            locker.rollback()
            assert sorted(outcome.result() for outcome in waiting) == [2, 3, 4]
    assert most <= 2, f"{most} server connections for a limit of 2"
    store.close()


def count_visit(store: DatabaseStore, session_id: str) -> int | None:
    """One more visit on the session ``session_id``, as a request counts it."""
    return store.increment(session_id, "visits", 1, new=False)


def interrupted_again(_connection: Any, _timeout: float) -> None:
    """A second interruption while the store asks the server to cancel the statement."""
    raise GreenletTimeout


@pytest.mark.parametrize("while_cancelling", [False, True], ids=["once", "again"])
def test_a_connection_a_base_exception_interrupts_is_thrown_away(
    app_settings, monkeypatch, while_cancelling: bool
) -> None:
    """Whatever the statement was doing when it was interrupted (above, on PostgreSQL),
    its connection is never kept: closed, and the thread's next statement gets another;
    also when a second interruption comes while the statement is being cancelled."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    kept = store.connections.local.kept.connection

    class Interrupted:
        """The kept connection's cursor, its next statement interrupted."""

        def execute(self, *_statement: Any) -> None:
            raise GreenletTimeout

    kept.info[database_connections.CURSOR] = Interrupted()
    if while_cancelling:
        monkeypatch.setattr(database_connections, "cancel", interrupted_again)
    with pytest.raises(GreenletTimeout):
        store.increment(session_id, "visits", 1, new=False)
    monkeypatch.undo()
    assert (kept.is_valid, getattr(store.connections.local, "kept", None)) == (False, None)
    assert store.increment(session_id, "visits", 1, new=False) == 2
    store.close()


def test_a_kept_connection_runs_its_statements_on_one_cursor_until_one_fails(
    app_settings, stored
) -> None:
    """A cursor is made once per connection, not per statement (a new one looks up how
    to send and read every type anew); one whose statement failed is dropped, and the
    next statement makes another on the same connection."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    kept = store.connections.local.kept.connection
    cursor = kept.info[database_connections.CURSOR]
    assert count_visit(store, session_id) == 2
    assert kept.info[database_connections.CURSOR] is cursor
    stored.run(sqlalchemy.text(f"DROP TABLE {sessions.name}"))
    with pytest.raises(sqlalchemy.exc.DBAPIError):
        count_visit(store, session_id)
    assert database_connections.CURSOR not in kept.info
    assert first_visit(store, session_id) == 1  # the table made again, on a new cursor
    assert store.connections.local.kept.connection is kept
    assert kept.info[database_connections.CURSOR] is not cursor
    store.close()


def test_a_check_interrupted_midway_throws_the_kept_connection_away(
    app_settings, monkeypatch
) -> None:
    """A BaseException in the pre-ping may leave its reply due on the connection."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    kept = store.connections.local.kept.connection

    def interrupted(_connection: Any) -> bool:
        raise GreenletTimeout

    monkeypatch.setattr(store.connections, "still_good", interrupted)
    with pytest.raises(GreenletTimeout):
        store.increment(session_id, "visits", 1, new=False)
    monkeypatch.undo()
    assert not kept.is_valid
    assert store.increment(session_id, "visits", 1, new=False) == 2
    store.close()


def test_a_connection_of_a_replaced_pool_is_closed_not_kept(app_settings) -> None:
    store = store_of(app_settings)
    first_visit(store)
    store.close()
    pool, connection = store.connections.take()
    store.engine.dispose()  # meanwhile, another thread's lost connection replaced the pool
    store.connections.give_back(pool, connection)
    assert (connection.is_valid, getattr(store.connections.local, "kept", None)) == (False, None)
    store.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_statement_that_outlives_its_pool_keeps_no_connection(app_settings, stored) -> None:
    """The pool is replaced (another thread's connection was lost) while a statement
    runs: its connection, of the old pool, is closed, neither kept nor left open."""
    store = store_of(app_settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    store.close()
    with psycopg.connect(libpq_url(app_settings["session.database_url"])) as locker:
        locker.execute(LOCK_ROW.format(sessions.name), [session_id])
        with ThreadPoolExecutor(1) as thread:
            waiting = thread.submit(store.increment, session_id, "visits", 1, False)
            time.sleep(0.2)
            store.engine.dispose()  # as a lost connection's statement does
            locker.rollback()
            assert waiting.result() == 2
            kept = thread.submit(lambda: getattr(store.connections.local, "kept", None))
            assert kept.result() is None
    assert store.engine.pool.checkedout() == 0
    store.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_forked_child_closes_none_of_the_parents_connections(app_settings, stored) -> None:
    """With the pool full when the process forks, the child's pool closes a connection
    it is given back: without care, psycopg would end the parent's session with the
    server over the socket both processes hold."""
    settings = {
        **app_settings,
        "session.database_pool_size": "1",
        "session.database_max_overflow": "1",
    }
    store = store_of(settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)  # this thread keeps its connection
    with ThreadPoolExecutor(1) as another_thread:  # one more: back to a full pool
        another_thread.submit(store.ping).result()
    child = os.fork()
    if child == 0:  # serves a request on this thread, then exits
        status = 1
        try:
            status = 0 if store.increment(session_id, "visits", 1, new=False) == 2 else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.increment(session_id, "visits", 1, new=False) == 3
    store.close()


# A value of each kind a statement binds, for a plan: only its type matters.
PLANNED_VALUES = {"session_id": "x", "new_id": "y", "keep": "z", "owner": "u", "counter": "c"}
# The statements that may read the expiry index: clear-sessions', for the expired rows.
READ_THE_EXPIRY_INDEX = {"clear_expired"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_statement_on_a_session_ranges_over_the_expiry_index(app_settings) -> None:
    """PostgreSQL caches a generic plan of each statement a connection repeats, made from
    the statistics of the moment: with a new table's (none yet), the statements naming
    one session ranged over the expiry index (every live session) instead of looking the
    id up. Each must find its rows by the id, or the user, whatever the statistics."""
    store = store_of(app_settings)
    for _ in range(300):
        first_visit(store)  # live sessions, and no ANALYZE since
    dialect = psycopg_dialect.dialect(paramstyle="numeric_dollar")  # PREPARE's $1, $2...
    statements = vars(statements_for("postgresql"))
    with psycopg.connect(libpq_url(app_settings["session.database_url"])) as connection:
        connection.execute("SET plan_cache_mode = force_generic_plan")
        for name, statement in statements.items():
            if name in READ_THE_EXPIRY_INDEX or not isinstance(statement, sqlalchemy.Executable):
                continue
            compiled = statement.compile(dialect=dialect)
            values = [PLANNED_VALUES.get(value, "1") for value in compiled.positiontup]
            connection.execute(f"PREPARE planned_{name} AS {compiled}")
            listed = f"({', '.join(repr(value) for value in values)})" if values else ""
            plan = connection.execute(f"EXPLAIN EXECUTE planned_{name}{listed}").fetchall()
            assert "_expiry" not in str(plan), f"{name}: {plan}"
    store.close()


def test_a_forked_worker_opens_connections_of_its_own(app_settings) -> None:
    """gunicorn --preload forks workers after the app pooled connections: a worker never
    uses one its parent opened (SQLite: a connection carried across a fork can corrupt the
    file, SQLite's docs warn; PostgreSQL: two processes on one socket)."""
    store = store_of(app_settings)
    first_visit(store, "forked")  # this thread keeps its connection
    with ThreadPoolExecutor(1) as another_thread:  # and the pool one more, idle
        another_thread.submit(store.ping).result()
    opened_in = store.engine.dialect.do_close.__self__.opened_in
    child = os.fork()
    if child == 0:  # a request on this thread, then which process opened its connection
        status = 1
        try:
            counted = store.increment("forked", "visits", 1, new=False)
            connection = store.connections.local.kept.connection
            opened_here = opened_in.get(id(connection.dbapi_connection)) == os.getpid()
            status = 0 if (counted, opened_here) == (2, True) else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.increment("forked", "visits", 1, new=False) == 3
    store.close()


def child_counts_while_the_parent_lets_go(store: DatabaseStore, let_go: Callable) -> int:
    """Fork a child that counts a visit of the session "forked", waits while the parent
    runs ``let_go`` (closes the file), then counts three more; its exit code (0: it
    counted 2, 3, 4, 5)."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            counted = [count_visit(store, "forked")]
            os.write(from_child, b"1")
            os.read(to_child, 1)
            counted += [count_visit(store, "forked") for _ in range(3)]
            status = 0 if counted == [2, 3, 4, 5] else 1
        finally:
            os._exit(status)
    os.read(to_parent, 1)
    let_go()
    os.write(from_parent, b"1")
    _, status = os.waitpid(child, 0)
    for descriptor in (to_child, from_parent, to_parent, from_child):
        os.close(descriptor)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_forked_from_an_sqlite_app_keeps_its_writes(app_settings) -> None:
    """SQLite keeps its file locks' bookkeeping per process: a child forked while the
    parent has the file open inherits it and takes no lock of its own, so the parent
    closing its last connection (a reload) removed the WAL under the child, whose writes
    then went nowhere. The parent lets go of the file before a fork."""
    store = store_of(app_settings)
    first_visit(store, "forked")
    assert child_counts_while_the_parent_lets_go(store, store.close) == 0
    fresh = store_of(app_settings)
    assert count_visit(fresh, "forked") == 6  # the child's writes are all in the file
    fresh.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_store_dropped_unclosed_lets_go_of_the_file_before_a_fork(app_settings) -> None:
    """An app rebuilt in the same process drops its old store without closing it, whose
    engine may outlive it a while (a reference cycle): its pool lets go of the file
    before a fork too, or the child's writes would be lost as above."""
    store = store_of(app_settings)
    first_visit(store, "forked")
    old_engine = store.engine  # alive, as a cycle keeps it until a collection
    del store
    gc.collect()
    store = store_of(app_settings)  # the app rebuilt

    def close_both() -> None:
        old_engine.dispose()
        store.close()

    assert child_counts_while_the_parent_lets_go(store, close_both) == 0
    fresh = store_of(app_settings)
    assert count_visit(fresh, "forked") == 6
    fresh.close()


def refused_in_a_child_forked_mid_request(
    busy: DatabaseStore, store_in_child: Callable[[], DatabaseStore]
) -> bool:
    """Fork while ``busy`` has a connection in use (a statement running in another
    thread): whether the child's visit through ``store_in_child()`` is refused, saying
    why."""
    in_use = busy.engine.raw_connection()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            with pytest.raises(sqlalchemy.exc.OperationalError, match="forked while its parent"):
                count_visit(store_in_child(), "forked")
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    in_use.close()
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_process_forked_while_the_file_is_in_use_refuses_it(app_settings) -> None:
    """A process that forks while it serves (a request in flight holds a connection, so
    the file stays open): the child took no lock of its own, and what it wrote was lost
    once the parent closed the file, a sign-out among it (a red-team's: the revoked
    session came back). The child's statements fail instead, and say why."""
    store = store_of(app_settings)
    first_visit(store, "forked")
    assert refused_in_a_child_forked_mid_request(store, lambda: store)
    assert count_visit(store, "forked") == 2  # the parent serves on
    store.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_process_forked_while_another_store_has_the_file_open_refuses_it(
    app_settings,
) -> None:
    """Two stores on one file (two apps in one process): SQLite's lock bookkeeping is per
    process and file, so a request in flight on one makes the file unsafe for the other
    in the child too (a red-team's: the child's writes through the other store were
    lost once the parent closed both)."""
    busy, other = store_of(app_settings), store_of(app_settings)
    first_visit(other, "forked")
    assert refused_in_a_child_forked_mid_request(busy, lambda: other)
    assert count_visit(other, "forked") == 2  # the parent serves on
    busy.close()
    other.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_store_made_in_a_child_forked_with_the_file_open_refuses_it(app_settings) -> None:
    """An app built in the child after the fork (a forked job runner) has an engine the
    fork never saw: its connections are checked against the inherited descriptors too (a
    red-team's: its writes were lost once the parent closed the file)."""
    store = store_of(app_settings)
    first_visit(store, "forked")
    assert refused_in_a_child_forked_mid_request(store, lambda: store_of(app_settings))
    store.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_fork_while_a_connection_is_in_use_keeps_the_pools_count(app_settings) -> None:
    """Closing the pool while a connection is out resets its count (SQLAlchemy's
    QueuePool.dispose), and the limits would no longer hold: before a fork the pool lets
    go of the file only when no connection is in use."""
    store = store_of(app_settings)
    first_visit(store, "counted")
    in_use = store.engine.raw_connection()  # a statement running in another thread
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    in_use.close()
    assert store.engine.pool.checkedout() == 0
    assert count_visit(store, "counted") == 2
    store.close()


@pytest.mark.parametrize(
    ("results", "passes"),
    [((), True), ((True,), True), ((False,), False), ((True, True), True), ((True, False), False)],
    ids=["no check", "one that passes", "one that fails", "two that pass", "one of two fails"],
)
def test_a_kept_connection_is_used_only_if_it_passes_every_check(results, passes) -> None:
    """The checks a kept connection passes before each statement (the SQLite file, the
    pre-ping): none on PostgreSQL without pre-ping."""
    checks = [lambda _connection, result=result: result for result in results]
    assert database_connections.all_of(checks)(object()) is passes


def test_a_kept_connection_that_fails_the_pre_ping_is_replaced(app_settings, monkeypatch) -> None:
    store = store_of({**app_settings, "session.database_pool_pre_ping": "true"})
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    kept = store.connections.local.kept.connection
    dialect, pings = store.engine.dialect, []
    ping = dialect.do_ping

    def no_answer_once(connection: Any) -> bool:
        pings.append(connection)
        if len(pings) == 1:
            raise dialect.loaded_dbapi.OperationalError("the server closed the connection")
        return ping(connection)

    monkeypatch.setattr(dialect, "do_ping", no_answer_once)
    assert store.increment(session_id, "visits", 1, new=False) == 2
    assert (len(pings), kept.is_valid) == (1, False)  # a new one is not pinged
    store.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_request_waits_for_a_connection_an_idle_thread_keeps(app_settings, stored) -> None:
    """Two idle threads, two requests held by another program's row locks: a third
    request, on a session nobody holds, gets the pool's third connection at once."""
    settings = {
        **app_settings,
        "session.database_pool_size": "3",
        "session.database_max_overflow": "0",
        "session.database_timeout": "0.5",
    }
    store = store_of(settings)
    locked, free = [secrets.token_urlsafe(32) for _ in range(2)], secrets.token_urlsafe(32)
    for session_id in [*locked, free]:
        first_visit(store, session_id)
    store.close()  # this thread keeps no connection either
    served, finish = threading.Barrier(3), threading.Event()

    def serve_once_then_idle() -> None:
        store.increment(free, "visits", 1, new=False)
        served.wait()
        finish.wait()

    threads = ThreadPoolExecutor(4)
    idle = [threads.submit(serve_once_then_idle) for _ in range(2)]
    locker = psycopg.connect(libpq_url(settings["session.database_url"]))
    try:
        served.wait(timeout=5)
        for session_id in locked:
            locker.execute(LOCK_ROW.format(sessions.name), [session_id])
        held = [threads.submit(store.increment, id_, "visits", 1, False) for id_ in locked]
        time.sleep(0.1)
        assert store.increment(free, "visits", 1, new=False) == 4
    finally:
        locker.close()
        finish.set()
        threads.shutdown()
    for request in [*held, *idle]:
        with contextlib.suppress(sqlalchemy.exc.OperationalError):  # the lock timeout
            request.result()
    store.engine.dispose()


def app_backends(admin: psycopg.Connection) -> set[int]:
    """The server's client backends but ``admin``'s own."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    return {pid for (pid,) in rows}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lost_connection_leaves_no_connection_open_past_the_pool(app_settings, stored) -> None:
    """The server ends a backend twenty times (a proxy's idle timeout, a network blip):
    the other threads' connections, kept from the pool the loss replaced, are closed,
    not left open until a garbage collection (collections are rare in a busy app)."""
    settings = {**app_settings, "session.database_pool_size": "3"}
    stored.engine.dispose()
    store = store_of(settings)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    admin = psycopg.connect(libpq_url(settings["session.database_url"]), autocommit=True)
    others = list(app_backends(admin))  # the other tests' (their threads keep some)
    workers = [ThreadPoolExecutor(1) for _ in range(3)]  # the same three threads each time

    def every_worker_visits() -> None:
        for worker in workers:  # one at a time: each keeps its connection
            with contextlib.suppress(sqlalchemy.exc.OperationalError):  # the lost one
                worker.submit(store.increment, session_id, "visits", 1, False).result()

    gc.disable()
    try:
        for _ in range(20):
            every_worker_visits()
            admin.execute(
                "SELECT pg_terminate_backend(max(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND state = 'idle'"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND pid <> ALL(%s)",
                [others],
            )
        every_worker_visits()
        open_backends = len(app_backends(admin) - set(others))
    finally:
        gc.enable()
        for worker in workers:
            worker.shutdown()
    admin.close()
    store.close()
    assert open_backends <= 3


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_kept_connection_is_pinged_first_with_pre_ping(app_settings, outage_postgres) -> None:
    settings = {
        **app_settings,
        "session.database_url": outage_postgres.url,
        "session.database_pool_pre_ping": "true",
    }
    testapp = webtest.TestApp(main({}, **settings))
    assert counter(testapp.get("/howdy")) == 1
    outage_postgres.stop("fast")
    outage_postgres.start()
    assert counter(testapp.get("/howdy")) == 2  # the lost connection found before use


def store_of(app_settings: dict) -> DatabaseStore:
    """A store as the app makes it from ``app_settings``, before its first use."""
    settings = session_settings(app_settings)
    return make_database_store(app_settings, {}, settings.timeout, settings.absolute_timeout)


def start_serving(app_settings: dict, directory: Path) -> tuple[subprocess.Popen, int]:
    """Start a waitress process of its own serving the app with ``app_settings``; it and
    its port (see wait_until_serving)."""
    port = free_port()
    lines = ["[app:main]", "use = egg:{{ cookiecutter.project_slug }}"]
    lines += [f"{name} = {value.replace('%', '%%')}" for name, value in app_settings.items()]
    lines += ["[server:main]", "use = egg:waitress#main", f"listen = 127.0.0.1:{port}"]
    ini = directory / f"process-{port}.ini"
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "pyramid.scripts.pserve", str(ini)]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL), port


def wait_until_serving(process: subprocess.Popen, port: int) -> None:
    """Wait until the process answers on ``port`` (it takes a second to import the app)."""
    deadline = time.monotonic() + 20
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the app did not start on port {port}")


def counter_page(port: int, cookie: str = "") -> tuple[int, str]:
    """GET /howdy from the process on ``port``: the count it shows and the session cookie."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/howdy", headers={"Cookie": f"session={cookie}"} if cookie else {})
    response = connection.getresponse()
    page = response.read().decode()
    connection.close()
    assert response.status == 200, page
    set_cookie = response.getheader("Set-Cookie") or f"session={cookie};"
    return int(COUNTER.search(page).group(1)), set_cookie.split(";")[0].removeprefix("session=")


def test_two_processes_on_one_database_share_one_counter(app_settings, tmp_path) -> None:
    """Two waitress processes, as two machines would run: one browser's requests land on
    either, four tabs at once, and no count is lost."""
    processes = [start_serving(app_settings, tmp_path) for _ in range(2)]  # both at once
    try:
        for process, port in processes:
            wait_until_serving(process, port)
        ports = [port for _, port in processes]
        count, cookie = counter_page(ports[0])
        assert (count, counter_page(ports[1], cookie)[0]) == (1, 2)
        tabs = [ports[0], ports[1]] * 2
        with ThreadPoolExecutor(max_workers=len(tabs)) as pool:
            list(pool.map(lambda port: [counter_page(port, cookie) for _ in range(25)], tabs))
        assert counter_page(ports[0], cookie)[0] == 2 + 4 * 25 + 1
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_frozen_postgresql_is_a_503_within_the_timeout(app_settings, outage_postgres) -> None:
    """The server's own timeouts cannot end a statement it never reads: the watchdog
    does, so a frozen server (or a network cut) holds no request, and no thread, longer."""
    settings = {
        **app_settings,
        "session.database_url": outage_postgres.url,
        "session.database_timeout": "0.4",
    }
    testapp = webtest.TestApp(main({}, **settings))
    testapp.get("/")
    with outage_postgres.frozen():
        started = time.monotonic()
        testapp.get("/howdy", status=503)
        waited = time.monotonic() - started
    assert 0.5 < waited < 1.5  # 1.5 times the timeout, give or take the watchdog's tick
    # The statement reached the server before it froze and may run once it resumes (a
    # timed-out request may have happened, as with any store); never twice.
    assert counter(testapp.get("/howdy")) in (2, 3)


def sockets_connected_to(port: int) -> int:
    """How many of this process's descriptors are sockets connected to ``port`` on this
    machine (Linux and macOS list a process's descriptors in /dev/fd)."""
    count = 0
    for name in os.listdir("/dev/fd"):
        try:
            descriptor = socket.socket(fileno=int(name))
        except OSError:  # not a socket, or closed meanwhile (the listing's own)
            continue
        try:
            count += descriptor.getpeername()[1:2] == (port,)
        except OSError:  # not connected
            pass
        finally:
            descriptor.detach()
    return count


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_attempt_that_timed_out_is_closed_at_once(
    app_settings, outage_postgres
) -> None:
    """A frozen server accepts connections and never answers: every request then makes an
    attempt that times out. Each is closed as it fails, not at a garbage collection that
    may come much later (psycopg's attempt is kept by its error's traceback, in reference
    cycles): a long outage would run the process out of descriptors, and the server, once
    it thaws, keeps a process for each attempt until its authentication timeout."""
    settings = {"session.database_url": outage_postgres.url, "session.database_timeout": "0.4"}
    store = store_of({**app_settings, **settings})
    first_visit(store, "frozen")
    store.close()  # no connection kept or pooled: every request connects
    port = store.engine.url.port
    gc.disable()
    try:
        with outage_postgres.frozen():
            with ThreadPoolExecutor(max_workers=3) as requests:
                outcomes = list(requests.map(lambda _: visit_outcome(store), range(3)))
            left_open = sockets_connected_to(port)
    finally:
        gc.enable()
    store.close()
    assert (outcomes, left_open) == (["unavailable"] * 3, 0)


def visit_outcome(store: DatabaseStore) -> str:
    """What a visit to the session "frozen" came to: counted, or the store unavailable."""
    try:
        count_visit(store, "frozen")
    except database_store.STORE_ERRORS:
        return "unavailable"
    return "counted"


def test_a_thread_waits_for_the_table_no_longer_than_the_timeout(
    app_settings, monkeypatch
) -> None:
    """While one thread makes the table on a slow database, the others give up after the
    timeout (a 503 each) instead of queueing behind it one after another."""

    def slow_create_table(connection: sqlalchemy.Connection) -> None:
        time.sleep(1)
        create_table(connection)

    monkeypatch.setattr(database_store, "create_table", slow_create_table)
    store = store_of({**app_settings, "session.database_timeout": "0.2"})
    first = threading.Thread(target=store.prepare)
    first.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(sqlalchemy.exc.TimeoutError, match="still making the sessions table"):
        store.load("anyone")
    assert time.monotonic() - started < 0.8  # the timeout, well before the table is made
    first.join()
    assert store.load("anyone") is None
    store.engine.dispose()


def test_counting_twice_in_a_new_visitors_request_counts_two(app_settings) -> None:
    def count_twice(request: Request) -> dict:
        increment_counter(request, "visits")
        return {"count": increment_counter(request, "visits")}

    browser = app_with_test_views(app_settings, twice=count_twice)
    assert browser.get(f"{TEST_VIEWS}/twice").json == {"count": 2}
    assert counter(browser.get("/")) == 3


def test_expired_sessions_are_cleared_in_batches(app_settings, stored, watch_statements) -> None:
    """Each batch is one short statement: a big table never outlasts the statement
    timeout, and other writers wait for one batch at most."""
    store = store_of(app_settings)
    store.clear_batch = 2
    for _ in range(5):
        first_visit(store)
    live = secrets.token_urlsafe(32)
    first_visit(store, live)
    for session_id in stored.ids():
        if session_id != live:
            stored.set(session_id, "expiry", 1)
    sent = watch_statements(store)
    assert store.clear_expired() == 5
    assert (stored.ids(), sent) == ([live], ["DELETE"] * 3)
    store.engine.dispose()


def test_an_error_is_logged_without_its_statement_or_detail(app_settings, stored) -> None:
    """PostgreSQL's DETAIL line quotes the key of a duplicate (a session id) and
    SQLAlchemy's message the statement: a log line gets the driver's first line only."""
    store = store_of(app_settings)
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    first_visit(store, first)
    first_visit(store, second)
    with pytest.raises(sqlalchemy.exc.IntegrityError) as duplicate:
        store.move(first, second)
    reason = error_reason(duplicate.value)
    assert "UNIQUE" in reason.upper()
    assert (second in reason, "\n" in reason, "UPDATE" in reason) == (False, False, False)
    assert second in str(duplicate.value) or "DETAIL" not in str(duplicate.value)
    store.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_read_only_database_is_a_503_and_the_app_still_starts(app_settings) -> None:
    """A hot standby that a failover left the app pointing at refuses every write."""
    database = app_settings["session.database_url"].rsplit("/", 1)[1]
    testapp = webtest.TestApp(main({}, **app_settings))
    testapp.get("/")
    with psycopg.connect(
        admin_url(app_settings["session.database_url"]), autocommit=True
    ) as admin:
        admin.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        try:
            app_store(testapp).engine.dispose()  # new connections, as after a failover
            testapp.get("/howdy", status=503)
            webtest.TestApp(main({}, **app_settings)).get("/", status=503)
        finally:
            admin.execute(f"ALTER DATABASE {database} RESET default_transaction_read_only")
    app_store(testapp).engine.dispose()
    assert counter(testapp.get("/howdy")) == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_role_that_may_not_create_tables_runs_the_app(app_settings, stored) -> None:
    """Once the table exists, the app needs only SELECT, INSERT, UPDATE and DELETE on it."""
    url = app_settings["session.database_url"]
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS sessions_app")
        admin.execute("CREATE ROLE sessions_app LOGIN")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {sessions.name} TO sessions_app")
    try:
        limited = {
            **app_settings,
            "session.database_url": url.replace("postgres@", "sessions_app@"),
        }
        browser = webtest.TestApp(main({}, **limited))
        assert [counter(browser.get("/")) for _ in range(2)] == [1, 2]
        app_store(browser).engine.dispose()
    finally:
        with psycopg.connect(libpq_url(url), autocommit=True) as admin:
            admin.execute(f"REVOKE ALL ON {sessions.name} FROM sessions_app")
            admin.execute("DROP ROLE sessions_app")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_urls_own_options_are_kept_beside_the_timeouts(app_settings, stored) -> None:
    url = app_settings["session.database_url"] + "?options=-c%20application_name%3Dsessions"
    store = store_of(
        {**app_settings, "session.database_url": url, "session.database_timeout": "0.3"}
    )
    with store.engine.connect() as connection:
        shown = [connection.exec_driver_sql(f"SHOW {name}").scalar() for name in SHOWN_SETTINGS]
    assert shown == ["sessions", "300ms", "300ms"]
    store.engine.dispose()


SHOWN_SETTINGS = ["application_name", "statement_timeout", "lock_timeout"]


def test_a_cut_that_fails_is_logged_and_never_raises(caplog) -> None:
    """The watchdog's thread must outlive a connection it cannot cut (already closed, no
    socket, no descriptor left): a failure is a log line, the others still get cut."""
    read, write = os.pipe()
    unconnected = socket.socket()
    try:
        with caplog.at_level(logging.WARNING):
            shut_down_socket(read)  # not a socket
            shut_down_socket(unconnected.fileno())  # nothing to shut down
        assert caplog.text.count("statement watchdog could not cut a connection") == 2
        assert unconnected.fileno() >= 0  # cutting never closes psycopg's descriptor
    finally:
        os.close(read)
        os.close(write)
        unconnected.close()


def watched_statement(fileno: int) -> Any:
    """A stand-in for a psycopg cursor whose connection's socket is ``fileno``."""
    connection = SimpleNamespace(closed=False, pgconn=SimpleNamespace(socket=fileno))
    return SimpleNamespace(connection=connection)


def test_a_start_interrupted_midway_leaves_no_clock_running(monkeypatch) -> None:
    """An interruption (a gevent Timeout, a signal's exception) while the watchdog starts
    its thread must not leave a clock that outlives the statement."""
    watchdog = StatementWatchdog(1)

    def interrupted(_thread: threading.Thread) -> None:
        raise GreenletTimeout

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(GreenletTimeout):
        watchdog.start(watched_statement(-1))
    assert watchdog.running == {}
    monkeypatch.undo()
    statement = watched_statement(-1)
    watchdog.start(statement)  # the thread is started at the next statement
    watchdog.stop(statement)
    assert watchdog.thread is not None and watchdog.thread.is_alive()


def test_the_watch_goes_on_after_an_error_it_did_not_expect(monkeypatch, caplog) -> None:
    """The watchdog's thread is started once, and no statement asks whether it still
    runs: an error it did not expect is logged, and the next tick comes all the same."""
    watchdog = StatementWatchdog(0.2)  # a tick every 0.05 s
    ticks = []

    def tick(now: float) -> None:
        ticks.append(now)
        if len(ticks) == 1:
            raise RuntimeError("a bug")

    monkeypatch.setattr(watchdog, "shut_down_overdue", tick)
    statement = watched_statement(-1)
    with caplog.at_level(logging.ERROR):
        watchdog.start(statement)
        watchdog.stop(statement)
        deadline = time.monotonic() + 10
        while len(ticks) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(ticks) >= 2
    assert "statement watchdog: unexpected error; it goes on watching" in caplog.text


def test_the_watchdog_never_cuts_a_socket_its_connection_gave_up(monkeypatch) -> None:
    """A clock left running by an interruption names a descriptor number: once its
    connection closed, that number may be another connection's socket (a red-team's: a
    fresh connection cut after the old deadline)."""
    watchdog = StatementWatchdog(1)
    monkeypatch.setattr(watchdog, "watch", lambda: None)  # the test ticks it itself
    here, there = socket.socketpair()
    statement = watched_statement(here.fileno())
    watchdog.start(statement)
    statement.connection.closed = True  # its connection closed, the number reused
    watchdog.shut_down_overdue(time.monotonic() + 60)
    here.sendall(b"x")
    assert there.recv(1) == b"x"  # not shut down
    lost = watched_statement(here.fileno())
    watchdog.start(lost)
    lost.connection.pgconn = LostConnection()
    watchdog.shut_down_overdue(time.monotonic() + 60)
    here.sendall(b"y")
    assert there.recv(1) == b"y"
    here.close()
    there.close()


class LostConnection:
    """A psycopg pgconn whose connection is lost: it has no socket to tell."""

    @property
    def socket(self) -> int:
        raise psycopg.OperationalError("the connection is lost")


def test_fork_handlers_run_for_live_objects_only(app_settings) -> None:
    """What a forked process runs for the store (the fork test's child cannot report
    its coverage): live objects start afresh; collected ones are left alone."""

    class Owner:
        def method(self) -> None:
            raise AssertionError("called after its object was collected")

    owner = Owner()
    method, engine = weakref.WeakMethod(owner.method), weakref.ref(owner)
    del owner
    call_if_alive(method)
    dispose_in_child(engine)
    store = store_of(app_settings)
    first_visit(store, "before")
    dispose_in_child(weakref.ref(store.engine))  # a new pool: the old one's connections
    assert store.engine.pool.checkedin() == 0  # stay open for the parent
    watchdog = StatementWatchdog(1)
    watchdog.running[1] = (0.0, None, -1)
    call_if_alive(weakref.WeakMethod(watchdog.start_afresh))
    assert (watchdog.running, watchdog.thread) == ({}, None)
    assert first_visit(store, "after") == 1
    kept = store.connections.local.kept.connection  # the forked child finds its thread's,
    store.connections.start_afresh()  # and nothing kept idle (its fork handler)
    assert first_visit(store, "in the child") == 1
    assert kept.is_valid  # left alone: the parent's
    parents = store.engine.raw_connection()
    own = store.engine.dialect.do_close.__self__
    own.opened_in[id(parents.dbapi_connection)] = -1  # as a forked child finds it
    store.engine.dialect.do_close(parents.dbapi_connection)
    assert parents.cursor().execute("SELECT 1").fetchall() == [(1,)]  # still open
    parents.close()
    store.engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_child_notes_at_the_fork_whether_the_file_was_open(app_settings, tmp_path) -> None:
    """What the child of test_a_process_forked_while_the_file_is_in_use_refuses_it
    runs, in this process (a forked child cannot report its coverage): it notes the files
    of the descriptors it has, not what an engine noted (a thread may be opening or
    closing a connection while the fork happens, and another engine may have the file
    open), and each new connection is checked against them."""
    store = store_of(app_settings)
    store.close()  # nothing of the file open (the table was made at start-up)
    elsewhere = sqlite3.connect(tmp_path / "elsewhere.sqlite")
    try:
        note_inherited_files()  # forked now, with another file open
        assert first_visit(store, "forked") == 1
        store.close()
        opening = sqlite3.connect(app_settings["session.database_url"].removeprefix("sqlite:///"))
        note_inherited_files()  # forked now, with a descriptor of the file open
        opening.close()
        with pytest.raises(sqlalchemy.exc.OperationalError, match="forked while its parent"):
            count_visit(store, "forked")
    finally:
        INHERITED_FILES.clear()
        elsewhere.close()
    assert count_visit(store, "forked") == 2
    store.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_forked_worker_has_its_own_connections_and_watchdog(
    app_settings, outage_postgres
) -> None:
    """gunicorn --preload forks workers after the app pooled a connection and started its
    watchdog: each worker talks over sockets of its own, and its statements are watched."""
    settings = {"session.database_url": outage_postgres.url, "session.database_timeout": "0.4"}
    store = store_of({**app_settings, **settings})
    first_visit(store, "forked")  # a pooled connection, and the watchdog's thread
    with store.engine.connect() as connection:
        parent_backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: report its backend, then load while the server is frozen
        status = 1
        try:
            with store.engine.connect() as connection:
                backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            os.write(from_child, str(backend).encode())
            os.read(to_child, 1)
            try:
                store.load("forked")
            except database_store.STORE_ERRORS:
                status = 0
        finally:
            os._exit(status)
    child_backend = int(os.read(to_parent, 32))
    with outage_postgres.frozen():
        os.write(from_parent, b"go")
        deadline, exited = time.monotonic() + 3, 0
        while not exited and time.monotonic() < deadline:
            exited, status = os.waitpid(child, os.WNOHANG)
            time.sleep(0.05)
        if not exited:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    for descriptor in (to_parent, from_child, to_child, from_parent):
        os.close(descriptor)
    store.engine.dispose()
    assert child_backend != parent_backend
    assert (exited, os.waitstatus_to_exitcode(status) if exited else None) == (child, 0)


def renewed_meanwhile(url: str, session_id: str, timeout: int) -> psycopg.Connection:
    """Another request's renewal of the session by ``timeout`` seconds, its transaction
    still open (the row locked): it commits while a DELETE that found the row dead waits
    for the lock."""
    renewal = psycopg.connect(libpq_url(url))
    renew = "UPDATE {} SET expiry = floor(extract(epoch from now()))::bigint + %s WHERE id = %s"
    renewal.execute(renew.format(sessions.name), [timeout, session_id])
    return renewal


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("deleting", ["clear_expired", "load"])
def test_a_session_renewed_while_a_delete_waits_is_kept(app_settings, stored, deleting) -> None:
    store = store_of(app_settings)
    first_visit(store, "renewed")
    stored.expire("renewed")
    url, timeout = app_settings["session.database_url"], session_settings(app_settings).timeout
    renewal = renewed_meanwhile(url, "renewed", timeout)
    arguments = [] if deleting == "clear_expired" else ["renewed"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(getattr(store, deleting), *arguments)
        time.sleep(0.3)  # the DELETE waits for the renewal's row lock
        renewal.commit()
        waiting.result(timeout=5)
    renewal.close()
    assert stored.ids() == ["renewed"]
    store.engine.dispose()


# An SQLite file deleted or replaced under the running app (issue: the running processes
# kept the old file open and served its sessions; processes started afterwards made a new
# one, so that one browser's requests met either).


def sqlite_file(app_settings: dict) -> Path:
    """The SQLite file the settings name."""
    return Path(app_settings["session.database_url"].removeprefix("sqlite:///"))


def pool_several_connections(testapp: webtest.TestApp, count: int = 4) -> None:
    """Let the app's pool hold ``count`` connections, as after concurrent requests: each
    must follow the file, not only the one the next request takes."""
    engine = app_store(testapp).engine
    held = [engine.connect() for _ in range(count)]
    for connection in held:
        connection.close()


def delete_sqlite_files(path: Path) -> None:
    """``rm sessions.sqlite sessions.sqlite-wal sessions.sqlite-shm``."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)


def move_sqlite_files_away(path: Path) -> None:
    """``mv`` the file and its WAL files to another directory (an archive, say)."""
    archive = path.parent / "archive"
    archive.mkdir()
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            name.rename(archive / name.name)


FILE_REMOVALS = {"deleted": delete_sqlite_files, "moved-away": move_sqlite_files_away}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("remove", FILE_REMOVALS.values(), ids=FILE_REMOVALS)
def test_removing_the_sqlite_file_ends_every_session_in_every_process(
    app_settings, remove
) -> None:
    running = webtest.TestApp(main({}, **app_settings))  # a process that has the file open
    assert [counter(running.get("/")) for _ in range(2)] == [1, 2]
    pool_several_connections(running)
    remove(sqlite_file(app_settings))
    # Every connection of the running process now uses a new, empty file: the old session
    # is gone, and the new one counts on whichever connection serves it.
    assert [counter(running.get("/")) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    started_later = webtest.TestApp(main({}, **app_settings))  # a worker restarted
    started_later.set_cookie("session", session_cookie(running))
    assert counter(started_later.get("/")) == 7  # the same file, the same session
    assert counter(running.get("/")) == 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_deleting_the_file_but_not_its_wal_files_is_a_503_that_says_so(
    app_settings, caplog
) -> None:
    """A new file beside the old one's -shm would be unreadable while any process still
    has the old one open: the store refuses to make it, and says what to delete."""
    running = webtest.TestApp(main({}, **app_settings))
    assert [counter(running.get("/")) for _ in range(2)] == [1, 2]
    path = sqlite_file(app_settings)
    path.unlink()
    with caplog.at_level(logging.ERROR):
        running.get("/", status=503)
    assert f"{path} is gone but {path}-wal and {path}-shm are not" in caplog.text
    delete_sqlite_files(path)
    assert [counter(running.get("/")) for _ in range(2)] == [1, 2]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_restore_through_sqlite_reaches_every_process_at_once(app_settings, tmp_path) -> None:
    """The supported way to put a copy back while the app runs (``sqlite3 sessions.sqlite
    ".restore copy.sqlite"``): SQLite's backup API writes through its locks."""
    running = webtest.TestApp(main({}, **app_settings))
    assert [counter(running.get("/")) for _ in range(2)] == [1, 2]
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(sqlite_file(app_settings)) as live, sqlite3.connect(copy) as backup:
        live.backup(backup)
    assert [counter(running.get("/")) for _ in range(2)] == [3, 4]
    with sqlite3.connect(copy) as backup, sqlite3.connect(sqlite_file(app_settings)) as live:
        backup.backup(live)
    assert counter(running.get("/")) == 3


# Concurrent requests during an outage: each waits once, never for another thread's
# attempt and then its own (issue: with four tabs on a frozen PostgreSQL, 4 s instead of
# the promised 3 s; on a locked SQLite file, twice the timeout).


def timed_counter_pages(app: Any, cookie: str, tabs: int, pages: int) -> list[tuple[int, float]]:
    """``tabs`` threads each load ``pages`` counter pages with ``cookie``, at once: the
    status and seconds of each. The error page is rendered once before: Chameleon's first
    compilation of a template, in several threads at once, can fail (a 500 seen once)."""
    webtest.TestApp(app).get("/no-such-page", status=404)
    barrier = threading.Barrier(tabs)

    def tab(_: int) -> list[tuple[int, float]]:
        browser = webtest.TestApp(app)
        browser.set_cookie("session", cookie)
        barrier.wait()
        timings = []
        for _ in range(pages):
            started = time.monotonic()
            status = browser.get("/howdy", status="*").status_int
            timings.append((status, time.monotonic() - started))
        return timings

    with ThreadPoolExecutor(max_workers=tabs) as pool:
        return [timing for timings in pool.map(tab, range(tabs)) for timing in timings]


# The watchdog looks at the clocks every 0.1 s; a busy test machine adds a little.
WATCHDOG_TICK, SCHEDULING = 0.1, 0.3


def outage_bound(timeout: float) -> float:
    """The longest a request waits on a PostgreSQL server that stopped answering: 1.5
    times the timeout for a statement (the watchdog), or a new connection's connect
    timeout (libpq's shortest is 2 s), whichever is longer."""
    return max(WATCHDOG_FACTOR * timeout, 2.0) + WATCHDOG_TICK


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_frozen_postgresql_answers_every_concurrent_request_within_the_bound(
    app_settings, outage_postgres
) -> None:
    settings = {**app_settings, "session.database_url": outage_postgres.url}
    testapp = webtest.TestApp(main({}, **settings))  # the default timeout: 2 s
    testapp.get("/")
    with outage_postgres.frozen():
        timings = timed_counter_pages(testapp.app, session_cookie(testapp), tabs=6, pages=2)
    timeout = float(settings["session.database_timeout"])
    assert {status for status, _ in timings} == {503}
    assert max(seconds for _, seconds in timings) < outage_bound(timeout) + SCHEDULING


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_sqlite_answers_every_concurrent_request_within_the_timeout(
    app_settings, stored
) -> None:
    """Another program holds an exclusive lock (no reader gets in) from before the app
    starts: each request gives up after the busy timeout, once."""
    settings = {**app_settings, "session.database_timeout": "1"}
    first = webtest.TestApp(main({}, **settings))
    first.get("/")
    app_store(first).close()  # no connection left open: the lock is the other program's
    stored.engine.dispose()
    holder = sqlite3.connect(sqlite_file(settings), isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        app = main({}, **settings)  # its table check fails, the first requests try again
        timings = timed_counter_pages(app, session_cookie(first), tabs=6, pages=2)
    finally:
        holder.close()
    assert {status for status, _ in timings} == {503}
    assert max(seconds for _, seconds in timings) < 1 + SCHEDULING


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_connection_that_finds_the_file_locked_closes_it_at_once(app_settings, tmp_path) -> None:
    """Its set-up (WAL, the table) fails: the connection is closed then, not left open
    until a garbage collection (SQLAlchemy before 2.0.53 leaves it), which a retrying
    app would meet as one open file more per attempt."""
    path = tmp_path / "locked.sqlite"
    locked = {"session.database_url": f"sqlite:///{path}", "session.database_timeout": "0.1"}
    store = store_of({**app_settings, **locked})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    gc.disable()
    try:
        for _ in range(3):
            with pytest.raises(OperationalError, match="locked"):
                store.load("anyone")
        holder.close()  # SQLite closes the files it kept open for the holder's lock
        left_open = descriptors_of(path)
    finally:
        gc.enable()
        holder.close()
    assert left_open == 0
    store.close()


def test_a_connection_whose_set_up_fails_is_closed_whatever_sqlalchemy_does(tmp_path) -> None:
    """The same, whichever SQLAlchemy is installed (2.0.53 and later close it too)."""
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_tuner(0.05)(connection, None)
    holder.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")


def descriptors_of(path: Path) -> int:
    """How many of this process's descriptors have the file at ``path`` open (Linux and
    macOS list a process's descriptors in /dev/fd)."""
    file = path.stat()
    count = 0
    for name in os.listdir("/dev/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own)
            opened = os.fstat(int(name))
            count += (opened.st_dev, opened.st_ino) == (file.st_dev, file.st_ino)
    return count


def test_a_session_past_its_idle_expiry_starts_afresh(app, stored) -> None:
    cookie = valid_cookie(app)
    [session_id] = stored.ids()
    stored.set(session_id, "expiry", int(time.time()) - 1)
    assert counter(visit_with(app, cookie)) == 1
    assert session_id not in stored.ids()


def test_a_visit_renews_the_expiry_once_a_tenth_of_the_timeout_went_by(
    app, app_settings, stored
) -> None:
    """As the cookie stores sign their cookie again: until then the indexed expiry is
    left alone (no index write in SQLite, an update in place in PostgreSQL)."""
    cookie = valid_cookie(app)
    [session_id] = stored.ids()
    timeout = int(app_settings["session.timeout"])
    not_due = int(time.time()) + timeout - timeout // 10 + 5
    stored.set(session_id, "expiry", not_due)
    assert counter(visit_with(app, cookie)) == 3
    assert stored.row(session_id).expiry == not_due
    stored.set(session_id, "expiry", int(time.time()) + timeout - timeout // 10 - 5)
    assert counter(visit_with(app, cookie)) == 4
    assert stored.row(session_id).expiry >= int(time.time()) + timeout - 5


def test_a_lowered_timeout_ends_a_session_that_long_after_its_last_request(
    app_settings, stored
) -> None:
    """An operator shortens session.timeout (after an incident, say): a session stored
    under the longer one must not live on until its old expiry."""
    old_app = main({}, **{**app_settings, "session.timeout": "7200"})
    cookie = valid_cookie(old_app)
    new_app = main({}, **{**app_settings, "session.timeout": "600"})
    assert counter(visit_with(new_app, cookie)) == 3  # the last request, under 600 s
    stored.age(601)
    assert counter(visit_with(new_app, cookie)) == 1


@pytest.mark.parametrize(
    ("absolute_timeout", "statements"),
    [(604800, [2, 1, 1]), (1200, [1, 1, 1])],
    ids=["due-once", "capped-from-the-start"],
)
def test_a_session_near_its_absolute_end_costs_one_statement_a_page(
    app_settings, stored, watch_statements, absolute_timeout: int, statements: list[int]
) -> None:
    """Its expiry, capped at the absolute end, cannot move ahead: renewing it on every
    page would cost a statement and a write each (absolute = idle timeout is allowed)."""
    store = make_database_store(app_settings, {}, 1200, absolute_timeout)
    session_id = secrets.token_urlsafe(32)
    first_visit(store, session_id)
    stored.age(200)  # a renewal due after 120 s, if the absolute end allows one
    sent, per_page = watch_statements(store), []
    for _ in statements:
        before = len(sent)
        store.increment(session_id, "visits", 1, new=False)
        per_page.append(len(sent) - before)
    assert per_page == statements
    store.close()


def test_the_expiry_never_passes_the_absolute_end(app, app_settings, stored) -> None:
    cookie = valid_cookie(app)
    [session_id] = stored.ids()
    settings = session_settings(app_settings)
    left = settings.timeout // 2  # sooner than the idle timeout: the absolute end decides
    stored.set(session_id, "created", int(time.time()) - settings.absolute_timeout + left)
    stored.set(session_id, "expiry", int(time.time()) + 5)  # its renewal due
    assert counter(visit_with(app, cookie)) == 3
    assert stored.row(session_id).expiry <= int(time.time()) + left


@pytest.mark.parametrize("page", STORE_FAILURE_PAGES.values(), ids=STORE_FAILURE_PAGES)
def test_503_pages_carry_the_security_headers(testapp, monkeypatch, page) -> None:
    def fail(name: str) -> None:
        fail_statement(monkeypatch, app_store(testapp), name)

    assert_security_headers(page(testapp, fail))

{%- set database = cookiecutter.session_factory == "database" -%}
"""The clear-sessions command: {% if database %}expired rows go, live sessions stay, every
batch reads an index; {% endif %}--all ends every session, even while visitors keep coming;
errors are one line."""

from __future__ import annotations

{% if database -%}
import contextlib
import re
{% endif -%}
import subprocess
import sys
import threading
import time
from collections.abc import Callable{% if database %}, Iterator{% endif %}
{%- if not database %}
from concurrent.futures import ThreadPoolExecutor
{%- endif %}
from importlib.metadata import entry_points
from pathlib import Path
{%- if database %}
from typing import Any
{%- endif %}

import pytest
{%- if database %}
import sqlalchemy
{%- else %}
import redis
{%- endif %}
import webtest
{%- if database %}
from database_servers import StoredSessions
{%- endif %}
from helpers import (
    TEST_VIEWS,
    app_with_test_views,
    counter,
    csrf_token,
{%- if database %}
    development_settings,
{%- endif %}
    development_timeouts,
    login_view,
    session_cookie,
)

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.clear_sessions import main as clear_sessions
{%- if database %}
from {{ cookiecutter.project_slug }}.sessions.database import (
    DatabaseStore,
    make_database_store,
)
from {{ cookiecutter.project_slug }}.sessions.database.connections import Connections
from {{ cookiecutter.project_slug }}.sessions.database.schema import TABLE_NAME
from {{ cookiecutter.project_slug }}.sessions.database.settings import URL_ENV
from {{ cookiecutter.project_slug }}.sessions.database.statements import compiled_for

STORE_URL = "session.database_url"
{%- else %}
from {{ cookiecutter.project_slug }}.sessions.redis import store as redis_store
from {{ cookiecutter.project_slug }}.sessions.redis.settings import URL_ENV
from {{ cookiecutter.project_slug }}.sessions.redis.store import RedisStore, session_key

STORE_URL = "session.redis_url"
{%- endif %}


def installed_command() -> str:
    """The command's name as pip installed it (pyproject.toml's [project.scripts]): what
    a cron line types, and what the command's messages must call it."""
    target = f"{clear_sessions.__module__}:{clear_sessions.__name__}"
    scripts = entry_points(group="console_scripts")
    [name] = [script.name for script in scripts if script.value == target]
    return name


# Every message starts with it, exactly as typed: lowercase, never capitalised.
COMMAND = installed_command()


def write_ini(directory: Path, store_settings: dict[str, str] | str, **settings: str) -> Path:
    """An ini file as a deployment has, on the store ``store_settings`` names (its URL, or
    its settings), with the project's timeouts; no session secret in it."""
    if isinstance(store_settings, str):
        store_settings = {STORE_URL: store_settings}
    timeout, absolute_timeout = development_timeouts()
    settings = {
        **store_settings,
        "session.timeout": str(timeout),
        "session.absolute_timeout": str(absolute_timeout),
        **settings,
    }
    lines = [
        "[app:main]",
        "use = egg:{{ cookiecutter.project_slug }}",
        *(f"{name} = {value.replace('%', '%%')}" for name, value in settings.items()),
    ]
    path = directory / "deployment.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ended_every_session(count: int) -> str:
    """What ``--all`` prints after deleting ``count`` sessions."""
    return f"{COMMAND}: ended every session ({count} session{'' if count == 1 else 's'} deleted)\n"


def test_all_ends_every_session_and_every_visitor_starts_afresh(
    app_settings, stored, tmp_path, capsys
) -> None:
    app = main({}, **app_settings)
    browsers = [webtest.TestApp(app) for _ in range(3)]
    assert [counter(browser.get("/")) for browser in browsers] == [1, 1, 1]
    assert [counter(browser.get("/")) for browser in browsers] == [2, 2, 2]
    assert clear_sessions(["--all", str(write_ini(tmp_path, app_settings[STORE_URL]))]) == 0
    assert capsys.readouterr().out == ended_every_session(3)
    assert stored.ids() == []
    assert [counter(browser.get("/")) for browser in browsers] == [1, 1, 1]


def test_all_on_no_session_says_so(app_settings, stored, tmp_path, capsys) -> None:
    assert clear_sessions([str(write_ini(tmp_path, app_settings[STORE_URL])), "--all"]) == 0
    assert capsys.readouterr().out == ended_every_session(0)


{%- if database %}


QUICK: dict[str, str] = {}
{%- else %}


# A login's second step arrives within the socket timeout: how long --all waits for it.
QUICK = {"session.redis_socket_timeout": "0.3"}
{%- endif %}


# What the visitors do while every session is ended: each keeps its own cookie jar.
def count_visit(browser: webtest.TestApp) -> int:
    return browser.get("/howdy").status_int


def post_a_message(browser: webtest.TestApp) -> int:
    """A form post; a 400 when its session (and CSRF token) ended under it."""
    token = csrf_token(browser.get("/"))
    form = {"csrf_token": token, "category": "info", "message": "still here?"}
    return browser.post("/flash", form, status="*").status_int


def log_in(browser: webtest.TestApp) -> int:
    """regenerate_session(): the session moves to a new id."""
    return browser.get(f"{TEST_VIEWS}/login").status_int


VISITS: list[Callable[[webtest.TestApp], int]] = [count_visit, post_a_message, log_in]


class Visitors(threading.Thread):
    """Browsers that keep counting, posting and logging in until told to stop."""

    def __init__(self, browsers: list[webtest.TestApp]) -> None:
        super().__init__()
        self.browsers = browsers
        self.stopping = threading.Event()
        self.statuses: set[int] = set()
        self.requests = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            for index, browser in enumerate(self.browsers):
                self.statuses.add(VISITS[index % len(VISITS)](browser))
                self.requests += 1
            self.stopping.wait(0.02)  # traffic between the command's steps, not a busy loop


def test_no_request_brings_back_a_session_ended_during_traffic(
    app_settings, stored, tmp_path{% if not database %}, monkeypatch{% endif %}
) -> None:
    """Three threads of visitors count, post forms and log in (which moves a session to
    a new id) while ``--all`` runs: no session that existed when it started is left when
    it returns, under its old id or a new one, and every old cookie starts afresh."""
{%- if not database %}
    monkeypatch.setattr(redis_store, "SCAN_BATCH", 2)  # many SCAN calls, traffic between
{%- endif %}
    browser = app_with_test_views(app_settings, login=login_view)
    browsers = [webtest.TestApp(browser.app) for _ in range(9)]
    for each in browsers:
        post_a_message(each)
    old_cookies = [session_cookie(each) for each in browsers]
    time.sleep(1.1)  # the sessions are from an earlier second than the command's start
    visitors = [Visitors(browsers[index::3]) for index in range(3)]
    for thread in visitors:
        thread.start()
    try:
        time.sleep(0.2)
        started = int(time.time())
        ini = write_ini(tmp_path, app_settings[STORE_URL], **QUICK)
        assert clear_sessions(["--all", str(ini)]) == 0
    finally:
        for thread in visitors:
            thread.stopping.set()
            thread.join()
    assert set().union(*(thread.statuses for thread in visitors)) <= {200, 303, 400}
    assert sum(thread.requests for thread in visitors) > 9
    made_before = [session for session in stored.ids() if stored.created(session) < started]
    assert made_before == []
    for cookie in old_cookies:
        thief = webtest.TestApp(browser.app)
        thief.set_cookie("session", cookie)
        assert counter(thief.get("/")) == 1
{%- if database %}


def three_sessions(app_settings: dict, stored: StoredSessions) -> dict[str, str]:
    """A live session, one idle too long and one past its absolute timeout, by id."""
    app = main({}, **app_settings)
    for _ in range(3):
        assert counter(webtest.TestApp(app).get("/")) == 1
    live, idle, old = stored.ids()
    now = int(time.time())
    _, absolute_timeout = development_timeouts()
    stored.set(idle, "expiry", now - 1)
    # Past its absolute end, and so its expiry too: no statement sets an expiry later
    # than a session's end.
    stored.set(old, "created", now - absolute_timeout - 1)
    stored.set(old, "expiry", now - 1)
    return {"live": live, "idle": idle, "old": old}


def test_expired_sessions_are_deleted_and_live_ones_kept(
    app_settings, stored, tmp_path, capsys
) -> None:
    sessions = three_sessions(app_settings, stored)
    ini = write_ini(tmp_path, app_settings["session.database_url"])
    assert clear_sessions([str(ini)]) == 0
    assert stored.ids() == [sessions["live"]]
    assert capsys.readouterr().out == f"{COMMAND}: deleted 2 expired sessions\n"
    assert clear_sessions([str(ini)]) == 0
    assert capsys.readouterr().out == f"{COMMAND}: deleted 0 expired sessions\n"


def test_one_expired_session_is_one(app_settings, stored, tmp_path, capsys) -> None:
    sessions = three_sessions(app_settings, stored)
    stored.set(sessions["old"], "expiry", int(time.time()) + 60)
    stored.set(sessions["old"], "created", int(time.time()))
    assert clear_sessions([str(write_ini(tmp_path, app_settings["session.database_url"]))]) == 0
    assert capsys.readouterr().out == f"{COMMAND}: deleted 1 expired session\n"


def test_a_session_past_a_shortened_absolute_timeout_goes_at_its_expiry(
    app_settings, stored, tmp_path
) -> None:
    """Its expiry was set under the longer timeout: no request can use it any more, and
    clear-sessions deletes it once that expiry passes (one idle timeout at most)."""
    testapp = webtest.TestApp(main({}, **app_settings))
    testapp.get("/")
    [session_id] = stored.ids()
    _, absolute_timeout = development_timeouts()
    stored.set(session_id, "created", int(time.time()) - absolute_timeout - 1)
    ini = write_ini(tmp_path, app_settings["session.database_url"])
    assert clear_sessions([str(ini)]) == 0
    assert stored.ids() == [session_id]  # dead to every request, its row not yet cleared
    assert store_of(app_settings).load(session_id) is None  # and a request deletes it
    assert stored.ids() == []


def test_all_is_one_statement_that_waits_longer_than_a_request(
    app_settings, stored, tmp_path, capsys
) -> None:
    """Every session ends at the same instant: one DELETE, which may take longer than a
    request may wait (a second per three million rows), so it waits longer too."""
    app = main({}, **app_settings)
    for _ in range(3):
        webtest.TestApp(app).get("/")
    ini = write_ini(tmp_path, app_settings[STORE_URL], **{"session.database_timeout": "0.1"})
    holder = sqlalchemy.create_engine(app_settings[STORE_URL], poolclass=sqlalchemy.NullPool)
    with holder.connect() as connection:  # another writer, for longer than 0.1 s
        connection.execute(stored.table.update().values(counters=stored.table.c.counters))
        done = threading.Timer(0.5, connection.commit)
        done.start()
        with sent_statements() as sent:
            assert clear_sessions(["--all", str(ini)]) == 0
        done.join()
    holder.dispose()
    assert capsys.readouterr().out == ended_every_session(3)
    deletes = [statement.split() for statement in sent if statement.startswith("DELETE")]
    assert deletes == [["DELETE", "FROM", TABLE_NAME]]


@contextlib.contextmanager
def sent_statements() -> Iterator[list[str]]:
    """The statements any store sends inside the block (the command makes its own)."""
    sent: list[str] = []
    run = Connections.run

    def run_and_record(connections: Connections, name: str, values: dict) -> Any:
        sent.append(compiled_for(connections.engine.dialect)[name].sql)
        return run(connections, name, values)

    Connections.run = run_and_record
    try:
        yield sent
    finally:
        Connections.run = run


def store_of(app_settings: dict) -> DatabaseStore:
    """A store on the test database, as the command makes it."""
    timeout, absolute_timeout = development_timeouts()
    return make_database_store(app_settings, {}, timeout, absolute_timeout)


def query_plan(store: DatabaseStore, name: str) -> list[str]:
    """The database's plan for the store's statement ``name``, one line per step.
    PostgreSQL's planner is told to avoid a sequential scan where it can, as it does for
    a big table (a test table is too small for an index to pay)."""
    timeout, lifetime = development_timeouts()
    values = {"session_id": "", "idle": timeout, "lifetime": lifetime, "owner": "editor"}
    statement = compiled_for(store.engine.dialect)[name]
    sql, parameters = statement.sql, statement.values({**values, "batch": store.clear_batch})
    with store.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            explained = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
            return [row[-1] for row in explained]
        connection.exec_driver_sql("SET enable_seqscan = off")
        try:
            explained = connection.exec_driver_sql(f"EXPLAIN {sql}", parameters)
            return [row[0] for row in explained]
        finally:
            connection.exec_driver_sql("RESET enable_seqscan")


def reads_whole_table(plan: list[str], table: str) -> list[str]:
    """The steps of ``plan`` that read every row of ``table`` rather than an index."""
    whole = re.compile(rf"Seq Scan on {table}\b|\bSCAN {table}\b(?! USING (COVERING )?INDEX)")
    return [step for step in plan if whole.search(step)]


def uses_index(plan: list[str], index: str) -> bool:
    """Whether ``plan`` reads ``index``: SQLite's USING INDEX, PostgreSQL's index scans."""
    used = re.compile(
        rf"USING (COVERING )?INDEX {index}\b|Index (Only )?Scan (using|on) {index}\b"
    )
    return any(used.search(step) for step in plan)


def test_every_batch_reads_a_range_of_the_expiry_index(app_settings, stored) -> None:
    """With three million rows, a batch that read the whole table took most of the
    statement timeout (and held SQLite's write lock as long): each reads an index."""
    store = store_of(app_settings)
    plan = query_plan(store, "clear_expired")
    store.engine.dispose()
    table = stored.table.name
    assert reads_whole_table(plan, table) == []
    assert uses_index(plan, f"{table}_expiry"), plan


# The table as releases before the counters column made it: a deployed project's.
EARLIER_TABLE = [
    "CREATE TABLE {table} (id VARCHAR(64) NOT NULL, data TEXT NOT NULL, counter BIGINT "
    "NOT NULL, created BIGINT NOT NULL, expiry BIGINT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX {table}_expiry ON {table} (expiry)",
]


def test_a_table_an_earlier_release_made_is_brought_up_to_date(database_url, tmp_path) -> None:
    """At start-up, the deployed table's visit counter column becomes the counters
    object, and the user_id column and its index are added (once: a second start finds
    nothing to do); the store finds every dead row through the index it always had, for
    the app and for clear-sessions, and a user's sessions through the new one."""
    engine = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.NullPool)
    with engine.begin() as connection:
        for statement in EARLIER_TABLE:
            connection.exec_driver_sql(statement.format(table=TABLE_NAME))
    settings = {**development_settings(), STORE_URL: database_url}
    testapp = webtest.TestApp(main({}, **settings))
    main({}, **settings)  # a second start: already up to date
    columns = [column["name"] for column in sqlalchemy.inspect(engine).get_columns(TABLE_NAME)]
    engine.dispose()
    assert sorted(columns) == ["client", "counters", "created", "data", "expiry", "id", "user_id"]
    assert [counter(testapp.get("/")) for _ in range(2)] == [1, 2]
    store = store_of(settings)
    assert uses_index(query_plan(store, "clear_expired"), f"{TABLE_NAME}_expiry")
    assert uses_index(query_plan(store, "user_sessions"), f"{TABLE_NAME}_user_id")
    store.close()
    assert clear_sessions(["--all", str(write_ini(tmp_path, database_url))]) == 0
    assert counter(testapp.get("/")) == 1
{%- endif %}


def test_the_installed_command_runs_from_cron(app_settings, stored, tmp_path) -> None:
    """The console script pip installed, as a cron line or systemd timer runs it."""
{%- if database %}
    three_sessions(app_settings, stored)
    arguments, printed, left = [], f"{COMMAND}: deleted 2 expired sessions\n", 1
{%- else %}
    webtest.TestApp(main({}, **app_settings)).get("/")
    arguments, printed, left = ["--all"], ended_every_session(1), 0
{%- endif %}
    ini = write_ini(tmp_path, app_settings[STORE_URL])
    command = [str(Path(sys.executable).parent / COMMAND), *arguments, str(ini)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, printed)
    # Nothing of its own on stderr: only what dependencies warn about on newer Pythons
    # (Pyramid imports pkg_resources).
    assert (COMMAND in done.stderr, "Traceback" in done.stderr) == (False, False)
    assert len(stored.ids()) == left
{%- if not database %}


def test_a_session_moved_while_every_session_ends_is_followed(app_settings, stored) -> None:
    """A login takes the session out of its old key, then puts it in under a new one that
    SCAN may have passed already: the marker under the old key leads there."""
    testapp = webtest.TestApp(main({}, **app_settings))
    testapp.get("/")
    [old_id] = stored.ids()
    store = RedisStore(lambda: redis.Redis.from_url(app_settings[STORE_URL]), 60, 3600, 0.3)
    moving = store.run("detach", [session_key(old_id)], session_key("new"))  # a login, half done
    with ThreadPoolExecutor(max_workers=1) as pool:
        ending = pool.submit(store.end_all_sessions)
        time.sleep(0.1)  # the sweep found the marker, not the session
        store.run("adopt", [session_key("new")], *moving)  # the login's second half
        assert ending.result(timeout=5) == 1
    assert stored.ids() == []
    store.close()


def test_a_session_moved_twice_before_every_session_ends_is_ended(app_settings, stored) -> None:
    """Markers lead to markers: the sweep, and the markers it meets, end the session
    wherever it went, once."""
    browser = app_with_test_views(app_settings, login=login_view)
    browser.get("/")
    browser.get(f"{TEST_VIEWS}/login")
    browser.get(f"{TEST_VIEWS}/login")
    store = RedisStore(lambda: redis.Redis.from_url(app_settings[STORE_URL]), 60, 3600, 0.1)
    assert store.end_all_sessions() == 1
    assert stored.ids() == []
    assert counter(browser.get("/")) == 1
    store.close()


def test_without_all_redis_has_nothing_to_do(app_settings, stored, tmp_path, capsys) -> None:
    """Redis deletes an expired session's hash itself: the command leaves live ones."""
    webtest.TestApp(main({}, **app_settings)).get("/")
    assert clear_sessions([str(write_ini(tmp_path, app_settings[STORE_URL]))]) == 0
    assert capsys.readouterr().out == (
        f"{COMMAND}: Redis deletes expired sessions by itself: nothing to do "
        "(--all ends every one)\n"
    )
    assert len(stored.ids()) == 1
{%- endif %}


# A bad ini file, or settings the app would refuse: the setting and what it must be.
BAD_SETTINGS = {
    "missing-ini": ({}, "cannot read {ini}: "),
    "no-such-app": ({}, "cannot read {ini}: "),
    "bad-timeout": ({"session.timeout": "soon"}, "cannot read {ini}: session.timeout must be"),
{%- if database %}
    "password-in-ini": (
        {STORE_URL: "postgresql+psycopg://app:hunter2@127.0.0.1/app"},
        "cannot read {ini}: session.database_url holds a password",
    ),
{%- else %}
    "bad-socket-timeout": (
        {"session.redis_socket_timeout": "soon"},
        "cannot read {ini}: session.redis_socket_timeout must be",
    ),
{%- endif %}
}


@pytest.mark.parametrize("problem", BAD_SETTINGS)
@pytest.mark.parametrize("end_all", [False, True], ids=["expired", "all"])
def test_bad_settings_exit_2_in_one_line(tmp_path, capsys, problem: str, end_all: bool) -> None:
    settings, message = BAD_SETTINGS[problem]
    url = {{ '"sqlite:///" + str(tmp_path / "s.sqlite")' if database else '"redis://127.0.0.1:1/0"' }}
    ini = write_ini(tmp_path, url, **settings)
    arguments = [str(ini), *(["--all"] if end_all else [])]
    if problem == "missing-ini":
        ini.unlink()
    if problem == "no-such-app":
        arguments += ["--app", "elsewhere"]
    assert clear_sessions(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{COMMAND}: " + message.format(ini=ini))
    assert error.count("\n") == 1
    assert "hunter2" not in error


def test_an_unreachable_store_exits_1(tmp_path, monkeypatch, capsys) -> None:
{%- if database %}
    monkeypatch.setenv(URL_ENV, "postgresql+psycopg://app:hunter2@127.0.0.1:1/app")
    ini = write_ini(tmp_path, "sqlite:///" + str(tmp_path / "unused.sqlite"))
    unavailable = "session database unavailable: "
{%- else %}
    monkeypatch.setenv(URL_ENV, "redis://:hunter2@127.0.0.1:1/0")
    ini = write_ini(tmp_path, "redis://127.0.0.1:6379/0")
    unavailable = "Redis unavailable: "
{%- endif %}
    assert clear_sessions([str(ini), "--app", "main", "--all"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"{COMMAND}: {unavailable}")
    assert "hunter2" not in error


def test_the_help_reads_as_plain_text(capsys) -> None:
    with pytest.raises(SystemExit):
        clear_sessions(["--help"])
    help_text = capsys.readouterr().out
    assert "every one (--all)" in help_text
    assert "``" not in help_text


def test_argparse_names_the_command_as_typed(capsys) -> None:
    with pytest.raises(SystemExit) as exit_status:
        clear_sessions([])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.split()[:2] == ["usage:", COMMAND]
    assert f"\n{COMMAND}: error: the following arguments are required: config_uri" in error

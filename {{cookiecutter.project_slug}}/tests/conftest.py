"""Fixtures: the app built from development.ini{% if cookiecutter.session_factory == "redis" %} against a private Redis server{% elif cookiecutter.session_factory == "database" %} on SQLite and on a private PostgreSQL server{% endif %}."""

from __future__ import annotations

{% if cookiecutter.session_factory == "redis" -%}
import contextlib
{% endif -%}
import os
import shutil
{% if cookiecutter.session_factory == "redis" -%}
import subprocess
{% endif -%}
import tempfile
{%- if cookiecutter.session_factory not in ("redis", "database") %}
import time
{%- endif %}
from collections.abc import Callable, Iterator
{%- if cookiecutter.session_factory == "database" %}
from pathlib import Path
from types import ModuleType
from typing import Any
{%- endif %}

{% if cookiecutter.session_factory == "database" -%}
import psycopg
{% endif -%}
import pytest
{% if cookiecutter.session_factory == "database" -%}
import sqlalchemy
{% endif -%}
{% if cookiecutter.session_factory == "redis" -%}
import redis
{% endif -%}
import webtest
{%- if cookiecutter.session_factory == "database" %}
from database_servers import (
    DATABASE_URL_ENV,
    SKIPPED_LINE,
    PostgresServer,
    StoredSessions,
    libpq_url,
    postgresql_found,
)
{%- endif %}
from helpers import (
    SETTINGS_ENV,
    TEST_USERS,
    app_with_test_views,
    development_settings,
    login_view,
)
from pyramid.request import Request
from pyramid.router import Router
{%- if cookiecutter.session_factory == "redis" %}
from redis_servers import (
    NO_DELAY,
    REDIS_URL_ENV,
    ClusterDeployment,
    RedisServer,
    SentinelDeployment,
    StoredSessions,
    TLSDeployment,
    cluster_node,
    free_port,
    make_ca,
    make_server_certificate,
    sentinel_servers,
    started,
    tls_url,
    wait_until,
)
{%- endif %}

from {{ cookiecutter.project_slug }} import auth, main
{%- if cookiecutter.session_factory == "redis" %}
from {{ cookiecutter.project_slug }}.sessions.redis.store import KEY_PREFIX
from {{ cookiecutter.project_slug }}.sessions.server import registry_store
{%- elif cookiecutter.session_factory == "database" %}
from {{ cookiecutter.project_slug }}.sessions.database import store as database_store
from {{ cookiecutter.project_slug }}.sessions.database.schema import (
    TABLE_NAME,
    create_table,
)
from {{ cookiecutter.project_slug }}.sessions.database.statements import compiled_for
from {{ cookiecutter.project_slug }}.sessions.server import registry_store
{%- endif %}


def pytest_configure(config: pytest.Config) -> None:
    """Let Chameleon keep the compiled templates on disk for this run: every app a test
    builds would compile them again (the suite took five times as long)."""
    if "CHAMELEON_CACHE" not in os.environ:
        os.environ["CHAMELEON_CACHE"] = cache = tempfile.mkdtemp(prefix="chameleon-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("CHAMELEON_CACHE", cache)))
{%- if cookiecutter.session_factory == "redis" %}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """$TEST_REDIS_URL when set, else the URL of a private server started for this run."""
    if os.environ.get(REDIS_URL_ENV):
        yield os.environ[REDIS_URL_ENV]
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A Sentinel deployment for this run, on loopback, stopped by PID at the end."""
    directory = tmp_path_factory.mktemp("sentinel")
    (directory / "primary").mkdir()
    (directory / "replica").mkdir()
    with contextlib.ExitStack() as running:
        primary = started(running, RedisServer(directory=directory / "primary", options=NO_DELAY))
        replicaof = [*NO_DELAY, "--replicaof", "127.0.0.1", str(primary.port)]
        replica = started(running, RedisServer(directory=directory / "replica", options=replicaof))
        sentinels = [started(running, s) for s in sentinel_servers(directory, primary.port)]
        deployment = SentinelDeployment(primary, replica, sentinels)
        wait_until(deployment.ready, "the sentinels to find each other and the replica")
        yield deployment


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """A Redis Cluster for this run, on loopback, stopped by PID at the end."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.fail("redis-cli not found: install it (apt-get install redis-tools)")
    directory = tmp_path_factory.mktemp("cluster")
    with contextlib.ExitStack() as running:
        nodes = [started(running, cluster_node(directory)) for _ in range(3)]
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        create = subprocess.run(
            [redis_cli, "--cluster", "create", *addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode:
            pytest.fail(f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}")
        deployment = ClusterDeployment(nodes)
        wait_until(deployment.healthy, "cluster_state:ok on every node")
        yield deployment


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSDeployment]:
    """A TLS-only Redis server for this run, with certificates made for it."""
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca(directory, "test-ca")
    wrong_ca, _ = make_ca(directory, "unrelated-ca")
    cert, key = make_server_certificate(directory, ca)
    port = free_port()
    tls_options = [
        *["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"],
        *["--tls-cert-file", str(cert), "--tls-key-file", str(key)],
        *["--tls-ca-cert-file", str(ca[0])],
    ]
    server = RedisServer(port, directory=directory, options=tls_options, url=tls_url(port, ca[0]))
    with contextlib.ExitStack() as running:
        yield TLSDeployment(started(running, server), ca[0], wrong_ca)


@pytest.fixture(scope="session")
def run_redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """One client on the test Redis for the run: a connection costs round trips and a
    read of redis-py's package metadata."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_client(run_redis_client: redis.Redis) -> redis.Redis:
    """The run's client, on the test database emptied."""
    run_redis_client.flushdb()
    return run_redis_client


@pytest.fixture
def stored(redis_client: redis.Redis) -> StoredSessions:
    """The test Redis's sessions, read and written from outside the app."""
    return StoredSessions(redis_client)


@pytest.fixture
def age_sessions(redis_client: redis.Redis) -> Callable[[int], None]:
    """Make every stored session older by some seconds, for its absolute timeout: Redis's
    clock cannot be moved, so the creation time the sessions hold moves back instead. (The
    idle timeout is each key's TTL, which this leaves alone: read it with ``ttl``.)"""

    def age(seconds: int) -> None:
        for key in redis_client.scan_iter(f"{KEY_PREFIX}*"):
            redis_client.hincrby(key, "created", -seconds)

    return age


@pytest.fixture(scope="session")
def run_settings(redis_url: str) -> dict:
    """development.ini's settings with a secret of this run's own (one for the whole
    pytest run: pytest's "session" scope, not a web session), on the test Redis."""
    return {**development_settings(), "session.redis_url": redis_url}


@pytest.fixture
def app_settings(run_settings: dict, redis_client: redis.Redis) -> dict:
    """The run's settings, on an emptied Redis database.

    A copy: to give a module's tests other settings, override this fixture there
    (``app`` and ``testapp`` are then built from them); for one test, build its app with
    ``main({}, **{**app_settings, ...})``. Changing it in a test's body comes too late:
    ``app`` is built by then.
    """
    return dict(run_settings)
{%- elif cookiecutter.session_factory == "database" %}


# Every test of the store runs on both: the default file, and the server for scale.
BACKENDS = ["sqlite", "postgresql"]
# The tests of the pages (counter, forms, flash, CSRF, headers, limits, settings, sign-in)
# run on SQLite alone, on one file for the run: they reach the database through the same
# statements the store's own tests run on both.
PAGE_TEST_MODULES = {
    "test_counter",
    "test_flash",
    "test_headers",
    "test_login",
    "test_request_limits",
    "test_security",
    "test_session_api",
    "test_settings",
    "test_sessions_of_a_user",  # its tests of listing and ending name both databases
}
# The fixtures that start or reach a PostgreSQL server (private_postgres: the outage tests').
POSTGRESQL_FIXTURES = {"postgres_url", "postgres_admin", "private_postgres"}
SKIPPED_WITHOUT_POSTGRESQL = pytest.StashKey[int]()


def needs_postgresql(item: pytest.Item) -> bool:
    """Whether a test runs on PostgreSQL: as its ``database_url``, or through a server
    fixture of its own."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgresql":
        return True
    return not POSTGRESQL_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def tests_the_pages(module: ModuleType) -> bool:
    """Whether ``module`` is one of PAGE_TEST_MODULES."""
    return module.__name__.rsplit(".", 1)[-1] in PAGE_TEST_MODULES


def chooses_its_database(metafunc: pytest.Metafunc) -> bool:
    """Whether the test names its database itself (``parametrize("database_url", ...)``)."""
    markers = metafunc.definition.iter_markers("parametrize")
    return any("database_url" in str(marker.args[0]) for marker in markers)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give each test that takes ``database_url`` its databases: both, or SQLite alone."""
    if "database_url" in metafunc.fixturenames and not chooses_its_database(metafunc):
        backends = ["sqlite"] if tests_the_pages(metafunc.module) else BACKENDS
        metafunc.parametrize("database_url", backends, indirect=True)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark the PostgreSQL tests, before -m reads the marks: `pytest -m postgresql` runs
    them alone (after a run without PostgreSQL, say), `-m "not postgresql"` the others."""
    if needs_postgresql(item):
        item.add_marker(pytest.mark.postgresql)


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: count only what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL, skip its tests rather than fail each one: the SQLite ones still
    run, and the coverage gate leaves out the code only PostgreSQL's run (database_servers)."""
    if postgresql_found():
        return
    skip = pytest.mark.skip(reason="PostgreSQL not found (the run's last lines say more)")
    skipped = [item for item in items if needs_postgresql(item)]
    for item in skipped:
        item.add_marker(skip)
    config.stash[SKIPPED_WITHOUT_POSTGRESQL] = len(skipped)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """One line after the coverage report: what was skipped, and how to run it."""
    count = config.stash.get(SKIPPED_WITHOUT_POSTGRESQL, 0)
    if count:
        line = SKIPPED_LINE.format(count=count, env=DATABASE_URL_ENV)
        terminalreporter.write_line(line, yellow=True, bold=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """$TEST_DATABASE_URL when set (a PostgreSQL database the tests may empty), else the
    URL of a private server started for this run."""
    if os.environ.get(DATABASE_URL_ENV):
        yield os.environ[DATABASE_URL_ENV]
        return
    server = PostgresServer().initialize()
    yield server.url
    server.destroy()


@pytest.fixture(scope="session")
def postgres_admin(postgres_url: str) -> Iterator[psycopg.Connection]:
    """One connection for the run that empties the PostgreSQL database between tests."""
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def run_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoredSessions]:
    """The SQLite file of the page tests, one for the run, with its table."""
    yield from stored_sessions(f"sqlite:///{tmp_path_factory.mktemp('run') / 'sessions.sqlite'}")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty session database. For a page test, the run's SQLite file emptied (the
    page tests share one app: see ``app``); for the store's tests, which make, lose and
    fork with their files, an SQLite file of the test's own, or PostgreSQL with the
    sessions table dropped (the app makes it again)."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres_admin").execute(f"DROP TABLE IF EXISTS {TABLE_NAME}")
        return request.getfixturevalue("postgres_url")
    if tests_the_pages(request.module):
        run_database = request.getfixturevalue("run_database")
        run_database.delete_all()
        return run_database.engine.url.render_as_string()
    return f"sqlite:///{tmp_path / 'sessions.sqlite'}"


@pytest.fixture(autouse=True)
def stores_are_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every store a test made (its app's, or its own) once the test is done: its
    SQLite connections would otherwise be closed by the garbage collector, which Python
    3.13 warns of, one line each, hundreds of them after the run's result."""
    made = []
    make_connections = database_store.make_connections

    def making(settings: Any) -> Any:
        made.append(make_connections(settings))
        return made[-1]

    monkeypatch.setattr(database_store, "make_connections", making)
    yield
    for connections in made:
        connections.close()


@pytest.fixture
def stored(database_url: str) -> Iterator[StoredSessions]:
    """The test database's sessions table, read and written from outside the app."""
    yield from stored_sessions(database_url)


def stored_sessions(url: str) -> Iterator[StoredSessions]:
    """The sessions table at ``url`` as another program sees it, until the generator
    ends; made first, as the app would (a test may look before it starts)."""
    sessions = StoredSessions(url)
    with sessions.engine.begin() as connection:
        create_table(connection)
    yield sessions
    sessions.engine.dispose()


@pytest.fixture
def watch_statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], list[str]]]:
    """What lists the first word of each statement a store sends from then on: its round
    trips (those it runs on a cursor itself, and those it leaves to SQLAlchemy). Undone
    after the test: the store may be the run's app's."""
    listening = []

    def watch(store: Any) -> list[str]:
        sent: list[str] = []
        run = store.connections.run

        def run_and_record(name: str, values: dict) -> Any:
            sent.append(compiled_for(store.engine.dialect)[name].sql.split()[0])
            return run(name, values)

        def record(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            sent.append(statement.split()[0])

        monkeypatch.setattr(store.connections, "run", run_and_record)
        sqlalchemy.event.listen(store.engine, "before_cursor_execute", record)
        listening.append((store.engine, record))
        return sent

    yield watch
    for engine, record in listening:
        sqlalchemy.event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def age_sessions(stored) -> Callable[[int], None]:
    """Make every stored session older by some seconds (the database's clock is theirs)."""
    return stored.age


@pytest.fixture(scope="session")
def run_settings(run_database: StoredSessions) -> dict:
    """development.ini's settings with a secret of this run's own (one for the whole
    pytest run: pytest's "session" scope, not a web session), on the run's SQLite file."""
    url = run_database.engine.url.render_as_string()
    return {**development_settings(), "session.database_url": url}


@pytest.fixture
def app_settings(run_settings: dict, database_url: str) -> dict:
    """The run's settings on the test's database.

    A copy: to give a module's tests other settings, override this fixture there
    (``app`` and ``testapp`` are then built from them); for one test, build its app with
    ``main({}, **{**app_settings, ...})``. Changing it in a test's body comes too late:
    ``app`` is built by then.
    """
    return {**run_settings, "session.database_url": database_url}
{%- else %}


@pytest.fixture(scope="session")
def run_settings() -> dict:
    """development.ini's settings with a secret of this run's own (one for the whole
    pytest run: pytest's "session" scope, not a web session)."""
    return development_settings()


@pytest.fixture
def app_settings(run_settings: dict) -> dict:
    """The run's settings.

    A copy: to give a module's tests other settings, override this fixture there
    (``app`` and ``testapp`` are then built from them); for one test, build its app with
    ``main({}, **{**app_settings, ...})``. Changing it in a test's body comes too late:
    ``app`` is built by then.
    """
    return dict(run_settings)


# Where the session factory reads the clock to decide that a session has expired.
EXPIRY_CLOCK = "time.time"


@pytest.fixture
def age_sessions(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make every session older by some seconds: the clock the sessions read moves on."""
    real_time, offset = time.time, 0

    def age(seconds: int) -> None:
        nonlocal offset
        offset += seconds
        monkeypatch.setattr(EXPIRY_CLOCK, lambda: real_time() + offset)

    return age
{%- endif %}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell overrides the settings under test."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def run_app(run_settings: dict) -> Iterator[Router]:
    """The app built from the run's settings, once: building an app is most of a page
    test's time (Pyramid's configuration, the store, the templates: 15-30 ms)."""
    app = main({}, **run_settings)
    yield app
{%- if cookiecutter.session_factory in ("redis", "database") %}
    registry_store(app.registry).close()
{%- endif %}


@pytest.fixture
def app(app_settings: dict, run_settings: dict, run_app: Router) -> Iterator[Router]:
    """The WSGI application of the test's settings: the run's app when they are the
    run's{% if cookiecutter.session_factory in ("redis", "database") %} (its store emptied for each test by ``app_settings``){% endif %}, else a fresh one.
    A test that changes the run's app's settings fails: every later test would see them."""
    if app_settings != run_settings:
        yield main({}, **app_settings)
        return
    settings = dict(run_app.registry.settings)
    yield run_app
    if run_app.registry.settings != settings:
        run_app.registry.settings.clear()
        run_app.registry.settings.update(settings)
        pytest.fail(
            "the test changed the settings of the app every test shares:"
            " override the app_settings fixture instead (see its docstring)"
        )


@pytest.fixture
def testapp(app) -> webtest.TestApp:
    """A browser-like client with its own cookie jar."""
    return webtest.TestApp(app)


@pytest.fixture
def test_users(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Sign-in lets in TEST_USERS (helpers.py) in place of the app's user store, so that
    the tests that need a signed-in user hold when your store replaces the demo users (and
    cost no password hash). The logins checked are listed in the list it gives."""
    checked: list[str] = []

    def check_credentials(request: Request, login: str, password: str) -> str | None:
        checked.append(login)
        return login if TEST_USERS.get(login) == password else None

    monkeypatch.setattr(auth, "check_credentials", check_credentials)
    return checked


@pytest.fixture
def app_with_login(app_settings: dict) -> webtest.TestApp:
    """The app plus a test-only /login view that calls ``regenerate_session``."""
    return app_with_test_views(app_settings, login=login_view)

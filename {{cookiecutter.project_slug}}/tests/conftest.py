"""Fixtures: the app built from development.ini{% if cookiecutter.session_factory == "redis" %} against a private Redis server{% elif cookiecutter.session_factory == "database" %} on SQLite and on a private PostgreSQL server{% endif %}."""

from __future__ import annotations

{% if cookiecutter.session_factory == "redis" -%}
import contextlib
import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
{% elif cookiecutter.session_factory == "database" -%}
import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
{% else -%}
import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
{% endif -%}
from pathlib import Path
{%- if cookiecutter.session_factory == "redis" %}
from urllib.parse import quote
{%- endif %}

{% if cookiecutter.session_factory == "database" -%}
import psycopg
{% endif -%}
import pytest
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
from pyramid.config import Configurator
from pyramid.paster import get_appsettings
from pyramid.request import Request

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions import regenerate_session
from {{ cookiecutter.project_slug }}.sessions import settings as settings_module
{%- if cookiecutter.session_factory == "redis" %}
from {{ cookiecutter.project_slug }}.sessions.redis.scripts import MOVED_FIELD
from {{ cookiecutter.project_slug }}.sessions.redis.settings import (
    ENVIRONMENT as REDIS_ENVIRONMENT,
)
from {{ cookiecutter.project_slug }}.sessions.redis.store import KEY_PREFIX
{%- elif cookiecutter.session_factory == "database" %}
from {{ cookiecutter.project_slug }}.sessions.database.schema import (
    TABLE_NAME,
    create_table,
)
from {{ cookiecutter.project_slug }}.sessions.database.settings import (
    ENVIRONMENT as DATABASE_ENVIRONMENT,
)
{%- endif %}

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Variables that would override the settings under test.
SETTINGS_ENV = [
    settings_module.SECRET_ENV,
    settings_module.SECRET_FALLBACKS_ENV,
{%- if cookiecutter.session_factory == "redis" %}
    *REDIS_ENVIRONMENT,
{%- elif cookiecutter.session_factory == "database" %}
    *DATABASE_ENVIRONMENT,
{%- endif %}
]


def pytest_configure(config: pytest.Config) -> None:
    """Let Chameleon keep the compiled templates on disk for this run: every test builds a
    new app, which would compile them again (the suite took five times as long)."""
    if "CHAMELEON_CACHE" not in os.environ:
        os.environ["CHAMELEON_CACHE"] = cache = tempfile.mkdtemp(prefix="chameleon-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("CHAMELEON_CACHE", cache)))
{%- if cookiecutter.session_factory == "redis" %}


REDIS_URL_ENV = "TEST_REDIS_URL"
# Loopback only, nothing written to disk, quiet.
PRIVATE_SERVER_OPTIONS = ["--bind", "127.0.0.1", "--appendonly", "no", "--loglevel", "warning"]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private, throw-away redis-server on a free loopback port, stopped by PID.

    ``options`` come last on the command line (the last of a repeated option wins);
    ``config`` is a file read first (a sentinel's); ``directory`` holds whatever the
    server writes (a Cluster's nodes file, a replica's copy, a sentinel's rewrites).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
        config: Path | None = None,
        directory: Path | None = None,
        url: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.options = list(options)
        self.config = config
        self.directory = directory
        self.url = url or f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def command(self, executable: str) -> list[str]:
        """The redis-server command line."""
        config = [str(self.config)] if self.config else []
        directory = ["--dir", str(self.directory)] if self.directory else []
        return [
            executable,
            *config,
            *["--port", str(self.port), "--save", "", *PRIVATE_SERVER_OPTIONS],
            *directory,
            *self.options,
        ]

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                f"redis-server not found: install it (apt-get install redis-server) "
                f"or point {REDIS_URL_ENV} at a Redis server you own"
            )
        self.process = subprocess.Popen(self.command(executable), stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()
        return self

    def client(self) -> redis.Redis:
        """A new client of this server (use it in a ``with`` block)."""
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=1)

    def stop(self) -> None:
        """Stop the server by its PID and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Stop the server at once, as a crash would (SIGKILL), and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """$TEST_REDIS_URL when set, else the URL of a private server started for this run."""
    if os.environ.get(REDIS_URL_ENV):
        yield os.environ[REDIS_URL_ENV]
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


def started(running: contextlib.ExitStack, server: RedisServer) -> RedisServer:
    """Start ``server``, to be stopped by PID when ``running`` closes (also on failure)."""
    running.callback(server.stop)
    return server.start()


def wait_until(condition: Callable[[], object], what: str, seconds: float = 20) -> None:
    """Poll ``condition`` (a Redis error counts as not yet) until it holds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)


def info(server: RedisServer, section: str) -> dict:
    """One section of the server's INFO."""
    with server.client() as client:
        return client.info(section)


SENTINEL_SERVICE = "sessions"
# Quick to notice a dead primary, and quick to give up a failover that stalls.
SENTINEL_CONFIG = """\
sentinel myid {myid}
sentinel monitor {service} 127.0.0.1 {primary_port} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""
# A primary waits 5 s by default before it sends its first copy to a replica.
NO_DELAY = ["--repl-diskless-sync-delay", "0"]
# What a sentinel would otherwise learn in its first seconds (sentinels announce themselves
# every 2 s): the other sentinels, so that they can agree on a failover at once.
KNOWN_SENTINEL = "sentinel known-sentinel {service} 127.0.0.1 {port} {myid}\n"


@dataclass
class SentinelDeployment:
    """A primary, its replica and three sentinels that watch them."""

    primary: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]
    service: str = SENTINEL_SERVICE

    @property
    def addresses(self) -> str:
        """The sentinels, as ``session.redis_sentinels`` lists them."""
        return " ".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def settings(self) -> dict:
        """The app's settings for this deployment."""
        return {
            "session.redis_url": "",
            "session.redis_sentinels": self.addresses,
            "session.redis_sentinel_service": self.service,
        }

    def primary_ports(self) -> set[int]:
        """The primary's port, as the sentinels tell clients now: in SENTINEL MASTER, from
        the end of a failover (+switch-master) on, and only while they see it up."""
        ports = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
            if state["is_master"] and not (state["is_sdown"] or state["is_odown"]):
                ports.add(int(state["port"]))
        return ports

    def ready(self) -> bool:
        """Whether every sentinel knows the others and the replica, and the replica is
        in sync: only then can the sentinels agree on a failover."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return info(self.replica, "replication").get("master_link_status") == "up"


def sentinel_servers(directory: Path, primary_port: int, count: int = 3) -> list[RedisServer]:
    """Sentinels watching the primary on ``primary_port`` that know each other, their
    config files in ``directory``."""
    myids: dict[int, str] = {}
    while len(myids) < count:  # ports not in use yet: the same one may come twice
        myids[free_port()] = secrets.token_hex(20)
    servers = []
    for port, myid in myids.items():
        config = directory / f"sentinel-{port}.conf"
        config.write_text(
            SENTINEL_CONFIG.format(myid=myid, service=SENTINEL_SERVICE, primary_port=primary_port)
            + "".join(
                KNOWN_SENTINEL.format(service=SENTINEL_SERVICE, port=other, myid=other_id)
                for other, other_id in myids.items()
                if other != port
            )
        )
        sentinel = RedisServer(port, config=config, directory=directory, options=["--sentinel"])
        servers.append(sentinel)
    return servers


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


CLUSTER_BUS_OFFSET = 10000  # a Cluster node also listens on its port + 10000
CLUSTER_OPTIONS = [
    *["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"],
    *["--cluster-require-full-coverage", "no"],
]


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of the loopback interface."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free loopback port whose Cluster bus port is free too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and port_is_free(port + CLUSTER_BUS_OFFSET):
            return port
    pytest.fail("no free port pair for a Cluster node")


@dataclass
class ClusterDeployment:
    """Three Cluster primaries (no replicas): each holds a third of the slots."""

    nodes: list[RedisServer]

    def settings(self) -> dict:
        """The app's settings for this deployment: any one node names the Cluster."""
        return {"session.redis_url": self.nodes[0].url, "session.redis_cluster": "true"}

    def healthy(self) -> bool:
        """Whether every node runs and sees a Cluster of three with every slot served."""
        for node in self.nodes:
            if node.process is None:
                return False
            with node.client() as client:
                state = client.execute_command("CLUSTER INFO")
            seen = [state[name] for name in ("cluster_state", "cluster_known_nodes")]
            if seen != ["ok", "3"] or state["cluster_slots_ok"] != "16384":
                return False
        return True


def cluster_node(directory: Path) -> RedisServer:
    """A Cluster node in a directory of its own, where it keeps its nodes file."""
    port = free_cluster_port()
    node_directory = directory / f"node-{port}"
    node_directory.mkdir()
    options = [*CLUSTER_OPTIONS, "--cluster-config-file", f"nodes-{port}.conf"]
    return RedisServer(port, directory=node_directory, options=options)


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


def openssl(*arguments: str | Path) -> None:
    """Run openssl; fail the test run with its output when it fails."""
    executable = shutil.which("openssl")
    if executable is None:
        pytest.fail("openssl not found: install it (apt-get install openssl)")
    done = subprocess.run(
        [executable, *map(str, arguments)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        pytest.fail(f"openssl {arguments[0]} failed:\n{done.stderr}")


EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throw-away certificate authority: its certificate and key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl(
        *["req", "-x509", *EC_KEY, "-keyout", key, "-out", cert, "-days", "2"],
        *["-subj", f"/CN={name}", "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
    )
    return cert, key


def make_server_certificate(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``, and its key."""
    cert, key, request = (directory / f"server.{end}" for end in ("crt", "key", "csr"))
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)
    openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1")
    openssl(
        *["x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial"],
        *["-out", cert, "-days", "2", "-extfile", extensions],
    )
    return cert, key


def tls_url(port: int, ca_certificate: Path) -> str:
    """A ``rediss://`` URL that trusts only ``ca_certificate``."""
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca_certificate))}"


@dataclass
class TLSDeployment:
    """A server that speaks TLS only, the CA that signed its certificate, and another."""

    server: RedisServer
    ca: Path
    wrong_ca: Path

    def settings(self, ca: Path | None = None) -> dict:
        """The app's settings for this server, trusting ``ca`` (the right one by default)."""
        return {"session.redis_url": tls_url(self.server.port, ca or self.ca)}


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


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an emptied test database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def is_moved_marker(client: redis.Redis, key: bytes) -> bool:
    """Whether ``key`` holds the marker a login leaves under a session's old id."""
    return client.type(key) == b"hash" and bool(client.hexists(key, MOVED_FIELD))


class StoredSessions:
    """The sessions in Redis as another program sees them."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def ids(self) -> list[str]:
        """The ids of the stored sessions (not the markers logins leave)."""
        keys = self.client.scan_iter(f"{KEY_PREFIX}*")
        return [
            key.decode().removeprefix(KEY_PREFIX)
            for key in keys
            if not is_moved_marker(self.client, key)
        ]

    def field(self, session_id: str, name: str) -> bytes:
        """One field of the session's hash."""
        return self.client.hget(KEY_PREFIX + session_id, name)

    def counter(self, session_id: str) -> int:
        """The session's visit counter."""
        return int(self.field(session_id, "counter"))

    def created(self, session_id: str) -> int:
        """When the session was created (Redis's clock)."""
        return int(self.field(session_id, "created"))

    def data(self, session_id: str) -> dict:
        """The session's data."""
        return json.loads(self.field(session_id, "data"))

    def set_data(self, session_id: str, text: str) -> None:
        """Overwrite the session's data, as a bug or another program might."""
        self.client.hset(KEY_PREFIX + session_id, "data", text)

    def state(self, session_id: str) -> dict:
        """Everything stored for the session."""
        return self.client.hgetall(KEY_PREFIX + session_id)

    def expire(self, session_id: str) -> None:
        """Let the session's idle timeout pass: Redis deletes the hash."""
        self.client.pexpire(KEY_PREFIX + session_id, 1)
        time.sleep(0.01)

    def delete_all(self) -> None:
        """Delete every session, as "forget" in every tab would."""
        self.client.delete(*[KEY_PREFIX + session_id for session_id in self.ids()])


@pytest.fixture
def stored(redis_client: redis.Redis) -> StoredSessions:
    """The test Redis's sessions, read and written from outside the app."""
    return StoredSessions(redis_client)


@pytest.fixture
def app_settings(redis_client: redis.Redis, redis_url: str) -> dict:
    """development.ini's settings with a secret of the test's own, on the test Redis."""
    return {**development_settings(), "session.redis_url": redis_url}
{%- elif cookiecutter.session_factory == "database" %}


# Every test of the store runs on both: the default file, and the server for scale.
BACKENDS = ["sqlite", "postgresql"]
# The tests of the pages (counter, forms, flash, CSRF, headers, limits, settings) run on
# SQLite alone: they reach the database through the same statements the store's own
# tests run on both.
PAGE_TEST_MODULES = {
    "test_counter",
    "test_flash",
    "test_headers",
    "test_request_limits",
    "test_security",
    "test_session_api",
    "test_settings",
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


def chooses_its_database(metafunc: pytest.Metafunc) -> bool:
    """Whether the test names its database itself (``parametrize("database_url", ...)``)."""
    markers = metafunc.definition.iter_markers("parametrize")
    return any("database_url" in str(marker.args[0]) for marker in markers)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give each test that takes ``database_url`` its databases: both, or SQLite alone."""
    if "database_url" in metafunc.fixturenames and not chooses_its_database(metafunc):
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        backends = ["sqlite"] if module in PAGE_TEST_MODULES else BACKENDS
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


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty session database: an SQLite file of the test's own, or PostgreSQL with
    the sessions table dropped (the app makes it again)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.sqlite'}"
    request.getfixturevalue("postgres_admin").execute(f"DROP TABLE IF EXISTS {TABLE_NAME}")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def stored(database_url: str) -> Iterator[StoredSessions]:
    """The test database's sessions table, read and written from outside the app."""
    sessions = StoredSessions(database_url)
    with sessions.engine.begin() as connection:
        create_table(connection)  # as the app would: a test may look before it starts
    yield sessions
    sessions.engine.dispose()


@pytest.fixture
def app_settings(database_url: str) -> dict:
    """development.ini's settings with a secret of the test's own, on the test database."""
    return {**development_settings(), "session.database_url": database_url}
{%- else %}


@pytest.fixture
def app_settings() -> dict:
    """development.ini's settings with a secret of the test's own."""
    return development_settings()
{%- endif %}


@functools.cache
def development_ini() -> dict:
    """development.ini's settings, read once: plaster looks through every installed
    package's metadata for its loader, which cost a fifth of each test's time."""
    return dict(get_appsettings(str(PROJECT_DIR / "development.ini")))


def development_settings() -> dict:
    """development.ini's settings, with a fresh secret: tests need no .session_secret file."""
    return {**development_ini(), "session.secret": secrets.token_hex(settings_module.SECRET_BYTES)}


def development_timeouts() -> tuple[int, int]:
    """The idle and absolute timeouts development.ini sets: the answers the project was
    generated with. Tests take them from here, never as numbers of their own, so that
    they hold for any answer."""
    settings = development_ini()
    return int(settings["session.timeout"]), int(settings["session.absolute_timeout"])


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell overrides the settings under test."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app(app_settings: dict):
    """A fresh WSGI application."""
    return main({}, **app_settings)


@pytest.fixture
def testapp(app) -> webtest.TestApp:
    """A browser-like client with its own cookie jar."""
    return webtest.TestApp(app)


def login_view(request: Request) -> dict:
    """What a login view does first: a new session id (or cookie) for the same data."""
    regenerate_session(request)
    return {"session": dict(request.session)}


def app_with_test_views(settings: dict, **views: Callable[[Request], dict]) -> webtest.TestApp:
    """The app plus test-only JSON views, each at /<its name>."""
    with Configurator(settings=settings) as config:
        config.include("{{ cookiecutter.project_slug }}")
        for name, view in views.items():
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name, renderer="json")
    return webtest.TestApp(config.make_wsgi_app())


@pytest.fixture
def app_with_login(app_settings: dict) -> webtest.TestApp:
    """The app plus a test-only /login view that calls ``regenerate_session``."""
    return app_with_test_views(app_settings, login=login_view)

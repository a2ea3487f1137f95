"""Redis sessions on real deployments: Sentinel (with a failover), a Cluster, TLS, and the
settings that choose one. Every server runs on loopback, started once per test run and
stopped by PID (see conftest)."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import pytest
import webtest
from helpers import (
    SETTINGS_ENV,
    TEST_VIEWS,
    app_with_test_views,
    count_concurrently,
    counter,
    development_settings,
    flash_groups,
    login_view,
    post_form,
    session_cookie,
    signed_in_as,
    text,
)
from redis.cluster import RedisCluster
from redis_servers import (
    ClusterDeployment,
    RedisServer,
    SentinelDeployment,
    TLSDeployment,
    is_moved_marker,
    wait_until,
)
from test_clear_sessions import write_ini
from test_sessions_of_a_user import listed, signed_in_browsers

from {{ cookiecutter.project_slug }} import main, sessions
from {{ cookiecutter.project_slug }}.sessions.clear_sessions import main as clear_sessions
from {{ cookiecutter.project_slug }}.sessions.redis.client import make_redis_client
from {{ cookiecutter.project_slug }}.sessions.redis.settings import (
    PASSWORD_ENV,
    SENTINEL_PASSWORD_ENV,
    SENTINEL_SERVICE_ENV,
    SENTINELS_ENV,
    URL_ENV,
    read_redis_settings,
)
from {{ cookiecutter.project_slug }}.sessions.redis.store import KEY_PREFIX, RedisStore

SOCKET_TIMEOUT = 0.5
# The longest a request may take while Redis fails: the socket timeout and a margin for
# asking the sentinels (or the Cluster) where the data lives now.
SLOW_REQUEST = SOCKET_TIMEOUT + 1.0
Deployment = SentinelDeployment | ClusterDeployment | TLSDeployment


def app_settings_for(deployment_settings: dict) -> dict:
    """development.ini's settings, on ``deployment_settings``, with a short socket timeout."""
    return {
        **development_settings(),
        "session.redis_socket_timeout": str(SOCKET_TIMEOUT),
        **deployment_settings,
    }


def make_app(deployment_settings: dict) -> webtest.TestApp:
    """The app, built as ``pserve`` builds it."""
    return webtest.TestApp(main({}, **app_settings_for(deployment_settings)))


def make_app_with_login(deployment_settings: dict) -> webtest.TestApp:
    """The app plus a test-only /login view that calls ``regenerate_session``."""
    return app_with_test_views(app_settings_for(deployment_settings), login=login_view)


def session_id(browser: webtest.TestApp) -> str:
    """The session id inside the browser's signed cookie (an HMAC-SHA512, then the id)."""
    cookie = session_cookie(browser)
    return base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))[64:].decode()


def key_holders(deployment: Deployment) -> list[RedisServer]:
    """The servers that hold the sessions now: the primary, the server, or every node."""
    if isinstance(deployment, ClusterDeployment):
        return [node for node in deployment.nodes if node.process is not None]
    if isinstance(deployment, TLSDeployment):
        return [deployment.server]
    ports = deployment.primary_ports()
    return [server for server in (deployment.primary, deployment.replica) if server.port in ports]


def stored_ids(server: RedisServer) -> set[str]:
    """The ids of the sessions ``server`` itself holds (KEYS is never redirected), not
    the markers logins leave."""
    with server.client() as client:
        keys = client.keys(f"{KEY_PREFIX}*")
        return {
            key.decode().removeprefix(KEY_PREFIX)
            for key in keys
            if not is_moved_marker(client, key)
        }


def where(deployment: Deployment) -> dict[str, int]:
    """Session id -> port of the server that holds it."""
    return {sid: server.port for server in key_holders(deployment) for sid in stored_ids(server)}


@dataclass
class Visit:
    """One counter page request: when, how long, and what came back."""

    browser: int
    started: float
    ended: float
    status: int | str
    count: int | None

    @property
    def seconds(self) -> float:
        """How long the request took."""
        return self.ended - self.started


def visit(index: int, browser: webtest.TestApp) -> Visit:
    """Load a counter page; a 500 (an exception here) is recorded, not raised."""
    started = time.monotonic()
    try:
        response = browser.get("/howdy", status="*")
    except Exception as error:  # an unhandled error (a 500) is what this looks for
        return Visit(index, started, time.monotonic(), f"{type(error).__name__}: {error}", None)
    ended = time.monotonic()
    status: int | str = response.status_int
    if status == 503 and "Sessions are unavailable for a moment." not in text(response):
        status = "503 without the error page"
    count = counter(response) if status == 200 else None
    return Visit(index, started, ended, status, count)


@pytest.fixture
def cluster(redis_cluster: ClusterDeployment) -> ClusterDeployment:
    """The Cluster with every node up and empty, no script cached (as when it is new)."""
    for node in redis_cluster.nodes:
        if node.process is None:
            node.start()
    wait_until(redis_cluster.healthy, "cluster_state:ok on every node")
    for node in redis_cluster.nodes:
        with node.client() as client:
            client.flushall()
            client.script_flush()
    return redis_cluster


def clear(deployment: Deployment) -> Deployment:
    """``deployment`` without any session."""
    for server in key_holders(deployment):
        with server.client() as client:
            client.flushall()
    return deployment


# Each topology's fixture, for the tests every topology must pass.
TOPOLOGIES = {"sentinel": "redis_sentinel", "cluster": "cluster", "tls": "redis_tls"}


@pytest.fixture(params=TOPOLOGIES.values(), ids=TOPOLOGIES)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Each deployment in turn, without sessions."""
    return clear(request.getfixturevalue(request.param))


def test_counter_flash_regenerate_and_forget_work(deployment: Deployment) -> None:
    browser = make_app_with_login(deployment.settings())
    assert counter(browser.get("/")) == 1
    post_form(browser, "/flash", category="info", message="stored where it belongs")
    page = browser.get("/howdy")
    assert (counter(page), flash_groups(page)) == (3, {"info": ["stored where it belongs"]})
    old_id, old_cookie = session_id(browser), session_cookie(browser)
    assert old_id in where(deployment)

    browser.get(f"{TEST_VIEWS}/login")  # a new id (in a Cluster, most often another slot)
    new_id = session_id(browser)
    assert new_id != old_id
    assert set(where(deployment)) == {new_id}
    assert counter(browser.get("/")) == 4
    thief = webtest.TestApp(browser.app)
    thief.set_cookie("session", old_cookie)
    assert counter(thief.get("/")) == 1  # the old id is revoked

    copied = session_cookie(browser)
    post_form(browser, "/forget")
    assert new_id not in where(deployment)
    thief = webtest.TestApp(browser.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1
    assert counter(browser.get("/")) == 1


def test_clear_sessions_all_ends_every_session_on_every_server(
    deployment: Deployment, tmp_path, capsys
) -> None:
    """``--all`` finds the sessions wherever they live: on the one server, on Sentinel's
    primary, on each node of the Cluster (SCAN runs per node)."""
    app = make_app(deployment.settings()).app
    browsers = [webtest.TestApp(app) for _ in range(12)]
    assert [counter(browser.get("/")) for browser in browsers] == [1] * 12
    assert len(where(deployment)) == 12
    settings = {**deployment.settings(), "session.redis_socket_timeout": str(SOCKET_TIMEOUT)}
    assert clear_sessions(["--all", str(write_ini(tmp_path, settings))]) == 0
    assert capsys.readouterr().out.endswith(" ended every session (12 sessions deleted)\n")
    assert where(deployment) == {}
    assert [counter(browser.get("/")) for browser in browsers] == [1] * 12


def test_a_users_sessions_are_listed_and_ended_on_every_server(
    deployment: Deployment, test_users: list[str]
) -> None:
    """The user's index is a key of its own (in a Cluster, in another slot than the
    sessions): listing and ending reach each session where it lives."""
    app = make_app(deployment.settings()).app
    browsers = signed_in_browsers(app, "alice", 4)
    assert listed(app, "alice") == sorted(session_id(browser) for browser in browsers)
    assert sessions.end_user_sessions(app.registry, "alice", keep=None) == 4
    assert where(deployment) == {}
    assert [signed_in_as(browser.get("/")) for browser in browsers] == [None] * 4


# Cluster


def test_cluster_sessions_land_on_every_node(cluster: ClusterDeployment) -> None:
    app = make_app(cluster.settings()).app
    browsers = [webtest.TestApp(app) for _ in range(30)]
    for browser in browsers:
        browser.get("/")
    held = {node.port: stored_ids(node) for node in cluster.nodes}
    assert all(held.values()), f"a node holds no session: { {k: len(v) for k, v in held.items()} }"
    assert set().union(*held.values()) == {session_id(browser) for browser in browsers}
    assert sum(map(len, held.values())) == 30  # each session on one node only


def test_cluster_regenerate_moves_sessions_between_nodes(cluster: ClusterDeployment) -> None:
    browser = make_app_with_login(cluster.settings())
    browser.get("/")
    visited = {where(cluster)[session_id(browser)]}
    for logins in range(1, 41):  # 1/3 stay on their node each time: 40 all the same is ~1e-19
        old_id, old_cookie = session_id(browser), session_cookie(browser)
        browser.get(f"{TEST_VIEWS}/login")
        new_id, held = session_id(browser), where(cluster)
        assert new_id in held
        assert old_id not in held  # gone from every node
        visited.add(held[new_id])
        thief = webtest.TestApp(browser.app)
        thief.set_cookie("session", old_cookie)
        assert counter(thief.get("/")) == 1
        if len(visited) > 1 and logins >= 3:
            break
    assert len(visited) > 1
    assert counter(browser.get("/")) == 2  # the counter moved with every login


def test_cluster_concurrent_requests_lose_no_increment(cluster: ClusterDeployment) -> None:
    testapp = make_app(cluster.settings())
    testapp.get("/")
    assert count_concurrently(testapp, tabs=8, visits=25) == 1 + 8 * 25 + 1


def test_cluster_app_threads_share_one_client(cluster: ClusterDeployment) -> None:
    settings = read_redis_settings(app_settings_for(cluster.settings()), {})
    made: list[RedisCluster] = []

    def connect() -> RedisCluster:
        made.append(make_redis_client(settings))
        return made[-1]

    store = RedisStore(connect, 60, 3600)
    with ThreadPoolExecutor(max_workers=8) as pool:
        clients = list(pool.map(lambda _: store.connect_once(), range(8)))
    assert len(made) == 1
    assert all(client is made[0] for client in clients)
    assert isinstance(made[0], RedisCluster)
    assert store.increment("shared", "visits", 1, new=True) == 1


def stop_node_and_visit(
    cluster: ClusterDeployment,
    browsers: list[webtest.TestApp],
    stop: Callable[[RedisServer], None],
) -> tuple[RedisServer, dict[int, int], list[Visit]]:
    """Stop the node that holds the first browser's session, then visit with every browser:
    the node, the port of each browser's session, and the visits."""
    held = where(cluster)
    holder = {index: held[session_id(browser)] for index, browser in enumerate(browsers)}
    victim = next(node for node in cluster.nodes if node.port == holder[0])
    stop(victim)
    try:
        return victim, holder, [visit(index, browser) for index, browser in enumerate(browsers)]
    finally:
        victim.start()  # the same port, directory and nodes file: it rejoins


STOPS: dict[str, Callable[[RedisServer], None]] = {
    "sigkill": RedisServer.kill,
    "sigterm": RedisServer.stop,
}


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS)
def test_cluster_node_down_costs_only_its_own_sessions(cluster: ClusterDeployment, stop) -> None:
    app = make_app(cluster.settings()).app
    browsers = [webtest.TestApp(app) for _ in range(24)]
    for browser in browsers:
        browser.get("/")
        browser.get("/howdy")  # every script this test runs is cached on every node

    victim, holder, visits = stop_node_and_visit(cluster, browsers, stop)
    outcome = {v.browser: v.status for v in visits}
    expected = {i: 503 if holder[i] == victim.port else 200 for i in outcome}
    assert outcome == expected
    assert all(v.count == 3 for v in visits if v.status == 200)
    assert max(v.seconds for v in visits) < SLOW_REQUEST

    # The node is back (empty: no replica, no persistence): the app recovers by itself.
    lost = [i for i in outcome if holder[i] == victim.port]
    wait_until(lambda: visit(lost[0], browsers[lost[0]]).status == 200, "the node to serve")
    after = [visit(index, browser) for index, browser in enumerate(browsers)]
    assert {v.status for v in after} == {200}
    assert all(v.count == 4 for v in after if v.browser not in lost)


def test_cluster_node_down_leaves_scripts_new_to_a_node_working(cluster) -> None:
    app = make_app(cluster.settings()).app
    browsers = [webtest.TestApp(app) for _ in range(24)]
    for browser in browsers:
        browser.get("/")  # "increment" and "save" only: "load_and_increment" is cached nowhere

    victim, holder, visits = stop_node_and_visit(cluster, browsers, RedisServer.kill)
    outcome = {v.browser: v.status for v in visits}
    assert outcome == {i: 503 if holder[i] == victim.port else 200 for i in outcome}


def test_cluster_hung_node_is_a_503_within_the_socket_timeout(cluster) -> None:
    timeout = 0.2
    app = make_app({**cluster.settings(), "session.redis_socket_timeout": str(timeout)}).app
    # 24 browsers: the chance that no session lands beside the hung node's is 3**-23.
    browsers = [webtest.TestApp(app) for _ in range(24)]
    for browser in browsers:
        browser.get("/")
        browser.get("/howdy")
    held = where(cluster)
    hung = next(node for node in cluster.nodes if node.port == held[session_id(browsers[0])])
    elsewhere = [i for i, b in enumerate(browsers) if held[session_id(b)] != hung.port][:4]
    os.kill(hung.process.pid, signal.SIGSTOP)
    try:
        stuck = visit(0, browsers[0])
        others = [visit(i, browsers[i]) for i in elsewhere]
    finally:
        os.kill(hung.process.pid, signal.SIGCONT)
    assert elsewhere and {v.status for v in others} == {200}
    assert stuck.status == 503
    assert stuck.seconds < 3 * timeout


# TLS


def test_tls_with_an_unrelated_ca_is_a_503_that_says_why(redis_tls: TLSDeployment, caplog):
    testapp = make_app(redis_tls.settings(ca=redis_tls.wrong_ca))
    with caplog.at_level(logging.ERROR):
        started = time.monotonic()
        response = testapp.get("/", status=503)
    assert time.monotonic() - started < SLOW_REQUEST
    assert "Sessions are unavailable for a moment." in text(response)
    assert "session store unavailable for GET /" in caplog.text
    assert "certificate verify failed" in caplog.text


# Sentinel


def test_sentinel_client_follows_the_sentinels(redis_sentinel: SentinelDeployment) -> None:
    settings = read_redis_settings(app_settings_for(redis_sentinel.settings()), {})
    client = make_redis_client(settings)
    pool = client.connection_pool
    assert (pool.service_name, pool.is_master) == (redis_sentinel.service, True)
    assert pool.get_master_address()[1] in redis_sentinel.primary_ports()
    client.close()


# An ini file set up for Sentinel, where no sentinel answers.
INI_SENTINELS = {
    "session.redis_url": "",
    "session.redis_sentinels": "127.0.0.1:1",
    "session.redis_sentinel_service": "sessions",
}


def test_sentinels_in_the_environment_override_the_ini_url(redis_sentinel, monkeypatch):
    clear(redis_sentinel)
    monkeypatch.setenv(SENTINELS_ENV, redis_sentinel.addresses)
    monkeypatch.setenv(SENTINEL_SERVICE_ENV, redis_sentinel.service)
    testapp = make_app({"session.redis_url": "redis://127.0.0.1:1/0"})  # nothing answers there
    assert counter(testapp.get("/")) == 1
    assert counter(testapp.get("/")) == 2
    assert session_id(testapp) in where(redis_sentinel)


def test_a_url_in_the_environment_overrides_ini_sentinels(redis_url, monkeypatch) -> None:
    monkeypatch.setenv(URL_ENV, redis_url)
    testapp = make_app(INI_SENTINELS)
    assert counter(testapp.get("/")) == 1
    assert counter(testapp.get("/")) == 2


@dataclass
class Failover:
    """What the counter pages saw while the primary died and the replica took over."""

    socket_timeout_s: float
    sessions: int
    sessions_kept: int
    increments_lost: int
    requests: int
    ok: int
    unavailable: int
    errors: int
    kill_to_first_503_s: float | None
    outage_window_s: float | None
    kill_to_promotion_s: float
    kill_to_recovery_s: float
    slowest_request_s: float


class Traffic(threading.Thread):
    """Counter pages, one browser after the other, until told to stop."""

    def __init__(self, browsers: list[webtest.TestApp]) -> None:
        super().__init__(daemon=True)
        self.browsers = browsers
        self.visits: list[Visit] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for index, browser in enumerate(self.browsers):
                self.visits.append(visit(index, browser))

    def served_all_since(self, moment: float) -> bool:
        """Whether every browser got a page from a request sent after ``moment``."""
        ok = {v.browser for v in list(self.visits) if v.started > moment and v.status == 200}
        return len(ok) == len(self.browsers)


def failover_figures(
    traffic: Traffic, before: dict[int, int], killed: float, promoted: float
) -> Failover:
    """The figures of a failover; ``before`` is each session's count a second before."""
    visits = traffic.visits
    failed = [v for v in visits if v.status == 503]
    after = [v for v in visits if v.started > killed and v.status == 200]
    first_after: dict[int, Visit] = {}
    for v in after:
        first_after.setdefault(v.browser, v)
    outage_end = failed[-1].ended if failed else killed
    recovered = min(v.ended for v in after if v.started >= outage_end)
    last_before = {
        index: max((v.count for v in visits if v.browser == index and v.ended < killed), default=0)
        for index in before
    }
    kept = [i for i in before if i in first_after and first_after[i].count > before[i]]
    lost = sum(max(0, last_before[i] + 1 - first_after[i].count) for i in first_after)
    return Failover(
        socket_timeout_s=SOCKET_TIMEOUT,
        sessions=len(before),
        sessions_kept=len(kept),
        increments_lost=lost,
        requests=len(visits),
        ok=sum(v.status == 200 for v in visits),
        unavailable=len(failed),
        errors=sum(v.status not in (200, 503) for v in visits),
        kill_to_first_503_s=round(max(0, failed[0].started - killed), 3) if failed else None,
        outage_window_s=round(failed[-1].ended - failed[0].started, 3) if failed else None,
        kill_to_promotion_s=round(promoted - killed, 3),
        kill_to_recovery_s=round(recovered - killed, 3),
        slowest_request_s=round(max(v.seconds for v in visits), 3),
    )


def test_sentinel_failover_keeps_sessions(redis_sentinel, tmp_path_factory, test_users) -> None:
    """SIGKILL the primary under load: 503 pages until the replica is promoted, then every
    request succeeds (same app, same sessions), and no request hangs; the promoted replica
    lists a user's sessions, and ends them all."""
    deployment = clear(redis_sentinel)
    assert deployment.primary_ports() == {deployment.primary.port}, "run before any failover"
    app = make_app(deployment.settings()).app
    browsers = [*signed_in_browsers(app, "alice", 2), *(webtest.TestApp(app) for _ in range(6))]
    for browser in browsers:
        browser.get("/")
        browser.get("/howdy")
    before = {index: 2 for index in range(len(browsers))}
    cookies = [session_cookie(browser) for browser in browsers]
    time.sleep(1.1)  # every session is now more than a second old

    traffic = Traffic(browsers)
    traffic.start()
    try:
        time.sleep(0.3)
        killed = time.monotonic()
        deployment.primary.kill()
        wait_until(
            lambda: deployment.replica.port in deployment.primary_ports(),
            "the sentinels to name the replica as the primary",
            seconds=15,
        )
        promoted = time.monotonic()
        wait_until(lambda: traffic.served_all_since(promoted), "every session to be served")
        time.sleep(0.3)
    finally:
        traffic.stopping.set()
        traffic.join(timeout=30)

    figures = failover_figures(traffic, before, killed, promoted)
    report = json.dumps(asdict(figures), indent=2)
    print(f"\nSentinel failover (SIGKILL of the primary, loopback):\n{report}")
    (tmp_path_factory.getbasetemp() / "sentinel-failover.json").write_text(report + "\n")

    assert figures.errors == 0, [v for v in traffic.visits if v.status not in (200, 503)]
    assert figures.slowest_request_s < SLOW_REQUEST
    assert [v for v in traffic.visits if v.status == 503 and v.started > promoted] == []
    assert [v for v in traffic.visits if v.status != 200 and v.ended < killed] == []
    assert figures.sessions_kept == len(browsers)
    assert [session_cookie(browser) for browser in browsers] == cookies
    for index in range(len(browsers)):
        counts = [v.count for v in traffic.visits if v.browser == index and v.status == 200]
        assert counts == sorted(set(counts)), f"the count went back for session {index}"
    assert len(listed(app, "alice")) == 2
    post_form(browsers[0], "/sessions/end-all")
    assert (listed(app, "alice"), signed_in_as(browsers[1].get("/"))) == ([], None)


# Settings: refused at start with one line that names what to fix

BASE_SENTINELS = {"session.redis_url": "", "session.redis_sentinels": "127.0.0.1:26379"}
SENTINEL_SERVICE = {"session.redis_sentinel_service": "s"}
REFUSED: dict[str, tuple[dict, dict, str]] = {
    "sentinels-without-a-service": (
        BASE_SENTINELS,
        {},
        r"session\.redis_sentinels needs session\.redis_sentinel_service",
    ),
    "a-service-without-sentinels": (
        {"session.redis_sentinel_service": "sessions"},
        {},
        r"session\.redis_sentinel_service is set, but no sentinels",
    ),
    "a-service-in-the-environment-without-sentinels": (
        {},
        {SENTINEL_SERVICE_ENV: "sessions"},
        rf"{SENTINEL_SERVICE_ENV} is set, but no sentinels",
    ),
    "sentinels-and-a-url-in-the-ini": (
        {**BASE_SENTINELS, "session.redis_url": "redis://127.0.0.1:6379/0"},
        {},
        r"session\.redis_url and session\.redis_sentinels exclude each other",
    ),
    "sentinels-and-a-url-in-the-environment": (
        {},
        {URL_ENV: "redis://127.0.0.1:6379/0", SENTINELS_ENV: "127.0.0.1:26379"},
        rf"{URL_ENV} and {SENTINELS_ENV} exclude each other",
    ),
    "sentinels-and-a-cluster": (
        {**BASE_SENTINELS, **SENTINEL_SERVICE, "session.redis_cluster": "true"},
        {},
        r"session\.redis_cluster and session\.redis_sentinels exclude each other",
    ),
    "cluster-on-a-unix-socket": (
        {"session.redis_url": "unix:///run/redis/redis.sock", "session.redis_cluster": "true"},
        {},
        r"session\.redis_cluster needs session\.redis_url to name one node",
    ),
    "cluster-with-database-1": (
        {"session.redis_url": "redis://127.0.0.1:7000/1", "session.redis_cluster": "true"},
        {},
        r"a Redis Cluster has only database 0; session\.redis_url names '1'",
    ),
    "cluster-with-a-database-in-the-environment": (
        {"session.redis_cluster": "true"},
        {URL_ENV: "rediss://127.0.0.1:7000/2"},
        rf"a Redis Cluster has only database 0; {URL_ENV} names '2'",
    ),
    "primary-password-without-sentinel": (
        {},
        {PASSWORD_ENV: "not-used"},
        rf"{PASSWORD_ENV} is for Sentinel only",
    ),
    "sentinel-password-without-sentinel": (
        {},
        {SENTINEL_PASSWORD_ENV: "not-used"},
        rf"{SENTINEL_PASSWORD_ENV} is for Sentinel only",
    ),
    "no-redis-at-all": ({"session.redis_url": ""}, {}, r"no Redis: set session\.redis_url"),
    "not-a-redis-url": (
        {"session.redis_url": "http://127.0.0.1:6379/0"},
        {},
        r"session\.redis_url is not a Redis URL redis-py can use \(.*redis://, rediss://",
    ),
    "one-slash-only": (
        {"session.redis_url": "redis:/127.0.0.1:6379/0"},
        {},
        r"session\.redis_url is not a Redis URL redis-py can use",
    ),
    "port-out-of-range": (
        {"session.redis_url": "redis://127.0.0.1:99999/0"},
        {},
        r"session\.redis_url is not a Redis URL redis-py can use \(Port out of range",
    ),
    "a-query-value-redis-py-refuses": (
        {"session.redis_url": "redis://127.0.0.1:6379/0?socket_timeout=soon"},
        {},
        r"session\.redis_url is not a Redis URL redis-py can use \(Invalid value",
    ),
    "no-host-would-mean-localhost": (
        {"session.redis_url": "redis:///0"},
        {},
        r"session\.redis_url names no host \(or socket path\): 'redis:///0'",
    ),
    "no-socket-path": (
        {"session.redis_url": "unix://"},
        {},
        r"session\.redis_url names no host \(or socket path\)",
    ),
}
MALFORMED_SENTINELS = {
    "no-port": "127.0.0.1",
    "port-0": "127.0.0.1:0",
    "port-65536": "127.0.0.1:65536",
    "named-port": "127.0.0.1:redis",
    "ipv6-without-brackets": "::1:26379",
    "comma-separated": "10.0.0.1:26379,10.0.0.2:26379",
    "one-good-one-bad": "10.0.0.1:26379 10.0.0.2",
}
for name, address in MALFORMED_SENTINELS.items():
    REFUSED[f"sentinel-address-{name}"] = (
        {**BASE_SENTINELS, **SENTINEL_SERVICE, "session.redis_sentinels": address},
        {},
        r"session\.redis_sentinels must be host:port addresses separated by spaces",
    )


@pytest.mark.parametrize(("ini", "environ", "message"), REFUSED.values(), ids=REFUSED)
def test_conflicting_or_incomplete_redis_settings_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, ini: dict, environ: dict, message: str
) -> None:
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=f"refusing to start: {message}") as refused:
        main({}, **{**development_settings(), **ini})
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@127.0.0.1:6379/0",
        "redis://user:hunter2@127.0.0.1:99999/0",
        "redis://:hun/ter2#x?y@127.0.0.1:99999/0",
        "redis://127.0.0.1:99999/0?password=hunter2",
    ],
    ids=["wrong-scheme", "port-out-of-range", "password-with-slash-hash-question", "query"],
)
def test_a_refused_url_is_shown_without_its_credentials(monkeypatch, url: str) -> None:
    monkeypatch.setenv(URL_ENV, url)
    with pytest.raises(SystemExit, match=rf"refusing to start: {URL_ENV} ") as refused:
        main({}, **development_settings())
    assert "hunter2" not in str(refused.value)
    assert "ter2" not in str(refused.value)
    assert "***" in str(refused.value)


def test_sentinel_addresses_and_passwords() -> None:
    ini = {
        "session.redis_url": "",
        "session.redis_sentinels": " [::1]:26379   10.0.0.2:26380 ",
        "session.redis_sentinel_service": "sessions",
    }
    environ = {PASSWORD_ENV: "primary-secret", SENTINEL_PASSWORD_ENV: "sentinel-secret"}
    settings = read_redis_settings(ini, environ)
    assert settings.topology == "sentinel"
    assert settings.sentinels == (("::1", 26379), ("10.0.0.2", 26380))
    assert (settings.password, settings.sentinel_password) == ("primary-secret", "sentinel-secret")
    assert "secret" not in repr(settings)


def test_the_topology_follows_the_settings() -> None:
    cluster = {"session.redis_url": "redis://127.0.0.1:7000", "session.redis_cluster": "yes"}
    assert read_redis_settings(cluster, {}).topology == "cluster"
    assert read_redis_settings({"session.redis_url": "unix:///run/r.sock"}, {}).topology == (
        "server"
    )
    ini_sentinels = {"session.redis_url": "", "session.redis_sentinels": "10.0.0.2:26379"}
    from_env = read_redis_settings(ini_sentinels, {URL_ENV: "redis://10.0.0.1:6379/0"})
    assert (from_env.topology, from_env.url) == ("server", "redis://10.0.0.1:6379/0")


def test_the_shell_cannot_choose_the_redis_under_test() -> None:
    """conftest's clean_environment removes every Redis variable before each test."""
    variables = {URL_ENV, SENTINELS_ENV, SENTINEL_SERVICE_ENV, PASSWORD_ENV, SENTINEL_PASSWORD_ENV}
    assert variables <= set(SETTINGS_ENV)
    assert [name for name in variables if name in os.environ] == []

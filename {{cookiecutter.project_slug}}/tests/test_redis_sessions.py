"""Redis sessions: a signed id in the cookie, JSON in Redis, revocable, atomic, fault-tolerant."""

from __future__ import annotations

import logging
import os
import signal
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import webtest
from helpers import (
    STORE_FAILURE_PAGES,
    CountedLock,
    assert_corruption_gives_a_fresh_session,
    assert_security_headers,
    counter,
    csrf_token,
    post_form,
    text,
    valid_cookie,
    visit_with,
)
from redis_servers import RedisServer

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.redis.client import (
    ThreadConnections,
    call_if_alive,
)
from {{ cookiecutter.project_slug }}.sessions.redis.store import KEY_PREFIX, RedisStore
from {{ cookiecutter.project_slug }}.sessions.settings import session_settings


def test_a_counter_is_a_field_of_the_hash_that_expires(
    testapp, stored, redis_client, app_settings
) -> None:
    testapp.get("/")
    testapp.get("/howdy")
    [session_id] = stored.ids()
    assert stored.counter(session_id) == 2
    timeout = session_settings(app_settings).timeout
    assert timeout - 5 < redis_client.ttl(KEY_PREFIX + session_id) <= timeout


# Ways a session's hash can be damaged (by hand, a bug, another program, a bad restore).
CORRUPTIONS: dict[str, Callable[[redis.Redis, str], object]] = {
    "data-not-json": lambda client, key: client.hset(key, "data", b"\x80\x04not json"),
    "data-not-an-object": lambda client, key: client.hset(key, "data", "[1, 2]"),
    "data-nested-too-deeply": lambda client, key: client.hset(
        key, "data", "[" * 100_000 + "]" * 100_000
    ),
    "data-with-a-lone-surrogate": lambda client, key: client.hset(
        key, "data", '{"_f_messages": [["info", "\\udcff"]]}'
    ),
    "data-missing": lambda client, key: client.hdel(key, "data"),
    "created-not-a-number": lambda client, key: client.hset(key, "created", "yesterday"),
    "created-a-float": lambda client, key: client.hset(key, "created", "1.7e9"),
    "created-in-the-future": lambda client, key: client.hset(key, "created", 4_000_000_000),
    "created-missing": lambda client, key: client.hdel(key, "created"),
    "not-a-hash": lambda client, key: client.set(key, "a string"),
}
# A counter's value damaged: the session is corrupt when that counter is counted (a page
# that only reads the session still reads it).
COUNTER_CORRUPTIONS = {
    "counter-not-a-number": "many",
    "counter-a-float": "1.5",
    "counter-about-to-overflow": 10**18 - 1,
    "counter-past-18-digits": -(10**18),
    "counter-past-64-bits": 2**63 - 1,
    "counter-with-a-leading-zero": "007",  # HINCRBY refuses these
    "counter-minus-zero": "-0",
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS)
@pytest.mark.parametrize("first_request", ["counter-page", "form-post"])
def test_corrupt_stored_data_is_deleted_for_a_fresh_session(
    testapp, stored, redis_client, corrupt, first_request: str
) -> None:
    """Never a 503 repeated until the key expires either."""
    assert_corruption_gives_a_fresh_session(
        testapp,
        stored,
        lambda session_id: corrupt(redis_client, KEY_PREFIX + session_id),
        first_request,
    )


@pytest.mark.parametrize("value", COUNTER_CORRUPTIONS.values(), ids=COUNTER_CORRUPTIONS)
def test_a_corrupt_counter_gives_a_fresh_session_when_counted(
    testapp, stored, redis_client, value
) -> None:
    assert_corruption_gives_a_fresh_session(
        testapp,
        stored,
        lambda session_id: redis_client.hset(KEY_PREFIX + session_id, "count:visits", value),
    )


# Counters Lua's floats cannot hold exactly (past 2**53), up to the last one allowed.
EXACT_COUNTS = {"past-float-precision": 2**53 + 2, "at-the-limit": 10**18 - 2}


@pytest.mark.parametrize("before", EXACT_COUNTS.values(), ids=EXACT_COUNTS)
def test_a_large_counter_counts_exactly(testapp, stored, redis_client, before: int) -> None:
    testapp.get("/")
    [session_id] = stored.ids()
    redis_client.hset(KEY_PREFIX + session_id, "count:visits", before)
    assert counter(testapp.get("/")) == before + 1
    assert stored.ids() == [session_id]


def test_no_log_line_names_a_session_id(testapp, stored, redis_client, caplog) -> None:
    """A session id is a bearer credential (with the secret, a cookie): never logged."""
    with caplog.at_level(logging.DEBUG):
        testapp.get("/")
        [session_id] = stored.ids()
        redis_client.hset(KEY_PREFIX + session_id, "data", "not json")
        testapp.get("/")
        [fresh_id] = stored.ids()
        post_form(testapp, "/forget")
    assert "fresh session" in caplog.text
    assert session_id not in caplog.text
    assert fresh_id not in caplog.text


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, that it may stop and start again."""
    server = RedisServer().start()
    yield server
    server.stop()


def test_redis_outage_is_a_503_page_and_recovers(app_settings, outage_redis, caplog) -> None:
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.redis_url": outage_redis.url}))
    testapp.get("/")
    outage_redis.stop()
    with caplog.at_level(logging.ERROR):
        response = testapp.get("/howdy", status=503)
    assert "Sessions are unavailable for a moment." in text(response)
    assert response.headers["Retry-After"] == "5"
    assert "session store unavailable for GET /howdy" in caplog.text
    outage_redis.start()
    assert counter(testapp.get("/")) == 1


def watch_round_trips(monkeypatch: pytest.MonkeyPatch, failing: str = "") -> list[str]:
    """The names of the scripts the app runs from now on, one per round trip to Redis.

    The script named ``failing`` raises ConnectionError instead of running.
    """
    names: list[str] = []
    run = RedisStore.run

    def watched(store: RedisStore, name: str, *args, **kwargs):
        names.append(name)
        if name == failing:
            raise redis.ConnectionError(f"Redis went away in {name}")
        return run(store, name, *args, **kwargs)

    monkeypatch.setattr(RedisStore, "run", watched)
    return names


# Which request fails, for a Redis failure in each of the session's round trips.
FAILING_ROUND_TRIPS = {
    "load": ("post", "/flash"),  # the CSRF check loads the session
    "load_and_increment": ("get", "/howdy"),
    "save": ("post", "/flash"),  # after the view, outside Pyramid's exception views
}


@pytest.mark.parametrize("script", FAILING_ROUND_TRIPS, ids=lambda name: f"{name}-fails")
def test_redis_failing_in_any_round_trip_is_a_503(testapp, monkeypatch, caplog, script) -> None:
    token = csrf_token(testapp.get("/"))
    watch_round_trips(monkeypatch, failing=script)
    method, path = FAILING_ROUND_TRIPS[script]
    form = {"csrf_token": token, "category": "info", "message": "hello"}
    options = {"params": form} if method == "post" else {}
    response = getattr(testapp, method)(path, status=503, **options)
    assert "Sessions are unavailable for a moment." in text(response)
    assert f"Redis went away in {script}" in caplog.text


def test_redis_failing_for_a_new_visitor_is_a_503_without_a_write(testapp, monkeypatch) -> None:
    names = watch_round_trips(monkeypatch, failing="increment")
    testapp.get("/", status=503)
    assert names == ["increment"]  # no second wait for a Redis that just failed


def test_hung_redis_is_a_503_within_the_socket_timeout(app_settings, outage_redis) -> None:
    settings = {
        **app_settings,
        "session.redis_url": outage_redis.url,
        "session.redis_socket_timeout": "0.5",
    }
    testapp = webtest.TestApp(main({}, **settings))
    testapp.get("/")
    token = csrf_token(testapp.get("/"))
    os.kill(outage_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        testapp.get("/howdy", status=503)
        testapp.post("/reset", {"csrf_token": token}, status=503)
        assert time.monotonic() - started < 4
    finally:
        os.kill(outage_redis.process.pid, signal.SIGCONT)
    # The hung /howdy's count reached Redis before the timeout and may run once it resumes
    # (a timed-out request may have happened, as with any store); never twice.
    assert counter(testapp.get("/")) in (3, 4)


def test_the_client_is_made_once_for_all_threads(redis_url: str) -> None:
    """The first requests race to make the client; one makes it, the others use it."""
    made = []

    def connect() -> redis.Redis:
        store._lock.wait_for_tries(4)  # every thread waits for this one
        made.append(redis.Redis.from_url(redis_url))
        return made[-1]

    store = RedisStore(connect, 60, 60)
    store._lock = CountedLock()
    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = list(pool.map(lambda _: store.client, range(4)))
    assert len(made) == 1
    assert clients == made * 4
    assert store.run("load", [KEY_PREFIX + "nobody"]) is None


def connections_made(redis_client: redis.Redis) -> int:
    """How many connections the Redis server accepted since it started."""
    return redis_client.info("stats")["total_connections_received"]


def test_a_thread_sends_the_scripts_on_a_connection_of_its_own(testapp, redis_client) -> None:
    """redis-py's client checks a connection out of its pool and back in for every
    command, and looks for unread data on it first: a thread keeps one of its own."""
    testapp.get("/")
    made = connections_made(redis_client)
    assert [counter(testapp.get("/howdy")) for _ in range(3)] == [2, 3, 4]
    assert connections_made(redis_client) == made
    with ThreadPoolExecutor(1) as another_thread:
        assert counter(another_thread.submit(testapp.get, "/howdy").result()) == 5
    assert connections_made(redis_client) == made + 1


def test_a_connection_redis_closed_is_found_before_a_command_goes_out(
    testapp, redis_client
) -> None:
    """A restart, a failover, Redis's idle timeout, a CLIENT KILL: a command sent on the
    closed connection would fail, and no one could tell whether it ran."""
    testapp.get("/")
    # Every connection but this test's: the app's ran EVALSHA, or EVAL when the script
    # was new to Redis (picking them by command killed none when this test came first).
    assert redis_client.client_kill_filter(_type="normal", skipme=True) >= 1
    assert counter(testapp.get("/howdy")) == 2


def test_a_forked_worker_sends_on_a_connection_of_its_own(testapp, redis_client) -> None:
    """gunicorn --preload forks workers after the app used Redis: a worker that used its
    parent's connection would mix up their replies."""
    testapp.get("/")
    made = connections_made(redis_client)
    child = os.fork()
    if child == 0:  # the worker
        status = 1
        try:
            status = 0 if counter(testapp.get("/howdy")) == 2 else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counter(testapp.get("/howdy")) == 3  # on the parent's connection, which still works
    assert connections_made(redis_client) == made + 1


def test_fork_handlers_run_for_live_objects_only() -> None:
    """What a forked process runs (the fork test's child cannot report its coverage): a
    live object forgets its threads' connections; a collected one is left alone."""

    class Owner:
        def method(self) -> None:
            raise AssertionError("called after its object was collected")

    owner = Owner()
    method = weakref.WeakMethod(owner.method)
    del owner
    call_if_alive(method)
    connections = ThreadConnections(redis.ConnectionPool())
    connections.local.connection = "the parent's"
    call_if_alive(weakref.WeakMethod(connections.start_afresh))
    assert getattr(connections.local, "connection", None) is None


def test_a_counter_page_costs_one_round_trip(testapp, monkeypatch) -> None:
    testapp.get("/")
    names = watch_round_trips(monkeypatch)
    assert counter(testapp.get("/howdy")) == 2
    assert names == ["load_and_increment"]


def test_a_new_visitor_costs_an_increment_and_a_save(testapp, monkeypatch) -> None:
    names = watch_round_trips(monkeypatch)
    assert counter(testapp.get("/")) == 1
    assert names == ["increment", "save"]


def session_key(redis_client: redis.Redis) -> bytes:
    """The Redis key of the one stored session."""
    [key] = redis_client.scan_iter(f"{KEY_PREFIX}*")
    return key


def test_a_session_past_its_absolute_timeout_is_deleted(app, app_settings, redis_client) -> None:
    cookie = valid_cookie(app)
    old_key = session_key(redis_client)
    lifetime = session_settings(app_settings).absolute_timeout
    redis_client.hset(old_key, "created", int(time.time()) - lifetime - 1)
    assert counter(visit_with(app, cookie)) == 1
    assert not redis_client.exists(old_key)


def test_redis_expires_a_session_at_its_absolute_timeout(app, app_settings, redis_client) -> None:
    cookie = valid_cookie(app)
    settings = session_settings(app_settings)
    left = settings.timeout // 2  # sooner than the idle timeout: the absolute end decides
    created = int(time.time()) - settings.absolute_timeout + left
    redis_client.hset(session_key(redis_client), "created", created)
    assert counter(visit_with(app, cookie)) == 3
    assert 0 < redis_client.ttl(session_key(redis_client)) <= left


def test_session_expired_by_redis_starts_afresh(app, redis_client: redis.Redis) -> None:
    cookie = valid_cookie(app)
    redis_client.pexpire(session_key(redis_client), 1)
    time.sleep(0.01)
    assert counter(visit_with(app, cookie)) == 1


def test_every_visit_renews_the_expiry(app, app_settings, redis_client: redis.Redis) -> None:
    cookie = valid_cookie(app)
    redis_client.expire(session_key(redis_client), 5)
    assert counter(visit_with(app, cookie)) == 3
    assert redis_client.ttl(session_key(redis_client)) > int(app_settings["session.timeout"]) - 5


@pytest.mark.parametrize("page", STORE_FAILURE_PAGES.values(), ids=STORE_FAILURE_PAGES)
def test_503_pages_carry_the_security_headers(testapp, monkeypatch, page) -> None:
    def fail(name: str) -> None:
        watch_round_trips(monkeypatch, failing=name)

    assert_security_headers(page(testapp, fail))


def test_the_503_page_of_a_stopped_redis_carries_the_security_headers(
    app_settings: dict, outage_redis: RedisServer
) -> None:
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.redis_url": outage_redis.url}))
    testapp.get("/")
    outage_redis.stop()
    assert_security_headers(testapp.get("/howdy", status=503))

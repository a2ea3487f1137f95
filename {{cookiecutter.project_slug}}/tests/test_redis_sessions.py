"""Redis sessions: a signed id in the cookie, JSON in Redis, revocable, atomic, fault-tolerant."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import webtest
from conftest import RedisServer, app_with_test_views, login_view
from helpers import (
    count_concurrently,
    counter,
    csrf_token,
    flash_groups,
    post_form,
    session_cookie,
    text,
)
from pyramid.request import Request
from pyramid.response import Response

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.redis_settings import read_redis_settings
from {{ cookiecutter.project_slug }}.redis_store import KEY_PREFIX, RedisStore, make_redis_store
from {{ cookiecutter.project_slug }}.sessions import (
    ServerSession,
    increment_counter,
    make_session_factory,
    regenerate_session,
)
from {{ cookiecutter.project_slug }}.settings import SECRET_BYTES, session_settings


def session_ids(client: redis.Redis) -> list[str]:
    """The ids of the sessions stored in Redis."""
    return [key.decode().removeprefix(KEY_PREFIX) for key in client.scan_iter(f"{KEY_PREFIX}*")]


def stored_count(client: redis.Redis, session_id: str) -> int:
    """The counter Redis holds for ``session_id``."""
    return int(client.hget(KEY_PREFIX + session_id, "counter"))


def stored_data(client: redis.Redis, session_id: str) -> dict:
    """The session data Redis holds for ``session_id``."""
    return json.loads(client.hget(KEY_PREFIX + session_id, "data"))


def test_cookie_carries_only_a_signed_id(testapp: webtest.TestApp, redis_client) -> None:
    testapp.get("/")
    cookie = session_cookie(testapp)
    [session_id] = session_ids(redis_client)
    signed = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    assert signed.endswith(session_id.encode())
    assert len(signed) == 64 + len(session_id)  # an HMAC-SHA512 signature, then the id
    assert "_csrft_" in stored_data(redis_client, session_id)


def test_counter_is_a_redis_integer_that_expires(testapp: webtest.TestApp, redis_client) -> None:
    testapp.get("/")
    testapp.get("/howdy")
    [session_id] = session_ids(redis_client)
    assert stored_count(redis_client, session_id) == 2
    assert 0 < redis_client.ttl(KEY_PREFIX + session_id) <= {{ cookiecutter.session_timeout }}


def test_concurrent_requests_lose_no_increment(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    assert count_concurrently(testapp, tabs=8, visits=25) == 1 + 8 * 25 + 1


def test_forget_revokes_the_old_cookie(testapp: webtest.TestApp, redis_client) -> None:
    testapp.get("/")
    testapp.get("/")
    copied = session_cookie(testapp)
    [old_id] = session_ids(redis_client)
    post_form(testapp, "/forget")
    assert old_id not in session_ids(redis_client)
    thief = webtest.TestApp(testapp.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def test_regenerate_moves_data_and_counter_to_a_new_id(app_with_login, redis_client) -> None:
    app_with_login.get("/")
    app_with_login.get("/")
    [old_id] = session_ids(redis_client)
    copied = session_cookie(app_with_login)
    token = stored_data(redis_client, old_id)["_csrft_"]
    assert app_with_login.get("/login").json["session"]["_csrft_"] != token
    [new_id] = session_ids(redis_client)
    assert new_id != old_id
    assert stored_count(redis_client, new_id) == 2
    assert stored_data(redis_client, new_id)["_csrft_"] != token
    assert counter(app_with_login.get("/")) == 3
    thief = webtest.TestApp(app_with_login.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def count_and_write(request: Request) -> None:
    """Count a visit and store something."""
    increment_counter(request)
    request.session["late"] = "written after the other tab finished"


def slow_view(request: Request) -> dict:
    """Read the session first (as a security policy would), let another tab's request run
    to completion (``meanwhile``), then change the session (``afterwards``)."""
    request.session.get("_csrft_")
    request.registry["meanwhile"]()
    request.registry["afterwards"](request)
    return {"session": dict(request.session)}


@pytest.fixture
def app_with_a_slow_view(app_settings: dict) -> webtest.TestApp:
    """The app, a /login view, and /slow, inside which another request runs."""
    return app_with_test_views(app_settings, login=login_view, slow=slow_view)


# What another tab of the same browser does while /slow runs: each revokes the old id.
MEANWHILE: dict[str, Callable[[webtest.TestApp], object]] = {
    "forget": lambda tab: post_form(tab, "/forget"),
    "login": lambda tab: tab.get("/login"),
}
# What /slow does after that.
AFTERWARDS: dict[str, Callable[[Request], object]] = {
    "count-and-write": count_and_write,
    "login": regenerate_session,
}


@pytest.mark.parametrize("afterwards", AFTERWARDS.values(), ids=AFTERWARDS)
@pytest.mark.parametrize("meanwhile", MEANWHILE.values(), ids=MEANWHILE)
def test_a_session_revoked_during_a_request_stays_revoked(
    app_with_a_slow_view, redis_client, meanwhile, afterwards
) -> None:
    browser = app_with_a_slow_view
    token = csrf_token(browser.get("/"))
    old_cookie = session_cookie(browser)
    [old_id] = session_ids(redis_client)
    other_tab = webtest.TestApp(browser.app)
    other_tab.set_cookie("session", old_cookie)
    browser.app.registry.update(meanwhile=lambda: meanwhile(other_tab), afterwards=afterwards)

    slow = browser.get("/slow").json["session"]  # it went on with a fresh session
    assert slow.get("counter", 1) == 1
    assert slow.get("_csrft_") != token
    assert old_id not in session_ids(redis_client)
    stored_tokens = [
        stored_data(redis_client, sid).get("_csrft_") for sid in session_ids(redis_client)
    ]
    assert token not in stored_tokens
    replayed = webtest.TestApp(browser.app)
    replayed.set_cookie("session", old_cookie)
    page = replayed.get("/")
    assert (counter(page), csrf_token(page) == token) == (1, False)


def test_a_session_read_before_counting_counts_on(app_with_a_slow_view, redis_client) -> None:
    browser = app_with_a_slow_view
    browser.get("/")
    browser.app.registry.update(meanwhile=lambda: None, afterwards=count_and_write)
    assert browser.get("/slow").json["session"]["late"]
    [session_id] = session_ids(redis_client)
    assert stored_count(redis_client, session_id) == 2
    assert stored_data(redis_client, session_id)["late"]


def test_regenerate_a_session_without_a_counter(app_with_login, redis_client) -> None:
    assert list(app_with_login.get("/login").json["session"]) == ["_csrft_"]
    assert counter(app_with_login.get("/")) == 1


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
    "counter-not-a-number": lambda client, key: client.hset(key, "counter", "many"),
    "counter-a-float": lambda client, key: client.hset(key, "counter", "1.5"),
    "counter-about-to-overflow": lambda client, key: client.hset(key, "counter", 2**63 - 1),
    "not-a-hash": lambda client, key: client.set(key, "a string"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS)
@pytest.mark.parametrize("first_request", ["counter-page", "form-post"])
def test_corrupt_stored_data_is_deleted_for_a_fresh_session(
    testapp, redis_client, corrupt, first_request: str
) -> None:
    """Never a 500, nor a 503 repeated until the key expires: a fresh session at once."""
    token = csrf_token(testapp.get("/"))
    [session_id] = session_ids(redis_client)
    corrupt(redis_client, KEY_PREFIX + session_id)
    if first_request == "counter-page":  # loads and counts in one script
        assert counter(testapp.get("/")) == 1
    else:  # loads for the CSRF check: the fresh session has another token
        testapp.post("/reset", {"csrf_token": token}, status=400)
    assert session_id not in session_ids(redis_client)
    assert counter(testapp.get("/")) == (2 if first_request == "counter-page" else 1)


# Session data that is a JSON object, with values of the wrong type where the app looks.
WRONG_TYPES = {
    "flash-queue-not-a-list": {"_f_messages": 5},
    "csrf-token-not-text": {"_csrft_": 5},
    "csrf-token-not-ascii": {"_csrft_": "€"},
    "both": {"_f_messages": "many", "_csrft_": ["a"]},
}


@pytest.mark.parametrize("data", WRONG_TYPES.values(), ids=WRONG_TYPES)
def test_stored_values_of_the_wrong_type_do_no_harm(testapp, redis_client, data) -> None:
    testapp.get("/")
    [session_id] = session_ids(redis_client)
    redis_client.hset(KEY_PREFIX + session_id, "data", json.dumps(data))
    token = csrf_token(testapp.get("/"))
    post_form(testapp, "/flash", token, category="info", message="still works")
    assert flash_groups(testapp.get("/")) == {"info": ["still works"]}


def test_no_log_line_names_a_session_id(testapp, redis_client, caplog) -> None:
    """A session id is a bearer credential (with the secret, a cookie): never logged."""
    with caplog.at_level(logging.DEBUG):
        testapp.get("/")
        [session_id] = session_ids(redis_client)
        redis_client.hset(KEY_PREFIX + session_id, "data", "not json")
        testapp.get("/")
        [fresh_id] = session_ids(redis_client)
        post_form(testapp, "/forget")
    assert "fresh session" in caplog.text
    assert session_id not in caplog.text
    assert fresh_id not in caplog.text


def test_garbage_in_the_cookie_starts_a_fresh_session(testapp, redis_client) -> None:
    testapp.set_cookie("session", "garbage")
    assert counter(testapp.get("/")) == 1


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
    "load_and_count": ("get", "/howdy"),
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
    names = watch_round_trips(monkeypatch, failing="count")
    testapp.get("/", status=503)
    assert names == ["count"]  # no second wait for a Redis that just failed


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
        time.sleep(0.05)  # let the other threads arrive while this one connects
        made.append(redis.Redis.from_url(redis_url))
        return made[-1]

    store = RedisStore(connect, 60, 60)
    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = list(pool.map(lambda _: store.client, range(4)))
    assert len(made) == 1
    assert clients == made * 4
    assert store.run("load", [KEY_PREFIX + "nobody"]) is None


def test_a_counter_page_costs_one_round_trip(testapp, monkeypatch) -> None:
    testapp.get("/")
    names = watch_round_trips(monkeypatch)
    assert counter(testapp.get("/howdy")) == 2
    assert names == ["load_and_count"]


def test_a_new_visitor_costs_a_count_and_a_save(testapp, monkeypatch) -> None:
    names = watch_round_trips(monkeypatch)
    assert counter(testapp.get("/")) == 1
    assert names == ["count", "save"]


def redis_session(app_settings: dict, cookie: str = "") -> ServerSession:
    """A session of the app's factory for a request that sends ``cookie``."""
    settings = session_settings(app_settings)
    store = make_redis_store(
        read_redis_settings(app_settings, {}), settings.timeout, settings.absolute_timeout
    )
    request = Request.blank("/", headers={"Cookie": f"session={cookie}"} if cookie else {})
    return make_session_factory(settings, store)(request)


def test_a_revoked_session_is_not_written_back(app_settings, testapp, redis_client) -> None:
    """A request that loaded the session before another revoked it cannot bring it back."""
    testapp.get("/")
    [session_id] = session_ids(redis_client)
    session = redis_session(app_settings, session_cookie(testapp))
    request = session.request
    assert session.get("_csrft_")  # loaded: the session exists
    redis_client.delete(KEY_PREFIX + session_id)  # "forget" in another tab
    session.flash("late")
    session.write_back(request, Response())
    assert session_ids(redis_client) == []


def test_invalidating_without_new_data_deletes_the_cookie(app_settings, testapp, redis_client):
    testapp.get("/")
    session = redis_session(app_settings, session_cookie(testapp))
    request = session.request
    session.invalidate()
    response = Response()
    session.write_back(request, response)
    assert session_ids(redis_client) == []
    assert response.headers["Set-Cookie"].startswith("session=; Max-Age=0; Path=/; HttpOnly")


def test_the_session_is_a_mutable_mapping(app_settings, redis_client) -> None:
    session = redis_session(app_settings)
    session.update(a=1, b=2)
    del session["a"]
    assert ("a" in session, "b" in session, len(session), list(session)) == (False, True, 1, ["b"])
    assert session.pop("b") == 2
    assert dict(session) == {}


NEW_SESSION_OPERATIONS = {
    "reset_counter": lambda session: session.reset_counter(),
    "invalidate": lambda session: session.invalidate(),
    "read": lambda session: session.get("counter"),
}


@pytest.mark.parametrize("operation", NEW_SESSION_OPERATIONS.values(), ids=NEW_SESSION_OPERATIONS)
def test_a_new_session_that_stores_nothing_leaves_no_trace(app_settings, redis_client, operation):
    session = redis_session(app_settings)
    request = session.request
    operation(session)
    response = Response()
    session.write_back(request, response)
    assert session_ids(redis_client) == []
    assert "Set-Cookie" not in response.headers


def test_re_signing_a_cookie_leaves_unread_data_alone(app_settings, redis_client) -> None:
    """A request that never reads the session only re-signs a cookie of an older secret."""
    old_secret = app_settings["session.secret"]
    rotated = {
        **app_settings,
        "session.secret": secrets.token_hex(SECRET_BYTES),
        "session.secret_fallbacks": old_secret,
    }
    before = webtest.TestApp(main({}, **app_settings))
    before.get("/")
    [session_id] = session_ids(redis_client)
    stored = stored_data(redis_client, session_id)
    session = redis_session(rotated, session_cookie(before))
    request = session.request
    response = Response()
    session.write_back(request, response)
    assert stored_data(redis_client, session_id) == stored
    assert response.headers["Set-Cookie"].startswith("session=")
    new_cookie = response.headers["Set-Cookie"].split(";")[0].removeprefix("session=")
    new_secret_only = {**app_settings, "session.secret": rotated["session.secret"]}
    assert redis_session(new_secret_only, new_cookie).session_id == session_id


def test_a_session_read_after_its_response_went_out_still_loads(app_settings, caplog) -> None:
    """A finished callback may read the session after write_back let go of the request."""
    cookie_of_a_gone_session = redis_session(app_settings).signer.dumps("gone").decode()
    session = redis_session(app_settings, cookie_of_a_gone_session)
    session.changed()
    session.write_back(session.request, Response())
    with caplog.at_level(logging.DEBUG):
        assert session.get("counter") is None
    assert "fresh session: the stored one is gone" in caplog.text

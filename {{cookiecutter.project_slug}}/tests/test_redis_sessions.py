"""Redis sessions: a signed id in the cookie, JSON in Redis, revocable, atomic, fault-tolerant."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import webtest
from conftest import RedisServer
from helpers import counter, csrf_token, post_form, session_cookie, text
from pyramid_session_redis.session import RedisSession

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions import COUNTER_KEY_PREFIX


def session_ids(client: redis.Redis) -> list[str]:
    """The ids of the sessions stored in Redis."""
    return [
        key.decode()
        for key in client.scan_iter()
        if not key.startswith(COUNTER_KEY_PREFIX.encode())
    ]


def stored_count(client: redis.Redis, session_id: str) -> int:
    """The counter Redis holds for ``session_id``."""
    return int(client.get(COUNTER_KEY_PREFIX + session_id))


def test_cookie_carries_only_a_signed_id(testapp: webtest.TestApp, redis_client) -> None:
    testapp.get("/")
    cookie = session_cookie(testapp)
    [session_id] = session_ids(redis_client)
    signed = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    assert signed.endswith(session_id.encode())
    assert len(signed) == 64 + len(session_id)  # an HMAC-SHA512 signature, then the id
    stored = json.loads(redis_client.get(session_id))
    assert "_csrft_" in stored["m"]


def test_counter_is_a_redis_integer_that_expires(testapp: webtest.TestApp, redis_client) -> None:
    testapp.get("/")
    testapp.get("/howdy")
    [session_id] = session_ids(redis_client)
    assert stored_count(redis_client, session_id) == 2
    assert 0 < redis_client.ttl(COUNTER_KEY_PREFIX + session_id) <= {{ cookiecutter.session_timeout }}
    assert 0 < redis_client.ttl(session_id) <= {{ cookiecutter.session_timeout }}


def test_concurrent_requests_lose_no_increment(app, testapp: webtest.TestApp) -> None:
    testapp.get("/")
    cookie = session_cookie(testapp)

    def visit_many(_: int) -> None:
        browser_tab = webtest.TestApp(app)
        browser_tab.set_cookie("session", cookie)
        for _ in range(25):
            browser_tab.get("/howdy")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(visit_many, range(8)))
    assert counter(testapp.get("/")) == 1 + 8 * 25 + 1


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
    token = json.loads(redis_client.get(old_id))["m"]["_csrft_"]
    assert app_with_login.get("/login").json["session"]["_csrft_"] == token
    [new_id] = session_ids(redis_client)
    assert new_id != old_id
    assert stored_count(redis_client, new_id) == 2
    assert counter(app_with_login.get("/")) == 3
    thief = webtest.TestApp(app_with_login.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def test_regenerate_a_session_without_a_counter(app_with_login, redis_client) -> None:
    assert app_with_login.get("/login").json == {"session": {}}
    assert counter(app_with_login.get("/")) == 1


def test_corrupt_stored_data_starts_a_fresh_session(testapp, redis_client) -> None:
    testapp.get("/")
    [session_id] = session_ids(redis_client)
    redis_client.set(session_id, b"\x80\x04not json")
    response = testapp.get("/")
    assert response.status_int == 200
    assert session_ids(redis_client) != [session_id]


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


@pytest.mark.parametrize(
    ("method", "action"),
    [("do_persist", "flash-form"), ("do_refresh", "counter-page")],
    ids=["write-fails", "expiry-refresh-fails"],
)
def test_redis_failing_after_the_view_is_a_503(testapp, monkeypatch, caplog, method, action):
    token = csrf_token(testapp.get("/"))

    def fail(*args, **kwargs) -> None:
        raise redis.ConnectionError("Redis went away after the view")

    monkeypatch.setattr(RedisSession, method, fail)
    if action == "flash-form":
        form = {"csrf_token": token, "category": "info", "message": "hello"}
        response = testapp.post("/flash", form, status=503)
    else:
        response = testapp.get("/howdy", status=503)
    assert "Sessions are unavailable for a moment." in text(response)
    assert "Redis went away after the view" in caplog.text


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
    assert counter(testapp.get("/")) == 3

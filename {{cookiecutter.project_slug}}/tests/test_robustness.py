"""Hostile or stale cookies always get a fresh session and a 200, never a 500."""

from __future__ import annotations

import secrets
import time

import pytest
{%- if cookiecutter.session_factory == "redis" %}
import redis
{%- endif %}
import webtest
from helpers import counter, session_cookie
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.project_slug }} import main
{%- if cookiecutter.session_factory == "redis" %}
from {{ cookiecutter.project_slug }}.sessions import KEY_PREFIX
{%- endif %}
from {{ cookiecutter.project_slug }}.settings import SECRET_BYTES

COOKIE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters=";,\x7f"),
    max_size=5000,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def visit_with(app, cookie: str) -> webtest.TestResponse:
    """GET / from a new browser that sends ``cookie`` as its session cookie."""
    browser = webtest.TestApp(app)
    return browser.get("/", headers={"Cookie": f"session={cookie}"}, status=200)


def valid_cookie(app, visits: int = 2) -> str:
    """A genuine session cookie for a session that counted ``visits``."""
    browser = webtest.TestApp(app)
    for _ in range(visits):
        browser.get("/")
    return session_cookie(browser)


@FUZZ
@given(cookie=COOKIE_TEXT)
@example(cookie="")
@example(cookie="x" * 5000)
@example(cookie='"quoted"')
@example(cookie="=" * 40)
def test_garbage_cookie_gets_a_fresh_session(app, cookie: str) -> None:
    assert counter(visit_with(app, cookie)) == 1


@FUZZ
@given(
    place=st.integers(min_value=0, max_value=10_000),
    mutation=st.sampled_from(["truncate", "replace", "insert"]),
    char=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
)
def test_tampered_cookie_is_fresh_or_untouched(app, place: int, mutation: str, char: str) -> None:
    cookie = valid_cookie(app)
    position = place % (len(cookie) + 1)
    if mutation == "truncate":
        tampered = cookie[:position]
    elif mutation == "replace":
        tampered = cookie[:position] + char + cookie[position + 1 :]
    else:
        tampered = cookie[:position] + char + cookie[position:]
    # A change base64 decoding ignores leaves the genuine session; any other is a new one.
    expected = {3} if tampered == cookie else {1, 3}
    assert counter(visit_with(app, tampered)) in expected


def test_truncated_cookies_get_fresh_sessions(app) -> None:
    cookie = valid_cookie(app)
    for length in range(0, len(cookie) - 1, 7):
        assert counter(visit_with(app, cookie[:length])) == 1


{% if cookiecutter.session_factory == "redis" -%}
def session_key(redis_client: redis.Redis) -> bytes:
    """The Redis key of the one stored session."""
    [key] = redis_client.scan_iter(f"{KEY_PREFIX}*")
    return key


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
{%- else -%}
# Where the session factory reads the clock to decide that a session has expired.
EXPIRY_CLOCK = "time.time"


def test_expired_session_starts_afresh(app, app_settings, monkeypatch) -> None:
    cookie = valid_cookie(app)
    later = time.time() + int(app_settings["session.timeout"]) + 5
    monkeypatch.setattr(EXPIRY_CLOCK, lambda: later)
    assert counter(visit_with(app, cookie)) == 1


def test_session_within_the_timeout_survives(app, app_settings, monkeypatch) -> None:
    cookie = valid_cookie(app)
    later = time.time() + int(app_settings["session.timeout"]) - 30
    monkeypatch.setattr(EXPIRY_CLOCK, lambda: later)
    assert counter(visit_with(app, cookie)) == 3
{%- endif %}


def test_cookie_from_another_app_secret_is_ignored(app_settings) -> None:
    other = main({}, **{**app_settings, "session.secret": secrets.token_hex(SECRET_BYTES)})
    assert counter(visit_with(main({}, **app_settings), valid_cookie(other))) == 1


def test_sequential_requests_never_lose_a_count(testapp: webtest.TestApp) -> None:
    for expected in range(1, 51):
        assert counter(testapp.get("/howdy")) == expected


@pytest.mark.parametrize("path", ["/", "/howdy", "/nowhere"])
def test_many_cookies_in_one_header_are_survivable(app, path: str) -> None:
    browser = webtest.TestApp(app)
    header = "; ".join(f"c{n}=v{n}" for n in range(200)) + "; session=nonsense"
    browser.get(path, headers={"Cookie": header}, expect_errors=True).mustcontain("<html")


@pytest.mark.parametrize(
    "header",
    ["session=\x80", "junk=\xff\xfe; theme=dark", "a=1; b=\xc3\x28; c=3"],
    ids=["session-not-utf8", "other-cookie-not-utf8", "middle-cookie-not-utf8"],
)
def test_cookies_that_are_not_utf8_are_dropped(app, header: str) -> None:
    browser = webtest.TestApp(app)
    assert counter(browser.get("/", headers={"Cookie": header})) == 1
    assert counter(browser.get("/howdy", headers={"Cookie": header})) == 1


def test_good_cookies_next_to_a_bad_one_are_kept(app) -> None:
    cookie = valid_cookie(app)
    browser = webtest.TestApp(app)
    header = f"junk=\xff; session={cookie}"
    assert counter(browser.get("/", headers={"Cookie": header})) == 3

{%- set signed = cookiecutter.session_factory == "signed_cookie" -%}
"""What the {{ "signed" if signed else "encrypted" }} cookie holds, and what it promises."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
import webtest
from helpers import (
    TEST_VIEWS,
    app_with_test_views,
    counter,
    csrf_token,
    flash_groups,
    post_form,
    session_cookie,
    valid_cookie,
    visit_with,
)
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
{%- if signed %}
from pyramid.session import JSONSerializer, SignedCookieSessionFactory
{%- else %}
from pyramid.session import SignedCookieSessionFactory
{%- endif %}

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.flash import (
    CATEGORIES,
    DROPPED_MESSAGES_NOTICE,
    MAX_MESSAGE_LENGTH,
    MAX_MESSAGES_PER_CATEGORY,
)
from {{ cookiecutter.project_slug }}.sessions.cookie import (
    CookieSession,
    make_session_factory,
    secret_serializer,
)
from {{ cookiecutter.project_slug }}.sessions.settings import (
    SessionSettings,
    session_settings,
)

MAX_COOKIE_BYTES = 4064


def cookie_bytes(testapp: webtest.TestApp) -> bytes:
    """The session cookie, base64-decoded."""
    value = session_cookie(testapp)
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))

{% if signed %}
def test_the_cookie_is_signed_json(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    assert b'"_c_visits":1' in cookie_bytes(testapp)


def pyramid_signed_cookie_app(secret: bytes) -> webtest.TestApp:
    """An app on Pyramid's own SignedCookieSessionFactory that counts in the same key."""

    def count(request: Request) -> Response:
        request.session["_c_visits"] = request.session.get("_c_visits", 0) + 1
        return Response(str(request.session["_c_visits"]))

    with Configurator() as config:
        config.set_session_factory(SignedCookieSessionFactory(secret, serializer=JSONSerializer()))
        config.add_route("count", "/")
        config.add_view(count, route_name="count")
    return webtest.TestApp(config.make_wsgi_app())


def test_cookies_are_interchangeable_with_signed_cookie_session_factory(app_settings) -> None:
    secret = session_settings(app_settings).secret_bytes[0]
    pyramids = pyramid_signed_cookie_app(secret)
    pyramids.get("/")
    ours = webtest.TestApp(main({}, **app_settings))
    ours.set_cookie("session", session_cookie(pyramids))
    assert counter(ours.get("/")) == 2
    pyramids.set_cookie("session", session_cookie(ours))
    assert pyramids.get("/").text == "3"


def test_a_changed_cookie_starts_a_fresh_session(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    testapp.get("/")
    forged = cookie_bytes(testapp).replace(b'"_c_visits":2', b'"_c_visits":9')
    testapp.set_cookie("session", base64.urlsafe_b64encode(forged).decode().rstrip("="))
    assert counter(testapp.get("/")) == 1
{%- else %}
def test_the_cookie_reveals_nothing(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    raw = cookie_bytes(testapp)
    assert b"visits" not in raw
    assert b"_csrft_" not in raw


def test_a_changed_cookie_starts_a_fresh_session(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    testapp.get("/")
    raw = bytearray(cookie_bytes(testapp))
    raw[-1] ^= 1
    testapp.set_cookie("session", base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))
    assert counter(testapp.get("/")) == 1
{%- endif %}


def test_a_replayed_cookie_brings_back_its_old_count(testapp: webtest.TestApp) -> None:
    """Documented limit: cookie sessions cannot be revoked on the server."""
    testapp.get("/")
    copied = session_cookie(testapp)
    testapp.get("/")
    testapp.get("/")
    testapp.set_cookie("session", copied)
    assert counter(testapp.get("/")) == 2


def test_a_cookie_copied_before_forget_works_until_the_absolute_timeout(
    app_settings: dict, monkeypatch
) -> None:
    """Documented limit, and its bound: forget cannot revoke a copy, the lifetime does."""
    app = main({}, **app_settings)
    victim = webtest.TestApp(app)
    victim.get("/")
    copied = session_cookie(victim)
    post_form(victim, "/forget")
    thief = webtest.TestApp(app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 2
    lifetime = session_settings(app_settings).absolute_timeout
    stolen_at = time.time()
    monkeypatch.setattr("time.time", lambda: stolen_at + lifetime + 1)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def test_concurrent_requests_with_one_cookie_can_lose_a_count(app) -> None:
    """Documented limit: two requests sent at once both start from the same cookie."""
    first_tab = webtest.TestApp(app)
    first_tab.get("/")
    second_tab = webtest.TestApp(app)
    second_tab.set_cookie("session", session_cookie(first_tab))
    assert counter(first_tab.get("/")) == counter(second_tab.get("/")) == 2


def test_too_many_messages_drop_rather_than_fail(testapp: webtest.TestApp, caplog) -> None:
    token = csrf_token(testapp.get("/"))
    long_message = "m" * MAX_MESSAGE_LENGTH
    for number in range(MAX_MESSAGES_PER_CATEGORY):
        for category in CATEGORIES:
            message = f"{number}{long_message}"
            post_form(testapp, "/flash", token, category=category, message=message)
            assert len(session_cookie(testapp)) <= MAX_COOKIE_BYTES
    assert "dropped" in caplog.text
    page = testapp.get("/")
    assert DROPPED_MESSAGES_NOTICE in flash_groups(page)["warning"]
    assert counter(page) == 2


def test_a_session_too_big_without_messages_starts_afresh(app_settings: dict, caplog) -> None:
    request = Request.blank("/")
    session = make_session_factory(session_settings(app_settings))(request)
    session["counter"] = 7
    session["notes"] = "n" * MAX_COOKIE_BYTES
    response = Response()
    session.write_back(request, response)
    assert "cannot shrink: a new session" in caplog.text
    assert dict(session) == {}
    assert len(response.headers["Set-Cookie"]) < 300


def test_without_a_handler_a_full_cookie_drops_its_flash_queues_first(app_settings) -> None:
    """The engine on its own (no overflow handler set): the flash queues go, in every
    queue, and the data and CSRF token stay."""
    request = Request.blank("/")
    session = make_session_factory(session_settings(app_settings))(request)
    session["counter"] = 7
    token = session.new_csrf_token()
    for queue in ("", "messages", "mine"):
        for number in range(6):
            session.flash(f"{number}{'m' * 300}", queue=queue)
    response = Response()
    session.write_back(request, response)
    assert dict(session) == {"counter": 7, "_csrft_": token}
    assert len(response.headers["Set-Cookie"]) < 300


def test_a_full_cookie_drops_every_flash_queue_and_keeps_the_session(app_settings) -> None:
    """Messages a view flashed to Pyramid's default queue, not the app's, overflow the
    cookie: they go too, and the counter and the CSRF token stay."""

    def flood(request: Request) -> dict:
        for number in range(16):
            request.session.flash(f"{number}{'m' * 300}")
        return {}

    testapp = app_with_test_views(app_settings, flood=flood)
    token = csrf_token(testapp.get("/"))
    testapp.get(f"{TEST_VIEWS}/flood")
    assert len(session_cookie(testapp)) <= MAX_COOKIE_BYTES
    page = testapp.get("/")
    assert counter(page) == 2
    assert csrf_token(page) == token
    assert DROPPED_MESSAGES_NOTICE in flash_groups(page)["warning"]


def test_regenerate_keeps_the_data_with_a_new_csrf_token(app_with_login) -> None:
    token = csrf_token(app_with_login.get("/"))
    session = app_with_login.get(f"{TEST_VIEWS}/login").json["session"]
    assert session["_c_visits"] == 1
    assert session["_csrft_"] != token
    assert counter(app_with_login.get("/")) == 2


def session_with(app_settings: dict, payload: object | None = None) -> CookieSession:
    """A session loaded from a request whose cookie holds ``payload``, sealed with our secret."""
    factory = make_session_factory(session_settings(app_settings))
    request = Request.blank("/")
    if payload is not None:
        cookie = factory.serializer.dumps(payload).decode("ascii")
        request.headers["Cookie"] = f"session={cookie}"
    return factory(request)


@pytest.mark.parametrize(
    "payload",
    [
        "a string",
        [1, 2],
        [1, 2, 3, 4],
        ["1", 2, {}],
        [1, None, {}],
        [float("inf"), 2, {}],
        [1, 2, ["counter", 5]],
    ],
    ids=[
        "not-a-list",
        "two-items",
        "four-items",
        "text-stamp",
        "null-stamp",
        "infinite-stamp",
        "list-data",
    ],
)
def test_a_sealed_payload_of_another_shape_is_a_fresh_session(
    app_settings: dict, payload: object
) -> None:
    session = session_with(app_settings, payload)
    assert session.new
    assert dict(session) == {}


class RawJSON:
    """Seals JSON text as it is, to make payloads that no JSON encoder would write."""

    def dumps(self, text: bytes) -> bytes:
        return text


def test_a_sealed_payload_nested_too_deeply_is_a_fresh_session(app_settings: dict) -> None:
    settings = session_settings(app_settings)
    sealer = secret_serializer(settings.secret_bytes[0])
    sealer.serializer = RawJSON()
    depth = 1200  # past Python's recursion limit (1000), yet small enough for a cookie
    cookie = sealer.dumps(b"[" * depth + b"]" * depth).decode("ascii")
    assert len(cookie) < MAX_COOKIE_BYTES
    session = make_session_factory(settings)(
        Request.blank("/", headers={"Cookie": f"session={cookie}"})
    )
    assert session.new
    assert dict(session) == {}


# How old a session is, in seconds given the settings, and whether loading it reissues it.
AGES: dict[str, tuple[Callable[[SessionSettings], int], bool]] = {
    "fresh": (lambda settings: 1, False),
    "due-for-reissue": (lambda settings: settings.reissue_time + 1, True),
    "expired": (lambda settings: settings.timeout + 1, False),
}


@pytest.mark.parametrize("age", AGES, ids=list(AGES))
def test_a_session_is_reissued_once_a_tenth_of_its_timeout_old(app_settings, age: str) -> None:
    seconds_old, reissued = AGES[age]
    then = int(time.time()) - seconds_old(session_settings(app_settings))
    session = session_with(app_settings, [then, then, {"counter": 4}])
    assert session.dirty is reissued
    assert dict(session) == ({} if age == "expired" else {"counter": 4})


CHANGES: dict[str, Callable[[CookieSession], object]] = {
    "setitem": lambda s: s.__setitem__("a", 1),
    "delitem": lambda s: s.__delitem__("counter"),
    "clear": lambda s: s.clear(),
    "pop": lambda s: s.pop("counter"),
    "popitem": lambda s: s.popitem(),
    "setdefault": lambda s: s.setdefault("a", 1),
    "update": lambda s: s.update(a=1),
    "flash": lambda s: s.flash("hi"),
    "pop_flash": lambda s: s.pop_flash(),
    "new_csrf_token": lambda s: s.new_csrf_token(),
    "invalidate": lambda s: s.invalidate(),
}
READS: dict[str, Callable[[CookieSession], object]] = {
    "get": lambda s: s.get("counter"),
    "getitem": lambda s: s["counter"],
    "contains": lambda s: "counter" in s,
    "items": lambda s: list(s.items()),
    "len": len,
    "peek_flash": lambda s: s.peek_flash(),
}


@pytest.mark.parametrize(
    ("operation", "writes"),
    [(CHANGES[name], True) for name in CHANGES] + [(READS[name], False) for name in READS],
    ids=[f"{name}-writes" for name in CHANGES] + [f"{name}-reads-only" for name in READS],
)
def test_only_changes_write_the_cookie(app_settings, operation: Callable, writes: bool) -> None:
    now = int(time.time())
    session = session_with(app_settings, [now, now, {"counter": 4}])
    operation(session)
    assert session.dirty is writes
    assert bool(session.request.response_callbacks) is writes


def test_expired_session_starts_afresh(app, app_settings, age_sessions) -> None:
    cookie = valid_cookie(app)
    age_sessions(int(app_settings["session.timeout"]) + 5)
    assert counter(visit_with(app, cookie)) == 1


def test_session_within_the_timeout_survives(app, app_settings, age_sessions) -> None:
    cookie = valid_cookie(app)
    age_sessions(int(app_settings["session.timeout"]) - 30)
    assert counter(visit_with(app, cookie)) == 3


def test_an_app_that_sets_its_own_session_factory_still_starts(app_settings: dict) -> None:
    """The overflow handler belongs to this engine's sessions: an app that includes this
    one and then sets a session factory of its own (Pyramid's, here) starts and counts."""
    with Configurator(settings=app_settings) as config:
        config.include("{{ cookiecutter.project_slug }}")
        config.set_session_factory(SignedCookieSessionFactory("s" * 64))
    testapp = webtest.TestApp(config.make_wsgi_app())
    assert counter(testapp.get("/")) == 1
    assert counter(testapp.get("/")) == 2

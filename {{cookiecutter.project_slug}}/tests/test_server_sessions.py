"""Server-side sessions, whatever the store: a signed id in the cookie, revocable, atomic.

The same tests for every server-side store: ``stored`` (conftest) is the store seen from
outside, by another program.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest
from helpers import (
    TEST_VIEWS,
    app_with_test_views,
    count_concurrently,
    counter,
    csrf_token,
    flash_groups,
    login_view,
    post_form,
    session_cookie,
)
from pyramid.request import Request
from pyramid.response import Response

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions import increment_counter, regenerate_session
from {{ cookiecutter.project_slug }}.sessions.server import (
    ServerSession,
    make_session_factory,
    make_store,
)
from {{ cookiecutter.project_slug }}.sessions.settings import (
    SECRET_BYTES,
    session_settings,
)


def test_cookie_carries_only_a_signed_id(testapp: webtest.TestApp, stored) -> None:
    testapp.get("/")
    cookie = session_cookie(testapp)
    [session_id] = stored.ids()
    signed = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    assert signed.endswith(session_id.encode())
    assert len(signed) == 64 + len(session_id)  # an HMAC-SHA512 signature, then the id
    assert "_csrft_" in stored.data(session_id)


def test_concurrent_requests_lose_no_increment(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    assert count_concurrently(testapp, tabs=8, visits=25) == 1 + 8 * 25 + 1


def test_concurrent_steps_of_a_counter_of_your_own_are_all_kept(app_settings) -> None:
    """Eight tabs add to one cart at once: every quantity is counted (the session's data,
    written back whole after each request, would keep only some)."""

    def add(request: Request) -> dict:
        return {"in_cart": increment_counter(request, "cart.apples", 3)}

    shop = app_with_test_views(app_settings, add=add)
    shop.get(f"{TEST_VIEWS}/add")
    cookie = session_cookie(shop)

    def tab(_: int) -> None:
        browser = webtest.TestApp(shop.app)
        browser.set_cookie("session", cookie)
        for _ in range(10):
            browser.get(f"{TEST_VIEWS}/add")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(tab, range(8)))
    assert shop.get(f"{TEST_VIEWS}/add").json == {"in_cart": 3 * (1 + 8 * 10 + 1)}


def test_forget_revokes_the_old_cookie(testapp: webtest.TestApp, stored) -> None:
    testapp.get("/")
    testapp.get("/")
    copied = session_cookie(testapp)
    [old_id] = stored.ids()
    post_form(testapp, "/forget")
    assert old_id not in stored.ids()
    thief = webtest.TestApp(testapp.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def test_regenerate_moves_data_and_counter_to_a_new_id(app_with_login, stored) -> None:
    app_with_login.get("/")
    app_with_login.get("/")
    [old_id] = stored.ids()
    copied = session_cookie(app_with_login)
    token = stored.data(old_id)["_csrft_"]
    created = stored.created(old_id)
    assert app_with_login.get(f"{TEST_VIEWS}/login").json["session"]["_csrft_"] != token
    [new_id] = stored.ids()
    assert new_id != old_id
    assert (stored.counter(new_id), stored.created(new_id)) == (2, created)
    assert stored.data(new_id)["_csrft_"] != token
    assert counter(app_with_login.get("/")) == 3
    thief = webtest.TestApp(app_with_login.app)
    thief.set_cookie("session", copied)
    assert counter(thief.get("/")) == 1


def count_and_write(request: Request) -> None:
    """Count a visit and store something."""
    increment_counter(request, "visits")
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
    "login": lambda tab: tab.get(f"{TEST_VIEWS}/login"),
}
# What /slow does after that.
AFTERWARDS: dict[str, Callable[[Request], object]] = {
    "count-and-write": count_and_write,
    "login": regenerate_session,
}


@pytest.mark.parametrize("afterwards", AFTERWARDS.values(), ids=AFTERWARDS)
@pytest.mark.parametrize("meanwhile", MEANWHILE.values(), ids=MEANWHILE)
def test_a_session_revoked_during_a_request_stays_revoked(
    app_with_a_slow_view, stored, meanwhile, afterwards
) -> None:
    browser = app_with_a_slow_view
    token = csrf_token(browser.get("/"))
    old_cookie = session_cookie(browser)
    [old_id] = stored.ids()
    other_tab = webtest.TestApp(browser.app)
    other_tab.set_cookie("session", old_cookie)
    browser.app.registry.update(meanwhile=lambda: meanwhile(other_tab), afterwards=afterwards)

    slow = browser.get(f"{TEST_VIEWS}/slow").json["session"]  # it went on with a fresh session
    assert slow.get("counter", 1) == 1
    assert slow.get("_csrft_") != token
    assert old_id not in stored.ids()
    assert token not in [stored.data(session_id).get("_csrft_") for session_id in stored.ids()]
    replayed = webtest.TestApp(browser.app)
    replayed.set_cookie("session", old_cookie)
    page = replayed.get("/")
    assert (counter(page), csrf_token(page) == token) == (1, False)


def test_a_session_read_before_counting_counts_on(app_with_a_slow_view, stored) -> None:
    browser = app_with_a_slow_view
    browser.get("/")
    browser.app.registry.update(meanwhile=lambda: None, afterwards=count_and_write)
    assert browser.get(f"{TEST_VIEWS}/slow").json["session"]["late"]
    [session_id] = stored.ids()
    assert stored.counter(session_id) == 2
    assert stored.data(session_id)["late"]


def test_regenerate_a_session_without_a_counter(app_with_login) -> None:
    assert list(app_with_login.get(f"{TEST_VIEWS}/login").json["session"]) == ["_csrft_"]
    assert counter(app_with_login.get("/")) == 1


# Session data that is a JSON object, with values of the wrong type where the app looks.
WRONG_TYPES = {
    "flash-queue-not-a-list": {"_f_messages": 5},
    "csrf-token-not-text": {"_csrft_": 5},
    "csrf-token-not-ascii": {"_csrft_": "€"},
    "both": {"_f_messages": "many", "_csrft_": ["a"]},
}


@pytest.mark.parametrize("data", WRONG_TYPES.values(), ids=WRONG_TYPES)
def test_stored_values_of_the_wrong_type_do_no_harm(testapp, stored, data) -> None:
    testapp.get("/")
    [session_id] = stored.ids()
    stored.set_data(session_id, json.dumps(data))
    token = csrf_token(testapp.get("/"))
    post_form(testapp, "/flash", token, category="info", message="still works")
    assert flash_groups(testapp.get("/")) == {"info": ["still works"]}


def test_garbage_in_the_cookie_starts_a_fresh_session(testapp) -> None:
    testapp.set_cookie("session", "garbage")
    assert counter(testapp.get("/")) == 1


def server_session(app_settings: dict, cookie: str = "") -> ServerSession:
    """A session of the app's factory for a request that sends ``cookie``."""
    settings = session_settings(app_settings)
    store = make_store(app_settings, {}, settings)
    request = Request.blank("/", headers={"Cookie": f"session={cookie}"} if cookie else {})
    return make_session_factory(settings, store)(request)


def test_a_revoked_session_is_not_written_back(app_settings, testapp, stored) -> None:
    """A request that loaded the session before another revoked it cannot bring it back."""
    testapp.get("/")
    session = server_session(app_settings, session_cookie(testapp))
    request = session.request
    assert session.get("_csrft_")  # loaded: the session exists
    stored.delete_all()  # "forget" in another tab
    session.flash("late")
    session.write_back(request, Response())
    assert stored.ids() == []


def test_a_session_that_expired_during_a_request_is_not_renewed(
    app_settings, testapp, stored
) -> None:
    """Writing the session back after it expired would bring it back to life."""
    token = csrf_token(testapp.get("/"))
    [session_id] = stored.ids()
    session = server_session(app_settings, session_cookie(testapp))
    request = session.request
    assert session.get("_csrft_") == token  # loaded while it was live
    stored.expire(session_id)
    session.flash("late")
    session.write_back(request, Response())
    page = testapp.get("/")
    assert (counter(page), csrf_token(page) == token) == (1, False)


def test_invalidating_without_new_data_deletes_the_cookie(app_settings, testapp, stored) -> None:
    testapp.get("/")
    session = server_session(app_settings, session_cookie(testapp))
    request = session.request
    session.invalidate()
    response = Response()
    session.write_back(request, response)
    assert stored.ids() == []
    assert response.headers["Set-Cookie"].startswith("session=; Max-Age=0; Path=/; HttpOnly")


def test_the_session_is_a_mutable_mapping(app_settings) -> None:
    session = server_session(app_settings)
    session.update(a=1, b=2)
    del session["a"]
    assert ("a" in session, "b" in session, len(session), list(session)) == (False, True, 1, ["b"])
    assert session.pop("b") == 2
    assert dict(session) == {}


NEW_SESSION_OPERATIONS = {
    "reset_counter": lambda session: session.reset_counter("visits"),
    "invalidate": lambda session: session.invalidate(),
    "read": lambda session: session.get("counter"),
    "read-a-counter": lambda session: session.increment_counter("visits", 0),
}


@pytest.mark.parametrize("operation", NEW_SESSION_OPERATIONS.values(), ids=NEW_SESSION_OPERATIONS)
def test_a_new_session_that_stores_nothing_leaves_no_trace(app_settings, stored, operation):
    session = server_session(app_settings)
    request = session.request
    operation(session)
    response = Response()
    session.write_back(request, response)
    assert stored.ids() == []
    assert "Set-Cookie" not in response.headers


def test_re_signing_a_cookie_leaves_unread_data_alone(app_settings, stored) -> None:
    """A request that never reads the session only re-signs a cookie of an older secret."""
    old_secret = app_settings["session.secret"]
    rotated = {
        **app_settings,
        "session.secret": secrets.token_hex(SECRET_BYTES),
        "session.secret_fallbacks": old_secret,
    }
    before = webtest.TestApp(main({}, **app_settings))
    before.get("/")
    [session_id] = stored.ids()
    state = stored.state(session_id)
    session = server_session(rotated, session_cookie(before))
    request = session.request
    response = Response()
    session.write_back(request, response)
    assert stored.state(session_id) == state
    assert response.headers["Set-Cookie"].startswith("session=")
    new_cookie = response.headers["Set-Cookie"].split(";")[0].removeprefix("session=")
    new_secret_only = {**app_settings, "session.secret": rotated["session.secret"]}
    assert server_session(new_secret_only, new_cookie).session_id == session_id


def test_a_session_read_after_its_response_went_out_still_loads(app_settings, caplog) -> None:
    """A finished callback may read the session after write_back let go of the request."""
    cookie_of_a_gone_session = server_session(app_settings).signer.dumps("gone").decode()
    session = server_session(app_settings, cookie_of_a_gone_session)
    session.changed()
    session.write_back(session.request, Response())
    with caplog.at_level(logging.DEBUG):
        assert session.get("counter") is None
    assert "fresh session: the stored one is gone" in caplog.text

"""The session API every factory offers: Pyramid's ISession, flash queues, CSRF tokens."""

from __future__ import annotations

import gc

import pytest
import webtest
from helpers import TEST_VIEWS, counter, csrf_token
from pyramid.csrf import get_csrf_token, new_csrf_token
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.request import Request
from zope.interface.verify import verifyObject

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.session_api import request_cookie


@pytest.fixture
def session(app_settings: dict) -> ISession:
    """A new session of the app's factory, for a request without a cookie."""
    factory = main({}, **app_settings).registry.getUtility(ISessionFactory)
    return factory(Request.blank("/"))


def test_the_session_provides_pyramids_isession(session: ISession) -> None:
    assert verifyObject(ISession, session)


def test_flash_queues_and_pop_flash_empties(session: ISession) -> None:
    session.flash("once", allow_duplicate=False)
    session.flash("once", allow_duplicate=False)
    session.flash("twice")
    session.flash("twice")
    assert session.peek_flash() == ["once", "twice", "twice"]
    assert session.pop_flash() == ["once", "twice", "twice"]
    assert session.pop_flash() == []


def test_the_csrf_token_is_kept_until_renewed(session: ISession) -> None:
    token = session.get_csrf_token()
    assert len(token) == 40
    assert session.get_csrf_token() == token
    assert session.new_csrf_token() != token


def test_pyramids_csrf_api_keeps_the_token_in_the_session(app_settings: dict) -> None:
    request = Request.blank("/")
    request.registry = main({}, **app_settings).registry
    token = get_csrf_token(request)
    assert request.session["_csrft_"] == token
    renewed = new_csrf_token(request)
    assert renewed != token
    assert request.session["_csrft_"] == renewed


@pytest.mark.parametrize(
    "path", ["/", "/login"], ids=["a-page-that-changes-the-session", "a-page-that-reads-it"]
)
def test_a_page_leaves_nothing_for_the_garbage_collector(testapp, path: str) -> None:
    """Every object of a request is freed as it ends: the request and its session hold
    each other, and a cycle left on every page cost the garbage collector 6-15 µs a page
    (BENCHMARKS.md)."""
    testapp.get(path)  # the session exists, and every import is done
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            testapp.get(path)
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("value", [5, "text", {"a": 1}, None], ids=repr)
def test_a_flash_queue_of_another_type_reads_as_empty(session, value) -> None:
    """Data a server-side store holds may have been written by other code, or damaged."""
    session["_f_"] = value
    assert (session.peek_flash(), session.pop_flash()) == ([], [])
    session["_f_"] = value
    session.flash("kept")
    assert session.peek_flash() == ["kept"]


@pytest.mark.parametrize("value", [5, ["a"], {"a": 1}, None, "", "€uro"], ids=repr)
def test_a_csrf_token_of_another_type_is_replaced(session, value) -> None:
    session["_csrft_"] = value
    token = session.get_csrf_token()
    assert isinstance(token, str) and len(token) == 40


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("", None),
        ("other=1", None),
        ("session=abc", "abc"),
        ("a=1; session=abc; b=2", "abc"),
        ('session="abc"', "abc"),
        ("session=old; session=new", "new"),
        ("session", None),
        ("xsession=abc", None),
    ],
    ids=["empty", "other", "alone", "among-others", "quoted", "last-wins", "no-value", "suffix"],
)
def test_the_session_cookie_is_read_as_webob_reads_it(header: str, value: str | None) -> None:
    assert request_cookie(header, "session") == value
    assert Request.blank("/", headers={"Cookie": header}).cookies.get("session") == value


def test_login_rotates_the_csrf_token(app_with_login: webtest.TestApp) -> None:
    """A token learned before login (a fixation or an XSS elsewhere) is useless after it."""
    before = csrf_token(app_with_login.get("/"))
    app_with_login.get(f"{TEST_VIEWS}/login")
    app_with_login.post("/reset", {"csrf_token": before}, status=400)
    after = csrf_token(app_with_login.get("/"))
    assert after != before
    app_with_login.post("/reset", {"csrf_token": after}, status=303)


HTTPS = {"wsgi.url_scheme": "https", "HTTP_HOST": "example.com"}


def test_a_secure_cookie_has_the_host_prefix(app_settings: dict) -> None:
    """Browsers keep a __Host- cookie only if Secure, for Path=/ and without Domain."""
    app = webtest.TestApp(main({}, **{**app_settings, "session.secure": "true"}))
    first = app.get("/", extra_environ=HTTPS)
    set_cookie = first.headers["Set-Cookie"]
    assert set_cookie.startswith("__Host-session=")
    assert "; Secure" in set_cookie
    assert "; Path=/;" in set_cookie
    assert "domain=" not in set_cookie.lower()
    cookie = set_cookie.split(";", 1)[0]
    again = app.get("/", headers={"Cookie": cookie}, extra_environ=HTTPS)
    assert counter(again) == 2
    unprefixed = cookie.removeprefix("__Host-")
    assert counter(app.get("/", headers={"Cookie": unprefixed}, extra_environ=HTTPS)) == 1

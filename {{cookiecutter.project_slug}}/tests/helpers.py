"""What the tests share: the app's settings for a test, the app with test-only views,
and reading what the pages show, the way a person would."""

from __future__ import annotations

import functools
import re
import secrets
{% if cookiecutter.session_factory in ("redis", "database") -%}
import threading
import time
{% endif -%}
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

{% if cookiecutter.session_factory in ("redis", "database") -%}
import pytest
{% endif -%}
import webtest
from pyramid.config import Configurator
from pyramid.paster import get_appsettings
from pyramid.request import Request

from {{ cookiecutter.project_slug }}.sessions import regenerate_session
from {{ cookiecutter.project_slug }}.sessions import settings as settings_module
{%- if cookiecutter.session_factory == "redis" %}
from {{ cookiecutter.project_slug }}.sessions.redis.settings import (
    ENVIRONMENT as REDIS_ENVIRONMENT,
)
{%- elif cookiecutter.session_factory == "database" %}
from {{ cookiecutter.project_slug }}.sessions.database.settings import (
    ENVIRONMENT as DATABASE_ENVIRONMENT,
)
{%- endif %}

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The demo users' passwords: their tests (test_login.py) are the one place that holds them.
DEMO_PASSWORDS = {"editor": "editor", "viewer": "viewer"}
# The users the other tests sign in as, whatever user store the app has: the fixture
# ``test_users`` (conftest.py) lets them in. A user's id is their login; neither is a
# demo user, whom settings may keep out.
TEST_USERS = {"alice": "alice's test password", "bob": "bob's test password"}
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

COUNTER = re.compile(r'<strong id="counter">(\d+)</strong>')
FLASH_GROUP = re.compile(
    r'<div\s+class="flash flash-(\w+)" role="(\w+)"[^>]*>\s*<ul>(.*?)</ul>', re.DOTALL
)
MESSAGE = re.compile(r"<li>(.*?)</li>", re.DOTALL)
SIGNED_IN_AS = re.compile(r"Signed in as <strong>([^<]*)</strong>")
SIGN_IN_LINK = '<a href="/login">Sign in</a>'


def counter(response: webtest.TestResponse) -> int:
    """The visit count a counter page shows."""
    match = COUNTER.search(response.text)
    assert match, f"no counter on the page:\n{response.text}"
    return int(match.group(1))


def text(response: webtest.TestResponse) -> str:
    """The page's words without tags, with white space folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


def flash_groups(response: webtest.TestResponse) -> dict[str, list[str]]:
    """The flash messages on a page, by category, as HTML-escaped text."""
    return {
        category: MESSAGE.findall(items)
        for category, _role, items in FLASH_GROUP.findall(response.text)
    }


def csrf_token(response: webtest.TestResponse) -> str:
    """The CSRF token the page's forms send."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def signed_in_as(response: webtest.TestResponse) -> str | None:
    """Whom the page's layout says is signed in; None when it offers to sign in."""
    match = SIGNED_IN_AS.search(response.text)
    assert bool(match) != (SIGN_IN_LINK in response.text), "one of the two, always"
    return match.group(1) if match else None


def sign_in(
    testapp: webtest.TestApp, login: str, password: str, status: int = 303
) -> webtest.TestResponse:
    """Load the sign-in form and post it, as a person would."""
    token = csrf_token(testapp.get("/login"))
    form = {"csrf_token": token, "login": login, "password": password}
    return testapp.post("/login", form, status=status)


def post_form(
    testapp: webtest.TestApp, path: str, token: str | None = None, **fields: str
) -> webtest.TestResponse:
    """POST ``fields`` with the CSRF token to ``path``, as the page's form would.

    Without ``token``, the home page is loaded first for it (which shows queued messages).
    """
    token = token or csrf_token(testapp.get("/"))
    return testapp.post(path, {"csrf_token": token, **fields}, status=303)


def session_cookie(testapp: webtest.TestApp) -> str:
    """The session cookie the client holds."""
    return testapp.cookies["session"]


def count_concurrently(testapp: webtest.TestApp, tabs: int = 8, visits: int = 25) -> int:
    """``tabs`` threads, each a browser tab holding ``testapp``'s cookie, load ``visits``
    counter pages at once; then the count ``testapp`` sees."""
    cookie = session_cookie(testapp)

    def visit_many(_: int) -> None:
        browser_tab = webtest.TestApp(testapp.app)
        browser_tab.set_cookie("session", cookie)
        for _ in range(visits):
            browser_tab.get("/howdy")

    with ThreadPoolExecutor(max_workers=tabs) as pool:
        list(pool.map(visit_many, range(tabs)))
    return counter(testapp.get("/"))


def assert_corruption_gives_a_fresh_session(
    testapp: webtest.TestApp,
    stored: Any,
    corrupt: Callable[[str], object],
    first_request: str = "counter-page",
) -> None:
    """Damage the stored session (``corrupt`` gets its id), then visit: never a 500, nor a
    503 repeated on every request, but a fresh session at once; the damaged one is gone.

    ``stored`` is the store seen from outside (conftest's fixture of a server-side store).
    """
    token = csrf_token(testapp.get("/"))
    [session_id] = stored.ids()
    corrupt(session_id)
    if first_request == "counter-page":  # loads and counts in one round trip
        assert counter(testapp.get("/")) == 1
    else:  # loads for the CSRF check: the fresh session has another token
        testapp.post("/reset", {"csrf_token": token}, status=400)
    assert session_id not in stored.ids()
    assert counter(testapp.get("/")) == (2 if first_request == "counter-page" else 1)


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


def login_view(request: Request) -> dict:
    """What a login view does first: a new session id (or cookie) for the same data."""
    regenerate_session(request)
    return {"session": dict(request.session)}


# Where the test-only views are: a path and route names no page of yours would take (the
# test-only login is not the app's /login).
TEST_VIEWS = "/__test__"


def app_with_test_views(settings: dict, **views: Callable[[Request], dict]) -> webtest.TestApp:
    """The app plus test-only JSON views, each at TEST_VIEWS/<its name>."""
    with Configurator(settings=settings) as config:
        config.include("{{ cookiecutter.project_slug }}")
        for name, view in views.items():
            config.add_route(f"__test__{name}", f"{TEST_VIEWS}/{name}")
            config.add_view(view, route_name=f"__test__{name}", renderer="json")
    return webtest.TestApp(config.make_wsgi_app())


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


CSP_DIRECTIVES = {
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
}
FIXED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_directives(response: webtest.TestResponse) -> set[str]:
    """The directives of the response's Content-Security-Policy, white space folded."""
    policy = response.headers["Content-Security-Policy"]
    return {" ".join(part.split()) for part in policy.split(";") if part.strip()}


def assert_security_headers(response: webtest.TestResponse, *, cacheable: bool = False) -> None:
    """The headers every response carries; no-store unless it is ``cacheable``."""
    assert csp_directives(response) >= CSP_DIRECTIVES
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert {name: response.headers.get(name) for name in FIXED_HEADERS} == FIXED_HEADERS
    assert ("no-store" in response.headers.get("Cache-Control", "")) is not cacheable
{%- if cookiecutter.session_factory in ("redis", "database") %}


# Makes the store's round trip of that name fail from now on, as a lost connection would.
StoreFailure = Callable[[str], None]


def store_fails_in_the_view(testapp: webtest.TestApp, fail: StoreFailure) -> webtest.TestResponse:
    """The store fails loading the session for a counter page: Pyramid's exception view."""
    testapp.get("/")
    fail("load_and_increment")
    return testapp.get("/howdy", status=503)


def store_fails_after_the_view(
    testapp: webtest.TestApp, fail: StoreFailure
) -> webtest.TestResponse:
    """The store fails writing the session after the view: the execution policy's 503 page."""
    token = csrf_token(testapp.get("/"))
    fail("save")
    form = {"csrf_token": token, "category": "info", "message": "hello"}
    return testapp.post("/flash", form, status=503)


# The 503 pages of a server-side store's failures, by how they are made.
STORE_FAILURE_PAGES = {
    "503-page-store-fails-in-the-view": store_fails_in_the_view,
    "503-page-store-fails-after-the-view": store_fails_after_the_view,
}


class CountedLock:
    """A lock that counts every try to take it: a test of threads racing for a store's
    lock waits until they all came to it (a sleep lets a busy machine's threads come late,
    and the race the test is about never happens)."""

    def __init__(self) -> None:
        self.lock, self.tries = threading.Lock(), 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.tries += 1
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *_exception: object) -> None:
        self.release()

    def wait_for_tries(self, tries: int, seconds: float = 10) -> None:
        """Return once the lock was tried ``tries`` times; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.tries < tries:
            if time.monotonic() > deadline:
                pytest.fail(f"the lock was tried {self.tries} times in {seconds} s, not {tries}")
            time.sleep(0.01)
{%- endif %}

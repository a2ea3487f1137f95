"""Reading what the pages show, the way a person would."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import webtest

COUNTER = re.compile(r'<strong id="counter">(\d+)</strong>')
FLASH_GROUP = re.compile(
    r'<div\s+class="flash flash-(\w+)" role="(\w+)"[^>]*>\s*<ul>(.*?)</ul>', re.DOTALL
)
MESSAGE = re.compile(r"<li>(.*?)</li>", re.DOTALL)


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
    testapp: webtest.TestApp, stored: Any, corrupt: Callable[[str], object], first_request: str
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

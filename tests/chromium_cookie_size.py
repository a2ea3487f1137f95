"""The largest session cookie a cookie store ever writes, kept and sent back by Chromium
(called by tests/test_generated_projects.py for each cookie store's installed project).

A cookie store's project caps the cookie's value at MAX_COOKIE_VALUE. Chromium keeps a
cookie only if its name and value together are at most 4096 bytes (and each attribute at
most 1024); the Set-Cookie line as a whole may be longer. Here each cookie store's project
is served as in production (``production.ini``: the ``__Host-session`` cookie, Secure,
HttpOnly, SameSite=Lax, Path=/) and Debian's Chromium fills its session to exactly the cap
through the app's own flash form; its next request must carry the identical cookie, which
the app reads back (the counter goes on, every message shows).

Plain http://127.0.0.1 is production enough here: Chromium treats the loopback address as
a secure context, so it keeps a Secure ``__Host-`` cookie from it, and its size limits are
the same as over HTTPS (both checked by hand with Chromium 156).

Why the browser posts the form with ``fetch(..., {redirect: "manual"})``: the form's 303
leads to the home page, which shows (and so takes out of the session) what was just
queued, so a person gets a cookie this big only when redirects are not followed (a form
sent several times before a page loads). Chromium's own network stack still receives each
303 and stores its Set-Cookie, exactly as it would for a followed one; nothing is forged.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from bench.harness import (
    ROOT,
    clean_environment,
    production_env,
    project_python,
    waitress_server,
)

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_NAME_PLUS_VALUE = 4096  # bytes Chromium keeps of a cookie's name and value
PRODUCTION_ATTRIBUTES = {"path": "/", "secure": True, "httpOnly": True, "sameSite": "Lax"}
MAX_MESSAGE_LENGTH = 300  # the flash form's maxlength and the app's own cap
MAX_MESSAGES_PER_CATEGORY = 5
CATEGORIES = ("info", "success", "warning", "error")
# ASCII words (JSON keeps each character as one byte), single spaces (the app keeps them).
FILLER = "A session cookie keeps this message until the next page shows it. " * 5
DROPPED_MESSAGES_NOTICE = "Some messages were dropped to keep your session small."
# The flash form, posted by the page's own script without following its redirect.
POST_FLASH = """async ([category, message]) => {
  const form = document.querySelector("form.flash-form");
  const body = new URLSearchParams(new FormData(form));
  body.set("category", category);
  body.set("message", message);
  const response = await fetch(form.action, {method: "POST", body, redirect: "manual"});
  return response.type;
}"""


def project_cap(project: Path) -> int:
    """MAX_COOKIE_VALUE, as the installed project has it."""
    code = f"from {project.name}.sessions.cookie import MAX_COOKIE_VALUE; print(MAX_COOKIE_VALUE)"
    return int(
        subprocess.run(
            [project_python(project), "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=clean_environment(),
        ).stdout
    )


def raw_bytes(length: int) -> int:
    """How many bytes an unpadded base64url value of ``length`` characters encodes."""
    return length * 3 // 4


def session_cookie(page: Page) -> dict:
    """The one cookie Chromium keeps for the site."""
    cookies = page.context.cookies()
    assert len(cookies) == 1, cookies
    return cookies[0]


def post_flash(page: Page, category: str, message: str) -> str:
    """Post the flash form from the page; the Set-Cookie line of its 303."""
    with page.expect_response(lambda response: response.url.endswith("/flash")) as posted:
        assert page.evaluate(POST_FLASH, [category, message]) == "opaqueredirect"
    response = posted.value
    assert response.status == 303
    return response.header_value("set-cookie")


def message_of(length: int, label: str) -> str:
    """A message of exactly ``length`` characters that the app keeps as it is."""
    message = f"{label} {FILLER}"[:length]
    return message[:-1] + "." if message.endswith(" ") else message


def fill_to_cap(page: Page, cap: int) -> tuple[str, list[str]]:
    """Queue messages until the cookie value is as long as the cap allows; the last
    Set-Cookie line and the messages, in order.

    Each message after the first adds ``,["<category>","<message>"]`` to the session's JSON
    (category + message + 8 bytes) and nothing else changes between two posts, so the
    bytes left under the cap say exactly how long the last message must be.
    """
    room = raw_bytes(cap)  # JSON, signature or nonce and MAC: what the cap holds
    slots = [category for category in CATEGORIES for _ in range(MAX_MESSAGES_PER_CATEGORY)]
    messages: list[str] = []
    for number, category in enumerate(slots):
        left = room - raw_bytes(len(session_cookie(page)["value"])) - len(category) - 8
        following = len(slots[number + 1]) + 9 if number + 1 < len(slots) else 0
        length = left if left <= MAX_MESSAGE_LENGTH else min(MAX_MESSAGE_LENGTH, left - following)
        message = message_of(length, f"{category}-{number:02d}")
        set_cookie = post_flash(page, category, message)
        messages.append(message)
        if length == left:
            return set_cookie, messages
    raise AssertionError("the cap holds more than the app lets a session queue")


def assert_largest_cookie_kept(page: Page, site: str, cap: int, factory: str) -> None:
    """Fill the session to the cap; Chromium keeps the cookie and sends it back as it is."""
    page.goto(f"{site}/")
    expect(page.locator("#counter")).to_have_text("1")
    set_cookie, messages = fill_to_cap(page, cap)

    name, value = set_cookie.split(";", 1)[0].split("=", 1)
    assert name == "__Host-session"
    # The longest unpadded base64url value within the cap (the cap itself unless cap % 4 == 1)
    assert len(value) == math.ceil(raw_bytes(cap) * 4 / 3), (len(value), cap)
    assert len(name) + len(value) <= CHROMIUM_NAME_PLUS_VALUE
    kept = session_cookie(page)
    assert (kept["name"], kept["value"]) == (name, value), "Chromium did not keep it"
    assert {key: kept[key] for key in PRODUCTION_ATTRIBUTES} == PRODUCTION_ATTRIBUTES

    with page.expect_request(lambda request: request.is_navigation_request()) as sent:
        page.goto(f"{site}/howdy")
    assert sent.value.all_headers().get("cookie") == f"{name}={value}"
    expect(page.locator("#counter")).to_have_text("2")  # the app read the cookie back
    expect(page.locator(".flash li")).to_have_text(messages)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"largest-cookie-{factory}.png"), full_page=True)
    print(  # pytest -s shows the measurements
        f"{factory}: value {len(value)}, name+value {len(name) + len(value)}, "
        f"Set-Cookie line {len(set_cookie)} bytes: {set_cookie[len(name) + len(value) + 1 :]}"
    )


def assert_overflow_starts_small(page: Page, site: str, cap: int) -> None:
    """One message more than the cap holds (an error: none is queued yet, so none makes
    room): the app drops the queue and says so, and Chromium gets a small cookie again."""
    _, messages = fill_to_cap(page, cap)
    assert not [message for message in messages if message.startswith("error")]
    set_cookie = post_flash(page, "error", "one too many")
    assert len(set_cookie.split(";", 1)[0]) < cap // 2, set_cookie
    page.goto(f"{site}/")
    expect(page.locator("#counter")).to_have_text("3")
    expect(page.locator(".flash li")).to_have_text([DROPPED_MESSAGES_NOTICE])


def assert_chromium_keeps_the_largest_cookie(browser: Browser, project: Path, factory: str):
    """The installed cookie store's project, served as in production: Chromium keeps its
    largest cookie and sends it back, and one message more starts a small one."""
    cap = project_cap(project)
    with waitress_server(project, "production.ini", production_env(project, factory)) as (
        site,
        _,
    ):
        context = browser.new_context(viewport={"width": 1000, "height": 720})
        try:
            page = context.new_page()
            assert_largest_cookie_kept(page, site, cap, factory)
            assert_overflow_starts_small(page, site, cap)
        finally:
            context.close()

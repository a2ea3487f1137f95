"""Flash messages: grouped by category, shown exactly once, escaped, capped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import webtest
from helpers import counter, csrf_token, flash_groups, post_form
from pyramid.interfaces import ISession
from pyramid.scripting import prepare

from {{ cookiecutter.project_slug }}.flash import (
    CATEGORIES,
    MAX_MESSAGE_LENGTH,
    MAX_MESSAGES_PER_CATEGORY,
    QUEUE,
    FlashGroup,
    flash,
    pop_flash_groups,
    shorten,
)

RESET_MESSAGE = "The counter was reset: it starts again at 1 on this page."


def test_reset_flashes_once_after_the_redirect(testapp: webtest.TestApp) -> None:
    for _ in range(3):
        testapp.get("/howdy")
    response = post_form(testapp, "/reset")
    assert response.location.endswith("/")
    page = response.follow()
    assert flash_groups(page) == {"success": [RESET_MESSAGE]}
    assert counter(page) == 1  # what the message says this page shows
    assert flash_groups(testapp.get("/")) == {}


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_has_its_own_group(testapp: webtest.TestApp, category: str) -> None:
    post_form(testapp, "/flash", category=category, message=f"a {category} message")
    assert flash_groups(testapp.get("/howdy")) == {category: [f"a {category} message"]}


def test_groups_come_in_category_order_with_messages_in_order(testapp) -> None:
    token = csrf_token(testapp.get("/"))
    for category, message in [("error", "e1"), ("info", "i1"), ("error", "e2"), ("success", "s")]:
        post_form(testapp, "/flash", token, category=category, message=message)
    page = testapp.get("/")
    assert flash_groups(page) == {"info": ["i1"], "success": ["s"], "error": ["e1", "e2"]}
    assert page.text.index("flash-info") < page.text.index("flash-success")
    assert page.text.index("flash-success") < page.text.index("flash-error")


@pytest.mark.parametrize(
    ("category", "role"),
    [("info", "status"), ("success", "status"), ("warning", "alert"), ("error", "alert")],
)
def test_groups_are_announced_to_screen_readers(testapp, category: str, role: str) -> None:
    post_form(testapp, "/flash", category=category, message="hello")
    page = testapp.get("/").text
    assert f'class="flash flash-{category}" role="{role}"' in page
    assert 'aria-live="polite"' in page
    assert f'aria-label="Dismiss {category} messages"' in page


def test_messages_are_html_escaped(testapp: webtest.TestApp) -> None:
    post_form(testapp, "/flash", category="info", message="<script>alert(1)</script> ${1+1}")
    page = testapp.get("/")
    assert "<script>alert(1)" not in page.text
    assert flash_groups(page) == {"info": ["&lt;script&gt;alert(1)&lt;/script&gt; ${1+1}"]}


PICK_ONE = f"Pick one of: {', '.join(CATEGORIES)}."


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"category": "shouting", "message": "hi"}, {"error": [PICK_ONE]}),
        ({"message": "hi"}, {"error": [PICK_ONE]}),
        ({"category": "info", "message": "   "}, {"warning": ["Type a message to flash."]}),
        ({"category": "info"}, {"warning": ["Type a message to flash."]}),
    ],
    ids=["unknown-category", "no-category", "blank-message", "no-message"],
)
def test_bad_flash_form_explains_itself(testapp, fields: dict, expected: dict) -> None:
    post_form(testapp, "/flash", **fields)
    assert flash_groups(testapp.get("/")) == expected


def test_only_the_newest_messages_per_category_are_kept(testapp: webtest.TestApp) -> None:
    token = csrf_token(testapp.get("/"))
    for number in range(MAX_MESSAGES_PER_CATEGORY + 3):
        post_form(testapp, "/flash", token, category="info", message=f"message {number}")
    kept = flash_groups(testapp.get("/"))["info"]
    assert kept == [f"message {n}" for n in range(3, MAX_MESSAGES_PER_CATEGORY + 3)]


def test_a_repeated_message_is_shown_once(testapp: webtest.TestApp) -> None:
    token = csrf_token(testapp.get("/"))
    for _ in range(3):
        post_form(testapp, "/flash", token, category="warning", message="same")
    assert flash_groups(testapp.get("/")) == {"warning": ["same"]}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("short", "short"),
        ("  several   spaces\nand lines ", "several spaces and lines"),
        ("x" * MAX_MESSAGE_LENGTH, "x" * MAX_MESSAGE_LENGTH),
        ("x" * (MAX_MESSAGE_LENGTH + 1), "x" * (MAX_MESSAGE_LENGTH - 1) + "…"),
    ],
    ids=["short", "white-space", "at-limit", "over-limit"],
)
def test_shorten(message: str, expected: str) -> None:
    assert shorten(message) == expected


@pytest.fixture
def session(app) -> Iterator[ISession]:
    """The session of a request made outside the web server."""
    with prepare(registry=app.registry) as env:
        yield env["request"].session


def test_unknown_category_is_a_programming_error(session: ISession) -> None:
    with pytest.raises(ValueError, match="unknown flash category 'debug'"):
        flash(session, "debug", "hi")


def test_blank_message_is_not_queued(session: ISession) -> None:
    flash(session, "info", " \n ")
    assert pop_flash_groups(session) == ()


@pytest.mark.parametrize(
    "junk",
    ["plain text", ["info"], ["shouting", "hi"], ["info", 3], {"info": "hi"}],
    ids=["string", "short-list", "unknown-category", "not-text", "dict"],
)
def test_foreign_entries_in_the_queue_are_ignored(session: ISession, junk: object) -> None:
    session.flash(junk, queue=QUEUE)
    flash(session, "info", "kept")
    assert pop_flash_groups(session) == (FlashGroup("info", ("kept",)),)


def test_flash_group_roles() -> None:
    assert FlashGroup("error", ("x",)).role == "alert"
    assert FlashGroup("info", ("x",)).role == "status"

"""The counter: both pages share it, and it outlives the app instance; a counter of the
app's own (``sessions.increment_counter``) takes any step, and only counters it names."""

from __future__ import annotations

import pytest
import webtest
from chameleon.template import BaseTemplate
from helpers import (
    TEST_VIEWS,
    app_with_test_views,
    counter,
    post_form,
    session_cookie,
    sign_in,
    text,
)
from pyramid.request import Request

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions import increment_counter, reset_counter


def test_home_and_howdy_share_one_counter(testapp: webtest.TestApp) -> None:
    seen = [counter(testapp.get(path)) for path in ("/", "/howdy", "/", "/howdy", "/howdy")]
    assert seen == [1, 2, 3, 4, 5]


def test_each_browser_has_its_own_counter(app) -> None:
    first, second = webtest.TestApp(app), webtest.TestApp(app)
    first.get("/")
    first.get("/")
    assert counter(second.get("/")) == 1
    assert counter(first.get("/howdy")) == 3


def test_counter_survives_a_new_app_instance(app_settings: dict, testapp) -> None:
    testapp.get("/")
    testapp.get("/howdy")
    restarted = webtest.TestApp(main({}, **app_settings))
    restarted.set_cookie("session", session_cookie(testapp))
    assert counter(restarted.get("/")) == 3


def test_reset_sets_the_counter_back_to_zero(testapp: webtest.TestApp) -> None:
    for _ in range(3):
        testapp.get("/howdy")
    post_form(testapp, "/reset")
    assert counter(testapp.get("/")) == 1


def test_forget_starts_a_new_session(testapp: webtest.TestApp) -> None:
    testapp.get("/")
    post_form(testapp, "/forget")
    page = testapp.get("/")
    assert counter(page) == 1
    assert "Your session was cleared." in page


def test_the_page_counts_in_words(testapp: webtest.TestApp) -> None:
    assert "visited these pages 1 time in this session" in text(testapp.get("/"))
    assert "visited these pages 2 times in this session" in text(testapp.get("/"))


def test_no_request_compiles_a_template(app_settings: dict, monkeypatch) -> None:
    """Chameleon compiling one template in several threads at once can fail (a 500 among
    the first requests after a start): main() compiles every page, and the copy of the
    layout each page loads ("load: layout.pt"), before any request. (A fresh app: the
    run's has served other tests' requests.)"""
    app = main({}, **app_settings)
    compiled = []
    cook = BaseTemplate.cook

    def counted_cook(template: BaseTemplate, body: str) -> None:
        compiled.append(template.filename)
        cook(template, body)

    monkeypatch.setattr(BaseTemplate, "cook", counted_cook)
    browser = webtest.TestApp(app)
    for path, status in (("/", 200), ("/howdy", 200), ("/login", 200), ("/nowhere", 404)):
        browser.get(path, status=status)
    sign_in(browser, "editor", "editor")
    browser.get("/sessions", status=200)
    assert compiled == []


def add_to_cart(request: Request) -> dict:
    """Add ``quantity`` of ``item`` to a cart kept in counters, ``cart.<item>``."""
    name, quantity = f"cart.{request.params['item']}", int(request.params["quantity"])
    return {"in_cart": increment_counter(request, name, quantity)}


def take_out_of_cart(request: Request) -> dict:
    """Empty the cart of ``item``; then what is left of it (nothing) and of apples."""
    reset_counter(request, f"cart.{request.params['item']}")
    return {"left": increment_counter(request, f"cart.{request.params['item']}", 0)}


@pytest.fixture
def shop(app_settings: dict) -> webtest.TestApp:
    """The app plus two test views that keep a cart in counters."""
    return app_with_test_views(app_settings, add=add_to_cart, remove=take_out_of_cart)


def in_cart(shop: webtest.TestApp, item: str, quantity: int) -> int:
    """Add ``quantity`` of ``item``; how many are in the cart now."""
    return shop.get(f"{TEST_VIEWS}/add", {"item": item, "quantity": quantity}).json["in_cart"]


def test_a_counter_of_your_own_takes_any_step(shop: webtest.TestApp) -> None:
    assert [in_cart(shop, "apples", 3), in_cart(shop, "apples", 4)] == [3, 7]
    assert in_cart(shop, "pears", 1) == 1
    assert in_cart(shop, "apples", -10) == -3
    assert in_cart(shop, "apples", 0) == -3  # a step of 0 reads it
    assert counter(shop.get("/")) == 1  # the visit counter is another


def test_reset_sets_one_counter_back_to_zero(shop: webtest.TestApp) -> None:
    in_cart(shop, "apples", 3)
    in_cart(shop, "pears", 2)
    assert shop.get(f"{TEST_VIEWS}/remove", {"item": "apples"}).json == {"left": 0}
    assert (in_cart(shop, "apples", 1), in_cart(shop, "pears", 0)) == (1, 2)


def test_reading_a_counter_makes_no_session(shop: webtest.TestApp) -> None:
    assert in_cart(shop, "apples", 0) == 0
    assert "Set-Cookie" not in shop.get(f"{TEST_VIEWS}/add", {"item": "x", "quantity": 0})


# What no store can keep under a name of its own, or count without overflowing.
BAD_COUNTERS = {
    "empty-name": ("", 1),
    "quote-in-the-name": ('a"b', 1),
    "space-in-the-name": ("a b", 1),
    "name-too-long": ("n" * 101, 1),
    "step-too-large": ("steps", 10**12 + 1),
    "step-a-float": ("steps", 1.5),
    "step-a-bool": ("steps", True),
}


@pytest.mark.parametrize(("name", "by"), BAD_COUNTERS.values(), ids=BAD_COUNTERS)
def test_a_name_or_step_no_store_can_take_is_refused(app_settings, name, by) -> None:
    """A bug in the view, refused before the store sees it (the 500 page)."""
    seen = []

    def bad_increment(request: Request) -> dict:
        with pytest.raises(ValueError, match="counter's"):
            increment_counter(request, name, by)
        with pytest.raises(ValueError, match="counter's name"):
            reset_counter(request, 'a"b')
        seen.append(True)
        return {}

    app_with_test_views(app_settings, bad=bad_increment).get(f"{TEST_VIEWS}/bad")
    assert seen == [True]

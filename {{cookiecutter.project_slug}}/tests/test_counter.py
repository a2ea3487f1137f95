"""The counter: both pages share it, and it outlives the app instance."""

from __future__ import annotations

import webtest
from helpers import counter, post_form, session_cookie, text
from pyramid.renderers import get_renderer

from {{ cookiecutter.project_slug }} import TEMPLATES, main


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


def test_every_template_is_compiled_before_the_first_request(app) -> None:
    """Chameleon compiling one template in several threads at once can fail (a 500 among
    the first requests after a start): main() compiles them all before any request."""
    for template in sorted(TEMPLATES.glob("*.pt")):
        spec = f"{{ cookiecutter.project_slug }}:templates/{template.name}"
        renderer = get_renderer(spec, registry=app.registry)
        assert renderer.implementation()._cooked, f"{template.name} is left to a request"

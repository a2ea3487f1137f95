"""CSRF protection, cookie flags and error pages."""

from __future__ import annotations

from html import escape

import pytest
import webtest
from helpers import csrf_token, flash_groups, post_form, text

from {{ cookiecutter.project_slug }} import main

FORMS = ["/reset", "/flash", "/forget"]


@pytest.mark.parametrize("path", FORMS)
def test_post_without_token_is_a_400_page(testapp: webtest.TestApp, path: str) -> None:
    testapp.get("/")
    response = testapp.post(path, {"category": "info", "message": "x"}, status=400)
    assert "This form was stale or did not come from this site." in text(response)
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", FORMS)
def test_post_with_a_wrong_token_is_a_400_page(testapp: webtest.TestApp, path: str) -> None:
    testapp.get("/")
    testapp.post(path, {"csrf_token": "0" * 40}, status=400)


def test_token_from_another_session_is_rejected(app) -> None:
    attacker, victim = webtest.TestApp(app), webtest.TestApp(app)
    token = csrf_token(attacker.get("/"))
    victim.get("/")
    victim.post("/reset", {"csrf_token": token}, status=400)


def test_token_in_header_is_accepted(testapp: webtest.TestApp) -> None:
    token = csrf_token(testapp.get("/"))
    testapp.post("/reset", headers={"X-CSRF-Token": token}, status=303)


def test_rejected_post_changes_nothing_and_keeps_messages(testapp: webtest.TestApp) -> None:
    post_form(testapp, "/flash", category="info", message="still here")
    testapp.post("/reset", {"csrf_token": "bad"}, status=400)
    assert flash_groups(testapp.get("/")) == {"info": ["still here"]}


def test_get_on_a_form_action_is_a_404_page(testapp: webtest.TestApp) -> None:
    response = testapp.get("/reset", status=404)
    assert "There is no page at this address." in text(response)


def test_unknown_page_is_a_404_in_the_layout(testapp: webtest.TestApp) -> None:
    response = testapp.get("/nowhere", status=404)
    assert 'class="site-header"' in response.text


def set_cookie_header(response: webtest.TestResponse) -> str:
    """The session's Set-Cookie header."""
    headers = [value for name, value in response.headerlist if name == "Set-Cookie"]
    assert len(headers) == 1, headers
    return headers[0]


def test_development_cookie_flags(testapp: webtest.TestApp) -> None:
    header = set_cookie_header(testapp.get("/"))
    assert header.startswith("session=")
    assert "; HttpOnly" in header
    assert "; SameSite=Lax" in header
    assert "; secure" not in header.lower()


def test_production_cookie_is_secure(app_settings: dict) -> None:
    testapp = webtest.TestApp(main({}, **{**app_settings, "session.secure": "true"}))
    header = set_cookie_header(testapp.get("/", extra_environ={"wsgi.url_scheme": "https"}))
    assert "; secure" in header.lower()
    assert "; HttpOnly" in header
    assert "; SameSite=Lax" in header


def test_static_files_are_served(testapp: webtest.TestApp) -> None:
    assert ".flash-error" in testapp.get("/static/app.css").text
    assert "flash-dismiss" in testapp.get("/static/app.js").text


def test_project_name_is_escaped_on_every_page(testapp: webtest.TestApp, app_settings) -> None:
    name = escape(app_settings["app.project_name"], quote=False)
    assert f"<title>Home · {name}</title>" in testapp.get("/").text
    assert f'class="brand" href="http://localhost/">{name}</a>' in testapp.get("/howdy").text

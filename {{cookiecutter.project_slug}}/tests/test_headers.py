"""Security headers on every response, error pages included, and the settings that change them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest
from helpers import assert_security_headers, post_form

import {{ cookiecutter.project_slug }}
from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.hardening.limits import DEFAULT_MAX_BODY_SIZE

TEMPLATES = Path({{ cookiecutter.project_slug }}.__file__).parent / "templates"
# What a Content-Security-Policy without 'unsafe-inline' blocks: style elements and
# attributes, event-handler attributes, and scripts written into the page.
INLINE_SCRIPT_OR_STYLE = re.compile(r"<style|\sstyle=|\son[a-z]+=|<script(?![^>]*\ssrc=)", re.I)


def counter_page(testapp: webtest.TestApp) -> webtest.TestResponse:
    """A page with the session's count and a CSRF token."""
    return testapp.get("/")


def redirect_after_a_form(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The 303 after a form, which sets the session cookie."""
    return post_form(testapp, "/reset")


def static_file(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The stylesheet, which keeps its own Cache-Control."""
    response = testapp.get("/static/app.css")
    assert response.headers["Cache-Control"] == "max-age=3600"
    return response


def not_found_page(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The 404 page, made by an exception view."""
    return testapp.get("/nowhere", status=404)


def form_without_csrf_token(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The 400 page of a rejected form."""
    testapp.get("/")
    return testapp.post("/reset", status=400)


def path_not_utf8(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The 400 page of an address that is not UTF-8."""
    return testapp.get("/%FF", status=400)


def body_over_the_limit(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The 413 page of a body larger than request.max_body_size."""
    body = b"a=&" * DEFAULT_MAX_BODY_SIZE
    return testapp.request("/flash", method="POST", body=body, status=413)


def static_directory_redirect(testapp: webtest.TestApp) -> webtest.TestResponse:
    """The static view's redirect from a directory's name to the name with a slash."""
    return testapp.get("/static/.", status=301)


Visit = Callable[[webtest.TestApp], webtest.TestResponse]
# How each kind of response is got, and whether browsers and caches may keep it.
RESPONSES: dict[str, tuple[Visit, bool]] = {
    "counter-page": (counter_page, False),
    "redirect-after-a-form": (redirect_after_a_form, False),
    "static-file": (static_file, True),
    "404-page": (not_found_page, False),
    "400-page-form-without-csrf-token": (form_without_csrf_token, False),
    "400-page-path-not-utf8": (path_not_utf8, False),
    "413-page-body-over-the-limit": (body_over_the_limit, False),
    "301-static-directory-redirect": (static_directory_redirect, False),
}


@pytest.mark.parametrize(("visit", "cacheable"), RESPONSES.values(), ids=RESPONSES)
def test_every_response_carries_the_security_headers(testapp, visit: Visit, cacheable: bool):
    assert_security_headers(visit(testapp), cacheable=cacheable)


HSTS = "Strict-Transport-Security"
# session.secure says the site is served over HTTPS only: then browsers are told so too.
HSTS_BY_SESSION_SECURE = {
    "secure-sessions-send-hsts": ({"session.secure": "true"}, "max-age=31536000"),
    "secure-by-default-sends-hsts": ({"session.secure": None}, "max-age=31536000"),
    "plain-http-sessions-send-no-hsts": ({"session.secure": "false"}, None),
}


def app_with(app_settings: dict, changes: dict[str, str | None]) -> webtest.TestApp:
    """The app with ``changes`` to its settings (None removes a setting)."""
    settings = {**app_settings, **changes}
    return webtest.TestApp(main({}, **{k: v for k, v in settings.items() if v is not None}))


@pytest.mark.parametrize(
    ("changes", "hsts"), HSTS_BY_SESSION_SECURE.values(), ids=HSTS_BY_SESSION_SECURE
)
def test_hsts_follows_session_secure(app_settings, changes: dict, hsts: str | None) -> None:
    page = app_with(app_settings, changes).get("/", extra_environ={"wsgi.url_scheme": "https"})
    assert page.headers.get(HSTS) == hsts


# A setting, the header it changes, and the value that header then has (None: not sent).
HEADER_SETTINGS = {
    "referrer-policy-overridden": (
        {"security.referrer_policy": "no-referrer"},
        "Referrer-Policy",
        "no-referrer",
    ),
    "x-frame-options-dropped": ({"security.x_frame_options": ""}, "X-Frame-Options", None),
    "no-store-dropped": ({"security.cache_control": ""}, "Cache-Control", None),
    "multi-line-csp-folded": (
        {"security.content_security_policy": "default-src 'self';\n  img-src 'self' data:"},
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:",
    ),
    "hsts-overridden": (
        {"session.secure": "true", "security.strict_transport_security": "max-age=60"},
        HSTS,
        "max-age=60",
    ),
}


@pytest.mark.parametrize(
    ("changes", "header", "value"), HEADER_SETTINGS.values(), ids=HEADER_SETTINGS
)
def test_settings_change_or_drop_a_header(app_settings, changes: dict, header: str, value) -> None:
    page = app_with(app_settings, changes).get("/", extra_environ={"wsgi.url_scheme": "https"})
    assert page.headers.get(header) == value


def test_a_misspelt_security_setting_refuses_to_start(app_settings: dict) -> None:
    with pytest.raises(SystemExit, match=r"security\.referer_policy"):
        main({}, **{**app_settings, "security.referer_policy": "no-referrer"})


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.pt")), ids=lambda path: path.name)
def test_templates_have_no_inline_script_or_style(template: Path) -> None:
    """The Content-Security-Policy forbids them: the page would break in the browser."""
    assert INLINE_SCRIPT_OR_STYLE.findall(template.read_text(encoding="utf-8")) == []

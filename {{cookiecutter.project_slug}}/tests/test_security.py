"""CSRF protection, cookie flags, error pages, and no client-chosen host in any response."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from html import escape
from urllib.parse import urljoin, urlsplit

import plaster
import pytest
import webtest
from helpers import (
    PROJECT_DIR,
    TEST_VIEWS,
    app_with_test_views,
    csrf_token,
    flash_groups,
    post_form,
    session_cookie,
    text,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyramid.httpexceptions import HTTPFound
from pyramid.request import Request
from waitress.adjustments import Adjustments
from waitress.proxy_headers import proxy_headers_middleware

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.hardening.headers import path_of

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


# Posts a browser sends without the session cookie: a form on another site (SameSite=Lax
# keeps the cookie off a cross-site POST), or one whose session expired.
POSTS_WITHOUT_A_COOKIE = {
    "no-token": {},
    "a-token": {"csrf_token": "0" * 40},
    "an-empty-token": {"csrf_token": ""},
}


@pytest.mark.parametrize("form", POSTS_WITHOUT_A_COOKIE.values(), ids=POSTS_WITHOUT_A_COOKIE)
@pytest.mark.parametrize("path", FORMS)
def test_a_post_without_a_cookie_gets_no_session_cookie(app, path: str, form: dict) -> None:
    """The browser would store it, over the session cookie it holds: any site could end
    the user's session with one hidden form."""
    response = webtest.TestApp(app).post(path, form, status=400)
    assert "Set-Cookie" not in response.headers


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
    assert f'class="brand" href="/">{name}</a>' in testapp.get("/howdy").text


# A client's own Host and X-Forwarded-* headers: a page that repeats them in a URL poisons
# any shared cache in front of the app.
POISONED_HEADERS = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "666",
}
# How they would show in a URL (":666", not "666": a random token may contain that).
POISON = ("evil.example", ":666")
# The proxy on this machine, the peer production.ini trusts.
PROXY_ADDRESS = "127.0.0.1"


def poison_in(response: webtest.TestResponse) -> list[str]:
    """The forged host or port, wherever ``response`` shows it: headers or body."""
    headers = "\n".join(f"{name}: {value}" for name, value in response.headerlist)
    return [poison for poison in POISON if poison in f"{headers}\n{response.text}"]


def counter_page(testapp: webtest.TestApp, headers: dict) -> webtest.TestResponse:
    """A page with links, a stylesheet, a script and forms."""
    return testapp.get("/", headers=headers)


def redirect_after_a_form(testapp: webtest.TestApp, headers: dict) -> webtest.TestResponse:
    """The 303 after a form (the session cookie is sent by hand: the Host is not ours)."""
    token = csrf_token(testapp.get("/"))
    cookie = {"Cookie": f"session={session_cookie(testapp)}"}
    return testapp.post("/reset", {"csrf_token": token}, headers={**headers, **cookie}, status=303)


def not_found_page(testapp: webtest.TestApp, headers: dict) -> webtest.TestResponse:
    """An error page in the layout."""
    return testapp.get("/nowhere", headers=headers, status=404)


Visit = Callable[[webtest.TestApp, dict], webtest.TestResponse]
POISONABLE: dict[str, Visit] = {
    "counter-page": counter_page,
    "redirect-after-a-form": redirect_after_a_form,
    "404-page": not_found_page,
}


@pytest.mark.parametrize("visit", POISONABLE.values(), ids=POISONABLE)
def test_no_client_chosen_host_in_any_response(testapp: webtest.TestApp, visit: Visit) -> None:
    assert poison_in(visit(testapp, POISONED_HEADERS)) == []


def test_the_redirect_location_is_a_path(testapp: webtest.TestApp) -> None:
    assert redirect_after_a_form(testapp, {}).headers["Location"] == "/"


# Every redirect the app sends by itself, asked for with a forged host, and where it leads.
# The static view redirects a path that names its directory to the path with a slash.
APP_REDIRECTS = {
    "static-dot": ("/static/.", 301, "/static/./"),
    "static-dot-dot": ("/static/..", 301, "/static/../"),
    "static-escaped-dot": ("/static/%2e", 301, "/static/./"),
    "static-escaped-dot-dot": ("/static/%2E%2E", 301, "/static/../"),
    "static-dot-with-a-query": ("/static/.?page=1", 301, "/static/./?page=1"),
    "static-double-slash-dot": ("/static//.", 301, "/static//./"),
    "no-add-slash-for-pages": ("/howdy/", 404, None),
    "no-redirect-for-a-double-slash": ("//evil.example/", 404, None),
}


@pytest.mark.parametrize(("path", "status", "location"), APP_REDIRECTS.values(), ids=APP_REDIRECTS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_redirect_the_app_sends_is_a_path(testapp, method, path, status, location) -> None:
    response = testapp.request(path, method=method, headers=POISONED_HEADERS, expect_errors=True)
    assert (response.status_int, response.headers.get("Location")) == (status, location)
    assert poison_in(response) == []
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", FORMS)
def test_every_form_redirects_to_a_path(testapp: webtest.TestApp, path: str) -> None:
    token = csrf_token(testapp.get("/"))
    cookie = {"Cookie": f"session={session_cookie(testapp)}"}
    form = {"csrf_token": token, "category": "info", "message": "x"}
    response = testapp.post(path, form, headers={**POISONED_HEADERS, **cookie}, status=303)
    assert response.headers["Location"] == "/"
    assert poison_in(response) == []


# Locations a view of yours might write, and the path each goes out as: a URL naming the
# host the client sent becomes its path, and no path may read as a host (other.example)
# in a browser.
VIEW_LOCATIONS: dict[str, tuple[Callable[[Request], str], str]] = {
    "route-url-with-the-client-host": (lambda request: request.route_url("home"), "/"),
    "url-with-a-query-and-fragment": (
        lambda request: request.route_url("home", _query={"a": "1"}, _anchor="top"),
        "/?a=1#top",
    ),
    "relative": (lambda request: "howdy", "howdy"),
    "protocol-relative": (lambda request: "//other.example/x", "/x"),
    "backslash-after-the-slash": (lambda request: "/\\other.example/x", "/%5Cother.example/x"),
    "space-before-two-slashes": (lambda request: " //other.example/x", "/x"),
    "tab-between-the-slashes": (lambda request: "/\t/other.example/x", "/x"),
    "client-host-then-two-slashes": (
        lambda request: request.host_url + "//other.example/x",
        "/%2Fother.example/x",
    ),
    "client-host-over-https": (lambda request: "https://EVIL.example/x", "/x"),
    "client-host-with-a-user-and-port": (lambda request: "http://u@evil.example:8080", "/"),
}


@pytest.mark.parametrize(("location", "path"), VIEW_LOCATIONS.values(), ids=VIEW_LOCATIONS)
def test_a_redirect_of_a_view_goes_out_as_a_path(app_settings, location, path: str) -> None:
    def redirect(request: Request) -> HTTPFound:
        return HTTPFound(location=location(request))

    testapp = app_with_test_views(app_settings, redirect=redirect)
    response = testapp.get(f"{TEST_VIEWS}/redirect", headers=POISONED_HEADERS, status=302)
    assert response.headers["Location"] == path
    assert poison_in(response) == []


@pytest.mark.parametrize(
    "location", ["https://accounts.example/sign-in?next=%2F", "mailto:help@other.example"]
)
def test_a_redirect_to_another_site_is_left_alone(app_settings, location: str) -> None:
    """A URL with another host was written by the app itself (a sign-in provider, say)."""

    def redirect(request: Request) -> HTTPFound:
        return HTTPFound(location=location)

    testapp = app_with_test_views(app_settings, redirect=redirect)
    response = testapp.get(f"{TEST_VIEWS}/redirect", headers=POISONED_HEADERS, status=302)
    assert response.headers["Location"] == location


# Pieces a Location may be made of, in any order: hosts, schemes, and what browsers drop
# or read as a slash.
LOCATION_PIECES = ["/", "\\", "\t", " ", "http:", "HTTPS:", "//", "evil.example", "o.example"]
LOCATION_PIECES += [":8080", "@", "?", "#", "x"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(LOCATION_PIECES), max_size=8))
@example(pieces=[" ", "http:", " ", "//", "\\"])  # a path that starts with a space
@example(pieces=["evil.example", "http:"])  # a path a browser reads as a scheme
@example(pieces=["http:", "//", "evil.example", ":8080", "http:"])  # a port that is no number
def test_no_location_made_a_path_leads_to_another_host(pieces: list[str]) -> None:
    location = "".join(pieces)
    request = Request.blank("/page/", headers={"Host": "evil.example"})
    path = path_of(request, location)
    if path is None:  # another site's URL, which WebOb sends as it is: it has a scheme
        assert re.match(r"[a-z]+:", location.replace("\t", ""), re.IGNORECASE)
        assert urlsplit(location.replace("\t", "")).hostname != "evil.example"
        return
    assert not path.startswith("//")
    assert not any(character in path for character in "\\\t\r\n")
    assert urlsplit(urljoin("http://evil.example/page/", path)).hostname == "evil.example"


# Host headers no URL parser reads (urllib raises on brackets that do not pair), and others.
ODD_HOSTS = ["[", "]", "[::1", "a]b", "[::1]", "evil.example:80", "u@evil.example", "ev il"]


@pytest.mark.parametrize("host", ODD_HOSTS)
def test_any_host_header_gets_the_redirect_as_a_path(app, host: str) -> None:
    client = webtest.TestApp(app, lint=False)  # its cookie jar cannot read such a host
    response = client.get("/static/.", headers={"Host": host}, status=301)
    assert response.headers["Location"] == "/static/./"


# Host headers with a character that ends a URL's host (/ \ ? #), or with no host before
# the port. No browser sends one, but a client can (waitress passes it on); WebOb writes
# it into every URL it makes: the add-slash redirect, request.route_url.
HOSTS_THAT_END_EARLY = {
    "slash": "evil.example/x",
    "backslash": "evil.example\\x",
    "question-mark": "evil.example?x",
    "hash": "evil.example#x",
    "user-after-a-slash": "this.site/@evil.example",
    "port-only": ":80",
    "colon-only": ":",
    "tab-only": "\t",
}


@pytest.mark.parametrize("host", HOSTS_THAT_END_EARLY.values(), ids=HOSTS_THAT_END_EARLY)
def test_a_host_that_ends_early_gets_the_redirect_as_a_path(app, host: str) -> None:
    client = webtest.TestApp(app, lint=False)  # its cookie jar cannot read such a host
    location = client.get("/static/.", headers={"Host": host}, status=301).headers["Location"]
    assert location.startswith("/")
    assert urlsplit(urljoin("http://this.site/static/.", location)).hostname == "this.site"


HOST_PIECES = ["evil.example", "/", "\\", "?", "#", ":", "80", "@", "[", "]", "\t", " "]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(HOST_PIECES), max_size=6))
@example(pieces=["evil.example", "/"])
def test_no_url_made_of_any_host_header_keeps_the_host(pieces: list[str]) -> None:
    """Whatever the Host header holds, a URL WebOb makes of it goes out as a path."""
    request = Request.blank("/", headers={"Host": "".join(pieces)})
    path = path_of(request, request.host_url + "/page")
    assert path is not None
    assert urlsplit(urljoin("http://this.site/", path)).hostname == "this.site"


def production_server() -> Adjustments:
    """production.ini's [server:main], read by waitress itself."""
    settings = dict(plaster.get_settings(str(PROJECT_DIR / "production.ini"), "server:main"))
    settings.pop("use")
    return Adjustments(**settings)


def behind_production_waitress(app) -> webtest.TestApp:
    """``app`` wrapped in the proxy-header handling production's waitress adds, and a client
    that connects from the proxy's address."""
    server = production_server()
    wrapped = proxy_headers_middleware(
        app,
        trusted_proxy=server.trusted_proxy,
        trusted_proxy_count=server.trusted_proxy_count,
        trusted_proxy_headers=server.trusted_proxy_headers,
        clear_untrusted=server.clear_untrusted_proxy_headers,
    )
    return webtest.TestApp(wrapped, extra_environ={"REMOTE_ADDR": PROXY_ADDRESS})


@pytest.mark.parametrize("visit", POISONABLE.values(), ids=POISONABLE)
def test_production_waitress_passes_no_forged_host_or_port(app, visit: Visit) -> None:
    environs: list[dict] = []

    def app_that_notes_its_environ(environ: dict, start_response: Callable):
        environs.append(dict(environ))
        return app(environ, start_response)

    response = visit(behind_production_waitress(app_that_notes_its_environ), POISONED_HEADERS)
    assert poison_in(response) == []
    # Host passes (the proxy sets it, from the client); nothing else forged reaches the app.
    forged = [
        f"{name}={value}"
        for environ in environs
        for name, value in environ.items()
        if name != "HTTP_HOST" and value in ("evil.example", "666", "evil.example:666")
    ]
    assert forged == []


NGINX_SNIPPET = re.compile(r"```nginx\n(.*?)```", re.DOTALL)
PROXY_SET_HEADER = re.compile(r"^\s*proxy_set_header\s+(\S+)\s", re.MULTILINE)


# Where the documentation shows the proxy in front of the app.
PRODUCTION_DOC = PROJECT_DIR / "docs" / "production.md"


def documented_nginx_configuration() -> str:
    """The nginx configuration docs/production.md shows."""
    match = NGINX_SNIPPET.search(PRODUCTION_DOC.read_text(encoding="utf-8"))
    assert match, f"{PRODUCTION_DOC.name} has no nginx configuration"
    return match.group(1)


def headers_the_documented_proxy_sets() -> set[str]:
    """The request headers the documented nginx configuration sets, lowercase."""
    return {name.lower() for name in PROXY_SET_HEADER.findall(documented_nginx_configuration())}


def test_production_trusts_only_headers_the_documented_proxy_sets() -> None:
    set_by_proxy = headers_the_documented_proxy_sets()
    assert production_server().trusted_proxy_headers <= set_by_proxy
    assert {"host", "x-forwarded-for", "x-forwarded-proto"} <= set_by_proxy


def test_the_documented_proxy_overwrites_what_the_client_sent() -> None:
    """Appending ($proxy_add_x_forwarded_for) would pass the client's own value on: a
    forged address, or a malformed one that waitress answers with a bare 400 itself."""
    nginx = documented_nginx_configuration()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in nginx
    assert "$proxy_add_x_forwarded_for" not in nginx


def test_production_listens_on_loopback_only() -> None:
    """Only the proxy on this machine, the one peer trusted with X-Forwarded-*, can connect."""
    server = production_server()
    assert {sockaddr[0] for *_, sockaddr in server.listen} == {PROXY_ADDRESS}
    assert server.trusted_proxy == PROXY_ADDRESS


# Requests whose path is not UTF-8: WebOb cannot decode it, and Pyramid raises URLDecodeError.
UNDECODABLE_PATH_HEADERS = {
    "path-not-utf8": {},
    "path-and-a-cookie-not-utf8": {"Cookie": "junk=\xff; theme=dark"},
}


@pytest.mark.parametrize(
    "headers", UNDECODABLE_PATH_HEADERS.values(), ids=UNDECODABLE_PATH_HEADERS
)
def test_a_path_that_is_not_utf8_is_a_400_page(testapp, caplog, headers: dict) -> None:
    with caplog.at_level(logging.INFO):
        response = testapp.get("/%FF", headers=headers, status=400)
    assert "This address is not valid." in text(response)
    assert 'class="site-header"' in response.text
    assert ("dropped cookies that are not UTF-8 from /%FF" in caplog.text) == bool(headers)


HTTPS_SITE = {"wsgi.url_scheme": "https", "HTTP_HOST": "shop.example"}
# Requests that used to fail before the CSRF check, as a bare 500 without headers.
MALFORMED_POSTS = {
    "origin-no-url": ({"Origin": "https://["}, "application/x-www-form-urlencoded"),
    "referer-no-url": ({"Referer": "https://[x/"}, "application/x-www-form-urlencoded"),
    "form-in-latin-1": ({}, "application/x-www-form-urlencoded; charset=latin-1"),
    "form-in-utf-7": ({}, "application/x-www-form-urlencoded; charset=utf-7"),
    "form-in-no-charset": ({}, "application/x-www-form-urlencoded; charset=nonsense"),
}


@pytest.mark.parametrize(
    ("headers", "content_type"), MALFORMED_POSTS.values(), ids=MALFORMED_POSTS
)
@pytest.mark.parametrize("path", FORMS)
def test_a_malformed_post_is_the_400_page(testapp, headers, content_type, path) -> None:
    token = csrf_token(testapp.get("/", extra_environ=HTTPS_SITE))
    response = testapp.post(
        path,
        f"csrf_token={token}",
        headers={**headers, "Content-Type": content_type},
        extra_environ=HTTPS_SITE,
        status=400,
    )
    assert "This form was stale or did not come from this site." in text(response)
    assert response.headers["X-Frame-Options"] == "DENY"

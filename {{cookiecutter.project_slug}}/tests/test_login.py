"""Signing in and out: the form at /login, the security policy and the password hashes
(``auth.py``, ``login_views.py``).

The tests of signing in and out sign in as TEST_USERS (the ``test_users`` fixture), not as
the demo users: they hold when your user store replaces ``check_credentials``. The tests
of the demo users themselves are under "the demo users": replace them with tests of your
store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import webtest
from helpers import (
    DEMO_PASSWORDS,
    PROJECT_DIR,
    SIGN_IN_LINK,
    TEST_USERS,
    TEST_VIEWS,
    app_with_test_views,
    csrf_token,
    flash_groups,
    session_cookie,
    sign_in,
    signed_in_as,
    text,
    visit_with,
)
from pyramid import testing
from pyramid.authorization import Allow, Authenticated
from pyramid.config import Configurator
from pyramid.paster import get_appsettings
from pyramid.request import Request

from {{ cookiecutter.project_slug }} import auth, login_views, main, sessions
from {{ cookiecutter.project_slug }}.layout import Account
from {{ cookiecutter.project_slug }}.login_views import (
    FAILED_MESSAGE,
    MAX_LOGIN_LENGTH,
    MAX_PASSWORD_LENGTH,
)

STALE_FORM = "This form was stale or did not come from this site."


@pytest.fixture
def checked_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stored hashes each password is checked against from now on (none matches)."""
    checked: list[str] = []

    def verify(password: str, stored: str) -> bool:
        checked.append(stored)
        return False

    monkeypatch.setattr(auth, "verify_password", verify)
    return checked


def sign_out(testapp: webtest.TestApp, status: int = 303) -> webtest.TestResponse:
    """Press the layout's sign-out button."""
    token = csrf_token(testapp.get("/"))
    return testapp.post("/logout", {"csrf_token": token}, status=status)


# ---- the pages ---------------------------------------------------------------------


def test_the_sign_in_form_is_labelled_for_password_managers(testapp: webtest.TestApp) -> None:
    page = testapp.get("/login")
    assert '<label for="login">User name</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert 'autocomplete="username"' in page.text
    assert 'type="password"' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert f'maxlength="{MAX_LOGIN_LENGTH}"' in page.text
    assert f'maxlength="{MAX_PASSWORD_LENGTH}"' in page.text
    assert signed_in_as(page) is None


def test_every_page_offers_to_sign_in_but_the_error_pages(testapp: webtest.TestApp) -> None:
    """Error pages leave the session alone: they cannot tell who is signed in."""
    assert signed_in_as(testapp.get("/")) is None
    error_page = testapp.get("/nowhere", status=404)
    assert SIGN_IN_LINK not in error_page.text
    assert "Sign out" not in error_page.text


# ---- signing in --------------------------------------------------------------------


def test_sign_in_shows_the_user_and_renews_the_session(
    testapp: webtest.TestApp, test_users: list[str]{% if cookiecutter.session_factory in ("redis", "database") %}, stored{% endif %}
) -> None:
    old_token = csrf_token(testapp.get("/"))
    old_cookie = session_cookie(testapp)
{%- if cookiecutter.session_factory in ("redis", "database") %}
    [old_id] = stored.ids()
{%- endif %}
    response = sign_in(testapp, "alice", TEST_USERS["alice"])
    assert response.headers["Location"] == "/"
    home = testapp.get("/")
    assert "Signed in as alice" in text(home)
    assert signed_in_as(home) == "alice"
    assert flash_groups(home) == {"success": ["Signed in as alice."]}
    assert csrf_token(home) != old_token
    assert session_cookie(testapp) != old_cookie
{%- if cookiecutter.session_factory in ("redis", "database") %}
    [new_id] = stored.ids()
    assert new_id != old_id  # a new id: the old one is revoked
{%- endif %}
    assert signed_in_as(visit_with(testapp.app, old_cookie)) is None
    testapp.post("/logout", {"csrf_token": old_token}, status=400)
    assert signed_in_as(testapp.get("/")) == "alice"


def test_signing_in_as_another_user_replaces_the_first(
    testapp: webtest.TestApp, test_users: list[str]
) -> None:
    sign_in(testapp, "alice", TEST_USERS["alice"])
    sign_in(testapp, "bob", TEST_USERS["bob"])
    assert signed_in_as(testapp.get("/")) == "bob"


def failed_sign_in_page(testapp: webtest.TestApp, login: str, password: str) -> str:
    """The page a failed sign-in shows, with the login it fills in made blank."""
    response = sign_in(testapp, login, password, status=200)
    return response.text.replace(f'value="{login[:MAX_LOGIN_LENGTH]}"', 'value=""')


# Sign-ins that fail, and all get the same page.
FAILED_SIGN_INS = {
    "wrong-password": ("alice", TEST_USERS["bob"]),
    "unknown-user": ("nobody", TEST_USERS["alice"]),
    "user-name-in-another-case": ("Alice", TEST_USERS["alice"]),
    "empty-password": ("bob", ""),
    "empty-form": ("", ""),
}


@pytest.mark.parametrize(("login", "password"), FAILED_SIGN_INS.values(), ids=FAILED_SIGN_INS)
def test_every_failed_sign_in_gets_the_same_page(
    testapp: webtest.TestApp, test_users: list[str], login: str, password: str
) -> None:
    reference = failed_sign_in_page(testapp, "nobody", "nothing")
    assert failed_sign_in_page(testapp, login, password) == reference
    page = sign_in(testapp, login, password, status=200)
    assert f'<p class="error-message" role="alert">{FAILED_MESSAGE}</p>' in page.text
    assert f'value="{login}"' in page.text  # filled in again, the password is not
    assert csrf_token(page) == csrf_token(testapp.get("/login"))  # the session is unchanged
    assert signed_in_as(testapp.get("/")) is None


# Input over the bounds, refused as a failed sign-in before the user store is asked.
OVER_LONG = {
    "password": ("alice", "p" * (MAX_PASSWORD_LENGTH + 1)),
    "user-name": ("e" * (MAX_LOGIN_LENGTH + 1), TEST_USERS["alice"]),
}


@pytest.mark.parametrize(("login", "password"), OVER_LONG.values(), ids=OVER_LONG)
def test_over_long_input_is_refused_unchecked(
    testapp: webtest.TestApp, test_users: list[str], login: str, password: str
) -> None:
    page = sign_in(testapp, login, password, status=200)
    assert FAILED_MESSAGE in text(page)
    assert f'value="{login[:MAX_LOGIN_LENGTH]}"' in page.text
    assert test_users == []


def test_the_longest_input_is_checked(testapp: webtest.TestApp, test_users: list[str]) -> None:
    login, password = "e" * MAX_LOGIN_LENGTH, "p" * MAX_PASSWORD_LENGTH
    assert FAILED_MESSAGE in text(sign_in(testapp, login, password, status=200))
    assert test_users == [login]


# ---- CSRF --------------------------------------------------------------------------

# Forms another site could post: no token, or one that is not the session's.
FORGED_FORMS = {"no-token": {}, "a-wrong-token": {"csrf_token": "0" * 40}}


@pytest.mark.parametrize("form", FORGED_FORMS.values(), ids=FORGED_FORMS)
def test_a_sign_in_without_its_csrf_token_is_the_400_page(
    testapp: webtest.TestApp, test_users: list[str], form: dict
) -> None:
    """Login CSRF: another site's form must not sign a visitor in to an account of its own."""
    testapp.get("/login")
    credentials = {"login": "alice", "password": TEST_USERS["alice"]}
    page = testapp.post("/login", {**form, **credentials}, status=400)
    assert STALE_FORM in text(page)
    assert test_users == []  # refused before the user store is asked
    assert signed_in_as(testapp.get("/")) is None


@pytest.mark.parametrize("form", FORGED_FORMS.values(), ids=FORGED_FORMS)
def test_a_sign_out_without_its_csrf_token_is_the_400_page(
    testapp: webtest.TestApp, test_users: list[str], form: dict
) -> None:
    sign_in(testapp, "alice", TEST_USERS["alice"])
    assert STALE_FORM in text(testapp.post("/logout", form, status=400))
    assert signed_in_as(testapp.get("/")) == "alice"


# ---- signing out -------------------------------------------------------------------


def test_signing_out_forgets_the_user(testapp: webtest.TestApp, test_users: list[str]) -> None:
    sign_in(testapp, "alice", TEST_USERS["alice"])
    old_token = csrf_token(testapp.get("/"))
    response = sign_out(testapp)
    assert response.headers["Location"] == "/"
    home = testapp.get("/")
    assert signed_in_as(home) is None
    assert flash_groups(home) == {"info": ["Signed out."]}
    assert csrf_token(home) != old_token
{%- if cookiecutter.session_factory in ("redis", "database") %}


def test_signing_out_revokes_a_copy_of_the_signed_in_cookie(
    testapp: webtest.TestApp, test_users: list[str], stored
) -> None:
    sign_in(testapp, "alice", TEST_USERS["alice"])
    copied = session_cookie(testapp)
    [signed_in_id] = stored.ids()
    sign_out(testapp)
    assert signed_in_id not in stored.ids()
    assert signed_in_as(visit_with(testapp.app, copied)) is None
{%- else %}


def test_a_copy_of_the_signed_in_cookie_outlives_the_sign_out(
    testapp: webtest.TestApp, test_users: list[str]
) -> None:
    """Documented limit of a cookie store: nothing on the server to revoke. The copy works
    until its session times out (test_cookie_sessions.py proves the bound)."""
    sign_in(testapp, "alice", TEST_USERS["alice"])
    copied = session_cookie(testapp)
    sign_out(testapp)
    assert signed_in_as(visit_with(testapp.app, copied)) == "alice"
{%- endif %}


def test_signing_out_when_signed_out_is_harmless(testapp: webtest.TestApp) -> None:
    sign_out(testapp)
    assert signed_in_as(testapp.get("/")) is None


# ---- the password hashes -----------------------------------------------------------


def test_a_password_hash_round_trip() -> None:
    """At the real parameters: a new salt each time, and only the password matches."""
    stored = auth.hash_password("correct horse battery stäple")
    method, salt, digest = stored.split("$")
    assert method == "scrypt:16384:8:1"
    assert (len(auth.from_text(salt)), len(auth.from_text(digest))) == (16, 32)
    assert auth.verify_password("correct horse battery stäple", stored)
    assert not auth.verify_password("correct horse battery staple", stored)
    assert auth.hash_password("correct horse battery stäple") != stored


def test_a_hash_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a hash of hash_password"):
        auth.verify_password("editor", "argon2id:65536:3:4$00$00")


# ---- the demo users: replace these with tests of your user store -------------------


@pytest.fixture
def demo_request() -> Iterator[Request]:
    """A request of an app that lets the demo users in, as development.ini does."""
    testing.setUp(settings={auth.DEMO_USERS_SETTING: "true"})
    yield testing.DummyRequest()
    testing.tearDown()


# Whom a sign-in as the demo user "editor" signs in, by the ini file the app runs on.
DEMO_SIGN_IN = {"development.ini": "editor", "production.ini": None}


@pytest.mark.parametrize(("ini", "signed_in"), DEMO_SIGN_IN.items(), ids=DEMO_SIGN_IN)
def test_the_demo_users_sign_in_only_where_the_ini_file_lets_them(
    app_settings: dict, ini: str, signed_in: str | None
) -> None:
    """The real hashes, through the whole app: every copy of this project holds the demo
    users' passwords, so production.ini keeps them out."""
    allowed = get_appsettings(str(PROJECT_DIR / ini))[auth.DEMO_USERS_SETTING]
    browser = webtest.TestApp(main({}, **{**app_settings, auth.DEMO_USERS_SETTING: allowed}))
    sign_in(browser, "editor", DEMO_PASSWORDS["editor"], status=200 if signed_in is None else 303)
    assert signed_in_as(browser.get("/")) == signed_in


def test_a_demo_users_session_from_before_ends_where_they_are_kept_out(app_settings) -> None:
    """An earlier release let the demo users in under production.ini: a session signed in
    as one then is signed in no more once the settings keep them out."""
    settings = {**app_settings, auth.DEMO_USERS_SETTING: "true"}
    before = webtest.TestApp(main({}, **settings))
    sign_in(before, "editor", DEMO_PASSWORDS["editor"])
    after = main({}, **{**settings, auth.DEMO_USERS_SETTING: "false"})
    assert signed_in_as(visit_with(after, session_cookie(before))) is None
    assert signed_in_as(before.get("/")) == "editor"  # where they may sign in, still in


@pytest.mark.parametrize("login", DEMO_PASSWORDS)
def test_the_demo_hashes_match_the_demo_passwords(demo_request: Request, login: str) -> None:
    assert auth.verify_password(DEMO_PASSWORDS[login], auth.DEMO_USERS[login])
    others = [password for user, password in DEMO_PASSWORDS.items() if user != login]
    assert not any(auth.verify_password(other, auth.DEMO_USERS[login]) for other in others)
    assert auth.check_credentials(demo_request, login, DEMO_PASSWORDS[login]) == login


def test_an_unknown_user_costs_a_hash_as_a_known_one_does(
    demo_request: Request, checked_hashes: list[str]
) -> None:
    """The dummy hash: an answer that came 50 ms sooner would tell which users exist."""
    assert auth.check_credentials(demo_request, "nobody", "editor") is None
    assert auth.check_credentials(demo_request, "editor", "nobody") is None
    assert checked_hashes == [auth.DUMMY_HASH, auth.DEMO_USERS["editor"]]


def test_the_dummy_hash_costs_as_much_as_the_users_hashes() -> None:
    cost = f"scrypt:{auth.SCRYPT_N}:{auth.SCRYPT_R}:{auth.SCRYPT_P}$"
    assert all(stored.startswith(cost) for stored in auth.DEMO_USERS.values())
    assert auth.DUMMY_HASH.startswith(cost)


# ---- alone, with Pyramid's DummyRequest (as tests/test_views.py does) -------------


@pytest.fixture
def config() -> Iterator[Configurator]:
    """Pyramid's test configuration, with the app's routes and security policy."""
    config = testing.setUp()
    config.include("{{ cookiecutter.project_slug }}.routes")
    config.set_security_policy(auth.SecurityPolicy())
    yield config
    testing.tearDown()


def test_sign_in_shows_the_form_again_after_a_wrong_password(
    config: Configurator, test_users: list[str]
) -> None:
    request = testing.DummyRequest(post={"login": "alice", "password": "wrong"})

    values = login_views.sign_in(request)

    assert values["message"] == FAILED_MESSAGE
    assert values["login"] == "alice"
    assert values["account"] == Account(None)
    assert "auth.userid" not in request.session


def test_the_policy_keeps_the_user_in_the_session(config: Configurator) -> None:
    policy, request = auth.SecurityPolicy(), testing.DummyRequest()
    assert policy.authenticated_userid(request) is None
    policy.remember(request, "alice")
    assert request.session["auth.userid"] == "alice"
    assert (request.identity, request.authenticated_userid) == ("alice", "alice")
    policy.forget(request)
    assert policy.authenticated_userid(request) is None


@pytest.mark.parametrize("value", [5, ["alice"], {"id": "alice"}], ids=repr)
def test_a_stored_userid_of_another_type_is_nobody(config: Configurator, value) -> None:
    """Data a server-side store holds may have been written by other code, or damaged."""
    request = testing.DummyRequest()
    request.session["auth.userid"] = value
    assert auth.SecurityPolicy().authenticated_userid(request) is None


class Document:
    """A context with an ACL, as the quick tutorial's authorization step gives its root."""

    __acl__ = ((Allow, Authenticated, "view"), (Allow, "user:alice", "edit"))


@pytest.mark.parametrize(
    ("userid", "allowed"),
    [(None, set()), ("bob", {"view"}), ("alice", {"view", "edit"})],
    ids=["visitor", "bob", "alice"],
)
def test_the_context_acl_decides_permissions(
    config: Configurator, userid: str | None, allowed: set[str]
) -> None:
    policy, request = auth.SecurityPolicy(), testing.DummyRequest()
    if userid is not None:
        policy.remember(request, userid)
    permitted = {name for name in ("view", "edit") if policy.permits(request, Document(), name)}
    assert permitted == allowed


def admin_page(request: Request) -> dict:
    """A page of yours behind a permission the app grants nobody."""
    return {}


def test_a_signed_in_user_refused_a_page_gets_the_403_page(app_settings, test_users) -> None:
    """The forbidden view sends only a visitor to sign in (as /sessions does): a signed-in
    user who lacks a view's permission gets the 403 page."""
    with Configurator(settings=app_settings) as config:
        config.include("{{ cookiecutter.project_slug }}")
        config.add_route("admin", "/admin")
        config.add_view(admin_page, route_name="admin", permission="admin", renderer="json")
    browser = webtest.TestApp(config.make_wsgi_app())
    assert browser.get("/admin", status=303).headers["Location"] == "/login"
    sign_in(browser, "alice", TEST_USERS["alice"])
    assert "This page is not open to your account." in text(browser.get("/admin", status=403))


# User ids no store can keep: the SQL store's column takes 255 characters, PostgreSQL no NUL.
ODD_USERIDS = {"empty": "", "256-characters": "u" * 256, "nul": "a\x00b"}


@pytest.mark.parametrize("userid", ODD_USERIDS.values(), ids=ODD_USERIDS)
def test_a_user_id_no_store_can_keep_is_refused_at_sign_in(app_settings, userid: str) -> None:
    """A bug in the app's user store, refused as one (a ValueError: the 500 page), not a
    503 that repeats at every sign-in as if the store were down."""

    def sign_in_as(request: Request) -> dict:
        sessions.regenerate_session(request)
        with pytest.raises(ValueError, match="user's id"):
            sessions.bind_user(request, userid)
        return {"refused": True}

    browser = app_with_test_views(app_settings, sign_in_as=sign_in_as)
    assert browser.get(f"{TEST_VIEWS}/sign_in_as").json == {"refused": True}

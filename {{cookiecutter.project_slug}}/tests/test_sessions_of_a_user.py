{%- set server = cookiecutter.session_factory in ("redis", "database") -%}
{%- set redis = cookiecutter.session_factory == "redis" -%}
{%- set database = cookiecutter.session_factory == "database" -%}
"""Your sessions: /sessions lists the signed-in user's sessions and ends them{% if server %}, the
engine's API ends them all (a password change, a lock-out), and so does the clear-sessions
command for one user{% else %}; a cookie
store knows only the current one{% endif %}."""

from __future__ import annotations

{% if server -%}
import base64
{% endif -%}
import re
{%- if redis %}
import time
{%- endif %}
{%- if server %}
from collections.abc import Callable
{%- endif %}

import pytest
{%- if redis %}
import redis
{%- endif %}
import webtest
from helpers import (
    TEST_USERS,
{%- if server %}
    TEST_VIEWS,
    app_with_test_views,
    counter,
{%- endif %}
    csrf_token,
    flash_groups,
{%- if server %}
    login_view,
{%- endif %}
    post_form,
    session_cookie,
    sign_in,
    signed_in_as,
{%- if server %}
    text,
)
{%- else %}
    text,
    visit_with,
)
{%- endif %}
{%- if server %}
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.router import Router
from test_clear_sessions import COMMAND, STORE_URL, write_ini
{%- endif %}
{%- if database %}
from test_database_sessions import app_store
{%- endif %}
{%- if redis %}
from test_redis_sessions import watch_round_trips
{%- endif %}
{%- if server %}
from test_server_sessions import AFTERWARDS, slow_view
{%- endif %}

{% if server -%}
from {{ cookiecutter.project_slug }} import main, sessions
{%- else -%}
from {{ cookiecutter.project_slug }} import sessions
from {{ cookiecutter.project_slug }}.login_views import (
    ENDED_ELSEWHERE,
    SIGNED_OUT_EVERYWHERE,
)
{%- endif %}
{%- if server %}
from {{ cookiecutter.project_slug }}.sessions.clear_sessions import main as clear_sessions
{%- endif %}
{%- if redis %}
from {{ cookiecutter.project_slug }}.sessions.redis import store as redis_store
from {{ cookiecutter.project_slug }}.sessions.redis.store import user_key
{%- endif %}
{%- if server %}
from {{ cookiecutter.project_slug }}.sessions.server import session_handle
{%- endif %}

pytestmark = pytest.mark.usefixtures("test_users")

ROW = re.compile(r'<tr( class="current")?>\s*<td>')
HANDLE = re.compile(r'name="session" value="([0-9a-f]+)"')
{%- if database %}
# The tests of listing and ending run on both databases; the others on SQLite alone.
ON_EVERY_DATABASE = pytest.mark.parametrize(
    "database_url", ["sqlite", "postgresql"], indirect=True
)
{%- endif %}


def rows(page: webtest.TestResponse) -> list[str]:
    """The rows of a /sessions page, in order: "current" for this session, else "other"."""
    return ["current" if mark else "other" for mark in ROW.findall(page.text)]


def signed_in_browsers(app, userid: str, count: int) -> list[webtest.TestApp]:
    """``count`` browsers, each signed in as ``userid`` through the form."""
    browsers = [webtest.TestApp(app) for _ in range(count)]
    for browser in browsers:
        sign_in(browser, userid, TEST_USERS[userid])
    return browsers


def end_session(browser: webtest.TestApp, handle: str) -> webtest.TestResponse:
    """Press the "End this session" button of the session ``handle`` names."""
    form = {"csrf_token": csrf_token(browser.get("/")), "session": handle}
    return browser.post("/sessions/end", form, status=303)


def test_a_visitor_is_sent_to_sign_in(testapp: webtest.TestApp) -> None:
    assert testapp.get("/sessions", status=303).headers["Location"] == "/login"
    for path in ("/sessions/end", "/sessions/end-others", "/sessions/end-all"):
        assert post_form(testapp, path).headers["Location"] == "/login"


def test_the_layout_links_a_signed_in_user_to_their_sessions(app) -> None:
    [browser] = signed_in_browsers(app, "alice", 1)
    assert '<a href="/sessions">Your sessions</a>' in browser.get("/").text
{%- if server %}


def session_id_of(browser: webtest.TestApp) -> str:
    """The session id inside the browser's signed cookie (an HMAC-SHA512, then the id)."""
    cookie = session_cookie(browser)
    return base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))[64:].decode()


def listed(app: Router, userid: str) -> list[str]:
    """The ids of ``userid``'s sessions, as the store lists them."""
    store = app.registry.getUtility(ISessionFactory).store
    return sorted(row[0] for row in store.user_sessions(userid))

{% if database %}
@ON_EVERY_DATABASE
{%- endif %}
def test_one_browser_ends_another_of_the_same_user(app) -> None:
    """Its cookie is dead at once, and so is the CSRF token of its pages."""
    first, second = signed_in_browsers(app, "alice", 2)
    page = first.get("/sessions")
    assert sorted(rows(page)) == ["current", "other"]
    [handle] = HANDLE.findall(page.text)  # only the other one has a button
    token_of_second = csrf_token(second.get("/"))
    assert end_session(first, handle).headers["Location"] == "/sessions"
    page = first.get("/sessions")
    assert flash_groups(page) == {"success": ["The session was ended: it is signed out."]}
    assert rows(page) == ["current"]
    second.post("/logout", {"csrf_token": token_of_second}, status=400)
    assert signed_in_as(second.get("/")) is None
    end_session(first, handle)
    assert flash_groups(first.get("/sessions")) == {"info": ["That session had ended already."]}
    end_session(first, session_handle(session_id_of(first)))  # its own: signed out
    assert signed_in_as(first.get("/")) is None

{% if database %}
@ON_EVERY_DATABASE
{%- endif %}
def test_sign_out_everywhere_else_then_everywhere(app) -> None:
    first, second, third = signed_in_browsers(app, "alice", 3)
    [viewer] = signed_in_browsers(app, "bob", 1)
    assert post_form(first, "/sessions/end-others").headers["Location"] == "/sessions"
    page = first.get("/sessions")
    assert flash_groups(page) == {"success": ["Signed out everywhere else (2 sessions ended)."]}
    assert rows(page) == ["current"]
    assert [signed_in_as(b.get("/")) for b in (second, third, viewer)] == [None, None, "bob"]
    sign_in(second, "alice", TEST_USERS["alice"])
    assert post_form(first, "/sessions/end-all").headers["Location"] == "/"
    assert flash_groups(first.get("/")) == {"info": ["Signed out everywhere."]}
    assert [signed_in_as(b.get("/")) for b in (first, second, viewer)] == [None, None, "bob"]
    assert listed(app, "alice") == []


def bind_view(request: Request) -> dict:
    """A sign-in without a session stored yet (an API's token, say): bind it at once."""
    sessions.bind_user(request, "api-client")
    return {}

{% if database %}
@ON_EVERY_DATABASE
{%- endif %}
@pytest.mark.parametrize("afterwards", AFTERWARDS.values(), ids=AFTERWARDS)
def test_ending_every_session_holds_against_a_request_in_flight(
    app_settings, stored, afterwards: Callable[[Request], object]
) -> None:
    """A password change ends the user's sessions while a request of theirs runs: that
    request goes on with a fresh session, signed out, and brings none back."""
    browser = app_with_test_views(app_settings, slow=slow_view)
    sign_in(browser, "alice", TEST_USERS["alice"])
    [signed_in] = stored.ids()
    registry, ended = browser.app.registry, []
    registry.update(
        meanwhile=lambda: ended.append(sessions.end_user_sessions(registry, "alice")),
        afterwards=afterwards,
    )
    slow = browser.get(f"{TEST_VIEWS}/slow").json["session"]
    assert (ended, "auth.userid" in slow) == ([1], False)
    assert signed_in not in stored.ids()
    assert signed_in_as(browser.get("/")) is None
    assert listed(browser.app, "alice") == []


def test_a_signed_in_session_renewed_stays_listed(app_settings, stored) -> None:
    """regenerate_session (the user's privileges changed) moves it to a new id: the new
    id is the user's, and ends with the others."""
    browser = app_with_test_views(app_settings, login=login_view)
    sign_in(browser, "alice", TEST_USERS["alice"])
    browser.get(f"{TEST_VIEWS}/login")
    assert listed(browser.app, "alice") == [session_id_of(browser)] == stored.ids()
    assert sessions.end_user_sessions(browser.app.registry, "alice") == 1
    assert signed_in_as(browser.get("/")) is None


def test_binding_a_session_not_stored_yet_stores_it_first(app_settings) -> None:
    browser = app_with_test_views(app_settings, bind=bind_view)
    browser.get(f"{TEST_VIEWS}/bind")
    assert listed(browser.app, "api-client") == [session_id_of(browser)]


{% if redis -%}
def test_expired_sessions_leave_the_list(
    app, app_settings, stored, age_sessions, redis_client: redis.Redis
) -> None:
{%- else -%}
def test_expired_sessions_leave_the_list(app, app_settings, stored, age_sessions) -> None:
{%- endif %}
    first, second = signed_in_browsers(app, "alice", 2)
    stored.expire(session_id_of(second))  # idle too long
    assert listed(app, "alice") == [session_id_of(first)]
{%- if redis %}
    assert redis_client.zcard(user_key("alice")) == 1  # the index lost it too
{%- endif %}
    absolute_timeout = int(app_settings["session.absolute_timeout"])
    age_sessions(absolute_timeout + 1)  # past its absolute end
    assert listed(app, "alice") == []
    assert signed_in_as(first.get("/")) is None
{%- if redis %}
    assert listed(app, "alice") == []
    assert redis_client.zcard(user_key("alice")) == 0
{%- endif %}
{%- if redis %}


def test_the_next_sign_in_drops_the_sessions_that_ended(
    app, stored, redis_client: redis.Redis
) -> None:
    """Signed out or idle too long: a session that ends leaves its entry in the user's
    index until their next sign-in (or list), which drops it, rather than until its
    absolute end."""
    first, second, third = signed_in_browsers(app, "alice", 3)
    post_form(first, "/logout")
    stored.expire(session_id_of(second))
    assert redis_client.zcard(user_key("alice")) == 3
    [fourth] = signed_in_browsers(app, "alice", 1)
    indexed = sorted(indexed_ids(redis_client, "alice"))
    assert indexed == sorted([session_id_of(third), session_id_of(fourth)])


def indexed_ids(redis_client: redis.Redis, userid: str) -> list[str]:
    """The session ids in the user's index, oldest first."""
    return [member.decode() for member in redis_client.zrange(user_key(userid), 0, -1)]


def test_a_sign_in_checks_a_bounded_number_of_entries(
    app, stored, redis_client: redis.Redis, monkeypatch
) -> None:
    """However many sessions a user keeps, a sign-in checks the oldest few: its cost is
    bounded (the rest wait for a later sign-in, or the list)."""
    monkeypatch.setattr(redis_store, "PRUNED_AT_SIGN_IN", 2)
    ids = [session_id_of(browser) for browser in signed_in_browsers(app, "alice", 4)]
    for session_id in ids:
        stored.expire(session_id)
    # In this order, each ending before the next sign-in's session does.
    soon = int(time.time()) + 100
    redis_client.zadd(user_key("alice"), {sid: soon + i for i, sid in enumerate(ids)})
    [last] = signed_in_browsers(app, "alice", 1)
    assert indexed_ids(redis_client, "alice") == [*ids[2:], session_id_of(last)]


def test_a_store_error_while_pruning_leaves_the_sign_in_done(
    app, redis_client: redis.Redis, monkeypatch, caplog
) -> None:
    """Pruning is housekeeping: a Cluster node that does not answer (it holds one of the
    user's sessions) must not fail the sign-in, nor revoke the session it moved."""
    signed_in_browsers(app, "alice", 1)  # an entry to check at the next sign-in

    def hung(self) -> list:
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(redis.client.Pipeline, "execute", hung)
    [second] = signed_in_browsers(app, "alice", 1)
    assert signed_in_as(second.get("/")) == "alice"
    assert session_id_of(second) in indexed_ids(redis_client, "alice")
    assert "the user's index was not pruned: Timeout reading from socket" in caplog.text


def test_ending_a_chain_of_sign_ins_follows_each_marker_once(app, monkeypatch) -> None:
    """Each sign-in moves the session and leaves a marker where it was, and each of those
    keys is in the index: "sign out everywhere" follows every marker once, so its round
    trips grow with the sign-ins, not with their square."""
    [browser] = signed_in_browsers(app, "alice", 1)
    for _ in range(19):
        sign_in(browser, "alice", TEST_USERS["alice"])
    names = watch_round_trips(monkeypatch)
    assert sessions.end_user_sessions(app.registry, "alice") == 1
    assert signed_in_as(browser.get("/")) is None
    assert names.count("end_owned") <= 2 * 20


def test_an_index_of_another_type_is_replaced(app, redis_client: redis.Redis) -> None:
    """Another writer's value under a user's index key (a damaged restore): the list
    passes over it and the next sign-in replaces it, never a 503 at every request."""
    [browser] = signed_in_browsers(app, "alice", 1)
    redis_client.set(user_key("alice"), "not an index")
    assert rows(browser.get("/sessions")) == []  # passed over: its entries are lost
    browser = signed_in_browsers(app, "alice", 1)[0]
    assert rows(browser.get("/sessions")) == ["current"]


def test_an_index_entry_no_session_could_have_is_passed_over(
    app, redis_client: redis.Redis
) -> None:
    """Another writer's entry in a user's index, of bytes no session id has (not UTF-8):
    the list and "sign out everywhere" pass over it, never a 500."""
    [browser] = signed_in_browsers(app, "alice", 1)
    redis_client.zadd(user_key("alice"), {b"\xff\xfe": 2**40})
    assert rows(browser.get("/sessions")) == ["current"]
    assert post_form(browser, "/sessions/end-all").headers["Location"] == "/"
    assert signed_in_as(browser.get("/")) is None


def test_an_index_entry_that_never_ends_is_no_503_at_sign_in(
    app, redis_client: redis.Redis
) -> None:
    """Another writer's entry scored +inf: the index cannot expire at it (EXPIREAT takes no
    infinity), but every sign-in of the user still works."""
    redis_client.zadd(user_key("alice"), {"someone-elses": "+inf"})
    [browser] = signed_in_browsers(app, "alice", 1)
    assert signed_in_as(browser.get("/")) == "alice"
    assert rows(browser.get("/sessions")) == ["current"]
{%- endif %}

{% if database %}
@ON_EVERY_DATABASE
{%- endif %}
def test_clear_sessions_ends_one_users_sessions_then_every_one(
    app, app_settings, tmp_path, capsys{% if redis %}, redis_client: redis.Redis{% endif %}
) -> None:
    editors = signed_in_browsers(app, "alice", 2)
    [viewer] = signed_in_browsers(app, "bob", 1)
    ini = write_ini(tmp_path, app_settings[STORE_URL])
    assert clear_sessions(["--user", "alice", str(ini)]) == 0
    assert capsys.readouterr().out == f"{COMMAND}: ended 2 sessions of user alice\n"
    assert (listed(app, "alice"), len(listed(app, "bob"))) == ([], 1)
    assert clear_sessions(["--user", "alice", str(ini)]) == 0  # nothing left to end
    assert capsys.readouterr().out == f"{COMMAND}: ended 0 sessions of user alice\n"
{%- if redis %}
    assert redis_client.zcard(user_key("alice")) == 0
{%- endif %}
    assert clear_sessions(["--all", str(ini)]) == 0
    assert listed(app, "bob") == []
{%- if redis %}
    assert redis_client.zcard(user_key("bob")) == 0
{%- endif %}
    assert [signed_in_as(b.get("/")) for b in [*editors, viewer]] == [None, None, None]


CLIENT = {"REMOTE_ADDR": "192.0.2.7", "HTTP_USER_AGENT": "Probe/1.0"}


@pytest.mark.parametrize("setting", [{}, {"session.record_client": "true"}], ids=["off", "on"])
def test_the_client_is_kept_only_when_the_setting_says_so(app_settings, setting) -> None:
    """Off by default: the address and the user agent are personal data."""
    app = main({}, **{**app_settings, **setting})
    browser = webtest.TestApp(app, extra_environ=CLIENT)
    sign_in(browser, "alice", TEST_USERS["alice"])
    page = text(browser.get("/sessions"))
    shown = ["Address" in page, "192.0.2.7" in page, "Probe/1.0" in page]
    assert shown == [bool(setting)] * 3
    store = app.registry.getUtility(ISessionFactory).store
    [(_, _, _, client)] = store.user_sessions("alice")
    assert bool(client) is bool(setting)
{%- if redis %}


def test_signing_in_costs_one_round_trip_more_and_a_page_none(testapp, monkeypatch) -> None:
    token = csrf_token(testapp.get("/login"))
    names = watch_round_trips(monkeypatch)
    credentials = {"login": "alice", "password": TEST_USERS["alice"]}
    testapp.post("/login", {"csrf_token": token, **credentials}, status=303)
    assert names == ["load", "detach", "adopt", "index_add", "save"]
    testapp.get("/")  # shows the flash message (a changed session: written back)
    names.clear()
    assert counter(testapp.get("/")) == 2
    assert names == ["load_and_increment"]
{%- elif database %}


def test_signing_in_costs_no_statement_more_and_a_page_none(testapp, watch_statements) -> None:
    token = csrf_token(testapp.get("/login"))
    sent = watch_statements(app_store(testapp))
    credentials = {"login": "alice", "password": TEST_USERS["alice"]}
    testapp.post("/login", {"csrf_token": token, **credentials}, status=303)
    assert sent == ["SELECT", "UPDATE", "UPDATE"]  # load, move, save (with the user)
    testapp.get("/")  # shows the flash message (a changed session: written back)
    sent.clear()
    assert counter(testapp.get("/")) == 2
    assert sent == ["UPDATE"]
{%- endif %}
{%- else %}


def test_a_cookie_store_lists_and_ends_only_this_session(app) -> None:
    """Other browsers' sessions live in their cookies: the page says so."""
    [browser] = signed_in_browsers(app, "alice", 1)
    page = browser.get("/sessions")
    assert "cannot list or end your sessions in other browsers" in text(page)
    assert (rows(page), "Sign out everywhere" in page.text) == (["current"], False)
    post_form(browser, "/sessions/end-others")
    page = browser.get("/sessions")
    assert flash_groups(page) == {"success": [ENDED_ELSEWHERE]}
    assert "keep their sessions in their own cookies" in ENDED_ELSEWHERE  # no claim to more
    assert sessions.end_user_sessions(app.registry, "alice") == 0  # no store to look in
    end_session(browser, "another")
    assert flash_groups(browser.get("/sessions")) == {"info": ["That session had ended already."]}
    end_session(browser, "current")
    assert signed_in_as(browser.get("/")) is None


def test_signing_out_everywhere_ends_only_this_cookie(app) -> None:
    """A copy of the cookie stays signed in until it times out (the documented limit)."""
    [browser] = signed_in_browsers(app, "alice", 1)
    copied = session_cookie(browser)
    assert post_form(browser, "/sessions/end-all").headers["Location"] == "/"
    assert flash_groups(browser.get("/")) == {"info": [SIGNED_OUT_EVERYWHERE]}
    assert "in this browser" in SIGNED_OUT_EVERYWHERE  # no claim to more
    assert signed_in_as(browser.get("/")) is None
    assert signed_in_as(visit_with(app, copied)) == "alice"
{%- endif %}

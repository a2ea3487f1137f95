"""Hostile or stale cookies always get a fresh session and a 200, never a 500."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
import webtest
from helpers import (
    counter,
    csrf_token,
    development_timeouts,
    session_cookie,
    valid_cookie,
    visit_with,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.settings import (
    SECRET_BYTES,
    session_settings,
)

COOKIE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters=";,\x7f"),
    max_size=5000,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(cookie=COOKIE_TEXT)
@example(cookie="")
@example(cookie="x" * 5000)
@example(cookie='"quoted"')
@example(cookie="=" * 40)
def test_garbage_cookie_gets_a_fresh_session(app, cookie: str) -> None:
    assert counter(visit_with(app, cookie)) == 1


@FUZZ
@given(
    place=st.integers(min_value=0, max_value=10_000),
    mutation=st.sampled_from(["truncate", "replace", "insert"]),
    char=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
)
def test_tampered_cookie_is_fresh_or_untouched(app, place: int, mutation: str, char: str) -> None:
    cookie = valid_cookie(app)
    position = place % (len(cookie) + 1)
    if mutation == "truncate":
        tampered = cookie[:position]
    elif mutation == "replace":
        tampered = cookie[:position] + char + cookie[position + 1 :]
    else:
        tampered = cookie[:position] + char + cookie[position:]
    # A change base64 decoding ignores leaves the genuine session; any other is a new one.
    expected = {3} if tampered == cookie else {1, 3}
    assert counter(visit_with(app, tampered)) in expected


def test_truncated_cookies_get_fresh_sessions(app) -> None:
    cookie = valid_cookie(app)
    for length in range(0, len(cookie) - 1, 7):
        assert counter(visit_with(app, cookie[:length])) == 1


# One idle day, one week in all: the numbers of the replay attack measured on the old code.
DAY, WEEK = 24 * 3600, 7 * 24 * 3600
LIFETIME_SETTINGS = {"session.timeout": str(DAY), "session.absolute_timeout": str(WEEK)}
REPLAY_EVERY = 20 * 3600  # inside every idle window


def test_a_stolen_cookie_replayed_inside_every_idle_window_dies_after_a_week(
    app_settings, age_sessions
) -> None:
    app = main({}, **{**app_settings, **LIFETIME_SETTINGS})
    victim = webtest.TestApp(app)
    token = csrf_token(victim.get("/"))
    thief = webtest.TestApp(app)
    thief.set_cookie("session", session_cookie(victim))
    for replay in range(1, 41):  # 33 days
        age_sessions(REPLAY_EVERY)
        page = thief.get("/")
        if replay * REPLAY_EVERY > WEEK:
            break
        assert (counter(page), csrf_token(page)) == (1 + replay, token)
    assert replay * REPLAY_EVERY == WEEK + 12 * 3600  # the first replay past the week
    assert counter(page) == 1
    assert csrf_token(page) != token


def without_timeouts(app_settings: dict) -> dict:
    """``app_settings`` without the two timeouts, so that the app's defaults apply."""
    unset = ("session.timeout", "session.absolute_timeout")
    return {name: value for name, value in app_settings.items() if name not in unset}


HOUR = 3600
# Timeouts as an ini file sets them, and the idle and absolute timeouts the app then uses.
TIMEOUTS = {
    "short-idle-timeout-gets-a-week": ({"session.timeout": str(HOUR)}, HOUR, WEEK),
    "absolute-timeout-set": (
        {"session.timeout": str(HOUR), "session.absolute_timeout": str(DAY)},
        HOUR,
        DAY,
    ),
    "long-idle-timeout-is-also-the-absolute-one": (
        {"session.timeout": str(30 * DAY)},
        30 * DAY,
        30 * DAY,
    ),
    "both-set": (LIFETIME_SETTINGS, DAY, WEEK),
}


@pytest.mark.parametrize(
    ("configured", "timeout", "absolute_timeout"), TIMEOUTS.values(), ids=TIMEOUTS
)
def test_the_absolute_timeout_and_its_default(app_settings, configured, timeout, absolute_timeout):
    checked = session_settings({**without_timeouts(app_settings), **configured})
    assert (checked.timeout, checked.absolute_timeout) == (timeout, absolute_timeout)


def test_without_timeouts_the_app_uses_those_the_project_was_made_with(app_settings) -> None:
    """settings.py's defaults are the answers the ini files were written with."""
    checked = session_settings(without_timeouts(app_settings))
    assert (checked.timeout, checked.absolute_timeout) == development_timeouts()


# session.absolute_timeout values refused, made from the idle timeout in force.
BAD_ABSOLUTE_TIMEOUTS: dict[str, Callable[[int], str]] = {
    "below-the-idle-timeout": lambda timeout: str(timeout - 1),
    "zero": lambda timeout: "0",
    "over-90-days": lambda timeout: "7776001",
    "words": lambda timeout: "a week",
    "fraction": lambda timeout: "1.5",
    "empty": lambda timeout: "",
    "arabic-indic-digits": lambda timeout: "١٢٠٠٠",
}


@pytest.mark.parametrize("bad_value", BAD_ABSOLUTE_TIMEOUTS.values(), ids=BAD_ABSOLUTE_TIMEOUTS)
def test_an_absolute_timeout_below_the_idle_timeout_or_malformed_is_refused(
    app_settings, bad_value: Callable[[int], str]
) -> None:
    timeout = session_settings(app_settings).timeout
    value = bad_value(timeout)
    expected = (
        r"refusing to start: session\.absolute_timeout must be a whole number of seconds "
        f"from {timeout} to 7776000, got {value!r}"
    )
    with pytest.raises(SystemExit, match=expected):
        main({}, **{**app_settings, "session.absolute_timeout": value})


def test_cookie_from_another_app_secret_is_ignored(app_settings) -> None:
    other = main({}, **{**app_settings, "session.secret": secrets.token_hex(SECRET_BYTES)})
    assert counter(visit_with(main({}, **app_settings), valid_cookie(other))) == 1


def test_sequential_requests_never_lose_a_count(testapp: webtest.TestApp) -> None:
    for expected in range(1, 51):
        assert counter(testapp.get("/howdy")) == expected


@pytest.mark.parametrize("path", ["/", "/howdy", "/nowhere"])
def test_many_cookies_in_one_header_are_survivable(app, path: str) -> None:
    browser = webtest.TestApp(app)
    header = "; ".join(f"c{n}=v{n}" for n in range(200)) + "; session=nonsense"
    browser.get(path, headers={"Cookie": header}, expect_errors=True).mustcontain("<html")


@pytest.mark.parametrize(
    "header",
    ["session=\x80", "junk=\xff\xfe; theme=dark", "a=1; b=\xc3\x28; c=3"],
    ids=["session-not-utf8", "other-cookie-not-utf8", "middle-cookie-not-utf8"],
)
def test_cookies_that_are_not_utf8_are_dropped(app, header: str) -> None:
    browser = webtest.TestApp(app)
    assert counter(browser.get("/", headers={"Cookie": header})) == 1
    assert counter(browser.get("/howdy", headers={"Cookie": header})) == 1


def test_good_cookies_next_to_a_bad_one_are_kept(app) -> None:
    cookie = valid_cookie(app)
    browser = webtest.TestApp(app)
    header = f"junk=\xff; session={cookie}"
    assert counter(browser.get("/", headers={"Cookie": header})) == 3

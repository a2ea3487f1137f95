"""Session settings: production refuses unsafe secrets; rotation logs nobody out."""

from __future__ import annotations

import secrets

import pytest
import webtest
from helpers import PROJECT_DIR, counter, session_cookie
from pyramid.paster import get_appsettings

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.settings import (
    SECRET_BYTES,
    SECRET_ENV,
    SECRET_FALLBACKS_ENV,
    SettingsError,
    session_settings,
)


def new_secret() -> str:
    """A fresh secret of the form the session factory needs."""
    return secrets.token_hex(SECRET_BYTES)


@pytest.fixture
def production_settings(app_settings: dict) -> dict:
    """production.ini's settings (it holds no secret){% if cookiecutter.session_factory == "redis" %}, pointed at the test Redis{% elif cookiecutter.session_factory == "database" %}, pointed at the test database{% endif %}."""
    settings = dict(get_appsettings(str(PROJECT_DIR / "production.ini")))
{%- if cookiecutter.session_factory == "redis" %}
    settings["session.redis_url"] = app_settings["session.redis_url"]
{%- elif cookiecutter.session_factory == "database" %}
    settings["session.database_url"] = app_settings["session.database_url"]
{%- endif %}
    return settings


def test_production_ini_holds_no_secret() -> None:
    assert "session.secret" not in (PROJECT_DIR / "production.ini").read_text()


def test_production_refuses_to_start_without_a_secret(production_settings: dict) -> None:
    expected = f"refusing to start: no session secret: set the {SECRET_ENV}"
    with pytest.raises(SystemExit, match=expected):
        main({}, **production_settings)


@pytest.mark.parametrize(
    "secret",
    [
        secrets.token_hex(SECRET_BYTES)[:-2],
        secrets.token_hex(SECRET_BYTES) + "00",
        "g" * 2 * SECRET_BYTES,
        secrets.token_hex(SECRET_BYTES).upper(),
        "changeme",
    ],
    ids=["too-short", "too-long", "not-hex", "uppercase", "password"],
)
def test_production_refuses_a_bad_secret(production_settings, monkeypatch, secret: str) -> None:
    monkeypatch.setenv(SECRET_ENV, secret)
    with pytest.raises(SystemExit, match=f"{SECRET_ENV} must be {2 * SECRET_BYTES} lowercase hex"):
        main({}, **production_settings)


def test_production_refuses_a_bad_fallback(production_settings, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, new_secret())
    monkeypatch.setenv(SECRET_FALLBACKS_ENV, f"{new_secret()} short")
    with pytest.raises(SystemExit, match=f"{SECRET_ENV} fallback #2 must be"):
        main({}, **production_settings)


def test_production_starts_with_a_good_secret(production_settings, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, new_secret())
    testapp = webtest.TestApp(main({}, **production_settings))
    response = testapp.get("/", extra_environ={"wsgi.url_scheme": "https"})
    assert "; secure" in response.headers["Set-Cookie"].lower()


def test_development_reads_its_secret_file(app_settings: dict, tmp_path) -> None:
    secret = new_secret()
    (tmp_path / ".session_secret").write_text(secret + "\n")
    settings = {k: v for k, v in app_settings.items() if k != "session.secret"}
    settings["session.secret_file"] = str(tmp_path / ".session_secret")
    assert session_settings(settings).secrets == (secret,)


def test_missing_secret_file_says_how_to_make_one(app_settings: dict, tmp_path) -> None:
    settings = {k: v for k, v in app_settings.items() if k != "session.secret"}
    settings["session.secret_file"] = str(tmp_path / ".session_secret")
    with pytest.raises(SystemExit, match=f"or write one to {tmp_path}/.session_secret"):
        main({}, **settings)


def test_development_ini_names_the_secret_file_and_holds_no_secret() -> None:
    development = (PROJECT_DIR / "development.ini").read_text()
    assert "session.secret_file = %(here)s/.session_secret" in development
    assert "session.secret =" not in development


def test_environment_secret_wins_over_the_ini(app_settings: dict, monkeypatch) -> None:
    secret = new_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    assert session_settings(app_settings).secrets == (secret,)


@pytest.mark.parametrize("timeout", ["0", "59", "2592001", "-5", "ten", "1.5", ""], ids=repr)
def test_bad_timeout_is_refused(app_settings: dict, timeout: str) -> None:
    with pytest.raises(SettingsError, match=r"session\.timeout must be a whole number"):
        session_settings({**app_settings, "session.timeout": timeout})
{%- if cookiecutter.session_factory == "redis" %}


@pytest.mark.parametrize("value", ["0", "-1", "31", "soon", "nan"], ids=repr)
def test_bad_redis_socket_timeout_is_refused(app_settings: dict, value: str) -> None:
    with pytest.raises(SystemExit, match=r"session\.redis_socket_timeout must be"):
        main({}, **{**app_settings, "session.redis_socket_timeout": value})
{%- endif %}


def app_with_secrets(app_settings: dict, secret: str, *fallbacks: str) -> webtest.TestApp:
    """A new app instance that signs with ``secret`` and also reads ``fallbacks``."""
    settings = {
        **app_settings,
        "session.secret": secret,
        "session.secret_fallbacks": " ".join(fallbacks),
    }
    return webtest.TestApp(main({}, **settings))


def test_rotating_the_secret_logs_nobody_out(app_settings: dict) -> None:
    old, new = new_secret(), new_secret()
    before = app_with_secrets(app_settings, old)
    before.get("/")
    before.get("/")
    after = app_with_secrets(app_settings, new, old)
    after.set_cookie("session", session_cookie(before))
    assert counter(after.get("/")) == 3
    rotated_cookie = session_cookie(after)
    assert rotated_cookie != session_cookie(before)
    assert counter(after.get("/howdy")) == 4
    assert counter(webtest.TestApp(after.app).get("/")) == 1
    # the fallback can now be dropped: the browser holds a cookie signed with the new secret
    only_new = app_with_secrets(app_settings, new)
    only_new.set_cookie("session", session_cookie(after))
    assert counter(only_new.get("/")) == 5


def test_a_cookie_signed_with_an_unknown_secret_starts_afresh(app_settings: dict) -> None:
    before = app_with_secrets(app_settings, new_secret())
    before.get("/")
    stranger = app_with_secrets(app_settings, new_secret())
    stranger.set_cookie("session", session_cookie(before))
    assert counter(stranger.get("/")) == 1

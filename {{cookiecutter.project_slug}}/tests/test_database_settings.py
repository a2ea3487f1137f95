"""Database settings: refused in one line naming the setting, passwords only from the
environment and never shown, the environment's URL wins."""

from __future__ import annotations

import configparser
import os

import pytest
from helpers import SETTINGS_ENV, development_settings

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.sessions.database.settings import (
    URL_ENV,
    read_database_settings,
)

SQLITE = "sqlite:////var/lib/app/sessions.sqlite"
# Settings that must stop the app at start-up: (ini settings, message).
REFUSED: dict[str, tuple[dict, str]] = {
    "no-database": ({"session.database_url": ""}, r"no database: set session\.database_url"),
    "not-a-url": (
        {"session.database_url": "sessions.sqlite"},
        r"session\.database_url is not a database URL \(such as sqlite:///",
    ),
    "another-database": (
        {"session.database_url": "mysql://db.example/app"},
        r"session\.database_url must start with sqlite:/// or postgresql\+psycopg://",
    ),
    "psycopg2-by-default": (
        {"session.database_url": "postgresql://db.example/app"},
        r"session\.database_url must start with .* postgresql\+psycopg:// \(psycopg 3\)",
    ),
    "in-memory-sqlite": (
        {"session.database_url": "sqlite://"},
        r"session\.database_url must name an SQLite file .* an in-memory database is not shared",
    ),
    "sqlite-directory": (
        {"session.database_url": "sqlite:////"},
        r"session\.database_url must name an SQLite file",
    ),
    "in-memory-sqlite-by-name": (
        {"session.database_url": "sqlite:///:memory:"},
        r"session\.database_url must name an SQLite file",
    ),
    "no-host": (
        {"session.database_url": "postgresql+psycopg:///app"},
        r"session\.database_url names no host",
    ),
    "password-in-the-ini": (
        {"session.database_url": "postgresql+psycopg://app:hunter2@db.example/app"},
        rf"session\.database_url holds a password: put that URL in the {URL_ENV}",
    ),
    "password-in-the-query": (
        {"session.database_url": "postgresql+psycopg://app@db.example/app?password=hunter2"},
        r"session\.database_url holds a password",
    ),
    "unencoded-at-in-the-password": (
        {"session.database_url": "postgresql+psycopg://app:hunter@2@db.example/app"},
        r"session\.database_url has an @ in its host: percent-encode an @ in the password",
    ),
    "sqlite-uri-in-memory": (
        {"session.database_url": "sqlite:///file:s?mode=memory&uri=true"},
        r"session\.database_url takes no query for SQLite \(got \?mode&uri\)",
    ),
    "timeout-zero": ({"session.database_timeout": "0"}, r"session\.database_timeout must be"),
    "timeout-not-a-number": (
        {"session.database_timeout": "soon"},
        r"session\.database_timeout must be a number from 0\.1 to 30, got 'soon'",
    ),
    "timeout-too-long": ({"session.database_timeout": "31"}, r"session\.database_timeout"),
    "pool-size-zero": ({"session.database_pool_size": "0"}, r"session\.database_pool_size"),
    "pool-size-a-fraction": (
        {"session.database_pool_size": "2.5"},
        r"session\.database_pool_size must be a whole number from 1 to 100, got 2\.5",
    ),
    "overflow-negative": (
        {"session.database_max_overflow": "-1"},
        r"session\.database_max_overflow must be a number from 0 to 100",
    ),
}


@pytest.mark.parametrize(("ini", "message"), REFUSED.values(), ids=REFUSED)
def test_bad_database_settings_refuse_to_start(ini: dict, message: str) -> None:
    with pytest.raises(SystemExit, match=f"refusing to start: {message}") as refused:
        main({}, **{**development_settings(), **ini})
    assert "\n" not in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://app:hunter2@db.example/app",
        "postgresql+psycopg://app:hunter2@/app",
        "postgresql+psycopg:///app?password=hunter2",
    ],
    ids=["wrong-scheme", "no-host", "no-host-password-in-the-query"],
)
def test_a_refused_url_from_the_environment_hides_its_password(monkeypatch, url: str) -> None:
    monkeypatch.setenv(URL_ENV, url)
    with pytest.raises(SystemExit, match=rf"refusing to start: {URL_ENV} ") as refused:
        main({}, **development_settings())
    assert "hunter2" not in str(refused.value)
    assert "***" in str(refused.value)


def test_the_environment_url_wins_and_may_hold_a_password() -> None:
    url = "postgresql+psycopg://app:hunter2@db.example:5433/app"
    settings = read_database_settings({"session.database_url": SQLITE}, {URL_ENV: url})
    assert (settings.dialect, settings.url.password, settings.url.port) == (
        "postgresql",
        "hunter2",
        5433,
    )
    assert settings.shown_url == "postgresql+psycopg://app:***@db.example:5433/app"
    assert "hunter2" not in repr(settings)


def test_defaults_and_given_pool_settings() -> None:
    defaults = read_database_settings({"session.database_url": SQLITE}, {})
    assert (defaults.dialect, defaults.timeout, defaults.pool_size) == ("sqlite", 2.0, 5)
    assert (defaults.max_overflow, defaults.pool_pre_ping) == (10, False)
    given = read_database_settings(
        {
            "session.database_url": SQLITE,
            "session.database_timeout": "0.25",
            "session.database_pool_size": "20",
            "session.database_max_overflow": "0",
            "session.database_pool_pre_ping": "true",
        },
        {},
    )
    assert (given.timeout, given.pool_size, given.max_overflow, given.pool_pre_ping) == (
        0.25,
        20,
        0,
        True,
    )


def test_the_development_database_is_where_the_answer_put_it() -> None:
    """An SQLite file the answer named by a relative path is the project's (``%(here)s``,
    not the directory the server runs in); an absolute path or a PostgreSQL URL is kept
    as it was given."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ini = configparser.RawConfigParser()
    ini.read(os.path.join(project, "development.ini"), encoding="utf-8")
    written = ini.get("app:main", "session.database_url")
    url = development_settings()["session.database_url"]
    if written.startswith("sqlite:///%(here)s/"):
        assert url == written.replace("%(here)s", project).replace("%%", "%")
    else:
        assert written.startswith(("sqlite:////", "postgresql+psycopg://"))
        assert url == written.replace("%%", "%")


def test_the_shell_cannot_choose_the_database_under_test() -> None:
    """conftest's clean_environment removes the database variable before each test."""
    assert URL_ENV in SETTINGS_ENV
    assert URL_ENV not in os.environ

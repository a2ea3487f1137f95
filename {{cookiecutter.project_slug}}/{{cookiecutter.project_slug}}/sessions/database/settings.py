"""Where the SQL sessions live and how long to wait for the database, already checked.

An SQLite file (one machine: several threads and processes) or PostgreSQL through psycopg
3 (several machines). Chosen at deploy time in the ini file or the environment, which
wins; a password never goes in the ini file: a URL with one goes in the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyramid.settings import asbool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..settings import SettingsError

# The name of an environment variable, not a secret:
URL_ENV = "{{ cookiecutter.project_slug | upper }}_DATABASE_URL"
ENVIRONMENT = (URL_ENV,)
DRIVERS = {"sqlite": "sqlite", "postgresql+psycopg": "postgresql"}
EXAMPLES = "sqlite:////srv/app/sessions.sqlite or postgresql+psycopg://user@host/dbname"
MAX_TIMEOUT = 30
MAX_POOL_SIZE = 100
# Query parameters libpq takes as a password (or that look like one).
CREDENTIAL_PARAMETER = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)


@dataclass(frozen=True)
class DatabaseSettings:
    """The database URL and how to pool and wait for connections."""

    url: URL = field(repr=False)
    """May hold a password (from the environment): shown only through ``shown_url``."""
    timeout: float
    """Seconds to wait for a connection, a lock or a statement before answering 503."""
    pool_size: int
    max_overflow: int
    pool_pre_ping: bool

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return DRIVERS[self.url.drivername]

    @property
    def shown_url(self) -> str:
        """The URL for messages and logs, its password as ***."""
        return redacted_url(self.url)


def redacted_url(url: URL) -> str:
    """``url`` for a message: its password, and password-like query values, as ***."""
    hidden = {name: "***" for name in url.query if CREDENTIAL_PARAMETER.search(name)}
    text = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return text.replace("%2A%2A%2A", "***")  # as the password shows


def read_url(settings: Mapping[str, str], environ: Mapping[str, str]) -> URL:
    """The database URL: the environment's, else ``session.database_url``; checked."""
    from_env = bool(environ.get(URL_ENV, "").strip())
    name = URL_ENV if from_env else "session.database_url"
    raw = environ[URL_ENV].strip() if from_env else str(settings.get(name, "")).strip()
    if not raw:
        raise SettingsError(
            f"no database: set session.database_url (or {URL_ENV}), e.g. {EXAMPLES}"
        )
    try:
        url = make_url(raw)
    except ArgumentError:
        raise SettingsError(f"{name} is not a database URL (such as {EXAMPLES})") from None
    check_url(url, name, from_env)
    return url


def check_url(url: URL, name: str, from_env: bool) -> None:
    """Refuse a URL this store cannot use as promised, in one line naming ``name``."""
    if url.drivername not in DRIVERS:
        raise SettingsError(
            f"{name} must start with sqlite:/// or postgresql+psycopg:// (psycopg 3), "
            f"got {redacted_url(url)!r}"
        )
    if url.drivername == "sqlite":
        check_sqlite_url(url, name)
    elif "@" in (url.host or ""):
        raise SettingsError(
            f"{name} has an @ in its host: percent-encode an @ in the password as %40"
        )
    elif not url.host and "host" not in url.query:
        raise SettingsError(f"{name} names no host: {redacted_url(url)!r}")
    has_password = url.password is not None or any(map(CREDENTIAL_PARAMETER.search, url.query))
    if has_password and not from_env:
        raise SettingsError(
            f"{name} holds a password: put that URL in the {URL_ENV} environment variable "
            "instead (or use ~/.pgpass), never in an ini file"
        )


def check_sqlite_url(url: URL, name: str) -> None:
    """An SQLite file, without the query options that would make it something else."""
    if url.database in (None, "", ":memory:") or url.database.endswith("/"):
        raise SettingsError(
            f"{name} must name an SQLite file (sqlite:///path): an in-memory database "
            "is not shared between connections, so sessions would vanish"
        )
    if url.query:
        raise SettingsError(
            f"{name} takes no query for SQLite (got ?{'&'.join(url.query)}): the file's path alone"
        )


def read_number(
    settings: Mapping[str, str], name: str, default: str, low: float, high: float
) -> float:
    """The number of setting ``name``, within ``low..high``; SettingsError otherwise."""
    raw = str(settings.get(name, default)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise SettingsError(f"{name} must be a number from {low:g} to {high:g}, got {raw!r}")
    return value


def read_whole_number(
    settings: Mapping[str, str], name: str, default: str, low: int, high: int
) -> int:
    """The whole number of setting ``name``, within ``low..high``."""
    value = read_number(settings, name, default, low, high)
    if not value.is_integer():
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {value:g}")
    return int(value)


def read_database_settings(
    settings: Mapping[str, str], environ: Mapping[str, str]
) -> DatabaseSettings:
    """Check and collect the ``session.database_*`` settings; SettingsError names the one
    to fix."""
    timeout = read_number(settings, "session.database_timeout", "2", 0.1, MAX_TIMEOUT)
    return DatabaseSettings(
        url=read_url(settings, environ),
        timeout=timeout,
        pool_size=read_whole_number(settings, "session.database_pool_size", "5", 1, MAX_POOL_SIZE),
        max_overflow=read_whole_number(
            settings, "session.database_max_overflow", "10", 0, MAX_POOL_SIZE
        ),
        pool_pre_ping=asbool(settings.get("session.database_pool_pre_ping", "false")),
    )

{%- set command = cookiecutter.project_slug | replace("_", "-") ~ "-clear-sessions" -%}
"""End sessions from the command line: {% if cookiecutter.session_factory == "database" %}the expired ones, or {% endif %}every one (``--all``).
{% if cookiecutter.session_factory == "database" %}
Run it from cron or a systemd timer, as Django's ``clearsessions``::

    {{ command }} production.ini

Expired sessions are never read again (every statement checks), but their rows stay
until this runs.
{%- else %}
Redis deletes expired sessions by itself: without ``--all`` there is nothing to do.
{%- endif %}

To end every session at once (a leaked secret or store copy, a security incident),
while the app runs::

    {{ command }} --all production.ini

Every visitor starts afresh: no request still running brings an ended session back. To
end every session of one user (a lock-out, a password changed outside the app)::

    {{ command }} --user editor production.ini

It reads only the store and timeout settings: no session secret needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from pyramid.paster import get_appsettings

{% if cookiecutter.session_factory == "database" -%}
from .database import STORE_ERRORS, DatabaseStore, error_reason, make_database_store
from .database.settings import MAX_TIMEOUT
{%- else -%}
from .redis import STORE_ERRORS, RedisStore, error_reason, make_redis_store
from .redis.settings import read_redis_settings
{%- endif %}
from .settings import SettingsError, read_timeouts

PROGRAM = "{{ command }}"
{%- if cookiecutter.session_factory == "database" %}
STORE = "session database"
{%- else %}
STORE = "Redis"
{%- endif %}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the ini file, which section of it, and whether to end them all."""
    summary = __doc__.splitlines()[0].replace("``", "")  # the docstring's first line, plain
    parser = argparse.ArgumentParser(prog=PROGRAM, description=summary)
    parser.add_argument("config_uri", help="the ini file the app runs with, e.g. production.ini")
    parser.add_argument("--app", default="main", help="its app section (default: main)")
    ending = parser.add_mutually_exclusive_group()
    ending.add_argument(
        "--all",
        action="store_true",
        dest="end_all",
        help="end every session that exists now, live ones too (everyone starts afresh)",
    )
    ending.add_argument(
        "--user",
        metavar="USERID",
        help="end every session of the user with this id (as the app signs them in)",
    )
    return parser.parse_args(argv)


{% if cookiecutter.session_factory == "database" -%}
def open_store(settings: Mapping[str, str], end_all: bool) -> DatabaseStore:
    """The store the app configured in ``settings`` uses. Ending every session is one
    statement over the whole table (about a second per three million rows), which may
    outlast a request's timeout: it gets the longest there is."""
    timeout, absolute_timeout = read_timeouts(settings)
    if end_all:
        settings = {**settings, "session.database_timeout": str(MAX_TIMEOUT)}
    return make_database_store(settings, os.environ, timeout, absolute_timeout)
{% else -%}
def open_store(settings: Mapping[str, str]) -> RedisStore:
    """The store the app configured in ``settings`` uses."""
    timeout, absolute_timeout = read_timeouts(settings)
    return make_redis_store(read_redis_settings(settings, os.environ), timeout, absolute_timeout)
{% endif %}

def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless there is one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def clear_sessions(config_uri: str, app: str, end_all: bool, user: str | None = None) -> str:
    """Do what was asked of the app configured in ``config_uri``; what was done."""
{%- if cookiecutter.session_factory == "database" %}
    store = open_store(get_appsettings(config_uri, name=app), end_all)
{%- else %}
    store = open_store(get_appsettings(config_uri, name=app))
{%- endif %}
    try:
        if user is not None:
            return f"ended {plural(store.end_user_sessions(user), 'session')} of user {user}"
        if end_all:
            return f"ended every session ({plural(store.end_all_sessions(), 'session')} deleted)"
{%- if cookiecutter.session_factory == "database" %}
        return f"deleted {plural(store.clear_expired(), 'expired session')}"
{%- else %}
        return "Redis deletes expired sessions by itself: nothing to do (--all ends every one)"
{%- endif %}
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; exit status 0, 1 ({{ "database" if cookiecutter.session_factory == "database" else "Redis" }} unavailable) or 2 (bad settings)."""
    arguments = parse_arguments(argv)
    try:
        done = clear_sessions(
            arguments.config_uri, arguments.app, arguments.end_all, arguments.user
        )
    except (OSError, LookupError, SettingsError) as error:
        print(f"{PROGRAM}: cannot read {arguments.config_uri}: {error}", file=sys.stderr)
        return 2
    except STORE_ERRORS as error:
        print(f"{PROGRAM}: {STORE} unavailable: {error_reason(error)}", file=sys.stderr)
        return 1
    print(f"{PROGRAM}: {done}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Delete the sessions past their idle or absolute timeout.

Run it from cron or a systemd timer, as Django's ``clearsessions``::

    {{ cookiecutter.project_slug | replace("_", "-") }}-clear-sessions production.ini

Expired sessions are never read again (every statement checks), but their rows stay
until this runs. It reads only the database and timeout settings: no session secret
needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pyramid.paster import get_appsettings

from .database_store import STORE_ERRORS, error_reason, make_database_store
from .settings import SettingsError, read_timeouts

PROGRAM = "{{ cookiecutter.project_slug | replace("_", "-") }}-clear-sessions"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the ini file, and which section of it."""
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("config_uri", help="the ini file the app runs with, e.g. production.ini")
    parser.add_argument("--app", default="main", help="its app section (default: main)")
    return parser.parse_args(argv)


def clear_sessions(config_uri: str, app: str) -> int:
    """Delete the expired sessions of the app configured in ``config_uri``; how many."""
    settings = get_appsettings(config_uri, name=app)
    timeout, absolute_timeout = read_timeouts(settings)
    store = make_database_store(settings, os.environ, timeout, absolute_timeout)
    try:
        return store.clear_expired()
    finally:
        store.engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; exit status 0, 1 (database unavailable) or 2 (bad settings)."""
    arguments = parse_arguments(argv)
    try:
        cleared = clear_sessions(arguments.config_uri, arguments.app)
    except (OSError, LookupError, SettingsError) as error:
        print(f"{PROGRAM}: cannot read {arguments.config_uri}: {error}", file=sys.stderr)
        return 2
    except STORE_ERRORS as error:
        print(f"{PROGRAM}: session database unavailable: {error_reason(error)}", file=sys.stderr)
        return 1
    print(f"{PROGRAM}: deleted {cleared} expired session{'' if cleared == 1 else 's'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

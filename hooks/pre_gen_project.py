"""Validate every answer before anything is generated.

Each failure is one line naming the field, the bad value and what is expected; all
failures are reported together and the hook exits non-zero, so cookiecutter removes
the half-made project directory. Jinja appears only inside the string literal below,
so this file stays valid Python and its functions can be imported by unit tests.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

SESSION_FACTORIES = ("signed_cookie", "encrypted_cookie", "redis")
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
MIN_TIMEOUT, MAX_TIMEOUT = 60, 30 * 24 * 3600
MAX_TEXT_LENGTH = {"project_name": 80, "description": 300, "author_name": 100}
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Names the generated project imports or installs, or that its layout uses.
TAKEN_NAMES = frozenset(
    """
    chameleon hupper hypothesis nacl paste pastedeploy pip plaster plaster_pastedeploy
    pyramid pyramid_chameleon pyramid_nacl_session pytest pytest_cov
    redis ruff setuptools tests translationstring venusian waitress webob webtest zope
    """.split()
)

Check = Callable[[Any], "str | None"]


def check_text(field: str) -> Check:
    """A check for one line of printable text, at most MAX_TEXT_LENGTH[field] long."""

    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "a non-empty line of text"
        if value != value.strip():
            return "text without leading or trailing spaces"
        if any(unicodedata.category(char).startswith("C") for char in value):
            return "one line of printable text, without newlines, tabs or control characters"
        if len(value) > MAX_TEXT_LENGTH[field]:
            return f"at most {MAX_TEXT_LENGTH[field]} characters (got {len(value)})"
        return None

    return check


def check_slug(value: Any) -> str | None:
    """The package name: importable, lowercase, and shadowing nothing the project uses."""
    expected = "a lowercase Python package name such as my_app"
    if not isinstance(value, str) or not SLUG_PATTERN.fullmatch(value):
        return f"{expected} (a-z first, then a-z, 0-9 or _)"
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"{expected}, not a Python keyword"
    if value in sys.stdlib_module_names:
        return f"{expected}, not the name of a standard-library module"
    if value in TAKEN_NAMES:
        return f"{expected}, not the name of a package the project uses"
    return None


def check_email(value: Any) -> str | None:
    """An e-mail address, loosely."""
    if not isinstance(value, str) or not EMAIL_PATTERN.fullmatch(value):
        return "an e-mail address such as you@example.com"
    return None


def check_factory(value: Any) -> str | None:
    """One of the session factory choices."""
    if value not in SESSION_FACTORIES:
        return "one of " + ", ".join(SESSION_FACTORIES)
    return None


def whole_number_in(low: int, high: int, unit: str) -> Check:
    """A check for a whole number from ``low`` to ``high``."""

    def check(value: Any) -> str | None:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            return f"a whole number of {unit} from {low} to {high}"
        return None

    return check


def check_redis_url(value: Any) -> str | None:
    """A redis://, rediss:// or unix:// URL that redis-py can connect to."""
    expected = (
        "a URL such as redis://localhost:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
    )
    if not isinstance(value, str) or any(char.isspace() for char in value):
        return expected
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        return f"{expected} (the port must be 1 to 65535)"
    if url.scheme not in REDIS_URL_SCHEMES:
        return f"{expected} (the scheme must be one of {', '.join(REDIS_URL_SCHEMES)})"
    if url.scheme == "unix":
        return None if url.path else f"{expected} (a unix URL needs a socket path)"
    if not url.hostname:
        return f"{expected} (a host is missing)"
    if port == 0:
        return f"{expected} (the port must be 1 to 65535)"
    database = url.path.lstrip("/")
    if database and not database.isdigit():
        return f"{expected} (the database after the last / must be a number)"
    return None


def check_boolean(value: Any) -> str | None:
    """A yes/no answer."""
    return None if isinstance(value, bool) else "yes or no"


CHECKS: dict[str, Check] = {
    "project_name": check_text("project_name"),
    "project_slug": check_slug,
    "description": check_text("description"),
    "author_name": check_text("author_name"),
    "author_email": check_email,
    "session_factory": check_factory,
    "session_timeout": whole_number_in(MIN_TIMEOUT, MAX_TIMEOUT, "seconds"),
    "http_port": whole_number_in(1, 65535, "port"),
    "github_actions": check_boolean,
}
REDIS_CHECKS: dict[str, Check] = {"redis_url": check_redis_url}


def validate(answers: Mapping[str, Any]) -> list[str]:
    """One message per bad answer, in the order of the prompts; empty when all are good."""
    checks = dict(CHECKS)
    if answers.get("session_factory") == "redis":
        checks.update(REDIS_CHECKS)
    errors = []
    for field, check in checks.items():
        value = answers.get(field)
        expected = check(value)
        if expected is not None:
            errors.append(f"{field}: got {value!r}; expected {expected}")
    return errors


def main() -> int:
    """Print every problem with the answers and return the exit status."""
    errors = validate(json.loads(ANSWERS_JSON))
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        summary = f"{len(errors)} answer(s) must change; nothing was generated."
        print(f"ERROR: {summary}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

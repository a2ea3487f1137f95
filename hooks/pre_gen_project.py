"""Validate every answer before anything is generated.

First the running cookiecutter must be new enough (MINIMUM_COOKIECUTTER): an older one hands
the hook answers in the wrong form, and the field errors it would cause blame the user. Then
each failure is one line naming the field, the bad value and what is expected; all
failures are reported together and the hook exits non-zero, so cookiecutter removes
the half-made project directory. Jinja appears only inside the string literal below,
so this file stays valid Python and its functions can be imported by unit tests
(``from hooks import pre_gen_project``).
"""

from __future__ import annotations

import email.errors
import functools
import itertools
import json
import keyword
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from email.headerregistry import Address
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote_plus, urlsplit

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""
# cookiecutter's context: the answers and cookiecutter.json's private keys (passed as they
# are), which define once what this hook shares with the generated project. Unrendered
# (imported by the template's tests), the hook reads them from cookiecutter.json itself.
TEMPLATE = json.loads(
    ANSWERS_JSON
    if ANSWERS_JSON.startswith('{"')  # rendered: a JSON object, no longer the Jinja expression
    else (Path(__file__).resolve().parent.parent / "cookiecutter.json").read_text(encoding="utf-8")
)

# The oldest cookiecutter that renders the same project as the newest for the same answers.
# Older ones hand yes/no answers to the hook as text: before 2.2.0 even the default arrives
# as 'True'; before 2.7.0 one given on the command line (github_actions=no) stays 'no'.
# 2.2.0 to 2.2.2 also show the session factory prompt as a raw dict instead of its labels.
MINIMUM_COOKIECUTTER = (2, 7, 0)
VERSION_PATTERN = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")
# Text that cookiecutter 2.7.0 and newer turn into True or False for a yes/no variable.
YES_NO_TEXT = frozenset("1 true t yes y on 0 false f no n off".split())

SESSION_FACTORIES = ("signed_cookie", "encrypted_cookie", "redis", "database")
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
DATABASE_URL_SCHEMES = ("sqlite", "postgresql+psycopg")
# How an SQLite file's name may end: .gitignore lists the file, and a name no file of the
# project has keeps the list from hiding one.
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db", ".db3")
# One part of an SQLite file's path (\\w is any Unicode letter or digit, and _).
SQLITE_SEGMENT = re.compile(r"(?!\.{1,2}$)[\w.-]+")
# Query parameters that libpq takes as a password.
PASSWORD_PARAMETER = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
# The idle session timeout's bounds, which the generated settings module checks too.
MIN_TIMEOUT, MAX_TIMEOUT = TEMPLATE["_min_timeout"], TEMPLATE["_max_timeout"]
MAX_TEXT_LENGTH = {"project_name": 80, "description": 300, "author_name": 100}
# The SQL store's table is <slug>_sessions and its index <slug>_sessions_expiry: 56
# characters at most, under PostgreSQL's 63-byte limit for names. cookiecutter.json's
# default slug is cut to the same length.
MAX_SLUG_LENGTH = 40
# A PEP 508 name too (pip builds the project under it): no _ at the end.
SLUG_PATTERN = re.compile(r"[a-z]([a-z0-9_]*[a-z0-9])?")
# Query parameters that redis-py turns into credentials (and their look-alikes).
CREDENTIAL_PARAMETER = re.compile(r"pass|pwd|secret|token|user", re.IGNORECASE)
# A query parameter's value, with the parameter's name.
QUERY_PARAMETER = re.compile(r"[?&;](?P<name>[^=&;#]*)=(?P<value>[^&;#]*)")
# Every top-level module the installed project's environment holds, on any store and any
# supported Python (tests/test_generated_projects.py checks the list against the installed
# projects), and the generated tests' own helper modules, which pytest puts on sys.path.
TAKEN_NAMES = frozenset(
    """
    attrs bs4 cffi chameleon coverage exceptiongroup greenlet hiredis hupper hypothesis iniconfig
    nacl packaging paste pastedeploy pip pkg_resources plaster plaster_pastedeploy pluggy
    psycopg psycopg_binary py pycparser pygments pyramid pyramid_chameleon
    pyramid_nacl_session pytest pytest_cov redis ruff setuptools sortedcontainers soupsieve
    sqlalchemy tomli translationstring typing_extensions venusian waitress webob webtest zope
    conftest database_servers helpers test tests
    """.split()
)
# Characters of a format category (Cf) that text answers may hold all the same: the
# joiners that make one emoji of several (👨‍👩‍👧). Bidirectional overrides stay refused.
ALLOWED_FORMAT_CHARACTERS = frozenset("\u200c\u200d")
# The e-mail address package metadata takes (setuptools checks it when pip builds the
# project): an ASCII dot-atom before the @, a dotted domain after it.
ASCII_EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)
# The query parameters each store's URL may carry, and the values each takes: the app
# hands the URL to redis-py or libpq, which fail at the first request on any other.
REDIS_QUERY = {
    "db": re.compile(r"\d+"),
    "client_name": re.compile(r"[\w.-]+"),
    "socket_timeout": re.compile(r"\d+(\.\d+)?"),
    "socket_connect_timeout": re.compile(r"\d+(\.\d+)?"),
}
POSTGRESQL_QUERY = {
    "application_name": re.compile(r"[\w%.-]+"),
    "sslmode": re.compile(r"disable|allow|prefer|require|verify-ca|verify-full"),
    "connect_timeout": re.compile(r"\d+"),
    "target_session_attrs": re.compile(r"any|read-write|read-only|primary|standby|prefer-standby"),
}

Check = Callable[[Any], "str | None"]


# Unicode categories no answer may hold: control, format, private-use and unassigned
# characters (TOML forbids controls), and line and paragraph separators (str.splitlines
# and editors break lines there).
REFUSED_CATEGORIES = ("C", "Zl", "Zp")


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a character of REFUSED_CATEGORIES.

    pyproject.toml writes answers as TOML strings escaping only backslash and double quote,
    and the ini files and the README write them on one line, so every answer written there
    must pass this test.
    """
    return any(
        unicodedata.category(char).startswith(REFUSED_CATEGORIES)
        and char not in ALLOWED_FORMAT_CHARACTERS
        for char in text
    )


def check_text(field: str) -> Check:
    """A check for one line of printable text, at most MAX_TEXT_LENGTH[field] long."""

    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "a non-empty line of text"
        if value != value.strip():
            return "text without leading or trailing spaces"
        if has_control_characters(value):
            return "one line of printable text, without newlines, tabs or control characters"
        if len(value) > MAX_TEXT_LENGTH[field]:
            return f"at most {MAX_TEXT_LENGTH[field]} characters (got {len(value)})"
        return None

    return check


def check_slug(value: Any) -> str | None:
    """The package name: importable, lowercase, and shadowing nothing the project uses."""
    expected = "a lowercase Python package name such as my_app"
    if not isinstance(value, str) or not SLUG_PATTERN.fullmatch(value):
        return f"{expected} (a-z first, then a-z, 0-9 or _, not _ last)"
    if len(value) > MAX_SLUG_LENGTH:
        return (
            f"{expected}, at most {MAX_SLUG_LENGTH} characters (got {len(value)}): the SQL"
            " store's table and index names derive from it"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"{expected}, not a Python keyword"
    if value in sys.stdlib_module_names:
        return f"{expected}, not the name of a standard-library module"
    if value in TAKEN_NAMES:
        return f"{expected}, not the name of a package the project uses"
    if value.startswith("test"):
        return f"{expected}, not starting with 'test' (pytest's test modules are named so)"
    return None


def check_email(value: Any) -> str | None:
    """An e-mail address that package metadata takes: setuptools refuses any other (a
    non-ASCII local part, <brackets>, a list) when pip builds the project."""
    expected = "an e-mail address such as you@example.com, in ASCII characters"
    if not isinstance(value, str) or not ASCII_EMAIL_PATTERN.fullmatch(value):
        return expected
    try:
        Address(addr_spec=value)
    except (ValueError, email.errors.HeaderParseError):
        return expected
    return None


def query_error(
    url: SplitResult, allowed: Mapping[str, re.Pattern[str]], expected: str
) -> str | None:
    """The message for a URL's query parameters its driver would choke on, given those it
    may carry; None if there are none."""
    for part in filter(None, re.split("[&;]", url.query)):
        name, _, value = part.partition("=")
        if name not in allowed:
            return f"{expected} (only the query parameters {', '.join(allowed)}, not {name!r})"
        if not allowed[name].fullmatch(value):
            return f"{expected} (a valid value for the query parameter {name}, not {value!r})"
    return None


def check_factory(value: Any) -> str | None:
    """One of the session factory choices."""
    if value not in SESSION_FACTORIES:
        return "one of " + ", ".join(SESSION_FACTORIES)
    return None


def whole_number_in(low: int, high: int, what: str) -> Check:
    """A check for a whole number from ``low`` to ``high``, written as Python writes it.

    The answer is written as it is into the ini files and the generated tests (as a Python
    literal), so only the plain form passes: ASCII digits, no sign, no spaces or other
    padding, no leading zero (``01200`` is a syntax error in Python).
    """

    def check(value: Any) -> str | None:
        expected = f"{what} from {low} to {high}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return expected
        text = str(value)
        if not (text.isascii() and text.isdigit()):
            return f"{expected}, in digits only (no spaces, signs or other characters)"
        if text != str(int(text)):
            return f"{expected}, without leading zeros"
        if not low <= int(text) <= high:
            return expected
        return None

    return check


def url_variable(slug: Any, store: str) -> str:
    """The environment variable the generated app reads the store's URL from.

    It overrides ``session.<store>_url``, so credentials can live there instead of in files.
    A slug the hook refuses is not made into a name: the message says <SLUG> instead.
    """
    prefix = slug.upper() if check_slug(slug) is None else "<SLUG>"
    return f"{prefix}_{store.upper()}_URL"


def parameter_names(text: str) -> list[str]:
    """The names of the query parameters in ``text``, decoded as the drivers decode them
    (p%61ssword is a password too)."""
    return [unquote_plus(match["name"]) for match in QUERY_PARAMETER.finditer(text)]


def has_credentials(url: SplitResult) -> bool:
    """Whether the URL carries a user name or password, in its authority or its query."""
    names = parameter_names("?" + url.query)
    return "@" in url.netloc or any(CREDENTIAL_PARAMETER.search(name) for name in names)


def redacted_url(value: str) -> str:
    """``value`` with everything that may be a secret replaced by ***.

    Hidden: all from ``//`` to the last @ (user information, even when a stray /, ? or #
    in a password confuses URL parsing) and the values of credential query parameters.
    Both are marked on the original text, so one cannot uncover what the other hides.
    """
    at = value.rfind("@")
    slashes = value.find("//", 0, max(at, 0))
    hidden = set(range(slashes + 2 if slashes >= 0 else 0, at))
    for match in QUERY_PARAMETER.finditer(value):
        if CREDENTIAL_PARAMETER.search(unquote_plus(match["name"])):
            hidden.update(range(*match.span("value")))
    runs = itertools.groupby(enumerate(value), key=lambda item: item[0] in hidden)
    return "".join("***" if is_hidden else "".join(c for _, c in run) for is_hidden, run in runs)


def check_redis_url(value: Any, variable: str = "<SLUG>_REDIS_URL") -> str | None:
    """A redis://, rediss:// or unix:// URL that redis-py can connect to, without secrets.

    The answer is written into .cookiecutter.json, both ini files and the README, which a
    project commits: credentials belong in ``variable``, which overrides the ini's URL.
    """
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
    if has_credentials(url):
        return (
            "a URL without a user name or password (the answer is written into files the"
            f" project commits); put the URL with its credentials in the {variable}"
            " environment variable instead, which overrides session.redis_url"
        )
    if url.scheme not in REDIS_URL_SCHEMES:
        return f"{expected} (the scheme must be one of {', '.join(REDIS_URL_SCHEMES)})"
    if url.scheme == "unix":
        if not url.path:
            return f"{expected} (a unix URL needs a socket path)"
        return query_error(url, REDIS_QUERY, expected)
    if not url.hostname:
        return f"{expected} (a host is missing)"
    if port == 0:
        return f"{expected} (the port must be 1 to 65535)"
    database = url.path.lstrip("/")
    if database and not database.isdigit():
        return f"{expected} (the database after the last / must be a number)"
    named_twice = database and "db" in parameter_names("?" + url.query)  # redis-py takes db=
    return query_error(url, REDIS_QUERY, expected) or (
        f"{expected} (the database once: after the last / or as db=, not both)"
        if named_twice
        else None
    )


def check_database_url(value: Any, variable: str = "<SLUG>_DATABASE_URL") -> str | None:
    """An sqlite:/// file or a postgresql+psycopg:// URL SQLAlchemy can use, without a
    password (a user name is no secret): credentials belong in ``variable``."""
    expected = "a URL such as sqlite:///sessions.sqlite or postgresql+psycopg://user@host/dbname"
    if not isinstance(value, str) or any(char.isspace() for char in value):
        return expected
    if has_control_characters(value):
        return f"{expected} (without control characters)"
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        return f"{expected} (the port must be 1 to 65535)"
    if url.scheme not in DATABASE_URL_SCHEMES:
        return f"{expected} (it must start with sqlite:/// or postgresql+psycopg://)"
    names = parameter_names("?" + url.query)
    if url.password is not None or any(PASSWORD_PARAMETER.search(name) for name in names):
        return (
            "a URL without a password (the answer is written into files the project"
            f" commits); put the URL with its password in the {variable} environment"
            " variable instead, which overrides session.database_url"
        )
    if url.scheme == "sqlite":
        if not value.startswith("sqlite:///"):
            return f"{expected} (an SQLite URL is sqlite:/// and the path of a file)"
        if url.query:  # the app sets the file's options itself (WAL, the busy timeout)
            return f"{expected} (an SQLite URL takes no query parameters)"
        return check_sqlite_path(value.removeprefix("sqlite:///"))
    if not url.hostname or port == 0:
        return f"{expected} (a host, and a port from 1 to 65535 if any)"
    return query_error(url, POSTGRESQL_QUERY, expected)


def check_sqlite_path(path: str) -> str | None:
    """The file part of an sqlite:/// URL: relative to the project directory, or absolute
    after a fourth slash.

    A relative file is written into the project's .gitignore (it and its -wal, -shm and
    -journal files hold live session ids), so it must name one place the way git names it:
    plain segments of letters, digits, '.', '_' and '-', none of them '.' or '..'.
    """
    expected = (
        "an SQLite file such as sqlite:///sessions.sqlite or sqlite:///data/sessions.db (in"
        " the project directory) or sqlite:////var/lib/app/sessions.sqlite (absolute)"
    )
    segments = path.removeprefix("/").split("/")
    if not all(SQLITE_SEGMENT.fullmatch(segment) for segment in segments):
        return (
            f"{expected}, its path made of letters, digits, '.', '_', '-' and '/' (no empty,"
            " '.' or '..' parts; not :memory:)"
        )
    if not segments[-1].endswith(SQLITE_SUFFIXES):
        return f"{expected}, its name ending {', '.join(SQLITE_SUFFIXES)}"
    return None


def check_unused_url(value: Any) -> str | None:
    """The URL answer of a cookie store, which ignores it: anything without credentials.

    Every answer is kept in files a project commits (.cookiecutter.json, cruft's
    .cruft.json), so even an unused one may hold no user name or password.
    """
    if not isinstance(value, str):
        return "nothing (a cookie store uses no URL)"
    try:
        url = urlsplit(value)
    except ValueError:
        return "nothing (a cookie store uses no URL)"
    if "@" in value or has_credentials(url) or has_control_characters(value):
        return (
            "nothing (a cookie store uses no URL), and never a user name or password: the"
            " answer is written into files the project commits"
        )
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
    "session_timeout": whole_number_in(MIN_TIMEOUT, MAX_TIMEOUT, "a whole number of seconds"),
    # Checked for the chosen store by validate (store_url_check).
    "session_store_url": check_unused_url,
    "http_port": whole_number_in(1, 65535, "a port number"),
    "github_actions": check_boolean,
}


# The URL check of each server-side store, and the store its environment variable names.
STORE_URL_CHECKS: dict[str, Callable[..., str | None]] = {
    "redis": check_redis_url,
    "database": check_database_url,
}


def store_url_check(answers: Mapping[str, Any]) -> Check:
    """The check of ``session_store_url`` for the chosen store; its messages name the
    project's own environment variable for credentials."""
    factory = answers.get("session_factory")
    if factory not in STORE_URL_CHECKS:
        return check_unused_url
    variable = url_variable(answers.get("project_slug"), str(factory))
    return functools.partial(STORE_URL_CHECKS[factory], variable=variable)


# How an error line shows an answer that may hold a secret.
REDACTED: dict[str, Callable[[str], str]] = {"session_store_url": redacted_url}


def shown(field: str, value: Any) -> str:
    """``value`` as an error line shows it: repr, with any secret in it hidden."""
    redact = REDACTED.get(field)
    return repr(redact(value) if redact and isinstance(value, str) else value)


def slug_made_from(name: Any) -> str | None:
    """The slug cookiecutter.json makes of ``name`` when none is typed (its slugify filter,
    python-slugify's); None when that cannot be worked out here."""
    try:
        from slugify import slugify  # cookiecutter's own dependency
    except ImportError:  # pragma: no cover - cookiecutter always has it
        return None
    return slugify(str(name), separator="_", max_length=MAX_SLUG_LENGTH, word_boundary=True)


def validate(answers: Mapping[str, Any]) -> list[str]:
    """One message per bad answer, in the order of the prompts; empty when all are good.
    A refused slug that the project name made (no slug was typed) says so."""
    checks = {**CHECKS, "session_store_url": store_url_check(answers)}
    errors = []
    for field, check in checks.items():
        value = answers.get(field)
        expected = check(value)
        if expected is None:
            continue
        if field == "project_slug" and value == slug_made_from(answers.get("project_name")):
            expected += " (made from project_name: answer project_slug=... to choose one)"
        errors.append(f"{field}: got {shown(field, value)}; expected {expected}")
    return errors


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``text``'s leading major.minor.patch numbers (missing ones are 0); None if it has none.

    Pre-release and local suffixes are ignored: '2.7.0rc1' and '2.7.0.dev0' give (2, 7, 0).
    """
    match = VERSION_PATTERN.match(text.strip())
    if match is None:
        return None
    major, minor, patch = (int(number or 0) for number in match.groups())
    return major, minor, patch


def version_text(version: tuple[int, ...]) -> str:
    """A version tuple as people write it, such as '2.7.0'."""
    return ".".join(str(number) for number in version)


def running_cookiecutter_version() -> str | None:
    """The version of the cookiecutter running this hook; None when it cannot be told.

    Cookiecutter runs its Python hooks with its own interpreter, so the cookiecutter
    installed for this interpreter is the one running.
    """
    try:
        version = metadata.version("cookiecutter")
    except metadata.PackageNotFoundError:  # installed without metadata: ask the package
        try:
            import cookiecutter
        except ImportError:
            return None
        version = getattr(cookiecutter, "__version__", None)
    return version if isinstance(version, str) else None


def yes_no_answers_as_text(answers: Mapping[str, Any]) -> list[str]:
    """The yes/no fields whose answer arrived as text such as 'True' or 'no', not a bool.

    Only a cookiecutter older than MINIMUM_COOKIECUTTER passes them on that way.
    """
    return [
        field
        for field, check in CHECKS.items()
        if check is check_boolean
        and isinstance(answers.get(field), str)
        and answers[field].strip().lower() in YES_NO_TEXT
    ]


def cookiecutter_is_too_old(version: str | None, answers: Mapping[str, Any]) -> bool:
    """Whether cookiecutter ``version`` is older than the template needs.

    When the version cannot be read, a yes/no answer arriving as text gives an old one away.
    """
    parsed = parse_version(version) if version is not None else None
    if parsed is None:
        return bool(yes_no_answers_as_text(answers))
    return parsed < MINIMUM_COOKIECUTTER


def upgrade_message(version: str | None) -> str:
    """The one line that says which cookiecutter is needed and how to get it."""
    you_have = version if version is not None else "an unknown version"
    return (
        f"this template needs cookiecutter {version_text(MINIMUM_COOKIECUTTER)} or newer,"
        f" you have {you_have}: pip install -U cookiecutter"
    )


def main() -> int:
    """Print every problem with the answers and return the exit status.

    A cookiecutter too old for the template is the only problem reported: the answers it
    passes on are not in the form the field checks expect, so their errors would mislead.
    """
    answers = json.loads(ANSWERS_JSON)
    version = running_cookiecutter_version()
    if cookiecutter_is_too_old(version, answers):
        print(f"ERROR: {upgrade_message(version)}", file=sys.stderr)
        return 1
    errors = validate(answers)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        count = "1 answer" if len(errors) == 1 else f"{len(errors)} answers"
        summary = f"{count} must change; nothing was generated."
        print(f"ERROR: {summary}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

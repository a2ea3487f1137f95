"""The hooks: every answer validated with a clear one-line error; fresh secrets every time."""

from __future__ import annotations

import importlib.metadata
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import cookiecutter as cookiecutter_package
import pytest
from conftest import TEMPLATE_DIR
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config
from cookiecutter.utils import create_env_with_context

from bench.harness import FACTORIES
from hooks import post_gen_project as post_gen
from hooks import pre_gen_project as pre_gen

# cookiecutter.json as written: the variables, their prompts and the private keys.
VARIABLES = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
MIN_TIMEOUT, MAX_TIMEOUT = VARIABLES["_min_timeout"], VARIABLES["_max_timeout"]
TIMEOUT_RANGE = f"a whole number of seconds from {MIN_TIMEOUT} to {MAX_TIMEOUT}"
GOOD_ANSWERS = {
    "project_name": "Pyramid Sessions",
    "project_slug": "pyramid_sessions",
    "description": "A Pyramid 2 application.",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "session_factory": "signed_cookie",
    "session_timeout": "1200",
    "session_store_url": "",
    "http_port": "6543",
    "github_actions": True,
}
TEXT_FIELDS = ("project_name", "description", "author_name")
# (field, bad value, what the message must say is expected)
BAD_ANSWERS = [
    *[(field, "", "a non-empty line of text") for field in TEXT_FIELDS],
    *[(field, "   ", "a non-empty line of text") for field in TEXT_FIELDS],
    *[(field, "two\nlines", "one line of printable text") for field in TEXT_FIELDS],
    *[(field, "tab\there", "without newlines, tabs") for field in TEXT_FIELDS],
    *[(field, "bell\x07", "control characters") for field in TEXT_FIELDS],
    *[(field, " padded", "without leading or trailing spaces") for field in TEXT_FIELDS],
    ("project_name", "x" * 81, "at most 80 characters (got 81)"),
    ("description", "x" * 301, "at most 300 characters (got 301)"),
    ("author_name", "x" * 101, "at most 100 characters (got 101)"),
    ("project_slug", "", "a lowercase Python package name"),
    ("project_slug", "My_App", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "my-app", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "my app", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "1app", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "_app", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "app_", "not _ last"),
    ("project_slug", "café", "a-z first, then a-z, 0-9 or _"),
    ("project_slug", "class", "not a Python keyword"),
    ("project_slug", "import", "not a Python keyword"),
    ("project_slug", "match", "not a Python keyword"),
    ("project_slug", "json", "not the name of a standard-library module"),
    ("project_slug", "secrets", "not the name of a standard-library module"),
    ("project_slug", "logging", "not the name of a standard-library module"),
    ("project_slug", "pyramid", "not the name of a package the project uses"),
    ("project_slug", "waitress", "not the name of a package the project uses"),
    ("project_slug", "redis", "not the name of a package the project uses"),
    ("project_slug", "nacl", "not the name of a package the project uses"),
    ("project_slug", "webtest", "not the name of a package the project uses"),
    ("project_slug", "pytest", "not the name of a package the project uses"),
    ("project_slug", "tests", "not the name of a package the project uses"),
    ("author_email", "not-an-email", "an e-mail address"),
    ("author_email", "a@b", "an e-mail address"),
    ("author_email", "a b@example.com", "an e-mail address"),
    ("author_email", "you\x07@example.com", "an e-mail address"),
    ("author_email", "you\x7f@example.com", "an e-mail address"),
    ("author_email", "you\u202e@example.com", "an e-mail address"),
    # setuptools refuses these when pip builds the project (its metadata must parse).
    ("author_email", "zoë@example.com", "in ASCII characters"),
    ("author_email", "<zoe@example.com>", "in ASCII characters"),
    ("author_email", "zoe@example.com,", "in ASCII characters"),
    ("author_email", "zoe..x@example.com", "in ASCII characters"),
    # Modules the installed project's environment or its tests already have.
    ("project_slug", "test", "not the name of a package the project uses"),
    ("project_slug", "helpers", "not the name of a package the project uses"),
    ("project_slug", "coverage", "not the name of a package the project uses"),
    ("project_slug", "packaging", "not the name of a package the project uses"),
    ("project_slug", "testing_app", "not starting with 'test'"),
    ("session_factory", "memcached", "one of signed_cookie, encrypted_cookie, redis, database"),
    *[
        ("session_timeout", value, TIMEOUT_RANGE)
        for value in ("0", str(MIN_TIMEOUT - 1), str(MAX_TIMEOUT + 1), "-60", "1.5", "ten", "١٢٠٠")
    ],
    ("session_timeout", "\n1200", "in digits only (no spaces, signs or other characters)"),
    ("session_timeout", "1200 ", "in digits only (no spaces, signs or other characters)"),
    ("session_timeout", "1200\u3000", "in digits only (no spaces, signs or other characters)"),
    ("session_timeout", "+1200", "in digits only (no spaces, signs or other characters)"),
    ("session_timeout", "01200", "without leading zeros"),
    ("http_port", "0", "a port number from 1 to 65535"),
    ("http_port", "65536", "a port number from 1 to 65535"),
    ("http_port", "http", "a port number from 1 to 65535"),
    ("http_port", "", "a port number from 1 to 65535"),
    ("http_port", "\n6543", "a port number from 1 to 65535, in digits only"),
    ("http_port", "06543", "a port number from 1 to 65535, without leading zeros"),
    ("project_slug", "a" * 41, "at most 40 characters (got 41)"),
    ("project_name", "line\u2028separator", "one line of printable text"),
    ("description", "paragraph\u2029separator", "one line of printable text"),
]
BAD_REDIS_URLS = [
    ("http://localhost:6379/0", "the scheme must be one of redis, rediss, unix"),
    ("localhost:6379", "the scheme must be one of redis, rediss, unix"),
    ("redis://", "a host is missing"),
    ("redis://:6379/0", "a host is missing"),
    ("redis://localhost:99999/0", "the port must be 1 to 65535"),
    ("redis://localhost:0/0", "the port must be 1 to 65535"),
    ("redis://localhost:port/0", "the port must be 1 to 65535"),
    ("redis://localhost/zero", "the database after the last / must be a number"),
    ("unix://", "a unix URL needs a socket path"),
    ("redis://local host/0", "a URL such as redis://localhost:6379/0"),
    # redis-py takes other query parameters as keyword arguments: every page a 500.
    ("redis://localhost/0?decode_responses=true", "only the query parameters db, client_name"),
    ("redis://localhost/0?foo=bar", "only the query parameters db, client_name"),
    ("unix:///run/redis.sock?foo=1", "only the query parameters db, client_name"),
    ("rediss://localhost/0?ssl_cert_reqs=none", "only the query parameters db, client_name"),
    ("redis://localhost/0?db=abc", "a valid value for the query parameter db"),
    ("redis://localhost/0?socket_timeout=abc", "a valid value for the query parameter"),
    # redis-py takes db= over the path: the URL would name two databases, and use one.
    ("redis://localhost:6379/0?db=3", "the database once: after the last / or as db="),
    ("", "the scheme must be one of redis, rediss, unix"),
]
GOOD_REDIS_URLS = [
    "redis://localhost:6379/0",
    "redis://localhost",
    "rediss://cache.example.com:6380/2",
    "redis://[::1]:6379/0",
    "unix:///var/run/redis/redis.sock",
    "unix:///var/run/redis/redis.sock?db=2",
    "redis://localhost/0?socket_timeout=1.5&client_name=shop",
]
GOOD_DATABASE_URLS = [
    "sqlite:///sessions.sqlite",
    "sqlite:///var/sessions.sqlite",
    "sqlite:////var/lib/app/s.sqlite",
    "sqlite:///sessions.db",
    "sqlite:///data/sessions-2.sqlite3",
    "sqlite:///données/séances.db",
    "postgresql+psycopg://app@db.example/app",
    "postgresql+psycopg://app@db.example:5433/app",
    "postgresql+psycopg://db.example/app?sslmode=require&application_name=shop",
    "postgresql+psycopg://app@[::1]:5432/app",
]
# Neither holds user information, so the error line shows them as they are.
BAD_DATABASE_URLS = [
    ("sqlite://", "an SQLite URL is sqlite:/// and the path of a file"),
    ("sqlite:///:memory:", "not :memory:"),
    ("sqlite:////", "no empty, '.' or '..' parts"),
    ("sqlite:///", "no empty, '.' or '..' parts"),
    ("sqlite:///../sessions.sqlite", "no empty, '.' or '..' parts"),
    ("sqlite:///./sessions.sqlite", "no empty, '.' or '..' parts"),
    ("sqlite:///data//sessions.sqlite", "no empty, '.' or '..' parts"),
    ("sqlite:///data/", "no empty, '.' or '..' parts"),
    ("sqlite:///sessions*.sqlite", "letters, digits, '.', '_', '-' and '/'"),
    ("sqlite:///[abc].db", "letters, digits, '.', '_', '-' and '/'"),
    ("sqlite:///#sessions.db", "letters, digits, '.', '_', '-' and '/'"),
    ("sqlite:///!sessions.db", "letters, digits, '.', '_', '-' and '/'"),
    ("sqlite:///a%20b.db", "letters, digits, '.', '_', '-' and '/'"),
    ("sqlite:///sessions.sqlite?mode=ro", "no query parameters"),
    ("sqlite:///pyproject.toml", "its name ending .sqlite, .sqlite3, .db, .db3"),
    ("sqlite:////var/lib/app/sessions", "its name ending .sqlite, .sqlite3, .db, .db3"),
    ("mysql://db.example/app", "it must start with sqlite:/// or postgresql+psycopg://"),
    ("postgresql://db.example/app", "it must start with sqlite:/// or postgresql+psycopg://"),
    ("postgresql+psycopg2://db.example/app", "must start with sqlite:/// or postgresql+psycopg"),
    ("", "it must start with sqlite:/// or postgresql+psycopg://"),
    ("sqlite:///my sessions.sqlite", "a URL such as sqlite:///sessions.sqlite"),
    (" sqlite:///sessions.sqlite", "a URL such as sqlite:///sessions.sqlite"),
    ("postgresql+psycopg://db.example/app\t", "a URL such as sqlite:///sessions.sqlite"),
    ("postgresql+psycopg:///app", "a host, and a port from 1 to 65535"),
    ("postgresql+psycopg://db.example:0/app", "a port from 1 to 65535"),
    ("postgresql+psycopg://db.example:70000/app", "the port must be 1 to 65535"),
    ("postgresql+psycopg://db.example:port/app", "the port must be 1 to 65535"),
    # libpq refuses other connection options at the first request.
    ("postgresql+psycopg://db.example/app?foo=bar", "only the query parameters application_name"),
    ("postgresql+psycopg://db.example/app?sslmode=maybe", "a valid value for the query parameter"),
]
# Each store's URL answer: the factory that reads it, the variable (after <SLUG>_) that
# overrides it, and what its refusal of credentials says.
STORE_URLS = {
    "redis_url": ("redis", "REDIS_URL", "user name or password"),
    "database_url": ("database", "DATABASE_URL", "a URL without a password"),
}


# The one answer that holds a store's URL; the cases below name it by the store's kind.
URL_FIELD = "session_store_url"


def url_variable(field: str, slug: str = GOOD_ANSWERS["project_slug"]) -> str:
    """The environment variable the project ``slug`` reads the URL of kind ``field`` from."""
    return f"{slug.upper()}_{STORE_URLS[field][1]}"


def answer_field(field: str) -> str:
    """The answer a case's ``field`` is: a URL kind such as 'redis_url' is session_store_url."""
    return URL_FIELD if field in STORE_URLS else field


# (id, URL with credentials, the secret in it, how the error line must show the URL)
CREDENTIAL_REDIS_URLS = [
    ("password", "redis://:hunter2@localhost:6379/0", "hunter2", "redis://***@localhost:6379/0"),
    (
        "user-and-password",
        "redis://alice:hunter2@localhost/0",
        "hunter2",
        "redis://***@localhost/0",
    ),
    (
        "user-only",
        "rediss://alice@cache.example.com/0",
        "alice",
        "rediss://***@cache.example.com/0",
    ),
    ("empty-password", "redis://:@localhost/0", "", "redis://***@localhost/0"),
    ("escaped-password", "rediss://alice:p%40ss@h:6380/2", "p%40ss", "rediss://***@h:6380/2"),
    ("password-with-at", "redis://:hun@ter2@localhost/0", "hun@ter2", "redis://***@localhost/0"),
    ("unix-password", "unix://:hunter2@/run/redis.sock", "hunter2", "unix://***@/run/redis.sock"),
    (
        "password-parameter",
        "redis://localhost/0?password=hunter2",
        "hunter2",
        "redis://localhost/0?password=***",
    ),
    (
        "username-parameter",
        "redis://localhost/0?db=1&username=alice",
        "alice",
        "redis://localhost/0?db=1&username=***",
    ),
    (
        "unix-password-parameter",
        "unix:///run/redis.sock?db=0&password=hunter2",
        "hunter2",
        "unix:///run/redis.sock?db=0&password=***",
    ),
    (
        "encoded-password-parameter",
        "redis://localhost/0?p%61ssword=hunter2",
        "hunter2",
        "redis://localhost/0?p%61ssword=***",
    ),
    (
        "password-parameter-with-at",
        "redis://localhost/0?password=hun@ter2",
        "hun@ter2",
        "redis://***",
    ),
]
CREDENTIAL_DATABASE_URLS = [
    (
        "password",
        "postgresql+psycopg://app:hunter2@db.example/app",
        "hunter2",
        "postgresql+psycopg://***@db.example/app",
    ),
    (
        "password-without-user",
        "postgresql+psycopg://:hunter2@db.example:5432/app",
        "hunter2",
        "postgresql+psycopg://***@db.example:5432/app",
    ),
    (
        "empty-password",
        "postgresql+psycopg://app:@db.example/app",
        "",
        "postgresql+psycopg://***@db.example/app",
    ),
    (
        "escaped-password",
        "postgresql+psycopg://app:p%40ss@db.example/app",
        "p%40ss",
        "postgresql+psycopg://***@db.example/app",
    ),
    (
        "password-with-at",
        "postgresql+psycopg://app:hun@ter2@db.example/app",
        "hun@ter2",
        "postgresql+psycopg://***@db.example/app",
    ),
    (
        "password-parameter",
        "postgresql+psycopg://app@db.example/app?password=hunter2",
        "hunter2",
        "postgresql+psycopg://***@db.example/app?password=***",
    ),
    (
        "sslpassword-parameter",
        "postgresql+psycopg://db.example/app?sslmode=require&sslpassword=hunter2",
        "hunter2",
        "postgresql+psycopg://db.example/app?sslmode=require&sslpassword=***",
    ),
    (
        "sqlite-password-parameter",
        "sqlite:///sessions.sqlite?password=hunter2",
        "hunter2",
        "sqlite:///sessions.sqlite?password=***",
    ),
    (
        "password-parameter-with-at",
        "postgresql+psycopg://db.example/app?password=hun@ter2",
        "hun@ter2",
        "postgresql+psycopg://***",
    ),
    (
        "encoded-password-parameter",
        "postgresql+psycopg://db.example/app?p%61ssword=hunter2",
        "hunter2",
        "postgresql+psycopg://db.example/app?p%61ssword=***",
    ),
]


def url_cases(field: str, cases: list[tuple]) -> list:
    """``cases`` (an id first) as pytest parameters for the URL answer ``field``, with ids
    such as 'database_url-password'."""
    return [pytest.param(field, *values, id=f"{field}-{name}") for name, *values in cases]


# (field, URL with credentials, the secret in it, how the error line must show the URL)
CREDENTIAL_URLS = [
    *url_cases("redis_url", CREDENTIAL_REDIS_URLS),
    *url_cases("database_url", CREDENTIAL_DATABASE_URLS),
]
# (id, a URL refused for another reason, the secret in it): the error line hides it too.
MALFORMED_SECRET_REDIS_URLS = [
    ("wrong-scheme", "http://alice:hunter2@localhost/0", "hunter2"),
    ("no-host", "redis://:hunter2@:6379/0", "hunter2"),
    ("slash-in-password", "redis://:hun/ter2@localhost/0", "hun/ter2"),
    ("question-mark-in-password", "redis://:hun?ter2@localhost/0", "hun?ter2"),
    ("hash-in-password", "redis://alice:hun#ter2@localhost/0", "hun#ter2"),
    ("bad-database", "redis://localhost/zero?password=hunter2", "hunter2"),
]
MALFORMED_SECRET_DATABASE_URLS = [
    ("wrong-scheme", "mysql://app:hunter2@db.example/app", "hunter2"),
    ("psycopg2-scheme", "postgresql://app:hunter2@db.example/app", "hunter2"),
    ("no-host", "postgresql+psycopg://app:hunter2@/app", "hunter2"),
    ("slash-in-password", "postgresql+psycopg://app:hun/ter2@db.example/app", "hun/ter2"),
    ("question-mark-in-password", "postgresql+psycopg://app:hun?ter2@db.example/app", "hun?ter2"),
    ("hash-in-password", "postgresql+psycopg://app:hun#ter2@db.example/app", "hun#ter2"),
    ("bad-port", "postgresql+psycopg://app@db.example:0/app?password=hunter2", "hunter2"),
]
MALFORMED_SECRET_URLS = [
    *url_cases("redis_url", MALFORMED_SECRET_REDIS_URLS),
    *url_cases("database_url", MALFORMED_SECRET_DATABASE_URLS),
]


def case_id(field: str, value: str) -> str:
    """A readable id such as 'project_slug=class'."""
    return f"{field}={value!r}"[:60]


ALL_BAD = [
    *[(field, value, expected) for field, value, expected in BAD_ANSWERS],
    *[("redis_url", url, expected) for url, expected in BAD_REDIS_URLS],
    *[("database_url", url, expected) for url, expected in BAD_DATABASE_URLS],
]
ALL_BAD_IDS = [case_id(field, value) for field, value, _ in ALL_BAD]


def answers_with(field: str, value: object) -> dict:
    """Good answers with one changed; a URL of kind ``field`` is answered for its store."""
    store = STORE_URLS.get(field, (GOOD_ANSWERS["session_factory"],))[0]
    return {**GOOD_ANSWERS, "session_factory": store, answer_field(field): value}


def cookiecutter_defaults(answers: dict) -> dict:
    """cookiecutter.json's defaults as cookiecutter renders them after ``answers``."""
    context = generate_context(str(TEMPLATE_DIR / "cookiecutter.json"), extra_context=answers)
    return prompt_for_config(context, no_input=True)


# ---- pre_gen_project, imported as a module -------------------------------------------


def test_good_answers_pass() -> None:
    assert pre_gen.validate(GOOD_ANSWERS) == []


# cookiecutter.json's default URL answer for each store.
DEFAULT_URLS = {
    "signed_cookie": "",
    "encrypted_cookie": "",
    "redis": "redis://localhost:6379/0",
    "database": "sqlite:///sessions.sqlite",
}


@pytest.mark.parametrize("factory", FACTORIES)
def test_every_factory_is_accepted_with_its_default_url(factory: str) -> None:
    answers = {**GOOD_ANSWERS, "session_factory": factory}
    del answers["session_store_url"]
    default_url = cookiecutter_defaults(answers)["session_store_url"]
    assert default_url == DEFAULT_URLS[factory]
    assert pre_gen.validate({**answers, "session_store_url": default_url}) == []


GOOD_URLS = [
    *[("redis_url", url) for url in GOOD_REDIS_URLS],
    *[("database_url", url) for url in GOOD_DATABASE_URLS],
]


@pytest.mark.parametrize(("field", "url"), GOOD_URLS, ids=[case_id(*case) for case in GOOD_URLS])
def test_good_store_urls_pass(field: str, url: str) -> None:
    assert pre_gen.validate(answers_with(field, url)) == []


COOKIE_FACTORIES = ("signed_cookie", "encrypted_cookie")
# What a cookie store, which ignores the URL answer, accepts there: nothing, or any URL
# without credentials (the answer is still kept in .cookiecutter.json and .cruft.json).
IGNORED_URLS = ["", "redis://localhost:6379/0", "sqlite:///sessions.sqlite", "whatever"]


@pytest.mark.parametrize("url", IGNORED_URLS, ids=repr)
@pytest.mark.parametrize("factory", COOKIE_FACTORIES)
def test_a_cookie_store_ignores_a_url_without_credentials(factory: str, url: str) -> None:
    assert pre_gen.validate({**GOOD_ANSWERS, "session_factory": factory, URL_FIELD: url}) == []


@pytest.mark.parametrize(
    ("field", "url", "secret", "shown"),
    [case for case in CREDENTIAL_URLS if case.values[2]],
)
@pytest.mark.parametrize("factory", COOKIE_FACTORIES)
def test_a_cookie_store_refuses_credentials_in_the_url_it_ignores(
    factory: str, field: str, url: str, secret: str, shown: str
) -> None:
    [message] = pre_gen.validate({**GOOD_ANSWERS, "session_factory": factory, URL_FIELD: url})
    assert message.startswith(f"{URL_FIELD}: got ")
    assert "never a user name or password" in message
    assert secret not in message


@pytest.mark.parametrize(
    "value",
    ['Ça "marche" 100% <b>${x}</b> \\o/', "O'Brien", "Ünïcödé 日本語", "50% off; #1"],
)
def test_awkward_but_printable_text_is_accepted(value: str) -> None:
    assert pre_gen.validate({**GOOD_ANSWERS, "project_name": value, "description": value}) == []


@pytest.mark.parametrize(("field", "value", "expected"), ALL_BAD, ids=ALL_BAD_IDS)
def test_bad_answer_gets_one_clear_message(field: str, value: str, expected: str) -> None:
    [message] = pre_gen.validate(answers_with(field, value))
    assert message.startswith(f"{answer_field(field)}: got {value!r}; expected ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["maybe", "yes", 1, None], ids=repr)
def test_github_actions_must_be_a_boolean(value: object) -> None:
    [message] = pre_gen.validate({**GOOD_ANSWERS, "github_actions": value})
    assert message == f"github_actions: got {value!r}; expected yes or no"


# What TOML forbids in a basic string and pyproject.toml's toml_string macro does not escape.
TOML_FORBIDDEN = ["\x00", "\x08", "\n", "\x0b", "\r", "\x1f", "\x7f"]


def toml_string_fields() -> list[str]:
    """The answers pyproject.toml writes through its toml_string macro (escapes only \\ and ")."""
    pyproject = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "pyproject.toml"
    return re.findall(r"toml_string\(cookiecutter\.(\w+)\)", pyproject.read_text())


def test_pyproject_writes_every_free_text_answer_as_a_toml_string() -> None:
    assert sorted(toml_string_fields()) == ["author_email", "author_name", "description"]


@pytest.mark.parametrize("char", TOML_FORBIDDEN, ids=repr)
@pytest.mark.parametrize("field", toml_string_fields())
def test_characters_toml_forbids_are_refused(field: str, char: str) -> None:
    value = f"you{char}@example.com" if field == "author_email" else f"one{char}two"
    [message] = pre_gen.validate({**GOOD_ANSWERS, field: value})
    assert message.startswith(f"{field}: got {value!r}; expected ")


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_characters_outside_the_basic_multilingual_plane_are_accepted(field: str) -> None:
    assert pre_gen.validate({**GOOD_ANSWERS, field: "Launch 🚀 in 𝄞 time"}) == []


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_emoji_made_of_several_with_joiners_are_accepted(field: str) -> None:
    assert pre_gen.validate({**GOOD_ANSWERS, field: "Family 👨\u200d👩\u200d👧 App"}) == []


@pytest.mark.parametrize(("field", "url", "secret", "shown"), CREDENTIAL_URLS)
def test_credentials_in_a_store_url_are_refused_without_showing_them(
    field: str, url: str, secret: str, shown: str
) -> None:
    [message] = pre_gen.validate(answers_with(field, url))
    assert message.startswith(f"{URL_FIELD}: got {shown!r}; expected ")
    assert STORE_URLS[field][2] in message
    assert f"the {url_variable(field)} environment variable" in message
    assert not secret or secret not in message
    assert "\n" not in message


@pytest.mark.parametrize(("field", "url", "secret"), MALFORMED_SECRET_URLS)
def test_a_refused_store_url_never_shows_its_secret(field: str, url: str, secret: str) -> None:
    [message] = pre_gen.validate(answers_with(field, url))
    assert message.startswith(f"{URL_FIELD}: got ")
    assert secret not in message


# A URL with a password, by URL answer.
PASSWORD_URLS = {
    "redis_url": "redis://:hunter2@localhost/0",
    "database_url": "postgresql+psycopg://app:hunter2@db.example/app",
}


@pytest.mark.parametrize("field", STORE_URLS)
def test_store_credentials_are_reported_with_the_other_errors(field: str) -> None:
    answers = {**answers_with(field, PASSWORD_URLS[field]), "http_port": "0"}
    fields = [message.split(":")[0] for message in pre_gen.validate(answers)]
    assert fields == [URL_FIELD, "http_port"]  # in the order of the prompts


# Project names whose slug, made from the name, is refused: the user typed no slug.
NAMES_WITH_A_REFUSED_SLUG = {"Test Shop": "test_shop", "Email": "email", "Class": "class"}


@pytest.mark.parametrize("name", NAMES_WITH_A_REFUSED_SLUG, ids=list(NAMES_WITH_A_REFUSED_SLUG))
def test_a_refused_slug_made_from_the_name_says_so(name: str) -> None:
    slug = NAMES_WITH_A_REFUSED_SLUG[name]
    [error] = pre_gen.validate({**GOOD_ANSWERS, "project_name": name, "project_slug": slug})
    assert error.startswith("project_slug: ")
    assert "made from project_name: answer project_slug=" in error


def test_a_refused_slug_typed_by_hand_says_nothing_of_the_name() -> None:
    [error] = pre_gen.validate({**GOOD_ANSWERS, "project_name": "Shop", "project_slug": "email"})
    assert "made from project_name" not in error


@pytest.mark.parametrize("slug", ["shop", "my_app2"])
@pytest.mark.parametrize("field", STORE_URLS)
def test_the_refusal_names_the_projects_own_variable(field: str, slug: str) -> None:
    answers = {**answers_with(field, PASSWORD_URLS[field]), "project_slug": slug}
    [message] = pre_gen.validate(answers)
    assert f"the {url_variable(field, slug)} environment variable" in message
    assert url_variable(field) not in message


@pytest.mark.parametrize("slug", ["class", "My-App", "a" * 41], ids=["keyword", "bad", "long"])
@pytest.mark.parametrize("field", STORE_URLS)
def test_a_refused_slug_is_never_made_into_a_variable_name(field: str, slug: str) -> None:
    answers = {**answers_with(field, PASSWORD_URLS[field]), "project_slug": slug}
    slug_error, url_error = pre_gen.validate(answers)
    assert slug_error.startswith("project_slug: ")
    assert f"the <SLUG>_{STORE_URLS[field][1]} environment variable" in url_error
    assert slug.upper() not in url_error


def test_every_failure_is_reported_at_once() -> None:
    answers = {**GOOD_ANSWERS, "project_slug": "class", "http_port": "0", "author_email": "x"}
    fields = [message.split(":")[0] for message in pre_gen.validate(answers)]
    assert fields == ["project_slug", "author_email", "http_port"]


def test_every_prompted_field_is_checked() -> None:
    prompted = {name for name in VARIABLES if not name.startswith("_")}
    assert prompted == set(pre_gen.CHECKS)
    assert prompted == set(VARIABLES["__prompts__"])


@pytest.mark.parametrize("factory", ["signed_cookie", "encrypted_cookie"])
def test_cookie_factory_labels_say_the_session_class_is_the_projects_own(factory: str) -> None:
    label = VARIABLES["__prompts__"]["session_factory"][factory]
    assert "the project's own session class" in label
    assert "built-in" not in label


# ---- what the hooks share with the generated project ----------------------------------


def rendered_hook(name: str, directory: Path, **private: object) -> dict:
    """hooks/<name>.py as cookiecutter runs it: rendered for the default answers, with
    cookiecutter.json's private keys changed to ``private``, alone in ``directory``; its
    globals."""
    context = generate_context(str(TEMPLATE_DIR / "cookiecutter.json"))
    context["cookiecutter"] = {**prompt_for_config(context, no_input=True), **private}
    source = (TEMPLATE_DIR / "hooks" / f"{name}.py").read_text(encoding="utf-8")
    script = directory / f"{name}.py"
    script.write_text(create_env_with_context(context).from_string(source).render(**context))
    return runpy.run_path(str(script))


def test_the_hooks_take_the_shared_values_from_cookiecutter_json() -> None:
    in_hooks = {
        "_min_timeout": pre_gen.MIN_TIMEOUT,
        "_max_timeout": pre_gen.MAX_TIMEOUT,
        "_secret_bytes": post_gen.SECRET_BYTES,
    }
    assert in_hooks == {key: VARIABLES[key] for key in in_hooks}
    assert set(post_gen.SECRET_BYTES) == set(FACTORIES)


def test_cookiecutter_passes_the_shared_values_as_they_are() -> None:
    """Private keys are not rendered: the hooks and the generated project's Jinja get
    cookiecutter.json's numbers and mapping, not text (60 != "60")."""
    context = cookiecutter_defaults({})
    shared = ("_min_timeout", "_max_timeout", "_secret_bytes")
    assert {key: context[key] for key in shared} == {key: VARIABLES[key] for key in shared}


def test_the_rendered_hooks_read_the_shared_values_from_cookiecutters_context(
    tmp_path: Path,
) -> None:
    shared = {
        "_min_timeout": 61,
        "_max_timeout": 3601,
        "_secret_bytes": dict.fromkeys(FACTORIES, 48),
    }
    pre = rendered_hook("pre_gen_project", tmp_path, **shared)
    post = rendered_hook("post_gen_project", tmp_path, **shared)
    assert (pre["MIN_TIMEOUT"], pre["MAX_TIMEOUT"]) == (61, 3601)
    assert "from 61 to 3601" in pre["CHECKS"]["session_timeout"]("3602")
    assert post["SECRET_BYTES"] == shared["_secret_bytes"]
    assert len(post["new_secret"]("encrypted_cookie")) == 2 * 48


def test_the_timeout_prompt_names_the_shared_bounds() -> None:
    """cookiecutter shows __prompts__ as written (it renders no Jinja there), so the prompt
    repeats the bounds of cookiecutter.json's private keys, and must keep to them."""
    bounds = f"({MIN_TIMEOUT} to {MAX_TIMEOUT})"
    assert VARIABLES["__prompts__"]["session_timeout"].endswith(bounds)


# ---- pre_gen_project: the cookiecutter running it ------------------------------------

# (id, version text, what parse_version makes of it)
VERSION_TEXTS = [
    ("release", "2.7.1", (2, 7, 1)),
    ("debian-1.7.3", "1.7.3", (1, 7, 3)),
    ("two-digit-minor", "2.10.0", (2, 10, 0)),
    ("no-patch", "2.7", (2, 7, 0)),
    ("major-only", "3", (3, 0, 0)),
    ("release-candidate", "2.7.0rc1", (2, 7, 0)),
    ("dev-build", "2.8.0.dev0", (2, 8, 0)),
    ("surrounding-space", " 2.7.1\n", (2, 7, 1)),
    ("empty", "", None),
    ("words", "unknown", None),
]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [case[1:] for case in VERSION_TEXTS],
    ids=[case[0] for case in VERSION_TEXTS],
)
def test_parse_version(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert pre_gen.parse_version(text) == parsed


def test_the_minimum_is_the_release_the_readme_names() -> None:
    minimum = pre_gen.version_text(pre_gen.MINIMUM_COOKIECUTTER)
    assert minimum == "2.7.0"
    assert f"cookiecutter {minimum} or newer" in (TEMPLATE_DIR / "README.md").read_text()


# (version, whether it is older than the template needs), with good answers
RELEASES = [
    ("1.7.3", True),
    ("2.1.1", True),
    ("2.2.0", True),
    ("2.6.0", True),
    ("2.7.0", False),
    ("2.7.1", False),
    ("2.10.0", False),  # compared as numbers: as text, "2.10.0" < "2.7.0"
    ("3.0.0", False),
]


@pytest.mark.parametrize(("version", "too_old"), RELEASES, ids=[case[0] for case in RELEASES])
def test_cookiecutter_is_too_old_compares_release_numbers(version: str, too_old: bool) -> None:
    assert pre_gen.cookiecutter_is_too_old(version, GOOD_ANSWERS) is too_old


UPGRADE = (
    "ERROR: this template needs cookiecutter 2.7.0 or newer, you have {}:"
    " pip install -U cookiecutter"
)
FIELD_ERROR = (
    "ERROR: project_slug: got 'class'; expected a lowercase Python package name such as"
    " my_app, not a Python keyword"
)
ONE_TO_CHANGE = "ERROR: 1 answer must change; nothing was generated."
# (id, cookiecutter version or None when unreadable, answers changed from GOOD_ANSWERS,
#  the exit status, the lines on stderr)
MAIN_CASES = [
    ("1.7.3-default-answers", "1.7.3", {"github_actions": "True"}, 1, [UPGRADE.format("1.7.3")]),
    ("2.1.1-default-answers", "2.1.1", {"github_actions": "True"}, 1, [UPGRADE.format("2.1.1")]),
    ("2.1.1-answered-False", "2.1.1", {"github_actions": "False"}, 1, [UPGRADE.format("2.1.1")]),
    ("2.6.0-github_actions=no", "2.6.0", {"github_actions": "no"}, 1, [UPGRADE.format("2.6.0")]),
    ("2.6.0-good-answers", "2.6.0", {}, 1, [UPGRADE.format("2.6.0")]),
    (
        "2.6.0-bad-answer-too",
        "2.6.0",
        {"project_slug": "class", "github_actions": "True"},
        1,
        [UPGRADE.format("2.6.0")],
    ),
    ("2.7.0-good-answers", "2.7.0", {}, 0, []),
    ("2.7.1-good-answers", "2.7.1", {"github_actions": False}, 0, []),
    ("2.7.1-bad-answer", "2.7.1", {"project_slug": "class"}, 1, [FIELD_ERROR, ONE_TO_CHANGE]),
    ("unreadable-version-good-answers", None, {}, 0, []),
    (
        "unreadable-version-answered-True-as-text",
        None,
        {"github_actions": "True"},
        1,
        [UPGRADE.format("an unknown version")],
    ),
    (
        "unparsable-version-answered-no-as-text",
        "unknown",
        {"github_actions": "no"},
        1,
        [UPGRADE.format("unknown")],
    ),
    (
        "unreadable-version-bad-answer",
        None,
        {"project_slug": "class"},
        1,
        [FIELD_ERROR, ONE_TO_CHANGE],
    ),
]


@pytest.mark.parametrize(
    ("version", "changes", "status", "stderr"),
    [case[1:] for case in MAIN_CASES],
    ids=[case[0] for case in MAIN_CASES],
)
def test_main_names_the_cookiecutter_needed_before_any_field_error(
    monkeypatch, capsys, version: str | None, changes: dict, status: int, stderr: list[str]
) -> None:
    monkeypatch.setattr(pre_gen, "ANSWERS_JSON", json.dumps({**GOOD_ANSWERS, **changes}))
    monkeypatch.setattr(pre_gen, "running_cookiecutter_version", lambda: version)
    assert pre_gen.main() == status
    out, err = capsys.readouterr()
    assert err.splitlines() == stderr
    assert out == ""


def test_the_running_cookiecutter_version_is_read() -> None:
    assert pre_gen.running_cookiecutter_version() == cookiecutter_package.__version__


def test_the_version_comes_from_the_package_when_its_metadata_is_missing(monkeypatch) -> None:
    def no_metadata(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pre_gen.metadata, "version", no_metadata)
    monkeypatch.setattr(cookiecutter_package, "__version__", "2.1.1")
    assert pre_gen.running_cookiecutter_version() == "2.1.1"


def test_the_version_is_none_when_cookiecutter_cannot_be_found(monkeypatch) -> None:
    def no_metadata(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pre_gen.metadata, "version", no_metadata)
    monkeypatch.setitem(sys.modules, "cookiecutter", None)  # import cookiecutter now fails
    assert pre_gen.running_cookiecutter_version() is None


# ---- pre_gen_project, run by cookiecutter --------------------------------------------


def baked_dirs(tmp_path: Path) -> list[Path]:
    """What the failed bakes left behind in their output directories."""
    return [path for bake in (tmp_path / "cookies").iterdir() for path in bake.iterdir()]


# Cookiecutter itself refuses these before any hook runs: an empty slug names no
# directory, and a choice outside the list is rejected with a ValueError naming the field.
REFUSED_BY_COOKIECUTTER = [("project_slug", ""), ("session_factory", "memcached")]
BAKEABLE_BAD = [case for case in ALL_BAD if case[:2] not in REFUSED_BY_COOKIECUTTER]


def first_case_of_each_message(cases: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """One bad answer for each field and message: test_bad_answer_gets_one_clear_message
    checks every case in-process; a bake, which runs the hook as cookiecutter does, each
    message once."""
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    for field, value, expected in cases:
        first.setdefault((field, expected), (field, value, expected))
    return list(first.values())


BAKED_BAD = first_case_of_each_message(BAKEABLE_BAD)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    BAKED_BAD,
    ids=[case_id(field, value) for field, value, _ in BAKED_BAD],
)
def test_bake_with_a_bad_answer_fails_and_leaves_nothing(
    bake, tmp_path: Path, capfd, field: str, value: str, expected: str
) -> None:
    result = bake(**answers_with(field, value))
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "FailedHookException"
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"ERROR: {answer_field(field)}: got {value!r}; expected ")
    assert expected in errors[0]
    assert errors[1] == "ERROR: 1 answer must change; nothing was generated."
    assert baked_dirs(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "url", "secret"),
    [
        pytest.param(*case.values[:3], id=case.id, marks=case.marks)
        for case in CREDENTIAL_URLS
        if case.values[2]
    ],
)
def test_bake_with_store_credentials_fails_leaves_nothing_and_prints_no_secret(
    bake, tmp_path: Path, capfd, field: str, url: str, secret: str
) -> None:
    exception = bake(**answers_with(field, url)).exception
    assert type(exception).__name__ == "FailedHookException", f"{field}={url!r} was accepted"
    out, err = capfd.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"ERROR: {URL_FIELD}: got ")
    assert url_variable(field) in errors[0]
    assert secret not in out + err
    assert baked_dirs(tmp_path) == []


@pytest.mark.parametrize(("field", "value"), REFUSED_BY_COOKIECUTTER, ids=repr)
def test_cookiecutter_refuses_some_answers_first(bake, tmp_path: Path, field, value) -> None:
    result = bake(**{field: value})
    assert result.exit_code != 0
    assert baked_dirs(tmp_path) == []


def cookiecutter_cli(tmp_path: Path, *answers: str, **env: str) -> subprocess.CompletedProcess:
    """Run the cookiecutter command as a user would, without prompts."""
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE_DIR), *answers],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        check=False,
    )


@pytest.mark.parametrize("optimize", ["", "2"], ids=["plain", "PYTHONOPTIMIZE=2"])
def test_cli_reports_all_errors_without_traceback(tmp_path: Path, optimize: str) -> None:
    result = cookiecutter_cli(
        tmp_path, "project_slug=class", "http_port=99999", PYTHONOPTIMIZE=optimize
    )
    assert result.returncode != 0
    assert "ERROR: project_slug: got 'class'; expected" in result.stderr
    assert "ERROR: http_port: got '99999'; expected" in result.stderr
    assert "ERROR: 2 answers must change" in result.stderr
    assert "Traceback" not in result.stderr
    assert [path.name for path in tmp_path.iterdir() if path.name != ".cookiecutter_replay"] == []


# (URL answer, a URL with two secrets, hunter2 and hunter3, and how the error shows it)
CLI_SECRET_URLS = [
    (
        "redis_url",
        "redis://alice:hunter2@localhost:6379/0?password=hunter3",
        "redis://***@localhost:6379/0?password=***",
    ),
    (
        "database_url",
        "postgresql+psycopg://app:hunter2@db.example:5432/app?sslpassword=hunter3",
        "postgresql+psycopg://***@db.example:5432/app?sslpassword=***",
    ),
]


@pytest.mark.parametrize(
    ("field", "url", "shown"), CLI_SECRET_URLS, ids=[case[0] for case in CLI_SECRET_URLS]
)
def test_cli_never_shows_store_credentials(tmp_path: Path, field: str, url: str, shown) -> None:
    store = STORE_URLS[field][0]
    result = cookiecutter_cli(tmp_path, f"session_factory={store}", f"{URL_FIELD}={url}")
    assert result.returncode != 0
    assert f"ERROR: {URL_FIELD}: got {shown!r}" in result.stderr
    assert f"{url_variable(field)} environment variable" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "hunter3" not in result.stdout + result.stderr
    assert [path.name for path in tmp_path.iterdir() if path.name != ".cookiecutter_replay"] == []


# ---- post_gen_project -----------------------------------------------------------------


def development_secret(project: Path) -> str:
    """The secret post_gen wrote for development, checked to be its owner's only."""
    path = project / post_gen.DEVELOPMENT_SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


@pytest.mark.parametrize("factory", FACTORIES)
def test_new_secret_form(factory: str) -> None:
    secret = post_gen.new_secret(factory)
    assert len(secret) == 2 * post_gen.SECRET_BYTES[factory]
    assert set(secret) <= set("0123456789abcdef")
    assert post_gen.SECRET_BYTES[factory] >= 32  # at least 256 bits


# Renders per factory whose secrets must all differ: a fixed or reused secret shows at the
# second; more renders only cost time.
DISTINCT_RENDERS = 4


@pytest.mark.parametrize("factory", FACTORIES)
def test_many_renders_give_distinct_secrets_absent_from_replay(
    bake, factory: str, _cookiecutter_config_file
) -> None:
    replay_dir = Path(str(_cookiecutter_config_file)).parent / "cookiecutter_replay"
    seen = set()
    for _ in range(DISTINCT_RENDERS):
        result = bake(session_factory=factory)
        assert result.exit_code == 0, result.exception
        secret = development_secret(result.project_path)
        assert len(secret) == 2 * post_gen.SECRET_BYTES[factory]
        assert set(secret) <= set("0123456789abcdef")
        replays = "".join(path.read_text() for path in replay_dir.glob("*.json"))
        assert replays and secret not in replays
        seen.add(secret)
    assert len(seen) == DISTINCT_RENDERS


def test_no_secret_in_the_template() -> None:
    template_files = [TEMPLATE_DIR / "cookiecutter.json"] + [
        path
        for path in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}").rglob("*")
        if path.is_file()
    ]
    for path in template_files:
        assert not re.search(r"[0-9a-f]{64}", path.read_text(encoding="utf-8")), path


# The store's own session tests each factory's project keeps.
SESSION_TESTS = {
    "signed_cookie": ["test_cookie_sessions.py"],
    "encrypted_cookie": ["test_cookie_sessions.py"],
    "redis": ["test_clear_sessions.py", "test_redis_sessions.py", "test_server_sessions.py"],
    "database": ["test_clear_sessions.py", "test_database_sessions.py", "test_server_sessions.py"],
}


@pytest.mark.parametrize("factory", FACTORIES)
def test_unused_variant_files_are_removed(bake, factory: str) -> None:
    result = bake(session_factory=factory, github_actions=False)
    project = result.project_path
    tests = sorted(path.name for path in (project / "tests").glob("test_*_sessions.py"))
    assert tests == SESSION_TESTS[factory]
    assert not (project / ".github").exists()
    assert len(development_secret(project)) == 2 * post_gen.SECRET_BYTES[factory]


def test_next_steps_are_printed(bake, capfd) -> None:
    result = bake(session_factory="redis", http_port="8080")
    out = capfd.readouterr().out
    for step in (
        f"cd {result.project_path}\n",  # the whole path: `-o ..` puts it out of sight
        "python3 -m venv .venv",
        '.venv/bin/pip install -e ".[testing]"',
        ".venv/bin/pytest",
        ".venv/bin/pserve development.ini --reload",
        "Or with uv: uv sync, uv run pytest, uv run pserve development.ini --reload",
        "needs Redis at redis://localhost:6379/0",
        "http://localhost:8080/",
    ):
        assert step in out
    assert "below 1024" not in out


def test_next_steps_say_what_a_privileged_port_takes(bake, capfd) -> None:
    """An answer of 80 passes the checks (the tests never listen on it), but pserve needs
    root to listen there, and production.ini's waitress would take it from the proxy."""
    bake(http_port="80")
    out = capfd.readouterr().out
    assert "http://localhost:80/" in out
    assert "port 80 is below 1024: only root may listen there" in out


def test_answers_are_kept_without_secrets(bake) -> None:
    result = bake(session_factory="redis", project_name="Kept Answers")
    saved = json.loads((result.project_path / ".cookiecutter.json").read_text())
    answers = saved["cookiecutter"]
    assert answers["project_name"] == "Kept Answers"
    assert answers["session_factory"] == "redis"
    assert not [key for key in answers if key.startswith("_")]
    assert development_secret(result.project_path) not in json.dumps(saved)


def test_the_answers_file_names_the_template_commit_the_project_was_made_from(bake) -> None:
    """What `cruft link --checkout` needs (docs/updating.md reads it from there)."""
    made_from = subprocess.run(
        ["git", "-C", str(TEMPLATE_DIR), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    expected = made_from.stdout.strip() if made_from.returncode == 0 else None
    result = bake(session_factory="signed_cookie")
    saved = json.loads((result.project_path / ".cookiecutter.json").read_text())
    assert saved["template"] == {"commit": expected}


def test_a_template_that_is_no_git_checkout_records_no_commit(tmp_path: Path) -> None:
    """A template unpacked from a zip, or lying inside another project's repository."""
    inside = tmp_path / "project" / "template"
    inside.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(tmp_path / "project")], check=True)
    assert post_gen.template_commit(str(tmp_path)) is None
    assert post_gen.template_commit(str(inside)) is None

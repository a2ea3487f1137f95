"""Fixtures: the app built from development.ini{% if cookiecutter.session_factory == "redis" %} against a private Redis server{% endif %}."""

from __future__ import annotations

{% if cookiecutter.session_factory == "redis" -%}
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
{% else -%}
import secrets
{% endif -%}
from pathlib import Path

import pytest
{% if cookiecutter.session_factory == "redis" -%}
import redis
{% endif -%}
import webtest
from pyramid.config import Configurator
from pyramid.paster import get_appsettings
from pyramid.request import Request

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }} import settings as settings_module
{%- if cookiecutter.session_factory == "redis" %}
from {{ cookiecutter.project_slug }}.redis_settings import ENVIRONMENT as REDIS_ENVIRONMENT
{%- endif %}
from {{ cookiecutter.project_slug }}.sessions import regenerate_session

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Variables that would override the settings under test.
SETTINGS_ENV = [
    settings_module.SECRET_ENV,
    settings_module.SECRET_FALLBACKS_ENV,
{%- if cookiecutter.session_factory == "redis" %}
    *REDIS_ENVIRONMENT,
{%- endif %}
]
{%- if cookiecutter.session_factory == "redis" %}
REDIS_URL_ENV = "TEST_REDIS_URL"
# Loopback only, nothing written to disk, quiet.
PRIVATE_SERVER_OPTIONS = ["--bind", "127.0.0.1", "--appendonly", "no", "--loglevel", "warning"]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private, throw-away redis-server on a free loopback port, stopped by PID."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                f"redis-server not found: install it (apt-get install redis-server) "
                f"or point {REDIS_URL_ENV} at a Redis server you own"
            )
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--save", "", *PRIVATE_SERVER_OPTIONS],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        """Stop the server by its PID and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """$TEST_REDIS_URL when set, else the URL of a private server started for this run."""
    if os.environ.get(REDIS_URL_ENV):
        yield os.environ[REDIS_URL_ENV]
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an emptied test database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app_settings(redis_client: redis.Redis, redis_url: str) -> dict:
    """development.ini's settings with a secret of the test's own, on the test Redis."""
    return {**development_settings(), "session.redis_url": redis_url}
{%- else %}


@pytest.fixture
def app_settings() -> dict:
    """development.ini's settings with a secret of the test's own."""
    return development_settings()
{%- endif %}


def development_settings() -> dict:
    """development.ini's settings, with a fresh secret: tests need no .session_secret file."""
    settings = dict(get_appsettings(str(PROJECT_DIR / "development.ini")))
    return {**settings, "session.secret": secrets.token_hex(settings_module.SECRET_BYTES)}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell overrides the settings under test."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app(app_settings: dict):
    """A fresh WSGI application."""
    return main({}, **app_settings)


@pytest.fixture
def testapp(app) -> webtest.TestApp:
    """A browser-like client with its own cookie jar."""
    return webtest.TestApp(app)


def login_view(request: Request) -> dict:
    """What a login view does first: a new session id (or cookie) for the same data."""
    regenerate_session(request)
    return {"session": dict(request.session)}


@pytest.fixture
def app_with_login(app_settings: dict) -> webtest.TestApp:
    """The app plus a test-only /login view that calls ``regenerate_session``."""
    with Configurator(settings=app_settings) as config:
        config.include("{{ cookiecutter.project_slug }}")
        config.add_route("login", "/login")
        config.add_view(login_view, route_name="login", renderer="json")
    return webtest.TestApp(config.make_wsgi_app())

{%- set server_side = cookiecutter.session_factory in ("redis", "database") -%}
"""/healthz and /readyz, the probes of a load balancer or Kubernetes: short plain text,
no session and no cookie, the security headers, and readiness that follows the session
store{% if server_side %} (liveness does not: it never asks the store){% endif %}."""

from __future__ import annotations

import logging
{%- if cookiecutter.session_factory == "redis" %}
import os
import signal
{%- endif %}
{%- if server_side %}
import time
{%- endif %}
{%- if cookiecutter.session_factory == "redis" %}
from collections.abc import Iterator
{%- endif %}

import pytest
import webtest
{%- if cookiecutter.session_factory == "database" %}
from helpers import assert_security_headers, session_cookie
from sqlalchemy.exc import OperationalError
from test_database_sessions import app_store
{%- elif cookiecutter.session_factory == "redis" %}
from helpers import assert_security_headers, development_settings, session_cookie
from redis_servers import RedisServer
{%- else %}
from helpers import assert_security_headers, session_cookie
{%- endif %}

from {{ cookiecutter.project_slug }} import health{% if server_side %}, main{% endif %}

# What each probe answers while all is well.
PROBES = {"/healthz": "ok\n", "/readyz": "ready\n"}
NOT_READY = "session store unavailable\n"


def assert_plain_answer(response: webtest.TestResponse, body: str) -> None:
    """A probe's answer: ``body`` as plain text, no cookie, the security headers."""
    assert (response.content_type, response.text) == ("text/plain", body)
    assert "Set-Cookie" not in response.headers
    assert_security_headers(response)


def readiness_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What /readyz logged."""
    return [record for record in caplog.records if record.name == health.__name__]


def assert_one_line_without_traceback(caplog: pytest.LogCaptureFixture, error: str) -> None:
    """/readyz logged one error line that names ``error``, and no traceback."""
    [record] = readiness_lines(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("not ready: session store unavailable: ")
    assert error in record.getMessage()
    assert (record.exc_info, record.stack_info) == (None, None)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("path", PROBES)
def test_a_probe_answers_200_in_plain_text_with_the_security_headers(
    testapp: webtest.TestApp, path: str
) -> None:
    assert_plain_answer(testapp.get(path, status=200), PROBES[path])
    head = testapp.head(path, status=200)  # what some load balancers send
    assert (head.body, "Set-Cookie" in head.headers) == (b"", False)


@pytest.mark.parametrize("path", PROBES)
def test_a_probe_makes_no_session(testapp: webtest.TestApp, path: str{% if server_side %}, stored{% endif %}) -> None:
    for _ in range(3):
        assert_plain_answer(testapp.get(path), PROBES[path])
    assert testapp.cookies == {}
{%- if server_side %}
    assert stored.ids() == []  # nothing was written to the store either
{%- endif %}


@pytest.mark.parametrize("path", PROBES)
def test_a_probe_leaves_a_visitors_session_alone(testapp: webtest.TestApp, path: str) -> None:
    testapp.get("/")
    cookie = session_cookie(testapp)
    assert_plain_answer(testapp.get(path), PROBES[path])  # sent with the session cookie
    assert session_cookie(testapp) == cookie


def test_readyz_is_503_with_one_log_line_when_the_engine_reports_an_error(
    testapp: webtest.TestApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the engine's ``session_store_error`` says{% if not server_side %} (a cookie store says None: only a
    project generated with Redis or SQL meets this){% endif %}, /readyz passes on."""
    monkeypatch.setattr(health.sessions, "session_store_error", lambda request: "Down: gone")
    with caplog.at_level(logging.ERROR):
        assert_plain_answer(testapp.get("/readyz", status=503), NOT_READY)
    assert_one_line_without_traceback(caplog, "Down: gone")
    assert_plain_answer(testapp.get("/healthz", status=200), PROBES["/healthz"])
{%- if cookiecutter.session_factory == "redis" %}


@pytest.fixture
def outage_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, that it may stop and start again."""
    server = RedisServer().start()
    yield server
    server.stop()


def test_readyz_is_503_while_redis_is_down_and_200_once_it_is_back(
    outage_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {**development_settings(), "session.redis_url": outage_redis.url}
    testapp = webtest.TestApp(main({}, **settings))
    testapp.get("/")  # a visitor's session: its cookie goes with every probe below
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])
    outage_redis.stop()
    with caplog.at_level(logging.ERROR):
        assert_plain_answer(testapp.get("/readyz", status=503), NOT_READY)
        # Liveness never asks the store: the process is fine, no restart is needed.
        assert_plain_answer(testapp.get("/healthz", status=200), PROBES["/healthz"])
    assert_one_line_without_traceback(caplog, "ConnectionError: ")
    outage_redis.start()
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])


def test_readyz_gives_up_within_the_socket_timeout(
    outage_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that stopped answering (a frozen machine): 503 after the socket timeout."""
    settings = {
        **development_settings(),
        "session.redis_url": outage_redis.url,
        "session.redis_socket_timeout": "0.1",
    }
    testapp = webtest.TestApp(main({}, **settings))
    testapp.get("/readyz", status=200)  # connected
    os.kill(outage_redis.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.ERROR):
            started = time.monotonic()
            assert_plain_answer(testapp.get("/readyz", status=503), NOT_READY)
            assert time.monotonic() - started < 1  # 0.1 s, and a wide margin
    finally:
        os.kill(outage_redis.process.pid, signal.SIGCONT)
    assert_one_line_without_traceback(caplog, "TimeoutError: ")
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])


# The other deployments, started once for the run (conftest): PING works on each.
TOPOLOGIES = {"sentinel": "redis_sentinel", "cluster": "redis_cluster", "tls": "redis_tls"}


@pytest.mark.parametrize("deployment", TOPOLOGIES.values(), ids=TOPOLOGIES)
def test_readyz_answers_on_every_redis_topology(
    request: pytest.FixtureRequest, deployment: str
) -> None:
    settings = request.getfixturevalue(deployment).settings()
    testapp = webtest.TestApp(main({}, **{**development_settings(), **settings}))
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])
{%- elif cookiecutter.session_factory == "database" %}


def test_readyz_costs_one_statement_and_healthz_none(
    testapp: webtest.TestApp, watch_statements
) -> None:
    sent = watch_statements(app_store(testapp))
    testapp.get("/healthz", status=200)
    assert sent == []
    testapp.get("/readyz", status=200)
    assert sent == ["SELECT"]


def test_readyz_is_503_while_the_database_refuses_connections(
    testapp: webtest.TestApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    testapp.get("/")  # a visitor's session: its cookie goes with every probe below
    connections = app_store(testapp).connections
    take = connections.take

    def refuse() -> None:
        raise OperationalError("connect", {}, ConnectionError("connection refused"))

    monkeypatch.setattr(connections, "take", refuse)
    with caplog.at_level(logging.ERROR):
        assert_plain_answer(testapp.get("/readyz", status=503), NOT_READY)
        # Liveness never asks the store: the process is fine, no restart is needed.
        assert_plain_answer(testapp.get("/healthz", status=200), PROBES["/healthz"])
    assert_one_line_without_traceback(caplog, "OperationalError: connection refused")
    monkeypatch.setattr(connections, "take", take)
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])


# A pool of one connection that waits a tenth of a second for it (the lowest timeout).
ONE_CONNECTION = {
    "session.database_timeout": "0.1",
    "session.database_pool_size": "1",
    "session.database_max_overflow": "0",
}


def test_readyz_gives_up_within_the_database_timeout(
    app_settings: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Every pooled connection busy (a database that answers too slowly): 503 after the
    wait for a connection, the store's timeout, then 200 once one is free."""
    testapp = webtest.TestApp(main({}, **{**app_settings, **ONE_CONNECTION}))
    with app_store(testapp).engine.connect(), caplog.at_level(logging.ERROR):
        started = time.monotonic()
        assert_plain_answer(testapp.get("/readyz", status=503), NOT_READY)
        assert time.monotonic() - started < 1  # 0.1 s, and a wide margin
    assert_one_line_without_traceback(caplog, "TimeoutError: ")
    assert_plain_answer(testapp.get("/readyz", status=200), PROBES["/readyz"])
{%- endif %}

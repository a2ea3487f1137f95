"""Install each rendered project exactly as its README says, run its tests, serve and load it."""

from __future__ import annotations

import http.cookiejar
import re
import shlex
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import AWKWARD_ANSWERS, SESSION_FACTORIES

from bench.harness import (
    RedisServer,
    clean_environment,
    free_port,
    readme_commands,
    redis_server,
    run_readme_command,
    start,
    stop,
)
from bench.load import load_project

EXPECTED_COMMANDS = [
    "python3 -m venv .venv",
    '.venv/bin/pip install -e ".[testing]"',
    ".venv/bin/pytest",
    ".venv/bin/pserve development.ini --reload",
]
COUNTER = re.compile(r'<strong id="counter">(\d+)</strong>')


@contextmanager
def serving(command: str, project: Path, port: int, redis: RedisServer) -> Iterator[str]:
    """Run the README's serve command until the block ends; yield the site's URL."""
    env = clean_environment(SHOP_REDIS_URL=redis.url)
    server = start(shlex.split(command), port, cwd=project, env=env)
    try:
        yield f"http://localhost:{port}"
    finally:
        stop(server)


def visit(browser: urllib.request.OpenerDirector, url: str) -> int:
    """GET a counter page and return the count it shows."""
    with browser.open(url, timeout=10) as response:
        assert response.status == 200
        match = COUNTER.search(response.read().decode())
    assert match, "no counter on the served page"
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("factory", SESSION_FACTORIES)
def test_readme_commands_install_test_serve_and_survive_load(cookies, factory: str) -> None:
    port = free_port()
    answers = {**AWKWARD_ANSWERS, "session_factory": factory, "http_port": str(port)}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    commands = readme_commands(project)
    assert commands == EXPECTED_COMMANDS
    for command in commands[:-1]:  # create the venv, install, run the project's own tests
        run_readme_command(command, project)

    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with redis_server() as redis:
        with serving(commands[-1], project, port, redis) as site:
            assert [visit(browser, f"{site}/"), visit(browser, f"{site}/howdy")] == [1, 2]
        with serving(commands[-1], project, port, redis) as site:
            assert visit(browser, f"{site}/") == 3, "the count did not survive a restart"

    report = load_project(project, factory, clients=8, seconds=6)
    assert report.passed, report.line()
    assert report.requests > 100
    if factory == "redis":
        assert report.unavailable > 0, "the Redis outage was not noticed"

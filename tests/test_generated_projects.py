"""Install each rendered project exactly as its README says, run its tests, and serve it."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import AWKWARD_ANSWERS, SESSION_FACTORIES, free_port

README_COMMANDS = re.compile(r"## Install, test, serve\n\n```sh\n(.*?)```", re.DOTALL)
EXPECTED_COMMANDS = [
    "python3 -m venv .venv",
    '.venv/bin/pip install -e ".[testing]"',
    ".venv/bin/pytest",
    ".venv/bin/pserve development.ini --reload",
]
COUNTER = re.compile(r'<strong id="counter">(\d+)</strong>')


def readme_commands(project: Path) -> list[str]:
    """The commands of the README's install, test and serve block."""
    match = README_COMMANDS.search((project / "README.md").read_text(encoding="utf-8"))
    assert match, "the README has no 'Install, test, serve' block"
    return match.group(1).strip().splitlines()


def run(command: str, cwd: Path, env: dict[str, str]) -> None:
    """Run one README command; fail with its output when it fails."""
    result = subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-6000:]}{result.stderr}"


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until something accepts connections on ``port``, or fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listened on port {port} within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a process and everything it started (pserve --reload forks a worker)."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A private redis-server on a free loopback port for the served app."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port, server)
    yield f"redis://127.0.0.1:{port}/0"
    stop(server)


@contextmanager
def serving(command: str, project: Path, env: dict[str, str], port: int) -> Iterator[None]:
    """Run the README's serve command until the block ends."""
    server = subprocess.Popen(
        shlex.split(command),
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, server)
        yield
    finally:
        stop(server)


def visit(opener: urllib.request.OpenerDirector, url: str) -> int:
    """GET a counter page and return the count it shows."""
    with opener.open(url, timeout=10) as response:
        assert response.status == 200
        match = COUNTER.search(response.read().decode())
    assert match, "no counter on the served page"
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("factory", SESSION_FACTORIES)
def test_readme_commands_install_test_and_serve(cookies, factory: str, redis_url: str) -> None:
    port = free_port()
    result = cookies.bake(
        extra_context={**AWKWARD_ANSWERS, "session_factory": factory, "http_port": str(port)}
    )
    assert result.exit_code == 0, result.exception
    project = result.project_path
    commands = readme_commands(project)
    assert commands == EXPECTED_COMMANDS
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    for command in commands[:-1]:
        run(command, project, env)

    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    base = f"http://localhost:{port}"
    with serving(commands[-1], project, {**env, "SHOP_REDIS_URL": redis_url}, port):
        assert [visit(browser, f"{base}/"), visit(browser, f"{base}/howdy")] == [1, 2]
    with serving(commands[-1], project, {**env, "SHOP_REDIS_URL": redis_url}, port):
        assert visit(browser, f"{base}/") == 3, "the count did not survive a restart"

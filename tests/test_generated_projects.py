"""Install each rendered project exactly as its README says, run its tests, serve and load it."""

from __future__ import annotations

import http.client
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import AWKWARD_ANSWERS
from playwright.sync_api import expect, sync_playwright

from bench.harness import (
    FACTORIES,
    ROOT,
    RedisDeployment,
    clean_environment,
    free_port,
    production_env,
    readme_commands,
    redis_deployment,
    run_readme_command,
    start,
    stop,
    waitress_server,
)
from bench.load import COUNTER, CSRF_TOKEN, Browser, load_project

EXPECTED_COMMANDS = [
    "python3 -m venv .venv",
    '.venv/bin/pip install -e ".[testing]"',
    ".venv/bin/pytest",
    ".venv/bin/pserve development.ini --reload",
]
# A client's own Host and X-Forwarded-* headers, which no page or redirect may repeat.
FORGED_HOST_HEADERS = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "666",
}
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a browser that Playwright downloads
# No sandbox as root; no calls home, which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def serving(command: str, project: Path, port: int, redis: RedisDeployment) -> Iterator[str]:
    """Run the README's serve command until the block ends; yield the site's URL."""
    env = clean_environment(SHOP_REDIS_URL=redis.nodes[0].url)
    server = start(shlex.split(command), port, cwd=project, env=env)
    try:
        yield f"http://localhost:{port}"
    finally:
        stop(server)


def browse_like_a_person(site: str, screenshot: Path) -> None:
    """Drive headless Chromium through the counter, the flash form and a reload."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.goto(f"{site}/")
            expect(page.locator("#counter")).to_have_text("1")
            page.get_by_role("link", name="Howdy").click()
            expect(page).to_have_title(re.compile("^Howdy"))
            expect(page.locator("#counter")).to_have_text("2")
            page.select_option("#category", "success")
            page.fill("#message", "Saved from Chromium")
            page.get_by_role("button", name="Flash it").click()
            message = page.locator(".flash-success[role=status] li")
            expect(message).to_have_text(["Saved from Chromium"])
            expect(page.locator("#counter")).to_have_text("3")
            page.screenshot(path=str(screenshot), full_page=True)
            page.get_by_role("button", name="Dismiss success messages").click()
            expect(message).to_have_count(0)
            page.reload()
            expect(page.locator("#counter")).to_have_text("4")
            expect(page.get_by_text("Saved from Chromium")).to_have_count(0)
        finally:
            browser.close()


def count_on(browser: Browser, path: str = "/") -> int:
    """GET a counter page with a load-test client and return its count."""
    status, page = browser.request("GET", path)
    assert status == 200, status
    match = COUNTER.search(page)
    assert match, "no counter on the page"
    return int(match.group(1))


def send(
    connection: http.client.HTTPConnection, method: str, path: str, **options
) -> tuple[http.client.HTTPResponse, str]:
    """One request on ``connection``; the response and its body."""
    connection.request(method, path, **options)
    response = connection.getresponse()
    return response, response.read().decode("utf-8")


def assert_forged_host_goes_nowhere(site: str) -> None:
    """A page and the redirect after a form, asked for with a forged host: neither repeats
    it, and both carry the security headers (HSTS too: production's sessions are secure)."""
    url = urlsplit(site)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        page, body = send(connection, "GET", "/", headers=FORGED_HOST_HEADERS)
        form = urlencode({"csrf_token": CSRF_TOKEN.search(body).group(1)})
        headers = {
            **FORGED_HOST_HEADERS,
            "Cookie": page.getheader("Set-Cookie").split(";", 1)[0],
            "Content-Type": "application/x-www-form-urlencoded",
        }
        redirect, _ = send(connection, "POST", "/reset", body=form, headers=headers)
    finally:
        connection.close()
    assert (page.status, redirect.status, redirect.getheader("Location")) == (200, 303, "/")
    for response, text in ((page, body), (redirect, "")):
        everything = f"{response.headers}\n{text}"
        assert "evil.example" not in everything and ":666" not in everything, everything
        assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
        assert response.getheader("Strict-Transport-Security")
        assert response.getheader("Cache-Control") == "no-store"


def alternate_between_two_processes(project: Path, factory: str, redis: RedisDeployment) -> None:
    """Two waitress processes, one secret and one Redis: one counter that never goes back."""
    env = production_env(project, factory, redis)
    with (
        waitress_server(project, "production.ini", env) as (first, _),
        waitress_server(project, "production.ini", env) as (second, _),
    ):
        assert_forged_host_goes_nowhere(first)
        tabs = [Browser(first), Browser(second)]
        counts = []
        for visit in range(12):
            tab = tabs[visit % 2]
            tab.cookie = tabs[(visit + 1) % 2].cookie  # the browser's one cookie, either way
            counts.append(count_on(tab))
    assert counts == list(range(1, 13))


@pytest.mark.slow
@pytest.mark.parametrize("factory", FACTORIES)
def test_readme_install_test_serve_browse_scale_out_and_load(cookies, factory: str) -> None:
    port = free_port()
    answers = {**AWKWARD_ANSWERS, "session_factory": factory, "http_port": str(port)}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    commands = readme_commands(project)
    assert commands == EXPECTED_COMMANDS
    for command in commands[:-1]:  # create the venv, install, run the project's own tests
        run_readme_command(command, project)

    with redis_deployment() as redis:
        with serving(commands[-1], project, port, redis) as site:
            tab = Browser(site)
            assert [count_on(tab, "/"), count_on(tab, "/howdy")] == [1, 2]
        with serving(commands[-1], project, port, redis) as site:
            after_restart = Browser(site)
            after_restart.cookie = tab.cookie
            assert count_on(after_restart) == 3, "the count did not survive a restart"
            ARTIFACTS.mkdir(exist_ok=True)
            browse_like_a_person(site, ARTIFACTS / f"{factory}.png")
        alternate_between_two_processes(project, factory, redis)

    report = load_project(project, factory, clients=8, seconds=6)
    assert report.passed, report.line()
    assert report.requests > 100
    if factory == "redis":
        assert report.unavailable > 0, "the Redis outage was not noticed"

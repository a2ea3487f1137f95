"""Install each rendered project exactly as its README says, run its tests, serve and load it.

A server-side store's project is served on each deployment in SERVED_ON: the SQL store's on
an SQLite file and on a private PostgreSQL server (stopped mid-load).
"""

from __future__ import annotations

import http.client
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from chromium_cookie_size import ARTIFACTS, assert_chromium_keeps_the_largest_cookie
from conftest import AWKWARD_ANSWERS
from playwright.sync_api import expect, sync_playwright

from bench.harness import (
    DATABASES,
    FACTORIES,
    PIP_COMMANDS,
    UV_COMMANDS,
    clean_environment,
    free_port,
    load_hook,
    production_env,
    project_env,
    project_python,
    readme_command_blocks,
    run_readme_command,
    served_sqlite_file,
    start,
    stop,
    waitress_server,
)
from bench.load import (
    COUNTER,
    CSRF_TOKEN,
    MIN_SECONDS,
    Browser,
    SessionStore,
    load_project,
    session_store,
)

pre_gen = load_hook("pre_gen_project")
# Lists the top-level modules of everything installed in an environment.
LIST_MODULES = "import importlib.metadata as m; print(*m.packages_distributions(), sep='\\n')"

# Which of the README's blocks installs, tests and serves each project: pip's for one, uv's
# for the others (and test_without_postgresql's). uv installs the same [testing] extra
# (its dev group names it) in seconds where pip takes a quarter of a minute.
INSTALLED_WITH = {
    "signed_cookie": PIP_COMMANDS,
    "encrypted_cookie": UV_COMMANDS,
    "redis": UV_COMMANDS,
    "database": UV_COMMANDS,
}
# A client's own Host and X-Forwarded-* headers, which no page or redirect may repeat.
FORGED_HOST_HEADERS = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "666",
}
# The stores whose whole session is the cookie: Chromium must keep their largest one.
COOKIE_FACTORIES = ("signed_cookie", "encrypted_cookie")
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
# Where each server-side factory's project is served: Redis on one server, the SQL store
# on an SQLite file and on PostgreSQL; the cookie factories on nothing ("server").
SERVED_ON = {"redis": ("server",), "database": DATABASES}
# Each factory's project is made with answers other than the defaults, at the edges the
# hook accepts, so that its own tests prove they assume none of the defaults: the shortest
# and longest timeouts, others between, and for the SQL store the longest slug (its table
# and index names are the longest; its own tests run on PostgreSQL too) with an SQLite file
# in a directory a fresh checkout does not have (the app makes it).
NON_DEFAULT_ANSWERS = {
    "signed_cookie": {"session_timeout": "600"},
    "encrypted_cookie": {"session_timeout": "60"},
    "redis": {"session_timeout": "2592000"},
    "database": {
        "session_timeout": "3600",
        "project_slug": "shop_whose_package_name_is_forty_chars_x",
        "session_store_url": "sqlite:///var/data/sessions.db",
    },
}
# Seconds of load without a fault: enough to show no error under concurrency. No warm-up:
# the figures it keeps clean are not checked here, and load takes both cores.
QUIET_LOAD_SECONDS = 1


@contextmanager
def serving(command: str, project: Path, port: int, sessions: SessionStore) -> Iterator[str]:
    """Run the README's serve command on ``sessions`` until the block ends; yield the URL."""
    env = clean_environment(**project_env(project, sessions.environment))
    server = start(shlex.split(command), port, cwd=project, env=env)
    try:
        yield f"http://localhost:{port}"
    finally:
        stop(server)


def browse_like_a_person(site: str, screenshot: Path, project: Path, factory: str) -> None:
    """Drive headless Chromium through the counter, the flash form and a reload; for a
    cookie store, then fill a production session to the cookie's cap."""
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
            if factory in COOKIE_FACTORIES:
                assert_chromium_keeps_the_largest_cookie(browser, project, factory)
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


def alternate_between_two_processes(project: Path, factory: str, sessions: SessionStore) -> None:
    """Two waitress processes, one secret and one store: one counter that never goes back."""
    env = production_env(project, factory, sessions.environment)
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


def serve_browse_scale_out_and_load(
    project: Path, command: str, port: int, factory: str, sessions: SessionStore, browse: bool
) -> None:
    """The README's server, restarted (and browsed in Chromium if ``browse``); two
    production processes on one store; then load, with the store's fault (if any) mid-way."""
    with serving(command, project, port, sessions) as site:
        tab = Browser(site)
        assert [count_on(tab, "/"), count_on(tab, "/howdy")] == [1, 2]
    with serving(command, project, port, sessions) as site:
        after_restart = Browser(site)
        after_restart.cookie = tab.cookie
        assert count_on(after_restart) == 3, "the count did not survive a restart"
        if browse:
            ARTIFACTS.mkdir(exist_ok=True)
            screenshot = ARTIFACTS / f"{sessions.case.replace(' ', '-')}.png"
            browse_like_a_person(site, screenshot, project, factory)
    alternate_between_two_processes(project, factory, sessions)

    seconds = MIN_SECONDS if sessions.fault else QUIET_LOAD_SECONDS
    report = load_project(project, factory, 8, seconds, sessions, warm_up_seconds=0)
    assert report.passed, report.line()
    assert report.requests > 100
    if sessions.fault:
        assert report.unavailable > 0, f"the outage was not noticed: {report.line()}"


def modules_a_slug_could_shadow(project: Path) -> set[str]:
    """The top-level modules installed in the project's environment that an accepted slug
    could name (a-z first), the project's own package aside: the hook must refuse them."""
    listed = subprocess.run(
        [project_python(project), "-c", LIST_MODULES], capture_output=True, text=True, check=True
    )
    names = set(listed.stdout.split()) - {project.name}
    return {name for name in names if pre_gen.SLUG_PATTERN.fullmatch(name)}


@pytest.mark.slow
@pytest.mark.parametrize("factory", FACTORIES)
def test_readme_install_test_serve_browse_scale_out_and_load(cookies, factory: str) -> None:
    port = free_port()
    answers = {
        **AWKWARD_ANSWERS,
        **NON_DEFAULT_ANSWERS[factory],
        "session_factory": factory,
        "http_port": str(port),
    }
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    assert readme_command_blocks(project) == [PIP_COMMANDS, UV_COMMANDS]
    commands = INSTALLED_WITH[factory]
    for command in commands[:-1]:  # install, run the project's own tests
        run_readme_command(command, project)
    assert modules_a_slug_could_shadow(project) <= pre_gen.TAKEN_NAMES

    stores = SERVED_ON.get(factory, ("server",))
    for store in stores:
        with session_store(factory, store) as sessions:
            # Chromium once a project (it takes seconds): on its last store, PostgreSQL for SQL.
            browse = store == stores[-1]
            serve_browse_scale_out_and_load(project, commands[-1], port, factory, sessions, browse)
        if (factory, store) == ("database", "sqlite"):
            assert served_sqlite_file(project).exists(), "production ignored <SLUG>_DATABASE_URL"

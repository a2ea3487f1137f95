"""What the tests do with a generated project once it is installed: list the modules its
environment holds, and serve it as a person and a crowd would (the README's server
restarted, Chromium through the pages, two production processes on one store, then load
with the store's fault mid-way)."""

from __future__ import annotations

import http.client
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from chromium_cookie_size import ARTIFACTS, assert_chromium_keeps_the_largest_cookie
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import Page, expect, sync_playwright

from bench.harness import (
    production_env,
    project_env,
    project_python,
    running,
    serving_environment,
    waitress_server,
)
from bench.load import (
    COUNTER,
    CSRF_TOKEN,
    MIN_SECONDS,
    Browser,
    SessionStore,
    load_project,
)
from hooks import pre_gen_project as pre_gen

# Lists the top-level modules of everything installed in an environment.
LIST_MODULES = "import importlib.metadata as m; print(*m.packages_distributions(), sep='\\n')"
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
# Seconds of load without a fault: enough to show no error under concurrency, and for
# MIN_LOAD_REQUESTS with paced clients whose pages take up to 0.3 s on a busy machine. No
# warm-up: the figures it keeps clean are not checked here.
QUIET_LOAD_SECONDS = 2
# Load clients, and the fewest requests a load must have made: several rounds of every
# client, even on a machine busy with other tests (hundreds when it is not).
LOAD_CLIENTS, MIN_LOAD_REQUESTS = 8, 40
# Each client's pause after a page: the load here shows no error from clients at once
# and the fault's bounds, not the throughput (the benchmark's and `tasks.py load`'s);
# unpaced, its clients and server took both cores for its seconds (~8 s of CPU for a
# faulted run), beside the other tests.
LOAD_PAUSE_SECONDS = 0.05


@contextmanager
def serving(command: str, project: Path, port: int, sessions: SessionStore) -> Iterator[str]:
    """Run the README's serve command on ``sessions`` until the block ends; yield the URL."""
    env = serving_environment(project, **project_env(project, sessions.environment))
    with running(shlex.split(command), port, cwd=project, env=env):
        yield f"http://localhost:{port}"


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
            if factory in SIGN_IN_WALKS:
                sign_in_then_out_everywhere(browser, site, screenshot, factory)
            if factory in COOKIE_FACTORIES:
                assert_chromium_keeps_the_largest_cookie(browser, project, factory)
        finally:
            browser.close()


# The sign-in walk's page and forms are the same on every store, and each store's listing
# and ending are tested in its project's own suite: Chromium walks one server store and one
# cookie store (seconds of CPU each).
SIGN_IN_WALKS = {"redis", "signed_cookie"}


def signed_in_tab(browser: PlaywrightBrowser, site: str) -> Page:
    """A new browser (its own cookies) signed in as the demo user through the form."""
    page = browser.new_context(viewport={"width": 1000, "height": 720}).new_page()
    page.goto(f"{site}/login")
    page.get_by_label("User name").fill("editor")
    page.get_by_label("Password").fill("editor")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".signed-in")).to_have_text("Signed in as editor")
    return page


def sign_in_then_out_everywhere(
    browser: PlaywrightBrowser, site: str, screenshot: Path, factory: str
) -> None:
    """Sign in on two browsers, list "Your sessions" (screenshot), end the other one
    from there, then sign out everywhere; a cookie store lists only its own session."""
    laptop, phone = signed_in_tab(browser, site), signed_in_tab(browser, site)
    laptop.get_by_role("link", name="Your sessions").click()
    rows = laptop.locator("table.sessions tbody tr")
    expect(rows).to_have_count(1 if factory in COOKIE_FACTORIES else 2)
    expect(laptop.locator("tr.current")).to_contain_text("This session")
    laptop.screenshot(path=str(screenshot.with_name(f"sessions-{screenshot.name}")))
    if factory in COOKIE_FACTORIES:
        laptop.get_by_role("button", name="Sign out", exact=True).click()
        expect(laptop.get_by_role("link", name="Sign in")).to_be_visible()
        return
    laptop.get_by_role("button", name="End this session").click()
    expect(rows).to_have_count(1)
    phone.reload()
    expect(phone.get_by_role("link", name="Sign in")).to_be_visible()
    phone = signed_in_tab(browser, site)
    laptop.get_by_role("button", name="Sign out everywhere", exact=True).click()
    expect(laptop.get_by_role("link", name="Sign in")).to_be_visible()
    phone.reload()
    expect(phone.get_by_role("link", name="Sign in")).to_be_visible()


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
    project: Path,
    command: str,
    port: int,
    factory: str,
    sessions: SessionStore,
    browse: bool = True,
) -> None:
    """The README's server, restarted (and browsed in Chromium if ``browse``: seconds of
    CPU, once a project is enough); two production processes on one store; then load, with
    the store's fault (if any) mid-way."""
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
    report = load_project(
        project,
        factory,
        LOAD_CLIENTS,
        seconds,
        sessions,
        warm_up_seconds=0,
        pause=LOAD_PAUSE_SECONDS,
    )
    assert report.passed, report.line()
    assert report.requests >= MIN_LOAD_REQUESTS, report.line()
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

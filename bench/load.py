"""Load and fault test: each factory's app served by waitress, many concurrent clients.

    python3 tasks.py load [--clients 16] [--seconds 10] [--factory redis ...]

Each client is one browser on a keep-alive loopback connection with its own session
cookie: it loads counter pages, posts the flash form with its CSRF token and follows the
redirect. Every request is bounded (10 s timeout) and so is the run. For Redis, the
server is stopped a quarter of the way in and started again two seconds later: requests in
between must get 503, and every request after it must succeed again. Any other failure,
or a 500, counts as an error; the run fails unless there are none.
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    FACTORIES,
    RedisServer,
    install,
    production_env,
    redis_server,
    render,
    rss_kib,
    waitress_server,
)

CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
OUTAGE_SECONDS = 2.0
RECOVERY_GRACE_SECONDS = 1.0
# Enough for load before the outage, the outage, and load after the grace period.
MIN_SECONDS = 6
# The session cookie's names: "__Host-session" when production.ini makes it Secure.
SESSION_COOKIE_NAMES = ("session", "__Host-session")


class Browser:
    """One client: a keep-alive connection and the session cookie the server gave it."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self.cookie = ""

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Send one request and keep the session cookie; return status and body."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            raise
        cookie = response.getheader("Set-Cookie")
        if cookie and cookie.partition("=")[0] in SESSION_COOKIE_NAMES:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, text


@dataclass
class Tally:
    """Every request's outcome, with the time it finished."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        """Record ``outcome``: 'ok', '503' or an error description."""
        with self.lock:
            self.outcomes.append((time.monotonic(), outcome))

    def counts(self, start: float = 0.0, end: float = float("inf")) -> Counter:
        """Outcomes finished between ``start`` and ``end``."""
        return Counter(outcome for when, outcome in self.outcomes if start <= when < end)


def outcome_of(status: int) -> str:
    """'ok' for success and redirects, '503' for the outage page, else the status."""
    if status in (200, 303):
        return "ok"
    return "503" if status == 503 else f"HTTP {status}"


def browse(base_url: str, tally: Tally, deadline: float) -> None:
    """Be one browser until ``deadline``: counter pages, and now and then a flash form."""
    browser = Browser(base_url)
    visit = 0
    while time.monotonic() < deadline:
        visit += 1
        try:
            status, page = browser.request("GET", "/" if visit % 2 else "/howdy")
            tally.add(outcome_of(status))
            token = CSRF_TOKEN.search(page)
            if visit % 5 == 0 and token:
                form = {"csrf_token": token.group(1), "category": "info", "message": f"#{visit}"}
                status, _ = browser.request("POST", "/flash", form)
                tally.add(outcome_of(status))
        except (OSError, http.client.HTTPException) as error:
            tally.add(f"{type(error).__name__}")
            time.sleep(0.05)


def run_load(base_url: str, clients: int, seconds: float) -> Tally:
    """Run ``clients`` browsers for ``seconds`` and return what happened."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=browse, args=(base_url, tally, deadline), daemon=True)
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return tally


def interrupt(redis: RedisServer, after: float, record: dict[str, float]) -> threading.Thread:
    """Stop Redis ``after`` seconds from now and start it again OUTAGE_SECONDS later."""

    def outage() -> None:
        time.sleep(after)
        record["stopped"] = time.monotonic()
        redis.stop()
        time.sleep(OUTAGE_SECONDS)
        redis.start()
        record["restarted"] = time.monotonic()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


@dataclass
class Report:
    """What one factory's load run showed."""

    factory: str
    requests: int
    seconds: float
    unavailable: int
    errors: Counter
    rss_start_kib: int
    rss_end_kib: int
    recovered: bool | None = None

    @property
    def passed(self) -> bool:
        """No errors, and recovered after the Redis outage when there was one."""
        return not self.errors and self.recovered is not False

    def line(self) -> str:
        """One line of the result table."""
        recovery = {None: "-", True: "yes", False: "NO"}[self.recovered]
        errors = sum(self.errors.values())
        detail = f" {dict(self.errors)}" if errors else ""
        return (
            f"{self.factory:<17} {self.requests:>8} {self.requests / self.seconds:>8.0f} "
            f"{self.unavailable:>6} {errors:>6} {self.rss_start_kib / 1024:>8.1f} "
            f"{(self.rss_end_kib - self.rss_start_kib) / 1024:>+8.1f} {recovery:>9}{detail}"
        )


HEADER = (
    f"{'factory':<17} {'requests':>8} {'req/s':>8} {'503s':>6} {'errors':>6} "
    f"{'RSS MiB':>8} {'growth':>8} {'recovered':>9}"
)


def load_factory(factory: str, workdir: Path, clients: int, seconds: float) -> Report:
    """Render and install ``factory``'s project, then put it under load."""
    project = render(workdir / factory, session_factory=factory, project_slug="loadapp")
    install(project)
    return load_project(project, factory, clients, seconds)


def load_project(project: Path, factory: str, clients: int, seconds: float) -> Report:
    """Serve an installed project with production.ini and put it under load."""
    with redis_server() as redis:
        redis_url = redis.url if factory == "redis" else ""
        env = production_env(project, factory, redis_url)
        with waitress_server(project, "production.ini", env, threads=8) as (url, server):
            run_load(url, clients, 1.0)  # warm up: imports, template compilation, pools
            rss_start = rss_kib(server.pid)
            record: dict[str, float] = {}
            outage = interrupt(redis, seconds / 4, record) if redis_url else None
            started = time.monotonic()
            tally = run_load(url, clients, seconds)
            elapsed = time.monotonic() - started
            rss_end = rss_kib(server.pid)
            if outage is not None:
                outage.join()
    counts = tally.counts()
    errors = Counter({k: v for k, v in counts.items() if k not in ("ok", "503")})
    recovered = None
    # A 503 is an error unless Redis was down: none without Redis, none before the outage.
    unexpected_503s = counts["503"]
    if redis_url:
        settled = record["restarted"] + RECOVERY_GRACE_SECONDS
        after = tally.counts(start=settled)
        recovered = after["ok"] > 0 and set(after) == {"ok"}
        unexpected_503s = tally.counts(end=record["stopped"])["503"]
    errors += Counter({"503": unexpected_503s})  # adding drops a zero count
    return Report(
        factory,
        requests=sum(counts.values()),
        seconds=elapsed,
        unavailable=counts["503"],
        errors=errors,
        rss_start_kib=rss_start,
        rss_end_kib=rss_end,
        recovered=recovered,
    )


def main(argv: list[str] | None = None) -> int:
    """Load every chosen factory and print a table; non-zero when any run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--factory", action="append", choices=FACTORIES)
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256 or not MIN_SECONDS <= args.seconds <= 600:
        parser.error(f"--clients must be 1 to 256 and --seconds {MIN_SECONDS} to 600")
    reports = []
    with tempfile.TemporaryDirectory(prefix="load-") as workdir:
        print(HEADER, flush=True)
        for factory in args.factory or FACTORIES:
            report = load_factory(factory, Path(workdir), args.clients, args.seconds)
            print(report.line(), flush=True)
            reports.append(report)
    failed = [report.factory for report in reports if not report.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

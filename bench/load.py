"""Load and fault test: each factory's app served by waitress, many concurrent clients.

    python3 tasks.py load [--clients 16] [--seconds 10] [--factory redis ...]
                          [--redis-topology sentinel ...] [--database postgresql ...]

Each client is one browser on a keep-alive loopback connection with its own session
cookie: half of them sign in first (the demo user, through the form); each loads counter
pages, posts the flash form with its CSRF token and follows the redirect. Every request
is bounded (10 s timeout) and so is the run. The server-side stores run on each of their
deployments (STORES), each with a fault a quarter of the way in: one Redis server stopped
and started again two seconds later; Sentinel's primary killed (SIGKILL) while a replica
takes over; the PostgreSQL server stopped (pg_ctl -m fast) and started again two seconds
later. An SQLite file has no fault. Requests in between must get 503, every request after
the last 503 must succeed again, and every browser must keep its session with its count
(its counter never goes back, and a signed-in one stays signed in), but on a Redis server
without persistence. Any other failure, or a 500, counts as an error; the run fails
unless there are none.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    DATABASES,
    FACTORIES,
    RedisDeployment,
    install,
    production_env,
    redis_deployment,
    render,
    rss_kib,
    waitress_server,
    with_demo_users,
)
from bench.postgres import PostgresServer, postgres_server

CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
# The layout's mark of a signed-in browser, and the demo user the clients sign in as.
SIGNED_IN = "Signed in as <strong>"
DEMO_USER = {"login": "editor", "password": "editor"}
COUNTER = re.compile(r'<strong id="counter">(\d+)</strong>')
# The sign-in form's message when it refused (a wrong password, say).
ALERT = re.compile(r'role="alert">([^<]*)<')
# The deployments of each server-side factory's sessions (session_store has their
# faults); the first is the default.
STORES = {"redis": ("server", "sentinel"), "database": DATABASES}
# The deployments whose fault loses the sessions: a Redis server without persistence.
LOSES_SESSIONS = {("redis", "server")}
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
    """Every request's outcome, with the time it finished, and the sessions lost."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)
    sessions_lost: int = 0
    sign_in_failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        """Record ``outcome``: 'ok', '503' or an error description."""
        with self.lock:
            self.outcomes.append((time.monotonic(), outcome))

    def fail_sign_in(self, why: str) -> None:
        """Record a browser that could not sign in, and why (``sign_in``)."""
        with self.lock:
            self.outcomes.append((time.monotonic(), "sign-in failed"))
            self.sign_in_failures.append(why)

    def lose_session(self) -> None:
        """Record a browser whose counter went back (went_back)."""
        with self.lock:
            self.sessions_lost += 1

    def counts(self, start: float = 0.0, end: float = float("inf")) -> Counter:
        """Outcomes finished between ``start`` and ``end``."""
        return Counter(outcome for when, outcome in self.outcomes if start <= when < end)

    def times_of(self, outcome: str) -> list[float]:
        """When requests with ``outcome`` finished."""
        return [when for when, seen in self.outcomes if seen == outcome]


def outcome_of(status: int) -> str:
    """'ok' for success and redirects, '503' for the outage page, else the status."""
    if status in (200, 303):
        return "ok"
    return "503" if status == 503 else f"HTTP {status}"


def went_back(count: int, last_count: int) -> bool:
    """Whether a browser's counter failed to move on from ``last_count``: its session was
    lost (the count starts again from 1) or a count it was shown was (a write lost)."""
    return last_count > 0 and count <= last_count


def sign_in(browser: Browser, tally: Tally) -> str:
    """Sign in as the demo user, as a person does: the form, then its POST. "" when the
    sign-in page redirected (a 303: signed in), else what came instead (``failure``)."""
    status, page = browser.request("GET", "/login")
    tally.add(outcome_of(status))
    token = CSRF_TOKEN.search(page)
    if not token:
        return failure("GET /login", status, page)
    form = {**DEMO_USER, "csrf_token": token.group(1)}
    status, page = browser.request("POST", "/login", form)
    tally.add(outcome_of(status))
    return "" if status == 303 else failure("POST /login", status, page)


def failure(request: str, status: int, page: str) -> str:
    """A failed sign-in, for the report: the request, its status and the page's alert (or
    its start), so that a failure seen once in CI says what the app answered."""
    alert = ALERT.search(page)
    shown = alert.group(1) if alert else " ".join(page.split())[:200]
    return f"{request} {status}: {shown}"


def browse(
    base_url: str,
    tally: Tally,
    seconds: float,
    signs_in: bool,
    ready: threading.Barrier,
    pause: float = 0.0,
) -> None:
    """Be one browser: signed in first if ``signs_in``, and one page in; then, once every
    browser is ``ready``, counter pages for ``seconds``, ``pause`` seconds after each, and
    now and then a flash form. A browser that sees its count go back, or itself signed
    out, has lost its session.

    The clock starts once every browser has its first page: a sign-in's scrypt, and the
    first requests of a server just started, would take much of a short run."""
    browser = Browser(base_url)
    visit, last_count, lost = 0, 0, False
    try:
        refused = sign_in(browser, tally) if signs_in else ""
        status, _ = browser.request("GET", "/")
        tally.add(outcome_of(status))
    except (OSError, http.client.HTTPException) as error:
        tally.add(f"{type(error).__name__}")
        refused = f"{type(error).__name__} {error}"
    if refused:
        tally.fail_sign_in(refused)
    signed_in = signs_in and not refused
    ready.wait()  # every browser gets here, signed in or not
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        visit += 1
        try:
            status, page = browser.request("GET", "/" if visit % 2 else "/howdy")
            tally.add(outcome_of(status))
            count = COUNTER.search(page)
            if count:
                lost = lost or went_back(int(count.group(1)), last_count)
                lost = lost or (signed_in and SIGNED_IN not in page)
                last_count = int(count.group(1))
            token = CSRF_TOKEN.search(page)
            if visit % 5 == 0 and token:
                form = {"csrf_token": token.group(1), "category": "info", "message": f"#{visit}"}
                status, _ = browser.request("POST", "/flash", form)
                tally.add(outcome_of(status))
        except (OSError, http.client.HTTPException) as error:
            tally.add(f"{type(error).__name__}")
            time.sleep(0.05)
        time.sleep(pause)
    if lost:
        tally.lose_session()


def run_load(
    base_url: str,
    clients: int,
    seconds: float,
    signing_in: int = 0,
    at_start: Callable[[], object] | None = None,
    pause: float = 0.0,
) -> Tally:
    """Run ``clients`` browsers for ``seconds`` (``browse``, ``pause`` seconds after each
    page), the first ``signing_in`` of them signed in, and return what happened;
    ``at_start`` is called as the timed run starts (every browser has its first page)."""
    tally, ready = Tally(), threading.Barrier(clients, action=at_start)
    threads = [
        threading.Thread(
            target=browse,
            args=(base_url, tally, seconds, client < signing_in, ready, pause),
            daemon=True,
        )
        for client in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return tally


Fault = Callable[[], object]


@dataclass
class SessionStore:
    """Where a case's sessions live: what the app reads from its environment (names
    without the <SLUG>_ prefix), the fault injected mid-load, whether every session
    must outlive it, and the processes that serve them (the benchmark pins them)."""

    case: str
    environment: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None
    keeps_sessions: bool = True
    pids: list[int] = field(default_factory=list)


def outage(stop: Fault, start: Fault) -> Fault:
    """A fault: ``stop``, and ``start`` again OUTAGE_SECONDS later."""

    def fault() -> None:
        stop()
        time.sleep(OUTAGE_SECONDS)
        start()

    return fault


def redis_fault(redis: RedisDeployment) -> Fault:
    """Stop the one server for OUTAGE_SECONDS, or kill Sentinel's primary (the sentinels
    promote the replica)."""
    primary = redis.nodes[0]
    return primary.kill if redis.topology == "sentinel" else outage(primary.stop, primary.start)


def postgres_fault(postgres: PostgresServer) -> Fault:
    """Stop PostgreSQL as an administrator would (pg_ctl -m fast: connections closed) for
    OUTAGE_SECONDS, then start it again on the same data."""
    return outage(lambda: postgres.stop("fast"), postgres.start)


def case_name(factory: str, store: str) -> str:
    """'redis' or 'redis over sentinel', 'database on sqlite', else the factory."""
    if factory == "database":
        return f"{factory} on {store}"
    return factory if store == STORES.get(factory, (store,))[0] else f"{factory} over {store}"


@contextmanager
def session_store(factory: str, store: str) -> Iterator[SessionStore]:
    """The private servers of ``factory``'s sessions on ``store`` (a Redis topology, a
    database, or "server") for the block: a Redis deployment, a PostgreSQL server, or none
    (the cookie factories; the SQLite file production_env names). Shared by the load test,
    the benchmark and the template's tests."""
    name = case_name(factory, store)
    if factory == "redis":
        with redis_deployment(store) as redis:
            keeps = (factory, store) not in LOSES_SESSIONS
            pids = [server.process.pid for server in [*redis.nodes, *redis.sentinels]]
            yield SessionStore(name, redis.environment, redis_fault(redis), keeps, pids)
    elif factory == "database" and store == "postgresql":
        with postgres_server() as postgres:
            environment = {"DATABASE_URL": postgres.url}
            yield SessionStore(name, environment, postgres_fault(postgres), pids=[postgres.pid])
    else:
        yield SessionStore(name)


def inject_fault(fault: Fault, after: float, record: dict[str, float]) -> threading.Thread:
    """``after`` seconds from now, record the time and run ``fault`` in a thread."""

    def run() -> None:
        time.sleep(after)
        record["fault"] = time.monotonic()
        fault()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@dataclass
class Report:
    """What one load run showed."""

    case: str
    requests: int
    seconds: float
    unavailable: int
    errors: Counter
    rss_start_kib: int
    rss_end_kib: int
    clients: int
    recovered: bool | None = None
    outage_seconds: float | None = None
    sessions_lost: int = 0
    must_keep_sessions: bool = False
    app_bugs: list[str] = field(default_factory=list)
    sign_in_failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No errors, recovered after a fault, and no session lost where none may be."""
        kept = not (self.must_keep_sessions and self.sessions_lost)
        return not (self.errors or self.app_bugs) and self.recovered is not False and kept

    def line(self) -> str:
        """One line of the result table."""
        recovery = {None: "-", True: "yes", False: "NO"}[self.recovered]
        errors = sum(self.errors.values())
        detail = f" {dict(self.errors)}" if errors else ""
        detail += "".join(f"\n    {bug}" for bug in self.app_bugs[:3])
        detail += "".join(f"\n    {why}" for why in sorted(set(self.sign_in_failures))[:3])
        window = "-" if self.outage_seconds is None else f"{self.outage_seconds:.1f}"
        kept = f"{self.clients - self.sessions_lost}/{self.clients}"
        return (
            f"{self.case:<26} {self.requests:>8} {self.requests / self.seconds:>8.0f} "
            f"{self.unavailable:>6} {window:>7} {errors:>6} {kept:>7} "
            f"{self.rss_start_kib / 1024:>8.1f} "
            f"{(self.rss_end_kib - self.rss_start_kib) / 1024:>+8.1f} {recovery:>9}{detail}"
        )


HEADER = (
    f"{'case':<26} {'requests':>8} {'req/s':>8} {'503s':>6} {'503 s':>7} {'errors':>6} "
    f"{'kept':>7} {'RSS MiB':>8} {'growth':>8} {'recovered':>9}"
)


def load_factory(
    factory: str, workdir: Path, clients: int, seconds: float, store: str = "server"
) -> Report:
    """Render and install ``factory``'s project, then put it under load on ``store``."""
    project = render(
        workdir / f"{factory}-{store}", session_factory=factory, project_slug="loadapp"
    )
    install(project)
    with session_store(factory, store) as sessions:
        return load_project(project, factory, clients, seconds, sessions)


def load_project(
    project: Path,
    factory: str,
    clients: int,
    seconds: float,
    store: SessionStore,
    warm_up_seconds: float = 1.0,
    pause: float = 0.0,
) -> Report:
    """Serve an installed project with production.ini (the demo users let in) on ``store``
    and put it under load; inject the store's fault, if any, a quarter of the way in. The
    warm-up (imports, template compilation, pools) keeps them out of the figures; a test
    may skip it, and have each browser ``pause`` after each page (``browse``)."""
    env = production_env(project, factory, store.environment)
    with (
        tempfile.TemporaryFile() as log,
        waitress_server(project, with_demo_users(project), env, 8, log) as (url, server),
    ):
        if warm_up_seconds:
            run_load(url, clients, warm_up_seconds)
        rss_start = rss_kib(server.pid)
        tally, record, elapsed = faulted_load(url, clients, seconds, store.fault, pause)
        rss_end = rss_kib(server.pid)
        log.seek(0)
        bugs = app_bugs(log.read().decode(errors="replace"))
    return report(store, tally, record, elapsed, (rss_start, rss_end), clients, bugs)


def faulted_load(
    url: str, clients: int, seconds: float, fault: Fault | None, pause: float = 0.0
) -> tuple[Tally, dict[str, float], float]:
    """``run_load`` with half the browsers signing in, and ``fault`` (if any) injected a
    quarter of the way into the timed run: after the sign-ins, which a busy machine's
    scrypt can make longer than a quarter. The tally, when the run started and the fault
    came (``record``), and the timed run's seconds."""
    record: dict[str, float] = {}
    injected: list[threading.Thread] = []

    def start() -> None:
        record["start"] = time.monotonic()
        if fault is not None:
            injected.append(inject_fault(fault, seconds / 4, record))

    tally = run_load(url, clients, seconds, signing_in=clients // 2, at_start=start, pause=pause)
    elapsed = time.monotonic() - record["start"]
    for thread in injected:
        thread.join()
    return tally, record, elapsed


def app_bugs(log: str) -> list[str]:
    """The server's log lines that tell of a 500 page: the app's "<Error> raised at
    <file:line> on <request>" (its exception view), or an exception past it (a
    traceback's last line)."""
    bugs, in_traceback = [], False
    for line in log.splitlines():
        if " raised at " in line or (in_traceback and not line.startswith(" ")):
            bugs.append(line)
        in_traceback = line.startswith("Traceback") or (in_traceback and line.startswith(" "))
    return bugs


def report(
    store: SessionStore,
    tally: Tally,
    record: dict[str, float],
    elapsed: float,
    rss: tuple[int, int],
    clients: int,
    bugs: list[str] = (),
) -> Report:
    """Judge a run: 503s only from the fault on, and only ok after the last of them."""
    counts = tally.counts()
    errors = Counter({k: v for k, v in counts.items() if k not in ("ok", "503")})
    recovered = outage = None
    unexpected_503s = counts["503"]
    if "fault" in record:
        unexpected_503s = tally.counts(end=record["fault"])["503"]
        last_503 = max(tally.times_of("503"), default=record["fault"])
        after = tally.counts(start=last_503 + RECOVERY_GRACE_SECONDS)
        recovered = after["ok"] > 0 and set(after) == {"ok"}
        outage = last_503 - record["fault"]
    errors += Counter({"503": unexpected_503s})  # adding drops a zero count
    return Report(
        store.case,
        requests=sum(counts.values()),
        seconds=elapsed,
        unavailable=counts["503"],
        errors=errors,
        rss_start_kib=rss[0],
        rss_end_kib=rss[1],
        clients=clients,
        recovered=recovered,
        outage_seconds=outage,
        sessions_lost=tally.sessions_lost,
        must_keep_sessions=store.keeps_sessions,
        app_bugs=list(bugs),
        sign_in_failures=tally.sign_in_failures,
    )


def main(argv: list[str] | None = None) -> int:
    """Load every chosen factory and print a table; non-zero when any run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--factory", action="append", choices=FACTORIES)
    parser.add_argument(
        "--redis-topology",
        action="append",
        choices=STORES["redis"],
        help="Redis deployments (and their faults) for the Redis factory (default: all)",
    )
    parser.add_argument(
        "--database",
        action="append",
        choices=STORES["database"],
        help="databases for the SQL factory (default: both; PostgreSQL stopped mid-way)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256 or not MIN_SECONDS <= args.seconds <= 600:
        parser.error(f"--clients must be 1 to 256 and --seconds {MIN_SECONDS} to 600")
    chosen = {"redis": args.redis_topology, "database": args.database}
    reports = []
    with tempfile.TemporaryDirectory(prefix="load-") as workdir:
        print(HEADER, flush=True)
        for factory in args.factory or FACTORIES:
            for store in chosen.get(factory) or STORES.get(factory, ("server",)):
                result = load_factory(factory, Path(workdir), args.clients, args.seconds, store)
                print(result.line(), flush=True)
                reports.append(result)
    failed = [result.case for result in reports if not result.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

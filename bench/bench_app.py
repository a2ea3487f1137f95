"""Runs inside a generated project's virtual environment (only its packages are imported).

    python bench_app.py inprocess PACKAGE INI SECONDS [FACTORY]   in-process rates as JSON
                              (with FACTORY: also its stock library's page and its floor)
    python bench_app.py serve PACKAGE INI PORT THREADS [FACTORY]   serve the bench app
    python bench_app.py pages PACKAGE INI FACTORY PATH COUNT      COUNT requests of PATH
                              (after 200 unmeasured ones), to count the instructions a page
                              executes: valgrind --tool=cachegrind --cache-sim=no, COUNT
                              pages against 0, divided by COUNT (BENCHMARKS.md, eleventh session)

The bench app is the generated app plus /limit: the counter page's template rendered with
the same layout, but without touching the session (a fixed CSRF token, no flash, no
counter). Its rate is the limit the session pages are measured against. With server-side
sessions it also has /ping: /limit plus one round trip through the app's own store (Redis:
one EXISTS; SQL: one SELECT 1 on the store's pool), the cost of reaching the store with no
session work at all.

In-process, the same counter page is also measured on the stock library a user would pick
instead of the project's sessions, in an app of its own: /stock. With a FACTORY, the app
also has /floor: /limit plus the least session work a correct counter page does on that
store, with the driver or a socket directly (floor_pages.py).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from types import ModuleType

import floor_pages
import waitress
import webtest
from pyramid.config import Configurator
from pyramid.interfaces import ISessionFactory
from pyramid.paster import get_appsettings
from pyramid.router import Router

FIXED_TOKEN = "0" * 40
# The ceiling of a Redis session: one single-key read (a Cluster sends PING to every node).
PING_KEY = "bench:ping"
# The ceiling of an SQL session: the least statement there is.
SELECT_ONE = "SELECT 1"
# In-process, ROUNDS turns of a tenth of --seconds per page (5 x --seconds in all, as
# the 5 rounds of --seconds were): short turns, so that a page and the one measured just
# before it (the limit; the counter page, for the floor) share the machine's spell, and a
# ratio is the median of many such pairs (benchmark.py's summary).
ROUNDS, TURN = 50, 0.1


def make_app(package: str, ini: str, factory: str = "") -> Router:
    """The generated app from ``ini`` plus the no-session /limit page (and with a
    ``factory``, its /floor page).

    /limit is served by a subclass of the app's own counter view class, through the same
    view machinery (class view, GET predicate, renderer), so that the only difference
    from / is that it never touches the session.
    """
    pages, views = app_modules(package)

    class LimitViews(views.CounterViews):
        """The counter pages with every session access replaced by a constant."""

        def counter_page(self, title: str) -> dict:
            return pages.page(
                self.request,
                title,
                show_flash=False,
                counter=1,
                categories=views.CATEGORIES,
                csrf_token=FIXED_TOKEN,
                **account_corner(pages, None),
            )

    settings = get_appsettings(ini)
    with Configurator(settings=settings) as config:
        add_bench_routes(config)
        config.include(package)
        config.commit()  # the session factory is registered: session_store() can see it
        pages_without_session = {"limit": LimitViews}
        store = session_store(config)
        if store is not None:
            pages_without_session["ping"] = with_round_trip(LimitViews, one_round_trip(store))
        if factory:
            floor = floor_for(package, settings, factory)
            pages_without_session["floor"] = on_the_floor(LimitViews, pages, views, floor)
        for name, view_class in pages_without_session.items():
            add_counter_view(config, package, name, view_class)
    return config.make_wsgi_app()


def account_corner(pages: ModuleType, userid: str | None) -> dict:
    """The layout's account corner as the counter page shows it to ``userid`` (None: a
    visitor's "Sign in" link), so that /limit and /floor render the same page as / does
    (``show_flash=False`` alone leaves the corner out); an older checkout has none."""
    account = getattr(pages, "Account", None)
    return {} if account is None else {"account": account(userid)}


def project_module(package: str, *paths: str) -> ModuleType:
    """The first of the generated ``package``'s modules ``paths`` that exists: where a
    module lives now first, then where an older checkout of the template kept it."""
    for path in paths[:-1]:
        try:
            return importlib.import_module(f"{package}.{path}")
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith(package):
                raise
    return importlib.import_module(f"{package}.{paths[-1]}")


def app_modules(package: str) -> tuple[ModuleType, ModuleType]:
    """The generated app's ``layout`` (``pages`` before) and ``views`` modules."""
    return (
        project_module(package, "layout", "pages"),
        importlib.import_module(f"{package}.views"),
    )


# The bench's own pages. Their routes come before the app's: behind them, a request to
# one paid a failing match of every route of the app first (fifteen, about 5 µs: a few
# per cent of a page) that the counter page at / does not. First, they make the counter
# page pay the few failing matches instead: the comparisons err against the project.
BENCH_PAGES = ("limit", "ping", "floor", "stock")


def add_bench_routes(config: Configurator) -> None:
    """The routes of the bench's pages, before the app's own (their views come later)."""
    for name in BENCH_PAGES:
        config.add_route(name, f"/{name}")


def add_counter_view(config: Configurator, package: str, name: str, view_class: type) -> None:
    """Serve ``view_class`` on the route ``name`` as the app serves its counter page."""
    pages, _ = app_modules(package)
    # What the counter views render (older commits of the template have no such constant).
    template = getattr(pages, "COUNTER_TEMPLATE", f"{package}:templates/counter.pt")
    config.add_view(
        view_class, attr="home", route_name=name, renderer=template, request_method="GET"
    )


def with_round_trip(views: type, round_trip: Callable[[], object]) -> type:
    """The ``views`` class whose counter page also makes ``round_trip`` to the store."""

    class PingViews(views):
        """/limit plus one round trip to the store: the least any session on it costs."""

        def counter_page(self, title: str) -> dict:
            round_trip()
            return super().counter_page(title)

    return PingViews


def on_the_floor(views: type, pages: ModuleType, app_views: ModuleType, floor: object) -> type:
    """The ``views`` class whose counter page does its session work on ``floor``."""

    class FloorViews(views):
        """/limit plus the floor's session work: the count, the CSRF token, who is signed
        in, the cookie."""

        def counter_page(self, title: str) -> dict:
            request = self.request
            header = request.headers.get("Cookie", "")
            count, token, userid, cookie = floor.visit(header)
            if cookie != floor_pages.cookie_in(header):
                set_cookie = f"{floor_pages.COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax"
                request.response.headerlist.append(("Set-Cookie", set_cookie))
            return pages.page(
                request,
                title,
                show_flash=False,
                counter=count,
                categories=app_views.CATEGORIES,
                csrf_token=token,
                **account_corner(pages, userid),
            )

    return FloorViews


def floor_for(package: str, settings: dict, factory: str) -> object:
    """The floor of ``factory``'s store, on the project's own secret, timeouts and store."""
    checked = project_module(package, "sessions.settings", "settings").session_settings(settings)
    timeouts = (checked.timeout, getattr(checked, "absolute_timeout", checked.timeout))
    url = ""
    if factory == "redis":
        url, _ = redis_location(package, settings, checked)
    elif factory == "database":
        database = project_module(package, "sessions.database.settings", "database_settings")
        location = database.read_database_settings(settings, os.environ).url
        url = location.render_as_string(hide_password=False)
    return floor_pages.make_floor(factory, checked.secret_bytes[0], timeouts, url)


def one_round_trip(store: object) -> Callable[[], object]:
    """One round trip to the session ``store`` and no session work: an EXISTS through a
    Redis store's client; a SELECT 1 through an SQL store's own connections (its
    ``ping``: its pool and autocommit mode, as every session statement; older checkouts
    have no ping, and a ``connection()``)."""
    if hasattr(store, "client"):
        return lambda: store.client.exists(PING_KEY)
    if hasattr(store, "ping"):
        return store.ping
    from sqlalchemy import text

    select_one = text(SELECT_ONE)

    def select() -> object:
        with store.connection() as connection:
            return connection.execute(select_one).scalar()

    return select


def stock_session_factory(package: str, settings: dict, factory: str) -> object:
    """The stock library's session factory for ``factory``, configured as the project's
    own from the same settings: JSON, the same timeouts, secret and cookie flags."""
    checked = project_module(package, "sessions.settings", "settings").session_settings(settings)
    timeout, secure = checked.timeout, checked.secure
    if factory == "database":
        return beaker_session_factory(package, settings, checked)
    if factory == "redis":
        from pyramid_session_redis import RedisSessionFactory

        url, socket_timeout = redis_location(package, settings, checked)
        return RedisSessionFactory(
            checked.secrets[0],
            timeout=timeout,
            redis_url=url,
            redis_socket_timeout=socket_timeout,
            cookie_secure=secure,
            cookie_httponly=True,
            cookie_samesite="Lax",
            serialize=lambda data: json.dumps(data).encode(),
            deserialize=json.loads,
        )
    from pyramid.session import JSONSerializer

    options = {
        "timeout": timeout,
        "reissue_time": checked.reissue_time,
        "secure": secure,
        "httponly": True,
        "serializer": JSONSerializer(),
    }
    if factory == "encrypted_cookie":
        from pyramid_nacl_session import EncryptedCookieSessionFactory

        return EncryptedCookieSessionFactory(checked.secret_bytes[0], **options)
    from pyramid.session import SignedCookieSessionFactory

    return SignedCookieSessionFactory(checked.secret_bytes[0], **options)


def beaker_session_factory(package: str, settings: dict, checked: object) -> object:
    """pyramid_beaker on Beaker's SQLAlchemy backend, set up as a user's ini file would
    (``session.type = ext:database``, ``session.url``) on the project's database (its
    URL, the environment included), with the project's idle timeout, secret and cookie
    flags. Beaker makes its own engine (pool 5 + 10, as the project's) and table; it
    pickles the data: its database backend has no JSON. (``ext:sqla``, which takes an
    engine, fails in Beaker 1.14 without a lock_dir: BENCHMARKS.md.)"""
    from pyramid_beaker import session_factory_from_settings
    from sqlalchemy import Engine, event

    database = project_module(package, "sessions.database.settings", "database_settings")
    url = database.read_database_settings(settings, os.environ).url
    if url.get_backend_name() == "sqlite":
        event.listen(Engine, "connect", sync_as_the_project)
    options = {
        "session.type": "ext:database",
        "session.url": url.render_as_string(hide_password=False),
        "session.secret": checked.secrets[0],
        "session.timeout": str(checked.timeout),
        "session.secure": str(checked.secure),
        "session.httponly": "true",
        "session.samesite": "Lax",
    }
    return session_factory_from_settings(options)


def sync_as_the_project(connection: object, _record: object) -> None:
    """Every SQLite connection syncs as the project's own do (the file is in WAL mode, and
    synchronous=NORMAL): Beaker's default, FULL, would add an fsync to every commit, about
    150 µs here, and the stock page would time the disk more than the library."""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("PRAGMA synchronous=NORMAL")


def make_stock_app(package: str, ini: str, factory: str) -> Router:
    """The generated app on the stock session factory, its counter page at /stock.

    The page is the same view class; it counts as a user of the stock library would, in
    the session dict (the stock factories have no atomic counter).
    """
    _, views = app_modules(package)

    class StockViews(views.CounterViews):
        """The counter pages, counting in the stock session."""

        @property
        def counter(self) -> int:
            session = self.request.session
            session["counter"] = count = session.get("counter", 0) + 1
            return count

    settings = get_appsettings(ini)
    with Configurator(settings=settings) as config:
        add_bench_routes(config)
        config.include(package)
        config.set_session_factory(stock_session_factory(package, settings, factory))
        add_counter_view(config, package, "stock", StockViews)
    return config.make_wsgi_app()


def redis_location(package: str, settings: dict, checked: object) -> tuple[str, float]:
    """The Redis URL and socket timeout of the project's own settings (the environment
    included); older templates kept them in the session settings."""
    try:
        module = project_module(package, "sessions.redis.settings", "redis_settings")
    except ImportError:
        return checked.redis_url, checked.redis_socket_timeout
    redis = module.read_redis_settings(settings, os.environ)
    return redis.url, redis.socket_timeout


def session_store(holder: Configurator | Router) -> object | None:
    """The store of the app's session factory (Redis or SQL), without the guard that turns
    its errors into SessionStoreUnavailable (older checkouts have none); None for the
    cookie ones."""
    factory = holder.registry.queryUtility(ISessionFactory)
    store = getattr(factory, "store", None)
    return getattr(store, "store", store)


# The demo user every project has (auth.py), as the bench signs in (bench/load.py's
# clients too: this script runs in the project's environment and imports none of bench/).
DEMO_USER = {"login": "editor", "password": "editor"}


def rate(action: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``action`` over ``seconds``."""
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        action()
        calls += 1
    return calls / elapsed


class NoCookieJar:
    """A client cookie jar that keeps nothing: every request names its cookie itself,
    and no time goes into parsing Set-Cookie on the client's side."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep nothing."""

    def add_cookie_header(self, request: object) -> None:
        """Send nothing of its own."""


def request_cookie(response: webtest.TestResponse, previous: str) -> str:
    """The Cookie header a browser would send after ``response``."""
    set_cookie = response.headers.get("Set-Cookie")
    return set_cookie.split(";", 1)[0] if set_cookie else previous


def csrf_token_in(page: str) -> str:
    """The CSRF token of the first form on ``page``."""
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def in_process(package: str, ini: str, seconds: float, factory: str) -> dict:
    """ROUNDS rounds of the limit page, the counter page and the flash round (and the
    others), taking turns of TURN x ``seconds`` each.

    Every request carries its Cookie header explicitly and the client keeps no cookie
    jar, so the server sees exactly one fixed session and only its work is timed.
    """
    client = webtest.TestApp(make_app(package, ini, factory), lint=False, cookiejar=NoCookieJar())

    def send(method: str, path: str, cookie: str, **options) -> webtest.TestResponse:
        return getattr(client, method)(path, headers={"Cookie": cookie}, **options)

    first = send("get", "/", "")
    cookie = request_cookie(first, "")
    token = csrf_token_in(first.text)
    form = {"csrf_token": token, "category": "info", "message": "hello"}

    def flash_round() -> None:
        send("get", "/", request_cookie(send("post", "/flash", cookie, params=form), cookie))

    queued, set_cookie = cookie, first.headers["Set-Cookie"]
    for category in ("info", "success", "warning"):
        posted = send("post", "/flash", queued, params={**form, "category": category})
        queued = request_cookie(posted, queued)
        set_cookie = posted.headers.get("Set-Cookie", set_cookie)
    loads = {
        "limit": lambda: send("get", "/limit", cookie),
        "counter": lambda: send("get", "/", cookie),
    }
    floor_cookie = ""
    if factory:  # right after the counter page: benchmark.py compares the two per round
        floor_cookie = request_cookie(send("get", "/floor", ""), "")
        loads["floor"] = lambda: send("get", "/floor", floor_cookie)
    loads["flash_round"] = flash_round
    if session_store(client.app) is not None:
        loads["ping"] = lambda: send("get", "/ping", cookie)
    if send("get", "/login", "", expect_errors=True).status_int == 200:  # older: no sign-in

        def sign_in() -> str:
            """A visitor's sign-in, as a browser makes it: the form, then its POST; the
            signed-in session's Cookie header."""
            form_page = send("get", "/login", "")
            visitor = request_cookie(form_page, "")
            fields = {"csrf_token": csrf_token_in(form_page.text), **DEMO_USER}
            return request_cookie(send("post", "/login", visitor, params=fields), visitor)

        signed_in = sign_in()
        loads["counter_signed_in"] = lambda: send("get", "/", signed_in)
        loads["sign_in"] = sign_in
    if factory:
        loads["stock"] = stock_page(package, ini, factory)
    check_same_page(loads, "counter", ("limit", "ping", "floor"))
    return {
        "rounds": [
            {name: rate(load, seconds * TURN) for name, load in loads.items()}
            for _ in range(ROUNDS)
        ],
        "set_cookie_bytes": len(set_cookie),
        "cookie": cookie,
        "floor_cookie": floor_cookie,
        "token": token,
    }


# What differs between the counter page and the pages it is measured against: the CSRF
# token and the count (with "time" or "times" after it).
VARYING = re.compile(r'value="[0-9a-f]{40}"|<strong id="counter">\d+</strong>\s*times?')


def check_same_page(
    loads: dict[str, Callable[[], webtest.TestResponse]], page: str, others: tuple[str, ...]
) -> None:
    """Refuse to measure a page against ``others`` that render another page (a layout
    part left out is work the comparison would charge to the sessions). The page is
    shown twice: the first time shows the messages the set-up queued."""
    loads[page]()
    shape = VARYING.sub("", loads[page]().text)
    for other in others:
        if other in loads and VARYING.sub("", loads[other]().text) != shape:
            raise RuntimeError(f"/{other} renders another page than the counter page")


def stock_page(package: str, ini: str, factory: str) -> Callable[[], object]:
    """A load that requests the counter page of the app on the stock session factory."""
    stock = webtest.TestApp(make_stock_app(package, ini, factory), lint=False)
    stock.get("/stock")
    cookie = "; ".join(f"{name}={value}" for name, value in stock.cookies.items())
    stock.cookiejar = NoCookieJar()
    return lambda: stock.get("/stock", headers={"Cookie": cookie})


def replay(package: str, ini: str, factory: str, path: str, count: int) -> None:
    """``count`` requests of the page ``path`` with one session's cookie, after 200 that
    make the session and warm every cache: the same work in every run but for ``count``,
    so that a difference of instruction counts is ``count`` pages' work."""
    client = webtest.TestApp(make_app(package, ini, factory), lint=False, cookiejar=NoCookieJar())
    cookie = request_cookie(client.get(path), "")
    for _ in range(200 + count):
        client.get(path, headers={"Cookie": cookie})


def main(argv: list[str]) -> None:
    """Dispatch ``inprocess``, ``pages`` or ``serve``."""
    command, package, ini = argv[:3]
    if command == "inprocess":
        factory = argv[4] if len(argv) > 4 else ""
        print(json.dumps(in_process(package, ini, float(argv[3]), factory)))
    elif command == "pages":
        replay(package, ini, argv[3], argv[4], int(argv[5]))
    elif command == "serve":
        app = make_app(package, ini, argv[5] if len(argv) > 5 else "")
        waitress.serve(app, listen=f"127.0.0.1:{argv[3]}", threads=int(argv[4]), _quiet=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

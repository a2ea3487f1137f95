"""How long clear-sessions takes on a big sessions table, on SQLite and on PostgreSQL.

    python3 bench/clear_sessions.py [--live 3000000] [--expired 100000] [--database sqlite]

Renders the SQL store's project, installs it as its README says, and runs this file
again inside the project's virtual environment (``measure``: only the project's packages
are imported), once per database: an SQLite file, and a private PostgreSQL server
(bench/postgres.py). It fills the sessions table with ``--live`` live rows, then times,
with the store's own statements and timeouts (2 s):

- a clear-sessions run that finds nothing expired (the hourly cron's usual case), and one
  batch of the statement earlier releases used (``expiry <= now OR created <= now -
  lifetime``, which no index serves), for comparison;
- clearing ``--expired`` expired rows among the live ones: the whole run, its batches
  and the slowest of them;
- ``--all``: ending every one of the live sessions (one statement);

each while another thread counts visits on a live session, whose slowest statement is
reported too (on SQLite a batch holds the write lock). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SLUG = "shop"
TIMEOUT = "2"  # session.database_timeout: the statement and lock timeouts
IDLE, LIFETIME = 1200, 604800
# Rows inserted per statement while filling the table.
FILL_BATCH = 500_000


# Inside the project's environment.


# The database's clock in whole seconds, and a numbered row source of ``size`` rows.
NOW = {
    "sqlite": "CAST(strftime('%s', 'now') AS INTEGER)",
    "postgresql": "floor(extract(epoch from now()))::bigint",
}
NUMBERS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {size})",
    "postgresql": "",
}
RANDOM_ID = {"sqlite": "lower(hex(randomblob(16)))", "postgresql": "md5(random()::text || i)"}
ROWS_FROM = {"sqlite": "FROM n", "postgresql": "FROM generate_series(1, {size}) i"}


def fill(engine: Any, table: str, count: int, expired: bool) -> None:
    """Insert ``count`` rows with random ids: live ones (expiring within the idle timeout,
    created within the absolute one), or ones whose expiry has passed. (Only constants
    of this file go into the SQL text.)"""
    dialect = engine.dialect.name
    now = NOW[dialect]

    def spread(seconds: int) -> str:
        """0 to ``seconds`` - 1, row by row (SQLite's mod() is a float; psycopg reads %)."""
        return f"(i % {seconds})" if dialect == "sqlite" else f"mod(i, {seconds})"

    # Live rows expire between half an idle timeout and one from now: none during the run.
    half = IDLE // 2
    expiry = f"{now} - 1 - {spread(3600)}" if expired else f"{now} + {half} + {spread(half)}"
    created = (
        f"{now} - {IDLE} - {spread(86400)}" if expired else f"{now} - {spread(LIFETIME // 2)}"
    )
    values = f"{RANDOM_ID[dialect]}, '{{}}', 1, {created}, {expiry}"
    statement = " ".join(
        [
            NUMBERS[dialect],
            f"INSERT INTO {table} (id, data, counter, created, expiry)",
            f"SELECT {values} {ROWS_FROM[dialect]}",
        ]
    )
    with engine.begin() as connection:
        for start in range(0, count, FILL_BATCH):
            size = str(min(FILL_BATCH, count - start))
            connection.exec_driver_sql(statement.replace("{size}", size))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"ANALYZE {table}")


@contextmanager
def statement_times(engine: Any) -> Iterator[list[float]]:
    """The seconds of each DELETE the engine runs inside the block."""
    from sqlalchemy import event

    times: list[float] = []

    def before(_connection, _cursor, statement, *_rest) -> None:
        if statement.startswith("DELETE"):
            times.append(-time.perf_counter())

    def after(_connection, _cursor, statement, *_rest) -> None:
        if statement.startswith("DELETE"):
            times[-1] += time.perf_counter()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def count_visit(store: Any, session_id: str, new: bool) -> int | None:
    """Count a visit as the counter page does (before the general counters, the store had
    a ``count`` of its one visit counter)."""
    if hasattr(store, "increment"):
        return store.increment(session_id, "visits", 1, new=new)
    return store.count(session_id, new=new)


@contextmanager
def visitor(store: Any) -> Iterator[list[float]]:
    """Another thread counting visits on a live session inside the block: the seconds of
    each count."""
    session_id = "bench-visitor"
    count_visit(store, session_id, new=True)
    seconds: list[float] = []
    stopping = threading.Event()

    def visit() -> None:
        while not stopping.is_set():
            started = time.perf_counter()
            count_visit(store, session_id, new=False)
            seconds.append(time.perf_counter() - started)
            time.sleep(0.005)

    thread = threading.Thread(target=visit)
    thread.start()
    try:
        yield seconds
    finally:
        stopping.set()
        thread.join()


def timed(run: Callable[[], int], store: Any) -> dict:
    """Run ``run`` (a clear) while a visitor counts: its figures."""
    with visitor(store) as visits, statement_times(store.engine) as batches:
        started = time.perf_counter()
        deleted = run()
        seconds = time.perf_counter() - started
    return {
        "deleted": deleted,
        "seconds": seconds,
        "batches": len(batches),
        "slowest_batch": max(batches, default=0.0),
        "slowest_visit": max(visits, default=0.0),
    }


def earlier_batch_seconds(module: Any, engine: Any) -> float:
    """One batch of the statement earlier releases ran (an OR no index serves), on an
    engine without timeouts: how long it takes."""
    from sqlalchemy import delete, not_, or_, select

    sessions, now = module.sessions, module.database_now(engine.dialect.name)
    dead = or_(sessions.c.expiry <= now, sessions.c.created <= now - module.LIFETIME)
    expired = select(sessions.c.id).where(dead).limit(module.CLEAR_BATCH)
    statement = delete(sessions).where(
        sessions.c.id.in_(expired.scalar_subquery()), not_(module.is_live(now))
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        started = time.perf_counter()
        connection.execute(statement, {"session_id": "", "idle": IDLE, "lifetime": LIFETIME})
        return time.perf_counter() - started


def measure(package: str, url: str, live: int, expired: int) -> dict:
    """Fill the table and time the clears (see the module's docstring)."""
    from sqlalchemy import create_engine

    module = importlib.import_module(f"{package}.sessions.database")
    statements = importlib.import_module(f"{package}.sessions.database.statements")
    table = statements.sessions.name
    settings = {"session.database_url": url, "session.database_timeout": TIMEOUT}
    store = module.make_database_store(settings, {}, IDLE, LIFETIME)
    store.prepare()
    plain = create_engine(store.engine.url)  # no timeouts: for filling, and the earlier batch
    started = time.perf_counter()
    fill(plain, table, live, expired=False)
    results: dict[str, Any] = {"live": live, "fill_seconds": time.perf_counter() - started}
    results["nothing_expired"] = timed(store.clear_expired, store)
    results["earlier_batch_seconds"] = earlier_batch_seconds(statements, plain)
    fill(plain, table, expired, expired=True)
    results["expired"] = timed(store.clear_expired, store)
    results["all"] = timed(store.end_all_sessions, store)
    plain.dispose()
    store.close()
    return results


# The orchestration, with the template's development environment.


def project_results(project: Path, url: str, live: int, expired: int) -> dict:
    """Run ``measure`` with the project's python; its results."""
    python = project / ".venv" / "bin" / "python"
    command = [str(python), __file__, "measure", SLUG, url, str(live), str(expired)]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring on {url} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def report(results: dict[str, dict]) -> str:
    """The figures as a Markdown table, one column per database."""
    rows = [
        ("live rows", lambda r: f"{r['live']:,}"),
        ("filling them (s)", lambda r: f"{r['fill_seconds']:.0f}"),
        ("nothing expired: the run (s)", lambda r: f"{r['nothing_expired']['seconds']:.3f}"),
        ("one batch of the earlier statement (s)", lambda r: f"{r['earlier_batch_seconds']:.2f}"),
        ("clearing expired rows (s)", lambda r: f"{r['expired']['seconds']:.2f}"),
        ("… rows, batches", lambda r: f"{r['expired']['deleted']:,}, {r['expired']['batches']}"),
        ("… slowest batch (s)", lambda r: f"{r['expired']['slowest_batch']:.3f}"),
        ("… slowest visit meanwhile (s)", lambda r: f"{r['expired']['slowest_visit']:.3f}"),
        ("--all: ending every session, one statement (s)", lambda r: f"{r['all']['seconds']:.2f}"),
        ("… rows", lambda r: f"{r['all']['deleted']:,}"),
        ("… slowest visit meanwhile (s)", lambda r: f"{r['all']['slowest_visit']:.3f}"),
    ]
    lines = ["| | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for name, shown in rows:
        lines.append(f"| {name} | " + " | ".join(shown(r) for r in results.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Render and install the project, then measure on each database."""
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--live", type=int, default=3_000_000)
    arguments.add_argument("--expired", type=int, default=100_000)
    arguments.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    options = arguments.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.harness import install, render
    from bench.postgres import postgres_server

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-clear-") as workdir:
        project = render(Path(workdir), session_factory="database", project_slug=SLUG)
        install(project)
        for database in options.database or ["sqlite", "postgresql"]:
            if database == "sqlite":
                url = f"sqlite:///{project / 'bench.sqlite'}"
                results["SQLite"] = project_results(project, url, options.live, options.expired)
            else:
                with postgres_server() as server:
                    figures = project_results(project, server.url, options.live, options.expired)
                    results["PostgreSQL"] = figures
    print(report(results))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        package, url, live, expired = sys.argv[2:6]
        print(json.dumps(measure(package, url, int(live), int(expired))))
    else:
        sys.exit(main())

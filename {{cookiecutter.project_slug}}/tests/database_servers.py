"""The test database from outside the app, and a private PostgreSQL server for the tests:
Debian's postgresql, started and stopped by PID.

Written here rather than taken from pytest-postgresql: this is one class over initdb and
pg_ctl that also stops the server in the middle of a test and starts it again on the same
data (the outage tests), and runs initdb as the postgres user when the tests run as
root, which PostgreSQL requires.

Without PostgreSQL (no server programs, no TEST_DATABASE_URL) its tests are skipped
(conftest.py) and, as coverage.py's plugin (``coverage_init``), this module leaves the
code only they run out of the coverage report: the rest must still be covered in full.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coverage
import psycopg
import pytest
import sqlalchemy

# Nothing from the app up here: coverage.py imports this module (its plugin) before it
# starts measuring, and would count the app's module-level lines as never run.

DATABASE_URL_ENV = "TEST_DATABASE_URL"
# Where Debian and Ubuntu keep the server programs (not on PATH): the newest version wins.
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
SERVER_PROGRAMS = ("initdb", "pg_ctl")
INSTALL_HINT = "install PostgreSQL (apt-get install postgresql) or set TEST_DATABASE_URL"
DATABASE = "sessions"
# What a run without PostgreSQL says once, at the end.
SKIPPED_LINE = (
    "PostgreSQL not found: {count} tests skipped, and the code only they run left out of "
    "coverage. To run them, set {env}=postgresql+psycopg://user@host/dbname (a database "
    "they may empty) or install PostgreSQL (apt-get install postgresql)."
)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as libpq writes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def admin_url(url: str) -> str:
    """The libpq URL of the maintenance database of ``url``'s server."""
    return libpq_url(url).rsplit("/", 1)[0] + "/postgres"


def find_server_program(name: str) -> str | None:
    """The path of initdb or pg_ctl: on PATH, else Debian's newest; None if neither."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"{DEBIAN_BINARIES}/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return versions[-1] if versions else None


def server_program(name: str) -> str:
    """The path of initdb or pg_ctl; the test fails if there is none."""
    found = find_server_program(name)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} not found: {INSTALL_HINT}")
    return found


def postgresql_found() -> bool:
    """Whether the PostgreSQL tests can run: on $TEST_DATABASE_URL, or on a private
    server this machine's programs start."""
    if os.environ.get(DATABASE_URL_ENV):
        return True
    return all(find_server_program(name) for name in SERVER_PROGRAMS)


def coverage_init(registry: Any, options: dict[str, Any]) -> None:
    """coverage.py's hook for this module as its plugin ([tool.coverage.run] plugins in
    pyproject.toml): without PostgreSQL, leave the code only its tests run out of the
    report. With PostgreSQL, every line and branch counts."""
    if not postgresql_found():
        registry.add_configurer(PostgresqlOnlyCode(options))


class PostgresqlOnlyCode(coverage.CoveragePlugin):
    """Adds ``[tool.coverage.database_servers]``'s patterns to coverage.py's exclusions:
    ``lines`` (a block's first line leaves out the block) and ``branches`` (lines whose
    other way only PostgreSQL takes)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.patterns = {
            "report:exclude_lines": list(options.get("lines", [])),
            "report:partial_branches": list(options.get("branches", [])),
        }

    def configure(self, config: Any) -> None:
        """Append the patterns to the settings pyproject.toml gave coverage.py."""
        for option, patterns in self.patterns.items():
            config.set_option(option, [*config.get_option(option), *patterns])


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the postgres user when the tests run as root (PostgreSQL
    refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class StoredSessions:
    """The sessions table as another program sees it, through a connection of its own."""

    def __init__(self, url: str) -> None:
        # Imported here, not at the top: see the note under the imports.
        from {{ cookiecutter.project_slug }}.sessions.database.schema import sessions

        self.table = sessions
        self.engine = sqlalchemy.create_engine(url, pool_size=1)

    def run(self, statement: sqlalchemy.Executable) -> list:
        """The rows of ``statement`` (run in a transaction of its own), if any."""
        with self.engine.begin() as connection:
            result = connection.execute(statement)
            return list(result) if result.returns_rows else []

    def ids(self) -> list[str]:
        """The ids of the stored sessions."""
        return [row.id for row in self.run(sqlalchemy.select(self.table.c.id))]

    def row(self, session_id: str) -> Any:
        """The stored row of ``session_id``."""
        [row] = self.run(sqlalchemy.select(self.table).where(self.table.c.id == session_id))
        return row

    def data(self, session_id: str) -> dict:
        """The session data stored for ``session_id``."""
        return json.loads(self.row(session_id).data)

    def counters(self, session_id: str) -> dict:
        """The session's counters (PostgreSQL's jsonb comes as a dict, SQLite's as text)."""
        counters = self.row(session_id).counters
        return counters if isinstance(counters, dict) else json.loads(counters)

    def counter(self, session_id: str) -> int:
        """The session's visit counter."""
        return self.counters(session_id)["visits"]

    def created(self, session_id: str) -> int:
        """When the session was created (epoch seconds)."""
        return self.row(session_id).created

    def set_data(self, session_id: str, text: str) -> None:
        """Overwrite the session's data, as a bug or another program might."""
        self.set(session_id, "data", text)

    def state(self, session_id: str) -> Any:
        """Everything stored for the session: its row."""
        return self.row(session_id)

    def set(self, session_id: str, column: str, value: Any) -> None:
        """Overwrite one column of a session's row, as a bug or another program might."""
        self.run(
            sqlalchemy.update(self.table)
            .where(self.table.c.id == session_id)
            .values({column: corrupt_value(self.table.c[column], value)})
        )

    def expire(self, session_id: str) -> None:
        """Let the session's idle timeout pass (the row stays until it is cleared)."""
        self.set(session_id, "expiry", 1)

    def age(self, seconds: int) -> None:
        """Make every session older by ``seconds``: the database's clock cannot be moved,
        so the times the rows hold move back instead."""
        columns = self.table.c
        older = {"created": columns.created - seconds, "expiry": columns.expiry - seconds}
        self.run(sqlalchemy.update(self.table).values(older))

    def delete_all(self) -> None:
        """Delete every session, as "forget" in every tab would."""
        self.run(sqlalchemy.delete(self.table))


def corrupt_value(column: sqlalchemy.Column, value: Any) -> Any:
    """``value`` for ``column``: JSON text for the counters (PostgreSQL's jsonb takes
    any JSON), else as it is, whatever the column's type (SQLite keeps it)."""
    if column.name == "counters" and isinstance(value, str):
        return sqlalchemy.cast(sqlalchemy.literal(value), column.type)
    return sqlalchemy.literal(value, literal_type(value))


def literal_type(value: Any) -> sqlalchemy.types.TypeEngine:
    """The SQL type of a corrupt value, whatever the column's: SQLite keeps it as it is."""
    if isinstance(value, bytes):
        return sqlalchemy.LargeBinary()
    if isinstance(value, float):
        return sqlalchemy.Float()
    if isinstance(value, int):
        return sqlalchemy.BigInteger()
    return sqlalchemy.Text()


class PostgresServer:
    """A throw-away PostgreSQL cluster in a temporary directory, on a free loopback port.

    Trust authentication on loopback only; the socket lives in the same directory.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sessions-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.running = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, *command: str) -> None:
        """Run a server program, failing the test with its output if it fails."""
        done = subprocess.run(as_server_user(list(command)), capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def initialize(self) -> PostgresServer:
        """Make the cluster (initdb) and the test database."""
        if os.geteuid() == 0:
            self.directory.chmod(0o755)
            shutil.chown(self.directory, "postgres", "postgres")
        self.run(
            server_program("initdb"),
            *["-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
        )
        self.start()
        with psycopg.connect(admin_url(self.url), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def start(self) -> PostgresServer:
        """Start the server (again) and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self.run(
            server_program("pg_ctl"),
            *["-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"],
        )
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' ends sessions cleanly, 'immediate' as a crash would."""
        if self.running:
            self.run(server_program("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def processes(self) -> list[int]:
        """The PIDs of the server and of the processes it started (one per connection)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped in its tracks (SIGSTOP), as a paused VM would be: the kernel
        still accepts its connections and acknowledges its packets; nothing answers."""
        stopped = self.processes()
        for pid in stopped:
            signal_if_alive(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in stopped:
                signal_if_alive(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def signal_if_alive(pid: int, number: int) -> None:
    """Send the signal ``number`` to ``pid``, unless it ended meanwhile (a connection's
    process exits once its client closed it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)

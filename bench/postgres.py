"""A private, throw-away PostgreSQL server for the benchmark and the template's tests.

    with postgres_server() as server:   # initdb, start, CREATE DATABASE sessions
        server.url                      # postgresql+psycopg://postgres@127.0.0.1:PORT/sessions
        server.stop(mode="immediate")   # a crash; server.start() brings it back, same data

The same logic as a generated project's tests/database_servers.py (which a project
carries by itself, so it is mirrored here, not imported): Debian's or PATH's initdb and
pg_ctl on a free loopback port, trust authentication, every file in one temporary
directory. PostgreSQL refuses to run as root, so as root the server programs run as the
postgres user, who owns that directory (its parents must be traversable; /tmp is). The
database is made with the server's own createdb, so no Python driver is needed here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port

# Where Debian and Ubuntu keep the server programs (not on PATH): the newest version wins.
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "install PostgreSQL (apt-get install postgresql)"
DATABASE = "sessions"
SERVER_USER = "postgres"
SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"


class PostgresError(RuntimeError):
    """A PostgreSQL program failed or is missing; the message holds its output."""


def debian_version(binaries: str) -> int:
    """The major version of a /usr/lib/postgresql/<version>/bin directory (0 if unknown)."""
    version = Path(binaries).parent.name
    return int(version) if version.isdigit() else 0


def server_binaries() -> Path:
    """The directory of initdb, pg_ctl and createdb (one version): initdb's on PATH (a
    link followed), else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob(DEBIAN_BINARIES), key=debian_version)
    if not versions:
        raise PostgresError(f"PostgreSQL's initdb not found: {INSTALL_HINT}")
    return Path(versions[-1])


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the postgres user when this process is root (PostgreSQL
    refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port.

    The first ``start()`` makes the cluster and the ``sessions`` database; later ones
    start the server again on the same data (an outage and its end).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.binaries = server_binaries()
        self.running = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``sessions`` database (psycopg 3)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int:
        """The postmaster's process id (the server forks a process per connection)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def run(self, program: str, *args: str, as_server: bool = True) -> None:
        """Run one of the server's programs; PostgresError with its output if it fails."""
        command = [str(self.binaries / program), *args]
        if as_server:
            command = as_server_user(command)
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise PostgresError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{log}")

    def initialize(self) -> None:
        """Make the cluster (initdb), owned by the postgres user when run as root."""
        if os.geteuid() == 0:
            self.directory.chmod(0o755)
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> PostgresServer:
        """Start the server (the first time: make the cluster and the database) and wait
        until it accepts connections."""
        first = not self.data.exists()
        if first:
            self.initialize()
        options = f"-p {self.port} -k {self.directory} {SERVER_OPTIONS}"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True
        if first:
            address = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
            self.run("createdb", *address, DATABASE, as_server=False)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' ends sessions cleanly, 'immediate' as a crash would."""
        if self.running:
            self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def destroy(self) -> None:
        """Stop the server and delete its files, also when stopping it fails."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started server with its ``sessions`` database for the duration of the block;
    destroyed afterwards, also when starting it failed."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.destroy()


if __name__ == "__main__":  # pragma: no cover
    with postgres_server() as running:
        print(f"{running.url} (pid {running.pid}) works; destroyed on exit")

"""Render, install, serve and load generated projects.

Shared by the template's tests, the load test and the benchmark, so that each of them
runs a generated project the same way: installed as its README says, served by waitress
on a loopback port, with a private Redis server when it needs one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cookiecutter.main import cookiecutter

from hooks import post_gen_project

ROOT = Path(__file__).resolve().parent.parent
# The session factory choices, as cookiecutter.json lists them (the default first).
FACTORIES = tuple(json.loads((ROOT / "cookiecutter.json").read_text())["session_factory"])
# The SQL store's databases: an SQLite file, or a private PostgreSQL server (bench/postgres.py).
DATABASES = ("sqlite", "postgresql")
README_SECTION = "## Install, test, serve\n"
SHELL_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
# The section's two blocks, in order: a venv and pip, then uv.
PIP_COMMANDS = [
    "python3 -m venv .venv",
    '.venv/bin/pip install -e ".[testing]"',
    ".venv/bin/pytest",
    ".venv/bin/pserve development.ini --reload",
]
UV_COMMANDS = ["uv sync", "uv run pytest", "uv run pserve development.ini --reload"]
# Where uv is: requirements-dev.txt installs it beside the python running the tests.
UV_DIRECTORY = Path(sys.executable).parent
SERVE_SCRIPT = """
import sys
import waitress
from pyramid.paster import get_app
ini, port, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
waitress.serve(get_app(ini), listen=f"127.0.0.1:{port}", threads=threads, _quiet=True)
"""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until something accepts connections on ``port``; raise if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {seconds} s")


def start(command: list[str], port: int, **popen_options) -> subprocess.Popen:
    """Start ``command`` in its own process group and wait until it listens on ``port``."""
    popen_options.setdefault("stderr", subprocess.DEVNULL)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, start_new_session=True, **popen_options
    )
    try:
        wait_for_port(port, process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen) -> None:
    """Stop a process and everything it started, by process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


@contextmanager
def running(command: list[str], port: int, **popen_options) -> Iterator[subprocess.Popen]:
    """``command`` started as ``start`` does, listening on ``port`` for the duration of
    the block; stopped afterwards."""
    process = start(command, port, **popen_options)
    try:
        yield process
    finally:
        stop(process)


@dataclass
class RedisServer:
    """A private redis-server on a loopback port: nothing on disk, stopped by PID."""

    port: int = field(default_factory=free_port)
    options: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def command(self) -> list[str]:
        """The redis-server command line."""
        return [
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--loglevel", "warning", *self.options),
        ]

    def start(self) -> RedisServer:
        """Start (or restart) the server on its port."""
        self.process = start(self.command, self.port)
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            stop(self.process)
            self.process = None

    def kill(self) -> None:
        """SIGKILL the server: a crash, with no chance to say goodbye."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class SentinelServer(RedisServer):
    """A Redis Sentinel watching ``primary`` under SENTINEL_SERVICE; its conf in ``workdir``."""

    primary: RedisServer | None = None
    workdir: Path = Path()

    @property
    def command(self) -> list[str]:
        """redis-server in Sentinel mode, with a conf file of its own (Sentinel rewrites it)."""
        assert self.primary is not None
        conf = self.workdir / f"sentinel-{self.port}.conf"
        name = SENTINEL_SERVICE
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nloglevel warning\n"
            f"sentinel monitor {name} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
        )
        return ["redis-server", str(conf), "--sentinel"]


SENTINEL_SERVICE = "sessions"
CLUSTER_BUS_OFFSET = 10000  # a Cluster node also listens on its port + 10000


@dataclass
class RedisDeployment:
    """Private Redis processes of one topology, and the settings that reach them."""

    topology: str
    nodes: list[RedisServer]
    """Data nodes; the first is the primary (Sentinel) or the node the app is given."""
    sentinels: list[SentinelServer] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """The app's environment variables, without the <SLUG>_ prefix."""
        if self.topology == "sentinel":
            addresses = " ".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
            return {"REDIS_SENTINELS": addresses, "REDIS_SENTINEL_SERVICE": SENTINEL_SERVICE}
        cluster = {"REDIS_CLUSTER": "true"} if self.topology == "cluster" else {}
        return {"REDIS_URL": self.nodes[0].url, **cluster}

    def stop(self) -> None:
        """Stop every process."""
        for server in [*self.sentinels, *self.nodes]:
            server.stop()


def redis_cli(*args: str) -> str:
    """Run redis-cli; its output."""
    return subprocess.run(
        ["redis-cli", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def wait_until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    """Poll ``check`` until it holds; TimeoutError naming ``what`` if it never does."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds} s")
        time.sleep(0.1)


def sentinel_group(workdir: Path) -> RedisDeployment:
    """A primary, a replica and three sentinels, not started; files in ``workdir`` (a
    replica writes the copy it receives to disk)."""
    # The first full sync waits repl-diskless-sync-delay (5 s by default) for more replicas.
    primary = RedisServer(options=("--repl-diskless-sync-delay", "0", "--dir", str(workdir)))
    replica_options = ("--replicaof", "127.0.0.1", str(primary.port), "--dir", str(workdir))
    replica = RedisServer(options=replica_options)
    sentinels = [SentinelServer(primary=primary, workdir=workdir) for _ in range(3)]
    return RedisDeployment("sentinel", [primary, replica], sentinels)


def settle_sentinel_group(deployment: RedisDeployment) -> None:
    """Wait until the replica is in sync and every sentinel sees it."""
    replica = deployment.nodes[1]

    def replica_in_sync() -> bool:
        state = redis_cli("-p", str(replica.port), "info", "replication")
        return "master_link_status:up" in state

    def replica_seen(sentinel: SentinelServer) -> bool:
        replicas = redis_cli("-p", str(sentinel.port), "sentinel", "replicas", SENTINEL_SERVICE)
        return str(replica.port) in replicas

    wait_until(replica_in_sync, "the replica to sync with the primary")
    wait_until(lambda: all(map(replica_seen, deployment.sentinels)), "the sentinels to agree")


def port_is_free(port: int) -> bool:
    """Whether nothing holds ``port`` of the loopback interface."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free loopback port whose Cluster bus port (port + 10000) is valid and free too."""
    for _ in range(100):
        port = free_port()
        bus = port + CLUSTER_BUS_OFFSET
        if bus <= 65535 and port_is_free(bus):
            return port
    raise RuntimeError("no free port pair for a Cluster node")


def cluster_node(workdir: Path) -> RedisServer:
    """A Cluster node, not started, that keeps its nodes file in ``workdir``."""
    port = free_cluster_port()
    return RedisServer(
        port=port,
        options=(
            *("--cluster-enabled", "yes", "--cluster-node-timeout", "1000"),
            *("--cluster-config-file", str(workdir / f"nodes-{port}.conf")),
            *("--cluster-require-full-coverage", "no", "--dir", str(workdir)),
        ),
    )


def cluster(workdir: Path, size: int = 3) -> RedisDeployment:
    """``size`` primaries, not started: a node down will cost only its own slots."""
    return RedisDeployment("cluster", [cluster_node(workdir) for _ in range(size)])


def settle_cluster(deployment: RedisDeployment) -> None:
    """Share the 16384 slots among the nodes and wait until every node says ok."""
    addresses = [f"127.0.0.1:{node.port}" for node in deployment.nodes]
    redis_cli("--cluster", "create", *addresses, "--cluster-yes")

    def healthy() -> bool:
        return all(
            "cluster_state:ok" in redis_cli("-p", str(node.port), "cluster", "info")
            for node in deployment.nodes
        )

    wait_until(healthy, "the cluster to be ok")


# Each topology: its processes (not started yet), then what makes them one deployment.
TOPOLOGIES: dict[str, tuple[Callable[[Path], RedisDeployment], Callable[..., None]]] = {
    "server": (lambda workdir: RedisDeployment("server", [RedisServer()]), lambda _: None),
    "sentinel": (sentinel_group, settle_sentinel_group),
    "cluster": (cluster, settle_cluster),
}
REDIS_TOPOLOGIES = tuple(TOPOLOGIES)


@contextmanager
def redis_deployment(topology: str = "server") -> Iterator[RedisDeployment]:
    """A private Redis deployment of ``topology`` for the duration of the block; every
    process it started is stopped afterwards, also when starting it failed."""
    plan, settle = TOPOLOGIES[topology]
    with tempfile.TemporaryDirectory(prefix=f"redis-{topology}-") as workdir:
        deployment = plan(Path(workdir))
        try:
            for server in [*deployment.nodes, *deployment.sentinels]:
                server.start()
            settle(deployment)
            yield deployment
        finally:
            deployment.stop()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private Redis server for the duration of the block."""
    with redis_deployment("server") as deployment:
        yield deployment.nodes[0]


def render(output_dir: Path, template: Path = ROOT, **answers: str) -> Path:
    """Render ``template`` (this one by default) without prompts; return the project."""
    rendered = cookiecutter(
        str(template), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(rendered)


def readme_command_blocks(project: Path) -> list[list[str]]:
    """The command blocks of the project README's "Install, test, serve" section: the
    venv and pip one first, then uv's."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    if README_SECTION not in readme:
        raise ValueError(f"{project}/README.md has no 'Install, test, serve' section")
    section = readme.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    return [block.strip().splitlines() for block in SHELL_BLOCK.findall(section)]


def readme_commands(project: Path) -> list[str]:
    """The commands of the project README's first "Install, test, serve" block (pip's)."""
    return readme_command_blocks(project)[0]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without its virtual environment, uv on its PATH (last:
    a python3 of the system's comes first), plus ``extra``.

    Python writes its bytecode cache there, as on a user's machine, even where this
    process's environment says not to (PYTHONDONTWRITEBYTECODE, as some CI images set):
    each server a test starts would otherwise compile every module it imports again.
    """
    path = f"{os.environ.get('PATH', '/usr/bin:/bin')}:{UV_DIRECTORY}"
    env = {**os.environ, "PATH": path, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def serving_environment(project: Path, **extra: str) -> dict[str, str]:
    """``clean_environment`` for a process that serves ``project``, with Chameleon's cache
    of compiled templates beside it (CHAMELEON_CACHE, as a deployment may set): the first
    such process compiles every page (main() does, before any request), later ones load
    them. Compiling took 0.4 s of CPU at each of the test suite's ~35 server starts."""
    cache = project.parent / f"{project.name}-compiled-templates"
    cache.mkdir(exist_ok=True)
    return clean_environment(CHAMELEON_CACHE=str(cache), **extra)


def run_readme_command(command: str, project: Path, **env: str) -> None:
    """Run one README command in ``project`` (``env`` added to the environment); raise
    with its output when it fails."""
    result = subprocess.run(
        shlex.split(command),
        cwd=project,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-6000:]}{result.stderr}")


def project_python(project: Path) -> Path:
    """The python of the project's .venv (the one its README creates)."""
    return project / ".venv" / "bin" / "python"


def install(project: Path) -> Path:
    """Create the project's .venv and install it, as its README says; return its python."""
    for command in readme_commands(project)[:2]:
        run_readme_command(command, project)
    return project_python(project)


@contextmanager
def waitress_server(
    project: Path,
    ini: str,
    env: dict[str, str],
    threads: int = 4,
    stderr: IO | int = subprocess.DEVNULL,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve the installed project with waitress on a loopback port; yield its URL and
    process. Its log lines (errors and warnings) go to ``stderr``, a file or DEVNULL."""
    port = free_port()
    command = [str(project_python(project)), "-c", SERVE_SCRIPT, ini, str(port), str(threads)]
    env = serving_environment(project, **env)
    with running(command, port, cwd=project, env=env, stderr=stderr) as process:
        yield f"http://127.0.0.1:{port}", process


def served_sqlite_file(project: Path) -> Path:
    """The SQLite file a served SQL-store project keeps its sessions in under production_env:
    not the one its ini files name, so that its existence shows the environment variable won."""
    return project / "served-sessions.sqlite"


def project_env(project: Path, variables: Mapping[str, str]) -> dict[str, str]:
    """``variables`` named as the project reads them: with its <SLUG>_ prefix."""
    return {f"{project.name.upper()}_{name}": value for name, value in variables.items()}


# production.ini with the demo users let in (production.ini keeps them out, as their
# passwords are public): the load test and the benchmark sign clients in as one.
DEMO_USERS_INI = "production-with-demo-users.ini"


def with_demo_users(project: Path) -> str:
    """Write DEMO_USERS_INI into ``project``, next to production.ini; its name."""
    (project / DEMO_USERS_INI).write_text(
        "[app:main]\nuse = config:production.ini\nauth.demo_users = true\n"
    )
    return DEMO_USERS_INI


def production_env(
    project: Path, factory: str, store_environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What production.ini needs from the environment: a fresh secret, for the SQL store
    an SQLite file (served_sqlite_file), and where the store's servers are:
    ``store_environment`` (names without the <SLUG>_ prefix), which wins."""
    secret = post_gen_project.new_secret(factory)
    variables = {"SESSION_SECRET": secret}
    if factory == "database":
        variables["DATABASE_URL"] = f"sqlite:///{served_sqlite_file(project)}"
    return project_env(project, {**variables, **(store_environment or {})})


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module; run bench/load.py or bench/benchmark.py")

"""Render, install, serve and load generated projects.

Shared by the template's tests, the load test and the benchmark, so that each of them
runs a generated project the same way: installed as its README says, served by waitress
on a loopback port, with a private Redis server when it needs one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
# The session factory choices, as cookiecutter.json lists them (the default first).
FACTORIES = tuple(json.loads((ROOT / "cookiecutter.json").read_text())["session_factory"])
README_COMMANDS = re.compile(r"## Install, test, serve\n\n```sh\n(.*?)```", re.DOTALL)
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
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **popen_options,
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


@dataclass
class RedisServer:
    """A private redis-server on a loopback port: nothing on disk, stopped by PID."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart) the server on its port."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = start(command, self.port)
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            stop(self.process)
            self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private Redis server for the duration of the block."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def render(output_dir: Path, template: Path = ROOT, **answers: str) -> Path:
    """Render ``template`` (this one by default) without prompts; return the project."""
    rendered = cookiecutter(
        str(template), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(rendered)


def readme_commands(project: Path) -> list[str]:
    """The commands of the project README's "Install, test, serve" block."""
    match = README_COMMANDS.search((project / "README.md").read_text(encoding="utf-8"))
    if not match:
        raise ValueError(f"{project}/README.md has no 'Install, test, serve' block")
    return match.group(1).strip().splitlines()


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without its virtual environment, plus ``extra``."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    return env


def run_readme_command(command: str, project: Path) -> None:
    """Run one README command in ``project``; raise with its output when it fails."""
    result = subprocess.run(
        shlex.split(command),
        cwd=project,
        env=clean_environment(),
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
    project: Path, ini: str, env: dict[str, str], threads: int = 4
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve the installed project with waitress on a loopback port; yield its URL and process."""
    port = free_port()
    command = [str(project_python(project)), "-c", SERVE_SCRIPT, ini, str(port), str(threads)]
    process = start(command, port, cwd=project, env=clean_environment(**env))
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def load_hook(name: str) -> ModuleType:
    """Import hooks/<name>.py as a module (its Jinja lives only in string literals)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "hooks" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load hooks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def production_env(project: Path, factory: str, redis_url: str = "") -> dict[str, str]:
    """What production.ini needs from the environment: a fresh secret (and the Redis URL)."""
    slug = project.name.upper()
    env = {f"{slug}_SESSION_SECRET": load_hook("post_gen_project").new_secret(factory)}
    if redis_url:
        env[f"{slug}_REDIS_URL"] = redis_url
    return env


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module; run bench/load.py or bench/benchmark.py")

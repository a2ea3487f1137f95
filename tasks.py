#!/usr/bin/env python3
"""The template's five commands, on a machine with nothing but python3.

    python3 tasks.py demo [answer=value ...]      generate demo/<slug> afresh and serve it
                                                  (development.ini: :6543 by default)
    python3 tasks.py test [pytest options ...]    lint and run every test (CI runs exactly this)
    python3 tasks.py load [--clients N ...]       load and fault test of every factory (Redis
                                                  stopped, Sentinel's failover; the SQL store
                                                  on SQLite, and on PostgreSQL stopped)
    python3 tasks.py bench [--suite ...]          measure every factory (BENCHMARKS.md)
    python3 tasks.py pythons [--python PATH ...]  every store's tests on every supported Python

Each creates .dev-venv/ with requirements-dev.txt on first use and keeps it in step. All but
demo first install the Debian packages of the programs they drive when those are missing
(apt-get, as root; otherwise they name the packages).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEV_VENV = ROOT / ".dev-venv"
REQUIREMENTS = ROOT / "requirements-dev.txt"
DEMO_DIR = ROOT / "demo"
LINTED = ["hooks", "tests", "bench", "tasks.py"]
# Programs driven for real (a name on PATH, or a path pattern), and the Debian packages
# that provide them. Redis tests start Sentinel groups and Clusters (redis-cli) and TLS
# servers (openssl); the SQL store's tests start PostgreSQL servers with initdb and pg_ctl,
# which Debian keeps off PATH.
TEST_PROGRAMS = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "openssl": "openssl",
    "chromium": "chromium",
    "/usr/lib/postgresql/*/bin/pg_ctl": "postgresql",
}
BENCH_PROGRAMS = {**TEST_PROGRAMS, "wrk": "wrk"}


def run(command: Sequence[str | Path], cwd: Path = ROOT) -> None:
    """Run ``command``; stop with its exit status when it fails."""
    print("+", " ".join(str(part) for part in command), flush=True)
    status = subprocess.run([str(part) for part in command], cwd=cwd, check=False).returncode
    if status != 0:
        sys.exit(status)


def venv_python(directory: Path) -> Path:
    """The python of the virtual environment at ``directory``, created when missing."""
    python = directory / "bin" / "python"
    if not python.exists():
        venv.create(directory, with_pip=True, clear=True)
    return python


def dev_python() -> Path:
    """The development environment's python, its packages in step with requirements-dev.txt."""
    python = venv_python(DEV_VENV)
    stamp = DEV_VENV / "requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        run([python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS])
        stamp.write_text(digest)
    return python


def found(program: str) -> bool:
    """Whether ``program`` is on PATH or, a path pattern, matches a file."""
    return bool(shutil.which(program) or glob.glob(program))


def ensure_system_packages(programs: dict[str, str]) -> None:
    """Install the Debian packages of missing ``programs`` with apt-get, or name them."""
    missing = sorted({pkg for name, pkg in programs.items() if not found(name)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"missing programs; install the packages {' '.join(missing)} and run again")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        print("+", " ".join(command), flush=True)
        subprocess.run(command, env=env, check=True)


def test(pytest_args: list[str]) -> None:
    """Lint the template, then run every test: three workers on the two cores (conftest's
    lanes say why)."""
    ensure_system_packages(TEST_PROGRAMS)
    python = dev_python()
    run([python, "-m", "ruff", "check", *LINTED])
    run([python, "-m", "ruff", "format", "--check", *LINTED])
    run([python, "-m", "pytest", "-n", "3", "--dist", "loadscope", "--durations=8", *pytest_args])


def demo(answers: list[str]) -> None:
    """Generate demo/<slug> afresh with the default answers (or ``answers``) and serve it."""
    python = dev_python()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    run([python, "-m", "cookiecutter", "--no-input", "--output-dir", DEMO_DIR, ROOT, *answers])
    [project] = DEMO_DIR.iterdir()
    project_python = venv_python(project / ".venv")
    run([project_python, "-m", "pip", "install", "--quiet", "-e", "."], cwd=project)
    print(f"Serving {project} (Ctrl+C stops it)", flush=True)
    run([project / ".venv" / "bin" / "pserve", "development.ini"], cwd=project)


def load(load_args: list[str]) -> None:
    """Serve each factory's project under concurrent load, with a Redis outage mid-way."""
    ensure_system_packages(TEST_PROGRAMS)
    run([dev_python(), "-m", "bench.load", *load_args])


def bench(bench_args: list[str]) -> None:
    """Measure every factory against the no-session limit."""
    ensure_system_packages(BENCH_PROGRAMS)
    run([dev_python(), "-m", "bench.benchmark", *bench_args])


def pythons(pythons_args: list[str]) -> None:
    """Run every store's generated tests on every supported Python found on this machine."""
    ensure_system_packages(TEST_PROGRAMS)
    run([dev_python(), "-m", "bench.pythons", *pythons_args])


def main(argv: list[str]) -> None:
    """Dispatch ``demo``, ``test``, ``load``, ``bench`` or ``pythons``."""
    commands = {"demo": demo, "test": test, "load": load, "bench": bench, "pythons": pythons}
    if not argv or argv[0] not in commands:
        sys.exit(__doc__)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])

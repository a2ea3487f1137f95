"""A project whose answer is SQLite passes a bare `pytest` on a machine without PostgreSQL:
its PostgreSQL tests are skipped, one line says so and how to run them, and the coverage
gate holds for everything but the PostgreSQL-only code. Then it is served on its SQLite
file as every project is (serving.py): its answer's directory does not exist in a fresh
checkout, and the app makes it.

"Without PostgreSQL" for real: the tests run in a mount namespace of their own where an
empty tmpfs hides /usr/lib/postgresql (Debian's server programs; /usr/local/bin's links
into it then lead nowhere), with a PATH that has none. The project is installed and run
with uv, as its README's second block says (`uv sync`, `uv run pytest`): that proves the
dev dependency group too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from serving import serve_browse_scale_out_and_load

from bench.harness import (
    UV_COMMANDS,
    UV_DIRECTORY,
    clean_environment,
    free_port,
    readme_command_blocks,
    render,
    run_readme_command,
    served_sqlite_file,
)
from bench.load import session_store

POSTGRESQL_PROGRAMS = Path("/usr/lib/postgresql")
# Exit codes of the script below when the namespace does not hide PostgreSQL.
MOUNT_FAILED, POSTGRESQL_STILL_THERE = 97, 98
# Run by `unshare -m sh -c`: the mount ends with the namespace, when pytest exits.
WITHOUT_POSTGRESQL = f"""
if [ -d {POSTGRESQL_PROGRAMS} ]; then
    mount -t tmpfs none {POSTGRESQL_PROGRAMS} || exit {MOUNT_FAILED}
fi
if command -v initdb || command -v pg_ctl || ls {POSTGRESQL_PROGRAMS}/*/bin/initdb; then
    exit {POSTGRESQL_STILL_THERE}
fi
exec uv run pytest -p no:cacheprovider
"""
SKIP_LINE = re.compile(
    r"^PostgreSQL not found: (\d+) tests skipped, .*"
    r"set TEST_DATABASE_URL=postgresql\+psycopg://.* or install PostgreSQL "
    r"\(apt-get install postgresql\)\.$",
    re.MULTILINE,
)
# An SQLite file in a directory a fresh checkout does not have: the app must make it.
SQLITE_ANSWER, SQLITE_FILE = "sqlite:///var/data/sessions.db", Path("var/data/sessions.db")


def postgresql_free_environment(project: Path) -> dict[str, str]:
    """The project's environment with no way to PostgreSQL: no TEST_DATABASE_URL, and on
    PATH only uv and the system's own programs."""
    env = clean_environment(PATH=f"{UV_DIRECTORY}:/usr/bin:/bin")
    env.pop("TEST_DATABASE_URL", None)
    return env


def run_tests_without_postgresql(project: Path) -> subprocess.CompletedProcess:
    """The project's bare `pytest`, where PostgreSQL's programs cannot be found."""
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", WITHOUT_POSTGRESQL],
        cwd=project,
        env=postgresql_free_environment(project),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="hiding PostgreSQL takes root and unshare (a mount namespace)",
)
def test_sqlite_project_passes_a_bare_pytest_without_postgresql_and_serves(
    tmp_path: Path,
) -> None:
    port = free_port()
    answers = {"session_timeout": "60", "session_store_url": SQLITE_ANSWER}
    project = render(tmp_path, session_factory="database", http_port=str(port), **answers)
    assert readme_command_blocks(project)[1] == UV_COMMANDS
    run_readme_command(UV_COMMANDS[0], project)

    result = run_tests_without_postgresql(project)
    output = result.stdout + result.stderr

    assert result.returncode != MOUNT_FAILED, f"could not hide PostgreSQL:\n{output}"
    assert result.returncode != POSTGRESQL_STILL_THERE, f"PostgreSQL still found:\n{output}"
    assert result.returncode == 0, output[-6000:]
    [skipped] = SKIP_LINE.findall(result.stdout)  # one line, no more
    assert re.search(rf"\b{skipped} skipped\b", result.stdout), "the line's count is not pytest's"
    assert int(skipped) > 0
    assert "Required test coverage of 100% reached" in result.stdout

    with session_store("database", "sqlite") as sessions:
        serve_browse_scale_out_and_load(project, UV_COMMANDS[-1], port, "database", sessions)
    assert (project / SQLITE_FILE).exists(), "the README's server did not use the answer"
    assert served_sqlite_file(project).exists(), "production ignored <SLUG>_DATABASE_URL"

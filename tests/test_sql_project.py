"""The SQL store's project, installed with the README's uv block: its tests first on a
machine without PostgreSQL and then with it; served on both databases (a second test, so
that the two run in separate lanes of the suite).

Without PostgreSQL, its bare `uv run pytest` passes: the PostgreSQL tests are skipped, one
line says so and how to run them, and the coverage gate holds for everything but the
PostgreSQL-only code. "Without PostgreSQL" for real: the run is in a mount namespace of
its own where an empty tmpfs hides /usr/lib/postgresql (Debian's server programs;
/usr/local/bin's links into it then lead nowhere), with a PATH that has none. Then, with
PostgreSQL, `uv run pytest -m postgresql --cov-append` runs exactly the skipped tests, and
the two runs together reach 100 % coverage (the README says both commands). Each test
runs once: SQLite's without PostgreSQL, PostgreSQL's with it.

The answers are at their edges: the longest slug (the longest table and index names), an
SQLite file in a directory a fresh checkout does not have (the app must make it), served
on it by the README's server; then on a PostgreSQL server given in <SLUG>_DATABASE_URL,
stopped mid-load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import AWKWARD_ANSWERS
from installed_projects import (
    modules_a_slug_could_shadow,
    pre_gen,
    serve_browse_scale_out_and_load,
)

from bench.harness import (
    PIP_COMMANDS,
    UV_COMMANDS,
    UV_DIRECTORY,
    clean_environment,
    free_port,
    project_python,
    readme_command_blocks,
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
# The README's command for the PostgreSQL tests alone, after a run without them.
POSTGRESQL_TESTS_ONLY = "uv run pytest -p no:cacheprovider -m postgresql --cov-append".split()
SKIP_LINE = re.compile(
    r"^PostgreSQL not found: (\d+) tests skipped, .*"
    r"set TEST_DATABASE_URL=postgresql\+psycopg://.* or install PostgreSQL "
    r"\(apt-get install postgresql\)\.$",
    re.MULTILINE,
)
FULL_COVERAGE = "Required test coverage of 100% reached"
SQLITE_FILE = Path("var/data/sessions.db")
ANSWERS = {
    **AWKWARD_ANSWERS,
    "session_factory": "database",
    "session_timeout": "3600",
    "project_slug": "shop_whose_package_name_is_forty_chars_x",
    "session_store_url": f"sqlite:///{SQLITE_FILE}",
}


def postgresql_free_environment() -> dict[str, str]:
    """The project's environment with no way to PostgreSQL: no TEST_DATABASE_URL, and on
    PATH only uv and the system's own programs."""
    env = clean_environment(PATH=f"{UV_DIRECTORY}:/usr/bin:/bin")
    env.pop("TEST_DATABASE_URL", None)
    return env


def passing_tests(command: list[str], project: Path, env: dict[str, str]) -> str:
    """Run the project's tests with ``command``; their output, which must show a pass."""
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != MOUNT_FAILED, f"could not hide PostgreSQL:\n{output}"
    assert result.returncode != POSTGRESQL_STILL_THERE, f"PostgreSQL still found:\n{output}"
    assert result.returncode == 0, output[-6000:]
    assert FULL_COVERAGE in result.stdout, result.stdout[-3000:]
    return result.stdout


def skipped_without_postgresql(project: Path) -> int:
    """The project's bare `uv run pytest` where PostgreSQL's programs cannot be found: how
    many tests it skipped, as its one line says (and as pytest's own count does)."""
    command = ["unshare", "-m", "sh", "-c", WITHOUT_POSTGRESQL]
    output = passing_tests(command, project, postgresql_free_environment())
    [skipped] = SKIP_LINE.findall(output)  # one line, no more
    assert re.search(rf"\b{skipped} skipped\b", output), "the line's count is not pytest's"
    return int(skipped)


def installed_sql_project(cookies, port: int) -> Path:
    """The SQL project, made with ANSWERS and installed with the README's uv block."""
    result = cookies.bake(extra_context={**ANSWERS, "http_port": str(port)})
    assert result.exit_code == 0, result.exception
    project = result.project_path
    assert readme_command_blocks(project) == [PIP_COMMANDS, UV_COMMANDS]
    run_readme_command(UV_COMMANDS[0], project)
    return project


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="hiding PostgreSQL takes root and unshare (a mount namespace)",
)
def test_sql_project_passes_without_postgresql_then_with_it(cookies) -> None:
    project = installed_sql_project(cookies, free_port())
    assert modules_a_slug_could_shadow(project) <= pre_gen.TAKEN_NAMES

    skipped = skipped_without_postgresql(project)
    assert skipped > 0
    output = passing_tests(POSTGRESQL_TESTS_ONLY, project, clean_environment())
    assert re.search(rf"\b{skipped} passed\b", output), "not the tests skipped without it"
    assert not re.search(r"\bskipped\b", output), output[-3000:]
    settings_tests_pass_with_an_absolute_sqlite_file(cookies, project)


def settings_tests_pass_with_an_absolute_sqlite_file(cookies, installed: Path) -> None:
    """The answer's other form, sqlite:////path: the only tests it changes (the settings'
    own) pass in its project too, run with the installed project's environment (the
    answer changes no code)."""
    absolute = f"sqlite:///{installed.parent / 'elsewhere' / 'sessions.sqlite3'}"
    result = cookies.bake(extra_context={**ANSWERS, "session_store_url": absolute})
    assert result.exit_code == 0, result.exception
    command = [str(project_python(installed)), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--no-cov", "tests/test_database_settings.py"]
    ran = subprocess.run(
        command, cwd=result.project_path, env=clean_environment(), capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]


@pytest.mark.slow
def test_sql_project_serves_on_sqlite_and_on_postgresql(cookies) -> None:
    """Served as every project is (installed_projects.py), in a lane of its own: its tests
    run in the test above."""
    port = free_port()
    project = installed_sql_project(cookies, port)
    for store in ("sqlite", "postgresql"):  # Chromium once: on PostgreSQL
        with session_store("database", store) as sessions:
            browse = store == "postgresql"
            command = UV_COMMANDS[-1]
            serve_browse_scale_out_and_load(project, command, port, "database", sessions, browse)
    assert (project / SQLITE_FILE).exists(), "the README's server did not use the answer"
    assert served_sqlite_file(project).exists(), "production ignored <SLUG>_DATABASE_URL"

"""Install each rendered project exactly as its README says, run its tests, serve and load it.

A server-side store's project is served on its store's servers (Redis; PostgreSQL, stopped
mid-load); test_without_postgresql serves an SQL-store project on its SQLite file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import AWKWARD_ANSWERS
from serving import serve_browse_scale_out_and_load

from bench.harness import (
    FACTORIES,
    PIP_COMMANDS,
    UV_COMMANDS,
    free_port,
    load_hook,
    project_python,
    readme_command_blocks,
    run_readme_command,
)
from bench.load import session_store

pre_gen = load_hook("pre_gen_project")
# Lists the top-level modules of everything installed in an environment.
LIST_MODULES = "import importlib.metadata as m; print(*m.packages_distributions(), sep='\\n')"

# Which of the README's blocks installs, tests and serves each project: pip's for one, uv's
# for the others (and test_without_postgresql's). uv installs the same [testing] extra
# (its dev group names it) in seconds where pip takes a quarter of a minute.
INSTALLED_WITH = {
    "signed_cookie": PIP_COMMANDS,
    "encrypted_cookie": UV_COMMANDS,
    "redis": UV_COMMANDS,
    "database": UV_COMMANDS,
}
# Where each factory's project is served: Redis on one server, the SQL store on PostgreSQL
# (which a user gives in <SLUG>_DATABASE_URL, over the SQLite answer; test_without_postgresql
# serves an SQLite project); the cookie factories on nothing ("server").
SERVED_ON = {"redis": "server", "database": "postgresql"}
# Each factory's project is made with answers other than the defaults, at the edges the
# hook accepts, so that its own tests prove they assume none of the defaults: the shortest
# and longest timeouts, others between, and for the SQL store the longest slug (its table
# and index names are the longest; its own tests run on PostgreSQL too) and a PostgreSQL
# answer (test_without_postgresql makes an SQLite one).
NON_DEFAULT_ANSWERS = {
    "signed_cookie": {"session_timeout": "600"},
    "encrypted_cookie": {"session_timeout": "60"},
    "redis": {"session_timeout": "2592000"},
    "database": {
        "session_timeout": "3600",
        "project_slug": "shop_whose_package_name_is_forty_chars_x",
        "session_store_url": "postgresql+psycopg://shop@localhost:5432/shop",
    },
}


def modules_a_slug_could_shadow(project: Path) -> set[str]:
    """The top-level modules installed in the project's environment that an accepted slug
    could name (a-z first), the project's own package aside: the hook must refuse them."""
    listed = subprocess.run(
        [project_python(project), "-c", LIST_MODULES], capture_output=True, text=True, check=True
    )
    names = set(listed.stdout.split()) - {project.name}
    return {name for name in names if pre_gen.SLUG_PATTERN.fullmatch(name)}


@pytest.mark.slow
@pytest.mark.parametrize("factory", FACTORIES)
def test_readme_install_test_serve_browse_scale_out_and_load(cookies, factory: str) -> None:
    port = free_port()
    answers = {
        **AWKWARD_ANSWERS,
        **NON_DEFAULT_ANSWERS[factory],
        "session_factory": factory,
        "http_port": str(port),
    }
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    assert readme_command_blocks(project) == [PIP_COMMANDS, UV_COMMANDS]
    commands = INSTALLED_WITH[factory]
    for command in commands[:-1]:  # install, run the project's own tests
        run_readme_command(command, project)
    assert modules_a_slug_could_shadow(project) <= pre_gen.TAKEN_NAMES

    with session_store(factory, SERVED_ON.get(factory, "server")) as sessions:
        serve_browse_scale_out_and_load(project, commands[-1], port, factory, sessions)

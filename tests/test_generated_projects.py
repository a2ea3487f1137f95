"""Install each rendered project exactly as its README says, run its tests, serve and load it.

The cookie stores' projects and the Redis one here (Redis stopped mid-load); the SQL
store's in test_sql_project, which runs its tests without PostgreSQL and then with it.
"""

from __future__ import annotations

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
    free_port,
    readme_command_blocks,
    run_readme_command,
)
from bench.load import session_store

# Which of the README's blocks installs, tests and serves each project: pip's for one, uv's
# for the others (and the SQL one's). uv installs the same [testing] extra (its dev group
# names it) in seconds where pip takes a quarter of a minute.
INSTALLED_WITH = {
    "signed_cookie": PIP_COMMANDS,
    "encrypted_cookie": UV_COMMANDS,
    "redis": UV_COMMANDS,
}
# Each factory's project is made with answers other than the defaults, at the edges the
# hook accepts, so that its own tests prove they assume none of the defaults: the shortest
# and longest timeouts, another between (the SQL project: test_sql_project).
NON_DEFAULT_ANSWERS = {
    "signed_cookie": {"session_timeout": "600"},
    "encrypted_cookie": {"session_timeout": "60"},
    "redis": {"session_timeout": "2592000"},
}


@pytest.mark.slow
@pytest.mark.parametrize("factory", INSTALLED_WITH)
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

    with session_store(factory, "server") as sessions:  # one Redis server; nothing for cookies
        serve_browse_scale_out_and_load(project, commands[-1], port, factory, sessions)

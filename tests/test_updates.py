"""A generated project follows newer template commits and keeps its user's work.

Each test runs what a user would: the cookiecutter and cruft commands, and the commands of
the generated project's update page (docs/updating.md, linked from its README) exactly as
written, with git, on a project that holds a user's committed edits. The template is a git
snapshot of this working tree, so the page tested is the one being edited.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE_DIR

# cookiecutter and cruft as a user has them: on PATH, next to this Python.
TOOLS = Path(sys.executable).parent
# What the template repository must hold for cookiecutter and cruft: no tests, no venv.
TEMPLATE_PATHS = ("cookiecutter.json", "hooks", "{{cookiecutter.project_slug}}")
PROJECT_TEMPLATE = "{{cookiecutter.project_slug}}"
# Non-default answers, so that an update that forgot them would show.
ANSWERS = {
    "project_name": "Kept Shop",
    "session_factory": "signed_cookie",
    "session_timeout": "900",
    "http_port": "8080",
    "github_actions": False,
}
SLUG = "kept_shop"
SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
# The user's own work, and what a newer template commit changes near it.
USER_ROUTE = '    config.add_route("about", "/about")\n'
USER_VIEW = (
    '\n\n@view_config(route_name="about", renderer="string")\n'
    'def about(request: Request) -> str:\n    """Our own page."""\n    return "ours"\n'
)
USER_TITLE = "# Kept Shop, run by the shop team"
NEWER_ACCENT = "--accent: #0a5c36; /* a newer template commit */"
NEWER_DESCRIPTION = "{{ cookiecutter.description }} (described by a newer template commit)"
USER_ACCENT = "--accent: #ff0000; /* the user's own */"
ACCENT = re.compile(r"--accent: #[0-9a-fA-F]+;")


# ---- running things as a user would ------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user's environment, kept apart from this machine's: config, replay files, git."""
    config = tmp_path / "cookiecutter-config.yaml"
    config.write_text(
        f'replay_dir: "{tmp_path / "replay"}"\ncookiecutters_dir: "{tmp_path / "cookiecutters"}"\n'
    )
    git_config = tmp_path / "gitconfig"
    git_config.write_text("")
    identity = {
        f"GIT_{role}_{field}": value
        for role in ("AUTHOR", "COMMITTER")
        for field, value in (("NAME", "User"), ("EMAIL", "user@example.com"))
    }
    return {
        **os.environ,
        **identity,
        "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}",
        "COOKIECUTTER_CONFIG": str(config),
        "GIT_CONFIG_GLOBAL": str(git_config),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run ``command``; fail the test with its output when it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str, env: dict[str, str]) -> str:
    """Commit every change in ``repo``; return the commit's hash."""
    run(["git", "add", "--all"], repo, env)
    run(["git", "commit", "--quiet", "-m", message], repo, env)
    return run(["git", "rev-parse", "HEAD"], repo, env).strip()


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one ``old`` in ``path`` by ``new``, so that a moved line fails loudly."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path.name} no longer has one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# ---- the template and its newer commit ---------------------------------------------


@pytest.fixture
def template(tmp_path: Path, env: dict[str, str]) -> Path:
    """A git repository of the template as this working tree has it."""
    repo = tmp_path / "template"
    listed = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *TEMPLATE_PATHS],
        TEMPLATE_DIR,
        env,
    )
    for name in filter(None, listed.split("\0")):
        source = TEMPLATE_DIR / name
        if source.is_file():  # a tracked file deleted in the working tree is gone
            target = repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    run(["git", "init", "--quiet"], repo, env)
    commit_all(repo, "the template the project is made from", env)
    return repo


def set_accent(css: Path, accent: str) -> None:
    """Change the stylesheet's one accent colour line."""
    text, count = ACCENT.subn(accent, css.read_text())
    assert count == 1, f"{css.name} no longer has one accent colour"
    css.write_text(text)


def commit_newer_template(template: Path, env: dict[str, str]) -> str:
    """A newer template commit: a CSS line, and a README line near the user's edit."""
    set_accent(template / PROJECT_TEMPLATE / PROJECT_TEMPLATE / "static" / "app.css", NEWER_ACCENT)
    readme = template / PROJECT_TEMPLATE / "README.md"
    edit(readme, "{{ cookiecutter.description }}\n", NEWER_DESCRIPTION + "\n")
    return commit_all(template, "a newer template commit", env)


# ---- the project and its user ------------------------------------------------------


def cookiecutter_project(template: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    """Generate as the template README says: ``cookiecutter --no-input <template> k=v``."""
    words = {True: "yes", False: "no"}
    answers = [f"{key}={words.get(value, value)}" for key, value in ANSWERS.items()]
    run(["cookiecutter", "--no-input", str(template), *answers], tmp_path, env)
    return tmp_path / SLUG


def cruft_project(template: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    """Generate with ``cruft create``, which records the template commit in .cruft.json."""
    context = json.dumps(ANSWERS)
    run(
        ["cruft", "create", "--no-input", "--extra-context", context, str(template)], tmp_path, env
    )
    return tmp_path / SLUG


def commit_users_work(project: Path, env: dict[str, str]) -> None:
    """Put the project in git, then commit a user's route, view and README title."""
    run(["git", "init", "--quiet"], project, env)
    commit_all(project, "generated", env)
    edit(
        project / SLUG / "routes.py",
        '    config.add_route("home", "/")\n',
        '    config.add_route("home", "/")\n' + USER_ROUTE,
    )
    with (project / SLUG / "views.py").open("a", encoding="utf-8") as views:
        views.write(USER_VIEW)
    edit(project / "README.md", "# Kept Shop\n", USER_TITLE + "\n")
    commit_all(project, "the user's own work", env)


def update_block(project: Path, command: str) -> str:
    """The block of the generated project's update page (docs/updating.md, which its
    README links) that runs ``command``."""
    page = (project / "docs" / "updating.md").read_text(encoding="utf-8")
    [block] = [block for block in SH_BLOCK.findall(page) if command in block]
    return block


def run_update_block(project: Path, command: str, env: dict[str, str], **values: str) -> None:
    """Run the update page's block for ``command``, its ``<placeholders>`` filled from
    ``values``."""
    script = update_block(project, command)
    for name, value in values.items():
        script = script.replace(f"<{name}>", shlex.quote(value))
    run(["bash", "-e", "-c", script], project, env)


# ---- what must hold after an update ------------------------------------------------


def kept_state(project: Path) -> dict[str, Any]:
    """What an update must never change: the answers and the development secret (the
    answers file's template commit moves with the update)."""
    return {
        "answers": json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"],
        "secret": (project / ".session_secret").read_bytes(),
    }


def made_from(project: Path) -> str | None:
    """The template commit the project's .cookiecutter.json names (cruft link's)."""
    return json.loads((project / ".cookiecutter.json").read_text())["template"]["commit"]


def assert_answers_are_the_projects(project: Path) -> None:
    """The answers saved, linked and rendered are still the ones the project was made with."""
    saved = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    linked = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    for answers in (saved, linked):
        assert answers["project_slug"] == SLUG
        assert answers["session_factory"] == ANSWERS["session_factory"]
        assert answers["session_timeout"] == ANSWERS["session_timeout"]
    assert "session.timeout = 900\n" in (project / "development.ini").read_text()


def assert_the_update_kept_the_users_work(
    project: Path, before: dict[str, bytes], newer: str, env: dict[str, str]
) -> None:
    """The template change arrived, merged with the user's; nothing else moved."""
    assert NEWER_ACCENT in (project / SLUG / "static" / "app.css").read_text()
    readme = (project / "README.md").read_text()
    assert "(described by a newer template commit)" in readme
    assert readme.startswith(USER_TITLE + "\n")
    assert USER_ROUTE in (project / SLUG / "routes.py").read_text()
    assert USER_VIEW in (project / SLUG / "views.py").read_text()
    assert json.loads((project / ".cruft.json").read_text())["commit"] == newer
    assert made_from(project) == newer
    assert_answers_are_the_projects(project)
    assert kept_state(project) == before
    assert (project / ".session_secret").stat().st_mode & 0o777 == 0o600
    status = run(["git", "status", "--porcelain"], project, env).splitlines()
    assert not [line for line in status if line.startswith("UU")]
    assert list(project.rglob("*.rej")) == []


# ---- the tests ---------------------------------------------------------------------


def test_a_cookiecutter_project_linked_as_documented_takes_a_newer_commit_and_keeps_its_work(
    template: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    project = cookiecutter_project(template, tmp_path, env)
    first = run(["git", "rev-parse", "HEAD"], template, env).strip()
    commit_users_work(project, env)
    before = kept_state(project)
    newer = commit_newer_template(template, env)  # the template moves on before the link

    run_update_block(project, "cruft link", env, template=str(template))  # the commit: recorded
    assert json.loads((project / ".cruft.json").read_text())["commit"] == first
    run_update_block(project, "cruft update", env)

    assert_the_update_kept_the_users_work(project, before, newer, env)


def test_cruft_update_brings_a_newer_template_commit_in(
    template: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    project = cruft_project(template, tmp_path, env)
    assert made_from(project) == run(["git", "rev-parse", "HEAD"], template, env).strip()
    commit_users_work(project, env)
    before = kept_state(project)
    newer = commit_newer_template(template, env)

    run_update_block(project, "cruft update", env)

    assert_the_update_kept_the_users_work(project, before, newer, env)


def test_a_clashing_template_change_leaves_conflict_markers_not_the_templates_line(
    template: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    project = cruft_project(template, tmp_path, env)
    run(["git", "init", "--quiet"], project, env)
    commit_all(project, "generated", env)
    css = project / SLUG / "static" / "app.css"
    set_accent(css, USER_ACCENT)
    commit_all(project, "the user's own colour", env)
    before = kept_state(project)
    commit_newer_template(template, env)

    run_update_block(project, "cruft update", env)

    merged = css.read_text()
    assert f"<<<<<<< ours\n  {USER_ACCENT}\n=======\n  {NEWER_ACCENT}\n>>>>>>> theirs" in merged
    status = run(["git", "status", "--porcelain"], project, env).splitlines()
    assert f"UU {SLUG}/static/app.css" in status
    assert kept_state(project) == before

"""Finish the generated project: keep the chosen factory's files, render secrets, say what next.

Secrets are made here, with ``secrets``, and never pass through cookiecutter's context, so
they cannot leak into the replay file. Jinja appears only inside the string literal below,
so this file stays valid Python for the template's tests (``from hooks import post_gen_project``).
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""
# cookiecutter's context: the answers and cookiecutter.json's private keys (passed as they
# are), which define once what this hook shares with the generated project. Unrendered
# (imported by the template's tests), the hook reads them from cookiecutter.json itself.
TEMPLATE = json.loads(
    ANSWERS_JSON
    if ANSWERS_JSON.startswith('{"')  # rendered: a JSON object, no longer the Jinja expression
    else (Path(__file__).resolve().parent.parent / "cookiecutter.json").read_text(encoding="utf-8")
)

# Bytes of randomness per factory (the generated settings module checks the secret's
# length with the same number): HMAC-SHA512 keys as long as the hash; NaCl keys are 32 bytes.
SECRET_BYTES: dict[str, int] = TEMPLATE["_secret_bytes"]
# The development secret's file: never committed, and kept when the project is re-rendered.
DEVELOPMENT_SECRET_FILE = ".session_secret"  # noqa: S105 - a file name
# The one place that says which files belong to which session storage: groups of files
# and folders, and the groups each session factory keeps.
FILE_GROUPS = {
    "cookie": ("{package}/sessions/cookie.py", "tests/test_cookie_sessions.py"),
    "server": (
        "{package}/sessions/server.py",
        "{package}/sessions/clear_sessions.py",
        "tests/test_server_sessions.py",
        "tests/test_clear_sessions.py",
    ),
    "redis": (
        "{package}/sessions/redis",
        "tests/redis_servers.py",
        "tests/test_redis_sessions.py",
        "tests/test_redis_topologies.py",
        "docs/redis.md",
    ),
    "database": (
        "{package}/sessions/database",
        "tests/database_servers.py",
        "tests/test_database_sessions.py",
        "tests/test_database_settings.py",
        "docs/database.md",
    ),
}
FACTORY_GROUPS = {
    "signed_cookie": ("cookie",),
    "encrypted_cookie": ("cookie",),
    "redis": ("server", "redis"),
    "database": ("server", "database"),
}
GITHUB_ACTIONS_FILES = (".github",)
# The answers, kept in the project under a "cookiecutter" key (they hold no secret): the
# generated README's `cruft link` reads them, so template updates use the project's own.
ANSWERS_FILE = ".cookiecutter.json"
# Ports under this one take root to listen on (Linux), and a proxy in front takes 80 and 443.
PRIVILEGED_PORTS = 1024


def remove(path: Path) -> None:
    """Delete a file or a directory tree."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def keep_chosen_files(project: Path, answers: dict[str, Any]) -> None:
    """Delete what the options do not use."""
    package = answers["project_slug"]
    chosen = FACTORY_GROUPS[answers["session_factory"]]
    kept = {name for group in chosen for name in FILE_GROUPS[group]}
    for files in FILE_GROUPS.values():
        for name in set(files) - kept:
            remove(project / name.format(package=package))
    if not answers["github_actions"]:
        for name in GITHUB_ACTIONS_FILES:
            remove(project / name)


def template_commit(repo_dir: str) -> str | None:
    """The git commit of the template checkout the project is made from, which `cruft link
    --checkout` needs; None when the template is no git checkout of its own (a zip, say)
    or git is missing."""
    program = shutil.which("git")

    def git(*arguments: str) -> str | None:
        if program is None:
            return None
        try:
            done = subprocess.run(  # noqa: S603 - git, on the template's own directory
                [program, "-C", repo_dir, *arguments],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(repo_dir).resolve():
        return None  # not a checkout, or inside another project's repository
    return git("rev-parse", "HEAD")


def save_answers(project: Path, answers: dict[str, Any]) -> None:
    """Keep the answers and the template's commit, so that linking the project to the
    template for updates asks nothing and needs no commit looked up by hand."""
    kept = {key: value for key, value in answers.items() if not key.startswith("_")}
    # cruft renders with a context of its own (create, diff, update): no _repo_dir, and
    # the commit it renders as _commit.
    commit = answers.get("_commit") or template_commit(str(answers.get("_repo_dir", "")))
    template = {"commit": commit}
    text = json.dumps({"cookiecutter": kept, "template": template}, indent=2, ensure_ascii=False)
    (project / ANSWERS_FILE).write_text(text + "\n", encoding="utf-8")


def new_secret(session_factory: str) -> str:
    """A fresh secret for ``session_factory``: random bytes as lowercase hex."""
    return secrets.token_hex(SECRET_BYTES[session_factory])


def write_development_secret(project: Path, session_factory: str) -> None:
    """Give the project a development secret, readable by its owner only.

    A project updated with ``cruft update`` keeps the secret it has.
    """
    path = project / DEVELOPMENT_SECRET_FILE
    if path.exists():
        return
    path.touch(mode=0o600)
    path.write_text(new_secret(session_factory) + "\n", encoding="ascii")


def next_steps(project: Path, answers: dict[str, Any]) -> str:
    """What to type next, in order."""
    redis_note = (
        f"\n  # needs Redis at {answers['session_store_url']} (apt-get install redis-server)"
        if answers["session_factory"] == "redis"
        else ""
    )
    port = int(answers["http_port"])
    port_note = (
        f"\n  # port {port} is below 1024: only root may listen there on Linux, and"
        " production.ini\n  # listens there too, behind a proxy that needs ports 80 and 443"
        " (docs/production.md)"
        if port < PRIVILEGED_PORTS
        else ""
    )
    return (
        f"\nCreated {project}\n\nNext steps:\n"
        f"  cd {shlex.quote(str(project))}\n"
        "  python3 -m venv .venv\n"
        '  .venv/bin/pip install -e ".[testing]"\n'
        "  .venv/bin/pytest\n"
        f"  .venv/bin/pserve development.ini --reload{redis_note}\n"
        f"  # then open http://localhost:{port}/{port_note}\n"
        "\nOr with uv: uv sync, uv run pytest, uv run pserve development.ini --reload\n"
    )


def main() -> int:
    """Finish the project in the current directory."""
    answers = json.loads(ANSWERS_JSON)
    project = Path.cwd()
    keep_chosen_files(project, answers)
    write_development_secret(project, answers["session_factory"])
    save_answers(project, answers)
    if "_commit" not in answers:  # cruft's renders land in a temporary directory first
        print(next_steps(project, answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

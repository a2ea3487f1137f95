"""Render every answer combination and check what comes out, without installing it."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import (
    AWKWARD_ANSWERS,
    DATABASE_URLS,
    SUPPORTED_COMBINATIONS,
    TEMPLATE_DIR,
    combination_id,
    database_kind,
    text_files,
)
from cookiecutter.environment import StrictEnvironment

from bench.harness import FACTORIES
from hooks import post_gen_project as post_gen
from hooks import pre_gen_project as pre_gen

# Jinja openers, or a template variable left as text (".cookiecutter.json" is a file name;
# "${{ ... }}" is a GitHub Actions expression, written through {% raw %}).
UNRENDERED = re.compile(r"(?<!\$){{|{%|{#|\bcookiecutter\.(?!json\b)\w")
COMMON_PACKAGES = {"pyramid", "pyramid_chameleon", "waitress"}
FACTORY_PACKAGES = {
    "signed_cookie": set(),
    "encrypted_cookie": {"pyramid_nacl_session", "pynacl"},
    "redis": {"redis"},
    "database": {"sqlalchemy"},
}
# What the database URL's kind adds to the SQL store's dependencies.
DATABASE_PACKAGES = {"sqlite": set(), "postgresql": {"psycopg"}}
TESTING_PACKAGES = {"pytest", "pytest-cov", "webtest", "hypothesis", "ruff"}
# The store's own testing dependencies: the SQL store's tests run on PostgreSQL too.
FACTORY_TESTING_PACKAGES = {"database": {"psycopg"}}
# Words that only the named factory's code may contain.
FACTORY_WORDS = {
    "signed_cookie": ('salt="pyramid.session."',),
    "encrypted_cookie": ("nacl",),
    "redis": ("redis",),
    "database": ("sqlalchemy", "psycopg"),
}
# The settings only the named server-side store reads.
FACTORY_SETTINGS = {"redis": "session.redis_", "database": "session.database_"}
# The Debian packages the generated workflow installs for the store's tests.
WORKFLOW_PACKAGES = {
    "redis": {"redis-server", "redis-tools", "openssl"},
    "database": {"postgresql"},
}
APT_INSTALL = re.compile(r"apt-get install((?: [^&|;\n]+)+)")
# The console script a server-side store's project installs (expired rows, or --all to end
# every session), and what it runs.
SERVER_SIDE_SCRIPTS = {"shop-clear-sessions": "shop.sessions.clear_sessions:main"}


@pytest.fixture(scope="module", params=SUPPORTED_COMBINATIONS, ids=combination_id)
def rendered(request, cookies_session) -> tuple[dict, Path]:
    """One rendered project per supported combination, with awkward answers; rendered once
    for the module (the tests only read it)."""
    answers = {**request.param, **AWKWARD_ANSWERS}
    result = cookies_session.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    return answers, result.project_path


def read_pyproject(project: Path) -> dict:
    """The project's pyproject.toml, parsed."""
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def names(requirements: list[str]) -> set[str]:
    """Lowercase distribution names of ``requirements``."""
    return {re.split(r"[<>=!~ ;\[]", requirement)[0].lower() for requirement in requirements}


def expected_packages(answers: dict) -> set[str]:
    """The runtime distributions: the common ones, the factory's, and the database driver
    that the SQL store's answered URL needs."""
    factory = answers["session_factory"]
    packages = COMMON_PACKAGES | FACTORY_PACKAGES[factory]
    if factory == "database":
        packages |= DATABASE_PACKAGES[database_kind(answers["session_store_url"])]
    return packages


def ruff(*args: str) -> subprocess.CompletedProcess:
    """Run the ruff this test environment has."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], capture_output=True, text=True, check=False
    )


def test_no_template_syntax_survives(rendered) -> None:
    _, project = rendered
    leftovers = {
        str(path.relative_to(project)): UNRENDERED.findall(path.read_text(encoding="utf-8"))
        for path in text_files(project)
        if UNRENDERED.search(path.read_text(encoding="utf-8"))
    }
    assert leftovers == {}


def test_pyproject_parses_with_the_exact_answers(rendered) -> None:
    answers, project = rendered
    pyproject = read_pyproject(project)
    assert pyproject["project"]["name"] == "shop"
    assert pyproject["project"]["description"] == answers["description"]
    assert pyproject["project"]["authors"] == [
        {"name": answers["author_name"], "email": answers["author_email"]}
    ]
    testing = names(pyproject["project"]["optional-dependencies"]["testing"])
    own = FACTORY_TESTING_PACKAGES.get(answers["session_factory"], set())
    assert testing == TESTING_PACKAGES | own


def accepted_characters(step: int = 37) -> str:
    """Every printable ASCII character and a sample of all others the hook accepts in text."""
    accepts = pre_gen.check_text("description")
    candidates = [*range(0x21, 0x7F), *range(0xA0, 0x110000, step)]
    return "".join(chr(code) for code in candidates if accepts(chr(code)) is None)


def chunks(text: str, size: int) -> list[str]:
    """``text`` cut into answers at most ``size`` characters long."""
    return [text[start : start + size] for start in range(0, len(text), size)]


def render_pyproject(**answers: str) -> dict:
    """pyproject.toml rendered as cookiecutter renders it, then parsed as TOML."""
    template = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text()
    context = {"project_slug": "shop", "author_email": "you@example.com", **answers}
    context["session_factory"] = "signed_cookie"
    environment = StrictEnvironment(keep_trailing_newline=True)
    return tomllib.loads(environment.from_string(template).render(cookiecutter=context))


# Where pyproject.toml keeps each free-text answer.
PYPROJECT_TEXT = {
    "description": lambda project: project["description"],
    "author_name": lambda project: project["authors"][0]["name"],
}


@pytest.mark.parametrize("field", PYPROJECT_TEXT)
def test_every_accepted_character_reads_back_from_pyproject(field: str) -> None:
    for answer in chunks(accepted_characters(), pre_gen.MAX_TEXT_LENGTH[field]):
        assert pre_gen.check_text(field)(answer) is None
        pyproject = render_pyproject(**{"description": "d", "author_name": "a", field: answer})
        assert PYPROJECT_TEXT[field](pyproject["project"]) == answer


def test_only_the_chosen_factory_is_installed(rendered) -> None:
    answers, project = rendered
    assert names(read_pyproject(project)["project"]["dependencies"]) == expected_packages(answers)


def test_only_the_server_side_stores_install_the_clear_sessions_command(rendered) -> None:
    answers, project = rendered
    scripts = read_pyproject(project)["project"].get("scripts", {})
    server_side = answers["session_factory"] in ("redis", "database")
    assert scripts == (SERVER_SIDE_SCRIPTS if server_side else {})


@pytest.mark.parametrize("factory", ["signed_cookie", "encrypted_cookie"])
def test_a_database_answer_does_not_reach_a_cookie_store(bake, factory: str) -> None:
    # A cookie store refuses any @ in the URL it ignores, even a user name alone.
    url = DATABASE_URLS["postgresql"].replace("app@", "")
    result = bake(session_factory=factory, session_store_url=url)
    assert result.exit_code == 0, result.exception
    pyproject = read_pyproject(result.project_path)
    installed = names(pyproject["project"]["dependencies"])
    testing = names(pyproject["project"]["optional-dependencies"]["testing"])
    assert not {"sqlalchemy", "psycopg"} & (installed | testing)
    assert "db.example" not in (result.project_path / "production.ini").read_text()


def group_files(groups: tuple[str, ...]) -> set[str]:
    """The files and folders of post_gen's ``groups``, as the project "shop" names them."""
    files = post_gen.FILE_GROUPS
    return {name.format(package="shop") for group in groups for name in files[group]}


def test_only_the_chosen_factory_keeps_its_files(rendered) -> None:
    answers, project = rendered
    kept = group_files(post_gen.FACTORY_GROUPS[answers["session_factory"]])
    every = group_files(tuple(post_gen.FILE_GROUPS))
    assert {name for name in every if (project / name).exists()} == kept
    store_package = {"redis": "shop/sessions/redis", "database": "shop/sessions/database"}
    for factory, package in store_package.items():
        assert (package in kept) == (answers["session_factory"] == factory)


def test_only_the_chosen_factory_has_code(rendered) -> None:
    answers, project = rendered
    code = "\n".join(path.read_text() for path in sorted(project.rglob("*.py")))
    for factory, words in FACTORY_WORDS.items():
        for word in words:
            assert (word in code) == (factory == answers["session_factory"]), (factory, word)
    kinds = [path.name for path in (project / "shop" / "sessions").glob("*.py")]
    assert len({"cookie.py", "server.py"} & set(kinds)) == 1, kinds


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_ini_files_parse(rendered, ini: str) -> None:
    answers, project = rendered
    parser = configparser.ConfigParser(defaults={"here": str(project), "__file__": ini})
    parser.read(project / ini, encoding="utf-8")
    app = dict(parser.items("app:main"))
    assert app["use"] == "egg:shop"
    assert app["session.timeout"] == "1200"
    for factory, prefix in FACTORY_SETTINGS.items():
        settings = [name for name in app if name.startswith(prefix)]
        assert bool(settings) == (answers["session_factory"] == factory), settings
    assert app.get("session.database_url") == expected_database_url(answers, project)
    assert parser.get("server:main", "listen").endswith(":6543")


def expected_database_url(answers: dict, project: Path) -> str | None:
    """The URL the ini files give the SQL store, read back: the answer, a relative SQLite
    path made relative to the project directory; None for other stores."""
    if answers["session_factory"] != "database":
        return None
    url = answers["session_store_url"]
    relative = url.startswith("sqlite:///") and not url.startswith("sqlite:////")
    return f"sqlite:///{project}/{url.removeprefix('sqlite:///')}" if relative else url


def test_secrets_live_in_no_tracked_file(rendered) -> None:
    _, project = rendered
    assert re.fullmatch(r"[0-9a-f]{64,128}\n", (project / ".session_secret").read_text())
    assert ".session_secret" in (project / ".gitignore").read_text().splitlines()
    for ini in ("development.ini", "production.ini"):
        assert "session.secret =" not in (project / ini).read_text()


def apt_installed(job: dict) -> set[str]:
    """The Debian packages the steps of a workflow ``job`` install with apt-get."""
    words = [
        word
        for step in job["steps"]
        for match in APT_INSTALL.findall(step.get("run", ""))
        for word in match.split()
    ]
    return {word for word in words if not word.startswith("-")}


def test_github_actions_workflow_only_when_asked(rendered) -> None:
    answers, project = rendered
    workflow = project / ".github" / "workflows" / "tests.yml"
    assert workflow.exists() == answers["github_actions"]
    if workflow.exists():
        job = yaml.safe_load(workflow.read_text())["jobs"]["test"]
        runs = " ".join(step.get("run", "") for step in job["steps"])
        assert "pytest" in runs
        assert apt_installed(job) == WORKFLOW_PACKAGES.get(answers["session_factory"], set())
        assert read_pyproject(project)["project"]["requires-python"] == ">=3.10"
        assert job["strategy"]["matrix"]["python-version"] == [
            "3.10",
            "3.11",
            "3.12",
            "3.13",
            "3.14",
        ]
        setup = next(step for step in job["steps"] if "setup-python" in step.get("uses", ""))
        assert setup["with"]["python-version"] == "${{ matrix.python-version }}"


def test_pre_commit_config_runs_ruff(rendered) -> None:
    _, project = rendered
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "detect-private-key"} <= hooks


def test_pre_commit_runs_the_ruff_the_project_installs(rendered) -> None:
    """A commit hook on another ruff than CI's would format code that CI then refuses
    (ruff's style changes with its minor version)."""
    _, project = rendered
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    [rev] = [repo["rev"] for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit")]
    version = rev.removeprefix("v")
    major, minor, _ = version.split(".")
    testing = read_pyproject(project)["project"]["optional-dependencies"]["testing"]
    assert f"ruff>={version},<{major}.{int(minor) + 1}" in testing


def test_rendered_project_is_ruff_clean(rendered) -> None:
    _, project = rendered
    assert_ruff_clean(project)


def assert_ruff_clean(project: Path) -> None:
    """Ruff's check and format pass on ``project`` with its own configuration."""
    check = ruff("check", "--no-cache", str(project))
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff("format", "--no-cache", "--check", str(project))
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize("factory", FACTORIES)
def test_the_longest_accepted_slug_renders_ruff_clean(bake, factory: str) -> None:
    """Every line that names the package stays within the line length at 40 characters."""
    slug = "abcdefghij" * 4
    assert pre_gen.check_slug(slug) is None and len(slug) == pre_gen.MAX_SLUG_LENGTH
    result = bake(session_factory=factory, project_slug=slug)
    assert result.exit_code == 0, result.exception
    assert_ruff_clean(result.project_path)


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_project_name_reads_back_from_the_ini(rendered, ini: str) -> None:
    answers, project = rendered
    parser = configparser.ConfigParser(defaults={"here": str(project), "__file__": ini})
    parser.read(project / ini, encoding="utf-8")
    assert parser.get("app:main", "app.project_name") == answers["project_name"]


def test_readme_shows_the_exact_answers(rendered) -> None:
    answers, project = rendered
    lines = (project / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {answers['project_name']}"
    assert answers["description"] in lines


def test_answers_file_keeps_the_exact_answers(rendered) -> None:
    answers, project = rendered
    saved = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert {field: saved["cookiecutter"][field] for field in answers} == answers


def test_default_answers_render(bake) -> None:
    result = bake()
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == "pyramid_sessions"
    assert (result.project_path / "pyramid_sessions" / "sessions" / "cookie.py").exists()


def test_a_name_with_nothing_to_derive_a_slug_from_renders(bake) -> None:
    """An empty package name names no directory: cookiecutter stopped before the hook,
    with "directory already exists" (and exit status 0) when the output directory
    existed, as the README's ``-o ..`` does."""
    result = bake(project_name="🚀🚀🚀")
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == "pyramid_app"


# A Markdown link to a file of the project: [text](path) or [text](path#anchor).
RELATIVE_LINK = re.compile(r"\]\((?![a-z]+:|#)([^)#\s]+)")


def test_every_link_between_the_docs_finds_its_file(rendered) -> None:
    """The docs of one store may name a page only another store has (a Redis project's
    updating.md linked database.md)."""
    _, project = rendered
    dead = [
        f"{page.relative_to(project)} -> {target}"
        for page in project.rglob("*.md")
        if ".venv" not in page.parts
        for target in RELATIVE_LINK.findall(page.read_text(encoding="utf-8"))
        if not (page.parent / target).exists()
    ]
    assert dead == []


# "test_file.py::test_name", or "::test_name" for another test of the file named last.
TEST_REFERENCE = re.compile(r"`(test_\w+\.py)?::(test_\w+)`")


def test_the_security_table_names_tests_that_exist(rendered) -> None:
    """Every test the README or a page of docs/ names (the security table in
    docs/security.md above all) is a test of the project."""
    _, project = rendered
    pages = [project / "README.md", *sorted((project / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        test_file = None  # "::test_name" names a test of the file named last on its page
        for file_name, test_name in TEST_REFERENCE.findall(page.read_text(encoding="utf-8")):
            test_file = file_name or test_file
            test_path = project / "tests" / (test_file or "none named before")
            source = test_path.read_text(encoding="utf-8") if test_path.is_file() else ""
            if f"def {test_name}(" not in source:
                missing.append(f"{page.name}: {test_file}::{test_name}")
    table = (project / "docs" / "security.md").read_text(encoding="utf-8")
    assert len(TEST_REFERENCE.findall(table)) >= 15
    assert missing == []

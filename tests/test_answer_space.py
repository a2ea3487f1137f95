"""Every answer the hooks accept renders a project whose files parse and say what was asked.

Hypothesis draws answers across the whole space the pre_gen hook accepts (numbers at and
between their bounds, Unicode and awkward text, names up to their limits, every store and
each URL form it takes), keeps those the hook accepts, renders each and reads the files
back without installing anything: TOML, INI, YAML parse, every Python file compiles, the
answers read back exactly, and the SQLite file the answer names is ignored by git.
"""

from __future__ import annotations

import configparser
import io
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

from bench.harness import FACTORIES, ROOT
from hooks import pre_gen_project as pre_gen

WEEK = 7 * 24 * 3600  # the ini files' absolute timeout when the idle one is shorter
# Printable text of every script, the characters templates must escape, and the emoji
# joiners (the hook takes them; it refuses other control and format characters, and line
# and paragraph separators: those answers are left to test_hooks).
AWKWARD = "\"'\\%$#;:<>&`|~!?*[]()=+@^ \u200c\u200d"
TEXT_CHARACTERS = st.one_of(
    st.sampled_from(AWKWARD),
    st.characters(exclude_categories=("C", "Zl", "Zp")),
)
# A slug part: cookiecutter.json's default slug is made from the name, or one is given.
SLUGS = st.one_of(
    st.none(),
    st.from_regex(r"[a-z][a-z0-9_]{0,39}", fullmatch=True),  # the hook refuses some
    st.just("abcdefghij" * 4),  # the longest accepted
)
HOSTS = st.sampled_from(["localhost", "127.0.0.1", "[::1]", "db.example", "xn--bcher-kva.example"])
PORTS = st.one_of(st.just(""), st.integers(1, 65535).map(lambda port: f":{port}"))
PATH_SEGMENT = st.text(
    st.one_of(st.sampled_from("._-"), st.characters(categories=("L", "Nd"))), min_size=1
).filter(lambda segment: segment not in (".", ".."))
SQLITE_PATHS = st.builds(
    "{}{}".format,
    st.lists(PATH_SEGMENT, min_size=1, max_size=3).map("/".join),
    st.sampled_from([".sqlite", ".sqlite3", ".db", ".db3"]),
)
REDIS_URLS = st.one_of(
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["redis", "rediss"]),
        HOSTS,
        PORTS,
        st.integers(0, 15),
    ),
    SQLITE_PATHS.map(lambda path: f"unix:///{path}"),
)
DATABASE_URLS = st.one_of(
    SQLITE_PATHS.map(lambda path: f"sqlite:///{path}"),
    SQLITE_PATHS.map(lambda path: f"sqlite:////{path}"),
    st.builds(
        "postgresql+psycopg://{}{}{}/{}{}".format,
        st.sampled_from(["", "app@", "shop_user@"]),
        HOSTS,
        PORTS,
        st.sampled_from(["app", "sessions"]),
        st.sampled_from(["", "?sslmode=require", "?application_name=shop%20app"]),
    ),
)
# Each store's URL answer; a cookie store ignores it (empty, or a URL without credentials).
STORE_URLS = {
    "signed_cookie": st.one_of(st.just(""), REDIS_URLS),
    "encrypted_cookie": st.one_of(st.just(""), DATABASE_URLS),
    "redis": REDIS_URLS,
    "database": DATABASE_URLS,
}


def bounded_numbers(low: int, high: int, *inside: int) -> st.SearchStrategy[str]:
    """Whole numbers from ``low`` to ``high`` as text: the bounds, ``inside``, any between."""
    edges = [low, low + 1, high - 1, high, *inside]
    return st.one_of(st.sampled_from(edges), st.integers(low, high)).map(str)


def text(max_size: int) -> st.SearchStrategy[str]:
    """One line of text up to ``max_size`` characters; Jinja openers are left out
    (cookiecutter renders an answer given with --no-input, before any hook runs)."""
    return (
        st.text(TEXT_CHARACTERS, min_size=1, max_size=max_size)
        .map(str.strip)
        .filter(lambda value: value and not any(o in value for o in ("{{", "{%", "{#")))
    )


@st.composite
def answers(draw: st.DrawFn) -> dict:
    """Answers as a user gives them, and as cookiecutter completes them with defaults."""
    factory = draw(st.sampled_from(FACTORIES))
    given_answers = {
        "project_name": draw(text(80)),
        "description": draw(text(300)),
        "author_name": draw(text(100)),
        "author_email": draw(
            st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True)
        ),
        "session_factory": factory,
        "session_timeout": draw(
            bounded_numbers(pre_gen.MIN_TIMEOUT, pre_gen.MAX_TIMEOUT, 600, 1200, 3600, WEEK)
        ),
        "session_store_url": draw(STORE_URLS[factory]),
        "http_port": draw(bounded_numbers(1, 65535, 6543)),
        "github_actions": draw(st.booleans()),
    }
    slug = draw(SLUGS)
    if slug is not None:
        given_answers["project_slug"] = slug
    context = generate_context(str(ROOT / "cookiecutter.json"), extra_context=given_answers)
    return prompt_for_config(context, no_input=True)


def read_ini(project: Path, name: str) -> configparser.ConfigParser:
    """One of the project's ini files as PasteDeploy reads it (``%(here)s`` known)."""
    parser = configparser.ConfigParser(defaults={"here": str(project), "__file__": name})
    parser.read(project / name, encoding="utf-8")
    return parser


def expected_store_setting(answered: dict, project: Path) -> tuple[str | None, str | None]:
    """The store URL setting the ini files must hold, and its value read back."""
    url = answered["session_store_url"]
    factory = answered["session_factory"]
    if factory == "redis":
        return "session.redis_url", url
    if factory != "database":
        return None, None
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{project}/{url.removeprefix('sqlite:///')}"
    return "session.database_url", url


def assert_ini_files_say_the_answers(answered: dict, project: Path) -> None:
    timeout = int(answered["session_timeout"])
    setting, url = expected_store_setting(answered, project)
    for name in ("development.ini", "production.ini"):
        app = dict(read_ini(project, name).items("app:main"))
        assert app["use"] == f"egg:{answered['project_slug']}"
        assert app["app.project_name"] == answered["project_name"]
        assert app["session.timeout"] == str(timeout)
        assert int(app["session.absolute_timeout"]) == max(WEEK, timeout)
        if setting:
            assert app[setting] == url
        listen = read_ini(project, name).get("server:main", "listen")
        assert listen.rsplit(":", 1)[1] == answered["http_port"]


def assert_pyproject_says_the_answers(answered: dict, project: Path) -> None:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    metadata = pyproject["project"]
    assert metadata["name"] == answered["project_slug"]
    assert metadata["description"] == answered["description"]
    assert metadata["authors"] == [
        {"name": answered["author_name"], "email": answered["author_email"]}
    ]
    assert pyproject["dependency-groups"]["dev"] == [f"{answered['project_slug']}[testing]"]


def assert_package_metadata_builds(project: Path) -> None:
    """The core metadata pip's build makes from pyproject.toml (setuptools refuses an
    author e-mail it cannot write into it, say) is made here in-process, without pip."""
    distribution = apply_configuration(Distribution(), project / "pyproject.toml")
    metadata = io.StringIO()
    distribution.metadata.write_pkg_file(metadata)
    assert f"Name: {project.name}" in metadata.getvalue()


def assert_every_file_parses(project: Path) -> None:
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    for path in [project / ".pre-commit-config.yaml", *project.glob(".github/workflows/*")]:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))
    saved = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert saved["cookiecutter"]["project_name"]
    lines = (project / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {saved['cookiecutter']['project_name']}"


def git(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run git in ``project``."""
    return subprocess.run(
        ["git", "-c", "core.quotepath=off", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


def assert_the_sqlite_file_is_never_committed(answered: dict, project: Path) -> None:
    """The answered SQLite file (in the project) and its journals are ignored by git,
    and nothing the project ships is."""
    url = answered["session_store_url"]
    git(project, "init", "--quiet")
    if answered["session_factory"] != "database" or not url.startswith("sqlite:///"):
        return
    path = url.removeprefix("sqlite:///")
    if path.startswith("/"):  # an absolute path may still lie inside the project
        path = f"data/{Path(path).name}"
    files = [path, *(f"{path}-{suffix}" for suffix in ("wal", "shm", "journal"))]
    ignored = git(project, "check-ignore", "--no-index", *files)
    assert ignored.stdout.splitlines() == files, ignored.stderr
    shipped = git(project, "ls-files", "--others", "--exclude-standard").stdout.splitlines()
    shipped_or_secret = {*shipped, ".session_secret"}
    every = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert every - {p for p in every if p.startswith(".git/")} <= shipped_or_secret


def assert_derived_names_fit(answered: dict, project: Path) -> None:
    """Every name made from the slug fits where it goes: PostgreSQL names 63 bytes."""
    slug = answered["project_slug"]
    assert len(f"{slug}_sessions_expiry".encode()) <= 63
    if answered["session_factory"] == "database":
        schema = project / slug / "sessions" / "database" / "schema.py"
        assert f'TABLE_NAME = "{slug}_sessions"' in schema.read_text(encoding="utf-8")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings(r"ignore:Support for `\[tool.setuptools\]`")  # "still beta"
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never fails by chance
    # No shrinking: a render takes half a second, and shrinking one failure took minutes.
    # The failing answers are printed as drawn.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(answered=answers())
def test_every_accepted_answer_renders_files_that_say_it(cookies_session, answered: dict):
    assume(pre_gen.validate(answered) == [])
    result = cookies_session.bake(extra_context=answered)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert_every_file_parses(project)
    assert_pyproject_says_the_answers(answered, project)
    assert_package_metadata_builds(project)
    assert_ini_files_say_the_answers(answered, project)
    assert_the_sqlite_file_is_never_committed(answered, project)
    assert_derived_names_fit(answered, project)

"""Shared helpers for baking the template and inspecting what comes out."""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from cookiecutter import hooks
from cookiecutter.environment import StrictEnvironment
from xdist.scheduler import LoadScopeScheduling

from bench.harness import FACTORIES, ROOT

TEMPLATE_DIR = ROOT  # the repository is the template
# The SQL store's answer by kind: its scheme changes the dependencies, and a % must reach
# the ini files escaped (the PostgreSQL one has one).
DATABASE_URLS = {
    "sqlite": "sqlite:///sessions.sqlite",
    "postgresql": "postgresql+psycopg://app@db.example:5432/sessions?application_name=shop%20app",
}


def factory_answers(factory: str) -> list[dict[str, str]]:
    """The answers that change ``factory``'s output: for the SQL store, each kind of URL."""
    if factory != "database":
        return [{"session_factory": factory}]
    return [
        {"session_factory": factory, "session_store_url": url} for url in DATABASE_URLS.values()
    ]


# Every answer combination that changes the output: factory (and database URL kind) x
# GitHub Actions workflow.
SUPPORTED_COMBINATIONS = [
    {**answers, "github_actions": github_actions}
    for answers, github_actions in itertools.product(
        itertools.chain.from_iterable(map(factory_answers, FACTORIES)), (True, False)
    )
]
# Answers that must render safely into TOML, ini, Python and HTML.
AWKWARD_ANSWERS = {
    "project_name": 'Ça "marche" 100% <b>${x}</b> \\o/ 🚀',
    "description": (
        "Quotes ' \" and back\\slashes, 50% off, <script>alert(1)</script>, ünïcode,"
        " emoji 🚀🐍 and 𝄞 outside the Basic Multilingual Plane"
    ),
    "author_name": 'Zoë O\'Brien \\ "Dev" 🦄',
    "author_email": "zoe@example.com",
    "project_slug": "shop",
}


# The slow tests in three lanes (each alone on this machine: 83, 105 and 85 s). `tasks.py
# test` runs three workers with --dist loadscope, whose scopes here are the lanes
# (LaneScheduling): each lane on a worker of its own, the fast tests filling in wherever
# one is free. Three workers on two cores, because the slow tests spend a third of their
# time waiting on servers, timeouts and installs.
SERVED = "test_readme_install_test_serve_browse_scale_out_and_load"
LANES = [
    ["test_sql_project_passes_without_postgresql_then_with_it"],
    [f"{SERVED}[redis]", f"{SERVED}[encrypted_cookie]"],
    [
        "test_sql_project_serves_on_sqlite_and_on_postgresql",
        f"{SERVED}[signed_cookie]",
        "test_every_accepted_answer_renders_files_that_say_it",
    ],
]
LANE_OF = {
    name: (lane, place) for lane, names in enumerate(LANES) for place, name in enumerate(names)
}


# The lanes' priorities. The SQL lane is one project's suite, the longest single test: it
# runs at the normal priority, and the others nicer (lower), so that it has a core whenever
# it wants one and does not end last with the other core idle (measured: 146-153 s for the
# suite, against 152-160 s without). The second lane, longer than the third, comes next.
LANE_NICENESS = (0, 5, 10)


@pytest.fixture(autouse=True)
def yield_to_the_longer_lanes(request: pytest.FixtureRequest) -> None:
    """Lower the priority of a worker (and all it starts) as its lane's test begins."""
    lane = LANE_OF.get(request.node.name)
    if lane is not None:
        os.nice(max(0, LANE_NICENESS[lane[0]] - os.getpriority(os.PRIO_PROCESS, 0)))


def test_name(nodeid: str) -> str:
    """A test's name with its parameters, from its node id."""
    return nodeid.rsplit("::", 1)[-1]


class LaneScheduling(LoadScopeScheduling):
    """xdist's scope scheduling where a scope is a lane, or a single fast test (larger
    units measured slower: one may land behind a lane)."""

    def _split_scope(self, nodeid: str) -> str:
        lane = LANE_OF.get(test_name(nodeid))
        return f"lane-{lane[0]}" if lane else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LaneScheduling | None:
    """--dist loadscope runs the lanes (None: xdist's own scheduler for the others)."""
    return LaneScheduling(config, log) if config.getvalue("dist") == "loadscope" else None


class CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled templates, kept in memory: a bucket is keyed by the template's name
    and checked against its source, so a changed file is compiled again."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session", autouse=True)
def compile_each_template_once() -> Iterator[None]:
    """cookiecutter makes a new Jinja environment for every bake, which compiles every file
    of the template again: most of a bake's time. The bakes of a test run share one cache
    of the compiled files; what they render is the same."""
    compiled = CompiledTemplates()
    make_environment = StrictEnvironment.__init__

    def with_the_cache(environment: StrictEnvironment, **options: object) -> None:
        make_environment(environment, **options)
        environment.bytecode_cache = compiled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StrictEnvironment, "__init__", with_the_cache)
        yield


@pytest.fixture(scope="session", autouse=True)
def hook_copies_in_the_runs_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """cookiecutter copies each hook it runs to a temporary file it never deletes: two a
    bake, about 500 a run. They go to this run's directory, which pytest removes in time,
    not to /tmp, where 57,000 of them (a machine's month of runs) made every hook start
    40 ms slower: Python lists the directory of the script it runs."""
    directory = tmp_path_factory.mktemp("hook-copies")
    in_the_runs_directory = functools.partial(tempfile.NamedTemporaryFile, dir=directory)
    with pytest.MonkeyPatch.context() as patch:  # its only use of tempfile
        patch.setattr(hooks, "tempfile", SimpleNamespace(NamedTemporaryFile=in_the_runs_directory))
        yield


def pytest_configure(config: pytest.Config) -> None:
    """Bake this repository's template wherever pytest is started from."""
    config.option.template = str(TEMPLATE_DIR)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The lanes' tests first, in their order; then every other test, in its order."""
    items.sort(key=lambda item: LANE_OF.get(item.name, (len(LANES), 0)))


def database_kind(url: str) -> str:
    """'sqlite' or 'postgresql': a database URL's scheme without its driver."""
    return url.split(":", 1)[0].split("+", 1)[0]


def combination_id(answers: dict) -> str:
    """A readable test id such as 'redis-with-ci' or 'database-postgresql-without-ci'."""
    ci = "with-ci" if answers["github_actions"] else "without-ci"
    database = (
        [database_kind(answers["session_store_url"])] if "session_store_url" in answers else []
    )
    return "-".join([answers["session_factory"], *database, ci])


def text_files(project: Path) -> list[Path]:
    """Every file in ``project`` that is text."""
    files = []
    for path in sorted(project.rglob("*")):
        if path.is_file():
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


@pytest.fixture
def bake(cookies):
    """Bake the template with ``extra_context`` and return the pytest-cookies result."""

    def baker(**extra_context):
        return cookies.bake(extra_context=extra_context)

    return baker

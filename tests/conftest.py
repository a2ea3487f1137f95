"""Shared helpers for baking the template and inspecting what comes out."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.harness import FACTORIES, ROOT

TEMPLATE_DIR = ROOT  # the repository is the template
# Every answer combination that changes the output: factory x GitHub Actions workflow.
SUPPORTED_COMBINATIONS = [
    {"session_factory": factory, "github_actions": github_actions}
    for factory, github_actions in itertools.product(FACTORIES, (True, False))
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


def pytest_configure(config: pytest.Config) -> None:
    """Bake this repository's template wherever pytest is started from."""
    config.option.template = str(TEMPLATE_DIR)


def combination_id(answers: dict) -> str:
    """A readable test id such as 'redis-with-ci'."""
    ci = "with-ci" if answers["github_actions"] else "without-ci"
    return f"{answers['session_factory']}-{ci}"


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

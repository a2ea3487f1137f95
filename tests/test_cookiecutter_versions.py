"""Real cookiecutter releases: the minimum renders the template, an older one is told to upgrade.

Each release is installed from PyPI once per test session into its own virtual environment,
which borrows this environment's packages for the dependencies they share (pip installs
only what the release needs and this one lacks: seconds instead of a full install).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR

from hooks import pre_gen_project as pre_gen

MINIMUM_RELEASE = pre_gen.version_text(pre_gen.MINIMUM_COOKIECUTTER)
# Older than the minimum: with it, the default answers used to fail with
# "github_actions: got 'True'; expected yes or no", an answer the user never gave.
OLDER_RELEASE = "2.1.1"
# Answers given on the command line (with --no-input), by a readable id.
ANSWER_SETS = {
    "default-answers": [],
    "redis-github_actions=no": ["session_factory=redis", "github_actions=no"],
    "database-postgresql": [
        "session_factory=database",
        "session_store_url=postgresql+psycopg://app@db.example:5432/app?application_name=a%20b",
    ],
}
# Random on every render, so never the same twice.
RANDOM_FILES = {".session_secret"}


def venv_borrowing_packages(venv: Path) -> Path:
    """A virtual environment without pip at ``venv`` that also sees this environment's
    packages (pip among them), after its own; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(own) / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.fixture(scope="session")
def cookiecutter_release(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The cookiecutter command of a release, installed into a fresh venv on first use."""
    installed: dict[str, Path] = {}

    def command(version: str) -> Path:
        if version not in installed:
            venv = tmp_path_factory.mktemp(f"cookiecutter-{version}")
            python = venv_borrowing_packages(venv)
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            result = subprocess.run(
                [*pip, "--disable-pip-version-check", f"cookiecutter=={version}"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            installed[version] = venv / "bin" / "cookiecutter"
        return installed[version]

    return command


def render(
    command: Sequence[str | Path], output: Path, answers: list[str]
) -> subprocess.CompletedProcess:
    """Run ``command`` on the template without prompts, into ``output``, as a user would."""
    output.mkdir(parents=True)
    home = output.parent / f"{output.name}-home"  # the replay file lands here, not in ~
    return subprocess.run(
        [*map(str, command), "--no-input", "-o", str(output), str(TEMPLATE_DIR), *answers],
        cwd=output,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )


def tree(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``directory`` but the random ones: its permissions and content."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mode & 0o777, path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in RANDOM_FILES
    }


@pytest.mark.slow
@pytest.mark.parametrize("answers", ANSWER_SETS.values(), ids=ANSWER_SETS.keys())
def test_the_minimum_release_renders_what_the_newest_does(
    cookiecutter_release, tmp_path: Path, answers: list[str]
) -> None:
    oldest = render([cookiecutter_release(MINIMUM_RELEASE)], tmp_path / "minimum", answers)
    assert oldest.returncode == 0, oldest.stdout + oldest.stderr
    newest = render([sys.executable, "-m", "cookiecutter"], tmp_path / "newest", answers)
    assert newest.returncode == 0, newest.stdout + newest.stderr
    assert oldest.stderr == ""
    rendered = tree(tmp_path / "minimum")
    assert rendered, "nothing was rendered"
    assert rendered == tree(tmp_path / "newest")


@pytest.mark.slow
@pytest.mark.parametrize("answers", ANSWER_SETS.values(), ids=ANSWER_SETS.keys())
def test_an_older_release_is_told_to_upgrade_and_leaves_nothing(
    cookiecutter_release, tmp_path: Path, answers: list[str]
) -> None:
    output = tmp_path / "older"
    result = render([cookiecutter_release(OLDER_RELEASE)], output, answers)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"ERROR: this template needs cookiecutter {MINIMUM_RELEASE} or newer,"
        f" you have {OLDER_RELEASE}: pip install -U cookiecutter"
    ]
    assert "github_actions" not in result.stdout + result.stderr
    assert list(output.iterdir()) == []

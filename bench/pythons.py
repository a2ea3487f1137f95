"""Run each store's generated project's own tests on every supported Python found here.

    python3 tasks.py pythons [--factory redis ...] [--python /path/to/python3.12 ...]

Supported: what the generated pyproject.toml's ``requires-python`` admits, 3.10 to 3.14.
Interpreters are found on PATH (python3.10 ... python3.14) and in pyenv's versions; each
store's project is rendered once per Python and installed into a virtual environment of
that interpreter, as its README says. Two runs at a time; a table at the
end; non-zero when any run failed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import FACTORIES, clean_environment, render

SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14")
PYTEST_SUMMARY = re.compile(r"^\d+ (?:passed|failed|error).*? in [\d.]+s", re.MULTILINE)
PARALLEL_RUNS = 2


@dataclass
class Outcome:
    """One store's tests on one Python."""

    factory: str
    python: str
    version: str
    passed: bool
    summary: str
    seconds: float


def python_version(executable: Path) -> str:
    """'3.12.1' for an interpreter; '' when it does not run."""
    try:
        result = subprocess.run(
            [str(executable), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def candidate_pythons() -> list[Path]:
    """python3.X on PATH and in pyenv's versions directory, for every supported X."""
    candidates = [Path(found) for minor in SUPPORTED if (found := shutil.which(f"python{minor}"))]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(Path(root, "versions").glob("3.*/bin/python3"))
    return candidates


def supported_pythons(paths: list[Path]) -> dict[str, Path]:
    """The first interpreter of each supported minor version: {'3.12': path, ...}."""
    found: dict[str, Path] = {}
    for path in paths:
        minor = ".".join(python_version(path).split(".")[:2])
        if minor in SUPPORTED and minor not in found:
            found[minor] = path
    return dict(sorted(found.items()))


def run_tests(project: Path, factory: str, minor: str, python: Path) -> Outcome:
    """Install ``project`` into a venv of ``python`` and run its tests (its README's steps)."""
    venv = project / f".venv-{minor}"
    env = clean_environment()
    started = time.monotonic()
    steps = [
        [str(python), "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "-e", ".[testing]"],
        [str(venv / "bin" / "pytest"), "-p", "no:cacheprovider", "-q"],
    ]
    for step in steps:
        result = subprocess.run(step, cwd=project, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            break
    summary = PYTEST_SUMMARY.findall(result.stdout)
    detail = summary[-1] if summary else (result.stderr or result.stdout).strip()[-200:]
    if "FAIL Required test coverage" in result.stdout:
        detail += "; branch coverage below 100 %"
    return Outcome(
        factory,
        str(python),
        python_version(python),
        result.returncode == 0,
        detail,
        time.monotonic() - started,
    )


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a Markdown table."""
    lines = ["| store | Python | result | seconds |", "|---|---|---|---|"]
    lines += [
        f"| {o.factory} | {o.version} | {'passed' if o.passed else 'FAILED'}: {o.summary} "
        f"| {o.seconds:.0f} |"
        for o in outcomes
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Render each store, test it on each Python found, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factory", action="append", choices=FACTORIES)
    parser.add_argument("--python", action="append", type=Path, help="an interpreter to use")
    args = parser.parse_args(argv)
    pythons = supported_pythons(args.python or candidate_pythons())
    if not pythons:
        parser.error(f"no Python of {', '.join(SUPPORTED)} found")
    print("Pythons:", ", ".join(f"{minor} ({path})" for minor, path in pythons.items()))
    with tempfile.TemporaryDirectory(prefix="pythons-") as workdir:
        runs = [  # a project each: runs side by side write coverage data in their project
            (
                render(Path(workdir) / f"{factory}-{minor}", session_factory=factory),
                factory,
                minor,
                python,
            )
            for factory in args.factory or FACTORIES
            for minor, python in pythons.items()
        ]
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            outcomes = list(pool.map(lambda run: run_tests(*run), runs))
    print(table(outcomes))
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

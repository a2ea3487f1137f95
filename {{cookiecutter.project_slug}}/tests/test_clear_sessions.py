"""The clear-sessions command: expired rows go, live sessions stay, errors are one line."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import webtest
from conftest import development_timeouts
from database_servers import StoredSessions
from helpers import counter

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.clear_sessions import main as clear_sessions
from {{ cookiecutter.project_slug }}.database_settings import URL_ENV


def installed_command() -> str:
    """The command's name as pip installed it (pyproject.toml's [project.scripts]): what
    a cron line types, and what the command's messages must call it."""
    target = f"{clear_sessions.__module__}:{clear_sessions.__name__}"
    scripts = entry_points(group="console_scripts")
    [name] = [script.name for script in scripts if script.value == target]
    return name


# Every message starts with it, exactly as typed: lowercase, never capitalised.
COMMAND = installed_command()


def write_ini(directory: Path, database_url: str, **settings: str) -> Path:
    """An ini file as a deployment has, on ``database_url``, with the project's timeouts;
    no session secret in it."""
    timeout, absolute_timeout = development_timeouts()
    settings = {
        "session.database_url": database_url,
        "session.timeout": str(timeout),
        "session.absolute_timeout": str(absolute_timeout),
        **settings,
    }
    lines = [
        "[app:main]",
        "use = egg:{{ cookiecutter.project_slug }}",
        *(f"{name} = {value}" for name, value in settings.items()),
    ]
    path = directory / "deployment.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def three_sessions(app_settings: dict, stored: StoredSessions) -> dict[str, str]:
    """A live session, one idle too long and one past its absolute timeout, by id."""
    app = main({}, **app_settings)
    for _ in range(3):
        assert counter(webtest.TestApp(app).get("/")) == 1
    live, idle, old = stored.ids()
    now = int(time.time())
    _, absolute_timeout = development_timeouts()
    stored.set(idle, "expiry", now - 1)
    stored.set(old, "created", now - absolute_timeout - 1)
    return {"live": live, "idle": idle, "old": old}


def test_expired_sessions_are_deleted_and_live_ones_kept(
    app_settings, stored, tmp_path, capsys
) -> None:
    sessions = three_sessions(app_settings, stored)
    ini = write_ini(tmp_path, app_settings["session.database_url"])
    assert clear_sessions([str(ini)]) == 0
    assert stored.ids() == [sessions["live"]]
    assert capsys.readouterr().out == f"{COMMAND}: deleted 2 expired sessions\n"
    assert clear_sessions([str(ini)]) == 0
    assert capsys.readouterr().out == f"{COMMAND}: deleted 0 expired sessions\n"


def test_the_installed_command_runs_from_cron(app_settings, stored, tmp_path) -> None:
    """The console script pip installed, as a cron line or systemd timer runs it."""
    three_sessions(app_settings, stored)
    ini = write_ini(tmp_path, app_settings["session.database_url"])
    command = Path(sys.executable).parent / COMMAND
    done = subprocess.run([str(command), str(ini)], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f"{COMMAND}: deleted 2 expired sessions\n")
    # Nothing of its own on stderr: only what dependencies warn about on newer Pythons
    # (Pyramid imports pkg_resources).
    assert (COMMAND in done.stderr, "Traceback" in done.stderr) == (False, False)
    assert len(stored.ids()) == 1


def test_one_expired_session_is_one(app_settings, stored, tmp_path, capsys) -> None:
    sessions = three_sessions(app_settings, stored)
    stored.set(sessions["old"], "created", int(time.time()))
    assert clear_sessions([str(write_ini(tmp_path, app_settings["session.database_url"]))]) == 0
    assert capsys.readouterr().out == f"{COMMAND}: deleted 1 expired session\n"


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing-ini", "cannot read {ini}: "),
        ("no-such-app", "cannot read {ini}: "),
        ("password-in-ini", "cannot read {ini}: session.database_url holds a password"),
        ("bad-timeout", "cannot read {ini}: session.timeout must be a whole number"),
    ],
    ids=lambda value: value if value.islower() and " " not in value else None,
)
def test_bad_settings_exit_2_in_one_line(tmp_path, capsys, problem: str, message: str) -> None:
    url = "sqlite:///" + str(tmp_path / "s.sqlite")
    settings = {"session.timeout": "soon"} if problem == "bad-timeout" else {}
    if problem == "password-in-ini":
        url = "postgresql+psycopg://app:hunter2@127.0.0.1/app"
    ini = write_ini(tmp_path, url, **settings)
    arguments = [str(ini)]
    if problem == "missing-ini":
        ini.unlink()
    if problem == "no-such-app":
        arguments += ["--app", "elsewhere"]
    assert clear_sessions(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{COMMAND}: " + message.format(ini=ini))
    assert error.count("\n") == 1
    assert "hunter2" not in error


def test_an_unreachable_database_exits_1(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(URL_ENV, "postgresql+psycopg://app:hunter2@127.0.0.1:1/app")
    ini = write_ini(tmp_path, "sqlite:///" + str(tmp_path / "unused.sqlite"))
    assert clear_sessions([str(ini), "--app", "main"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"{COMMAND}: session database unavailable: ")
    assert "hunter2" not in error


def test_argparse_names_the_command_as_typed(capsys) -> None:
    with pytest.raises(SystemExit) as exit_status:
        clear_sessions([])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.split()[:2] == ["usage:", COMMAND]
    assert f"\n{COMMAND}: error: the following arguments are required: config_uri" in error

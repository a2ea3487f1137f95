"""Read and check the session settings from the ini file and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyramid.settings import asbool

# The names of environment variables, not secrets:
SECRET_ENV = "{{ cookiecutter.project_slug | upper }}_SESSION_SECRET"  # noqa: S105
SECRET_FALLBACKS_ENV = "{{ cookiecutter.project_slug | upper }}_SESSION_SECRET_FALLBACKS"  # noqa: S105
# The secret's length in bytes (HMAC-SHA512 keys as long as the hash; NaCl keys are 32
# bytes), and the idle timeout's bounds: the template's hooks check the same numbers.
SECRET_BYTES = {{ cookiecutter._secret_bytes[cookiecutter.session_factory] }}
MIN_TIMEOUT = {{ cookiecutter._min_timeout }}
MAX_TIMEOUT = {{ cookiecutter._max_timeout }}  # 30 days
# The idle timeout the project was generated with: development.ini and production.ini
# set it too, so this applies only to an ini file that leaves session.timeout out.
DEFAULT_TIMEOUT = {{ cookiecutter.session_timeout | int }}
# A session ends this long after it was created, however active it is: a week unless the
# idle timeout is longer (OWASP's absolute timeout).
DEFAULT_ABSOLUTE_TIMEOUT = 7 * 24 * 3600
MAX_ABSOLUTE_TIMEOUT = 90 * 24 * 3600
HEX_DIGITS = frozenset("0123456789abcdef")


class SettingsError(ValueError):
    """A session setting is missing or unsafe; the message says how to fix it."""


@dataclass(frozen=True)
class SessionSettings:
    """Everything the session factory needs, already checked."""

    secrets: tuple[str, ...]
    """The signing secret first, then previous secrets still accepted for reading."""
    timeout: int
    """Seconds a session lives without a request (the idle timeout)."""
    absolute_timeout: int
    """Seconds a session lives after it was created, however active: how long a stolen
    cookie can be replayed at most."""
    reissue_time: int
    secure: bool
    record_client: bool = False
    """Whether a sign-in keeps the client's address and user agent beside the session,
    for the "your sessions" page: personal data, so off unless ``session.record_client``."""

    @property
    def secret_bytes(self) -> tuple[bytes, ...]:
        """The secrets as raw bytes, signing secret first."""
        return tuple(bytes.fromhex(secret) for secret in self.secrets)


def generate_secret_hint() -> str:
    """The command that prints a fresh secret of the right form."""
    return f"python3 -c 'import secrets; print(secrets.token_hex({SECRET_BYTES}))'"


def check_secret(name: str, secret: str) -> str:
    """Return ``secret`` if it is lowercase hex of SECRET_BYTES random bytes."""
    if len(secret) != 2 * SECRET_BYTES or not set(secret) <= HEX_DIGITS:
        raise SettingsError(
            f"{name} must be {2 * SECRET_BYTES} lowercase hex characters "
            f"({SECRET_BYTES} random bytes, got {len(secret)} characters); "
            f"generate one with: {generate_secret_hint()}"
        )
    return secret


def signing_secret(settings: Mapping[str, str], environ: Mapping[str, str]) -> tuple[str, str]:
    """Where the signing secret comes from, and the secret: the environment, else
    ``session.secret``, else the file named by ``session.secret_file``."""
    if environ.get(SECRET_ENV):
        return SECRET_ENV, environ[SECRET_ENV]
    if settings.get("session.secret", "").strip():
        return "session.secret", settings["session.secret"].strip()
    path = settings.get("session.secret_file", "").strip()
    if path and Path(path).is_file():
        return path, Path(path).read_text(encoding="ascii", errors="replace").strip()
    where = f" or write one to {path}" if path else ""
    raise SettingsError(
        f"no session secret: set the {SECRET_ENV} environment variable{where} "
        f"(generate one with: {generate_secret_hint()})"
    )


def read_secrets(settings: Mapping[str, str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The signing secret followed by the previous ones still accepted for reading."""
    name, secret = signing_secret(settings, environ)
    fallbacks = (
        environ.get(SECRET_FALLBACKS_ENV) or settings.get("session.secret_fallbacks", "")
    ).split()
    return (
        check_secret(name, secret),
        *(check_secret(f"{name} fallback #{n}", value) for n, value in enumerate(fallbacks, 1)),
    )


def read_whole_setting(
    settings: Mapping[str, str], name: str, default: int, low: int, high: int, unit: str
) -> int:
    """The whole number of ``unit`` (seconds, bytes, ...) of setting ``name``, within
    ``low..high``."""
    raw = str(settings.get(name, default)).strip()
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise SettingsError(
            f"{name} must be a whole number of {unit} from {low} to {high}, got {raw!r}"
        )
    return int(raw)


def read_timeouts(settings: Mapping[str, str]) -> tuple[int, int]:
    """The idle timeout and the absolute timeout, which may not be shorter."""
    timeout = read_whole_setting(
        settings, "session.timeout", DEFAULT_TIMEOUT, MIN_TIMEOUT, MAX_TIMEOUT, "seconds"
    )
    default_absolute = max(DEFAULT_ABSOLUTE_TIMEOUT, timeout)
    absolute = read_whole_setting(
        settings,
        "session.absolute_timeout",
        default_absolute,
        timeout,
        MAX_ABSOLUTE_TIMEOUT,
        "seconds",
    )
    return timeout, absolute


def reissue_time(timeout: int) -> int:
    """Seconds after which a session is renewed (the cookie stores' cookie signed again,
    the SQL store's expiry rewritten): a tenth of the idle ``timeout``. A session may then
    end up to that much before a whole idle timeout after its last request."""
    return timeout // 10


def read_secure(settings: Mapping[str, str]) -> bool:
    """Whether the site is served over HTTPS only (``session.secure``, on by default): the
    cookie is then Secure, and the app's headers add HSTS."""
    return asbool(settings.get("session.secure", True))


def session_settings(
    settings: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> SessionSettings:
    """Check and collect the ``session.*`` settings; raise SettingsError when unsafe."""
    environ = os.environ if environ is None else environ
    timeout, absolute_timeout = read_timeouts(settings)
    return SessionSettings(
        secrets=read_secrets(settings, environ),
        timeout=timeout,
        absolute_timeout=absolute_timeout,
        reissue_time=reissue_time(timeout),
        secure=read_secure(settings),
        record_client=asbool(settings.get("session.record_client", False)),
    )

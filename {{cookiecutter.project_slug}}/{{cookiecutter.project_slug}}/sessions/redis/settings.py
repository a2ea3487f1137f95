"""Where the Redis sessions live: one server, a Sentinel-watched primary, or a Cluster.

Chosen at deploy time in the ini file or the environment (which wins, setting by
setting), never in code. Passwords never go in the ini file: a URL with credentials goes
in the environment, as do the Sentinel passwords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyramid.settings import asbool
from redis.connection import parse_url

from ..settings import SettingsError

# The names of environment variables, not secrets:
ENV_PREFIX = "{{ cookiecutter.project_slug | upper }}_REDIS_"
URL_ENV = ENV_PREFIX + "URL"
SENTINELS_ENV = ENV_PREFIX + "SENTINELS"
SENTINEL_SERVICE_ENV = ENV_PREFIX + "SENTINEL_SERVICE"
PASSWORD_ENV = ENV_PREFIX + "PASSWORD"
SENTINEL_PASSWORD_ENV = ENV_PREFIX + "SENTINEL_PASSWORD"
CLUSTER_ENV = ENV_PREFIX + "CLUSTER"
ENVIRONMENT = (
    URL_ENV,
    SENTINELS_ENV,
    SENTINEL_SERVICE_ENV,
    PASSWORD_ENV,
    SENTINEL_PASSWORD_ENV,
    CLUSTER_ENV,
)
HOST_PORT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(?P<port>\d{1,5})")
MAX_SOCKET_TIMEOUT = 30
CREDENTIAL_PARAMETER = re.compile(r"(?i)(\w*(?:pass|pwd|secret|token|user)\w*)=[^&#]*")


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how long to wait for it, already checked."""

    url: str
    """One server, or any one node of a Cluster; empty with Sentinel."""
    sentinels: tuple[tuple[str, int], ...]
    sentinel_service: str
    cluster: bool
    socket_timeout: float
    password: str | None = field(default=None, repr=False)
    """With Sentinel, the primary's and replicas' password (a URL carries its own)."""
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def topology(self) -> str:
        """'sentinel', 'cluster' or 'server': the kind of deployment."""
        return "sentinel" if self.sentinels else "cluster" if self.cluster else "server"


def redacted_url(url: str) -> str:
    """``url`` for a message, its credentials as ***: all from // to the last @ (a
    password may hold /, ? or #), and the values of password-like query parameters."""
    scheme, slashes, rest = url.partition("//")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + slashes + CREDENTIAL_PARAMETER.sub(r"\1=***", rest)


def read_socket_timeout(settings: Mapping[str, str]) -> float:
    """Seconds to wait for Redis before answering 503."""
    raw = str(settings.get("session.redis_socket_timeout", "1.0")).strip()
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= MAX_SOCKET_TIMEOUT:
        raise SettingsError(
            f"session.redis_socket_timeout must be seconds above 0 and at most "
            f"{MAX_SOCKET_TIMEOUT}, got {raw!r}"
        )
    return value


def read_sentinels(raw: str, name: str) -> tuple[tuple[str, int], ...]:
    """``host:port host:port ...`` as pairs; IPv6 hosts in brackets."""
    sentinels = []
    for address in raw.split():
        match = HOST_PORT.fullmatch(address)
        if not match or not 1 <= int(match["port"]) <= 65535:
            raise SettingsError(
                f"{name} must be host:port addresses separated by spaces "
                f"(such as 10.0.0.1:26379 10.0.0.2:26379), got {address!r}"
            )
        sentinels.append((match["host"].strip("[]"), int(match["port"])))
    return tuple(sentinels)


def check_url(url: str, name: str, cluster: bool) -> str:
    """``url`` if redis-py can use it for this deployment; else SettingsError.

    Checked as redis-py will read it, so that a bad URL stops the app at start-up instead
    of failing every request; a URL without a host would silently mean localhost.
    """
    shown = redacted_url(url)
    try:
        parsed = parse_url(url)
    except ValueError as error:
        reason = str(error).replace(url, shown)
        message = f"{name} is not a Redis URL redis-py can use ({reason}): {shown!r}"
        raise SettingsError(message) from None
    if not (parsed.get("host") or parsed.get("path")):
        raise SettingsError(f"{name} names no host (or socket path): {shown!r}")
    if cluster and "path" in parsed:
        raise SettingsError(
            f"session.redis_cluster needs {name} to name one node as redis:// or rediss://, "
            "not a unix socket"
        )
    database = str(parsed.get("db", 0))
    if cluster and database != "0":
        raise SettingsError(f"a Redis Cluster has only database 0; {name} names {database!r}")
    return url


def setting_or_env(
    settings: Mapping[str, str], environ: Mapping[str, str], setting: str, variable: str
) -> tuple[str, str, bool]:
    """``(value, where it comes from, whether from the environment)`` of one setting."""
    if environ.get(variable, "").strip():
        return environ[variable].strip(), variable, True
    return str(settings.get(setting, "")).strip(), setting, False


def read_redis_settings(settings: Mapping[str, str], environ: Mapping[str, str]) -> RedisSettings:
    """Check and collect the ``session.redis_*`` settings; SettingsError names the one
    to fix. An address given in the environment (URL or sentinels) overrides the other
    kind of address in the ini file; both kinds in the same place conflict."""
    url, url_name, url_from_env = setting_or_env(settings, environ, "session.redis_url", URL_ENV)
    raw_sentinels, sentinels_name, sentinels_from_env = setting_or_env(
        settings, environ, "session.redis_sentinels", SENTINELS_ENV
    )
    service, service_name, service_from_env = setting_or_env(
        settings, environ, "session.redis_sentinel_service", SENTINEL_SERVICE_ENV
    )
    if url and raw_sentinels and url_from_env != sentinels_from_env:
        url, raw_sentinels = (url, "") if url_from_env else ("", raw_sentinels)
        if url_from_env and not service_from_env:
            service = ""  # it went with the ini's sentinels
    if service and not raw_sentinels:
        raise SettingsError(
            f"{service_name} is set, but no sentinels: set session.redis_sentinels "
            f"(or {SENTINELS_ENV})"
        )
    cluster = asbool(setting_or_env(settings, environ, "session.redis_cluster", CLUSTER_ENV)[0])
    common = {"socket_timeout": read_socket_timeout(settings), "cluster": cluster}
    if raw_sentinels:
        check_sentinel_choice(url, url_name, service, sentinels_name, cluster)
        return RedisSettings(
            url="",
            sentinels=read_sentinels(raw_sentinels, sentinels_name),
            sentinel_service=service,
            password=environ.get(PASSWORD_ENV) or None,
            sentinel_password=environ.get(SENTINEL_PASSWORD_ENV) or None,
            **common,
        )
    for variable in (PASSWORD_ENV, SENTINEL_PASSWORD_ENV):
        if environ.get(variable):
            raise SettingsError(
                f"{variable} is for Sentinel only: put the password in the URL, in {URL_ENV}"
            )
    if not url:
        raise SettingsError(
            f"no Redis: set session.redis_url (or {URL_ENV}), or session.redis_sentinels "
            "and session.redis_sentinel_service"
        )
    return RedisSettings(
        url=check_url(url, url_name, cluster), sentinels=(), sentinel_service="", **common
    )


def check_sentinel_choice(
    url: str, url_name: str, service: str, sentinels_name: str, cluster: bool
) -> None:
    """Refuse Sentinel settings that are incomplete or conflict with another choice."""
    if url:
        raise SettingsError(
            f"{url_name} and {sentinels_name} exclude each other: with Sentinel, the "
            "sentinels name the primary; leave the URL empty"
        )
    if not service:
        raise SettingsError(
            f"{sentinels_name} needs session.redis_sentinel_service (or "
            f"{SENTINEL_SERVICE_ENV}): the name the sentinels monitor the primary under"
        )
    if cluster:
        raise SettingsError(
            f"session.redis_cluster and {sentinels_name} exclude each other: a Cluster "
            "fails over by itself"
        )

"""Server-side sessions in Redis: the cookie carries only a signed session id.

Every process that shares the Redis server and the secret shares the sessions, so this is
the factory for several processes or machines. Session data is stored as JSON (never
pickle); the visit counter is a separate Redis integer updated with INCR, so concurrent
requests from one browser never lose a count. When Redis is down or slow, requests that
need the session get a 503 page after ``session.redis_socket_timeout`` seconds, and the
app recovers by itself as soon as Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router
from pyramid_session_redis import RedisSessionFactory
from pyramid_session_redis.session import RedisSession
from redis.commands.core import Script

from .pages import ERROR_TEMPLATE, error_page
from .serializers import JSONSerializer, RotatingSerializer, SignedSerializer
from .settings import SessionSettings, session_settings

log = logging.getLogger(__name__)

COOKIE_NAME = "session"
COUNTER_KEY_PREFIX = "{{ cookiecutter.project_slug }}:counter:"
STORE = "{{ cookiecutter.project_slug }}.redis_store"
# INCR and EXPIRE in one atomic call: no lost count, and the counter expires with its session.
INCREMENT_SCRIPT = """
local count = redis.call("INCR", KEYS[1])
redis.call("EXPIRE", KEYS[1], ARGV[1])
return count
"""


class SessionIdSerializer:
    """Session ids are ASCII text: cheaper than JSON inside the signed cookie."""

    def dumps(self, appstruct: str) -> bytes:
        """Encode a session id."""
        return appstruct.encode("ascii")

    def loads(self, bstruct: bytes) -> str:
        """Decode a session id; non-ASCII input raises ValueError."""
        return bstruct.decode("ascii")


@dataclass(frozen=True)
class RedisStore:
    """The Redis client every request shares, how long keys live, and the counter script."""

    client: redis.Redis
    timeout: int
    increment: Script


def make_redis_client(settings: SessionSettings) -> redis.Redis:
    """A pooled client that gives up after the socket timeout instead of hanging."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
        health_check_interval=30,
    )


def log_invalid_session(request: Request, error: Exception) -> None:
    """Note why a request got a fresh session (no cookie, expired, or corrupt data)."""
    log.debug("fresh session for %s: %s", request.path, error)


def signed_by_fallback(signer: RotatingSerializer, cookie: str) -> bool:
    """True when ``cookie`` verifies only with a previous secret."""
    try:
        signer.serializers[0].loads(cookie.encode("ascii"))
    except ValueError:
        return True
    return False


def make_session_factory(settings: SessionSettings, client: redis.Redis) -> Callable:
    """A Redis session factory with JSON data and a cookie id signed by the first secret.

    A cookie still signed with a previous secret is signed again with the current one,
    so the fallback secrets can be dropped after one session timeout.
    """
    json_serializer = JSONSerializer()
    signer = RotatingSerializer(
        [
            SignedSerializer(secret, "pyramid_session_redis.", SessionIdSerializer())
            for secret in settings.secret_bytes
        ]
    )
    factory = RedisSessionFactory(
        secret=None,
        cookie_signer=signer,
        timeout=settings.timeout,
        cookie_name=COOKIE_NAME,
        cookie_secure=settings.secure,
        cookie_httponly=True,
        cookie_samesite="Lax",
        redis_client_callable=lambda request, **options: client,
        serialize=json_serializer.dumps,
        deserialize=json_serializer.loads,
        deserialized_fails_new=True,
        func_invalid_logger=log_invalid_session,
        # The session payload's expiry is rewritten only once it is `reissue_time` old,
        # not on every request. Reading a session still costs a GET and, after the
        # request, an EXPIRE (pyramid_session_redis refreshes the TTL on every read);
        # set_redis_ttl_readheavy would fold the EXPIRE into the GET, but in 1.8.1 that
        # pipeline is never executed and every read misses.
        timeout_trigger=settings.reissue_time,
        # This app changes the session only through its API, which marks it changed,
        # so there is no need to serialize and hash it on every request to find out.
        detect_changes=False,
    )
    if len(settings.secrets) == 1:
        return factory

    def re_signing_factory(request: Request) -> RedisSession:
        session = factory(request)
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie and not session.new and signed_by_fallback(signer, cookie):
            session.please_recookie()
        return session

    return re_signing_factory


def redis_store(request: Request) -> RedisStore:
    """The Redis store installed by ``includeme``."""
    return request.registry[STORE]


def counter_key(request: Request) -> str:
    """The Redis key of this session's counter; makes sure a new session gets stored."""
    session = request.session
    if session.new:
        session.changed()
    return COUNTER_KEY_PREFIX + session.ensure_id()


def increment_counter(request: Request) -> int:
    """Count one visit atomically and return the new total (one round trip)."""
    store = redis_store(request)
    return store.increment(keys=[counter_key(request)], args=[store.timeout])


def reset_counter(request: Request) -> None:
    """Set the visit counter back to zero."""
    redis_store(request).client.delete(counter_key(request))


def regenerate_session(request: Request) -> None:
    """Move the session and its counter to a new id; the old id is revoked (call at login)."""
    store = redis_store(request)
    session = request.session
    data = dict(session)
    count = store.client.getdel(counter_key(request))
    session.invalidate()
    session.update(data)
    if count is not None:
        store.client.set(counter_key(request), count, ex=store.timeout)


def forget_session(request: Request) -> None:
    """Delete the session and its counter from Redis: the old cookie is revoked."""
    redis_store(request).client.delete(counter_key(request))
    request.session.invalidate()


def includeme(config: Configurator) -> None:
    """Install the Redis session factory configured by the ``session.*`` settings."""
    settings = session_settings(config.get_settings())
    client = make_redis_client(settings)
    increment = client.register_script(INCREMENT_SCRIPT)
    config.registry[STORE] = RedisStore(client, settings.timeout, increment)
    config.set_session_factory(make_session_factory(settings, client))
    config.add_exception_view(
        session_store_unavailable, context=redis.RedisError, renderer=ERROR_TEMPLATE
    )
    config.set_execution_policy(execution_policy)


def execution_policy(environ: dict, router: Router) -> Response:
    """Pyramid's policy, plus the 503 page when Redis fails after the view.

    The session is written to Redis in a finished callback, after the view and outside
    Pyramid's exception views; if Redis goes away just then, this still answers 503.
    """
    with router.request_context(environ) as request:
        try:
            return router.invoke_request(request)
        except redis.RedisError:
            return request.invoke_exception_view(reraise=True)


def session_store_unavailable(error: redis.RedisError, request: Request) -> dict:
    """Redis is down or too slow: a 503 page and a log line, never a traceback."""
    log.error(
        "session store unavailable for %s %s: %s: %s",
        request.method,
        request.path,
        type(error).__name__,
        error,
    )
    request.response.headers["Retry-After"] = "5"
    return error_page(
        request,
        503,
        "Service unavailable",
        "Sessions are unavailable for a moment. Please try again in a few seconds.",
    )

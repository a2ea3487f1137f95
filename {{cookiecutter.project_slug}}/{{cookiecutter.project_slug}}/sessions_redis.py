"""Server-side sessions in Redis: the cookie carries only a signed session id.

Every process that shares Redis (one server, Sentinel or a Cluster: see ``redis_store``)
and the secret shares the sessions, so this is the factory for several processes or
machines. A session is one Redis hash: its data as
JSON (never pickle) and the visit counter, an integer changed with HINCRBY, so concurrent
requests from one browser never lose a count. Deleting the hash revokes the session.

Reading a session costs one round trip to Redis, which also renews its expiry; the
counter page loads the session and counts the visit in that same Lua call. A changed
session is written back in one more round trip, after the view. When Redis is down or
slow, requests that need the session get a 503 page after ``session.redis_socket_timeout``
seconds, and the app recovers by itself as soon as Redis answers again.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router
from zope.interface import implementer

from .pages import ERROR_TEMPLATE, error_page
from .redis_settings import read_redis_settings
from .redis_store import (
    COUNTER_FIELD,
    EXISTING,
    NEW,
    STORE_ERRORS,
    RedisStore,
    make_redis_store,
    session_key,
)
from .security import secure_response
from .serializers import JSONSerializer, RotatingSerializer, SignedSerializer
from .session_api import SessionAPI, cookie_attributes, cookie_name, request_cookie
from .settings import SessionSettings, session_settings

log = logging.getLogger(__name__)


class SessionIdSerializer:
    """Session ids are ASCII text: cheaper than JSON inside the signed cookie."""

    def dumps(self, appstruct: str) -> bytes:
        """Encode a session id."""
        return appstruct.encode("ascii")

    def loads(self, bstruct: bytes) -> str:
        """Decode a session id; non-ASCII input raises ValueError."""
        return bstruct.decode("ascii")


def new_session_id() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def signed_by_fallback(signer: RotatingSerializer, cookie: str) -> bool:
    """True when ``cookie`` verifies only with a previous secret."""
    try:
        signer.serializers[0].loads(cookie.encode("ascii"))
    except ValueError:
        return True
    return False


JSON = JSONSerializer()


def load_data(stored: bytes) -> dict | None:
    """Session data from its stored JSON, or None when it is corrupt.

    Text that cannot be written as UTF-8 (a lone surrogate such as ``\\udcff``, which
    only another writer can store) is corrupt too: it would fail every page it reached.
    """
    try:
        data = JSON.loads(stored)
        if b"\\u" in stored:
            json.dumps(data, ensure_ascii=False).encode()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@implementer(ISession)
class RedisSession(SessionAPI, MutableMapping):
    """A session kept in Redis under a random id; the cookie holds the id, signed.

    The data is loaded from Redis when first used, in the same round trip as the visit
    count when that comes first. A subclass made by ``make_session_factory`` sets the
    class attributes.
    """

    store: RedisStore
    signer: RotatingSerializer
    cookie_name: str
    attributes: str

    def __init__(self, request: Request) -> None:
        self.request = request
        self.send_cookie = False
        self.session_id = self.cookie_session_id(request.environ.get("HTTP_COOKIE", ""))
        self.new = self.session_id is None
        self.created = int(time.time())
        self._data: dict | None = {} if self.new else None

    def cookie_session_id(self, header: str) -> str | None:
        """The session id in the Cookie ``header`` if its signature holds, else None.

        An id signed with a previous secret is accepted and signed again with the current
        one, so the fallback secrets can be dropped after one session timeout.
        """
        value = request_cookie(header, self.cookie_name)
        if not value:
            return None
        try:
            session_id = self.signer.loads(value.encode("latin-1"))
        except (ValueError, UnicodeError):
            return None
        if len(self.signer.serializers) > 1 and signed_by_fallback(self.signer, value):
            self.send_cookie = True
            self.changed()
        return session_id

    # loading
    @property
    def data(self) -> dict:
        """The session's data, loaded on first use."""
        if self._data is None:
            self.take(self.store.run("load", [self.key]))
        return self._data

    @property
    def key(self) -> str:
        """The Redis key of this session."""
        return session_key(self.session_id)

    def take(self, stored: list | None) -> bool:
        """Take ``[data, created, ...]`` from Redis; False (a fresh session) if it is gone.

        Redis already deleted a session that is expired or of the wrong shape; data that
        is not a JSON object is deleted here.
        """
        data = None if stored is None else load_data(stored[0])
        if data is None:
            if stored is not None:
                self.store.client.delete(self.key)
            log.debug("fresh session: the stored one is gone, expired or corrupt")
            self.start_afresh()
            return False
        self._data, self.created = data, int(stored[1])
        return True

    def start_afresh(self) -> None:
        """Become a new, empty session under a new id."""
        self.session_id, self.new, self._data = None, True, {}
        self.created = int(time.time())

    def ensure_id(self) -> str:
        """The session id, made (and the cookie scheduled) for a new session."""
        if self.session_id is None:
            self.session_id = new_session_id()
            self.send_cookie = True
            self.changed()
        return self.session_id

    # the counter: one HINCRBY, never lost under concurrency
    def increment_counter(self) -> int:
        """Count one visit atomically; loads the session in the same round trip."""
        if self._data is None:
            stored = self.store.run("load_and_count", [self.key])
            if self.take(stored):
                return int(stored[2])
        elif not self.new:
            count = self.store.run("count", [self.key], EXISTING)
            if count is not None:
                return int(count)
            log.debug("fresh session: the stored one was revoked during this request")
            self.start_afresh()
        return int(self.store.run("count", [session_key(self.ensure_id())], NEW))

    def reset_counter(self) -> None:
        """Set the visit counter back to zero."""
        if self.session_id is not None:
            self.store.client.hdel(self.key, COUNTER_FIELD)

    def regenerate(self) -> None:
        """Move the session, its counter included, to a new id with a new CSRF token.

        The old id is revoked. A session revoked meanwhile is not moved: this request
        goes on with a fresh one.
        """
        data = self.data
        if not self.new:
            old_key, self.session_id = self.key, new_session_id()
            moved = self.store.run("detach", [old_key])
            if moved:
                self.store.run("adopt", [self.key], *moved)
                self.send_cookie = True
                self._data = data
            else:
                self.start_afresh()
        self.new_csrf_token()

    # ISession
    def invalidate(self) -> None:
        """Delete the session from Redis (its cookie is revoked) and start afresh."""
        if self.session_id is not None:
            self.store.client.delete(self.key)
            self.send_cookie = True
        self.start_afresh()
        self.changed()

    # the dict interface
    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.changed()

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.changed()

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self.data.get(key, default)

    # saving
    def write_back(self, request: Request, response: Response) -> None:
        """The response callback that writes the session to Redis and sends its cookie."""
        self.request = None  # the request holds the session: break the cycle for the GC
        if isinstance(request.exception, STORE_ERRORS):
            return  # Redis just failed this request: the 503 page goes out as it is
        if self.has_data_to_store():
            self.ensure_id()
            flag = NEW if self.new else EXISTING
            self.store.run("save", [self.key], JSON.dumps(self._data), flag)
        if self.send_cookie:
            response.headerlist.append(("Set-Cookie", self.set_cookie_header()))

    def has_data_to_store(self) -> bool:
        """Whether the data was loaded and belongs in Redis: stored before, or not empty.

        Data never loaded is left as it is: a request may only re-sign the cookie.
        """
        return self._data is not None and (bool(self._data) or self.session_id is not None)

    def set_cookie_header(self) -> str:
        """The Set-Cookie header for the session id, or one that deletes the cookie."""
        if self.session_id is None:
            return f"{self.cookie_name}=; Max-Age=0{self.attributes}"
        value = self.signer.dumps(self.session_id).decode("ascii")
        return f"{self.cookie_name}={value}{self.attributes}"


def make_session_factory(settings: SessionSettings, store: RedisStore) -> type[RedisSession]:
    """A Redis session class that signs session ids with the first secret, reads with all."""
    signer = RotatingSerializer(
        [
            SignedSerializer(secret, "session-id.", SessionIdSerializer())
            for secret in settings.secret_bytes
        ]
    )
    attributes = {
        "store": store,
        "signer": signer,
        "cookie_name": cookie_name(settings),
        "attributes": cookie_attributes(settings),
    }
    return type("ConfiguredRedisSession", (RedisSession,), attributes)


def increment_counter(request: Request) -> int:
    """Count one visit atomically and return the new total."""
    return request.session.increment_counter()


def reset_counter(request: Request) -> None:
    """Set the visit counter back to zero."""
    request.session.reset_counter()


def regenerate_session(request: Request) -> None:
    """Move the session and its counter to a new id with a new CSRF token; the old id is
    revoked (call it at login)."""
    request.session.regenerate()


def forget_session(request: Request) -> None:
    """Delete the session and its counter from Redis: the old cookie is revoked."""
    request.session.invalidate()


def includeme(config: Configurator) -> None:
    """Install the Redis session factory configured by the ``session.*`` settings."""
    settings = session_settings(config.get_settings())
    redis_settings = read_redis_settings(config.get_settings(), os.environ)
    store = make_redis_store(redis_settings, settings.timeout, settings.absolute_timeout)
    config.set_session_factory(make_session_factory(settings, store))
    for error in STORE_ERRORS:
        config.add_exception_view(
            session_store_unavailable, context=error, renderer=ERROR_TEMPLATE
        )
    config.set_execution_policy(execution_policy)


def execution_policy(environ: dict, router: Router) -> Response:
    """Pyramid's policy, plus the 503 page when Redis fails after the view.

    The session is written to Redis in a response callback, after the view and outside
    Pyramid's exception views and the tweens; if Redis goes away just then, this still
    answers 503, with the security headers the tween gives every other page.
    """
    with router.request_context(environ) as request:
        try:
            return router.invoke_request(request)
        except STORE_ERRORS:
            return secure_response(request, request.invoke_exception_view(reraise=True))


def session_store_unavailable(error: Exception, request: Request) -> dict:
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

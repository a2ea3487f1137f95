{% if cookiecutter.session_factory == "redis" -%}
"""Server-side sessions in Redis: the cookie carries only a signed session id.

Every process that shares Redis (one server, Sentinel or a Cluster: see ``redis/store.py``)
and the secret shares the sessions, so this is the factory for several processes or
machines. A session is one Redis hash: its data as JSON (never pickle) and its counters,
integers changed with HINCRBY, so concurrent requests from one browser never lose a count.
Deleting the hash revokes the session.
{%- else -%}
"""Server-side sessions in a SQL database: the cookie carries only a signed session id.

Every process that shares the database (an SQLite file on one machine, PostgreSQL for
several: see ``database/``) and the secret shares the sessions. A session is one
row: its data as JSON (never pickle) and its counters, integers changed by one atomic
UPDATE each, so concurrent requests from one browser never lose a count. Deleting the
row revokes the session.
{%- endif %}

Reading a session costs one round trip to the store, which also renews its expiry (the
SQL store's once a tenth of the idle timeout went by, in one more); a counter
incremented first thing loads the session in that same round trip (the app's counter
page costs one round trip). A changed
session is written back in one more round trip, after the view. When the store is down
or slow, requests that need the session get a 503 page within its timeout, and the app
recovers by itself as soon as the store answers again.

A sign-in tells the engine who signed in (``bind_user``): the store then knows each
user's sessions, to list them (``user_sessions``) and to end them (``end_user_session``,
``end_user_sessions``: for "sign out everywhere", a password change or a lock-out).
Ending is deleting, as forget is: immediate, and no request still running brings an
ended session back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, Protocol

from pyramid.config import Configurator
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from zope.interface import implementer

{% if cookiecutter.session_factory == "database" -%}
from .database import STORE_ERRORS, error_reason, make_store
{%- else -%}
from .redis import STORE_ERRORS, error_reason, make_store
{%- endif %}
from .serializers import JSONSerializer, RotatingSerializer, SignedSerializer
from .session_api import (
    SessionAPI,
    SessionCSRFPolicy,
    check_counter,
    check_userid,
    cookie_attributes,
    cookie_name,
    request_cookie,
)
from .settings import SessionSettings, session_settings
from .user_sessions import UserSession

log = logging.getLogger(__name__)

# The longest client address and user agent a sign-in keeps: enough to tell browsers apart.
MAX_ADDRESS, MAX_AGENT = 64, 200


class SessionStoreUnavailable(Exception):
    """The session store is down, or slower than its timeout: this request cannot have its
    session. The message names the store's own error; the app renders it (a 503 page)."""


class GuardedStore:
    """A store whose errors reach the app as SessionStoreUnavailable (theirs as the cause).
    Sessions use a store through its methods only (SessionStore)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        """The store's method ``name``, guarded once and then kept on this object (Python
        looks here only for what the object lacks: later requests call it directly)."""
        method = self.guard(getattr(self.store, name))
        setattr(self, name, method)
        return method

    @staticmethod
    def guard(method: Any) -> Any:
        """``method``, raising SessionStoreUnavailable for the store's errors."""

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except STORE_ERRORS as error:
                reason = f"{type(error).__name__}: {error_reason(error)}"
                raise SessionStoreUnavailable(reason) from error

        return guarded


class SessionIdSerializer:
    """Session ids are ASCII text: cheaper than JSON inside the signed cookie."""

    def dumps(self, appstruct: str) -> bytes:
        """Encode a session id."""
        return appstruct.encode("ascii")

    def loads(self, bstruct: bytes) -> str:
        """Decode a session id; non-ASCII input raises ValueError."""
        return bstruct.decode("ascii")


def session_handle(session_id: str) -> str:
    """A name for the session that cannot be turned back into its id: what the "your
    sessions" page shows and posts, so that its HTML never holds another session's id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()[:32]


def client_record(request: Request) -> str:
    """The client's address and user agent, as JSON text to keep beside the session
    (personal data: only with ``session.record_client``)."""
    address = (request.client_addr or "")[:MAX_ADDRESS]
    agent = (request.user_agent or "")[:MAX_AGENT]
    return json.dumps({"address": address, "agent": agent})


def read_client(record: str | bytes | None) -> tuple[str | None, str | None]:
    """The address and user agent ``client_record`` kept, or Nones when none was kept."""
    client = json.loads(record) if record else {}
    return client.get("address"), client.get("agent")


def new_session_id() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class SessionStore(Protocol):
    """Where sessions live, by id: every method is one round trip, and every write of an
    existing session (``new`` False) happens only while it is live, so a session revoked
    or expired during a request is never brought back."""

    def load(self, session_id: str) -> Sequence | None:
        """``(data, created)`` of the live session, its expiry renewed (if due), or None."""

    def load_and_increment(self, session_id: str, name: str, by: int) -> Sequence | None:
        """``(data, created, value)`` after adding ``by`` to the counter ``name``, or None."""

    def increment(self, session_id: str, name: str, by: int, new: bool) -> int | None:
        """The counter ``name`` plus ``by``; None when the session is gone."""

    def save(
        self, session_id: str, data: bytes, new: bool, owner: Sequence[str] | None = None
    ) -> None:
        """Store the session's JSON data; ``owner``, ``(userid, client record or "")``,
        when a sign-in bound it to a user."""

    def delete(self, session_id: str) -> None:
        """Revoke the session."""

    def reset_counter(self, session_id: str, name: str) -> None:
        """Set the counter ``name`` back to zero."""

    def move(self, old_id: str, new_id: str) -> bool:
        """Give the live session a new id, revoking the old one; False when it is gone."""

    def ping(self) -> None:
        """The cheapest round trip (for /readyz); raises the store's errors."""

    def bind(self, session_id: str, userid: str, created: int) -> None:
        """Get ready to keep the existing session as one of ``userid``'s (its data's next
        save names the owner): at most one round trip."""

    def user_sessions(self, userid: str) -> list[Sequence]:
        """``(session_id, created, expiry, client record or None)`` of each live session
        of ``userid``."""

    def end_user_session(self, userid: str, session_id: str) -> bool:
        """Revoke the session if it is one of ``userid``'s; whether it was."""

    def end_user_sessions(self, userid: str, keep: str | None = None) -> int:
        """Revoke every session of ``userid`` but ``keep``; how many there were."""


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
class ServerSession(SessionAPI, MutableMapping):
    """A session kept in the store under a random id; the cookie holds the id, signed.

    The data is loaded from the store when first used, in the same round trip as a
    counter's increment when that comes first. A subclass made by ``make_session_factory`` sets the
    class attributes.
    """

    store: SessionStore
    signer: RotatingSerializer
    cookie_name: str
    attributes: str
    timeout: int
    record_client: bool

    def __init__(self, request: Request) -> None:
        self.attach(request)
        self.owner: tuple[str, str] | None = None  # set by bind_user, saved with the data
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
            session_id, secret = self.signer.verify(value.encode("latin-1"))
        except (ValueError, UnicodeError):
            return None
        if secret > 0:  # a previous secret's: signed again with the current one
            self.send_cookie = True
            self.changed()
        return session_id

    # loading
    @property
    def data(self) -> dict:
        """The session's data, loaded on first use."""
        if self._data is None:
            self.use_stored(self.store.load(self.session_id))
        return self._data

    def use_stored(self, stored: list | None) -> bool:
        """Take ``[data, created, ...]`` from the store; False (a fresh session) if it is
        gone.

        The store already left out a session that is expired or of the wrong shape; data
        that is not a JSON object is deleted here.
        """
        data = None if stored is None else load_data(stored[0])
        if data is None:
            if stored is not None:
                self.store.delete(self.session_id)
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

    # counters: one atomic increment in the store each, never lost under concurrency
    def increment_counter(self, name: str, by: int) -> int:
        """Add ``by`` to the counter ``name`` atomically and return its new value; loads
        the session in the same round trip when it is not loaded yet."""
        check_counter(name, by)
        if self._data is None:
            stored = self.store.load_and_increment(self.session_id, name, by)
            if self.use_stored(stored):
                return int(stored[2])
        elif not self.new:
            value = self.store.increment(self.session_id, name, by, new=False)
            if value is not None:
                return int(value)
            log.debug("fresh session: the stored one was revoked during this request")
            self.start_afresh()
        if not by:
            return 0  # reading a counter makes no session
        return int(self.store.increment(self.ensure_id(), name, by, new=True))

    def reset_counter(self, name: str) -> None:
        """Set the counter ``name`` back to zero."""
        check_counter(name, 0)
        if self.session_id is not None:
            self.store.reset_counter(self.session_id, name)

    def regenerate(self) -> None:
        """Move the session, its counters included, to a new id with a new CSRF token.

        The old id is revoked. A session revoked meanwhile is not moved: this request
        goes on with a fresh one.
        """
        data = self.data
        if not self.new:
            old_id, self.session_id = self.session_id, new_session_id()
            if self.store.move(old_id, self.session_id):
                self.send_cookie = True
                self._data = data
            else:
                self.start_afresh()
        self.new_csrf_token()

    # the user's sessions
    def bind_user(self, userid: str, client: str) -> None:
        """Make the session one of ``userid``'s, with ``client`` (a client record, or "").

        The store's index must never name a session that is not there yet: a new session
        is stored first (only a sign-in without a stored session pays that round trip).
        """
        data = self.data
        if self.new:
            self.store.save(self.ensure_id(), JSON.dumps(data), new=True)
            self.new = False
        self.store.bind(self.session_id, userid, self.created)
        self.owner = (userid, client)
        self.changed()

    def user_sessions(self, userid: str) -> list[UserSession]:
        """``userid``'s live sessions, oldest first, this one marked."""
        rows = sorted(self.store.user_sessions(userid), key=lambda row: (int(row[1]), row[0]))
        return [self.user_session(*row) for row in rows]

    def user_session(
        self, session_id: str, created: int, expiry: int, client: str | None
    ) -> UserSession:
        """One row of the "your sessions" page."""
        address, agent = read_client(client) if self.record_client else (None, None)
        return UserSession(
            handle=session_handle(session_id),
            created=int(created),
            # A request sets the expiry one idle timeout ahead (the SQL store once a tenth of
            # it went by), but never past the absolute end: this is at most that much
            # earlier than the truth, or in a session's last idle period.
            last_seen=max(int(created), int(expiry) - self.timeout),
            current=session_id == self.session_id,
            address=address,
            user_agent=agent,
        )

    def end_user_session(self, userid: str, handle: str) -> bool:
        """End the session of ``userid`` that ``handle`` names; this one starts afresh."""
        if self.session_id is not None and handle == session_handle(self.session_id):
            self.invalidate()
            return True
        for session_id, *_ in self.store.user_sessions(userid):
            if session_handle(session_id) == handle:
                return self.store.end_user_session(userid, session_id)
        return False

    # ISession
    def invalidate(self) -> None:
        """Delete the session from the store (its cookie is revoked) and start afresh."""
        if self.session_id is not None:
            self.store.delete(self.session_id)
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
        """The response callback that writes the session to the store and sends its cookie."""
        if isinstance(request.exception, SessionStoreUnavailable):
            return  # the store just failed this request: the 503 page goes out as it is
        if self.has_data_to_store():
            self.ensure_id()
            self.store.save(self.session_id, JSON.dumps(self._data), self.new, self.owner)
        if self.send_cookie:
            response.headerlist.append(("Set-Cookie", self.set_cookie_header()))

    def has_data_to_store(self) -> bool:
        """Whether the data was loaded and belongs in the store: stored before, or not empty.

        Data never loaded is left as it is: a request may only re-sign the cookie.
        """
        return self._data is not None and (bool(self._data) or self.session_id is not None)

    def set_cookie_header(self) -> str:
        """The Set-Cookie header for the session id, or one that deletes the cookie."""
        if self.session_id is None:
            return f"{self.cookie_name}=; Max-Age=0{self.attributes}"
        value = self.signer.dumps(self.session_id).decode("ascii")
        return f"{self.cookie_name}={value}{self.attributes}"


def make_session_factory(settings: SessionSettings, store: SessionStore) -> type[ServerSession]:
    """A session class on ``store`` that signs session ids with the first secret and
    reads them with all."""
    signer = RotatingSerializer(
        [
            SignedSerializer(secret, "session-id.", SessionIdSerializer())
            for secret in settings.secret_bytes
        ]
    )
    attributes = {
        "store": GuardedStore(store),
        "signer": signer,
        "cookie_name": cookie_name(settings),
        "attributes": cookie_attributes(settings),
        "timeout": settings.timeout,
        "record_client": settings.record_client,
    }
    return type("ConfiguredServerSession", (ServerSession,), attributes)


def increment_counter(request: Request, name: str, by: int = 1) -> int:
    """Add ``by`` to the session's counter ``name`` (0 when it has none) and return the
    new value, atomically in the store: concurrent requests of one browser lose no step.
    ``by=0`` reads it. Names and steps as check_counter allows."""
    return request.session.increment_counter(name, by)


def reset_counter(request: Request, name: str) -> None:
    """Set the session's counter ``name`` back to zero."""
    request.session.reset_counter(name)


def regenerate_session(request: Request) -> None:
    """Move the session and its counters to a new id with a new CSRF token; the old id is
    revoked (call it at login)."""
    request.session.regenerate()


def forget_session(request: Request) -> None:
    """Delete the session and its counters from the store: the old cookie is revoked."""
    request.session.invalidate()


def registry_store(registry: Registry) -> GuardedStore:
    """The store behind the app's session factory, for what no one session does (its
    errors reach the caller as SessionStoreUnavailable)."""
    return registry.getUtility(ISessionFactory).store


def bind_user(request: Request, userid: str) -> None:
    """Keep the session as one of ``userid``'s, so that the user can list and end it: call
    it when the user signs in, after ``regenerate_session`` (one more round trip to the
    store, once). With ``session.record_client``, the client's address and user agent are
    kept beside it."""
    check_userid(userid)
    session = request.session
    session.bind_user(userid, client_record(request) if session.record_client else "")


def user_sessions(request: Request, userid: str) -> list[UserSession]:
    """``userid``'s live sessions (created, last seen, this request's one marked), oldest
    first: what the "your sessions" page lists."""
    return request.session.user_sessions(userid)


def end_user_session(request: Request, userid: str, handle: str) -> bool:
    """End ``userid``'s session that ``handle`` (a ``UserSession.handle``) names, at once;
    False when it is not one of theirs (ended already, or never)."""
    return request.session.end_user_session(userid, handle)


def end_user_sessions(
    registry_or_request: Registry | Request, userid: str, keep: Request | None = None
) -> int:
    """End every session of ``userid`` at once but ``keep``'s (a request: "sign out
    everywhere else"); how many ended. For a password change or a lock-out, from a view
    (the request) or a script (the app's registry). A request of the user still running
    cannot bring an ended session back."""
    registry = getattr(registry_or_request, "registry", registry_or_request)
    kept = None if keep is None else keep.session.session_id
    return registry_store(registry).end_user_sessions(userid, kept)


def session_store_error(request: Request) -> str | None:
    """Why the session store cannot serve now (its error, as the 503 page's log line names
    it), or None when it answers within its timeout: one cheap round trip, for a readiness
    probe. ``request.session`` is left alone: no session is made, no cookie sent."""
    try:
        registry_store(request.registry).ping()
    except SessionStoreUnavailable as error:
        return str(error)
    return None


def includeme(config: Configurator) -> None:
    """Install the session factory and its store, configured by the ``session.*``
    settings, and keep Pyramid's CSRF tokens in the session."""
    settings = session_settings(config.get_settings())
    store = make_store(config.get_settings(), os.environ, settings)
    config.set_session_factory(make_session_factory(settings, store))
    config.set_csrf_storage_policy(SessionCSRFPolicy())

{%- set signed = cookiecutter.session_factory == "signed_cookie" -%}
"""{{ "Signed" if signed else "Encrypted" }} cookie sessions: the whole session travels in one cookie.

{% if signed -%}
The cookie is signed with HMAC-SHA512: nobody can change it, but anyone holding it can
read it (base64 JSON), so keep secrets out of the session.
{%- else -%}
The cookie is encrypted and authenticated with PyNaCl's SecretBox (XSalsa20-Poly1305):
nobody can read or change it without the secret.
{%- endif %}

What a cookie session cannot promise, and how this module copes:

* Size: browsers keep about 4 KB per cookie. A session that outgrows it is handed to an
  overflow handler: ``drop_flash_queues`` unless the app sets its own
  (``config.set_session_overflow_handler``; this app's also says so in a message). If it
  still does not fit, it starts afresh, with a log line each time, instead of failing the
  request.
* Revocation: ``invalidate()`` empties the session in the browser that sends the next
  request, but a copy of an older cookie stays valid until it times out: when idle for
  ``session.timeout``, and however active ``session.absolute_timeout`` after the session
  was created. Use a server-side store when sessions must be revocable on the server.
* A user's other sessions: each lives in its own browser, and the server keeps no list of
  them. ``user_sessions`` lists only the current one and ``end_user_sessions`` ends only
  the current one (the names are the server stores', so views work with either store).
* Concurrency: two requests sent at once with the same cookie both start from the same
  data (counters too), and the cookie written last wins; sequential requests never lose
  a count.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
{%- if not signed %}
from pyramid_nacl_session import EncryptedSerializer
{%- endif %}
from zope.interface import implementer

from .serializers import (
    JSONSerializer,
    RotatingSerializer,
    Serializer,
{%- if signed %}
    SignedSerializer,
{%- endif %}
)
from .session_api import (
    COUNTER_LIMIT,
    FLASH_KEY_PREFIX,
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

# The one handle user_sessions gives: the current session's.
CURRENT_SESSION = "current"
COUNTER_KEY_PREFIX = "_c_"  # a counter's key in the session, beside Pyramid's "_f_" ones
# What Pyramid allows. Chromium keeps a cookie whose name and value make 4096 bytes at most:
# __Host-session (14) and 4064 make 4078 (checked in Chromium by the template's tests).
MAX_COOKIE_VALUE = 4064
# The discriminator of set_session_overflow_handler (Pyramid refuses two in one app).
OVERFLOW_HANDLER = f"{__name__}.overflow_handler"
OverflowHandler = Callable[[ISession], None]


def secret_serializer(secret: bytes) -> Serializer:
    """The serializer that {{ "signs" if signed else "encrypts" }} session JSON with one secret."""
{%- if signed %}
    return SignedSerializer(secret, salt="pyramid.session.", serializer=JSONSerializer())
{%- else %}
    return EncryptedSerializer(secret, serializer=JSONSerializer())
{%- endif %}


def parse_payload(payload: Any) -> tuple[int, int, dict] | None:
    """``(accessed, created, data)`` from a verified cookie, or None if it has another shape.

    The shape is Pyramid's cookie sessions' own, so either can read the other's cookies.
    """
    if not (isinstance(payload, list) and len(payload) == 3):
        return None
    accessed, created, data = payload
    if not (is_number(accessed) and is_number(created) and isinstance(data, dict)):
        return None
    return int(accessed), int(created), data


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (a timestamp, in a session payload); a
    plain int, the common case, is one without further checks."""
    return type(value) is int or (isinstance(value, int | float) and math.isfinite(value))


def drop_flash_queues(session: ISession) -> None:
    """The engine's own overflow handler: every flash queue goes (Pyramid's default one, the
    app's, any other), and the data and the CSRF token stay."""
    for key in [key for key in session if key.startswith(FLASH_KEY_PREFIX)]:
        del session[key]


def changes(method: Callable) -> Callable:
    """Wrap a dict method so that calling it marks the session changed."""

    @functools.wraps(method)
    def changing(session: CookieSession, *args: Any, **kwargs: Any) -> Any:
        session.changed()
        return method(session, *args, **kwargs)

    return changing


@implementer(ISession)
class CookieSession(SessionAPI, dict):
    """A session that lives in one {{ "signed" if signed else "encrypted" }} cookie.

    Pyramid's ``BaseCookieSessionFactory`` does the same job; this class reads and writes
    the same cookie format with less work per request: the cookie is read from the Cookie
    header directly, the session is stamped when it is loaded (not on every read), and the
    Set-Cookie header is written directly, since its attributes never change. A subclass
    made by ``make_session_factory`` sets the class attributes.
    """

    serializer: Serializer
    make_room = staticmethod(drop_flash_queues)  # or the app's (set_session_overflow_handler)
    timeout: int
    absolute_timeout: int
    reissue_time: int
    cookie_name: str
    attributes: str

    def __init__(self, request: Request) -> None:
        self.attach(request)
        now = int(time.time())
        loaded = self.load(request.environ.get("HTTP_COOKIE", ""))
        # Idle too long, or older than the absolute timeout however active: a new session.
        if (
            loaded is None
            or now - loaded[0] > self.timeout
            or now - loaded[1] > self.absolute_timeout
        ):
            self.new, self.created, data = True, now, {}
        else:
            accessed, self.created, data = loaded
            self.new = False
            if now - accessed > self.reissue_time:
                self.changed()  # extend the idle timeout of a session in use
        super().__init__(data)

    @classmethod
    def load(cls, header: str) -> tuple[int, int, dict] | None:
        """The session in the Cookie ``header``, or None when it is missing or not ours."""
        value = request_cookie(header, cls.cookie_name)
        if not value:
            return None
        try:
            return parse_payload(cls.serializer.loads(value.encode("latin-1")))
        except (ValueError, TypeError, UnicodeError):
            return None

    # ISession
    def invalidate(self) -> None:
        """Start a new, empty session; the browser receives a cookie with nothing in it.

        Copies of the old cookie stay valid until they time out (see the module's notes).
        """
        self.clear()
        self.created = int(time.time())

    # dict methods that change the session
    __setitem__ = changes(dict.__setitem__)
    __delitem__ = changes(dict.__delitem__)
    clear = changes(dict.clear)
    pop = changes(dict.pop)
    popitem = changes(dict.popitem)
    setdefault = changes(dict.setdefault)
    update = changes(dict.update)

    # writing the cookie
    def serialized(self) -> str:
        """The cookie value for the session as it is now."""
        # The session itself, not a copy: the JSON encoder takes a dict's subclass as a dict.
        payload = (int(time.time()), self.created, self)
        return self.serializer.dumps(payload).decode("ascii")

    def cookie_value(self) -> str:
        """The cookie value, once it fits in MAX_COOKIE_VALUE: after the overflow handler
        (the engine's ``drop_flash_queues``, or the app's) made room, or else as a new
        session."""
        value = self.serialized()
        if len(value) > MAX_COOKIE_VALUE:
            log.warning("session cookie of %d bytes: the overflow handler makes room", len(value))
            self.make_room(self)
            value = self.serialized()
        if len(value) > MAX_COOKIE_VALUE:
            log.error("session cookie of %d bytes that cannot shrink: a new session", len(value))
            self.clear()
            value = self.serialized()
        return value

    def write_back(self, request: Request, response: Response) -> None:
        """The response callback that sends the session in its Set-Cookie header."""
        header = f"{self.cookie_name}={self.cookie_value()}{self.attributes}"
        response.headerlist.append(("Set-Cookie", header))


def make_session_factory(settings: SessionSettings) -> type[CookieSession]:
    """A cookie session class that {{ "signs" if signed else "encrypts" }} with the first secret and reads with all."""
    serializers = [secret_serializer(key) for key in settings.secret_bytes]
    return type(
        "ConfiguredCookieSession",
        (CookieSession,),
        {
            "serializer": RotatingSerializer(serializers),
            "timeout": settings.timeout,
            "absolute_timeout": settings.absolute_timeout,
            "reissue_time": settings.reissue_time,
            "cookie_name": cookie_name(settings),
            "attributes": cookie_attributes(settings),
        },
    )


def increment_counter(request: Request, name: str, by: int = 1) -> int:
    """Add ``by`` to the session's counter ``name`` (0 when it has none) and return the
    new value; ``by=0`` reads it. Names and steps as check_counter allows."""
    check_counter(name, by)
    session, key = request.session, COUNTER_KEY_PREFIX + name
    value = session.get(key)
    if type(value) is not int or abs(value) >= COUNTER_LIMIT:
        value = 0
    if by:
        session[key] = value = value + by
    return value


def reset_counter(request: Request, name: str) -> None:
    """Set the session's counter ``name`` back to zero."""
    check_counter(name, 0)
    request.session.pop(COUNTER_KEY_PREFIX + name, None)


def regenerate_session(request: Request) -> None:
    """Issue a fresh cookie with a new CSRF token and the same data (call it at login)."""
    request.session.new_csrf_token()


def forget_session(request: Request) -> None:
    """Empty the session; the browser receives an empty cookie."""
    request.session.invalidate()


def bind_user(request: Request, userid: str) -> None:
    """Nothing to keep: the server stores list a user's sessions, a cookie store cannot.
    The id is checked as they check it, so that a project can change its store."""
    check_userid(userid)


def user_sessions(request: Request, userid: str) -> list[UserSession]:
    """The current session only: a cookie store knows no other (see the module's notes)."""
    session = request.session
    now = int(time.time())
    return [UserSession(CURRENT_SESSION, session.created, now, current=True)]


def end_user_session(request: Request, userid: str, handle: str) -> bool:
    """End the current session if ``handle`` names it (the only one this store can end)."""
    if handle != CURRENT_SESSION:
        return False
    request.session.invalidate()
    return True


def end_user_sessions(
    registry_or_request: Registry | Request, userid: str, keep: Request | None = None
) -> int:
    """End the current session, unless it is kept: the only one a cookie store can end.
    Copies of its cookie, and the user's other browsers, stay signed in until they time
    out. Given the registry (a script), there is nothing to end: 0."""
    request = registry_or_request if hasattr(registry_or_request, "session") else None
    if request is None or keep is request:
        return 0
    request.session.invalidate()
    return 1


def session_store_error(request: Request) -> str | None:
    """Always None: the session travels in the cookie, there is no store that could be
    down (the server stores' readiness check, here for /readyz all the same)."""
    return None


def set_session_overflow_handler(config: Configurator, handler: OverflowHandler) -> None:
    """The config directive ``config.set_session_overflow_handler(handler)``: call
    ``handler(session)`` when the session outgrows its cookie, to make room."""
    handler = config.maybe_dotted(handler)

    def register() -> None:
        """Hand the handler to this engine's session class: an app may have set a session
        factory of its own instead, which keeps its own ways."""
        factory = config.registry.queryUtility(ISessionFactory)
        if isinstance(factory, type) and issubclass(factory, CookieSession):
            factory.make_room = staticmethod(handler)

    # After the actions of the default order: the session factory is registered by then.
    config.action(OVERFLOW_HANDLER, register, order=1)


def includeme(config: Configurator) -> None:
    """Install the cookie session factory configured by the ``session.*`` settings, keep
    Pyramid's CSRF tokens in the session, and add set_session_overflow_handler."""
    config.set_session_factory(make_session_factory(session_settings(config.get_settings())))
    config.set_csrf_storage_policy(SessionCSRFPolicy())
    config.add_directive("set_session_overflow_handler", set_session_overflow_handler)

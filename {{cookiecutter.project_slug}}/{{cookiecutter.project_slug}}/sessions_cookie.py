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

* Size: browsers keep about 4 KB per cookie. Flash messages are capped (see ``flash``)
  and a session that still outgrows the cookie drops its flash messages, then starts
  afresh, with a log line each time, instead of failing the request.
* Revocation: ``invalidate()`` empties the session in the browser that sends the next
  request, but a copy of an older cookie stays valid until it times out. Use the Redis
  factory when sessions must be revocable on the server.
* Concurrency: two requests sent at once with the same cookie both start from the same
  counter, and the cookie written last wins; sequential requests never lose a count.
"""

from __future__ import annotations

import logging

from pyramid.config import Configurator
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from pyramid.session import BaseCookieSessionFactory
{%- if not signed %}
from pyramid_nacl_session import EncryptedSerializer
{%- endif %}

from .flash import QUEUE, flash
from .serializers import (
    JSONSerializer,
    RotatingSerializer,
    Serializer,
{%- if signed %}
    SignedSerializer,
{%- endif %}
)
from .settings import SessionSettings, session_settings

log = logging.getLogger(__name__)

COOKIE_NAME = "session"
COUNTER_KEY = "counter"
MAX_COOKIE_VALUE = 4064  # what Pyramid allows; browsers keep 4096 bytes per cookie
DROPPED_MESSAGES_NOTICE = "Some messages were dropped to keep your session small."


def secret_serializer(secret: bytes) -> Serializer:
    """The serializer that {{ "signs" if signed else "encrypts" }} session JSON with one secret."""
{%- if signed %}
    return SignedSerializer(secret, salt="pyramid.session.", serializer=JSONSerializer())
{%- else %}
    return EncryptedSerializer(secret, serializer=JSONSerializer())
{%- endif %}


def cookie_attributes(settings: SessionSettings) -> str:
    """What follows the value in every Set-Cookie header of the session."""
    return "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if settings.secure else "")


def make_session_factory(settings: SessionSettings) -> type[ISession]:
    """A cookie session factory that signs with the first secret and reads with all."""
    serializer = RotatingSerializer([secret_serializer(key) for key in settings.secret_bytes])
    attributes = cookie_attributes(settings)
    base = BaseCookieSessionFactory(
        serializer,
        cookie_name=COOKIE_NAME,
        timeout=settings.timeout,
        reissue_time=settings.reissue_time,
    )

    class CookieSession(base):
        """Pyramid's cookie session, written faster, and shrunk rather than failing."""

        def serialized(self) -> str:
            """The cookie value for the session as it is now."""
            return serializer.dumps((self.accessed, self.created, dict(self))).decode("ascii")

        def cookie_value(self) -> str:
            """The cookie value, after dropping what does not fit in MAX_COOKIE_VALUE."""
            value = self.serialized()
            if len(value) > MAX_COOKIE_VALUE:
                dropped = len(self.pop_flash(QUEUE))
                log.warning("session cookie of %d bytes: dropped %d messages", len(value), dropped)
                flash(self, "warning", DROPPED_MESSAGES_NOTICE)
                value = self.serialized()
            if len(value) > MAX_COOKIE_VALUE:
                log.error("session cookie of %d bytes without messages: a new session", len(value))
                self.clear()
                value = self.serialized()
            return value

        def _set_cookie(self, response: Response) -> bool:
            # Pyramid's own builds the header through WebOb's general cookie machinery;
            # these attributes never change, so the header is written directly.
            header = f"{COOKIE_NAME}={self.cookie_value()}{attributes}"
            response.headerlist.append(("Set-Cookie", header))
            return True

    return CookieSession


def increment_counter(request: Request) -> int:
    """Count one visit in the session and return the new total."""
    session = request.session
    count = session.get(COUNTER_KEY)
    session[COUNTER_KEY] = count = (count if isinstance(count, int) else 0) + 1
    return count


def reset_counter(request: Request) -> None:
    """Set the visit counter back to zero."""
    request.session.pop(COUNTER_KEY, None)


def regenerate_session(request: Request) -> None:
    """Issue a fresh cookie with a new CSRF token and the same data (call it at login)."""
    request.session.new_csrf_token()


def forget_session(request: Request) -> None:
    """Empty the session; the browser receives an empty cookie."""
    request.session.invalidate()


def includeme(config: Configurator) -> None:
    """Install the cookie session factory configured by the ``session.*`` settings."""
    config.set_session_factory(make_session_factory(session_settings(config.get_settings())))

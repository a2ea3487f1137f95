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
DROPPED_MESSAGES_NOTICE = "Some messages were dropped to keep your session small."


def secret_serializer(secret: bytes) -> Serializer:
    """The serializer that {{ "signs" if signed else "encrypts" }} session JSON with one secret."""
{%- if signed %}
    return SignedSerializer(secret, salt="pyramid.session.", serializer=JSONSerializer())
{%- else %}
    return EncryptedSerializer(secret, serializer=JSONSerializer())
{%- endif %}


def make_session_factory(settings: SessionSettings) -> type[ISession]:
    """A cookie session factory that signs with the first secret and reads with all."""
    base = BaseCookieSessionFactory(
        RotatingSerializer([secret_serializer(secret) for secret in settings.secret_bytes]),
        cookie_name=COOKIE_NAME,
        secure=settings.secure,
        httponly=True,
        samesite="Lax",
        timeout=settings.timeout,
        reissue_time=settings.reissue_time,
    )

    class CookieSession(base):
        """A cookie session that shrinks itself rather than fail when it outgrows the cookie."""

        def _set_cookie(self, response: Response) -> bool:
            try:
                return super()._set_cookie(response)
            except ValueError as error:  # Pyramid refuses cookies over 4064 bytes
                dropped = len(self.pop_flash(QUEUE))
                log.warning("%s: dropped %d flash messages", error, dropped)
                flash(self, "warning", DROPPED_MESSAGES_NOTICE)
            try:
                return super()._set_cookie(response)
            except ValueError as error:
                log.error("%s even without flash messages: starting a fresh session", error)
                self.clear()
                return super()._set_cookie(response)

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

{%- set cookie = cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") -%}
"""The session engine: ``request.session`` for every view, kept {{ "in one signed cookie" if cookiecutter.session_factory == "signed_cookie" else "in one encrypted cookie" if cookie else "in Redis" if cookiecutter.session_factory == "redis" else "in a SQL database" }}.

The app includes it (``config.include(".sessions")``) and reads and writes
``request.session`` as a dict; the ``session.*`` settings configure it (settings.py), and
Pyramid's CSRF tokens are kept in it. What views need beyond the dict is imported from here:

- ``regenerate_session(request)``: call it when a user logs in (or their rights change):
  the session keeps its data under a new CSRF token{{ "" if cookie else " and a new id; the old id is revoked" }}.
- ``forget_session(request)``: log out: the session is emptied{{ "" if cookie else " and deleted from the store" }}.
- ``bind_user(request, userid)``: call it at login, after ``regenerate_session``: the
  session becomes one of the user's{{ " (nothing to keep in a cookie store)" if cookie else ", which the store can list and end" }}.
- ``user_sessions(request, userid)``: the user's sessions (``UserSession``: created, last
  seen, the current one marked){{ ": in a cookie store, the current one only" if cookie else "" }}.
- ``end_user_session(request, userid, handle)``: end the session a ``UserSession.handle``
  names; ``end_user_sessions(registry_or_request, userid, keep=None)``: end every one
  but ``keep``'s (a request), for "sign out everywhere", a password change or a lock-out.
{%- if cookie %}
  A cookie store can end the current session only.
{%- endif %}
- ``increment_counter(request, name, by=1)``: add ``by`` to the session's counter ``name``
  and get its new value (``by=0`` reads it); ``reset_counter(request, name)`` sets it
  back to zero. A counter is not one of the dict's keys: the app's visit counter is the
  counter named ``visits`` (views.py).
{%- if not cookie %} Each increment is atomic in the store: concurrent
  requests of one browser lose no step (a visit count, quantities in a cart, attempts).
{%- endif %}
{%- if cookie %}
- ``config.set_session_overflow_handler(handler)``: ``handler(session)`` makes room when
  the session outgrows its cookie, instead of ``drop_flash_queues(session)`` (every flash
  queue goes); what still does not fit starts a new session.
{%- else %}
- ``SessionStoreUnavailable``: raised when the store is down or slower than its timeout;
  the app renders it (views.py: a 503 page).
{%- endif %}
{%- if cookie %}
- ``session_store_error(request)``: always None, there is no store to be down (the
  server stores' readiness check: /readyz calls it).
{%- else %}
- ``session_store_error(request)``: None when the store answers within its timeout, else
  its error (one cheap round trip, no session made): /readyz calls it.
{%- endif %}

The engine imports nothing of the app: what the app decides (pages, messages) reaches it
through these calls.
"""

from __future__ import annotations

{% if cookie -%}
from .cookie import (
    bind_user,
    drop_flash_queues,
    end_user_session,
    end_user_sessions,
    forget_session,
    includeme,
    increment_counter,
    regenerate_session,
    reset_counter,
    session_store_error,
    user_sessions,
)
{%- else -%}
from .server import (
    SessionStoreUnavailable,
    bind_user,
    end_user_session,
    end_user_sessions,
    forget_session,
    includeme,
    increment_counter,
    regenerate_session,
    reset_counter,
    session_store_error,
    user_sessions,
)
{%- endif %}
from .settings import SettingsError
from .user_sessions import UserSession

__all__ = [
{%- if not cookie %}
    "SessionStoreUnavailable",
{%- endif %}
    "SettingsError",
    "UserSession",
    "bind_user",
{%- if cookie %}
    "drop_flash_queues",
{%- endif %}
    "end_user_session",
    "end_user_sessions",
    "forget_session",
    "includeme",
    "increment_counter",
    "regenerate_session",
    "reset_counter",
    "session_store_error",
    "user_sessions",
]

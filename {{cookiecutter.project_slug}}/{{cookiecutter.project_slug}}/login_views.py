{%- set cookie = cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") -%}
"""Signing in and out: the form at /login, the sign-out button of the layout, and the
signed-in user's sessions at /sessions.

Signing in and out renew the session (``sessions.regenerate_session``,
``sessions.forget_session``), then redirect (POST-redirect-GET), so that the next page
carries the new CSRF token. The CSRF check itself comes first, for every POST
(``hardening/``): another site cannot sign a visitor in to an account of its choosing,
nor end their sessions.
"""

from __future__ import annotations

import time

from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.security import forget, remember
from pyramid.view import forbidden_view_config, view_config

from . import auth, sessions
from .flash import flash
from .layout import ERROR_TEMPLATE, error_page, page

LOGIN_TEMPLATE = f"{__package__}:templates/login.pt"
SESSIONS_TEMPLATE = f"{__package__}:templates/sessions.pt"
# One message for an unknown user and a wrong password: which one it was would tell an
# attacker which user names exist.
FAILED_MESSAGE = "Wrong user name or password."
# Longer input is refused unhashed: no one's password is longer, and the work grows with it.
MAX_LOGIN_LENGTH = 100
MAX_PASSWORD_LENGTH = 1024
{%- if cookie %}
# A cookie session cannot end another browser's: the forms say what they did.
ENDED_ELSEWHERE = "Other browsers keep their sessions in their own cookies: none was ended."
SIGNED_OUT_EVERYWHERE = "Signed out in this browser (other browsers keep their own cookies)."
{%- else %}
ENDED_ELSEWHERE = "Signed out everywhere else ({ended} ended)."
SIGNED_OUT_EVERYWHERE = "Signed out everywhere."
{%- endif %}


def sign_in_page(request: Request, login: str = "", message: str = "") -> dict:
    """The sign-in form, with ``login`` filled in and ``message`` above it."""
    return page(
        request,
        "Sign in",
        login=login,
        message=message,
        csrf_token=get_csrf_token(request),
        max_login_length=MAX_LOGIN_LENGTH,
        max_password_length=MAX_PASSWORD_LENGTH,
    )


def authenticate(request: Request, login: str, password: str) -> str | None:
    """The user id ``auth.check_credentials`` gives, for input of a sane size only."""
    if len(login) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        return None
    return auth.check_credentials(request, login, password)


@view_config(route_name="login", request_method="GET", renderer=LOGIN_TEMPLATE)
def sign_in_form(request: Request) -> dict:
    """The sign-in form."""
    return sign_in_page(request)


@view_config(route_name="login", request_method="POST", renderer=LOGIN_TEMPLATE)
def sign_in(request: Request) -> HTTPSeeOther | dict:
    """Sign the user in and go home, or show the form again with the one generic message.

    The session is renewed before the user's id goes in (a new id, the old one revoked
    where the store can, and a new CSRF token): a session id or token that someone planted
    or saw before the sign-in is worth nothing after it (session fixation).
    """
    login = request.POST.get("login", "")
    userid = authenticate(request, login, request.POST.get("password", ""))
    if userid is None:
        return sign_in_page(request, login=login[:MAX_LOGIN_LENGTH], message=FAILED_MESSAGE)
    sessions.regenerate_session(request)
    sessions.bind_user(request, userid)  # the store can list and end the user's sessions
    headers = remember(request, userid)
    flash(request.session, "success", f"Signed in as {userid}.")
    return HTTPSeeOther(location=request.route_path("home"), headers=headers)


@view_config(route_name="logout", request_method="POST")
def sign_out(request: Request) -> HTTPSeeOther:
    """Sign the user out: the whole session ends (deleted from the store where it is kept
    on the server, so a copy of the old cookie is signed in no more), then go home."""
    return signed_out(request, "Signed out.")


def signed_out(request: Request, message: str) -> HTTPSeeOther:
    """End this session, then go home with ``message`` in the fresh one."""
    headers = forget(request)
    sessions.forget_session(request)
    flash(request.session, "info", message)
    return HTTPSeeOther(location=request.route_path("home"), headers=headers)


# ---- your sessions -----------------------------------------------------------------


@forbidden_view_config(renderer=ERROR_TEMPLATE)
def forbidden(request: Request) -> HTTPSeeOther | dict:
    """A page the security policy refuses (a view's ``permission=``): a visitor is sent
    to sign in; a signed-in user gets the 403 page (this app refuses no signed-in user a
    page, but a permission of yours may)."""
    if request.authenticated_userid is None:
        return HTTPSeeOther(location=request.route_path("login"))
    return error_page(request, 403, "Forbidden", "This page is not open to your account.")


def to_your_sessions(request: Request) -> HTTPSeeOther:
    """Back to /sessions after a form (POST-redirect-GET)."""
    return HTTPSeeOther(location=request.route_path("sessions"))


def when(seconds: int) -> str:
    """A moment as the page shows it (UTC: the server knows no visitor's time zone)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless there is one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@view_config(
    route_name="sessions",
    request_method="GET",
    permission=auth.SIGNED_IN,
    renderer=SESSIONS_TEMPLATE,
)
def your_sessions(request: Request) -> dict:
    """The signed-in user's sessions, this one marked, each other one with a button that
    ends it. The client's address and browser show only where the store kept them
    (``session.record_client``)."""
    rows = sessions.user_sessions(request, request.authenticated_userid)
    return page(
        request,
        "Your sessions",
        rows=rows,
        show_client=any(row.address is not None for row in rows),
        when=when,
        csrf_token=get_csrf_token(request),
    )


@view_config(route_name="end_session", request_method="POST", permission=auth.SIGNED_IN)
def end_session(request: Request) -> HTTPSeeOther:
    """End the one session the form names (by its handle), if it is the user's."""
    userid, handle = request.authenticated_userid, request.POST.get("session", "")
    if sessions.end_user_session(request, userid, handle):
        flash(request.session, "success", "The session was ended: it is signed out.")
    else:
        flash(request.session, "info", "That session had ended already.")
    return to_your_sessions(request)


@view_config(route_name="end_other_sessions", request_method="POST", permission=auth.SIGNED_IN)
def end_other_sessions(request: Request) -> HTTPSeeOther:
    """Sign out everywhere else: every session of the user but this one ends."""
    ended = sessions.end_user_sessions(request, request.authenticated_userid, keep=request)
    ended = plural(ended, "session")
    flash(request.session, "success", ENDED_ELSEWHERE.format(ended=ended))
    return to_your_sessions(request)


@view_config(route_name="end_all_sessions", request_method="POST", permission=auth.SIGNED_IN)
def end_all_sessions(request: Request) -> HTTPSeeOther:
    """Sign out everywhere: every session of the user ends, this one too."""
    sessions.end_user_sessions(request, request.authenticated_userid)
    return signed_out(request, SIGNED_OUT_EVERYWHERE)

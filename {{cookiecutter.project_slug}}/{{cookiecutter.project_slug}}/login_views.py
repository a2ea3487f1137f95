"""Signing in and out: the form at /login, and the sign-out button of the layout.

Both renew the session (``sessions.regenerate_session``, ``sessions.forget_session``), then
redirect (POST-redirect-GET), so that the next page carries the new CSRF token. The CSRF
check itself comes first, for every POST (``hardening/``): another site cannot sign a
visitor in to an account of its choosing.
"""

from __future__ import annotations

from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.security import forget, remember
from pyramid.view import view_config

from . import auth, sessions
from .flash import flash
from .layout import page

LOGIN_TEMPLATE = f"{__package__}:templates/login.pt"
# One message for an unknown user and a wrong password: which one it was would tell an
# attacker which user names exist.
FAILED_MESSAGE = "Wrong user name or password."
# Longer input is refused unhashed: no one's password is longer, and the work grows with it.
MAX_LOGIN_LENGTH = 100
MAX_PASSWORD_LENGTH = 1024


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


def authenticate(login: str, password: str) -> str | None:
    """The user id ``auth.check_credentials`` gives, for input of a sane size only."""
    if len(login) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        return None
    return auth.check_credentials(login, password)


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
    userid = authenticate(login, request.POST.get("password", ""))
    if userid is None:
        return sign_in_page(request, login=login[:MAX_LOGIN_LENGTH], message=FAILED_MESSAGE)
    sessions.regenerate_session(request)
    headers = remember(request, userid)
    flash(request.session, "success", f"Signed in as {userid}.")
    return HTTPSeeOther(location=request.route_path("home"), headers=headers)


@view_config(route_name="logout", request_method="POST")
def sign_out(request: Request) -> HTTPSeeOther:
    """Sign the user out: the whole session ends (deleted from the store where it is kept
    on the server, so a copy of the old cookie is signed in no more), then go home."""
    headers = forget(request)
    sessions.forget_session(request)
    flash(request.session, "info", "Signed out.")
    return HTTPSeeOther(location=request.route_path("home"), headers=headers)

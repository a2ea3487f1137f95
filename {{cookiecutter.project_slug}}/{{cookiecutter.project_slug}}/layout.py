"""What every page template receives: the values ``templates/layout.pt`` needs (the
project's name, the title, the flash messages, who is signed in), for the pages and the
error pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyramid.csrf import get_csrf_token
from pyramid.request import Request

from .flash import pop_flash_groups

# Absolute asset specs: pyramid_chameleon resolves a relative one again on every render.
COUNTER_TEMPLATE = f"{__package__}:templates/counter.pt"
ERROR_TEMPLATE = f"{__package__}:templates/error.pt"


@dataclass(frozen=True)
class Account:
    """The layout's account corner: who is signed in (None: a "Sign in" link), and the
    CSRF token of the sign-out button."""

    userid: str | None
    csrf_token: str = ""


def account(request: Request) -> Account:
    """Who is signed in, from the security policy (``auth.py``)."""
    userid = request.authenticated_userid
    if userid is None:
        return Account(None)
    return Account(userid, get_csrf_token(request))


def page(request: Request, title: str, *, show_flash: bool = True, **values: Any) -> dict:
    """The values the layout needs plus ``values``.

    Flash messages and the account corner are read from the session only when
    ``show_flash`` is true: error pages leave the messages queued for the next page, and
    must not touch a broken session (they show no account corner).
    """
    return {
        "project_name": request.registry.settings.get("app.project_name", ""),
        "title": title,
        "flash_groups": pop_flash_groups(request.session) if show_flash else (),
        "account": account(request) if show_flash else None,
        **values,
    }


def error_page(request: Request, status: int, title: str, message: str) -> dict:
    """An error page with ``status`` that leaves the session alone."""
    request.response.status_int = status
    return page(request, title, show_flash=False, message=message)

"""What every page template receives: the values ``templates/layout.pt`` needs (the
project's name, the title, the flash messages), for the pages and the error pages."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request

from .flash import pop_flash_groups

# Absolute asset specs: pyramid_chameleon resolves a relative one again on every render.
COUNTER_TEMPLATE = f"{__package__}:templates/counter.pt"
ERROR_TEMPLATE = f"{__package__}:templates/error.pt"


def page(request: Request, title: str, *, show_flash: bool = True, **values: Any) -> dict:
    """The values the layout needs plus ``values``.

    Flash messages are taken from the session only when ``show_flash`` is true: error
    pages leave them queued for the next page (and must not touch a broken session).
    """
    return {
        "project_name": request.registry.settings.get("app.project_name", ""),
        "title": title,
        "flash_groups": pop_flash_groups(request.session) if show_flash else (),
        **values,
    }


def error_page(request: Request, status: int, title: str, message: str) -> dict:
    """An error page with ``status`` that leaves the session alone."""
    request.response.status_int = status
    return page(request, title, show_flash=False, message=message)

"""The counter pages, the forms that change the session, and the error pages."""

from __future__ import annotations

from pyramid.csrf import get_csrf_token
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPBadRequest, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import exception_view_config, notfound_view_config, view_config, view_defaults

from . import sessions
from .flash import CATEGORIES, flash
from .pages import COUNTER_TEMPLATE, ERROR_TEMPLATE, error_page, page

RESET_MESSAGE = "The counter was reset: it starts again at 1 on this page."


@view_defaults(renderer=COUNTER_TEMPLATE, request_method="GET")
class CounterViews:
    """Two pages that share one session counter (Pyramid's quick tutorial, "sessions")."""

    def __init__(self, request: Request) -> None:
        self.request = request

    @property
    def counter(self) -> int:
        """Count this visit and return the total."""
        return sessions.increment_counter(self.request)

    @view_config(route_name="home")
    def home(self) -> dict:
        """The home page."""
        return self.counter_page("Home")

    @view_config(route_name="howdy")
    def howdy(self) -> dict:
        """A second page on the same counter."""
        return self.counter_page("Howdy")

    def counter_page(self, title: str) -> dict:
        """A counter page: count the visit, and give the forms their CSRF token once."""
        return page(
            self.request,
            title,
            counter=self.counter,
            categories=CATEGORIES,
            csrf_token=get_csrf_token(self.request),
        )


class SeeOtherPath(HTTPSeeOther):
    """A 303 whose Location header goes out as the path it was given.

    WebOb makes a relative Location absolute as it sends the response, with the host the
    client named in its Host header (WebOb issue #414): a forged Host would land in the
    redirect, and in any cache that keeps it. A path is a valid Location (RFC 9110) and
    names no host at all.
    """

    def _abs_headerlist(self, environ: dict) -> list[tuple[str, str]]:
        """WebOb's hook that makes the Location absolute: send the headers unchanged."""
        return list(self.headerlist)


def redirect_home(request: Request) -> HTTPSeeOther:
    """POST-redirect-GET: the browser's reload button never posts the form twice."""
    return SeeOtherPath(location=request.route_path("home"))


@view_config(route_name="reset", request_method="POST")
def reset(request: Request) -> HTTPSeeOther:
    """Reset the counter, and say so in the terms of the page the redirect lands on:
    that page counts its own visit, so it shows 1, not 0."""
    sessions.reset_counter(request)
    flash(request.session, "success", RESET_MESSAGE)
    return redirect_home(request)


@view_config(route_name="flash", request_method="POST")
def add_flash(request: Request) -> HTTPSeeOther:
    """Queue the posted message under the posted category."""
    category = request.POST.get("category", "")
    message = request.POST.get("message", "")
    if category not in CATEGORIES:
        flash(request.session, "error", f"Pick one of: {', '.join(CATEGORIES)}.")
    elif not message.strip():
        flash(request.session, "warning", "Type a message to flash.")
    else:
        flash(request.session, category, message)
    return redirect_home(request)


@view_config(route_name="forget", request_method="POST")
def forget(request: Request) -> HTTPSeeOther:
    """End this session: the counter, queued messages and CSRF token are gone."""
    sessions.forget_session(request)
    flash(request.session, "info", "Your session was cleared.")
    return redirect_home(request)


@exception_view_config(HTTPBadRequest, renderer=ERROR_TEMPLATE)
def bad_request(error: HTTPBadRequest, request: Request) -> dict:
    """A rejected form (most often a missing or stale CSRF token): 400, not a traceback."""
    return error_page(
        request,
        400,
        "Bad request",
        "This form was stale or did not come from this site. Reload the page and try again.",
    )


@exception_view_config(URLDecodeError, renderer=ERROR_TEMPLATE)
def undecodable_url(error: URLDecodeError, request: Request) -> dict:
    """A path that is not UTF-8 (``/%FF``) cannot name a page: 400, not a 500."""
    return error_page(request, 400, "Bad request", "This address is not valid.")


@notfound_view_config(renderer=ERROR_TEMPLATE)
def not_found(error: HTTPNotFound, request: Request) -> dict:
    """404 in the site's layout."""
    return error_page(request, 404, "Not found", "There is no page at this address.")

"""The counter pages, the forms that change the session, and the error pages."""

from __future__ import annotations

import logging
import traceback

from pyramid.csrf import get_csrf_token
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPBadRequest, HTTPClientError, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.settings import asbool
from pyramid.view import exception_view_config, notfound_view_config, view_config, view_defaults

from . import sessions
from .flash import CATEGORIES, flash
from .hardening.unreadable_headers import raw_path
from .layout import COUNTER_TEMPLATE, ERROR_TEMPLATE, error_page, page

log = logging.getLogger(__name__)

# The session counter the two counter pages share (sessions.increment_counter: a counter
# of your own, say items in a cart, is another name).
VISITS = "visits"
RESET_MESSAGE = "The counter was reset: it starts again at 1 on this page."
# What the 4xx pages without a view of their own say, by status.
CLIENT_ERROR_MESSAGES = {
    413: "This request is larger than this site accepts.",
    414: "This address is longer than this site accepts.",
}


@view_defaults(renderer=COUNTER_TEMPLATE, request_method="GET")
class CounterViews:
    """Two pages that share one session counter (Pyramid's quick tutorial, "sessions")."""

    def __init__(self, request: Request) -> None:
        self.request = request

    @property
    def counter(self) -> int:
        """Count this visit and return the total."""
        return sessions.increment_counter(self.request, VISITS)

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


def redirect_home(request: Request) -> HTTPSeeOther:
    """POST-redirect-GET: the browser's reload button never posts the form twice. The
    Location goes out as this path (``hardening/headers.py``), never with a host."""
    return HTTPSeeOther(location=request.route_path("home"))


@view_config(route_name="reset", request_method="POST")
def reset(request: Request) -> HTTPSeeOther:
    """Reset the counter, and say so in the terms of the page the redirect lands on:
    that page counts its own visit, so it shows 1, not 0."""
    sessions.reset_counter(request, VISITS)
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


@exception_view_config(HTTPClientError, renderer=ERROR_TEMPLATE)
def client_error(error: HTTPClientError, request: Request) -> dict:
    """Any other refusal of what the client sent (413 and 414: over the request limits) in
    the site's layout, under the status's own title."""
    message = CLIENT_ERROR_MESSAGES.get(error.code, "This request cannot be answered.")
    return error_page(request, error.code, error.title, message)


{% if cookiecutter.session_factory in ("redis", "database") -%}
@exception_view_config(sessions.SessionStoreUnavailable, renderer=ERROR_TEMPLATE)
def session_store_unavailable(error: sessions.SessionStoreUnavailable, request: Request) -> dict:
    """The session store is down or too slow: a 503 page and a log line, never a traceback
    (also when it fails as the session is written, after the view: hardening/headers.py's
    execution_policy gives that error this view too)."""
    log.error("session store unavailable for %s %s: %s", request.method, request.path, error)
    request.response.headers["Retry-After"] = "5"
    return error_page(
        request,
        503,
        "Service unavailable",
        "Sessions are unavailable for a moment. Please try again in a few seconds.",
    )


{% endif -%}
def raised_at(error: BaseException) -> str:
    """Where ``error`` was raised: the file and line of the innermost frame."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{frame.filename}:{frame.lineno}"


def logs_tracebacks(request: Request) -> bool:
    """Whether a 500's log line carries its traceback: ``app.log_tracebacks`` (true in
    development.ini, where you want to see your bug; never in production.ini)."""
    return asbool(request.registry.settings.get("app.log_tracebacks", "false"))


@exception_view_config(Exception, renderer=ERROR_TEMPLATE)
def unexpected_error(error: Exception, request: Request) -> dict:
    """A bug of the app's own: the 500 page and one log line that names the exception's
    type and where it was raised, not its message nor a traceback (either may repeat what
    the client sent, into every log reader's terminal), but where development.ini asks
    for the traceback."""
    log.error(
        "%s raised at %s on %s %s",
        type(error).__name__,
        raised_at(error),
        request.method,
        raw_path(request.environ),
        exc_info=error if logs_tracebacks(request) else None,
    )
    return error_page(
        request, 500, "Server error", "Something went wrong on our side. Please try again."
    )

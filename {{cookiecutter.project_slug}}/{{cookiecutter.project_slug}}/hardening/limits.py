"""Bound what one request can make the app do before anything checks that it is trusted.

Pyramid's CSRF check reads the whole form before it compares the token, and WebOb parses a
form of any size with any number of fields: without a bound, anyone, with no cookie, could
make a process spend seconds and hundreds of megabytes on one POST. A tween reads the body
first, never more than ``request.max_body_size`` bytes of it, and counts the form's fields
without parsing them; a request over either limit gets the 413 page, and nothing parses it.
A query string holds a GET form's fields: one with more than ``request.max_form_fields``
gets the 414 page before a view of yours reads ``request.params``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyramid.config import Configurator
from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPRequestEntityTooLarge,
    HTTPRequestURITooLong,
)
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import EXCVIEW

from ..sessions.settings import SettingsError, read_whole_setting

Handler = Callable[[Request], Response]

# The largest form the app's pages send is 3.7 kB: a 300-character flash message of 4-byte
# characters, percent-encoded (12 bytes a character), a category and a CSRF token. Four
# times that leaves room; a body past the limit is refused before it is parsed.
DEFAULT_MAX_BODY_SIZE = 16 * 1024
# The app's forms have at most three fields (csrf_token, category, message).
DEFAULT_MAX_FORM_FIELDS = 20
# setting: (default, lowest, highest, unit). At most waitress's own default body limit.
LIMIT_SETTINGS = {
    "request.max_body_size": (DEFAULT_MAX_BODY_SIZE, 1024, 1024**3, "bytes"),
    "request.max_form_fields": (DEFAULT_MAX_FORM_FIELDS, 1, 100_000, "fields"),
}
REGISTRY_KEY = f"{__name__}.limits"
URLENCODED_TYPES = ("", "application/x-www-form-urlencoded")
MULTIPART_TYPE = "multipart/form-data"
# A part of a multipart form with this Content-Type (any case) is parsed as a form too.
URLENCODED_PART = b"x-www-form-urlencoded"


@dataclass(frozen=True)
class RequestLimits:
    """The most one request may ask of the app, already checked."""

    max_body_size: int
    """Bytes of body, form or not."""
    max_form_fields: int
    """Fields of a form, or parameters of a query string, counted before they are parsed."""


def read_limit(settings: Mapping[str, str], name: str) -> int:
    """The whole number that setting ``name`` holds, within its bounds."""
    return read_whole_setting(settings, name, *LIMIT_SETTINGS[name])


def request_limits(settings: Mapping[str, str]) -> RequestLimits:
    """Check and collect the ``request.*`` settings; refuse a misspelt one, which would
    silently keep its default."""
    unknown = sorted(name for name in settings if name.startswith("request."))
    unknown = [name for name in unknown if name not in LIMIT_SETTINGS]
    if unknown:
        raise SettingsError(
            f"unknown setting {', '.join(unknown)}; the request limit settings are "
            f"{', '.join(LIMIT_SETTINGS)}"
        )
    return RequestLimits(
        max_body_size=read_limit(settings, "request.max_body_size"),
        max_form_fields=read_limit(settings, "request.max_form_fields"),
    )


def declared_length(request: Request) -> int | None:
    """The Content-Length, or None without one. One that is no whole number is refused:
    WebOb would read ``-1`` as "read everything", and ``" 12"`` or ``"١٢"`` as 12."""
    raw = request.environ.get("CONTENT_LENGTH", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise HTTPBadRequest("a Content-Length that is no whole number")
    return int(raw)


def read_body(request: Request, limit: int) -> None:
    """Read the body into memory, at most ``limit`` bytes, or refuse the request.

    A Content-Length over the limit is refused unread. A body without one (chunked, where
    the server passes it on as such) is read until one byte past the limit. What is read
    replaces the input, so the rest of the app sees a body of a known, bounded size.
    """
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise HTTPRequestEntityTooLarge(f"a body of {declared} bytes")
    if not request.is_body_readable:
        return
    body = request.body_file_raw.read(limit + 1 if declared is None else declared)
    if len(body) > limit:
        raise HTTPRequestEntityTooLarge("a body without a length, too long")
    if declared is not None and len(body) < declared:
        raise HTTPBadRequest("a body shorter than its Content-Length")
    request.body = body


def multipart_fields(body: bytes) -> int:
    """How many fields WebOb would make of a multipart body, at most.

    Each part starts with a line that starts with ``--``, whatever the boundary, nested
    parts included. A part whose Content-Type says it is urlencoded is parsed as a form of
    its own, one field per ``&`` and one more: then every ``&`` counts too.
    """
    parts = body.count(b"\n--") + body.startswith(b"--")
    if URLENCODED_PART in body.lower():
        return parts + body.count(b"&")
    return parts


def form_fields(request: Request) -> int:
    """How many fields WebOb would make of the body, at most, counted without parsing it.

    An urlencoded form separates its fields with ``&``; for a multipart form, see
    ``multipart_fields``. Other bodies (JSON) are never parsed as a form.
    """
    body = request.body
    if not body:
        return 0
    if request.content_type in URLENCODED_TYPES:
        return body.count(b"&") + 1
    if request.content_type == MULTIPART_TYPE:
        return multipart_fields(body)
    return 0


def query_fields(request: Request) -> int:
    """How many parameters WebOb would make of the query string, at most: one per ``&`` and
    one more. ``request.params`` and ``request.GET`` parse all of them on first use."""
    query = request.environ.get("QUERY_STRING", "")
    return query.count("&") + 1 if query else 0


def request_limits_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A tween that refuses, as the 413 or 414 page, a request over the limits, before any
    view."""
    limits: RequestLimits = registry[REGISTRY_KEY]

    def request_limits_tween(request: Request) -> Response:
        if query_fields(request) > limits.max_form_fields:
            raise HTTPRequestURITooLong("a query string with too many fields")
        read_body(request, limits.max_body_size)
        if form_fields(request) > limits.max_form_fields:
            raise HTTPRequestEntityTooLarge("a form with too many fields")
        return handler(request)

    return request_limits_tween


def includeme(config: Configurator) -> None:
    """Check the limits once, at start-up, and add the tween that applies them."""
    config.registry[REGISTRY_KEY] = request_limits(config.get_settings())
    # Under EXCVIEW: its 413 and 400 become the site's error pages, with the headers.
    config.add_tween(f"{__name__}.request_limits_tween_factory", under=EXCVIEW)

"""Drop what WebOb cannot read from the request headers before anything reads them.

WebOb decodes every cookie as UTF-8 the first time ``request.cookies`` is read and raises
UnicodeDecodeError on the first that is not, which would turn one junk cookie (another
site's, or a forged one) into a 500 on every page. Such cookies are dropped instead.

WebOb also raises on a date past the year 9999 in If-Modified-Since or If-Range, and reads
them as a static file goes out, after every error page could catch it: such a header is
dropped too. RFC 9110 asks for that: a condition with an invalid date is ignored (the file
is sent whole), and a Range under such an If-Range with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS
from webob.datetime_utils import parse_date
from webob.etag import IfRange, IfRangeDate

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]


def parse_if_range(value: str) -> object:
    """If-Range as WebOb reads it, refusing what it takes for a date but cannot read (a
    value that ends in " GMT"): WebOb would compare None with the file's date."""
    condition = IfRange.parse(value)
    if isinstance(condition, IfRangeDate) and condition.date is None:
        raise ValueError(f"no date: {value!r}")
    return condition


# The headers WebOb reads as a date, each with the headers ignored along with it.
DATE_HEADERS: dict[str, tuple[Callable[[str], object], tuple[str, ...]]] = {
    "HTTP_IF_MODIFIED_SINCE": (parse_date, ()),
    "HTTP_IF_UNMODIFIED_SINCE": (parse_date, ()),
    "HTTP_IF_RANGE": (parse_if_range, ("HTTP_RANGE",)),
}


def is_utf8(wsgi_text: str) -> bool:
    """Whether a WSGI header value (bytes carried as latin-1 text) is valid UTF-8."""
    try:
        wsgi_text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


def utf8_cookies_only(header: str) -> str:
    """The Cookie header without the cookies that are not valid UTF-8."""
    return ";".join(part for part in header.split(";") if is_utf8(part))


def raw_path(environ: dict) -> str:
    """The request's path as sent, %-escaped, for log lines.

    ``request.path`` decodes the path as UTF-8 and raises on one that is not (``/%FF``):
    a log line must not turn that request's 400 page into a 500.
    """
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return quote(path.encode("latin-1", "replace"))


def is_readable(parse: Callable[[str], object], value: str) -> bool:
    """Whether WebOb's ``parse`` reads ``value`` without raising."""
    try:
        parse(value)
    except (ValueError, OverflowError, OSError):  # a year past 9999, or past any clock
        return False
    return True


def drop_unreadable_dates(environ: dict) -> list[str]:
    """Drop each date header WebOb cannot read, with those ignored along with it."""
    dropped = [
        name
        for name, (parse, _) in DATE_HEADERS.items()
        if name in environ and not is_readable(parse, environ[name])
    ]
    for name in dropped:
        del environ[name]
        for along in DATE_HEADERS[name][1]:
            environ.pop(along, None)
    return dropped


def clean_headers_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A tween that cleans the headers before any other code sees them."""

    def clean_headers_tween(request: Request) -> Response:
        environ = request.environ
        header = environ.get("HTTP_COOKIE", "")
        if not is_utf8(header):
            environ["HTTP_COOKIE"] = utf8_cookies_only(header)
            log.info("dropped cookies that are not UTF-8 from %s", raw_path(environ))
        for name in drop_unreadable_dates(environ):
            log.info("dropped an unreadable %s from %s", name, raw_path(environ))
        return handler(request)

    return clean_headers_tween


def includeme(config: Configurator) -> None:
    """Add the tween that cleans the headers, first of all (under INGRESS)."""
    config.add_tween(f"{__name__}.clean_headers_tween_factory", under=INGRESS)

"""Drop cookies that are not UTF-8 before anything reads them.

WebOb decodes every cookie as UTF-8 the first time ``request.cookies`` is read and raises
UnicodeDecodeError on the first that is not, which would turn one junk cookie (another
site's, or a forged one) into a 500 on every page. Such cookies are dropped instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]


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


def utf8_cookies_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A tween that cleans the Cookie header before any other code sees it."""

    def utf8_cookies_tween(request: Request) -> Response:
        header = request.environ.get("HTTP_COOKIE", "")
        if not is_utf8(header):
            request.environ["HTTP_COOKIE"] = utf8_cookies_only(header)
            log.info("dropped cookies that are not UTF-8 from %s", raw_path(request.environ))
        return handler(request)

    return utf8_cookies_tween

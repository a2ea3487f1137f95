"""Security headers on every response, error pages included: one policy, set in one place.

A tween above Pyramid's exception views sets them, so the 400 and 404 pages get them too.
A response made outside the tweens (the Redis session's 503 page when Redis fails after the
view) gets them from ``secure_response``, the function the tween calls. Each header has a
``security.*`` setting that replaces its default; an empty setting drops the header.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlparse

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.settings import asbool
from pyramid.tweens import EXCVIEW

from .settings import SettingsError

Handler = Callable[[Request], Response]
Headers = tuple[tuple[str, str], ...]

# Scripts, styles, images and fonts from this site only and never inline; no plugins; no
# <base> to move relative URLs elsewhere; forms post to this site only; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS = "Strict-Transport-Security"
# Every header with its default. A response that sets one of them itself keeps its own
# value: the static files keep their Cache-Control this way.
DEFAULT_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Pages carry a CSRF token and session data: no browser or shared cache may keep them.
    "Cache-Control": "no-store",
    # Sent only when session.secure is on: the site is then served over HTTPS only.
    HSTS: "max-age=31536000",
}
REGISTRY_KEY = f"{__name__}.headers"


def setting_name(header: str) -> str:
    """The setting that changes ``header``: Referrer-Policy -> security.referrer_policy."""
    return "security." + header.lower().replace("-", "_")


SETTING_NAMES = [setting_name(header) for header in DEFAULT_HEADERS]


def check_setting_names(settings: Mapping[str, str]) -> None:
    """Refuse a misspelt ``security.*`` setting, which would silently keep the default."""
    unknown = [name for name in settings if name.startswith("security.")]
    unknown = sorted(set(unknown) - set(SETTING_NAMES))
    if unknown:
        raise SettingsError(
            f"unknown setting {', '.join(unknown)}; the security header settings are "
            f"{', '.join(SETTING_NAMES)}"
        )


def header_value(settings: Mapping[str, str], header: str) -> str:
    """``header``'s setting, else its default, with a multi-line ini value made one line."""
    return " ".join(settings.get(setting_name(header), DEFAULT_HEADERS[header]).split())


def security_headers(settings: Mapping[str, str]) -> Headers:
    """The headers every response gets under ``settings``; those set empty are left out."""
    check_setting_names(settings)
    https_only = asbool(settings.get("session.secure", True))
    headers = [header for header in DEFAULT_HEADERS if https_only or header != HSTS]
    values = [(header, header_value(settings, header)) for header in headers]
    return tuple((header, value) for header, value in values if value)


def add_missing_headers(response: Response, headers: Headers) -> Response:
    """Add each of ``headers`` that ``response`` does not set itself."""
    present = {name.lower() for name, _ in response.headerlist}
    response.headerlist.extend(
        (name, value) for name, value in headers if name.lower() not in present
    )
    return response


def secure_response(request: Request, response: Response) -> Response:
    """Give ``response`` the security headers of ``request``'s app that it lacks."""
    return add_missing_headers(response, request.registry[REGISTRY_KEY])


def security_headers_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A tween that secures every response, the exception views' pages included."""

    def security_headers_tween(request: Request) -> Response:
        return secure_response(request, handler(request))

    return security_headers_tween


def refuse_malformed_posts(request: Request) -> bool:
    """Pyramid's CSRF callback: check the token of every unsafe request (True), after
    refusing, as the 400 page, what would otherwise fail before the check as a 500: an
    Origin or Referer that is no URL (Pyramid parses them on HTTPS), or a form in another
    charset than UTF-8 (WebOb refuses to read one)."""
    if request.charset != "UTF-8":
        raise HTTPBadRequest("the form is not UTF-8")
    origin = request.headers.get("Origin", "").split(" ")[-1]
    for value in (origin, request.referrer or ""):
        try:
            urlparse(value)
        except ValueError:
            raise HTTPBadRequest("an Origin or Referer that is no URL") from None
    return True


def includeme(config: Configurator) -> None:
    """Work out the headers once, from the settings, and add the tween that sets them."""
    config.registry[REGISTRY_KEY] = security_headers(config.get_settings())
    # Above EXCVIEW: the tween sees the pages Pyramid's exception views make.
    config.add_tween(f"{__name__}.security_headers_tween_factory", over=EXCVIEW)

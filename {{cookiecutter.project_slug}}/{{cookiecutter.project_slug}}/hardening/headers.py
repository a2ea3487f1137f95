"""Security headers on every response, error pages included: one policy, set in one place.

A tween above Pyramid's exception views sets them, so the 400 and 404 pages get them too.
A response made outside the tweens (the error page of an exception raised after the view,
as when the session is written) gets them from the execution policy, through the same
``secure_response``. Each header has a ``security.*`` setting that replaces its default; an
empty setting drops the header.

``secure_response`` also sends every redirect to a path: no Location names the host the
client sent, nor one that WebOb would make of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlparse

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router
from pyramid.tweens import EXCVIEW

from ..sessions.settings import SettingsError, read_secure

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
# What browsers strip from both ends of a URL (C0 controls and space), and from inside it.
URL_ENDS = "".join(chr(code) for code in range(0x21))
URL_INSIDE = str.maketrans("", "", "\t\r\n")
# A URL's scheme (letters: what WebOb takes for one), its authority (after //) and the
# rest: path, query and fragment. Any text matches: unlike urllib's parser, this never
# raises, whatever the Host header held.
URL_PARTS = re.compile(
    r"(?P<scheme>[a-z]+:)?(?://(?P<authority>[^/\\?#]*))?(?P<rest>.*)", re.IGNORECASE | re.DOTALL
)
FIRST_SEGMENT = re.compile(r"[^/?#]*")
# Headers of a redirect's body, which the path redirect does not keep.
BODY_HEADERS = {"location", "content-type", "content-length"}


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
    https_only = read_secure(settings)
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


class PathRedirect(Response):
    """A response whose Location header goes out as the path it was given.

    WebOb makes a relative Location absolute as it sends the response, with the host the
    client named in its Host header (WebOb issue #414): a forged Host would land in the
    redirect, and in any cache that keeps it. A path is a valid Location (RFC 9110) and
    names no host at all.
    """

    def _abs_headerlist(self, environ: dict) -> list[tuple[str, str]]:
        """WebOb's hook that makes the Location absolute: send the headers unchanged."""
        return list(self.headerlist)


def host_of(authority: str) -> str:
    """The host a URL's authority names, without user or port, lowercase: up to the first
    colon, as Python reads it (``evil.example:8080x:`` names ``evil.example``; a browser
    refuses that port, and either way the host is the one to compare)."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):  # an IPv6 address holds colons of its own; a port may follow
        return host.partition("]")[0].lower() + "]"
    return host.partition(":")[0].lower()


def client_host(request: Request) -> str:
    """The host in the URLs WebOb makes of the client's Host header (``request.host_url``,
    which ``route_url`` and the add-slash redirect start with), read as ``path_of`` reads
    a Location. Not the Host itself: one of ``evil.example/x`` (no browser sends it, any
    client can) makes ``http://evil.example/x/page``, whose host is ``evil.example``."""
    return host_of(URL_PARTS.match(request.host_url.translate(URL_INSIDE))["authority"])


def path_of(request: Request, location: str) -> str | None:
    """``location`` as a reference to this site that no browser reads as a host; None
    when it is a URL of another host, which the app wrote itself and WebOb sends as it is.

    A URL of the host the client named (``request.route_url`` writes those) loses its
    scheme and host. Browsers drop tabs and line breaks anywhere and controls and spaces
    at the ends, and read ``\\`` as ``/``: what is left must not start with ``//``.
    """
    sent = location.translate(URL_INSIDE)  # WebOb drops these before it looks for a scheme
    url = URL_PARTS.match(sent)
    if url["scheme"] and (
        url["authority"] is None or host_of(url["authority"]) != client_host(request)
    ):
        return None
    url = URL_PARTS.match(sent.strip(URL_ENDS))
    path = url["rest"].strip(URL_ENDS).replace("\\", "%5C")
    if url["authority"] is not None and not path.startswith("/"):
        path = "/" + path
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    if ":" in FIRST_SEGMENT.match(path)[0]:  # "a.b:x" reads as a scheme to a browser
        path = "./" + path
    return path


def redirect_to_a_path(request: Request, response: Response) -> Response:
    """``response``, or, when its Location is relative or names the host the client sent
    (the static view's add-slash redirect does), the same redirect to a path."""
    location = response.location
    path = None if location is None else path_of(request, location)
    if path is None:
        return response
    headers = [header for header in response.headerlist if header[0].lower() not in BODY_HEADERS]
    return PathRedirect(status=response.status, headerlist=[*headers, ("Location", path)])


def secure_response(request: Request, response: Response) -> Response:
    """``response`` with the security headers of ``request``'s app that it lacks, and any
    redirect sent to a path."""
    response = redirect_to_a_path(request, response)
    return add_missing_headers(response, request.registry[REGISTRY_KEY])


def security_headers_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A tween that secures every response, the exception views' pages included."""

    def security_headers_tween(request: Request) -> Response:
        return secure_response(request, handler(request))

    return security_headers_tween


def is_text_form(request: Request) -> bool:
    """Whether WebOb parses the body into text fields only (or it is no form at all).

    Its parser raises whatever a client's bytes make it raise (ValueError for a multipart
    form without a valid boundary, LookupError for a part in an unknown charset, ...), and
    gives a file upload or a nested form as an object where a view expects text.
    """
    try:
        form = request.POST
    except Exception:  # any failure to parse what the client sent is the client's
        return False
    return all(isinstance(value, str) for value in form.values())


def refuse_malformed_posts(request: Request) -> bool:
    """Pyramid's CSRF callback: check the token of every unsafe request (True), after
    refusing, as the 400 page, what would otherwise fail before the check or in the view
    as a 500: an Origin or Referer that is no URL (Pyramid parses them on HTTPS), a form
    in another charset than UTF-8 (WebOb refuses to read one), a form WebOb cannot parse,
    or one with a file or a nested form in it (the app's forms have text fields only)."""
    if request.charset != "UTF-8":
        raise HTTPBadRequest("the form is not UTF-8")
    origin = request.headers.get("Origin", "").split(" ")[-1]
    for value in (origin, request.referrer or ""):
        try:
            urlparse(value)
        except ValueError:
            raise HTTPBadRequest("an Origin or Referer that is no URL") from None
    if not is_text_form(request):
        raise HTTPBadRequest("a form that is not text fields only")
    return True


def execution_policy(environ: dict, router: Router) -> Response:
    """Pyramid's own policy, plus the security headers on the error page of an exception
    raised outside the tweens: in a response callback, as when the session is written
    after the view (a store that fails just then gets its 503 page this way)."""
    with router.request_context(environ) as request:
        try:
            return router.invoke_request(request)
        except Exception:
            return secure_response(request, request.invoke_exception_view(reraise=True))


def includeme(config: Configurator) -> None:
    """Work out the headers once, from the settings, and add the tween that sets them."""
    config.registry[REGISTRY_KEY] = security_headers(config.get_settings())
    # Above EXCVIEW: the tween sees the pages Pyramid's exception views make.
    config.add_tween(f"{__name__}.security_headers_tween_factory", over=EXCVIEW)
    config.set_execution_policy(execution_policy)

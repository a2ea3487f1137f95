{%- set cookie = cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") -%}
"""The probes of a load balancer or of Kubernetes: is the process alive, can it serve?

``/healthz`` (liveness) answers as long as the process does, and asks nothing else: a
session store outage must never make an orchestrator restart processes that are fine.
{%- if cookie %}
``/readyz`` (readiness) answers as ``/healthz`` does: the sessions travel in the cookie,
so there is no store to wait for (``sessions.session_store_error`` always says None).
{%- else %}
``/readyz`` (readiness) also asks the session store for one cheap round trip, and answers
503 while it is down or slower than its timeout: a load balancer then sends this process
no visitors (who would get the 503 page) until it answers 200 again.
{%- endif %}

Both are short ``text/plain`` answers that never read ``request.session``: a probe every
few seconds makes no session and gets no cookie. The security headers come from the tween
in ``hardening/headers.py``, as on every response. docs/production.md shows the probes.
"""

from __future__ import annotations

import logging

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from . import sessions

log = logging.getLogger(__name__)


def plain_text(body: str, status: int = 200) -> Response:
    """A short ``text/plain`` answer: what a probe reads, cheaper than a page."""
    return Response(body, status=status, content_type="text/plain", charset="utf-8")


@view_config(route_name="healthz", request_method="GET")
def healthz(request: Request) -> Response:
    """Liveness: the process answers; the session store is not asked."""
    return plain_text("ok\n")


@view_config(route_name="readyz", request_method="GET")
def readyz(request: Request) -> Response:
    """Readiness: 200 when the session store answers within its timeout, else 503 and one
    log line that names the store's error (never a traceback, nor a secret)."""
    error = sessions.session_store_error(request)
    if error is None:
        return plain_text("ready\n")
    log.error("not ready: session store unavailable: %s", error)
    return plain_text("session store unavailable\n", status=503)

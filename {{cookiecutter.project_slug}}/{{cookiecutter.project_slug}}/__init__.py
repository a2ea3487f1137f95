"""The Pyramid application: sessions, a counter and flash messages.

Where to start: ``routes.py`` names the URLs, ``views.py`` answers them with the templates
in ``templates/``, ``flash.py`` queues messages for the next page, ``auth.py`` says who
is signed in (``login_views.py``: signing in and out). ``sessions/`` is the session engine
behind ``request.session``; ``hardening/`` the checks every request passes.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.renderers import get_renderer
from pyramid.router import Router

{% if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") -%}
from .flash import drop_flash_messages
{% endif -%}
from .sessions import SettingsError


def includeme(config: Configurator) -> None:
    """Add the whole app to ``config`` (tests include it beside views of their own)."""
    config.include("pyramid_chameleon")  # the .pt templates
    config.include(".hardening")  # request limits, security headers, the CSRF check
    config.include(".sessions")  # request.session, and where it is kept
{%- if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") %}
    config.set_session_overflow_handler(drop_flash_messages)  # a full cookie drops them first
{%- endif %}
    config.include(".routes")
    config.include(".auth")  # who is signed in, and the sign-in and sign-out views
    config.scan(".views")
    config.scan(".health")  # /healthz and /readyz


TEMPLATES = Path(__file__).parent / "templates"
# The templates a page loads its macro from (``use-macro="load: layout.pt"``), as
# Chameleon's loader is called: with what follows "load:", the space included (the
# loader keeps one copy per name as given).
LOADED_MACRO = re.compile(r'use-macro="load:([^"]+)"')


def compile_templates(registry: Registry) -> None:
    """Compile every page template now, in one thread: Chameleon compiling a template in
    several request threads at once can fail (Python before 3.13: "AST constructor
    recursion depth mismatch"), a 500 among the first requests after a start. That
    includes the copy of the layout each page loads (Chameleon's loader, one per page)."""
    for template in sorted(TEMPLATES.glob("*.pt")):
        renderer = get_renderer(f"{__name__}:templates/{template.name}", registry=registry)
        page = renderer.implementation()
        page.cook_check()
        for loaded in LOADED_MACRO.findall(template.read_text(encoding="utf-8")):
            page._loader(loaded).cook_check()


def main(global_config: dict, **settings: str) -> Router:
    """Build the WSGI application; refuse to start when a session setting is unsafe."""
    try:
        with Configurator(settings=settings) as config:
            config.include(includeme)
    except SettingsError as error:
        raise SystemExit(f"{__name__}: refusing to start: {error}") from None
    app = config.make_wsgi_app()
    compile_templates(app.registry)
    return app

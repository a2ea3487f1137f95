"""The Pyramid application: sessions, a counter and flash messages."""

from __future__ import annotations

from pathlib import Path

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.renderers import get_renderer
from pyramid.router import Router
from pyramid.tweens import INGRESS

from .security import refuse_malformed_posts
from .session_api import SessionCSRFPolicy
from .settings import SettingsError


def includeme(config: Configurator) -> None:
    """Add the whole app to ``config`` (tests include it beside views of their own)."""
    config.include("pyramid_chameleon")
    config.add_tween(f"{__name__}.tweens.clean_headers_tween_factory", under=INGRESS)
    config.include(".security")
    config.include(".limits")
    config.include(".sessions")
    config.set_csrf_storage_policy(SessionCSRFPolicy())
    config.set_default_csrf_options(require_csrf=True, callback=refuse_malformed_posts)
    config.include(".routes")
    config.scan(".views")


TEMPLATES = Path(__file__).parent / "templates"


def compile_templates(registry: Registry) -> None:
    """Compile every page template now, in one thread: Chameleon compiling a template in
    several request threads at once can fail, a 500 among the first requests after a start."""
    for template in sorted(TEMPLATES.glob("*.pt")):
        renderer = get_renderer(f"{__name__}:templates/{template.name}", registry=registry)
        renderer.implementation().cook_check()


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

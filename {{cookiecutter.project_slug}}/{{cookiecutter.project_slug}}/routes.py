"""URL routes and static files."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    """Add the app's routes."""
    config.add_static_view("static", "static", cache_max_age=3600)
    config.add_route("home", "/")
    config.add_route("howdy", "/howdy")
    config.add_route("reset", "/reset")
    config.add_route("flash", "/flash")
    config.add_route("forget", "/forget")

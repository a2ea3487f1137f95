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
    config.add_route("login", "/login")  # login_views.py: sign in and out
    config.add_route("logout", "/logout")
    config.add_route("sessions", "/sessions")  # login_views.py: your sessions
    config.add_route("end_session", "/sessions/end")
    config.add_route("end_other_sessions", "/sessions/end-others")
    config.add_route("end_all_sessions", "/sessions/end-all")
    config.add_route("healthz", "/healthz")  # health.py: the probes
    config.add_route("readyz", "/readyz")

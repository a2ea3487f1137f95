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
    # login_views.py: your sessions, for signed-in users only (auth.SignedInPages)
    signed_in = ".auth.SignedInPages"
    config.add_route("sessions", "/sessions", factory=signed_in)
    config.add_route("end_session", "/sessions/end", factory=signed_in)
    config.add_route("end_other_sessions", "/sessions/end-others", factory=signed_in)
    config.add_route("end_all_sessions", "/sessions/end-all", factory=signed_in)
    config.add_route("healthz", "/healthz")  # health.py: the probes
    config.add_route("readyz", "/readyz")

"""What every request and response passes through before any view: the app's defences.

- ``unreadable_headers.py``: drops the cookies and dates WebOb cannot read, before
  anything reads them (a junk cookie would otherwise be a 500 on every page);
- ``limits.py``: bounds the body and the number of form fields (``request.*`` settings);
- ``headers.py``: the security headers on every response (``security.*`` settings),
  redirects to paths only, and Pyramid's CSRF check made safe for malformed forms.

Each is a tween set up by its own ``includeme``; ``includeme`` here adds them all, and
requires a CSRF token on every unsafe request (Pyramid keeps it in the session).
"""

from __future__ import annotations

from pyramid.config import Configurator

from .headers import refuse_malformed_posts


def includeme(config: Configurator) -> None:
    """Add the three tweens, and require a CSRF token on every POST, PUT and DELETE."""
    config.include(".unreadable_headers")
    config.include(".headers")
    config.include(".limits")
    config.set_default_csrf_options(require_csrf=True, callback=refuse_malformed_posts)

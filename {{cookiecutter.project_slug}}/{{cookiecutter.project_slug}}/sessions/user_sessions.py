"""What every store says of a user's sessions: the rows of the "your sessions" page.

A row never carries a session's id (the bearer secret behind the cookie): it is named
by a handle, a hash of the id, which the page's forms post back to end that session.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserSession:
    """One of a user's sessions, as the "your sessions" page shows it (times are epoch
    seconds on the store's clock)."""

    handle: str
    created: int
    last_seen: int
    current: bool
    address: str | None = None
    user_agent: str | None = None

"""Flash messages by category, capped so that they always fit in a session."""

from __future__ import annotations

from dataclasses import dataclass

from pyramid.interfaces import ISession

CATEGORIES = ("info", "success", "warning", "error")
MAX_MESSAGE_LENGTH = 300
MAX_MESSAGES_PER_CATEGORY = 5


@dataclass(frozen=True)
class FlashGroup:
    """The messages of one category, in the order they were flashed."""

    category: str
    messages: tuple[str, ...]

    @property
    def role(self) -> str:
        """The ARIA role: errors and warnings interrupt, the rest is announced politely."""
        return "alert" if self.category in ("error", "warning") else "status"


def shorten(message: str) -> str:
    """One line of at most MAX_MESSAGE_LENGTH characters."""
    message = " ".join(message.split())
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "…"


def flash(session: ISession, category: str, message: str) -> None:
    """Queue ``message`` under ``category``, keeping only the newest few per category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown flash category {category!r}; expected one of {CATEGORIES}")
    message = shorten(message)
    if not message:
        return
    queued = [queued for queued in session.pop_flash(category) if queued != message]
    for kept in [*queued, message][-MAX_MESSAGES_PER_CATEGORY:]:
        session.flash(kept, queue=category)


def pop_flash_groups(session: ISession) -> tuple[FlashGroup, ...]:
    """Take every queued message, grouped by category; each is shown exactly once."""
    return tuple(
        FlashGroup(category, tuple(session.pop_flash(category)))
        for category in CATEGORIES
        if session.peek_flash(category)
    )

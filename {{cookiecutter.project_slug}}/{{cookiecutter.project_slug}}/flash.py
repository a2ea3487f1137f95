"""Flash messages by category, capped so that they always fit in a session."""

from __future__ import annotations

{% if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") -%}
import logging
{% endif -%}
from dataclasses import dataclass

from pyramid.interfaces import ISession
{%- if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") %}

from .sessions import drop_flash_queues

log = logging.getLogger(__name__)
{%- endif %}

CATEGORIES = ("info", "success", "warning", "error")
MAX_MESSAGE_LENGTH = 300
MAX_MESSAGES_PER_CATEGORY = 5
# One queue of [category, message] pairs, so that a page reads the session once.
QUEUE = "messages"
{%- if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") %}
DROPPED_MESSAGES_NOTICE = "Some messages were dropped to keep your session small."
{%- endif %}


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


def is_entry(entry: object) -> bool:
    """Whether ``entry`` is a [category, message] pair this module queued."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and entry[0] in CATEGORIES
        and isinstance(entry[1], str)
    )


def flash(session: ISession, category: str, message: str) -> None:
    """Queue ``message`` under ``category``, keeping only the newest few per category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown flash category {category!r}; expected one of {CATEGORIES}")
    message = shorten(message)
    if not message:
        return
    entry = [category, message]
    kept = [old for old in session.pop_flash(QUEUE) if is_entry(old) and old != entry]
    kept.append(entry)
    same_category = [old for old in kept if old[0] == category]
    for oldest in same_category[: max(0, len(same_category) - MAX_MESSAGES_PER_CATEGORY)]:
        kept.remove(oldest)
    for old in kept:
        session.flash(old, queue=QUEUE)


def pop_flash_groups(session: ISession) -> tuple[FlashGroup, ...]:
    """Take every queued message, grouped by category; each is shown exactly once.

    A page with nothing queued only looks at the session, which stays unchanged.
    """
    if not session.peek_flash(QUEUE):
        return ()
    entries = [entry for entry in session.pop_flash(QUEUE) if is_entry(entry)]
    groups = {category: [] for category in CATEGORIES}
    for category, message in entries:
        groups[category].append(message)
    return tuple(
        FlashGroup(category, tuple(messages)) for category, messages in groups.items() if messages
    )
{%- if cookiecutter.session_factory in ("signed_cookie", "encrypted_cookie") %}


def drop_flash_messages(session: ISession) -> None:
    """The session outgrew its cookie (its overflow handler, set in ``includeme``): drop
    every flash queue, as the engine would, and queue one message that says so."""
    drop_flash_queues(session)
    log.warning("dropped the flash messages to keep the session in its cookie")
    flash(session, "warning", DROPPED_MESSAGES_NOTICE)
{%- endif %}

"""The session API every factory offers: Pyramid's ISession, flash queues, CSRF tokens."""

from __future__ import annotations

import pytest
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.request import Request
from zope.interface.verify import verifyObject

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.session_api import request_cookie


@pytest.fixture
def session(app_settings: dict) -> ISession:
    """A new session of the app's factory, for a request without a cookie."""
    factory = main({}, **app_settings).registry.getUtility(ISessionFactory)
    return factory(Request.blank("/"))


def test_the_session_provides_pyramids_isession(session: ISession) -> None:
    assert verifyObject(ISession, session)


def test_flash_queues_and_pop_flash_empties(session: ISession) -> None:
    session.flash("once", allow_duplicate=False)
    session.flash("once", allow_duplicate=False)
    session.flash("twice")
    session.flash("twice")
    assert session.peek_flash() == ["once", "twice", "twice"]
    assert session.pop_flash() == ["once", "twice", "twice"]
    assert session.pop_flash() == []


def test_the_csrf_token_is_kept_until_renewed(session: ISession) -> None:
    token = session.get_csrf_token()
    assert len(token) == 40
    assert session.get_csrf_token() == token
    assert session.new_csrf_token() != token


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("", None),
        ("other=1", None),
        ("session=abc", "abc"),
        ("a=1; session=abc; b=2", "abc"),
        ('session="abc"', "abc"),
        ("session=old; session=new", "new"),
        ("session", None),
        ("xsession=abc", None),
    ],
    ids=["empty", "other", "alone", "among-others", "quoted", "last-wins", "no-value", "suffix"],
)
def test_the_session_cookie_is_read_as_webob_reads_it(header: str, value: str | None) -> None:
    assert request_cookie(header, "session") == value
    assert Request.blank("/", headers={"Cookie": header}).cookies.get("session") == value

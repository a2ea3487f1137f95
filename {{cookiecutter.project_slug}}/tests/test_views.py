"""Views tested on their own, as Pyramid's tutorial does: a ``DummyRequest`` with a
``DummySession``, no app, no server and no store. The other test modules send requests
through the whole app with WebTest; both kinds count for the coverage gate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyramid import testing
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPSeeOther

from {{ cookiecutter.project_slug }}.flash import QUEUE
from {{ cookiecutter.project_slug }}.views import add_flash


@pytest.fixture
def config() -> Iterator[Configurator]:
    """Pyramid's test configuration, with the app's routes: views redirect to them."""
    config = testing.setUp()
    config.include("{{ cookiecutter.project_slug }}.routes")
    yield config
    testing.tearDown()


def test_add_flash_queues_the_message_and_redirects_home(config: Configurator) -> None:
    request = testing.DummyRequest(post={"category": "success", "message": "Saved"})

    response = add_flash(request)

    assert isinstance(response, HTTPSeeOther)
    assert response.location == "/"
    assert request.session.pop_flash(QUEUE) == [["success", "Saved"]]


def test_add_flash_asks_for_a_message_when_there_is_none(config: Configurator) -> None:
    request = testing.DummyRequest(post={"category": "info", "message": "  "})

    add_flash(request)

    assert request.session.pop_flash(QUEUE) == [["warning", "Type a message to flash."]]

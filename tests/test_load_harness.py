"""The load test's own working (bench/load.py), without a generated project: how it judges
a run (``report``): a run the generated-project tests pass must have had no error, and one
that failed must say what went wrong, since a failure seen once in CI may not come back;
and when it injects its fault (``faulted_load``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from bench.load import SessionStore, Tally, failure, faulted_load, report

LOGIN_REFUSED = (
    '<main><p class="error-message" role="alert">Wrong user name or password.</p>'
    '<form class="login-form" method="post"></form></main>'
)


def tally_of(*events: tuple[float, str]) -> Tally:
    """A tally with ``events`` (time, outcome) in it; a "sign-in failed" one recorded as
    ``browse`` does, with the refused sign-in page as its reason."""
    tally = Tally()
    for when, outcome in events:
        if outcome == "sign-in failed":
            tally.fail_sign_in(failure("POST /login", 200, LOGIN_REFUSED))
        else:
            tally.add(outcome)
        tally.outcomes[-1] = (when, outcome)  # at the case's time, not now
    return tally


# (events, the fault's time or None, passes, what the report line must show)
CASES = {
    "every request ok": ([(1, "ok"), (2, "ok")], None, True, ""),
    "a sign-in refused": (
        [(1, "ok"), (1, "sign-in failed"), (2, "ok")],
        None,
        False,
        "POST /login 200: Wrong user name or password.",
    ),
    "a 500 page": ([(1, "ok"), (2, "HTTP 500")], None, False, "'HTTP 500': 1"),
    "a 503 without a fault": ([(1, "503"), (2, "ok")], None, False, "'503': 1"),
    "503s from the fault, then ok": ([(1, "ok"), (3, "503"), (5, "ok")], 2.0, True, "yes"),
    "a 503 before the fault": ([(1, "503"), (3, "503"), (5, "ok")], 2.0, False, "'503': 1"),
    "not ok after the outage": ([(3, "503"), (5, "ok"), (6, "503")], 2.0, False, "NO"),
}


@pytest.mark.parametrize(("events", "fault", "passes", "shown"), CASES.values(), ids=CASES)
def test_a_run_passes_only_without_errors_and_says_why_not(
    events: list[tuple[float, str]], fault: float | None, passes: bool, shown: str
) -> None:
    record = {} if fault is None else {"fault": fault}
    judged = report(SessionStore("case"), tally_of(*events), record, 10.0, (1024, 2048), 8)
    assert judged.passed is passes
    assert shown in judged.line()


def test_a_failed_sign_in_shows_the_start_of_a_page_without_an_alert() -> None:
    page = "<html>\n  <title>Service unavailable</title>\n" + "x" * 500
    assert failure("GET /login", 200, page) == ("GET /login 200: " + " ".join(page.split())[:200])


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread a request: the browsers sign in at once."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """wsgiref's request handler without a log line a request."""

    def log_message(self, *args: object) -> None:
        """Log nothing."""


SIGN_IN_SECONDS = 0.3
LOGIN_FORM = b'<form><input type="hidden" name="csrf_token" value="token"></form>'


def slow_sign_in_app(signed_in_at: list[float]) -> Callable:
    """A site whose sign-in takes SIGN_IN_SECONDS (as scrypt on a busy machine does); it
    notes when each sign-in ended in ``signed_in_at``."""

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["PATH_INFO"] == "/login" and environ["REQUEST_METHOD"] == "POST":
            time.sleep(SIGN_IN_SECONDS)
            signed_in_at.append(time.monotonic())
            start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
            return [b""]
        body = LOGIN_FORM if environ["PATH_INFO"] == "/login" else b"<p>a page</p>"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


@pytest.fixture
def slow_sign_in_site() -> Iterator[tuple[str, list[float]]]:
    """The slow sign-in site served on loopback: its URL and its sign-ins' end times."""
    signed_in_at: list[float] = []
    server = make_server(
        "127.0.0.1",
        0,
        slow_sign_in_app(signed_in_at),
        server_class=ThreadingWSGIServer,
        handler_class=QuietHandler,
    )
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_port}", signed_in_at
    server.shutdown()
    server.server_close()


def test_the_fault_comes_after_every_browser_signed_in(slow_sign_in_site) -> None:
    """The fault comes a quarter into the timed run, which starts once every browser has
    signed in: a fault during slow sign-ins (a busy CI machine) failed them, a failure of
    the harness that read as the app's."""
    url, signed_in_at = slow_sign_in_site
    tally, record, _ = faulted_load(url, clients=4, seconds=0.4, fault=lambda: None)
    assert len(signed_in_at) == 2 and not tally.sign_in_failures
    assert record["fault"] > max(signed_in_at)

"""What one request may make the app do before it is trusted, and what a malformed one gets:
the site's own 4xx page with the security headers, never a 500 nor waitress's own text."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import select
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import plaster
import pytest
import waitress
import webtest
from helpers import PROJECT_DIR, TEST_VIEWS, app_with_test_views, csrf_token, flash_groups, text
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyramid.request import Request
from test_headers import assert_security_headers

from {{ cookiecutter.project_slug }} import main
from {{ cookiecutter.project_slug }}.flash import MAX_MESSAGE_LENGTH
from {{ cookiecutter.project_slug }}.hardening.limits import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_FORM_FIELDS,
)

FORM = "application/x-www-form-urlencoded"
BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def part(name: str, value: str, *headers: str, filename: str | None = None) -> str:
    """One part of a multipart/form-data body (``headers`` after its Content-Disposition)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    lines = [f"Content-Disposition: {disposition}", *headers]
    return f"--{BOUNDARY}\r\n" + "".join(f"{line}\r\n" for line in lines) + f"\r\n{value}\r\n"


def multipart(*parts: str) -> bytes:
    """A multipart/form-data body of ``parts``, closed."""
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


def post_raw(
    testapp: webtest.TestApp, path: str, body: bytes, content_type: str, **options: object
) -> webtest.TestResponse:
    """POST ``body`` exactly as given (``testapp.post`` would take some for a query string)."""
    return testapp.request(path, method="POST", body=body, content_type=content_type, **options)


def assert_site_error_page(response: webtest.TestResponse, status: int) -> None:
    """``response`` is the site's own error page with ``status`` and the security headers."""
    assert response.status_int == status
    assert 'class="site-header"' in response.text
    assert_security_headers(response)


def never_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make WebOb's form parser fail the test if anything calls it."""

    def parse(*args: object, **kwargs: object) -> None:
        pytest.fail("the form was parsed")

    monkeypatch.setattr("webob.request.cgi_FieldStorage", parse)


# Bodies one byte over the default limit, of every kind, sent without a cookie.
OVER_THE_LIMIT = DEFAULT_MAX_BODY_SIZE + 1
BODIES_OVER_THE_LIMIT = {
    "empty-fields": (FORM, (b"a=&" * OVER_THE_LIMIT)[:OVER_THE_LIMIT]),
    "one-huge-field": (FORM, b"message=" + b"x" * OVER_THE_LIMIT),
    "multipart-huge-part-headers": (
        MULTIPART,
        multipart(part("message", "x", "X-Padding: " + "x" * OVER_THE_LIMIT)),
    ),
    "json": ("application/json", b'{"message": "' + b"x" * OVER_THE_LIMIT + b'"}'),
}


@pytest.mark.parametrize(
    ("content_type", "body"), BODIES_OVER_THE_LIMIT.values(), ids=BODIES_OVER_THE_LIMIT
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_body_over_the_limit_is_the_413_page_unparsed(
    testapp, monkeypatch, method: str, content_type: str, body: bytes
) -> None:
    never_parse(monkeypatch)
    response = testapp.request(
        "/flash", method=method, body=body, content_type=content_type, expect_errors=True
    )
    assert_site_error_page(response, 413)
    assert "This request is larger than this site accepts." in text(response)


class CountingInput(io.BytesIO):
    """A request body that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def chunked_request(body: bytes) -> webtest.TestRequest:
    """A form POST whose body has no Content-Length, as a server passes a chunked one on."""
    request = webtest.TestRequest.blank("/flash", method="POST", content_type=FORM)
    request.environ.pop("CONTENT_LENGTH", None)
    request.environ["wsgi.input"] = CountingInput(body)
    request.environ["wsgi.input_terminated"] = True
    return request


def test_a_chunked_body_over_the_limit_is_read_only_one_byte_past_it(testapp, monkeypatch):
    never_parse(monkeypatch)
    request = chunked_request(b"a=&" * DEFAULT_MAX_BODY_SIZE)
    body = request.environ["wsgi.input"]
    response = testapp.do_request(request, status=413)
    assert_site_error_page(response, 413)
    assert body.bytes_read == DEFAULT_MAX_BODY_SIZE + 1


def test_a_chunked_form_within_the_limit_is_read_whole(testapp) -> None:
    token = csrf_token(testapp.get("/"))
    form = f"csrf_token={token}&category=info&message=chunked".encode()
    testapp.do_request(chunked_request(form), status=303)
    assert flash_groups(testapp.get("/")) == {"info": ["chunked"]}


# Content-Length values that do not say how long the body (100 bytes) is.
LYING_LENGTHS = {
    "longer-than-the-body": "1000",
    "negative": "-1",
    "no-number": "abc",
    "signed": "+5",
    "spaced": " 12",
    "exponent": "1e3",
    "arabic-indic-digits": "١٢",
}


@pytest.mark.parametrize("length", LYING_LENGTHS.values(), ids=LYING_LENGTHS)
def test_a_lying_content_length_is_a_400_page(app, monkeypatch, length: str) -> None:
    never_parse(monkeypatch)
    body = CountingInput(b"a=&" * 33 + b"a")
    request = webtest.TestRequest.blank("/reset", method="POST", content_type=FORM)
    request.environ.update({"wsgi.input": body, "CONTENT_LENGTH": length})
    client = webtest.TestApp(app, lint=False)  # its checker refuses such a request itself
    assert_site_error_page(client.do_request(request, status=400), 400)
    assert body.bytes_read <= 100


def too_many_fields(count: int) -> dict[str, tuple[str, bytes]]:
    """Small forms of ``count`` fields, urlencoded and multipart; WebOb parses a part
    that says it is urlencoded as a form of its own."""
    return {
        "urlencoded": (FORM, b"&".join([b"a="] * count)),
        "multipart": (MULTIPART, multipart(*[part("a", "") for _ in range(count)])),
        "urlencoded-part-in-multipart": (
            MULTIPART,
            multipart(part("a", "&".join(["a="] * count), f"Content-Type: {FORM.upper()}")),
        ),
        "nested-multipart": (
            MULTIPART,
            multipart(
                part(
                    "a",
                    "".join(part("b", "") for _ in range(count)) + f"--{BOUNDARY}--",
                    f"Content-Type: multipart/mixed; boundary={BOUNDARY}",
                )
            ),
        ),
    }


FORMS_WITH_TOO_MANY_FIELDS = too_many_fields(DEFAULT_MAX_FORM_FIELDS + 1)


@pytest.mark.parametrize(
    ("content_type", "body"), FORMS_WITH_TOO_MANY_FIELDS.values(), ids=FORMS_WITH_TOO_MANY_FIELDS
)
def test_a_form_with_too_many_fields_is_the_413_page_unparsed(
    testapp, monkeypatch, content_type: str, body: bytes
) -> None:
    assert len(body) < DEFAULT_MAX_BODY_SIZE
    never_parse(monkeypatch)
    response = post_raw(testapp, "/flash", body, content_type, status=413)
    assert_site_error_page(response, 413)


def flash_form(token: str, message: str, extra_fields: int = 0) -> bytes:
    """The flash form as a browser sends it, with ``extra_fields`` empty fields more."""
    return webtest.TestRequest.blank(
        "/",
        POST=[
            ("csrf_token", token),
            ("category", "info"),
            ("message", message),
            *[("extra", "")] * extra_fields,
        ],
    ).body


def test_the_largest_form_the_pages_send_is_taken(testapp) -> None:
    """A message of the most characters the page's field takes, each of four UTF-8 bytes."""
    token = csrf_token(testapp.get("/"))
    form = flash_form(token, "😀" * MAX_MESSAGE_LENGTH)
    assert len(form) > 3600
    post_raw(testapp, "/flash", form, FORM, status=303)


def test_a_form_at_both_limits_is_taken(testapp) -> None:
    token = csrf_token(testapp.get("/"))
    body = flash_form(token, "", extra_fields=DEFAULT_MAX_FORM_FIELDS - 3)
    body = body.replace(b"message=", b"message=" + b"x" * (DEFAULT_MAX_BODY_SIZE - len(body)))
    assert len(body) == DEFAULT_MAX_BODY_SIZE
    assert body.count(b"&") + 1 == DEFAULT_MAX_FORM_FIELDS
    post_raw(testapp, "/flash", body, FORM, status=303)
    assert "info" in flash_groups(testapp.get("/"))


def query_parameters(request: Request) -> dict:
    """A view of yours that reads the query string: WebOb parses all of it at once."""
    return {"page": request.params.get("page")}


def never_parse_the_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make WebOb's query string parser fail the test if anything calls it."""

    def parse(*args: object, **kwargs: object) -> None:
        pytest.fail("the query string was parsed")

    monkeypatch.setattr("webob.request.parse_qsl_text", parse)


# Query strings of more parameters than a form may have fields (a GET form sends its
# fields there). Waitress passes on one of 256 KiB: 130,000 parameters, parsed in a third
# of a second into 10 MB.
TOO_MANY_FIELDS = DEFAULT_MAX_FORM_FIELDS + 1
QUERIES_WITH_TOO_MANY_FIELDS = {
    "empty-parameters": "&".join(["a"] * TOO_MANY_FIELDS),
    "parameters-with-values": "&".join(f"page={n}" for n in range(TOO_MANY_FIELDS)),
}


@pytest.mark.parametrize(
    "query", QUERIES_WITH_TOO_MANY_FIELDS.values(), ids=QUERIES_WITH_TOO_MANY_FIELDS
)
@pytest.mark.parametrize("path", [f"{TEST_VIEWS}/params", "/", "/static/app.css", "/nowhere"])
def test_a_query_with_too_many_fields_is_the_414_page_unparsed(
    app_settings, monkeypatch, path: str, query: str
) -> None:
    never_parse_the_query(monkeypatch)
    testapp = app_with_test_views(app_settings, params=query_parameters)
    response = testapp.get(f"{path}?{query}", status=414)
    assert_site_error_page(response, 414)
    assert "This address is longer than this site accepts." in text(response)


def test_a_query_at_the_field_limit_is_read(app_settings) -> None:
    testapp = app_with_test_views(app_settings, params=query_parameters)
    query = "&".join(f"page={n}" for n in range(DEFAULT_MAX_FORM_FIELDS))
    last = {"page": str(DEFAULT_MAX_FORM_FIELDS - 1)}
    assert testapp.get(f"{TEST_VIEWS}/params?{query}").json == last


def test_a_json_body_is_no_form_and_counts_no_fields(testapp) -> None:
    token = csrf_token(testapp.get("/"))
    body = json.dumps({"message": "&" * 2 * DEFAULT_MAX_FORM_FIELDS}).encode()
    post_raw(testapp, "/flash", body, "application/json", headers={"X-CSRF-Token": token})
    assert "error" in flash_groups(testapp.get("/"))  # no category: a JSON body is no form


# Settings that change the limits, and a form each then refuses.
CHANGED_LIMITS = {
    "smaller-body": ({"request.max_body_size": "2048"}, "x" * 2048, 0),
    "fewer-fields": ({"request.max_form_fields": "3"}, "hello", 1),
}


@pytest.mark.parametrize(
    ("changes", "message", "extra"), CHANGED_LIMITS.values(), ids=CHANGED_LIMITS
)
def test_the_limit_settings_apply(app_settings, changes: dict, message: str, extra: int) -> None:
    testapp = webtest.TestApp(main({}, **{**app_settings, **changes}))
    token = csrf_token(testapp.get("/"))
    post_raw(testapp, "/flash", flash_form(token, "hello"), FORM, status=303)
    post_raw(testapp, "/flash", flash_form(token, message, extra), FORM, status=413)


BAD_LIMITS = {
    "words": ("request.max_body_size", "16 KiB", r"whole number of bytes from 1024 to 1073741824"),
    "zero": ("request.max_form_fields", "0", r"whole number of fields from 1 to 100000"),
    "negative": ("request.max_form_fields", "-1", r"whole number of fields"),
    "fraction": ("request.max_body_size", "1.5", r"whole number of bytes"),
    "empty": ("request.max_body_size", "", r"whole number of bytes"),
    "over-a-gibibyte": ("request.max_body_size", str(1024**3 + 1), r"whole number of bytes"),
    "arabic-indic-digits": ("request.max_form_fields", "٢٠", r"whole number of fields"),
    "misspelt": ("request.max_body_sise", "2048", r"unknown setting request\.max_body_sise"),
}


@pytest.mark.parametrize(("name", "value", "expected"), BAD_LIMITS.values(), ids=BAD_LIMITS)
def test_a_bad_limit_setting_refuses_to_start(app_settings, name, value, expected) -> None:
    with pytest.raises(SystemExit, match=rf"refusing to start: .*{expected}") as refusal:
        main({}, **{**app_settings, name: value})
    assert "\n" not in str(refusal.value)


def server_settings(ini: str) -> dict:
    """The [server:main] settings of ``ini``, as waitress gets them."""
    return dict(plaster.get_settings(str(PROJECT_DIR / ini), "server:main"))


def app_settings_of(ini: str) -> dict:
    """The [app:main] settings of ``ini``."""
    return dict(plaster.get_settings(str(PROJECT_DIR / ini), "app:main"))


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_waitress_bounds_bodies_just_above_the_app_limit(ini: str) -> None:
    """Waitress refuses, unread, a body of its limit or more; below that, the app's own
    413 page answers. Its default would buffer up to 1 GiB per request."""
    app_limit = int(app_settings_of(ini)["request.max_body_size"])
    assert app_limit == DEFAULT_MAX_BODY_SIZE
    waitress_limit = int(server_settings(ini)["max_request_body_size"])
    assert app_limit < waitress_limit <= 4 * app_limit


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class Answer:
    """What a served waitress sent back, and how much of the body went out before it."""

    data: bytes
    body_bytes_sent: int

    @property
    def status(self) -> int:
        """The status of the final response (after any 100 Continue)."""
        return int(self.data.removeprefix(CONTINUE)[9:12])


class Served:
    """A waitress server with production.ini's settings on a free loopback port, serving
    whichever app a test gives it, and counting the requests that reach that app."""

    def __init__(self) -> None:
        settings = {**server_settings("production.ini"), "listen": "127.0.0.1:0"}
        settings.pop("use")
        self.app: Callable | None = None
        self.calls = 0
        self.server = waitress.create_server(self.dispatch, **settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.address = ("127.0.0.1", self.server.effective_port)

    def dispatch(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Count the request and pass it to the app."""
        self.calls += 1
        assert self.app is not None
        return self.app(environ, start_response)

    def exchange(self, head: str, body: Iterable[bytes] = ()) -> Answer:
        """Send ``head`` (request line and headers, one a line), then ``body`` piece by
        piece until the server answers (a 100 Continue is no answer); then read all it
        sends until it closes the connection."""
        sent, received = 0, b""
        with socket.create_connection(self.address, timeout=10) as connection:
            connection.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n")
            for piece in body:
                if select.select([connection], [], [], 0.01)[0]:
                    received += connection.recv(65536)
                    if received.removeprefix(CONTINUE):
                        break  # answered: the rest of the body is never read
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    connection.sendall(piece)
                    sent += len(piece)
            with contextlib.suppress(ConnectionResetError):
                while data := connection.recv(65536):
                    received += data
        return Answer(received, sent)


@pytest.fixture(scope="module")
def waitress_server() -> Iterator[Served]:
    """One production-like waitress for this module's tests, stopped at the end."""
    served = Served()
    served.thread.start()
    yield served
    served.server.close()  # its loop ends once no socket is left
    served.server.task_dispatcher.shutdown()
    served.thread.join(timeout=10)
    assert not served.thread.is_alive()


@pytest.fixture
def served(waitress_server: Served, app) -> Served:
    """The production-like waitress, serving this test's app."""
    waitress_server.app, waitress_server.calls = app, 0
    return waitress_server


def post_head(length: int | None, *headers: str) -> str:
    """A form POST's request line and headers, with a Content-Length, else chunked."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    lines = ["POST /flash HTTP/1.1", "Host: shop.example", f"Content-Type: {FORM}", framing]
    return "\n".join([*lines, "Connection: close", *headers]) + "\n"


def empty_fields(size: int, piece: int = 8192) -> Iterator[bytes]:
    """``size`` bytes of ``a=&a=&...``, ``piece`` bytes at a time, made as they are sent."""
    for start in range(0, size, piece):
        yield (b"a=&" * (piece // 3 + 1))[: min(piece, size - start)]


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` in chunked transfer coding, one chunk each, then the last chunk."""
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


FIFTY_MEGABYTES = 50 * 1024 * 1024
# 50 MB bodies, each way a client can send one: waitress answers 413 before the app sees
# them, having read at most its limit. (Asked to, it says "100 Continue" first.)
FIFTY_MEGABYTE_BODIES: dict[str, tuple[str, Callable[[], Iterable[bytes]]]] = {
    "content-length-no-body-sent": (post_head(FIFTY_MEGABYTES), lambda: ()),
    "content-length": (post_head(FIFTY_MEGABYTES), lambda: empty_fields(FIFTY_MEGABYTES)),
    "content-length-expecting-100-continue": (
        post_head(FIFTY_MEGABYTES, "Expect: 100-continue"),
        lambda: empty_fields(FIFTY_MEGABYTES),
    ),
    "chunked": (post_head(None), lambda: chunked(empty_fields(FIFTY_MEGABYTES))),
}


@pytest.mark.parametrize(
    ("head", "body"), FIFTY_MEGABYTE_BODIES.values(), ids=FIFTY_MEGABYTE_BODIES
)
def test_production_waitress_refuses_a_body_over_its_limit_unread(served, head, body) -> None:
    answer = served.exchange(head, body())
    assert answer.status == 413
    waitress_limit = int(server_settings("production.ini")["max_request_body_size"])
    assert answer.body_bytes_sent <= 2 * waitress_limit  # what socket buffers hold, at most
    assert served.calls == 0


# Bodies under waitress's limit but over the app's: the site's own 413 page answers.
OVER_THE_APP_LIMIT = {
    "content-length": (post_head(OVER_THE_LIMIT), lambda: empty_fields(OVER_THE_LIMIT)),
    "chunked": (post_head(None), lambda: chunked(empty_fields(OVER_THE_LIMIT))),
}


@pytest.mark.parametrize(("head", "body"), OVER_THE_APP_LIMIT.values(), ids=OVER_THE_APP_LIMIT)
def test_production_waitress_passes_on_the_sites_413_page(served, head, body) -> None:
    answer = served.exchange(head, body())
    assert answer.status == 413
    assert b'class="site-header"' in answer.data
    assert b"frame-ancestors 'none'" in answer.data
    assert served.calls == 1


# Malformed forms: each is the page's form gone wrong in one way, with a valid token.
MALFORMED_FORMS = {
    "multipart-without-boundary": (
        "multipart/form-data",
        multipart(part("csrf_token", "{token}")),
    ),
    "boundary-over-200-characters": (
        f"multipart/form-data; boundary={'b' * 201}x",
        multipart(part("csrf_token", "{token}")).replace(BOUNDARY.encode(), b"b" * 201 + b"x"),
    ),
    "nested-multipart-in-the-token": (
        MULTIPART,
        multipart(part("csrf_token", "x", "Content-Type: multipart/mixed; boundary=inner")),
    ),
    "nested-multipart-in-the-message": (
        MULTIPART,
        multipart(
            part("csrf_token", "{token}"),
            part("category", "info"),
            part("message", "--inner--", "Content-Type: multipart/mixed; boundary=inner"),
        ),
    ),
    "file-as-the-message": (
        MULTIPART,
        multipart(
            part("csrf_token", "{token}"),
            part("category", "info"),
            part("message", "hello", filename="message.txt"),
        ),
    ),
    "file-as-the-token": (MULTIPART, multipart(part("csrf_token", "{token}", filename="t"))),
    "part-in-an-unknown-charset": (
        MULTIPART,
        multipart(
            part("csrf_token", "{token}"),
            part("message", "hello", "Content-Type: text/plain; charset=nonsense"),
        ),
    ),
    "part-in-broken-base64": (
        MULTIPART,
        multipart(
            part("csrf_token", "{token}"),
            part("message", "a", "Content-Transfer-Encoding: base64"),
        ),
    ),
}


@pytest.mark.parametrize(("content_type", "body"), MALFORMED_FORMS.values(), ids=MALFORMED_FORMS)
def test_a_malformed_form_is_the_400_page(testapp, caplog, content_type, body) -> None:
    token = csrf_token(testapp.get("/"))
    body = body.replace(b"{token}", token.encode())
    with caplog.at_level(logging.WARNING):
        response = post_raw(testapp, "/flash", body, content_type, status=400)
    assert_site_error_page(response, 400)
    assert caplog.records == []


# Parts of a multipart form as a hostile client may write them: any name, maybe a file,
# any content type and transfer encoding, any value.
PART_HEADERS = st.lists(
    st.sampled_from(
        [
            "Content-Type: text/plain; charset=latin-1",
            "Content-Type: text/plain; charset=nonsense",
            "Content-Type: multipart/mixed; boundary=inner",
            "Content-Type: multipart/mixed",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Transfer-Encoding: nonsense",
        ]
    ),
    max_size=2,
)


def any_part(name: str, value: str, headers: list[str], filename: str | None) -> str:
    """``part`` with its headers in a list, as hypothesis builds them."""
    return part(name, value, *headers, filename=filename)


PARTS = st.lists(
    st.builds(
        any_part,
        name=st.sampled_from(["csrf_token", "category", "message", "other"]),
        value=st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
        headers=PART_HEADERS,
        filename=st.sampled_from([None, "x.txt", ""]),
    ),
    max_size=4,
)
MULTIPART_TYPES = [
    MULTIPART,
    f'multipart/form-data; boundary="{BOUNDARY}"',
    "multipart/form-data",
    "multipart/form-data; boundary=",
    f"multipart/form-data; boundary={BOUNDARY}; charset=latin-1",
]


@FUZZ
@given(parts=PARTS, content_type=st.sampled_from(MULTIPART_TYPES), cut=st.integers(0, 50))
@example(parts=[], content_type=MULTIPART, cut=0)
def test_no_multipart_form_is_a_500(testapp, parts: list[str], content_type, cut) -> None:
    """The page's valid token, then parts a hostile client chose, maybe cut short."""
    token = csrf_token(testapp.get("/"))
    body = multipart(part("csrf_token", token), *parts)
    body = body[: len(body) - cut]
    response = post_raw(testapp, "/flash", body, content_type, expect_errors=True)
    assert response.status_int in (303, 400)
    assert_security_headers(response)


A_YEAR_PAST_9999 = "Sat, 01 Jan 10000 00:00:00 GMT"
A_YEAR_PAST_ANY_CLOCK = "Sat, 01 Jan 99999999999 00:00:00 GMT"
# Conditions whose date WebOb cannot read: RFC 9110 says to ignore them, so the whole file.
UNREADABLE_CONDITIONS = {
    "if-modified-since-year-10000": {"If-Modified-Since": A_YEAR_PAST_9999},
    "if-modified-since-past-any-clock": {"If-Modified-Since": A_YEAR_PAST_ANY_CLOCK},
    "if-unmodified-since-year-10000": {"If-Unmodified-Since": A_YEAR_PAST_9999},
    "if-range-year-10000-with-range": {"If-Range": A_YEAR_PAST_9999, "Range": "bytes=0-1"},
    # Ends like a date, so WebOb reads no ETag but a date it cannot find (None).
    "if-range-no-date-with-range": {"If-Range": "Someday GMT", "Range": "bytes=0-1"},
}


@pytest.mark.parametrize("headers", UNREADABLE_CONDITIONS.values(), ids=UNREADABLE_CONDITIONS)
def test_a_condition_with_an_unreadable_date_is_ignored(testapp, caplog, headers) -> None:
    whole = testapp.get("/static/app.css").body
    with caplog.at_level(logging.INFO):
        response = testapp.get("/static/app.css", headers=headers, status=200)
    assert response.body == whole
    assert_security_headers(response, cacheable=True)
    assert "dropped an unreadable HTTP_IF_" in caplog.text


CONDITIONAL_HEADERS = ["If-Modified-Since", "If-Unmodified-Since", "If-None-Match", "If-Range"]
# What a WSGI header can hold: Latin-1 (an explicit alphabet also spares Hypothesis
# mapping all of Unicode for the pattern, seconds on a project's first run).
HEADER_CHARACTERS = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
HEADER_VALUES = st.text(HEADER_CHARACTERS, max_size=40)
DATES_OF_ANY_YEAR = st.from_regex(
    r"\A\w{3}, \d\d \w{3} \d{1,12} \d\d:\d\d:\d\d GMT\Z", alphabet=HEADER_CHARACTERS
)
RANGES = [None, "bytes=0-1", "bytes=-5", "bytes=5-1", "bytes=0-99999999999999999999", "bits=1"]


@FUZZ
@given(
    name=st.sampled_from(CONDITIONAL_HEADERS),
    value=st.one_of(HEADER_VALUES, DATES_OF_ANY_YEAR),
    byte_range=st.sampled_from(RANGES),
)
@example(name="If-Modified-Since", value=A_YEAR_PAST_9999, byte_range=None)
@example(name="If-Range", value="Someday GMT", byte_range="bytes=0-1")
def test_no_conditional_request_for_a_static_file_is_a_500(testapp, name, value, byte_range):
    headers = {name: value, **({"Range": byte_range} if byte_range else {})}
    response = testapp.get("/static/app.css", headers=headers, expect_errors=True)
    assert response.status_int in (200, 206, 304, 412, 416)


def failing_view(request: Request) -> dict:
    """A bug in a view, with the client's data in the exception's message."""
    raise RuntimeError(f"cannot handle {request.params.get('q')}")


def failing_after_the_view(request: Request) -> dict:
    """A bug in a response callback: it runs after the view, outside the tweens."""

    def fail(request: Request, response: object) -> None:
        raise KeyError(request.params.get("q"))

    request.add_response_callback(fail)
    return {}


APP_ERRORS = {"in-the-view": ("failing", "RuntimeError"), "after-the-view": ("late", "KeyError")}


@pytest.mark.parametrize(("path", "error"), APP_ERRORS.values(), ids=APP_ERRORS)
def test_an_app_error_is_the_500_page_and_one_log_line(app_settings, caplog, path, error) -> None:
    settings = {**app_settings, "app.log_tracebacks": "false"}  # as production.ini
    testapp = app_with_test_views(settings, failing=failing_view, late=failing_after_the_view)
    with caplog.at_level(logging.INFO):
        response = testapp.get(f"{TEST_VIEWS}/{path}", {"q": "CLIENT-DATA"}, status=500)
    assert_site_error_page(response, 500)
    assert "Something went wrong on our side." in text(response)
    [record] = caplog.records
    assert record.levelname == "ERROR"
    assert record.getMessage().startswith(f"{error} raised at ")
    assert f"on GET {TEST_VIEWS}/{path}" in record.getMessage()
    assert "CLIENT-DATA" not in caplog.text
    assert record.exc_info is None


@pytest.mark.parametrize("asked", ["true", "yes", "on", "1"])
def test_development_logs_the_traceback_of_a_500(app_settings, caplog, asked: str) -> None:
    """development.ini asks for a 500's traceback in its log line: your bug, in full (as
    every yes/no setting, any of Pyramid's words for yes asks for it)."""
    assert app_settings["app.log_tracebacks"] == "true"
    settings = {**app_settings, "app.log_tracebacks": asked}
    testapp = app_with_test_views(settings, failing=failing_view)
    with caplog.at_level(logging.INFO):
        testapp.get(f"{TEST_VIEWS}/failing", {"q": "mine"}, status=500)
    [record] = caplog.records
    assert "RuntimeError: cannot handle mine" in caplog.text
    assert record.exc_info is not None


# The same requests, through production's waitress: never its bare 500 text.
THROUGH_WAITRESS = {
    "multipart-without-boundary": (
        "POST /reset HTTP/1.1\nContent-Type: multipart/form-data\nContent-Length: 2",
        [b"--"],
        400,
    ),
    "if-modified-since-year-10000": (
        f"GET /static/app.css HTTP/1.1\nIf-Modified-Since: {A_YEAR_PAST_9999}",
        [],
        200,
    ),
    "if-range-year-10000": (
        f"GET /static/app.css HTTP/1.1\nIf-Range: {A_YEAR_PAST_9999}\nRange: bytes=0-1",
        [],
        200,
    ),
    "static-directory-with-a-forged-host": ("GET /static/. HTTP/1.1", [], 301),
}


@pytest.mark.parametrize(
    ("head", "body", "status"), THROUGH_WAITRESS.values(), ids=THROUGH_WAITRESS
)
def test_production_waitress_never_sends_its_own_error(served, head, body, status) -> None:
    answer = served.exchange(f"{head}\nHost: evil.example\nConnection: close\n", body)
    assert answer.status == status
    assert b"generated by waitress" not in answer.data
    assert b"evil.example" not in answer.data
    assert b"frame-ancestors 'none'" in answer.data


# What waitress refuses itself, before the app: requests it cannot frame. Each carries
# the client's data where the error is.
UNFRAMED = {
    "content-length-no-number": ("POST /flash HTTP/1.1\nContent-Length: CLIENT-DATA", 400),
    "two-content-lengths": ("POST /flash HTTP/1.1\nContent-Length: 1\nContent-Length: 2", 400),
    "chunk-size-no-number": ("POST /flash HTTP/1.1\nTransfer-Encoding: chunked", 400),
    "unknown-transfer-coding": ("POST /flash HTTP/1.1\nTransfer-Encoding: CLIENT-DATA", 501),
    "request-line-no-http": ("GET /CLIENT-DATA CLIENT-DATA", 400),
    "headers-over-256-kib": ("GET / HTTP/1.1\nX-Data: " + "CLIENT-DATA" * 24_000, 431),
}


@pytest.mark.parametrize(("head", "status"), UNFRAMED.values(), ids=UNFRAMED)
def test_production_waitress_refuses_what_it_cannot_frame_itself(served, head, status) -> None:
    """Its own short text, without the site's headers, but repeating nothing it was sent."""
    answer = served.exchange(
        f"{head}\nHost: shop.example\nConnection: close\n", [b"CLIENT-DATA\r\n"]
    )
    assert answer.status == status
    assert answer.data.endswith(b"(generated by waitress)")
    assert b"CLIENT-DATA" not in answer.data
    assert b"Content-Security-Policy" not in answer.data
    assert served.calls == 0

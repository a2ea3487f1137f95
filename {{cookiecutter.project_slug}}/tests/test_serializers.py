"""The JSON and rotating serializers."""

from __future__ import annotations

import pytest
{%- if cookiecutter.session_factory != "encrypted_cookie" %}
import webob.cookies
{%- endif %}

from {{ cookiecutter.project_slug }}.sessions.serializers import (
    JSONSerializer,
    RotatingSerializer,
{%- if cookiecutter.session_factory != "encrypted_cookie" %}
    SignedSerializer,
{%- endif %}
)


class Prefixed:
    """A toy keyed serializer: 'signs' by prefixing its key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def dumps(self, appstruct: object) -> bytes:
        return self.key + JSONSerializer().dumps(appstruct)

    def loads(self, bstruct: bytes) -> object:
        if not bstruct.startswith(self.key):
            raise ValueError("wrong key")
        return JSONSerializer().loads(bstruct[len(self.key) :])


def test_json_round_trip_is_compact() -> None:
    serializer = JSONSerializer()
    assert serializer.dumps({"a": [1, "é"]}) == b'{"a":[1,"\\u00e9"]}'
    assert serializer.loads(serializer.dumps({"a": [1, "é"]})) == {"a": [1, "é"]}


@pytest.mark.parametrize("garbage", [b"", b"{", b"\xff\xfe", b"pickle\x80\x04"], ids=repr)
def test_json_rejects_garbage_with_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        JSONSerializer().loads(garbage)


def test_json_nested_too_deeply_is_a_value_error() -> None:
    """Not RecursionError: a caller that handles bad input catches ValueError."""
    with pytest.raises(ValueError, match="nested too deeply"):
        JSONSerializer().loads(b"[" * 1_000_000 + b"]" * 1_000_000)


def test_rotation_writes_with_the_first_and_reads_with_any() -> None:
    rotating = RotatingSerializer([Prefixed(b"new:"), Prefixed(b"old:")])
    assert rotating.dumps(1) == b"new:1"
    assert rotating.loads(b"old:2") == 2
    assert rotating.loads(b"new:3") == 3
    assert (rotating.verify(b"new:5"), rotating.verify(b"old:6")) == ((5, 0), (6, 1))
    with pytest.raises(ValueError, match="matches none of the session secrets"):
        rotating.loads(b"other:4")


def test_rotation_needs_a_serializer() -> None:
    with pytest.raises(ValueError, match="at least one serializer"):
        RotatingSerializer([])

{%- if cookiecutter.session_factory != "encrypted_cookie" %}


SECRET = bytes(range(64))


def test_signed_format_is_webobs() -> None:
    ours = SignedSerializer(SECRET, "salt.", JSONSerializer())
    webobs = webob.cookies.SignedSerializer(SECRET, "salt.", "sha512", JSONSerializer())
    value = {"counter": 3, "text": "ünïcode"}
    assert ours.dumps(value) == webobs.dumps(value)
    assert ours.loads(webobs.dumps(value)) == value
    assert webobs.loads(ours.dumps(value)) == value


@pytest.mark.parametrize(
    "bstruct",
    [b"", b"A", b"!!!!", b"x" * 200, b"\xff\xfe"],
    ids=["empty", "one-char", "not-base64", "wrong-signature", "binary"],
)
def test_signed_rejects_anything_unsigned(bstruct: bytes) -> None:
    with pytest.raises(ValueError):
        SignedSerializer(SECRET, "salt.", JSONSerializer()).loads(bstruct)


def test_signed_rejects_another_salt_or_secret() -> None:
    signed = SignedSerializer(SECRET, "salt.", JSONSerializer()).dumps([1])
    for other in (
        SignedSerializer(SECRET, "other.", JSONSerializer()),
        SignedSerializer(bytes(64), "salt.", JSONSerializer()),
    ):
        with pytest.raises(ValueError, match="invalid signature"):
            other.loads(signed)
{%- endif %}

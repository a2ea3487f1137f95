"""JSON serialization{% if cookiecutter.session_factory != "encrypted_cookie" %}, HMAC signing{% endif %} and secret rotation for the session cookie."""

from __future__ import annotations

{% if cookiecutter.session_factory != "encrypted_cookie" -%}
import binascii
import hmac
{% endif -%}
import json
from collections.abc import Sequence
from typing import Any, Protocol
{% if cookiecutter.session_factory != "encrypted_cookie" %}
SIGNATURE_BYTES = 64  # HMAC-SHA512
TO_BASE64URL = bytes.maketrans(b"+/", b"-_")
FROM_BASE64URL = bytes.maketrans(b"-_", b"+/")
{% endif %}

class Serializer(Protocol):
    """What Pyramid and WebOb call a serializer: ``dumps`` to bytes, ``loads`` from bytes."""

    def dumps(self, appstruct: Any) -> bytes: ...  # pragma: no cover

    def loads(self, bstruct: bytes) -> Any: ...  # pragma: no cover


class JSONSerializer:
    """Compact JSON; never pickle, so a leaked secret cannot become remote code execution."""

    # One encoder for every call: json.dumps with options builds a new one each time.
    encoder = json.JSONEncoder(separators=(",", ":"))
    decoder = json.JSONDecoder()

    def dumps(self, appstruct: Any) -> bytes:
        """Serialize ``appstruct`` to UTF-8 JSON bytes."""
        return self.encoder.encode(appstruct).encode()

    def loads(self, bstruct: bytes) -> Any:
        """Parse UTF-8 JSON bytes; malformed or absurdly nested input raises ValueError."""
        try:
            return self.decoder.decode(bstruct.decode())
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

{% if cookiecutter.session_factory != "encrypted_cookie" %}
class SignedSerializer:
    """Sign with HMAC-SHA512 and encode as unpadded base64url.

    The format of WebOb's ``SignedSerializer`` (signature, then payload), computed with
    OpenSSL's HMAC from a copy of the keyed state made once: WebOb hands ``hmac`` a
    lambda as its digest, which forces the pure-Python HMAC, and a fresh HMAC hashes the
    key again every time. base64url goes through ``binascii`` directly, without the
    ``base64`` module's wrappers.
    """

    def __init__(self, secret: bytes, salt: str, serializer: Serializer) -> None:
        self.keyed = hmac.new(salt.encode() + secret, digestmod="sha512")
        self.serializer = serializer

    def signature(self, payload: bytes) -> bytes:
        """The HMAC-SHA512 of ``payload``."""
        mac = self.keyed.copy()
        mac.update(payload)
        return mac.digest()

    def dumps(self, appstruct: Any) -> bytes:
        """Serialize and sign ``appstruct``."""
        payload = self.serializer.dumps(appstruct)
        signed = binascii.b2a_base64(self.signature(payload) + payload, newline=False)
        return signed.translate(TO_BASE64URL).rstrip(b"=")

    def loads(self, bstruct: bytes) -> Any:
        """Check the signature and deserialize; anything else raises ValueError."""
        try:
            signed = binascii.a2b_base64(bstruct.translate(FROM_BASE64URL) + b"==")
        except (binascii.Error, TypeError) as error:
            raise ValueError(f"not base64url: {error}") from None
        signature, payload = signed[:SIGNATURE_BYTES], signed[SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self.signature(payload)):
            raise ValueError("invalid signature")
        return self.serializer.loads(payload)

{% endif %}
class RotatingSerializer:
    """Write with the first serializer and read with any of them.

    Each serializer holds one secret, the signing secret first: rotating the secret
    therefore logs nobody out while the previous one stays listed as a fallback.
    """

    def __init__(self, serializers: Sequence[Serializer]) -> None:
        if not serializers:
            raise ValueError("RotatingSerializer needs at least one serializer")
        self.serializers = tuple(serializers)

    def dumps(self, appstruct: Any) -> bytes:
        """Serialize with the current secret."""
        return self.serializers[0].dumps(appstruct)

    def loads(self, bstruct: bytes) -> Any:
        """Deserialize with the first secret that accepts ``bstruct``; else ValueError."""
        return self.verify(bstruct)[0]

    def verify(self, bstruct: bytes) -> tuple[Any, int]:
        """What ``loads`` gives, and which secret accepted it (0: the current one), so
        that a value of a previous secret can be written again with the current one
        without checking it twice."""
        for index, serializer in enumerate(self.serializers):
            try:
                return serializer.loads(bstruct), index
            except (ValueError, TypeError):
                continue
        raise ValueError("the value matches none of the session secrets")

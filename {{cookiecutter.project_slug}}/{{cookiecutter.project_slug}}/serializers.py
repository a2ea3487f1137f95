"""JSON serialization and secret rotation, shared by the session factory and its cookie."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol


class Serializer(Protocol):
    """What Pyramid and WebOb call a serializer: ``dumps`` to bytes, ``loads`` from bytes."""

    def dumps(self, appstruct: Any) -> bytes: ...  # pragma: no cover

    def loads(self, bstruct: bytes) -> Any: ...  # pragma: no cover


class JSONSerializer:
    """Compact JSON; never pickle, so a leaked secret cannot become remote code execution."""

    def dumps(self, appstruct: Any) -> bytes:
        """Serialize ``appstruct`` to UTF-8 JSON bytes."""
        return json.dumps(appstruct, separators=(",", ":")).encode()

    def loads(self, bstruct: bytes) -> Any:
        """Parse JSON bytes; malformed input raises ValueError."""
        return json.loads(bstruct)


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
        for serializer in self.serializers:
            try:
                return serializer.loads(bstruct)
            except (ValueError, TypeError):
                continue
        raise ValueError("the value matches none of the session secrets")

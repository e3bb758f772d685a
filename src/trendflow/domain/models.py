"""Frozen domain models shared by the normalizer, the enricher and the stores."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Geo:
    """Where an event happened; every part is optional."""

    lat: float | None = None
    lon: float | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    place: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("lat", self.lat),
                ("lon", self.lon),
                ("country", self.country),
                ("place", self.place),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event was refused: the field at fault and a stable reason code."""

    field: str
    reason: str
    message: str = ""

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "message": self.message}


def describe_errors(errors: Sequence[FieldError]) -> str:
    """Every field error on one line, for a dead letter's message or a log."""
    return "; ".join(f"{e.field}: {e.reason}" + (f" ({e.message})" if e.message else "") for e in errors)


@dataclass(frozen=True, slots=True)
class TrendEvent:
    """A canonical, normalized event: the shape every source is turned into."""

    source: str
    external_id: str
    text: str
    timestamp: datetime  # timezone-aware, UTC
    topics: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    geo: Geo | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    """The key of the embedding cache: identical text is embedded once."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

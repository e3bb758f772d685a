"""Turn the shapes real sources send into one canonical ``TrendEvent``, or into stable reason codes.

This is the normalization contract of DESIGN §4, documented field by field in ``specs/data-model.md``.
It is pure and deterministic: no I/O, no clock (``now`` is passed in), and it never raises, whatever
it is given. Every field is checked even after one fails, so a producer sees all its mistakes at once::

    >>> now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    >>> raw = {"external_id": 7, "source": " X ", "text": "hi", "timestamp": 0}
    >>> event = normalize_event(raw, now=now).event
    >>> event.source, event.external_id, format_timestamp(event.timestamp)
    ('x', '7', '1970-01-01T00:00:00Z')
    >>> [error.reason for error in normalize_event({"text": 1}, now=now).errors][:3]
    ['missing_field:external_id', 'missing_field:source', 'bad_type:text']
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache
from typing import Any, TypeAlias, TypeVar

import orjson
import pycountry

from trendflow.domain.models import FieldError, Geo, TrendEvent

T = TypeVar("T")
Result: TypeAlias = T | FieldError  # a field's canonical value, or why it was refused


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits that keep one event bounded; every one is a refusal with its own reason code."""

    max_text_chars: int = 10_000
    max_topics: int = 100
    max_topic_chars: int = 100
    max_metadata_bytes: int = 65_536  # size of the metadata JSON, `extra` included
    max_metadata_depth: int = 32  # nesting depth of objects and arrays; the metadata object itself is 1
    max_future_skew: timedelta = timedelta(days=1)  # timestamps later than now + this are `bad_timestamp`
    # (source, external_id) is a unique btree key in PostgreSQL, which refuses index rows over ~2.7 kB.
    max_external_id_chars: int = 256
    max_source_chars: int = 64
    max_place_chars: int = 200


@dataclass(frozen=True, slots=True)
class Normalized:
    """The outcome for one raw event: a canonical event, or every reason it was refused."""

    event: TrendEvent | None
    errors: tuple[FieldError, ...]

    @property
    def ok(self) -> bool:
        return self.event is not None and not self.errors


_DEFAULT_LIMITS = Limits()


REQUIRED_FIELDS = ("external_id", "source", "text", "timestamp")
OPTIONAL_FIELDS = ("topics", "metadata", "geo")
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
EVENT_FIELD = "event"  # the one field of a `trends:raw` stream entry

BAD_JSON = "bad_json"
BAD_ENCODING = "bad_encoding"
BAD_EXTERNAL_ID = "bad_external_id"
BAD_SOURCE = "bad_source"
BAD_TEXT = "bad_text"
BAD_TIMESTAMP = "bad_timestamp"
BAD_TOPICS = "bad_topics"
BAD_METADATA = "bad_metadata"
BAD_GEO = "bad_geo"
EXTERNAL_ID_TOO_LONG = "external_id_too_long"
SOURCE_TOO_LONG = "source_too_long"
TEXT_TOO_LONG = "text_too_long"
TOPIC_TOO_LONG = "topic_too_long"
TOO_MANY_TOPICS = "too_many_topics"
METADATA_TOO_LARGE = "metadata_too_large"
METADATA_TOO_DEEP = "metadata_too_deep"
_TYPED_FIELDS = ("external_id", "source", "text", EVENT_FIELD)

REASONS: frozenset[str] = frozenset(
    {
        BAD_JSON,
        BAD_ENCODING,
        BAD_EXTERNAL_ID,
        BAD_SOURCE,
        BAD_TEXT,
        BAD_TIMESTAMP,
        BAD_TOPICS,
        BAD_METADATA,
        BAD_GEO,
        EXTERNAL_ID_TOO_LONG,
        SOURCE_TOO_LONG,
        TEXT_TOO_LONG,
        TOPIC_TOO_LONG,
        TOO_MANY_TOPICS,
        METADATA_TOO_LARGE,
        METADATA_TOO_DEEP,
    }
    | {f"missing_field:{name}" for name in (*REQUIRED_FIELDS, EVENT_FIELD)}
    | {f"bad_type:{name}" for name in _TYPED_FIELDS}
)

# PostgreSQL text and jsonb cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_LAT_LON = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)", re.ASCII)
_SLUG_WORD = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
_TOPIC_SEPARATORS = re.compile("[,;]")
_UTF8_BOM = b"\xef\xbb\xbf"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECONDS_ABOVE = 10**11  # epoch numbers above this are milliseconds (10**11 s would be the year 5138)
_MAX_EPOCH_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_NUMBER_CHARS = 64  # longer timestamps or coordinates are refused before any parsing
# A private context: no signal traps, and immune to whatever the thread's decimal context was set to.
_DECIMAL = Context(prec=40, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
_MAX_INT_DIGITS_BITS = 14_000  # ~4,200 digits: under Python's int-to-str limit, over any length limit
_JSON_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson, and so the stream, can carry

_JSON_KINDS: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    tuple: "array",
}
_JSON_BASES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "object"),
    (list, "array"),
    (tuple, "array"),
)

_GEO_KEYS = frozenset({"lat", "lon", "country", "place"})
# Common English names that ISO 3166 (and so pycountry) spells differently.
_COUNTRY_ALIASES = {
    "britain": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "uk": "GB",
    "america": "US",
    "united states of america": "US",
    "russia": "RU",
    "turkey": "TR",
    "ivory coast": "CI",
    "cote d'ivoire": "CI",
    "macedonia": "MK",
    "swaziland": "SZ",
    "holland": "NL",
    "the netherlands": "NL",
    "palestine": "PS",
    "vatican": "VA",
    "vatican city": "VA",
    "brunei": "BN",
    "cape verde": "CV",
    "micronesia": "FM",
    "burma": "MM",
    "dr congo": "CD",
    "drc": "CD",
    "democratic republic of the congo": "CD",
    "uae": "AE",
    "macau": "MO",
}
_MAX_COUNTRY_CHARS = 100


def normalize_event(raw: object, *, now: datetime, limits: Limits = Limits()) -> Normalized:
    """Normalize one raw event (a decoded JSON value) into a canonical event or its reasons for refusal."""
    if not isinstance(raw, Mapping):
        return Normalized(None, (_bad_type(EVENT_FIELD, raw, "a JSON object"),))
    external_id = _normalize_external_id(raw.get("external_id"), limits)
    source = _normalize_source(raw.get("source"), limits)
    text = _normalize_text(raw.get("text"), limits)
    timestamp = _normalize_timestamp(raw.get("timestamp"), now=now, limits=limits)
    topics = normalize_topics(raw.get("topics"), limits=limits)
    unknown = {key: value for key, value in raw.items() if key not in KNOWN_FIELDS}
    metadata = _normalize_metadata(raw.get("metadata"), unknown, limits)
    geo = _normalize_geo(raw.get("geo"), limits)

    errors = tuple(
        value
        for value in (external_id, source, text, timestamp, topics, metadata, geo)
        if isinstance(value, FieldError)
    )
    if errors:
        return Normalized(None, errors)
    assert isinstance(external_id, str) and isinstance(source, str) and isinstance(text, str)
    assert isinstance(timestamp, datetime) and isinstance(topics, tuple) and isinstance(metadata, dict)
    assert geo is None or isinstance(geo, Geo)
    event = TrendEvent(source, external_id, text, timestamp, topics, metadata, geo)
    return Normalized(event, ())


def parse_event_json(data: bytes | str) -> object | FieldError:
    """Decode one event's JSON text. Any JSON value comes back: judging it is `normalize_event`'s job."""
    if isinstance(data, str):
        if _SURROGATE.search(data):
            return FieldError(EVENT_FIELD, BAD_ENCODING, "the event text holds a lone surrogate, not UTF-8")
        payload: bytes | str = data.removeprefix("\ufeff")
    elif isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data).removeprefix(_UTF8_BOM)
    else:
        return _bad_type(EVENT_FIELD, data, "JSON text")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if isinstance(payload, bytes) and not _is_utf8(payload):
            return FieldError(EVENT_FIELD, BAD_ENCODING, "the event is not valid UTF-8")
        return FieldError(EVENT_FIELD, BAD_JSON, f"the event is not valid JSON: {exc}")


def decode_stream_entry(fields: Mapping[Any, bytes | str]) -> object | FieldError:
    """Read the raw event out of a `trends:raw` entry, which carries it as JSON text in the field `event`.

    Field names may be bytes (what redis-py returns) or str; other fields are ignored.
    """
    value = fields.get(EVENT_FIELD.encode(), fields.get(EVENT_FIELD))
    if value is None:
        return FieldError(
            EVENT_FIELD, f"missing_field:{EVENT_FIELD}", "the stream entry has no field `event`"
        )
    return parse_event_json(value)


def encode_stream_entry(event: TrendEvent) -> dict[str, bytes]:
    """The fields of a `trends:raw` entry for a canonical event; `decode_stream_entry` reads them back."""
    return {EVENT_FIELD: encode_event(event)}


def encode_event(event: TrendEvent) -> bytes:
    """A canonical event as JSON bytes, exactly as a producer would post it."""
    return orjson.dumps(event_to_json(event))


def event_to_json(event: TrendEvent) -> dict[str, Any]:
    """A canonical event as a JSON-ready dict; normalizing it gives the same event back.

    The metadata dict is the event's own, not a copy.
    """
    return {
        "external_id": event.external_id,
        "source": event.source,
        "text": event.text,
        "timestamp": format_timestamp(event.timestamp),
        "topics": list(event.topics),
        "metadata": event.metadata,
        "geo": event.geo.to_json() if event.geo is not None else None,
    }


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, microseconds only when there are some: `2026-03-01T12:00:00.500000Z`."""
    return _as_utc(moment).isoformat().removesuffix("+00:00") + "Z"


def extract_hashtags(text: str, *, max_chars: int = _DEFAULT_LIMITS.max_topic_chars) -> tuple[str, ...]:
    """Hashtags in a text, lower-case, in order of appearance, each once: "#Foo bar #baz" -> ("foo", "baz").

    A hashtag is `#` followed by word characters of any script (letters, digits, `_`, combining marks)
    with at least one letter, not preceded by a word character, `#`, `&` or `/` (so `C#`, `&#39;` and
    URL fragments are not hashtags). Tags longer than `max_chars` are skipped, as topics refuse them.
    """
    found: dict[str, None] = {}
    start = text.find("#")
    while start >= 0:
        end = start + 1
        while end < len(text) and _is_hashtag_char(text[end]):
            end += 1
        tag = text[start + 1 : end]
        preceded_by_word = start > 0 and (_is_hashtag_char(text[start - 1]) or text[start - 1] in "#&/")
        if tag and not preceded_by_word and any(char.isalpha() for char in tag):
            topic = tag.lower()
            if len(topic) <= max_chars:
                found.setdefault(topic)
        start = text.find("#", max(end, start + 1))
    return tuple(found)


def normalize_topics(value: object, *, limits: Limits = Limits()) -> tuple[str, ...] | FieldError:
    """Clean topics in any accepted shape into an ordered, de-duplicated tuple of lower-case strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = _split_topic_string(value)
        if isinstance(items, FieldError):
            return items
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return FieldError("topics", BAD_TOPICS, f"expected an array or a string, got {_json_type(value)}")

    topics: dict[str, None] = {}
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, str | int):
            return FieldError(
                "topics", BAD_TOPICS, f"a topic must be a string or an integer, got {_json_type(item)}"
            )
        if isinstance(item, int) and item.bit_length() > _MAX_INT_DIGITS_BITS:
            return FieldError(
                "topics", TOPIC_TOO_LONG, f"a topic is longer than {limits.max_topic_chars} characters"
            )
        topic = _clean_topic(str(item))
        if not topic:
            continue
        if _UNSTORABLE.search(topic):
            return FieldError("topics", BAD_TOPICS, "a topic holds a NUL character or a lone surrogate")
        if len(topic) > limits.max_topic_chars:
            return FieldError(
                "topics", TOPIC_TOO_LONG, f"a topic is longer than {limits.max_topic_chars} characters"
            )
        topics.setdefault(topic)
        if len(topics) > limits.max_topics:
            return FieldError("topics", TOO_MANY_TOPICS, f"more than {limits.max_topics} distinct topics")
    return tuple(topics)


def _normalize_external_id(value: object, limits: Limits) -> Result[str]:
    if isinstance(value, str):
        external_id = value.strip()
        if not external_id:
            return _missing("external_id")
        if _UNSTORABLE.search(external_id):
            return FieldError("external_id", BAD_EXTERNAL_ID, "holds a NUL character or a lone surrogate")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _MAX_INT_DIGITS_BITS:
            return _too_long("external_id", EXTERNAL_ID_TOO_LONG, limits.max_external_id_chars)
        external_id = str(value)
    elif value is None:
        return _missing("external_id")
    else:
        return _bad_type("external_id", value, "a string or an integer")
    if len(external_id) > limits.max_external_id_chars:
        return _too_long("external_id", EXTERNAL_ID_TOO_LONG, limits.max_external_id_chars)
    return external_id


def _normalize_source(value: object, limits: Limits) -> Result[str]:
    if value is None:
        return _missing("source")
    if not isinstance(value, str):
        return _bad_type("source", value, "a string")
    words = value.split()
    if not words:
        return _missing("source")
    if not all(_SLUG_WORD.fullmatch(word) for word in words):
        return FieldError(
            "source", BAD_SOURCE, "only ASCII letters, digits, '-', '_', '.' and spaces are allowed"
        )
    source = "-".join(words).lower()
    if len(source) > limits.max_source_chars:
        return _too_long("source", SOURCE_TOO_LONG, limits.max_source_chars)
    return source


def _normalize_text(value: object, limits: Limits) -> Result[str]:
    if value is None:
        return _missing("text")
    if not isinstance(value, str):
        return _bad_type("text", value, "a string")
    text = value.strip()
    if not text:
        return _missing("text")
    if len(text) > limits.max_text_chars:
        return _too_long("text", TEXT_TOO_LONG, limits.max_text_chars)
    if _UNSTORABLE.search(text):
        return FieldError("text", BAD_TEXT, "holds a NUL character or a lone surrogate")
    return text


def _normalize_timestamp(value: object, *, now: datetime, limits: Limits) -> Result[datetime]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return _missing("timestamp")
    moment = _parse_timestamp(value)
    if isinstance(moment, str):
        return FieldError("timestamp", BAD_TIMESTAMP, moment)
    if moment < _EPOCH:
        return FieldError("timestamp", BAD_TIMESTAMP, "is before 1970-01-01T00:00:00Z")
    if moment > _as_utc(now) + limits.max_future_skew:
        return FieldError(
            "timestamp", BAD_TIMESTAMP, f"is more than {_describe(limits.max_future_skew)} in the future"
        )
    return moment


def _parse_timestamp(value: object) -> datetime | str:
    """The moment a timestamp names, in UTC, or what is wrong with it."""
    if isinstance(value, datetime):
        return _to_utc(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _from_epoch(value)
    if isinstance(value, float):
        return _from_epoch(Decimal(value)) if math.isfinite(value) else "is not a finite number"
    if not isinstance(value, str):
        return f"expected a string or a number, got {_json_type(value)}"
    text = value.strip()
    if len(text) > _MAX_NUMBER_CHARS:
        return f"is longer than {_MAX_NUMBER_CHARS} characters"
    if _NUMBER.fullmatch(text):
        return _from_epoch(Decimal(text))
    try:
        return _to_utc(datetime.fromisoformat(text.upper()))
    except ValueError:
        return "is neither RFC 3339 / ISO 8601 nor epoch seconds or milliseconds"


def _from_epoch(number: int | Decimal) -> datetime | str:
    """Epoch seconds, or milliseconds above 10**11, to UTC, rounded half-even to the microsecond."""
    if number < 0:
        return "is before 1970-01-01T00:00:00Z"
    if number > _MAX_EPOCH_MS:
        return "is after the year 9999"
    micros_per_unit = 1_000 if number > _MILLISECONDS_ABOVE else 1_000_000
    micros = _DECIMAL.multiply(Decimal(number), micros_per_unit).to_integral_value(context=_DECIMAL)
    return _EPOCH + timedelta(microseconds=int(micros))


def _to_utc(moment: datetime) -> datetime | str:
    try:
        return _as_utc(moment)
    except OverflowError:  # an offset that moves the year 1 or 9999 out of range
        return "is out of the range of dates"


def _as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _split_topic_string(value: str) -> list[object] | FieldError:
    text = value.strip()
    if not text:
        return []
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return FieldError("topics", BAD_TOPICS, "a string in brackets must be a valid JSON array")
        return list(parsed)
    if _TOPIC_SEPARATORS.search(text):
        return list(_TOPIC_SEPARATORS.split(text))
    if text.startswith("#"):
        return list(text.split())
    return [text]


def _clean_topic(raw: str) -> str:
    """Collapse whitespace, drop the leading `#`s (and blanks between them), lower-case."""
    words = raw.split()
    while words and words[0].startswith("#"):
        first = words[0].lstrip("#")
        if first:
            words[0] = first
            break
        words.pop(0)
    return " ".join(words).lower()


def _normalize_metadata(value: object, unknown: dict[Any, Any], limits: Limits) -> Result[dict[str, Any]]:
    metadata = _metadata_as_dict(value)
    if isinstance(metadata, FieldError):
        return metadata
    if unknown:
        given_extra = metadata.get("extra")
        if given_extra is None:
            metadata["extra"] = unknown
        elif isinstance(given_extra, Mapping):
            metadata["extra"] = {**unknown, **given_extra}
        else:
            return FieldError(
                "metadata",
                BAD_METADATA,
                "metadata.extra is not an object, so unknown fields cannot be kept there",
            )
    return _copy_json_object(metadata, limits)


def _metadata_as_dict(value: object) -> Result[dict[Any, Any]]:
    """Bring each accepted metadata shape to a (not yet validated) dict."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return FieldError("metadata", BAD_METADATA, "a string must hold a JSON object")
        if isinstance(value, str):
            return FieldError("metadata", BAD_METADATA, "a string must hold a JSON object, not a JSON string")
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return _metadata_from_pairs(value)
    return FieldError("metadata", BAD_METADATA, f"expected an object, got {_json_type(value)}")


def _metadata_from_pairs(items: list[Any] | tuple[Any, ...]) -> Result[dict[Any, Any]]:
    metadata: dict[Any, Any] = {}
    for index, item in enumerate(items):
        if isinstance(item, Mapping) and set(item) == {"key", "value"}:
            key, value = item["key"], item["value"]
        elif isinstance(item, list | tuple) and len(item) == 2:
            key, value = item
        else:
            return FieldError(
                "metadata",
                BAD_METADATA,
                f'item {index} is neither {{"key": ..., "value": ...}} nor [key, value]',
            )
        if not isinstance(key, str):
            return FieldError("metadata", BAD_METADATA, f"item {index} has a key that is not a string")
        metadata[key] = value
    return metadata


def _copy_json_object(root: dict[Any, Any], limits: Limits) -> Result[dict[str, Any]]:
    """A validated deep copy of a JSON object, walked without recursion so any depth is safe.

    `spent` is a lower bound of the JSON size (every value takes a byte, every string its length),
    which bounds the work on huge or self-referencing input before the exact size is measured.
    """
    holder: dict[str, Any] = {}
    stack: list[tuple[Any, Any, Any, int]] = [(root, holder, "root", 1)]  # value, parent, slot, depth
    spent = 0
    while stack:
        value, parent, slot, depth = stack.pop()
        kind = _json_kind(value)
        spent += 1 + (len(value) if kind in ("string", "object", "array") else 0)
        if spent > limits.max_metadata_bytes:
            return _metadata_too_large(limits)
        if kind == "object" or kind == "array":
            if depth > limits.max_metadata_depth:
                return _metadata_too_deep(limits)
            if kind == "object":
                children = list(value.items())
                container: Any = {}
                for key, _ in children:
                    if type(key) is not str or _UNSTORABLE.search(key):
                        return FieldError(
                            "metadata", BAD_METADATA, "holds a key that is not a storable string"
                        )
                    spent += len(key)
                    container[key] = None  # keeps the keys in their given order
            else:
                children = list(enumerate(value))
                container = [None] * len(children)
            parent[slot] = container
            # Pushed in reverse so children are visited in document order: the first problem is reported.
            stack.extend((item, container, key, depth + 1) for key, item in reversed(children))
        elif kind == "string":
            if _UNSTORABLE.search(value):
                return FieldError("metadata", BAD_METADATA, "holds a NUL character or a lone surrogate")
            parent[slot] = str(value)
        elif kind == "integer":
            if not _JSON_INT_RANGE[0] <= value <= _JSON_INT_RANGE[1]:
                return FieldError("metadata", BAD_METADATA, "holds an integer outside the 64-bit range")
            parent[slot] = int(value)
        elif kind == "number":
            if not math.isfinite(value):
                return FieldError("metadata", BAD_METADATA, "holds NaN or infinity, which JSON cannot carry")
            parent[slot] = float(value)
        elif kind is not None:  # null, boolean
            parent[slot] = value
        else:
            return FieldError(
                "metadata", BAD_METADATA, f"holds a value JSON cannot carry ({type(value).__name__})"
            )
    copy: dict[str, Any] = holder["root"]
    try:
        size = len(orjson.dumps(copy))
    except orjson.JSONEncodeError:  # orjson's own nesting limit, reachable only with a raised depth limit
        return _metadata_too_deep(limits)
    if size > limits.max_metadata_bytes:
        return _metadata_too_large(limits)
    return copy


def _json_kind(value: object) -> str | None:
    """The JSON kind of a Python value (subclasses such as IntEnum included), or None if JSON has none."""
    kind = _JSON_KINDS.get(type(value))
    if kind is not None:
        return kind
    for base, name in _JSON_BASES:
        if isinstance(value, base):
            return name
    return None


def _metadata_too_deep(limits: Limits) -> FieldError:
    return FieldError("metadata", METADATA_TOO_DEEP, f"nests deeper than {limits.max_metadata_depth} levels")


def _metadata_too_large(limits: Limits) -> FieldError:
    return FieldError(
        "metadata", METADATA_TOO_LARGE, f"is larger than {limits.max_metadata_bytes} bytes as JSON"
    )


def _normalize_geo(value: object, limits: Limits) -> Result[Geo | None]:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        pair = _LAT_LON.fullmatch(text)
        if pair:
            return _geo_from_parts(pair[1], pair[2], None, None, limits)
        country = _country_code(text)
        if country is None:
            return FieldError("geo", BAD_GEO, 'a string must be "lat,lon" or a known country code or name')
        return Geo(country=country)
    if isinstance(value, Mapping):
        unknown = sorted(ascii(key)[:40] for key in value if key not in _GEO_KEYS)
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            return FieldError(
                "geo", BAD_GEO, f"unknown keys {shown}; the allowed ones are lat, lon, country, place"
            )
        return _geo_from_parts(
            value.get("lat"), value.get("lon"), value.get("country"), value.get("place"), limits
        )
    return FieldError("geo", BAD_GEO, f"expected an object or a string, got {_json_type(value)}")


def _geo_from_parts(
    lat: object, lon: object, country: object, place: object, limits: Limits
) -> Result[Geo | None]:
    if (lat is None) != (lon is None):
        return FieldError("geo", BAD_GEO, "lat and lon come together or not at all")
    lat_degrees = _degrees(lat, 90) if lat is not None else None
    lon_degrees = _degrees(lon, 180) if lon is not None else None
    if lat is not None and lat_degrees is None:
        return FieldError("geo", BAD_GEO, "lat must be a number from -90 to 90")
    if lon is not None and lon_degrees is None:
        return FieldError("geo", BAD_GEO, "lon must be a number from -180 to 180")

    country_code = None
    if isinstance(country, str) and country.strip():
        country_code = _country_code(country)
        if country_code is None:
            return FieldError("geo", BAD_GEO, "country must be an ISO 3166 code or a country name")
    elif country is not None and not isinstance(country, str):
        return FieldError("geo", BAD_GEO, f"country must be a string, got {_json_type(country)}")

    place_name = None
    if isinstance(place, str) and place.strip():
        place_name = place.strip()
        if _UNSTORABLE.search(place_name):
            return FieldError("geo", BAD_GEO, "place holds a NUL character or a lone surrogate")
        if len(place_name) > limits.max_place_chars:
            return FieldError("geo", BAD_GEO, f"place is longer than {limits.max_place_chars} characters")
    elif place is not None and not isinstance(place, str):
        return FieldError("geo", BAD_GEO, f"place must be a string, got {_json_type(place)}")

    if lat_degrees is None and country_code is None and place_name is None:
        return None
    return Geo(lat=lat_degrees, lon=lon_degrees, country=country_code, place=place_name)


def _degrees(value: object, bound: int) -> float | None:
    """A finite number, or numeric string, within [-bound, bound]; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if -bound <= value <= bound else None
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_CHARS and _NUMBER.fullmatch(value.strip()):
        value = float(value.strip())
    if isinstance(value, float) and math.isfinite(value) and -bound <= value <= bound:
        return value
    return None


def _country_code(name: str) -> str | None:
    """ISO 3166-1 alpha-2 for a country code (alpha-2, alpha-3, numeric) or an English name."""
    key = " ".join(name.split()).lower()
    if len(key) > _MAX_COUNTRY_CHARS or _UNSTORABLE.search(key):
        return None
    return _lookup_country(key)


@lru_cache(maxsize=2048)
def _lookup_country(key: str) -> str | None:
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    try:
        return str(pycountry.countries.lookup(key).alpha_2)
    except LookupError:
        return None


def _is_hashtag_char(char: str) -> bool:
    return char.isalnum() or char in "_\u200c\u200d" or unicodedata.category(char) in ("Mn", "Mc")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _missing(name: str) -> FieldError:
    return FieldError(name, f"missing_field:{name}", f"{name} is required and must not be blank")


def _bad_type(name: str, value: object, expected: str) -> FieldError:
    return FieldError(name, f"bad_type:{name}", f"expected {expected}, got {_json_type(value)}")


def _too_long(name: str, reason: str, limit: int) -> FieldError:
    return FieldError(name, reason, f"is longer than {limit} characters")


def _describe(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for messages a producer will understand."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__

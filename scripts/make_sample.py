"""Writes src/trendflow/sample/events.jsonl: the demo's sample, composed for trendflow (deterministic).

Six hours of events from five sources in the messy shapes real sources send (DESIGN §4), with one topic
(#solareclipse) bursting in the last hour beside a steady topic (#football). Run: python scripts/make_sample.py
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

END = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
OUT = Path(__file__).resolve().parents[1] / "src" / "trendflow" / "sample" / "events.jsonl"

ECLIPSE = [
    "The partial solar eclipse over Lisbon right now is unreal #solareclipse",
    "Clouds finally parted and we can see the eclipse! #SolarEclipse #astronomy",
    "Kids at school watching the eclipse through pinhole cameras, so much joy #solareclipse",
    "Traffic stopped on the bridge, everyone looking up at the sun #solareclipse",
    "Please don't look at the eclipse without proper glasses, eye doctors warn #solareclipse",
    "The light went strange and the birds went quiet during the eclipse #solareclipse #nature",
    "Best eclipse photo I have ever taken, crescent shadows under the trees #solareclipse",
    "Eclipse glasses sold out everywhere in Madrid, people sharing them on the street #solareclipse",
]
FOOTBALL = [
    "What a goal in the second half, the stadium is shaking #football",
    "Referee decisions tonight are a disgrace #football",
    "Transfer rumours again, I do not believe a word of it #football",
    "Our defence looked solid for once, clean sheet #football #matchday",
    "Injury update before the weekend derby is worrying #football",
]
BACKGROUND = [
    ("Coffee prices went up again at my local cafe", ["food", "economy"]),
    ("New phone battery lasts two full days, impressed", ["tech"]),
    ("Rain all week, the river is close to flooding the old town", ["weather"]),
    ("The city council approved the new bike lanes downtown", ["cities", "transport"]),
    ("Stock markets fell sharply after the rate decision", ["markets", "economy"]),
    ("Concert tickets sold out in four minutes, absolutely furious", ["music"]),
    ("Trying a new sourdough recipe this weekend", ["food"]),
    ("Train strike tomorrow, plan your commute", ["transport"]),
    ("Open source release of the new compiler is out, great work team", ["tech", "opensource"]),
    ("Heatwave warning for the south coast this afternoon", ["weather"]),
]
SOURCES = ["twitter", " Reddit ", "news-wire", "MASTODON", "webhook-demo"]
PLACES = [
    "38.72,-9.14",
    {"country": "Spain", "place": "Madrid"},
    "DE",
    {"lat": 51.5, "lon": -0.12},
    None,
    None,
]


def topics_shape(topics: list[str], rng: random.Random) -> object:
    """The same topics in one of the shapes sources really send."""
    shape = rng.randrange(6)
    if shape == 0:
        return topics
    if shape == 1:
        return ",".join(topics)
    if shape == 2:
        return "; ".join(topics)
    if shape == 3:
        return " ".join("#" + t for t in topics)
    if shape == 4:
        return json.dumps(topics)
    return topics[0] if topics else None


def timestamp_shape(moment: datetime, rng: random.Random) -> object:
    shape = rng.randrange(5)
    if shape == 0:
        return moment.isoformat().replace("+00:00", "Z")
    if shape == 1:
        return moment.replace(tzinfo=None).isoformat()  # naive means UTC
    if shape == 2:
        return int(moment.timestamp())
    if shape == 3:
        return int(moment.timestamp() * 1000)
    return str(int(moment.timestamp()))


def metadata_shape(rng: random.Random) -> object:
    lang_hint = rng.choice(["en", "en-GB", "pt"])
    shape = rng.randrange(4)
    if shape == 0:
        return {"lang_hint": lang_hint, "likes": rng.randrange(500)}
    if shape == 1:
        return json.dumps({"lang_hint": lang_hint})
    if shape == 2:
        return [{"key": "lang_hint", "value": lang_hint}, {"key": "likes", "value": rng.randrange(500)}]
    return [["lang_hint", lang_hint]]


def main() -> None:
    rng = random.Random(20261120)
    events = []

    def add(text: str, topics: list[str], moment: datetime) -> None:
        n = len(events)
        event = {
            "external_id": n if n % 3 == 0 else f"demo-{n:04d}",
            "source": SOURCES[n % len(SOURCES)],
            "text": text,
            "timestamp": timestamp_shape(moment, rng),
            "topics": topics_shape(topics, rng),
            "metadata": metadata_shape(rng),
            "geo": rng.choice(PLACES),
        }
        if n % 11 == 0:
            event["campaign"] = "demo"  # an unknown field: kept under metadata.extra
        events.append({k: v for k, v in event.items() if v is not None})

    for hour in range(6, 0, -1):
        start = END - timedelta(hours=hour)
        eclipse_count = 40 if hour == 1 else rng.choice([2, 2, 3])
        for _ in range(eclipse_count):
            add(rng.choice(ECLIPSE), ["space"], start + timedelta(seconds=rng.randrange(3600)))
        for _ in range(15):
            add(rng.choice(FOOTBALL), ["sport"], start + timedelta(seconds=rng.randrange(3600)))
        for _ in range(20):
            text, topics = rng.choice(BACKGROUND)
            add(text, topics, start + timedelta(seconds=rng.randrange(3600)))
    # Three events a careless source would send: each is refused with a reason and kept as a dead letter.
    events.append({"external_id": "broken-1", "source": "webhook-demo", "timestamp": END.isoformat()})
    events.append(
        {"external_id": "broken-2", "source": "webhook-demo", "text": "when?", "timestamp": "yesterday"}
    )
    events.append(
        {
            "external_id": "broken-3",
            "source": "webhook-demo",
            "text": "where?",
            "timestamp": 0,
            "geo": "95,200",
        }
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    print(f"wrote {len(events)} events to {OUT}")


if __name__ == "__main__":
    main()

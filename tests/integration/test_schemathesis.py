"""Requests generated from the live OpenAPI schema against the real app under uvicorn: nothing answers 5xx."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance
from schemathesis.generation.case import Case

from tests.conftest import fixed_clock
from trendflow.api.app import create_app
from trendflow.config import Settings, load_settings

KEY = "schemathesis-key-0123456789"
EXAMPLES_PER_OPERATION = 25
STARTUP_TIMEOUT_S = 60
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
INGEST_ROUTES = [
    ("/v1/events", "application/json"),
    ("/v1/events/batch", "application/json"),
    ("/v1/events/batch", "application/x-ndjson"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """The real app (lifespan and all) served by uvicorn on a free port, with an API key configured."""
    keyed = load_settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        TRENDFLOW_API_KEYS=f"{KEY},bound-key-0123456789:web",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(keyed, clock=fixed_clock), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:  # polled: uvicorn sets the flag once the lifespan ran and the socket listens
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    # The first search loads the embedding model, which takes longer than one fuzzed request may.
    assert requests.get(f"{url}/v1/search", params={"q": "warm up"}, timeout=STARTUP_TIMEOUT_S * 3).ok
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str], base_url: str
) -> None:
    """Send generated requests for one operation; any 5xx or undeclared content type fails with the case."""

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

    call()


@pytest.mark.timeout(300)
def test_generated_requests_never_get_a_server_error(live_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        checked.append(operation.label)
        takes_input = any(len(part) for part in (operation.path_parameters, operation.query, operation.body))
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
        )
        for mode in modes:
            for headers in ({"Authorization": f"Bearer {KEY}"}, {}):
                fuzz(operation, mode, headers, live_url)
    assert {"POST /v1/dlq/replay", "GET /v1/trends/{trend_id}", "GET /v1/search"} <= set(checked)


ANY_TEXT = st.text(st.characters(exclude_categories=[]))  # lone surrogates and NULs included
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
EVENT_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "external_id": JSON_VALUES,
        "source": st.text(max_size=80) | JSON_VALUES,
        "text": ANY_TEXT | JSON_VALUES,
        "timestamp": st.text(max_size=40) | st.integers() | st.floats(),
        "topics": JSON_VALUES,
        "metadata": JSON_VALUES,
        "geo": JSON_VALUES,
    },
)


def json_bytes(value: object) -> bytes:
    """JSON as any client might write it: huge integers, NaN, escaped lone surrogates."""
    return json.dumps(value).encode()


@pytest.mark.timeout(300)
def test_arbitrary_ingest_bodies_never_get_a_server_error(live_url: str) -> None:
    """The ingest routes read their bodies themselves, so the schema cannot generate them: these do."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"

    @hypothesis_settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(body=st.binary(max_size=300) | EVENT_LIKE.map(json_bytes) | JSON_VALUES.map(json_bytes))
    def post(body: bytes) -> None:
        for path, content_type in INGEST_ROUTES:
            response = session.post(f"{live_url}{path}", data=body, headers={"content-type": content_type})
            assert response.status_code < 500, (path, body, response.text)
            assert response.headers["content-type"] == "application/json"

    post()

"""Hostile bodies for the actuator's edge-box ingest: `prepare_batch` (pure) and ``POST /v1/ingest`` on a real
actuator app backed by the shared Kafka and Mosquitto.

Every body is accepted whole (each point produced to Kafka, as valid UTF-8 line protocol) or refused whole
with a 4xx status and a reason; never a 500, never part of a body, and the good bodies sent between the
hostile ones all arrive.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from telestack.actuator.command import build_app
from telestack.actuator.errors import RequestError
from telestack.actuator.ingest import IngestOptions, prepare_batch
from telestack.actuator.settings import ActuatorOptions, ActuatorSettings
from telestack.actuator.tokens import IngestGrant, TokenStore
from telestack.core.kafka import Record, ensure_topics
from telestack.core.lineproto import parse_lines
from telestack.core.settings import HttpSettings, KafkaSettings, LogSettings, MqttSettings, TopicSettings
from telestack.native import KafkaEndpoint, MqttEndpoint
from tests.hostile import corpus
from tests.kafka_reader import read_topic

CASES = corpus.load("ingest_bodies.yaml")
NOW_S = time.time()
TOKENS = corpus.time_tokens(NOW_S, 1_000_000_000)
OPTS = IngestOptions(site="hq", now_ns=int(NOW_S * 1e9))


def _request(case: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = corpus.build(case, "body", TOKENS)
    headers = {"Content-Type": case.get("type", "text/plain")}
    if case.get("gzip"):
        body = gzip.compress(body, 6)
        headers["Content-Encoding"] = "gzip"
    elif "encoding" in case:
        headers["Content-Encoding"] = case["encoding"]
    return body, headers


def checked(
    body: bytes, content_type: str | None, encoding: str | None, opts: IngestOptions = OPTS
) -> tuple[str, int, list[str]]:
    """('accepted', 0, lines) or ('refused', status, []); fails on any other exception."""
    try:
        batch = prepare_batch(body, content_type, encoding, opts)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.detail
        return "refused", exc.status, []
    lines: list[str] = []
    for record in batch.records:
        try:
            record.value.encode("utf-8")
        except UnicodeEncodeError as exc:
            pytest.fail(f"accepted text Kafka cannot carry ({exc}): {record.value[:200]!r}")
        lines += [point.measurement for point in parse_lines(record.value)]
    assert len(lines) == batch.points
    return "accepted", 0, lines


@pytest.mark.parametrize("case", CASES, ids=corpus.ids(CASES))
def test_every_corpus_body_is_accepted_whole_or_refused_with_its_status(case: dict[str, Any]) -> None:
    body, headers = _request(case)
    try:
        got, status, _ = checked(body, headers["Content-Type"], headers.get("Content-Encoding"))
    except Exception as exc:  # reported as the case's failure, with what escaped
        pytest.fail(f"{case['name']}: {type(exc).__name__}: {exc}"[:500])
    assert (got if got == "accepted" else status) == case["expect"]


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "2024-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"])
)
JSON_POINTS = st.fixed_dictionaries(
    {"measurement": st.text(max_size=6) | st.sampled_from(["room", "\udfff"])},
    optional={
        "tags": st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.just("\ud800"), max_size=3),
        "fields": st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3),
        "time": JSON_SCALARS,
    },
)


@settings(max_examples=300, deadline=None)
@given(points=st.lists(JSON_POINTS, max_size=4), precision=st.sampled_from(["ns", "us", "ms", "s"]))
def test_generated_json_batches_are_accepted_or_refused_never_crash(points: list[Any], precision: str) -> None:
    body = json.dumps({"points": points}, allow_nan=True).encode()
    checked(body, "application/json", None, IngestOptions(site="hq", now_ns=OPTS.now_ns, precision=precision))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=80), kind=st.sampled_from(["text/plain", "application/json"]))
def test_arbitrary_bytes_are_accepted_or_refused_never_crash(body: bytes, kind: str) -> None:
    checked(body, kind, None)


# --- through a real actuator and Kafka ------------------------------------------------------------------


@pytest.fixture
def ingest_app(kafka: KafkaEndpoint, mqtt: MqttEndpoint, tmp_path: Path, unique: str) -> Iterator[Any]:
    """The actuator app (its lifespan connected to Kafka and MQTT), a token for site hq, and its topic."""
    telemetry = f"hostile-ingest-{unique}"
    kafka_settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        linger_ms=5,
        topics=TopicSettings(telemetry=telemetry, commands=f"hostile-commands-{unique}"),
    )
    ensure_topics(kafka_settings, {telemetry: 3, kafka_settings.topics.commands: 1})
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"types": {}, "devices": []}))
    grant = IngestGrant(measurements=("*",), devices=("*",))
    token, _ = TokenStore(tmp_path / "tokens.json").create("box-hq", ["ingest:hq"], ingest=grant)
    settings = ActuatorSettings(
        log=LogSettings(level="WARNING", format="console"),
        kafka=kafka_settings,
        mqtt=MqttSettings(host=mqtt.host, port=mqtt.port, username=mqtt.username, password=mqtt.password),
        actuator=ActuatorOptions(
            http=HttpSettings(port=0),
            devices_file=tmp_path / "devices.yaml",
            tokens_file=tmp_path / "tokens.json",
            mqtt_client_id=f"hostile-{unique}",
            rate_limit_per_s=0.0,
        ),
    )
    app = build_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, kafka_settings


def test_hostile_bodies_between_good_ones_through_the_real_endpoint(ingest_app: Any) -> None:
    client, kafka_settings = ingest_app
    run = uuid.uuid4().hex[:8]
    statuses: dict[str, int] = {}
    reasons: dict[str, str] = {}
    for seq, case in enumerate(CASES):
        body, headers = _request(case)
        response = client.post("/v1/ingest", content=body, headers=headers)
        statuses[case["name"]] = response.status_code
        if response.status_code >= 400:
            reasons[case["name"]] = str(response.json().get("detail", ""))
        # A good, sequence-numbered point after each hostile body: none may be lost or refused.
        good = client.post("/v1/ingest", content=f"canary,run={run} seq={seq}i {time.time_ns()}".encode())
        assert good.status_code == 200, (case["name"], good.text)

    wrong = {
        name: status
        for name, status in statuses.items()
        if (status if status != 200 else "accepted") != next(c["expect"] for c in CASES if c["name"] == name)
    }
    assert not wrong, f"unexpected statuses (500 = crashed): {wrong}"
    assert all(reasons.values()), "every refusal carries a reason"

    def canaries(records: list[Record]) -> list[int]:
        return sorted(
            int(p.fields["seq"])
            for r in records
            for p in parse_lines(r.value.decode())
            if p.measurement == "canary" and p.tags.get("run") == run
        )

    records = read_topic(
        kafka_settings,
        kafka_settings.topics.telemetry,
        lambda got: canaries(got) == list(range(len(CASES))),
        30,
        "every canary in Kafka",
    )
    accepted_points = sum(1 for c in CASES if c["expect"] == "accepted")
    room = [p for r in records for p in parse_lines(r.value.decode()) if p.measurement == "room"]
    assert len(room) == accepted_points  # refused bodies put nothing in Kafka, accepted ones all of it
    assert all(p.tags["site"] == "hq" for p in room)

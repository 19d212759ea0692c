"""Edge-box ingest: the pure checks (`telestack.actuator.ingest`) and POST /v1/ingest into real Kafka."""

from __future__ import annotations

import gzip
import json

import pytest

from telestack.actuator.errors import Forbidden, InvalidInput, PayloadTooLarge, UnsupportedMedia
from telestack.actuator.ingest import IngestOptions, decode_body, prepare_batch
from telestack.actuator.tokens import IngestGrant
from telestack.native import KafkaEndpoint
from tests.actuator.conftest import ActuatorFactory, RunningActuator, read_topic

NOW_NS = 1_700_000_000_123_456_789
OPTS = IngestOptions(site="hq", now_ns=NOW_NS)


def lines_of(batch_records: list) -> list[str]:
    return [line for record in batch_records for line in record.value.splitlines()]


# --- pure ------------------------------------------------------------------------------------------------


def test_the_site_tag_is_forced_and_missing_timestamps_get_the_arrival_time() -> None:
    body = b"# a comment\nroom,device=box-1 temp=21.5 1700000000000000000\n\nroom,device=box-2 temp=19i\n"
    batch = prepare_batch(body, "text/plain; charset=utf-8", None, OPTS)
    assert batch.points == 2
    assert lines_of(batch.records) == [
        "room,device=box-1,site=hq temp=21.5 1700000000000000000",
        f"room,device=box-2,site=hq temp=19i {NOW_NS}",
    ]
    assert [r.key for r in batch.records] == ["box-1", "box-2"]


def test_lines_without_a_device_are_keyed_by_the_site_and_grouped_per_key() -> None:
    body = b"a v=1 1\nb,device=x v=2 2\nc v=3 3\n"
    batch = prepare_batch(body, None, None, OPTS)
    assert [(r.key, r.lines) for r in batch.records] == [("hq", 2), ("x", 1)]


def test_records_are_split_below_the_record_size() -> None:
    body = "".join(f"m,device=d v={i} {i}\n" for i in range(100)).encode()
    opts = IngestOptions(site="hq", now_ns=NOW_NS, max_record_bytes=1024)
    batch = prepare_batch(body, None, None, opts)
    assert len(batch.records) > 1
    assert all(len(r.value) <= 1024 for r in batch.records)
    assert sum(r.lines for r in batch.records) == 100
    assert lines_of(batch.records) == [f"m,device=d,site=hq v={float(i)} {i}" for i in range(100)]  # order kept


@pytest.mark.parametrize(
    ("precision", "raw", "ns"), [("s", 1_700_000_000, 1_700_000_000 * 10**9), ("ms", 5, 5_000_000), ("us", 5, 5_000)]
)
def test_precision_scales_integer_timestamps(precision: str, raw: int, ns: int) -> None:
    opts = IngestOptions(site="hq", precision=precision, now_ns=NOW_NS)
    batch = prepare_batch(f"m v=1 {raw}".encode(), None, None, opts)
    assert lines_of(batch.records) == [f"m,site=hq v=1.0 {ns}"]  # re-serialized: a float field


def test_every_bad_line_is_listed_and_nothing_is_accepted() -> None:
    body = b"ok v=1\nbad line\nok v=2\nm v=\xe2\x82\xac\nm v=1 notatime\n"
    with pytest.raises(InvalidInput) as info:
        prepare_batch(body, None, None, OPTS)
    assert [p.line for p in info.value.problems] == [2, 4, 5]
    assert "3 invalid lines; nothing was accepted (lines 2, 4, 5)" in info.value.detail
    assert all(p.msg.startswith(f"line {p.line}: ") for p in info.value.problems)


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_batch(b"m v=1\nm,t=\xff v=2\n", None, None, OPTS)
    assert info.value.problems[0].line == 2


def test_another_site_is_forbidden_even_among_good_lines() -> None:
    with pytest.raises(Forbidden) as info:
        prepare_batch(b"m,site=hq v=1\nm,site=annex v=2\n", None, None, OPTS)
    assert [p.line for p in info.value.problems] == [2]


def test_limits() -> None:
    with pytest.raises(PayloadTooLarge):
        prepare_batch(b"m v=1\n" * 11, None, None, IngestOptions(site="hq", max_lines=10))
    bomb = gzip.compress(b"m v=1\n" * 200_000)  # 1.2 MB of lines in a few kB
    with pytest.raises(PayloadTooLarge):
        decode_body(bomb, "gzip", max_bytes=1_000_000)
    with pytest.raises(InvalidInput):
        decode_body(b"not gzip", "gzip", max_bytes=1_000)
    with pytest.raises(InvalidInput):
        decode_body(gzip.compress(b"m v=1\n")[:-4], "gzip", max_bytes=1_000)
    with pytest.raises(UnsupportedMedia):
        decode_body(b"", "br", max_bytes=1_000)
    with pytest.raises(UnsupportedMedia):
        prepare_batch(b"<xml/>", "application/xml", None, OPTS)
    with pytest.raises(InvalidInput):
        prepare_batch(b"\n# only a comment\n", None, None, OPTS)


def test_a_json_batch() -> None:
    body = {
        "points": [
            {"measurement": "energy", "tags": {"device": "box-7"}, "fields": {"mean": 21, "ok": True, "unit": "kWh"},
             "time": "2024-05-01T12:00:00.5Z"},
            {"measurement": "energy", "fields": {"mean": 1.5}, "time": 1714564800},
            {"measurement": "energy", "fields": {"mean": 2.5}},
        ]
    }  # fmt: skip
    opts = IngestOptions(site="hq", precision="s", now_ns=NOW_NS)
    batch = prepare_batch(json.dumps(body).encode(), "application/json", None, opts)
    assert lines_of(batch.records) == [
        'energy,device=box-7,site=hq mean=21.0,ok=true,unit="kWh" 1714564800500000000',  # JSON numbers: floats
        "energy,site=hq mean=1.5 1714564800000000000",
        f"energy,site=hq mean=2.5 {NOW_NS}",
    ]


def test_json_batch_problems_name_each_point() -> None:
    body = {
        "points": [
            {"measurement": "m", "fields": {"v": 1}},
            {"measurement": "m", "fields": {}},
            {"measurement": "m", "fields": {"v": 1}, "time": "2024-05-01T12:00:00"},
            {"measurement": "m", "fields": {"v": [1]}, "extra": 1},
        ]
    }
    with pytest.raises(InvalidInput) as info:
        prepare_batch(json.dumps(body).encode(), "application/json", None, OPTS)
    assert [p.loc for p in info.value.problems] == [("body", "points", 1), ("body", "points", 2), ("body", "points", 3)]
    assert "timezone" in info.value.problems[1].msg
    for bad in (b"{", b'{"points": 3}', b'{"points": [], "x": 1}', b"[]"):
        with pytest.raises(InvalidInput):
            prepare_batch(bad, "application/json", None, OPTS)


# --- over HTTP into Kafka ----------------------------------------------------------------------------------


def test_ingest_with_a_site_token_lands_in_telemetry_tagged_with_that_site(
    actuator: RunningActuator, kafka: KafkaEndpoint
) -> None:
    client = actuator.client(actuator.tokens.hq)
    body = b"energy,device=box-7,sensor=m3 mean=21.5,min=20.1,max=22.0,diff=1.9 1714564800000000000\n" \
           b"energy,device=box-8 mean=3.5 1714564800000000000\n"  # fmt: skip
    response = client.post("/v1/ingest", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.json() == {"site": "hq", "points": 2, "records": 2}

    records = read_topic(kafka, actuator.settings.kafka.topics.telemetry, lambda r: len(r) >= 2)
    by_key = {(record.key or b"").decode(): record for record in records}
    assert by_key["box-7"].value.decode() == (
        "energy,device=box-7,sensor=m3,site=hq diff=1.9,max=22.0,mean=21.5,min=20.1 1714564800000000000\n"
    )
    assert by_key["box-8"].value.decode() == "energy,device=box-8,site=hq mean=3.5 1714564800000000000\n"
    headers = dict(by_key["box-7"].headers)
    assert headers["site"] == b"hq" and headers["actor"] == b"box-hq"


def test_gzipped_json_batch(actuator: RunningActuator, kafka: KafkaEndpoint) -> None:
    body = {"points": [{"measurement": "temp", "tags": {"device": "box-1"}, "fields": {"mean": 20.5},
                        "time": "2024-05-01T12:00:00Z"}]}  # fmt: skip
    response = actuator.client(actuator.tokens.hq).post(
        "/v1/ingest",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    records = read_topic(kafka, actuator.settings.kafka.topics.telemetry, lambda r: len(r) >= 1)
    assert records[0].value.decode() == "temp,device=box-1,site=hq mean=20.5 1714564800000000000\n"


def test_a_bad_line_refuses_the_whole_request(actuator: RunningActuator, kafka: KafkaEndpoint) -> None:
    client = actuator.client(actuator.tokens.hq)
    refused = client.post("/v1/ingest", content=b"m v=1 1\nm v= 2\nm v=3 3\nm\n")
    assert refused.status_code == 400
    assert [e["line"] for e in refused.json()["errors"]] == [2, 4]
    assert "nothing was accepted" in refused.json()["detail"]
    # The next good request is the first thing in the topic: nothing of the refused one leaked.
    assert client.post("/v1/ingest", content=b"marker v=1 1\n").status_code == 200
    records = read_topic(kafka, actuator.settings.kafka.topics.telemetry, lambda r: len(r) >= 1)
    assert [record.value for record in records] == [b"marker,site=hq v=1.0 1\n"]


def test_body_limits_answer_413(actuators: ActuatorFactory) -> None:
    actuator = actuators.start(ingest_max_body_bytes=4096, ingest_max_decompressed_bytes=65_536)
    client = actuator.client(actuator.tokens.hq)
    too_big = b"m v=1\n" * 1000
    assert client.post("/v1/ingest", content=too_big).status_code == 413
    chunked = client.post("/v1/ingest", content=iter([too_big[:3000], too_big[3000:]]))  # no Content-Length
    assert chunked.status_code == 413
    bomb = gzip.compress(b"m v=1\n" * 20_000)
    assert len(bomb) < 4096
    response = client.post("/v1/ingest", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "decompresses to more than 65536 bytes" in response.json()["detail"]
    assert client.post("/v1/ingest", content=b"m v=1\n", headers={"Content-Type": "text/csv"}).status_code == 415


# --- what a token may write: its grant, and the size of a point (issue 16) ---------------------------------

BOX_7 = IngestOptions(site="hq", now_ns=1, grant=IngestGrant(measurements=("energy", "room"), devices=("box-7",)))


def test_a_grant_limits_the_measurements_and_devices_a_token_writes() -> None:
    batch = prepare_batch(b"energy,device=box-7 mean=1\nroom temp=20\n", None, None, BOX_7)
    assert batch.points == 2
    body = b"energy,device=box-7 mean=1\nEngineStatus,vehicle=ved-01 CoolantTemp=150\nenergy,device=box-8 mean=2\n"
    with pytest.raises(Forbidden) as info:
        prepare_batch(body, None, None, BOX_7)
    assert [p.line for p in info.value.problems] == [2, 3]
    assert "measurement 'EngineStatus' is not one the token may write" in info.value.problems[0].msg
    assert "tag device=box-8 is not a device the token may write for (box-7)" in info.value.problems[1].msg
    with pytest.raises(Forbidden) as info:
        prepare_batch(b'{"points": [{"measurement": "energy", "tags": {"vehicle": "ved-01"}, "fields": {"v": 1}}]}',
                      "application/json", None, BOX_7)  # fmt: skip
    assert "point 1: tag vehicle=ved-01 is not a device" in info.value.problems[0].msg


def test_a_point_with_too_many_fields_is_refused_whole() -> None:
    fields = ",".join(f"f{i}=1" for i in range(257)).encode()
    with pytest.raises(PayloadTooLarge, match="line 2 has 257 fields; at most 256 per point"):
        prepare_batch(b"m v=1\nm " + fields + b"\n", None, None, OPTS)
    assert prepare_batch(b"m " + fields + b"\n", None, None, IngestOptions(site="hq", max_fields=257)).points == 1


def test_the_form_type_curl_sends_by_default_is_refused_with_the_fix() -> None:
    with pytest.raises(UnsupportedMedia, match="-H 'Content-Type: text/plain'"):
        prepare_batch(b"m v=1\n", "application/x-www-form-urlencoded", None, OPTS)


def test_a_site_token_cannot_write_for_the_car(actuator: RunningActuator, kafka: KafkaEndpoint) -> None:
    # Issue 16: an ingest:<site> token wrote EngineStatus for vehicle ved-01 and fired the car's coolant alert.
    client = actuator.client(actuator.tokens.energy_box)
    car = client.post("/v1/ingest", content=b"EngineStatus,vehicle=ved-01 CoolantTemp=150\n",
                      headers={"Content-Type": "text/plain"})  # fmt: skip
    assert car.status_code == 403, car.text
    assert "EngineStatus" in car.json()["errors"][0]["msg"]
    other = client.post("/v1/ingest", content=b"energy,device=box-8 mean=1\n", headers={"Content-Type": "text/plain"})
    assert other.status_code == 403 and "box-8" in other.json()["errors"][0]["msg"]
    wide = b"energy,device=box-7 " + ",".join(f"f{i}=1" for i in range(40_001)).encode() + b"\n"
    too_wide = client.post("/v1/ingest", content=wide, headers={"Content-Type": "text/plain"})
    assert too_wide.status_code == 413 and "40001 fields" in too_wide.json()["detail"]
    form = client.post("/v1/ingest", content=b"energy,device=box-7 mean=1 1\n",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status_code == 415 and "Content-Type: text/plain" in form.json()["detail"]
    good = client.post("/v1/ingest", content=b"energy,device=box-7 mean=1 1\n", headers={"Content-Type": "text/plain"})
    assert good.status_code == 200, good.text
    # Only the good line reached Kafka: nothing of the refused requests leaked.
    records = read_topic(kafka, actuator.settings.kafka.topics.telemetry, lambda r: len(r) >= 1)
    assert [record.value for record in records] == [b"energy,device=box-7,site=hq mean=1.0 1\n"]

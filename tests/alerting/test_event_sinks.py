"""State changes as InfluxDB annotation points, written by a thread that retries."""

from __future__ import annotations

from telestack.alerting.event_sinks import InfluxAnnotationWriter, annotation_point
from telestack.core.lineproto import parse_lines
from telestack.core.settings import InfluxSettings
from tests.alerting.builders import at, engine, fermenter
from tests.alerting.conftest import HttpReceiver
from tests.polling import wait_until

RULES = """\
rules:
  - name: hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 25}
    severity: critical
    annotations: {summary: "{device} : {value:.1f} °C", description: "seuil {threshold} °C"}
"""


def test_annotation_point_carries_state_tags_and_text() -> None:
    e = engine(RULES)
    [change] = e.observe(fermenter("f1", 0, 30.0), at(0))
    point = annotation_point(change, "critical")
    assert point.measurement == "alerts" and point.time_ns == at(0)
    assert point.tags == {"device": "f1", "rule": "hot", "severity": "critical", "state": "firing"}
    assert point.fields["text"] == "f1 : 30.0 °C" and point.fields["description"] == "seuil 25 °C"
    assert point.fields["title"] == "FIRING hot" and point.fields["value"] == 30.0


def test_writer_retries_until_influxdb_accepts(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses = [503, 500]
    settings = InfluxSettings(url=http_receiver.url, org="o", bucket="b", token="a-real-token")  # type: ignore[arg-type]
    writer = InfluxAnnotationWriter(settings, "alerts-bucket").start()
    e = engine(RULES)
    try:
        for change in e.observe(fermenter("f1", 0, 30.0), at(0)) + e.observe(fermenter("f1", 1, 20.0), at(1)):
            writer.write(annotation_point(change, "critical"))
        wait_until(lambda: writer.written == 2, timeout_s=15, what="annotations written after retries")
    finally:
        writer.stop()
    requests = http_receiver.on("/api/v2/write")
    assert len(requests) >= 3
    assert requests[-1].query["bucket"] == ["alerts-bucket"] and requests[-1].query["precision"] == ["ns"]
    assert requests[-1].headers["Authorization"] == "Token a-real-token"
    written = [p for r in requests[2:] for p in parse_lines(r.body.decode())]
    assert [p.tags["state"] for p in written] == ["firing", "resolved"]
    assert writer.healthy()[0]

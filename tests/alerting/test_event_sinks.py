"""State changes as InfluxDB annotation points, written by a thread that retries."""

from __future__ import annotations

from typing import Any

import pytest

from telestack.alerting.event_sinks import InfluxAnnotationWriter, annotation_point
from telestack.core.lineproto import Point, parse_lines
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


def _writer(receiver: HttpReceiver, **options: Any) -> InfluxAnnotationWriter:
    settings = InfluxSettings(url=receiver.url, org="o", bucket="b", token="a-real-token")  # type: ignore[arg-type]
    return InfluxAnnotationWriter(settings, "alerts-bucket", **options).start()


def _written(receiver: HttpReceiver, after: int = 0) -> list[str]:
    return [p.tags["state"] for r in receiver.on("/api/v2/write")[after:] for p in parse_lines(r.body.decode())]


def test_a_refused_write_is_dropped_and_the_next_ones_go_through(http_receiver: HttpReceiver) -> None:
    """Issue 13, finding 8: every status >= 300 was retried forever, so one refused batch blocked all later ones."""
    http_receiver.statuses = [400]
    writer = _writer(http_receiver)
    e = engine(RULES)
    firing, resolved = e.observe(fermenter("f1", 0, 30.0), at(0)) + e.observe(fermenter("f1", 1, 20.0), at(1))
    try:
        writer.write(annotation_point(firing, "critical"))
        wait_until(lambda: writer.dropped == 1, timeout_s=10, what="the refused annotation dropped")
        assert not writer.healthy()[0] and "refused" in writer.healthy()[1]
        writer.write(annotation_point(resolved, "critical"))
        wait_until(lambda: writer.written == 1, timeout_s=10, what="the next annotation written")
        assert writer.healthy()[0]
    finally:
        writer.stop()
    assert _written(http_receiver) == ["firing", "resolved"]  # the refused one was sent once, not again


def test_transient_errors_are_retried_for_a_bounded_time(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses = [503] * 1000
    writer = _writer(http_receiver, retry_for_s=2.0)
    e = engine(RULES)
    [firing] = e.observe(fermenter("f1", 0, 30.0), at(0))
    try:
        writer.write(annotation_point(firing, "critical"))
        wait_until(lambda: writer.dropped == 1, timeout_s=15, what="the annotation given up after retry_for_s")
        tries = len(http_receiver.on("/api/v2/write"))
        assert 2 <= tries <= 4  # 0.5 s, then 1 s backoff: bounded, not a spin
        http_receiver.statuses = []
        [resolved] = e.observe(fermenter("f1", 1, 20.0), at(1))
        writer.write(annotation_point(resolved, "critical"))
        wait_until(lambda: writer.written == 1, timeout_s=10, what="the thread still writing")
    finally:
        writer.stop()


def test_a_point_that_is_not_line_protocol_does_not_kill_the_writer(http_receiver: HttpReceiver) -> None:
    """Issue 13, finding 8: a LineProtocolError ended the writer thread while /healthz stayed green."""
    writer = _writer(http_receiver)
    e = engine(RULES)
    [firing] = e.observe(fermenter("f1", 0, 30.0), at(0))
    try:
        writer.write(Point("alerts", {"rule": "hot"}, {}, at(0)))  # no field: cannot be written
        writer.write(annotation_point(firing, "critical"))
        wait_until(lambda: writer.written == 1, timeout_s=10, what="the valid annotation written")
        assert writer.dropped == 1 and writer.healthy()[0]
    finally:
        writer.stop()
    assert _written(http_receiver) == ["firing"]


def test_influxdb_retry_after_is_honoured(http_receiver: HttpReceiver) -> None:
    """The sink now classifies answers with the writer's InfluxDB client: it waited 0.5 s whatever InfluxDB said."""
    http_receiver.statuses, http_receiver.retry_after = [429], "2"
    writer = _writer(http_receiver)
    [firing] = engine(RULES).observe(fermenter("f1", 0, 30.0), at(0))
    try:
        writer.write(annotation_point(firing, "critical"))
        wait_until(lambda: writer.written == 1, timeout_s=10, what="the annotation written after Retry-After")
    finally:
        writer.stop()
    first, second = http_receiver.on("/api/v2/write")
    assert second.at - first.at >= 1.9


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the simulated death
def test_health_is_red_when_the_writer_thread_is_gone(http_receiver: HttpReceiver) -> None:
    writer = _writer(http_receiver)
    e = engine(RULES)
    [firing] = e.observe(fermenter("f1", 0, 30.0), at(0))

    def die(batch: Any) -> None:
        raise SystemExit("simulated death of the thread")  # not an Exception: nothing in the loop catches it

    writer._send = die  # type: ignore[method-assign]
    writer.write(annotation_point(firing, "critical"))
    wait_until(lambda: not writer._thread.is_alive(), timeout_s=10, what="the writer thread ended")
    ok, detail = writer.healthy()
    assert not ok and "died" in detail

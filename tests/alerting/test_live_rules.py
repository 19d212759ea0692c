"""The alerting service as a process, on real Kafka: an expected device that never reported raises no-data
after its grace period and resolves when it reports, across restarts; rule edits apply without a restart and a
broken edit leaves the old rules running (reported on /healthz)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from telestack.alerting.expected import partition_of
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.lineproto import Point, format_point
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints
from telestack.native.servers import free_port
from tests.alerting.conftest import HttpReceiver
from tests.alerting.test_restart import SETTINGS, Service, create_service_topics
from tests.kafka_reader import read_topic
from tests.polling import wait_until

NODATA_RULES = """\
notifiers:
  hook: {{type: webhook, url: "{http}/hook", retry_backoff: 0.2}}
rules:
  - name: fermenter_no_data
    select: {{measurement: fermenter, tags: {{device: {{glob: "f*"}}}}, field: temperature}}
    condition: {{type: nodata, after: 3s, expect: registry}}
    annotations:
      summary: "{{device}}: no temperature for {{duration}}, last seen {{last_seen}}"
    notify: [hook]
"""

DEVICES = """\
types:
  fermenter: {{commands: {{}}}}
devices:
  - {{id: {device}, type: fermenter, site: brewery}}
"""

THRESHOLD_RULES = """\
notifiers:
  hook: {{type: webhook, url: "{http}/hook", retry_backoff: 0.2}}
rules:
  - name: too_warm
    select: {{measurement: fermenter, field: temperature}}
    condition: {{type: threshold, above: {above}}}
    notify: [hook]
  - name: very_warm
    select: {{measurement: fermenter, field: temperature}}
    condition: {{type: threshold, above: 30}}
    notify: [hook]
"""


def make_service(
    tmp_path: Path, endpoints: Endpoints, kafka_settings: KafkaSettings, unique: str, rules: str, devices: str = ""
) -> Service:
    rules_file, devices_file = tmp_path / "alerts.yaml", tmp_path / "devices.yaml"
    rules_file.write_text(rules)
    devices_file.write_text(devices)
    config = tmp_path / "telestack.yaml"
    port = free_port()
    config.write_text(
        SETTINGS.format(
            telemetry=f"telemetry-{unique}",
            alerts=f"alerts-{unique}",
            rules=rules_file,
            group=f"alerting-{unique}",
            state=f"alerts.state-{unique}",
            port=port,
        ).replace("alerting:\n", f'alerting:\n  devices_file: "{devices_file}"\n  reload_interval_s: 0.2\n')
    )
    create_service_topics(kafka_settings, unique)
    env = {**os.environ, **endpoints.env()}
    env.pop("TELESTACK_CONFIG", None)
    return Service(config, env, port, tmp_path / "alerting.log")


@pytest.fixture
def cleanup() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for svc in services:
        if svc.proc is not None and svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait(10)


def hook_alerts(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [a for r in receiver.on("/hook") for a in r.json()["alerts"]]


def health(svc: Service) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{svc.port}/healthz", timeout=2)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_never_seen_expected_device_raises_no_data_survives_restarts_and_resolves(
    tmp_path: Path,
    endpoints: Endpoints,
    kafka_settings: KafkaSettings,
    http_receiver: HttpReceiver,
    unique: str,
    cleanup: list[Service],
) -> None:
    device = f"f-{unique}"
    svc = make_service(
        tmp_path,
        endpoints,
        kafka_settings,
        unique,
        NODATA_RULES.format(http=http_receiver.url),
        DEVICES.format(device=device),
    )
    cleanup.append(svc)
    started = time.time()
    svc.start()
    wait_until(lambda: hook_alerts(http_receiver), timeout_s=30, what="the no-data alert of a never-seen device")
    fired_after = http_receiver.on("/hook")[0].at - started
    [alert] = hook_alerts(http_receiver)
    assert alert["state"] == "firing" and alert["labels"]["device"] == device
    assert alert["fingerprint"] == f"fermenter_no_data/fermenter,device={device}"
    assert "last seen never" in alert["annotations"]["summary"]
    assert fired_after >= 3.0  # not before its grace period

    # The alerts topic carries the same state change (what Grafana and `telestack tail` read).
    events = read_topic(kafka_settings, f"alerts-{unique}", bool, 20, "the alert on the alerts topic")
    assert b'"state":"firing"' in events[0].value.replace(b" ", b"")

    # Killed and restarted while firing: still firing (healthz counts it), not announced again.
    svc.kill()
    svc.start()
    wait_until(lambda: "1 firing" in health(svc)["checks"]["kafka"]["detail"], timeout_s=20, what="restored firing")
    time.sleep(4.0)  # longer than the grace period: a re-fire would be sent by now
    assert [a["state"] for a in hook_alerts(http_receiver)] == ["firing"]

    # The device reports at last (keyed by its id, as every telestack producer does): resolved, naming it.
    producer = KafkaProducer(kafka_settings)
    stop_at = time.monotonic() + 60

    def report() -> None:
        point = Point("fermenter", {"device": device}, {"temperature": 18.5}, time.time_ns())
        producer.produce(f"telemetry-{unique}", format_point(point), key=device)
        producer.flush(10)

    report()
    wait_until(
        lambda: report() or [a["state"] for a in hook_alerts(http_receiver)] == ["firing", "resolved"],
        timeout_s=20,
        interval_s=0.5,
        what="the resolution once the device reports",
    )
    assert time.monotonic() < stop_at
    resolved = hook_alerts(http_receiver)[1]
    assert resolved["labels"]["device"] == device

    # Restarted again while the device keeps reporting (every 0.5 s, through the restart): nothing new is sent.
    done = threading.Event()

    def keep_reporting() -> None:
        while not done.wait(0.5):
            report()

    reporter = threading.Thread(target=keep_reporting)
    reporter.start()
    try:
        svc.stop()
        svc.start()
        time.sleep(4.0)  # longer than the grace period
    finally:
        done.set()
        reporter.join(10)
    assert [a["state"] for a in hook_alerts(http_receiver)] == ["firing", "resolved"]
    assert svc.stop() == 0
    producer.close()


def test_partition_of_matches_where_the_producer_puts_a_device_key(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"keys-{unique}"
    ensure_topics(kafka_settings, {topic: 3})
    producer = KafkaProducer(kafka_settings)
    placed: dict[str, int] = {}
    devices = [f"dev-{i}" for i in range(12)]
    for device_id in devices:
        producer.produce(topic, b"x", key=device_id, on_delivery=lambda d, k=device_id: placed.update({k: d.partition}))
    producer.flush(10)
    producer.close()
    assert placed == {d: partition_of(d, 3) for d in devices}


def test_a_rules_edit_applies_without_restart_and_a_broken_edit_keeps_the_old_rules(
    tmp_path: Path,
    endpoints: Endpoints,
    kafka_settings: KafkaSettings,
    http_receiver: HttpReceiver,
    unique: str,
    cleanup: list[Service],
) -> None:
    svc = make_service(
        tmp_path, endpoints, kafka_settings, unique, THRESHOLD_RULES.format(http=http_receiver.url, above=25)
    )
    cleanup.append(svc)
    rules_file = tmp_path / "alerts.yaml"
    svc.start()
    assert svc.proc is not None
    pid = svc.proc.pid
    producer = KafkaProducer(kafka_settings)

    def send(device: str, temperature: float) -> None:
        point = Point("fermenter", {"device": device}, {"temperature": temperature}, time.time_ns())
        producer.produce(f"telemetry-{unique}", format_point(point), key=device)
        producer.flush(10)

    def firing() -> set[tuple[str, str]]:
        return {(a["rule"], a["labels"]["device"]) for a in hook_alerts(http_receiver) if a["state"] == "firing"}

    send("f1", 31.0)  # both rules fire for f1
    wait_until(lambda: firing() == {("too_warm", "f1"), ("very_warm", "f1")}, timeout_s=20, what="first alerts")
    send("f2", 22.0)
    time.sleep(1.0)
    assert ("too_warm", "f2") not in firing()

    # An edit (22 °C is now too warm) takes effect in the running process.
    rules_file.write_text(THRESHOLD_RULES.format(http=http_receiver.url, above=20))
    wait_until(
        lambda: send("f2", 22.0) or ("too_warm", "f2") in firing(),
        timeout_s=20,
        interval_s=0.3,
        what="the edited rule firing",
    )
    assert svc.proc.pid == pid and svc.proc.poll() is None
    # The unchanged rule kept its state: its firing alert for f1 was not announced again.
    assert sum(1 for a in hook_alerts(http_receiver) if a["rule"] == "very_warm" and a["state"] == "firing") == 1
    assert "refused" not in health(svc)["checks"]["rules"]["detail"]

    # A broken edit: refused, reported on /healthz (still 200: the old rules run) and in the log.
    rules_file.write_text(THRESHOLD_RULES.format(http=http_receiver.url, above="warm"))
    wait_until(
        lambda: "degraded" in health(svc)["checks"]["rules"]["detail"], timeout_s=20, what="the refusal on /healthz"
    )
    detail = health(svc)["checks"]["rules"]["detail"]
    assert f"{rules_file}:6: rules[0] (too_warm).condition" in detail and "still running the previous rules" in detail
    assert "rules edit refused" in svc.log.read_text()
    # ...and the previous rules keep running: f3 at 22 °C fires too_warm (above 20, the last valid edit).
    wait_until(
        lambda: send("f3", 22.0) or ("too_warm", "f3") in firing(),
        timeout_s=20,
        interval_s=0.3,
        what="the old rules still evaluating",
    )

    # Fixing the file clears the report.
    rules_file.write_text(THRESHOLD_RULES.format(http=http_receiver.url, above=20))
    wait_until(lambda: "degraded" not in health(svc)["checks"]["rules"]["detail"], timeout_s=20, what="cleared")
    assert svc.proc.pid == pid
    assert svc.stop() == 0
    producer.close()

"""The alerting service end to end, in-process, on real Kafka, Mosquitto and InfluxDB, with a local HTTP
receiver (webhook and SMS gateway) and a local SMTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt_client
import pytest
from influxdb_client import InfluxDBClient

from telestack.alerting.rules import load_rules
from telestack.alerting.service import AlertingService
from telestack.alerting.settings import AlertingOptions, AlertingSettings
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import Point, format_point
from telestack.core.runtime import Shutdown
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings, MqttSettings, TopicSettings
from telestack.core.topics import TopicLayout, create_topics
from tests.alerting.conftest import HttpReceiver, SmtpServer
from tests.kafka_reader import read_topic
from tests.polling import wait_until

RULES = """\
defaults:
  repeat_interval: 1h
notifiers:
  hook: {{type: webhook, url: "{http}/hook", hmac_secret_env: TEST_ALERT_HOOK_KEY}}
  sms:
    type: sms
    url: "{http}/sms"
    recipients: ["+33600000001"]
    form: {{To: "{{to}}", Body: "{{text}}"}}
    auth: {{type: basic, username: AC1, secret_env: TEST_ALERT_SMS_TOKEN}}
  mail:
    type: email
    host: 127.0.0.1
    port: {smtp_port}
    username: alertes
    password_env: TEST_ALERT_SMTP_PASSWORD
    sender: alertes@brasserie.example
    to: [brasseur@brasserie.example]
    ca_file: {ca_file}
  board: {{type: mqtt, topic: "{mqtt_prefix}/{{rule}}/{{device}}"}}
rules:
  - name: fermenter_setpoint
    select: {{measurement: fermenter, tags: {{device: {{glob: "f*"}}}}, field: temperature}}
    condition: {{type: deviation, setpoint: {{field: setpoint}}, max: 2, hysteresis: 0.5}}
    for: 2s
    annotations:
      summary: "Fermenteur {{device}} : {{value:.1f}} °C pour une consigne de {{setpoint:.1f}} °C"
      summary_resolved: "Fermenteur {{device}} : revenu à {{value:.1f}} °C"
    notify: [hook, sms, mail, board]
  - name: fermenter_no_data
    select: {{measurement: fermenter, tags: {{device: {{glob: "f*"}}}}, field: temperature}}
    condition: {{type: nodata, after: 2s}}
    annotations:
      summary: "Aucune température du fermenteur {{device}} depuis {{duration}}"
    notify: [hook]
"""


@dataclass
class Harness:
    settings: AlertingSettings
    producer: KafkaProducer
    receiver: HttpReceiver
    smtp: SmtpServer
    mqtt_messages: list[tuple[str, dict[str, Any]]]
    service: AlertingService

    def send(self, device: str, **fields: float) -> None:
        point = Point("fermenter", {"device": device}, dict(fields), time.time_ns())
        self.producer.produce(self.settings.kafka.topics.telemetry, format_point(point), key=device)
        self.producer.flush(10)

    def hooks(self, rule: str | None = None) -> list[tuple[str, str, str]]:
        """(rule, device, state) of each alert the webhook received, in order."""
        found = []
        for request in self.receiver.on("/hook"):
            for alert in request.json()["alerts"]:
                if rule is None or alert["rule"] == rule:
                    found.append((alert["rule"], alert["labels"]["device"], alert["state"]))
        return found


@pytest.fixture
def harness(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    http_receiver: HttpReceiver,
    smtp_server: SmtpServer,
    mqtt_prefix: str,
    unique: str,
    connect_mqtt: Callable[..., mqtt_client.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    monkeypatch.setenv("TEST_ALERT_HOOK_KEY", "hook-key-123")
    monkeypatch.setenv("TEST_ALERT_SMS_TOKEN", "sms-token-123")
    monkeypatch.setenv("TEST_ALERT_SMTP_PASSWORD", smtp_server.password)
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        RULES.format(
            http=http_receiver.url,
            smtp_port=smtp_server.port,
            ca_file=smtp_server.cert,
            mqtt_prefix=mqtt_prefix,
        )
    )
    kafka = kafka_settings.model_copy(
        update={
            "topics": TopicSettings(
                telemetry=f"telemetry-{unique}", alerts=f"alerts-{unique}", alerts_state=f"alerts.state-{unique}"
            )
        }
    )
    settings = AlertingSettings(
        kafka=kafka,
        mqtt=mqtt_settings,
        influx=influx_settings,
        alerting=AlertingOptions(
            rules=rules,
            group_id=f"alerting-{unique}",
            tick_interval_s=0.2,
            poll_timeout_ms=50,
            checkpoint_interval_s=1,
            http=HttpSettings(port=0),
        ),
    )
    create_topics(kafka, TopicLayout())  # what `telestack topics create` does before the service starts
    messages: list[tuple[str, dict[str, Any]]] = []
    subscriber = connect_mqtt()
    subscriber.on_message = lambda client, userdata, msg: messages.append((msg.topic, json.loads(msg.payload)))
    subscriber.subscribe(f"{mqtt_prefix}/#", qos=1)
    service = AlertingService(settings, load_rules(rules))
    shutdown = Shutdown()
    thread = threading.Thread(target=service.run, args=(shutdown,), daemon=True)
    thread.start()
    wait_until(lambda: service.ready, timeout_s=30, what="the service got its partitions")
    producer = KafkaProducer(kafka)
    yield Harness(settings, producer, http_receiver, smtp_server, messages, service)
    shutdown.set()
    thread.join(30)
    producer.close()
    assert not thread.is_alive()


def test_fermenter_drifting_off_setpoint_fires_once_notifies_everywhere_and_resolves(harness: Harness) -> None:
    h = harness
    h.send("f1", temperature=18.1, setpoint=18.0)
    started = time.monotonic()
    # The thermostat keeps reporting 21.5 °C for a setpoint of 18 °C, every 0.25 s.
    while not h.hooks("fermenter_setpoint") and time.monotonic() - started < 20:
        h.send("f1", temperature=21.5)
        time.sleep(0.25)
    fired_after = time.monotonic() - started
    assert h.hooks("fermenter_setpoint") == [("fermenter_setpoint", "f1", "firing")]
    assert fired_after >= 2.0  # not before `for`
    for _ in range(8):  # still off: no second notification
        h.send("f1", temperature=21.6)
        time.sleep(0.25)
    wait_until(
        lambda: len(h.receiver.on("/sms")) == 1 and len(h.smtp.messages) == 1 and len(h.mqtt_messages) == 1,
        timeout_s=10,
        what="SMS, email and MQTT notifications",
    )
    assert h.hooks("fermenter_setpoint") == [("fermenter_setpoint", "f1", "firing")]
    assert h.receiver.on("/sms")[0].form()["Body"] == ["Fermenteur f1 : 21.5 °C pour une consigne de 18.0 °C"]
    assert h.mqtt_messages[0][0].endswith("/fermenter_setpoint/f1") and h.mqtt_messages[0][1]["state"] == "firing"
    assert "Fermenteur f1" in h.smtp.messages[0].content.decode("utf-8", "replace")

    h.send("f1", temperature=18.4)  # back within 1.5 °C: resolved
    wait_until(lambda: ("fermenter_setpoint", "f1", "resolved") in h.hooks(), timeout_s=10, what="resolved webhook")
    wait_until(
        lambda: len(h.receiver.on("/sms")) == 2 and len(h.smtp.messages) == 2 and len(h.mqtt_messages) == 2,
        timeout_s=10,
        what="resolved SMS, email and MQTT",
    )
    assert h.receiver.on("/sms")[1].form()["Body"] == ["Fermenteur f1 : revenu à 18.4 °C"]
    assert h.hooks("fermenter_setpoint") == [
        ("fermenter_setpoint", "f1", "firing"),
        ("fermenter_setpoint", "f1", "resolved"),
    ]

    # Every state change is on the alerts topic (JSON) ...
    records = read_topic(h.settings.kafka, h.settings.kafka.topics.alerts, lambda got: len(got) >= 3, 20)
    events: list[dict[str, Any]] = [json.loads(r.value) for r in records]
    setpoint_events = [e["state"] for e in events if e["rule"] == "fermenter_setpoint"]
    assert setpoint_events == ["pending", "firing", "resolved"]
    # ... and in InfluxDB (measurement alerts), for Grafana annotations.
    influx = h.settings.influx
    with InfluxDBClient(url=influx.url, token=influx.require_token(), org=influx.org) as client:
        query = (
            f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._measurement == "alerts" and r._field == "text")'
        )

        def states() -> list[str]:
            return sorted(
                rec.values["state"]
                for table in client.query_api().query(query)
                for rec in table.records
                if rec.values.get("rule") == "fermenter_setpoint"
            )

        wait_until(lambda: states() == ["firing", "pending", "resolved"], timeout_s=20, what="alerts in InfluxDB")


def test_fermenter_going_silent_raises_no_data_and_clears_on_data(harness: Harness) -> None:
    h = harness
    for _ in range(3):
        h.send("f2", temperature=18.0, setpoint=18.0)
        time.sleep(0.2)
    wait_until(lambda: ("fermenter_no_data", "f2", "firing") in h.hooks(), timeout_s=15, what="no-data alert")
    silent_since = h.receiver.on("/hook")[-1].json()["alerts"][0]["text"]
    assert silent_since.startswith("Aucune température du fermenteur f2 depuis 2 s")
    h.send("f2", temperature=18.0)
    wait_until(lambda: ("fermenter_no_data", "f2", "resolved") in h.hooks(), timeout_s=10, what="no-data cleared")
    assert h.hooks("fermenter_no_data") == [
        ("fermenter_no_data", "f2", "firing"),
        ("fermenter_no_data", "f2", "resolved"),
    ]

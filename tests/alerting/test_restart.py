"""The alerting service as a process: killed (-9) and restarted mid-alert it neither repeats a notification nor
misses a resolution; a bad rules file is refused at start with the file and line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telestack.cli import main
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import Point, format_point
from telestack.core.settings import KafkaSettings, TopicSettings
from telestack.core.topics import TopicLayout, create_topics
from telestack.native import Endpoints
from telestack.native.servers import free_port
from tests.alerting.conftest import HttpReceiver
from tests.polling import wait_until

TELESTACK = str(Path(sys.executable).with_name("telestack"))

RULES = """\
notifiers:
  hook: {{type: webhook, url: "{http}/hook", retry_backoff: 0.2}}
rules:
  - name: fermenter_setpoint
    select: {{measurement: fermenter, field: temperature}}
    condition: {{type: deviation, setpoint: {{field: setpoint}}, max: 2}}
    for: 1s
    notify: [hook]
"""

SETTINGS = """\
kafka:
  topics: {{telemetry: "{telemetry}", alerts: "{alerts}"}}
alerting:
  rules: "{rules}"
  group_id: "{group}"
  instance_id: "{group}-0"
  state_topic: "{state}"
  tick_interval_s: 0.2
  poll_timeout_ms: 50
  influx_annotations: false
  http: {{port: {port}}}
log:
  format: json
"""


def create_service_topics(kafka_settings: KafkaSettings, unique: str) -> None:
    """The topics of SETTINGS, as `telestack topics create` makes them before the service starts."""
    names = TopicSettings(
        telemetry=f"telemetry-{unique}", alerts=f"alerts-{unique}", alerts_state=f"alerts.state-{unique}"
    )
    create_topics(kafka_settings.model_copy(update={"topics": names}), TopicLayout())


class Service:
    """``telestack alerting`` in a subprocess, started again as needed with the same settings."""

    def __init__(self, config: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.config, self.env, self.port, self.log = config, env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [TELESTACK, "alerting", "--config", str(self.config)], env=self.env, stdout=out, stderr=out
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"alerting exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=60, interval_s=0.2, what="alerting /healthz")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no drain, no flush, no commit
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(30)
        return self.proc.returncode


@pytest.fixture
def service(
    tmp_path: Path, endpoints: Endpoints, kafka_settings: KafkaSettings, http_receiver: HttpReceiver, unique: str
) -> Iterator[Service]:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES.format(http=http_receiver.url))
    config = tmp_path / "telestack.yaml"
    port = free_port()
    config.write_text(
        SETTINGS.format(
            telemetry=f"telemetry-{unique}",
            alerts=f"alerts-{unique}",
            rules=rules,
            group=f"alerting-{unique}",
            state=f"alerts.state-{unique}",
            port=port,
        )
    )
    create_service_topics(kafka_settings, unique)
    env = {**os.environ, **endpoints.env()}
    env.pop("TELESTACK_CONFIG", None)
    svc = Service(config, env, port, tmp_path / "alerting.log")
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        svc.proc.kill()
        svc.proc.wait(10)


def test_killed_and_restarted_mid_alert_no_duplicate_and_no_missed_resolution(
    service: Service, kafka_settings: KafkaSettings, http_receiver: HttpReceiver, unique: str
) -> None:
    producer = KafkaProducer(kafka_settings)
    topic = f"telemetry-{unique}"

    def send(**fields: float) -> None:
        point = Point("fermenter", {"device": "f1"}, dict(fields), time.time_ns())
        producer.produce(topic, format_point(point), key="f1")
        producer.flush(10)

    def states() -> list[str]:
        return [a["state"] for r in http_receiver.on("/hook") for a in r.json()["alerts"]]

    def drift_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            send(temperature=22.0)
            time.sleep(0.2)

    service.start()
    send(temperature=18.0, setpoint=18.0)
    started = time.monotonic()
    while not states() and time.monotonic() - started < 20:
        send(temperature=22.0)
        time.sleep(0.2)
    assert states() == ["firing"]

    # Killed mid-alert while the fermenter is still off; restarted: the alert is still firing, not re-sent.
    drift_for(0.5)
    service.kill()
    drift_for(0.5)
    service.start()
    drift_for(2.5)
    assert states() == ["firing"]

    # Killed again; the fermenter comes back while the service is down; the restart notices and says so.
    service.kill()
    send(temperature=18.3)
    service.start()
    wait_until(lambda: states() == ["firing", "resolved"], timeout_s=20, what="the resolution missed while down")
    time.sleep(1.0)  # a duplicate would show up within a few passes of the loop
    assert states() == ["firing", "resolved"]
    assert service.stop() == 0
    producer.close()


@pytest.mark.integration  # starts the alerting service in a process of its own
def test_bad_rules_file_is_refused_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        """\
rules:
  - name: fermenter_setpoint
    select: {measurement: fermenter, field: temperature}
    condition: {type: deviation, setpoint: {field: setpoint}, max: 2}
    for: quinze minutes
"""
    )
    result = subprocess.run(
        [TELESTACK, "alerting", "--alerting.rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
    )
    assert result.returncode == 1
    assert f"{rules}:5: rules[0] (fermenter_setpoint).for:" in result.stderr
    assert "not a duration: 'quinze minutes'" in result.stderr


def test_alerts_check_command_reports_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).parents[2] / "config" / "alerts.yaml"
    assert main(["alerts", "check", str(example)]) == 0  # the console script's entry point, in this process
    out = capsys.readouterr().out
    assert ": OK:" in out and "fermenter_setpoint: deviation" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    select: {measurement: m, field: f}\n    condition: {type: nope}\n")
    assert main(["alerts", "check", str(bad)]) == 1
    assert f"{bad}:4: rules[0] (x).condition:" in capsys.readouterr().err

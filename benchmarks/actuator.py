"""Actuator speed: command round trips through real MQTT to simulated plugs, and edge-box ingest into Kafka.

- commands: ``POST /v1/devices/{id}/commands?wait=`` to simulated smart plugs that ack over MQTT, one client
  after another (latency p50/p99: HTTP → audit record confirmed by Kafka → MQTT publish → device → ack →
  response), then from 8 clients at once (commands/s);
- ingest: ``POST /v1/ingest`` of 5,000-line line protocol batches, gzipped, answered once Kafka confirmed
  every record (lines/s).

Uses the servers named by ``TELESTACK_TEST_ENDPOINTS`` when set, else starts its own in a temp dir.
Run with ``make bench-actuator``; the last line of output is a JSON object of the figures.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import yaml

from telestack.actuator.command import build_app
from telestack.actuator.server import ActuatorServer, uvicorn_config
from telestack.actuator.settings import ActuatorOptions, ActuatorSettings
from telestack.actuator.tokens import IngestGrant, TokenStore
from telestack.core.kafka import ensure_topics
from telestack.core.runtime import configure_logging
from telestack.core.settings import HttpSettings, KafkaSettings, LogSettings, MqttSettings, TopicSettings
from telestack.native.stack import shared_or_own_servers
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug

__all__ = ["main"]

PLUGS = 20
SEQUENTIAL = 200
CONCURRENT_CLIENTS = 8
CONCURRENT_EACH = 50
INGEST_BATCHES = 20
INGEST_LINES = 5_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    out = sys.stdout
    unique = f"{os.getpid()}-{int(time.time())}"
    configure_logging(LogSettings(level="WARNING", format="console"), "bench-actuator")
    with (
        shared_or_own_servers("bench-actuator-") as endpoints,
        tempfile.TemporaryDirectory(prefix="bench-actuator-") as tmp,
    ):
        workdir = Path(tmp)
        plugs = [f"bench-plug-{i}-{unique}" for i in range(PLUGS)]
        registry = {
            "types": {"plug": {"commands": {"on": {}, "off": {}, "toggle": {}}}},
            "devices": [{"id": plug, "type": "plug", "site": "bench"} for plug in plugs],
        }
        (workdir / "devices.yaml").write_text(yaml.safe_dump(registry))
        store = TokenStore(workdir / "tokens.json")
        admin = store.create("bench", ["admin"])[0]
        box = store.create("bench-box", ["ingest:bench"], ingest=IngestGrant(measurements=("*",), devices=("*",)))[0]
        mqtt = MqttSettings(
            host=endpoints.mqtt.host,
            port=endpoints.mqtt.port,
            username=endpoints.mqtt.username,
            password=endpoints.mqtt.password,
        )
        kafka = KafkaSettings(
            bootstrap_servers=endpoints.kafka.bootstrap_servers,
            linger_ms=5,
            topics=TopicSettings(commands=f"bench-commands-{unique}", telemetry=f"bench-telemetry-{unique}"),
        )
        ensure_topics(kafka, {kafka.topics.commands: 3, kafka.topics.telemetry: 6})
        settings = ActuatorSettings(
            log=LogSettings(level="WARNING", format="console"),
            kafka=kafka,
            mqtt=mqtt,
            actuator=ActuatorOptions(
                http=HttpSettings(port=0),
                devices_file=workdir / "devices.yaml",
                tokens_file=workdir / "tokens.json",
                mqtt_client_id=f"bench-actuator-{unique}",
                rate_limit_per_s=0,
                ingest_max_body_bytes=8_388_608,
            ),
        )
        rng = random.Random(1)
        fleet = DeviceFleet(
            mqtt, [SmartPlug(plug, rng) for plug in plugs], interval_s=3600, client_id_prefix=f"bench-{unique}"
        )
        fleet.start()
        app = build_app(settings)
        server = ActuatorServer(uvicorn_config(app, settings.actuator))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise SystemExit("the actuator did not start")
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        headers = {"Authorization": f"Bearer {admin}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for plug in plugs[:3]:  # warm up connections and code paths
                    client.post(f"/v1/devices/{plug}/commands?wait=5", json={"command": "toggle"})
                latencies: list[float] = []
                to_sent: list[float] = []  # recorded in Kafka + published and confirmed by the broker
                to_ack: list[float] = []  # broker confirmed → device's ack back
                not_acked = 0
                for i in range(SEQUENTIAL):
                    began = time.perf_counter()
                    body = client.post(
                        f"/v1/devices/{plugs[i % PLUGS]}/commands?wait=5", json={"command": "toggle"}
                    ).json()
                    latencies.append((time.perf_counter() - began) * 1000)
                    not_acked += body.get("state") != "acked"
                    if body.get("sent_at") and body.get("completed_at"):
                        created, sent, done = (
                            datetime.fromisoformat(body[k]).timestamp() * 1000
                            for k in ("created_at", "sent_at", "completed_at")
                        )
                        to_sent.append(sent - created)
                        to_ack.append(max(0.0, done - sent))
            out.write(
                f"commands, one client: {SEQUENTIAL} round trips, p50 {statistics.median(latencies):.1f} ms, "
                f"p99 {_percentile(latencies, 0.99):.1f} ms, not acked: {not_acked}\n"
                f"  of which: audit record + MQTT publish confirmed, p50 {statistics.median(to_sent):.1f} ms; "
                f"then the device's ack, p50 {statistics.median(to_ack):.1f} ms\n"
            )

            def client_run(worker: int) -> int:
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    acked = 0
                    for i in range(CONCURRENT_EACH):
                        plug = plugs[(worker * CONCURRENT_EACH + i) % PLUGS]
                        body = client.post(f"/v1/devices/{plug}/commands?wait=5", json={"command": "toggle"}).json()
                        acked += body.get("state") == "acked"
                    return acked

            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
                acked_total = sum(pool.map(client_run, range(CONCURRENT_CLIENTS)))
            elapsed = time.perf_counter() - began
            commands_per_s = CONCURRENT_CLIENTS * CONCURRENT_EACH / elapsed
            out.write(
                f"commands, {CONCURRENT_CLIENTS} clients: {CONCURRENT_CLIENTS * CONCURRENT_EACH} acked round trips "
                f"({acked_total} acked) in {elapsed:.1f} s: {commands_per_s:.0f} commands/s\n"
            )

            base_ns = time.time_ns()
            batches = [
                gzip.compress(
                    "".join(
                        f"energy,device=box-{i % 50},sensor=m{i % 7} mean={20 + i % 13 / 10},min=19.5,max=22.5,"
                        f"diff=0.4 {base_ns + (b * INGEST_LINES + i) * 1000}\n"
                        for i in range(INGEST_LINES)
                    ).encode()
                )
                for b in range(INGEST_BATCHES)
            ]
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {box}", "Content-Encoding": "gzip"}, timeout=60
            ) as client:
                began = time.perf_counter()
                for batch in batches:
                    response = client.post("/v1/ingest", content=batch)
                    if response.status_code != 200:
                        raise SystemExit(f"ingest failed: {response.status_code} {response.text}")
                elapsed = time.perf_counter() - began
            lines_per_s = INGEST_BATCHES * INGEST_LINES / elapsed
            out.write(
                f"ingest: {INGEST_BATCHES} gzipped batches of {INGEST_LINES} lines, confirmed by Kafka, "
                f"in {elapsed:.1f} s: {lines_per_s:,.0f} lines/s\n"
            )
        finally:
            server.should_exit = True
            thread.join(30)
            fleet.stop()
    figures = {
        "command_p50_ms": round(statistics.median(latencies), 2),
        "command_p99_ms": round(_percentile(latencies, 0.99), 2),
        "commands_per_s": round(commands_per_s, 1),
        "ingest_lines_per_s": round(lines_per_s),
        "not_acked": not_acked + (CONCURRENT_CLIENTS * CONCURRENT_EACH - acked_total),
    }
    out.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The bridge end to end on real Mosquitto and Kafka: seed payloads, dead letters, acks, sessions, replicas."""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time

from telestack.core.commands import CommandEvent, DeviceAck, DeviceCommand
from telestack.core.kafka import ensure_topics
from telestack.core.runtime import Shutdown
from telestack.mqtt_bridge.command import BridgeService
from telestack.mqtt_bridge.rules import RuleSet, parse_rules
from telestack.simulators.energy_meter import EnergyMeter
from telestack.simulators.fermenters import Fermenter
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug
from tests.harness import RunningService
from tests.mqtt_bridge.conftest import BridgeHarness, prefixed, seed_cases
from tests.polling import wait_until


def test_every_seed_payload_reaches_telemetry_as_expected(harness: BridgeHarness, shipped_rules: RuleSet) -> None:
    harness.start(prefixed(shipped_rules, harness.prefix))
    collector = harness.collector()
    publisher = harness.publisher()
    cases = seed_cases()
    started = time.time_ns()
    for case in cases:
        publisher.publish(f"{harness.prefix}/{case.topic}", case.payload, qos=1).wait_for_publish(10)
    collector.until(lambda: len(collector.records[harness.topics.telemetry]) >= len(cases), what="seed records")
    finished = time.time_ns()

    records = collector.records[harness.topics.telemetry]
    assert len(records) == len(cases) and not collector.records[harness.topics.dlq]
    for case in cases:
        matching = [r for r in records if r.key == case.key.encode() and _matches(case.lines, r.value.decode())]
        assert matching, f"{case.name}: no record with key {case.key} and value {case.lines}"
        arrival = _arrival(case.lines, matching[0].value.decode())
        assert arrival is None or started <= arrival <= finished, case.name


def _line_regex(line: str) -> re.Pattern[str]:
    return re.compile(re.escape(line).replace("ARRIVAL", r"(\d+)") + "$")


def _matches(lines: tuple[str, ...], value: str) -> bool:
    got = value.splitlines()
    return len(got) == len(lines) and all(_line_regex(line).match(g) for line, g in zip(lines, got, strict=True))


def _arrival(lines: tuple[str, ...], value: str) -> int | None:
    for line, got in zip(lines, value.splitlines(), strict=True):
        if "ARRIVAL" in line:
            found = _line_regex(line).match(got)
            assert found is not None
            return int(found.group(1))
    return None


RULES = """
rules:
  - name: plug
    topic: "{prefix}/plugs/{{device}}/report"
    measurement: plug
    types: {{seq: int, power: float, relay: bool}}
  - name: thermo
    topic: "{prefix}/fermenters/{{device}}/{{field}}"
    format: value
    measurement: fermenter
    field: "{{field}}"
    types: {{temperature: float}}
  - name: lines
    topic: "{prefix}/lines/{{device}}"
    format: line
"""


def _rules(prefix: str) -> RuleSet:
    return parse_rules(RULES.format(prefix=prefix))


def test_garbage_burst_between_good_messages(harness: BridgeHarness) -> None:
    # A window far smaller than the burst: bad messages must be acknowledged (once dead-lettered) or it stalls.
    # Subscribed to the whole prefix, so that what no rule maps arrives too.
    settings = harness.settings(inflight_window=8, max_payload_bytes=2048, subscriptions=[f"{harness.prefix}/#"])
    harness.start(_rules(harness.prefix), settings)
    collector = harness.collector()
    publisher = harness.publisher()
    p = harness.prefix
    garbage = [
        (f"{p}/plugs/p1/report", b"{not json", "unparseable", "plug"),
        (f"{p}/plugs/p1/report", b'{"seq": "many", "power": 1}', "invalid", "plug"),
        (f"{p}/plugs/p1/report", b"[1, 2, 3]", "invalid", "plug"),
        (f"{p}/fermenters/f1/temperature", b"warm", "invalid", "thermo"),
        (f"{p}/fermenters/f1/temperature", b"", "unparseable", "thermo"),
        (f"{p}/lines/box", b"no fields here", "unparseable", "lines"),
        (f"{p}/nobody/maps/this", b"1", "unmapped", ""),
        (f"{p}/plugs/p1/report", b'{"seq": 1, "blob": "' + b"x" * 4096 + b'"}', "oversize", ""),
        (f"{p}/devices/p1/ack", b'{"status": "ok"}', "invalid_ack", ""),
        (f"{p}/plugs/p1/report", b"\xff\xfe\x00", "unparseable", "plug"),
    ]
    good = 0
    expected_bad: list[tuple[str, bytes, str, str]] = []
    for round_ in range(10):
        for topic, payload, reason, rule in garbage:
            publisher.publish(f"{p}/plugs/p1/report", json.dumps({"seq": good, "power": 1.5, "relay": True}), qos=1)
            good += 1
            publisher.publish(topic, payload, qos=1)
            expected_bad.append((topic, payload, reason, rule))
        publisher.publish(f"{p}/fermenters/f1/temperature", f"{round_}.5", qos=1).wait_for_publish(10)
        good += 1

    collector.until(
        lambda: (
            len(collector.records[harness.topics.telemetry]) >= good
            and len(collector.records[harness.topics.dlq]) >= len(expected_bad)
        ),
        timeout_s=60,
        what="good and bad messages in Kafka",
    )
    telemetry = collector.records[harness.topics.telemetry]
    seqs = sorted(int(m) for r in telemetry for m in re.findall(rb"seq=(\d+)i", r.value))
    assert len(seqs) == good - 10 and set(seqs) == {seq for seq in range(good) if seq % 11 != 10}
    assert sum(b"fermenter,device=f1 temperature=" in r.value for r in telemetry) == 10

    dead = collector.records[harness.topics.dlq]
    assert len(dead) == len(expected_bad)
    got = sorted((r.header("mqtt_topic"), r.value, r.header("reason"), r.header("rule")) for r in dead)
    assert got == sorted(expected_bad)
    assert all(r.header("detail") for r in dead)


def test_a_device_cannot_write_as_another_device(harness: BridgeHarness, shipped_rules: RuleSet) -> None:
    # Issue 16: on f1's own topic, f1 sent a line tagged device=f2 and it was stored as f2's data.
    harness.start(prefixed(shipped_rules, harness.prefix))
    collector = harness.collector()
    publisher = harness.publisher()
    topic = f"{harness.prefix}/telegraf/f1/fermenter"
    for payload in (b"fermenter,device=f2 temperature=77.7", b"fermenter,device=f1 temperature=18.5", b"fermenter x=1"):
        publisher.publish(topic, payload, qos=1).wait_for_publish(10)
    collector.until(
        lambda: len(collector.records[harness.topics.telemetry]) >= 2 and collector.records[harness.topics.dlq],
        what="the two good lines and the impersonation",
    )
    telemetry = collector.records[harness.topics.telemetry]
    assert [r.key for r in telemetry] == [b"f1", b"f1"]
    assert [r.value.split(b" ")[0] for r in telemetry] == [b"fermenter,device=f1"] * 2
    (dead,) = collector.records[harness.topics.dlq]
    assert dead.value == b"fermenter,device=f2 temperature=77.7"
    assert (dead.header("reason"), dead.header("rule"), dead.header("mqtt_topic")) == (
        "tag_mismatch",
        "line-protocol",
        topic,
    )
    assert "device='f2'" in (dead.header("detail") or "")


def test_device_acks_go_to_commands_and_bad_acks_to_the_dlq(harness: BridgeHarness) -> None:
    harness.start(_rules(harness.prefix))
    collector = harness.collector()
    publisher = harness.publisher()
    ack = DeviceAck(id="cmd-42", status="ok", state={"relay": False, "power_w": 0.0}, ts_ms=1_700_000_000_000)
    publisher.publish(f"{harness.prefix}/devices/plug-1/ack", ack.model_dump_json(), qos=1).wait_for_publish(10)
    collector.until(lambda: bool(collector.records[harness.topics.commands]), what="ack in commands")
    (record,) = collector.records[harness.topics.commands]
    assert record.key == b"plug-1"
    event = CommandEvent.model_validate_json(record.value)
    assert (event.type, event.command_id, event.device, event.status, event.state) == (
        "ack",
        "cmd-42",
        "plug-1",
        "ok",
        "acked",
    )
    assert event.device_state == {"relay": False, "power_w": 0.0} and event.ts_ms == 1_700_000_000_000


def test_a_message_is_acked_only_after_kafka_confirmed_it(harness: BridgeHarness) -> None:
    """With Kafka unreachable nothing is acknowledged: the broker gives the message to the next session."""
    # Records time out after 1 s, are reported failed, and are produced again: still nothing is acknowledged.
    unreachable = harness.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:9", "message_timeout_ms": 1000})
    settings = harness.settings(kafka_stall_s=1, drain_timeout_s=0.5)
    stuck = harness.start(_rules(harness.prefix), settings.model_copy(update={"kafka": unreachable}))
    publisher = harness.publisher()
    publisher.publish(f"{harness.prefix}/fermenters/f9/temperature", "21.5", qos=1).wait_for_publish(10)
    wait_until(lambda: _received(stuck) == 1, what="message received by the stuck bridge")
    wait_until(lambda: not stuck.service.bridge.kafka_health()[0], timeout_s=10, what="kafka health failing")
    assert "unconfirmed" in stuck.service.bridge.kafka_health()[1]
    wait_until(lambda: _metric(stuck, "telestack_mqtt_bridge_delivery_failures_total") > 0, what="failures counted")
    assert _metric(stuck, "telestack_mqtt_bridge_messages_acked_total") == 0
    stuck.stop()  # nothing was confirmed, so nothing was acknowledged

    collector = harness.collector()
    harness.start(_rules(harness.prefix), harness.settings())  # same client id: same session
    collector.until(lambda: bool(collector.records[harness.topics.telemetry]), what="redelivered message in Kafka")
    (record,) = collector.records[harness.topics.telemetry]
    assert record.key == b"f9" and b"temperature=21.5" in record.value


def _metric(running: RunningService[BridgeService], name: str, **labels: str) -> float:
    """A count of this bridge's own metrics: they are added to them every `METRICS_EVERY_S` (poll for a change)."""
    return running.service.metrics.registry.get_sample_value(name, labels) or 0.0


def _received(running: RunningService[BridgeService]) -> float:
    return _metric(running, "telestack_mqtt_bridge_messages_received_total")


def test_messages_published_while_the_bridge_is_away_arrive(harness: BridgeHarness) -> None:
    first = harness.start(_rules(harness.prefix))
    first.stop()
    publisher = harness.publisher()
    for i in range(50):
        publisher.publish(f"{harness.prefix}/fermenters/f{i}/temperature", f"{i}.0", qos=1).wait_for_publish(10)
    collector = harness.collector()
    harness.start(_rules(harness.prefix))
    collector.until(lambda: len(collector.records[harness.topics.telemetry]) >= 50, what="queued messages")
    assert {r.key for r in collector.records[harness.topics.telemetry]} == {f"f{i}".encode() for i in range(50)}


def test_shared_subscription_splits_messages_between_replicas(harness: BridgeHarness) -> None:
    group = f"g{harness.unique}"
    one = harness.start(_rules(harness.prefix), harness.settings(client_id=f"a-{harness.unique}", share_group=group))
    two = harness.start(_rules(harness.prefix), harness.settings(client_id=f"b-{harness.unique}", share_group=group))
    assert one.service.bridge.subscriptions[0].startswith(f"$share/{group}/")
    collector = harness.collector()
    publisher = harness.publisher()
    for i in range(200):
        publisher.publish(f"{harness.prefix}/plugs/p{i % 7}/report", json.dumps({"seq": i}), qos=1)
    publisher.publish(f"{harness.prefix}/plugs/p0/report", json.dumps({"seq": 200}), qos=1).wait_for_publish(10)
    collector.until(lambda: len(collector.records[harness.topics.telemetry]) >= 201, what="all messages")
    wait_until(lambda: _received(one) + _received(two) == 201, what="every message counted once, by one replica")
    assert _received(one) > 20 and _received(two) > 20


def test_health_and_metrics_report_the_connection(harness: BridgeHarness) -> None:
    running = harness.start(_rules(harness.prefix))
    assert running.service.bridge.mqtt_health() == (True, "connected and subscribed (connection 1)")
    assert running.service.bridge.kafka_health()[0]


def test_simulated_devices_through_the_bridge(harness: BridgeHarness, shipped_rules: RuleSet) -> None:
    """Simulators → shipped rules → telemetry; a command's ack → commands, as the actuator will see it."""
    p = harness.prefix
    harness.start(prefixed(shipped_rules, p))
    collector = harness.collector()
    devices = [
        Fermenter(f"f-{harness.unique}", random.Random(1), prefix=f"{p}/fermenters"),
        SmartPlug(f"plug-{harness.unique}", random.Random(2), prefix=f"{p}/plugs"),
        EnergyMeter(f"meter-{harness.unique}", random.Random(3), prefix=f"{p}/teleinfo"),
    ]
    fleet = DeviceFleet(
        harness.mqtt, devices, interval_s=0.2, ack_topic=f"{p}/devices/{{device}}/ack", client_id_prefix=p
    )
    shutdown = Shutdown()
    thread = threading.Thread(target=fleet.run, args=(shutdown,))
    thread.start()
    try:
        wait_until(lambda: all(link.client.is_connected() for link in fleet.links.values()), what="devices up")
        keys = {d.device_id.encode() for d in devices}
        collector.until(
            lambda: {r.key for r in collector.records[harness.topics.telemetry]} >= keys, what="every device's data"
        )
        command = DeviceCommand(id="c-1", command="off", ts_ms=int(time.time() * 1000))
        publisher = harness.publisher()
        publisher.publish(f"devices/plug-{harness.unique}/cmd", command.model_dump_json(), qos=1).wait_for_publish(5)
        collector.until(lambda: bool(collector.records[harness.topics.commands]), what="the plug's ack in commands")
    finally:
        shutdown.set()
        thread.join(10)
    event = CommandEvent.model_validate_json(collector.records[harness.topics.commands][0].value)
    assert (event.command_id, event.device, event.status, event.device_state["relay"]) == (
        "c-1",
        f"plug-{harness.unique}",
        "ok",
        False,
    )
    assert not collector.records[harness.topics.dlq]
    measurements = {r.value.split(b",", 1)[0] for r in collector.records[harness.topics.telemetry]}
    assert measurements == {b"fermenter", b"plug", b"teleinfo"}


def _settled(running: RunningService[BridgeService]) -> bool:
    """Nothing waits for Kafka and nothing is set aside for another try: every message has ended."""
    bridge = running.service.bridge
    return running.service.producer.pending() == 0 and not (
        bridge._retries or bridge._suspects or bridge._refused_records
    )


def test_payload_larger_than_kafka_accepts_is_dead_lettered_truncated_and_acked(harness: BridgeHarness) -> None:
    """Issue 13, finding 4: a >1 MB payload was dead-lettered whole, Kafka refused it, and it was retried forever
    without an ack: with more of them than the receive window, the bridge stalled for good."""
    settings = harness.settings(inflight_window=4, max_payload_bytes=2048, subscriptions=[f"{harness.prefix}/#"])
    running = harness.start(_rules(harness.prefix), settings)
    collector = harness.collector()
    publisher = harness.publisher()
    p = harness.prefix
    huge = b'{"seq": 1, "blob": "' + b"x" * 1_200_000 + b'"}'
    for seq in range(6):  # more than the window
        publisher.publish(f"{p}/plugs/p1/report", huge, qos=1)
        publisher.publish(f"{p}/plugs/p1/report", json.dumps({"seq": seq, "power": 1.0, "relay": True}), qos=1)
    collector.until(
        lambda: (
            len(collector.records[harness.topics.telemetry]) >= 6 and len(collector.records[harness.topics.dlq]) >= 6
        ),
        timeout_s=60,
        what="every good message written and every huge one dead-lettered",
    )
    for dead in collector.records[harness.topics.dlq]:
        assert dead.header("reason") == "oversize" and dead.header("truncated") == "true"
        assert dead.header("payload_bytes") == str(len(huge))
        assert len(dead.value) <= 1_000_000 - 16 * 1024 and huge.startswith(dead.value)
    wait_until(lambda: _settled(running), 30, what="no record left in flight or waiting for a retry")


def test_records_the_broker_refuses_end_as_cut_dead_letters_or_acked_drops(harness: BridgeHarness, unique: str) -> None:
    """A broker whose limits are below the producer's (topic max.message.bytes): a dead letter it refuses is sent
    again cut to 1 KiB; a telemetry record it refuses is dead-lettered; nothing is retried forever."""
    topics = harness.topics.model_copy(update={"telemetry": f"tel-small-{unique}", "dlq": f"dlq-small-{unique}"})
    kafka = harness.kafka.model_copy(update={"topics": topics})
    small = {"max.message.bytes": "4000"}
    ensure_topics(kafka, {topics.telemetry: 1, topics.dlq: 1}, config={topics.telemetry: small, topics.dlq: small})
    harness.kafka = kafka
    settings = harness.settings(max_payload_bytes=100_000, subscriptions=[f"{harness.prefix}/#"])
    running = harness.start(_rules(harness.prefix), settings)
    collector = harness.collector()
    publisher = harness.publisher()
    p = harness.prefix
    noise = base64.b64encode(random.Random(7).randbytes(9_000)).decode()  # lz4 cannot shrink it under 4000
    big_line = f'box,device=box blob="{noise}" 1700000000000000000'  # the device its topic names
    unparseable = b"\xff" + noise.encode()
    publisher.publish(f"{p}/lines/box", unparseable, qos=1)  # a 12 KB dead letter
    publisher.publish(f"{p}/lines/box", big_line, qos=1)  # valid, but a telemetry record > 4000 bytes
    publisher.publish(f"{p}/plugs/p1/report", json.dumps({"seq": 7, "power": 1.0, "relay": True}), qos=1)
    collector.until(
        lambda: len(collector.records[topics.telemetry]) >= 1 and len(collector.records[topics.dlq]) >= 2,
        timeout_s=60,
        what="the good message written and both refused ones dead-lettered",
    )
    dead = {r.header("reason"): r for r in collector.records[topics.dlq]}
    assert set(dead) == {"unparseable", "rejected"}
    for record in dead.values():
        assert record.header("truncated") == "true" and len(record.value) <= 1024
    assert dead["unparseable"].header("payload_bytes") == str(len(unparseable))
    assert dead["rejected"].value.startswith(b"box,device=box blob=")  # the record's start, cut to 1 KiB
    wait_until(lambda: _settled(running), 30, what="no record left in flight or waiting for a retry")

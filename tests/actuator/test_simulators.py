"""End to end with the real simulators and the real mqtt-bridge: the plug and fermenter simulators obey the
actuator's commands over MQTT, the bridge forwards their acks to Kafka ``commands``, the actuator reads them
there (ack_source=kafka), and the audit trail holds every step."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import yaml

from telestack.core.settings import KafkaSettings, TopicSettings
from telestack.mqtt_bridge.command import BridgeService
from telestack.mqtt_bridge.rules import parse_rules
from telestack.mqtt_bridge.settings import BridgeOptions, BridgeSettings
from telestack.native import KafkaEndpoint, MqttEndpoint
from telestack.simulators.fermenters import Fermenter
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug
from tests.actuator.conftest import ACK_WAIT_S, ActuatorFactory, RunningActuator, events, mqtt_settings_of, read_topic
from tests.harness import RunningService
from tests.polling import wait_until


@dataclass
class Stack:
    actuator: RunningActuator
    plug: str
    fermenter: str
    fleet: DeviceFleet


@pytest.fixture
def stack(
    actuators: ActuatorFactory,
    simulate: Callable[..., DeviceFleet],
    kafka: KafkaEndpoint,
    mqtt: MqttEndpoint,
    unique: str,
) -> Iterator[Stack]:
    prefix = f"test/{unique}"
    plug_id, fermenter_id = f"plug-{unique}", f"f1-{unique}"
    registry = {
        "defaults": {"command_topic": prefix + "/devices/{device}/cmd", "ack_topic": prefix + "/devices/{device}/ack"},
        "types": {
            # "blink" is allowed here but unknown to the simulated plug: it refuses it.
            "plug": {
                "display": ["relay"],
                "commands": {"on": {}, "off": {}, "toggle": {}, "blink": {}},
                "seen_topics": [prefix + "/plugs/{device}/report"],
            },
            "fermenter": {
                "commands": {"set_setpoint": {"args": {"celsius": {"type": "number", "min": -2, "max": 30}}}},
                "seen_topics": [prefix + "/fermenters/{device}/+"],
            },
        },
        "devices": [
            {"id": plug_id, "type": "plug", "site": "lab"},
            {"id": fermenter_id, "type": "fermenter", "site": "brewery"},
        ],
    }
    (actuators.tmp_path / "devices.yaml").write_text(yaml.safe_dump(registry))
    rng = random.Random(7)
    fleet = simulate(
        SmartPlug(plug_id, rng, relay=False, prefix=f"{prefix}/plugs"),
        Fermenter(fermenter_id, rng, prefix=f"{prefix}/fermenters"),
        command_topic=prefix + "/devices/{device}/cmd",
        ack_topic=prefix + "/devices/{device}/ack",
    )
    kafka_settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        linger_ms=5,
        topics=TopicSettings(commands=actuators.commands_topic, telemetry=actuators.telemetry_topic),
    )
    bridge_settings = BridgeSettings(
        kafka=kafka_settings,
        mqtt=mqtt_settings_of(mqtt),
        mqtt_bridge=BridgeOptions(client_id=f"bridge-{unique}", ack_topic=prefix + "/devices/{device}/ack"),
    )
    rules = parse_rules(f'rules:\n  - {{name: plug, topic: "{prefix}/plugs/{{device}}/report", measurement: plug}}\n')
    bridge = RunningService(BridgeService(bridge_settings, rules))
    wait_until(lambda: bridge.service.bridge.subscribed, 20, what="the bridge subscribed")
    try:
        yield Stack(actuators.start(ack_source="kafka"), plug_id, fermenter_id, fleet)
    finally:
        bridge.stop(30)


def test_the_simulated_plug_and_fermenter_obey_through_the_whole_stack(stack: Stack, kafka: KafkaEndpoint) -> None:
    actuator, plug, fermenter = stack.actuator, stack.plug, stack.fermenter
    client = actuator.client(actuator.tokens.admin)

    on = client.post(f"/v1/devices/{plug}/commands?wait={ACK_WAIT_S}", json={"command": "on"}).json()
    assert on["state"] == "acked", on
    assert on["device_state"]["relay"] is True and on["device_state"]["power_w"] > 0

    toggled = client.post(f"/v1/devices/{plug}/commands?wait={ACK_WAIT_S}", json={"command": "toggle"}).json()
    assert toggled["state"] == "acked" and toggled["device_state"] == {"relay": False, "power_w": 0.0}

    setpoint = client.post(
        f"/v1/devices/{fermenter}/commands",
        params={"wait": ACK_WAIT_S},
        json={"command": "set_setpoint", "args": {"celsius": 12.5}},
    ).json()
    assert setpoint["state"] == "acked" and setpoint["device_state"]["setpoint"] == 12.5

    refused = client.post(f"/v1/devices/{plug}/commands?wait={ACK_WAIT_S}", json={"command": "blink"}).json()
    assert refused["state"] == "failed" and "unknown command 'blink'" in refused["reason"]

    # Out of the registry's bounds: refused before anything reaches the device (the simulator would take 35).
    too_hot = client.post(
        f"/v1/devices/{fermenter}/commands", json={"command": "set_setpoint", "args": {"celsius": 35}}
    )
    assert too_hot.status_code == 422

    devices = {d["id"]: d for d in client.get("/v1/devices").json()["devices"]}
    assert devices[fermenter]["state"]["setpoint"] == 12.5 and devices[fermenter]["last_seen"] is not None

    # The trail: for each command, the actuator's command and outcome and the bridge's forwarded ack.
    ids = {on["id"], toggled["id"], setpoint["id"], refused["id"]}

    def complete(records: list) -> bool:
        seen = {(e["command_id"], e["type"]) for e in events(records) if e.get("command_id") in ids}
        return all((i, t) in seen for i in ids for t in ("command", "ack", "outcome"))

    trail = [
        e
        for e in events(read_topic(kafka, actuator.settings.kafka.topics.commands, complete))
        if e.get("command_id") in ids
    ]
    outcomes = {e["command_id"]: e["state"] for e in trail if e["type"] == "outcome"}
    assert outcomes == {on["id"]: "acked", toggled["id"]: "acked", setpoint["id"]: "acked", refused["id"]: "failed"}
    assert all(e["actor"] == "admin" for e in trail if e["type"] == "command")


def test_telemetry_on_seen_topics_updates_last_seen(stack: Stack) -> None:
    client = stack.actuator.client(stack.actuator.tokens.reader)

    def last_seen() -> dict[str, str | None]:
        return {d["id"]: d["last_seen"] for d in client.get("/v1/devices").json()["devices"]}

    # The fermenter's retained "online" status was there before the actuator subscribed: not a sign of life now.
    assert last_seen() == {stack.plug: None, stack.fermenter: None}
    stack.fleet.tick(1.0)  # each simulated device publishes its telemetry once
    wait_until(lambda: all(last_seen().values()), 10, what="both devices seen")
    assert set(last_seen()) == {stack.plug, stack.fermenter}

"""The actuator's HTTP API on real uvicorn, Kafka and Mosquitto: commands, acks, timeouts, idempotency, auth."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Callable

import pytest

from telestack.core.kafka import KafkaProducer
from telestack.core.settings import KafkaSettings
from telestack.mqtt_bridge.acks import ack_record
from telestack.native import KafkaEndpoint
from tests.actuator.conftest import ACK_WAIT_S, ActuatorFactory, FakeDevice, RunningActuator, events, read_topic
from tests.polling import wait_until


def _audit(kafka: KafkaEndpoint, actuator: RunningActuator, command_id: str, until_types: set[str]) -> list[dict]:
    """The audit events of one command, once every type in `until_types` is there."""

    def mine(records: list) -> list[dict]:
        return [e for e in events(records) if e.get("command_id") == command_id]

    records = read_topic(
        kafka,
        actuator.settings.kafka.topics.commands,
        lambda records: until_types <= {e["type"] for e in mine(records)},
    )
    return mine(records)


def test_a_command_is_acked_and_in_the_audit_trail(
    actuator: RunningActuator, fake_device: Callable[..., FakeDevice], kafka: KafkaEndpoint
) -> None:
    plug = fake_device(actuator.devices.plug)
    client = actuator.client(actuator.tokens.plugs)

    url = f"/v1/devices/{plug.device_id}/commands"
    response = client.post(url, params={"wait": ACK_WAIT_S}, json={"command": "on"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "acked"
    assert body["device_state"] == {"relay": True}
    assert body["actor"] == "grafana-button"
    assert response.headers["Location"] == f"/v1/commands/{body['id']}"
    assert [c.command for c in plug.commands()] == ["on"]
    assert plug.commands()[0].id == body["id"]

    trail = _audit(kafka, actuator, body["id"], {"command", "outcome"})
    command = next(e for e in trail if e["type"] == "command")
    outcome = next(e for e in trail if e["type"] == "outcome")
    assert command["actor"] == "grafana-button" and command["command"] == "on" and command["device"] == plug.device_id
    assert outcome["state"] == "acked" and outcome["device_state"] == {"relay": True}
    assert outcome["ts_ms"] >= command["ts_ms"]

    reader = actuator.client(actuator.tokens.reader)
    assert reader.get(f"/v1/commands/{body['id']}").json()["state"] == "acked"
    devices = {d["id"]: d for d in reader.get("/v1/devices").json()["devices"]}
    assert devices[plug.device_id]["state"] == {"relay": True}
    assert devices[plug.device_id]["last_seen"] is not None
    assert devices[plug.device_id]["last_command"]["id"] == body["id"]
    assert devices[plug.device_id]["can_command"] is False  # the reader only reads
    assert devices[actuator.devices.lamp]["last_seen"] is None


def test_a_device_that_never_answers_times_out(
    actuators: ActuatorFactory, fake_device: Callable[..., FakeDevice], kafka: KafkaEndpoint
) -> None:
    actuator = actuators.start(command_timeout_s=1.5)
    mute = fake_device(actuator.devices.mute, mode="silent")
    client = actuator.client(actuator.tokens.admin)

    issued = client.post(f"/v1/devices/{mute.device_id}/commands", json={"command": "toggle"})
    assert issued.status_code == 202
    assert issued.json()["state"] in ("pending", "sent")

    final = client.get(f"/v1/commands/{issued.json()['id']}", params={"wait": 5}).json()
    assert final["state"] == "timed_out"
    assert "no ack" in final["reason"] and "broker had accepted" in final["reason"]
    assert len(mute.commands()) == 1  # it did get the command: silence, not loss

    outcome = next(e for e in _audit(kafka, actuator, final["id"], {"command", "outcome"}) if e["type"] == "outcome")
    assert outcome["state"] == "timed_out" and outcome["actor"] == "admin"


def test_a_refusal_is_failed_with_the_device_reason(
    actuator: RunningActuator, fake_device: Callable[..., FakeDevice]
) -> None:
    broken = fake_device(actuator.devices.broken, mode="refuse")
    client = actuator.client(actuator.tokens.admin)
    body = client.post(f"/v1/devices/{broken.device_id}/commands?wait=5", json={"command": "on"}).json()
    assert body["state"] == "failed"
    assert body["reason"] == "relay stuck"


def test_the_idempotency_key_prevents_a_double_switch(
    actuator: RunningActuator, fake_device: Callable[..., FakeDevice]
) -> None:
    plug = fake_device(actuator.devices.plug)
    client = actuator.client(actuator.tokens.plugs)
    url = f"/v1/devices/{plug.device_id}/commands"
    key = {"Idempotency-Key": f"grafana-{uuid.uuid4()}"}

    first = client.post(url, params={"wait": ACK_WAIT_S}, json={"command": "toggle"}, headers=key)
    # A retry (the response was lost), then three concurrent retries: none may toggle again.
    second = client.post(url, params={"wait": ACK_WAIT_S}, json={"command": "toggle"}, headers=key)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        others = list(pool.map(lambda _: client.post(url, json={"command": "toggle"}, headers=key), range(3)))

    assert first.status_code == 202 and first.json()["state"] == "acked"
    assert second.status_code == 200 and second.headers["Idempotent-Replayed"] == "true"
    assert {r.json()["id"] for r in [second, *others]} == {first.json()["id"]}
    assert len(plug.commands()) == 1
    assert plug.state["relay"] is True  # toggled once from off

    reused = client.post(url, json={"command": "off"}, headers=key)
    assert reused.status_code == 409
    assert "another request" in reused.json()["detail"]

    # Keys belong to a token: another caller's same key is another command.
    admin = actuator.client(actuator.tokens.admin)
    assert admin.post(url, params={"wait": ACK_WAIT_S}, json={"command": "toggle"}, headers=key).status_code == 202
    assert len(plug.commands()) == 2


def test_acks_forwarded_by_the_bridge_through_kafka_are_enough(
    actuators: ActuatorFactory, fake_device: Callable[..., FakeDevice], kafka: KafkaEndpoint
) -> None:
    """With ack_source=kafka the actuator reads no ack topic: the mqtt-bridge's ack records decide."""
    actuator = actuators.start(ack_source="kafka")
    plug = fake_device(actuator.devices.plug, mode="silent")
    client = actuator.client(actuator.tokens.admin)
    issued = client.post(f"/v1/devices/{plug.device_id}/commands", json={"command": "on"}).json()
    wait_until(lambda: plug.commands(), 10, what="the command reached the device")

    producer = KafkaProducer(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, linger_ms=0))
    payload = f'{{"id": "{issued["id"]}", "status": "ok", "state": {{"relay": true}}}}'.encode()
    producer.produce(
        actuator.settings.kafka.topics.commands,
        ack_record(plug.device_id, payload, 1_700_000_000_000),  # exactly what mqtt-bridge writes
        key=plug.device_id,
    )
    assert producer.flush(10) == 0

    final = client.get(f"/v1/commands/{issued['id']}", params={"wait": ACK_WAIT_S}).json()
    assert final["state"] == "acked"
    assert final["device_state"] == {"relay": True}


def test_arguments_are_checked_against_the_registry(actuator: RunningActuator) -> None:
    client = actuator.client(actuator.tokens.admin)
    fermenter = f"/v1/devices/{actuator.devices.fermenter}/commands"
    plug = f"/v1/devices/{actuator.devices.plug}/commands"

    too_hot = client.post(fermenter, json={"command": "set_setpoint", "args": {"celsius": 45}})
    assert too_hot.status_code == 422
    assert "celsius=45 is above the maximum 30 °C" in too_hot.json()["detail"]
    assert too_hot.json()["errors"][0]["loc"] == ["body", "args", "celsius"]

    checks = [
        (fermenter, {"command": "set_setpoint", "args": {}}, "argument 'celsius' is required"),
        (fermenter, {"command": "set_setpoint", "args": {"celsius": "warm"}}, "celsius must be a number"),
        (fermenter, {"command": "set_setpoint", "args": {"celsius": 12, "fan": 1}}, "unknown argument 'fan'"),
        (fermenter, {"command": "set_setpoint", "args": {"celsius": True}}, "celsius must be a number"),
        (plug, {"command": "blink"}, "unknown command 'blink'"),
        (plug, {"command": "on", "colour": "red"}, "colour"),
    ]
    for url, body, message in checks:
        response = client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert message in response.text, (body, response.text)

    assert client.post("/v1/devices/nope/commands", json={"command": "on"}).status_code == 404
    accepted = client.post(fermenter, json={"command": "set_setpoint", "args": {"celsius": 18.5}})
    assert accepted.status_code == 202 and accepted.json()["args"] == {"celsius": 18.5}


def test_the_auth_matrix(actuator: RunningActuator, fake_device: Callable[..., FakeDevice]) -> None:
    tokens, devices = actuator.tokens, actuator.devices
    plug_url = f"/v1/devices/{devices.plug}/commands"
    on = {"command": "on"}
    line = b"room,device=box-1 temp=21.5\n"

    def status(token: str | None, method: str, url: str, **kwargs: object) -> int:
        return actuator.client(token).request(method, url, **kwargs).status_code  # type: ignore[arg-type]

    # No token, a wrong one, a revoked one: 401, with a WWW-Authenticate challenge.
    anonymous = actuator.client().post(plug_url, json=on)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    for token in (None, "tst_deadbeef_nope", tokens.revoked, tokens.admin + "x"):
        assert status(token, "POST", plug_url, json=on) == 401
        assert status(token, "GET", "/v1/devices") == 401
        assert status(token, "POST", "/v1/ingest", content=line) == 401

    # Wrong scope: 403.
    assert status(tokens.reader, "POST", plug_url, json=on) == 403  # read is not command
    assert status(tokens.hq, "POST", plug_url, json=on) == 403  # ingest is not command
    assert status(tokens.hq, "GET", "/v1/devices") == 403  # ingest is not read
    assert status(tokens.plugs, "POST", "/v1/ingest", content=line) == 403  # command is not ingest
    assert status(tokens.reader, "POST", "/v1/ingest", content=line) == 403
    # Wrong device: command:plug-* may not switch the lamp, nor read it.
    lamp = actuator.client(tokens.plugs).post(f"/v1/devices/{devices.lamp}/commands", json=on)
    assert lamp.status_code == 403 and devices.lamp in lamp.json()["detail"]
    assert status(tokens.plugs, "GET", f"/v1/devices/{devices.lamp}") == 403
    visible = actuator.client(tokens.plugs).get("/v1/devices").json()["devices"]
    assert {d["id"] for d in visible} == {devices.plug, devices.mute, devices.broken}
    # Wrong site: a site token may not write as another site, by parameter or by tag.
    assert status(tokens.hq, "POST", "/v1/ingest", params={"site": "annex"}, content=line) == 403
    tagged = actuator.client(tokens.hq).post("/v1/ingest", content=b"a,site=hq v=1\nb,site=annex v=2\n")
    assert tagged.status_code == 403
    assert [e["line"] for e in tagged.json()["errors"]] == [2]

    # And the right ones pass.
    fake_device(devices.plug)
    assert status(tokens.plugs, "POST", plug_url, json=on) == 202
    assert status(tokens.admin, "POST", f"/v1/devices/{devices.lamp}/commands", json=on) == 202
    assert status(tokens.reader, "GET", f"/v1/devices/{devices.lamp}") == 200
    assert status(tokens.hq, "POST", "/v1/ingest", content=line) == 200
    assert status(tokens.admin, "POST", "/v1/ingest", params={"site": "hq"}, content=line) == 200


def test_a_revoked_token_stops_working_while_the_actuator_runs(actuator: RunningActuator) -> None:
    from telestack.actuator.tokens import TokenStore

    store = TokenStore(actuator.settings.actuator.tokens_file)
    token, _ = store.create("temporary", ["read"])
    client = actuator.client(token)
    assert client.get("/v1/devices").status_code == 200
    store.revoke("temporary")
    wait_until(lambda: client.get("/v1/devices").status_code == 401, 5, what="the revocation applied")


def test_the_rate_limit_answers_429_with_retry_after(actuators: ActuatorFactory) -> None:
    actuator = actuators.start(rate_limit_per_s=0.5, rate_limit_burst=3)
    reader = actuator.client(actuator.tokens.reader)
    statuses = [reader.get("/v1/devices").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = reader.get("/v1/devices")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    # The budget is per token: another token is not limited.
    assert actuator.client(actuator.tokens.admin).get("/v1/devices").status_code == 200


def test_cors_allows_only_the_configured_origins(actuators: ActuatorFactory) -> None:
    actuator = actuators.start(cors_origins=["https://grafana.example.org"])
    client = actuator.client()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    allowed = client.options(
        f"/v1/devices/{actuator.devices.plug}/commands",
        headers={"Origin": "https://grafana.example.org", **preflight},
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://grafana.example.org"
    assert "idempotency-key" in allowed.headers["Access-Control-Allow-Headers"].lower()
    refused = client.options("/v1/devices", headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in refused.headers
    simple = actuator.client(actuator.tokens.reader).get(
        "/v1/devices", headers={"Origin": "https://grafana.example.org"}
    )
    assert simple.headers["Access-Control-Allow-Origin"] == "https://grafana.example.org"


def test_cors_preflight_of_a_grafana_action_is_allowed(actuators: ActuatorFactory) -> None:
    """Grafana adds X-Grafana-Action to every action request: a preflight that refused it made the button inert."""
    actuator = actuators.start(cors_origins=["http://localhost:3000"])
    allowed = actuator.client().options(
        f"/v1/devices/{actuator.devices.plug}/commands",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-grafana-action",
        },
    )
    assert allowed.status_code == 200, allowed.text
    assert "x-grafana-action" in allowed.headers["Access-Control-Allow-Headers"].lower()


def test_health_metrics_and_docs(actuator: RunningActuator, fake_device: Callable[..., FakeDevice]) -> None:
    client = actuator.client()
    health = client.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert set(health.json()["checks"]) == {"mqtt", "kafka", "commands_log", "tokens"}

    fake_device(actuator.devices.plug)
    actuator.client(actuator.tokens.admin).post(
        f"/v1/devices/{actuator.devices.plug}/commands?wait=5", json={"command": "on"}
    )
    metrics = client.get("/metrics").text
    assert 'telestack_actuator_command_outcomes_total{state="acked"}' in metrics
    assert "telestack_actuator_http_requests_total" in metrics
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "server" not in client.get("/healthz").headers  # no version banner


def test_docs_can_be_turned_off(actuators: ActuatorFactory) -> None:
    actuator = actuators.start(docs=False)
    client = actuator.client()
    assert client.get("/openapi.json").status_code == 404
    assert client.get("/docs").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_oversized_command_bodies_are_refused(actuator: RunningActuator) -> None:
    client = actuator.client(actuator.tokens.admin)
    big = {"command": "on", "args": {"x": "y" * 100_000}}
    response = client.post(f"/v1/devices/{actuator.devices.plug}/commands", json=big)
    assert response.status_code == 413


def test_commands_survive_a_restart(actuators: ActuatorFactory, fake_device: Callable[..., FakeDevice]) -> None:
    """The commands topic is the memory: after a restart, states and idempotency keys are still known."""
    first = actuators.start()
    plug = fake_device(first.devices.plug)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    url = f"/v1/devices/{plug.device_id}/commands"
    plugs = first.client(first.tokens.plugs)
    issued = plugs.post(url, params={"wait": ACK_WAIT_S}, json={"command": "toggle"}, headers=key)
    assert issued.json()["state"] == "acked"
    # A silent device's command is left in flight when the actuator stops...
    mute = fake_device(first.devices.mute, mode="silent")
    in_flight = first.client(first.tokens.admin).post(f"/v1/devices/{mute.device_id}/commands", json={"command": "on"})
    first.stop()

    second = actuators.start()
    client = second.client(second.tokens.plugs)
    assert client.get(f"/v1/commands/{issued.json()['id']}").json()["state"] == "acked"
    retried = client.post(url, json={"command": "toggle"}, headers=key)
    assert retried.status_code == 200 and retried.json()["id"] == issued.json()["id"]
    assert len(plug.commands()) == 1
    # ...and the new process times it out, as the old one would have.
    admin = second.client(second.tokens.admin)
    final = admin.get(f"/v1/commands/{in_flight.json()['id']}", params={"wait": ACK_WAIT_S + 5}).json()
    assert final["state"] == "timed_out"


@pytest.mark.parametrize("ack_source", ["mqtt", "both"])
def test_acks_read_on_mqtt_directly(
    actuators: ActuatorFactory, fake_device: Callable[..., FakeDevice], ack_source: str
) -> None:
    actuator = actuators.start(ack_source=ack_source)
    plug = fake_device(actuator.devices.plug)
    body = (
        actuator.client(actuator.tokens.admin)
        .post(f"/v1/devices/{plug.device_id}/commands?wait=5", json={"command": "off"})
        .json()
    )
    assert body["state"] == "acked" and body["device_state"] == {"relay": False}

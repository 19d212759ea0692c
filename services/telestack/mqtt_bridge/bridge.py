"""The bridge loop: MQTT messages → mapping rules → Kafka, each MQTT message acknowledged after Kafka confirmed it.

Delivery, as it is written below:

- One MQTT 5 session with a fixed client id, session expiry > 0 and ``clean_start`` off, subscribed at QoS 1:
  the broker keeps the subscriptions and queues messages while the bridge is away.
- paho's manual ack: a message is acknowledged (PUBACK) only in the Kafka delivery callback of its record.
  The MQTT 5 receive maximum (``mqtt_bridge.inflight_window``) bounds the messages between the two.
  (QoS 0 messages, which devices like the STC-1000 publish, need no ack and are outside that window; the
  producer's queue bounds them: `KafkaProducer.produce` waits for room.)
- Every message becomes exactly one Kafka record: line protocol on ``telemetry``, a device ack on ``commands``,
  or the untouched payload on ``telemetry.dlq`` with headers ``mqtt_topic``, ``reason``, ``rule``, ``detail``.
  So a bad message is acknowledged too, once its dead letter is safe, and never blocks the window.
- A record Kafka reports failed (the link: a timeout) is produced again; its message stays unacknowledged
  meanwhile. Kafka answers every record within ``kafka.message_timeout_ms``, so these retries are paced by it
  and bounded in number by the receive window: that is how an outage of any length is ridden out.
- A record Kafka refuses (`RecordRejected`, `Delivery.rejected`: larger than ``message.max.bytes``, invalid)
  or that cannot be queued ``MAX_PRODUCE_ATTEMPTS`` times is dead-lettered instead, with reason ``rejected``.
  The broker refuses a whole batch for one record too large, so a record it refused is a suspect first:
  suspects are produced again one at a time, and only one refused again while it was the suspect in flight
  is taken for the culprit (the others were its neighbours in the batch, and go through). A dead letter goes
  with its value truncated to fit (`dead_letter_max_bytes`); a dead letter Kafka refuses is cut to
  ``DEAD_LETTER_MIN_BYTES`` and sent once more; refused again, the message is acknowledged without a
  record, logged and counted (``records_dropped_total``). So every message ends, and none is retried forever.
- After a disconnect the broker redelivers every unacknowledged message, so the acks of records from the
  previous connection are dropped (their packet ids belong to that connection). Redelivered messages may
  reach Kafka twice: at-least-once, and InfluxDB overwrites a point with the same series and time.
- Reconnects use exponential backoff; every disconnect is logged and counted, and the health check fails
  when the broker has been unreachable longer than ``mqtt_bridge.reconnect_bound_s``.

One thread does it all (`run`): it drives paho (`FastPathClient`: buffered reads, a direct PUBLISH path,
batched PUBACKs) through its external-loop API (``loop_read``, ``loop_write``,
``loop_misc`` on ``select``) and serves Kafka delivery callbacks between packets. No locks, and no wake-up
socket per acknowledgement as paho's own network thread would need.
"""

from __future__ import annotations

import select
import time
from collections import deque
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import Counter

from telestack.core.backoff import Backoff
from telestack.core.errors import KafkaError, RecordRejected
from telestack.core.kafka import Delivery, KafkaProducer
from telestack.core.mqtt import SESSION_EXPIRY_S, make_client
from telestack.core.runtime import Logger, Shutdown, get_logger
from telestack.mqtt_bridge.acks import AckRoute, ack_record
from telestack.mqtt_bridge.errors import MappingError
from telestack.mqtt_bridge.fastpath import FastPathClient
from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.metrics import RECORD_KINDS, BridgeMetrics
from telestack.mqtt_bridge.rules import RuleSet, minimal_filters
from telestack.mqtt_bridge.settings import BridgeSettings

__all__ = ["MqttBridge"]

# Reconnect backoff: first retry after 0.5 s, doubling up to 30 s.
RECONNECT_BACKOFF = Backoff(initial_s=0.5, max_s=30.0, jitter=0.0)
# How long the loop waits on the MQTT socket: short while Kafka is expected to confirm records soon (that is
# the ack latency), long when nothing is in flight (that is the shutdown latency), s.
WAIT_BUSY_S = 0.002
WAIT_SLOW_S = 0.05  # records in flight, but Kafka confirmed nothing for a while (it is slow or away)
WAIT_IDLE_S = 0.2
# Packets read per wait on the socket, at most, before Kafka callbacks are served.
READ_BURST = 64
# Counters are added to the Prometheus metrics at most this often, s (one inc per message costs a lock).
METRICS_EVERY_S = 0.5
# A record that cannot even be queued (produce raised) is tried this many times (once per housekeeping pass)
# before it is dead-lettered.
MAX_PRODUCE_ATTEMPTS = 5
# librdkafka's default message.max.bytes (the producer refuses larger records), bytes.
KAFKA_MESSAGE_MAX_BYTES = 1_000_000
# Room left in a dead letter for its key, headers and record overhead, bytes.
DEAD_LETTER_HEADROOM_BYTES = 16 * 1024
# A dead letter Kafka refused is sent once more with its value cut to this, bytes.
DEAD_LETTER_MIN_BYTES = 1024


def dead_letter_max_bytes(kafka_config: dict[str, str]) -> int:
    """The largest payload a dead letter carries whole, from the producer's ``message.max.bytes``.

    >>> dead_letter_max_bytes({})
    983616
    >>> dead_letter_max_bytes({"message.max.bytes": "20000"})
    3616
    """
    limit = int(kafka_config.get("message.max.bytes", KAFKA_MESSAGE_MAX_BYTES))
    return max(DEAD_LETTER_MIN_BYTES, limit - DEAD_LETTER_HEADROOM_BYTES)


class _InFlight:
    """One Kafka record and the MQTT message it answers for; called back once Kafka has settled it."""

    __slots__ = (
        "attempts",
        "bridge",
        "generation",
        "headers",
        "key",
        "kind",
        "mid",
        "mqtt_topic",
        "qos",
        "timestamp_ms",
        "topic",
        "value",
    )

    def __init__(
        self,
        bridge: MqttBridge,
        kind: str,
        topic: str,
        value: str | bytes,
        key: str,
        headers: list[tuple[str, str | bytes]] | None,
        timestamp_ms: int,
        generation: int,
        mid: int,
        qos: int,
        mqtt_topic: str,
    ) -> None:
        self.attempts = 0
        self.mqtt_topic = mqtt_topic
        self.bridge = bridge
        self.kind = kind
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        self.timestamp_ms = timestamp_ms
        self.generation = generation
        self.mid = mid
        self.qos = qos

    def __call__(self, delivery: Delivery) -> None:
        self.bridge._settle(self, delivery)


class _Counts:
    """Per-message counts, kept as plain ints in the loop and added to the Prometheus counters in batches."""

    __slots__ = (
        "_counters",
        "acked",
        "commands",
        "commands_acks",
        "dlq",
        "failures",
        "points",
        "received",
        "telemetry",
    )

    def __init__(self, metrics: BridgeMetrics) -> None:
        self.received = self.acked = self.points = self.failures = 0
        self.telemetry = self.dlq = self.commands = self.commands_acks = 0
        # (attribute, the counter it is added to): the per-kind children of records_confirmed resolved once
        self._counters: tuple[tuple[str, Counter], ...] = (
            ("received", metrics.messages_received),
            ("acked", metrics.messages_acked),
            ("points", metrics.points),
            ("failures", metrics.delivery_failures),
            ("commands_acks", metrics.command_acks),
            *((kind, metrics.records_confirmed.labels(kind)) for kind in RECORD_KINDS),
        )

    def publish(self) -> None:
        for name, metric in self._counters:
            value = getattr(self, name)
            if value:
                metric.inc(value)
                setattr(self, name, 0)


def _dead_letter_headers(topic: str, error: MappingError, arrival_ms: int) -> list[tuple[str, str | bytes]]:
    return [
        ("mqtt_topic", topic),
        ("reason", error.reason),
        ("rule", error.rule or ""),
        ("detail", error.detail[:1000]),
        ("received_ms", str(arrival_ms)),
    ]


class MqttBridge:
    """Subscribes, maps, produces and acknowledges; see the module docstring for the delivery rules."""

    def __init__(
        self,
        settings: BridgeSettings,
        rules: RuleSet,
        producer: KafkaProducer,
        *,
        log: Logger | None = None,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self.options = settings.mqtt_bridge
        self.rules = rules
        self.producer = producer
        self.log: Logger = log if log is not None else get_logger("mqtt-bridge")
        topics = settings.kafka.topics
        self._telemetry_topic = topics.telemetry
        self._dlq_topic = topics.dlq
        self._commands_topic = topics.commands
        self._ack_route = AckRoute.parse(self.options.ack_topic) if self.options.ack_topic else None
        self._max_payload = self.options.max_payload_bytes
        self._dead_letter_max = dead_letter_max_bytes(settings.kafka.config)
        filters = list(self.options.subscriptions) if self.options.subscriptions else rules.subscriptions()
        if self._ack_route is not None:
            filters = minimal_filters([*filters, self._ack_route.subscription])
        group = self.options.share_group
        self.subscriptions = [f"$share/{group}/{f}" if group else f for f in filters]
        self._counts = _Counts(self.metrics)
        self._retries: list[_InFlight] = []
        # Records Kafka refused for good, handled after the delivery callbacks (producing from inside one
        # would poll the producer from inside its own poll).
        self._refused_records: list[tuple[_InFlight, str]] = []
        self._suspects: deque[_InFlight] = deque()  # refused in a batch: tried again one at a time
        self._suspect: _InFlight | None = None  # the one in flight
        # Connection state (the health probes read it from the HTTP thread: single assignments only).
        self._generation = 0
        self._connected = False
        self._subscribed = False
        self._down_since: float | None = time.monotonic()
        self._last_disconnect_reason = "not connected yet"
        self._last_confirm = time.monotonic()
        self._draining = False
        self._next_attempt = 0.0
        self._failed_attempts = 0
        self.client = self._make_client()

    # --- MQTT connection ----------------------------------------------------------------------------------

    def _make_client(self) -> FastPathClient:
        client = make_client(
            self.settings.mqtt, client_id=self.options.client_id, manual_ack=True, client_class=FastPathClient
        )
        assert isinstance(client, FastPathClient)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # what the fast path leaves to paho (properties, QoS 2)
        client.on_publish_fast = self._on_publish
        client.on_subscribe = self._on_subscribe
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self.options.inflight_window
        mqtt = self.settings.mqtt
        client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s, clean_start=False, properties=properties)
        return client

    def _try_connect(self) -> None:
        """Open the connection (CONNACK comes through the loop); on failure, schedule the next try."""
        now = time.monotonic()
        if now < self._next_attempt:
            return
        mqtt = self.settings.mqtt
        try:
            self.client.reconnect()
        except OSError as exc:
            self._last_disconnect_reason = f"cannot reach {mqtt.host}:{mqtt.port}: {exc}"
            self.log.warning(
                "mqtt broker unreachable", error=str(exc), retry_in_s=RECONNECT_BACKOFF.delay(self._failed_attempts)
            )
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._next_attempt = time.monotonic() + RECONNECT_BACKOFF.delay(self._failed_attempts)
        self._failed_attempts += 1

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            self._last_disconnect_reason = f"connection refused: {reason}"
            self.log.warning(
                "mqtt connection refused", reason=str(reason), hint="check mqtt.username and mqtt.password"
            )
            return
        self._generation += 1
        down_for = None if self._down_since is None else round(time.monotonic() - self._down_since, 3)
        self._connected = True
        self._down_since = None
        self._failed_attempts = 0
        self.metrics.connected.set(1)
        self.log.info(
            "mqtt connected", session_present=bool(flags.session_present), down_s=down_for, generation=self._generation
        )
        # Subscribing again is harmless with a session present and picks up rules added since the last run;
        # retain handling 1: retained messages only for subscriptions the session did not have yet.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.subscriptions])

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        refused = [
            f"{topic}: {reason}"
            for topic, reason in zip(self.subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        if refused:
            self.log.error("mqtt subscriptions refused", refused=refused)
        self._subscribed = not refused

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Properties | None
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self._subscribed = False
        if self._down_since is None:
            self._down_since = time.monotonic()
        self.metrics.connected.set(0)
        if self._draining:
            return
        self._schedule_retry()
        if was_connected:
            self.metrics.disconnects.inc()
            self._last_disconnect_reason = str(reason)
            self.log.warning(
                "mqtt disconnected; reconnecting with backoff",
                reason=str(reason),
                generation=self._generation,
                retry_in_s=round(self._next_attempt - time.monotonic(), 3),
            )

    # --- messages -----------------------------------------------------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_publish(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        if self._draining:
            return  # not acknowledged: the broker gives it to the next session
        self._counts.received += 1
        arrival_ns = time.time_ns()
        arrival_ms = arrival_ns // 1_000_000
        token = (self._generation, mid, qos)
        if len(payload) > self._max_payload:
            error = MappingError(
                "oversize", f"{len(payload)} bytes > mqtt_bridge.max_payload_bytes {self._max_payload}"
            )
            self._dead_letter(topic, payload, error, arrival_ms, token)
            return
        if self._ack_route is not None:
            device = self._ack_route.device(topic)
            if device is not None:
                try:
                    value = ack_record(device, payload, arrival_ms)
                except MappingError as exc:
                    self._dead_letter(topic, payload, exc, arrival_ms, token)
                    return
                except Exception as exc:  # as for telemetry below: dead-letter, never stop
                    error = MappingError("invalid_ack", f"ack handling failed: {exc!r}"[:500])
                    self._dead_letter(topic, payload, error, arrival_ms, token)
                    return
                self._produce("commands", self._commands_topic, value, device, None, arrival_ms, token, topic)
                return
        try:
            mapped = map_message(self.rules, topic, payload, arrival_ns)
        except MappingError as exc:
            self._dead_letter(topic, payload, exc, arrival_ms, token)
            return
        except Exception as exc:  # a mapping bug must dead-letter one message, never stop the bridge
            self.log.error("mapping failed unexpectedly", mqtt_topic=topic, error=repr(exc))
            self._dead_letter(
                topic, payload, MappingError("invalid", f"mapping failed: {exc!r}"[:500]), arrival_ms, token
            )
            return
        self._counts.points += mapped.points
        self._produce("telemetry", self._telemetry_topic, mapped.value, mapped.key, None, arrival_ms, token, topic)

    def _dead_letter(
        self, topic: str, payload: bytes, error: MappingError, arrival_ms: int, token: tuple[int, int, int]
    ) -> None:
        self.metrics.dead_letters.labels(error.reason).inc()
        headers = _dead_letter_headers(topic, error, arrival_ms)
        if len(payload) > self._dead_letter_max:
            headers += [("truncated", "true"), ("payload_bytes", str(len(payload)))]
            payload = payload[: self._dead_letter_max]
        self._produce("dlq", self._dlq_topic, payload, topic, headers, arrival_ms, token, topic)

    # --- Kafka --------------------------------------------------------------------------------------------

    def _produce(
        self,
        kind: str,
        topic: str,
        value: str | bytes,
        key: str,
        headers: list[tuple[str, str | bytes]] | None,
        arrival_ms: int,
        token: tuple[int, int, int],
        mqtt_topic: str,
    ) -> None:
        generation, mid, qos = token
        self._send(_InFlight(self, kind, topic, value, key, headers, arrival_ms, generation, mid, qos, mqtt_topic))

    def _send(self, record: _InFlight) -> None:
        record.attempts += 1
        try:
            self.producer.produce(
                record.topic,
                record.value,
                key=record.key,
                headers=record.headers,
                timestamp_ms=record.timestamp_ms,
                on_delivery=record,
                poll=False,  # `_step` polls once per pass
            )
        except RecordRejected as exc:
            self._counts.failures += 1
            self._refused(record, str(exc))
        except KafkaError as exc:
            # Not queued (e.g. an invalid topic name): the MQTT message stays unacknowledged; retried a few times.
            self._counts.failures += 1
            if record.attempts >= MAX_PRODUCE_ATTEMPTS:
                self._refused(record, f"not queued after {record.attempts} attempts: {exc}")
                return
            self.log.error("kafka produce failed; will retry", topic=record.topic, error=str(exc))
            self._retries.append(record)

    def _refused(self, record: _InFlight, error: str) -> None:
        """Kafka will not take `record`: dead-letter it (truncated to fit), or end its message without a record."""
        if record.kind != "dlq":
            self.log.warning("kafka refused a record; dead-lettering it", topic=record.topic, error=error)
            self.metrics.dead_letters.labels("rejected").inc()
            value = record.value if isinstance(record.value, bytes) else record.value.encode("utf-8")
            headers = _dead_letter_headers(record.mqtt_topic, MappingError("rejected", error), record.timestamp_ms)
            if len(value) > self._dead_letter_max:
                headers += [("truncated", "true"), ("payload_bytes", str(len(value)))]
                value = value[: self._dead_letter_max]
            token = (record.generation, record.mid, record.qos)
            self._produce(
                "dlq", self._dlq_topic, value, record.mqtt_topic, headers, record.timestamp_ms, token, record.mqtt_topic
            )
            return
        if not any(name == "cut_to" for name, _ in record.headers or ()):
            self.log.warning("kafka refused a dead letter; sending it cut short", error=error)
            value = record.value if isinstance(record.value, bytes) else record.value.encode("utf-8")
            kept = [(k, v) for k, v in record.headers or () if k not in ("truncated", "payload_bytes", "detail")]
            original = next((v for k, v in record.headers or () if k == "payload_bytes"), str(len(value)))
            record.headers = [
                *kept,
                ("detail", error[:500]),
                ("truncated", "true"),
                ("payload_bytes", original),
                ("cut_to", str(DEAD_LETTER_MIN_BYTES)),
            ]
            record.value = value[:DEAD_LETTER_MIN_BYTES]
            record.attempts = 0
            self._send(record)
            return
        # Even the cut dead letter is refused (a broken topic or broker): end the message rather than hold it.
        self.log.error(
            "kafka refused the dead letter; message acknowledged without a record",
            mqtt_topic=record.mqtt_topic,
            error=error,
        )
        self.metrics.records_dropped.inc()
        self._ack(record)

    def _ack(self, record: _InFlight) -> None:
        if record.qos and record.generation == self._generation and self._connected:
            self.client.ack(record.mid, record.qos)
            self._counts.acked += 1

    def _settle(self, record: _InFlight, delivery: Delivery) -> None:
        counts = self._counts
        was_suspect = record is self._suspect
        if was_suspect:
            self._suspect = None
        if delivery.ok:
            self._last_confirm = time.monotonic()
            if record.kind == "telemetry":
                counts.telemetry += 1
            elif record.kind == "dlq":
                counts.dlq += 1
            else:
                counts.commands += 1
                counts.commands_acks += 1
            self._ack(record)
            return
        counts.failures += 1
        stale = record.qos > 0 and record.generation != self._generation
        if delivery.rejected and not stale:
            if was_suspect:  # refused while it was the one being tried: the culprit
                self._refused_records.append((record, delivery.error or "rejected"))
            else:
                self._suspects.append(record)
            return
        self.log.warning(
            "kafka delivery failed",
            topic=record.topic,
            key=record.key,
            error=delivery.error,
            action="dropped: the broker redelivers the message" if stale else "produced again",
        )
        if not stale:
            self._retries.append(record)

    def _serve_refused(self) -> None:
        while self._refused_records:
            refused, self._refused_records = self._refused_records, []
            for record, error in refused:
                self._refused(record, error)
        if self._suspect is None and self._suspects:
            self._suspect = self._suspects.popleft()
            self._send(self._suspect)

    def _produce_retries(self) -> None:
        retries, self._retries = self._retries, []
        for record in retries:
            if record.qos and record.generation != self._generation:
                continue  # the broker redelivers the message on the new connection
            self._send(record)

    # --- the loop -----------------------------------------------------------------------------------------

    def run(self, shutdown: Shutdown) -> None:
        """Bridge until `shutdown` is set, then drain."""
        mqtt = self.settings.mqtt
        self.log.info(
            "starting",
            broker=f"{mqtt.host}:{mqtt.port}",
            client_id=self.options.client_id,
            subscriptions=self.subscriptions,
            rules=len(self.rules),
            inflight_window=self.options.inflight_window,
        )
        try:
            next_housekeeping = 0.0
            while not shutdown.is_set():
                self._step()
                now = time.monotonic()
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + METRICS_EVERY_S
        finally:
            self.drain()

    def _step(self) -> None:
        """One pass: wait for the MQTT socket (briefly when Kafka owes us confirmations), read, write, poll."""
        client = self.client
        sock = client.socket()
        pending = self.producer.pending()
        if sock is None:
            self._try_connect()
            sock = client.socket()
            if sock is None:
                self.producer.poll(WAIT_SLOW_S if pending else WAIT_IDLE_S)
                return
        if pending:
            slow = time.monotonic() - self._last_confirm > 1.0
            wait = WAIT_SLOW_S if slow else WAIT_BUSY_S
        else:
            wait = WAIT_IDLE_S
        # Bytes already read (by the client's buffered reads, or decrypted by TLS) are invisible to select.
        has_buffered = getattr(sock, "pending", None)
        buffered = client.buffered() > 0 or (has_buffered is not None and has_buffered() > 0)
        if buffered:
            wait = 0.0
        try:
            readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], wait)
        except (OSError, ValueError):
            readable, writable = [sock], []  # the socket broke: loop_read reports it and paho closes it
        if buffered:
            readable = [sock]
        if readable:
            # loop_read handles one packet; while they are PUBLISHes, more are likely buffered (a backlog).
            counts = self._counts  # its `received` is only reset by `_housekeeping`, not during the burst
            for _ in range(READ_BURST):
                before = counts.received
                if client.loop_read() != paho.MQTT_ERR_SUCCESS or counts.received == before:
                    break
        if client.socket() is not None and (writable or client.want_write()):
            client.loop_write()
        self.producer.poll(0)  # delivery callbacks: acks are collected ...
        self._serve_refused()
        client.flush_acks()  # ... and written together
        if client.want_write() and client.socket() is not None:
            client.loop_write()

    def _housekeeping(self) -> None:
        if self.client.socket() is not None:
            self.client.loop_misc()  # keepalive pings, and a dead connection noticed
        pending = self.producer.pending()
        if not pending and not self._retries:
            self._last_confirm = time.monotonic()  # nothing waits: Kafka is not stalled
        if self._retries:
            self._produce_retries()
        self.client.flush_acks()  # of records retried above
        self.metrics.inflight.set(pending)
        self._counts.publish()

    def drain(self, timeout_s: float | None = None) -> None:
        """Stop taking messages, acknowledge what Kafka confirms within `timeout_s`, disconnect.

        `timeout_s` defaults to ``mqtt_bridge.drain_timeout_s``.

        Messages still unconfirmed stay unacknowledged: the broker redelivers them to the next session.
        """
        self._draining = True
        client = self.client
        deadline = time.monotonic() + (self.options.drain_timeout_s if timeout_s is None else timeout_s)
        while (self.producer.pending() or self._refused_records or self._suspects) and time.monotonic() < deadline:
            self.producer.poll(0.05)
            self._serve_refused()
            client.flush_acks()
            if client.socket() is not None and client.want_write():
                client.loop_write()
        client.flush_acks()
        if client.socket() is not None:
            client.disconnect()
            end = time.monotonic() + 2
            while client.socket() is not None and time.monotonic() < end:
                if client.loop_write() != paho.MQTT_ERR_SUCCESS:
                    break
                time.sleep(0.005)
        left = self.producer.pending()
        self._counts.publish()
        self.metrics.connected.set(0)
        self.metrics.inflight.set(left)
        self.log.info("drained", unconfirmed=left)

    # --- health -------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected and every subscription granted by the broker."""
        return self._connected and self._subscribed

    def mqtt_health(self) -> tuple[bool, str]:
        if self._connected:
            state = "subscribed" if self._subscribed else "subscribing"
            return True, f"connected and {state} (connection {self._generation})"
        down_since = self._down_since if self._down_since is not None else time.monotonic()
        down_for = time.monotonic() - down_since
        detail = f"disconnected for {down_for:.1f} s ({self._last_disconnect_reason})"
        return down_for <= self.options.reconnect_bound_s, detail

    def kafka_health(self) -> tuple[bool, str]:
        pending = self.producer.pending() + len(self._retries) + len(self._suspects)
        if self.producer.last_error and self.producer.last_error.startswith("fatal"):
            return False, self.producer.last_error
        waiting = time.monotonic() - self._last_confirm
        if pending and waiting > self.options.kafka_stall_s:
            return False, f"{pending} records unconfirmed; nothing confirmed for {waiting:.0f} s"
        return True, f"{pending} records in flight"

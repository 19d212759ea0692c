"""The actuator's behaviour behind the HTTP layer: commands with ack tracking, device views, ingest.

A command goes through, in order:

1. scope (``command:<glob>``), device (registry), arguments (type and bounds), idempotency key;
2. a ``command`` record in Kafka ``commands``, confirmed by the broker: no command without an audit trace;
3. an MQTT publish at QoS 1, confirmed by the broker (PUBACK) → ``sent``;
4. the device's ack (read on MQTT and/or from ``commands``, as forwarded by mqtt-bridge) → ``acked`` or
   ``failed``; none before the deadline → ``timed_out``. The outcome is recorded in ``commands`` too.

Everything that changes state runs on the event loop; MQTT and Kafka threads hand their events over with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from pydantic import ValidationError

from telestack.actuator.audit import AuditEvent, command_event, outcome_event
from telestack.actuator.device_link import DeviceLink, PublishRefused
from telestack.actuator.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from telestack.actuator.ingest import IngestBatch, IngestOptions, prepare_batch
from telestack.actuator.kafka_io import AsyncProducer, CommandLogReader, OutgoingRecord
from telestack.actuator.metrics import ActuatorMetrics
from telestack.actuator.models import DeviceView, device_view
from telestack.actuator.ratelimit import RateLimiter
from telestack.actuator.registry import Registry
from telestack.actuator.settings import ActuatorSettings
from telestack.actuator.tokens import Principal, TokenStore
from telestack.actuator.tracker import CommandRecord, CommandTracker
from telestack.core.commands import DeviceAck, DeviceCommand
from telestack.core.kafka import KafkaProducer, Record
from telestack.core.runtime import Check, get_logger

__all__ = ["ActuatorService", "IngestResult"]

log = get_logger("actuator")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    site: str
    points: int
    records: int


class ActuatorService:
    def __init__(
        self,
        settings: ActuatorSettings,
        registry: Registry,
        tokens: TokenStore,
        producer: KafkaProducer,
        mqtt_client: paho.Client,
        *,
        clock_ms: Callable[[], int] = _now_ms,
        metrics: ActuatorMetrics | None = None,
    ) -> None:
        options = settings.actuator
        self.options = options
        self.metrics = metrics if metrics is not None else ActuatorMetrics()
        self.topics = settings.kafka.topics
        self.registry = registry
        self.tokens = tokens
        self.limiter = RateLimiter(options.rate_limit_per_s, options.rate_limit_burst)
        self.tracker = CommandTracker(history_ms=options.history_s * 1000)
        self.kafka = AsyncProducer(producer, options.kafka_timeout_s)
        self._clock_ms = clock_ms
        read_mqtt_acks = options.ack_source in ("mqtt", "both")
        invalid_acks = self.metrics.invalid_acks
        self.link = DeviceLink(
            mqtt_client,
            settings.mqtt,
            registry.ack_topics() if read_mqtt_acks else {},
            on_ack=self._ack_from_mqtt,
            on_invalid_ack=lambda device, problem: invalid_acks.inc(),
            seen_topics=registry.seen_topics(),
            on_seen=self._seen_on_mqtt,
        )
        self.reader = CommandLogReader(
            settings.kafka,
            self.topics.commands,
            since_ms=clock_ms() - options.history_s * 1000,
            on_record=self._record_from_log,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}  # never replaced: the gauge below reads it
        self._background: set[asyncio.Task[Any]] = set()
        timers = self._timers  # not `self`: no reference cycle between the service and its own gauge
        self.metrics.commands_in_flight.set_function(lambda: len(timers))

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker, replay the commands topic (bounded by replay_timeout_s), adopt what is unfinished."""
        self._loop = asyncio.get_running_loop()
        self.kafka.start()
        self.reader.start()
        await asyncio.to_thread(self.link.connect, 10.0)
        replayed = await asyncio.to_thread(self.reader.caught_up.wait, self.options.replay_timeout_s)
        if not replayed:
            log.warning(
                "serving before the commands topic was replayed; idempotency keys of earlier commands may be missed",
                topic=self.topics.commands,
                error=self.reader.last_error,
            )
        await asyncio.sleep(0)  # let the replayed events queued with call_soon_threadsafe run first
        self._adopt_unfinished()
        log.info(
            "actuator ready",
            devices=len(self.registry.devices),
            tokens=self.tokens.active_count(),
            replayed_commands=len(self.tracker),
            ack_source=self.options.ack_source,
        )

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._background:
            await asyncio.wait(self._background, timeout=self.options.kafka_timeout_s)
        await asyncio.to_thread(self.link.close)
        await asyncio.to_thread(self.reader.close)
        left = await asyncio.to_thread(self.kafka.close, self.options.kafka_timeout_s)
        if left:
            log.error("audit records not confirmed at shutdown", records=left)

    def _adopt_unfinished(self) -> None:
        """Commands replayed without an outcome (this process restarted meanwhile): time them out here."""
        for record in self.tracker.unfinished():
            if not record.owned:
                record.owned = True
                self._schedule_timeout(record)

    def health(self) -> list[Check]:
        tokens_ok = self.tokens.load_error is None
        connected = self.link.connected
        return [
            Check("mqtt", connected, "connected" if connected else "not connected to the broker"),
            Check.of("kafka", self.kafka.healthy),
            Check.of("commands_log", self.reader.healthy),
            Check("tokens", tokens_ok, self.tokens.load_error or f"{self.tokens.active_count()} active tokens"),
        ]

    # --- auth ----------------------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        """The caller for a bearer token, after the rate limit; `Unauthorized` or `RateLimited`."""
        if not token:
            self.metrics.auth_failures.labels("401").inc()
            raise Unauthorized("a bearer token is required: Authorization: Bearer tst_...")
        principal = self.tokens.authenticate(token)
        if principal is None:
            self.metrics.auth_failures.labels("401").inc()
            raise Unauthorized("the token is unknown, revoked or expired")
        retry_after = self.limiter.acquire(principal.token_id)
        if retry_after is not None:
            self.metrics.rate_limited.inc()
            raise RateLimited(
                f"token {principal.name!r} is over its rate limit "
                f"({self.options.rate_limit_per_s:g} requests/s, bursts of {self.options.rate_limit_burst})",
                retry_after,
            )
        return principal

    # --- commands ------------------------------------------------------------------------------------------

    async def issue_command(
        self,
        principal: Principal,
        device_id: str,
        command: str,
        args: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> tuple[CommandRecord, bool]:
        """Issue a command; returns it and whether it is an earlier one replayed for the same idempotency key."""
        if not principal.can_command(device_id, command):
            self.metrics.auth_failures.labels("403").inc()
            raise Forbidden(f"token {principal.name!r} may not command device {device_id!r} with {command!r}")
        device = self.registry.device(device_id)
        normalized = self.registry.check_command(device_id, command, args)
        if idempotency_key is not None:
            earlier = self.tracker.by_idempotency_key(principal.token_id, idempotency_key)
            if earlier is not None:
                if not earlier.same_request(device_id, command, normalized):
                    raise Conflict(
                        f"Idempotency-Key {idempotency_key!r} was used for another request "
                        f"({earlier.command} on {earlier.device}, command {earlier.id})"
                    )
                return earlier, True
        if not self.link.connected:
            raise Unavailable("the MQTT broker is unreachable; the command was not sent")
        record = CommandRecord(
            id=uuid.uuid4().hex,
            device=device.id,
            command=command,
            args=normalized,
            actor=principal.name,
            token_id=principal.token_id,
            created_ms=self._clock_ms(),
            timeout_s=self.registry.timeout_s(device_id, command, self.options.command_timeout_s),
            idempotency_key=idempotency_key,
        )
        self.tracker.prune(record.created_ms)
        self.tracker.add(record)  # before any await: a concurrent retry with the same key finds it
        self.metrics.commands.labels(command).inc()
        try:
            await self.kafka.send(self._audit_record(command_event(record)))
        except Unavailable as exc:
            self.tracker.finish(record, "failed", self._clock_ms(), f"not recorded in the audit trail, not sent: {exc}")
            self.tracker.forget_idempotency_key(record)
            self.metrics.outcomes.labels("failed").inc()
            raise
        self._schedule_timeout(record)
        log.info("command issued", command_id=record.id, device=device.id, command=command, actor=principal.name)
        await self._publish(record)
        return record, False

    async def _publish(self, record: CommandRecord) -> None:
        message = DeviceCommand(id=record.id, command=record.command, args=record.args, ts_ms=record.created_ms)
        try:
            await self.link.publish(
                self.registry.command_topic(record.device),
                message.model_dump_json().encode(),
                expiry_s=record.timeout_s,
                timeout_s=min(self.options.publish_timeout_s, record.timeout_s),
                response_topic=self.registry.ack_topic(record.device),
                correlation=record.id.encode(),
            )
        except PublishRefused as exc:
            self._finish(record, "failed", str(exc))
        except Unavailable as exc:
            # Maybe delivered after a reconnect: the ack or the timeout decides, not us.
            log.warning("publish not confirmed", command_id=record.id, error=str(exc))
        else:
            self.tracker.mark_sent(record, self._clock_ms())

    def _schedule_timeout(self, record: CommandRecord) -> None:
        assert self._loop is not None
        delay_s = max(0.0, (record.deadline_ms - self._clock_ms()) / 1000)
        self._timers[record.id] = self._loop.call_later(delay_s, self._expire, record.id)

    def _expire(self, command_id: str) -> None:
        self._timers.pop(command_id, None)
        record = self.tracker.get(command_id)
        if record is None or record.terminal:
            return
        if record.state == "sent":
            reason = f"no ack from {record.device} within {record.timeout_s:g} s (the broker had accepted the command)"
        else:
            reason = (
                f"no ack from {record.device} within {record.timeout_s:g} s (the broker never confirmed the publish)"
            )
        self._finish(record, "timed_out", reason)
        log.warning("command timed out", command_id=record.id, device=record.device, command=record.command)

    def _finish(self, record: CommandRecord, state: Any, reason: str | None) -> None:
        if self.tracker.finish(record, state, self._clock_ms(), reason):
            self._finished(record)

    def _finished(self, record: CommandRecord) -> None:
        """A command this process owns reached its final state: stop its timer, record the outcome."""
        timer = self._timers.pop(record.id, None)
        if timer is not None:
            timer.cancel()
        self.metrics.outcomes.labels(record.state).inc()
        if record.state == "acked" and record.completed_ms is not None:
            self.metrics.ack_seconds.observe(max(0, record.completed_ms - record.created_ms) / 1000)
        if record.owned:
            task = asyncio.ensure_future(self._record_outcome(record))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _record_outcome(self, record: CommandRecord) -> None:
        try:
            await self.kafka.send(self._audit_record(outcome_event(record)))
        except Unavailable as exc:
            self.metrics.audit_errors.inc()
            log.error(
                "outcome not recorded in the audit trail", command_id=record.id, state=record.state, error=str(exc)
            )

    def _audit_record(self, event: AuditEvent) -> OutgoingRecord:
        return OutgoingRecord(
            self.topics.commands,
            event.model_dump_json(exclude_none=True),
            event.device,
            (("source", "actuator"), ("type", event.type)),
        )

    def command(self, principal: Principal, command_id: str) -> CommandRecord:
        record = self.tracker.get(command_id)
        if record is None:
            raise NotFound(f"unknown command {command_id!r} (or older than {self.options.history_s} s)")
        if not principal.can_see(record.device):
            self.metrics.auth_failures.labels("403").inc()
            raise Forbidden(f"token {principal.name!r} may not read commands of device {record.device!r}")
        return record

    async def wait(self, record: CommandRecord, wait_s: float) -> CommandRecord:
        """Return when the command is final or after `wait_s`."""
        if wait_s > 0 and not record.terminal:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.done.wait(), wait_s)
        return record

    # --- acks and the commands topic (handed over from other threads) -------------------------------------

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(callback, *args)

    def _seen_on_mqtt(self, device_id: str) -> None:
        self._call_soon(self.tracker.seen, device_id, _now_ms())

    def _ack_from_mqtt(self, device_id: str, ack: DeviceAck) -> None:
        self.metrics.acks.labels("mqtt").inc()
        self._call_soon(self._apply_ack, device_id, ack.id, ack.status == "ok", ack.reason, ack.state, _now_ms())

    def _record_from_log(self, record: Record) -> None:
        try:
            event = AuditEvent.model_validate_json(record.value)
        except ValidationError:
            return  # not ours to judge: other writers share the topic
        self._call_soon(self._apply_log_event, event, record.timestamp_ms or event.ts_ms)

    def _apply_ack(
        self, device_id: str, command_id: str, ok: bool, reason: str | None, state: dict[str, Any], seen_ms: int
    ) -> None:
        if device_id not in self.registry:
            return  # the topic carries every device's acks: remember only ours
        record = self.tracker.on_ack(device_id, command_id, ok, reason, state, seen_ms)
        if record is not None:
            log.info("command answered", command_id=record.id, device=device_id, state=record.state)
            self._finished(record)

    def _apply_log_event(self, event: AuditEvent, seen_ms: int) -> None:
        if event.type == "ack":
            if self.options.ack_source in ("kafka", "both"):
                self.metrics.acks.labels("kafka").inc()
                ok = event.status == "ok" if event.status is not None else event.state == "acked"
                self._apply_ack(event.device, event.command_id, ok, event.reason, event.device_state, seen_ms)
            return
        self.tracker.apply_event(
            event, idempotency_key=event.idempotency_key, token_id=event.token_id, timeout_s=event.timeout_s
        )

    # --- devices -------------------------------------------------------------------------------------------

    def visible_devices(self, principal: Principal) -> list[str]:
        if not principal.can_read() and not principal.command_globs():
            self.metrics.auth_failures.labels("403").inc()
            raise Forbidden(f"token {principal.name!r} has neither the read scope nor a command scope")
        return [device.id for device in self.registry.devices if principal.can_see(device.id)]

    def device_view(self, principal: Principal, device_id: str) -> DeviceView:
        """One device as `principal` sees it, for the API and the /ui page: registry entry, state, last command."""
        return device_view(
            self.registry,
            device_id,
            self.tracker.device(device_id),
            self.tracker.last_command(device_id),
            can_command=principal.can_command(device_id),
            default_timeout_s=self.options.command_timeout_s,
        )

    def check_visible(self, principal: Principal, device_id: str) -> None:
        if not principal.can_see(device_id):
            self.metrics.auth_failures.labels("403").inc()
            raise Forbidden(f"token {principal.name!r} may not read device {device_id!r}")
        self.registry.device(device_id)

    # --- ingest --------------------------------------------------------------------------------------------

    def ingest_site(self, principal: Principal, requested: str | None) -> str:
        sites = principal.ingest_sites()
        if requested is not None:
            if principal.is_admin or requested in sites:
                return requested
            self.metrics.auth_failures.labels("403").inc()
            allowed = ", ".join(sites) or "none"
            raise Forbidden(f"token {principal.name!r} may not ingest for site {requested!r} (its sites: {allowed})")
        if len(sites) == 1:
            return sites[0]
        if not sites and not principal.is_admin:
            self.metrics.auth_failures.labels("403").inc()
            raise Forbidden(f"token {principal.name!r} has no ingest:<site> scope")
        raise InvalidInput("this token may ingest for several sites: name one with ?site=")

    async def ingest(
        self,
        principal: Principal,
        body: bytes,
        *,
        content_type: str | None,
        content_encoding: str | None,
        site: str | None,
        precision: str,
    ) -> IngestResult:
        """Check the whole body, produce its records, return once Kafka confirmed every one of them."""
        chosen = self.ingest_site(principal, site)
        opts = IngestOptions(
            site=chosen,
            precision=precision,
            now_ns=time.time_ns(),
            site_tag=self.options.site_tag,
            key_tag=self.options.key_tag,
            max_lines=self.options.ingest_max_lines,
            max_record_bytes=self.options.ingest_record_max_bytes,
            max_fields=self.options.ingest_max_fields,
            grant=None if principal.is_admin else principal.ingest,
            identity_tags=tuple(self.options.identity_tags),
        )
        batch: IngestBatch = await asyncio.to_thread(
            prepare_batch,
            body,
            content_type,
            content_encoding,
            opts,
            max_decompressed_bytes=self.options.ingest_max_decompressed_bytes,
        )
        headers = (("source", "actuator.ingest"), ("site", chosen), ("actor", principal.name))
        records = [OutgoingRecord(self.topics.telemetry, rec.value, rec.key, headers) for rec in batch.records]
        try:
            await self.kafka.send_all(records, what="the batch")
        except Unavailable as exc:
            raise Unavailable(
                f"{exc}. Resend the whole batch: points with a timestamp are overwritten, not doubled"
            ) from None
        self.metrics.ingest_points.inc(batch.points)
        return IngestResult(chosen, batch.points, len(records))

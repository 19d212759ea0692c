"""The alerting service loop: telemetry in; state changes to Kafka, InfluxDB, the state store; notifications out.

One thread evaluates (`AlertEngine`) and decides what to notify (`Dispatcher`); each notifier delivers in
its own thread; InfluxDB annotations are written from another. Delivery semantics:

- the state of every instance is saved to the compacted state topic on each change (and checkpointed
  periodically), and telemetry offsets are stored only after those saves are confirmed: a crash replays
  the unconfirmed records, and `replay_guard_ns` makes the replay harmless;
- what each notifier delivered is saved as soon as it is confirmed, so a restart neither repeats a
  notification nor loses a resolution that happened while the service was down (the telemetry backlog
  is evaluated on restart, and resolutions of alerts announced as firing are then sent);
- partitions of ``telemetry`` are shared between replicas: an instance belongs to the partition its
  series arrives on, is restored when that partition is assigned and handed back when it is revoked;
  an expected device that never reported belongs to the partition its key hashes to (`partition_of`);
- an edit of the rules file is validated and swapped in between two passes (`RulesWatcher`); a refused
  edit leaves the running rules in place and is reported on ``/healthz`` (check ``rules``) and in the log.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException

from telestack.alerting.alert import AlertState, Instance, StateChange
from telestack.alerting.dispatch import Dispatcher
from telestack.alerting.engine import AlertEngine
from telestack.alerting.event_sinks import InfluxAnnotationWriter, KafkaAlertPublisher, annotation_point
from telestack.alerting.expected import partition_of
from telestack.alerting.metrics import AlertingMetrics
from telestack.alerting.notifiers import NotifierConfig, NotifierWorker, SendResult, build_notifier
from telestack.alerting.rules import RuleSet
from telestack.alerting.rules_watcher import LoadedRules, RulesWatcher
from telestack.alerting.settings import AlertingSettings
from telestack.alerting.state_store import KafkaStateStore
from telestack.core.errors import LineProtocolError, TelestackError
from telestack.core.kafka import KafkaConsumer, KafkaProducer, Record, TopicPartition, admin_client
from telestack.core.lineproto import Point, iter_lines, parse_line, parse_lines
from telestack.core.runtime import Check, Logger, Shutdown, get_logger
from telestack.core.service import ServiceBase
from telestack.core.topics import require_topics

__all__ = ["AlertingService", "parse_record"]

NS = 1_000_000_000
CATCH_UP_LIMIT_S = 120.0  # no-data waits at most this long for a backlog to be read after an assignment


def parse_record(value: bytes) -> tuple[list[Point], int]:
    """The points of one telemetry record, and how many of its lines were bad (skipped, not fatal)."""
    text = value.decode("utf-8", "replace")
    try:
        return parse_lines(text), 0
    except LineProtocolError:
        points, bad = [], 0
        for line_no, line in iter_lines(text):
            try:
                points.append(parse_line(line, line_no))
            except LineProtocolError:
                bad += 1
        return points, bad


class AlertingService(ServiceBase):
    """The running service; `run` loops until `shutdown` is set. Built from settings and a rule set."""

    name = "alerting"

    def __init__(
        self,
        settings: AlertingSettings,
        ruleset: RuleSet,
        *,
        expected: dict[str, tuple[str, ...]] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        log: Logger | None = None,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AlertingMetrics()
        self.options = settings.alerting
        self.ruleset = ruleset
        self.clock_ns = clock_ns
        self.log: Logger = log if log is not None else get_logger("alerting")
        self.engine = AlertEngine(ruleset, expected)
        self.watcher = RulesWatcher(self.options.rules, self.options.devices_file, self.options.reload_interval_s)
        self._retiring: list[NotifierWorker] = []  # replaced by a reload; stopped once they have sent their queue
        self._owned: set[int] = set()
        self._partitions: int | None = None  # of the telemetry topic, to place never-seen expected devices
        self._behind: dict[int, int] = {}  # assigned partition → offset to reach before no-data may judge
        self._behind_until = 0.0
        self.dispatcher = Dispatcher(
            self.engine,
            send_resolved={name: config.send_resolved for name, config in ruleset.notifiers.items()},
            retry_after_s=self.options.retry_after_s,
        )
        self._results: queue.Queue[SendResult] = queue.Queue()
        # Built here so a missing secret fails at start, naming the notifier and the variable.
        self.workers = {name: self._worker(name, config) for name, config in ruleset.notifiers.items()}
        self.influx: InfluxAnnotationWriter | None = None
        if self.options.influx_annotations:
            self.influx = InfluxAnnotationWriter(settings.influx, self.options.influx_bucket, metrics=self.metrics)
        self.producer: KafkaProducer | None = None
        self.consumer: KafkaConsumer | None = None
        self.store: KafkaStateStore | None = None
        self.publisher: KafkaAlertPublisher | None = None
        self._next_tick = 0
        self._next_checkpoint = 0
        self._unflushed = False
        self.last_error: str | None = None
        self.ready = False

    # --- lifecycle -----------------------------------------------------------------------------------

    def open(self) -> None:
        kafka = self.settings.kafka
        require_topics(kafka, [kafka.topics.telemetry, kafka.topics.alerts, kafka.topics.alerts_state])
        self.producer = KafkaProducer(kafka, on_error=self._kafka_error)
        self.store = KafkaStateStore(kafka, kafka.topics.alerts_state, self.producer, on_error=self._kafka_error)
        self.publisher = KafkaAlertPublisher(self.producer, kafka.topics.alerts)
        for worker in self.workers.values():
            worker.start()
        if self.influx is not None:
            self.influx.start()
        self.consumer = KafkaConsumer(
            kafka,
            self.options.group_id,
            [kafka.topics.telemetry],
            config={"group.instance.id": self.options.instance_id} if self.options.instance_id else None,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )

    def _worker(self, name: str, config: NotifierConfig) -> NotifierWorker:
        """The worker of notifier `name`; building it fails (`ConfigError`) when a secret it needs is missing."""
        notifier = build_notifier(name, config, mqtt=self.settings.mqtt)
        return NotifierWorker(notifier, config, self._results, metrics=self.metrics)

    def _kafka_error(self, message: str) -> None:
        self.last_error = message

    def run(self, shutdown: Shutdown) -> int:
        """Open clients, loop until `shutdown`, then drain and close."""
        self.open()
        try:
            while not shutdown.is_set():
                self.step()
        finally:
            self.close()
        return 0

    def _close(self) -> None:
        now = self.clock_ns()
        deadline = time.monotonic() + 5
        while self.dispatcher.busy and time.monotonic() < deadline:  # let deliveries under way finish
            self._drain_results(now, wait_s=0.1)
        self._drain_results(now)
        if self.store is not None:
            self._checkpoint(now, everything=False)
            self.store.flush(10)
        if self.consumer is not None:
            self.consumer.close()
        for worker in [*self.workers.values(), *self._retiring]:
            worker.stop()
        if self.influx is not None:
            self.influx.stop()
        if self.producer is not None:
            self.producer.close(10)

    # --- partitions ----------------------------------------------------------------------------------

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.store is not None
        owned = {tp.partition for tp in partitions}
        records = self.store.load()
        wanted = [
            record
            for key, record in records.items()
            if key not in self.engine.instances and (record.get("origin") is None or record.get("origin") in owned)
        ]
        restored, dropped = self.engine.restore(wanted)
        instances = self.engine.instances
        self.dispatcher.watch([instances[r["fingerprint"]] for r in wanted if r.get("fingerprint") in instances])
        self._owned |= owned
        self._partitions = self._partition_count()
        # Points that arrived while nobody read this partition are still to come: until they are read, a series
        # of it only looks silent (after a restart, no-data would fire for devices that kept reporting).
        try:
            assert self.consumer is not None
            self._behind.update(self.consumer.backlog_ends(partitions))
        except KafkaException as exc:
            self.log.warning("cannot read the telemetry backlog; no-data is judged at once", error=str(exc))
        self._behind_until = time.monotonic() + CATCH_UP_LIMIT_S
        self.log.info("partitions assigned", partitions=sorted(owned), restored=restored, dropped=dropped)
        self.ready = True

    def _partition_count(self) -> int | None:
        topic = self.settings.kafka.topics.telemetry
        try:
            metadata = admin_client(self.settings.kafka).list_topics(topic, timeout=10)
            partitions = metadata.topics[topic].partitions
        except (KafkaException, KeyError) as exc:  # retried at the next tick; expected devices wait meanwhile
            self.log.warning("cannot read the telemetry partition count", topic=topic, error=str(exc))
            return None
        return len(partitions) or None

    def _expect(self, now: int) -> None:
        """Create instances for expected devices this replica owns and that have none yet."""
        if not self.engine.expected or not self.ready:
            return
        if self._partitions is None:
            self._partitions = self._partition_count()
            if self._partitions is None:
                return
        count, owned = self._partitions, self._owned

        def owns(device_id: str) -> int | None:
            partition = partition_of(device_id, count)
            return partition if partition in owned else None

        created = self.engine.expect(now, owns)
        for inst in created:
            self._save(inst)  # when the wait began must survive a crash, or a restart would start it over
        if created:
            self.log.info("expecting devices", fingerprints=[inst.fingerprint for inst in created])

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._owned -= gone
        for partition in gone:
            self._behind.pop(partition, None)
        leaving = [inst for inst in self.engine.instances.values() if inst.origin in gone]
        if self.store is not None:
            for inst in leaving:
                self.store.save(inst.fingerprint, inst.to_record())
            self.store.flush(10)
        dropped = self.engine.drop(lambda inst: inst.origin not in gone)
        self.dispatcher.forget(dropped)
        self.log.info("partitions revoked", partitions=sorted(gone), handed_over=len(dropped))

    # --- one pass ------------------------------------------------------------------------------------

    def step(self) -> None:
        """Read a batch, evaluate, tick, record changes, dispatch notifications, checkpoint."""
        assert self.consumer is not None and self.producer is not None
        records = self.consumer.consume(self.options.max_batch, self.options.poll_timeout_ms / 1000)
        now = self.clock_ns()
        self._reload_rules(now)
        changes = self.evaluate(records, now)
        if now >= self._next_tick:
            self._expect(now)
            changes.extend(self.engine.tick(now, nodata=self._caught_up()))
            self.engine.expire_silences(now)
            self._next_tick = now + int(self.options.tick_interval_s * NS)
            self._count_instances()
        if changes:
            self._record(changes)
        self._dispatch(now)
        self._drain_results(now)
        if self._retiring:
            self._retire_idle_workers()
        if now >= self._next_checkpoint:
            self._checkpoint(now)
            self._next_checkpoint = now + int(self.options.checkpoint_interval_s * NS)
        # Offsets move only past records whose state changes are durable.
        if self._unflushed and self.store is not None and self.store.flush(2):
            self._unflushed = False
        if records and not self._unflushed:
            self.consumer.mark_done(records)
        self.producer.poll(0)

    # --- rule reload ----------------------------------------------------------------------------------

    def _reload_rules(self, now: int) -> None:
        try:
            loaded = self.watcher.poll()
        except TelestackError as exc:
            self.metrics.reloads.labels("refused").inc()
            self.log.error("rules edit refused; still running the previous rules", error=str(exc))
            return
        if loaded is None:
            return
        try:
            self.apply_rules(loaded, now)
        except TelestackError as exc:
            self.watcher.refused(str(exc))
            self.metrics.reloads.labels("refused").inc()
            self.log.error("rules edit refused; still running the previous rules", error=str(exc))
            return
        self.metrics.reloads.labels("applied").inc()

    def apply_rules(self, loaded: LoadedRules, now: int) -> None:
        """Swap in validated rules: unchanged rules keep their instances as they are (see `replace_rules`).

        Notifiers whose configuration changed are rebuilt first, so a missing secret refuses the whole edit
        (raises `ConfigError`) before anything changed. A dropped alert that was firing is published as
        resolved on the alerts topic (its notifiers are not told: the rule that named them is gone).
        """
        ruleset = loaded.ruleset
        old = self.ruleset.notifiers
        fresh = {
            name: self._worker(name, config) for name, config in ruleset.notifiers.items() if old.get(name) != config
        }
        dropped, changed = self.engine.replace_rules(ruleset, loaded.expected)
        self.ruleset = ruleset
        for name in [*fresh, *(n for n in self.workers if n not in ruleset.notifiers)]:
            worker = self.workers.pop(name, None)
            if worker is not None:
                self._retiring.append(worker)
        for name, worker in fresh.items():
            self.workers[name] = worker.start()
        self.dispatcher.send_resolved = {name: config.send_resolved for name, config in ruleset.notifiers.items()}
        self.dispatcher.forget(dropped)
        assert self.store is not None and self.publisher is not None
        for inst in dropped:
            if inst.state is AlertState.FIRING:
                change = StateChange(
                    inst,
                    inst.state,
                    AlertState.RESOLVED,
                    now,
                    inst.value,
                    inst.setpoint,
                    inst.derived,
                    {"summary": f"{inst.fingerprint}: its rule was removed or changed by a rules edit"},
                )
                self.publisher.publish(change, inst.labels.get("severity", "warning"))
            self.store.save(inst.fingerprint, None)  # tombstone: a restart must not bring it back
        self._unflushed = self._unflushed or bool(dropped)
        self.dispatcher.watch(list(self.engine.firing))  # changed rules may notify others, or repeat differently
        self.log.info(
            "rules reloaded",
            file=str(self.options.rules),
            rules=len(ruleset.rules),
            changed=changed,
            dropped=[inst.fingerprint for inst in dropped],
            notifiers_rebuilt=sorted(fresh),
        )
        self._expect(now)

    def _retire_idle_workers(self) -> None:
        for worker in [w for w in self._retiring if w.backlog() == 0]:
            worker.stop()
            self._retiring.remove(worker)

    def _caught_up(self) -> bool:
        """True once every assigned partition's backlog (as it was at assignment) has been read."""
        if self._behind and time.monotonic() > self._behind_until:
            self.log.warning("backlog not read in time; judging no-data anyway", partitions=sorted(self._behind))
            self._behind.clear()
        return not self._behind

    def evaluate(self, records: Iterable[Record], now: int) -> list[StateChange]:
        changes: list[StateChange] = []
        observe = self.engine.observe
        count = 0
        behind = self._behind
        for record in records:
            if behind:
                end = behind.get(record.partition)
                if end is not None and record.offset >= end:
                    del behind[record.partition]
            points, bad = parse_record(record.value)
            if bad:
                self.metrics.bad_lines.inc(bad)
            for point in points:
                found = observe(point, now, record.partition)
                if found:
                    changes.extend(found)
            count += len(points)
        if count:
            self.metrics.points.inc(count)
        return changes

    def _record(self, changes: list[StateChange]) -> None:
        assert self.store is not None and self.publisher is not None
        for change in changes:
            inst = change.instance
            severity = self.engine.rules[inst.rule].severity if inst.rule in self.engine.rules else "warning"
            self.metrics.changes.labels(change.state.value).inc()
            self.publisher.publish(change, severity)
            if self.influx is not None:
                self.influx.write(annotation_point(change, severity))
            self.log.info(
                "alert state",
                fingerprint=inst.fingerprint,
                state=change.state.value,
                previous=change.previous.value,
                value=change.value,
            )
        for inst in {change.instance for change in changes}:
            self._save(inst)
        self.dispatcher.watch([change.instance for change in changes])

    def _save(self, inst: Instance) -> None:
        assert self.store is not None
        self.store.save(inst.fingerprint, inst.to_record())
        inst.dirty = False
        inst.saved_point_ns = inst.last_point_ns
        self._unflushed = True

    def _dispatch(self, now: int) -> None:
        notifications, changed = self.dispatcher.due(now)
        for notification in notifications:
            self.workers[notification.notifier].submit(notification)
        for inst in changed:
            self._save(inst)

    def _drain_results(self, now: int, wait_s: float = 0.0) -> None:
        changed: list[Instance] = []
        while True:
            try:
                result = self._results.get(timeout=wait_s) if wait_s else self._results.get_nowait()
            except queue.Empty:
                break
            wait_s = 0.0
            if not result.ok:
                self.log.warning("notification gave up", notifier=result.notifier, error=result.error)
            changed.extend(self.dispatcher.on_result(result, now))
        for inst in set(changed):
            self._save(inst)
        if changed and self.store is not None and self.store.flush(2):
            self._unflushed = False

    def _checkpoint(self, now: int, everything: bool = False) -> None:
        """Save instances whose last values changed since they were last saved."""
        for inst in self.engine.instances.values():
            if everything or inst.unsaved:
                self._save(inst)

    def _count_instances(self) -> None:
        counts = dict.fromkeys(AlertState, 0)
        for inst in self.engine.instances.values():
            counts[inst.state] += 1
        for state, count in counts.items():
            self.metrics.instances.labels(state.value).set(count)

    # --- health --------------------------------------------------------------------------------------

    def health(self) -> list[Check]:
        return [Check.of(name, probe) for name, probe in self._probes().items()]

    def _probes(self) -> dict[str, Callable[[], tuple[bool, str]]]:
        checks: dict[str, Callable[[], tuple[bool, str]]] = {}

        def kafka() -> tuple[bool, str]:
            if self.consumer is None:
                return False, "not connected yet"
            error = self.last_error or self.consumer.last_error
            detail = f"{len(self.engine.instances)} instances, {len(self.engine.firing)} firing"
            if not self.ready:
                detail = "waiting for telemetry partitions; " + detail
            elif self._behind:
                detail = f"reading the backlog of partitions {sorted(self._behind)} (no-data waits); " + detail
            return self.ready, detail + (f"; last error: {error}" if error else "")

        def notifiers() -> tuple[bool, str]:
            backlog = {name: worker.backlog() for name, worker in self.workers.items()}
            return all(b < 100 for b in backlog.values()), ", ".join(f"{n}: {b} queued" for n, b in backlog.items())

        def rules() -> tuple[bool, str]:
            # A refused edit is a degraded detail, not a failure: the service keeps evaluating the rules that
            # were valid, so restarting it (what a failing probe leads to) would fix nothing.
            watcher = self.watcher
            loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(watcher.loaded_at))
            detail = f"{len(self.ruleset.rules)} rules from {self.options.rules}, loaded {loaded}"
            if watcher.error is not None:
                refused = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(watcher.error_at or 0))
                detail = f"degraded: the edit of {refused} was refused, still running the previous rules: " + (
                    f"{watcher.error}; {detail}"
                )
            return True, detail

        checks["kafka"] = kafka
        checks["rules"] = rules
        checks["notifiers"] = notifiers
        if self.influx is not None:
            checks["influx"] = self.influx.healthy
        return checks

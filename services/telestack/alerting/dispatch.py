"""Who gets told what, and when: grouping, repeat interval, resolved messages, muting and deduplication.

Pure code over the engine's instances, with the clock passed in. For each instance and each of its rule's
notifiers the dispatcher compares what the instance *is* (firing, or not) with what that notifier last
*delivered* (`Instance.notified`, persisted with the instance). A notification is due when they differ
(a new firing, or a resolution of something announced as firing) or when a firing alert was last
announced `repeat_interval` ago. Because the comparison is against delivered state, a restart neither
repeats what was delivered nor forgets a resolution; a silenced or inhibited alert simply waits.

Alerts due for the same notifier and the same group (values of the rule's ``group_by`` labels) within
``group_wait`` travel in one notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telestack.alerting.alert import AlertState, Instance, NotifyMark
from telestack.alerting.engine import AlertEngine, CompiledRule
from telestack.alerting.notifiers.base import AlertMessage, Notification
from telestack.alerting.notifiers.worker import SendResult
from telestack.alerting.templates import render

__all__ = ["Dispatcher"]

NS = 1_000_000_000
_FIRING, _RESOLVED = AlertState.FIRING, AlertState.RESOLVED


@dataclass(slots=True)
class _Batch:
    notifier: str
    group_key: str
    group_labels: dict[str, str]
    due_ns: int
    instances: dict[str, Instance] = field(default_factory=dict)


class Dispatcher:
    """Turns instance states into due `Notification`s and records what was delivered."""

    def __init__(
        self,
        engine: AlertEngine,
        *,
        send_resolved: dict[str, bool] | None = None,
        retry_after_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.send_resolved = dict(send_resolved or {})
        self.retry_after_ns = int(retry_after_s * NS)
        self._watch: set[Instance] = set()
        self._queued: set[tuple[str, str]] = set()  # (notifier, fingerprint) batched or being delivered
        self._retry_at: dict[tuple[str, str], int] = {}
        self._batches: dict[tuple[str, str], _Batch] = {}

    def watch(self, instances: list[Instance] | set[Instance]) -> None:
        """Look at these instances on the next `due` (their state changed, or they were restored)."""
        self._watch.update(instances)

    def _need(self, inst: Instance, rule: CompiledRule, notifier: str, now_ns: int) -> tuple[AlertState, bool] | None:
        """(state to announce, is a repeat) if `notifier` must be told about `inst` now."""
        mark = inst.notified.get(notifier)
        if inst.state is _FIRING:
            if mark is None or mark.state is not _FIRING:
                return _FIRING, False
            if now_ns - mark.at_ns >= rule.repeat_ns:
                return _FIRING, True
            return None
        if mark is not None and mark.state is _FIRING:
            return _RESOLVED, False
        return None

    def due(self, now_ns: int) -> tuple[list[Notification], list[Instance]]:
        """Notifications to send now, and instances whose delivered state changed without sending
        (resolved alerts of notifiers with ``send_resolved: false``): persist those."""
        changed: list[Instance] = []
        settled: list[Instance] = []
        for inst in self._watch:
            rule = self.engine.rules.get(inst.rule)
            if rule is None:
                settled.append(inst)
                continue
            waiting = inst.state is _FIRING  # firing alerts stay watched for repeats and silence ends
            muted: str | None = None
            muted_known = False
            for notifier in rule.notify:
                key = (notifier, inst.fingerprint)
                if key in self._queued or self._retry_at.get(key, 0) > now_ns:
                    waiting = True
                    continue
                need = self._need(inst, rule, notifier, now_ns)
                if need is None:
                    continue
                if need[0] is _RESOLVED and not self.send_resolved.get(notifier, True):
                    inst.notified[notifier] = NotifyMark(_RESOLVED, now_ns)
                    inst.dirty = True
                    changed.append(inst)
                    continue
                if not muted_known:
                    muted, muted_known = self.engine.muted(inst, now_ns), True
                if muted is not None:
                    waiting = True
                    continue
                self._enqueue(inst, rule, notifier, now_ns)
                waiting = True
            if not waiting:
                settled.append(inst)
        self._watch.difference_update(settled)
        return self._flush(now_ns), changed

    def _enqueue(self, inst: Instance, rule: CompiledRule, notifier: str, now_ns: int) -> None:
        group_labels = {name: inst.labels.get(name, "") for name in rule.group_by}
        group_key = ",".join(f"{k}={v}" for k, v in group_labels.items())
        batch = self._batches.get((notifier, group_key))
        if batch is None:
            batch = _Batch(notifier, group_key, group_labels, now_ns + rule.group_wait_ns)
            self._batches[(notifier, group_key)] = batch
        batch.instances[inst.fingerprint] = inst
        self._queued.add((notifier, inst.fingerprint))

    def _flush(self, now_ns: int) -> list[Notification]:
        ready: list[Notification] = []
        for key, batch in list(self._batches.items()):
            if batch.due_ns > now_ns:
                continue
            del self._batches[key]
            messages = []
            for inst in batch.instances.values():
                rule = self.engine.rules.get(inst.rule)
                need = self._need(inst, rule, batch.notifier, now_ns) if rule else None
                if need is None:  # changed back while waiting in the group: nothing to say
                    self._queued.discard((batch.notifier, inst.fingerprint))
                    self._watch.add(inst)
                    continue
                messages.append(self.message(inst, need[0], repeat=need[1], now_ns=now_ns))
            if messages:
                ready.append(Notification(batch.notifier, batch.group_key, batch.group_labels, tuple(messages), now_ns))
        return ready

    def message(self, inst: Instance, state: AlertState, *, repeat: bool, now_ns: int) -> AlertMessage:
        """How `inst` is announced in `state`: its rule's summary (``summary_resolved`` once resolved)."""
        engine = self.engine
        rule = engine.rules[inst.rule]
        at_ns = inst.resolved_at_ns if state is _RESOLVED and inst.resolved_at_ns else now_ns
        values = engine.template_values(inst, at_ns, state)
        annotations = {key: render(template, values) for key, template in rule.annotations.items()}
        text = annotations.get("summary", inst.fingerprint)
        if state is _RESOLVED and "summary_resolved" in annotations:
            text = annotations["summary_resolved"]
        return AlertMessage(
            fingerprint=inst.fingerprint,
            rule=inst.rule,
            state=state.value,
            severity=rule.severity,
            labels=dict(inst.labels),
            annotations=annotations,
            text=text,
            value=inst.value,
            setpoint=inst.setpoint,
            active_since_ns=inst.active_since_ns,
            fired_at_ns=inst.fired_at_ns,
            resolved_at_ns=inst.resolved_at_ns if state is _RESOLVED else None,
            repeat=repeat,
        )

    def on_result(self, result: SendResult, now_ns: int) -> list[Instance]:
        """Record a delivery outcome; returns the instances whose delivered state changed (persist them)."""
        changed = []
        for alert in result.notification.alerts:
            key = (result.notifier, alert.fingerprint)
            self._queued.discard(key)
            inst = self.engine.instances.get(alert.fingerprint)
            if inst is None:
                continue
            if result.ok:
                inst.notified[result.notifier] = NotifyMark(AlertState(alert.state), result.done_ns)
                inst.dirty = True
                self._retry_at.pop(key, None)
                changed.append(inst)
            else:
                self._retry_at[key] = now_ns + self.retry_after_ns
            self._watch.add(inst)
        return changed

    def forget(self, instances: list[Instance]) -> None:
        """Stop tracking instances the engine dropped (partition moved away)."""
        gone = {inst.fingerprint for inst in instances}
        self._watch.difference_update(instances)
        self._queued = {key for key in self._queued if key[1] not in gone}
        for batch in self._batches.values():
            for fingerprint in gone:
                batch.instances.pop(fingerprint, None)

    @property
    def busy(self) -> bool:
        """True while something is batched or being delivered."""
        return bool(self._queued)

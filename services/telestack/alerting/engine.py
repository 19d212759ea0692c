"""The rule engine: points in, state changes out, as pure code with the clock passed in.

`AlertEngine.observe(point, now_ns)` evaluates every rule that selects the point's series and returns the
state changes it caused; `AlertEngine.tick(now_ns)` handles what time alone changes (a pending alert
whose `for` has elapsed, a series that went silent). No sockets, no sleeping: tests and the backtest drive
the clock, the service passes the wall clock.

Time: a point is evaluated at its own timestamp (clamped to `now_ns`, so a device clock ahead of ours cannot
push alerts into the future); `for` and staleness compare against `now_ns` on ticks. After a restart, points
not newer than what an instance had already seen (``replay_guard_ns``) are replays and are skipped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telestack.alerting.alert import AlertState, Instance, StateChange, fingerprint_of
from telestack.alerting.conditions import Comparison, RateTracker, WindowAggregate, comparison_for
from telestack.alerting.rules import (
    DeviationCondition,
    NoDataCondition,
    RateCondition,
    Rule,
    RuleSet,
    SetpointSeries,
    Silence,
    WindowCondition,
    compile_matchers,
)
from telestack.alerting.templates import format_duration, render
from telestack.core.lineproto import Point

__all__ = ["DEFAULT_SUMMARY", "AlertEngine", "CompiledRule"]

NS = 1_000_000_000
DEFAULT_SUMMARY = "{rule} {state}: {measurement} {series} = {value} (threshold {threshold})"
DEFAULT_NODATA_SUMMARY = "{rule} {state}: no data from {measurement} {series} for {duration} (last seen: {last_seen})"

_NORMAL, _PENDING, _FIRING, _RESOLVED = (
    AlertState.NORMAL,
    AlertState.PENDING,
    AlertState.FIRING,
    AlertState.RESOLVED,
)
_NO_CHANGES: list[StateChange] = []
_KIND_THRESHOLD, _KIND_DEVIATION, _KIND_TRACKED, _KIND_NODATA = 0, 1, 2, 3
_KIND_CODES = {"threshold": 0, "deviation": 1, "rate": 2, "window": 2, "nodata": 3}


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule with its defaults resolved and its matchers and comparison compiled."""

    rule: Rule
    name: str
    kind: str
    kind_code: int
    severity: str
    measurement: str
    field: str | None
    matches: Callable[[Mapping[str, str]], bool]
    for_ns: int
    comparison: Comparison | None
    nodata_after_ns: int
    setpoint_const: float | None
    setpoint_field: str | None
    setpoint_series: SetpointSeries | None
    setpoint_matches: Callable[[Mapping[str, str]], bool] | None
    labels: dict[str, str]
    annotations: dict[str, str]
    notify: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait_ns: int
    repeat_ns: int
    new_tracker: Callable[[], Any] | None
    active: Callable[[float], bool]  # comparison.active, looked up once (hot path)
    per_device: bool = False  # a no-data rule with `expect`: one instance per device, not per series
    device_matches: Callable[[Mapping[str, str]], bool] = lambda tags: True

    def instance_tags(self, tags: dict[str, str]) -> dict[str, str]:
        """The tags naming this rule's instance for a series: the series' own, or only its device."""
        if self.per_device and "device" in tags:
            return {"device": tags["device"]}
        return tags

    def covers(self, tags: dict[str, str]) -> bool:
        """True when an instance with these tags belongs to this rule (restore and rule reload)."""
        if self.per_device and list(tags) == ["device"]:
            return self.device_matches(tags)
        return self.matches(tags) and self.instance_tags(tags) == tags

    @property
    def definition(self) -> tuple[Any, ...]:
        """Everything of the rule that its instances depend on: equal definitions keep their state on reload."""
        return (self.rule, self.severity, self.notify, self.group_by, self.group_wait_ns, self.repeat_ns)

    @classmethod
    def build(cls, rule: Rule, ruleset: RuleSet) -> CompiledRule:
        cond = rule.condition
        comparison = None if isinstance(cond, NoDataCondition) else comparison_for(cond)
        new_tracker: Callable[[], Any] | None = None
        if isinstance(cond, RateCondition):
            per, window = cond.per, cond.window
            new_tracker = lambda: RateTracker(per, window)  # noqa: E731
        elif isinstance(cond, WindowCondition):
            aggregate, span = cond.aggregate, cond.window
            new_tracker = lambda: WindowAggregate(aggregate, span)  # noqa: E731
        setpoint_const = setpoint_field = None
        setpoint_series = None
        setpoint_matches = None
        if isinstance(cond, DeviationCondition):
            if isinstance(cond.setpoint, SetpointSeries):
                if cond.setpoint.measurement is None:
                    setpoint_field = cond.setpoint.field
                else:
                    setpoint_series = cond.setpoint
                    setpoint_matches = compile_matchers(cond.setpoint.tags)
            else:
                setpoint_const = float(cond.setpoint)
        annotations = dict(rule.annotations)
        if "summary" not in annotations:
            annotations["summary"] = DEFAULT_NODATA_SUMMARY if isinstance(cond, NoDataCondition) else DEFAULT_SUMMARY
        return cls(
            rule=rule,
            name=rule.name,
            kind=cond.type,
            kind_code=_KIND_CODES[cond.type],
            severity=ruleset.severity(rule),
            measurement=rule.select.measurement,
            field=rule.select.field,
            matches=compile_matchers(rule.select.tags),
            for_ns=int(rule.for_ * NS),
            comparison=comparison,
            nodata_after_ns=int(cond.after * NS) if isinstance(cond, NoDataCondition) else 0,
            setpoint_const=setpoint_const,
            setpoint_field=setpoint_field,
            setpoint_series=setpoint_series,
            setpoint_matches=setpoint_matches,
            labels=dict(rule.labels),
            annotations=annotations,
            notify=tuple(ruleset.notify(rule)),
            group_by=tuple(ruleset.group_by(rule)),
            group_wait_ns=int(ruleset.group_wait(rule) * NS),
            repeat_ns=int(ruleset.repeat_interval(rule) * NS),
            new_tracker=new_tracker,
            active=comparison.active if comparison is not None else _never,
            per_device=isinstance(cond, NoDataCondition) and cond.expect is not None,
            device_matches=compile_matchers({k: v for k, v in rule.select.tags.items() if k == "device"}),
        )


@dataclass(slots=True)
class _Binding:
    """What one series feeds: (rule, instance, setpoint key) to evaluate, and setpoint caches to update."""

    instances: list[tuple[CompiledRule, Instance, tuple[str, tuple[str | None, ...]] | None]] = field(
        default_factory=list
    )
    feeds: list[tuple[CompiledRule, tuple[str, tuple[str | None, ...]]]] = field(default_factory=list)
    origin: int | None = None


@dataclass(frozen=True, slots=True)
class _CompiledSilence:
    silence: Silence
    start_ns: float
    end_ns: float
    matches: Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True, slots=True)
class _CompiledInhibit:
    source: Callable[[Mapping[str, str]], bool]
    target: Callable[[Mapping[str, str]], bool]
    equal: tuple[str, ...]


def _never(value: float) -> bool:
    return False


def _append(changes: list[StateChange] | None, change: StateChange) -> list[StateChange]:
    if changes is None:
        return [change]
    changes.append(change)
    return changes


def _number(raw: Any) -> float | None:
    """A field value as a float, or None for strings (bools count as 0/1)."""
    if isinstance(raw, str) or raw is None:
        return None
    return float(raw)


def _local_time(t_ns: int | None) -> str:
    if t_ns is None:
        return "?"
    return _local_minute(t_ns // (60 * NS))


@functools.lru_cache(maxsize=1024)
def _local_minute(minute: int) -> str:
    """The local time of a minute since the epoch, to the minute: one conversion per minute, not per transition
    (it was 7% of evaluation with frequent state changes)."""
    return datetime.fromtimestamp(minute * 60).astimezone().strftime("%Y-%m-%d %H:%M")


class AlertEngine:
    """Evaluates a `RuleSet` on points and clock ticks; see the module docstring."""

    def __init__(self, ruleset: RuleSet, expected: Mapping[str, Iterable[str]] | None = None) -> None:
        self.instances: dict[str, Instance] = {}
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], _Binding] = {}
        self._setpoints: dict[tuple[str, tuple[str | None, ...]], float] = {}
        self._dependents: dict[tuple[str, tuple[str | None, ...]], dict[str, tuple[CompiledRule, Instance]]] = {}
        self._pending: set[Instance] = set()
        self._firing: set[Instance] = set()
        self._nodata: dict[str, tuple[CompiledRule, Instance]] = {}
        self._use(ruleset, expected)

    def _use(self, ruleset: RuleSet, expected: Mapping[str, Iterable[str]] | None) -> None:
        """Compile `ruleset` and index it (instances are the caller's business)."""
        self.ruleset = ruleset
        self.rules: dict[str, CompiledRule] = {r.name: CompiledRule.build(r, ruleset) for r in ruleset.rules}
        self.expected: dict[str, tuple[str, ...]] = {
            name: tuple(ids) for name, ids in (expected or {}).items() if name in self.rules
        }
        self._by_measurement: dict[str, list[CompiledRule]] = {}
        self._feeds_by_measurement: dict[str, list[CompiledRule]] = {}
        for rule in self.rules.values():
            self._by_measurement.setdefault(rule.measurement, []).append(rule)
            if rule.setpoint_series is not None and rule.setpoint_series.measurement is not None:
                self._feeds_by_measurement.setdefault(rule.setpoint_series.measurement, []).append(rule)
        self._measurements = frozenset(self._by_measurement) | frozenset(self._feeds_by_measurement)
        self._silences: list[_CompiledSilence] = []
        for silence in ruleset.file.silences:
            self.add_silence(silence)
        self._inhibits = [
            _CompiledInhibit(compile_matchers(i.source), compile_matchers(i.target), tuple(i.equal))
            for i in ruleset.file.inhibit
        ]

    # --- instances ---------------------------------------------------------------------------------

    def _new_instance(self, rule: CompiledRule, measurement: str, tags: dict[str, str]) -> Instance:
        fingerprint = fingerprint_of(rule.name, measurement, tags)
        existing = self.instances.get(fingerprint)
        if existing is not None:
            return existing
        labels = {**tags, **rule.labels, "rule": rule.name, "severity": rule.severity}
        inst = Instance(rule.name, fingerprint, measurement, dict(tags), labels)
        if rule.new_tracker is not None:
            inst.tracker = rule.new_tracker()
        self.instances[fingerprint] = inst
        if rule.kind == "nodata":
            self._nodata[fingerprint] = (rule, inst)
        return inst

    def _setpoint_key(self, rule: CompiledRule, tags: Mapping[str, str]) -> tuple[str, tuple[str | None, ...]]:
        assert rule.setpoint_series is not None
        return rule.name, tuple(tags.get(name) for name in rule.setpoint_series.match)

    def _bind(self, measurement: str, tags: dict[str, str], key: Any) -> _Binding:
        binding = _Binding()
        for rule in self._by_measurement.get(measurement, ()):
            if not rule.matches(tags):
                continue
            inst = self._new_instance(rule, measurement, rule.instance_tags(tags))
            sp_key = None
            if rule.setpoint_series is not None:
                sp_key = self._setpoint_key(rule, tags)
                self._dependents.setdefault(sp_key, {})[inst.fingerprint] = (rule, inst)
            binding.instances.append((rule, inst, sp_key))
        for rule in self._feeds_by_measurement.get(measurement, ()):
            assert rule.setpoint_matches is not None
            if rule.setpoint_matches(tags):
                binding.feeds.append((rule, self._setpoint_key(rule, tags)))
        self._series[key] = binding
        return binding

    # --- evaluation --------------------------------------------------------------------------------

    def observe(self, point: Point, now_ns: int, origin: int | None = None) -> list[StateChange]:
        """Evaluate `point` against every rule selecting its series; the state changes it caused."""
        measurement = point.measurement
        if measurement not in self._measurements:
            return _NO_CHANGES
        tags = point.tags
        key = (measurement, tuple(sorted(tags.items())))
        binding = self._series.get(key)
        if binding is None:
            binding = self._bind(measurement, tags, key)
        t = point.time_ns
        if t is None or t > now_ns:
            t = now_ns
        fields = point.fields
        changes: list[StateChange] | None = None
        for rule, sp_key in binding.feeds:
            setpoint = _number(fields.get(rule.setpoint_series.field))  # type: ignore[union-attr]
            if setpoint is None:
                continue
            self._setpoints[sp_key] = setpoint
            for dep_rule, dep in self._dependents.get(sp_key, {}).values():
                if dep.value is not None and t > dep.replay_guard_ns:
                    dep.setpoint = setpoint
                    change = self._evaluate(dep_rule, dep, dep.value - setpoint, t)
                    if change is not None:
                        changes = _append(changes, change)
        if origin is not None and binding.origin != origin:
            binding.origin = origin
            for _rule, inst, _key in binding.instances:
                inst.origin = origin
        # The hot path: keep it flat (this runs for every point and every rule selecting its series).
        for rule, inst, inst_sp_key in binding.instances:
            if t <= inst.replay_guard_ns:
                continue
            kind = rule.kind_code
            if kind == _KIND_NODATA:
                if rule.field is None or rule.field in fields:
                    if inst.last_seen_ns is None or t > inst.last_seen_ns:
                        inst.last_seen_ns = t
                    inst.last_point_ns = t
                    if inst.active:
                        inst.active = False
                        changes = _append(changes, self._transition(rule, inst, _RESOLVED, t))
                continue
            raw = fields.get(rule.field)  # type: ignore[arg-type]
            setpoint_changed = False
            if rule.setpoint_field is not None:
                setpoint = _number(fields.get(rule.setpoint_field))
                if setpoint is not None and setpoint != inst.setpoint:
                    inst.setpoint = setpoint
                    setpoint_changed = True
            if raw is None or raw.__class__ is str:
                if not setpoint_changed or inst.value is None:
                    continue
                value = inst.value  # the setpoint moved: re-evaluate the last value against it
            else:
                value = float(raw)
                inst.value = value
                inst.last_seen_ns = t
            inst.last_point_ns = t
            derived: float | None
            if kind == _KIND_THRESHOLD:
                derived = value
            elif kind == _KIND_DEVIATION:
                if rule.setpoint_const is not None:
                    inst.setpoint = rule.setpoint_const
                elif inst_sp_key is not None:
                    inst.setpoint = self._setpoints.get(inst_sp_key)
                if inst.setpoint is None:
                    continue
                derived = value - inst.setpoint
            else:
                derived = inst.tracker.add(t, value)
                if derived is None:
                    continue
            inst.derived = derived
            state = inst.state
            if (state is _NORMAL or state is _RESOLVED) and not rule.active(derived):
                continue  # the common case: nothing to do
            change = self._evaluate(rule, inst, derived, t)
            if change is not None:
                changes = _append(changes, change)
        return changes if changes is not None else _NO_CHANGES

    def _evaluate(self, rule: CompiledRule, inst: Instance, derived: float, t: int) -> StateChange | None:
        comparison = rule.comparison
        assert comparison is not None
        state = inst.state
        if state is _FIRING:
            if comparison.cleared(derived):
                inst.active = False
                return self._transition(rule, inst, _RESOLVED, t)
            return None
        if not comparison.active(derived):
            if state is _PENDING:
                inst.active = False
                return self._transition(rule, inst, _NORMAL, t)
            inst.active = False
            return None
        if state is _PENDING:
            if t - (inst.active_since_ns or t) >= rule.for_ns:
                return self._transition(rule, inst, _FIRING, t)
            return None
        inst.active = True
        inst.active_since_ns = t
        return self._transition(rule, inst, _FIRING if rule.for_ns <= 0 else _PENDING, t)

    def tick(self, now_ns: int, nodata: bool = True) -> list[StateChange]:
        """Time-driven changes: pending alerts whose `for` elapsed, silent series (no data).

        `nodata=False` skips the silent series: while the caller is still reading a backlog (after a restart),
        a series looks silent only because its newer points are not read yet.
        """
        changes: list[StateChange] = []
        for inst in list(self._pending):
            rule = self.rules[inst.rule]
            if inst.active and now_ns - (inst.active_since_ns or now_ns) >= rule.for_ns:
                changes.append(self._transition(rule, inst, _FIRING, now_ns))
        if not nodata:
            return changes
        for rule, inst in self._nodata.values():
            # Silent since the last point, or, for an expected device never seen, since it was first expected.
            last = inst.last_seen_ns if inst.last_seen_ns is not None else inst.expected_since_ns
            if last is None or inst.active or now_ns - last <= rule.nodata_after_ns:
                continue
            inst.active = True
            inst.active_since_ns = last
            changes.append(self._transition(rule, inst, _FIRING, now_ns))
        return changes

    def expect(self, now_ns: int, owns: Callable[[str], int | None] | None = None) -> list[Instance]:
        """Create the instances of expected devices that have none yet, counting their silence from `now_ns`.

        `owns(device_id)` gives the telemetry partition of a device this replica owns, or None for one it does
        not (another replica expects it); without it every device is owned. Returns the new instances.
        """
        created: list[Instance] = []
        for name, device_ids in self.expected.items():
            rule = self.rules[name]
            for device_id in device_ids:
                tags = {"device": device_id}
                if fingerprint_of(name, rule.measurement, tags) in self.instances:
                    continue
                origin = owns(device_id) if owns is not None else None
                if owns is not None and origin is None:
                    continue
                inst = self._new_instance(rule, rule.measurement, tags)
                inst.expected_since_ns = now_ns
                inst.origin = origin
                created.append(inst)
        return created

    def _transition(self, rule: CompiledRule, inst: Instance, state: AlertState, t: int) -> StateChange:
        previous = inst.state
        inst.state = state
        inst.changed_at_ns = t
        inst.dirty = True
        if state is _PENDING:
            self._pending.add(inst)
        else:
            self._pending.discard(inst)
        if state is _FIRING:
            inst.fired_at_ns = t
            self._firing.add(inst)
        else:
            self._firing.discard(inst)
        if state is _RESOLVED:
            inst.resolved_at_ns = t
        elif state is _NORMAL:
            inst.active_since_ns = None
        return StateChange(
            inst, previous, state, t, inst.value, inst.setpoint, inst.derived, self.annotate(inst, t, state)
        )

    # --- presentation ------------------------------------------------------------------------------

    def template_values(self, inst: Instance, at_ns: int, state: AlertState | None = None) -> dict[str, Any]:
        """What annotation and notification templates can use for `inst` at `at_ns`."""
        rule = self.rules.get(inst.rule)
        since = inst.active_since_ns
        ended = since is None or (state or inst.state) is _NORMAL
        duration = None if ended else max(0, at_ns - (since or 0)) / NS
        deviation = None
        if inst.value is not None and inst.setpoint is not None:
            deviation = inst.value - inst.setpoint
        values: dict[str, Any] = dict(inst.labels)
        values.update(
            rule=inst.rule,
            severity=rule.severity if rule else inst.labels.get("severity"),
            state=(state or inst.state).value,
            value=inst.value,
            setpoint=inst.setpoint,
            deviation=deviation,
            derived=inst.derived,
            threshold=rule.comparison.threshold if rule and rule.comparison else None,
            duration=format_duration(duration) if duration is not None else "0 s",
            since=_local_time(since),
            measurement=inst.measurement,
            field=rule.field if rule else None,
            series=",".join(f"{k}={v}" for k, v in sorted(inst.tags.items())),
            last_seen="never" if inst.last_seen_ns is None else _local_time(inst.last_seen_ns),
        )
        return values

    def annotate(self, inst: Instance, at_ns: int, state: AlertState | None = None) -> dict[str, str]:
        rule = self.rules.get(inst.rule)
        if rule is None:
            return {}
        values = self.template_values(inst, at_ns, state)
        return {key: render(template, values) for key, template in rule.annotations.items()}

    # --- silences and inhibition -------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        start, end = silence.active_between()
        self._silences.append(_CompiledSilence(silence, start * NS, end * NS, compile_matchers(silence.matchers)))

    def expire_silences(self, now_ns: int) -> None:
        self._silences = [s for s in self._silences if s.end_ns > now_ns]

    def silenced_by(self, inst: Instance, now_ns: int) -> Silence | None:
        for silence in self._silences:
            if silence.start_ns <= now_ns < silence.end_ns and silence.matches(inst.labels):
                return silence.silence
        return None

    def inhibited_by(self, inst: Instance) -> Instance | None:
        """A firing alert that mutes `inst` through an inhibit rule, if any."""
        for rule in self._inhibits:
            if not rule.target(inst.labels):
                continue
            for source in self._firing:
                if source is inst or not rule.source(source.labels):
                    continue
                if all(source.labels.get(name) == inst.labels.get(name) for name in rule.equal):
                    return source
        return None

    def muted(self, inst: Instance, now_ns: int) -> str | None:
        """Why notifications of `inst` are muted now (a silence or an inhibiting alert), or None."""
        silence = self.silenced_by(inst, now_ns)
        if silence is not None:
            return f"silenced ({silence.comment or 'no comment'})"
        source = self.inhibited_by(inst)
        if source is not None:
            return f"inhibited by {source.fingerprint}"
        return None

    # --- rule reload -------------------------------------------------------------------------------

    def replace_rules(
        self, ruleset: RuleSet, expected: Mapping[str, Iterable[str]] | None = None
    ) -> tuple[list[Instance], list[str]]:
        """Swap in a new rule set between two passes; returns (instances dropped, names of changed rules).

        An instance of a rule whose definition is unchanged carries over untouched (state, window and rate
        trackers, what each notifier was told). One of a changed rule keeps its state and delivered marks
        (a firing alert stays firing until the new condition clears it) with fresh labels and trackers.
        Dropped: instances of removed rules, of rules whose kind changed, of series the new selector no longer
        covers, and never-seen devices no longer expected. New expected devices need `expect` afterwards.
        """
        old_rules = self.rules
        self._use(ruleset, expected)
        unchanged = {
            name
            for name, rule in self.rules.items()
            if name in old_rules and old_rules[name].definition == rule.definition
        }
        changed = sorted(name for name in self.rules if name in old_rules and name not in unchanged)
        self._series.clear()
        self._dependents.clear()
        self._nodata.clear()
        self._setpoints = {key: value for key, value in self._setpoints.items() if key[0] in unchanged}
        dropped: list[Instance] = []
        for inst in list(self.instances.values()):
            rule = self.rules.get(inst.rule)
            old = old_rules.get(inst.rule)
            if (
                rule is None
                or old is None
                or rule.kind != old.kind
                or rule.measurement != inst.measurement
                or not rule.covers(inst.tags)
                or (
                    inst.last_seen_ns is None
                    and inst.expected_since_ns is not None
                    and inst.tags.get("device") not in self.expected.get(rule.name, ())
                )
            ):
                dropped.append(inst)
                continue
            if rule.name not in unchanged:
                inst.labels = {**inst.tags, **rule.labels, "rule": rule.name, "severity": rule.severity}
                inst.tracker = rule.new_tracker() if rule.new_tracker is not None else None
            if rule.kind == "nodata":
                self._nodata[inst.fingerprint] = (rule, inst)
            if rule.setpoint_series is not None:
                self._dependents.setdefault(self._setpoint_key(rule, inst.tags), {})[inst.fingerprint] = (rule, inst)
        for inst in dropped:
            del self.instances[inst.fingerprint]
            self._pending.discard(inst)
            self._firing.discard(inst)
        return dropped, changed

    # --- durability --------------------------------------------------------------------------------

    def restore(self, records: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
        """Re-create instances from persisted records; returns (restored, dropped: rule gone or changed)."""
        restored = dropped = 0
        self._series.clear()
        for record in records:
            rule = self.rules.get(str(record.get("rule")))
            tags = dict(record.get("tags") or {})
            if rule is None or record.get("measurement") != rule.measurement or not rule.covers(tags):
                dropped += 1
                continue
            inst = self._new_instance(rule, rule.measurement, tags)
            inst.restore(dict(record))
            if inst.state is _PENDING:
                self._pending.add(inst)
            elif inst.state is _FIRING:
                self._firing.add(inst)
            if rule.setpoint_series is not None:
                self._dependents.setdefault(self._setpoint_key(rule, tags), {})[inst.fingerprint] = (rule, inst)
            restored += 1
        return restored, dropped

    def drop(self, keep: Callable[[Instance], bool]) -> list[Instance]:
        """Forget the instances `keep` refuses (their partition moved to another replica); returns them."""
        gone = [inst for inst in self.instances.values() if not keep(inst)]
        for inst in gone:
            del self.instances[inst.fingerprint]
            self._pending.discard(inst)
            self._firing.discard(inst)
            self._nodata.pop(inst.fingerprint, None)
            for dependents in self._dependents.values():
                dependents.pop(inst.fingerprint, None)
        if gone:
            self._series.clear()
        return gone

    @property
    def firing(self) -> set[Instance]:
        return self._firing


def wall_clock_ns() -> int:
    """The service's clock; tests pass their own `now_ns` instead."""
    return time.time_ns()

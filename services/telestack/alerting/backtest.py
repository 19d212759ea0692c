"""Backtest: run a rule set over stored history and list what would have fired, and when.

`replay` is pure (points in time order → state changes, ticking the engine's clock between points);
`query_history` reads the points from InfluxDB 2 with one Flux query per run (core's client and CSV reader,
nanosecond times).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from telestack.alerting.alert import AlertState, StateChange
from telestack.alerting.engine import AlertEngine
from telestack.alerting.rules import RuleSet
from telestack.alerting.templates import format_duration
from telestack.core.annotated_csv import format_rfc3339_ns, iter_rows
from telestack.core.influx_http import InfluxHttp
from telestack.core.lineproto import FieldValue, Point
from telestack.core.settings import InfluxSettings

__all__ = ["BacktestReport", "format_report", "query_history", "replay"]

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BacktestReport:
    changes: list[StateChange]
    points: int
    start_ns: int
    stop_ns: int
    severities: dict[str, str]


def replay(
    ruleset: RuleSet, points: Iterable[Point], start_ns: int, stop_ns: int, tick_s: float = 10.0
) -> BacktestReport:
    """Evaluate `points` (time-ordered) as the service would have, with the clock at each point's time."""
    engine = AlertEngine(ruleset)
    tick_ns = max(1, int(tick_s * NS))
    next_tick = start_ns + tick_ns
    changes: list[StateChange] = []
    count = 0
    for point in points:
        t = point.time_ns if point.time_ns is not None else next_tick
        while next_tick <= t:
            changes.extend(engine.tick(next_tick))
            next_tick += tick_ns
        changes.extend(engine.observe(point, t))
        count += 1
    while next_tick <= stop_ns:
        changes.extend(engine.tick(next_tick))
        next_tick += tick_ns
    return BacktestReport(changes, count, start_ns, stop_ns, {name: r.severity for name, r in engine.rules.items()})


def _flux_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flux_query(ruleset: RuleSet, bucket: str, start_ns: int, stop_ns: int) -> str:
    """One Flux query for every measurement (and field) the rules read, sorted by time."""
    wanted: dict[str, set[str] | None] = {}
    for rule in ruleset.rules:
        fields: set[str] | None = {rule.select.field} if rule.select.field else None
        condition = rule.condition
        setpoint = getattr(condition, "setpoint", None)
        if setpoint is not None and not isinstance(setpoint, float | int):
            if setpoint.measurement is None:
                fields = (fields or set()) | {setpoint.field}
            else:
                known = wanted.get(setpoint.measurement, set())
                wanted[setpoint.measurement] = None if known is None else known | {setpoint.field}
        known = wanted.get(rule.select.measurement, set())
        wanted[rule.select.measurement] = None if known is None or fields is None else known | fields
    clauses = []
    for measurement, fields in sorted(wanted.items()):
        clause = f"r._measurement == {_flux_string(measurement)}"
        if fields:
            clause += " and (" + " or ".join(f"r._field == {_flux_string(f)}" for f in sorted(fields)) + ")"
        clauses.append(f"({clause})")
    return (
        f"from(bucket: {_flux_string(bucket)})\n"
        f"  |> range(start: {format_rfc3339_ns(start_ns)}, stop: {format_rfc3339_ns(stop_ns)})\n"
        f"  |> filter(fn: (r) => {' or '.join(clauses) or 'false'})\n"
        "  |> group()\n"
        '  |> sort(columns: ["_time"])\n'
    )


def query_history(
    settings: InfluxSettings, ruleset: RuleSet, start_ns: int, stop_ns: int, bucket: str | None = None
) -> Iterator[Point]:
    """The points the rules read between `start_ns` and `stop_ns`, one `Point` per series and timestamp."""
    query = flux_query(ruleset, bucket or settings.bucket, start_ns, stop_ns)
    client = InfluxHttp(settings)
    try:
        with client.query_csv(query) as reader:
            pending: dict[tuple[int, str, tuple[tuple[str, str], ...]], Point] = {}
            current_t: int | None = None
            for table, row in iter_rows(reader):  # typed cells; `_time` in nanoseconds
                values = dict(zip(table.columns, row, strict=True))
                t: int = values["_time"]
                if current_t is not None and t != current_t:
                    yield from pending.values()
                    pending.clear()
                current_t = t
                tags = {k: str(v) for k, v in values.items() if not k.startswith("_") and v is not None}
                key = (t, str(values["_measurement"]), tuple(sorted(tags.items())))
                point = pending.get(key)
                if point is None:
                    point = pending[key] = Point(str(values["_measurement"]), tags, {}, t)
                value: FieldValue = values["_value"]
                point.fields[str(values["_field"])] = value
            yield from pending.values()
    finally:
        client.close()


def _local(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / NS).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_report(report: BacktestReport, *, include_pending: bool = False) -> str:
    """What would have fired and when, one line per change, then a summary per rule."""
    lines = [
        f"Backtest {_local(report.start_ns)} → {_local(report.stop_ns)}: {report.points} points evaluated.",
    ]
    episodes: dict[str, list[float]] = {}
    fired_at: dict[str, int] = {}
    for change in report.changes:
        inst = change.instance
        if change.state is AlertState.FIRING:
            fired_at[inst.fingerprint] = change.at_ns
        elif change.state is AlertState.RESOLVED and inst.fingerprint in fired_at:
            episodes.setdefault(inst.rule, []).append((change.at_ns - fired_at.pop(inst.fingerprint)) / NS)
        if change.state in (AlertState.PENDING, AlertState.NORMAL) and not include_pending:
            continue
        series = ",".join(f"{k}={v}" for k, v in sorted(inst.tags.items()))
        value = f" value={change.value:g}" if change.value is not None else ""
        setpoint = f" setpoint={change.setpoint:g}" if change.setpoint is not None else ""
        summary = change.annotations.get("summary", "")
        lines.append(
            f"{_local(change.at_ns)}  {change.state.value.upper():<8} {inst.rule}  {series}{value}{setpoint}  {summary}"
        )
    fired = {c.instance.rule for c in report.changes if c.state is AlertState.FIRING}
    if not fired:
        lines.append("Nothing would have fired.")
    for rule in sorted(fired):
        count = sum(1 for c in report.changes if c.state is AlertState.FIRING and c.instance.rule == rule)
        durations = episodes.get(rule, [])
        longest = f", longest episode {format_duration(max(durations))}" if durations else ""
        lines.append(f"  {rule} [{report.severities.get(rule, '?')}]: fired {count} time(s){longest}")
    return "\n".join(lines)

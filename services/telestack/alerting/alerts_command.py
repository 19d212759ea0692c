"""``telestack alerts check|backtest|status``: validate rules, try them on history, show live state."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from telestack.alerting.backtest import format_report, query_history, replay
from telestack.alerting.expected import load_expected
from telestack.alerting.rules import NoDataCondition, load_rules
from telestack.alerting.settings import AlertingSettings
from telestack.alerting.state_store import KafkaStateStore
from telestack.alerting.status import format_status, sort_records
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.durations import parse_duration
from telestack.core.errors import ConfigError

__all__ = ["configure", "parse_time", "run"]

NS = 1_000_000_000


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``now``; ``24h`` or ``-24h`` (that long ago); or an ISO 8601 time (naive = local) → epoch ns."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    text = text.strip()
    if text == "now":
        return now_ns
    if re.fullmatch(r"-?\d+(\.\d+)?[a-z]+(\d+(\.\d+)?[a-z]+)*", text):
        try:
            return now_ns - int(parse_duration(text.lstrip("-")) * NS)
        except ValueError as exc:
            raise ConfigError(f"bad relative time {text!r}: {exc}") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"bad time {text!r}: use now, 24h (ago), or ISO 8601 like 2025-01-31T08:00") from None
    return int(when.astimezone().timestamp() * NS)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="action")
    check = sub.add_parser("check", help="validate a rules file (exit 1 with file:line of each problem)")
    check.add_argument("rules", type=Path, help="rules file, e.g. config/alerts.yaml")
    check.add_argument(
        "--devices",
        type=Path,
        default=Path("config/devices.yaml"),
        help="device registry of `expect: registry` rules (default: config/devices.yaml, as alerting.devices_file)",
    )
    backtest = sub.add_parser("backtest", help="evaluate rules on InfluxDB history: what would have fired, when")
    backtest.add_argument("rules", type=Path, help="rules file")
    backtest.add_argument("--from", dest="start", required=True, help="start: ISO time, or 24h (that long ago)")
    backtest.add_argument("--to", dest="stop", default="now", help="end: ISO time, 1h (ago), or now (default)")
    backtest.add_argument("--tick", default="10s", help="clock step for time-driven rules (default 10s)")
    backtest.add_argument("--bucket", default=None, help="bucket to read (default: influx.bucket)")
    backtest.add_argument("--pending", action="store_true", help="also list pending and back-to-normal changes")
    add_settings_arguments(backtest, AlertingSettings)
    status = sub.add_parser("status", help="every alert instance's state, from the state topic")
    status.add_argument("--rule", default=None, help="only this rule")
    status.add_argument("--json", action="store_true", help="JSON records instead of a table")
    add_settings_arguments(status, AlertingSettings)


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    if args.action == "backtest":
        return _backtest(args)
    return _status(args)


def _check(args: argparse.Namespace) -> int:
    ruleset = load_rules(args.rules)
    expected = load_expected(ruleset, args.devices)  # what a reload also resolves: an unreadable registry fails
    file = ruleset.file
    _out(
        f"{args.rules}: OK: {len(file.rules)} rules, {len(file.notifiers)} notifiers, "
        f"{len(file.silences)} silences, {len(file.inhibit)} inhibit rules"
    )
    for rule in file.rules:
        select = rule.select
        tags = ",".join(f"{k}~{v.equals or v.glob or v.regex}" for k, v in select.tags.items())
        target = select.measurement + (f"[{tags}]" if tags else "") + (f".{select.field}" if select.field else "")
        wait = "" if isinstance(rule.condition, NoDataCondition) or not rule.for_ else f" for {rule.for_:g}s"
        notify = ", ".join(ruleset.notify(rule)) or "nobody"
        disabled = " (disabled)" if not rule.enabled else ""
        if isinstance(rule.condition, NoDataCondition) and rule.condition.expect is not None:
            source = " (registry)" if rule.condition.expect == "registry" else ""
            wait += " expecting " + (", ".join(expected.get(rule.name, ())) or "no device") + source
        _out(
            f"  {rule.name}{disabled}: {rule.condition.type} on {target}{wait} → {ruleset.severity(rule)}, "
            f"notify {notify}"
        )
    return 0


def _backtest(args: argparse.Namespace) -> int:
    ruleset = load_rules(args.rules)
    settings = settings_from_args(AlertingSettings, args)
    now = time.time_ns()
    start, stop = parse_time(args.start, now), parse_time(args.stop, now)
    if stop <= start:
        raise ConfigError("--to must be after --from")
    try:
        tick = parse_duration(args.tick)
    except ValueError as exc:
        raise ConfigError(f"--tick: {exc}") from None
    points = query_history(settings.influx, ruleset, start, stop, args.bucket)
    report = replay(ruleset, points, start, stop, tick)
    _out(format_report(report, include_pending=args.pending))
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = settings_from_args(AlertingSettings, args)
    store = KafkaStateStore(settings.kafka, settings.kafka.topics.alerts_state)
    records = list(store.load().values())
    if args.json:
        _out(json.dumps(sort_records(records, args.rule), indent=2, ensure_ascii=False))
    else:
        _out(format_status(records, time.time_ns(), args.rule))
    return 0

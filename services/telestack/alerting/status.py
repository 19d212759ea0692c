"""``telestack alerts status``: every alert instance's state, like the brewery's daily report.

Reads the state topic (what the running service persisted: state, since when, last value and setpoint,
last time the series was seen) and prints one line per instance, problems first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from telestack.alerting.templates import format_duration

__all__ = ["format_status", "sort_records"]

NS = 1_000_000_000
_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "normal": 3}


def _local(t_ns: int | None) -> str:
    if t_ns is None:
        return "-"
    return datetime.fromtimestamp(t_ns / NS).astimezone().strftime("%Y-%m-%d %H:%M")


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def sort_records(records: Iterable[Mapping[str, Any]], rule: str | None = None) -> list[Mapping[str, Any]]:
    chosen = [r for r in records if rule is None or r.get("rule") == rule]
    return sorted(
        chosen, key=lambda r: (_ORDER.get(str(r.get("state")), 9), str(r.get("rule")), str(r.get("fingerprint")))
    )


def format_status(records: Iterable[Mapping[str, Any]], now_ns: int, rule: str | None = None) -> str:
    """A table of instances (problems first) and a one-line verdict."""
    rows = sort_records(records, rule)
    firing = sum(1 for r in rows if r.get("state") == "firing")
    pending = sum(1 for r in rows if r.get("state") == "pending")
    header = ("STATE", "RULE", "SERIES", "VALUE", "SETPOINT", "SINCE", "LAST SEEN")
    table = [header]
    for r in rows:
        tags = r.get("tags") or {}
        series = ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or str(r.get("measurement"))
        state = str(r.get("state"))
        since = r.get("active_since_ns") if state in ("firing", "pending") else r.get("changed_at_ns")
        seen = r.get("last_seen_ns")
        seen_text = "-" if seen is None else f"{format_duration((now_ns - seen) / NS)} ago"
        table.append(
            (
                state.upper(),
                str(r.get("rule")),
                series,
                _number(r.get("value")),
                _number(r.get("setpoint")),
                _local(since),
                seen_text,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    if not rows:
        verdict = "No alert instance recorded yet."
    elif firing or pending:
        verdict = f"{firing} firing, {pending} pending, out of {len(rows)} instances."
    else:
        verdict = f"No anomaly: {len(rows)} instances, none firing."
    return "\n".join([*lines, "", verdict])

"""Times given on the command line: RFC 3339 (``2024-05-01T12:00:00Z``), ``now``, or ``-2h`` (before now).

>>> parse_time("2023-11-14T22:13:20Z", now_ns=0)
1700000000000000000
>>> parse_time("-1h30m", now_ns=10_000 * 10**9)
4600000000000
>>> parse_time("2023-11-14T23:13:20.5+01:00", now_ns=0)
1700000000500000000
"""

from __future__ import annotations

from datetime import datetime

from telestack.core.durations import duration_seconds
from telestack.influx_writer.errors import TransferError

__all__ = ["parse_time"]


def parse_time(text: str, *, now_ns: int) -> int:
    """Nanoseconds since the epoch."""
    text = text.strip()
    if text == "now":
        return now_ns
    if text.startswith("-"):
        try:
            return now_ns - duration_seconds(text[1:]) * 10**9
        except ValueError as exc:
            raise TransferError(f"{text!r}: {exc}") from None
    base, _, rest = text.partition(".")
    fraction = ""
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, suffix = rest[:digits], rest[digits:]
        text = base + suffix
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TransferError(f"{text!r} is not a time: use RFC 3339 (2024-05-01T12:00:00Z), now, or -2h") from None
    if moment.tzinfo is None:
        raise TransferError(f"{text!r} has no time zone: add Z (UTC) or an offset such as +02:00")
    seconds = int(moment.timestamp())
    return seconds * 10**9 + (int(fraction[:9].ljust(9, "0")) if fraction else 0)

"""Durations as people write them in settings and rules, in one grammar, read as seconds.

A duration is a plain number of seconds (``45``, ``0.5``) or amounts with units, largest first or not:
``500ms``, ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``. ``Duration`` is the pydantic type of a setting that
holds one: its value is always seconds (a float), and its name ends in ``_s``.

Some durations are handed on as text to a server that has its own syntax (InfluxDB bucket retention and Flux
task options, Kafka ``retention.ms``): ``DurationText`` keeps such a value as text, in whole units that Flux
reads too (``1h30m``), and ``"0"``/``"inf"`` for forever where that is allowed.

>>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration(45)
(5400.0, 0.5, 45.0)
>>> duration_text("90"), duration_text("1h30m"), duration_text("1.5h")
('1m30s', '1h30m', '1h30m')
>>> duration_seconds("30d"), duration_seconds("inf")
(2592000, 0)
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "FOREVER",
    "Duration",
    "DurationText",
    "RetentionText",
    "duration_seconds",
    "duration_text",
    "parse_duration",
]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_WHOLE_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
# Already whole units, as InfluxDB and Flux write them: kept as the user wrote it.
_FLUX_TEXT = re.compile(r"(\d+[wdhms])+")
FOREVER = ("0", "inf")  # how a retention says "keep forever"


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``"15m"``, ``"1h30m"``, ``"500ms"``, ``"2d"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    text = value.strip().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 15m, 1h30m, 2d)")
    return total


def duration_text(value: str | float | int, *, forever_ok: bool = False) -> str:
    """The duration as whole-unit text (``1h30m``); ``"0"``/``"inf"`` pass as they are when `forever_ok`."""
    if isinstance(value, str) and value.strip() in FOREVER:
        if forever_ok:
            return value.strip()
        raise ValueError("must be a positive duration such as 1m")
    if isinstance(value, str) and _FLUX_TEXT.fullmatch(value.strip()):
        return value.strip()
    seconds = parse_duration(value)
    if seconds != int(seconds):
        raise ValueError(f"{value!r}: a whole number of seconds is needed here")
    rest, parts = int(seconds), []
    for unit, size in _WHOLE_UNITS:
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def duration_seconds(text: str) -> int:
    """Whole seconds in a duration text; ``"0"`` and ``"inf"`` give 0 (forever)."""
    if text in FOREVER:
        return 0
    return int(parse_duration(duration_text(text)))


def _retention_text(value: str | float | int) -> str:
    return duration_text(value, forever_ok=True)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration setting, in seconds."""

DurationText = Annotated[str, BeforeValidator(str), AfterValidator(duration_text)]
"""A duration handed on as text (Flux, InfluxDB): whole units such as ``1h30m``."""

RetentionText = Annotated[str, BeforeValidator(str), AfterValidator(_retention_text)]
"""A retention handed on as text: a `DurationText`, or ``0``/``inf`` for forever."""

"""Finding the records InfluxDB rejects in a batch it refused, by splitting the batch in halves.

InfluxDB answers 400/422 for a whole request even when one line is bad (and may or may not have written
the others). Writing each half again finds the bad records in about ``k * log2(n)`` requests for ``k`` bad
records among ``n``; good points written twice are harmless because a point with the same series and
timestamp overwrites itself.

Pure: the write is a callable, so the search is tested without a server.

>>> bad = {3, 6}
>>> def write(chunk):
...     refused = [x for x in chunk if x in bad]
...     return f"bad value {refused[0]}" if refused else None
>>> isolate_rejected(list(range(8)), write, "first try failed")
[(3, 'bad value 3'), (6, 'bad value 6')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["isolate_rejected"]

T = TypeVar("T")

# Returns None when the chunk was accepted, else InfluxDB's reason for refusing it.
WriteAttempt = Callable[[Sequence[T]], str | None]


def isolate_rejected(units: Sequence[T], write: WriteAttempt[T], reason: str) -> list[tuple[T, str]]:
    """The units that are refused on their own, each with the reason, in their original order.

    `units` were just refused together with `reason`; every other unit has been written by a call to
    `write` when this returns. `write` raises for anything that is not a refusal (the caller retries).
    """
    rejected: list[tuple[T, str]] = []
    # Depth-first, left half first, so the result keeps the input order. Each entry is a refused chunk.
    pending: list[tuple[Sequence[T], str]] = [(units, reason)]
    while pending:
        chunk, why = pending.pop()
        if len(chunk) == 1:
            rejected.append((chunk[0], why))
            continue
        middle = len(chunk) // 2
        refused_halves: list[tuple[Sequence[T], str]] = []
        for half in (chunk[:middle], chunk[middle:]):
            half_reason = write(half)
            if half_reason is not None:
                refused_halves.append((half, half_reason))
        pending.extend(reversed(refused_halves))
    return rejected
